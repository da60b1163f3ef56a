//! The delivery log (moto's server): spread over its partition keys, read
//! newest first across them, and the layouts an earlier Hookline wrote still
//! listed (gsi2) or moved over by `hookline migrate` (gsi1).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_aws::{AwsBackend, DELIVERY_LOG_SHARDS, PARTITION_KEY};
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
/// making 2,000 deliveries a second writes each delivery's item once (at its
/// first attempt), 2,000 units a second on its log keys, so no key may take
/// more than half of its deliveries; spread over eight, each takes an
/// eighth, and the check allows a quarter more than that.
#[tokio::test]
async fn a_tenants_deliveries_spread_over_the_log_keys_and_list_newest_first() {
    // Its own moto: 2,000 deliveries would slow every other test's.
    let (env, b) = tenant_with_rules(support::create_private_resources(3, 30), 100).await;
    let events: Vec<Event> = (0..20).map(|i| paid(&format!("e{i:03}"))).collect();
    for (i, chunk) in events.chunks(10).enumerate() {
        // Two moments, so the listing's order is by time before ids.
        let at = Timestamp::from_millis(1_795_953_600_000 + i as i64 * 1000);
        // An event at a time: moto's SQS slows with every message it holds.
        for event in chunk {
            for answer in b.accept_events(std::slice::from_ref(event), at).await {
                answer.unwrap();
            }
            support::drain_events(&b).await;
            support::settle_deliveries(&b).await;
        }
    }

    let mut per_key: HashMap<String, usize> = HashMap::new();
    for item in scan(&env).await {
        if let Some(AttributeValue::S(key)) = item.get(PARTITION_KEY)
            && key.starts_with("DL#")
        {
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

/// Deliveries an earlier Hookline wrote are keyed by tenant and id, without
/// a stamp in the id. Those it listed on gsi1 (`DL#{tenant}`) are not listed
/// until the command moves them to gsi2, where the listing reads them beside
/// the table's own, in one order; a second run moves nothing.
#[tokio::test]
async fn an_earlier_layouts_deliveries_are_listed_beside_new_ones() {
    let (env, b) = tenant_with_rules(support::create_resources(3, 30), 1).await;
    for (id, at) in [("e1", 1_795_953_600_000), ("e2", 1_795_953_602_000)] {
        b.accept_event(&paid(id), Timestamp::from_millis(at))
            .await
            .unwrap();
    }
    support::drain_events(&b).await;
    support::settle_deliveries(&b).await;
    let new = list_all(&b, 10).await;
    assert_eq!(new.len(), 2);

    // The older delivery as the version before stamps wrote it.
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config(&env).await);
    let table = &env["HOOKLINE_TABLE"];
    let mut item = scan(&env)
        .await
        .into_iter()
        .find(|i| i.get("id") == Some(&AttributeValue::S(new[1].clone())))
        .unwrap();
    let old_id = format!("msg_{}", &new[1][4 + 12..]);
    client
        .delete_item()
        .table_name(table)
        .key("pk", item["pk"].clone())
        .key("sk", item["sk"].clone())
        .send()
        .await
        .unwrap();
    let s = |v: String| AttributeValue::S(v);
    item.insert("pk".into(), s(format!("T#{TENANT}")));
    item.insert("sk".into(), s(format!("D#{old_id}")));
    item.insert("id".into(), s(old_id.clone()));
    item.insert("gsi1pk".into(), s(format!("DL#{TENANT}")));
    item.insert("gsi1sk".into(), s(format!("1795953600000#{old_id}")));
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    assert_eq!(
        list_all(&b, 10).await,
        [new[0].clone()],
        "not listed on gsi2 yet"
    );

    assert_eq!(hookline_aws::migrate(&b).await.unwrap().deliveries, 1);
    assert_eq!(list_all(&b, 1).await, [new[0].clone(), old_id.clone()]);
    assert_eq!(hookline_aws::migrate(&b).await.unwrap().deliveries, 0);
    let tenant = TenantId::stored(TENANT);
    let found = b
        .delivery(
            &tenant,
            &hookline_core::id::DeliveryId::stored(old_id.as_str()),
        )
        .await
        .unwrap()
        .expect("found by its id");
    assert_eq!(found.event_id, "e1");
    let moved = scan(&env)
        .await
        .into_iter()
        .find(|i| i.get("sk") == Some(&AttributeValue::S(format!("D#{old_id}"))))
        .unwrap();
    assert!(!moved.contains_key("gsi1pk") && !moved.contains_key("gsi1sk"));
}
