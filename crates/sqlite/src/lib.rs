//! Hookline's local backend: the store and a durable deliveries queue in one
//! SQLite file (WAL). Writes go through one group-committing writer thread;
//! reads use a small pool of connections beside it.

mod error;
mod queue;
mod readers;
mod schedule;
mod sealing;
mod store;
mod writer;

pub use schedule::Fairness;
pub use sealing::parse_sealing_key;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_core::Timestamp;
use hookline_core::breaker::Breaker;
use hookline_core::concurrency::AdaptiveLimit;
use hookline_core::ports::StoreError;
use hookline_core::rate::TokenBucket;
use hookline_core::record::decode_rule;
use hookline_core::sealing::KeySealer;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::error::unavailable;
use crate::readers::Readers;
use crate::writer::Writer;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the store at {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start the store writer: {0}")]
    Thread(#[from] std::io::Error),
    #[error("cannot make the store at {path} private to its owner: {source}")]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    SealingKey(#[from] sealing::SealingKeyError),
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a received delivery stays invisible to other receivers; it
    /// must outlast an attempt's timeout.
    pub visibility_timeout: Duration,
    /// Each rule's and tenant's share of the attempts in flight.
    pub fairness: Fairness,
    pub breaker: Breaker,
    /// The key webhook keys are sealed with; `None` keeps it in a file
    /// beside the database (`<db>.key`, mode 0600), made on first open.
    pub sealing_key: Option<[u8; 32]>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            fairness: Fairness::default(),
            breaker: Breaker::default(),
            sealing_key: None,
        }
    }
}

/// The store and deliveries queue on one SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    readers: Readers,
    work: Arc<Notify>,
    options: SqliteOptions,
    sealer: KeySealer,
    /// What receiving keeps between receives: each rate-limited rule's
    /// token bucket, and when a look past blocked work last found nothing.
    schedule: Mutex<ScheduleState>,
    /// Each tenant's test sends in the current minute.
    test_sends: Mutex<HashMap<String, (i64, u32)>>,
    /// The (tenant, rule) pairs that may have a `rule_health` row: every
    /// row the breaker writes is added; one it deletes is removed, so a
    /// success of a rule not here needs no statement. Rows deleted elsewhere
    /// (a rule edited or disabled) only leave a pair here, which costs a read.
    health_rows: Mutex<HashSet<(String, String)>>,
}

#[derive(Default)]
pub(crate) struct ScheduleState {
    pub buckets: HashMap<String, TokenBucket>,
    /// Each rule's attempts in flight as its receiver's answers allow.
    pub limits: HashMap<String, AdaptiveLimit>,
    pub last_fruitless: Option<(Timestamp, String)>,
    /// The last receive left due work behind for a share, a circuit or a
    /// rate: settling an attempt may free room for it, so it wakes the
    /// deliverer (otherwise only new or retried work does).
    pub held_back: bool,
}

/// Makes the store's files readable by their owner only (0600): they hold
/// every event and every receiver's answers. SQLite gives the `-wal` and
/// `-shm` files it creates the database file's mode, so the file is made
/// before SQLite opens it; files an older Hookline left are narrowed too.
fn owner_only(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL makes a commit survive a
    // power cut, which is what the 202 promises. Group commit pays for it.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;",
    )?;
    // Every statement the store runs, kept prepared: rusqlite keeps 16, and
    // with more than that in turn the cache thrashes and each statement is
    // parsed again (a quarter of the server's time, measured with perf).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A read connection: the writer's settings, with a page cache of 2 MiB
/// instead of 32 (the operating system caches the file for all of them).
fn connect_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(path)?;
    conn.execute_batch("PRAGMA cache_size = -2048;")?;
    Ok(conn)
}

/// How many read connections work at once.
const READERS: usize = 4;

/// More than the distinct statements the store prepares (about 50).
const STATEMENT_CACHE: usize = 128;

/// Brings a file made by an earlier Hookline up to the schema: queue rows
/// name their tenant and rule (filled in from their deliveries), events may
/// carry a subject, and the queue's indexes are the ones receiving uses.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    if add_column(conn, "queue", "rule_id", "TEXT NOT NULL DEFAULT ''")? {
        add_column(conn, "queue", "tenant_id", "TEXT NOT NULL DEFAULT ''")?;
        conn.execute_batch(
            "UPDATE queue SET (tenant_id, rule_id) =
               (SELECT tenant_id, rule_id FROM deliveries WHERE seq = queue.delivery_seq);",
        )?;
    }
    add_column(conn, "events", "subject", "TEXT")?;
    add_column(conn, "rules", "rate_limit", "INTEGER")?;
    if add_column(conn, "rules", "scope_key", "TEXT NOT NULL DEFAULT ''")? {
        file_rules_by_scope(conn)?;
    }
    add_column(conn, "rule_health", "failing_since", "INTEGER")?;
    add_column(
        conn,
        "rule_health",
        "attempts",
        "INTEGER NOT NULL DEFAULT 0",
    )?;
    add_column(conn, "rule_health", "window_start", "INTEGER")?;
    add_column(conn, "rule_health", "trips", "INTEGER NOT NULL DEFAULT 0")?;
    // Every receive reads the rate-limited rules, the open circuits and the
    // leases in flight: partial indexes keep each read to those rows.
    conn.execute_batch(
        "DROP INDEX IF EXISTS queue_due;
         CREATE INDEX IF NOT EXISTS queue_due_by_rule ON queue (visible_at, rule_id, tenant_id);
         CREATE INDEX IF NOT EXISTS queue_leased ON queue (visible_at, rule_id, tenant_id) WHERE leased = 1;
         DROP INDEX IF EXISTS rules_by_trigger;
         CREATE INDEX IF NOT EXISTS rules_by_scope ON rules (tenant_id, trigger, scope_key);
         CREATE INDEX IF NOT EXISTS rules_rate_limited ON rules (id, rate_limit) WHERE rate_limit IS NOT NULL;
         DROP INDEX IF EXISTS rule_health_open;
         CREATE INDEX IF NOT EXISTS rule_health_circuits ON rule_health (rule_id, open_until)
           WHERE open_until IS NOT NULL;",
    )
}

/// Fills the scope key of rules stored before rules were filed by scope.
fn file_rules_by_scope(conn: &Connection) -> rusqlite::Result<()> {
    let rows: Vec<(String, String, String)> = conn
        .prepare("SELECT id, tenant_id, body FROM rules")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE rules SET scope_key = ?2 WHERE id = ?1")?;
    for (id, tenant, body) in rows {
        // A rule that cannot be read stops the upgrade, naming it: filed
        // under no key it would silently never fire.
        let rule = decode_rule(&body, &hookline_core::TenantId::stored(tenant)).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?;
        update.execute(params![id, rule.scope.key()])?;
    }
    Ok(())
}

/// Adds `column` to `table` unless a file made by this version has it
/// already; true when it was added.
fn add_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<bool> {
    let exists = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?;
    if !exists {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl};"))?;
    }
    Ok(!exists)
}

impl SqliteBackend {
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        let err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        let sealer = KeySealer::new(&match options.sealing_key {
            Some(k) => k,
            None => sealing::key_beside(&path)?,
        });
        owner_only(&path).map_err(|source| OpenError::Permissions {
            path: path.clone(),
            source,
        })?;
        let conn = connect(&path).map_err(err)?;
        conn.execute_batch(include_str!("schema.sql"))
            .and_then(|()| migrate(&conn))
            .map_err(err)?;
        sealing::seal_plain_keys(&conn, &sealer).map_err(err)?;
        let health_rows = conn
            .prepare("SELECT tenant_id, rule_id FROM rule_health")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<HashSet<(String, String)>>>()
            })
            .map_err(err)?;
        let work = Arc::new(Notify::new());
        let writer = Writer::spawn(conn, work.clone())?;
        let readers = Readers::spawn(path.clone(), READERS, connect_reader)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                readers,
                work,
                options,
                sealer,
                schedule: Mutex::default(),
                test_sends: Mutex::default(),
                health_rows: Mutex::new(health_rows),
            }),
        })
    }

    /// Signalled whenever deliveries are queued or re-queued.
    pub fn work(&self) -> &Notify {
        &self.inner.work
    }

    /// Runs `f` on one of the [`READERS`] read connections, off the async
    /// threads.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.read(f).await
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    pub(crate) fn options(&self) -> &SqliteOptions {
        &self.inner.options
    }

    pub(crate) fn sealer(&self) -> &KeySealer {
        &self.inner.sealer
    }

    pub(crate) fn health_rows(&self) -> &Mutex<HashSet<(String, String)>> {
        &self.inner.health_rows
    }

    pub(crate) fn test_sends(&self) -> &Mutex<HashMap<String, (i64, u32)>> {
        &self.inner.test_sends
    }

    pub(crate) fn schedule(&self) -> &Mutex<ScheduleState> {
        &self.inner.schedule
    }

    /// Makes deliveries leased by a process that is gone visible again, so a
    /// restart resumes them at once instead of after the visibility timeout.
    /// Only the process that owns the queue may call it, before it receives.
    pub async fn release_leases(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.writer()
            .write(move |conn, effects| {
                let n = conn
                    .execute(
                        "UPDATE queue SET leased = 0, visible_at = ?1 WHERE leased = 1",
                        [now.as_millis()],
                    )
                    .map_err(unavailable)?;
                effects.queued |= n > 0;
                Ok(n as u64)
            })
            .await
    }

    /// When the earliest queued delivery becomes due, if any is queued.
    pub async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT MIN(visible_at) FROM queue", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map(|v| v.flatten().map(Timestamp::from_millis))
            .map_err(unavailable)
        })
        .await
    }

    /// How many tenants exist: `serve` makes a demo tenant in an empty store.
    pub async fn tenant_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM tenants", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(unavailable)
        })
        .await
    }
}
