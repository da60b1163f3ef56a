//! The HTTP contract: authentication, validation, limits, JSON errors, rule
//! management and tenant isolation.

use serde_json::{Value, json};

use crate::support::*;

fn error_field(body: &Value) -> Option<&str> {
    body["error"]["field"].as_str()
}

#[tokio::test]
async fn ingest_answers_401_400_413_and_422_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    hookline.tenant("shop_1");
    let good = event("evt_1", "shop_1", "order.paid").to_string();

    for token in [None, Some("wrong")] {
        let (status, body) = hookline
            .request("POST", "/v1/events", token, Some(good.clone()))
            .await;
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }

    let (status, body) = hookline
        .request(
            "POST",
            "/v1/events",
            Some(INGEST_TOKEN),
            Some("{not json".into()),
        )
        .await;
    assert_eq!((status, error_field(&body)), (400, Some("body")));
    assert!(body["error"]["message"].is_string());

    let mut missing = event("evt_1", "shop_1", "order.paid");
    missing.as_object_mut().unwrap().remove("occurred_at");
    let (status, body) = hookline.send_event(&missing).await;
    assert_eq!((status, error_field(&body)), (400, Some("occurred_at")));

    let mut bad_line = event("evt_1", "shop_1", "order.paid");
    bad_line["lines"] = json!([{"id": "l1"}]);
    let (status, body) = hookline.send_event(&bad_line).await;
    assert_eq!(
        (status, error_field(&body)),
        (400, Some("lines[0].product_id"))
    );

    let (status, body) = hookline
        .send_event(&event("evt_1", "shop_1", "order.refunded"))
        .await;
    assert_eq!((status, error_field(&body)), (422, Some("type")));

    let (status, body) = hookline
        .send_event(&event("evt_1", "no_such_shop", "order.paid"))
        .await;
    assert_eq!((status, error_field(&body)), (422, Some("tenant_id")));

    let mut huge = event("evt_1", "shop_1", "order.paid");
    huge["data"] = json!({"blob": "x".repeat(300 * 1024)});
    let (status, body) = hookline.send_event(&huge).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("too_large"))
    );

    // None of that was accepted; the good event still is.
    assert_eq!(
        hookline
            .send_event(&serde_json::from_str(&good).unwrap())
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn rules_are_created_listed_patched_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let (status, _) = hookline.request("GET", "/v1/rules", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = hookline
        .request("GET", "/v1/rules", Some("hk_wrong"), None)
        .await;
    assert_eq!(status, 401);

    let (status, created) = hookline
        .admin(
            &shop,
            "POST",
            "/v1/rules",
            Some(
                json!({"name": "bumps", "trigger": "order.paid", "url": "https://example.com/hook",
                        "scope": {"type": "product", "id": "prod_1"}, "per_order_line": true}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created,
        json!({"id": id, "name": "bumps", "trigger": "order.paid", "url": "https://example.com/hook",
               "scope": {"type": "product", "id": "prod_1"}, "per_order_line": true,
               "first_payment_only": false, "enabled": true, "created_at": created["created_at"],
               "filter": null, "payload": "full", "headers": {}, "rate_limit": null,
               "disabled_reason": null, "disabled_at": null})
    );
    assert_eq!(
        hookline
            .admin(&shop, "GET", &format!("/v1/rules/{id}"), None)
            .await,
        (200, created.clone())
    );

    let (status, patched) = hookline
        .admin(
            &shop,
            "PATCH",
            &format!("/v1/rules/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(
        (status, &patched["enabled"], &patched["name"]),
        (200, &json!(false), &json!("bumps"))
    );
    let (status, body) = hookline
        .admin(
            &shop,
            "PATCH",
            &format!("/v1/rules/{id}"),
            Some(json!({"scope": {"type": "nope"}})),
        )
        .await;
    assert_eq!((status, error_field(&body)), (400, Some("scope.type")));
    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            "/v1/rules",
            Some(json!({"name": "x", "trigger": "order.paid"})),
        )
        .await;
    assert_eq!((status, error_field(&body)), (400, Some("url")));
    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            "/v1/rules",
            Some(json!({"name": "x", "trigger": "order.void", "url": "https://e.com"})),
        )
        .await;
    assert_eq!((status, error_field(&body)), (422, Some("trigger")));

    for i in 0..4 {
        hookline
            .create_rule(&shop, json!({"name": format!("r{i}"), "trigger": "invoice.created", "url": "https://e.com"}))
            .await;
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/rules?limit=2".to_owned(),
            Some(c) => format!("/v1/rules?limit=2&cursor={c}"),
        };
        let (status, page) = hookline.admin(&shop, "GET", &path, None).await;
        assert_eq!(status, 200);
        assert!(page["data"].as_array().unwrap().len() <= 2);
        names.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, ["bumps", "r0", "r1", "r2", "r3"]);
    let (status, body) = hookline
        .admin(&shop, "GET", "/v1/rules?limit=0", None)
        .await;
    assert_eq!((status, error_field(&body)), (400, Some("limit")));
    let (status, body) = hookline
        .admin(&shop, "GET", "/v1/deliveries?cursor=zzz", None)
        .await;
    // A cursor is any text to the document; one not handed out is refused
    // for what the server holds, not for its shape.
    assert_eq!((status, error_field(&body)), (422, Some("cursor")));
    assert_eq!(body["error"]["code"], "unknown_cursor");
    let (status, body) = hookline
        .admin(&shop, "GET", "/v1/deliveries?status=lost", None)
        .await;
    assert_eq!((status, error_field(&body)), (400, Some("status")));

    assert_eq!(
        hookline
            .admin(&shop, "DELETE", &format!("/v1/rules/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        hookline
            .admin(&shop, "GET", &format!("/v1/rules/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        hookline
            .admin(&shop, "DELETE", &format!("/v1/rules/{id}"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn another_tenants_key_reaches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let a = hookline.tenant("shop_a");
    let b = hookline.tenant("shop_b");
    let receiver = Receiver::start().await;
    let rule = hookline
        .create_rule(
            &a,
            json!({"name": "a", "trigger": "order.paid", "url": receiver.url("/")}),
        )
        .await;
    hookline
        .send_event(&event("evt_a", "shop_a", "order.paid"))
        .await;
    let delivery = hookline.deliveries(&a, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let missing = hookline
        .admin(&b, "GET", "/v1/rules/rul_missing", None)
        .await;
    assert_eq!(missing.0, 404);
    // Ids no id can be are answered at the edge, as unknown ones are.
    for impossible in [format!("rul_{}", "x".repeat(200)), "rul%0A1".to_owned()] {
        let (status, answer) = hookline
            .admin(&b, "GET", &format!("/v1/deliveries/{impossible}"), None)
            .await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (404, &json!("not_found"))
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("no such id: an id must"),
            "{answer}"
        );
    }
    let since = json!({"since": "2000-01-01T00:00:00Z"});
    for (method, path, body) in [
        ("GET", format!("/v1/rules/{rule}"), None),
        (
            "PATCH",
            format!("/v1/rules/{rule}"),
            Some(json!({"enabled": false})),
        ),
        ("DELETE", format!("/v1/rules/{rule}"), None),
        (
            "POST",
            format!("/v1/rules/{rule}/recover"),
            Some(since.clone()),
        ),
        ("GET", format!("/v1/deliveries/{delivery}"), None),
        ("POST", format!("/v1/deliveries/{delivery}/retry"), None),
    ] {
        let (status, answer) = hookline.admin(&b, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(answer["error"]["code"], missing.1["error"]["code"]);
    }
    for path in [
        "/v1/rules",
        "/v1/deliveries",
        &format!("/v1/deliveries?rule_id={rule}"),
        "/v1/deliveries?event_id=evt_a",
    ] {
        let (status, page) = hookline.admin(&b, "GET", path, None).await;
        assert_eq!(
            (status, page),
            (200, json!({"data": [], "next_cursor": null})),
            "{path}"
        );
    }
    let (_, key_b) = hookline.admin(&b, "GET", "/v1/webhook-key", None).await;
    assert_eq!(key_b, json!({"key": b.webhook_key}));
    // A's rule is untouched and still A's.
    let (status, still) = hookline
        .admin(&a, "GET", &format!("/v1/rules/{rule}"), None)
        .await;
    assert_eq!((status, &still["enabled"]), (200, &json!(true)));
}

#[tokio::test]
async fn tenant_create_refuses_an_existing_id_and_unknown_routes_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    hookline.tenant("shop_1");
    let out = std::process::Command::new(BIN)
        .args(["tenant", "create", "shop_1", "--db"])
        .arg(&hookline.db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let (status, body) = hookline.request("GET", "/v2/nothing", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

/// Limits answer 409 with a code a client can act on.
#[tokio::test]
async fn limits_answer_409_limit_exceeded_and_already_pending() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_MAX_RULES", "2")]);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|_, _| Reply::Hang).await;
    let rule = json!({"name": "n", "trigger": "order.paid", "url": receiver.url("/hook")});
    hookline.create_rule(&shop, rule.clone()).await;
    hookline.create_rule(&shop, rule.clone()).await;
    let (status, body) = hookline
        .admin(&shop, "POST", "/v1/rules", Some(rule.clone()))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HOOKLINE_MAX_RULES")
    );

    for _ in 0..2 {
        let (status, body) = hookline
            .admin(&shop, "POST", "/v1/webhook-key/rotate", None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = hookline
        .admin(&shop, "POST", "/v1/webhook-key/rotate", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("limit_exceeded")),
        "{body}"
    );

    // The receiver holds every request, so the delivery stays pending.
    let delivery = hookline.paid_order(&shop, "evt_1").await;
    let (status, body) = hookline
        .admin(
            &shop,
            "POST",
            &format!("/v1/deliveries/{delivery}/retry"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_pending")),
        "{body}"
    );
}

/// Every rejection is the API's JSON error, whatever part of the request
/// was wrong: the path, the query, the method or the route.
#[tokio::test]
async fn malformed_paths_queries_and_methods_answer_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    for (method, path, status, field) in [
        ("GET", "/v1/deliveries/%ff%fe", 400, Some("path")),
        ("POST", "/v1/deliveries/%ff/retry", 400, Some("path")),
        ("GET", "/v1/rules/%c3%28", 400, Some("path")),
        ("DELETE", "/v1/rules/%80", 400, Some("path")),
        ("GET", "/v1/deliveries?limit=lots", 400, Some("limit")),
        ("GET", "/v1/deliveries?status=%ff", 400, Some("status")),
        ("GET", "/v1/rules?limit=-1", 400, Some("limit")),
        ("PUT", "/v1/rules", 405, None),
        ("DELETE", "/v1/deliveries", 405, None),
        ("GET", "/v1/nothing-here", 404, None),
    ] {
        let (got, body) = hookline.admin(&shop, method, path, None).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{method} {path}: not a JSON error: {body}"
        );
        assert_eq!(
            body["error"]["field"].as_str(),
            field,
            "{method} {path}: {body}"
        );
    }
}
