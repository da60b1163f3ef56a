//! The router: for each accepted event on the events queue, record one
//! delivery per matching rule (and line) and queue them for the deliverer.
//! Re-running it on the same message never makes a second set: delivery ids
//! are deterministic, existing deliveries are not rewritten, and a routed
//! event is skipped.

use std::collections::{HashMap, HashSet};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::{StreamExt, TryStreamExt, stream};
use hookline_core::event::{Line, Subject};
use hookline_core::fanout::{PlannedDelivery, plan, scope_keys};
use hookline_core::id::{EventId, TenantId};
use hookline_core::ports::StoreError;
use hookline_core::{DeliveryStatus, Event, Rule, Timestamp};
use serde_json::value::RawValue;

use crate::backend::AwsBackend;
use crate::error::unreadable;
use crate::items::*;
use crate::messages::{DeliveryMessage, EventMessage};
use crate::queue::log_failure;
use crate::table::{from_item, to_item};

/// How many of a batch's delivery writes are in flight at once.
const PUTS_IN_FLIGHT: usize = 25;

#[derive(Debug, thiserror::Error)]
#[error("the message is not an event reference: {0}")]
struct NotAnEvent(String);

/// Routes an SQS batch of events; failed records are reported for SQS to
/// retry. The batch is routed together: one read of its events, one query
/// per (tenant, trigger) and scope key, a conditional write per delivery and
/// one send of those to attempt.
pub async fn route_batch(backend: &AwsBackend, batch: SqsEvent) -> SqsBatchResponse {
    let mut failed = Vec::new();
    let mut messages = Vec::new();
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        match serde_json::from_str::<EventMessage>(record.body.as_deref().unwrap_or("")) {
            Ok(message) => messages.push((id, message)),
            Err(e) => {
                let e = unreadable("event message", NotAnEvent(e.to_string()));
                log_failure(&e, "-", &format!("route message {id}; SQS will retry"));
                failed.push(id);
            }
        }
    }
    match route(backend, &messages).await {
        // An event over its fan-out budget fails alone; its neighbours are
        // routed. SQS retries it and, at the last receive, moves it to the
        // events DLQ, where its alarm shows it.
        Ok(refused) => failed.extend(
            messages
                .into_iter()
                .filter_map(|(id, m)| refused.contains(&(m.tenant_id, m.event_id)).then_some(id)),
        ),
        Err(e) => {
            log_failure(&e, "-", "route a batch of events; SQS will retry it");
            failed.extend(messages.into_iter().map(|(id, _)| id));
        }
    }
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

fn event_from(item: EventItem) -> Result<Event, StoreError> {
    Ok(Event {
        trigger: item
            .trigger
            .parse()
            .map_err(|e| unreadable("event trigger", e))?,
        occurred_at: Timestamp::from_millis(item.occurred_at),
        data: RawValue::from_string(item.data).map_err(|e| unreadable("event data", e))?,
        id: EventId::stored(item.id),
        tenant_id: TenantId::stored(item.tenant_id),
        payment_page_id: item.payment_page_id,
        upsell_id: item.upsell_id,
        first_payment: item.first_payment,
        lines: item.lines.into_iter().map(Line::from).collect(),
        subject: item.subject.map(Subject::from),
    })
}

/// The tenant's rules for a trigger filed under `scope_keys`: one Query on
/// the index per key. A rule found under the universal prefix that is not
/// universal was filed before rules were filed by scope; it is filed anew.
async fn rules_for(
    backend: &AwsBackend,
    tenant: &TenantId,
    trigger: &str,
    scope_keys: &HashSet<String>,
) -> Result<Vec<Rule>, StoreError> {
    let pk = rules_by_trigger(tenant, trigger);
    let mut rules: Vec<Rule> = Vec::new();
    let mut seen = HashSet::new();
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
            let item: RuleItem = from_item(item)?;
            let rule = item.rule(tenant)?;
            if item.gsi1sk != rule_index_sk(&rule) {
                file_anew(backend, &item, &rule).await?;
            }
            // A rule filed anew while this batch read it is found twice.
            if seen.insert(rule.id.clone()) {
                rules.push(rule);
            }
        }
    }
    Ok(rules)
}

/// Moves a rule to where [`rule_index_sk`] files it, unless it has moved.
async fn file_anew(backend: &AwsBackend, item: &RuleItem, rule: &Rule) -> Result<(), StoreError> {
    backend
        .table
        .update(rule_key(&rule.tenant_id, &rule.id), |u| {
            u.update_expression("SET #gsk = :new")
                .condition_expression("#gsk = :old")
                .expression_attribute_names("#gsk", GSI1_SORT_KEY)
                .expression_attribute_values(":new", AttributeValue::S(rule_index_sk(rule)))
                .expression_attribute_values(":old", AttributeValue::S(item.gsi1sk.clone()))
        })
        .await?;
    Ok(())
}

/// Routes the batch's events; answers those refused for their fan-out.
async fn route(
    backend: &AwsBackend,
    messages: &[(String, EventMessage)],
) -> Result<HashSet<(String, String)>, StoreError> {
    // The same event can be queued twice (a duplicate of an unrouted event is
    // queued again); BatchGetItem takes each key once.
    let mut keys = HashSet::new();
    for (_, m) in messages {
        keys.insert((m.tenant_id.as_str(), m.event_id.as_str()));
    }
    let mut events = Vec::new();
    for item in backend
        .table
        .batch_get(keys.iter().map(|(t, e)| event_key(t, e)).collect())
        .await?
    {
        let item: EventItem = from_item(item)?;
        keys.retain(|&(tenant, id)| (tenant, id) != (item.tenant_id.as_str(), item.id.as_str()));
        if !item.routed {
            let received_at = item.received_at;
            events.push((event_from(item)?, received_at));
        }
    }
    for (_, event) in keys {
        tracing::warn!(event = %event, "no such event; nothing to route");
    }
    if events.is_empty() {
        return Ok(HashSet::new());
    }

    // Each (tenant, trigger)'s rules under the scope keys of its events.
    let mut wanted: HashMap<(&TenantId, &str), HashSet<String>> = HashMap::new();
    for (event, _) in &events {
        wanted
            .entry((&event.tenant_id, event.trigger.as_str()))
            .or_default()
            .extend(scope_keys(event));
    }
    let mut rules: HashMap<(&TenantId, &str), Vec<Rule>> = HashMap::new();
    for ((tenant, trigger), keys) in wanted {
        rules.insert(
            (tenant, trigger),
            rules_for(backend, tenant, trigger, &keys).await?,
        );
    }
    let mut refused = HashSet::new();
    let mut planned: Vec<(&Event, i64, Vec<PlannedDelivery>)> = Vec::new();
    for (event, received_at) in &events {
        let of = &rules[&(&event.tenant_id, event.trigger.as_str())];
        match plan(event, of) {
            Ok(deliveries) => planned.push((event, *received_at, deliveries)),
            Err(why) => {
                tracing::error!(tenant = %event.tenant_id, event = %event.id, error = %why,
                    "event refused at routing; SQS will retry it, then dead-letter it");
                refused.insert((event.tenant_id.to_string(), event.id.to_string()));
            }
        }
    }

    // Each delivery is created only where none is: one a previous run made
    // comes back from the failed condition, at no extra read, and keeps its
    // state; it is queued again unless it was attempted already.
    let mut writes = Vec::new();
    let routed: Vec<&Event> = planned.iter().map(|(event, _, _)| *event).collect();
    for (event, received_at, deliveries) in planned {
        for d in deliveries {
            let (log_pk, log_sk) = delivery_log_keys(&event.tenant_id, &d.id, received_at);
            let item = DeliveryItem {
                pk: tenant_pk(&event.tenant_id),
                sk: delivery_sk(&d.id),
                gsi2pk: Some(log_pk),
                gsi2sk: Some(log_sk),
                id: d.id.to_string(),
                event_id: event.id.to_string(),
                rule_id: d.rule_id.to_string(),
                line_id: d.line.as_ref().map(|l| l.id.clone()),
                line_product_id: d.line.as_ref().map(|l| l.product_id.clone()),
                status: DeliveryStatus::Pending.as_str().to_owned(),
                created_at: received_at,
                attempt_count: Some(0),
                attempts: Vec::new(),
                ttl: ttl_from(Timestamp::from_millis(received_at)),
            };
            let message = DeliveryMessage {
                tenant_id: event.tenant_id.to_string(),
                delivery_id: d.id.into_string(),
                event_id: event.id.to_string(),
                rule_id: d.rule_id.into_string(),
                line: d.line.as_ref().map(LineRecord::from),
                replay: false,
                attempts_before: 0,
            };
            writes.push((to_item(&item)?, message));
        }
    }
    let queued: Vec<DeliveryMessage> = stream::iter(writes)
        .map(|(item, message)| async move {
            let attempted = match backend.table.put_new(item).await? {
                None => false,
                Some(existing) => {
                    let d: DeliveryItem = from_item(existing)?;
                    d.status != DeliveryStatus::Pending.as_str() || !d.attempts.is_empty()
                }
            };
            Ok::<_, StoreError>((!attempted).then_some(message))
        })
        .buffer_unordered(PUTS_IN_FLIGHT)
        .try_filter_map(|message| async move { Ok(message) })
        .try_collect()
        .await?;
    backend
        .queues
        .send_json(&backend.settings.deliveries_queue_url, &queued)
        .await?;
    // Marked routed last: a crash before this routes the events again, and
    // the deliveries recorded above keep their state.
    let marks = routed.iter().map(|event| {
        backend
            .table
            .update(event_key(&event.tenant_id, &event.id), |u| {
                u.update_expression("SET routed = :t")
                    .expression_attribute_values(":t", AttributeValue::Bool(true))
            })
    });
    futures_util::future::try_join_all(marks).await?;
    Ok(refused)
}
