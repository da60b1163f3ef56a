//! The `DeliveryQueue` port on SQS, for processes that poll (a single
//! process, the conformance suite): the deliverer's own [`take`] and
//! [`finish`], around the two things Lambda's event source mapping does in
//! production, receiving a batch and deleting what is done with.

use std::collections::HashSet;

use async_trait::async_trait;
use hookline_core::Timestamp;
use hookline_core::ports::{DeliveryJob, DeliveryQueue, Settlement, StoreError};

use super::settle::sqs_lease;
use super::{Taken, finish, take};
use crate::backend::AwsBackend;
use crate::calls::Calls;
use crate::poller::Received;

#[async_trait]
impl DeliveryQueue for AwsBackend {
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError> {
        let mut received =
            Received::from(self, &self.settings.deliveries_queue_url, max, 1).await?;
        let Taken { jobs, failed } = take(self, std::mem::take(&mut received.batch), now).await;
        // What is neither a job nor failed is done with: deleted now, as the
        // event source mapping deletes it when the handler returns.
        let kept: HashSet<String> = jobs
            .iter()
            .map(|(id, _)| id.clone())
            .chain(failed)
            .collect();
        received.delete_all_but(self, &kept).await?;
        Ok(jobs.into_iter().map(|(_, job)| job).collect())
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError> {
        // A job's message is named here by its receipt handle.
        let finished: Vec<(String, Settlement)> = settlements
            .into_iter()
            .map(|s| {
                let receipt = sqs_lease(s.lease.as_ref())
                    .map_or_else(|_| String::new(), |(r, _)| r.to_owned());
                (receipt, s)
            })
            .collect();
        let handles: Vec<String> = finished.iter().map(|(h, _)| h.clone()).collect();
        let stays: HashSet<String> = finish(self, finished).await.into_iter().collect();
        let done: Vec<String> = handles
            .into_iter()
            .filter(|h| !h.is_empty() && !stays.contains(h))
            .collect();
        self.queues
            .delete(
                &self.settings.deliveries_queue_url,
                &done,
                Calls::count_event_source,
            )
            .await
    }
}
