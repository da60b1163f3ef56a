//! What Lambda's SQS event source mapping does, for running the router and
//! deliverer outside Lambda (tests, a single process): receive a batch, hand
//! it to the handler as the Lambda event, delete what the handler did not
//! report as failed.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use hookline_core::ports::StoreError;

use crate::store::AwsBackend;
use crate::{Calls, aws_error};

/// Receives one batch (up to 10, waiting up to `wait_seconds`), runs
/// `handler` on it and deletes the successes. Answers how many were received.
pub async fn poll_once<F, Fut>(
    backend: &AwsBackend,
    queue_url: &str,
    wait_seconds: i32,
    handler: F,
) -> Result<usize, StoreError>
where
    F: FnOnce(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    backend.calls.event_source();
    let out = backend
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .map_err(|e| aws_error("ReceiveMessage", e))?;
    let messages = out.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let mut event = SqsEvent::default();
    let mut handles = HashMap::new();
    for m in &messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.attributes = m
            .attributes
            .as_ref()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        record.event_source = Some("aws:sqs".into());
        handles.insert(
            m.message_id.clone().unwrap_or_default(),
            m.receipt_handle.clone().unwrap_or_default(),
        );
        event.records.push(record);
    }
    let response = handler(event).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    let done: Vec<String> = handles
        .into_iter()
        .filter(|(id, _)| !failed.contains(id))
        .map(|(_, handle)| handle)
        .collect();
    backend
        .delete_messages(queue_url, &done, Calls::event_source)
        .await?;
    Ok(messages.len())
}
