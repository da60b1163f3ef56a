//! The router: for each accepted event on the events queue, record one
//! delivery per matching rule (and line) and queue them for the deliverer.
//! Re-running it on the same message never makes a second set: delivery ids
//! are deterministic, existing deliveries are not rewritten, and a routed
//! event is skipped.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::fanout::plan;
use hookline_core::ports::StoreError;
use hookline_core::{DeliveryStatus, Event, Rule, Timestamp};
use serde_json::value::RawValue;

use crate::backend::AwsBackend;
use crate::error::unreadable;
use crate::items::*;
use crate::messages::{DeliveryMessage, EventMessage};
use crate::queue::log_failure;
use crate::table::from_item;

#[derive(Debug, thiserror::Error)]
#[error("the message is not an event reference: {0}")]
struct NotAnEvent(String);

/// Routes an SQS batch of events; failed records are reported for SQS to retry.
pub async fn route_batch(backend: &AwsBackend, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        let result =
            match serde_json::from_str::<EventMessage>(record.body.as_deref().unwrap_or("")) {
                Ok(message) => route_one(backend, &message).await,
                Err(e) => Err(unreadable("event message", NotAnEvent(e.to_string()))),
            };
        if let Err(e) = result {
            log_failure(&e, "-", &format!("route message {id}; SQS will retry"));
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
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
        id: item.id,
        tenant_id: item.tenant_id,
        payment_page_id: item.payment_page_id,
        upsell_id: item.upsell_id,
        first_payment: item.first_payment,
        lines: item.lines,
        subject: item.subject,
    })
}

/// The tenant's rules for a trigger: one Query on the index by (tenant, trigger).
async fn rules_for(
    backend: &AwsBackend,
    tenant: &str,
    trigger: &str,
) -> Result<Vec<Rule>, StoreError> {
    let pk = rules_by_trigger(tenant, trigger);
    backend
        .table
        .query(
            |q| {
                q.index_name(GSI1)
                    .key_condition_expression("#gpk = :pk")
                    .expression_attribute_names("#gpk", GSI1_PARTITION_KEY)
                    .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            },
            None,
            usize::MAX,
        )
        .await?
        .into_iter()
        .map(|i| from_item::<RuleItem>(i)?.rule(tenant))
        .collect()
}

async fn route_one(backend: &AwsBackend, message: &EventMessage) -> Result<(), StoreError> {
    let Some(item) = backend
        .table
        .get::<EventItem>(event_key(&message.tenant_id, &message.event_id))
        .await?
    else {
        tracing::warn!(event = %message.event_id, "no such event; nothing to route");
        return Ok(());
    };
    if item.routed {
        return Ok(());
    }
    let received_at = item.received_at;
    let event = event_from(item)?;
    let rules = rules_for(backend, &event.tenant_id, event.trigger.as_str()).await?;
    let planned = plan(&event, &rules);

    // Deliveries a previous run already recorded keep their state.
    let keys = planned
        .iter()
        .map(|d| delivery_key(&event.tenant_id, &d.id))
        .collect();
    let existing: Vec<DeliveryItem> = backend
        .table
        .batch_get(keys)
        .await?
        .into_iter()
        .map(from_item)
        .collect::<Result<_, _>>()?;
    let settled: HashSet<&str> = existing
        .iter()
        .filter(|d| d.status != DeliveryStatus::Pending.as_str() || !d.attempts.is_empty())
        .map(|d| d.id.as_str())
        .collect();
    let recorded: HashSet<&str> = existing.iter().map(|d| d.id.as_str()).collect();

    let new: Vec<DeliveryItem> = planned
        .iter()
        .filter(|d| !recorded.contains(d.id.as_str()))
        .map(|d| DeliveryItem {
            pk: tenant_pk(&event.tenant_id),
            sk: delivery_sk(&d.id),
            gsi1pk: deliveries_of(&event.tenant_id),
            gsi1sk: gsi_sort(received_at, &d.id),
            id: d.id.clone(),
            event_id: event.id.clone(),
            rule_id: d.rule_id.clone(),
            line_id: d.line.as_ref().map(|l| l.id.clone()),
            line_product_id: d.line.as_ref().map(|l| l.product_id.clone()),
            status: DeliveryStatus::Pending.as_str().to_owned(),
            created_at: received_at,
            attempt_count: Some(0),
            attempts: Vec::new(),
            ttl: ttl_from(Timestamp::from_millis(received_at)),
        })
        .collect();
    backend.table.batch_put(&new).await?;

    let messages: Vec<DeliveryMessage> = planned
        .into_iter()
        .filter(|d| !settled.contains(d.id.as_str()))
        .map(|d| DeliveryMessage {
            tenant_id: event.tenant_id.clone(),
            delivery_id: d.id,
            event_id: event.id.clone(),
            rule_id: d.rule_id,
            line: d.line,
            replay: false,
            attempts_before: 0,
        })
        .collect();
    backend
        .queues
        .send_json(&backend.settings.deliveries_queue_url, &messages)
        .await?;
    backend
        .table
        .update(event_key(&event.tenant_id, &event.id), |u| {
            u.update_expression("SET routed = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
        })
        .await?;
    Ok(())
}
