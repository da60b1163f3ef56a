//! What travels on the queues: references, never payloads, so every message
//! stays far below SQS's size limit whatever the event carries.

use serde::{Deserialize, Serialize};

use crate::items::LineRecord;
use crate::queues::ForTenant;

/// An accepted event for the router; the event itself is in the table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventMessage {
    pub tenant_id: String,
    pub event_id: String,
}

/// A delivery for the deliverer: enough to fetch what the attempt needs in
/// one batched read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryMessage {
    pub tenant_id: String,
    pub delivery_id: String,
    pub event_id: String,
    pub rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineRecord>,
    /// Sent by a retry or recover: attempt it even if it succeeded before.
    /// The router's messages leave it false, so a duplicate of one for a
    /// delivery that succeeded is dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Attempts made in this chain before this message was sent: a message
    /// held back by an open circuit is sent again with its count carried
    /// over, so the attempt number is this plus the receive count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_before: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ForTenant for EventMessage {
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
}

impl ForTenant for DeliveryMessage {
    fn tenant(&self) -> &str {
        &self.tenant_id
    }
}
