//! The single-table layout. Every item has `pk` and `sk`; items listed by
//! another key also carry `gsi1pk`/`gsi1sk`.
//!
//! | item        | pk               | sk                  | gsi1pk                   | gsi1sk                  |
//! |-------------|------------------|---------------------|--------------------------|-------------------------|
//! | tenant      | `T#{tenant}`     | `TENANT`            |                          |                         |
//! | API key     | `AK#{hash}`      | `AK`                |                          |                         |
//! | webhook key | `T#{tenant}`     | `KEY#{created_ms}`  |                          |                         |
//! | rule        | `T#{tenant}`     | `R#{rule}`          | `TR#{tenant}#{trigger}`  | `R#{rule}`              |
//! | event       | `T#{tenant}`     | `E#{event}`         |                          |                         |
//! | delivery    | `T#{tenant}`     | `D#{delivery}`      | `DL#{tenant}`            | `{created_ms:013}#{id}` |
//!
//! Rules for an event are one Query on the index by (tenant, trigger); the
//! delivery log is one Query on it by tenant, newest first.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::event::Line;
use hookline_core::{Attempt, Rule, Timestamp};
use serde::{Deserialize, Serialize};

pub type Item = HashMap<String, AttributeValue>;

pub fn tenant_pk(tenant: &str) -> String {
    format!("T#{tenant}")
}

pub fn key(pk: String, sk: String) -> Item {
    HashMap::from([
        (crate::PARTITION_KEY.to_owned(), AttributeValue::S(pk)),
        (crate::SORT_KEY.to_owned(), AttributeValue::S(sk)),
    ])
}

pub fn tenant_key(tenant: &str) -> Item {
    key(tenant_pk(tenant), "TENANT".into())
}

pub fn api_key_key(hash: &str) -> Item {
    key(format!("AK#{hash}"), "AK".into())
}

pub fn rule_key(tenant: &str, rule: &str) -> Item {
    key(tenant_pk(tenant), format!("R#{rule}"))
}

pub fn rules_by_trigger(tenant: &str, trigger: &str) -> String {
    format!("TR#{tenant}#{trigger}")
}

pub fn event_key(tenant: &str, event: &str) -> Item {
    key(tenant_pk(tenant), format!("E#{event}"))
}

pub fn delivery_key(tenant: &str, delivery: &str) -> Item {
    key(tenant_pk(tenant), format!("D#{delivery}"))
}

pub fn deliveries_of(tenant: &str) -> String {
    format!("DL#{tenant}")
}

#[derive(Serialize, Deserialize)]
pub struct TenantItem {
    pub pk: String,
    pub sk: String,
    pub created_at: i64,
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

/// A rule: keys plus the rule as the API shows it, as a JSON document.
#[derive(Serialize, Deserialize)]
pub struct RuleItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub rule: String,
}

impl RuleItem {
    pub fn new(rule: &Rule) -> Result<Self, serde_json::Error> {
        Ok(Self {
            pk: tenant_pk(&rule.tenant_id),
            sk: format!("R#{}", rule.id),
            gsi1pk: rules_by_trigger(&rule.tenant_id, rule.trigger.as_str()),
            gsi1sk: format!("R#{}", rule.id),
            rule: serde_json::to_string(rule)?,
        })
    }

    pub fn rule(&self, tenant: &str) -> Result<Rule, serde_json::Error> {
        let mut rule: Rule = serde_json::from_str(&self.rule)?;
        rule.tenant_id = tenant.to_owned();
        Ok(rule)
    }
}

#[derive(Serialize, Deserialize)]
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
    pub lines: Vec<Line>,
    /// The event's `data`, byte for byte as ingested.
    pub data: String,
    /// Set once the router has recorded and queued the event's deliveries.
    #[serde(default)]
    pub routed: bool,
    pub ttl: i64,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DeliveryItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub id: String,
    pub event_id: String,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_product_id: Option<String>,
    pub status: String,
    pub created_at: i64,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    pub ttl: i64,
}

/// How long events, deliveries and their attempts are kept: 30 days.
pub fn ttl_from(t: Timestamp) -> i64 {
    t.as_secs() + 30 * 24 * 3600
}

pub fn gsi_sort(created_at: i64, id: &str) -> String {
    format!("{created_at:013}#{id}")
}
