//! The local deliverer: receives due deliveries from the SQLite queue, runs
//! each attempt concurrently and settles it. It sleeps until the next delivery
//! is due or new work is queued, whichever is first; it never busy-polls.

use std::sync::Arc;
use std::time::Duration;

use hookline_core::ports::{Clock, DeliveryQueue, Sender};
use hookline_core::{Attempter, Settlement};
use hookline_sqlite::SqliteBackend;

use crate::metrics::Metrics;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The longest the deliverer sleeps without looking at the queue.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// How soon to look again when due work is there but none could be taken
/// (its rules or tenants at their share, or their circuits open). Settling
/// an attempt wakes the deliverer sooner.
const HELD_RECHECK: Duration = Duration::from_millis(250);

pub struct Worker {
    pub queue: SqliteBackend,
    pub sender: Arc<dyn Sender>,
    pub clock: Arc<dyn Clock>,
    pub attempter: Arc<Attempter>,
    pub concurrency: usize,
    pub metrics: Arc<Metrics>,
}

/// Records settlements in batches: whatever finished while the last batch was
/// being written goes into the next one.
async fn record(queue: SqliteBackend, mut settlements: mpsc::UnboundedReceiver<Settlement>) {
    let mut batch = Vec::new();
    while settlements.recv_many(&mut batch, 512).await > 0 {
        let spans = hookline_telemetry::settle_spans(&batch);
        if let Err(e) = queue.settle(std::mem::take(&mut batch)).await {
            // Their leases run out and the deliveries are received again.
            tracing::error!(error = %e, "could not record attempts");
        }
        drop(spans);
    }
}

impl Worker {
    /// Runs until `stop` turns true, then finishes the attempts in flight.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (settled, settlements) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record(self.queue.clone(), settlements));
        let mut in_flight = JoinSet::new();
        let concurrency = self.concurrency.max(1);
        while !*stop.borrow() {
            while in_flight.try_join_next().is_some() {}
            let free = concurrency - in_flight.len();
            if free == 0 {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let asked = free.min(256);
            let jobs = match self.queue.receive(asked, self.clock.now()).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %e, "could not receive deliveries");
                    self.idle(IDLE_CHECK, &mut stop).await;
                    continue;
                }
            };
            // Fewer than asked: nothing more is due now, so wait for new
            // work or the next due time rather than asking again at once (at
            // low rates that empty receive was one write transaction of four
            // per delivery). A delivery queued meanwhile has left a wake-up.
            let drained = jobs.len() < asked;
            for job in jobs {
                let (sender, clock, attempter, settled, metrics) = (
                    self.sender.clone(),
                    self.clock.clone(),
                    self.attempter.clone(),
                    settled.clone(),
                    self.metrics.clone(),
                );
                in_flight.spawn(async move {
                    let settlement =
                        hookline_telemetry::attempt(&attempter, &job, &*sender, &*clock).await;
                    metrics.observe(&settlement);
                    let _ = settled.send(settlement);
                });
            }
            if drained {
                let wait = self.until_next_due();
                self.idle(wait, &mut stop).await;
            }
        }
        while in_flight.join_next().await.is_some() {}
        drop(settled);
        let _ = recorder.await;
    }

    fn until_next_due(&self) -> Duration {
        match self.queue.next_due() {
            Some(due) => {
                let ms = due.as_millis() - self.clock.now().as_millis();
                if ms <= 0 {
                    HELD_RECHECK
                } else {
                    Duration::from_millis(ms as u64).min(IDLE_CHECK)
                }
            }
            None => IDLE_CHECK,
        }
    }

    async fn idle(&self, wait: Duration, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = self.queue.work().notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}
