//! The pure parts on the delivery path, without I/O: signing a 1 KiB body,
//! planning an event's deliveries among 10, 1,000 and 10,000 rules of the
//! tenant of which one matches, and evaluating a payload filter.
//! `cargo bench -p hookline-core`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hookline_core::filter::Filter;
use hookline_core::trigger::Trigger;
use hookline_core::{Event, Rule, RuleDraft, RuleId, Scope, TenantId, Timestamp, WebhookKey, plan};
use serde_json::json;

fn event() -> Event {
    let body = json!({
        "id": "evt_1", "tenant_id": "shop", "type": "order.paid",
        "occurred_at": "2026-11-29T12:00:00Z",
        "lines": [{"id": "l1", "product_id": "prod_match"}, {"id": "l2", "product_id": "prod_bump"}],
        "data": {"order_id": "ord_1", "amount": 4900, "currency": "EUR", "email": "a@example.com"}
    });
    Event::from_json(body.to_string().as_bytes()).unwrap()
}

fn rule(i: usize, product: &str) -> Rule {
    let draft = RuleDraft::new(
        &format!("rule {i}"),
        Trigger::OrderPaid,
        "https://example.com/hook",
        Scope::Product { id: product.into() },
    );
    Rule::new(
        RuleId::stored(format!("rul_{i}")),
        TenantId::stored("shop"),
        draft,
        Timestamp::from_millis(0),
    )
}

fn signing(c: &mut Criterion) {
    let key = WebhookKey::from_bytes(&[7; 32]).unwrap();
    let body = vec![b'x'; 1024];
    c.bench_function("sign a 1 KiB body", |b| {
        b.iter(|| {
            key.sign(
                black_box("msg_0123456789abcdef"),
                black_box(1_796_000_000),
                &body,
            )
        })
    });
}

fn fan_out(c: &mut Criterion) {
    let event = event();
    let mut group = c.benchmark_group("plan one event, one rule of N matching");
    for n in [10usize, 1_000, 10_000] {
        // N - 1 rules for other products of the same trigger: what a store
        // hands the planner after its (tenant, trigger) lookup.
        let mut rules: Vec<Rule> = (1..n).map(|i| rule(i, &format!("prod_{i}"))).collect();
        rules.push(rule(0, "prod_match"));
        group.bench_with_input(BenchmarkId::from_parameter(n), &rules, |b, rules| {
            b.iter(|| {
                let planned = plan(black_box(&event), rules).expect("within the budget");
                assert_eq!(planned.len(), 1);
                planned
            })
        });
    }
    group.finish();
}

fn filtering(c: &mut Criterion) {
    let filter = Filter::parse(&json!({
        "type": "order.paid",
        "data": {"amount": {"$gte": 1000}, "currency": {"$in": ["EUR", "USD"]}, "email": {"$endsWith": "@example.com"}}
    }))
    .unwrap();
    let body = json!({"type": "order.paid", "data": {"amount": 4900, "currency": "EUR", "email": "a@example.com"}});
    c.bench_function("evaluate a 4-condition filter", |b| {
        b.iter(|| assert!(filter.matches(black_box(&body))))
    });
}

criterion_group!(benches, signing, fan_out, filtering);
criterion_main!(benches);
