//! Group commit. Every write goes to one thread that owns the write
//! connection; whatever queued up while the last transaction ran goes into the
//! next one, each job in its own savepoint. One fsync then covers hundreds of
//! ingests, leases and attempt records, and callers hear back only after
//! their write is committed.
//!
//! A transaction is fsynced when one of its jobs needs it to be (an
//! accepted event, a rule saved: what an answer promises). Leases and attempt
//! records alone are committed without: a power cut may lose them, which
//! costs a repeated attempt, never an event, and the next fsynced commit
//! makes them durable with it (the WAL is written in order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hookline_core::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::due::{Change, DueQueue};

/// What a batch of jobs did that someone outside the writer cares about.
#[derive(Default)]
pub(crate) struct Effects {
    /// Room may have been freed for work held back: wake the deliverer.
    pub queued: bool,
    /// What the batch did to the deliveries queue, applied to it once the
    /// batch is committed (and dropped if it is not).
    pub changes: Vec<Change>,
}

type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
type Run = Box<dyn FnOnce(&Connection, &mut Effects) -> (bool, Reply) + Send>;

struct Job {
    /// Must its commit reach the disk before its caller hears back?
    durable: bool,
    run: Run,
}

const MAX_BATCH: usize = 2048;

/// Upper bounds, in microseconds, of the commit latency histogram.
pub const COMMIT_BUCKETS_US: [u64; 10] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// How long the writer's transactions took, from `BEGIN` to `COMMIT`
/// done (the fsync with it when one was due): what every write waits for
/// at least, counted as each transaction ends.
#[derive(Debug, Default)]
pub struct CommitTimes {
    /// Transactions that took at most each bound of [`COMMIT_BUCKETS_US`].
    pub(crate) buckets: [AtomicU64; COMMIT_BUCKETS_US.len()],
    pub(crate) count: AtomicU64,
    pub(crate) sum_us: AtomicU64,
}

impl CommitTimes {
    fn observe(&self, us: u64) {
        for (bucket, bound) in self.buckets.iter().zip(COMMIT_BUCKETS_US) {
            if us <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// The writer thread's name.
pub(crate) const THREAD: &str = "hookline-sqlite-writer";

#[derive(Debug, thiserror::Error)]
enum WriterGone {
    #[error("the store is shut down")]
    ShutDown,
    #[error("the store writer stopped")]
    Stopped,
}

#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    pub fn spawn(
        conn: Connection,
        work: Arc<Notify>,
        queue: Arc<Mutex<DueQueue>>,
        times: Arc<CommitTimes>,
    ) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || run(conn, rx, &work, &queue, &times))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` in the next transaction and answers once it is committed
    /// and on disk.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(true, f).await
    }

    /// Runs `f` in the next transaction and answers once it is committed,
    /// which a power cut may undo (see the module's docs): for leases and
    /// attempt records only.
    pub async fn write_relaxed<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(false, f).await
    }

    async fn submit<T, F>(&self, durable: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: Run = Box::new(move |conn, effects| {
            let result = f(conn, effects);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::unavailable("commit", e)),
                };
                let _ = tx.send(answer);
            });
            (ok, reply)
        });
        self.jobs
            .send(Job { durable, run })
            .map_err(|_| StoreError::unavailable("write", WriterGone::ShutDown))?;
        rx.await
            .map_err(|_| StoreError::unavailable("write", WriterGone::Stopped))?
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Job>,
    work: &Notify,
    queue: &Mutex<DueQueue>,
    times: &CommitTimes,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(64);
    // The connection opens with synchronous = FULL.
    let mut synced = true;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut effects = Effects::default();
        let mut replies = Vec::with_capacity(batch.len());
        let durable = batch.iter().any(|j| j.durable);
        if durable != synced {
            let pragma = if durable {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            match exec(&conn, pragma) {
                Ok(()) => synced = durable,
                // Still FULL, or still NORMAL with a durable job: then it
                // must not be committed without its fsync.
                Err(e) if durable => {
                    tracing::error!(error = %e, "could not make the commit durable");
                    batch.clear();
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "could not relax the commit; it is fsynced"),
            }
        }
        let began = Instant::now();
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "could not begin a transaction");
            // Dropping a job drops its reply: its caller hears the store is unavailable.
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            let savepoint = exec(&conn, "SAVEPOINT job");
            let changed = effects.changes.len();
            let (ok, reply) = (job.run)(&conn, &mut effects);
            let closed = if ok {
                exec(&conn, "RELEASE job")
            } else {
                // What the job did to the queue goes with what it wrote.
                effects.changes.truncate(changed);
                exec(&conn, "ROLLBACK TO job").and_then(|()| exec(&conn, "RELEASE job"))
            };
            if let Err(e) = savepoint.and(closed) {
                tracing::error!(error = %e, "savepoint failed");
            }
            replies.push(reply);
        }
        let commit = exec(&conn, "COMMIT").map_err(|e| {
            let _ = exec(&conn, "ROLLBACK");
            tracing::error!(error = %e, "commit failed");
            Arc::new(e)
        });
        times.observe(began.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
        let mut wake = effects.queued;
        if commit.is_ok() && !effects.changes.is_empty() {
            // Before the replies: a caller that hears its write committed
            // finds the queue changed with it.
            if let Ok(mut queue) = queue.lock() {
                for change in effects.changes {
                    wake |= queue.apply(change);
                }
            }
        }
        for reply in replies {
            reply(commit.clone());
        }
        if commit.is_ok() && wake {
            work.notify_one();
        }
    }
}

/// Runs a statement from the connection's cache: the writer runs the same
/// few control statements for every job, and parsing them each time shows.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(crate::error::unavailable)
    }

    /// A transaction of leases and attempt records only is committed without
    /// fsync (NORMAL = 1); one holding a job that must be durable, with
    /// (FULL = 2), whatever ran before it.
    #[tokio::test]
    async fn only_durable_jobs_pay_for_an_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let times = Arc::new(CommitTimes::default());
        let writer = Writer::spawn(
            crate::connect(&dir.path().join("w.db")).unwrap(),
            Arc::default(),
            Arc::new(Mutex::new(DueQueue::new(1))),
            times.clone(),
        )
        .unwrap();
        assert_eq!(writer.write(|c, _| synchronous(c)).await.unwrap(), 2);
        assert_eq!(
            writer.write_relaxed(|c, _| synchronous(c)).await.unwrap(),
            1
        );
        assert_eq!(
            writer.write_relaxed(|c, _| synchronous(c)).await.unwrap(),
            1
        );
        assert_eq!(writer.write(|c, _| synchronous(c)).await.unwrap(), 2);
        // Each of the four transactions was timed.
        assert_eq!(times.count.load(Ordering::Relaxed), 4);
        let slowest = &times.buckets[COMMIT_BUCKETS_US.len() - 1];
        assert!(slowest.load(Ordering::Relaxed) <= 4);
    }
}
