//! How a rule, an event's subject and an attempt are stored. Each record is its own type,
//! not the API's JSON: a change to what the API shows cannot silently change
//! what is on disk or in the table, and both backends decode a stored rule
//! the one way written here. The encodings are the ones first stored, so
//! stored rules and subjects read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::delivery::Attempt;
use crate::error::FieldError;
use crate::event::Subject;
use crate::filter::Filter;
use crate::id::{RuleId, TenantId};
use crate::rule::{DisabledReason, PayloadFormat, Rule, RuleOptions, Scope};
use crate::time::Timestamp;
use crate::trigger::Trigger;

#[derive(Serialize, Deserialize)]
struct RuleRecord {
    id: String,
    name: String,
    trigger: Trigger,
    url: String,
    scope: ScopeRecord,
    per_order_line: bool,
    first_payment_only: bool,
    enabled: bool,
    created_at: Timestamp,
    // The options came later: a record without them has the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filter: Option<Value>,
    #[serde(default)]
    payload: PayloadFormat,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<DisabledReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled_at: Option<Timestamp>,
}

/// A stored rule that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("its filter: {0}")]
    Filter(#[from] FieldError),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ScopeRecord {
    Universal,
    Product { id: String },
    PaymentPage { id: String },
    Upsell { id: String },
}

/// The stored text of a rule (its tenant is in the store's key, not here).
pub fn encode_rule(rule: &Rule) -> String {
    let record = RuleRecord {
        id: rule.id.to_string(),
        name: rule.name.clone(),
        trigger: rule.trigger,
        url: rule.url.clone(),
        scope: match &rule.scope {
            Scope::Universal => ScopeRecord::Universal,
            Scope::Product { id } => ScopeRecord::Product { id: id.clone() },
            Scope::PaymentPage { id } => ScopeRecord::PaymentPage { id: id.clone() },
            Scope::Upsell { id } => ScopeRecord::Upsell { id: id.clone() },
        },
        per_order_line: rule.per_order_line,
        first_payment_only: rule.first_payment_only,
        enabled: rule.enabled,
        created_at: rule.created_at,
        filter: rule.options.filter.as_ref().map(|f| f.source().clone()),
        payload: rule.options.payload,
        headers: rule.options.headers.clone(),
        rate_limit: rule.options.rate_limit,
        disabled_reason: rule.disabled_reason,
        disabled_at: rule.disabled_at,
    };
    // Strings, booleans and enums of unit or string variants always serialize.
    serde_json::to_string(&record).unwrap_or_default()
}

/// A stored rule of `tenant_id`, back from [`encode_rule`]'s text.
pub fn decode_rule(text: &str, tenant_id: &TenantId) -> Result<Rule, RecordError> {
    let r: RuleRecord = serde_json::from_str(text)?;
    Ok(Rule {
        id: RuleId::stored(r.id),
        tenant_id: tenant_id.clone(),
        name: r.name,
        trigger: r.trigger,
        url: r.url,
        scope: match r.scope {
            ScopeRecord::Universal => Scope::Universal,
            ScopeRecord::Product { id } => Scope::Product { id },
            ScopeRecord::PaymentPage { id } => Scope::PaymentPage { id },
            ScopeRecord::Upsell { id } => Scope::Upsell { id },
        },
        per_order_line: r.per_order_line,
        first_payment_only: r.first_payment_only,
        enabled: r.enabled,
        created_at: r.created_at,
        options: RuleOptions {
            filter: r.filter.as_ref().map(Filter::parse).transpose()?,
            payload: r.payload,
            headers: r.headers,
            rate_limit: r.rate_limit,
        },
        disabled_reason: r.disabled_reason,
        disabled_at: r.disabled_at,
    })
}

/// What an event is about, as both stores keep it: `{"type", "id"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRecord {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl From<&Subject> for SubjectRecord {
    fn from(s: &Subject) -> Self {
        SubjectRecord {
            kind: s.kind.clone(),
            id: s.id.clone(),
        }
    }
}

impl From<SubjectRecord> for Subject {
    fn from(s: SubjectRecord) -> Self {
        Subject {
            kind: s.kind,
            id: s.id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_form_rules_were_first_stored_in() {
        let stored = r#"{"id":"rul_1","name":"n","trigger":"order.paid","url":"https://e.com/",
            "scope":{"type":"product","id":"p1"},"per_order_line":true,
            "first_payment_only":false,"enabled":true,"created_at":"2026-11-29T12:00:00Z"}"#;
        let rule = decode_rule(stored, &TenantId::stored("t")).unwrap();
        assert_eq!(rule.tenant_id, "t");
        assert_eq!(rule.scope, Scope::Product { id: "p1".into() });
        assert!(rule.per_order_line);
        assert_eq!(
            decode_rule(&encode_rule(&rule), &TenantId::stored("t")).unwrap(),
            rule
        );
    }

    #[test]
    fn a_subject_keeps_the_form_first_stored() {
        let stored = r#"{"type":"order","id":"ord_1"}"#;
        let record: SubjectRecord = serde_json::from_str(stored).unwrap();
        let subject = Subject::from(record);
        assert_eq!(
            (subject.kind.as_str(), subject.id.as_str()),
            ("order", "ord_1")
        );
        assert_eq!(
            serde_json::to_string(&SubjectRecord::from(&subject)).unwrap(),
            stored
        );
    }

    #[test]
    fn refuses_what_is_not_a_rule() {
        assert!(decode_rule(r#"{"id":"r"}"#, &TenantId::stored("t")).is_err());
    }
}

/// An attempt as both stores keep it (in a delivery's item, or its row's
/// JSON list): a type of its own, so a change to the core's [`Attempt`]
/// cannot silently change what is stored.
#[derive(Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

impl From<&Attempt> for AttemptRecord {
    fn from(a: &Attempt) -> Self {
        AttemptRecord {
            at: a.at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error.clone(),
            response_body: a.response_body.clone(),
        }
    }
}

impl From<AttemptRecord> for Attempt {
    fn from(a: AttemptRecord) -> Self {
        Attempt {
            at: a.at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error,
            response_body: a.response_body,
        }
    }
}
