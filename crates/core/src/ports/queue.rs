//! The delivery queue port: leasing due deliveries with what their attempts
//! need (the job) and settling each attempt under its lease.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::breaker::Health;
use crate::delivery::{Attempt, DeliveryId, DeliveryStatus};
use crate::event::{Line, Subject};
use crate::id::{EventId, RuleId, TenantId};
use crate::ports::store::StoreError;
use crate::rule::{PayloadFormat, Rule};
use crate::signing::SigningKeys;
use crate::time::Timestamp;
use crate::traffic::TrafficBuffer;
use crate::trigger::Trigger;

/// Which receive of a queued delivery an attempt runs under: what the
/// queue that handed it out needs to act on it, as that queue's own values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// A row of the embedded queue.
    Row { seq: i64, receive_count: u32 },
    /// An SQS message: its receipt handle, its body for the dead-letter
    /// queue, and whether it replays a delivery (which may then move a
    /// delivery that succeeded; another attempt of one may not).
    Message {
        receipt: String,
        body: String,
        receive_count: u32,
        replay: bool,
    },
}

impl Lease {
    /// How often the queue has handed this delivery out, this time included:
    /// the attempt number, as SQS's ApproximateReceiveCount is.
    pub fn receive_count(&self) -> u32 {
        match self {
            Lease::Row { receive_count, .. } | Lease::Message { receive_count, .. } => {
                *receive_count
            }
        }
    }
}

/// Where a job goes and how, or why it cannot go anywhere any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Endpoint(Endpoint),
    Gone(&'static str),
}

/// A rule's receiver as its deliveries see it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub payload: PayloadFormat,
    pub headers: Vec<(String, String)>,
}

impl Destination {
    /// Where a delivery of `rule` goes now: nowhere once the rule is deleted
    /// (`None`) or disabled. The rule as it is at the attempt decides, so an
    /// edit of its URL or headers reaches deliveries already queued.
    pub fn of(rule: Option<&Rule>) -> Self {
        match rule {
            None => Destination::Gone("the rule was deleted"),
            Some(r) if !r.enabled => Destination::Gone("the rule is disabled"),
            Some(r) => Destination::Endpoint(Endpoint::of(r)),
        }
    }
}

impl Endpoint {
    /// Where and how `rule` delivers, enabled or not.
    pub fn of(rule: &Rule) -> Self {
        Endpoint {
            url: rule.url.clone(),
            payload: rule.options.payload,
            headers: rule
                .options
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// Everything one attempt needs, loaded by the queue adapter in one go.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub tenant_id: TenantId,
    pub event_id: EventId,
    pub rule_id: RuleId,
    pub trigger: Trigger,
    pub occurred_at: Timestamp,
    pub line: Option<Line>,
    pub data: Box<RawValue>,
    pub subject: Option<Subject>,
    pub destination: Destination,
    pub keys: SigningKeys,
    /// The queue's lease; none for a job no queue handed out (a test send).
    pub lease: Option<Lease>,
    /// The attempt number in the current chain: retries of this delivery
    /// made so far, plus one. Held-back receives are never counted.
    pub attempt: u32,
    /// The rule's receiver health as loaded, for the breaker's bookkeeping.
    pub rule_health: Health,
    /// The `traceparent` of the span its attempt continues (its event's
    /// ingest or routing), when traced.
    pub trace: Option<String>,
}

/// What comes of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    RetryAt(Timestamp),
    Dead,
}

/// The result of one attempt, for the queue adapter to record and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub delivery_id: DeliveryId,
    pub tenant_id: TenantId,
    /// The lease this attempt ran under; a stale lease must not move the queue.
    pub lease: Option<Lease>,
    pub attempt: Attempt,
    pub outcome: Outcome,
    pub rule_id: RuleId,
    /// What the delivery is of, for a store that records a delivery first
    /// when its first attempt settles (the AWS form).
    pub event_id: EventId,
    pub line: Option<Line>,
    /// Whether the receiver took the request (a 2xx); `None` when no request
    /// was made (the rule is gone, the tenant has no key).
    pub receiver_ok: Option<bool>,
    /// The rule's health when the job was loaded.
    pub rule_health: Health,
    /// The `traceparent` of the attempt's span, when traced: what the
    /// settle's span joins.
    pub trace: Option<String>,
    /// The receiver said it is gone (410, or `webhook-delivery: disable`):
    /// the store disables the rule ([`DisabledReason::Gone`]).
    ///
    /// [`DisabledReason::Gone`]: crate::rule::DisabledReason::Gone
    pub gone: bool,
}

impl Settlement {
    /// The settlement of an attempt that made no request.
    pub fn new(job: &DeliveryJob, attempt: Attempt, outcome: Outcome) -> Self {
        Settlement {
            delivery_id: job.delivery_id.clone(),
            tenant_id: job.tenant_id.clone(),
            lease: job.lease.clone(),
            attempt,
            outcome,
            rule_id: job.rule_id.clone(),
            event_id: job.event_id.clone(),
            line: job.line.clone(),
            receiver_ok: None,
            rule_health: job.rule_health,
            trace: job.trace.clone(),
            gone: false,
        }
    }

    /// Counts the attempt in its rule's traffic, if it made a request (one
    /// that made none says nothing of the receiver).
    pub fn count_in(&self, traffic: &mut TrafficBuffer) {
        if let Some(ok) = self.receiver_ok {
            traffic.record(&self.tenant_id, &self.rule_id, ok, &self.attempt);
        }
    }

    /// The status the delivery has once this settlement is recorded.
    pub fn status(&self) -> DeliveryStatus {
        match self.outcome {
            Outcome::Succeeded => DeliveryStatus::Succeeded,
            Outcome::RetryAt(_) => DeliveryStatus::Pending,
            Outcome::Dead => DeliveryStatus::Dead,
        }
    }
}

/// Each tenant's signing keys, loaded once for a batch of jobs.
#[derive(Debug, Default)]
pub struct KeyCache(HashMap<TenantId, SigningKeys>);

impl KeyCache {
    pub fn contains(&self, tenant_id: &TenantId) -> bool {
        self.0.contains_key(tenant_id)
    }

    pub fn insert(&mut self, tenant_id: &TenantId, keys: SigningKeys) {
        self.0.insert(tenant_id.clone(), keys);
    }

    /// The tenant's keys; none when they were not loaded, which the attempt
    /// turns into a dead delivery rather than an unsigned one.
    pub fn get(&self, tenant_id: &TenantId) -> SigningKeys {
        self.0
            .get(tenant_id)
            .cloned()
            .unwrap_or(SigningKeys(Vec::new()))
    }
}

/// The deliveries queue as the deliverer sees it: SQS semantics (a lease
/// with a visibility timeout, a receive count) on either backend.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Leases up to `max` due deliveries and loads what their attempts need.
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError>;
    /// Records the attempts and acts on their outcomes, each under its lease.
    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError>;
}
