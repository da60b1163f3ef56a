//! The `Store` port on DynamoDB, with SQS where a store operation queues work
//! (ingest queues the event for the router; retry and recover queue deliveries).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::delivery::{Delivery, DeliveryStatus, Waiting};
use hookline_core::id::{DeliveryId, RuleId, TenantId};
use hookline_core::ports::{
    Acceptance, DeliveryFilter, NewTenant, Page, RuleHealth, Store, StoreError, key_cursor,
    parse_key_cursor,
};
use hookline_core::signing::{StoredKey, may_rotate};
use hookline_core::{Event, Rule, SigningKeys, Timestamp, WebhookKey};

use crate::backend::AwsBackend;
use crate::items::*;
use crate::log::{LIST_SCAN_BUDGET, Span};
use crate::messages::{DeliveryMessage, EventMessage};
use crate::table::{from_item, to_item};

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A Query for the items of partition `pk` whose sort key starts with `prefix`.
fn in_partition(q: QueryFluentBuilder, pk: &str, prefix: &str) -> QueryFluentBuilder {
    q.key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
        .expression_attribute_names("#pk", PARTITION_KEY)
        .expression_attribute_names("#sk", SORT_KEY)
        .expression_attribute_values(":pk", s(pk))
        .expression_attribute_values(":prefix", s(prefix))
}

fn webhook_key_item(tenant_id: &str, sealed: String, at: Timestamp) -> WebhookKeyItem {
    WebhookKeyItem {
        pk: tenant_pk(tenant_id),
        sk: webhook_key_sk(at.as_millis()),
        key: sealed,
        created_at: at.as_millis(),
        expires_at: None,
    }
}

impl AwsBackend {
    async fn webhook_keys(&self, tenant_id: &str) -> Result<Vec<WebhookKeyItem>, StoreError> {
        let pk = tenant_pk(tenant_id);
        self.table
            .query(
                |q| in_partition(q, &pk, WEBHOOK_KEY_PREFIX),
                None,
                usize::MAX,
            )
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Queues deliveries again and marks them pending, ten at a time: the
    /// messages go out first, then each delivery is marked pending only if it
    /// is still as it was read (same status, same attempt count). A crash in
    /// between leaves a delivery as it was (dead ones recoverable again) with
    /// a message on its way, never pending without one; a deliverer faster
    /// than the mark has settled it already, and the mark leaves it alone.
    async fn requeue(&self, tenant: &str, items: Vec<DeliveryItem>) -> Result<(), StoreError> {
        for chunk in items.chunks(10) {
            let messages: Vec<DeliveryMessage> = chunk
                .iter()
                .map(|d| DeliveryMessage {
                    tenant_id: tenant.to_owned(),
                    line: d.line(),
                    delivery_id: d.id.clone(),
                    event_id: d.event_id.clone(),
                    rule_id: d.rule_id.clone(),
                    event: None,
                    replay: true,
                    check: false,
                    attempts_before: 0,
                    trace: None,
                })
                .collect();
            self.queues
                .send_json(&self.settings.deliveries_queue_url, &messages)
                .await?;
            for d in chunk {
                let count = d.attempt_count.unwrap_or(0).to_string();
                self.table
                    .update(delivery_key(tenant, &d.id), |u| {
                        u.update_expression("SET #s = :pending")
                            .condition_expression(
                                "#s = :was AND (attribute_not_exists(attempt_count) OR attempt_count = :count)",
                            )
                            .expression_attribute_names("#s", "status")
                            .expression_attribute_values(
                                ":pending",
                                s(DeliveryStatus::Pending.as_str()),
                            )
                            .expression_attribute_values(":was", s(&d.status))
                            .expression_attribute_values(":count", AttributeValue::N(count))
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

impl AwsBackend {
    /// Makes `event` durable once, answering what became of it and the
    /// message to queue for the router. A repeat is queued again, marked so:
    /// its first ingest may have stored it and failed before queueing it, and
    /// the router makes only the deliveries it finds missing. The stored
    /// event comes back from the failed condition, at no read.
    async fn put_event(
        &self,
        event: &Event,
        now: Timestamp,
    ) -> Result<(Acceptance, Option<EventMessage>), StoreError> {
        if !self.tenant_exists(&event.tenant_id).await? {
            return Ok((Acceptance::UnknownTenant, None));
        }
        let item = EventItem::new(event, now);
        let (acceptance, message) = match self.table.put_new(to_item(&item)?).await? {
            None => (Acceptance::Accepted, EventMessage::of(item, false)),
            Some(stored) => (
                Acceptance::Duplicate,
                EventMessage::of(from_item(stored)?, true),
            ),
        };
        let message = EventMessage {
            trace: event.trace.clone(),
            ..message
        };
        Ok((acceptance, Some(message)))
    }

    /// Seals anew a key an earlier Hookline stored in clear or without the
    /// tenant's encryption context, the first time it is read; if this
    /// function may not seal (no KMS key), the next one will.
    async fn seal_in_place(&self, tenant_id: &str, item: &WebhookKeyItem, key: &WebhookKey) {
        let sealed = match self.vault.seal(tenant_id, key).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a webhook key stored in clear stays so for now");
                return;
            }
        };
        let result = self
            .table
            .update(key_of(item), |u| {
                u.update_expression("SET #k = :sealed")
                    .condition_expression("#k = :plain")
                    .expression_attribute_names("#k", "key")
                    .expression_attribute_values(":sealed", s(sealed))
                    .expression_attribute_values(":plain", s(&item.key))
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not seal a webhook key stored in clear");
        }
    }

    async fn delivery_item(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<DeliveryItem>, StoreError> {
        self.table.get(delivery_key(tenant_id, id)).await
    }

    /// Says why pending deliveries wait, from their rules' circuits: one
    /// batched read of the rules of the pending ones, none when none is.
    async fn with_waits(
        &self,
        tenant_id: &str,
        mut deliveries: Vec<Delivery>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut rules: Vec<&str> = deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
            .map(|d| d.rule_id.as_str())
            .collect();
        rules.sort_unstable();
        rules.dedup();
        if rules.is_empty() {
            return Ok(deliveries);
        }
        let keys = rules.iter().map(|r| rule_key(tenant_id, r)).collect();
        let open: HashMap<String, Timestamp> = self
            .table
            .batch_get(keys)
            .await?
            .into_iter()
            .map(from_item::<RuleItem>)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|r| {
                let until = r.open_until?;
                let id = r.sk.strip_prefix(RULE_PREFIX)?.to_owned();
                Some((id, Timestamp::from_millis(until)))
            })
            .collect();
        for d in &mut deliveries {
            d.waiting = Waiting::for_circuit(d.status, open.get(d.rule_id.as_str()).copied());
        }
        Ok(deliveries)
    }
}

#[async_trait]
impl Store for AwsBackend {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<(), StoreError> {
        let at = tenant.created_at;
        let new = Some("attribute_not_exists(pk)");
        let writes = vec![
            self.table.put_write(
                to_item(&TenantItem {
                    pk: tenant_pk(&tenant.id),
                    sk: TENANT_SK.into(),
                    created_at: at.as_millis(),
                    rule_count: 0,
                })?,
                new,
            )?,
            self.table.put_write(
                to_item(&ApiKeyItem {
                    pk: api_key_pk(&tenant.api_key_hash),
                    sk: API_KEY_SK.into(),
                    tenant_id: tenant.id.to_string(),
                })?,
                new,
            )?,
            self.table.put_write(
                to_item(&webhook_key_item(
                    &tenant.id,
                    self.vault.seal(&tenant.id, &tenant.webhook_key).await?,
                    at,
                ))?,
                new,
            )?,
        ];
        match self.table.transact(writes).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Conflict(format!(
                "tenant {:?} exists already",
                tenant.id
            ))),
        }
    }

    async fn tenant_for_api_key(&self, api_key_hash: &str) -> Result<Option<TenantId>, StoreError> {
        Ok(self
            .table
            .get::<ApiKeyItem>(api_key_key(api_key_hash))
            .await?
            .map(|k| TenantId::stored(k.tenant_id)))
    }

    async fn tenant_exists(&self, tenant_id: &TenantId) -> Result<bool, StoreError> {
        if self
            .known_tenants
            .lock()
            .is_ok_and(|k| k.contains(tenant_id.as_str()))
        {
            return Ok(true);
        }
        let exists = self
            .table
            .get::<TenantItem>(tenant_key(tenant_id))
            .await?
            .is_some();
        if exists && let Ok(mut known) = self.known_tenants.lock() {
            known.insert(tenant_id.to_string());
        }
        Ok(exists)
    }

    async fn signing_keys(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError> {
        let mut stored = Vec::new();
        for k in self.webhook_keys(tenant_id).await? {
            let (key, in_clear) = self.vault.open(tenant_id, &k.key).await?;
            if in_clear {
                self.seal_in_place(tenant_id, &k, &key).await;
            }
            stored.push(StoredKey {
                key,
                created_at: Timestamp::from_millis(k.created_at),
                expires_at: k.expires_at.map(Timestamp::from_millis),
            });
        }
        Ok(SigningKeys::at(now, stored))
    }

    async fn rotate_webhook_key(
        &self,
        tenant_id: &TenantId,
        key: WebhookKey,
        now: Timestamp,
        old_until: Timestamp,
    ) -> Result<(), StoreError> {
        let stored = self.webhook_keys(tenant_id).await?;
        let expiries = stored
            .iter()
            .map(|k| k.expires_at.map(Timestamp::from_millis));
        if !may_rotate(now, expiries) {
            return Err(StoreError::too_many_keys());
        }
        let mut writes = Vec::new();
        for k in stored {
            match k.expires_at {
                None => writes.push(self.table.update_write(key_of(&k), |u| {
                    u.update_expression("SET expires_at = :until")
                        .expression_attribute_values(
                            ":until",
                            AttributeValue::N(old_until.as_millis().to_string()),
                        )
                })?),
                Some(e) if e <= now.as_millis() => {
                    writes.push(self.table.delete_write(key_of(&k), None)?)
                }
                Some(_) => {}
            }
        }
        writes.push(self.table.put_write(
            to_item(&webhook_key_item(
                tenant_id,
                self.vault.seal(tenant_id, &key).await?,
                now,
            ))?,
            None,
        )?);
        // Two rotations at once: one transaction wins, the other is told.
        self.table.transact(writes).await?.map_err(|_| {
            StoreError::Conflict("the webhook key changed meanwhile; try again".into())
        })
    }

    async fn insert_rule(&self, rule: &Rule, max_rules: usize) -> Result<(), StoreError> {
        let count = self.table.update_write(tenant_key(&rule.tenant_id), |u| {
            u.update_expression("SET rule_count = if_not_exists(rule_count, :zero) + :one")
                .condition_expression("attribute_not_exists(rule_count) OR rule_count < :max")
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":max", AttributeValue::N(max_rules.to_string()))
        })?;
        let put = self.table.put_write(
            to_item(&RuleItem::new(rule))?,
            Some("attribute_not_exists(pk)"),
        )?;
        match self.table.transact(vec![count, put]).await? {
            Ok(()) => Ok(()),
            Err(failed) if failed.first() == Some(&true) => {
                Err(StoreError::too_many_rules(max_rules))
            }
            Err(_) => Err(StoreError::Conflict(format!(
                "rule {:?} exists already",
                rule.id
            ))),
        }
    }

    async fn rule(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
    ) -> Result<Option<Rule>, StoreError> {
        let item: Option<RuleItem> = self.table.get(rule_key(tenant_id, rule_id)).await?;
        item.map(|r| r.rule(tenant_id)).transpose()
    }

    async fn rule_health(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        now: Timestamp,
    ) -> Result<Option<RuleHealth>, StoreError> {
        let Some(item) = self
            .table
            .get::<RuleItem>(rule_key(tenant_id, rule_id))
            .await?
        else {
            return Ok(None);
        };
        let mut buckets = crate::traffic::read(self, tenant_id, rule_id, now).await?;
        if let Ok(counted) = self.traffic.lock() {
            buckets.extend(counted.of_rule(tenant_id, rule_id));
        }
        Ok(Some(RuleHealth {
            health: item.health(),
            buckets,
            concurrency: None,
        }))
    }

    async fn rules(
        &self,
        tenant_id: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rule>, StoreError> {
        let start = match cursor {
            None => None,
            Some(c) => match parse_key_cursor(c)?.as_slice() {
                [sk] if sk.starts_with(RULE_PREFIX) => Some(key(tenant_pk(tenant_id), sk.clone())),
                _ => return Err(StoreError::BadCursor),
            },
        };
        let pk = tenant_pk(tenant_id);
        let items = self
            .table
            .query(
                |q| {
                    in_partition(q, &pk, RULE_PREFIX)
                        .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
                },
                start,
                limit + 1,
            )
            .await?
            .into_iter()
            .map(from_item::<RuleItem>)
            .collect::<Result<Vec<_>, _>>()?;
        Page::from_overfetch(items, limit, |r| key_cursor(&[&r.sk])).try_map(|r| r.rule(tenant_id))
    }

    async fn update_rule(&self, rule: &Rule) -> Result<bool, StoreError> {
        let item = to_item(&RuleItem::new(rule))?;
        self.forget_rule(&rule.tenant_id, &rule.id);
        self.table.put(item, "attribute_exists(pk)").await
    }

    async fn delete_rule(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
    ) -> Result<bool, StoreError> {
        self.forget_rule(tenant_id, rule_id);
        let delete = self
            .table
            .delete_write(rule_key(tenant_id, rule_id), Some("attribute_exists(pk)"))?;
        let count = self.table.update_write(tenant_key(tenant_id), |u| {
            u.update_expression("SET rule_count = if_not_exists(rule_count, :one) - :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
        })?;
        Ok(self.table.transact(vec![delete, count]).await?.is_ok())
    }

    /// A conditional put makes the event durable exactly once; the router
    /// gets a reference on the events queue. A repeat of an event the router
    /// has not finished is queued again (routing is idempotent), so a crash
    /// between the put and the send loses nothing.
    async fn accept_event(&self, event: &Event, now: Timestamp) -> Result<Acceptance, StoreError> {
        let (acceptance, message) = self.put_event(event, now).await?;
        if let Some(m) = message {
            self.queues
                .send_json(&self.settings.events_queue_url, &[m])
                .await?;
        }
        Ok(acceptance)
    }

    /// The puts side by side, then one send for all (SendMessageBatch, ten
    /// a call): at most ten SQS calls for a batch of a hundred. An event that
    /// stands twice in the batch is put once, and its later copies are
    /// duplicates of the first, as they would be one request at a time.
    async fn accept_events(
        &self,
        events: &[Event],
        now: Timestamp,
    ) -> Vec<Result<Acceptance, StoreError>> {
        let first_of = |i: usize| {
            events[..i]
                .iter()
                .position(|e| e.tenant_id == events[i].tenant_id && e.id == events[i].id)
        };
        let firsts: Vec<usize> = (0..events.len())
            .filter(|i| first_of(*i).is_none())
            .collect();
        let puts =
            futures_util::future::join_all(firsts.iter().map(|&i| self.put_event(&events[i], now)))
                .await;
        let messages: Vec<&EventMessage> = puts
            .iter()
            .filter_map(|p| p.as_ref().ok().and_then(|(_, m)| m.as_ref()))
            .collect();
        let sent = self
            .queues
            .send_json(&self.settings.events_queue_url, &messages)
            .await
            .map_err(|e| e.to_string());
        let mut answers: Vec<Result<Acceptance, String>> = puts
            .into_iter()
            .map(|put| match (put, &sent) {
                (Err(e), _) => Err(e.to_string()),
                // Durable but not queued: the same event sent again is
                // queued then.
                (Ok((_, Some(_))), Err(e)) => Err(e.clone()),
                (Ok((acceptance, _)), _) => Ok(acceptance),
            })
            .collect();
        let mut results = Vec::with_capacity(events.len());
        for i in 0..events.len() {
            let answer = match first_of(i) {
                None => answers.remove(0),
                Some(first) => match &results[first] {
                    Ok(Acceptance::Accepted | Acceptance::Duplicate) => Ok(Acceptance::Duplicate),
                    Ok(other) => Ok(*other),
                    Err(e) => Err(format!("{e}")),
                },
            };
            results.push(
                answer.map_err(|e| StoreError::unavailable("accept", std::io::Error::other(e))),
            );
        }
        results
    }

    async fn delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(item) = self.delivery_item(tenant_id, id).await? else {
            return Ok(None);
        };
        let delivery = item.delivery()?;
        Ok(self.with_waits(tenant_id, vec![delivery]).await?.pop())
    }

    async fn deliveries(
        &self,
        tenant_id: &TenantId,
        filter: &DeliveryFilter,
    ) -> Result<Page<Delivery>, StoreError> {
        let mut before = match &filter.cursor {
            None => None,
            Some(c) => match parse_key_cursor(c)?.as_slice() {
                [sort] if sort.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
                    Some(sort.clone())
                }
                _ => return Err(StoreError::BadCursor),
            },
        };
        let wanted = |d: &DeliveryItem| {
            filter
                .rule_id
                .as_ref()
                .is_none_or(|r| d.rule_id == r.as_str())
                && filter
                    .event_id
                    .as_ref()
                    .is_none_or(|e| d.event_id == e.as_str())
                && filter.status.is_none_or(|st| d.status == st.as_str())
        };
        // Read a page's worth at a time until the page is full (one more
        // tells that another follows), the log ends or the budget is spent.
        let mut found = Vec::new();
        let mut scanned = 0;
        let next_cursor = loop {
            let stretch = self
                .read_log(tenant_id, Span::Before(before.as_deref()), filter.limit + 1)
                .await?;
            for item in stretch.items {
                if wanted(&item) && found.len() <= filter.limit {
                    found.push(item);
                }
            }
            scanned += filter.limit + 1;
            if found.len() > filter.limit {
                found.truncate(filter.limit);
                break found.last().map(DeliveryItem::log_sort);
            }
            before = stretch.last;
            if !stretch.more {
                break None;
            }
            if scanned >= LIST_SCAN_BUDGET {
                break before;
            }
        };
        let data = found
            .into_iter()
            .map(DeliveryItem::delivery)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            data: self.with_waits(tenant_id, data).await?,
            next_cursor: next_cursor.map(|sort| key_cursor(&[&sort])),
        })
    }

    async fn retry_delivery(
        &self,
        tenant_id: &TenantId,
        id: &DeliveryId,
        _now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(item) = self.delivery_item(tenant_id, id).await? else {
            return Ok(None);
        };
        let mut delivery = item.clone().delivery()?;
        if delivery.status == DeliveryStatus::Pending {
            return Err(StoreError::AlreadyPending);
        }
        self.requeue(tenant_id, vec![item]).await?;
        delivery.status = DeliveryStatus::Pending;
        Ok(Some(delivery))
    }

    async fn recover(
        &self,
        tenant_id: &TenantId,
        rule_id: &RuleId,
        since: Timestamp,
        until: Timestamp,
        _now: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        if self.rule(tenant_id, rule_id).await?.is_none() {
            return Ok(None);
        }
        let (from, to) = (
            format!("{:013}#", since.as_millis()),
            format!("{:013}#", until.as_millis()),
        );
        let dead: Vec<DeliveryItem> = self
            .read_log(tenant_id, Span::Between(&from, &to), usize::MAX)
            .await?
            .items
            .into_iter()
            .filter(|d| d.rule_id == rule_id.as_str() && d.status == DeliveryStatus::Dead.as_str())
            .collect();
        let count = dead.len() as u64;
        if !dead.is_empty() {
            self.requeue(tenant_id, dead).await?;
        }
        Ok(Some(count))
    }

    async fn take_test_send(
        &self,
        tenant_id: &TenantId,
        now: Timestamp,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let minute = now.as_secs() / 60;
        self.table
            .take_slot(test_send_key(tenant_id, minute), limit, (minute + 2) * 60)
            .await
    }
}

fn key_of(k: &WebhookKeyItem) -> Item {
    key(k.pk.clone(), k.sk.clone())
}
