//! `/metrics` on `hookline serve`: Prometheus text on a listener of its own,
//! whose counters follow what receivers answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::*;

/// The exposition's samples by name and labels; every other line must be a
/// `# HELP` or `# TYPE` comment.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut found = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP hookline_") || line.starts_with("# TYPE hookline_") {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(name.starts_with("hookline_"), "{line}");
        found.insert(
            name.to_owned(),
            value.parse::<f64>().unwrap_or_else(|_| panic!("{line}")),
        );
    }
    found
}

/// `promtool check metrics` (Debian's prometheus; infra/test installs it)
/// finds nothing wrong with the exposition, not even a lint.
fn promtool_accepts(text: &str) {
    use std::io::Write;
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool: install Debian's prometheus package (infra/test does)");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_count_attempts_and_ended_deliveries_on_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start_with(
        &db_in(&dir),
        &[("HOOKLINE_RETRY_SCHEDULE", "100ms")],
        &["--allow-private-targets", "--metrics-listen", "127.0.0.1:0"],
    );
    let url = h.metrics.clone().expect("serve printed its metrics URL");
    assert!(!url.starts_with(&h.base), "{url} is not the API's listener");
    let on_api = reqwest::get(format!("{}/metrics", h.base)).await.unwrap();
    assert_ne!(on_api.status(), 200, "the API's listener serves no metrics");

    let shop = h.tenant("shop_1");
    // One refused ingest (no token) before the six accepted ones.
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/events", h.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Every third request fails; with one retry, some deliveries die.
    let receiver =
        Receiver::start_with(|n, _| Reply::Status(if n % 3 == 0 { 500 } else { 204 })).await;
    h.paid_orders_to(&shop, receiver.url("/")).await;
    for i in 0..6 {
        h.paid_order(&shop, &format!("evt_{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let deliveries = loop {
        let listed = h.deliveries(&shop, "limit=10").await;
        if listed.len() == 6 && listed.iter().all(|d| d["status"] != "pending") {
            break listed;
        }
        assert!(Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
    let text = resp.text().await.unwrap();
    promtool_accepts(&text);
    let m = samples(&text);
    let hits = receiver.hits().len() as f64;
    let failed = (0..receiver.hits().len()).filter(|n| n % 3 == 0).count() as f64;
    let count = |status: &str| deliveries.iter().filter(|d| d["status"] == status).count() as f64;
    assert_eq!(m["hookline_attempts_total{result=\"failure\"}"], failed);
    assert_eq!(
        m["hookline_attempts_total{result=\"success\"}"],
        hits - failed
    );
    assert_eq!(m["hookline_attempts_total{result=\"error\"}"], 0.0);
    assert_eq!(m["hookline_attempt_duration_seconds_count"], hits);
    assert_eq!(
        m["hookline_attempt_duration_seconds_bucket{le=\"+Inf\"}"],
        hits
    );
    assert_eq!(
        m["hookline_deliveries_ended_total{outcome=\"succeeded\"}"],
        count("succeeded")
    );
    assert_eq!(
        m["hookline_deliveries_ended_total{outcome=\"dead\"}"],
        count("dead")
    );
    assert_eq!(m["hookline_retries_total"], hits - 6.0);
    assert_eq!(m["hookline_ingest_requests_total{code=\"2xx\"}"], 6.0);
    assert_eq!(m["hookline_ingest_requests_total{code=\"4xx\"}"], 1.0);
    assert_eq!(m["hookline_ingest_requests_total{code=\"5xx\"}"], 0.0);
    assert_eq!(m["hookline_deliveries_queued"], 0.0);
    assert_eq!(m["hookline_oldest_due_age_seconds"], 0.0);
    assert!(
        !m.keys().any(|k| k.starts_with("hookline_rule_")),
        "no series per rule unless asked for"
    );
}

#[tokio::test]
async fn metrics_per_rule_are_there_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start_with(
        &db_in(&dir),
        &[("HOOKLINE_RETRY_SCHEDULE", "")],
        &[
            "--allow-private-targets",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-per-rule",
        ],
    );
    let url = h.metrics.clone().expect("serve printed its metrics URL");
    let (shop, other) = (h.tenant("shop_1"), h.tenant("shop_2"));
    let failing =
        Receiver::start_with(|n, _| Reply::Status(if n % 2 == 0 { 500 } else { 204 })).await;
    let fine = Receiver::start().await;
    let rule = h.paid_orders_to(&shop, failing.url("/")).await;
    let other_rule = h.paid_orders_to(&other, fine.url("/")).await;
    for i in 0..4 {
        h.paid_order(&shop, &format!("evt_{i}")).await;
    }
    h.paid_order(&other, "evt_x").await;
    failing.wait_for(4).await;
    fine.wait_for(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let series = |tenant: &str, rule: &str, result: &str| {
        format!(
            "hookline_rule_attempts_total{{tenant=\"{tenant}\",rule=\"{rule}\",result=\"{result}\"}}"
        )
    };
    let m = loop {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let m = samples(&text);
        if m.get(&series("shop_2", &other_rule, "success")) == Some(&1.0)
            && m.get(&series("shop_1", &rule, "success"))
                .copied()
                .unwrap_or(0.0)
                + m.get(&series("shop_1", &rule, "failure"))
                    .copied()
                    .unwrap_or(0.0)
                == 4.0
        {
            promtool_accepts(&text);
            break m;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(m[&series("shop_1", &rule, "failure")], 2.0);
    assert_eq!(m[&series("shop_1", &rule, "error")], 0.0);
    assert_eq!(m["hookline_rule_series_dropped_total"], 0.0);
}

#[tokio::test]
async fn metrics_count_circuits_that_open_and_time_the_stores_commits() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start_with(
        &db_in(&dir),
        &[
            ("HOOKLINE_RETRY_SCHEDULE", ""),
            ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ],
        &["--allow-private-targets", "--metrics-listen", "127.0.0.1:0"],
    );
    let url = h.metrics.clone().expect("serve printed its metrics URL");
    let scrape = || async {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        promtool_accepts(&text);
        samples(&text)
    };
    let before = scrape().await;
    assert_eq!(before["hookline_circuit_opens_total"], 0.0);

    let shop = h.tenant("shop_1");
    let receiver = Receiver::start_with(|_, _| Reply::Status(500)).await;
    h.paid_orders_to(&shop, receiver.url("/")).await;
    for i in 0..3 {
        h.paid_order(&shop, &format!("evt_{i}")).await;
    }
    receiver.wait_for(3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let m = scrape().await;
        if m["hookline_circuit_opens_total"] >= 1.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "{m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        after["hookline_circuit_opens_total"], 1.0,
        "three failures, one trip"
    );
    let commits = after["hookline_store_commit_seconds_count"];
    assert!(
        commits > before["hookline_store_commit_seconds_count"],
        "accepting and settling commit: {commits}"
    );
    assert_eq!(
        after["hookline_store_commit_seconds_bucket{le=\"+Inf\"}"],
        commits
    );
    assert!(after["hookline_store_commit_seconds_sum"] > 0.0);
}
