//! The router: for each accepted event on the events queue, record one
//! delivery per matching rule (and line) and queue them for the deliverer.
//! Re-running it on the same message never makes a second set: delivery ids
//! are deterministic, existing deliveries are not rewritten, and a routed
//! event is skipped.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use hookline_core::fanout::plan;
use hookline_core::ports::StoreError;
use hookline_core::{DeliveryStatus, Event, Timestamp};
use serde_json::value::RawValue;

use crate::aws_error;
use crate::items::*;
use crate::messages::{DeliveryMessage, EventMessage};
use crate::store::{AwsBackend, from_item, to_item};

/// Routes an SQS batch of events; failed records are reported for SQS to retry.
pub async fn route_batch(backend: &AwsBackend, batch: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        let result = match record
            .body
            .as_deref()
            .map(serde_json::from_str::<EventMessage>)
        {
            Some(Ok(message)) => route_one(backend, &message).await,
            _ => Err(aws_error("route", "the message is not an event reference")),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, message_id = %id, "routing failed; SQS will retry");
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
            .map_err(|e| aws_error("decode event", e))?,
        occurred_at: Timestamp::from_millis(item.occurred_at),
        data: RawValue::from_string(item.data).map_err(|e| aws_error("decode event data", e))?,
        id: item.id,
        tenant_id: item.tenant_id,
        payment_page_id: item.payment_page_id,
        upsell_id: item.upsell_id,
        first_payment: item.first_payment,
        lines: item.lines,
    })
}

pub(crate) async fn route_one(
    backend: &AwsBackend,
    message: &EventMessage,
) -> Result<(), StoreError> {
    let Some(item) = backend
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
    let rules = backend
        .rules_for(&event.tenant_id, event.trigger.as_str())
        .await?;
    let planned = plan(&event, &rules);

    // Deliveries a previous run already recorded keep their state.
    let keys = planned
        .iter()
        .map(|d| delivery_key(&event.tenant_id, &d.id))
        .collect();
    let existing: Vec<DeliveryItem> = backend
        .batch_get_items(keys)
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
            sk: format!("D#{}", d.id),
            gsi1pk: deliveries_of(&event.tenant_id),
            gsi1sk: gsi_sort(received_at, &d.id),
            id: d.id.clone(),
            event_id: event.id.clone(),
            rule_id: d.rule_id.clone(),
            line_id: d.line.as_ref().map(|l| l.id.clone()),
            line_product_id: d.line.as_ref().map(|l| l.product_id.clone()),
            status: DeliveryStatus::Pending.as_str().to_owned(),
            created_at: received_at,
            attempts: Vec::new(),
            ttl: ttl_from(Timestamp::from_millis(received_at)),
        })
        .collect();
    backend.batch_put(&new).await?;

    let messages: Vec<DeliveryMessage> = planned
        .into_iter()
        .filter(|d| !settled.contains(d.id.as_str()))
        .map(|d| DeliveryMessage {
            tenant_id: event.tenant_id.clone(),
            delivery_id: d.id,
            event_id: event.id.clone(),
            rule_id: d.rule_id,
            line: d.line,
        })
        .collect();
    backend.send_deliveries(&messages).await?;

    backend.calls.write();
    backend
        .ddb
        .update_item()
        .table_name(&backend.settings.table)
        .set_key(Some(event_key(&event.tenant_id, &event.id)))
        .update_expression("SET routed = :t")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
        .send()
        .await
        .map_err(|e| aws_error("UpdateItem", e))?;
    Ok(())
}

impl AwsBackend {
    /// BatchWriteItem puts, 25 a call, retrying unprocessed items.
    pub(crate) async fn batch_put(&self, items: &[DeliveryItem]) -> Result<(), StoreError> {
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|d| {
                    Ok(WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(to_item(d)?))
                                .build()
                                .map_err(|e| aws_error("BatchWriteItem", e))?,
                        )
                        .build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            while !requests.is_empty() {
                self.calls.write();
                let out = self
                    .ddb
                    .batch_write_item()
                    .request_items(&self.settings.table, requests)
                    .send()
                    .await
                    .map_err(|e| aws_error("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.settings.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}
