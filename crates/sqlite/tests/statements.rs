//! How many SQLite statements a delivery costs on the hot path (accept,
//! receive, attempt recorded), counted through SQLite's trace hook on every
//! connection of the store. Its own test binary: the count is per process.

use hookline_core::id::TenantId;
use hookline_core::ports::{DeliveryQueue, Store};
use hookline_core::{Event, Timestamp};
use hookline_sqlite::{
    SqliteBackend, SqliteOptions, StatementsRun, count_statements, statements_run,
};

/// Accepts `events` one by one (one delivery each, a rule that fires for
/// all), then receives them in tens and records each attempt a success.
async fn deliver(b: &SqliteBackend, from: usize, events: usize, now: Timestamp) -> usize {
    for i in from..from + events {
        let body = format!(
            r#"{{"id":"e{i}","tenant_id":"a","type":"order.paid","occurred_at":"2026-11-29T12:00:00Z","data":{{"n":{i}}}}}"#
        );
        b.accept_event(&Event::from_json(body.as_bytes()).unwrap(), now)
            .await
            .unwrap();
    }
    let mut delivered = 0;
    loop {
        let jobs = b.receive(10, now).await.unwrap();
        if jobs.is_empty() {
            return delivered;
        }
        delivered += jobs.len();
        b.settle(hookline_conformance::taken(&jobs, now))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_delivery_costs_at_most_four_statements_at_steady_state() {
    count_statements();
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteBackend::open(dir.path().join("hookline.db"), SqliteOptions::default()).unwrap();
    let now = Timestamp::from_millis(1_795_953_600_000);
    hookline_conformance::tenant(&b, "a").await;
    hookline_conformance::paid_rule(&b, "a", "r").await;
    // The first delivery reads its rule and the tenant's keys, which later
    // ones find kept.
    assert_eq!(deliver(&b, 0, 1, now).await, 1);

    let before = statements_run();
    let n = 200;
    assert_eq!(deliver(&b, 1, n, now).await, n);
    let after = statements_run();
    let run = StatementsRun {
        writer: after.writer - before.writer,
        readers: after.readers - before.readers,
        control: after.control - before.control,
    };
    let per = |v: u64| v as f64 / n as f64;
    println!(
        "per delivery: {:.2} on the writer, {:.2} on the readers, {:.2} transaction control",
        per(run.writer),
        per(run.readers),
        per(run.control)
    );
    assert!(
        per(run.writer + run.readers) <= 4.0,
        "{run:?} for {n} deliveries"
    );
    // Every delivery ended succeeded, with its attempt logged.
    let page = b
        .deliveries(
            &TenantId::stored("a"),
            &hookline_core::ports::DeliveryFilter {
                limit: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        page.data
            .iter()
            .all(|d| d.status == hookline_core::DeliveryStatus::Succeeded && d.attempts.len() == 1)
    );
}
