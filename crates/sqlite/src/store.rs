//! The `Store` port on SQLite.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use hookline_core::breaker::Health;
use hookline_core::delivery::{Attempt, Delivery, DeliveryStatus, Waiting};
use hookline_core::fanout::{MAX_DELIVERIES_PER_EVENT, PlannedDelivery, plan, scope_keys};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{
    Acceptance, DeliveryFilter, NewTenant, Page, RuleHealth, Store, StoreError, parse_row_cursor,
};
use hookline_core::record::{AttemptRecord, SubjectRecord, decode_rule, encode_rule};
use hookline_core::sealing::KeySealer;
use hookline_core::signing::{StoredKey, may_rotate};
use hookline_core::{Event, Rule, SigningKeys, Timestamp, WebhookKey};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::due::{Change, Fresh};
use crate::error::unavailable;
use crate::writer::Effects;
use crate::{SqliteBackend, sealing};

/// Writes planned events in the caller's transaction, each in its own
/// savepoint so one that fails leaves the others accepted.
fn write_turn(
    conn: &Connection,
    planned: Vec<Result<(Event, Plan), StoreError>>,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<Vec<Result<Acceptance, StoreError>>, StoreError> {
    let mut results = Vec::with_capacity(planned.len());
    for item in planned {
        let (event, deliveries) = match item {
            Ok((_, Plan::Answer(acceptance))) => {
                results.push(Ok(acceptance));
                continue;
            }
            Ok((event, Plan::Deliveries(deliveries))) => (event, deliveries),
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        conn.execute_batch("SAVEPOINT event").map_err(unavailable)?;
        let changed = effects.changes.len();
        let result = store_event(conn, &Arc::new(event), &deliveries, now, effects);
        let close = if result.is_ok() {
            "RELEASE event"
        } else {
            effects.changes.truncate(changed);
            "ROLLBACK TO event; RELEASE event"
        };
        conn.execute_batch(close).map_err(unavailable)?;
        results.push(result);
    }
    Ok(results)
}

/// The same failure for each of `count` events.
fn all_failed(count: usize, e: &StoreError) -> Vec<Result<Acceptance, StoreError>> {
    let message = e.to_string();
    (0..count)
        .map(|_| {
            Err(StoreError::unavailable(
                "accept",
                std::io::Error::other(message.clone()),
            ))
        })
        .collect()
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, StoreError> {
    cursor.map(parse_row_cursor).transpose()
}

pub(crate) fn rule_from_row(tenant_id: &TenantId, body: &str) -> Result<Rule, StoreError> {
    decode_rule(body, tenant_id).map_err(|e| StoreError::unreadable("rule", e))
}

pub(crate) fn signing_keys(
    conn: &Connection,
    sealer: &KeySealer,
    tenant_id: &str,
    now: Timestamp,
) -> Result<SigningKeys, StoreError> {
    Ok(SigningKeys::at(now, stored_keys(conn, sealer, tenant_id)?))
}

/// A tenant's webhook keys, opened, whether or not they sign now.
pub(crate) fn stored_keys(
    conn: &Connection,
    sealer: &KeySealer,
    tenant_id: &str,
) -> Result<Vec<StoredKey>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT key, created_at, expires_at FROM webhook_keys WHERE tenant_id = ?1")
        .map_err(unavailable)?;
    stmt.query_map([tenant_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })
    .map_err(unavailable)?
    .map(|row| {
        let (key, created_at, expires_at) = row.map_err(unavailable)?;
        Ok(StoredKey {
            key: sealing::open(sealer, &key)?,
            created_at: Timestamp::from_millis(created_at),
            expires_at: expires_at.map(Timestamp::from_millis),
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()
}

/// A delivery's attempt log, kept in its row as a JSON list of
/// [`AttemptRecord`]s (oldest first), so recording an attempt is the one
/// update that also sets the delivery's status.
fn attempts_from(column: Option<String>) -> rusqlite::Result<Vec<Attempt>> {
    let Some(text) = column else {
        return Ok(Vec::new());
    };
    serde_json::from_str::<Vec<AttemptRecord>>(&text)
        .map(|list| list.into_iter().map(Attempt::from).collect())
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
        })
}

/// A delivery's columns, with its rule's open circuit (`deliveries d LEFT
/// JOIN rule_health h`).
const DELIVERY_COLUMNS: &str = "d.seq, d.id, d.event_id, d.rule_id, d.status, d.line_id, d.created_at, d.attempt_count, h.open_until, d.attempts";
const DELIVERIES: &str =
    "deliveries d LEFT JOIN rule_health h ON h.tenant_id = d.tenant_id AND h.rule_id = d.rule_id";

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Delivery)> {
    let status: String = r.get(4)?;
    let status: DeliveryStatus = status.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok((
        r.get(0)?,
        Delivery {
            id: DeliveryId::stored(r.get::<_, String>(1)?),
            event_id: EventId::stored(r.get::<_, String>(2)?),
            rule_id: RuleId::stored(r.get::<_, String>(3)?),
            status,
            line_id: r.get(5)?,
            created_at: Timestamp::from_millis(r.get(6)?),
            attempt_count: r.get::<_, i64>(7)? as u64,
            attempts: attempts_from(r.get(9)?)?,
            waiting: Waiting::for_circuit(
                status,
                r.get::<_, Option<i64>>(8)?.map(Timestamp::from_millis),
            ),
        },
    ))
}

fn load_delivery(
    conn: &Connection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Delivery>, StoreError> {
    let sql =
        format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES} WHERE d.tenant_id = ?1 AND d.id = ?2");
    let found = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![tenant_id, id], delivery_from_row)
                .optional()
        })
        .map_err(unavailable)?;
    Ok(found.map(|(_, d)| d))
}

/// Puts a delivery (back) on the queue, due now, with a fresh receive count.
fn requeue(
    conn: &Connection,
    seq: i64,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let queued: Option<(String, String)> = conn
        .prepare_cached(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, receives = 0
             WHERE seq = ?1 RETURNING tenant_id, rule_id",
        )
        .and_then(|mut s| {
            s.query_row(params![seq, now.as_millis()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(unavailable)?;
    if let Some((tenant_id, rule_id)) = queued {
        effects.changes.push(Change::Queue {
            seq,
            tenant_id: tenant_id.into(),
            rule_id: rule_id.into(),
            at: now.as_millis(),
            receive_count: 0,
            fresh: None,
        });
    }
    Ok(())
}

/// What accepting an event will do, worked out on a read connection so that
/// the tenant's rules, filters and lines never run on the writer thread.
pub(crate) enum Plan {
    /// Answered without a write.
    Answer(Acceptance),
    /// Store the event with these deliveries.
    Deliveries(Vec<PlannedDelivery>),
}

/// Plans `event` against the tenant's rules filed under its scope keys, in
/// one statement that also says whether the event is a repeat (a repeat is
/// answered as one before any planning). The tenant is looked up only when
/// the caller does not know it.
pub(crate) fn plan_event(
    conn: &Connection,
    event: &Event,
    known_tenant: bool,
) -> Result<Plan, StoreError> {
    if !known_tenant
        && !conn
            .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
            .and_then(|mut s| s.exists([event.tenant_id.as_str()]))
            .map_err(unavailable)?
    {
        return Ok(Plan::Answer(Acceptance::UnknownTenant));
    }
    let keys = serde_json::to_string(&scope_keys(event))
        .map_err(|e| StoreError::unavailable("encode scope keys", e))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = ?1 AND id = ?2), r.body
             FROM (SELECT 1) LEFT JOIN (json_each(?4) AS k JOIN rules AS r
               ON r.tenant_id = ?1 AND r.trigger = ?3 AND r.scope_key = k.value)
             ORDER BY k.key, r.seq",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map(
            params![
                event.tenant_id.as_str(),
                event.id.as_str(),
                event.trigger.as_str(),
                keys
            ],
            |r| Ok((r.get::<_, bool>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .map_err(unavailable)?;
    let mut rules = Vec::new();
    for row in rows {
        let (repeat, body) = row.map_err(unavailable)?;
        if repeat {
            return Ok(Plan::Answer(Acceptance::Duplicate));
        }
        if let Some(body) = body {
            rules.push(rule_from_row(&event.tenant_id, &body)?);
        }
    }
    Ok(match plan(event, &rules) {
        Ok(deliveries) => Plan::Deliveries(deliveries),
        Err(why) => Plan::Answer(Acceptance::TooLarge(why)),
    })
}

/// Stores a new event and its planned deliveries, queued, in the caller's
/// transaction: inserts only. A repeat that raced past the plan's check is
/// still answered as one here.
pub(crate) fn store_event(
    conn: &Connection,
    event: &Arc<Event>,
    deliveries: &[PlannedDelivery],
    now: Timestamp,
    effects: &mut Effects,
) -> Result<Acceptance, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (tenant_id, id, trigger, occurred_at, received_at, data, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                event.tenant_id.as_str(),
                event.id.as_str(),
                event.trigger.as_str(),
                event.occurred_at.as_millis(),
                now.as_millis(),
                event.data.get(),
                event
                    .subject
                    .as_ref()
                    .and_then(|s| serde_json::to_string(&SubjectRecord::from(s)).ok()),
            ])
        })
        .map_err(unavailable)?;
    if inserted == 0 {
        return Ok(Acceptance::Duplicate);
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, tenant_id, event_id, rule_id, line_id, line_product_id, status, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) RETURNING seq",
        )
        .map_err(unavailable)?;
    let tenant_id: std::sync::Arc<str> = event.tenant_id.as_str().into();
    for d in deliveries {
        let seq: i64 = insert
            .query_row(
                params![
                    d.id.as_str(),
                    event.tenant_id.as_str(),
                    event.id.as_str(),
                    d.rule_id.as_str(),
                    d.line.as_ref().map(|l| &l.id),
                    d.line.as_ref().map(|l| &l.product_id),
                    now.as_millis(),
                ],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        effects.changes.push(Change::Queue {
            seq,
            tenant_id: tenant_id.clone(),
            rule_id: d.rule_id.as_str().into(),
            at: now.as_millis(),
            receive_count: 0,
            fresh: Some(Fresh {
                delivery_id: d.id.to_string(),
                line: d.line.clone(),
                event: event.clone(),
            }),
        });
    }
    Ok(Acceptance::Accepted)
}

/// Plans and stores an event in the caller's (writer) transaction: only for
/// the events Hookline raises itself (`rule.disabled`), which are rare and
/// within the same fan-out budget.
pub(crate) fn accept(
    conn: &Connection,
    event: &Event,
    now: Timestamp,
    effects: &mut Effects,
) -> Result<Acceptance, StoreError> {
    match plan_event(conn, event, true)? {
        Plan::Answer(acceptance) => Ok(acceptance),
        Plan::Deliveries(deliveries) => {
            store_event(conn, &Arc::new(event.clone()), &deliveries, now, effects)
        }
    }
}

#[async_trait]
impl Store for SqliteBackend {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<(), StoreError> {
        let sealed = sealing::seal(self.sealer(), &tenant.webhook_key)?;
        let id = tenant.id.to_string();
        self.writer()
            .write(move |conn, _| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
                    .and_then(|mut s| s.exists([tenant.id.as_str()]))
                    .map_err(unavailable)?;
                if exists {
                    return Err(StoreError::Conflict(format!(
                        "tenant {:?} exists already",
                        tenant.id
                    )));
                }
                conn.execute(
                    "INSERT INTO tenants (id, api_key_hash, created_at) VALUES (?1, ?2, ?3)",
                    params![
                        tenant.id.as_str(),
                        tenant.api_key_hash,
                        tenant.created_at.as_millis()
                    ],
                )
                .and_then(|_| {
                    conn.execute(
                        "INSERT INTO webhook_keys (tenant_id, key, created_at) VALUES (?1, ?2, ?3)",
                        params![tenant.id.as_str(), sealed, tenant.created_at.as_millis()],
                    )
                })
                .map_err(unavailable)?;
                Ok(())
            })
            .await?;
        self.know_tenant(&id);
        Ok(())
    }

    async fn tenant_for_api_key(&self, api_key_hash: &str) -> Result<Option<TenantId>, StoreError> {
        let hash = api_key_hash.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT id FROM tenants WHERE api_key_hash = ?1")
                .and_then(|mut s| s.query_row([hash], |r| r.get::<_, String>(0)).optional())
                .map(|id| id.map(TenantId::stored))
                .map_err(unavailable)
        })
        .await
    }

    async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool, StoreError> {
        let id = tenant_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
                .and_then(|mut s| s.exists([id.as_str()]))
                .map_err(unavailable)
        })
        .await
    }

    async fn signing_keys(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError> {
        let id = tenant_id.to_owned();
        let sealer = self.sealer().clone();
        self.read(move |conn| signing_keys(conn, &sealer, &id, now))
            .await
    }

    async fn rotate_webhook_key(
        &self,
        tenant_id: &TenantId,
        key: WebhookKey,
        now: Timestamp,
        old_until: Timestamp,
    ) -> Result<(), StoreError> {
        let id = tenant_id.to_owned();
        let sealed = sealing::seal(self.sealer(), &key)?;
        self.writer()
            .write(move |conn, _| {
                let expiries: Vec<Option<i64>> = conn
                    .prepare_cached("SELECT expires_at FROM webhook_keys WHERE tenant_id = ?1")
                    .and_then(|mut st| st.query_map([id.as_str()], |r| r.get(0))?.collect())
                    .map_err(unavailable)?;
                if !may_rotate(now, expiries.into_iter().map(|e| e.map(Timestamp::from_millis))) {
                    return Err(StoreError::too_many_keys());
                }
                conn.execute(
                    "DELETE FROM webhook_keys WHERE tenant_id = ?1 AND expires_at <= ?2",
                    params![id.as_str(), now.as_millis()],
                )
                .and_then(|_| {
                    conn.execute(
                        "UPDATE webhook_keys SET expires_at = ?2 WHERE tenant_id = ?1 AND expires_at IS NULL",
                        params![id.as_str(), old_until.as_millis()],
                    )
                })
                .and_then(|_| {
                    conn.execute(
                        "INSERT INTO webhook_keys (tenant_id, key, created_at) VALUES (?1, ?2, ?3)",
                        params![id.as_str(), sealed, now.as_millis()],
                    )
                })
                .map_err(unavailable)?;
                Ok(())
            })
            .await?;
        self.forget_signing_keys(tenant_id);
        Ok(())
    }

    async fn insert_rule(&self, rule: &Rule, max_rules: usize) -> Result<(), StoreError> {
        let (owned, body) = (rule.clone(), encode_rule(rule));
        self.writer()
            .write(move |conn, _| {
                let rule = owned;
                let count: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM rules WHERE tenant_id = ?1")
                    .and_then(|mut s| s.query_row([rule.tenant_id.as_str()], |r| r.get(0)))
                    .map_err(unavailable)?;
                if count as usize >= max_rules {
                    return Err(StoreError::too_many_rules(max_rules));
                }
                conn.execute(
                    "INSERT INTO rules (id, tenant_id, trigger, body, rate_limit, scope_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![rule.id.as_str(), rule.tenant_id.as_str(), rule.trigger.as_str(), body, rule.options.rate_limit, rule.scope.key()],
                )
                .map_err(unavailable)?;
                Ok(())
            })
            .await?;
        self.rule_changed(&rule.tenant_id, &rule.id, rule.options.rate_limit);
        Ok(())
    }

    async fn rule(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
    ) -> Result<Option<Rule>, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), rule_id.to_owned());
        self.read(move |conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM rules WHERE tenant_id = ?1 AND id = ?2")
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), id.as_str()], |r| r.get(0))
                        .optional()
                })
                .map_err(unavailable)?;
            body.map(|b| rule_from_row(&tenant, &b)).transpose()
        })
        .await
    }

    async fn rules(
        &self,
        tenant_id: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rule>, StoreError> {
        let tenant = tenant_id.to_owned();
        let after = parse_cursor(cursor)?.unwrap_or(0);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, body FROM rules WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![tenant.as_str(), after, limit as i64 + 1], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Page::from_overfetch(rows, limit, |(seq, _)| seq.to_string())
                .try_map(|(_, body)| rule_from_row(&tenant, &body))
        })
        .await
    }

    async fn update_rule(&self, rule: &Rule) -> Result<bool, StoreError> {
        let (owned, body) = (rule.clone(), encode_rule(rule));
        let updated = self
            .writer()
            .write(move |conn, _| {
                let rule = owned;
                let updated = conn
                    .execute(
                        "UPDATE rules SET trigger = ?3, body = ?4, rate_limit = ?5, scope_key = ?6 WHERE tenant_id = ?1 AND id = ?2",
                        params![rule.tenant_id.as_str(), rule.id.as_str(), rule.trigger.as_str(), body, rule.options.rate_limit, rule.scope.key()],
                    )
                    .map_err(unavailable)?;
                // An edit starts the rule healthy, as on DynamoDB.
                conn.execute(
                    "DELETE FROM rule_health WHERE tenant_id = ?1 AND rule_id = ?2",
                    params![rule.tenant_id.as_str(), rule.id.as_str()],
                )
                .map_err(unavailable)?;
                Ok(updated > 0)
            })
            .await?;
        self.rule_changed(&rule.tenant_id, &rule.id, rule.options.rate_limit);
        Ok(updated)
    }

    async fn delete_rule(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), rule_id.to_owned());
        let deleted = self
            .writer()
            .write(move |conn, _| {
                let deleted = conn
                    .execute(
                        "DELETE FROM rules WHERE tenant_id = ?1 AND id = ?2",
                        params![tenant.as_str(), id.as_str()],
                    )
                    .map_err(unavailable)?;
                crate::traffic::forget(conn, tenant.as_str(), id.as_str())?;
                Ok(deleted > 0)
            })
            .await?;
        self.rule_changed(tenant_id, rule_id, None);
        Ok(deleted)
    }

    async fn rule_health(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        now: Timestamp,
    ) -> Result<Option<RuleHealth>, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), rule_id.to_owned());
        let stored = self
            .read(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM rules WHERE tenant_id = ?1 AND id = ?2")
                    .and_then(|mut st| st.exists(params![tenant.as_str(), id.as_str()]))
                    .map_err(unavailable)?;
                if !exists {
                    return Ok(None);
                }
                let health = stored_health(conn, &tenant, &id)?;
                Ok(Some((
                    health,
                    crate::traffic::read(conn, &tenant, &id, now)?,
                )))
            })
            .await?;
        let Some((health, mut buckets)) = stored else {
            return Ok(None);
        };
        if let Ok(counted) = self.traffic().lock() {
            buckets.extend(counted.of_rule(tenant_id, rule_id));
        }
        let cap = self.options().fairness.per_rule;
        let concurrency = self.schedule().lock().ok().map(|s| {
            s.limits
                .get(rule_id.as_str())
                .copied()
                .unwrap_or_default()
                .limit(cap)
        });
        Ok(Some(RuleHealth {
            health,
            buckets,
            concurrency,
        }))
    }

    async fn accept_event(&self, event: &Event, now: Timestamp) -> Result<Acceptance, StoreError> {
        let event = event.clone();
        let known = self.knows_tenant(event.tenant_id.as_str());
        let (event, planned) = self
            .read(move |conn| plan_event(conn, &event, known).map(|p| (event, p)))
            .await?;
        if !known && !matches!(planned, Plan::Answer(Acceptance::UnknownTenant)) {
            self.know_tenant(event.tenant_id.as_str());
        }
        match planned {
            Plan::Answer(acceptance) => Ok(acceptance),
            Plan::Deliveries(deliveries) => {
                self.writer()
                    .write(move |conn, effects| {
                        store_event(conn, &Arc::new(event), &deliveries, now, effects)
                    })
                    .await
            }
        }
    }

    /// Planned together on a read connection, then written in as few
    /// transactions (fsyncs) as the delivery budget allows: one, unless the
    /// batch makes more deliveries than one event may.
    async fn accept_events(
        &self,
        events: &[Event],
        now: Timestamp,
    ) -> Vec<Result<Acceptance, StoreError>> {
        let events = events.to_vec();
        let count = events.len();
        let known: HashSet<String> = events
            .iter()
            .map(|e| e.tenant_id.as_str())
            .filter(|t| self.knows_tenant(t))
            .map(str::to_owned)
            .collect();
        let planned = self
            .read(move |conn| {
                Ok(events
                    .into_iter()
                    .map(|event| {
                        let known = known.contains(event.tenant_id.as_str());
                        plan_event(conn, &event, known).map(|p| (event, p))
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        let planned = match planned {
            Ok(planned) => planned,
            Err(e) => return all_failed(count, &e),
        };
        for (event, plan) in planned.iter().flatten() {
            if !matches!(plan, Plan::Answer(Acceptance::UnknownTenant)) {
                self.know_tenant(event.tenant_id.as_str());
            }
        }
        // A transaction holds at most one event's worth of deliveries (or
        // one event): a batch of heavy events is written in turns, with
        // other tenants' writes between them, not as one long stall.
        let mut results = Vec::with_capacity(count);
        let mut planned = planned.into_iter().peekable();
        while planned.peek().is_some() {
            let mut turn = Vec::new();
            let mut deliveries = 0;
            while let Some(item) = planned.next_if(|item| {
                let n = match item {
                    Ok((_, Plan::Deliveries(d))) => d.len(),
                    _ => 0,
                };
                let fits = turn.is_empty() || deliveries + n <= MAX_DELIVERIES_PER_EVENT;
                if fits {
                    deliveries += n;
                }
                fits
            }) {
                turn.push(item);
            }
            let size = turn.len();
            match self
                .writer()
                .write(move |conn, effects| write_turn(conn, turn, now, effects))
                .await
            {
                Ok(written) => results.extend(written),
                // The commit itself failed: nothing of this turn is durable.
                Err(e) => results.extend(all_failed(size, &e)),
            }
        }
        results
    }

    async fn delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        self.read(move |conn| load_delivery(conn, &tenant, &id))
            .await
    }

    async fn deliveries(
        &self,
        tenant_id: &TenantId,
        filter: &DeliveryFilter,
    ) -> Result<Page<Delivery>, StoreError> {
        let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES} WHERE d.tenant_id = ?");
        let mut args: Vec<Value> = vec![Value::Text(tenant_id.to_string())];
        let mut and = |clause: &str, v: Value| {
            sql.push_str(clause);
            args.push(v);
        };
        if let Some(rule) = &filter.rule_id {
            and(" AND d.rule_id = ?", Value::Text(rule.to_string()));
        }
        if let Some(event) = &filter.event_id {
            and(" AND d.event_id = ?", Value::Text(event.to_string()));
        }
        if let Some(status) = filter.status {
            and(" AND d.status = ?", Value::Text(status.as_str().to_owned()));
        }
        if let Some(before) = parse_cursor(filter.cursor.as_deref())? {
            and(" AND d.seq < ?", Value::Integer(before));
        }
        let limit = filter.limit;
        and(
            " ORDER BY d.seq DESC LIMIT ?",
            Value::Integer(limit as i64 + 1),
        );
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(args), delivery_from_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            Page::from_overfetch(rows, limit, |(seq, _)| seq.to_string()).try_map(|(_, d)| Ok(d))
        })
        .await
    }

    async fn retry_delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        let (tenant, id) = (tenant_id.to_owned(), id.to_owned());
        self.writer()
            .write(move |conn, effects| {
                let found: Option<(i64, String)> = conn
                    .prepare_cached(
                        "SELECT seq, status FROM deliveries WHERE tenant_id = ?1 AND id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![tenant.as_str(), id.as_str()], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(unavailable)?;
                let Some((seq, status)) = found else {
                    return Ok(None);
                };
                if status == DeliveryStatus::Pending.as_str() {
                    return Err(StoreError::AlreadyPending);
                }
                requeue(conn, seq, now, effects)?;
                load_delivery(conn, &tenant, &id)
            })
            .await
    }

    async fn recover(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        since: Timestamp,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        let (tenant, rule) = (tenant_id.to_owned(), rule_id.to_owned());
        self.writer()
            .write(move |conn, effects| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM rules WHERE tenant_id = ?1 AND id = ?2")
                    .and_then(|mut s| s.exists(params![tenant.as_str(), rule.as_str()]))
                    .map_err(unavailable)?;
                if !exists {
                    return Ok(None);
                }
                let seqs = conn
                    .prepare_cached(
                        "SELECT seq FROM deliveries WHERE tenant_id = ?1 AND rule_id = ?2 AND status = 'dead'
                         AND created_at >= ?3 AND created_at < ?4",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![tenant.as_str(), rule.as_str(), since.as_millis(), until.as_millis()], |r| {
                            r.get::<_, i64>(0)
                        })?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(unavailable)?;
                for &seq in &seqs {
                    requeue(conn, seq, now, effects)?;
                }
                Ok(Some(seqs.len() as u64))
            })
            .await
    }

    /// Kept in memory: one process serves the API on a SQLite file, and a
    /// count lost with a restart costs a tenant nothing but a few sends.
    async fn take_test_send(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let minute = now.as_secs() / 60;
        let mut sends = self.test_sends().lock().map_err(|_| {
            StoreError::unavailable("test send", std::io::Error::other("a lock holder panicked"))
        })?;
        // Counts of past minutes go before the map could grow with tenants.
        sends.retain(|_, (m, _)| *m == minute);
        let (_, count) = sends.entry(tenant_id.to_string()).or_insert((minute, 0));
        if *count >= limit {
            return Ok(false);
        }
        *count += 1;
        Ok(true)
    }
}

/// The rule's health as its `rule_health` row has it (none: healthy).
pub(crate) fn stored_health(
    conn: &Connection,
    tenant_id: &TenantId,
    rule_id: &RuleId,
) -> Result<Health, StoreError> {
    let stamp = |v: Option<i64>| v.map(Timestamp::from_millis);
    conn.prepare_cached(
        "SELECT attempts, failures, window_start, open_until, trips, failing_since
         FROM rule_health WHERE tenant_id = ?1 AND rule_id = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![tenant_id.as_str(), rule_id.as_str()], |r| {
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
    .map_err(unavailable)
    .map(Option::unwrap_or_default)
}
