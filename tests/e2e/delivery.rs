//! Retries, dead deliveries, manual retry, recovery, idempotent ingest and
//! key rotation.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_repeated_event_id_is_a_duplicate_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    let e = event("evt_dup", "shop_1", "order.paid");
    assert_eq!(
        hookline.send_event(&e).await,
        (202, json!({"id": "evt_dup", "duplicate": false}))
    );
    assert_eq!(
        hookline.send_event(&e).await,
        (200, json!({"id": "evt_dup", "duplicate": true}))
    );
    let deliveries = hookline.deliveries(&shop, "event_id=evt_dup").await;
    assert_eq!(deliveries.len(), 1);
    hookline
        .wait_delivery(&shop, deliveries[0]["id"].as_str().unwrap(), "succeeded")
        .await;
    assert_eq!(receiver.hits().len(), 1);
    // The same event id from another tenant is another event.
    hookline.tenant("shop_2");
    let (status, _) = hookline
        .send_event(&event("evt_dup", "shop_2", "order.paid"))
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn retries_until_success_with_the_same_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(
        &db_in(&dir),
        &[("HOOKLINE_RETRY_SCHEDULE", "100ms,100ms,100ms")],
    );
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|n, _| Reply::Status([500, 503, 200][n.min(2)])).await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    let id = hookline.paid_order(&shop, "evt_r").await;
    let delivery = hookline.wait_delivery(&shop, &id, "succeeded").await;

    let hits = receiver.hits();
    assert_eq!(hits.len(), 3);
    for hit in &hits {
        assert_eq!(hit.webhook_id(), id);
        assert!(hit.verifies_with(&shop.webhook_key));
        assert_eq!(
            hit.body, hits[0].body,
            "the body is the same on every attempt"
        );
    }
    assert!(hits[1].at.duration_since(hits[0].at) >= Duration::from_millis(80));
    let codes: Vec<_> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(500), json!(503), json!(200)]);
    assert_eq!(delivery["attempts"][0]["error"], "receiver answered 500");
    assert!(delivery["attempts"][2]["error"].is_null());
}

#[tokio::test]
async fn exhausted_retries_end_dead_and_a_manual_retry_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "50ms,50ms")]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|_, _| Reply::Status(500)).await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    let id = hookline.paid_order(&shop, "evt_d").await;
    let dead = hookline.wait_delivery(&shop, &id, "dead").await;
    assert_eq!(dead["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(receiver.hits().len(), 3);
    let listed = hookline.deliveries(&shop, "status=dead").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    receiver.set_plan(|_, _| Reply::Status(204));
    let (status, body) = hookline
        .admin(&shop, "POST", &format!("/v1/deliveries/{id}/retry"), None)
        .await;
    assert_eq!((status, body["status"].as_str()), (202, Some("pending")));
    let done = hookline.wait_delivery(&shop, &id, "succeeded").await;
    assert_eq!(done["attempts"].as_array().unwrap().len(), 4);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(|h| h.webhook_id() == id));
}

#[tokio::test]
async fn recover_replays_a_rules_dead_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "")]);
    let shop = hookline.tenant("shop_1");
    // A failing receiver (not 410, which says it is gone and disables the rule).
    let receiver = Receiver::start_with(|_, _| Reply::Status(500)).await;
    let rule = hookline.paid_orders_to(&shop, receiver.url("/")).await;
    for i in 0..3 {
        hookline
            .send_event(&event(&format!("evt_{i}"), "shop_1", "order.paid"))
            .await;
    }
    for d in hookline.deliveries(&shop, "").await {
        hookline
            .wait_delivery(&shop, d["id"].as_str().unwrap(), "dead")
            .await;
    }
    receiver.set_plan(|_, _| Reply::Status(200));
    let path = format!("/v1/rules/{rule}/recover");
    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            &path,
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((status, body), (202, json!({"recovered": 3})));
    for d in hookline.deliveries(&shop, "").await {
        hookline
            .wait_delivery(&shop, d["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    // A window before everything recovers nothing.
    let (_, body) = hookline
        .admin(
            &shop,
            "POST",
            &path,
            Some(json!({"since": "2000-01-01T00:00:00Z", "until": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(body, json!({"recovered": 0}));
    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            &path,
            Some(json!({"until": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("since"))
    );
}

#[tokio::test]
async fn key_rotation_signs_with_both_keys_during_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_KEY_GRACE", "4s")]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    let old = shop.webhook_key.clone();
    let (_, current) = hookline.admin(&shop, "GET", "/v1/webhook-key", None).await;
    assert_eq!(current, json!({"key": old}));

    hookline
        .send_event(&event("evt_before", "shop_1", "order.paid"))
        .await;
    let before = receiver.wait_for(1).await.remove(0);
    assert!(before.verifies_with(&old));

    let (status, rotated) = hookline
        .admin(&shop, "POST", "/v1/webhook-key/rotate", None)
        .await;
    assert_eq!(status, 200);
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(
        hookline
            .admin(&shop, "GET", "/v1/webhook-key", None)
            .await
            .1,
        json!({"key": new})
    );

    hookline
        .send_event(&event("evt_during", "shop_1", "order.paid"))
        .await;
    let during = receiver.wait_for(2).await.remove(1);
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert!(
        during.verifies_with(&old),
        "old key still verifies during the grace period"
    );
    assert!(during.verifies_with(&new));
    assert!(!before.verifies_with(&new));

    tokio::time::sleep(Duration::from_millis(4200)).await;
    hookline
        .send_event(&event("evt_after", "shop_1", "order.paid"))
        .await;
    let after = receiver.wait_for(3).await.remove(2);
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(after.verifies_with(&new));
    assert!(
        !after.verifies_with(&old),
        "old key no longer signs after the grace period"
    );
}
