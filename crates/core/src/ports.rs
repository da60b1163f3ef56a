//! The ports: what the engine needs from the world, as traits the adapters
//! (SQLite, DynamoDB/SQS, reqwest) implement.

use async_trait::async_trait;

use crate::delivery::{Delivery, DeliveryJob, DeliveryStatus, Sent, Settlement};
use crate::event::Event;
use crate::rule::Rule;
use crate::signing::{SigningKeys, WebhookKey};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing to create exists already (a tenant id, say).
    #[error("{0}")]
    Conflict(String),
    /// A cursor this store did not hand out.
    #[error("the cursor is not one this API returned")]
    BadCursor,
    /// The store could not do the work; nothing was lost, try again.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

pub struct NewTenant {
    pub id: String,
    /// SHA-256 of the API key, hex: the key itself is never stored.
    pub api_key_hash: String,
    pub webhook_key: WebhookKey,
    pub created_at: Timestamp,
}

/// What ingest made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    Accepted,
    /// The tenant has seen this event id before; nothing new is delivered.
    Duplicate,
    /// No tenant has the event's `tenant_id`.
    UnknownTenant,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub rule_id: Option<String>,
    pub event_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Durable state. Every tenant-owned read and write takes the tenant, so no
/// adapter can answer one tenant with another's data.
#[async_trait]
pub trait Store: Send + Sync {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<(), StoreError>;
    async fn tenant_for_api_key(&self, api_key_hash: &str) -> Result<Option<String>, StoreError>;
    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool, StoreError>;

    /// The current key first, then rotated-out keys still valid at `now`.
    async fn signing_keys(
        &self,
        tenant_id: &str,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError>;
    /// Makes `key` current; the previous key keeps signing until `old_until`.
    async fn rotate_webhook_key(
        &self,
        tenant_id: &str,
        key: WebhookKey,
        now: Timestamp,
        old_until: Timestamp,
    ) -> Result<(), StoreError>;

    async fn insert_rule(&self, rule: &Rule) -> Result<(), StoreError>;
    async fn rule(&self, tenant_id: &str, rule_id: &str) -> Result<Option<Rule>, StoreError>;
    async fn rules(
        &self,
        tenant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rule>, StoreError>;
    /// Replaces a stored rule; false when it does not exist.
    async fn update_rule(&self, rule: &Rule) -> Result<bool, StoreError>;
    async fn delete_rule(&self, tenant_id: &str, rule_id: &str) -> Result<bool, StoreError>;

    /// Makes `event` durable (answering `duplicate` for a known id) and sees
    /// to it that it is routed to the matching rules' deliveries.
    async fn accept_event(&self, event: &Event, now: Timestamp) -> Result<Acceptance, StoreError>;

    async fn delivery(&self, tenant_id: &str, id: &str) -> Result<Option<Delivery>, StoreError>;
    async fn deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
    ) -> Result<Page<Delivery>, StoreError>;
    /// Queues a delivery for an attempt now, with a fresh set of retries.
    async fn retry_delivery(
        &self,
        tenant_id: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError>;
    /// Retries every dead delivery of a rule created in `[since, until)`;
    /// answers how many, or `None` when the rule does not exist.
    async fn recover(
        &self,
        tenant_id: &str,
        rule_id: &str,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<u64>, StoreError>;
}

/// The deliveries queue as the deliverer sees it: SQS semantics (a lease
/// with a visibility timeout, a receive count) on either backend.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Leases up to `max` due deliveries and loads what their attempts need.
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError>;
    /// Records the attempts and acts on their outcomes.
    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError>;
}

pub struct OutgoingRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, request: OutgoingRequest) -> Sent;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}
