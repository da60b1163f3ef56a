//! What travels on the queues, in two versions that both stay readable.
//!
//! Version 1 messages were references: a tenant and ids, the event read from
//! the table by whoever received it. Version 2 adds the event itself
//! (`event`) whenever the message stays within [`CARRIED_LIMIT`], so the
//! router and a delivery's first attempt read no event. A message without it
//! — queued by an earlier Hookline, or for an event too large to carry — is
//! handled as before, so an upgrade drains the queues it finds.

use serde::{Deserialize, Serialize};

use crate::items::{EventItem, LineRecord};
use crate::queues::ForTenant;
use hookline_core::Event;
use hookline_core::record::SubjectRecord;

/// The largest message that carries its event. SQS takes 256 KiB a batch
/// of ten; ten of these stay under it with room for the attributes.
pub const CARRIED_LIMIT: usize = 24 * 1024;

/// An accepted event for the router.
#[derive(Clone, Serialize, Deserialize)]
pub struct EventMessage {
    pub tenant_id: String,
    pub event_id: String,
    /// The event as stored (version 2); absent, the router reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventItem>,
    /// Queued again for a repeat of the event at ingest: the router looks
    /// for the deliveries a first routing may have made before it writes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat: bool,
    /// The `traceparent` its routing continues; sent as a message
    /// attribute, not in the body.
    #[serde(skip)]
    pub trace: Option<String>,
}

impl EventMessage {
    /// The message for a stored event, carrying it if it fits.
    pub(crate) fn of(event: EventItem, repeat: bool) -> Self {
        let mut message = EventMessage {
            tenant_id: event.tenant_id.clone(),
            event_id: event.id.clone(),
            event: Some(event),
            repeat,
            trace: None,
        };
        if !fits(&message) {
            message.event = None;
        }
        message
    }
}

/// A delivery for the deliverer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryMessage {
    pub tenant_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineRecord>,
    /// What the attempt sends of the event (version 2); absent, the
    /// deliverer reads the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Payload>,
    /// Sent by a retry or recover: attempt it even if it succeeded before.
    /// The router's messages leave it false, so a duplicate of one for a
    /// delivery that succeeded is dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// The delivery may have been attempted already (the router found it
    /// made before): its status is read before an attempt. A message
    /// received for the first time without it reads none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check: bool,
    /// Attempts made in this chain before this message was sent: a message
    /// held back by an open circuit is sent again with its count carried
    /// over, so the attempt number is this plus the receive count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_before: u32,
    /// The `traceparent` its attempt continues; sent as a message
    /// attribute, not in the body.
    #[serde(skip)]
    pub trace: Option<String>,
}

impl DeliveryMessage {
    /// Drops the carried event if the message would not fit.
    pub(crate) fn within_limit(mut self) -> Self {
        if self.event.is_some() && !fits(&self) {
            self.event = None;
        }
        self
    }
}

/// What an attempt sends of its event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payload {
    pub trigger: String,
    pub occurred_at: i64,
    /// The event's `data`, byte for byte as ingested.
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectRecord>,
}

impl From<&Event> for Payload {
    fn from(e: &Event) -> Self {
        Payload {
            trigger: e.trigger.as_str().to_owned(),
            occurred_at: e.occurred_at.as_millis(),
            data: e.data.get().to_owned(),
            subject: e.subject.as_ref().map(SubjectRecord::from),
        }
    }
}

fn fits<T: Serialize>(message: &T) -> bool {
    serde_json::to_vec(message).is_ok_and(|body| body.len() <= CARRIED_LIMIT)
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ForTenant for EventMessage {
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
    fn trace(&self) -> Option<&str> {
        self.trace.as_deref()
    }
}

impl ForTenant for DeliveryMessage {
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
    fn trace(&self) -> Option<&str> {
        self.trace.as_deref()
    }
}
