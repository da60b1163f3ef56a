//! Which due deliveries the local deliverer takes next: oldest first, but no
//! rule past its share of the attempts in flight, no tenant past its share,
//! nothing of a rule whose circuit is open, and one probe at a time of a rule
//! whose cool-down is over, nor past a rule's rate limit. So a slow or
//! failing receiver, or one tenant's backlog, leaves the rest of the
//! deliverer to everyone else.

use std::collections::HashMap;

use hookline_core::Timestamp;
use hookline_core::breaker::{Breaker, Circuit, Health};
use hookline_core::concurrency::{AdaptiveLimit, START};
use hookline_core::ports::StoreError;
use hookline_core::rate::TokenBucket;
use rusqlite::{Connection, params};

use crate::error::unavailable;

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

/// A due queue row: its delivery, rule and tenant.
pub(crate) struct Due {
    pub seq: i64,
    pub rule_id: String,
    pub tenant_id: String,
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
    /// not closed, and which rules limit their rate.
    pub fn load(
        conn: &Connection,
        now: Timestamp,
        fairness: Fairness,
        breaker: &Breaker,
        buckets: &'b mut HashMap<String, TokenBucket>,
        limits: &'b HashMap<String, AdaptiveLimit>,
    ) -> Result<Self, StoreError> {
        let mut admission = Admission {
            fairness,
            now,
            in_flight_rules: HashMap::new(),
            in_flight_tenants: HashMap::new(),
            circuits: HashMap::new(),
            rate_limits: HashMap::new(),
            buckets,
            limits,
            exhausted: Vec::new(),
            held_back: false,
        };
        let mut limited = conn
            .prepare_cached("SELECT id, rate_limit FROM rules WHERE rate_limit IS NOT NULL")
            .map_err(unavailable)?;
        let rows = limited
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .map_err(unavailable)?;
        for row in rows {
            let (rule, limit) = row.map_err(unavailable)?;
            admission.rate_limits.insert(rule, limit);
        }
        admission
            .buckets
            .retain(|rule, _| admission.rate_limits.contains_key(rule));
        let mut leased = conn
            .prepare_cached(
                "SELECT rule_id, tenant_id FROM queue WHERE leased = 1 AND visible_at > ?1",
            )
            .map_err(unavailable)?;
        let rows = leased
            .query_map([now.as_millis()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (rule, tenant) = row.map_err(unavailable)?;
            *admission.in_flight_rules.entry(rule).or_default() += 1;
            *admission.in_flight_tenants.entry(tenant).or_default() += 1;
        }
        let mut unhealthy = conn
            .prepare_cached(
                "SELECT rule_id, open_until FROM rule_health WHERE open_until IS NOT NULL",
            )
            .map_err(unavailable)?;
        let rows = unhealthy
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(unavailable)?;
        for row in rows {
            let (rule, open_until) = row.map_err(unavailable)?;
            let health = Health {
                open_until: Some(Timestamp::from_millis(open_until)),
                ..Health::default()
            };
            admission
                .circuits
                .insert(rule, breaker.circuit(&health, now));
        }
        Ok(admission)
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
    pub fn admit(&mut self, due: &Due) -> bool {
        let admitted = self.try_admit(due);
        self.held_back |= !admitted;
        admitted
    }

    fn try_admit(&mut self, due: &Due) -> bool {
        let rule = self.in_flight_rules.get(&due.rule_id).copied().unwrap_or(0);
        let tenant = self
            .in_flight_tenants
            .get(&due.tenant_id)
            .copied()
            .unwrap_or(0);
        if rule >= self.rule_limit(&due.rule_id) || tenant >= self.fairness.per_tenant {
            return false;
        }
        // A token is taken last, so only for a delivery that goes.
        if let Some(&limit) = self.rate_limits.get(&due.rule_id) {
            let now = self.now;
            let bucket = self
                .buckets
                .entry(due.rule_id.clone())
                .or_insert_with(|| TokenBucket::new(limit, now));
            if !bucket.try_take(limit, now) {
                if !self.exhausted.contains(&due.rule_id) {
                    self.exhausted.push(due.rule_id.clone());
                }
                return false;
            }
        }
        *self.in_flight_rules.entry(due.rule_id.clone()).or_default() += 1;
        *self
            .in_flight_tenants
            .entry(due.tenant_id.clone())
            .or_default() += 1;
        true
    }

    /// The rules and tenants that can take nothing more now, as JSON lists
    /// for a query to skip.
    fn blocked(&self) -> (String, String) {
        let rules: Vec<&String> = self
            .in_flight_rules
            .keys()
            .chain(self.circuits.keys())
            .filter(|r| self.in_flight_rules.get(*r).copied().unwrap_or(0) >= self.rule_limit(r))
            .collect();
        let tenants: Vec<&String> = self
            .in_flight_tenants
            .iter()
            .filter(|(_, n)| **n >= self.fairness.per_tenant)
            .map(|(t, _)| t)
            .collect();
        (
            serde_json::to_string(&rules).unwrap_or_else(|_| "[]".into()),
            serde_json::to_string(&tenants).unwrap_or_else(|_| "[]".into()),
        )
    }
}

fn due_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Due>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params, |r| {
                Ok(Due {
                    seq: r.get(0)?,
                    rule_id: r.get(1)?,
                    tenant_id: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)
}

/// How many of the newest due rows the second look examines: enough to find
/// a newcomer behind a long backlog, few enough to cost microseconds.
const NEWEST_WALK: i64 = 512;

/// How long a second look that found nothing stands for the same blocked
/// rules and tenants: the most a newcomer waits for it.
const NEWEST_PAUSE_MS: i64 = 50;

/// Picks up to `max` due deliveries: first from the oldest due rows; when
/// those are all taken by rules or tenants at their share, from the newest
/// due rows of the others, so a newcomer is not stuck behind a backlog.
pub(crate) fn pick(
    conn: &Connection,
    now: Timestamp,
    max: usize,
    admission: &mut Admission<'_>,
    last_fruitless: &mut Option<(Timestamp, String)>,
) -> Result<Vec<i64>, StoreError> {
    let window = max + 64;
    let oldest = due_rows(
        conn,
        "SELECT delivery_seq, rule_id, tenant_id FROM queue WHERE visible_at <= ?1
         ORDER BY visible_at LIMIT ?2",
        params![now.as_millis(), window as i64],
    )?;
    let mut picked = Vec::new();
    for due in &oldest {
        if picked.len() == max {
            return Ok(picked);
        }
        if admission.admit(due) {
            picked.push(due.seq);
        }
    }
    if picked.len() == max || oldest.len() < window {
        return Ok(picked);
    }
    let (rules, tenants) = admission.blocked();
    // A look that found nothing is not repeated for the same blocked rules
    // and tenants within NEWEST_PAUSE: when one rule has its whole share in
    // flight with a backlog behind it, every receive would walk again.
    let key = format!("{rules}{tenants}");
    if let Some((at, last)) = last_fruitless.as_ref()
        && *last == key
        && now.as_millis() - at.as_millis() < NEWEST_PAUSE_MS
    {
        return Ok(picked);
    }
    let newest = due_rows(
        conn,
        "SELECT delivery_seq, rule_id, tenant_id FROM
           (SELECT delivery_seq, rule_id, tenant_id, visible_at FROM queue WHERE visible_at <= ?1
            ORDER BY visible_at DESC LIMIT ?2)
         WHERE rule_id NOT IN (SELECT value FROM json_each(?3))
           AND tenant_id NOT IN (SELECT value FROM json_each(?4))
         ORDER BY visible_at",
        params![now.as_millis(), NEWEST_WALK, rules, tenants],
    )?;
    let before = picked.len();
    for due in &newest {
        if picked.len() == max {
            break;
        }
        if !picked.contains(&due.seq) && admission.admit(due) {
            picked.push(due.seq);
        }
    }
    *last_fruitless = (picked.len() == before).then_some((now, key));
    Ok(picked)
}
