//! The backend conformance suite on a real SQLite file, plus what only the
//! local queue does (stale-lease guard, releasing leases at start).

use hookline_core::id::{RuleId, TenantId};
use hookline_core::ports::Lease;
use std::time::Duration;

use async_trait::async_trait;
use hookline_conformance::{self as suite, Harness};
use hookline_core::delivery::Attempt;
use hookline_core::ports::{Acceptance, DeliveryQueue, NewTenant, Outcome, Store};
use hookline_core::{DeliveryStatus, Rule, RuleDraft, Scope, Settlement, Trigger, WebhookKey};
use hookline_sqlite::{Fairness, SqliteBackend, SqliteOptions};
use tempfile::TempDir;

const VISIBILITY: Duration = Duration::from_secs(1);

/// A backend on a fresh file; the directory lives as long as the harness.
struct Sqlite {
    backend: SqliteBackend,
    _dir: TempDir,
}

fn options() -> SqliteOptions {
    SqliteOptions {
        visibility_timeout: VISIBILITY,
        breaker: suite::BREAKER,
        // The suite holds the queue to SQS's semantics, which know no
        // in-flight limit; the adaptive one is the local deliverer's.
        fairness: Fairness {
            adaptive: false,
            ..Fairness::default()
        },
        // Counted traffic is written at once, so the suite reads it back
        // from the file.
        traffic_every: Duration::ZERO,
        ..SqliteOptions::default()
    }
}

fn harness() -> Sqlite {
    let dir = tempfile::tempdir().unwrap();
    Sqlite {
        backend: SqliteBackend::open(dir.path().join("hookline.db"), options()).unwrap(),
        _dir: dir,
    }
}

#[async_trait]
impl Harness for Sqlite {
    fn store(&self) -> &dyn Store {
        &self.backend
    }
    fn queue(&self) -> &dyn DeliveryQueue {
        &self.backend
    }
    /// Accepting an event routes it in the same transaction.
    async fn route(&self) {}
    fn visibility(&self) -> Duration {
        VISIBILITY
    }
}

hookline_conformance::conformance_tests!(harness());

async fn one_queued_delivery(b: &SqliteBackend) {
    let now = suite::now();
    suite::tenant(b, "a").await;
    suite::paid_rule(b, "a", "r").await;
    let body = r#"{"id":"e","tenant_id":"a","type":"order.paid","occurred_at":"2026-11-29T12:00:00Z","data":{}}"#;
    b.accept_event(
        &hookline_core::Event::from_json(body.as_bytes()).unwrap(),
        now,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stale_lease_records_its_attempt_but_moves_nothing() {
    let h = harness();
    let b = &h.backend;
    one_queued_delivery(b).await;
    let t = suite::now();
    let first = b.receive(10, t).await.unwrap();
    let later = hookline_core::Timestamp::from_millis(t.as_millis() + 1000);
    let second = b.receive(10, later).await.unwrap();
    assert_eq!(
        (
            first[0].lease.as_ref().map_or(0, Lease::receive_count),
            second[0].lease.as_ref().map_or(0, Lease::receive_count)
        ),
        (1, 2)
    );
    let attempt = Attempt {
        at: later,
        status_code: Some(200),
        duration_ms: 1,
        error: None,
        response_body: None,
    };
    let stale = Settlement::new(&first[0], attempt, Outcome::Succeeded);
    b.settle(vec![stale]).await.unwrap();
    let d = b
        .delivery(&TenantId::stored("a"), &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Pending, 1));
}

/// The queue lives in memory and is rebuilt from the file at open: a
/// delivery leased when the process stopped is due at once, one waiting for
/// its retry waits on, and its attempts go on being numbered.
#[tokio::test]
async fn a_restart_resumes_leased_deliveries_at_once_and_retries_on_time() {
    let h = harness();
    let db = h._dir.path().join("hookline.db");
    one_queued_delivery(&h.backend).await;
    let now = suite::now();
    let first = h.backend.receive(10, now).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(h.backend.receive(10, now).await.unwrap().is_empty());
    assert_eq!(h.backend.next_due(), Some(now.saturating_add(VISIBILITY)));

    let reopened = SqliteBackend::open(&db, options()).unwrap();
    let again = reopened.receive(10, now).await.unwrap();
    assert_eq!(again.len(), 1, "the lease did not outlive its process");
    let retry_at = hookline_core::Timestamp::from_millis(now.as_millis() + 60_000);
    let failed = Attempt {
        at: now,
        status_code: Some(500),
        duration_ms: 1,
        error: None,
        response_body: None,
    };
    reopened
        .settle(vec![Settlement::new(
            &again[0],
            failed,
            Outcome::RetryAt(retry_at),
        )])
        .await
        .unwrap();

    let third = SqliteBackend::open(&db, options()).unwrap();
    assert_eq!(third.queued(), 1);
    assert_eq!(third.next_due(), Some(retry_at));
    assert!(third.receive(10, now).await.unwrap().is_empty());
    let due = third.receive(10, retry_at).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempt, 2, "the retry is the second attempt");
}

/// Past the deliveries it holds in memory the queue waits in the file, and
/// every delivery is still handed out as it drains.
#[tokio::test]
async fn a_queue_past_its_memory_is_refilled_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteBackend::open(
        dir.path().join("hookline.db"),
        SqliteOptions {
            queue_in_memory: 4,
            ..options()
        },
    )
    .unwrap();
    one_queued_delivery(&b).await;
    let now = suite::now();
    for i in 0..11 {
        let body = format!(
            r#"{{"id":"e{i}","tenant_id":"a","type":"order.paid","occurred_at":"2026-11-29T12:00:00Z","data":{{}}}}"#
        );
        b.accept_event(
            &hookline_core::Event::from_json(body.as_bytes()).unwrap(),
            now,
        )
        .await
        .unwrap();
    }
    assert_eq!(b.queued(), 4, "the rest wait in the file");
    let mut delivered = std::collections::HashSet::new();
    for _ in 0..20 {
        let jobs = b.receive(2, now).await.unwrap();
        delivered.extend(jobs.iter().map(|j| j.event_id.to_string()));
        b.settle(suite::taken(&jobs, now)).await.unwrap();
    }
    assert_eq!(delivered.len(), 12, "{delivered:?}");
    assert_eq!(b.queued(), 0);
}

/// Webhook keys are sealed at rest under a key in a 0600 file beside the
/// database; a key stored in clear by an earlier Hookline is sealed on open.
#[tokio::test]
async fn webhook_keys_are_sealed_at_rest_and_old_ones_migrated() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookline.db");
    let key = WebhookKey::from_bytes(&[5; 32]).unwrap();
    let secret = key.expose();
    {
        let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
        b.create_tenant(NewTenant {
            id: TenantId::stored("a"),
            api_key_hash: "h".into(),
            webhook_key: key.clone(),
            created_at: suite::now(),
        })
        .await
        .unwrap();
        assert_eq!(
            b.signing_keys(&TenantId::stored("a"), suite::now())
                .await
                .unwrap()
                .0,
            vec![key.clone()]
        );
    }
    let key_file = dir.path().join("hookline.db.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let raw = rusqlite::Connection::open(&db).unwrap();
    let stored: String = raw
        .query_row("SELECT key FROM webhook_keys", [], |r| r.get(0))
        .unwrap();
    assert!(stored.starts_with("sealed1:") && !stored.contains(&secret[6..]));
    for file in ["hookline.db", "hookline.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&secret[6..]),
                "{file} holds the key in clear"
            );
        }
    }

    // As an earlier Hookline left it: the key in clear.
    raw.execute("UPDATE webhook_keys SET key = ?1", [&secret])
        .unwrap();
    drop(raw);
    let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
    assert_eq!(
        b.signing_keys(&TenantId::stored("a"), suite::now())
            .await
            .unwrap()
            .0,
        vec![key]
    );
    let raw = rusqlite::Connection::open(&db).unwrap();
    let stored: String = raw
        .query_row("SELECT key FROM webhook_keys", [], |r| r.get(0))
        .unwrap();
    assert!(stored.starts_with("sealed1:"), "migrated on open");

    // Another sealing key cannot open them: the error says so, not the key.
    let wrong = SqliteOptions {
        sealing_key: Some([9; 32]),
        ..SqliteOptions::default()
    };
    let other = SqliteBackend::open(&db, wrong).unwrap();
    let e = other
        .signing_keys(&TenantId::stored("a"), suite::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");
}

/// Rules stored by a Hookline from before rules were filed by scope are
/// filed on open, and an event reads only the rules filed under its scope
/// keys: a rule of another product that cannot even be read does not stop
/// it (one of its own product does, loudly).
#[tokio::test]
async fn an_event_reads_only_its_candidate_rules_and_old_files_are_filed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookline.db");
    let product = |id: &str| Scope::Product { id: id.into() };
    let draft =
        |scope: Scope| RuleDraft::new("r", Trigger::OrderPaid, "https://example.com/r", scope);
    {
        let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
        b.create_tenant(NewTenant {
            id: TenantId::stored("a"),
            api_key_hash: "h".into(),
            webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
            created_at: suite::now(),
        })
        .await
        .unwrap();
        for (id, scope) in [("mine", product("p1")), ("other", product("p2"))] {
            let rule = Rule::new(
                RuleId::stored(id),
                TenantId::stored("a"),
                draft(scope),
                suite::now(),
            );
            b.insert_rule(&rule, 10).await.unwrap();
        }
    }
    // As a Hookline from before filing by scope left the file.
    let raw = rusqlite::Connection::open(&db).unwrap();
    raw.execute_batch(
        "DROP INDEX rules_by_scope;
         ALTER TABLE rules DROP COLUMN scope_key;
         CREATE INDEX rules_by_trigger ON rules (tenant_id, trigger);",
    )
    .unwrap();
    let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
    raw.execute(
        "UPDATE rules SET body = 'not a rule' WHERE id = 'other'",
        [],
    )
    .unwrap();
    drop(raw);
    let event = |id: &str, product: &str| {
        let body = serde_json::json!({
            "id": id, "tenant_id": "a", "type": "order.paid", "occurred_at": "2026-11-29T12:00:00Z",
            "lines": [{"id": "l1", "product_id": product}], "data": {}
        });
        hookline_core::Event::from_json(body.to_string().as_bytes()).unwrap()
    };
    b.accept_event(&event("e1", "p1"), suite::now())
        .await
        .expect("the unreadable rule of p2 is not read for p1");
    let jobs = b.receive(10, suite::now()).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.rule_id.as_str()).collect::<Vec<_>>(),
        ["mine"],
        "the old rule was filed under its scope on open"
    );
    let e = b.accept_event(&event("e2", "p2"), suite::now()).await;
    assert!(e.is_err(), "p2's candidate is read, and cannot be: {e:?}");
}

/// Every file of the store holds tenants' data: only its owner may read it,
/// whether Hookline made it or an older Hookline left it readable to all.
#[tokio::test]
async fn the_store_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookline.db");
    let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
    one_queued_delivery(&b).await;
    for suffix in ["", "-wal", "-shm", ".key"] {
        let path = dir.path().join(format!("hookline.db{suffix}"));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    drop(b);

    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _b = SqliteBackend::open(&old, SqliteOptions::default()).unwrap();
    assert_eq!(mode(&old), 0o600, "an older file is narrowed");
}

/// A batch that makes more deliveries than one event may (written in
/// several transactions, so it is never one long stall of the writer)
/// still gets one answer per event, in order, and every delivery stored.
#[tokio::test]
async fn a_batch_heavier_than_one_event_is_answered_in_order_and_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookline.db");
    let b = SqliteBackend::open(&db, SqliteOptions::default()).unwrap();
    let now = suite::now();
    b.create_tenant(NewTenant {
        id: TenantId::stored("a"),
        api_key_hash: "h".into(),
        webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
        created_at: now,
    })
    .await
    .unwrap();
    for i in 0..6 {
        let mut draft = RuleDraft::new(
            "r",
            Trigger::OrderPaid,
            "https://example.com/",
            Scope::Universal,
        );
        draft.per_order_line = true;
        let rule = Rule::new(
            RuleId::stored(format!("r{i}")),
            TenantId::stored("a"),
            draft,
            now,
        );
        b.insert_rule(&rule, 100).await.unwrap();
    }
    // Each makes 6 × 1,000 deliveries: two do not fit one turn of 10,000.
    let heavy = |id: &str| {
        let lines: Vec<_> = (0..1000)
            .map(|l| serde_json::json!({"id": format!("l{l}"), "product_id": "p"}))
            .collect();
        let body = serde_json::json!({"id": id, "tenant_id": "a", "type": "order.paid",
            "occurred_at": "2026-11-29T12:00:00Z", "lines": lines, "data": {}});
        hookline_core::Event::from_json(body.to_string().as_bytes()).unwrap()
    };
    let answers: Vec<Acceptance> = b
        .accept_events(&[heavy("e1"), heavy("e2"), heavy("e3"), heavy("e1")], now)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        answers,
        [
            Acceptance::Accepted,
            Acceptance::Accepted,
            Acceptance::Accepted,
            Acceptance::Duplicate
        ]
    );
    let raw = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = raw
        .query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 18_000);
}

/// A file an earlier Hookline wrote, with its queue and attempts tables
/// (the schema kept in tests/fixtures): on open its pending delivery is
/// queued at its retry time with its receives, its attempts are read into
/// the delivery's log, and the tables are gone.
#[tokio::test]
async fn a_file_with_the_queue_and_attempts_tables_is_moved_into_the_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookline.db");
    let retry_at = suite::now().as_millis() + 60_000;
    {
        let raw = rusqlite::Connection::open(&db).unwrap();
        raw.execute_batch(include_str!("fixtures/schema-with-queue-table.sql"))
            .unwrap();
        let key = WebhookKey::from_bytes(&[1; 32]).unwrap();
        let rule = Rule::new(
            RuleId::stored("r"),
            TenantId::stored("a"),
            RuleDraft::new(
                "r",
                Trigger::OrderPaid,
                "https://example.com/",
                Scope::Universal,
            ),
            suite::now(),
        );
        raw.execute_batch(&format!(
            "INSERT INTO tenants VALUES ('a', 'h', 0);
             INSERT INTO webhook_keys VALUES ('a', '{key}', 0, NULL);
             INSERT INTO rules (id, tenant_id, trigger, body, scope_key) VALUES ('r', 'a', 'order.paid', '{body}', 'universal');
             INSERT INTO events VALUES ('a', 'e', 'order.paid', 0, 0, '{{}}', NULL);
             INSERT INTO deliveries (seq, id, tenant_id, event_id, rule_id, status, created_at, attempt_count)
               VALUES (7, 'msg_old', 'a', 'e', 'r', 'pending', 0, 2);
             INSERT INTO queue VALUES (7, {retry_at}, 2, 0, 'a', 'r');
             INSERT INTO attempts VALUES (7, 1, 1000, 500, 12, NULL, 'down');
             INSERT INTO attempts VALUES (7, 2, 2000, NULL, 30, 'timed out', NULL);",
            key = key.expose(),
            body = hookline_core::record::encode_rule(&rule).replace('\'', "''"),
        ))
        .unwrap();
    }
    let b = SqliteBackend::open(&db, options()).unwrap();
    let d = b
        .delivery(
            &TenantId::stored("a"),
            &hookline_core::id::DeliveryId::stored("msg_old"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.attempt_count, 2);
    let logged: Vec<(i64, Option<u16>, Option<String>)> = d
        .attempts
        .iter()
        .map(|a| (a.at.as_millis(), a.status_code, a.error.clone()))
        .collect();
    assert_eq!(
        logged,
        vec![
            (1000, Some(500), None),
            (2000, None, Some("timed out".into()))
        ]
    );
    assert_eq!(
        b.next_due(),
        Some(hookline_core::Timestamp::from_millis(retry_at))
    );
    let jobs = b
        .receive(10, hookline_core::Timestamp::from_millis(retry_at))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempt, 3, "numbered on from the earlier receives");
    let raw = rusqlite::Connection::open(&db).unwrap();
    let tables: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('queue', 'attempts')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
}
