//! A rule's health on `hookline serve`: `GET /v1/rules/{id}/health` and
//! `hookline rules health` against a receiver that fails one request in
//! three, and the counts kept across a restart.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Waits until the delivery has ended, succeeded or dead.
async fn ended(h: &Hookline, tenant: &Tenant, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, d) = h
            .admin(tenant, "GET", &format!("/v1/deliveries/{id}"), None)
            .await;
        if d["status"] == "succeeded" || d["status"] == "dead" {
            return;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(h: &Hookline, tenant: &Tenant, rule: &str) -> Value {
    let (status, body) = h
        .admin(tenant, "GET", &format!("/v1/rules/{rule}/health"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_health_shows_what_its_receiver_did() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let env = [("HOOKLINE_RETRY_SCHEDULE", "50ms")];
    let h = Hookline::start(&db, &env);
    let shop = h.tenant("shop_1");
    let other = h.tenant("shop_2");
    let receiver =
        Receiver::start_with(|n, _| Reply::Status(if n % 3 == 0 { 500 } else { 204 })).await;
    let rule = h.paid_orders_to(&shop, receiver.url("/")).await;

    let fresh = health(&h, &shop, &rule).await;
    assert_eq!(fresh["last_day"]["attempts"], 0);
    assert_eq!(fresh["last_day"]["success_rate"], Value::Null);
    assert_eq!(fresh["circuit"], "closed");

    // One order at a time, so that the attempts are in the receiver's order.
    for i in 0..7 {
        let id = h.paid_order(&shop, &format!("evt_{i}")).await;
        ended(&h, &shop, &id).await;
    }
    let hits = receiver.hits().len() as u64;
    let failed = (0..hits).filter(|n| n % 3 == 0).count() as u64;
    let trailing = u64::from((hits - 1).is_multiple_of(3));
    let seen = health(&h, &shop, &rule).await;
    for window in ["last_hour", "last_day"] {
        let w = &seen[window];
        assert_eq!(w["attempts"], hits, "{seen}");
        assert_eq!(w["failures"], failed, "{seen}");
        assert_eq!(w["successes"], hits - failed, "{seen}");
        let rate = w["success_rate"].as_f64().unwrap();
        assert!((rate - (hits - failed) as f64 / hits as f64).abs() < 1e-9);
        let (p50, p99) = (w["latency_p50_ms"].as_u64(), w["latency_p99_ms"].as_u64());
        assert!(p50.is_some() && p50 <= p99, "{seen}");
    }
    assert_eq!(seen["last_failure"]["error"], "receiver answered 500");
    assert!(seen["last_success_at"].is_string());
    assert_eq!(seen["consecutive_failures"], trailing, "{seen}");
    assert_eq!(seen["circuit"], "closed");
    assert!(seen["concurrency"].as_u64().is_some_and(|c| c >= 1));

    // Another tenant's key does not see it; a rule that does not exist is 404.
    let (status, _) = h
        .admin(&other, "GET", &format!("/v1/rules/{rule}/health"), None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = h
        .admin(&shop, "GET", "/v1/rules/rul_nope/health", None)
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &"not_found".into()));
    let (status, _) = h
        .request("GET", &format!("/v1/rules/{rule}/health"), None, None)
        .await;
    assert_eq!(status, 401);

    // The CLI shows the same, for people and as JSON.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("HOOKLINE_SERVER", &h.base)
            .env("HOOKLINE_API_KEY", &shop.api_key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(&["rules", "health", &rule]);
    let percent = format!("{:.1}%", (hits - failed) as f64 * 100.0 / hits as f64);
    assert!(
        text.contains("last hour") && text.contains(&percent),
        "{text}"
    );
    assert!(text.contains("receiver answered 500"), "{text}");
    let json: Value =
        serde_json::from_str(&cli(&["rules", "health", &rule, "--output", "json"])).expect("JSON");
    assert_eq!(json["last_day"]["attempts"], hits);

    // Counted in memory a few seconds at a time, written when serve stops:
    // a restart keeps the counts.
    assert!(h.stop().success());
    let h = Hookline::start(&db, &env);
    let after = health(&h, &shop, &rule).await;
    assert_eq!(after["last_day"], seen["last_day"], "{after}");
    assert_eq!(after["last_failure"], seen["last_failure"]);
}
