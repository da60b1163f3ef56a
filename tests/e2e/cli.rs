//! The operator's CLI against a real server: every remote command, tables
//! and `--output json`, a wrong key, and `hookline verify` on a real delivery.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::support::*;

/// Runs `hookline ARGS` against `h` as `tenant`, with `stdin` fed in.
fn cli(h: &Hookline, key: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("HOOKLINE_SERVER", &h.base)
        .env("HOOKLINE_API_KEY", key)
        .env("HOOKLINE_INGEST_TOKEN", INGEST_TOKEN)
        .env("HOOKLINE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hookline");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--output json prints JSON")
}

// The receiver runs on this runtime while a CLI call blocks its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_deliveries_send_and_recover_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "")]);
    let t = h.tenant("shop");
    let key = t.api_key.as_str();
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 500 } else { 200 })).await;

    // rules create (flags), list (table and JSON), show, update, delete.
    let url = receiver.url("/hook");
    let created = json_of(&cli(
        &h,
        key,
        &[
            "rules",
            "create",
            "--name",
            "paid orders",
            "--trigger",
            "order.paid",
            "--url",
            &url,
            "--scope",
            "product:prod_1",
            "--header",
            "X-Shop: main",
            "--rate-limit",
            "50",
            "--output",
            "json",
        ],
        b"",
    ));
    let rule = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["scope"], json!({"type": "product", "id": "prod_1"}));
    assert_eq!(created["headers"], json!({"X-Shop": "main"}));
    let table = ok(&cli(&h, key, &["rules", "list"], b""));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&rule) && row.contains("product:prod_1") && row.contains(&url),
        "{table}"
    );
    let listed = json_of(&cli(&h, key, &["rules", "list", "--output", "json"], b""));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = ok(&cli(&h, key, &["rules", "show", &rule], b""));
    assert!(
        shown.contains("paid orders") && shown.contains("rate_limit"),
        "{shown}"
    );
    let updated = json_of(&cli(
        &h,
        key,
        &[
            "rules",
            "update",
            &rule,
            "--scope",
            "universal",
            "--output",
            "json",
        ],
        b"",
    ));
    assert_eq!(updated["scope"], json!({"type": "universal"}));
    // A body from standard input, with a flag beside it.
    let from_stdin = json_of(&cli(
        &h,
        key,
        &[
            "rules", "create", "--from", "-", "--name", "second", "--output", "json",
        ],
        br#"{"name": "ignored", "trigger": "invoice.created", "url": "http://127.0.0.1:9/x"}"#,
    ));
    assert_eq!(
        (from_stdin["name"].as_str(), from_stdin["trigger"].as_str()),
        (Some("second"), Some("invoice.created"))
    );
    let deleted = ok(&cli(
        &h,
        key,
        &["rules", "delete", from_stdin["id"].as_str().unwrap()],
        b"",
    ));
    assert!(deleted.starts_with("deleted rul_"), "{deleted}");

    // send: one event from standard input, then a batch from a file.
    let sent = ok(&cli(
        &h,
        key,
        &["send"],
        event("evt_1", "shop", "order.paid").to_string().as_bytes(),
    ));
    assert_eq!(sent.trim(), "evt_1 accepted");
    let batch = dir.path().join("batch.json");
    std::fs::write(
        &batch,
        json!([
            event("evt_1", "shop", "order.paid"),
            event("evt_2", "nobody", "order.paid")
        ])
        .to_string(),
    )
    .unwrap();
    let results = json_of(&cli(
        &h,
        key,
        &["send", batch.to_str().unwrap(), "--output", "json"],
        b"",
    ));
    assert_eq!(results["results"][0]["duplicate"], true);
    assert_eq!(results["results"][1]["status"], 422);

    // deliveries: the one to evt_1 fails once (no retries) and is dead.
    let id = h.deliveries(&t, "event_id=evt_1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.wait_delivery(&t, &id, "dead").await;
    let list = ok(&cli(
        &h,
        key,
        &["deliveries", "list", "--status", "dead"],
        b"",
    ));
    assert!(
        list.lines().nth(1).unwrap().starts_with(&id) && list.contains("dead"),
        "{list}"
    );
    let shown = ok(&cli(&h, key, &["deliveries", "show", &id], b""));
    assert!(
        shown.contains("ATTEMPT AT") && shown.contains("500"),
        "{shown}"
    );
    let retried = json_of(&cli(
        &h,
        key,
        &["deliveries", "retry", &id, "--output", "json"],
        b"",
    ));
    assert_eq!(retried["id"], id.as_str());
    h.wait_delivery(&t, &id, "succeeded").await;

    // recover: the window in slices, one dead delivery back out.
    receiver.set_plan(|_, _| Reply::Status(500));
    h.send_event(&event("evt_3", "shop", "order.paid")).await;
    let dead = h.deliveries(&t, "event_id=evt_3").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.wait_delivery(&t, &dead, "dead").await;
    receiver.set_plan(|_, _| Reply::Status(200));
    let recovered = json_of(&cli(
        &h,
        key,
        &[
            "recover",
            &rule,
            "--since",
            "2020-01-01T00:00:00Z",
            "--step",
            "1000d",
            "--output",
            "json",
        ],
        b"",
    ));
    assert_eq!(recovered, json!({"rule_id": rule, "recovered": 1}));
    h.wait_delivery(&t, &dead, "succeeded").await;

    // verify: the last delivery as received, with the tenant's key.
    let hit = receiver.hits().last().unwrap().clone();
    let headers: String = hit
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", v.to_str().unwrap()))
        .collect();
    let headers_file = dir.path().join("headers.txt");
    std::fs::write(&headers_file, headers).unwrap();
    let verify = |body: &[u8]| {
        let headers = headers_file.to_str().unwrap();
        let args = [
            "verify",
            "--headers",
            headers,
            "--body",
            "-",
            "--webhook-key",
            &t.webhook_key,
        ];
        cli(&h, key, &args, body)
    };
    let verified = ok(&verify(&hit.body));
    assert!(
        verified.starts_with(&format!("verified: webhook-id {}", hit.webhook_id())),
        "{verified}"
    );
    let mut tampered = hit.body.to_vec();
    tampered.push(b' ');
    let refused = verify(&tampered);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not match"));
}

#[tokio::test]
async fn a_wrong_key_is_one_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[]);
    for args in [
        &["rules", "list"][..],
        &["deliveries", "list", "--output", "json"],
        &["deliveries", "retry", "msg_x"],
    ] {
        let out = cli(&h, "hk_wrong", args, b"");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("hookline: the API key is not valid (HTTP 401)"),
            "{stderr}"
        );
    }
    // No server there: one line naming where.
    let out = Command::new(BIN)
        .args([
            "rules",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--api-key",
            "hk_x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("hookline: cannot reach Hookline at http://127.0.0.1:9"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A receiver's answer and a rule's name come from outside: the API refuses
/// control characters in a name, and the CLI shows those in a response body
/// as escapes instead of letting them retitle or clear the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_is_refused_or_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[]);
    let t = h.tenant("shop");
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[32mverified OK";
    let app = axum::Router::new().fallback(move || async move { hostile });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = h
        .admin(
            &t,
            "POST",
            "/v1/rules",
            Some(json!({"name": "\u{1b}[31mRED", "trigger": "order.paid", "url": url})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("name")),
        "{body}"
    );

    h.paid_orders_to(&t, url).await;
    h.send_event(&event("evt_1", "shop", "order.paid")).await;
    let id = h.deliveries(&t, "event_id=evt_1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivered = h.wait_delivery(&t, &id, "succeeded").await;
    assert_eq!(delivered["attempts"][0]["response_body"], hostile);
    let shown = ok(&cli(&h, &t.api_key, &["deliveries", "show", &id], b""));
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains("\\u{1b}]0;pwned\\u{7}"), "{shown}");
}

/// `--url` is a rule's webhook URL, as in the API; the server is
/// `--server`. A webhook URL never receives the API key, `rules create`
/// without one names the flag, and a server that is not Hookline is never
/// reported as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_is_never_taken_for_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[]);
    let t = h.tenant("shop");
    let merchant = Receiver::start().await;
    let hook = merchant.url("/hook");
    let created = json_of(&cli(
        &h,
        &t.api_key,
        &[
            "rules",
            "create",
            "--name",
            "x",
            "--trigger",
            "order.paid",
            "--url",
            &hook,
            "--output",
            "json",
        ],
        b"",
    ));
    assert_eq!(created["url"], hook.as_str());
    assert!(merchant.hits().is_empty(), "the merchant's URL was called");

    let missing = cli(
        &h,
        &t.api_key,
        &["rules", "create", "--name", "x", "--trigger", "order.paid"],
        b"",
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--url is required"));

    // Pointed at the merchant's server instead of Hookline: an error, and
    // whatever answered is not taken for Hookline.
    let wrong = Command::new(BIN)
        .args([
            "rules",
            "list",
            "--server",
            &merchant.base,
            "--api-key",
            &t.api_key,
        ])
        .env_remove("HOOKLINE_SERVER")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("did not answer as Hookline"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
}
