//! An attempt onto its delivery's item: the one UpdateItem that writes a
//! delivery whole at its first attempt (or hold) and appends to it after.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use hookline_core::DeliveryStatus;
use hookline_core::delivery::ATTEMPT_LOG_LIMIT;
use hookline_core::id::DeliveryId;
use hookline_core::ports::{Lease, Outcome, Settlement, StoreError};

use crate::backend::AwsBackend;
use crate::items::*;
use crate::table::to_value;

/// Appends the attempt to its delivery, counts it and sets the status it
/// leads to: one UpdateItem per attempt, which writes the delivery's item
/// whole at its first (a delivery is recorded when its first attempt
/// settles, not when it is routed). Past [`ATTEMPT_LOG_LIMIT`] the oldest
/// entries are removed by a second one, so no item outgrows DynamoDB's
/// 400 KB. False when the attempt is not recorded: a delivery an earlier
/// Hookline made is gone from the table, or the delivery succeeded and
/// this attempt of another chain of it (or a duplicate message) did not.
pub(super) async fn record(backend: &AwsBackend, s: &Settlement) -> Result<bool, StoreError> {
    let attempt = to_value(&[AttemptRecord::from(&s.attempt)])?;
    let key = delivery_key(&s.tenant_id, &s.delivery_id);
    let n = |v: usize| AttributeValue::N(v.to_string());
    let Some(after) = backend
        .table
        .update(key.clone(), |u| {
            let u = u
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(
                    ":status",
                    AttributeValue::S(s.status().as_str().into()),
                )
                .expression_attribute_values(":attempt", attempt)
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::UpdatedNew);
            let appended = "#s = :status, attempts = list_append(if_not_exists(attempts, :none), :attempt), \
                 attempt_count = if_not_exists(attempt_count, :zero) + :one";
            let line = s.line.as_ref().map(LineRecord::from);
            let (u, exists) = match described(&s.delivery_id, &s.event_id, &s.rule_id, line) {
                Some(fields) => {
                    let (set, u) = set_fields(u, fields);
                    (u.update_expression(format!("SET {appended}, {set}")), None)
                }
                None => (
                    u.update_expression(format!("SET {appended}")),
                    Some("attribute_exists(pk)"),
                ),
            };
            // A delivery that succeeded stays so, whatever a second chain
            // of its attempts (it was routed twice) meets afterwards; only
            // a replay moves it.
            let keeps_success = !matches!(s.outcome, Outcome::Succeeded)
                && !matches!(s.lease, Some(Lease::Message { replay: true, .. }));
            let condition = match (exists, keeps_success) {
                (Some(e), true) => Some(format!("{e} AND #s <> :succeeded")),
                (None, true) => Some("attribute_not_exists(#s) OR #s <> :succeeded".to_owned()),
                (Some(e), false) => Some(e.to_owned()),
                (None, false) => None,
            };
            let u = if keeps_success {
                u.expression_attribute_values(
                    ":succeeded",
                    AttributeValue::S(DeliveryStatus::Succeeded.as_str().into()),
                )
            } else {
                u
            };
            u.set_condition_expression(condition)
        })
        .await?
    else {
        return Ok(false);
    };
    let logged = match after.get("attempts") {
        Some(AttributeValue::L(list)) => list.len(),
        _ => 0,
    };
    if logged > ATTEMPT_LOG_LIMIT {
        let oldest: Vec<String> = (0..logged - ATTEMPT_LOG_LIMIT)
            .map(|i| format!("attempts[{i}]"))
            .collect();
        let count = after.get("attempt_count").cloned().unwrap_or(n(0));
        // Only if no attempt was appended since; the next record trims otherwise.
        backend
            .table
            .update(key, |u| {
                u.update_expression(format!("REMOVE {}", oldest.join(", ")))
                    .condition_expression("attempt_count = :count")
                    .expression_attribute_values(":count", count)
            })
            .await?;
    }
    Ok(true)
}

/// What a delivery's item holds besides its status and attempts, set by
/// the update that records its first attempt or hold (later ones set the
/// same values again). `None` for a delivery an earlier Hookline made (its
/// id has no stamp): its item was written at routing, or is gone.
pub(super) fn described(
    id: &str,
    event: &str,
    rule: &str,
    line: Option<LineRecord>,
) -> Option<Vec<(&'static str, AttributeValue)>> {
    let created = DeliveryId::stored(id).stamp()?;
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let mut fields = vec![
        ("id", s(id)),
        ("event_id", s(event)),
        ("rule_id", s(rule)),
        ("created_at", n(created.as_millis())),
        (TTL_ATTRIBUTE, n(ttl_from(created))),
    ];
    if let Some(line) = line {
        fields.push(("line_id", s(&line.id)));
        fields.push(("line_product_id", s(&line.product_id)));
    }
    Some(fields)
}

/// `fields` as the assignments of a SET clause, their names and values
/// bound on `u`.
pub(super) fn set_fields(
    mut u: UpdateItemFluentBuilder,
    fields: Vec<(&'static str, AttributeValue)>,
) -> (String, UpdateItemFluentBuilder) {
    let mut set = Vec::with_capacity(fields.len());
    for (i, (name, value)) in fields.into_iter().enumerate() {
        u = u
            .expression_attribute_names(format!("#f{i}"), name)
            .expression_attribute_values(format!(":f{i}"), value);
        set.push(format!("#f{i} = :f{i}"));
    }
    (set.join(", "), u)
}
