//! Which deliveries an event makes: the Plug&Pay matching rules, one place.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::event::{Event, Line};
use crate::filter::Body;
use crate::id::{DeliveryId, RuleId};
use crate::rule::{Rule, Scope};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelivery {
    pub id: DeliveryId,
    pub rule_id: RuleId,
    pub line: Option<Line>,
}

/// Does `rule` want `event`, and for which lines? `None` when it does not
/// fire; otherwise the lines it concerns (a product rule: only its product's).
fn matched_lines<'e>(rule: &Rule, event: &'e Event) -> Option<Vec<&'e Line>> {
    if !rule.enabled || rule.tenant_id != event.tenant_id || rule.trigger != event.trigger {
        return None;
    }
    if rule.first_payment_only && !event.first_payment {
        return None;
    }
    let all = || event.lines.iter().collect::<Vec<_>>();
    match &rule.scope {
        Scope::Universal => Some(all()),
        Scope::Product { id } => {
            let lines: Vec<&Line> = event.lines.iter().filter(|l| &l.product_id == id).collect();
            (!lines.is_empty()).then_some(lines)
        }
        Scope::PaymentPage { id } => (event.payment_page_id.as_ref() == Some(id)).then(all),
        Scope::Upsell { id } => (event.upsell_id.as_ref() == Some(id)).then(all),
    }
}

/// The scope keys of the rules `event` can match ([`Scope::key`]): the
/// universal one, each product on its lines, its payment page and upsell.
/// A store that files rules by scope key finds an event's candidates with
/// these, whatever number of rules watch other products and pages.
pub fn scope_keys(event: &Event) -> Vec<String> {
    let products: BTreeSet<&str> = event.lines.iter().map(|l| l.product_id.as_str()).collect();
    let mut keys = vec![Scope::Universal.key()];
    keys.extend(
        products
            .into_iter()
            .map(|id| Scope::Product { id: id.to_owned() }.key()),
    );
    if let Some(id) = &event.payment_page_id {
        keys.push(Scope::PaymentPage { id: id.clone() }.key());
    }
    if let Some(id) = &event.upsell_id {
        keys.push(Scope::Upsell { id: id.clone() }.key());
    }
    keys
}

/// The body a delivery would carry, as its filter reads it: the event's
/// fields (its `data` parsed once per event) and the rule's and line's.
struct DeliveredBody<'a> {
    event: &'a Map<String, Value>,
    rule_id: Value,
    line: Option<Value>,
}

impl Body for DeliveredBody<'_> {
    fn field(&self, name: &str) -> Option<&Value> {
        match name {
            "rule_id" => Some(&self.rule_id),
            "line" => self.line.as_ref(),
            _ => self.event.get(name),
        }
    }

    fn field_count(&self) -> usize {
        self.event.len() + 1 + usize::from(self.line.is_some())
    }
}

/// The event's part of every delivered body (see [`crate::delivery::FullBody`]).
fn event_fields(event: &Event) -> Map<String, Value> {
    let value = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    Map::from_iter([
        (
            "type".to_owned(),
            value(serde_json::to_value(event.trigger)),
        ),
        (
            "timestamp".to_owned(),
            value(serde_json::to_value(event.occurred_at)),
        ),
        ("event_id".to_owned(), Value::String(event.id.to_string())),
        (
            "tenant_id".to_owned(),
            Value::String(event.tenant_id.to_string()),
        ),
        (
            "data".to_owned(),
            value(serde_json::from_str(event.data.get())),
        ),
    ])
}

/// The most deliveries one event may make.
pub const MAX_DELIVERIES_PER_EVENT: usize = 10_000;

/// The most work one event's fan-out may cost, in filter nodes visited:
/// for each rule it matches, its lines (one without lines or per-line
/// delivery) times one more than its filter's nodes. The biggest filter
/// ([`crate::filter::MAX_NODES`]) on a per-line rule and the biggest order
/// (1,000 lines) cost 257,000.
pub const MAX_FANOUT_WORK: u64 = 2_000_000;

/// An event whose fan-out is over a budget: it is refused rather than let
/// hold up other tenants' events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FanoutTooLarge {
    #[error(
        "the event would make more than {MAX_DELIVERIES_PER_EVENT} deliveries across the tenant's rules"
    )]
    Deliveries,
    #[error(
        "matching the event would cost more than {MAX_FANOUT_WORK} filter steps (rules × lines × filter nodes)"
    )]
    Work,
}

/// The deliveries `event` makes across `rules`: one per matching rule, or one
/// per matching line for a per-order-line rule. A per-line rule on an event
/// without lines still gets the event once, rather than nothing. Refused,
/// before the work is done, where it would pass a budget.
pub fn plan(event: &Event, rules: &[Rule]) -> Result<Vec<PlannedDelivery>, FanoutTooLarge> {
    let mut out = Vec::new();
    let mut work: u64 = 0;
    let fields = std::cell::OnceCell::new();
    for rule in rules {
        let Some(mut lines) = matched_lines(rule, event) else {
            continue;
        };
        let evaluations = if rule.per_order_line {
            lines.len().max(1)
        } else {
            1
        };
        let nodes = rule.options.filter.as_ref().map_or(0, |f| f.nodes());
        work = work.saturating_add((evaluations as u64).saturating_mul(1 + nodes as u64));
        if work > MAX_FANOUT_WORK {
            return Err(FanoutTooLarge::Work);
        }
        if let Some(filter) = &rule.options.filter {
            let event_fields = fields.get_or_init(|| event_fields(event));
            let passes = |line: Option<&Line>| {
                filter.matches(&DeliveredBody {
                    event: event_fields,
                    rule_id: Value::String(rule.id.to_string()),
                    line: line.and_then(|l| serde_json::to_value(l).ok()),
                })
            };
            if rule.per_order_line && !lines.is_empty() {
                lines.retain(|l| passes(Some(l)));
                if lines.is_empty() {
                    continue;
                }
            } else if !passes(None) {
                continue;
            }
        }
        let one = |line: Option<&Line>| PlannedDelivery {
            id: DeliveryId::of(
                &event.tenant_id,
                &event.id,
                &rule.id,
                line.map(|l| l.id.as_str()),
            ),
            rule_id: rule.id.clone(),
            line: line.cloned(),
        };
        if rule.per_order_line && !lines.is_empty() {
            out.extend(lines.into_iter().map(|l| one(Some(l))));
        } else {
            out.push(one(None));
        }
        if out.len() > MAX_DELIVERIES_PER_EVENT {
            return Err(FanoutTooLarge::Deliveries);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    use super::*;
    use crate::id::{EventId, TenantId};
    use crate::time::Timestamp;
    use crate::trigger::Trigger;

    fn event(trigger: Trigger, lines: &[(&str, &str)]) -> Event {
        Event {
            id: EventId::stored("evt_1"),
            tenant_id: TenantId::stored("shop"),
            trigger,
            occurred_at: Timestamp::default(),
            payment_page_id: Some("page_1".into()),
            upsell_id: None,
            first_payment: true,
            lines: lines
                .iter()
                .map(|(id, p)| Line {
                    id: (*id).into(),
                    product_id: (*p).into(),
                })
                .collect(),
            data: RawValue::from_string("{}".into()).unwrap(),
            subject: None,
            trace: None,
        }
    }

    fn rule(id: &str, trigger: Trigger, scope: Scope, per_line: bool) -> Rule {
        Rule {
            id: RuleId::stored(id),
            tenant_id: TenantId::stored("shop"),
            name: id.into(),
            trigger,
            url: "https://example.com".into(),
            scope,
            per_order_line: per_line,
            first_payment_only: false,
            enabled: true,
            created_at: Timestamp::default(),
            options: Default::default(),
            disabled_reason: None,
            disabled_at: None,
        }
    }

    fn product(id: &str) -> Scope {
        Scope::Product { id: id.into() }
    }

    fn lines_of(plan: &[PlannedDelivery], rule: &str) -> Vec<Option<String>> {
        plan.iter()
            .filter(|d| d.rule_id == rule)
            .map(|d| d.line.as_ref().map(|l| l.id.clone()))
            .collect()
    }

    /// An event whose fan-out is over a budget is refused before the work
    /// is done, whatever the tenant's filters are.
    #[test]
    fn fanout_past_a_budget_is_refused() {
        let lines: Vec<(String, String)> = (0..1000)
            .map(|i| (format!("l_{i}"), "prod".to_owned()))
            .collect();
        let lines: Vec<(&str, &str)> = lines
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let e = event(Trigger::OrderPaid, &lines);
        let biggest = {
            let values = serde_json::Value::Array(vec![serde_json::json!(0); 250]);
            crate::filter::Filter::parse(&serde_json::json!({"data": {"x": {"$nin": values}}}))
                .unwrap()
        };
        let heavy = |id: &str| {
            let mut r = rule(id, Trigger::OrderPaid, Scope::Universal, true);
            r.options.filter = Some(biggest.clone());
            r
        };
        // One such rule is within the budget: 1,000 deliveries.
        assert_eq!(plan(&e, &[heavy("a")]).unwrap().len(), 1000);
        // Eight of them would cost 8 × 1,000 × 254 filter steps.
        let eight: Vec<Rule> = (0..8).map(|i| heavy(&format!("h{i}"))).collect();
        assert_eq!(plan(&e, &eight), Err(FanoutTooLarge::Work));
        // Eleven plain per-line rules would make 11,000 deliveries.
        let many: Vec<Rule> = (0..11)
            .map(|i| rule(&format!("p{i}"), Trigger::OrderPaid, Scope::Universal, true))
            .collect();
        assert_eq!(plan(&e, &many), Err(FanoutTooLarge::Deliveries));
    }

    #[test]
    fn order_bump() {
        let e = event(
            Trigger::OrderPaid,
            &[("l_main", "prod_main"), ("l_bump", "prod_bump")],
        );
        let rules = [
            rule("bump", Trigger::OrderPaid, product("prod_bump"), false),
            rule("uni_lines", Trigger::OrderPaid, Scope::Universal, true),
            rule("bump_lines", Trigger::OrderPaid, product("prod_bump"), true),
            rule("uni", Trigger::OrderPaid, Scope::Universal, false),
            rule("other", Trigger::OrderPaid, product("prod_x"), false),
            rule("invoice", Trigger::InvoiceCreated, Scope::Universal, false),
        ];
        let p = plan(&e, &rules).unwrap();
        assert_eq!(lines_of(&p, "bump"), vec![None]);
        assert_eq!(
            lines_of(&p, "uni_lines"),
            vec![Some("l_main".into()), Some("l_bump".into())]
        );
        assert_eq!(lines_of(&p, "bump_lines"), vec![Some("l_bump".into())]);
        assert_eq!(lines_of(&p, "uni"), vec![None]);
        assert!(lines_of(&p, "other").is_empty());
        assert!(lines_of(&p, "invoice").is_empty());
    }

    #[test]
    fn upsell_invoice_fires_upsell_and_universal_rules() {
        let mut e = event(Trigger::InvoiceCreated, &[("l1", "prod_up")]);
        e.upsell_id = Some("up_1".into());
        let rules = [
            rule(
                "upsell",
                Trigger::InvoiceCreated,
                Scope::Upsell { id: "up_1".into() },
                false,
            ),
            rule(
                "other_upsell",
                Trigger::InvoiceCreated,
                Scope::Upsell { id: "up_2".into() },
                false,
            ),
            rule("uni_a", Trigger::InvoiceCreated, Scope::Universal, false),
            rule("uni_b", Trigger::InvoiceCreated, Scope::Universal, false),
            rule("uni_paid", Trigger::OrderPaid, Scope::Universal, false),
        ];
        let fired: Vec<_> = plan(&e, &rules)
            .unwrap()
            .into_iter()
            .map(|d| d.rule_id)
            .collect();
        assert_eq!(fired, ["upsell", "uni_a", "uni_b"]);
    }

    #[test]
    fn payment_page_and_first_payment_only() {
        let mut e = event(Trigger::OrderPaid, &[]);
        let mut first_only = rule("first", Trigger::OrderPaid, Scope::Universal, false);
        first_only.first_payment_only = true;
        let rules = [
            rule(
                "page",
                Trigger::OrderPaid,
                Scope::PaymentPage {
                    id: "page_1".into(),
                },
                false,
            ),
            rule(
                "page2",
                Trigger::OrderPaid,
                Scope::PaymentPage {
                    id: "page_2".into(),
                },
                false,
            ),
            first_only,
        ];
        let fired = |e: &Event| {
            plan(e, &rules)
                .unwrap()
                .into_iter()
                .map(|d| d.rule_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(fired(&e), ["page", "first"]);
        e.first_payment = false;
        assert_eq!(fired(&e), ["page"]);
    }

    #[test]
    fn disabled_and_foreign_rules_never_fire() {
        let e = event(Trigger::OrderPaid, &[]);
        let mut off = rule("off", Trigger::OrderPaid, Scope::Universal, false);
        off.enabled = false;
        let mut foreign = rule("foreign", Trigger::OrderPaid, Scope::Universal, false);
        foreign.tenant_id = TenantId::stored("other_shop");
        assert!(plan(&e, &[off, foreign]).unwrap().is_empty());
    }

    fn arb_scope() -> impl Strategy<Value = Scope> {
        prop_oneof![
            Just(Scope::Universal),
            (0..4u8).prop_map(|p| Scope::Product {
                id: format!("p{p}")
            }),
            (0..3u8).prop_map(|p| Scope::PaymentPage {
                id: format!("page{p}")
            }),
            (0..3u8).prop_map(|p| Scope::Upsell {
                id: format!("up{p}")
            }),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = Rule> {
        (
            0..6usize,
            arb_scope(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..2u8,
        )
            .prop_map(|(t, scope, per_line, first_only, enabled, tenant)| Rule {
                tenant_id: if tenant == 0 {
                    TenantId::stored("shop")
                } else {
                    TenantId::stored("other")
                },
                first_payment_only: first_only,
                enabled,
                ..rule("r", Trigger::ALL[t], scope, per_line)
            })
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            0..6usize,
            proptest::collection::vec(0..4u8, 0..6),
            proptest::option::of(0..3u8),
            proptest::option::of(0..3u8),
            any::<bool>(),
        )
            .prop_map(|(t, products, page, upsell, first)| {
                let mut e = event(Trigger::ALL[t], &[]);
                e.lines = products
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Line {
                        id: format!("l{i}"),
                        product_id: format!("p{p}"),
                    })
                    .collect();
                e.payment_page_id = page.map(|p| format!("page{p}"));
                e.upsell_id = upsell.map(|u| format!("up{u}"));
                e.first_payment = first;
                e
            })
    }

    proptest! {
        #[test]
        fn fan_out_properties(event in arb_event(), rules in proptest::collection::vec(arb_rule(), 0..8)) {
            let rules: Vec<Rule> = rules.into_iter().enumerate()
                .map(|(i, r)| Rule { id: RuleId::stored(format!("r{i}")), ..r })
                .collect();
            let planned = plan(&event, &rules).unwrap();

            let mut ids: Vec<&str> = planned.iter().map(|d| d.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), planned.len(), "duplicate delivery ids");

            for d in &planned {
                let rule = rules.iter().find(|r| r.id == d.rule_id).unwrap();
                prop_assert_eq!(rule.trigger, event.trigger);
                prop_assert_eq!(&rule.tenant_id, &event.tenant_id);
                prop_assert!(rule.enabled);
                if let Some(line) = &d.line {
                    prop_assert!(rule.per_order_line);
                    prop_assert!(event.lines.contains(line), "line not in the order");
                    if let Scope::Product { id } = &rule.scope {
                        prop_assert_eq!(&line.product_id, id);
                    }
                }
            }

            // A store that fetches only the rules filed under the event's
            // scope keys misses none that fire.
            let keys = scope_keys(&event);
            for d in &planned {
                let rule = rules.iter().find(|r| r.id == d.rule_id).unwrap();
                prop_assert!(keys.contains(&rule.scope.key()), "{:?} not among {:?}", rule.scope, keys);
            }

            for rule in &rules {
                let fired = planned.iter().filter(|d| d.rule_id == rule.id).count();
                let expected = match matched_lines(rule, &event) {
                    None => 0,
                    Some(l) if rule.per_order_line && !l.is_empty() => l.len(),
                    Some(_) => 1,
                };
                prop_assert_eq!(fired, expected);
            }
        }
    }

    proptest::proptest! {
        /// A delivery exists exactly when the filter holds, judged here by
        /// plain Rust comparisons rather than the filter's own code.
        #[test]
        fn a_delivery_exists_exactly_when_the_filter_matches(
            amount in proptest::option::of(-50i64..50),
            op in 0usize..8,
            k in -50i64..50,
            products in proptest::collection::vec(0usize..3, 0..4),
            wanted in 0usize..3,
        ) {
            let ops = ["$gt", "$gte", "$lt", "$lte", "$eq", "$neq", "$in", "$nin"];
            let operand = if op >= 6 { serde_json::json!([k, k + 1]) } else { serde_json::json!(k) };
            let filter = serde_json::json!({"data": {"amount": {ops[op]: operand}}, "line": {"product_id": format!("p{wanted}")}});
            let holds = |a: Option<i64>| match (op, a) {
                (5, None) | (7, None) => true,
                (_, None) => false,
                (0, Some(a)) => a > k,
                (1, Some(a)) => a >= k,
                (2, Some(a)) => a < k,
                (3, Some(a)) => a <= k,
                (4, Some(a)) => a == k,
                (5, Some(a)) => a != k,
                (6, Some(a)) => a == k || a == k + 1,
                (_, Some(a)) => a != k && a != k + 1,
            };
            let mut e = event(Trigger::OrderPaid, &[]);
            let data = match amount {
                Some(a) => serde_json::json!({"amount": a}),
                None => serde_json::json!({}),
            };
            e.data = RawValue::from_string(data.to_string()).unwrap();
            e.lines = products
                .iter()
                .enumerate()
                .map(|(i, p)| Line { id: format!("l{i}"), product_id: format!("p{p}") })
                .collect();
            let mut r = rule("r", Trigger::OrderPaid, Scope::Universal, true);
            r.options.filter = Some(crate::filter::Filter::parse(&filter).unwrap());
            let planned = plan(&e, &[r]).unwrap();
            let expected: Vec<Option<String>> = if !holds(amount) {
                vec![]
            } else {
                e.lines
                    .iter()
                    .filter(|l| l.product_id == format!("p{wanted}"))
                    .map(|l| Some(l.id.clone()))
                    .collect()
            };
            // A per-line rule on an event without lines judges the event alone,
            // which has no line: the line condition fails.
            proptest::prop_assert_eq!(lines_of(&planned, "r"), expected);
        }
    }
}
