//! The deliveries queue on SQS, one way for the Lambda deliverer and for the
//! `DeliveryQueue` port: a message becomes a job through one batched read
//! ([`load`]), and an attempt's settlement is recorded and acted on by one
//! [`settle`]. What the port adds is only what Lambda's event source mapping
//! does in production: receiving, and deleting the messages `settle` is done
//! with.
//!
//! `settle` acts on each outcome:
//! - succeeded: the message is done (deleted);
//! - retry: its visibility is set to the retry's delay, and it stays;
//! - dead: it is sent to the dead-letter queue, then done. A delivery can be
//!   dead before the queue's `maxReceiveCount` (its rule deleted, a schedule
//!   shorter than the queue's), so the deliverer moves it itself; the redrive
//!   policy stays behind it for messages that fail to be handled at all.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use hookline_core::breaker::{Circuit, Health};
use hookline_core::delivery::ATTEMPT_LOG_LIMIT;
use hookline_core::event::{Line, Subject};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{
    DeliveryJob, DeliveryQueue, Destination, KeyCache, Lease, Outcome, Settlement, Store,
    StoreError,
};
use hookline_core::{DeliveryStatus, Event, Timestamp};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::backend::AwsBackend;
use crate::calls::Calls;
use crate::error::{build_error, unreadable};
use crate::items::*;
use crate::messages::{DeliveryMessage, Payload};
use crate::queues::{Outgoing, outgoing};
use crate::table::{from_item, to_item};

/// A delivery message as received, with its lease.
pub(crate) struct Received {
    pub message: DeliveryMessage,
    pub lease: Lease,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BadRecord {
    #[error("the body is not a delivery message: {0}")]
    Body(String),
    #[error("the record has no receipt handle")]
    NoReceipt,
    #[error("the record has no readable ApproximateReceiveCount")]
    NoReceiveCount,
}

/// Reads a record as Lambda's event source mapping (or [`DeliveryQueue::receive`])
/// hands it over. The receive count is the attempt number, so a record
/// without one is refused rather than taken for a first attempt.
pub(crate) fn parse(record: &SqsMessage) -> Result<Received, BadRecord> {
    let body = record.body.clone().unwrap_or_default();
    let message: DeliveryMessage =
        serde_json::from_str(&body).map_err(|e| BadRecord::Body(e.to_string()))?;
    let receipt = record.receipt_handle.clone().ok_or(BadRecord::NoReceipt)?;
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .ok_or(BadRecord::NoReceiveCount)?;
    Ok(Received {
        lease: Lease::Message {
            receipt,
            body,
            receive_count,
            replay: message.replay,
        },
        message,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("the settlement's lease is not an SQS message's")]
struct ForeignLease;

/// The receipt handle and body of the message a settlement's lease names.
fn sqs_lease(lease: Option<&Lease>) -> Result<(&str, &str), StoreError> {
    match lease {
        Some(Lease::Message { receipt, body, .. }) => Ok((receipt, body)),
        _ => Err(StoreError::unavailable("settle", ForeignLease)),
    }
}

/// What loading found for one received message.
pub(crate) enum Loaded {
    Job(Box<DeliveryJob>),
    /// The rule's circuit is open (or another attempt is probing it): the
    /// message is to be sent again, due at `until`, with no attempt charged.
    HeldBack {
        message: Box<DeliveryMessage>,
        until: Timestamp,
    },
    /// Already succeeded (a duplicate message): nothing to send.
    Done,
    /// The event a message names (without carrying it) is not in the table.
    Missing,
}

/// Loads what the batch's attempts need that their messages do not carry,
/// in one batched read, and each tenant's signing keys once: the rules
/// always (their destination and health change); a delivery's status only
/// where it may have been attempted before (the message received before,
/// or sent to be checked), so a first attempt reads no delivery; an event
/// only when the message names it without carrying it.
pub(crate) async fn load(
    backend: &AwsBackend,
    received: Vec<Received>,
    now: Timestamp,
) -> Result<Vec<Loaded>, StoreError> {
    // The delivery's status is read strongly (a success a moment ago is
    // not attempted again); the event never changes once stored, and a
    // rule read a moment stale delays an edit by that moment.
    let (mut deliveries, mut others): (Vec<Item>, Vec<Item>) = (Vec::new(), Vec::new());
    let add = |into: &mut Vec<Item>, k: Item| {
        if !into.iter().any(|seen| pk_sk(seen) == pk_sk(&k)) {
            into.push(k);
        }
    };
    // The batch's rules, each decided once: kept, or read now.
    let mut rules: HashMap<(String, String), Option<RuleItem>> = HashMap::new();
    for r in &received {
        let m = &r.message;
        if checks_status(r) {
            add(&mut deliveries, delivery_key(&m.tenant_id, &m.delivery_id));
        }
        if m.event.is_none() {
            add(&mut others, event_key(&m.tenant_id, &m.event_id));
        }
        if let Entry::Vacant(slot) = rules.entry((m.tenant_id.clone(), m.rule_id.clone())) {
            match backend.cached_rule(&m.tenant_id, &m.rule_id) {
                Some(kept) => {
                    slot.insert(kept);
                }
                None => add(&mut others, rule_key(&m.tenant_id, &m.rule_id)),
            }
        }
    }
    let (mut found, others) = futures_util::future::try_join(
        backend.table.batch_get(deliveries),
        backend.table.batch_get_eventual(others),
    )
    .await?;
    found.extend(others);
    let take = |key: Item| found.iter().find(|i| pk_sk(i) == pk_sk(&key)).cloned();
    for r in &received {
        let m = &r.message;
        if let Entry::Vacant(slot) = rules.entry((m.tenant_id.clone(), m.rule_id.clone())) {
            let item = take(rule_key(&m.tenant_id, &m.rule_id))
                .map(from_item::<RuleItem>)
                .transpose()?;
            backend.cache_rule(&m.tenant_id, &m.rule_id, item.clone());
            slot.insert(item);
        }
    }
    let mut signing = KeyCache::default();
    let mut out = Vec::with_capacity(received.len());
    let mut seen = HashSet::new();
    for r in received {
        // A delivery queued twice (routed again) is attempted once a batch;
        // the other message is done with it.
        if !seen.insert((r.message.tenant_id.clone(), r.message.delivery_id.clone())) {
            out.push(Loaded::Done);
            continue;
        }
        let m = &r.message;
        if checks_status(&r) {
            let delivery: Option<DeliveryItem> = take(delivery_key(&m.tenant_id, &m.delivery_id))
                .map(from_item)
                .transpose()?;
            // None: not attempted yet (a delivery is recorded at its first
            // attempt or hold), or gone; either way it is attempted.
            if delivery.is_some_and(|d| d.status == DeliveryStatus::Succeeded.as_str()) {
                out.push(Loaded::Done);
                continue;
            }
        }
        let Received { mut message, lease } = r;
        let payload = match message.event.take() {
            Some(payload) => payload,
            None => match take(event_key(&message.tenant_id, &message.event_id)) {
                Some(item) => Payload::from(&from_item::<EventItem>(item)?.event()?),
                None => {
                    out.push(Loaded::Missing);
                    continue;
                }
            },
        };
        let m = message;
        let rule_item = rules
            .get(&(m.tenant_id.clone(), m.rule_id.clone()))
            .cloned()
            .flatten();
        // Health read at most a cache's time ago; this process's own
        // health steps drop the cached copy, so it sees them at once.
        let rule_health = rule_item.as_ref().map(RuleItem::health).unwrap_or_default();
        let attempt = m.attempts_before.saturating_add(lease.receive_count());
        match backend.breaker.circuit(&rule_health, now) {
            Circuit::Closed => {}
            Circuit::Open { until } => {
                out.push(held(m, payload, lease.receive_count(), until));
                continue;
            }
            Circuit::Probing => {
                if !claim_probe(backend, &m, now).await? {
                    let until = now.saturating_add(backend.breaker.cool_down);
                    out.push(held(m, payload, lease.receive_count(), until));
                    continue;
                }
            }
        }
        let tenant_id = TenantId::stored(m.tenant_id.as_str());
        let rule = rule_item.map(|r| r.rule(&tenant_id)).transpose()?;
        if let Some(limit) = rule.as_ref().and_then(|r| r.options.rate_limit)
            && let Some(until) = rate_limited(backend, &m, limit, now).await?
        {
            out.push(held(m, payload, lease.receive_count(), until));
            continue;
        }
        if !signing.contains(&tenant_id) {
            signing.insert(&tenant_id, backend.signing_keys(&tenant_id, now).await?);
        }
        out.push(Loaded::Job(Box::new(DeliveryJob {
            keys: signing.get(&tenant_id),
            trigger: payload
                .trigger
                .parse()
                .map_err(|e| unreadable("event trigger", e))?,
            occurred_at: Timestamp::from_millis(payload.occurred_at),
            data: RawValue::from_string(payload.data).map_err(|e| unreadable("event data", e))?,
            subject: payload.subject.map(Subject::from),
            destination: Destination::of(rule.as_ref()),
            delivery_id: DeliveryId::stored(m.delivery_id),
            tenant_id,
            event_id: EventId::stored(m.event_id),
            rule_id: RuleId::stored(m.rule_id),
            line: m.line.map(Line::from),
            lease: Some(lease),
            attempt,
            rule_health,
        })));
    }
    Ok(out)
}

/// Whether the delivery's status is read before its attempt: not for a
/// replay (attempted whatever it was), nor for a message received for the
/// first time that the router made with its delivery.
fn checks_status(r: &Received) -> bool {
    !r.message.replay && (r.message.check || r.lease.receive_count() > 1)
}

/// A message held back at this receive, which was no attempt.
fn held(
    mut message: DeliveryMessage,
    payload: Payload,
    receive_count: u32,
    until: Timestamp,
) -> Loaded {
    message.event = Some(payload);
    message = message.within_limit();
    message.attempts_before = message
        .attempts_before
        .saturating_add(receive_count.saturating_sub(1));
    Loaded::HeldBack {
        message: Box::new(message),
        until,
    }
}

/// Counts this send in its rule's current second; when the second is full,
/// answers when the next begins, for the message to wait until then.
async fn rate_limited(
    backend: &AwsBackend,
    m: &DeliveryMessage,
    limit: u32,
    now: Timestamp,
) -> Result<Option<Timestamp>, StoreError> {
    let second = now.as_secs();
    let counted = backend
        .table
        .take_slot(
            rate_key(&m.tenant_id, &m.rule_id, second),
            limit,
            second + 120,
        )
        .await?;
    Ok((!counted).then(|| Timestamp::from_millis((second + 1) * 1000)))
}

/// Makes this attempt the rule's one probe, unless another is running.
async fn claim_probe(
    backend: &AwsBackend,
    m: &DeliveryMessage,
    now: Timestamp,
) -> Result<bool, StoreError> {
    // A probe that never settles (its function died) frees the rule again
    // after one cool-down.
    let until = now.saturating_add(backend.breaker.cool_down).as_millis();
    let claimed = backend
        .table
        .update(rule_key(&m.tenant_id, &m.rule_id), |u| {
            u.update_expression("SET probe_until = :until")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(probe_until) OR probe_until < :now)",
                )
                .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.as_millis().to_string()))
        })
        .await?;
    Ok(claimed.is_some())
}

/// Sends held-back messages again, each due when its rule's circuit lets it
/// (SQS delays a message by at most 15 minutes; a longer hold takes more
/// rounds, each costing no attempt).
pub(crate) async fn hold(
    backend: &AwsBackend,
    message: &DeliveryMessage,
    until: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    // Held, a delivery is listed (pending, with why it waits) although no
    // attempt has recorded it.
    let m = message;
    if let Some(fields) = described(&m.delivery_id, &m.event_id, &m.rule_id, m.line.clone()) {
        backend
            .table
            .update(delivery_key(&m.tenant_id, &m.delivery_id), |u| {
                let (set, u) = set_fields(u, fields);
                u.update_expression(format!(
                    "SET {set}, #s = if_not_exists(#s, :pending), \
                     attempt_count = if_not_exists(attempt_count, :zero)"
                ))
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(
                    ":pending",
                    AttributeValue::S(DeliveryStatus::Pending.as_str().into()),
                )
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            })
            .await?;
    }
    let secs = (until.as_millis() - now.as_millis() + 999)
        .div_euclid(1000)
        .clamp(0, 900);
    backend
        .queues
        .send_delayed(
            &backend.settings.deliveries_queue_url,
            vec![outgoing(message)?],
            Some(i32::try_from(secs).unwrap_or(900)),
        )
        .await
}

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
async fn record_health(backend: &AwsBackend, s: &Settlement) -> Result<(), StoreError> {
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
            disable_for_failing(backend, s, rule, since).await?;
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

/// Disables a rule that has failed too long (its health goes with the old
/// item) and raises `rule.disabled` for the tenant's alert rules.
async fn disable_for_failing(
    backend: &AwsBackend,
    s: &Settlement,
    mut rule: hookline_core::Rule,
    failing_since: Timestamp,
) -> Result<(), StoreError> {
    let at = s.attempt.at;
    if !rule.disable_for_failing(at) {
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
    tracing::warn!(tenant = %s.tenant_id, rule = %s.rule_id, "disabled a rule that kept failing");
    Ok(())
}

/// What [`settle`] leaves of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Settled: the message may be deleted.
    Done,
    /// It stays on the queue and comes back when its visibility ends (at the
    /// retry's time, or after the queue's timeout when recording failed).
    Stays,
}

/// Appends the attempt to its delivery, counts it and sets the status it
/// leads to: one UpdateItem per attempt, which writes the delivery's item
/// whole at its first (a delivery is recorded when its first attempt
/// settles, not when it is routed). Past [`ATTEMPT_LOG_LIMIT`] the oldest
/// entries are removed by a second one, so no item outgrows DynamoDB's
/// 400 KB. False when the attempt is not recorded: a delivery an earlier
/// Hookline made is gone from the table, or the delivery succeeded and
/// this attempt of another chain of it (or a duplicate message) did not.
async fn record(backend: &AwsBackend, s: &Settlement) -> Result<bool, StoreError> {
    #[derive(Serialize)]
    struct AttemptList {
        attempts: [AttemptRecord; 1],
    }
    let attempt = to_item(&AttemptList {
        attempts: [AttemptRecord::from(&s.attempt)],
    })?
    .remove("attempts")
    .ok_or_else(|| build_error("encode attempt", BadRecord::Body("no attempts".into())))?;
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
fn described(
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
fn set_fields(
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

/// Records each attempt and acts on its outcome under its lease; answers
/// what is left of each message, in order. Failures are logged with their
/// AWS error code and leave the message to come back.
pub(crate) async fn settle(backend: &AwsBackend, settlements: &[Settlement]) -> Vec<Disposition> {
    let mut dispositions = vec![Disposition::Stays; settlements.len()];
    let mut delays = Vec::new();
    let mut dead = Vec::new();
    for (i, s) in settlements.iter().enumerate() {
        let (receipt, body) = match sqs_lease(s.lease.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                log_failure(&e, &s.delivery_id, "settle");
                continue;
            }
        };
        match record(backend, s).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %s.delivery_id, "the delivery succeeded already or is gone; this message is dropped");
                dispositions[i] = Disposition::Done;
                continue;
            }
            Err(e) => {
                log_failure(
                    &e,
                    &s.delivery_id,
                    "record an attempt; SQS will hand it out again",
                );
                continue;
            }
        }
        if let Err(e) = record_health(backend, s).await {
            // The breaker misses one data point; the delivery is settled all the same.
            log_failure(&e, &s.delivery_id, "record the rule's health");
        }
        match s.outcome {
            Outcome::Succeeded => dispositions[i] = Disposition::Done,
            Outcome::RetryAt(at) => delays.push((receipt.to_owned(), visibility_until(at))),
            Outcome::Dead => dead.push((
                i,
                Outgoing {
                    body: body.to_owned(),
                    tenant: Some(s.tenant_id.to_string()),
                },
            )),
        }
    }
    let queue = &backend.settings.deliveries_queue_url;
    if let Err(e) = backend.queues.change_visibility(queue, &delays).await {
        // The messages come back after the queue's visibility timeout instead.
        log_failure(&e, "-", "set retry delays");
    }
    if !dead.is_empty() {
        let (indexes, bodies): (Vec<usize>, Vec<Outgoing>) = dead.into_iter().unzip();
        let sent = match &backend.settings.deliveries_dlq_url {
            Some(dlq) => backend.queues.send(dlq, bodies).await,
            None => Err(StoreError::unavailable(
                "send to the dead-letter queue",
                NoDlq,
            )),
        };
        match sent {
            Ok(()) => indexes
                .into_iter()
                .for_each(|i| dispositions[i] = Disposition::Done),
            Err(e) => log_failure(&e, "-", "move dead deliveries to the dead-letter queue"),
        }
    }
    dispositions
}

#[derive(Debug, thiserror::Error)]
#[error("HOOKLINE_DELIVERIES_DLQ_URL is not set")]
struct NoDlq;

pub(crate) fn log_failure(e: &StoreError, delivery: &str, what: &str) {
    tracing::error!(error = %e, code = e.code().unwrap_or("-"), delivery, "could not {what}");
}

/// Seconds from now until `at`, within SQS's 12-hour visibility limit.
fn visibility_until(at: Timestamp) -> i32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = (at.as_millis() - now + 999).div_euclid(1000);
    i32::try_from(secs.clamp(0, 43_200)).unwrap_or(43_200)
}

fn receipt(lease: Option<&Lease>) -> Option<String> {
    sqs_lease(lease).ok().map(|(receipt, _)| receipt.to_owned())
}

/// The port, for processes that poll (tests, a single process): receiving
/// and deleting stand in for Lambda's event source mapping; loading and
/// settling are the deliverer's own.
#[async_trait]
impl DeliveryQueue for AwsBackend {
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError> {
        let queue = &self.settings.deliveries_queue_url;
        let records = self
            .queues
            .receive(queue, max, 1, Calls::count_event_source)
            .await?;
        let mut received = Vec::new();
        for record in &records {
            match parse(record) {
                Ok(r) => received.push(r),
                Err(e) => tracing::error!(error = %e, message_id = ?record.message_id,
                    "unreadable delivery message; left for the dead-letter queue"),
            }
        }
        let leases: Vec<Lease> = received.iter().map(|r| r.lease.clone()).collect();
        let mut jobs = Vec::new();
        let mut done = Vec::new();
        for (loaded, lease) in load(self, received, now).await?.into_iter().zip(leases) {
            match loaded {
                Loaded::Job(job) => jobs.push(*job),
                Loaded::HeldBack { message, until } => {
                    hold(self, &message, until, now).await?;
                    done.extend(receipt(Some(&lease)));
                }
                Loaded::Done => done.extend(receipt(Some(&lease))),
                Loaded::Missing => {}
            }
        }
        self.queues
            .delete(queue, &done, Calls::count_event_source)
            .await?;
        Ok(jobs)
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError> {
        let dispositions = settle(self, &settlements).await;
        let done: Vec<String> = settlements
            .iter()
            .zip(dispositions)
            .filter(|(_, d)| *d == Disposition::Done)
            .filter_map(|(s, _)| receipt(s.lease.as_ref()))
            .collect();
        self.queues
            .delete(
                &self.settings.deliveries_queue_url,
                &done,
                Calls::count_event_source,
            )
            .await
    }
}
