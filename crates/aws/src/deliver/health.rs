//! A rule's health after an attempt: the breaker's step written on
//! condition, and the rule disabled when it has failed too long or its
//! receiver said it is gone.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::ReturnValue;
use hookline_core::breaker::Health;
use hookline_core::ports::{Settlement, Store, StoreError};
use hookline_core::rule::DisabledReason;
use hookline_core::{Event, Timestamp};

use crate::backend::AwsBackend;
use crate::items::*;
use crate::table::{from_item, to_item};

/// How often a health step is tried again when another settlement moved
/// the rule's health first.
const HEALTH_TRIES: usize = 5;

/// Tells the rule's breaker what an attempt showed ([`Breaker::after`]).
/// The step is written only if the health is still what it was computed
/// from (attempts of one rule settle side by side, in many functions);
/// otherwise the health is read again and the step taken again. A success
/// of a rule that both the job and this process saw healthy writes nothing,
/// so the healthy path costs no write; a success in another process's
/// fresh window may so go uncounted until this one sees the window.
///
/// [`Breaker::after`]: hookline_core::breaker::Breaker::after
pub(super) async fn record_health(backend: &AwsBackend, s: &Settlement) -> Result<(), StoreError> {
    let Some(ok) = s.receiver_ok else {
        return Ok(());
    };
    let seen = backend.health_seen(&s.tenant_id, &s.rule_id);
    if ok && s.rule_health == Health::default() && seen.is_none() {
        return Ok(());
    }
    let key = rule_key(&s.tenant_id, &s.rule_id);
    let mut before = seen.unwrap_or(s.rule_health);
    for _ in 0..HEALTH_TRIES {
        let after = backend.breaker.after(&before, ok, s.attempt.at);
        if after == before {
            return Ok(());
        }
        let written = backend
            .table
            .update(key.clone(), |u| {
                health_step(u, &before, &after).return_values(ReturnValue::AllNew)
            })
            .await?;
        let Some(item) = written else {
            // Moved meanwhile, or the rule is gone: read it again.
            match backend.table.get::<RuleItem>(key.clone()).await? {
                Some(item) => before = item.health(),
                None => return Ok(()),
            }
            backend.saw_health(&s.tenant_id, &s.rule_id, before);
            continue;
        };
        backend.saw_health(&s.tenant_id, &s.rule_id, after);
        if let Some(since) = after.failing_since
            && backend.breaker.should_disable(since, s.attempt.at)
        {
            let rule = from_item::<RuleItem>(item)?.rule(&s.tenant_id)?;
            disable_rule(backend, s, rule, DisabledReason::Failing, since).await?;
        }
        return Ok(());
    }
    tracing::warn!(tenant = %s.tenant_id, rule = %s.rule_id,
        "the rule's health kept moving; this attempt is not counted");
    Ok(())
}

/// The update that moves a rule item's health from `before` to `after`,
/// on condition that it is still `before`. A probe's claim goes whenever
/// the circuit's state does.
fn health_step(
    mut u: UpdateItemFluentBuilder,
    before: &Health,
    after: &Health,
) -> UpdateItemFluentBuilder {
    let count = |n: u32| (n > 0).then_some(i64::from(n));
    let millis = |t: Option<Timestamp>| t.map(|t| t.as_millis());
    let fields = [
        ("attempts", count(before.attempts), count(after.attempts)),
        ("failures", count(before.failures), count(after.failures)),
        (
            "window_start",
            millis(before.window_start),
            millis(after.window_start),
        ),
        (
            "open_until",
            millis(before.open_until),
            millis(after.open_until),
        ),
        ("trips", count(before.trips), count(after.trips)),
        (
            "failing_since",
            millis(before.failing_since),
            millis(after.failing_since),
        ),
    ];
    let (mut set, mut remove, mut condition) = (
        Vec::new(),
        Vec::new(),
        vec!["attribute_exists(pk)".to_owned()],
    );
    for (i, (name, was, will)) in fields.into_iter().enumerate() {
        u = u.expression_attribute_names(format!("#h{i}"), name);
        match was {
            Some(v) => {
                condition.push(format!("#h{i} = :b{i}"));
                u = u.expression_attribute_values(
                    format!(":b{i}"),
                    AttributeValue::N(v.to_string()),
                );
            }
            None => condition.push(format!("attribute_not_exists(#h{i})")),
        }
        match will {
            Some(v) => {
                set.push(format!("#h{i} = :a{i}"));
                u = u.expression_attribute_values(
                    format!(":a{i}"),
                    AttributeValue::N(v.to_string()),
                );
            }
            None => remove.push(format!("#h{i}")),
        }
    }
    if before.open_until != after.open_until {
        remove.push("probe_until".to_owned());
    }
    let mut expression = String::new();
    if !set.is_empty() {
        expression.push_str(&format!("SET {}", set.join(", ")));
    }
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    u.update_expression(expression.trim())
        .condition_expression(condition.join(" AND "))
}

/// Disables the rule of a receiver that said it is gone (410, or
/// `webhook-delivery: disable`).
pub(super) async fn disable_gone(backend: &AwsBackend, s: &Settlement) -> Result<(), StoreError> {
    let key = rule_key(&s.tenant_id, &s.rule_id);
    let Some(item) = backend.table.get::<RuleItem>(key).await? else {
        return Ok(());
    };
    let rule = item.rule(&s.tenant_id)?;
    disable_rule(backend, s, rule, DisabledReason::Gone, s.attempt.at).await
}

/// Disables a rule for `reason` (its health goes with the old item) and
/// raises `rule.disabled` for the tenant's alert rules.
async fn disable_rule(
    backend: &AwsBackend,
    s: &Settlement,
    mut rule: hookline_core::Rule,
    reason: DisabledReason,
    failing_since: Timestamp,
) -> Result<(), StoreError> {
    let at = s.attempt.at;
    if !rule.disable(reason, at) {
        return Ok(());
    }
    backend.forget_rule(&s.tenant_id, &s.rule_id);
    if !backend
        .table
        .put(to_item(&RuleItem::new(&rule))?, "attribute_exists(pk)")
        .await?
    {
        return Ok(());
    }
    let alert = Event::rule_disabled(&rule, at, failing_since, s.attempt.error.as_deref());
    backend.accept_event(&alert, at).await?;
    tracing::warn!(tenant = %s.tenant_id, rule = %s.rule_id, reason = ?reason, "disabled a rule");
    Ok(())
}
