//! Accepting an event on a real SQLite file (on tmpfs, so that the figure is
//! the CPU, not the disk's fsync): with 10, 1,000 and 10,000 rules of the
//! tenant watching other products and one matching, the cost must stay flat,
//! since an event reads only the rules filed under its scope keys.
//! `cargo bench -p hookline-sqlite`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use hookline_core::ports::{NewTenant, Store};
use hookline_core::trigger::Trigger;
use hookline_core::{Event, Rule, RuleDraft, RuleId, Scope, TenantId, Timestamp, WebhookKey};
use hookline_sqlite::{SqliteBackend, SqliteOptions};
use serde_json::json;

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

fn event(n: u64) -> Event {
    let body = json!({
        "id": format!("evt_{n}"), "tenant_id": "shop", "type": "order.paid",
        "occurred_at": "2026-11-29T12:00:00Z",
        "lines": [{"id": "l1", "product_id": "prod_match"}, {"id": "l2", "product_id": "prod_bump"}],
        "data": {"order_id": "ord_1", "amount": 4900, "currency": "EUR"}
    });
    Event::from_json(body.to_string().as_bytes()).unwrap()
}

fn accept(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let shm = std::path::Path::new("/dev/shm");
    let mut group = c.benchmark_group("accept an event");
    for rules in [10usize, 1_000, 10_000] {
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        let backend =
            SqliteBackend::open(dir.path().join("bench.db"), SqliteOptions::default()).unwrap();
        runtime.block_on(async {
            backend
                .create_tenant(NewTenant {
                    id: TenantId::stored("shop"),
                    api_key_hash: "h".into(),
                    webhook_key: WebhookKey::from_bytes(&[1; 32]).unwrap(),
                    created_at: Timestamp::from_millis(0),
                })
                .await
                .unwrap();
            for i in 0..rules - 1 {
                backend
                    .insert_rule(&rule(i, &format!("prod_{i}")), rules)
                    .await
                    .unwrap();
            }
            backend
                .insert_rule(&rule(rules, "prod_match"), rules)
                .await
                .unwrap();
        });
        let mut n = 0u64;
        group.bench_with_input(
            BenchmarkId::new("rules of the tenant", rules),
            &rules,
            |b, _| {
                b.iter(|| {
                    n += 1;
                    runtime
                        .block_on(backend.accept_event(&event(n), Timestamp::from_millis(0)))
                        .unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, accept);
criterion_main!(benches);
