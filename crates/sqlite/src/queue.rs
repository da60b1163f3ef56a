//! The `DeliveryQueue` port on SQLite: SQS's lease, visibility timeout and
//! receive count on the queue in memory ([`crate::due`]), which receiving
//! leases from without a write; the jobs' events and rules are read on a
//! read connection, and an attempt is recorded by one update of its
//! delivery, on the writer, which then moves the queue.

use std::sync::Mutex;

use async_trait::async_trait;
use hookline_core::breaker::{Breaker, Health};
use hookline_core::delivery::ATTEMPT_LOG_LIMIT;
use hookline_core::event::{Line, Subject};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{
    DeliveryJob, DeliveryQueue, Destination, KeyCache, Lease, Outcome, Settlement, StoreError,
};
use hookline_core::record::{AttemptRecord, SubjectRecord, encode_rule};
use hookline_core::rule::DisabledReason;
use hookline_core::{Event, SigningKeys, Timestamp, Trigger};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;

use crate::SqliteBackend;
use crate::due::{Change, DueQueue, Fresh};
use crate::error::unavailable;
use crate::schedule::{Admission, pick};
use crate::store::{accept, rule_from_row, stored_health, stored_keys};
use crate::traffic;
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
    backend: &SqliteBackend,
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
    backend.keep_rule(&RuleId::stored(rule_id.as_str()), rule.clone());
    if !keys.contains(&tenant_id) {
        let stored = match backend.kept_signing_keys(&tenant_id, now) {
            Some(kept) => kept,
            None => {
                let read = stored_keys(conn, backend.sealer(), &tenant_id)?;
                backend.keep_signing_keys(&tenant_id, now, read.clone());
                read
            }
        };
        keys.insert(&tenant_id, SigningKeys::at(now, stored));
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
        // The queue keeps the trace, if any.
        trace: None,
    }))
}

/// Records an attempt and, when it ran under the delivery's latest lease,
/// the status it leads to: one update of the delivery's row (the attempt is
/// logged whatever the lease: it happened). The queue moves once that is
/// committed.
fn settle_one(
    conn: &Connection,
    s: &Settlement,
    queue: &Mutex<DueQueue>,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let (seq, receive_count) = queue_row(s.lease.as_ref())?;
    let moved = queue
        .lock()
        .is_ok_and(|q| q.holds_lease(seq, receive_count));
    let next = match s.outcome {
        Outcome::Succeeded | Outcome::Dead => None,
        Outcome::RetryAt(at) => Some(at.as_millis()),
    };
    let attempt = serde_json::to_string(&AttemptRecord::from(&s.attempt))
        .map_err(|e| StoreError::unavailable("encode attempt", e))?;
    conn.prepare_cached(
        "UPDATE deliveries SET
           attempt_count = attempt_count + 1,
           attempts = CASE WHEN json_array_length(COALESCE(attempts, '[]')) >= ?5
             THEN json_remove(json_insert(COALESCE(attempts, '[]'), '$[#]', json(?4)), '$[0]')
             ELSE json_insert(COALESCE(attempts, '[]'), '$[#]', json(?4)) END,
           status = CASE WHEN ?2 THEN ?3 ELSE status END,
           next_attempt_at = CASE WHEN ?2 THEN ?6 ELSE next_attempt_at END,
           receives = CASE WHEN ?2 THEN ?7 ELSE receives END
         WHERE seq = ?1",
    )
    .and_then(|mut st| {
        st.execute(params![
            seq,
            moved,
            s.status().as_str(),
            attempt,
            ATTEMPT_LOG_LIMIT as i64,
            next,
            receive_count,
        ])
    })
    .map_err(unavailable)?;
    if moved {
        effects.changes.push(Change::Settle {
            seq,
            receive_count,
            next,
        });
    }
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
    backend: &SqliteBackend,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let rows = backend.health();
    let Some(ok) = s.receiver_ok else {
        return Ok(());
    };
    let key = (s.tenant_id.to_string(), s.rule_id.to_string());
    // A success of a rule with no health row changes nothing: the healthy
    // path runs no statement.
    if ok && rows.lock().is_ok_and(|r| !r.contains_key(&key)) {
        return Ok(());
    }
    let millis = |t: Option<Timestamp>| t.map(|t| t.as_millis());
    let before = stored_health(conn, &s.tenant_id, &s.rule_id)?;
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
    if after.open_until.is_some() && after.open_until != before.open_until {
        backend.circuit_opened();
    }
    if let Ok(mut rows) = rows.lock() {
        rows.insert(key.clone(), millis(after.open_until));
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
        disable_rule(conn, s, DisabledReason::Failing, since, backend, effects)?;
    }
    Ok(())
}

/// Disables the rule of `s` for `reason` and raises `rule.disabled`, in the
/// settle's transaction; what receiving keeps of the rule goes with it.
fn disable_rule(
    conn: &Connection,
    s: &Settlement,
    reason: DisabledReason,
    failing_since: Timestamp,
    backend: &SqliteBackend,
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
    if !rule.disable(reason, at) {
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
    backend.forget_rule(s.rule_id.as_str());
    if let Ok(mut rows) = backend.health().lock() {
        rows.remove(&(s.tenant_id.to_string(), s.rule_id.to_string()));
    }
    let alert = Event::rule_disabled(&rule, at, failing_since, s.attempt.error.as_deref());
    accept(conn, &alert, at, effects)?;
    tracing::warn!(tenant = %s.tenant_id, rule = %s.rule_id, reason = ?reason, "disabled a rule");
    Ok(())
}

/// A delivery this receive leased, with what this process kept of it (its
/// tenant and rule with it) if this is its first receive, and the trace its
/// attempt continues.
struct Taken {
    seq: i64,
    receive_count: u32,
    fresh: Option<(Fresh, std::sync::Arc<str>, std::sync::Arc<str>)>,
    trace: Option<String>,
}

impl SqliteBackend {
    /// Leases up to `max` due deliveries in the queue, as fairness, the
    /// circuits and the rate limits allow: no statement.
    fn lease(&self, max: usize, now: Timestamp) -> Result<Vec<Taken>, StoreError> {
        let poisoned =
            || StoreError::unavailable("receive", std::io::Error::other("a lock was poisoned"));
        let until = now
            .saturating_add(self.options().visibility_timeout)
            .as_millis();
        let open_circuits: Vec<(String, i64)> = self
            .health()
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .filter_map(|((_, rule), open_until)| open_until.map(|at| (rule.clone(), at)))
            .collect();
        let rate_limits = self.rate_limits().lock().map_err(|_| poisoned())?.clone();
        let mut state = self.schedule().lock().map_err(|_| poisoned())?;
        let state = &mut *state;
        let mut queue = self.queue().lock().map_err(|_| poisoned())?;
        let mut admission = Admission::new(
            &queue,
            now,
            self.options().fairness,
            &self.options().breaker,
            open_circuits,
            rate_limits,
            &mut state.buckets,
            &state.limits,
        );
        let picked = pick(&queue, now, max, &mut admission, &mut state.last_fruitless);
        state.held_back = admission.held_back();
        let mut leased = Vec::with_capacity(picked.len());
        for seq in picked {
            let Some(lease) = queue.lease(seq, until) else {
                continue;
            };
            let fresh = lease.fresh.and_then(|f| {
                let e = queue.entry(seq)?;
                Some((f, e.tenant_id.clone(), e.rule_id.clone()))
            });
            leased.push(Taken {
                seq,
                receive_count: lease.receive_count,
                fresh,
                trace: lease.trace.as_deref().map(str::to_owned),
            });
        }
        Ok(leased)
    }

    /// A first attempt's job from what this process kept of its delivery,
    /// when its rule and its tenant's keys are kept too: no statement.
    fn fresh_job(&self, leased: &mut Taken, now: Timestamp) -> Option<DeliveryJob> {
        let (_, tenant, rule_id) = leased.fresh.as_ref()?;
        let tenant_id = TenantId::stored(&**tenant);
        let rule = self.kept_rule(rule_id)?;
        let keys = self.kept_signing_keys(&tenant_id, now)?;
        let (fresh, _, rule_id) = leased.fresh.take()?;
        let event = fresh.event;
        Some(DeliveryJob {
            delivery_id: DeliveryId::stored(fresh.delivery_id),
            keys: SigningKeys::at(now, keys),
            tenant_id,
            event_id: event.id.clone(),
            rule_id: RuleId::stored(&*rule_id),
            trigger: event.trigger,
            occurred_at: event.occurred_at,
            line: fresh.line,
            data: event.data.clone(),
            subject: event.subject.clone(),
            destination: Destination::of(rule.as_ref()),
            lease: Some(Lease::Row {
                seq: leased.seq,
                receive_count: leased.receive_count,
            }),
            attempt: leased.receive_count,
            rule_health: Health::default(),
            trace: leased.trace.take(),
        })
    }

    /// Writes every tally of rules' traffic counted and not yet written, as
    /// of `now`: what a process that stops does last, so that a restart
    /// loses no counts.
    pub async fn write_traffic(&self, now: Timestamp) -> Result<(), StoreError> {
        let tallies = match self.traffic().lock() {
            Ok(mut counted) => counted.take_all(),
            Err(_) => return Ok(()),
        };
        if tallies.is_empty() {
            return Ok(());
        }
        self.writer()
            .write(move |conn, _| traffic::write(conn, tallies, now))
            .await
    }

    /// Reads pending deliveries the queue let spill into the file back into
    /// it, once it has drained to half its size.
    async fn refill(&self) -> Result<(), StoreError> {
        let spills = match self.queue().lock() {
            Ok(mut q) if q.spilled && q.len() < q.cap() / 2 => q.start_refill(),
            _ => return Ok(()),
        };
        let cap = self.options().queue_in_memory;
        let read = self
            .read(move |conn| {
                let mut read = DueQueue::new(cap);
                crate::pending(conn, &mut read).map_err(unavailable)?;
                Ok(read)
            })
            .await;
        // A failed read leaves the queue spilled, to be read again.
        let (read, spills, result) = match read {
            Ok(read) => (read, spills, Ok(())),
            Err(e) => (DueQueue::new(cap), u64::MAX, Err(e)),
        };
        if let Ok(mut queue) = self.queue().lock() {
            queue.finish_refill(read, spills);
        }
        result
    }
}

#[async_trait]
impl DeliveryQueue for SqliteBackend {
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError> {
        self.refill().await?;
        let mut jobs = Vec::new();
        let mut unread = Vec::new();
        for mut leased in self.lease(max, now)? {
            match self.fresh_job(&mut leased, now) {
                Some(job) => jobs.push(job),
                None => unread.push((leased.seq, leased.receive_count, leased.trace)),
            }
        }
        if unread.is_empty() {
            return Ok(jobs);
        }
        let backend = self.clone();
        let (read, gone) = self
            .read(move |conn| {
                let mut keys = KeyCache::default();
                let (mut jobs, mut gone) = (Vec::with_capacity(unread.len()), Vec::new());
                for (seq, receive_count, trace) in unread {
                    match load_job(conn, seq, receive_count, now, &backend, &mut keys)? {
                        Some(job) => jobs.push(DeliveryJob { trace, ..job }),
                        None => gone.push(seq),
                    }
                }
                Ok((jobs, gone))
            })
            .await?;
        jobs.extend(read);
        // A queued delivery whose row is gone cannot be sent; drop it.
        if !gone.is_empty()
            && let Ok(mut queue) = self.queue().lock()
        {
            gone.into_iter().for_each(|seq| queue.remove(seq));
        }
        Ok(jobs)
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
        let due_traffic = settlements
            .iter()
            .map(|s| s.attempt.at)
            .max()
            .and_then(|latest| {
                let mut counted = self.traffic().lock().ok()?;
                settlements.iter().for_each(|s| s.count_in(&mut counted));
                let tallies = counted.take_due(
                    latest,
                    self.options().traffic_every,
                    traffic::WRITES_PER_COMMIT,
                );
                (!tallies.is_empty()).then_some((tallies, latest))
            });
        let backend = self.clone();
        self.writer()
            .write_relaxed(move |conn, effects| {
                // A settled attempt frees its rule's and tenant's share: look
                // again if the last receive left work behind for one.
                effects.queued |= backend.schedule().lock().is_ok_and(|s| s.held_back);
                for s in &settlements {
                    settle_one(conn, s, backend.queue(), effects)?;
                    record_health(conn, s, &breaker, &backend, effects)?;
                    if s.gone {
                        let at = s.attempt.at;
                        disable_rule(conn, s, DisabledReason::Gone, at, &backend, effects)?;
                    }
                }
                if let Some((tallies, latest)) = due_traffic {
                    traffic::write(conn, tallies, latest)?;
                }
                Ok(())
            })
            .await
    }
}
