//! The store port: durable state (tenants, keys, rules, events, the
//! delivery log) and what it exchanges: its error, a new tenant, what ingest
//! made of an event, a rule's health, and pages with their cursors.

use async_trait::async_trait;

use crate::api_key::{api_key_from_bytes, hash_api_key};
use crate::breaker::Health;
use crate::delivery::{Delivery, DeliveryStatus};
use crate::error::FieldError;
use crate::event::Event;
use crate::id::{DeliveryId, EventId, RuleId, TenantId};
use crate::rule::Rule;
use crate::signing::{MAX_SIGNING_KEYS, SigningKeys, WebhookKey};
use crate::time::Timestamp;
use crate::traffic::Tally;

/// The error behind a store failure, kept for whoever walks the chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing to create exists already (a tenant id, say).
    #[error("{0}")]
    Conflict(String),
    /// One more would pass a limit (rules per tenant, keys that sign).
    #[error("{0}")]
    LimitExceeded(String),
    /// The delivery is queued or waiting for a retry already; a second chain
    /// of attempts is not started.
    #[error("the delivery is pending already")]
    AlreadyPending,
    /// A cursor this store did not hand out.
    #[error("the cursor is not one this API returned")]
    BadCursor,
    /// The store could not do the work; nothing was lost, try again.
    #[error("storage unavailable: {operation}: {message}")]
    Unavailable {
        /// What was being done: `GetItem`, `SendMessageBatch`, `settle`, …
        operation: String,
        /// The service's error code (`ConditionalCheckFailedException`, …),
        /// where the service gave one: what an operator searches logs for.
        code: Option<String>,
        /// The whole cause chain, rendered once.
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Something the store holds cannot be read as what it must be.
    #[error("stored {what} is unreadable: {source}")]
    Unreadable {
        what: &'static str,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// A failure of `operation`, keeping `source` as the cause.
    pub fn unavailable(
        operation: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let mut message = source.to_string();
        let mut cause = source.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        StoreError::Unavailable {
            operation: operation.into(),
            code: None,
            message,
            source: Some(Box::new(source)),
        }
    }

    /// Stored data that does not decode as `what`.
    pub fn unreadable(what: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Unreadable {
            what,
            source: source.into(),
        }
    }

    /// A rule past the tenant's limit of `max_rules`.
    pub fn too_many_rules(max_rules: usize) -> Self {
        StoreError::LimitExceeded(format!(
            "a tenant has at most {max_rules} rules (HOOKLINE_MAX_RULES); delete one first"
        ))
    }

    /// A rotation while [`MAX_SIGNING_KEYS`] keys sign.
    pub fn too_many_keys() -> Self {
        StoreError::LimitExceeded(format!(
            "{MAX_SIGNING_KEYS} webhook keys sign already; rotate again once the oldest \
             one's grace period (HOOKLINE_KEY_GRACE) has ended"
        ))
    }

    /// The service's error code, when the failure came with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            StoreError::Unavailable { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

pub struct NewTenant {
    pub id: TenantId,
    /// SHA-256 of the API key, hex: the key itself is never stored.
    pub api_key_hash: String,
    pub webhook_key: WebhookKey,
    pub created_at: Timestamp,
}

impl NewTenant {
    /// A new tenant from 64 random bytes: its API key (returned once, stored
    /// only as a hash) and its first webhook key.
    pub fn provision(
        id: TenantId,
        random: &[u8; 64],
        now: Timestamp,
    ) -> Result<(NewTenant, String), FieldError> {
        let (key_bytes, secret) = random.split_at(32);
        let mut api_key_bytes = [0u8; 32];
        api_key_bytes.copy_from_slice(key_bytes);
        let api_key = api_key_from_bytes(&api_key_bytes);
        let webhook_key = WebhookKey::from_bytes(secret)
            .map_err(|e| FieldError::invalid("webhook_key", e.to_string()))?;
        let tenant = NewTenant {
            id,
            api_key_hash: hash_api_key(&api_key),
            webhook_key,
            created_at: now,
        };
        Ok((tenant, api_key))
    }
}

/// What ingest made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    /// The tenant has seen this event id before; nothing new is delivered.
    Duplicate,
    /// No tenant has the event's `tenant_id`.
    UnknownTenant,
    /// The event's fan-out across the tenant's rules is over a budget.
    TooLarge(crate::fanout::FanoutTooLarge),
}

/// What a store knows of how a rule's receiver is doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleHealth {
    /// The breaker's view.
    pub health: Health,
    /// Its traffic's buckets of the last [`KEPT`](crate::traffic::KEPT),
    /// each with its start: what is written and what this process has
    /// counted and not yet written.
    pub buckets: Vec<(Timestamp, Tally)>,
    /// How many attempts its receiver is given at once now, where the
    /// deliverer that learns it is this process.
    pub concurrency: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub rule_id: Option<RuleId>,
    pub event_id: Option<EventId>,
    pub status: Option<DeliveryStatus>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A cursor naming a page's last item by the parts of its key, joined and
/// hex-encoded: opaque to clients, and checked when read back.
pub fn key_cursor(parts: &[&str]) -> String {
    hex::encode(parts.join("\u{1f}"))
}

/// The key parts of a [`key_cursor`], or [`StoreError::BadCursor`].
pub fn parse_key_cursor(cursor: &str) -> Result<Vec<String>, StoreError> {
    let bytes = hex::decode(cursor).map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    Ok(text.split('\u{1f}').map(str::to_owned).collect())
}

/// A cursor that is a row number (the SQLite store's).
pub fn parse_row_cursor(cursor: &str) -> Result<i64, StoreError> {
    cursor.parse().map_err(|_| StoreError::BadCursor)
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of at most `limit` from up to `limit + 1` items read: the extra
    /// one only tells that another page follows, whose cursor names the last
    /// item kept.
    pub fn from_overfetch(
        mut items: Vec<T>,
        limit: usize,
        cursor: impl FnOnce(&T) -> String,
    ) -> Self {
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more { items.last().map(cursor) } else { None };
        Page {
            data: items,
            next_cursor,
        }
    }

    /// The same page with each item converted, or the first failure.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            data: self.data.into_iter().map(f).collect::<Result<_, E>>()?,
            next_cursor: self.next_cursor,
        })
    }
}

/// Durable state. Every tenant-owned read and write takes the tenant, so no
/// adapter can answer one tenant with another's data.
#[async_trait]
pub trait Store: Send + Sync {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<(), StoreError>;
    async fn tenant_for_api_key(&self, api_key_hash: &str) -> Result<Option<TenantId>, StoreError>;
    async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool, StoreError>;

    /// The current key first, then rotated-out keys still valid at `now`.
    async fn signing_keys(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError>;
    /// Makes `key` current; the previous key keeps signing until `old_until`.
    /// Refused with `LimitExceeded` while [`MAX_SIGNING_KEYS`] keys sign.
    async fn rotate_webhook_key(
        &self,
        tenant_id: &TenantId,
        key: WebhookKey,
        now: Timestamp,
        old_until: Timestamp,
    ) -> Result<(), StoreError>;

    /// Stores a new rule; `LimitExceeded` when the tenant has `max_rules`.
    async fn insert_rule(&self, rule: &Rule, max_rules: usize) -> Result<(), StoreError>;
    async fn rule(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
    ) -> Result<Option<Rule>, StoreError>;
    async fn rules(
        &self,
        tenant_id: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rule>, StoreError>;
    /// Replaces a stored rule; false when it does not exist.
    async fn update_rule(&self, rule: &Rule) -> Result<bool, StoreError>;
    async fn delete_rule(&self, tenant_id: &TenantId, rule_id: &RuleId)
    -> Result<bool, StoreError>;
    /// How the rule's receiver is doing as of `now`; `None` when the rule
    /// does not exist.
    async fn rule_health(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        now: Timestamp,
    ) -> Result<Option<RuleHealth>, StoreError>;

    /// Makes `event` durable (answering `duplicate` for a known id) and sees
    /// to it that it is routed to the matching rules' deliveries.
    async fn accept_event(&self, event: &Event, now: Timestamp) -> Result<Acceptance, StoreError>;

    /// [`Store::accept_event`] for several events at once, each judged
    /// alone; the answers come in the events' order.
    async fn accept_events(
        &self,
        events: &[Event],
        now: Timestamp,
    ) -> Vec<Result<Acceptance, StoreError>>;

    /// A delivery is found and listed from its first attempt or hold on; a
    /// backend may show it from routing (SQLite does; the AWS form records a
    /// delivery first when its first attempt settles, so routing writes
    /// nothing).
    async fn delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError>;
    async fn deliveries(
        &self,
        tenant_id: &TenantId,
        filter: &DeliveryFilter,
    ) -> Result<Page<Delivery>, StoreError>;
    /// Queues a delivery for an attempt now, with a fresh set of retries;
    /// `AlreadyPending` when it is queued or waiting for a retry already.
    async fn retry_delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError>;
    /// Retries every dead delivery of a rule created in `[since, until)`;
    /// answers how many, or `None` when the rule does not exist.
    async fn recover(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<u64>, StoreError>;

    /// Counts a test send of the tenant's in the minute of `now`, unless
    /// `limit` of them were counted already: answers whether it may go. A
    /// test send holds a request (and on Lambda a function) for up to the
    /// delivery timeout, so each tenant gets a few a minute, across every
    /// process that serves the API.
    async fn take_test_send(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
        limit: u32,
    ) -> Result<bool, StoreError>;
}
