//! Receivers on non-public addresses are refused unless allowed.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn non_public_receivers_are_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start_with(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "")], &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();

    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://172.16.5.4/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://169.254.1.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fe80::1]/".to_owned(),
    ] {
        let (status, body) = hookline
            .admin(
                &shop,
                "POST",
                "/v1/rules",
                Some(json!({"name": "x", "trigger": "order.paid", "url": url})),
            )
            .await;
        // The URL is well formed; the address is what is refused.
        assert_eq!(status, 422, "{url}");
        assert_eq!(body["error"]["field"], "url", "{url}");
        assert_eq!(body["error"]["code"], "address_refused", "{url}");
    }

    // A hostname is only known at connect time: localhost resolves to 127.0.0.1.
    let rule = hookline
        .create_rule(&shop, json!({"name": "x", "trigger": "order.paid", "url": format!("http://localhost:{port}/")}))
        .await;
    hookline
        .send_event(&event("evt_1", "shop_1", "order.paid"))
        .await;
    let id = hookline.deliveries(&shop, &format!("rule_id={rule}")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = hookline.wait_delivery(&shop, &id, "dead").await;
    let error = dead["attempts"][0]["error"].as_str().unwrap();
    assert_eq!(error, UNREACHABLE);
    assert!(receiver.hits().is_empty(), "the receiver was reached");
}

/// The one answer for every target Hookline will not or cannot reach.
const UNREACHABLE: &str =
    "refused: the target is not a public address Hookline may reach, or its name does not resolve";

/// A test send must not tell a tenant which internal names exist: a name
/// that resolves to loopback and one that does not resolve at all get the
/// same answer.
#[tokio::test]
async fn test_sends_are_no_dns_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start_with(&db_in(&dir), &[], &[]);
    let shop = hookline.tenant("shop_1");
    for url in ["http://localhost:9/", "http://no-such-host.invalid/"] {
        let rule = hookline
            .create_rule(
                &shop,
                json!({"name": "probe", "trigger": "order.paid", "url": url}),
            )
            .await;
        let (status, body) = hookline
            .admin(&shop, "POST", &format!("/v1/rules/{rule}/test"), None)
            .await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["attempt"]["error"], UNREACHABLE, "{url}");
    }
}

/// `hookline serve` reads `HOOKLINE_*` with the parser the Lambda functions
/// use: the same text means the same thing, and a bad value stops it at
/// start with the variable named.
#[tokio::test]
async fn serve_reads_private_targets_setting_as_the_functions_do() {
    for (text, allowed) in [("1", true), ("yes", true), ("False", false), ("0", false)] {
        let dir = tempfile::tempdir().unwrap();
        let hookline = Hookline::start_with(
            &db_in(&dir),
            &[("HOOKLINE_ALLOW_PRIVATE_TARGETS", text)],
            &[],
        );
        let shop = hookline.tenant("shop_1");
        let (status, body) = hookline
            .admin(
                &shop,
                "POST",
                "/v1/rules",
                Some(json!({"name": "x", "trigger": "order.paid", "url": "http://127.0.0.1:9/"})),
            )
            .await;
        let expected = if allowed { 201 } else { 422 };
        assert_eq!(
            status, expected,
            "HOOKLINE_ALLOW_PRIVATE_TARGETS={text:?}: {body}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db_in(&dir))
        .env("HOOKLINE_ALLOW_PRIVATE_TARGETS", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("HOOKLINE_ALLOW_PRIVATE_TARGETS=\"maybe\""),
        "{stderr}"
    );
}

/// No webhook key or ingest token reaches the log, the database files or any
/// API answer, except the webhook-key routes that exist to hand the key out.
#[tokio::test]
async fn secrets_reach_no_log_file_or_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hookline.log");
    let hookline = Hookline::start_logging_to(&db_in(&dir), &[("HOOKLINE_LOG", "trace")], &log);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let mut answers = Vec::new();
    let rule = hookline.paid_orders_to(&shop, receiver.url("/hook")).await;
    for i in 0..3 {
        let (_, body) = hookline
            .send_event(&event(&format!("evt_{i}"), &shop.id, "order.paid"))
            .await;
        answers.push(body);
    }
    let (_, body) = hookline
        .request(
            "POST",
            "/v1/events",
            Some("wrong-token-0123456789"),
            Some("{}".into()),
        )
        .await;
    answers.push(body);
    let (_, rotated) = hookline
        .admin(&shop, "POST", "/v1/webhook-key/rotate", None)
        .await;
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    receiver.wait_for(3).await;
    for (method, path) in [
        ("GET", "/v1/rules".to_owned()),
        ("GET", format!("/v1/rules/{rule}")),
        ("GET", "/v1/deliveries?limit=50".to_owned()),
        ("GET", "/v1/nothing".to_owned()),
        ("POST", "/v1/rules".to_owned()),
    ] {
        answers.push(hookline.admin(&shop, method, &path, None).await.1);
    }
    for d in hookline.deliveries(&shop, "").await {
        let id = d["id"].as_str().unwrap();
        answers.push(
            hookline
                .admin(&shop, "GET", &format!("/v1/deliveries/{id}"), None)
                .await
                .1,
        );
    }
    hookline.stop();

    let secrets = [
        // The base64 of each key, which is what a leak would show.
        shop.webhook_key["whsec_".len()..].to_owned(),
        new_key["whsec_".len()..].to_owned(),
        INGEST_TOKEN.to_owned(),
    ];
    let mut places: Vec<(String, String)> = answers
        .iter()
        .map(|a| ("an API answer".to_owned(), a.to_string()))
        .collect();
    for file in [
        "hookline.log",
        "hookline.db",
        "hookline.db-wal",
        "hookline.db-shm",
    ] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            places.push((
                file.to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    assert!(
        places
            .iter()
            .any(|(f, text)| f == "hookline.log" && !text.is_empty()),
        "the server logged nothing to search"
    );
    for (place, text) in &places {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{place} holds a secret");
        }
    }
}
