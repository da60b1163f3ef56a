//! The deliveries queue on SQS: loading what a batch of attempts needs in one
//! batched read, recording attempts, and the `DeliveryQueue` port.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use hookline_core::delivery::{Outcome, Target};
use hookline_core::ports::{DeliveryQueue, StoreError};
use hookline_core::{DeliveryJob, DeliveryStatus, Settlement, SigningKeys, Timestamp, Trigger};
use serde_json::value::RawValue;

use crate::aws_error;
use crate::items::*;
use crate::messages::DeliveryMessage;
use crate::store::{AwsBackend, from_item, to_item};

/// A delivery received through the `DeliveryQueue` port, until it is settled.
pub(crate) struct Lease {
    pub tenant_id: String,
    pub handle: String,
    pub body: String,
}

/// A delivery message as received, with its lease.
pub(crate) struct Received {
    pub message: DeliveryMessage,
    pub receive_count: u32,
}

/// What loading found for one received message.
pub(crate) enum Loaded {
    Job(Box<DeliveryJob>),
    /// Already succeeded (a duplicate message): nothing to send.
    Done,
}

impl AwsBackend {
    /// BatchGetItem, retrying unprocessed keys, 100 keys a call.
    pub(crate) async fn batch_get_items(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| aws_error("BatchGetItem", e))?,
            );
            while let Some(request) = pending.take() {
                self.calls.read();
                let out = self
                    .ddb
                    .batch_get_item()
                    .request_items(&self.settings.table, request)
                    .send()
                    .await
                    .map_err(|e| aws_error("BatchGetItem", e))?;
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.settings.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.settings.table))
                    .filter(|k| !k.keys.is_empty());
            }
        }
        Ok(found)
    }

    /// Loads deliveries, their events and rules in one batched read, and each
    /// tenant's signing keys once.
    pub(crate) async fn load(
        &self,
        received: &[Received],
        now: Timestamp,
    ) -> Result<Vec<Option<Loaded>>, StoreError> {
        let mut keys: Vec<Item> = Vec::new();
        let mut seen = HashSet::new();
        for r in received {
            let m = &r.message;
            for k in [
                delivery_key(&m.tenant_id, &m.delivery_id),
                event_key(&m.tenant_id, &m.event_id),
                rule_key(&m.tenant_id, &m.rule_id),
            ] {
                let id = (pk_sk(&k).0.to_owned(), pk_sk(&k).1.to_owned());
                if seen.insert(id) {
                    keys.push(k);
                }
            }
        }
        let mut items: HashMap<(String, String), Item> = HashMap::new();
        for item in self.batch_get_items(keys).await? {
            let (pk, sk) = pk_sk(&item);
            items.insert((pk.to_owned(), sk.to_owned()), item);
        }
        let take = |pk: String, sk: String| items.get(&(pk, sk)).cloned();
        let mut signing: HashMap<String, SigningKeys> = HashMap::new();
        let mut out = Vec::with_capacity(received.len());
        for r in received {
            let m = &r.message;
            let pk = tenant_pk(&m.tenant_id);
            let delivery: Option<DeliveryItem> = take(pk.clone(), format!("D#{}", m.delivery_id))
                .map(from_item)
                .transpose()?;
            let event: Option<EventItem> = take(pk.clone(), format!("E#{}", m.event_id))
                .map(from_item)
                .transpose()?;
            let (Some(delivery), Some(event)) = (delivery, event) else {
                out.push(None);
                continue;
            };
            if delivery.status == DeliveryStatus::Succeeded.as_str() {
                out.push(Some(Loaded::Done));
                continue;
            }
            let rule: Option<RuleItem> = take(pk.clone(), format!("R#{}", m.rule_id))
                .map(from_item)
                .transpose()?;
            let target = match rule.map(|r| r.rule(&m.tenant_id)) {
                None => Target::Gone("the rule was deleted"),
                Some(Err(e)) => return Err(aws_error("decode rule", e)),
                Some(Ok(rule)) if !rule.enabled => Target::Gone("the rule is disabled"),
                Some(Ok(rule)) => Target::Url(rule.url),
            };
            if !signing.contains_key(&m.tenant_id) {
                let k = self.keys_of(&m.tenant_id, now).await?;
                signing.insert(m.tenant_id.clone(), k);
            }
            let trigger: Trigger = event
                .trigger
                .parse()
                .map_err(|e| aws_error("decode event", e))?;
            out.push(Some(Loaded::Job(Box::new(DeliveryJob {
                delivery_id: m.delivery_id.clone(),
                tenant_id: m.tenant_id.clone(),
                event_id: m.event_id.clone(),
                rule_id: m.rule_id.clone(),
                trigger,
                occurred_at: Timestamp::from_millis(event.occurred_at),
                line: m.line.clone(),
                data: RawValue::from_string(event.data)
                    .map_err(|e| aws_error("decode event data", e))?,
                target,
                keys: signing
                    .get(&m.tenant_id)
                    .cloned()
                    .unwrap_or(SigningKeys(Vec::new())),
                receive_count: r.receive_count,
            }))));
        }
        Ok(out)
    }

    /// Appends the attempt to its delivery and sets the status it leads to:
    /// one UpdateItem per attempt.
    pub(crate) async fn record(&self, tenant: &str, s: &Settlement) -> Result<(), StoreError> {
        let status = match s.outcome {
            Outcome::Succeeded => DeliveryStatus::Succeeded,
            Outcome::RetryAt(_) => DeliveryStatus::Pending,
            Outcome::Dead => DeliveryStatus::Dead,
        };
        let attempt = to_item(&AttemptList {
            attempts: vec![s.attempt.clone()],
        })?
        .remove("attempts")
        .ok_or_else(|| aws_error("encode attempt", "no attempts attribute"))?;
        self.calls.write();
        self.ddb
            .update_item()
            .table_name(&self.settings.table)
            .set_key(Some(delivery_key(tenant, &s.delivery_id)))
            .update_expression("SET #s = :status, attempts = list_append(if_not_exists(attempts, :none), :attempt)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":status", AttributeValue::S(status.as_str().to_owned()))
            .expression_attribute_values(":attempt", attempt)
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .send()
            .await
            .map_err(|e| aws_error("UpdateItem", e))?;
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct AttemptList {
    attempts: Vec<hookline_core::Attempt>,
}

fn pk_sk(item: &Item) -> (&str, &str) {
    let get = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "",
    };
    (get("pk"), get("sk"))
}

pub(crate) fn parse_message(body: Option<&str>, receive_count: Option<&str>) -> Option<Received> {
    let message: DeliveryMessage = serde_json::from_str(body?).ok()?;
    let receive_count = receive_count.and_then(|c| c.parse().ok()).unwrap_or(1);
    Some(Received {
        message,
        receive_count,
    })
}

/// The port, for tests and processes that poll: receive with long polling,
/// settle by recording the attempt and acting on the message.
#[async_trait]
impl DeliveryQueue for AwsBackend {
    async fn receive(&self, max: usize, now: Timestamp) -> Result<Vec<DeliveryJob>, StoreError> {
        self.calls.sqs();
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.settings.deliveries_queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| aws_error("ReceiveMessage", e))?;
        let mut received = Vec::new();
        let mut handles = Vec::new();
        let mut bodies = Vec::new();
        let mut unreadable = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let count = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .map(String::as_str);
            match parse_message(m.body.as_deref(), count) {
                Some(r) => {
                    handles.push(m.receipt_handle.unwrap_or_default());
                    bodies.push(m.body.unwrap_or_default());
                    received.push(r);
                }
                None => unreadable.push(m.message_id.unwrap_or_default()),
            }
        }
        if !unreadable.is_empty() {
            tracing::error!(
                ?unreadable,
                "unreadable delivery messages are left for the dead-letter queue"
            );
        }
        let loaded = self.load(&received, now).await?;
        let mut jobs = Vec::new();
        let mut done = Vec::new();
        {
            let mut receipts = self.receipts.lock().map_err(|e| aws_error("receipts", e))?;
            for ((handle, body), l) in handles.into_iter().zip(bodies).zip(loaded) {
                match l {
                    Some(Loaded::Job(job)) => {
                        let lease = Lease {
                            tenant_id: job.tenant_id.clone(),
                            handle,
                            body,
                        };
                        receipts.insert(job.delivery_id.clone(), lease);
                        jobs.push(*job);
                    }
                    Some(Loaded::Done) | None => done.push(handle),
                }
            }
        }
        self.delete_messages(
            &self.settings.deliveries_queue_url,
            &done,
            crate::Calls::sqs,
        )
        .await?;
        Ok(jobs)
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<(), StoreError> {
        for s in settlements {
            let lease = self
                .receipts
                .lock()
                .map_err(|e| aws_error("receipts", e))?
                .remove(&s.delivery_id);
            let Some(lease) = lease else { continue };
            self.record(&lease.tenant_id, &s).await?;
            match (s.outcome, &self.settings.deliveries_dlq_url) {
                (Outcome::Succeeded, _) => {
                    self.delete_messages(
                        &self.settings.deliveries_queue_url,
                        &[lease.handle],
                        crate::Calls::sqs,
                    )
                    .await?
                }
                (Outcome::RetryAt(at), _) => {
                    self.change_visibilities(vec![(lease.handle, visibility_until(at))])
                        .await?
                }
                // A poller moves a dead delivery to the dead-letter queue itself,
                // so it leaves the queue at once, as it does locally.
                (Outcome::Dead, Some(dlq)) => {
                    self.send_batch(dlq, vec![lease.body]).await?;
                    self.delete_messages(
                        &self.settings.deliveries_queue_url,
                        &[lease.handle],
                        crate::Calls::sqs,
                    )
                    .await?;
                }
                // Without a known DLQ: visible at once, so the next receive
                // passes maxReceiveCount and the redrive policy moves it.
                (Outcome::Dead, None) => self.change_visibilities(vec![(lease.handle, 0)]).await?,
            }
        }
        Ok(())
    }
}

/// Seconds from now until `at`, within SQS's 12-hour visibility limit.
pub(crate) fn visibility_until(at: Timestamp) -> i32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = (at.as_millis() - now + 999).div_euclid(1000);
    i32::try_from(secs.clamp(0, 43_200)).unwrap_or(43_200)
}

impl AwsBackend {
    /// DeleteMessageBatch, ten at a time; `count` says whose call it is.
    pub(crate) async fn delete_messages(
        &self,
        queue_url: &str,
        handles: &[String],
        count: fn(&crate::Calls),
    ) -> Result<(), StoreError> {
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| aws_error("DeleteMessageBatch", e))?;
            count(&self.calls);
            self.sqs
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_error("DeleteMessageBatch", e))?;
        }
        Ok(())
    }

    /// Sets when each message becomes visible again, in seconds from now:
    /// ChangeMessageVisibility for one, ChangeMessageVisibilityBatch (ten a
    /// call) for more.
    pub(crate) async fn change_visibilities(
        &self,
        changes: Vec<(String, i32)>,
    ) -> Result<(), StoreError> {
        let queue = &self.settings.deliveries_queue_url;
        if let [(handle, secs)] = changes.as_slice() {
            self.calls.sqs();
            self.sqs
                .change_message_visibility()
                .queue_url(queue)
                .receipt_handle(handle)
                .visibility_timeout(*secs)
                .send()
                .await
                .map_err(|e| aws_error("ChangeMessageVisibility", e))?;
            return Ok(());
        }
        for chunk in changes.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (handle, secs))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(*secs)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| aws_error("ChangeMessageVisibilityBatch", e))?;
            self.calls.sqs();
            self.sqs
                .change_message_visibility_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }
}
