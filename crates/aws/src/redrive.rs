//! DLQ redrive that works on every SQS endpoint (moto has no
//! StartMessageMoveTask): receive from the dead-letter queue, send back to
//! the work queue, then delete. A crash between send and delete means a
//! duplicate message, which the deliverer tolerates; never a loss.

use hookline_core::ports::StoreError;

use crate::store::AwsBackend;
use crate::{Calls, aws_error};

/// Moves every message from `dlq_url` to `queue_url`; answers how many.
pub async fn redrive(
    backend: &AwsBackend,
    dlq_url: &str,
    queue_url: &str,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    loop {
        backend.calls.sqs();
        let out = backend
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| aws_error("ReceiveMessage", e))?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        let bodies = messages
            .iter()
            .map(|m| m.body.clone().unwrap_or_default())
            .collect();
        backend.send_batch(queue_url, bodies).await?;
        let handles: Vec<String> = messages
            .iter()
            .map(|m| m.receipt_handle.clone().unwrap_or_default())
            .collect();
        backend
            .delete_messages(dlq_url, &handles, Calls::sqs)
            .await?;
        moved += messages.len() as u64;
    }
}
