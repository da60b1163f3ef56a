//! The single-table layout. Every item has `pk` and `sk`; rules also carry
//! `gsi1pk`/`gsi1sk` (the rules index, every attribute).
//!
//! | item        | pk                    | sk                      | index keys                                           |
//! |-------------|-----------------------|-------------------------|------------------------------------------------------|
//! | tenant      | `T#{tenant}`          | `TENANT`                |                                                      |
//! | API key     | `AK#{hash}`           | `AK`                    |                                                      |
//! | webhook key | `T#{tenant}`          | `KEY#{created_ms}`      |                                                      |
//! | rule        | `T#{tenant}`          | `R#{rule}`              | gsi1: `TR#{tenant}#{trigger}`, see [`rule_index_sk`] |
//! | event       | `T#{tenant}`          | `E#{event}`             |                                                      |
//! | delivery    | `DL#{tenant}#{shard}` | `{created_ms:013}#{id}` |                                                      |
//! | rate count  | `T#{tenant}`          | `RL#{rule}#{second}`    |                                                      |
//!
//! Rules for an event are one Query on gsi1 per scope key the event has, by
//! (tenant, trigger) and prefix. A delivery is its own log entry: the
//! tenant's [`DELIVERY_LOG_SHARDS`] partitions, read newest first and
//! merged, and one write a delivery with no index to keep. Its id carries
//! its time ([`DeliveryId::stamped`]), so a lookup by id computes its key.
//!
//! Deliveries an earlier Hookline wrote are keyed `T#{tenant}`/`D#{id}` (an
//! id without a stamp says so) and listed on gsi2 (keys only) under the same
//! log keys, which the listing reads beside the table until their TTL has
//! run out; those on gsi1 (`DL#{tenant}`) are listed once `hookline
//! migrate` has moved them to gsi2.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::breaker::Health;
use hookline_core::event::{Line, Subject};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::StoreError;
pub use hookline_core::record::AttemptRecord;
use hookline_core::record::{SubjectRecord, decode_rule, encode_rule};
use hookline_core::{Attempt, Delivery, Event, Rule, Scope, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub type Item = HashMap<String, AttributeValue>;

/// The table's keys and secondary index, as `template.yaml` and
/// `infra/local-aws/create.py` create them.
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PARTITION_KEY: &str = "gsi1pk";
pub const GSI1_SORT_KEY: &str = "gsi1sk";
pub const GSI2: &str = "gsi2";
pub const GSI2_PARTITION_KEY: &str = "gsi2pk";
pub const GSI2_SORT_KEY: &str = "gsi2sk";
/// How many keys of gsi2 a tenant's delivery log is spread over. A key's
/// partition takes about 1,000 write units a second; every delivery writes
/// its entry once, so a tenant making 2,000 deliveries a second puts about
/// 250 a second on each of 8 (docs/cost.md has the arithmetic).
pub const DELIVERY_LOG_SHARDS: u32 = 8;
/// The attribute DynamoDB's TTL reads (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "ttl";

pub fn tenant_pk(tenant: &str) -> String {
    format!("T#{tenant}")
}

pub const TENANT_SK: &str = "TENANT";
pub const API_KEY_SK: &str = "AK";
/// The sort-key prefix of a tenant's webhook keys.
pub const WEBHOOK_KEY_PREFIX: &str = "KEY#";
/// The sort-key prefix of a tenant's rules.
pub const RULE_PREFIX: &str = "R#";

pub fn api_key_pk(hash: &str) -> String {
    format!("AK#{hash}")
}

pub fn webhook_key_sk(created_ms: i64) -> String {
    format!("{WEBHOOK_KEY_PREFIX}{created_ms:013}")
}

pub fn rule_sk(rule: &str) -> String {
    format!("{RULE_PREFIX}{rule}")
}

pub fn event_sk(event: &str) -> String {
    format!("E#{event}")
}

pub fn delivery_sk(delivery: &str) -> String {
    format!("D#{delivery}")
}

pub fn key(pk: String, sk: String) -> Item {
    HashMap::from([
        (PARTITION_KEY.to_owned(), AttributeValue::S(pk)),
        (SORT_KEY.to_owned(), AttributeValue::S(sk)),
    ])
}

pub fn tenant_key(tenant: &str) -> Item {
    key(tenant_pk(tenant), TENANT_SK.into())
}

pub fn api_key_key(hash: &str) -> Item {
    key(api_key_pk(hash), API_KEY_SK.into())
}

pub fn rule_key(tenant: &str, rule: &str) -> Item {
    key(tenant_pk(tenant), rule_sk(rule))
}

pub fn rules_by_trigger(tenant: &str, trigger: &str) -> String {
    format!("TR#{tenant}#{trigger}")
}

pub fn event_key(tenant: &str, event: &str) -> Item {
    key(tenant_pk(tenant), event_sk(event))
}

/// Where a delivery is: in the log itself for an id stamped with its time
/// ([`DeliveryId::stamped`]), else where an earlier Hookline put it.
pub fn delivery_key(tenant: &str, delivery: &str) -> Item {
    match DeliveryId::stored(delivery).stamp() {
        Some(at) => {
            let (pk, sk) = delivery_log_keys(tenant, delivery, at.as_millis());
            key(pk, sk)
        }
        None => key(tenant_pk(tenant), delivery_sk(delivery)),
    }
}

/// The count of a rate-limited rule's sends in one second.
pub fn rate_key(tenant: &str, rule: &str, second: i64) -> Item {
    key(tenant_pk(tenant), format!("RL#{rule}#{second}"))
}

/// The count of a tenant's test sends in one minute.
pub fn test_send_key(tenant: &str, minute: i64) -> Item {
    key(tenant_pk(tenant), format!("TS#{minute}"))
}

/// The delivery log's keys for a delivery: one of the tenant's shards, by a
/// hash of its id (FNV-1a: ids are hashes already, but need not be), and its
/// place in time. The table's own keys for a delivery with a stamped id;
/// gsi2's for one an earlier Hookline made.
pub fn delivery_log_keys(tenant: &str, delivery: &str, created_ms: i64) -> (String, String) {
    let hash = delivery.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (
        delivery_log_pk(tenant, hash % DELIVERY_LOG_SHARDS),
        gsi_sort(created_ms, delivery),
    )
}

pub fn delivery_log_pk(tenant: &str, shard: u32) -> String {
    format!("DL#{tenant}#{shard}")
}

/// The `pk` and `sk` of an item read back.
pub fn pk_sk(item: &Item) -> (&str, &str) {
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "",
    };
    (get(PARTITION_KEY), get(SORT_KEY))
}

#[derive(Serialize, Deserialize)]
pub struct TenantItem {
    pub pk: String,
    pub sk: String,
    pub created_at: i64,
    /// How many rules the tenant has, moved in the same transaction as each
    /// rule so the limit holds under concurrent creates.
    #[serde(default)]
    pub rule_count: u64,
}

#[derive(Serialize, Deserialize)]
pub struct ApiKeyItem {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct WebhookKeyItem {
    pub pk: String,
    pub sk: String,
    pub key: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A rule: keys plus the rule's stored record ([`hookline_core::record`]),
/// and its receiver's health, which the deliverer keeps (a PUT of the rule,
/// as an edit makes, starts it healthy again).
/// Where a rule is filed on the index under its (tenant, trigger): a
/// universal rule under `R#{rule}`, any other under
/// `S#{scope key}#R#{rule}` ([`Scope::key`]), so that an event reads only the
/// prefixes of its own scope keys ([`rules_filed_under`]). Every rule was
/// filed under `R#{rule}` before; the universal prefix finds those until the
/// router files them anew.
pub fn rule_index_sk(rule: &Rule) -> String {
    match rule.scope {
        Scope::Universal => rule_sk(&rule.id),
        _ => format!("S#{}#{}", rule.scope.key(), rule_sk(&rule.id)),
    }
}

/// The index prefix the rules of `scope_key` are filed under.
pub fn rules_filed_under(scope_key: &str) -> String {
    if scope_key == Scope::Universal.key() {
        RULE_PREFIX.to_owned()
    } else {
        format!("S#{scope_key}#")
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct RuleItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub rule: String,
    /// The breaker's [`Health`], each part absent while it is at its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trips: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    /// Until when a probe attempt is running (circuit probing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_until: Option<i64>,
}

impl RuleItem {
    pub fn new(rule: &Rule) -> Self {
        Self {
            pk: tenant_pk(&rule.tenant_id),
            sk: rule_sk(&rule.id),
            gsi1pk: rules_by_trigger(&rule.tenant_id, rule.trigger.as_str()),
            gsi1sk: rule_index_sk(rule),
            rule: encode_rule(rule),
            attempts: None,
            failures: None,
            window_start: None,
            open_until: None,
            trips: None,
            failing_since: None,
            probe_until: None,
        }
    }

    pub fn health(&self) -> Health {
        Health {
            attempts: self.attempts.unwrap_or(0),
            failures: self.failures.unwrap_or(0),
            window_start: self.window_start.map(Timestamp::from_millis),
            open_until: self.open_until.map(Timestamp::from_millis),
            trips: self.trips.unwrap_or(0),
            failing_since: self.failing_since.map(Timestamp::from_millis),
        }
    }

    pub fn rule(&self, tenant: &TenantId) -> Result<Rule, StoreError> {
        decode_rule(&self.rule, tenant).map_err(|e| StoreError::unreadable("rule", e))
    }
}

/// Every attribute an [`EventItem`] may have: the ingest function's role may
/// write these and no others (template.yaml).
pub const EVENT_ATTRIBUTES: &[&str] = &[
    "pk",
    "sk",
    "tenant_id",
    "id",
    "trigger",
    "occurred_at",
    "received_at",
    "payment_page_id",
    "upsell_id",
    "first_payment",
    "lines",
    "data",
    "subject",
    "ttl",
];

#[derive(Clone, Serialize, Deserialize)]
pub struct EventItem {
    pub pk: String,
    pub sk: String,
    pub tenant_id: String,
    pub id: String,
    pub trigger: String,
    pub occurred_at: i64,
    pub received_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_page_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upsell_id: Option<String>,
    pub first_payment: bool,
    pub lines: Vec<LineRecord>,
    /// The event's `data`, byte for byte as ingested.
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectRecord>,
    pub ttl: i64,
}

impl EventItem {
    /// An event as ingest stores it, received `now`.
    pub fn new(event: &Event, now: Timestamp) -> Self {
        EventItem {
            pk: tenant_pk(&event.tenant_id),
            sk: event_sk(&event.id),
            tenant_id: event.tenant_id.to_string(),
            id: event.id.to_string(),
            trigger: event.trigger.as_str().to_owned(),
            occurred_at: event.occurred_at.as_millis(),
            received_at: now.as_millis(),
            payment_page_id: event.payment_page_id.clone(),
            upsell_id: event.upsell_id.clone(),
            first_payment: event.first_payment,
            lines: event.lines.iter().map(LineRecord::from).collect(),
            data: event.data.get().to_owned(),
            subject: event.subject.as_ref().map(SubjectRecord::from),
            ttl: ttl_from(now),
        }
    }

    pub fn event(self) -> Result<Event, StoreError> {
        Ok(Event {
            trigger: self
                .trigger
                .parse()
                .map_err(|e| StoreError::unreadable("event trigger", e))?,
            occurred_at: Timestamp::from_millis(self.occurred_at),
            data: RawValue::from_string(self.data)
                .map_err(|e| StoreError::unreadable("event data", e))?,
            id: EventId::stored(self.id),
            tenant_id: TenantId::stored(self.tenant_id),
            payment_page_id: self.payment_page_id,
            upsell_id: self.upsell_id,
            first_payment: self.first_payment,
            lines: self.lines.into_iter().map(Line::from).collect(),
            subject: self.subject.map(Subject::from),
            trace: None,
        })
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DeliveryItem {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi2sk: Option<String>,
    pub id: String,
    pub event_id: String,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_product_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    /// Every attempt made; `attempts` keeps the most recent ones.
    #[serde(default)]
    pub attempt_count: Option<u64>,
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    pub ttl: i64,
}

/// An order line as event items and delivery messages keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecord {
    pub id: String,
    pub product_id: String,
}

impl From<&Line> for LineRecord {
    fn from(l: &Line) -> Self {
        LineRecord {
            id: l.id.clone(),
            product_id: l.product_id.clone(),
        }
    }
}

impl From<LineRecord> for Line {
    fn from(l: LineRecord) -> Self {
        Line {
            id: l.id,
            product_id: l.product_id,
        }
    }
}

impl DeliveryItem {
    /// Its place in the log, in either layout: the cursor after it.
    pub fn log_sort(&self) -> String {
        gsi_sort(self.created_at, &self.id)
    }

    /// The delivery as the API shows it; an unknown status is an error.
    pub fn delivery(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            status: self
                .status
                .parse()
                .map_err(|e| StoreError::unreadable("delivery status", e))?,
            id: DeliveryId::stored(self.id),
            event_id: EventId::stored(self.event_id),
            rule_id: RuleId::stored(self.rule_id),
            line_id: self.line_id,
            created_at: Timestamp::from_millis(self.created_at),
            // Items recorded before the count existed kept every attempt.
            attempt_count: self.attempt_count.unwrap_or(self.attempts.len() as u64),
            attempts: self.attempts.into_iter().map(Attempt::from).collect(),
            waiting: None,
        })
    }

    pub fn line(&self) -> Option<LineRecord> {
        Some(LineRecord {
            id: self.line_id.clone()?,
            product_id: self.line_product_id.clone()?,
        })
    }
}

/// How long events, deliveries and their attempts are kept: 30 days.
pub fn ttl_from(t: Timestamp) -> i64 {
    t.as_secs() + 30 * 24 * 3600
}

pub fn gsi_sort(created_at: i64, id: &str) -> String {
    format!("{created_at:013}#{id}")
}

#[cfg(test)]
mod event_attributes {
    use super::*;

    /// The list is the item's: an event item with every field set has
    /// exactly these attributes.
    #[test]
    fn name_every_field_of_an_event_item() {
        let item = EventItem {
            pk: "T#t".into(),
            sk: "E#e".into(),
            tenant_id: "t".into(),
            id: "e".into(),
            trigger: "order.paid".into(),
            occurred_at: 1,
            received_at: 2,
            payment_page_id: Some("p".into()),
            upsell_id: Some("u".into()),
            first_payment: true,
            lines: Vec::new(),
            data: "{}".into(),
            subject: Some(SubjectRecord {
                kind: "order".into(),
                id: "o".into(),
            }),
            ttl: 3,
        };
        let value = serde_json::to_value(&item).unwrap();
        let mut fields: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut listed = EVENT_ATTRIBUTES.to_vec();
        fields.sort_unstable();
        listed.sort_unstable();
        assert_eq!(fields, listed);
    }
}
