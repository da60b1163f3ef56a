//! What a receiver may ask beyond its status, over real HTTP: 410 Gone and
//! `webhook-delivery: disable` disable the rule at once (reason `gone`,
//! the `rule.disabled` alert raised); `webhook-delivery: abort-message`
//! ends the delivery without its retries.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_receiver_can_say_it_is_gone_or_that_a_delivery_is_not_to_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    // Retries a second apart: a delivery that ends dead at its first
    // attempt was not retried.
    let h = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "1s,1s")]);
    let shop = h.tenant("shop_1");
    let alerts = Receiver::start().await;
    let gone = Receiver::start_with(|_, _| Reply::Status(410)).await;
    let disabling = Receiver::start_with(|_, _| Reply::Signal(503, "disable")).await;
    let aborting = Receiver::start_with(|_, _| Reply::Signal(500, "abort-message")).await;
    h.create_rule(
        &shop,
        json!({"name": "alerts", "trigger": "rule.disabled", "url": alerts.url("/")}),
    )
    .await;
    let mut rules = Vec::new();
    for (name, receiver) in [
        ("gone", &gone),
        ("disabling", &disabling),
        ("aborting", &aborting),
    ] {
        let id = h
            .create_rule(
                &shop,
                json!({"name": name, "trigger": "order.paid", "url": receiver.url("/")}),
            )
            .await;
        rules.push(id);
    }
    h.paid_order(&shop, "evt_1").await;
    for (rule, error) in rules.iter().zip([
        "receiver answered 410 Gone; the rule is disabled",
        "receiver answered 503 with webhook-delivery: disable; the rule is disabled",
        "receiver answered 500 with webhook-delivery: abort-message; not retried",
    ]) {
        let listed = h.deliveries(&shop, &format!("rule_id={rule}")).await;
        let id = listed[0]["id"].as_str().unwrap();
        let dead = h.wait_delivery(&shop, id, "dead").await;
        assert_eq!(dead["attempt_count"], 1, "not retried: {dead}");
        assert_eq!(dead["attempts"][0]["error"], error);
    }
    let rule = |id: &str| {
        let id = id.to_owned();
        let h = &h;
        let shop = &shop;
        async move {
            h.admin(shop, "GET", &format!("/v1/rules/{id}"), None)
                .await
                .1
        }
    };
    for id in &rules[..2] {
        let r = rule(id).await;
        assert_eq!(
            (&r["enabled"], &r["disabled_reason"]),
            (&json!(false), &json!("gone")),
            "{r}"
        );
    }
    let aborted = rule(&rules[2]).await;
    assert_eq!(
        aborted["enabled"], true,
        "abort-message ends one delivery only"
    );

    // One alert per disabled rule, saying why.
    let hits = alerts.wait_for(2).await;
    let mut told: Vec<(String, String)> = hits
        .iter()
        .map(|hit| {
            let data = &hit.json()["data"];
            (
                data["rule_id"].as_str().unwrap().to_owned(),
                data["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    told.sort();
    let mut expected: Vec<(String, String)> = rules[..2]
        .iter()
        .map(|r| (r.clone(), "gone".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(told, expected);
    // Each receiver was asked once.
    for receiver in [&gone, &disabling, &aborting] {
        assert_eq!(receiver.hits().len(), 1);
    }
}
