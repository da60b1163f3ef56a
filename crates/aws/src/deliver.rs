//! The deliverer Lambda's handler: the core's attempt on each delivery of an
//! SQS batch, concurrently, then the queue's one [`settle`] on each attempt as
//! it finishes, so a slow receiver does not hold back recording the others.
//! Messages `settle` is done with are left for the event source mapping to
//! delete; the rest are reported as batch item failures and come back when
//! their visibility ends.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use hookline_core::Attempter;
use hookline_core::ports::{Clock, Sender, Settlement};
use tokio::task::JoinSet;

use crate::backend::AwsBackend;
use crate::queue::{Disposition, Loaded, hold, load, log_failure, parse, settle};

pub struct Deliverer {
    pub backend: AwsBackend,
    pub sender: Arc<dyn Sender>,
    pub clock: Arc<dyn Clock>,
    pub attempter: Arc<Attempter>,
}

impl Deliverer {
    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut failed: Vec<String> = Vec::new();
        let mut received = Vec::new();
        let mut ids = Vec::new();
        for record in batch.records {
            let id = record.message_id.clone().unwrap_or_default();
            match parse(&record) {
                Ok(r) => {
                    received.push(r);
                    ids.push(id);
                }
                Err(e) => {
                    tracing::error!(error = %e, message_id = %id, "unreadable delivery message; left for the dead-letter queue");
                    failed.push(id);
                }
            }
        }
        let loaded = match load(&self.backend, received, self.clock.now()).await {
            Ok(l) => l,
            Err(e) => {
                log_failure(&e, "-", "load deliveries; SQS will retry the batch");
                failed.extend(ids);
                return response(failed);
            }
        };

        let mut attempts = JoinSet::new();
        // Which message each attempt is for, so that a panicking attempt is
        // reported as failed instead of deleted.
        let mut messages = HashMap::new();
        for (id, l) in ids.into_iter().zip(loaded) {
            match l {
                Loaded::Job(job) => {
                    let (sender, clock, attempter) = (
                        self.sender.clone(),
                        self.clock.clone(),
                        self.attempter.clone(),
                    );
                    let task = attempts.spawn({
                        let id = id.clone();
                        async move { (id, attempter.attempt(&job, &*sender, &*clock).await) }
                    });
                    messages.insert(task.id(), id);
                }
                Loaded::HeldBack { message, until } => {
                    if let Err(e) = hold(&self.backend, &message, until, self.clock.now()).await {
                        log_failure(
                            &e,
                            &message.delivery_id,
                            "hold a delivery back; SQS will hand it out again",
                        );
                        failed.push(id);
                    }
                }
                Loaded::Done => {}
                Loaded::Missing => {
                    tracing::error!(message_id = %id, "delivery or event missing; left for the dead-letter queue");
                    failed.push(id);
                }
            }
        }
        // Settle whatever has finished, as it finishes.
        while let Some(first) = attempts.join_next_with_id().await {
            let mut finished: Vec<(String, Settlement)> = Vec::new();
            let mut next = Some(first);
            while let Some(joined) = next {
                match joined {
                    Ok((_, done)) => finished.push(done),
                    Err(e) => {
                        tracing::error!(error = %e, "an attempt panicked; SQS will retry it");
                        failed.extend(messages.remove(&e.id()));
                    }
                }
                next = attempts.try_join_next_with_id();
            }
            let (ids, settlements): (Vec<String>, Vec<Settlement>) = finished.into_iter().unzip();
            for (id, d) in ids
                .into_iter()
                .zip(settle(&self.backend, &settlements).await)
            {
                if d == Disposition::Stays {
                    failed.push(id);
                }
            }
        }
        response(failed)
    }
}

fn response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}
