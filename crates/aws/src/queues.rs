//! SQS: every call Hookline makes to a queue, counted, with its errors kept.
//! Messages come back in the shape Lambda's event source mapping hands a
//! function, so the handlers and the pollers read them one way.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use hookline_core::ports::StoreError;
use hookline_telemetry::TRACEPARENT;

use crate::calls::Calls;
use crate::error::{build_error, sdk_error};

#[derive(Clone)]
pub(crate) struct Queues {
    client: Client,
    calls: Arc<Calls>,
}

/// A message to send, and the tenant it is for: its `MessageGroupId`, with
/// which SQS fair queues (standard queues) keep one tenant's backlog from
/// holding up the others' messages. Its trace context, if any, goes as the
/// `traceparent` message attribute.
pub(crate) struct Outgoing {
    pub body: String,
    pub tenant: Option<String>,
    pub trace: Option<String>,
}

/// What the queues carry, each for one tenant, and the trace it continues.
pub(crate) trait ForTenant: serde::Serialize {
    fn tenant(&self) -> &str;
    fn trace(&self) -> Option<&str>;
}

impl<T: ForTenant> ForTenant for &T {
    fn tenant(&self) -> &str {
        (**self).tenant()
    }
    fn trace(&self) -> Option<&str> {
        (**self).trace()
    }
}

/// A received record's `traceparent` attribute.
pub(crate) fn trace_of(record: &SqsMessage) -> Option<String> {
    record
        .message_attributes
        .get(TRACEPARENT)
        .and_then(|a| a.string_value.clone())
}

/// The `traceparent` attribute of a message to send.
fn trace_attribute(trace: Option<&String>) -> Option<HashMap<String, MessageAttributeValue>> {
    let value = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(trace?)
        .build()
        .ok()?;
    Some(HashMap::from([(TRACEPARENT.to_owned(), value)]))
}

/// A batch entry SQS refused although the call as a whole succeeded.
#[derive(Debug, thiserror::Error)]
#[error("entry {id} refused: {code}: {message}")]
pub(crate) struct EntryRefused {
    id: String,
    code: String,
    message: String,
}

/// A message as it is sent: its JSON, grouped by its tenant.
pub(crate) fn outgoing<T: ForTenant>(message: &T) -> Result<Outgoing, StoreError> {
    Ok(Outgoing {
        body: serde_json::to_string(message).map_err(|e| build_error("encode message", e))?,
        tenant: Some(message.tenant().to_owned()),
        trace: message.trace().map(str::to_owned),
    })
}

impl Queues {
    pub fn new(client: Client, calls: Arc<Calls>) -> Self {
        Queues { client, calls }
    }

    /// ReceiveMessage of up to `max` (at most 10), waiting up to
    /// `wait_seconds`, with the receive count; `count` says whose call it is.
    pub async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait_seconds: i32,
        count: fn(&Calls),
    ) -> Result<Vec<SqsMessage>, StoreError> {
        count(&self.calls);
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names(TRACEPARENT)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id;
                record.receipt_handle = m.receipt_handle;
                record.body = m.body;
                record.attributes = m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v))
                    .collect();
                record.message_attributes = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| {
                        let mut attribute = SqsMessageAttribute::default();
                        attribute.string_value = v.string_value;
                        attribute.data_type = Some(v.data_type);
                        (k, attribute)
                    })
                    .collect();
                record.event_source = Some("aws:sqs".into());
                record
            })
            .collect())
    }

    /// SendMessage for one message, SendMessageBatch for more, ten at a time.
    pub async fn send(&self, queue_url: &str, messages: Vec<Outgoing>) -> Result<(), StoreError> {
        self.send_delayed(queue_url, messages, None).await
    }

    /// [`Queues::send`], each message invisible for `delay_seconds` (at most 900).
    pub async fn send_delayed(
        &self,
        queue_url: &str,
        messages: Vec<Outgoing>,
        delay_seconds: Option<i32>,
    ) -> Result<(), StoreError> {
        if let [one] = messages.as_slice() {
            self.calls.count_sqs();
            self.client
                .send_message()
                .queue_url(queue_url)
                .message_body(&one.body)
                .set_message_group_id(one.tenant.clone())
                .set_message_attributes(trace_attribute(one.trace.as_ref()))
                .set_delay_seconds(delay_seconds)
                .send()
                .await
                .map_err(|e| sdk_error("SendMessage", e))?;
            return Ok(());
        }
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&m.body)
                        .set_message_group_id(m.tenant.clone())
                        .set_message_attributes(trace_attribute(m.trace.as_ref()))
                        .set_delay_seconds(delay_seconds)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| build_error("SendMessageBatch", e))?;
            self.calls.count_sqs();
            let out = self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SendMessageBatch", e))?;
            if let Some(failed) = out.failed.into_iter().next() {
                let refused = EntryRefused {
                    id: failed.id,
                    code: failed.code,
                    message: failed.message.unwrap_or_default(),
                };
                return Err(StoreError::Unavailable {
                    operation: "SendMessageBatch".into(),
                    code: Some(refused.code.clone()),
                    message: refused.to_string(),
                    source: Some(Box::new(refused)),
                });
            }
        }
        Ok(())
    }

    /// JSON of each message, sent as [`Queues::send`] does, grouped by its
    /// tenant.
    pub async fn send_json<T: ForTenant>(
        &self,
        queue_url: &str,
        messages: &[T],
    ) -> Result<(), StoreError> {
        let outgoing = messages
            .iter()
            .map(outgoing)
            .collect::<Result<Vec<_>, _>>()?;
        self.send(queue_url, outgoing).await
    }

    /// DeleteMessageBatch, ten at a time; `count` says whose call it is.
    pub async fn delete(
        &self,
        queue_url: &str,
        handles: &[String],
        count: fn(&Calls),
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
                .map_err(|e| build_error("DeleteMessageBatch", e))?;
            count(&self.calls);
            self.client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("DeleteMessageBatch", e))?;
        }
        Ok(())
    }

    /// Sets when each message becomes visible again, in seconds from now:
    /// ChangeMessageVisibility for one, ChangeMessageVisibilityBatch (ten a
    /// call) for more.
    pub async fn change_visibility(
        &self,
        queue_url: &str,
        changes: &[(String, i32)],
    ) -> Result<(), StoreError> {
        if let [(handle, secs)] = changes {
            self.calls.count_sqs();
            self.client
                .change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(handle)
                .visibility_timeout(*secs)
                .send()
                .await
                .map_err(|e| sdk_error("ChangeMessageVisibility", e))?;
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
                .map_err(|e| build_error("ChangeMessageVisibilityBatch", e))?;
            self.calls.count_sqs();
            self.client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }
}
