//! The backend conformance suite on a real SQLite file.

use std::time::Duration;

use hookline_conformance as suite;
use hookline_core::ports::DeliveryQueue;
use hookline_sqlite::{SqliteBackend, SqliteOptions};
use tempfile::TempDir;

const VISIBILITY: Duration = Duration::from_secs(30);

/// A backend on a fresh file; the directory lives as long as the test holds it.
fn backend() -> (SqliteBackend, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        visibility_timeout: VISIBILITY,
    };
    (
        SqliteBackend::open(dir.path().join("hookline.db"), options).unwrap(),
        dir,
    )
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let (b, _dir) = backend();
            suite::$check(b).await;
        }
    )*};
}

conformance!(
    tenants_and_keys,
    rules,
    accept_is_idempotent_and_fans_out,
    receive_respects_max_and_order,
    jobs_of_gone_rules,
    delivery_log_and_recover,
);

#[tokio::test]
async fn leases_and_receive_counts() {
    let (b, _dir) = backend();
    suite::leases_and_receive_counts(b, VISIBILITY).await;
}

#[tokio::test]
async fn release_leases_resumes_at_once() {
    let (b, _dir) = backend();
    suite::accept_is_idempotent_and_fans_out(b.clone()).await;
    // The check left three deliveries leased; a restart releases them.
    let now = suite::T0;
    assert!(b.receive(10, now).await.unwrap().is_empty());
    assert_eq!(b.release_leases(now).await.unwrap(), 3);
    assert_eq!(b.receive(10, now).await.unwrap().len(), 3);
    assert_eq!(
        b.next_due().await.unwrap(),
        Some(now.saturating_add(VISIBILITY))
    );
}
