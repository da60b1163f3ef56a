//! DLQ redrive that works on every SQS endpoint (moto has no
//! StartMessageMoveTask): receive from the dead-letter queue, send back to
//! the work queue, then delete. A crash between send and delete means a
//! duplicate message, which the deliverer tolerates; never a loss.

use hookline_core::ports::StoreError;

use crate::backend::AwsBackend;
use crate::calls::Calls;
use crate::queues::Outgoing;

/// Moves every message from `dlq_url` to `queue_url`; answers how many.
pub async fn redrive(
    backend: &AwsBackend,
    dlq_url: &str,
    queue_url: &str,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    loop {
        let messages = backend
            .queues
            .receive(dlq_url, 10, 1, Calls::count_sqs)
            .await?;
        if messages.is_empty() {
            return Ok(moved);
        }
        // Each goes back in its tenant's group, as it was sent.
        let outgoing = messages
            .iter()
            .map(|m| Outgoing {
                body: m.body.clone().unwrap_or_default(),
                tenant: m.attributes.get("MessageGroupId").cloned(),
                trace: crate::queues::trace_of(m),
            })
            .collect();
        backend.queues.send(queue_url, outgoing).await?;
        let handles: Vec<String> = messages
            .iter()
            .filter_map(|m| m.receipt_handle.clone())
            .collect();
        backend
            .queues
            .delete(dlq_url, &handles, Calls::count_sqs)
            .await?;
        moved += messages.len() as u64;
    }
}
