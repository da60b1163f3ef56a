//! The functions' handlers on the sample events in `infra/events/`, exactly
//! as stored, against DynamoDB and SQS on moto and a receiver on 127.0.0.1.

use hookline_core::id::{RuleId, TenantId};
use hookline_test_support as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use axum::body::Body;
use hookline_api::{ApiConfig, ApiState};
use hookline_core::api_key::hash_api_key;
use hookline_core::ingest_token::IngestTokens;
use hookline_core::ports::{Clock, DeliveryFilter, NewTenant, Store};
use hookline_core::target::TargetPolicy;
use hookline_core::{Rule, RuleDraft, Scope, Timestamp, Trigger, WebhookKey};
use hookline_lambda::{Settings, SystemClock};
use lambda_http::request::LambdaRequest;
use tower::ServiceExt;

fn sample(name: &str) -> String {
    let path = format!("{}/../../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn call(app: &axum::Router, file: &str) -> (u16, serde_json::Value) {
    let event: LambdaRequest = serde_json::from_str(&sample(file)).expect("an API Gateway event");
    let request: http::Request<lambda_http::Body> = event.into();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn each_function_handles_its_sample_event() {
    let env = support::create_resources(8, 30);
    let backend = support::backend(&env).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let receiver = axum::Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { axum::http::StatusCode::NO_CONTENT }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    // The tenant, key and rule the samples name.
    let now = SystemClock.now();
    backend
        .create_tenant(NewTenant {
            id: TenantId::stored("shop_1"),
            api_key_hash: hash_api_key("hk_example"),
            webhook_key: WebhookKey::from_bytes(&[5; 32]).unwrap(),
            created_at: now,
        })
        .await
        .unwrap();
    let draft = RuleDraft::new("paid orders", Trigger::OrderPaid, &url, Scope::Universal);
    backend
        .insert_rule(
            &Rule::new(
                RuleId::stored("rul_example"),
                TenantId::stored("shop_1"),
                draft,
                now,
            ),
            100,
        )
        .await
        .unwrap();

    // hookline-ingest and hookline-admin: the one router, through lambda_http's request type.
    let config = ApiConfig {
        ingest_tokens: IngestTokens::parse("example-ingest-token").unwrap(),
        policy: TargetPolicy {
            allow_private: true,
        },
        key_grace: Duration::from_secs(60),
        max_rules: 100,
    };
    // Ingest at the moment the samples name, which stamps the delivery's id.
    struct SampleMoment;
    impl Clock for SampleMoment {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(1_795_953_600_500)
        }
    }
    let app = hookline_api::router(ApiState::new(
        Arc::new(backend.clone()),
        Arc::new(SampleMoment),
        config,
    ));
    let (status, body) = call(&app, "apigw-ingest-event.json").await;
    assert_eq!(
        (status, body),
        (
            202,
            serde_json::json!({"id": "evt_123", "duplicate": false})
        )
    );
    let (status, body) = call(&app, "apigw-admin-list-rules.json").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["id"], "rul_example");

    // hookline-router on its sample batch.
    let batch: SqsEvent = serde_json::from_str(&sample("sqs-router-batch.json")).unwrap();
    let routed = hookline_aws::route_batch(&backend, batch).await;
    assert!(routed.batch_item_failures.is_empty());
    let mut queued = Vec::new();
    let deliveries_queue = backend.settings().deliveries_queue_url.clone();
    hookline_aws::poll_once(&backend, &deliveries_queue, 1, |batch| {
        for record in batch.records {
            let body: serde_json::Value = serde_json::from_str(&record.body.unwrap()).unwrap();
            queued.push(body["delivery_id"].as_str().unwrap().to_owned());
        }
        async { SqsBatchResponse::default() }
    })
    .await
    .unwrap();
    assert_eq!(
        queued,
        ["msg_01a2272d27f40631819bf16a2aeaf6c6a3d1929f315c"],
        "the router queued the delivery the deliver sample names"
    );

    // hookline-deliver on its sample batch.
    let mut settings = Settings::from_env().unwrap();
    settings.allow_private_targets = true;
    let deliverer = hookline_lambda::deliverer(backend.clone(), &settings).unwrap();
    let batch: SqsEvent = serde_json::from_str(&sample("sqs-deliver-batch.json")).unwrap();
    let delivered = deliverer.handle(batch).await;
    assert!(delivered.batch_item_failures.is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let deliveries = backend
        .deliveries(
            &TenantId::stored("shop_1"),
            &DeliveryFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .data;
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.id, queued[0].as_str());
    assert_eq!(d.status, hookline_core::DeliveryStatus::Succeeded);
    assert_eq!(d.attempts[0].status_code, Some(204));
}
