//! Hookline's local backend: the store and a durable deliveries queue in one
//! SQLite file (WAL). Writes go through one group-committing writer thread;
//! reads use a small pool of connections beside it.

mod due;
mod error;
mod queue;
mod readers;
mod schedule;
mod sealing;
mod store;
mod traffic;
mod writer;

pub use schedule::Fairness;
pub use sealing::parse_sealing_key;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookline_core::Rule;
use hookline_core::Timestamp;
use hookline_core::breaker::Breaker;
use hookline_core::concurrency::AdaptiveLimit;
use hookline_core::id::{RuleId, TenantId};
use hookline_core::ports::StoreError;
use hookline_core::rate::TokenBucket;
use hookline_core::record::decode_rule;
use hookline_core::sealing::KeySealer;
use hookline_core::signing::StoredKey;
use hookline_core::traffic::TrafficBuffer;
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use crate::due::{DueQueue, Entry};
use crate::error::unavailable;
use crate::readers::Readers;
use crate::writer::{COMMIT_BUCKETS_US, CommitTimes, Writer};

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
    /// The most pending deliveries the queue holds in memory; the rest wait
    /// in the file until it drains (about 200 bytes each).
    pub queue_in_memory: usize,
    /// How long rules' counted traffic waits in memory before it is
    /// written: each busy rule costs a write this often.
    pub traffic_every: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            fairness: Fairness::default(),
            breaker: Breaker::default(),
            sealing_key: None,
            queue_in_memory: 100_000,
            traffic_every: Duration::from_secs(10),
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
    queue: Arc<Mutex<DueQueue>>,
    readers: Readers,
    work: Arc<Notify>,
    options: SqliteOptions,
    sealer: KeySealer,
    /// What receiving keeps between receives: each rate-limited rule's
    /// token bucket, and when a look past blocked work last found nothing.
    schedule: Mutex<ScheduleState>,
    /// Each tenant's test sends in the current minute.
    test_sends: Mutex<HashMap<String, (i64, u32)>>,
    /// The (tenant, rule) pairs that have a `rule_health` row, with the
    /// row's `open_until`: every row the breaker writes is added, one it or
    /// an edit deletes is removed. So a success of a healthy rule needs no
    /// statement, and receiving knows the open circuits without a read.
    health: Mutex<HashMap<(String, String), Option<i64>>>,
    /// Each rule that limits its deliveries a second, and its limit.
    rate_limits: Mutex<HashMap<String, u32>>,
    /// Each tenant's webhook keys as last read (with their expiries, so a
    /// key stops signing on time), and when: kept for [`SIGNING_KEYS_FOR`],
    /// or until the tenant's key is rotated here.
    signing: Mutex<HashMap<String, (Timestamp, Vec<StoredKey>)>>,
    /// Rules as last read for an attempt (`None`: gone), by id: every
    /// write to a rule goes through this process and drops its copy, so
    /// a kept rule is never stale. At most [`RULES_KEPT`].
    rules: Mutex<HashMap<String, Option<Rule>>>,
    /// The tenants known to exist (tenants are never deleted): an event of
    /// one plans without looking it up. One made by another process (the
    /// `tenant create` command) is looked up once.
    tenants: Mutex<HashSet<String>>,
    /// Rules' traffic counted by settles and not yet written.
    traffic: Mutex<TrafficBuffer>,
    commit_times: Arc<CommitTimes>,
    /// Times a rule's circuit opened: a trip, or a probe that failed.
    circuits_opened: AtomicU64,
}

/// What the store counts of itself, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreMetrics {
    /// Times a rule's circuit opened: a trip, or a probe that failed.
    pub circuits_opened: u64,
    /// The writer's transactions, from `BEGIN` to `COMMIT` done: how many
    /// took at most each bound (in seconds), their count and their sum.
    pub commit_buckets: Vec<(f64, u64)>,
    pub commits: u64,
    pub commit_seconds: f64,
}

/// How many rules are kept for attempts; past it the copies are dropped
/// and read again as attempts need them.
const RULES_KEPT: usize = 10_000;

/// How long a tenant's webhook keys are kept in memory: a key rotated by
/// another process (`hookline tenant create` makes keys, serve rotates
/// them) is seen this much later at most.
const SIGNING_KEYS_FOR: Duration = Duration::from_secs(5);

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

/// The statements this process's store connections have run since
/// counting began ([`count_statements`]): the data statements (queries,
/// inserts, updates) on the writer and on the readers, and the
/// transaction control (`BEGIN`, `SAVEPOINT`, `COMMIT`, `PRAGMA`) apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatementsRun {
    pub writer: u64,
    pub readers: u64,
    pub control: u64,
}

static COUNTING: AtomicBool = AtomicBool::new(false);
static WRITER_STATEMENTS: AtomicU64 = AtomicU64::new(0);
static READER_STATEMENTS: AtomicU64 = AtomicU64::new(0);
static CONTROL_STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts the statements of every store opened after this call, in this
/// process (for tests and benchmarks: it costs a callback a statement).
pub fn count_statements() {
    COUNTING.store(true, Ordering::Relaxed);
}

pub fn statements_run() -> StatementsRun {
    StatementsRun {
        writer: WRITER_STATEMENTS.load(Ordering::Relaxed),
        readers: READER_STATEMENTS.load(Ordering::Relaxed),
        control: CONTROL_STATEMENTS.load(Ordering::Relaxed),
    }
}

fn count_statement(event: TraceEvent<'_>) {
    let TraceEvent::Stmt(_, sql) = event else {
        return;
    };
    let verb = sql.split_whitespace().next().unwrap_or("");
    let counter = if [
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "PRAGMA",
    ]
    .iter()
    .any(|c| verb.eq_ignore_ascii_case(c))
    {
        &CONTROL_STATEMENTS
    } else if std::thread::current().name() == Some(writer::THREAD) {
        &WRITER_STATEMENTS
    } else {
        &READER_STATEMENTS
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    if COUNTING.load(Ordering::Relaxed) {
        conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(count_statement));
    }
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL makes a commit survive a
    // power cut, which is what the 202 promises. Group commit pays for it.
    // A checkpoint every 10,000 WAL pages (40 MiB) instead of SQLite's
    // 1,000 copies a page rewritten by many commits to the file once: 8-10 %
    // less CPU per delivery at 250 events/s, none lost at other rates.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768;
         PRAGMA wal_autocheckpoint = 10000;",
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

/// Brings a file made by an earlier Hookline up to the schema: events may
/// carry a subject, rules their rate limit and scope key, health rows the
/// breaker's window; and the queue and attempts tables of earlier versions
/// move into the deliveries' rows (a pending delivery's next attempt time
/// and receives, and its attempt log as JSON), where one update records an
/// attempt.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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
    add_column(conn, "deliveries", "next_attempt_at", "INTEGER")?;
    add_column(conn, "deliveries", "receives", "INTEGER NOT NULL DEFAULT 0")?;
    add_column(conn, "deliveries", "attempts", "TEXT")?;
    if table_exists(conn, "queue")? {
        // A delivery leased when the earlier process stopped is due at once.
        conn.execute_batch(
            "BEGIN;
             UPDATE deliveries SET
               next_attempt_at = CASE WHEN q.leased = 1 THEN 0 ELSE q.visible_at END,
               receives = q.receive_count
             FROM queue q WHERE q.delivery_seq = deliveries.seq;
             DROP TABLE queue;
             COMMIT;",
        )?;
    }
    if table_exists(conn, "attempts")? {
        conn.execute_batch(
            "BEGIN;
             UPDATE deliveries SET attempts = (
               SELECT json_group_array(json(record)) FROM (
                 SELECT json_object(
                   'at', strftime('%Y-%m-%dT%H:%M:%fZ', a.at / 1000.0, 'unixepoch'),
                   'status_code', a.status_code, 'duration_ms', a.duration_ms,
                   'error', a.error, 'response_body', a.response_body) AS record
                 FROM attempts a WHERE a.delivery_seq = deliveries.seq ORDER BY a.n))
             WHERE seq IN (SELECT delivery_seq FROM attempts);
             DROP TABLE attempts;
             COMMIT;",
        )?;
    }
    // Receiving reads nothing; opening reads the pending deliveries, and
    // the index on them changes only when one is accepted, retried or ends.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (next_attempt_at)
           WHERE status = 'pending';
         DROP INDEX IF EXISTS rules_by_trigger;
         CREATE INDEX IF NOT EXISTS rules_by_scope ON rules (tenant_id, trigger, scope_key);
         DROP INDEX IF EXISTS rules_rate_limited;
         DROP INDEX IF EXISTS rule_health_open;
         DROP INDEX IF EXISTS rule_health_circuits;",
    )
}

fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([table])
}

/// Reads the queue from the file: every pending delivery, due at its next
/// attempt, as many as the queue holds (the earliest due).
pub(crate) fn pending(conn: &Connection, queue: &mut DueQueue) -> rusqlite::Result<()> {
    let rows = conn
        .prepare_cached(
            "SELECT seq, tenant_id, rule_id, COALESCE(next_attempt_at, 0), receives
             FROM deliveries WHERE status = 'pending' ORDER BY next_attempt_at LIMIT ?1",
        )?
        .query_map([queue.cap() as i64 + 1], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Entry {
                    tenant_id: r.get::<_, String>(1)?.into(),
                    rule_id: r.get::<_, String>(2)?.into(),
                    visible_at: r.get(3)?,
                    receive_count: r.get(4)?,
                    leased: false,
                    fresh: None,
                    trace: None,
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let read_all = rows.len() <= queue.cap();
    for (seq, entry) in rows {
        queue.restore(seq, entry);
    }
    queue.spilled = !read_all;
    Ok(())
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
        let health = conn
            .prepare("SELECT tenant_id, rule_id, open_until FROM rule_health")
            .and_then(|mut st| {
                st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
                    .collect::<rusqlite::Result<HashMap<(String, String), Option<i64>>>>()
            })
            .map_err(err)?;
        let rate_limits = conn
            .prepare("SELECT id, rate_limit FROM rules WHERE rate_limit IS NOT NULL")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<HashMap<String, u32>>>()
            })
            .map_err(err)?;
        let mut queue = DueQueue::new(options.queue_in_memory);
        pending(&conn, &mut queue).map_err(err)?;
        let queue = Arc::new(Mutex::new(queue));
        let work = Arc::new(Notify::new());
        let commit_times = Arc::new(CommitTimes::default());
        let writer = Writer::spawn(conn, work.clone(), queue.clone(), commit_times.clone())?;
        let readers = Readers::spawn(path.clone(), READERS, connect_reader)?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                queue,
                readers,
                work,
                options,
                sealer,
                schedule: Mutex::default(),
                test_sends: Mutex::default(),
                health: Mutex::new(health),
                rate_limits: Mutex::new(rate_limits),
                signing: Mutex::default(),
                rules: Mutex::default(),
                tenants: Mutex::default(),
                traffic: Mutex::default(),
                commit_times,
                circuits_opened: AtomicU64::new(0),
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

    pub(crate) fn health(&self) -> &Mutex<HashMap<(String, String), Option<i64>>> {
        &self.inner.health
    }

    pub(crate) fn rate_limits(&self) -> &Mutex<HashMap<String, u32>> {
        &self.inner.rate_limits
    }

    pub(crate) fn queue(&self) -> &Mutex<DueQueue> {
        &self.inner.queue
    }

    /// A tenant's signing keys as kept, if read less than
    /// [`SIGNING_KEYS_FOR`] ago.
    pub(crate) fn kept_signing_keys(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
    ) -> Option<Vec<StoredKey>> {
        let kept = self.inner.signing.lock().ok()?;
        let (read_at, keys) = kept.get(tenant_id.as_str())?;
        (now.as_millis() - read_at.as_millis() < SIGNING_KEYS_FOR.as_millis() as i64)
            .then(|| keys.clone())
    }

    pub(crate) fn keep_signing_keys(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
        keys: Vec<StoredKey>,
    ) {
        if let Ok(mut kept) = self.inner.signing.lock() {
            kept.insert(tenant_id.to_string(), (now, keys));
        }
    }

    pub(crate) fn forget_signing_keys(&self, tenant_id: &TenantId) {
        if let Ok(mut kept) = self.inner.signing.lock() {
            kept.remove(tenant_id.as_str());
        }
    }

    pub(crate) fn knows_tenant(&self, tenant_id: &str) -> bool {
        self.inner
            .tenants
            .lock()
            .is_ok_and(|t| t.contains(tenant_id))
    }

    pub(crate) fn know_tenant(&self, tenant_id: &str) {
        if let Ok(mut tenants) = self.inner.tenants.lock()
            && !tenants.contains(tenant_id)
        {
            tenants.insert(tenant_id.to_owned());
        }
    }

    /// The rule as kept for attempts: `Some(None)` when it is gone.
    pub(crate) fn kept_rule(&self, rule_id: &str) -> Option<Option<Rule>> {
        self.inner.rules.lock().ok()?.get(rule_id).cloned()
    }

    pub(crate) fn keep_rule(&self, rule_id: &RuleId, rule: Option<Rule>) {
        if let Ok(mut rules) = self.inner.rules.lock() {
            if rules.len() >= RULES_KEPT {
                rules.clear();
            }
            rules.insert(rule_id.to_string(), rule);
        }
    }

    pub(crate) fn forget_rule(&self, rule_id: &str) {
        if let Ok(mut rules) = self.inner.rules.lock() {
            rules.remove(rule_id);
        }
    }

    /// Keeps what receiving knows of a rule in step with a write to it: its
    /// copy, its rate limit, and its health row (an edit deletes it).
    pub(crate) fn rule_changed(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        rate_limit: Option<u32>,
    ) {
        self.forget_rule(rule_id.as_str());
        if let Ok(mut limits) = self.rate_limits().lock() {
            match rate_limit {
                Some(limit) => limits.insert(rule_id.to_string(), limit),
                None => limits.remove(rule_id.as_str()),
            };
        }
        if let Ok(mut health) = self.health().lock() {
            health.remove(&(tenant_id.to_string(), rule_id.to_string()));
        }
    }

    /// Counts a circuit that opened.
    pub(crate) fn circuit_opened(&self) {
        self.inner.circuits_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// What the store has counted of itself since it was opened.
    pub fn metrics(&self) -> StoreMetrics {
        let times = &self.inner.commit_times;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        StoreMetrics {
            circuits_opened: get(&self.inner.circuits_opened),
            commit_buckets: COMMIT_BUCKETS_US
                .iter()
                .zip(&times.buckets)
                .map(|(us, n)| (*us as f64 / 1e6, get(n)))
                .collect(),
            commits: get(&times.count),
            commit_seconds: get(&times.sum_us) as f64 / 1e6,
        }
    }

    pub(crate) fn traffic(&self) -> &Mutex<TrafficBuffer> {
        &self.inner.traffic
    }

    pub(crate) fn test_sends(&self) -> &Mutex<HashMap<String, (i64, u32)>> {
        &self.inner.test_sends
    }

    pub(crate) fn schedule(&self) -> &Mutex<ScheduleState> {
        &self.inner.schedule
    }

    /// How many pending deliveries the queue holds.
    pub fn queued(&self) -> usize {
        self.queue().lock().map_or(0, |q| q.len())
    }

    /// When the earliest queued delivery becomes due (or its lease runs
    /// out), if any is queued.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue()
            .lock()
            .ok()?
            .next_due()
            .map(Timestamp::from_millis)
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
