//! The JSON shapes of the API's requests and answers, as the OpenAPI
//! document describes them ([`crate::openapi`]).
//!
//! The handlers parse bodies by hand (so an error names the field) and answer
//! with the core's types, so these types are descriptions, never built. Tests
//! keep them true: the rule fields equal the parser's list, a real rule and
//! delivery serialize to exactly the properties described, and schemathesis
//! checks a running server's answers against the document in CI. They
//! derive `Serialize` only so that serde's attributes (`untagged`,
//! `deny_unknown_fields`) shape their schemas.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {...}}`, the one error shape.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid", "message": "url: must be an http or https URL", "field": "url"}}))]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid`, `unknown_type`, `unknown_tenant`, `unauthorized`,
    /// `not_found`, `too_large`, `limit_exceeded`, `already_pending`,
    /// `method_not_allowed`, `unavailable`, ...
    code: String,
    /// What is wrong, in words.
    message: String,
    /// The offending field, when one is to blame.
    #[schema(nullable = false)]
    field: Option<String>,
}

/// A business event the platform reports. Fields Hookline does not read are
/// ignored.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "evt_1", "tenant_id": "demo", "type": "order.paid",
    "occurred_at": "2026-11-29T12:00:00Z", "lines": [{"id": "line_1", "product_id": "prod_1"}],
    "data": {"order_id": "ord_1", "amount": 4900}}))]
pub struct EventIn {
    /// The platform's id: the same id twice is one event (a duplicate).
    #[schema(min_length = 1, max_length = 200)]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    tenant_id: String,
    #[schema(rename = "type")]
    kind: PlatformTrigger,
    #[schema(format = DateTime)]
    occurred_at: String,
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    payment_page_id: Option<String>,
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    upsell_id: Option<String>,
    /// Whether this is a subscription's first payment (default true).
    #[schema(nullable = false)]
    first_payment: Option<bool>,
    /// The order lines (order bumps are lines), at most 1000, ids unique.
    #[schema(max_items = 1000, nullable = false)]
    lines: Option<Vec<LineIn>>,
    /// What receivers get, byte for byte.
    #[schema(value_type = Value)]
    data: (),
    /// What the event is about, for thin payloads.
    #[schema(nullable = false)]
    subject: Option<SubjectIn>,
}

#[derive(Serialize, ToSchema)]
pub struct LineIn {
    #[schema(min_length = 1, max_length = 200)]
    id: String,
    #[schema(min_length = 1, max_length = 200)]
    product_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectIn {
    #[schema(rename = "type", min_length = 1, max_length = 200)]
    kind: String,
    #[schema(min_length = 1, max_length = 200)]
    id: String,
}

/// What the platform reports.
#[derive(Serialize, ToSchema)]
pub enum PlatformTrigger {
    #[schema(rename = "order.paid")]
    OrderPaid,
    #[schema(rename = "invoice.created")]
    InvoiceCreated,
    #[schema(rename = "subscription.ended")]
    SubscriptionEnded,
    #[schema(rename = "affiliate.accepted")]
    AffiliateAccepted,
    #[schema(rename = "affiliate.rejected")]
    AffiliateRejected,
    #[schema(rename = "affiliate.stopped")]
    AffiliateStopped,
}

/// What a rule may subscribe to: the platform's events and Hookline's own
/// `rule.disabled`.
#[derive(Serialize, ToSchema)]
pub enum Trigger {
    #[schema(rename = "order.paid")]
    OrderPaid,
    #[schema(rename = "invoice.created")]
    InvoiceCreated,
    #[schema(rename = "subscription.ended")]
    SubscriptionEnded,
    #[schema(rename = "affiliate.accepted")]
    AffiliateAccepted,
    #[schema(rename = "affiliate.rejected")]
    AffiliateRejected,
    #[schema(rename = "affiliate.stopped")]
    AffiliateStopped,
    #[schema(rename = "rule.disabled")]
    RuleDisabled,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    id: String,
    /// True when the tenant sent this event id before: nothing is delivered twice.
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    #[schema(min_items = 1, max_items = 100)]
    events: Vec<EventIn>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    /// One per event, in order.
    results: Vec<BatchResult>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// The event's `id` as it was sent (null when it had none).
    #[schema(value_type = Value, required = true)]
    id: (),
    /// What `POST /v1/events` would have answered for this event.
    status: u16,
    #[schema(nullable = false)]
    duplicate: Option<bool>,
    #[schema(nullable = false)]
    error: Option<ErrorDetail>,
}

/// Which events of the trigger a rule takes: all, or those of one product,
/// payment page or one-click upsell.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Scope {
    Universal(ScopeUniversal),
    One(ScopeOne),
}

#[derive(Serialize, ToSchema)]
pub struct ScopeUniversal {
    #[serde(rename = "type")]
    #[schema(pattern = "^universal$")]
    kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct ScopeOne {
    /// `product`, `payment_page` or `upsell`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(product|payment_page|upsell)$")]
    kind: String,
    #[schema(min_length = 1, max_length = 200)]
    id: String,
}

#[derive(Serialize, ToSchema)]
pub enum Payload {
    /// `{"type","timestamp","event_id","tenant_id","rule_id","data","line"?}`.
    #[schema(rename = "full")]
    Full,
    /// Plug&Pay's thin V2 envelope: the receiver fetches the rest.
    #[schema(rename = "thin")]
    Thin,
}

/// A payload filter: nested objects follow the delivered body, a plain value
/// means equal; operators `$eq`, `$neq`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`,
/// `$nin`, `$startsWith`, `$endsWith`, `$exist`, `$and`, `$or`, `$not`.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object, example = json!({"data": {"amount": {"$gte": 1000}, "currency": "EUR"}}))]
pub struct Filter(());

/// A rule as `POST /v1/rules` takes it; any other field is refused by name.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "paid orders", "trigger": "order.paid", "url": "https://example.com/hook"}))]
#[serde(deny_unknown_fields)]
pub struct RuleIn {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    trigger: Trigger,
    /// An http or https URL; a private or loopback address is refused
    /// unless the server allows private targets.
    #[schema(max_length = 2000)]
    url: String,
    /// Default `{"type": "universal"}`.
    #[schema(nullable = false)]
    scope: Option<Scope>,
    /// One delivery per order line (default false).
    #[schema(nullable = false)]
    per_order_line: Option<bool>,
    /// Only a subscription's first payment (default false).
    #[schema(nullable = false)]
    first_payment_only: Option<bool>,
    /// Default true.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    filter: Option<Filter>,
    /// Default `full`.
    payload: Option<Payload>,
    /// Added to every delivery (at most 10; Hookline's own cannot be set).
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    headers: (),
    /// At most this many deliveries a second; excess ones wait.
    #[schema(minimum = 1, maximum = 10000)]
    rate_limit: Option<u32>,
}

/// Any subset of a rule's fields; an option set to `null` goes back to its
/// default.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatchIn {
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    name: Option<String>,
    #[schema(nullable = false)]
    trigger: Option<Trigger>,
    #[schema(max_length = 2000, nullable = false)]
    url: Option<String>,
    #[schema(nullable = false)]
    scope: Option<Scope>,
    #[schema(nullable = false)]
    per_order_line: Option<bool>,
    #[schema(nullable = false)]
    first_payment_only: Option<bool>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
    filter: Option<Filter>,
    payload: Option<Payload>,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    headers: (),
    #[schema(minimum = 1, maximum = 10000)]
    rate_limit: Option<u32>,
}

/// A rule as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct Rule {
    /// `rul_` and 28 hex digits.
    id: String,
    name: String,
    trigger: Trigger,
    url: String,
    scope: Scope,
    per_order_line: bool,
    first_payment_only: bool,
    enabled: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true)]
    filter: Option<Filter>,
    payload: Payload,
    headers: BTreeMap<String, String>,
    #[schema(required = true)]
    rate_limit: Option<u32>,
    /// `failing` when Hookline disabled the rule, until it is enabled again.
    #[schema(required = true)]
    disabled_reason: Option<DisabledReason>,
    #[schema(format = DateTime, required = true)]
    disabled_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub enum DisabledReason {
    /// Its deliveries failed without a success for `HOOKLINE_DISABLE_AFTER`.
    #[schema(rename = "failing")]
    Failing,
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    data: Vec<Rule>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookKey {
    /// `whsec_` and the base64 of 32 bytes.
    #[schema(pattern = "^whsec_")]
    key: String,
}

/// A delivery's status, in answers and as the list's filter.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Dead,
}

/// One try at a delivery.
#[derive(Serialize, ToSchema)]
pub struct Attempt {
    #[schema(format = DateTime)]
    at: String,
    /// The receiver's status; null when there was no answer.
    #[schema(required = true)]
    status_code: Option<u16>,
    duration_ms: u64,
    /// Why it failed (timeout, connection, refused address, ...), when it did.
    #[schema(required = true)]
    error: Option<String>,
    /// The receiver's answer, cut at 4 KiB.
    #[schema(required = true)]
    response_body: Option<String>,
}

/// One event to one rule's URL (one per line for per-order-line rules).
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` the receiver sees, the same on every retry.
    id: String,
    event_id: String,
    rule_id: String,
    status: DeliveryStatus,
    #[schema(nullable = false)]
    line_id: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    /// Every attempt made.
    attempt_count: u64,
    /// The 20 most recent attempts, oldest first.
    attempts: Vec<Attempt>,
    /// Why a pending delivery is held back beyond its schedule.
    #[schema(nullable = false)]
    waiting: Option<Waiting>,
}

#[derive(Serialize, ToSchema)]
pub struct Waiting {
    /// `circuit_open`: the rule's receiver failed too often in a row.
    #[schema(pattern = "^circuit_open$")]
    reason: String,
    #[schema(format = DateTime)]
    until: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    data: Vec<Delivery>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// The start of the window (deliveries made at or after it).
    #[schema(format = DateTime)]
    since: String,
    /// Its end (before it); default now.
    #[schema(format = DateTime, nullable = false)]
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Recovered {
    /// How many dead deliveries were queued again.
    recovered: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TestSend {
    attempt: Attempt,
}

/// Query parameters of the lists.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    rule_id: Option<String>,
    event_id: Option<String>,
    #[param(inline)]
    status: Option<DeliveryStatus>,
    /// 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    cursor: Option<String>,
}
