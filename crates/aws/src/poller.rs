//! What Lambda's SQS event source mapping does, for running the router and
//! deliverer outside Lambda (tests, a single process): receive a batch, hand
//! it to the handler as the Lambda event, delete what the handler did not
//! report as failed.

use std::collections::HashSet;
use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
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
    let mut received = Received::from(backend, queue_url, 10, wait_seconds).await?;
    let count = received.batch.records.len();
    if count == 0 {
        return Ok(0);
    }
    let response = handler(std::mem::take(&mut received.batch)).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    received.delete_all_but(backend, &failed).await?;
    Ok(count)
}

/// A batch received as the event source mapping receives it, with each
/// message's receipt handle by its id.
pub(crate) struct Received {
    pub batch: SqsEvent,
    queue_url: String,
    handles: Vec<(String, String)>,
}

impl Received {
    pub(crate) async fn from(
        backend: &AwsBackend,
        queue_url: &str,
        max: usize,
        wait_seconds: i32,
    ) -> Result<Self, StoreError> {
        let records = backend
            .queues
            .receive(queue_url, max, wait_seconds, Calls::count_event_source)
            .await?;
        let handles = records
            .iter()
            .map(|r| {
                (
                    r.message_id.clone().unwrap_or_default(),
                    r.receipt_handle.clone().unwrap_or_default(),
                )
            })
            .collect();
        let mut batch = SqsEvent::default();
        batch.records = records;
        Ok(Self {
            batch,
            queue_url: queue_url.to_owned(),
            handles,
        })
    }

    /// Deletes every message of the batch whose id is not in `kept`.
    pub(crate) async fn delete_all_but(
        &self,
        backend: &AwsBackend,
        kept: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let done: Vec<String> = self
            .handles
            .iter()
            .filter(|(id, _)| !kept.contains(id))
            .map(|(_, handle)| handle.clone())
            .collect();
        backend
            .queues
            .delete(&self.queue_url, &done, Calls::count_event_source)
            .await
    }
}

/// A handler's answer naming the messages it failed, which the event source
/// mapping leaves on the queue (`ReportBatchItemFailures`).
pub(crate) fn batch_response(failed: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}
