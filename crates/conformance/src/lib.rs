//! The store and queue conformance suite. Each check takes a fresh backend
//! and panics on the first behaviour that differs from the ports' contract;
//! every backend's tests call every check, so backends cannot drift apart.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hookline_core::breaker::Breaker;
use hookline_core::delivery::Attempt;
use hookline_core::event::Subject;
use hookline_core::filter::Filter;
use hookline_core::ports::{
    Acceptance, DeliveryFilter, DeliveryQueue, Destination, Endpoint, Lease, NewTenant, Outcome,
    Store, StoreError,
};
use hookline_core::rule::{PayloadFormat, RuleOptions};
use hookline_core::{
    DeliveryJob, DeliveryStatus, Event, EventId, Rule, RuleDraft, RuleId, Scope, Settlement,
    TenantId, Timestamp, Trigger, WebhookKey,
};

/// A backend as the suite drives it. Queues run on real time (SQS cannot do
/// otherwise), so times the suite passes are the wall clock plus offsets.
#[async_trait]
pub trait Harness: Send + Sync {
    fn store(&self) -> &dyn Store;
    fn queue(&self) -> &dyn DeliveryQueue;
    /// Runs what the backend does apart after accepting events, if anything
    /// (the AWS router), and returns once accepted events are routed.
    async fn route(&self);
    /// The deliveries queue's visibility timeout; short, to keep tests quick.
    fn visibility(&self) -> Duration;
}

/// The breaker every harness runs its backend with: quick to open and cool.
pub const BREAKER: Breaker = Breaker {
    threshold: 3,
    failure_rate: 70,
    window: Duration::from_secs(60),
    cool_down: Duration::from_secs(2),
    max_cool_down: Duration::from_secs(8),
    disable_after: Duration::from_secs(3),
};

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

fn after(t: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis() + ms)
}

/// Receives until `n` jobs came (each call asks for at most `max`).
async fn receive_n(h: &dyn Harness, n: usize, max: usize) -> Vec<DeliveryJob> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut jobs = Vec::new();
    while jobs.len() < n {
        assert!(
            Instant::now() < deadline,
            "received {} of {n} deliveries",
            jobs.len()
        );
        let got = h.queue().receive(max, now()).await.expect("receive");
        assert!(got.len() <= max, "received {} with max {max}", got.len());
        jobs.extend(got);
    }
    assert_eq!(jobs.len(), n, "received more deliveries than queued");
    jobs
}

fn tid(id: &str) -> TenantId {
    TenantId::parse("tenant_id", id).expect("a valid tenant id")
}

fn rid(id: &str) -> RuleId {
    RuleId::parse("rule_id", id).expect("a valid rule id")
}

/// The attempt number the queue's lease carries.
fn receives(job: &DeliveryJob) -> u32 {
    job.lease.as_ref().map_or(0, Lease::receive_count)
}

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}

fn key(b: u8) -> WebhookKey {
    WebhookKey::from_bytes(&[b; 32]).expect("32 bytes make a key")
}

/// Creates tenant `id` with webhook key 1.
pub async fn tenant(b: &dyn Store, id: &str) {
    let t = NewTenant {
        id: tid(id),
        api_key_hash: format!("hash-{id}"),
        webhook_key: key(1),
        created_at: now(),
    };
    b.create_tenant(t).await.expect("create tenant");
}

fn rule(tenant: &str, id: &str, trigger: Trigger, scope: Scope, per_line: bool) -> Rule {
    let draft = RuleDraft {
        per_order_line: per_line,
        ..RuleDraft::new(id, trigger, &format!("https://example.com/{id}"), scope)
    };
    Rule::new(rid(id), tid(tenant), draft, now())
}

/// Stores a universal `order.paid` rule.
pub async fn paid_rule(b: &dyn Store, tenant: &str, id: &str) {
    b.insert_rule(
        &rule(tenant, id, Trigger::OrderPaid, Scope::Universal, false),
        100,
    )
    .await
    .expect("insert rule");
}

/// Stores a universal `rule.disabled` rule: where the tenant's alerts go.
async fn alert_rule(b: &dyn Store, tenant: &str, id: &str) {
    b.insert_rule(
        &rule(tenant, id, Trigger::RuleDisabled, Scope::Universal, false),
        100,
    )
    .await
    .expect("insert rule");
}

/// `n` paid orders of `tenant`, accepted now (`e00`, `e01`, ...).
async fn paid_orders(b: &dyn Store, tenant: &str, n: usize) {
    for i in 0..n {
        b.accept_event(
            &event(tenant, &format!("e{i:02}"), Trigger::OrderPaid, &[]),
            now(),
        )
        .await
        .unwrap();
    }
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

/// The settlements of `jobs` whose receiver took each at `at` (a 204).
pub fn taken(jobs: &[DeliveryJob], at: Timestamp) -> Vec<Settlement> {
    let took = Attempt {
        at,
        status_code: Some(204),
        duration_ms: 1,
        error: None,
        response_body: None,
    };
    jobs.iter()
        .map(|j| Settlement::new(j, took.clone(), Outcome::Succeeded))
        .collect()
}

fn settle(job: &DeliveryJob, outcome: Outcome) -> Settlement {
    let attempt = Attempt {
        at: now(),
        status_code: Some(500),
        duration_ms: 3,
        error: None,
        response_body: Some("no".into()),
    };
    Settlement::new(job, attempt, outcome)
}

/// Receives every queued delivery and settles it succeeded, so that what
/// routing made is listed (a backend may list a delivery from its first
/// attempt on).
async fn attempt_all(h: &dyn Harness) {
    loop {
        let jobs = h.queue().receive(10, now()).await.expect("receive");
        if jobs.is_empty() {
            return;
        }
        let settled = jobs.iter().map(|j| settle(j, Outcome::Succeeded));
        h.queue().settle(settled.collect()).await.expect("settle");
    }
}

/// `settle`, for an attempt that reached the receiver, which took it (`ok`)
/// or not: what the breaker counts.
fn reported(job: &DeliveryJob, outcome: Outcome, ok: bool) -> Settlement {
    Settlement {
        receiver_ok: Some(ok),
        ..settle(job, outcome)
    }
}

/// Tenants, API key lookup and key rotation.
pub async fn tenants_and_keys(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    let again = NewTenant {
        id: tid("a"),
        api_key_hash: "other".into(),
        webhook_key: key(2),
        created_at: now(),
    };
    assert!(matches!(
        b.create_tenant(again).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        b.tenant_for_api_key("hash-a").await.unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(b.tenant_for_api_key("hash-x").await.unwrap(), None);
    assert!(
        b.tenant_exists(&tid("a")).await.unwrap() && !b.tenant_exists(&tid("b")).await.unwrap()
    );
    let t = now();
    assert_eq!(b.signing_keys(&tid("a"), t).await.unwrap().0, vec![key(1)]);

    let rotated = after(t, 10);
    b.rotate_webhook_key(&tid("a"), key(2), rotated, after(rotated, 1000))
        .await
        .unwrap();
    assert_eq!(
        b.signing_keys(&tid("a"), after(rotated, 999))
            .await
            .unwrap()
            .0,
        vec![key(2), key(1)]
    );
    assert_eq!(
        b.signing_keys(&tid("a"), after(rotated, 1000))
            .await
            .unwrap()
            .0,
        vec![key(2)]
    );
}

/// Rules: tenant-scoped CRUD and pagination.
pub async fn rules(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    tenant(b, "b").await;
    for i in 0..5 {
        paid_rule(b, "a", &format!("r{i}")).await;
    }
    let mut r0 = b.rule(&tid("a"), &rid("r0")).await.unwrap().expect("r0");
    assert_eq!(r0.tenant_id, "a");
    assert_eq!(b.rule(&tid("b"), &rid("r0")).await.unwrap(), None);

    let first = b.rules(&tid("a"), 2, None).await.unwrap();
    assert_eq!(
        first.data.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r0", "r1"]
    );
    let cursor = first.next_cursor.expect("more pages");
    let second = b.rules(&tid("a"), 3, Some(&cursor)).await.unwrap();
    assert_eq!(
        second
            .data
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        ["r2", "r3", "r4"]
    );
    assert_eq!(second.next_cursor, None);
    assert!(b.rules(&tid("b"), 10, None).await.unwrap().data.is_empty());
    assert!(matches!(
        b.rules(&tid("a"), 2, Some("not a cursor")).await,
        Err(StoreError::BadCursor)
    ));

    r0.enabled = false;
    assert!(b.update_rule(&r0).await.unwrap());
    assert!(
        !b.rule(&tid("a"), &rid("r0"))
            .await
            .unwrap()
            .unwrap()
            .enabled
    );
    let mut foreign = r0.clone();
    foreign.tenant_id = tid("b");
    assert!(!b.update_rule(&foreign).await.unwrap());
    assert!(!b.delete_rule(&tid("b"), &rid("r0")).await.unwrap());
    assert!(b.delete_rule(&tid("a"), &rid("r0")).await.unwrap());
    assert_eq!(b.rule(&tid("a"), &rid("r0")).await.unwrap(), None);
}

/// Accepting an event records its fan-out once and queues it.
pub async fn accept_is_idempotent_and_fans_out(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    b.insert_rule(
        &rule("a", "lines", Trigger::OrderPaid, Scope::Universal, true),
        100,
    )
    .await
    .unwrap();
    let mut bump = rule(
        "a",
        "bump",
        Trigger::OrderPaid,
        Scope::Product { id: "p2".into() },
        false,
    );
    bump.options = RuleOptions {
        filter: Some(Filter::parse(&serde_json::json!({"data": {"n": {"$gte": 1}}})).unwrap()),
        payload: PayloadFormat::Thin,
        headers: [("X-Shop".to_owned(), "a".to_owned())].into(),
        rate_limit: Some(100),
    };
    b.insert_rule(&bump, 100).await.unwrap();
    assert_eq!(
        b.rule(&tid("a"), &rid("bump")).await.unwrap().unwrap(),
        bump,
        "options are stored"
    );
    let mut never = rule("a", "never", Trigger::OrderPaid, Scope::Universal, false);
    never.options.filter =
        Some(Filter::parse(&serde_json::json!({"data": {"n": {"$gt": 1}}})).unwrap());
    b.insert_rule(&never, 100).await.unwrap();
    let mut e = event("a", "e1", Trigger::OrderPaid, &[("l1", "p1"), ("l2", "p2")]);
    e.subject = Some(Subject {
        kind: "order".into(),
        id: "ord_1".into(),
    });
    assert_eq!(
        b.accept_event(&e, now()).await.unwrap(),
        Acceptance::Accepted
    );
    assert_eq!(
        b.accept_event(&e, now()).await.unwrap(),
        Acceptance::Duplicate
    );
    let unknown = event("zz", "e1", Trigger::OrderPaid, &[]);
    assert_eq!(
        b.accept_event(&unknown, now()).await.unwrap(),
        Acceptance::UnknownTenant
    );
    h.route().await;

    let jobs = receive_n(h, 3, 10).await;
    assert!(
        jobs.iter().all(|j| j.rule_id != "never"),
        "a filter that does not match makes no delivery"
    );
    let bump = jobs.iter().find(|j| j.rule_id == "bump").expect("bump job");
    assert_eq!(bump.line, None);
    assert_eq!(bump.data.get(), r#"{"n":1}"#);
    assert_eq!(bump.keys.0, vec![key(1)]);
    assert_eq!(
        bump.destination,
        Destination::Endpoint(Endpoint {
            url: "https://example.com/bump".into(),
            payload: PayloadFormat::Thin,
            headers: vec![("X-Shop".into(), "a".into())],
        })
    );
    assert_eq!(bump.subject.as_ref().map(|s| s.id.as_str()), Some("ord_1"));
    let mut lines: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.line.as_ref().map(|l| l.id.clone()))
        .collect();
    lines.sort();
    assert_eq!(lines, ["l1", "l2"]);

    // Listed once attempted (a backend may list them from routing on).
    h.queue()
        .settle(jobs.iter().map(|j| settle(j, Outcome::Succeeded)).collect())
        .await
        .unwrap();
    let all = DeliveryFilter {
        limit: 50,
        ..Default::default()
    };
    let listed = b.deliveries(&tid("a"), &all).await.unwrap().data;
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts.len() == 1)
    );
    // Routing again changes nothing.
    h.route().await;
    assert_eq!(b.deliveries(&tid("a"), &all).await.unwrap().data.len(), 3);
    assert!(h.queue().receive(10, now()).await.unwrap().is_empty());
}

/// A lease hides a delivery until it is settled or its visibility runs out;
/// every receive counts; a retry waits; dead deliveries leave the queue; a
/// manual retry starts over.
pub async fn leases_and_receive_counts(h: &dyn Harness) {
    let b = h.store();
    let vis = h.visibility();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), now())
        .await
        .unwrap();
    h.route().await;

    let first = receive_n(h, 1, 10).await;
    assert_eq!(receives(&first[0]), 1);
    assert!(
        h.queue().receive(10, now()).await.unwrap().is_empty(),
        "leased deliveries are invisible"
    );
    sleep(vis + Duration::from_millis(300)).await;
    let again = receive_n(h, 1, 10).await;
    assert_eq!(receives(&again[0]), 2, "an expired lease is received again");

    h.queue()
        .settle(vec![settle(
            &again[0],
            Outcome::RetryAt(after(now(), vis.as_millis() as i64)),
        )])
        .await
        .unwrap();
    let id = again[0].delivery_id.clone();
    let d = b.delivery(&tid("a"), &id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Pending, 1));
    assert!(
        h.queue().receive(10, now()).await.unwrap().is_empty(),
        "a retry waits for its time"
    );
    // A retry as long as the visibility timeout: long enough that the
    // receive above cannot have waited into it.
    sleep(vis + Duration::from_millis(300)).await;
    let third = receive_n(h, 1, 10).await;
    assert_eq!(receives(&third[0]), 3);

    h.queue()
        .settle(vec![settle(&third[0], Outcome::Dead)])
        .await
        .unwrap();
    let d = b.delivery(&tid("a"), &id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Dead, 2));
    assert_eq!(d.attempts[1].response_body.as_deref(), Some("no"));
    assert!(
        h.queue().receive(10, now()).await.unwrap().is_empty(),
        "dead deliveries leave the queue"
    );

    let retried = b
        .retry_delivery(&tid("a"), &id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.status, DeliveryStatus::Pending);
    assert_eq!(b.retry_delivery(&tid("b"), &id, now()).await.unwrap(), None);
    let fourth = receive_n(h, 1, 10).await;
    assert_eq!(
        receives(&fourth[0]),
        1,
        "a manual retry starts a fresh count"
    );
    h.queue()
        .settle(vec![settle(&fourth[0], Outcome::Succeeded)])
        .await
        .unwrap();
    let d = b.delivery(&tid("a"), &id).await.unwrap().unwrap();
    assert_eq!((d.status, d.attempts.len()), (DeliveryStatus::Succeeded, 3));
}

/// Receives hand out at most `max` at a time, and every queued delivery once.
pub async fn receive_respects_max(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    paid_orders(b, "a", 25).await;
    h.route().await;
    let jobs = receive_n(h, 25, 7).await;
    let mut ids: Vec<_> = jobs.iter().map(|j| j.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25);
}

/// Jobs of deleted or disabled rules say so instead of sending.
pub async fn jobs_of_gone_rules(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "del").await;
    paid_rule(b, "a", "off").await;
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), now())
        .await
        .unwrap();
    h.route().await;
    b.delete_rule(&tid("a"), &rid("del")).await.unwrap();
    let mut off = b.rule(&tid("a"), &rid("off")).await.unwrap().unwrap();
    off.enabled = false;
    b.update_rule(&off).await.unwrap();
    let mut targets: Vec<_> = receive_n(h, 2, 10)
        .await
        .into_iter()
        .map(|j| (j.rule_id, j.destination))
        .collect();
    targets.sort_by(|x, y| x.0.cmp(&y.0));
    use Destination::Gone;
    assert_eq!(
        targets,
        [
            (rid("del"), Gone("the rule was deleted")),
            (rid("off"), Gone("the rule is disabled"))
        ]
    );
}

/// Delivery listing: filters, newest first, pagination, tenant scope; recover.
pub async fn delivery_log_and_recover(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    tenant(b, "b").await;
    paid_rule(b, "a", "r1").await;
    paid_rule(b, "a", "r2").await;
    // Accepted one second apart, in the past so their deliveries are due.
    let t0 = after(now(), -10_000);
    for i in 0..3 {
        b.accept_event(
            &event("a", &format!("e{i}"), Trigger::OrderPaid, &[]),
            after(t0, i * 1000),
        )
        .await
        .unwrap();
    }
    h.route().await;
    // r1's deliveries die, r2's succeed: all listed now.
    let jobs = receive_n(h, 6, 10).await;
    let settlements = jobs
        .iter()
        .map(|j| {
            settle(
                j,
                if j.rule_id == "r1" {
                    Outcome::Dead
                } else {
                    Outcome::Succeeded
                },
            )
        })
        .collect();
    h.queue().settle(settlements).await.unwrap();
    let filter = |rule: Option<&str>,
                  status: Option<DeliveryStatus>,
                  limit,
                  cursor: Option<String>| DeliveryFilter {
        rule_id: rule.map(rid),
        event_id: None,
        status,
        limit,
        cursor,
    };
    let page = b
        .deliveries(&tid("a"), &filter(None, None, 4, None))
        .await
        .unwrap();
    assert_eq!(page.data.len(), 4);
    assert_eq!(page.data[0].event_id, "e2", "newest first");
    let rest = b
        .deliveries(&tid("a"), &filter(None, None, 4, page.next_cursor))
        .await
        .unwrap();
    assert_eq!((rest.data.len(), rest.next_cursor), (2, None));
    let two = b
        .deliveries(&tid("a"), &filter(Some("r1"), None, 2, None))
        .await
        .unwrap();
    assert_eq!(two.data.len(), 2);
    let last = b
        .deliveries(&tid("a"), &filter(Some("r1"), None, 2, two.next_cursor))
        .await
        .unwrap();
    assert_eq!((last.data.len(), last.next_cursor), (1, None));
    assert!(
        b.deliveries(&tid("b"), &filter(None, None, 50, None))
            .await
            .unwrap()
            .data
            .is_empty()
    );
    let by_event = DeliveryFilter {
        event_id: Some(EventId::parse("event_id", "e1").expect("a valid event id")),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        b.deliveries(&tid("a"), &by_event).await.unwrap().data.len(),
        2
    );
    assert!(matches!(
        b.deliveries(&tid("a"), &filter(None, None, 4, Some("zz".into())))
            .await,
        Err(StoreError::BadCursor)
    ));

    // Then recover a window holding two of r1's dead.
    let dead_now = b
        .deliveries(
            &tid("a"),
            &filter(Some("r1"), Some(DeliveryStatus::Dead), 50, None),
        )
        .await
        .unwrap();
    assert_eq!(dead_now.data.len(), 3);
    assert_eq!(
        b.recover(&tid("b"), &rid("r1"), t0, now(), now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.recover(&tid("a"), &rid("r1"), after(t0, 1000), now(), now())
            .await
            .unwrap(),
        Some(2)
    );
    let requeued = receive_n(h, 2, 10).await;
    let mut events: Vec<_> = requeued.iter().map(|j| j.event_id.clone()).collect();
    events.sort();
    assert_eq!(events, ["e1", "e2"]);
    assert!(
        requeued
            .iter()
            .all(|j| receives(j) == 1 && j.rule_id == "r1")
    );
}

/// Limits: rules per tenant, keys that sign at once, no second chain of
/// attempts for a pending delivery, and a bounded attempt log.
pub async fn limits(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    for i in 0..3 {
        b.insert_rule(
            &rule(
                "a",
                &format!("r{i}"),
                Trigger::OrderPaid,
                Scope::Universal,
                false,
            ),
            3,
        )
        .await
        .unwrap();
    }
    let fourth = rule("a", "r3", Trigger::OrderPaid, Scope::Universal, false);
    assert!(matches!(
        b.insert_rule(&fourth, 3).await,
        Err(StoreError::LimitExceeded(_))
    ));
    assert!(b.delete_rule(&tid("a"), &rid("r0")).await.unwrap());
    b.insert_rule(&fourth, 3)
        .await
        .expect("room again after a delete");
    assert!(
        !b.delete_rule(&tid("a"), &rid("r0")).await.unwrap(),
        "deleted once only"
    );
    assert!(
        matches!(
            b.insert_rule(
                &rule("a", "r4", Trigger::OrderPaid, Scope::Universal, false),
                3
            )
            .await,
            Err(StoreError::LimitExceeded(_))
        ),
        "a second delete of the same rule frees nothing"
    );

    // The current key and two in their grace period sign; a fourth waits.
    let t = now();
    b.rotate_webhook_key(&tid("a"), key(2), t, after(t, 60_000))
        .await
        .unwrap();
    b.rotate_webhook_key(&tid("a"), key(3), after(t, 1), after(t, 60_000))
        .await
        .unwrap();
    assert_eq!(
        b.signing_keys(&tid("a"), after(t, 2))
            .await
            .unwrap()
            .0
            .len(),
        3
    );
    assert!(matches!(
        b.rotate_webhook_key(&tid("a"), key(4), after(t, 2), after(t, 60_000))
            .await,
        Err(StoreError::LimitExceeded(_))
    ));
    let later = after(t, 60_001);
    b.rotate_webhook_key(&tid("a"), key(4), later, after(later, 60_000))
        .await
        .expect("room again once the grace periods ended");
    assert_eq!(
        b.signing_keys(&tid("a"), after(later, 1)).await.unwrap().0,
        vec![key(4), key(3)]
    );

    // The log keeps the latest attempts; the count keeps them all.
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), now())
        .await
        .unwrap();
    h.route().await;
    let jobs = receive_n(h, 3, 10).await;
    let id = jobs[0].delivery_id.clone();
    let total = hookline_core::delivery::ATTEMPT_LOG_LIMIT + 2;
    for i in 0..total {
        let mut s = settle(&jobs[0], Outcome::RetryAt(after(now(), 600_000)));
        s.attempt.duration_ms = i as u64;
        h.queue().settle(vec![s]).await.unwrap();
    }
    // A pending delivery is not retried into a second chain.
    assert!(matches!(
        b.retry_delivery(&tid("a"), &id, now()).await,
        Err(StoreError::AlreadyPending)
    ));
    let d = b.delivery(&tid("a"), &id).await.unwrap().unwrap();
    assert_eq!(d.attempt_count, total as u64);
    assert_eq!(d.attempts.len(), hookline_core::delivery::ATTEMPT_LOG_LIMIT);
    assert_eq!(d.attempts[0].duration_ms, 2, "the oldest two are gone");
    assert_eq!(d.attempts.last().unwrap().duration_ms, total as u64 - 1);
}

/// The circuit breaker: a run of failures holds a rule's due deliveries back
/// without charging them an attempt, then one probe decides, and the rest
/// follow once it succeeds.
pub async fn circuit_breaker(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    paid_orders(b, "a", 6).await;
    h.route().await;
    let failed = |job: &DeliveryJob| reported(job, Outcome::RetryAt(now()), false);
    let threshold = BREAKER.threshold as usize;
    let first = receive_n(h, threshold, threshold).await;
    assert!(first.iter().all(|j| j.attempt == 1));
    h.queue()
        .settle(first.iter().map(failed).collect())
        .await
        .unwrap();
    let opened = std::time::Instant::now();
    assert!(
        h.queue().receive(10, now()).await.unwrap().is_empty(),
        "an open circuit holds every due delivery back"
    );
    assert!(h.queue().receive(10, now()).await.unwrap().is_empty());
    let held = b
        .delivery(&tid("a"), &first[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        held.waiting.map(|w| w.reason),
        Some(hookline_core::delivery::WaitReason::CircuitOpen),
        "the log says why a delivery waits"
    );
    sleep(BREAKER.cool_down.saturating_sub(opened.elapsed()) + Duration::from_millis(300)).await;

    let probe = receive_n(h, 1, 10).await;
    assert!(
        h.queue().receive(10, now()).await.unwrap().is_empty(),
        "one probe at a time"
    );
    let failed_before = first.iter().any(|j| j.delivery_id == probe[0].delivery_id);
    assert_eq!(
        probe[0].attempt,
        if failed_before { 2 } else { 1 },
        "holding back charged no attempt"
    );
    let ok = reported(&probe[0], Outcome::Succeeded, true);
    h.queue().settle(vec![ok]).await.unwrap();
    let healthy = b
        .delivery(&tid("a"), &probe[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(healthy.waiting, None);

    // Closed again: the other five follow, each charged only its real attempts.
    let rest = receive_n(h, 5, 10).await;
    for job in &rest {
        let failed_before = first.iter().any(|j| j.delivery_id == job.delivery_id);
        assert_eq!(
            job.attempt,
            if failed_before { 2 } else { 1 },
            "{}",
            job.delivery_id
        );
    }
}

/// The breaker judges a rule by its failure rate, not by a run: a receiver
/// that fails one attempt in three, settled one at a time as the attempts
/// end, keeps its circuit closed, and its failed deliveries come back.
pub async fn a_flaky_rule_is_not_held_back(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    paid_orders(b, "a", 12).await;
    h.route().await;
    let jobs = receive_n(h, 12, 12).await;
    for (i, job) in jobs.iter().enumerate() {
        let settlement = if i % 3 == 0 {
            reported(job, Outcome::RetryAt(now()), false)
        } else {
            reported(job, Outcome::Succeeded, true)
        };
        h.queue().settle(vec![settlement]).await.unwrap();
    }
    let again = receive_n(h, 4, 10).await;
    assert!(
        again.iter().all(|j| j.attempt == 2),
        "the four failed ones, retried"
    );
    let d = b
        .delivery(&tid("a"), &again[0].delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.waiting, None, "no circuit holds them");
}

/// A batch of events is accepted item by item, in order, with the same
/// answers one at a time would get, and routed once.
pub async fn accept_events_judges_each_alone(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    let e1 = event("a", "e1", Trigger::OrderPaid, &[]);
    b.accept_event(&e1, now()).await.unwrap();
    let batch = [
        event("a", "e0", Trigger::OrderPaid, &[]),
        e1,
        event("nobody", "e9", Trigger::OrderPaid, &[]),
        event("a", "e2", Trigger::OrderPaid, &[]),
        event("a", "e2", Trigger::OrderPaid, &[]),
    ];
    let answers: Vec<Acceptance> = b
        .accept_events(&batch, now())
        .await
        .into_iter()
        .map(|r| r.expect("accepted"))
        .collect();
    assert_eq!(
        answers,
        [
            Acceptance::Accepted,
            Acceptance::Duplicate,
            Acceptance::UnknownTenant,
            Acceptance::Accepted,
            Acceptance::Duplicate,
        ]
    );
    h.route().await;
    attempt_all(h).await;
    let all = DeliveryFilter {
        limit: 50,
        ..Default::default()
    };
    let mut events: Vec<String> = b
        .deliveries(&tid("a"), &all)
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|d| d.event_id.into_string())
        .collect();
    events.sort();
    assert_eq!(events, ["e0", "e1", "e2"]);
}

/// A rule's rate limit: excess deliveries wait, uncharged, and all go.
pub async fn rate_limit_delays_without_charging(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    let mut limited = rule("a", "r", Trigger::OrderPaid, Scope::Universal, false);
    limited.options.rate_limit = Some(2);
    b.insert_rule(&limited, 100).await.unwrap();
    paid_orders(b, "a", 6).await;
    h.route().await;
    let started = Instant::now();
    let first = h.queue().receive(10, now()).await.unwrap();
    assert!(
        first.len() <= 2,
        "{} at once with a limit of 2 a second",
        first.len()
    );
    let mut all = first;
    all.extend(receive_n(h, 6 - all.len(), 10).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "6 deliveries at 2 a second went in {:?}",
        started.elapsed()
    );
    assert!(
        all.iter().all(|j| j.attempt == 1),
        "waiting charged no attempt"
    );
}

/// A rule failing for the breaker's `disable_after` without a success is
/// disabled, and the tenant's `rule.disabled` rules get the alert.
pub async fn failing_rules_are_disabled_with_an_alert(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    alert_rule(b, "a", "alerts").await;
    b.accept_event(&event("a", "e1", Trigger::OrderPaid, &[]), now())
        .await
        .unwrap();
    h.route().await;
    let failed = |job: &DeliveryJob| reported(job, Outcome::RetryAt(now()), false);
    let first = receive_n(h, 1, 10).await;
    h.queue().settle(vec![failed(&first[0])]).await.unwrap();
    assert!(b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap().enabled);
    sleep(BREAKER.disable_after + Duration::from_millis(200)).await;
    let again = receive_n(h, 1, 10).await;
    let later = reported(&again[0], Outcome::RetryAt(after(now(), 600_000)), false);
    h.queue().settle(vec![later]).await.unwrap();

    let disabled = b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(
        disabled.disabled_reason,
        Some(hookline_core::rule::DisabledReason::Failing)
    );
    h.route().await;
    let alert = receive_n(h, 1, 10).await;
    assert_eq!(
        (alert[0].rule_id.as_str(), alert[0].trigger),
        ("alerts", Trigger::RuleDisabled)
    );
    let data: serde_json::Value = serde_json::from_str(alert[0].data.get()).unwrap();
    assert_eq!(data["rule_id"], "r");
    assert_eq!(data["last_error"], serde_json::Value::Null);

    let mut enabled = disabled;
    enabled.apply(hookline_core::RulePatch {
        enabled: Some(true),
        ..Default::default()
    });
    b.update_rule(&enabled).await.unwrap();
    let back = b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap();
    assert!(back.enabled && back.disabled_reason.is_none() && back.disabled_at.is_none());
}

/// Defines one `#[tokio::test]` per check of the suite, each on a fresh
/// harness made by `$harness` (an expression, evaluated once per test), so a
/// check added here runs on every backend without touching its tests.
/// An event fires the rules whose scope it matches, among many that watch
/// other products, and a rule whose scope is edited is found under its new
/// scope only (a store that files rules by scope must move it).
pub async fn rules_follow_their_scope(h: &dyn Harness) {
    let b = h.store();
    tenant(b, "a").await;
    let product = |id: &str| Scope::Product { id: id.into() };
    b.insert_rule(
        &rule("a", "r", Trigger::OrderPaid, product("p1"), false),
        500,
    )
    .await
    .unwrap();
    paid_rule(b, "a", "u").await;
    for i in 0..40 {
        let other = rule(
            "a",
            &format!("x{i}"),
            Trigger::OrderPaid,
            product(&format!("x{i}")),
            false,
        );
        b.insert_rule(&other, 500).await.unwrap();
    }
    let page = Scope::PaymentPage { id: "pg".into() };
    b.insert_rule(&rule("a", "page", Trigger::OrderPaid, page, false), 500)
        .await
        .unwrap();

    let accept = |id: &'static str, product: &'static str| async move {
        let e = event("a", id, Trigger::OrderPaid, &[("l1", product)]);
        assert_eq!(
            b.accept_event(&e, now()).await.unwrap(),
            Acceptance::Accepted
        );
    };
    accept("e1", "p1").await;
    h.route().await;
    let mut moved = b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap();
    moved.scope = product("p2");
    assert!(b.update_rule(&moved).await.unwrap());
    accept("e2", "p1").await;
    accept("e3", "p2").await;
    h.route().await;
    attempt_all(h).await;

    let all = DeliveryFilter {
        limit: 50,
        ..Default::default()
    };
    let mut fired: Vec<(String, String)> = b
        .deliveries(&tid("a"), &all)
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|d| (d.event_id.into_string(), d.rule_id.into_string()))
        .collect();
    fired.sort();
    let want = |e: &str, r: &str| (e.to_owned(), r.to_owned());
    assert_eq!(
        fired,
        vec![
            want("e1", "r"),
            want("e1", "u"),
            want("e2", "u"),
            want("e3", "r"),
            want("e3", "u"),
        ],
        "p1 fires r before its edit, p2 after; no page rule, no other product's"
    );
}

/// Test sends are counted per tenant and minute, and refused past the limit
/// without being counted.
pub async fn test_sends_are_limited_per_tenant_and_minute(h: &dyn Harness) {
    let b = h.store();
    let minute = Timestamp::from_millis(1_800_000_000_000);
    for i in 0..3 {
        assert!(
            b.take_test_send(&tid("a"), minute, 3).await.unwrap(),
            "send {i}"
        );
    }
    assert!(
        !b.take_test_send(&tid("a"), minute, 3).await.unwrap(),
        "the fourth"
    );
    assert!(
        !b.take_test_send(&tid("a"), after(minute, 59_000), 3)
            .await
            .unwrap()
    );
    assert!(
        b.take_test_send(&tid("b"), minute, 3).await.unwrap(),
        "another tenant"
    );
    assert!(
        b.take_test_send(&tid("a"), after(minute, 60_000), 3)
            .await
            .unwrap(),
        "the next minute"
    );
}

/// A rule's health counts its attempts that reached the receiver (every
/// harness writes counted traffic at once): a receiver failing one in three
/// shows its rate, latency, last error and failures in a row, across several
/// writes into one bucket; attempts that made no request are not counted;
/// another tenant sees nothing of it.
pub async fn rule_health_counts_what_receivers_did(h: &dyn Harness) {
    use hookline_core::traffic::Traffic;
    let b = h.store();
    tenant(b, "a").await;
    tenant(b, "b").await;
    paid_rule(b, "a", "r").await;
    paid_rule(b, "a", "quiet").await;
    paid_orders(b, "a", 9).await;
    h.route().await;
    let attempt = |ok: bool, ms: u64| Attempt {
        at: now(),
        status_code: Some(if ok { 200 } else { 500 }),
        duration_ms: ms,
        error: (!ok).then(|| "receiver answered 500".to_owned()),
        response_body: None,
    };
    // The receiver of `r` takes attempt i unless `fails(i)`; `quiet`'s
    // attempts make no request.
    let settle_all = |jobs: Vec<DeliveryJob>, fails: fn(usize) -> bool| async move {
        let (mine, quiet): (Vec<_>, Vec<_>) =
            jobs.into_iter().partition(|j| j.rule_id.as_str() == "r");
        for (i, job) in mine.iter().enumerate() {
            let ok = !fails(i);
            let outcome = if ok {
                Outcome::Succeeded
            } else {
                Outcome::Dead
            };
            let s = Settlement {
                receiver_ok: Some(ok),
                ..Settlement::new(job, attempt(ok, 20 * (i as u64 + 1)), outcome)
            };
            h.queue().settle(vec![s]).await.unwrap();
        }
        let unsent = quiet.iter().map(|j| settle(j, Outcome::Dead)).collect();
        h.queue().settle(unsent).await.unwrap();
    };
    settle_all(receive_n(h, 18, 18).await, |i| i % 3 == 0).await;
    let health = |tenant: &'static str, rule: &'static str| async move {
        b.rule_health(&tid(tenant), &rid(rule), now())
            .await
            .expect("rule health")
    };
    let seen = health("a", "r").await.expect("the rule exists");
    let traffic = Traffic::of(&seen.buckets, now());
    assert_eq!(
        (
            traffic.hour.attempts,
            traffic.hour.successes,
            traffic.day.failures
        ),
        (9, 6, 3)
    );
    assert_eq!(traffic.last_error.as_deref(), Some("receiver answered 500"));
    assert!(traffic.last_success.is_some() && traffic.last_failure.is_some());
    assert_eq!(
        traffic.consecutive_failures, 0,
        "the last attempt succeeded"
    );
    // 20, 40, ... 180 ms: the median in the 100 ms bin, the 99th the slowest.
    assert_eq!(
        (traffic.hour.p50_ms, traffic.hour.p99_ms),
        (Some(100), Some(180))
    );

    // Two more orders, whose attempts fail, settled apart.
    paid_orders(b, "a", 11).await;
    h.route().await;
    settle_all(receive_n(h, 4, 4).await, |_| true).await;
    let traffic = Traffic::of(&health("a", "r").await.unwrap().buckets, now());
    assert_eq!(traffic.day.attempts, 11);
    assert_eq!(traffic.consecutive_failures, 2);

    let quiet = health("a", "quiet").await.expect("the rule exists");
    assert_eq!(Traffic::of(&quiet.buckets, now()).day.attempts, 0);
    assert_eq!(quiet.health, hookline_core::breaker::Health::default());
    assert!(health("b", "r").await.is_none(), "another tenant's rule");
    assert!(health("a", "nope").await.is_none());
}

/// A receiver that says it is gone (410, or `webhook-delivery: disable`)
/// has its rule disabled at its first such answer, with the reason `gone`
/// and the `rule.disabled` alert raised (an alert rule is disabled too when
/// its own receiver is gone); an ordinary failure disables nothing.
pub async fn a_gone_receivers_rule_is_disabled_at_once(h: &dyn Harness) {
    use hookline_core::rule::DisabledReason;
    let b = h.store();
    tenant(b, "a").await;
    paid_rule(b, "a", "r").await;
    alert_rule(b, "a", "alerts").await;
    paid_orders(b, "a", 2).await;
    h.route().await;
    let jobs = receive_n(h, 2, 10).await;
    let failed = reported(&jobs[0], Outcome::RetryAt(after(now(), 600_000)), false);
    h.queue().settle(vec![failed]).await.unwrap();
    assert!(b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap().enabled);

    let gone = Settlement {
        gone: true,
        ..reported(&jobs[1], Outcome::Dead, false)
    };
    h.queue().settle(vec![gone]).await.unwrap();
    let disabled = b.rule(&tid("a"), &rid("r")).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason, Some(DisabledReason::Gone));
    h.route().await;
    let alert = receive_n(h, 1, 10).await;
    assert_eq!(
        (alert[0].rule_id.as_str(), alert[0].trigger),
        ("alerts", Trigger::RuleDisabled)
    );
    let data: serde_json::Value = serde_json::from_str(alert[0].data.get()).unwrap();
    assert_eq!(
        (&data["rule_id"], &data["reason"]),
        (&"r".into(), &"gone".into())
    );

    // The alert rule's own receiver is gone: it is disabled too, and its
    // alert has no enabled rule left to go to.
    let gone = Settlement {
        gone: true,
        ..reported(&alert[0], Outcome::Dead, false)
    };
    h.queue().settle(vec![gone]).await.unwrap();
    let alerts = b.rule(&tid("a"), &rid("alerts")).await.unwrap().unwrap();
    assert_eq!(alerts.disabled_reason, Some(DisabledReason::Gone));
}

#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            tenants_and_keys,
            rules,
            accept_is_idempotent_and_fans_out,
            leases_and_receive_counts,
            receive_respects_max,
            jobs_of_gone_rules,
            delivery_log_and_recover,
            limits,
            circuit_breaker,
            a_flaky_rule_is_not_held_back,
            accept_events_judges_each_alone,
            rate_limit_delays_without_charging,
            failing_rules_are_disabled_with_an_alert,
            rules_follow_their_scope,
            test_sends_are_limited_per_tenant_and_minute,
            rule_health_counts_what_receivers_did,
            a_gone_receivers_rule_is_disabled_at_once,
        );
    };
    (@each $harness:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            $crate::$check(&$harness).await;
        }
    )*};
}
