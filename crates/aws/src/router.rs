//! The router: for each accepted event on the events queue, queue one
//! delivery per matching rule (and line) for the deliverer, carrying what
//! its attempt sends. It writes nothing: a delivery is recorded when its
//! first attempt settles. Delivery ids are deterministic, so routing an
//! event twice queues the same deliveries; an event that may have been
//! routed before (its message received before, or queued again for a
//! repeat at ingest) first reads which of them are recorded and queues only
//! the others, marked to be checked before their attempt.

use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::fanout::{PlannedDelivery, plan, scope_keys};
use hookline_core::id::{DeliveryId, TenantId};
use hookline_core::ports::StoreError;
use hookline_core::{Event, Rule, Timestamp};

use crate::backend::AwsBackend;
use crate::error::log_failure;
use crate::error::unreadable;
use crate::items::*;
use crate::messages::{DeliveryMessage, EventMessage, Payload};
use crate::poller::batch_response;
use crate::queues::trace_of;
use crate::table::from_item;
use hookline_telemetry::TRACE;

#[derive(Debug, thiserror::Error)]
#[error("the message is not an event message: {0}")]
struct NotAnEvent(String);

/// An event message as received: `again` when it may have been routed.
struct Received {
    message_id: String,
    message: EventMessage,
    again: bool,
}

/// An event the batch names, once: carried by its message or to be read,
/// whether it may have been routed before, and the trace of its first
/// message.
struct Named<'a> {
    tenant: &'a str,
    id: &'a str,
    item: Option<EventItem>,
    again: bool,
    trace: Option<&'a str>,
}

/// An event to route, and whether it may have been routed before.
struct Routing {
    event: Event,
    received_at: i64,
    again: bool,
}

/// Routes an SQS batch of events; failed records are reported for SQS to
/// retry. The batch is routed together: one query per (tenant, trigger) and
/// scope key, and one send of the deliveries.
pub async fn route_batch(backend: &AwsBackend, batch: SqsEvent) -> SqsBatchResponse {
    let mut failed = Vec::new();
    let mut received = Vec::new();
    for record in batch.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        match parse(&record) {
            Ok(message) => received.push(Received {
                message_id,
                again: message.repeat || receive_count(&record) > 1,
                message,
            }),
            Err(e) => {
                log_failure(
                    &e,
                    "-",
                    &format!("route message {message_id}; SQS will retry"),
                );
                failed.push(message_id);
            }
        }
    }
    match route(backend, &received).await {
        // An event over its fan-out budget fails alone; its neighbours are
        // routed. SQS retries it and, at the last receive, moves it to the
        // events DLQ, where its alarm shows it.
        Ok(refused) => failed.extend(received.into_iter().filter_map(|r| {
            refused
                .contains(&(r.message.tenant_id, r.message.event_id))
                .then_some(r.message_id)
        })),
        Err(e) => {
            log_failure(&e, "-", "route a batch of events; SQS will retry it");
            failed.extend(received.into_iter().map(|r| r.message_id));
        }
    }
    batch_response(failed)
}

fn parse(record: &SqsMessage) -> Result<EventMessage, StoreError> {
    let mut message: EventMessage = serde_json::from_str(record.body.as_deref().unwrap_or(""))
        .map_err(|e| unreadable("event message", NotAnEvent(e.to_string())))?;
    message.trace = trace_of(record);
    Ok(message)
}

/// A record without a readable count is taken as received before: that
/// costs a read, never a duplicate.
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Routes the batch's events; answers those refused for their fan-out.
async fn route(
    backend: &AwsBackend,
    received: &[Received],
) -> Result<HashSet<(String, String)>, StoreError> {
    let routings = events_of(backend, received).await?;
    let rules = rules_of(backend, &routings).await?;
    let mut refused = HashSet::new();
    let mut planned = Vec::new();
    // Each event's fan-out span, continuing its ingest's trace; its
    // deliveries' attempts continue it. They end once the deliveries are
    // queued.
    let mut spans = Vec::new();
    for routing in &routings {
        let event = &routing.event;
        let span = tracing::info_span!(target: TRACE, "fan_out",
            event_id = %event.id, tenant_id = %event.tenant_id, deliveries = tracing::field::Empty);
        hookline_telemetry::follow(&span, event.trace.as_deref());
        let trace = hookline_telemetry::traceparent(&span);
        match plan(event, &rules[&(&event.tenant_id, event.trigger.as_str())]) {
            Ok(deliveries) => {
                span.record("deliveries", deliveries.len());
                planned.push((routing, deliveries, trace));
            }
            Err(why) => {
                tracing::error!(tenant = %event.tenant_id, event = %event.id, error = %why,
                    "event refused at routing; SQS will retry it, then dead-letter it");
                refused.insert((event.tenant_id.to_string(), event.id.to_string()));
            }
        }
        spans.push(span);
    }
    let queued = deliveries_to_queue(backend, planned).await?;
    backend
        .queues
        .send_json(&backend.settings.deliveries_queue_url, &queued)
        .await?;
    drop(spans);
    Ok(refused)
}

/// The batch's events, each once: carried by its message, or read for a
/// message that names it only (queued by an earlier Hookline, or too large
/// to carry). An event in the batch twice may have been routed before if
/// either message says so.
async fn events_of(
    backend: &AwsBackend,
    received: &[Received],
) -> Result<Vec<Routing>, StoreError> {
    let mut events: Vec<Named> = Vec::new();
    for r in received {
        let m = &r.message;
        match events
            .iter_mut()
            .find(|n| (n.tenant, n.id) == (m.tenant_id.as_str(), m.event_id.as_str()))
        {
            Some(seen) => seen.again |= r.again,
            None => events.push(Named {
                tenant: &m.tenant_id,
                id: &m.event_id,
                item: m.event.clone(),
                again: r.again,
                trace: m.trace.as_deref(),
            }),
        }
    }
    let named: Vec<Item> = events
        .iter()
        .filter(|n| n.item.is_none())
        .map(|n| event_key(n.tenant, n.id))
        .collect();
    if !named.is_empty() {
        for item in backend.table.batch_get(named).await? {
            let item: EventItem = from_item(item)?;
            if let Some(slot) = events
                .iter_mut()
                .find(|n| (n.tenant, n.id) == (item.tenant_id.as_str(), item.id.as_str()))
            {
                slot.item = Some(item);
            }
        }
    }
    let mut routings = Vec::with_capacity(events.len());
    for Named {
        tenant,
        id,
        item,
        again,
        trace,
    } in events
    {
        let Some(item) = item else {
            tracing::warn!(tenant, event = id, "no such event; nothing to route");
            continue;
        };
        let received_at = item.received_at;
        let event = Event {
            trace: trace.map(str::to_owned),
            ..item.event()?
        };
        routings.push(Routing {
            event,
            received_at,
            again,
        });
    }
    Ok(routings)
}

/// Each (tenant, trigger)'s rules under the scope keys of its events.
async fn rules_of<'a>(
    backend: &AwsBackend,
    routings: &'a [Routing],
) -> Result<HashMap<(&'a TenantId, &'a str), Vec<Rule>>, StoreError> {
    let mut wanted: HashMap<(&TenantId, &str), HashSet<String>> = HashMap::new();
    for Routing { event, .. } in routings {
        wanted
            .entry((&event.tenant_id, event.trigger.as_str()))
            .or_default()
            .extend(scope_keys(event));
    }
    let mut rules = HashMap::new();
    for ((tenant, trigger), keys) in wanted {
        rules.insert(
            (tenant, trigger),
            rules_for(backend, tenant, trigger, &keys).await?,
        );
    }
    Ok(rules)
}

/// The tenant's rules for a trigger filed under `scope_keys`: one Query on
/// the index per key. A rule an earlier Hookline filed before rules were
/// filed by scope is found under the universal prefix, and `plan` matches
/// its scope; `hookline migrate` files it where it belongs.
async fn rules_for(
    backend: &AwsBackend,
    tenant: &TenantId,
    trigger: &str,
    scope_keys: &HashSet<String>,
) -> Result<Vec<Rule>, StoreError> {
    let pk = rules_by_trigger(tenant, trigger);
    let mut rules: Vec<Rule> = Vec::new();
    for key in scope_keys {
        let prefix = rules_filed_under(key);
        let items = backend
            .table
            .query(
                |q| {
                    q.index_name(GSI1)
                        .key_condition_expression("#gpk = :pk AND begins_with(#gsk, :prefix)")
                        .expression_attribute_names("#gpk", GSI1_PARTITION_KEY)
                        .expression_attribute_names("#gsk", GSI1_SORT_KEY)
                        .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                        .expression_attribute_values(":prefix", AttributeValue::S(prefix.clone()))
                },
                None,
                usize::MAX,
            )
            .await?;
        for item in items {
            let rule = from_item::<RuleItem>(item)?.rule(tenant)?;
            // A rule being filed anew while this batch reads it is found twice.
            if !rules.iter().any(|r| r.id == rule.id) {
                rules.push(rule);
            }
        }
    }
    Ok(rules)
}

/// The messages to queue for the planned deliveries. Routing writes none:
/// a delivery is recorded when its first attempt settles. For an event that
/// may have been routed before, the deliveries recorded since are left to
/// their chains, and the rest are queued to be checked before their
/// attempt (one queued before and not yet attempted then goes once).
async fn deliveries_to_queue(
    backend: &AwsBackend,
    planned: Vec<(&Routing, Vec<PlannedDelivery>, Option<String>)>,
) -> Result<Vec<DeliveryMessage>, StoreError> {
    let mut messages = Vec::new();
    let mut maybe_made = Vec::new();
    for (routing, deliveries, trace) in planned {
        let event = &routing.event;
        let payload = Payload::from(event);
        for d in deliveries {
            let id = DeliveryId::stamped(Timestamp::from_millis(routing.received_at), &d.id);
            if routing.again {
                maybe_made.push(delivery_key(&event.tenant_id, &id));
            }
            messages.push(
                DeliveryMessage {
                    tenant_id: event.tenant_id.to_string(),
                    delivery_id: id.into_string(),
                    event_id: event.id.to_string(),
                    rule_id: d.rule_id.into_string(),
                    line: d.line.as_ref().map(LineRecord::from),
                    event: Some(payload.clone()),
                    replay: false,
                    check: routing.again,
                    attempts_before: 0,
                    trace: trace.clone(),
                }
                .within_limit(),
            );
        }
    }
    let made: HashSet<String> = backend
        .table
        .batch_get_eventual(maybe_made)
        .await?
        .into_iter()
        .map(|item| from_item::<DeliveryItem>(item).map(|d| d.id))
        .collect::<Result<_, _>>()?;
    messages.retain(|m| !made.contains(&m.delivery_id));
    Ok(messages)
}
