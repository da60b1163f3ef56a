//! The `Store` port on DynamoDB, with SQS where a store operation queues work
//! (ingest queues the event for the router; retry and recover queue deliveries).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use hookline_core::delivery::{Delivery, DeliveryStatus};
use hookline_core::ports::{Acceptance, DeliveryFilter, NewTenant, Page, Store, StoreError};
use hookline_core::{Event, Rule, SigningKeys, Timestamp, WebhookKey};
use serde::de::DeserializeOwned;

use crate::calls::Calls;
use crate::items::*;
use crate::messages::{DeliveryMessage, EventMessage};
use crate::settings::AwsSettings;
use crate::{GSI1, GSI1_SORT_KEY, SORT_KEY, aws_error};

/// DynamoDB and SQS together: Hookline's scale-out backend. Cheap to clone.
#[derive(Clone)]
pub struct AwsBackend {
    pub(crate) ddb: aws_sdk_dynamodb::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) settings: Arc<AwsSettings>,
    pub(crate) calls: Arc<Calls>,
    /// Tenants known to exist: ingest checks every event's tenant.
    known_tenants: Arc<Mutex<HashSet<String>>>,
    /// Tenant and receipt handle of each delivery received through the
    /// `DeliveryQueue` port, for its settlement.
    pub(crate) receipts: Arc<Mutex<HashMap<String, crate::queue::Lease>>>,
}

pub(crate) fn to_item<T: serde::Serialize>(v: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| aws_error("encode item", e))
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| aws_error("decode item", e))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Cursors are the hex of the last item's key, so they are opaque and checkable.
fn encode_cursor(parts: &[&str]) -> String {
    hex::encode(parts.join("\u{1f}"))
}

fn decode_cursor(cursor: &str) -> Result<Vec<String>, StoreError> {
    let bytes = hex::decode(cursor).map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    Ok(text.split('\u{1f}').map(str::to_owned).collect())
}

/// A conditional write refused because its condition did not hold.
fn is_conditional_failure<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// A transaction cancelled because one of its conditions did not hold.
fn is_cancelled_by_condition(e: &SdkError<TransactWriteItemsError>) -> bool {
    e.as_service_error()
        .and_then(|se| match se {
            TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        })
        .is_some_and(|c| {
            c.cancellation_reasons()
                .iter()
                .any(|r| r.code() == Some("ConditionalCheckFailed"))
        })
}

pub(crate) fn delivery_from(item: DeliveryItem) -> Delivery {
    Delivery {
        id: item.id,
        event_id: item.event_id,
        rule_id: item.rule_id,
        status: item.status.parse().unwrap_or(DeliveryStatus::Pending),
        line_id: item.line_id,
        created_at: Timestamp::from_millis(item.created_at),
        attempts: item.attempts,
    }
}

impl AwsBackend {
    pub fn new(config: &aws_config::SdkConfig, settings: AwsSettings) -> Self {
        Self {
            ddb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            settings: Arc::new(settings),
            calls: Arc::new(Calls::default()),
            known_tenants: Arc::default(),
            receipts: Arc::default(),
        }
    }

    /// The same clients and counters, pointed at other resources.
    pub fn with_settings(&self, settings: AwsSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            receipts: Arc::default(),
            ..self.clone()
        }
    }

    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        key: Item,
    ) -> Result<Option<T>, StoreError> {
        self.calls.read();
        let out = self
            .ddb
            .get_item()
            .table_name(&self.settings.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// A Query on the table (or the index), every page.
    /// A Query page after page: `query` sets everything but the start key.
    /// Stops when there are no more pages or at least `enough` items came.
    async fn query_pages(
        &self,
        query: impl Fn() -> QueryFluentBuilder,
        mut start: Option<Item>,
        enough: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        loop {
            self.calls.read();
            let out = query()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() || items.len() >= enough {
                return Ok(items);
            }
        }
    }

    /// Every item with partition key `pk` (on the table, or the index when
    /// `index` is given) whose sort key starts with `sk_prefix`.
    async fn query_all(
        &self,
        index: Option<&str>,
        pk_name: &str,
        pk: &str,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let sk_name = if index.is_some() {
            GSI1_SORT_KEY
        } else {
            SORT_KEY
        };
        let condition = match sk_prefix {
            Some(_) => format!("{pk_name} = :pk AND begins_with({sk_name}, :prefix)"),
            None => format!("{pk_name} = :pk"),
        };
        let mut values = HashMap::from([(":pk".to_owned(), s(pk))]);
        if let Some(prefix) = sk_prefix {
            values.insert(":prefix".to_owned(), s(prefix));
        }
        let query = || {
            self.ddb
                .query()
                .table_name(&self.settings.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(&condition)
                .set_expression_attribute_values(Some(values.clone()))
        };
        self.query_pages(query, None, usize::MAX).await
    }

    pub(crate) async fn rules_for(
        &self,
        tenant: &str,
        trigger: &str,
    ) -> Result<Vec<Rule>, StoreError> {
        let items = self
            .query_all(
                Some(GSI1),
                "gsi1pk",
                &rules_by_trigger(tenant, trigger),
                None,
            )
            .await?;
        items
            .into_iter()
            .map(|i| {
                from_item::<RuleItem>(i)
                    .and_then(|r| r.rule(tenant).map_err(|e| aws_error("decode rule", e)))
            })
            .collect()
    }

    pub(crate) async fn keys_of(
        &self,
        tenant: &str,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError> {
        let items = self
            .query_all(None, "pk", &tenant_pk(tenant), Some("KEY#"))
            .await?;
        let mut keys: Vec<WebhookKeyItem> = items
            .into_iter()
            .map(from_item::<WebhookKeyItem>)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| k.expires_at.is_none_or(|e| e > now.as_millis()))
            .collect();
        keys.sort_by_key(|k| (k.expires_at.is_some(), std::cmp::Reverse(k.created_at)));
        keys.iter()
            .map(|k| WebhookKey::parse(&k.key).map_err(|e| aws_error("decode key", e)))
            .collect::<Result<Vec<_>, _>>()
            .map(SigningKeys)
    }

    pub(crate) async fn send_events(&self, messages: &[EventMessage]) -> Result<(), StoreError> {
        self.send_json(&self.settings.events_queue_url, messages)
            .await
    }

    pub(crate) async fn send_deliveries(
        &self,
        messages: &[DeliveryMessage],
    ) -> Result<(), StoreError> {
        self.send_json(&self.settings.deliveries_queue_url, messages)
            .await
    }

    async fn send_json<T: serde::Serialize>(
        &self,
        queue_url: &str,
        messages: &[T],
    ) -> Result<(), StoreError> {
        let bodies = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| aws_error("encode message", e))?;
        self.send_batch(queue_url, bodies).await
    }

    /// SendMessage for one body, SendMessageBatch for more, ten at a time.
    pub(crate) async fn send_batch(
        &self,
        queue_url: &str,
        bodies: Vec<String>,
    ) -> Result<(), StoreError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        if let [one] = bodies.as_slice() {
            self.calls.sqs();
            self.sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(one)
                .send()
                .await
                .map_err(|e| aws_error("SendMessage", e))?;
            return Ok(());
        }
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| aws_error("SendMessageBatch", e))?;
            self.calls.sqs();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_error("SendMessageBatch", e))?;
            if let Some(failed) = out.failed.first() {
                return Err(aws_error(
                    "SendMessageBatch",
                    format!("entry failed: {:?}", failed.message),
                ));
            }
        }
        Ok(())
    }

    async fn set_pending_and_queue(
        &self,
        tenant: &str,
        items: Vec<DeliveryItem>,
    ) -> Result<(), StoreError> {
        let mut messages = Vec::with_capacity(items.len());
        for d in items {
            self.calls.write();
            self.ddb
                .update_item()
                .table_name(&self.settings.table)
                .set_key(Some(delivery_key(tenant, &d.id)))
                .update_expression("SET #s = :pending")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":pending", s("pending"))
                .send()
                .await
                .map_err(|e| aws_error("UpdateItem", e))?;
            let line = match (d.line_id, d.line_product_id) {
                (Some(id), Some(product_id)) => Some(hookline_core::event::Line { id, product_id }),
                _ => None,
            };
            messages.push(DeliveryMessage {
                tenant_id: tenant.to_owned(),
                delivery_id: d.id,
                event_id: d.event_id,
                rule_id: d.rule_id,
                line,
            });
        }
        self.send_deliveries(&messages).await
    }

    async fn delivery_item(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<DeliveryItem>, StoreError> {
        self.get(delivery_key(tenant, id)).await
    }
}

#[async_trait]
impl Store for AwsBackend {
    async fn create_tenant(&self, tenant: NewTenant) -> Result<(), StoreError> {
        let put = |item: Item| {
            Put::builder()
                .table_name(&self.settings.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| aws_error("TransactWriteItems", e))
        };
        let at = tenant.created_at.as_millis();
        let items = [
            put(to_item(&TenantItem {
                pk: tenant_pk(&tenant.id),
                sk: "TENANT".into(),
                created_at: at,
            })?)?,
            put(to_item(&ApiKeyItem {
                pk: format!("AK#{}", tenant.api_key_hash),
                sk: "AK".into(),
                tenant_id: tenant.id.clone(),
            })?)?,
            put(to_item(&WebhookKeyItem {
                pk: tenant_pk(&tenant.id),
                sk: format!("KEY#{at:013}"),
                key: tenant.webhook_key.expose(),
                created_at: at,
                expires_at: None,
            })?)?,
        ];
        self.calls.write();
        let result = self
            .ddb
            .transact_write_items()
            .set_transact_items(Some(
                items
                    .into_iter()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_cancelled_by_condition(&e) => Err(StoreError::Conflict(format!(
                "tenant {:?} exists already",
                tenant.id
            ))),
            Err(e) => Err(aws_error("TransactWriteItems", e)),
        }
    }

    async fn tenant_for_api_key(&self, api_key_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get::<ApiKeyItem>(api_key_key(api_key_hash))
            .await?
            .map(|k| k.tenant_id))
    }

    async fn tenant_exists(&self, tenant_id: &str) -> Result<bool, StoreError> {
        if self
            .known_tenants
            .lock()
            .is_ok_and(|k| k.contains(tenant_id))
        {
            return Ok(true);
        }
        let exists = self
            .get::<TenantItem>(tenant_key(tenant_id))
            .await?
            .is_some();
        if exists && let Ok(mut known) = self.known_tenants.lock() {
            known.insert(tenant_id.to_owned());
        }
        Ok(exists)
    }

    async fn signing_keys(
        &self,
        tenant_id: &str,
        now: Timestamp,
    ) -> Result<SigningKeys, StoreError> {
        self.keys_of(tenant_id, now).await
    }

    async fn rotate_webhook_key(
        &self,
        tenant_id: &str,
        key: WebhookKey,
        now: Timestamp,
        old_until: Timestamp,
    ) -> Result<(), StoreError> {
        let current = self
            .query_all(None, "pk", &tenant_pk(tenant_id), Some("KEY#"))
            .await?;
        let mut writes = Vec::new();
        for item in current {
            let k: WebhookKeyItem = from_item(item)?;
            match k.expires_at {
                None => writes.push(
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&self.settings.table)
                                .set_key(Some(key_of(&k.pk, &k.sk)))
                                .update_expression("SET expires_at = :until")
                                .expression_attribute_values(":until", n(old_until.as_millis()))
                                .build()
                                .map_err(|e| aws_error("TransactWriteItems", e))?,
                        )
                        .build(),
                ),
                Some(e) if e <= now.as_millis() => writes.push(
                    TransactWriteItem::builder()
                        .delete(
                            aws_sdk_dynamodb::types::Delete::builder()
                                .table_name(&self.settings.table)
                                .set_key(Some(key_of(&k.pk, &k.sk)))
                                .build()
                                .map_err(|e| aws_error("TransactWriteItems", e))?,
                        )
                        .build(),
                ),
                Some(_) => {}
            }
        }
        let at = now.as_millis();
        writes.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.settings.table)
                        .set_item(Some(to_item(&WebhookKeyItem {
                            pk: tenant_pk(tenant_id),
                            sk: format!("KEY#{at:013}"),
                            key: key.expose(),
                            created_at: at,
                            expires_at: None,
                        })?))
                        .build()
                        .map_err(|e| aws_error("TransactWriteItems", e))?,
                )
                .build(),
        );
        self.calls.write();
        self.ddb
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
            .map_err(|e| aws_error("TransactWriteItems", e))?;
        Ok(())
    }

    async fn insert_rule(&self, rule: &Rule) -> Result<(), StoreError> {
        let item = to_item(&RuleItem::new(rule).map_err(|e| aws_error("encode rule", e))?)?;
        self.calls.write();
        self.ddb
            .put_item()
            .table_name(&self.settings.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| aws_error("PutItem", e))?;
        Ok(())
    }

    async fn rule(&self, tenant_id: &str, rule_id: &str) -> Result<Option<Rule>, StoreError> {
        let item: Option<RuleItem> = self.get(rule_key(tenant_id, rule_id)).await?;
        item.map(|r| r.rule(tenant_id).map_err(|e| aws_error("decode rule", e)))
            .transpose()
    }

    async fn rules(
        &self,
        tenant_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Rule>, StoreError> {
        let start = match cursor {
            None => None,
            Some(c) => match decode_cursor(c)?.as_slice() {
                [sk] if sk.starts_with("R#") => Some(key(tenant_pk(tenant_id), sk.clone())),
                _ => return Err(StoreError::BadCursor),
            },
        };
        let pk = tenant_pk(tenant_id);
        let query = || {
            self.ddb
                .query()
                .table_name(&self.settings.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :r)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":r", s("R#"))
                .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
        };
        let mut rules = self
            .query_pages(query, start, limit + 1)
            .await?
            .into_iter()
            .map(|i| {
                from_item::<RuleItem>(i)
                    .and_then(|r| r.rule(tenant_id).map_err(|e| aws_error("decode rule", e)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let more = rules.len() > limit;
        rules.truncate(limit);
        let next_cursor = if more {
            rules
                .last()
                .map(|r| encode_cursor(&[&format!("R#{}", r.id)]))
        } else {
            None
        };
        Ok(Page {
            data: rules,
            next_cursor,
        })
    }

    async fn update_rule(&self, rule: &Rule) -> Result<bool, StoreError> {
        let item = to_item(&RuleItem::new(rule).map_err(|e| aws_error("encode rule", e))?)?;
        self.calls.write();
        let result = self
            .ddb
            .put_item()
            .table_name(&self.settings.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("PutItem", e)),
        }
    }

    async fn delete_rule(&self, tenant_id: &str, rule_id: &str) -> Result<bool, StoreError> {
        self.calls.write();
        let result = self
            .ddb
            .delete_item()
            .table_name(&self.settings.table)
            .set_key(Some(rule_key(tenant_id, rule_id)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(aws_error("DeleteItem", e)),
        }
    }

    /// A conditional put makes the event durable exactly once; the router
    /// gets a reference on the events queue. A repeat of an event the router
    /// has not finished is queued again (routing is idempotent), so a crash
    /// between the put and the send loses nothing.
    async fn accept_event(&self, event: &Event, now: Timestamp) -> Result<Acceptance, StoreError> {
        if !self.tenant_exists(&event.tenant_id).await? {
            return Ok(Acceptance::UnknownTenant);
        }
        let item = EventItem {
            pk: tenant_pk(&event.tenant_id),
            sk: format!("E#{}", event.id),
            tenant_id: event.tenant_id.clone(),
            id: event.id.clone(),
            trigger: event.trigger.as_str().to_owned(),
            occurred_at: event.occurred_at.as_millis(),
            received_at: now.as_millis(),
            payment_page_id: event.payment_page_id.clone(),
            upsell_id: event.upsell_id.clone(),
            first_payment: event.first_payment,
            lines: event.lines.clone(),
            data: event.data.get().to_owned(),
            routed: false,
            ttl: ttl_from(now),
        };
        self.calls.write();
        let put = self
            .ddb
            .put_item()
            .table_name(&self.settings.table)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let message = EventMessage {
            tenant_id: event.tenant_id.clone(),
            event_id: event.id.clone(),
        };
        match put {
            Ok(_) => {
                self.send_events(&[message]).await?;
                Ok(Acceptance::Accepted)
            }
            Err(e) if is_conditional_failure(&e) => {
                let stored: Option<EventItem> =
                    self.get(event_key(&event.tenant_id, &event.id)).await?;
                if stored.is_some_and(|s| !s.routed) {
                    self.send_events(&[message]).await?;
                }
                Ok(Acceptance::Duplicate)
            }
            Err(e) => Err(aws_error("PutItem", e)),
        }
    }

    async fn delivery(&self, tenant_id: &str, id: &str) -> Result<Option<Delivery>, StoreError> {
        Ok(self.delivery_item(tenant_id, id).await?.map(delivery_from))
    }

    async fn deliveries(
        &self,
        tenant_id: &str,
        filter: &DeliveryFilter,
    ) -> Result<Page<Delivery>, StoreError> {
        let start = match &filter.cursor {
            None => None,
            Some(c) => match decode_cursor(c)?.as_slice() {
                [sk, gsi1sk] if sk.starts_with("D#") => {
                    let mut k = key(tenant_pk(tenant_id), sk.clone());
                    k.insert("gsi1pk".into(), s(deliveries_of(tenant_id)));
                    k.insert("gsi1sk".into(), s(gsi1sk.clone()));
                    Some(k)
                }
                _ => return Err(StoreError::BadCursor),
            },
        };
        let mut conditions = Vec::new();
        let mut values = HashMap::from([(":pk".to_owned(), s(deliveries_of(tenant_id)))]);
        let mut names = HashMap::new();
        if let Some(r) = &filter.rule_id {
            conditions.push("rule_id = :rule");
            values.insert(":rule".into(), s(r));
        }
        if let Some(e) = &filter.event_id {
            conditions.push("event_id = :event");
            values.insert(":event".into(), s(e));
        }
        if let Some(st) = filter.status {
            conditions.push("#s = :status");
            values.insert(":status".into(), s(st.as_str()));
            names.insert("#s".to_owned(), "status".to_owned());
        }
        let filter_expression = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        let query = || {
            self.ddb
                .query()
                .table_name(&self.settings.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :pk")
                .set_filter_expression(filter_expression.clone())
                .set_expression_attribute_values(Some(values.clone()))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .scan_index_forward(false)
                .limit(i32::try_from(filter.limit + 1).unwrap_or(i32::MAX))
        };
        let mut found = self
            .query_pages(query, start, filter.limit + 1)
            .await?
            .into_iter()
            .map(from_item::<DeliveryItem>)
            .collect::<Result<Vec<_>, _>>()?;
        let more = found.len() > filter.limit;
        found.truncate(filter.limit);
        let next_cursor = if more {
            found.last().map(|d| encode_cursor(&[&d.sk, &d.gsi1sk]))
        } else {
            None
        };
        Ok(Page {
            data: found.into_iter().map(delivery_from).collect(),
            next_cursor,
        })
    }

    async fn retry_delivery(
        &self,
        tenant_id: &str,
        id: &str,
        _now: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        let Some(item) = self.delivery_item(tenant_id, id).await? else {
            return Ok(None);
        };
        let mut delivery = delivery_from(item.clone());
        self.set_pending_and_queue(tenant_id, vec![item]).await?;
        delivery.status = DeliveryStatus::Pending;
        Ok(Some(delivery))
    }

    async fn recover(
        &self,
        tenant_id: &str,
        rule_id: &str,
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
        let query = || {
            self.ddb
                .query()
                .table_name(&self.settings.table)
                .index_name(GSI1)
                .key_condition_expression("gsi1pk = :pk AND gsi1sk BETWEEN :from AND :to")
                .filter_expression("rule_id = :rule AND #s = :dead")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":pk", s(deliveries_of(tenant_id)))
                .expression_attribute_values(":from", s(&from))
                .expression_attribute_values(":to", s(&to))
                .expression_attribute_values(":rule", s(rule_id))
                .expression_attribute_values(":dead", s("dead"))
        };
        let dead = self
            .query_pages(query, None, usize::MAX)
            .await?
            .into_iter()
            .map(from_item::<DeliveryItem>)
            .collect::<Result<Vec<_>, _>>()?;
        let count = dead.len() as u64;
        if !dead.is_empty() {
            self.set_pending_and_queue(tenant_id, dead).await?;
        }
        Ok(Some(count))
    }
}

fn key_of(pk: &str, sk: &str) -> Item {
    key(pk.to_owned(), sk.to_owned())
}
