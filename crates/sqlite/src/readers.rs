//! The read connections: a few threads of their own, each with one
//! connection, taking read jobs in turn. Every ingest plans on one, so they
//! are long-lived threads rather than the runtime's blocking pool, whose
//! threads come and go (measured: planning through the blocking pool raised
//! the server's peak memory by 12–34 MiB).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use hookline_core::ports::StoreError;
use rusqlite::Connection;

use crate::error::unavailable;

type Job = Box<dyn FnOnce(Result<&Connection, &rusqlite::Error>) + Send>;

pub(crate) struct Readers {
    jobs: mpsc::Sender<Job>,
}

impl Readers {
    /// `count` threads reading `path`; each opens its connection with
    /// `connect` when its first job comes. They end with the last handle.
    pub fn spawn(
        path: PathBuf,
        count: usize,
        connect: fn(&std::path::Path) -> rusqlite::Result<Connection>,
    ) -> std::io::Result<Readers> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..count.max(1) {
            let (queue, path) = (queue.clone(), path.clone());
            std::thread::Builder::new()
                .name(format!("hookline-read-{i}"))
                .spawn(move || {
                    let mut conn: Option<Connection> = None;
                    loop {
                        let next = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else {
                            return;
                        };
                        if conn.is_none() {
                            match connect(&path) {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    job(Err(&e));
                                    continue;
                                }
                            }
                        }
                        if let Some(c) = &conn {
                            job(Ok(c));
                        }
                    }
                })?;
        }
        Ok(Readers { jobs })
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
        self.jobs
            .send(job)
            .map_err(|_| unavailable(std::io::Error::other("the read threads have stopped")))?;
        answered.await.map_err(unavailable)?
    }
}
