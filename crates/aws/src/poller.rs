//! What Lambda's SQS event source mapping does, for running the router and
//! deliverer outside Lambda (tests, a single process): receive a batch, hand
//! it to the handler as the Lambda event, delete what the handler did not
//! report as failed.

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use hookline_core::ports::StoreError;

use crate::backend::AwsBackend;
use crate::calls::Calls;

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
    let records = backend
        .queues
        .receive(queue_url, 10, wait_seconds, Calls::count_event_source)
        .await?;
    if records.is_empty() {
        return Ok(0);
    }
    let received = records.len();
    let handles: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.message_id.clone().unwrap_or_default(),
                r.receipt_handle.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
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
        .queues
        .delete(queue_url, &done, Calls::count_event_source)
        .await?;
    Ok(received)
}
