//! An event as the platform reports it, parsed and validated from the ingest
//! body with errors that name the offending field.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{FieldError, FieldErrorKind, check_id, is_object, parse_json};
use crate::id::{EventId, TenantId};
use crate::time::Timestamp;
use crate::trigger::{Trigger, known_triggers};

/// One order line: the unit of per-order-line delivery (order bumps are lines).
/// It serializes as the full body's `line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub id: String,
    pub product_id: String,
}

impl Line {
    /// A line from its stored columns: one when both are there.
    pub fn from_parts(id: Option<String>, product_id: Option<String>) -> Option<Line> {
        Some(Line {
            id: id?,
            product_id: product_id?,
        })
    }
}

/// What an event is about (`{"type": "order", "id": "ord_1"}`), for the
/// thin envelope's `triggerable_type` and `triggerable_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An event as ingested and validated: built by [`Event::from_json`] (or
/// Hookline itself), never deserialized around its checks.
///
/// It serializes as the ingest body it could have come from, which reads
/// back as the same event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: EventId,
    pub tenant_id: TenantId,
    #[serde(rename = "type")]
    pub trigger: Trigger,
    pub occurred_at: Timestamp,
    pub payment_page_id: Option<String>,
    pub upsell_id: Option<String>,
    pub first_payment: bool,
    pub lines: Vec<Line>,
    /// The object receivers get, kept byte for byte as ingested.
    pub data: Box<RawValue>,
    pub subject: Option<Subject>,
    /// The W3C `traceparent` of the ingest that accepted it, when traced:
    /// what its deliveries' spans join. Carried beside the event through
    /// queues, never stored with it and never sent to a receiver.
    #[serde(skip)]
    pub trace: Option<String>,
}

/// A business event the platform reports. Fields Hookline does not read are
/// ignored.
//
// Every field is optional to serde so that a missing one is refused by name
// in `Event::from_json`; the document marks the required ones.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "evt_1", "tenant_id": "demo",
    "type": Trigger::OrderPaid, "occurred_at": "2026-11-29T12:00:00Z",
    "lines": [{"id": "line_1", "product_id": "prod_1"}], "data": {"order_id": "ord_1", "amount": 4900}})))]
pub struct EventIn {
    /// The platform's id: the same id twice is one event (a duplicate).
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    tenant_id: Option<String>,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = crate::trigger::PlatformTrigger))]
    kind: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, format = DateTime))]
    occurred_at: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::error::IdText>))]
    payment_page_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::error::IdText>))]
    upsell_id: Option<String>,
    /// Whether this is a subscription's first payment (default true).
    first_payment: Option<bool>,
    /// The order lines (order bumps are lines), at most 1000. A line id that
    /// repeats an earlier one is refused (422 `repeated_line`).
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    lines: Option<Vec<LineIn>>,
    /// What receivers get, byte for byte.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Object))]
    data: Option<Box<RawValue>>,
    /// What the event is about, for thin payloads.
    subject: Option<SubjectIn>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectIn {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    kind: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    id: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineIn {
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(required = true, nullable = false, value_type = crate::error::IdText))]
    product_id: Option<String>,
}

fn required<T>(field: &str, v: Option<T>) -> Result<T, FieldError> {
    v.ok_or_else(|| FieldError::invalid(field, "is required"))
}

fn optional_id(field: &str, v: Option<String>) -> Result<Option<String>, FieldError> {
    if let Some(v) = &v {
        check_id(field, v)?;
    }
    Ok(v)
}

impl Event {
    /// Parses an ingest body. Unknown fields are ignored so producers can send
    /// more than Hookline reads.
    pub fn from_json(body: &[u8]) -> Result<Event, FieldError> {
        let input: EventIn = parse_json(body)?;

        let id = EventId::parse("id", required("id", input.id)?)?;
        let tenant_id = TenantId::parse("tenant_id", required("tenant_id", input.tenant_id)?)?;
        let kind = required("type", input.kind)?;
        let trigger = kind
            .parse::<Trigger>()
            .ok()
            .filter(|t| t.from_platform())
            .ok_or_else(|| FieldError {
                kind: FieldErrorKind::UnknownType,
                field: "type".into(),
                message: format!(
                    "unknown event type {kind:?}; expected one of {}",
                    known_triggers(Trigger::from_platform)
                ),
            })?;
        let occurred_at = required("occurred_at", input.occurred_at)?;
        let occurred_at = Timestamp::parse_rfc3339(&occurred_at).ok_or_else(|| {
            FieldError::invalid(
                "occurred_at",
                "must be an RFC 3339 timestamp such as 2026-11-29T12:00:00Z",
            )
        })?;
        let payment_page_id = optional_id("payment_page_id", input.payment_page_id)?;
        let upsell_id = optional_id("upsell_id", input.upsell_id)?;
        let data = required("data", input.data)?;
        if !is_object(data.get().as_bytes()) {
            return Err(FieldError::invalid("data", "must be a JSON object"));
        }

        let raw_lines = input.lines.unwrap_or_default();
        if raw_lines.len() > 1000 {
            return Err(FieldError::invalid("lines", "must have at most 1000 lines"));
        }
        let mut lines: Vec<Line> = Vec::with_capacity(raw_lines.len());
        // Checked against a set: a 1,000-line order compared pairwise is half
        // a million comparisons at ingest.
        let mut seen = std::collections::HashSet::with_capacity(raw_lines.len());
        for (i, l) in raw_lines.into_iter().enumerate() {
            let id_field = format!("lines[{i}].id");
            let id = required(&id_field, l.id)?;
            check_id(&id_field, &id)?;
            let product_field = format!("lines[{i}].product_id");
            let product_id = required(&product_field, l.product_id)?;
            check_id(&product_field, &product_id)?;
            // Line ids make delivery ids; a repeat would collapse two deliveries.
            if !seen.insert(id.clone()) {
                return Err(FieldError {
                    kind: FieldErrorKind::Refused("repeated_line"),
                    field: id_field,
                    message: format!("repeats line id {id:?}"),
                });
            }
            lines.push(Line { id, product_id });
        }

        let subject = match input.subject {
            None => None,
            Some(s) => {
                let kind = required("subject.type", s.kind)?;
                check_id("subject.type", &kind)?;
                let id = required("subject.id", s.id)?;
                check_id("subject.id", &id)?;
                Some(Subject { kind, id })
            }
        };
        Ok(Event {
            id,
            tenant_id,
            trigger,
            occurred_at,
            payment_page_id,
            upsell_id,
            first_payment: input.first_payment.unwrap_or(true),
            lines,
            data,
            subject,
            trace: None,
        })
    }
}

impl Event {
    /// The operational event raised when `rule` was disabled at `at` for
    /// failing since `failing_since`, for the tenant's `rule.disabled` rules.
    /// Its id is the same for the same disabling, so raising it twice
    /// delivers it once.
    pub fn rule_disabled(
        rule: &crate::rule::Rule,
        at: Timestamp,
        failing_since: Timestamp,
        last_error: Option<&str>,
    ) -> Event {
        let data = serde_json::json!({
            "rule_id": rule.id,
            "name": rule.name,
            "url": rule.url,
            "reason": rule.disabled_reason,
            "disabled_at": at,
            "failing_since": failing_since,
            "last_error": last_error,
        });
        Event {
            id: EventId::rule_disabled(&rule.id, at),
            tenant_id: rule.tenant_id.clone(),
            trigger: Trigger::RuleDisabled,
            occurred_at: at,
            payment_page_id: None,
            upsell_id: None,
            first_payment: true,
            lines: Vec::new(),
            // A json! object always serializes.
            data: RawValue::from_string(data.to_string()).unwrap_or_default(),
            subject: Some(Subject {
                kind: "rule".into(),
                id: rule.id.to_string(),
            }),
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{ "id": "evt_123", "tenant_id": "shop_1", "type": "order.paid",
        "occurred_at": "2026-11-29T12:00:00Z", "payment_page_id": "page_9", "upsell_id": null,
        "lines": [ { "id": "line_1", "product_id": "prod_1" } ], "data": { "amount": 10 }, "extra": 1 }"#;

    #[test]
    fn parses_the_contract_example() {
        let e = Event::from_json(GOOD.as_bytes()).unwrap();
        assert_eq!(e.trigger, Trigger::OrderPaid);
        assert!(e.first_payment);
        assert_eq!(e.payment_page_id.as_deref(), Some("page_9"));
        assert_eq!(e.upsell_id, None);
        assert_eq!(e.lines.len(), 1);
        assert_eq!(e.data.get(), r#"{ "amount": 10 }"#);
    }

    fn err(body: &str) -> FieldError {
        Event::from_json(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(err("{").field, "body");
        assert_eq!(err(&GOOD.replace(r#""id": "evt_123", "#, "")).field, "id");
        let e = err(&GOOD.replace("order.paid", "order.refunded"));
        assert_eq!(
            (e.kind, e.field.as_str()),
            (FieldErrorKind::UnknownType, "type")
        );
        assert_eq!(
            err(&GOOD.replace("2026-11-29T12:00:00Z", "today")).field,
            "occurred_at"
        );
        assert_eq!(
            err(&GOOD.replace(r#""product_id": "prod_1""#, r#""product_id": 5"#)).field,
            "lines[0].product_id"
        );
        assert_eq!(
            err(&GOOD.replace(r#", "data": { "amount": 10 }"#, "")).field,
            "data"
        );
        let twice = GOOD.replace(
            r#"{ "id": "line_1", "product_id": "prod_1" }"#,
            r#"{ "id": "line_1", "product_id": "prod_1" }, { "id": "line_1", "product_id": "prod_2" }"#,
        );
        assert_eq!(err(&twice).field, "lines[1].id");
        assert_eq!(err(&GOOD.replace("shop_1", "")).field, "tenant_id");
    }
}
