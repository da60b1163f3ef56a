//! Group commit. Every write goes to one thread that owns the write
//! connection; whatever queued up while the last transaction ran goes into the
//! next one, each job in its own savepoint. One fsync then covers hundreds of
//! ingests, leases and attempt records, and callers hear back only after
//! their write is committed.

use std::sync::Arc;

use hookline_core::ports::StoreError;
use rusqlite::Connection;
use tokio::sync::{Notify, mpsc, oneshot};

/// What a batch of jobs did that someone outside the writer cares about.
#[derive(Default)]
pub(crate) struct Effects {
    /// New or re-queued deliveries: wake the deliverer.
    pub queued: bool,
}

type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
type Job = Box<dyn FnOnce(&Connection, &mut Effects) -> (bool, Reply) + Send>;

const MAX_BATCH: usize = 2048;

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
    pub fn spawn(conn: Connection, work: Arc<Notify>) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("hookline-sqlite-writer".into())
            .spawn(move || run(conn, rx, &work))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` in the next transaction and answers once it is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Effects) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn, effects| {
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
            .send(job)
            .map_err(|_| StoreError::unavailable("write", WriterGone::ShutDown))?;
        rx.await
            .map_err(|_| StoreError::unavailable("write", WriterGone::Stopped))?
    }
}

fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>, work: &Notify) {
    let mut batch = Vec::with_capacity(64);
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
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "could not begin a transaction");
            // Dropping a job drops its reply: its caller hears the store is unavailable.
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            let savepoint = exec(&conn, "SAVEPOINT job");
            let (ok, reply) = job(&conn, &mut effects);
            let closed = if ok {
                exec(&conn, "RELEASE job")
            } else {
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
        for reply in replies {
            reply(commit.clone());
        }
        if commit.is_ok() && effects.queued {
            work.notify_one();
        }
    }
}

/// Runs a statement from the connection's cache: the writer runs the same
/// few control statements for every job, and parsing them each time shows.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
