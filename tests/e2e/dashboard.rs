//! The dashboard in a real headless Chromium against `hookline serve`: sign
//! in, add a webhook, see a delivery and its attempt, retry it, see the
//! webhook's health, rotate the key, read an API error in words, and fit a
//! 360 px screen. Each step's
//! screenshot lands in `<target>/dashboard-screenshots/`.

use std::path::PathBuf;

use crate::support::webdriver::Browser;
use crate::support::*;

fn shots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")));
    target.join("dashboard-screenshots")
}

#[tokio::test]
async fn a_merchant_manages_webhooks_in_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[("HOOKLINE_RETRY_SCHEDULE", "")]);
    let t = h.tenant("shop");
    // The first attempt fails, so the delivery ends dead and can be retried.
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 503 } else { 204 })).await;
    let shots = shots();
    let b = Browser::start(1280, 900).await;

    b.goto(&format!("{}/dashboard", h.base)).await;
    b.wait_text("#sign-in h2", |t| t == "Sign in").await;
    b.fill("#api-key", "hk_not_a_key").await;
    b.click("#sign-in-form button").await;
    b.wait_text("#notice", |t| t.contains("not valid")).await;
    b.screenshot(&shots.join("01-sign-in.png")).await;

    b.fill("#api-key", &t.api_key).await;
    b.click("#sign-in-form button").await;
    b.wait_text("#rules", |t| t.contains("No webhooks yet"))
        .await;
    let key_in_url = b.script("return location.href").await;
    assert!(!key_in_url.to_string().contains(&t.api_key), "{key_in_url}");

    // An API error, in words: a URL the server refuses.
    b.click("#add-rule").await;
    b.fill("#rule-form [name=name]", "paid orders").await;
    b.fill("#rule-form [name=url]", "ftp://example.com/hook")
        .await;
    b.click("#rule-form button[type=submit]").await;
    b.wait_text("#notice", |t| t.starts_with("url:")).await;

    b.fill("#rule-form [name=url]", &receiver.url("/hook"))
        .await;
    b.fill("#rule-form [name=headers]", "X-Shop: main").await;
    b.click("#rule-form button[type=submit]").await;
    let rules = b.wait_text("#rules", |t| t.contains("paid orders")).await;
    assert!(
        rules.contains("Order paid") && rules.contains(&receiver.url("/hook")),
        "{rules}"
    );
    b.screenshot(&shots.join("02-webhook-added.png")).await;
    let (_, listed) = h.admin(&t, "GET", "/v1/rules", None).await;
    assert_eq!(listed["data"][0]["headers"]["X-Shop"], "main");

    // An order comes in; its delivery fails once and is dead.
    let (status, _) = h.send_event(&event("evt_1", "shop", "order.paid")).await;
    assert_eq!(status, 202);
    let id = h.deliveries(&t, "event_id=evt_1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.wait_delivery(&t, &id, "dead").await;

    b.click("[data-tab=deliveries]").await;
    b.wait_text("#deliveries", |t| t.contains("evt_1") && t.contains("dead"))
        .await;
    b.click(&format!(".delivery[data-id='{id}']")).await;
    let detail = b.wait_text("#delivery-detail", |t| t.contains("503")).await;
    assert!(
        detail.contains(&id) && detail.contains("1 attempt in all"),
        "{detail}"
    );
    b.screenshot(&shots.join("03-delivery-dead.png")).await;

    b.click("#delivery-retry").await;
    b.wait_text("#notice", |t| t.contains("queued again")).await;
    h.wait_delivery(&t, &id, "succeeded").await;
    b.click(&format!(".delivery[data-id='{id}']")).await;
    let detail = b
        .wait_text("#delivery-detail", |t| {
            t.contains("succeeded") && t.contains("204")
        })
        .await;
    assert!(detail.contains("2 attempts in all"), "{detail}");
    let row = format!(".delivery[data-id='{id}']");
    b.wait_text(&row, |t| {
        t.contains("succeeded") && t.contains("2 attempts")
    })
    .await;
    b.screenshot(&shots.join("04-delivery-retried.png")).await;

    // The webhook's health: one failure (the 503) and one success.
    b.click("[data-tab=rules]").await;
    let rule = listed["data"][0]["id"].as_str().unwrap().to_owned();
    let line = format!(".rule[data-id='{rule}'] .health");
    b.wait_text(&line, |t| t.contains("50.0% delivered of 2"))
        .await;
    b.click(&format!(".rule[data-id='{rule}'] .health-open"))
        .await;
    let health = b
        .wait_text("#rule-health", |t| t.contains("Health of paid orders"))
        .await;
    assert!(
        health.contains("receiver answered 503") && health.contains("50.0%"),
        "{health}"
    );
    b.screenshot(&shots.join("05-webhook-health.png")).await;

    // The webhook key: reveal, then rotate.
    b.click("[data-tab=key]").await;
    b.click("#key-reveal").await;
    b.wait_text("#key-value", |k| k == t.webhook_key).await;
    b.click("#key-rotate").await;
    b.accept_dialog().await;
    let rotated = b
        .wait_text("#key-value", |k| {
            k.starts_with("whsec_") && k != t.webhook_key
        })
        .await;
    let (_, current) = h.admin(&t, "GET", "/v1/webhook-key", None).await;
    assert_eq!(current["key"], rotated.as_str());
    b.screenshot(&shots.join("06-key-rotated.png")).await;

    // A phone's width: nothing wider than the screen.
    b.resize(360, 800).await;
    b.click("[data-tab=rules]").await;
    b.wait_text("#rules", |t| t.contains("paid orders")).await;
    let overflow = b
        .script("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "wider than 360 px by {overflow}"
    );
    b.screenshot(&shots.join("07-phone.png")).await;
    b.quit().await;
}
