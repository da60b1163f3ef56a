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
        assert_eq!(status, 400, "{url}");
        assert_eq!(body["error"]["field"], "url", "{url}");
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
    assert!(
        error == "refused: localhost does not resolve to a public address",
        "{error}"
    );
    assert!(receiver.hits().is_empty(), "the receiver was reached");
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
        let expected = if allowed { 201 } else { 400 };
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
