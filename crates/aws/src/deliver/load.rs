//! A batch's messages into jobs: each message read ([`parse`]), then what
//! the batch's attempts need that their messages do not carry read at once
//! ([`load`]), with the rule's circuit, probe and rate limit decided.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::breaker::Circuit;
use hookline_core::event::{Line, Subject};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{DeliveryJob, Destination, KeyCache, Lease, Store, StoreError};
use hookline_core::{DeliveryStatus, Timestamp};
use serde_json::value::RawValue;

use crate::backend::AwsBackend;
use crate::error::unreadable;
use crate::items::*;
use crate::messages::{DeliveryMessage, Payload};
use crate::table::from_item;

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
    let mut message: DeliveryMessage =
        serde_json::from_str(&body).map_err(|e| BadRecord::Body(e.to_string()))?;
    message.trace = crate::queues::trace_of(record);
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
            trace: m.trace,
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
