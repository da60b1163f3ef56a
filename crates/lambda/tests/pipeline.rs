//! The AWS pipeline end to end: ingest → events queue → router → deliveries
//! queue → deliverer → a receiver on 127.0.0.1, through real SQS queues and
//! a real DynamoDB table on moto. `poll_once` plays Lambda's event source
//! mapping; the handlers are the functions' own.

use hookline_core::id::{RuleId, TenantId};
use hookline_test_support as support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use hookline_api::{ApiConfig, ApiState};
use hookline_aws::{AwsBackend, Deliverer, poll_once, redrive, route_batch};
use hookline_core::api_key::hash_api_key;
use hookline_core::breaker::Breaker;
use hookline_core::ingest_token::IngestTokens;
use hookline_core::ports::{Clock, DeliveryFilter, NewTenant, Store};
use hookline_core::retry::RetrySchedule;
use hookline_core::target::TargetPolicy;
use hookline_core::{DeliveryStatus, WebhookKey};
use hookline_lambda::{Settings, SystemClock};
use serde_json::{Value, json};
use tower::ServiceExt;

const API_KEY: &str = "hk_pipeline";
const TOKEN: &str = "pipeline-ingest-token";

#[derive(Clone, Debug)]
struct Hit {
    path: String,
    webhook_id: String,
    body: Value,
    verified: bool,
    /// The `x-shop` header, which rules with custom headers set.
    x_shop: Option<String>,
}

#[derive(Clone)]
struct Receiver {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<Mutex<u16>>,
}

async fn receiver(key: &WebhookKey) -> Receiver {
    let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let status = Arc::new(Mutex::new(200));
    let verifier = Arc::new(standardwebhooks::Webhook::new(&key.expose()).unwrap());
    let (h, s) = (hits.clone(), status.clone());
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let (h, s, verifier) = (h.clone(), s.clone(), verifier.clone());
        let hit = Hit {
            path: uri.path().to_owned(),
            webhook_id: headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            verified: verifier.verify(&body, &headers).is_ok(),
            x_shop: headers
                .get("x-shop")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        h.lock().unwrap().push(hit);
        let code = *s.lock().unwrap();
        async move { StatusCode::from_u16(code).unwrap() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { base, hits, status }
}

struct Pipeline {
    env: HashMap<String, String>,
    backend: AwsBackend,
    app: axum::Router,
    deliverer: Deliverer,
    key: WebhookKey,
}

async fn pipeline(max_attempts: u32, schedule: &str) -> Pipeline {
    pipeline_with_visibility(max_attempts, schedule, 30).await
}

async fn pipeline_with_visibility(max_attempts: u32, schedule: &str, visibility: u32) -> Pipeline {
    let env = support::create_resources(max_attempts, visibility);
    let backend = support::backend(&env).await;
    let key = WebhookKey::from_bytes(&[9; 32]).unwrap();
    backend
        .create_tenant(NewTenant {
            id: TenantId::stored("shop_1"),
            api_key_hash: hash_api_key(API_KEY),
            webhook_key: key.clone(),
            created_at: SystemClock.now(),
        })
        .await
        .unwrap();
    let policy = TargetPolicy {
        allow_private: true,
    };
    let config = ApiConfig {
        ingest_tokens: IngestTokens::parse(TOKEN).unwrap(),
        policy,
        key_grace: Duration::from_secs(60),
        max_rules: 100,
    };
    let app = hookline_api::router(ApiState::new(
        Arc::new(backend.clone()),
        Arc::new(SystemClock),
        config,
    ));
    let mut settings = Settings::from_env().unwrap();
    settings.allow_private_targets = true;
    settings.retry_schedule = RetrySchedule::parse(schedule).unwrap();
    let deliverer = hookline_lambda::deliverer(backend.clone(), &settings).unwrap();
    Pipeline {
        env,
        backend,
        app,
        deliverer,
        key,
    }
}

impl Pipeline {
    async fn call(&self, method: &str, path: &str, bearer: &str, body: Value) -> (u16, Value) {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn rule(&self, body: Value) -> String {
        let (status, rule) = self.call("POST", "/v1/rules", API_KEY, body).await;
        assert_eq!(status, 201, "{rule}");
        rule["id"].as_str().unwrap().to_owned()
    }

    async fn ingest(&self, event: Value) {
        let (status, body) = self.call("POST", "/v1/events", TOKEN, event).await;
        assert_eq!(status, 202, "{body}");
    }

    async fn route_all(&self) {
        let url = self.backend.settings().events_queue_url.clone();
        while poll_once(&self.backend, &url, 0, |b| route_batch(&self.backend, b))
            .await
            .unwrap()
            > 0
        {}
    }

    /// Runs the deliverer until the deliveries queue stays empty for a while.
    async fn deliver_all(&self, quiet: Duration) {
        let url = self.backend.settings().deliveries_queue_url.clone();
        let mut idle_since = Instant::now();
        while idle_since.elapsed() < quiet {
            let n = poll_once(&self.backend, &url, 0, |b| self.deliverer.handle(b))
                .await
                .unwrap();
            if n > 0 {
                idle_since = Instant::now();
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Empties the events queue without routing what is on it.
    async fn drop_queued_events(&self) {
        let url = self.backend.settings().events_queue_url.clone();
        while poll_once(&self.backend, &url, 0, |_| async {
            SqsBatchResponse::default()
        })
        .await
        .unwrap()
            > 0
        {}
    }

    /// `hookline dlq redrive`: the deliveries DLQ back to the queue.
    async fn redrive_dlq(&self) -> u64 {
        let settings = self.backend.settings();
        redrive(
            &self.backend,
            settings.deliveries_dlq_url.as_deref().unwrap(),
            &settings.deliveries_queue_url,
        )
        .await
        .unwrap()
    }

    async fn deliveries(&self) -> Vec<hookline_core::Delivery> {
        let filter = DeliveryFilter {
            limit: 250,
            ..Default::default()
        };
        self.backend
            .deliveries(&TenantId::stored("shop_1"), &filter)
            .await
            .unwrap()
            .data
    }
}

fn event(id: &str, kind: &str, extra: Value) -> Value {
    let mut e = json!({"id": id, "tenant_id": "shop_1", "type": kind, "occurred_at": "2026-11-29T12:00:00Z",
                       "data": {"event": id}});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// The limits answer 409 through the functions' router on DynamoDB too.
#[tokio::test]
async fn limits_answer_409_on_aws() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    *r.status.lock().unwrap() = 500;
    for _ in 0..2 {
        let (status, body) = p
            .call("POST", "/v1/webhook-key/rotate", API_KEY, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = p
        .call("POST", "/v1/webhook-key/rotate", API_KEY, json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("limit_exceeded")),
        "{body}"
    );

    p.rule(json!({"name": "n", "trigger": "order.paid", "url": format!("{}/hook", r.base)}))
        .await;
    p.ingest(event("evt_1", "order.paid", json!({}))).await;
    p.route_all().await;
    // Failed once and waiting for its retry: pending.
    p.deliver_all(Duration::from_millis(200)).await;
    let id = p.deliveries().await[0].id.clone();
    let (status, body) = p
        .call(
            "POST",
            &format!("/v1/deliveries/{id}/retry"),
            API_KEY,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_pending")),
        "{body}"
    );
}

/// Batch ingest on AWS: one request, item by item, and at most ten SQS calls
/// by Hookline for a hundred events.
#[tokio::test]
async fn a_batch_of_100_costs_at_most_ten_sqs_calls() {
    let p = pipeline(8, "1s").await;
    let mut events: Vec<Value> = (0..100)
        .map(|i| event(&format!("evt_{i:03}"), "order.paid", json!({})))
        .collect();
    events[3]["type"] = json!("order.refunded");
    events[40]["tenant_id"] = json!("nobody");
    events[77]["data"] = json!(null);
    let before = p.backend.calls().snapshot();
    let (status, body) = p
        .call(
            "POST",
            "/v1/events/batch",
            TOKEN,
            json!({ "events": events }),
        )
        .await;
    let after = p.backend.calls().snapshot();
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 97, "{body}");
    assert_eq!((statuses[3], statuses[40], statuses[77]), (422, 422, 400));
    let sqs = after.sqs - before.sqs;
    assert!(sqs <= 10, "{sqs} SQS calls for one batch");
    println!(
        "batch of 100 (97 good): {sqs} SQS calls, {} DynamoDB writes",
        after.dynamodb_writes - before.dynamodb_writes
    );
}

/// Rule options through real queues and the Lambda handlers: a filter on the
/// amount, the thin envelope with the event's subject, custom headers.
#[tokio::test]
async fn filters_thin_payloads_and_headers_through_real_queues() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.rule(
        json!({"name": "big", "trigger": "order.paid", "url": format!("{}/big", r.base),
                  "filter": {"data": {"amount": {"$gte": 10000}}},
                  "payload": "thin", "headers": {"X-Shop": "shop_1"}}),
    )
    .await;
    for (id, amount) in [("evt_small", 4900), ("evt_big", 25000)] {
        let mut e = event(id, "order.paid", json!({}));
        e["data"] = json!({"amount": amount});
        e["subject"] = json!({"type": "order", "id": format!("ord_{id}")});
        p.ingest(e).await;
    }
    p.route_all().await;
    p.deliver_all(Duration::from_millis(500)).await;
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "only the large order: {hits:?}");
    let hit = &hits[0];
    assert!(hit.verified, "signed over the thin body");
    assert_eq!(hit.x_shop.as_deref(), Some("shop_1"));
    assert_eq!(hit.body["trigger_type"], "order_paid");
    assert_eq!(hit.body["triggerable_id"], "ord_evt_big");
    assert_eq!(hit.body["event_id"], "evt_big");
    assert!(hit.body.get("data").is_none());
    assert_eq!(
        p.deliveries().await.len(),
        1,
        "no delivery for the small order"
    );
}

#[tokio::test]
async fn every_scope_is_delivered_through_real_queues() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    let url = |path: &str| format!("{}{path}", r.base);
    p.rule(json!({"name": "lines", "trigger": "order.paid", "url": url("/uni-lines"), "per_order_line": true})).await;
    p.rule(json!({"name": "bump", "trigger": "order.paid", "url": url("/bump"), "scope": {"type": "product", "id": "prod_bump"}})).await;
    p.rule(json!({"name": "page", "trigger": "order.paid", "url": url("/page"), "scope": {"type": "payment_page", "id": "page_9"}})).await;
    p.rule(json!({"name": "first", "trigger": "order.paid", "url": url("/first"), "first_payment_only": true})).await;
    p.rule(json!({"name": "upsell", "trigger": "invoice.created", "url": url("/upsell"), "scope": {"type": "upsell", "id": "up_1"}})).await;
    p.rule(json!({"name": "invoices", "trigger": "invoice.created", "url": url("/invoices")}))
        .await;

    let before = p.backend.calls().snapshot();
    let lines = json!([{"id": "l_main", "product_id": "prod_main"}, {"id": "l_bump", "product_id": "prod_bump"}]);
    p.ingest(event(
        "evt_order",
        "order.paid",
        json!({"payment_page_id": "page_9", "lines": lines}),
    ))
    .await;
    p.ingest(event(
        "evt_later",
        "order.paid",
        json!({"first_payment": false}),
    ))
    .await;
    p.ingest(event(
        "evt_upsell",
        "invoice.created",
        json!({"upsell_id": "up_1"}),
    ))
    .await;
    p.route_all().await;
    p.deliver_all(Duration::from_millis(500)).await;
    let after = p.backend.calls().snapshot();

    let hits = r.hits.lock().unwrap().clone();
    assert!(
        hits.iter().all(|h| h.verified),
        "every delivery verifies with the tenant's key"
    );
    let mut got: Vec<(String, String, Option<String>)> = hits
        .iter()
        .map(|h| {
            let line = h
                .body
                .get("line")
                .map(|l| l["id"].as_str().unwrap().to_owned());
            (
                h.path.clone(),
                h.body["event_id"].as_str().unwrap().to_owned(),
                line,
            )
        })
        .collect();
    got.sort();
    let want =
        |p: &str, e: &str, l: Option<&str>| (p.to_owned(), e.to_owned(), l.map(str::to_owned));
    assert_eq!(
        got,
        vec![
            want("/bump", "evt_order", None),
            want("/first", "evt_order", None),
            want("/invoices", "evt_upsell", None),
            want("/page", "evt_order", None),
            want("/uni-lines", "evt_later", None),
            want("/uni-lines", "evt_order", Some("l_bump")),
            want("/uni-lines", "evt_order", Some("l_main")),
            want("/upsell", "evt_upsell", None),
        ]
    );
    let deliveries = p.deliveries().await;
    assert_eq!(deliveries.len(), 8);
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded)
    );

    let n = hits.len() as f64;
    let per = |x: u64| x as f64 / n;
    println!(
        "AWS calls per delivered webhook ({} deliveries of 3 events): DynamoDB writes {:.2}, reads {:.2}; \
         SQS by the adapters {:.2}, by the event source mapping {:.2}",
        hits.len(),
        per(after.dynamodb_writes - before.dynamodb_writes),
        per(after.dynamodb_reads - before.dynamodb_reads),
        per(after.sqs - before.sqs),
        per(after.event_source_sqs - before.event_source_sqs),
    );
}

#[tokio::test]
async fn a_failing_receiver_lands_in_the_dlq_and_redrive_delivers_the_same_webhook_id() {
    // Three attempts: maxReceiveCount 3, two retries a second apart.
    let p = pipeline(3, "1s,1s").await;
    let r = receiver(&p.key).await;
    *r.status.lock().unwrap() = 500;
    p.rule(json!({"name": "n", "trigger": "order.paid", "url": format!("{}/hook", r.base)}))
        .await;
    p.ingest(event("evt_1", "order.paid", json!({}))).await;
    p.route_all().await;
    p.deliver_all(Duration::from_millis(2500)).await;

    let d = &p.deliveries().await[0];
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(d.attempts.len(), 3);
    assert_eq!(r.hits.lock().unwrap().len(), 3);

    *r.status.lock().unwrap() = 200;
    let moved = p.redrive_dlq().await;
    assert_eq!(moved, 1, "the dead delivery's message was in the DLQ");
    p.deliver_all(Duration::from_millis(500)).await;
    let d = &p.deliveries().await[0];
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Succeeded, 4));
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 4);
    assert!(
        hits.iter().all(|h| d.id == h.webhook_id.as_str()),
        "the same webhook-id on every attempt and after redrive"
    );
}

#[tokio::test]
async fn a_delivery_dead_before_the_last_receive_moves_to_the_dlq_at_once() {
    // The queue would allow eight receives; the rule is gone after routing,
    // so the first attempt is the last, and the deliverer itself moves the
    // message to the DLQ instead of leaving it for the redrive policy.
    let p = pipeline(8, "1s,1s,1s,1s,1s,1s,1s").await;
    let r = receiver(&p.key).await;
    let rule = p
        .rule(json!({"name": "n", "trigger": "order.paid", "url": format!("{}/hook", r.base)}))
        .await;
    p.ingest(event("evt_1", "order.paid", json!({}))).await;
    p.route_all().await;
    let (status, _) = p
        .call("DELETE", &format!("/v1/rules/{rule}"), API_KEY, json!({}))
        .await;
    assert_eq!(status, 204);
    p.deliver_all(Duration::from_millis(300)).await;

    let d = &p.deliveries().await[0];
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Dead, 1));
    assert_eq!(d.attempts[0].error.as_deref(), Some("the rule was deleted"));
    assert!(r.hits.lock().unwrap().is_empty());
    let moved = p.redrive_dlq().await;
    assert_eq!(
        moved, 1,
        "one receive put the dead delivery's message in the DLQ"
    );
}

/// Tenant A's receiver holds every request; B's single event still goes out
/// at once. Each attempt is settled as it finishes, and batches run side by
/// side (three pollers play the event source mapping's concurrency), so A's
/// slow attempts hold neither B's send nor its record.
#[tokio::test]
async fn a_tarpit_tenant_does_not_delay_another_tenants_delivery() {
    let mut p = pipeline(8, "1s").await;
    p.backend
        .create_tenant(NewTenant {
            id: TenantId::stored("shop_2"),
            api_key_hash: hash_api_key("hk_pipeline_b"),
            webhook_key: p.key.clone(),
            created_at: SystemClock.now(),
        })
        .await
        .unwrap();
    let mut settings = Settings::from_env().unwrap();
    settings.allow_private_targets = true;
    settings.delivery_timeout = Duration::from_secs(6);
    p.deliverer = hookline_lambda::deliverer(p.backend.clone(), &settings).unwrap();

    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tarpit_url = format!("http://{}/hook", tarpit.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        StatusCode::OK
    });
    tokio::spawn(async move { axum::serve(tarpit, app).await });
    let quick = receiver(&p.key).await;
    p.rule(json!({"name": "a", "trigger": "order.paid", "url": tarpit_url}))
        .await;
    let (status, body) = p
        .call(
            "POST",
            "/v1/rules",
            "hk_pipeline_b",
            json!({"name": "b", "trigger": "order.paid", "url": format!("{}/hook", quick.base)}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for i in 0..9 {
        p.ingest(event(&format!("evt_a{i}"), "order.paid", json!({})))
            .await;
    }
    let mut b_event = event("evt_b", "order.paid", json!({}));
    b_event["tenant_id"] = json!("shop_2");
    p.ingest(b_event).await;
    p.route_all().await;

    let started = Instant::now();
    let p = Arc::new(p);
    let pollers: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.deliver_all(Duration::from_millis(500)).await })
        })
        .collect();
    while quick.hits.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(2),
        "B's delivery took {waited:?} behind A's tarpit"
    );
    println!(
        "tenant B delivered {waited:?} after the deliverer started, beside 9 tarpit attempts of A"
    );
    for poller in pollers {
        poller.await.unwrap();
    }
}

/// Recover stopped at any point (a Lambda timeout, a crash) strands nothing:
/// every delivery is dead (and recoverable again) or pending with its message
/// really in the queue.
#[tokio::test]
async fn recover_stopped_halfway_strands_no_delivery() {
    for cut_ms in [40, 150, 400] {
        // One attempt each; a short visibility and room for the look at the
        // queue below, which counts as a receive.
        let mut p = pipeline_with_visibility(3, "", 2).await;
        // All 25 are to die at their one attempt, not be held by the breaker.
        p.deliverer.backend = p.deliverer.backend.clone().with_breaker(Breaker {
            threshold: u32::MAX,
            ..Breaker::default()
        });
        let r = receiver(&p.key).await;
        *r.status.lock().unwrap() = 500;
        let rule = p
            .rule(json!({"name": "n", "trigger": "order.paid", "url": format!("{}/hook", r.base)}))
            .await;
        for i in 0..25 {
            p.ingest(event(&format!("evt_{i:02}"), "order.paid", json!({})))
                .await;
        }
        p.route_all().await;
        p.deliver_all(Duration::from_millis(300)).await;
        assert!(
            p.deliveries()
                .await
                .iter()
                .all(|d| d.status == DeliveryStatus::Dead)
        );

        let (since, until) = (
            hookline_core::Timestamp::from_millis(0),
            SystemClock.now().saturating_add(Duration::from_secs(60)),
        );
        let stopped = tokio::time::timeout(
            Duration::from_millis(cut_ms),
            p.backend.recover(
                &TenantId::stored("shop_1"),
                &RuleId::stored(rule.as_str()),
                since,
                until,
                SystemClock.now(),
            ),
        )
        .await;

        // What is in the queue now, left there (reported failed) to look at.
        let mut queued = std::collections::HashSet::new();
        let url = p.backend.settings().deliveries_queue_url.clone();
        loop {
            let mut batch_ids = Vec::new();
            let n = poll_once(&p.backend, &url, 0, |batch| {
                let mut response = aws_lambda_events::event::sqs::SqsBatchResponse::default();
                for record in batch.records {
                    let m: Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
                    batch_ids.push(m["delivery_id"].as_str().unwrap().to_owned());
                    let mut failure = aws_lambda_events::event::sqs::BatchItemFailure::default();
                    failure.item_identifier = record.message_id.unwrap_or_default();
                    response.batch_item_failures.push(failure);
                }
                async move { response }
            })
            .await
            .unwrap();
            queued.extend(batch_ids);
            if n == 0 {
                break;
            }
        }
        let deliveries = p.deliveries().await;
        for d in &deliveries {
            assert!(
                d.status == DeliveryStatus::Dead || queued.contains(d.id.as_str()),
                "cut at {cut_ms} ms ({stopped:?}): {} is {} with no message",
                d.id,
                d.status
            );
        }

        // Recovering again finishes the job; everything is delivered.
        *r.status.lock().unwrap() = 200;
        p.backend
            .recover(
                &TenantId::stored("shop_1"),
                &RuleId::stored(rule.as_str()),
                since,
                until,
                SystemClock.now(),
            )
            .await
            .unwrap();
        p.deliver_all(Duration::from_millis(2500)).await;
        let deliveries = p.deliveries().await;
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Succeeded),
            "cut at {cut_ms} ms: {:?}",
            deliveries.iter().map(|d| d.status).collect::<Vec<_>>()
        );
    }
}

/// Captures what the handlers log, as CloudWatch would receive it.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// What this thread logs at `level` and above, as JSON lines, until the
    /// guard drops.
    fn capture(level: tracing::Level) -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(level)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_sdk_error_in_a_function_log_names_the_aws_error_code() {
    let p = pipeline(3, "1s").await;
    let mut gone = p.backend.settings().clone();
    gone.table = "no-such-table".into();
    let broken = p.backend.with_settings(gone);
    let (logs, _guard) = Logs::capture(tracing::Level::INFO);
    let message = reference("shop_1", "evt_1");
    let routed = route_batch(&broken, event_batch(&message)).await;
    assert_eq!(routed.batch_item_failures.len(), 1);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().expect("a log line")).unwrap();
    assert_eq!(
        line["fields"]["code"], "ResourceNotFoundException",
        "{line}"
    );
    assert!(
        line["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("GetItem") && e.contains("ResourceNotFoundException")),
        "{line}"
    );
}

/// What the functions log, at trace level, through ingest, routing, failed
/// and good deliveries and a key rotation, holds no webhook key or token.
#[tokio::test]
async fn function_logs_hold_no_secret() {
    let (logs, _guard) = Logs::capture(tracing::Level::TRACE);
    let p = pipeline(3, "1s").await;
    let r = receiver(&p.key).await;
    *r.status.lock().unwrap() = 500;
    p.rule(json!({"name": "n", "trigger": "order.paid", "url": format!("{}/hook", r.base)}))
        .await;
    p.ingest(event("evt_1", "order.paid", json!({}))).await;
    let (status, _) = p
        .call("POST", "/v1/events", "wrong-ingest-token-000", json!({}))
        .await;
    assert_eq!(status, 401);
    p.route_all().await;
    p.deliver_all(Duration::from_millis(300)).await;
    *r.status.lock().unwrap() = 200;
    p.deliver_all(Duration::from_millis(1500)).await;
    let (status, rotated) = p
        .call("POST", "/v1/webhook-key/rotate", API_KEY, json!({}))
        .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.lines().count() > 5,
        "the functions logged little: {text}"
    );
    let new_key = rotated["key"].as_str().unwrap();
    for secret in [&p.key.expose()[6..], &new_key[6..], TOKEN, API_KEY] {
        assert!(!text.contains(secret), "a function logged a secret");
    }
}

/// An events-queue message as Hookline wrote them before messages carried
/// their event: the router reads the event.
fn reference(tenant: &str, event: &str) -> String {
    json!({"tenant_id": tenant, "event_id": event}).to_string()
}

/// A router batch of one message, received for the first time.
fn event_batch(body: &str) -> SqsEvent {
    let mut record = SqsMessage::default();
    record.message_id = Some("m-1".into());
    record.body = Some(body.to_owned());
    record.attributes = HashMap::from([("ApproximateReceiveCount".to_owned(), "1".to_owned())]);
    let mut batch = SqsEvent::default();
    batch.records.push(record);
    batch
}

/// One router batch of the events named by (tenant, event id), their
/// messages numbered `m-0`, `m-1`, … in order.
fn router_batch<'a>(events: impl IntoIterator<Item = (&'a str, &'a str)>) -> SqsEvent {
    let mut batch = SqsEvent::default();
    for (n, (tenant, id)) in events.into_iter().enumerate() {
        let mut record = event_batch(&reference(tenant, id)).records.remove(0);
        record.message_id = Some(format!("m-{n}"));
        batch.records.push(record);
    }
    batch
}

#[tokio::test]
async fn a_router_that_fails_halfway_and_runs_again_makes_no_duplicates() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.rule(json!({"name": "lines", "trigger": "order.paid", "url": format!("{}/a", r.base), "per_order_line": true})).await;
    p.rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/b", r.base)}))
        .await;
    let lines: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("l{i}"), "product_id": "p"}))
        .collect();
    p.ingest(event("evt_big", "order.paid", json!({"lines": lines})))
        .await;
    let message = reference("shop_1", "evt_big");

    // A router whose deliveries queue is gone fails before queueing any.
    let mut broken = p.backend.settings().clone();
    broken.deliveries_queue_url = format!("{}-gone", broken.deliveries_queue_url);
    let env_less = p.backend.with_settings(broken);
    let failed = route_batch(&env_less, event_batch(&message)).await;
    assert_eq!(
        failed.batch_item_failures.len(),
        1,
        "the failure goes back to SQS"
    );
    assert!(p.deliveries().await.is_empty(), "routing records nothing");

    // SQS hands the message out again, twice (at-least-once): received
    // before, each routing queues its deliveries to be checked first.
    let mut again = event_batch(&message);
    again.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "2".into());
    for _ in 0..2 {
        let ok = route_batch(&p.backend, again.clone()).await;
        assert!(ok.batch_item_failures.is_empty());
    }
    p.deliver_all(Duration::from_millis(500)).await;
    let deliveries = p.deliveries().await;
    assert_eq!(deliveries.len(), 13, "12 lines + 1 order, recorded once");
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts.len() == 1)
    );
    let hits = r.hits.lock().unwrap().clone();
    let mut ids: Vec<_> = hits.iter().map(|h| h.webhook_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((hits.len(), ids.len()), (13, 13), "each delivery sent once");
}

/// A deliverer keeps the rules it read for a bounded time: a rule deleted
/// in another process (the admin function) receives nothing once that time
/// has passed, although this deliverer read it before the delete.
#[tokio::test]
async fn a_deleted_rule_stops_receiving_within_the_rule_cache_time() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    let rule = p
        .rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    let ttl = Duration::from_secs(2);
    let own = p
        .backend
        .with_settings(p.backend.settings().clone())
        .with_rule_cache(ttl);
    let mut settings = Settings::from_env().unwrap();
    settings.allow_private_targets = true;
    let deliverer = hookline_lambda::deliverer(own.clone(), &settings).unwrap();
    let queue = p.backend.settings().deliveries_queue_url.clone();

    p.ingest(event("evt_1", "order.paid", json!({}))).await;
    p.route_all().await;
    poll_once(&own, &queue, 1, |b| deliverer.handle(b))
        .await
        .unwrap();
    p.ingest(event("evt_2", "order.paid", json!({}))).await;
    p.route_all().await;
    let (status, _) = p
        .call("DELETE", &format!("/v1/rules/{rule}"), API_KEY, json!({}))
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(ttl).await;
    poll_once(&own, &queue, 1, |b| deliverer.handle(b))
        .await
        .unwrap();

    let sent: Vec<Value> = r
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.body["event_id"].clone())
        .collect();
    assert_eq!(
        sent,
        [json!("evt_1")],
        "nothing to the deleted rule after the cache time"
    );
    assert_eq!(
        p.redrive_dlq().await,
        1,
        "evt_2's delivery is dead: its rule is gone"
    );
}

/// Every message on the work queues, and on the dead-letter queue and back,
/// carries its tenant as `MessageGroupId`: SQS fair queues then keep one
/// tenant's backlog from delaying the others' messages.
#[tokio::test]
async fn queued_messages_carry_their_tenant_as_message_group() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    let rule = p
        .rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    p.ingest(event("evt_g", "order.paid", json!({}))).await;
    let groups = Mutex::new(Vec::new());
    let seen = |batch: &SqsEvent| {
        for record in &batch.records {
            let group = record.attributes.get("MessageGroupId").cloned();
            groups.lock().unwrap().push(group);
        }
    };
    let settings = p.backend.settings().clone();
    poll_once(&p.backend, &settings.events_queue_url, 0, |b| {
        seen(&b);
        route_batch(&p.backend, b)
    })
    .await
    .unwrap();
    // The rule is gone, so the first attempt is the last: into the DLQ.
    let (status, _) = p
        .call("DELETE", &format!("/v1/rules/{rule}"), API_KEY, json!({}))
        .await;
    assert_eq!(status, 204);
    poll_once(&p.backend, &settings.deliveries_queue_url, 0, |b| {
        seen(&b);
        p.deliverer.handle(b)
    })
    .await
    .unwrap();
    assert_eq!(p.redrive_dlq().await, 1);
    poll_once(&p.backend, &settings.deliveries_queue_url, 0, |b| {
        seen(&b);
        p.deliverer.handle(b)
    })
    .await
    .unwrap();
    assert_eq!(
        *groups.lock().unwrap(),
        vec![Some("shop_1".to_owned()); 3],
        "the event, the delivery, the delivery redriven"
    );
}

/// The router routes an SQS batch together. Nine events, one of them named
/// twice, and an unknown one, in messages that name their events (as an
/// earlier Hookline queued them): one read of the events, one query of the
/// rules and one send, no write. Received again once they were delivered,
/// the batch reads which deliveries are recorded and queues none.
#[tokio::test]
async fn a_batch_of_events_is_routed_together() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    let ids: Vec<String> = (0..9).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        p.ingest(event(id, "order.paid", json!({}))).await;
    }
    // The messages ingest queued are dropped: this test hands the router its own batch.
    p.drop_queued_events().await;
    let mut batch = router_batch(
        ids.iter()
            .map(String::as_str)
            .chain([ids[0].as_str(), "evt_unknown"])
            .map(|id| ("shop_1", id)),
    );

    assert_eq!(
        routed_counting_calls(&p, batch.clone()).await,
        (2, 0, 1),
        "reads: events, rules; no write; one send of the nine deliveries"
    );
    p.deliver_all(Duration::from_millis(500)).await;
    let mut got: Vec<String> = r
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.body["event_id"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, ids, "each event delivered once");

    for record in &mut batch.records {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
    }
    assert_eq!(
        routed_counting_calls(&p, batch).await,
        (3, 0, 0),
        "received again: events, rules, the deliveries recorded; no write, no send"
    );
}

/// Events as ingest queues them carry themselves: the router reads only the
/// rules and writes nothing, and each delivery message carries what its
/// attempt sends, so the deliverer reads only the rule and the signing keys
/// and writes the delivery once. A repeat at ingest is queued again, and
/// its routing finds the deliveries recorded and queues none.
#[tokio::test]
async fn carried_events_are_routed_and_delivered_without_reading_them() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    let batch: Vec<Value> = (0..9)
        .map(|i| event(&format!("evt_{i}"), "order.paid", json!({})))
        .collect();
    let (status, _) = p
        .call("POST", "/v1/events/batch", TOKEN, json!({"events": batch}))
        .await;
    assert_eq!(status, 200);
    let settings = p.backend.settings().clone();
    let calls = |p: &Pipeline| p.backend.calls().snapshot();

    let before = calls(&p);
    let routed = poll_once(&p.backend, &settings.events_queue_url, 1, |b| {
        route_batch(&p.backend, b)
    })
    .await
    .unwrap();
    let after = calls(&p);
    assert_eq!(routed, 9);
    assert_eq!(
        (
            after.dynamodb_reads - before.dynamodb_reads,
            after.dynamodb_writes - before.dynamodb_writes
        ),
        (1, 0),
        "the rules read; nothing written"
    );

    let before = calls(&p);
    let (mut delivered, mut batches) = (0, 0);
    while delivered < 9 {
        let n = poll_once(&p.backend, &settings.deliveries_queue_url, 1, |b| {
            p.deliverer.handle(b)
        })
        .await
        .unwrap();
        delivered += n;
        batches += u64::from(n > 0);
    }
    let after = calls(&p);
    assert_eq!(r.hits.lock().unwrap().len(), 9);
    assert_eq!(
        (
            after.dynamodb_reads - before.dynamodb_reads,
            after.dynamodb_writes - before.dynamodb_writes
        ),
        (2 * batches, 9),
        "per batch, its rules and the tenant's keys read (no delivery, no \
         event); each delivery written once, at its attempt"
    );

    let (status, _) = p.call("POST", "/v1/events", TOKEN, batch[0].clone()).await;
    assert_eq!(status, 200, "a repeat");
    let before = calls(&p);
    poll_once(&p.backend, &settings.events_queue_url, 1, |b| {
        route_batch(&p.backend, b)
    })
    .await
    .unwrap();
    let after = calls(&p);
    assert_eq!(
        (
            after.dynamodb_reads - before.dynamodb_reads,
            after.dynamodb_writes - before.dynamodb_writes,
            after.sqs - before.sqs
        ),
        (2, 0, 0),
        "the repeat reads the rules and its delivery, writes and sends nothing"
    );
}

/// A delivery an earlier Hookline routed: its message names delivery, event
/// and rule (no event carried, no stamp in the id), and its item is where
/// that version wrote it at routing. It is delivered, the event read from
/// the table, and its attempt recorded on that item.
#[tokio::test]
async fn a_delivery_the_earlier_version_routed_is_delivered() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use hookline_core::id::{DeliveryId, EventId};

    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    let rule = p
        .rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    p.ingest(event("evt_old", "order.paid", json!({"data": {"n": 7}})))
        .await;
    p.drop_queued_events().await;
    let tenant = TenantId::stored("shop_1");
    let id = DeliveryId::of(
        &tenant,
        &EventId::stored("evt_old"),
        &RuleId::stored(rule.as_str()),
        None,
    );
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(&p.env).await);
    client
        .put_item()
        .table_name(&p.env["HOOKLINE_TABLE"])
        .item("pk", s("T#shop_1"))
        .item("sk", s(&format!("D#{id}")))
        .item("id", s(&id))
        .item("event_id", s("evt_old"))
        .item("rule_id", s(&rule))
        .item("status", s("pending"))
        .item("created_at", n(1_795_953_600_000))
        .item("attempt_count", n(0))
        .item("attempts", AttributeValue::L(Vec::new()))
        .item("ttl", n(1_798_545_600))
        .send()
        .await
        .unwrap();

    let old = json!({"tenant_id": "shop_1", "delivery_id": id.as_str(),
        "event_id": "evt_old", "rule_id": rule.as_str()});
    let mut batch = event_batch(&old.to_string());
    batch.records[0].receipt_handle = Some("receipt-1".into());
    let answer = p.deliverer.handle(batch).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].webhook_id, id.as_str());
    assert_eq!(hits[0].body["data"], json!({"n": 7}));
    let recorded = p.backend.delivery(&tenant, &id).await.unwrap().unwrap();
    assert_eq!(recorded.status, DeliveryStatus::Succeeded);
    assert_eq!(recorded.attempts.len(), 1);
}

/// Routes `batch`, which must fully succeed; answers the DynamoDB reads,
/// DynamoDB writes and SQS calls it took.
async fn routed_counting_calls(p: &Pipeline, batch: SqsEvent) -> (u64, u64, u64) {
    let before = p.backend.calls().snapshot();
    let answer = route_batch(&p.backend, batch).await;
    let after = p.backend.calls().snapshot();
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    (
        after.dynamodb_reads - before.dynamodb_reads,
        after.dynamodb_writes - before.dynamodb_writes,
        after.sqs - before.sqs,
    )
}

/// One event over its fan-out budget fails alone in a router batch (SQS
/// retries it, then dead-letters it); the other tenant's event beside it is
/// routed and delivered.
#[tokio::test]
async fn a_heavy_event_fails_alone_in_its_router_batch() {
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.backend
        .create_tenant(NewTenant {
            id: TenantId::stored("shop_2"),
            api_key_hash: hash_api_key("hk_other"),
            webhook_key: p.key.clone(),
            created_at: SystemClock.now(),
        })
        .await
        .unwrap();
    // Eleven per-line rules on a 1,000-line order: 11,000 deliveries, over
    // the budget of 10,000.
    for i in 0..11 {
        p.rule(
            json!({"name": format!("lines {i}"), "trigger": "order.paid",
            "url": format!("{}/heavy", r.base), "per_order_line": true}),
        )
        .await;
    }
    let (status, _) = p
        .call(
            "POST",
            "/v1/rules",
            "hk_other",
            json!({"name": "b", "trigger": "order.paid", "url": format!("{}/light", r.base)}),
        )
        .await;
    assert_eq!(status, 201);
    let lines: Vec<Value> = (0..1000)
        .map(|i| json!({"id": format!("l{i}"), "product_id": "p"}))
        .collect();
    p.ingest(event("evt_heavy", "order.paid", json!({"lines": lines})))
        .await;
    let mut light = event("evt_light", "order.paid", json!({}));
    light["tenant_id"] = json!("shop_2");
    p.ingest(light).await;
    // The messages ingest queued are dropped: this test hands the router its own batch.
    p.drop_queued_events().await;
    let batch = router_batch([("shop_1", "evt_heavy"), ("shop_2", "evt_light")]);
    let answer = route_batch(&p.backend, batch).await;
    let failed: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-0"], "only the heavy event's message fails");
    p.deliver_all(Duration::from_millis(500)).await;
    let hits = r.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].body["event_id"], "evt_light");
    assert!(
        p.deliveries().await.is_empty(),
        "nothing of the heavy event was recorded"
    );
}

/// A path id longer than any id Hookline keeps is answered 404 before the
/// store is asked (DynamoDB refuses keys over 1,024 bytes, which was a 503).
#[tokio::test]
async fn an_overlong_path_id_is_not_found() {
    let p = pipeline(8, "1s").await;
    let long = "x".repeat(2000);
    for path in [
        format!("/v1/rules/{long}"),
        format!("/v1/deliveries/{long}"),
    ] {
        let (status, body) = p.call("GET", &path, API_KEY, Value::Null).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
}

/// What the deliverer tells of its batches, through the pipeline: its EMF
/// lines count each attempt by result and each ended delivery by outcome,
/// with the wait for a first attempt; and a rule's health, as another
/// process (the admin function) reads it from the table, shows the
/// receiver's rate and last error.
#[tokio::test]
async fn the_deliverer_reports_metrics_and_rule_health_through_the_pipeline() {
    use hookline_core::traffic::Traffic;

    let mut p = pipeline(1, "").await;
    // Counted traffic is written after every batch here.
    p.deliverer.backend = p
        .deliverer
        .backend
        .clone()
        .with_traffic_every(Duration::ZERO);
    let r = receiver(&p.key).await;
    let rule = p
        .rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    let lines = Mutex::new(Vec::new());
    let url = p.backend.settings().deliveries_queue_url.clone();
    let deliver = || async {
        p.route_all().await;
        while poll_once(&p.backend, &url, 0, |b| async {
            let (answer, metrics) = p.deliverer.handle_counted(b).await;
            lines
                .lock()
                .unwrap()
                .extend(metrics.lines("hookline/test", SystemClock.now()));
            answer
        })
        .await
        .unwrap()
            > 0
        {}
    };
    for id in ["evt_1", "evt_2"] {
        p.ingest(event(id, "order.paid", json!({}))).await;
    }
    deliver().await;
    *r.status.lock().unwrap() = 500;
    p.ingest(event("evt_3", "order.paid", json!({}))).await;
    deliver().await;
    assert_eq!(r.hits.lock().unwrap().len(), 3);

    // Sums of what the lines declare, by metric and dimension value.
    let mut sums: HashMap<String, f64> = HashMap::new();
    for line in lines.lock().unwrap().iter() {
        let doc: Value = serde_json::from_str(line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "hookline/test");
        let dimension = directive["Dimensions"][0][0].as_str();
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            let key = match dimension {
                Some(d) => format!("{name}{{{}}}", doc[d].as_str().unwrap()),
                None => name.to_owned(),
            };
            let value = match &doc[name] {
                Value::Array(values) => values.len() as f64,
                v => v.as_f64().unwrap(),
            };
            *sums.entry(key).or_default() += value;
        }
    }
    assert_eq!(sums["hookline_attempts_total{success}"], 2.0, "{sums:?}");
    assert_eq!(sums["hookline_attempts_total{failure}"], 1.0);
    assert_eq!(sums["hookline_deliveries_ended_total{succeeded}"], 2.0);
    assert_eq!(sums["hookline_deliveries_ended_total{dead}"], 1.0);
    assert_eq!(
        sums["hookline_attempt_duration_seconds"], 3.0,
        "one value an attempt"
    );
    assert!(
        sums.contains_key("hookline_oldest_due_age_seconds"),
        "moto's SentTimestamp gives first receives a wait: {sums:?}"
    );

    let admin = support::backend(&p.env).await;
    let health = admin
        .rule_health(
            &TenantId::stored("shop_1"),
            &RuleId::stored(&rule),
            SystemClock.now(),
        )
        .await
        .unwrap()
        .expect("the rule exists");
    let traffic = Traffic::of(&health.buckets, SystemClock.now());
    assert_eq!((traffic.day.attempts, traffic.day.failures), (3, 1));
    assert_eq!(traffic.last_error.as_deref(), Some("receiver answered 500"));
    assert_eq!(traffic.consecutive_failures, 1);
    assert_eq!(health.concurrency, None);
}

/// Each event is one trace through the queues: its ingest (the ingest
/// function), its fan-out (the router, from the events queue's message
/// attribute), its delivery's attempt (the deliverer, from the deliveries
/// queue's) and the attempt's settle, exported over OTLP/HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_one_trace_through_the_queues() {
    use hookline_telemetry::{LogFormat, Traces};
    use hookline_test_support::otlp::{OtlpReceiver, one_trace_per_event};

    let otlp = OtlpReceiver::start().await;
    let traces_url = format!("{}/v1/traces", otlp.url);
    let telemetry = hookline_telemetry::init_with(
        "pipeline",
        LogFormat::Json,
        tracing::Level::WARN,
        Traces::To(&traces_url),
    )
    .unwrap();
    let p = pipeline(8, "1s").await;
    let r = receiver(&p.key).await;
    p.rule(json!({"name": "all", "trigger": "order.paid", "url": format!("{}/a", r.base)}))
        .await;
    for id in ["evt_1", "evt_2"] {
        p.ingest(event(id, "order.paid", json!({}))).await;
    }
    p.route_all().await;
    p.deliver_all(Duration::from_millis(300)).await;
    assert_eq!(r.hits.lock().unwrap().len(), 2);
    // As each function does after its invocation.
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .unwrap();
    let spans = otlp
        .wait_for(|spans| spans.iter().filter(|s| s.name == "settle").count() >= 2)
        .await;
    one_trace_per_event(
        &spans,
        &["evt_1", "evt_2"],
        &["ingest", "fan_out", "attempt", "settle"],
    );
}
