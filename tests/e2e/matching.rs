//! Plug&Pay matching through the whole engine: triggers, scopes, order
//! bumps, upsells and first payments.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::*;

const TRIGGERS: [&str; 6] = [
    "order.paid",
    "invoice.created",
    "subscription.ended",
    "affiliate.accepted",
    "affiliate.rejected",
    "affiliate.stopped",
];

#[tokio::test]
async fn every_trigger_reaches_its_rule_signed_and_in_the_contract_shape() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    let mut rules = BTreeMap::new();
    for t in TRIGGERS {
        let id = hookline
            .create_rule(
                &shop,
                json!({"name": t, "trigger": t, "url": receiver.url(&format!("/{t}"))}),
            )
            .await;
        rules.insert(t.to_owned(), id);
    }
    for (i, t) in TRIGGERS.iter().enumerate() {
        let (status, body) = hookline
            .send_event(&event(&format!("evt_{i}"), "shop_1", t))
            .await;
        assert_eq!(
            (status, body),
            (202, json!({"id": format!("evt_{i}"), "duplicate": false}))
        );
    }
    let hits = receiver.wait_for(6).await;
    for hit in &hits {
        let t = hit.path.trim_start_matches('/');
        let body = hit.json();
        assert!(hit.verifies_with(&shop.webhook_key), "signature of {t}");
        assert_eq!(hit.header("content-type"), "application/json");
        assert!(hit.header("user-agent").starts_with("hookline/"));
        let ts: i64 = hit.header("webhook-timestamp").parse().unwrap();
        assert!(ts > 1_700_000_000);
        let event_id = body["event_id"].as_str().unwrap();
        assert_eq!(
            body,
            json!({
                "type": t,
                "timestamp": "2026-11-29T12:00:00Z",
                "event_id": event_id,
                "tenant_id": "shop_1",
                "rule_id": rules[t],
                "data": {"object": t, "event": event_id},
            })
        );
        let listed = hookline
            .deliveries(&shop, &format!("event_id={event_id}"))
            .await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], hit.webhook_id());
        assert!(!hit.webhook_id().contains('.'));
    }
    let mut seen: Vec<_> = hits.iter().map(|h| h.path.clone()).collect();
    seen.sort();
    let mut expected: Vec<_> = TRIGGERS.iter().map(|t| format!("/{t}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn order_bump_scopes_and_per_line_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    let rule = |name: &str, scope: serde_json::Value, per_line: bool| {
        json!({"name": name, "trigger": "order.paid", "url": receiver.url(&format!("/{name}")),
               "scope": scope, "per_order_line": per_line})
    };
    for r in [
        rule("bump", json!({"type": "product", "id": "prod_bump"}), false),
        rule("uni-lines", json!({"type": "universal"}), true),
        rule(
            "bump-lines",
            json!({"type": "product", "id": "prod_bump"}),
            true,
        ),
        rule(
            "page",
            json!({"type": "payment_page", "id": "page_9"}),
            false,
        ),
        rule(
            "other-page",
            json!({"type": "payment_page", "id": "page_x"}),
            false,
        ),
        rule(
            "other-product",
            json!({"type": "product", "id": "prod_x"}),
            false,
        ),
    ] {
        hookline.create_rule(&shop, r).await;
    }
    let mut order = event("evt_order", "shop_1", "order.paid");
    order["payment_page_id"] = json!("page_9");
    order["lines"] = json!([
        {"id": "l_main", "product_id": "prod_main"},
        {"id": "l_bump", "product_id": "prod_bump"}
    ]);
    assert_eq!(hookline.send_event(&order).await.0, 202);

    // Deliveries are recorded when the event is accepted: the log is exact now.
    assert_eq!(
        hookline.deliveries(&shop, "event_id=evt_order").await.len(),
        5
    );
    let hits = receiver.wait_for(5).await;
    let mut got: Vec<(String, Option<String>)> = hits
        .iter()
        .map(|h| {
            let line = h.json().get("line").map(|l| {
                assert_eq!(l.as_object().unwrap().len(), 2);
                l["id"].as_str().unwrap().to_owned()
            });
            (h.path.clone(), line)
        })
        .collect();
    got.sort();
    let want = |p: &str, l: Option<&str>| (p.to_owned(), l.map(str::to_owned));
    assert_eq!(
        got,
        vec![
            want("/bump", None),
            want("/bump-lines", Some("l_bump")),
            want("/page", None),
            want("/uni-lines", Some("l_bump")),
            want("/uni-lines", Some("l_main")),
        ]
    );
    let bump_line = hits
        .iter()
        .find(|h| h.path == "/bump-lines")
        .unwrap()
        .json();
    assert_eq!(
        bump_line["line"],
        json!({"id": "l_bump", "product_id": "prod_bump"})
    );
    let ids: std::collections::HashSet<_> =
        hits.iter().map(|h| h.webhook_id().to_owned()).collect();
    assert_eq!(ids.len(), 5, "every delivery has its own webhook-id");
}

#[tokio::test]
async fn upsell_invoice_fires_the_upsell_rule_and_universal_invoice_rules() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    let mk = |name: &str, trigger: &str, scope: serde_json::Value| json!({"name": name, "trigger": trigger, "url": receiver.url(&format!("/{name}")), "scope": scope});
    for r in [
        mk(
            "upsell",
            "invoice.created",
            json!({"type": "upsell", "id": "up_1"}),
        ),
        mk("universal", "invoice.created", json!({"type": "universal"})),
        mk(
            "other-upsell",
            "invoice.created",
            json!({"type": "upsell", "id": "up_2"}),
        ),
        mk("paid", "order.paid", json!({"type": "universal"})),
    ] {
        hookline.create_rule(&shop, r).await;
    }
    let mut invoice = event("evt_up", "shop_1", "invoice.created");
    invoice["upsell_id"] = json!("up_1");
    assert_eq!(hookline.send_event(&invoice).await.0, 202);
    assert_eq!(hookline.deliveries(&shop, "").await.len(), 2);
    let mut paths: Vec<_> = receiver
        .wait_for(2)
        .await
        .into_iter()
        .map(|h| h.path)
        .collect();
    paths.sort();
    assert_eq!(paths, ["/universal", "/upsell"]);
}

#[tokio::test]
async fn first_payment_only_rules_skip_later_instalments() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start().await;
    let first = hookline
        .create_rule(
            &shop,
            json!({"name": "first", "trigger": "order.paid", "url": receiver.url("/first"), "first_payment_only": true}),
        )
        .await;
    let every = hookline
        .create_rule(
            &shop,
            json!({"name": "every", "trigger": "order.paid", "url": receiver.url("/every")}),
        )
        .await;
    let mut instalment = event("evt_1", "shop_1", "order.paid");
    assert_eq!(hookline.send_event(&instalment).await.0, 202);
    for i in 2..=3 {
        instalment["id"] = json!(format!("evt_{i}"));
        instalment["first_payment"] = json!(false);
        assert_eq!(hookline.send_event(&instalment).await.0, 202);
    }
    assert_eq!(
        hookline
            .deliveries(&shop, &format!("rule_id={first}"))
            .await
            .len(),
        1
    );
    assert_eq!(
        hookline
            .deliveries(&shop, &format!("rule_id={every}"))
            .await
            .len(),
        3
    );
    let hits = receiver.wait_for(4).await;
    let firsts: Vec<_> = hits
        .iter()
        .filter(|h| h.path == "/first")
        .map(|h| h.json()["event_id"].clone())
        .collect();
    assert_eq!(firsts, [json!("evt_1")]);
}
