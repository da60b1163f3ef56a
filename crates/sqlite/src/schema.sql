-- Hookline's local store. Times are Unix milliseconds.
CREATE TABLE IF NOT EXISTS tenants (
    id           TEXT PRIMARY KEY,
    api_key_hash TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- The current key has no expiry; rotated-out keys sign until expires_at.
CREATE TABLE IF NOT EXISTS webhook_keys (
    tenant_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rules (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    trigger   TEXT NOT NULL,
    body      TEXT NOT NULL,
    -- Deliveries a second, when the rule limits them (also in body).
    rate_limit INTEGER,
    -- The scope's key (Scope::key): an event reads only its candidates.
    scope_key TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS events (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    data        TEXT NOT NULL,
    -- {"type","id"} as JSON, or NULL.
    subject     TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    line_id         TEXT,
    line_product_id TEXT,
    status          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    -- While pending: when it is next due (the queue in memory is rebuilt
    -- from these at open), and how often it was received since it was
    -- last queued, which numbers its attempts.
    next_attempt_at INTEGER,
    receives        INTEGER NOT NULL DEFAULT 0,
    -- The most recent attempts (ATTEMPT_LOG_LIMIT), oldest first, as a JSON
    -- list: recording one is the same update that sets the status.
    attempts        TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_tenant ON deliveries (tenant_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_by_rule ON deliveries (tenant_id, rule_id, seq);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (tenant_id, event_id);

-- A rule's receiver health for the circuit breaker; no row means healthy.
CREATE TABLE IF NOT EXISTS rule_health (
    tenant_id  TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    -- The breaker's window: attempts and failures since window_start.
    attempts   INTEGER NOT NULL DEFAULT 0,
    failures   INTEGER NOT NULL,
    window_start INTEGER,
    open_until INTEGER,
    -- Times the circuit opened since the last success.
    trips      INTEGER NOT NULL DEFAULT 0,
    -- The first failure since the last success.
    failing_since INTEGER,
    PRIMARY KEY (tenant_id, rule_id)
) WITHOUT ROWID;

-- Each rule's traffic in five-minute buckets (hookline_core::traffic): a
-- day of them, each a Tally as JSON, written a few seconds' worth at a time.
CREATE TABLE IF NOT EXISTS rule_traffic (
    tenant_id  TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    tally      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rule_traffic_by_age ON rule_traffic (bucket);
