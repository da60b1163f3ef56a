//! The delivery log on gsi2 (moto's server): spread over its keys, read
//! newest first across them, and the layout an earlier Hookline wrote moved
//! over by `hookline migrate`.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_aws::{AwsBackend, DELIVERY_LOG_SHARDS, GSI2_PARTITION_KEY};
use hookline_core::id::{RuleId, TenantId};
use hookline_core::ports::{DeliveryFilter, NewTenant, Store};
use hookline_core::{Event, Rule, RuleDraft, Scope, Timestamp, Trigger, WebhookKey};
use hookline_test_support as support;

const TENANT: &str = "a";

async fn tenant_with_rules(
    env: HashMap<String, String>,
    rules: usize,
) -> (HashMap<String, String>, AwsBackend) {
    let b = support::backend(&env).await;
    let now = Timestamp::from_millis(1_795_953_600_000);
    b.create_tenant(NewTenant {
        id: TenantId::stored(TENANT),
        api_key_hash: "h".into(),
        webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
        created_at: now,
    })
    .await
    .unwrap();
    for i in 0..rules {
        let draft = RuleDraft::new(
            "r",
            Trigger::OrderPaid,
            "https://example.com/r",
            Scope::Universal,
        );
        let rule = Rule::new(
            RuleId::stored(format!("r{i}")),
            TenantId::stored(TENANT),
            draft,
            now,
        );
        b.insert_rule(&rule, 1000).await.unwrap();
    }
    (env, b)
}

fn paid(id: &str) -> Event {
    let body = serde_json::json!({
        "id": id, "tenant_id": TENANT, "type": "order.paid",
        "occurred_at": "2026-11-29T12:00:00Z", "data": {}
    });
    Event::from_json(body.to_string().as_bytes()).unwrap()
}

async fn scan(env: &HashMap<String, String>) -> Vec<HashMap<String, AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(env).await);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(&env["HOOKLINE_TABLE"])
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

async fn list_all(b: &AwsBackend, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let filter = DeliveryFilter {
            limit,
            cursor,
            ..Default::default()
        };
        let page = b
            .deliveries(&TenantId::stored(TENANT), &filter)
            .await
            .unwrap();
        ids.extend(page.data.into_iter().map(|d| d.id.into_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            return ids;
        }
    }
}

/// One partition key takes about 1,000 write units a second. A tenant
/// making 2,000 deliveries a second writes 2,000 log entries a second (each
/// once: the index holds keys only), so no key may take more than half of
/// them; spread over eight, each takes an eighth, and the check allows a
/// quarter more than that.
#[tokio::test]
async fn a_tenants_deliveries_spread_over_the_log_keys_and_list_newest_first() {
    // Its own moto: 2,000 deliveries would slow every other test's.
    let (env, b) = tenant_with_rules(support::create_private_resources(3, 30), 100).await;
    let events: Vec<Event> = (0..20).map(|i| paid(&format!("e{i:03}"))).collect();
    for (i, chunk) in events.chunks(10).enumerate() {
        // Two moments, so the listing's order is by time before ids.
        let at = Timestamp::from_millis(1_795_953_600_000 + i as i64 * 1000);
        for answer in b.accept_events(chunk, at).await {
            answer.unwrap();
        }
    }
    support::drain_events(&b).await;

    let mut per_key: HashMap<String, usize> = HashMap::new();
    for item in scan(&env).await {
        if let Some(AttributeValue::S(key)) = item.get(GSI2_PARTITION_KEY) {
            *per_key.entry(key.clone()).or_default() += 1;
        }
    }
    assert_eq!(per_key.values().sum::<usize>(), 2000);
    assert_eq!(per_key.len(), DELIVERY_LOG_SHARDS as usize);
    let share = 2000 / DELIVERY_LOG_SHARDS as usize;
    for (key, n) in &per_key {
        assert!(
            *n <= share + share / 4,
            "{key} took {n} of 2,000 entries: {per_key:?}"
        );
    }

    // Paged across the keys: every delivery once, the later moment first.
    let listed = list_all(&b, 500).await;
    assert_eq!(listed.len(), 2000);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 2000);
    let first_page = b
        .deliveries(
            &TenantId::stored(TENANT),
            &DeliveryFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        first_page
            .data
            .iter()
            .all(|d| d.created_at == Timestamp::from_millis(1_795_953_601_000)),
        "the newest thousand are the later moment's"
    );

    // A filter that matches nothing reads at most its budget a call: a
    // short (here empty) page with a cursor, then the rest of the log.
    let none = |cursor| DeliveryFilter {
        rule_id: Some(RuleId::stored("no_such_rule")),
        limit: 250,
        cursor,
        ..Default::default()
    };
    let tenant = TenantId::stored(TENANT);
    let first = b.deliveries(&tenant, &none(None)).await.unwrap();
    assert!(first.data.is_empty());
    let cursor = first.next_cursor.expect("the budget ends the first call");
    let second = b.deliveries(&tenant, &none(Some(cursor))).await.unwrap();
    assert!(second.data.is_empty());
    assert_eq!(second.next_cursor, None, "the second call reaches the end");
}

/// Deliveries an earlier Hookline listed on gsi1 (`DL#{tenant}`) are not
/// listed until the command moves them; then they are, and a second run
/// moves nothing.
#[tokio::test]
async fn an_earlier_layouts_deliveries_move_with_the_command() {
    let (env, b) = tenant_with_rules(support::create_resources(3, 30), 1).await;
    b.accept_event(&paid("e1"), Timestamp::from_millis(1_795_953_600_000))
        .await
        .unwrap();
    support::drain_events(&b).await;
    let before = list_all(&b, 10).await;
    assert_eq!(before.len(), 1);

    // Rewrite the delivery as the previous version wrote it.
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(&env).await);
    client
        .update_item()
        .table_name(&env["HOOKLINE_TABLE"])
        .key("pk", AttributeValue::S(format!("T#{TENANT}")))
        .key("sk", AttributeValue::S(format!("D#{}", before[0])))
        .update_expression("SET gsi1pk = :pk, gsi1sk = :sk REMOVE gsi2pk, gsi2sk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("DL#{TENANT}")))
        .expression_attribute_values(
            ":sk",
            AttributeValue::S(format!("1795953600000#{}", before[0])),
        )
        .send()
        .await
        .unwrap();
    assert!(list_all(&b, 10).await.is_empty(), "not listed on gsi2 yet");

    assert_eq!(hookline_aws::migrate(&b).await.unwrap().deliveries, 1);
    assert_eq!(list_all(&b, 10).await, before);
    assert_eq!(hookline_aws::migrate(&b).await.unwrap().deliveries, 0);
    let moved = scan(&env)
        .await
        .into_iter()
        .find(|i| i.get("sk") == Some(&AttributeValue::S(format!("D#{}", before[0]))))
        .unwrap();
    assert!(!moved.contains_key("gsi1pk") && !moved.contains_key("gsi1sk"));
}
