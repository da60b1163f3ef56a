//! Which due deliveries the local deliverer takes next: oldest first, but no
//! rule past its share of the attempts in flight, no tenant past its share,
//! nothing of a rule whose circuit is open, and one probe at a time of a rule
//! whose cool-down is over, nor past a rule's rate limit. So a slow or
//! failing receiver, or one tenant's backlog, leaves the rest of the
//! deliverer to everyone else.

use std::collections::HashMap;

use std::collections::HashSet;

use hookline_core::Timestamp;
use hookline_core::breaker::{Breaker, Circuit, Health};
use hookline_core::concurrency::{AdaptiveLimit, START};
use hookline_core::rate::TokenBucket;

use crate::due::{DueQueue, Entry};

/// How many attempts may be in flight at once per rule (the most its
/// adaptive limit may reach) and per tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fairness {
    pub per_rule: usize,
    pub per_tenant: usize,
    /// Whether a rule's share follows its receiver's answers (from
    /// [`START`] up to `per_rule`); off, it is `per_rule` from the start, as
    /// the conformance suite wants of a queue held to SQS's semantics.
    pub adaptive: bool,
}

impl Default for Fairness {
    fn default() -> Self {
        Fairness {
            per_rule: 128,
            per_tenant: 192,
            adaptive: true,
        }
    }
}

/// The shares in use as one receive hands out work.
pub(crate) struct Admission<'b> {
    fairness: Fairness,
    now: Timestamp,
    in_flight_rules: HashMap<String, usize>,
    in_flight_tenants: HashMap<String, usize>,
    circuits: HashMap<String, Circuit>,
    /// Rules that limit their deliveries a second, and their buckets.
    rate_limits: HashMap<String, u32>,
    buckets: &'b mut HashMap<String, TokenBucket>,
    /// Rules whose receivers have shown how much they take at once.
    limits: &'b HashMap<String, AdaptiveLimit>,
    /// Rate-limited rules out of tokens for now.
    exhausted: Vec<String>,
    held_back: bool,
}

impl<'b> Admission<'b> {
    /// What is in flight now (unexpired leases), which rules' circuits are
    /// not closed (from each open circuit's `open_until`), and which rules
    /// limit their rate.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        queue: &DueQueue,
        now: Timestamp,
        fairness: Fairness,
        breaker: &Breaker,
        open_circuits: impl IntoIterator<Item = (String, i64)>,
        rate_limits: HashMap<String, u32>,
        buckets: &'b mut HashMap<String, TokenBucket>,
        limits: &'b HashMap<String, AdaptiveLimit>,
    ) -> Self {
        let mut admission = Admission {
            fairness,
            now,
            in_flight_rules: HashMap::new(),
            in_flight_tenants: HashMap::new(),
            circuits: HashMap::new(),
            rate_limits,
            buckets,
            limits,
            exhausted: Vec::new(),
            held_back: false,
        };
        admission
            .buckets
            .retain(|rule, _| admission.rate_limits.contains_key(rule));
        for e in queue.in_flight(now.as_millis()) {
            *admission
                .in_flight_rules
                .entry(e.rule_id.to_string())
                .or_default() += 1;
            *admission
                .in_flight_tenants
                .entry(e.tenant_id.to_string())
                .or_default() += 1;
        }
        for (rule, open_until) in open_circuits {
            let health = Health {
                open_until: Some(Timestamp::from_millis(open_until)),
                ..Health::default()
            };
            admission
                .circuits
                .insert(rule, breaker.circuit(&health, now));
        }
        admission
    }

    fn rule_limit(&self, rule: &str) -> usize {
        match self.circuits.get(rule) {
            Some(Circuit::Open { .. }) => 0,
            Some(Circuit::Probing) => 1,
            Some(Circuit::Closed) | None if !self.fairness.adaptive => self.fairness.per_rule,
            Some(Circuit::Closed) | None => self
                .limits
                .get(rule)
                .map_or(START.min(self.fairness.per_rule), |l| {
                    l.limit(self.fairness.per_rule)
                }),
        }
    }

    /// Whether anything due was refused in this receive.
    pub fn held_back(&self) -> bool {
        self.held_back
    }

    /// Takes `due` if its rule and tenant have room, counting it.
    pub fn admit(&mut self, due: &Entry) -> bool {
        let admitted = self.try_admit(due);
        self.held_back |= !admitted;
        admitted
    }

    fn try_admit(&mut self, due: &Entry) -> bool {
        let rule = self
            .in_flight_rules
            .get(&*due.rule_id)
            .copied()
            .unwrap_or(0);
        let tenant = self
            .in_flight_tenants
            .get(&*due.tenant_id)
            .copied()
            .unwrap_or(0);
        if rule >= self.rule_limit(&due.rule_id) || tenant >= self.fairness.per_tenant {
            return false;
        }
        // A token is taken last, so only for a delivery that goes.
        if let Some(&limit) = self.rate_limits.get(&*due.rule_id) {
            let now = self.now;
            let bucket = self
                .buckets
                .entry(due.rule_id.to_string())
                .or_insert_with(|| TokenBucket::new(limit, now));
            if !bucket.try_take(limit, now) {
                if !self.exhausted.iter().any(|r| **r == *due.rule_id) {
                    self.exhausted.push(due.rule_id.to_string());
                }
                return false;
            }
        }
        *self
            .in_flight_rules
            .entry(due.rule_id.to_string())
            .or_default() += 1;
        *self
            .in_flight_tenants
            .entry(due.tenant_id.to_string())
            .or_default() += 1;
        true
    }

    /// The rules and tenants that can take nothing more now.
    fn blocked(&self) -> (HashSet<String>, HashSet<String>) {
        let rules = self
            .in_flight_rules
            .keys()
            .chain(self.circuits.keys())
            .filter(|r| self.in_flight_rules.get(*r).copied().unwrap_or(0) >= self.rule_limit(r))
            .cloned()
            .collect();
        let tenants = self
            .in_flight_tenants
            .iter()
            .filter(|(_, n)| **n >= self.fairness.per_tenant)
            .map(|(t, _)| t.clone())
            .collect();
        (rules, tenants)
    }
}

/// How many of the newest due deliveries the second look examines: enough
/// to find a newcomer behind a long backlog, few enough to cost microseconds.
const NEWEST_WALK: usize = 512;

/// How long a second look that found nothing stands for the same blocked
/// rules and tenants: the most a newcomer waits for it.
const NEWEST_PAUSE_MS: i64 = 50;

/// Picks up to `max` due deliveries: first from the oldest due; when those
/// are all taken by rules or tenants at their share, from the newest due of
/// the others, so a newcomer is not stuck behind a backlog.
pub(crate) fn pick(
    queue: &DueQueue,
    now: Timestamp,
    max: usize,
    admission: &mut Admission<'_>,
    last_fruitless: &mut Option<(Timestamp, String)>,
) -> Vec<i64> {
    let window = max + 64;
    let mut picked = Vec::new();
    let mut examined = 0;
    for (seq, due) in queue.oldest_due(now.as_millis()).take(window) {
        examined += 1;
        if picked.len() == max {
            return picked;
        }
        if admission.admit(due) {
            picked.push(seq);
        }
    }
    if picked.len() == max || examined < window {
        return picked;
    }
    let (rules, tenants) = admission.blocked();
    // A look that found nothing is not repeated for the same blocked rules
    // and tenants within NEWEST_PAUSE: when one rule has its whole share in
    // flight with a backlog behind it, every receive would walk again.
    let mut names: Vec<&String> = rules.iter().chain(&tenants).collect();
    names.sort();
    let key = format!("{names:?}");
    if let Some((at, last)) = last_fruitless.as_ref()
        && *last == key
        && now.as_millis() - at.as_millis() < NEWEST_PAUSE_MS
    {
        return picked;
    }
    let before = picked.len();
    let newest: Vec<(i64, &Entry)> = queue
        .newest_due(now.as_millis())
        .take(NEWEST_WALK)
        .filter(|(_, e)| !rules.contains(&*e.rule_id) && !tenants.contains(&*e.tenant_id))
        .collect();
    // Oldest of them first, as the first look.
    for (seq, due) in newest.into_iter().rev() {
        if picked.len() == max {
            break;
        }
        if !picked.contains(&seq) && admission.admit(due) {
            picked.push(seq);
        }
    }
    *last_fruitless = (picked.len() == before).then_some((now, key));
    picked
}
