//! The backend conformance suite on DynamoDB and SQS (moto's server).

use hookline_core::id::{RuleId, TenantId};
use hookline_test_support as support;

use std::time::Duration;

use async_trait::async_trait;
use hookline_aws::AwsBackend;
use hookline_conformance::Harness;
use hookline_core::ports::{DeliveryQueue, Store};

const VISIBILITY: Duration = Duration::from_secs(4);

struct Aws(AwsBackend);

async fn harness() -> Aws {
    // Three attempts: the suite's lease check makes three receives, then
    // expects a dead delivery to be gone from the queue.
    let env = support::create_resources(3, VISIBILITY.as_secs() as u32);
    Aws(support::backend(&env)
        .await
        .with_breaker(hookline_conformance::BREAKER)
        // Counted traffic is written at once, so the suite reads it back.
        .with_traffic_every(Duration::ZERO))
}

#[async_trait]
impl Harness for Aws {
    fn store(&self) -> &dyn Store {
        &self.0
    }
    fn queue(&self) -> &dyn DeliveryQueue {
        &self.0
    }
    async fn route(&self) {
        support::drain_events(&self.0).await;
    }
    fn visibility(&self) -> Duration {
        VISIBILITY
    }
}

hookline_conformance::conformance_tests!(harness().await);

/// A product rule filed on the index as every rule was before rules were
/// filed by scope (`R#{rule}`) is still found for its events, through the
/// universal prefix, and only for those of its product; `hookline migrate`
/// files it under its scope, once.
#[tokio::test]
async fn a_rule_filed_before_scopes_is_found_and_migrated() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use hookline_core::ports::{DeliveryFilter, NewTenant};
    use hookline_core::{Event, Rule, RuleDraft, Scope, Timestamp, Trigger, WebhookKey};

    let env = support::create_resources(3, VISIBILITY.as_secs() as u32);
    let b = support::backend(&env).await;
    let now = Timestamp::from_millis(1_795_953_600_000);
    b.create_tenant(NewTenant {
        id: TenantId::stored("a"),
        api_key_hash: "h".into(),
        webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
        created_at: now,
    })
    .await
    .unwrap();
    let draft = RuleDraft::new(
        "r",
        Trigger::OrderPaid,
        "https://example.com/r",
        Scope::Product { id: "p1".into() },
    );
    b.insert_rule(
        &Rule::new(RuleId::stored("r"), TenantId::stored("a"), draft, now),
        10,
    )
    .await
    .unwrap();
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(&env).await);
    let table = &env["HOOKLINE_TABLE"];
    let key = |c: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder| {
        c.table_name(table)
            .key("pk", AttributeValue::S("T#a".into()))
            .key("sk", AttributeValue::S("R#r".into()))
    };
    key(client.update_item())
        .update_expression("SET gsi1sk = :old")
        .expression_attribute_values(":old", AttributeValue::S("R#r".into()))
        .send()
        .await
        .unwrap();

    let filed = || async {
        client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S("T#a".into()))
            .key("sk", AttributeValue::S("R#r".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap()["gsi1sk"]
            .clone()
    };
    for (id, product) in [("e1", "p1"), ("e2", "p2"), ("e3", "p1")] {
        if id == "e3" {
            let moved = hookline_aws::migrate(&b).await.unwrap();
            assert_eq!(moved.rules, 1);
            assert_eq!(filed().await, AttributeValue::S("S#product:p1#R#r".into()));
            assert_eq!(hookline_aws::migrate(&b).await.unwrap().rules, 0, "once");
        }
        let body = serde_json::json!({
            "id": id, "tenant_id": "a", "type": "order.paid", "occurred_at": "2026-11-29T12:00:00Z",
            "lines": [{"id": "l1", "product_id": product}], "data": {}
        });
        let event = Event::from_json(body.to_string().as_bytes()).unwrap();
        b.accept_event(&event, now).await.unwrap();
        support::drain_events(&b).await;
        support::settle_deliveries(&b).await;
    }
    let filter = DeliveryFilter {
        limit: 10,
        ..Default::default()
    };
    let mut fired: Vec<String> = b
        .deliveries(&TenantId::stored("a"), &filter)
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|d| format!("{}/{}", d.event_id, d.rule_id))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        ["e1/r", "e3/r"],
        "its product's events, before and after"
    );
}

/// A delivery routed twice (a repeat at ingest while its first message
/// waits) may run as two chains of attempts. Once one has succeeded, a
/// failure of the other leaves it succeeded and ends that chain.
#[tokio::test]
async fn a_second_chain_does_not_undo_a_success() {
    use hookline_core::ports::{NewTenant, Outcome, Settlement};
    use hookline_core::{
        Attempt, DeliveryStatus, Event, Rule, RuleDraft, Scope, Timestamp, Trigger, WebhookKey,
    };

    let env = support::create_resources(3, VISIBILITY.as_secs() as u32);
    let b = support::backend(&env).await;
    let now = Timestamp::from_millis(1_795_953_600_000);
    b.create_tenant(NewTenant {
        id: TenantId::stored("a"),
        api_key_hash: "h".into(),
        webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
        created_at: now,
    })
    .await
    .unwrap();
    let draft = RuleDraft::new(
        "r",
        Trigger::OrderPaid,
        "https://example.com/r",
        Scope::Universal,
    );
    b.insert_rule(
        &Rule::new(RuleId::stored("r"), TenantId::stored("a"), draft, now),
        10,
    )
    .await
    .unwrap();
    let body = serde_json::json!({"id": "e1", "tenant_id": "a", "type": "order.paid",
        "occurred_at": "2026-11-29T12:00:00Z", "data": {}});
    let event = Event::from_json(body.to_string().as_bytes()).unwrap();
    for _ in 0..2 {
        b.accept_event(&event, now).await.unwrap();
        support::drain_events(&b).await;
    }
    let first = b.receive(1, now).await.unwrap().remove(0);
    let second = b.receive(1, now).await.unwrap().remove(0);
    assert_eq!(
        first.delivery_id, second.delivery_id,
        "one delivery, two messages"
    );
    let attempt = |status| Attempt {
        at: now,
        status_code: Some(status),
        duration_ms: 1,
        error: None,
        response_body: None,
    };
    b.settle(vec![Settlement::new(
        &first,
        attempt(204),
        Outcome::Succeeded,
    )])
    .await
    .unwrap();
    let retry = Outcome::RetryAt(Timestamp::from_millis(now.as_millis() + 1000));
    b.settle(vec![Settlement::new(&second, attempt(500), retry)])
        .await
        .unwrap();
    let d = b
        .delivery(&TenantId::stored("a"), &first.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Succeeded, 1));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        b.receive(10, now).await.unwrap().is_empty(),
        "the second chain ended"
    );
}
