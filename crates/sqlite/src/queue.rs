//! The `DeliveryQueue` port on SQLite: SQS's lease, visibility timeout and
//! receive count, in the same file and transactions as the store.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use hookline_core::breaker::{Breaker, Health};
use hookline_core::delivery::ATTEMPT_LOG_LIMIT;
use hookline_core::event::{Line, Subject};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{
    DeliveryJob, DeliveryQueue, Destination, KeyCache, Lease, Outcome, Settlement, StoreError,
};
use hookline_core::record::{SubjectRecord, encode_rule};
use hookline_core::sealing::KeySealer;
use hookline_core::{Event, Timestamp, Trigger};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;

use crate::SqliteBackend;
use crate::error::unavailable;
use crate::schedule::{Admission, pick};
use crate::store::{accept, rule_from_row, signing_keys};
use crate::writer::Effects;

#[derive(Debug, thiserror::Error)]
#[error("the settlement's lease is not one this queue handed out")]
struct ForeignLease;

/// The queue row (its `delivery_seq`) and receive count a settlement's lease
/// names.
fn queue_row(lease: Option<&Lease>) -> Result<(i64, u32), StoreError> {
    match lease {
        Some(Lease::Row { seq, receive_count }) => Ok((*seq, *receive_count)),
        _ => Err(StoreError::unavailable("settle", ForeignLease)),
    }
}

fn load_job(
    conn: &Connection,
    seq: i64,
    receive_count: u32,
    now: Timestamp,
    sealer: &KeySealer,
    keys: &mut KeyCache,
) -> Result<Option<DeliveryJob>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT d.id, d.tenant_id, d.event_id, d.rule_id, d.line_id, d.line_product_id,
                    e.trigger, e.occurred_at, e.data, r.body, h.failures, h.open_until, e.subject
             FROM deliveries d
             JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
             LEFT JOIN rules r ON r.tenant_id = d.tenant_id AND r.id = d.rule_id
             LEFT JOIN rule_health h ON h.tenant_id = d.tenant_id AND h.rule_id = d.rule_id
             WHERE d.seq = ?1",
        )
        .and_then(|mut s| {
            s.query_row([seq], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    Health {
                        failures: r.get::<_, Option<u32>>(10)?.unwrap_or(0),
                        open_until: r.get::<_, Option<i64>>(11)?.map(Timestamp::from_millis),
                        ..Health::default()
                    },
                    r.get::<_, Option<String>>(12)?,
                ))
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some((
        delivery_id,
        tenant_id,
        event_id,
        rule_id,
        line_id,
        product_id,
        trigger,
        occurred_at,
        data,
        rule,
        rule_health,
        subject,
    )) = row
    else {
        return Ok(None);
    };
    let trigger: Trigger = trigger
        .parse()
        .map_err(|e| StoreError::unreadable("event trigger", e))?;
    let tenant_id = TenantId::stored(tenant_id);
    let rule = rule.map(|b| rule_from_row(&tenant_id, &b)).transpose()?;
    if !keys.contains(&tenant_id) {
        keys.insert(&tenant_id, signing_keys(conn, sealer, &tenant_id, now)?);
    }
    Ok(Some(DeliveryJob {
        delivery_id: DeliveryId::stored(delivery_id),
        keys: keys.get(&tenant_id),
        tenant_id,
        event_id: EventId::stored(event_id),
        rule_id: RuleId::stored(rule_id),
        trigger,
        occurred_at: Timestamp::from_millis(occurred_at),
        line: Line::from_parts(line_id, product_id),
        data: RawValue::from_string(data).map_err(|e| StoreError::unreadable("event data", e))?,
        subject: subject
            .map(|s| serde_json::from_str::<SubjectRecord>(&s).map(Subject::from))
            .transpose()
            .map_err(|e| StoreError::unreadable("event subject", e))?,
        destination: Destination::of(rule.as_ref()),
        lease: Some(Lease::Row { seq, receive_count }),
        // Held-back deliveries are never received here, so every receive is
        // an attempt: the count is the attempt number, as on SQS.
        attempt: receive_count,
        rule_health,
    }))
}

fn settle_one(conn: &Connection, s: &Settlement) -> Result<(), StoreError> {
    let (seq, receive_count) = queue_row(s.lease.as_ref())?;

    // Only the lease this attempt ran under may move the queue: if it expired
    // and the delivery was received again, that receive settles it.
    let (moved, status) = match s.outcome {
        Outcome::Succeeded | Outcome::Dead => {
            let n = conn
                .prepare_cached("DELETE FROM queue WHERE delivery_seq = ?1 AND receive_count = ?2")
                .and_then(|mut st| st.execute(params![seq, receive_count]))
                .map_err(unavailable)?;
            (n > 0, s.status().as_str())
        }
        Outcome::RetryAt(at) => {
            let n = conn
                .prepare_cached(
                    "UPDATE queue SET visible_at = ?3, leased = 0 WHERE delivery_seq = ?1 AND receive_count = ?2",
                )
                .and_then(|mut st| st.execute(params![seq, receive_count, at.as_millis()]))
                .map_err(unavailable)?;
            (n > 0, s.status().as_str())
        }
    };
    // The attempt is logged whatever the lease: it happened.
    let n: Option<i64> = conn
        .prepare_cached(
            "UPDATE deliveries SET attempt_count = attempt_count + 1,
                status = CASE WHEN ?2 THEN ?3 ELSE status END
             WHERE seq = ?1 RETURNING attempt_count",
        )
        .and_then(|mut st| {
            st.query_row(params![seq, moved, status], |r| r.get(0))
                .optional()
        })
        .map_err(unavailable)?;
    let Some(n) = n else { return Ok(()) };
    let a = &s.attempt;
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_seq, n, at, status_code, duration_ms, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            seq,
            n,
            a.at.as_millis(),
            a.status_code,
            a.duration_ms as i64,
            a.error,
            a.response_body
        ])
    })
    .map_err(unavailable)?;
    // The log keeps the most recent attempts; `attempt_count` keeps the total.
    conn.prepare_cached("DELETE FROM attempts WHERE delivery_seq = ?1 AND n <= ?2")
        .and_then(|mut st| st.execute(params![seq, n - ATTEMPT_LOG_LIMIT as i64]))
        .map_err(unavailable)?;
    Ok(())
}

/// Tells the rule's breaker what the attempt showed ([`Breaker::after`]),
/// reading the rule's health as it is now (attempts of one rule settle side
/// by side, so the job's view of it may be old). A rule that has failed for
/// `disable_after` without a success is disabled, and the tenant's
/// `rule.disabled` rules are told, in the same transaction.
fn record_health(
    conn: &Connection,
    s: &Settlement,
    breaker: &Breaker,
    rows: &Mutex<HashSet<(String, String)>>,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let Some(ok) = s.receiver_ok else {
        return Ok(());
    };
    let key = (s.tenant_id.to_string(), s.rule_id.to_string());
    // A success of a rule with no health row changes nothing: the healthy
    // path runs no statement.
    if ok && rows.lock().is_ok_and(|r| !r.contains(&key)) {
        return Ok(());
    }
    let millis = |t: Option<Timestamp>| t.map(|t| t.as_millis());
    let stamp = |v: Option<i64>| v.map(Timestamp::from_millis);
    let before = conn
        .prepare_cached(
            "SELECT attempts, failures, window_start, open_until, trips, failing_since
             FROM rule_health WHERE tenant_id = ?1 AND rule_id = ?2",
        )
        .and_then(|mut st| {
            st.query_row(params![s.tenant_id.as_str(), s.rule_id.as_str()], |r| {
                Ok(Health {
                    attempts: r.get(0)?,
                    failures: r.get(1)?,
                    window_start: stamp(r.get(2)?),
                    open_until: stamp(r.get(3)?),
                    trips: r.get(4)?,
                    failing_since: stamp(r.get(5)?),
                })
            })
            .optional()
        })
        .map_err(unavailable)?
        .unwrap_or_default();
    let after = breaker.after(&before, ok, s.attempt.at);
    if after == before {
        return Ok(());
    }
    if after == Health::default() {
        conn.prepare_cached("DELETE FROM rule_health WHERE tenant_id = ?1 AND rule_id = ?2")
            .and_then(|mut st| st.execute(params![s.tenant_id.as_str(), s.rule_id.as_str()]))
            .map_err(unavailable)?;
        if let Ok(mut rows) = rows.lock() {
            rows.remove(&key);
        }
        return Ok(());
    }
    if let Ok(mut rows) = rows.lock() {
        rows.insert(key);
    }
    conn.prepare_cached(
        "INSERT OR REPLACE INTO rule_health
           (tenant_id, rule_id, attempts, failures, window_start, open_until, trips, failing_since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.tenant_id.as_str(),
            s.rule_id.as_str(),
            after.attempts,
            after.failures,
            millis(after.window_start),
            millis(after.open_until),
            after.trips,
            millis(after.failing_since),
        ])
    })
    .map_err(unavailable)?;
    if let Some(since) = after.failing_since
        && breaker.should_disable(since, s.attempt.at)
    {
        disable_for_failing(conn, s, since, effects)?;
    }
    Ok(())
}

/// Disables a rule that has failed too long and raises `rule.disabled`.
fn disable_for_failing(
    conn: &Connection,
    s: &Settlement,
    failing_since: Timestamp,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM rules WHERE tenant_id = ?1 AND id = ?2")
        .and_then(|mut st| {
            st.query_row(params![s.tenant_id.as_str(), s.rule_id.as_str()], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some(mut rule) = body.map(|b| rule_from_row(&s.tenant_id, &b)).transpose()? else {
        return Ok(());
    };
    let at = s.attempt.at;
    if !rule.disable_for_failing(at) {
        return Ok(());
    }
    conn.prepare_cached("UPDATE rules SET body = ?3 WHERE tenant_id = ?1 AND id = ?2")
        .and_then(|mut st| {
            st.execute(params![
                s.tenant_id.as_str(),
                s.rule_id.as_str(),
                encode_rule(&rule)
            ])
        })
        .map_err(unavailable)?;
    conn.prepare_cached("DELETE FROM rule_health WHERE tenant_id = ?1 AND rule_id = ?2")
        .and_then(|mut st| st.execute(params![s.tenant_id.as_str(), s.rule_id.as_str()]))
        .map_err(unavailable)?;
    let alert = Event::rule_disabled(&rule, at, failing_since, s.attempt.error.as_deref());
    accept(conn, &alert, at, effects)?;
    tracing::warn!(tenant = %s.tenant_id, rule = %s.rule_id, "disabled a rule that kept failing");
    Ok(())
}

#[async_trait]
impl DeliveryQueue for SqliteBackend {
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError> {
        let invisible_until = now.saturating_add(self.options().visibility_timeout);
        let (fairness, breaker) = (self.options().fairness, self.options().breaker);
        let sealer = self.sealer().clone();
        let backend = self.clone();
        self.writer()
            .write_relaxed(move |conn, _| {
                let mut state = backend
                    .schedule()
                    .lock()
                    .map_err(|_| StoreError::unavailable("receive", std::io::Error::other("a rate limiter panicked")))?;
                let state = &mut *state;
                let mut admission = Admission::load(
                    conn,
                    now,
                    fairness,
                    &breaker,
                    &mut state.buckets,
                    &state.limits,
                )?;
                let picked = pick(conn, now, max, &mut admission, &mut state.last_fruitless)?;
                state.held_back = admission.held_back();
                // One statement leases them all.
                let seqs = serde_json::to_string(&picked).unwrap_or_else(|_| "[]".into());
                let leased: Vec<(i64, u32)> = conn
                    .prepare_cached(
                        "UPDATE queue SET leased = 1, visible_at = ?2, receive_count = receive_count + 1
                         WHERE delivery_seq IN (SELECT value FROM json_each(?1))
                         RETURNING delivery_seq, receive_count",
                    )
                    .and_then(|mut st| {
                        st.query_map(params![seqs, invisible_until.as_millis()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect()
                    })
                    .map_err(unavailable)?;
                let mut keys = KeyCache::default();
                let mut jobs = Vec::with_capacity(leased.len());
                for (seq, receive_count) in leased {
                    match load_job(conn, seq, receive_count, now, &sealer, &mut keys)? {
                        Some(job) => jobs.push(job),
                        // A queue entry without its delivery cannot be sent; drop it.
                        None => {
                            conn.execute("DELETE FROM queue WHERE delivery_seq = ?1", [seq])
                                .map_err(unavailable)?;
                        }
                    }
                }
                Ok(jobs)
            })
            .await
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError> {
        let (breaker, cap) = (self.options().breaker, self.options().fairness.per_rule);
        if let Ok(mut state) = self.schedule().lock() {
            for s in &settlements {
                state
                    .limits
                    .entry(s.rule_id.to_string())
                    .or_default()
                    .observe(&s.attempt, s.receiver_ok, cap);
            }
        }
        let backend = self.clone();
        self.writer()
            .write_relaxed(move |conn, effects| {
                // A settled attempt frees its rule's and tenant's share: look
                // again if the last receive left work behind for one.
                effects.queued |= backend.schedule().lock().is_ok_and(|s| s.held_back);
                for s in &settlements {
                    settle_one(conn, s)?;
                    record_health(conn, s, &breaker, backend.health_rows(), effects)?;
                    effects.queued |= matches!(s.outcome, Outcome::RetryAt(_));
                }
                Ok(())
            })
            .await
    }
}
