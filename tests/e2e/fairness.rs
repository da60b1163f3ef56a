//! One tenant cannot hold up another: a receiver that holds every request,
//! with a backlog behind it, leaves other tenants' deliveries on time; a
//! receiver that is down is probed, not hammered, and gets everything once
//! it is back.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn a_tarpit_with_a_backlog_does_not_delay_another_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let (a, b) = (hookline.tenant("shop_a"), hookline.tenant("shop_b"));
    // A's receiver holds every request (longer than this test runs).
    let tarpit = Receiver::start_with(|_, _| Reply::Hang).await;
    let quick = Receiver::start().await;
    hookline.paid_orders_to(&a, tarpit.url("/hook")).await;
    hookline.paid_orders_to(&b, quick.url("/hook")).await;

    for i in 0..400 {
        let (status, body) = hookline
            .send_event(&event(&format!("evt_a{i}"), &a.id, "order.paid"))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // A rule starts with four attempts in flight, and a receiver that
    // answers none of them is given no more.
    tarpit.wait_for(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tarpit.hits().len(),
        4,
        "a rule's adaptive limit starts at four attempts in flight"
    );

    let sent = Instant::now();
    let (status, body) = hookline
        .send_event(&event("evt_b", &b.id, "order.paid"))
        .await;
    assert_eq!(status, 202, "{body}");
    quick.wait_for(1).await;
    let waited = sent.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "tenant B's delivery took {waited:?} behind tenant A's tarpit"
    );
    println!("tenant B delivered {waited:?} after ingest, with 400 of A's events behind a tarpit");
}

#[tokio::test]
async fn a_receiver_that_is_down_is_probed_then_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(
        &db_in(&dir),
        &[
            (
                "HOOKLINE_RETRY_SCHEDULE",
                "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms",
            ),
            ("HOOKLINE_BREAKER_THRESHOLD", "3"),
            ("HOOKLINE_BREAKER_COOL_DOWN", "1s"),
        ],
    );
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|_, _| Reply::Status(503)).await;
    hookline.paid_orders_to(&shop, receiver.url("/hook")).await;
    for i in 0..20 {
        let (status, body) = hookline
            .send_event(&event(&format!("evt_{i:02}"), &shop.id, "order.paid"))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Down for 3 s: without the breaker, 20 deliveries retried every 200 ms
    // would make well over 100 attempts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_outage = receiver.hits().len();
    assert!(
        during_outage <= 24,
        "{during_outage} attempts while down: the circuit should hold deliveries back"
    );
    let (_, log) = hookline
        .admin(&shop, "GET", "/v1/deliveries?status=pending&limit=50", None)
        .await;
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["waiting"]["reason"] == "circuit_open"),
        "the log says why deliveries wait: {log}"
    );

    receiver.set_plan(|_, _| Reply::Status(200));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = hookline
            .admin(
                &shop,
                "GET",
                "/v1/deliveries?status=succeeded&limit=50",
                None,
            )
            .await;
        if body["data"].as_array().unwrap().len() == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hits = receiver.hits();
    println!(
        "{during_outage} attempts during a 3 s outage of 20 deliveries; {} after, all delivered",
        hits.len() - during_outage
    );
}

#[tokio::test]
async fn a_rule_failing_for_the_window_is_disabled_and_the_alert_rule_told() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(
        &db_in(&dir),
        &[
            (
                "HOOKLINE_RETRY_SCHEDULE",
                "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
            ),
            ("HOOKLINE_BREAKER_COOL_DOWN", "300ms"),
            ("HOOKLINE_DISABLE_AFTER", "2s"),
        ],
    );
    let shop = hookline.tenant("shop_1");
    let down = Receiver::start_with(|_, _| Reply::Status(500)).await;
    let alerts = Receiver::start().await;
    let rule = hookline.paid_orders_to(&shop, down.url("/down")).await;
    hookline
        .create_rule(
            &shop,
            serde_json::json!({"name": "alerting", "trigger": "rule.disabled", "url": alerts.url("/alert")}),
        )
        .await;
    hookline
        .send_event(&event("evt_1", &shop.id, "order.paid"))
        .await;

    let alert = alerts.wait_for(1).await[0].json();
    assert_eq!(alert["type"], "rule.disabled");
    assert_eq!(alert["data"]["rule_id"], rule.as_str());
    assert_eq!(alert["data"]["last_error"], "receiver answered 500");
    assert!(alert["data"]["failing_since"].is_string() && alert["data"]["disabled_at"].is_string());
    let (_, disabled) = hookline
        .admin(&shop, "GET", &format!("/v1/rules/{rule}"), None)
        .await;
    assert_eq!(
        (
            disabled["enabled"].as_bool(),
            disabled["disabled_reason"].as_str()
        ),
        (Some(false), Some("failing"))
    );

    let (status, _) = hookline
        .admin(
            &shop,
            "PATCH",
            &format!("/v1/rules/{rule}"),
            Some(serde_json::json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, back) = hookline
        .admin(&shop, "GET", &format!("/v1/rules/{rule}"), None)
        .await;
    assert_eq!(
        (back["enabled"].as_bool(), back["disabled_reason"].as_str()),
        (Some(true), None)
    );
    let (status, body) = hookline
        .send_event(&event("evt_2", &shop.id, "rule.disabled"))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("type")),
        "only Hookline raises rule.disabled"
    );
}
