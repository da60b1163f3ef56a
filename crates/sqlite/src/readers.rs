//! The read connections: a few threads of their own, each with one
//! connection, taking read jobs in turn. Every ingest plans on one, so they
//! are long-lived threads rather than the runtime's blocking pool, whose
//! threads come and go (measured: planning through the blocking pool raised
//! the server's peak memory by 12–34 MiB).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use hookline_core::ports::StoreError;
use rusqlite::Connection;

use crate::error::unavailable;

type Job = Box<dyn FnOnce(Result<&Connection, &rusqlite::Error>) + Send>;

/// Who takes the next job: an idle thread, the one idle last first (its
/// connection's cache is the warmest), or else the first thread to finish.
/// A job wakes at most one thread.
#[derive(Default)]
struct Dispatch {
    idle: Vec<usize>,
    backlog: VecDeque<Job>,
}

pub(crate) struct Readers {
    threads: Vec<mpsc::Sender<Job>>,
    dispatch: Arc<Mutex<Dispatch>>,
}

impl Readers {
    /// `count` threads reading `path`; each opens its connection with
    /// `connect` when its first job comes. They end with the last handle.
    pub fn spawn(
        path: PathBuf,
        count: usize,
        connect: fn(&std::path::Path) -> rusqlite::Result<Connection>,
    ) -> std::io::Result<Readers> {
        let dispatch = Arc::new(Mutex::new(Dispatch::default()));
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let (jobs, mine) = mpsc::channel::<Job>();
            threads.push(jobs);
            let (dispatch, path) = (dispatch.clone(), path.clone());
            if let Ok(mut d) = dispatch.lock() {
                d.idle.push(i);
            }
            std::thread::Builder::new()
                .name(format!("hookline-read-{i}"))
                .spawn(move || {
                    let mut conn: Option<Connection> = None;
                    while let Ok(first) = mine.recv() {
                        let mut next = Some(first);
                        while let Some(job) = next.take() {
                            match &conn {
                                Some(c) => job(Ok(c)),
                                None => match connect(&path) {
                                    Ok(c) => job(Ok(conn.insert(c))),
                                    Err(e) => job(Err(&e)),
                                },
                            }
                            // Work waiting for a thread, or idle again.
                            let Ok(mut d) = dispatch.lock() else {
                                return;
                            };
                            next = d.backlog.pop_front();
                            if next.is_none() {
                                d.idle.push(i);
                            }
                        }
                    }
                })?;
        }
        Ok(Readers { threads, dispatch })
    }

    /// Runs `f` on the next free read connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(unavailable(std::io::Error::other(format!(
                    "cannot open a read connection: {e}"
                )))),
            };
            let _ = answer.send(result);
        });
        let stopped = || unavailable(std::io::Error::other("the read threads have stopped"));
        {
            let mut d = self.dispatch.lock().map_err(|_| stopped())?;
            match d.idle.pop() {
                Some(i) => self.threads[i].send(job).map_err(|_| stopped())?,
                None => d.backlog.push_back(job),
            }
        }
        answered.await.map_err(unavailable)?
    }
}
