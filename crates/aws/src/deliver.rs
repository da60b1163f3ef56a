//! The deliverer: signs and POSTs a batch of deliveries concurrently, records
//! each attempt, and tells SQS what comes next: nothing for a success (the
//! message is deleted), a visibility change to the retry's delay and a batch
//! item failure otherwise. After the last attempt the delivery is marked dead
//! and its message made visible at once, so the queue's redrive policy moves
//! it to the dead-letter queue on the next receive.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use hookline_core::delivery::{AttemptPolicy, Outcome};
use hookline_core::ports::{Clock, Sender};
use tokio::task::JoinSet;

use crate::queue::{Loaded, parse_message, visibility_until};
use crate::store::AwsBackend;

pub struct Deliverer {
    pub backend: AwsBackend,
    pub sender: Arc<dyn Sender>,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<AttemptPolicy>,
}

impl Deliverer {
    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut failed: Vec<String> = Vec::new();
        let mut received = Vec::new();
        let mut records = Vec::new();
        for record in batch.records {
            let id = record.message_id.clone().unwrap_or_default();
            let count = record
                .attributes
                .get("ApproximateReceiveCount")
                .map(String::as_str);
            match parse_message(record.body.as_deref(), count) {
                Some(r) => {
                    received.push(r);
                    records.push((id, record.receipt_handle.unwrap_or_default()));
                }
                None => {
                    tracing::error!(message_id = %id, "not a delivery message; left for the dead-letter queue");
                    failed.push(id);
                }
            }
        }
        let loaded = match self.backend.load(&received, self.clock.now()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "could not load deliveries; SQS will retry the batch");
                failed.extend(records.into_iter().map(|(id, _)| id));
                return response(failed);
            }
        };

        let mut attempts = JoinSet::new();
        for (index, l) in loaded.into_iter().enumerate() {
            match l {
                Some(Loaded::Job(job)) => {
                    let (sender, clock, policy) =
                        (self.sender.clone(), self.clock.clone(), self.policy.clone());
                    attempts.spawn(async move {
                        let settlement = policy.attempt(&job, &*sender, &*clock).await;
                        (index, job.tenant_id, settlement)
                    });
                }
                Some(Loaded::Done) => {}
                None => {
                    tracing::error!(message_id = %records[index].0, "delivery or event missing; left for the dead-letter queue");
                    failed.push(records[index].0.clone());
                }
            }
        }

        let mut visibility = Vec::new();
        while let Some(joined) = attempts.join_next().await {
            let Ok((index, tenant, settlement)) = joined else {
                continue;
            };
            let (id, handle) = &records[index];
            if let Err(e) = self.backend.record(&tenant, &settlement).await {
                tracing::error!(error = %e, delivery = %settlement.delivery_id, "could not record an attempt; SQS will retry");
                failed.push(id.clone());
                continue;
            }
            match settlement.outcome {
                Outcome::Succeeded => {}
                Outcome::RetryAt(at) => {
                    visibility.push((handle.clone(), visibility_until(at)));
                    failed.push(id.clone());
                }
                Outcome::Dead => {
                    visibility.push((handle.clone(), 0));
                    failed.push(id.clone());
                }
            }
        }
        if let Err(e) = self.backend.change_visibilities(visibility).await {
            // The messages come back after the queue's visibility timeout instead.
            tracing::error!(error = %e, "could not set retry delays");
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
