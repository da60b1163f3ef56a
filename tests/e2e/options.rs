//! Rule options merchants ask of a webhook engine: payload filters, the thin
//! envelope, custom headers; and unknown fields refused by name.

use serde_json::{Value, json};

use crate::support::*;

fn order(id: &str, tenant: &str, amount: u64) -> Value {
    let mut e = event(id, tenant, "order.paid");
    e["data"] = json!({"order_id": id, "amount": amount, "currency": "EUR"});
    e
}

#[tokio::test]
async fn a_filter_on_the_amount_routes_only_large_orders() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline
        .create_rule(
            &shop,
            json!({"name": "big", "trigger": "order.paid", "url": receiver.url("/big"),
                   "filter": {"data": {"amount": {"$gte": 10000}, "currency": "EUR"}}}),
        )
        .await;
    for (id, amount) in [("evt_small", 4900), ("evt_big", 25000), ("evt_edge", 10000)] {
        let (status, body) = hookline.send_event(&order(id, &shop.id, amount)).await;
        assert_eq!(status, 202, "{body}");
    }
    let hits = receiver.wait_for(2).await;
    let mut events: Vec<String> = hits
        .iter()
        .map(|h| h.json()["event_id"].as_str().unwrap().to_owned())
        .collect();
    events.sort();
    assert_eq!(events, ["evt_big", "evt_edge"]);
    assert!(
        hookline
            .deliveries(&shop, "event_id=evt_small")
            .await
            .is_empty(),
        "no delivery where the filter does not match"
    );

    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            "/v1/rules",
            Some(
                json!({"name": "bad", "trigger": "order.paid", "url": receiver.url("/x"),
                        "filter": {"data": {"amount": {"$between": [1, 2]}}}}),
            ),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("filter.data.amount.$between")),
        "{body}"
    );
}

#[tokio::test]
async fn a_thin_rule_gets_the_signed_v2_envelope_with_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline
        .create_rule(
            &shop,
            json!({"name": "thin", "trigger": "order.paid", "url": receiver.url("/thin"),
                   "payload": "thin", "headers": {"X-Shop": "shop_1", "Authorization": "Bearer abc"}}),
        )
        .await;
    let mut with_subject = order("evt_1", &shop.id, 100);
    with_subject["subject"] = json!({"type": "order", "id": "ord_77"});
    hookline.send_event(&with_subject).await;
    hookline
        .send_event(&event("evt_2", &shop.id, "order.paid"))
        .await;
    let hits = receiver.wait_for(2).await;
    for hit in &hits {
        assert!(
            hit.verifies_with(&shop.webhook_key),
            "signed over the thin body"
        );
        assert_eq!(hit.header("x-shop"), "shop_1");
        assert_eq!(hit.header("authorization"), "Bearer abc");
        let body = hit.json();
        assert_eq!(body["trigger_type"], "order_paid");
        assert_eq!(body["tenant_id"], "shop_1");
        assert!(
            body.get("data").is_none(),
            "thin bodies carry no data: {body}"
        );
        assert!(body["sent_at"].is_string() && body["rule_id"].is_string());
    }
    let by_event = |id: &str| {
        hits.iter()
            .map(|h| h.json())
            .find(|b| b["event_id"] == id)
            .unwrap()
    };
    let first = by_event("evt_1");
    assert_eq!(
        (
            first["triggerable_type"].as_str(),
            first["triggerable_id"].as_str()
        ),
        (Some("order"), Some("ord_77"))
    );
    let second = by_event("evt_2");
    assert_eq!(
        (
            second["triggerable_type"].as_str(),
            second["triggerable_id"].as_str()
        ),
        (Some("order"), Some("evt_2"))
    );
}

#[tokio::test]
async fn forbidden_headers_and_unknown_fields_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let base = json!({"name": "n", "trigger": "order.paid", "url": "https://example.com/"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (
            with("headers", json!({"Webhook-Signature": "x"})),
            "headers.Webhook-Signature",
        ),
        (
            with("headers", json!({"content-type": "text/plain"})),
            "headers.content-type",
        ),
        (
            with("headers", json!({"Host": "evil.example"})),
            "headers.Host",
        ),
        (
            with("headers", json!({"X-Bad": "a\r\nInjected: 1"})),
            "headers.X-Bad",
        ),
        (
            with("headers", json!({"Bad Name": "x"})),
            "headers.Bad Name",
        ),
        (
            with(
                "headers",
                json!(
                    (0..11)
                        .map(|i| (format!("X-{i}"), json!("v")))
                        .collect::<serde_json::Map<_, _>>()
                ),
            ),
            "headers",
        ),
        (with("payload", json!("medium")), "payload"),
        (with("rate_limit", json!(0)), "rate_limit"),
        (with("rate_limits", json!(5)), "rate_limits"),
        (with("filtre", json!({})), "filtre"),
    ] {
        let (status, answer) = hookline
            .admin(&shop, "POST", "/v1/rules", Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    let rule = hookline.create_rule(&shop, base.clone()).await;
    let (status, answer) = hookline
        .admin(
            &shop,
            "PATCH",
            &format!("/v1/rules/{rule}"),
            Some(json!({"headers": {"User-Agent": "x"}})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("headers.User-Agent"))
    );
    let (status, answer) = hookline
        .admin(
            &shop,
            "POST",
            &format!("/v1/rules/{rule}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z", "unknown": 1})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("unknown")),
        "{answer}"
    );
}

#[tokio::test]
async fn a_batch_of_100_with_3_bad_items_accepts_97_and_names_3_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline.paid_orders_to(&shop, receiver.url("/hook")).await;
    let mut events: Vec<Value> = (0..100)
        .map(|i| event(&format!("evt_{i:03}"), &shop.id, "order.paid"))
        .collect();
    events[10]["type"] = json!("order.refunded");
    events[50].as_object_mut().unwrap().remove("occurred_at");
    events[99]["tenant_id"] = json!("nobody");
    let (status, body) = hookline
        .request(
            "POST",
            "/v1/events/batch",
            Some(INGEST_TOKEN),
            Some(json!({ "events": events }).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["id"], format!("evt_{i:03}"), "in order");
        let (status, field) = match i {
            10 => (422, Some("type")),
            50 => (400, Some("occurred_at")),
            99 => (422, Some("tenant_id")),
            _ => (202, None),
        };
        assert_eq!(r["status"], status, "{r}");
        assert_eq!(r["error"]["field"].as_str(), field, "{r}");
    }
    receiver.wait_for(97).await;

    let (status, body) = hookline
        .request(
            "POST",
            "/v1/events/batch",
            Some(INGEST_TOKEN),
            Some(json!({ "events": events[..3] }).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["duplicate"] == true)
    );
    let too_many: Vec<Value> = (0..101)
        .map(|i| event(&format!("x{i}"), &shop.id, "order.paid"))
        .collect();
    let (status, body) = hookline
        .request(
            "POST",
            "/v1/events/batch",
            Some(INGEST_TOKEN),
            Some(json!({ "events": too_many }).to_string()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("events"))
    );
}

#[tokio::test]
async fn a_test_send_reaches_the_receiver_once_and_returns_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "100ms,100ms")]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 503 } else { 200 })).await;
    let rule = hookline
        .create_rule(
            &shop,
            json!({"name": "n", "trigger": "invoice.created", "url": receiver.url("/t"),
                   "enabled": false, "headers": {"X-Shop": "shop_1"}}),
        )
        .await;
    let (status, body) = hookline
        .admin(&shop, "POST", &format!("/v1/rules/{rule}/test"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["attempt"]["status_code"], 503,
        "the receiver's answer: {body}"
    );
    assert_eq!(body["attempt"]["error"], "receiver answered 503");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let hits = receiver.hits();
    assert_eq!(
        hits.len(),
        1,
        "sent once, not retried, although the rule is disabled"
    );
    assert!(hits[0].verifies_with(&shop.webhook_key));
    assert_eq!(hits[0].header("x-shop"), "shop_1");
    let sample = hits[0].json();
    assert_eq!(
        (sample["type"].as_str(), sample["data"]["test"].as_bool()),
        (Some("invoice.created"), Some(true))
    );
    assert!(
        hookline.deliveries(&shop, "").await.is_empty(),
        "a test send records no delivery"
    );

    let (status, body) = hookline
        .admin(&shop, "POST", "/v1/rules/rul_missing/test", None)
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_rule_limited_to_5_a_second_gets_50_deliveries_over_9_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline
        .create_rule(
            &shop,
            json!({"name": "slow", "trigger": "order.paid", "url": receiver.url("/r"), "rate_limit": 5}),
        )
        .await;
    let events: Vec<Value> = (0..50)
        .map(|i| event(&format!("evt_{i:02}"), &shop.id, "order.paid"))
        .collect();
    let started = std::time::Instant::now();
    let (status, _) = hookline
        .request(
            "POST",
            "/v1/events/batch",
            Some(INGEST_TOKEN),
            Some(json!({ "events": events }).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    let hits = receiver.wait_for(50).await;
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(9),
        "50 at 5 a second took {took:?}"
    );
    let mut ids: Vec<&str> = hits.iter().map(|h| h.webhook_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "none lost, none twice");
    let (_, log) = hookline
        .admin(
            &shop,
            "GET",
            "/v1/deliveries?status=succeeded&limit=50",
            None,
        )
        .await;
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["attempt_count"] == 1),
        "waiting charged no attempt"
    );
    println!("50 deliveries at 5/s took {took:?}");
}
