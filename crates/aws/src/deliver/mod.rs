//! The deliverer: what the Lambda function runs on each SQS batch of the
//! deliveries queue, in three steps. [`take`] reads the batch into jobs (one
//! batched read; breaker, probe and rate limit decided; held-back messages
//! sent again); the core's attempter runs the jobs concurrently; [`finish`]
//! records each attempt as it ends and acts on its outcome. What is left
//! failed is reported as batch item failures, to come back when its
//! visibility ends; the event source mapping deletes the rest.
//!
//! `take` and `finish` are the one receive path: [`port`]'s `DeliveryQueue`
//! (for processes that poll, and the conformance suite) runs them around
//! what the event source mapping does, receiving and deleting.
//!
//! Modules by concern: `load` (a batch's messages into jobs), `record` (an
//! attempt onto its delivery's item), `health` (the rule's breaker and
//! auto-disable), `settle` (what is left of each message); `finish` also
//! counts each attempt in its rule's traffic (`crate::traffic`).

mod health;
mod load;
mod port;
mod record;
mod settle;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use hookline_core::Attempter;
use hookline_core::Timestamp;
use hookline_core::ports::{Clock, DeliveryJob, Sender, Settlement};
use tokio::task::JoinSet;

use crate::backend::AwsBackend;
use crate::emf::BatchMetrics;
use crate::error::log_failure;
use crate::poller::batch_response;
use load::{Loaded, load, parse};
use settle::{Disposition, hold, settle};

pub struct Deliverer {
    pub backend: AwsBackend,
    pub sender: Arc<dyn Sender>,
    pub clock: Arc<dyn Clock>,
    pub attempter: Arc<Attempter>,
    /// The CloudWatch namespace each batch's metrics are printed to as
    /// EMF lines ([`crate::emf`]); none prints none.
    pub metrics_namespace: Option<String>,
}

impl Deliverer {
    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        // Boxed: the attempt futures nest deep enough that the function's
        // `main` would otherwise pass the compiler's layout depth limit.
        let (response, metrics) = Box::pin(self.handle_counted(batch)).await;
        if let Some(namespace) = &self.metrics_namespace {
            for line in metrics.lines(namespace, self.clock.now()) {
                println!("{line}");
            }
        }
        response
    }

    /// [`Deliverer::handle`], answering what the batch did as well.
    pub async fn handle_counted(&self, batch: SqsEvent) -> (SqsBatchResponse, BatchMetrics) {
        let mut metrics = BatchMetrics::default();
        metrics.received(&batch.records, self.clock.now());
        let Taken { jobs, mut failed } = take(&self.backend, batch, self.clock.now()).await;
        let mut attempts = JoinSet::new();
        // Which message each attempt is for, so that a panicking attempt is
        // reported as failed instead of deleted.
        let mut messages = HashMap::new();
        for (id, job) in jobs {
            let (sender, clock, attempter) = (
                self.sender.clone(),
                self.clock.clone(),
                self.attempter.clone(),
            );
            let task = attempts.spawn({
                let id = id.clone();
                async move {
                    let settled =
                        hookline_telemetry::attempt(&attempter, &job, &*sender, &*clock).await;
                    (id, settled)
                }
            });
            messages.insert(task.id(), id);
        }
        // Settle whatever has finished, as it finishes.
        while let Some(first) = attempts.join_next_with_id().await {
            let mut finished = Vec::new();
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
            finished.iter().for_each(|(_, s)| metrics.settled(s));
            let spans = hookline_telemetry::settle_spans(finished.iter().map(|(_, s)| s));
            failed.extend(finish(&self.backend, finished).await);
            drop(spans);
        }
        (batch_response(failed), metrics)
    }
}

/// A batch read into work: the jobs to attempt, each with its message's id,
/// and the ids of the messages that could not be taken (unreadable, their
/// event missing, their hold not sent, or the batch's read failed). A
/// message in neither is done with (a duplicate of a success, or held back
/// and sent again).
pub(crate) struct Taken {
    pub jobs: Vec<(String, DeliveryJob)>,
    pub failed: Vec<String>,
}

/// Reads a batch as the event source mapping hands it over into jobs.
pub(crate) async fn take(backend: &AwsBackend, batch: SqsEvent, now: Timestamp) -> Taken {
    let mut taken = Taken {
        jobs: Vec::new(),
        failed: Vec::new(),
    };
    let (mut received, mut ids) = (Vec::new(), Vec::new());
    for record in batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        match parse(&record) {
            Ok(r) => {
                received.push(r);
                ids.push(id);
            }
            Err(e) => {
                tracing::error!(error = %e, message_id = %id, "unreadable delivery message; left for the dead-letter queue");
                taken.failed.push(id);
            }
        }
    }
    let loaded = match load(backend, received, now).await {
        Ok(l) => l,
        Err(e) => {
            log_failure(&e, "-", "load deliveries; SQS will retry the batch");
            taken.failed.extend(ids);
            return taken;
        }
    };
    for (id, l) in ids.into_iter().zip(loaded) {
        match l {
            Loaded::Job(job) => taken.jobs.push((id, *job)),
            Loaded::HeldBack { message, until } => {
                if let Err(e) = hold(backend, &message, until, now).await {
                    log_failure(
                        &e,
                        &message.delivery_id,
                        "hold a delivery back; SQS will hand it out again",
                    );
                    taken.failed.push(id);
                }
            }
            Loaded::Done => {}
            Loaded::Missing => {
                tracing::error!(message_id = %id, "delivery or event missing; left for the dead-letter queue");
                taken.failed.push(id);
            }
        }
    }
    taken
}

/// Settles finished attempts, each with its message's id; answers the ids
/// of the messages that stay on the queue.
pub(crate) async fn finish(
    backend: &AwsBackend,
    finished: Vec<(String, Settlement)>,
) -> Vec<String> {
    let (ids, settlements): (Vec<String>, Vec<Settlement>) = finished.into_iter().unzip();
    let stays = ids
        .into_iter()
        .zip(settle(backend, &settlements).await)
        .filter(|(_, d)| *d == Disposition::Stays)
        .map(|(id, _)| id)
        .collect();
    count_traffic(backend, &settlements).await;
    stays
}

/// Counts the attempts in their rules' traffic, and writes what has waited
/// long enough. Counts are not deliveries: a failed write is logged, and
/// its messages are done with all the same.
async fn count_traffic(backend: &AwsBackend, settlements: &[Settlement]) {
    let Some(latest) = settlements.iter().map(|s| s.attempt.at).max() else {
        return;
    };
    let due = match backend.traffic.lock() {
        Ok(mut counted) => {
            settlements.iter().for_each(|s| s.count_in(&mut counted));
            counted.take_due(
                latest,
                backend.traffic_every,
                crate::traffic::WRITES_PER_FINISH,
            )
        }
        Err(_) => return,
    };
    if !due.is_empty()
        && let Err(e) = crate::traffic::write(backend, due).await
    {
        log_failure(&e, "-", "write rules' traffic; those counts are lost");
    }
}
