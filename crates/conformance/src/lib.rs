//! The store and queue conformance suite. Each check takes a fresh backend
//! and panics on the first behaviour that differs from the port's contract;
//! every backend's tests call every check, so backends cannot drift apart.

use std::time::Duration;

use hookline_core::delivery::{Attempt, Outcome};
use hookline_core::ports::{
    Acceptance, DeliveryFilter, DeliveryQueue, NewTenant, Store, StoreError,
};
use hookline_core::{
    DeliveryStatus, Event, Rule, RuleDraft, Scope, Settlement, Timestamp, Trigger, WebhookKey,
};

/// A backend: the store and the deliveries queue.
pub trait Backend: Store + DeliveryQueue {}

impl<T: Store + DeliveryQueue> Backend for T {}

pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0.as_millis() + ms)
}

fn key(b: u8) -> WebhookKey {
    WebhookKey::from_bytes(&[b; 32]).expect("32 bytes make a key")
}

async fn tenant(b: &impl Backend, id: &str) {
    let t = NewTenant {
        id: id.into(),
        api_key_hash: format!("hash-{id}"),
        webhook_key: key(1),
        created_at: T0,
    };
    b.create_tenant(t).await.expect("create tenant");
}

fn rule(tenant: &str, id: &str, trigger: Trigger, scope: Scope, per_line: bool) -> Rule {
    let draft = RuleDraft {
        name: id.into(),
        trigger,
        url: format!("https://example.com/{id}"),
        scope,
        per_order_line: per_line,
        first_payment_only: false,
        enabled: true,
    };
    Rule::new(id.into(), tenant.into(), draft, T0)
}

fn event(tenant: &str, id: &str, trigger: Trigger, lines: &[(&str, &str)]) -> Event {
    let lines: Vec<_> = lines
        .iter()
        .map(|(l, p)| serde_json::json!({"id": l, "product_id": p}))
        .collect();
    let body = serde_json::json!({
        "id": id, "tenant_id": tenant, "type": trigger.as_str(),
        "occurred_at": "2026-11-29T12:00:00Z", "lines": lines, "data": {"n": 1}
    });
    Event::from_json(body.to_string().as_bytes()).expect("valid event")
}

fn settle(job: &hookline_core::DeliveryJob, outcome: Outcome, now: Timestamp) -> Settlement {
    Settlement {
        delivery_id: job.delivery_id.clone(),
        receive_count: job.receive_count,
        attempt: Attempt {
            at: now,
            status_code: Some(500),
            duration_ms: 3,
            error: None,
            response_body: Some("no".into()),
        },
        outcome,
    }
}

/// Tenants, API key lookup and key rotation.
pub async fn tenants_and_keys(b: impl Backend) {
    tenant(&b, "a").await;
    assert!(matches!(
        b.create_tenant(NewTenant {
            id: "a".into(),
            api_key_hash: "other".into(),
            webhook_key: key(2),
            created_at: T0
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        b.tenant_for_api_key("hash-a").await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(b.tenant_for_api_key("hash-x").await.unwrap(), None);
    assert!(b.tenant_exists("a").await.unwrap() && !b.tenant_exists("b").await.unwrap());
    assert_eq!(b.signing_keys("a", T0).await.unwrap().0, vec![key(1)]);

    b.rotate_webhook_key("a", key(2), at(0), at(1000))
        .await
        .unwrap();
    assert_eq!(
        b.signing_keys("a", at(999)).await.unwrap().0,
        vec![key(2), key(1)]
    );
    assert_eq!(b.signing_keys("a", at(1000)).await.unwrap().0, vec![key(2)]);
}

/// Rules: tenant-scoped CRUD and pagination.
pub async fn rules(b: impl Backend) {
    tenant(&b, "a").await;
    tenant(&b, "b").await;
    for i in 0..5 {
        b.insert_rule(&rule(
            "a",
            &format!("r{i}"),
            Trigger::OrderPaid,
            Scope::Universal,
            false,
        ))
        .await
        .unwrap();
    }
    let mut r0 = b.rule("a", "r0").await.unwrap().expect("r0");
    assert_eq!(r0.tenant_id, "a");
    assert_eq!(b.rule("b", "r0").await.unwrap(), None);

    let first = b.rules("a", 2, None).await.unwrap();
    assert_eq!(
        first.data.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r0", "r1"]
    );
    let cursor = first.next_cursor.expect("more pages");
    let second = b.rules("a", 3, Some(&cursor)).await.unwrap();
    assert_eq!(
        second
            .data
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["r2", "r3", "r4"]
    );
    assert_eq!(second.next_cursor, None);
    assert!(b.rules("b", 10, None).await.unwrap().data.is_empty());
    assert!(matches!(
        b.rules("a", 2, Some("not a cursor")).await,
        Err(StoreError::BadCursor)
    ));

    r0.enabled = false;
    assert!(b.update_rule(&r0).await.unwrap());
    assert!(!b.rule("a", "r0").await.unwrap().unwrap().enabled);
    let mut foreign = r0.clone();
    foreign.tenant_id = "b".into();
    assert!(!b.update_rule(&foreign).await.unwrap());
    assert!(!b.delete_rule("b", "r0").await.unwrap());
    assert!(b.delete_rule("a", "r0").await.unwrap());
    assert_eq!(b.rule("a", "r0").await.unwrap(), None);
}

/// Accepting an event records its fan-out once and queues it.
pub async fn accept_is_idempotent_and_fans_out(b: impl Backend) {
    tenant(&b, "a").await;
    b.insert_rule(&rule(
        "a",
        "lines",
        Trigger::OrderPaid,
        Scope::Universal,
        true,
    ))
    .await
    .unwrap();
    b.insert_rule(&rule(
        "a",
        "bump",
        Trigger::OrderPaid,
        Scope::Product { id: "p2".into() },
        false,
    ))
    .await
    .unwrap();
    let e = event("a", "e1", Trigger::OrderPaid, &[("l1", "p1"), ("l2", "p2")]);
    assert_eq!(b.accept_event(&e, T0).await.unwrap(), Acceptance::Accepted);
    assert_eq!(b.accept_event(&e, T0).await.unwrap(), Acceptance::Duplicate);
    let unknown = event("zz", "e1", Trigger::OrderPaid, &[]);
    assert_eq!(
        b.accept_event(&unknown, T0).await.unwrap(),
        Acceptance::UnknownTenant
    );

    let all = DeliveryFilter {
        limit: 50,
        ..Default::default()
    };
    let listed = b.deliveries("a", &all).await.unwrap().data;
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending && d.attempts.is_empty())
    );
    let jobs = b.receive(10, T0).await.unwrap();
    assert_eq!(jobs.len(), 3, "accepted deliveries are queued at once");
    let bump = jobs.iter().find(|j| j.rule_id == "bump").expect("bump job");
    assert_eq!(bump.line, None);
    assert_eq!(bump.data.get(), r#"{"n":1}"#);
    assert_eq!(bump.keys.0, vec![key(1)]);
    assert_eq!(
        bump.target,
        hookline_core::delivery::Target::Url("https://example.com/bump".into())
    );
    let mut lines: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.line.as_ref().map(|l| l.id.clone()))
        .collect();
    lines.sort();
    assert_eq!(lines, ["l1", "l2"]);
}

/// A lease hides a delivery until it is settled or its visibility runs out
/// (`visibility`, as the backend was configured), and every receive counts.
pub async fn leases_and_receive_counts(b: impl Backend, visibility: Duration) {
    tenant(&b, "a").await;
    b.insert_rule(&rule("a", "r", Trigger::OrderPaid, Scope::Universal, false))
        .await
        .unwrap();
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), T0)
        .await
        .unwrap();

    let first = b.receive(10, T0).await.unwrap();
    assert_eq!((first.len(), first[0].receive_count), (1, 1));
    assert!(
        b.receive(10, T0).await.unwrap().is_empty(),
        "leased deliveries are invisible"
    );
    let vis = visibility.as_millis() as i64;
    assert!(b.receive(10, at(vis - 1)).await.unwrap().is_empty());
    let again = b.receive(10, at(vis)).await.unwrap();
    assert_eq!(
        (again.len(), again[0].receive_count),
        (1, 2),
        "an expired lease is received again"
    );

    // The first lease is stale: its attempt is logged but it moves nothing.
    b.settle(vec![settle(&first[0], Outcome::Succeeded, at(vis))])
        .await
        .unwrap();
    let d = b
        .delivery("a", &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Pending, 1));

    // A retry makes it visible again at the given time.
    b.settle(vec![settle(
        &again[0],
        Outcome::RetryAt(at(vis + 500)),
        at(vis),
    )])
    .await
    .unwrap();
    assert!(b.receive(10, at(vis + 499)).await.unwrap().is_empty());
    let third = b.receive(10, at(vis + 500)).await.unwrap();
    assert_eq!(third[0].receive_count, 3);
    b.settle(vec![settle(&third[0], Outcome::Dead, at(vis + 500))])
        .await
        .unwrap();
    let d = b
        .delivery("a", &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Dead, 3));
    assert_eq!(d.attempts[2].response_body.as_deref(), Some("no"));
    assert!(
        b.receive(10, at(10 * vis)).await.unwrap().is_empty(),
        "dead deliveries leave the queue"
    );

    // A manual retry queues it again with a fresh receive count.
    let retried = b
        .retry_delivery("a", &d.id, at(10 * vis))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.status, DeliveryStatus::Pending);
    assert_eq!(
        b.retry_delivery("b", &d.id, at(10 * vis)).await.unwrap(),
        None
    );
    let fourth = b.receive(10, at(10 * vis)).await.unwrap();
    assert_eq!(fourth[0].receive_count, 1);
    b.settle(vec![settle(&fourth[0], Outcome::Succeeded, at(10 * vis))])
        .await
        .unwrap();
    let d = b.delivery("a", &d.id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Succeeded, 4));
}

/// Receives take the most overdue first and at most `max`.
pub async fn receive_respects_max_and_order(b: impl Backend) {
    tenant(&b, "a").await;
    b.insert_rule(&rule("a", "r", Trigger::OrderPaid, Scope::Universal, false))
        .await
        .unwrap();
    for i in 0..25 {
        b.accept_event(
            &event("a", &format!("e{i:02}"), Trigger::OrderPaid, &[]),
            at(i),
        )
        .await
        .unwrap();
    }
    let first = b.receive(10, at(100)).await.unwrap();
    assert_eq!(first.len(), 10);
    let mut ids: Vec<_> = first.iter().map(|j| j.event_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, (0..10).map(|i| format!("e{i:02}")).collect::<Vec<_>>());
    assert_eq!(b.receive(100, at(100)).await.unwrap().len(), 15);
}

/// Jobs of deleted or disabled rules say so instead of sending.
pub async fn jobs_of_gone_rules(b: impl Backend) {
    tenant(&b, "a").await;
    b.insert_rule(&rule(
        "a",
        "del",
        Trigger::OrderPaid,
        Scope::Universal,
        false,
    ))
    .await
    .unwrap();
    b.insert_rule(&rule(
        "a",
        "off",
        Trigger::OrderPaid,
        Scope::Universal,
        false,
    ))
    .await
    .unwrap();
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), T0)
        .await
        .unwrap();
    b.delete_rule("a", "del").await.unwrap();
    let mut off = b.rule("a", "off").await.unwrap().unwrap();
    off.enabled = false;
    b.update_rule(&off).await.unwrap();
    let mut targets: Vec<_> = b
        .receive(10, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|j| (j.rule_id, j.target))
        .collect();
    targets.sort_by(|x, y| x.0.cmp(&y.0));
    use hookline_core::delivery::Target::Gone;
    assert_eq!(
        targets,
        [
            ("del".into(), Gone("the rule was deleted")),
            ("off".into(), Gone("the rule is disabled"))
        ]
    );
}

/// Delivery listing: filters, newest first, pagination, tenant scope; recover.
pub async fn delivery_log_and_recover(b: impl Backend) {
    tenant(&b, "a").await;
    tenant(&b, "b").await;
    b.insert_rule(&rule(
        "a",
        "r1",
        Trigger::OrderPaid,
        Scope::Universal,
        false,
    ))
    .await
    .unwrap();
    b.insert_rule(&rule(
        "a",
        "r2",
        Trigger::OrderPaid,
        Scope::Universal,
        false,
    ))
    .await
    .unwrap();
    for i in 0..3 {
        b.accept_event(
            &event("a", &format!("e{i}"), Trigger::OrderPaid, &[]),
            at(i * 1000),
        )
        .await
        .unwrap();
    }
    let filter = |rule: Option<&str>,
                  status: Option<DeliveryStatus>,
                  limit,
                  cursor: Option<String>| DeliveryFilter {
        rule_id: rule.map(Into::into),
        event_id: None,
        status,
        limit,
        cursor,
    };
    let page = b
        .deliveries("a", &filter(None, None, 4, None))
        .await
        .unwrap();
    assert_eq!(page.data.len(), 4);
    assert_eq!(page.data[0].event_id, "e2", "newest first");
    let rest = b
        .deliveries("a", &filter(None, None, 4, page.next_cursor))
        .await
        .unwrap();
    assert_eq!((rest.data.len(), rest.next_cursor), (2, None));
    assert_eq!(
        b.deliveries("a", &filter(Some("r1"), None, 50, None))
            .await
            .unwrap()
            .data
            .len(),
        3
    );
    assert!(
        b.deliveries("b", &filter(None, None, 50, None))
            .await
            .unwrap()
            .data
            .is_empty()
    );
    let by_event = DeliveryFilter {
        event_id: Some("e1".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(b.deliveries("a", &by_event).await.unwrap().data.len(), 2);

    // Kill every r1 delivery, then recover a window that holds two of them.
    let jobs = b.receive(10, at(5000)).await.unwrap();
    let dead: Vec<_> = jobs
        .iter()
        .filter(|j| j.rule_id == "r1")
        .map(|j| settle(j, Outcome::Dead, at(5000)))
        .collect();
    b.settle(dead).await.unwrap();
    let dead_now = b
        .deliveries(
            "a",
            &filter(Some("r1"), Some(DeliveryStatus::Dead), 50, None),
        )
        .await
        .unwrap();
    assert_eq!(dead_now.data.len(), 3);
    assert_eq!(
        b.recover("b", "r1", T0, at(10_000), at(6000))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.recover("a", "r1", at(1000), at(10_000), at(6000))
            .await
            .unwrap(),
        Some(2)
    );
    let requeued = b.receive(10, at(6000)).await.unwrap();
    let mut events: Vec<_> = requeued.iter().map(|j| j.event_id.clone()).collect();
    events.sort();
    assert_eq!(events, ["e1", "e2"]);
    assert!(requeued.iter().all(|j| j.receive_count == 1));
}
