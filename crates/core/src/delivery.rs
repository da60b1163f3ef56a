//! A delivery: one event sent to one rule's URL (per line, for per-order-line
//! rules), its status and the log of its attempts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::Line;
pub use crate::id::DeliveryId;
use crate::id::{EventId, RuleId};
use crate::time::Timestamp;
use crate::trigger::Trigger;

/// A delivery's status, in answers and as the list's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Queued, in flight, or waiting for a retry.
    Pending,
    Succeeded,
    /// Retries used up; listed and replayable.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Dead,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status text that is none of `pending`, `succeeded`, `dead`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a delivery status (pending, succeeded, dead)")]
pub struct UnknownStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// How an attempt went, by what the receiver did: the class the metrics
/// of both forms count attempts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// It answered 2xx.
    Success,
    /// It answered, but not 2xx.
    Failure,
    /// No answer: refused, timed out, not allowed, or no request was made.
    Error,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 3] = [
        AttemptResult::Success,
        AttemptResult::Failure,
        AttemptResult::Error,
    ];

    pub fn of(attempt: &Attempt) -> Self {
        match attempt.status_code {
            Some(code) if (200..300).contains(&code) => AttemptResult::Success,
            Some(_) => AttemptResult::Failure,
            None => AttemptResult::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::Failure => "failure",
            AttemptResult::Error => "error",
        }
    }
}

/// How many attempts a delivery's log keeps: the most recent ones. The total
/// is in [`Delivery::attempt_count`].
pub const ATTEMPT_LOG_LIMIT: usize = 20;

/// A delivery as a store reads it; the API's JSON is the API crate's
/// `DeliveryOut`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub rule_id: RuleId,
    pub status: DeliveryStatus,
    pub line_id: Option<String>,
    pub created_at: Timestamp,
    /// Every attempt made, also those the log no longer keeps.
    pub attempt_count: u64,
    /// The most recent [`ATTEMPT_LOG_LIMIT`] attempts, oldest first.
    pub attempts: Vec<Attempt>,
    /// Why a pending delivery is not being attempted now, if it is held.
    pub waiting: Option<Waiting>,
}

/// Why a pending delivery waits beyond its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: WaitReason,
    /// When the hold ends (then one probe attempt decides).
    pub until: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// The rule's receiver failed too often in a row; its circuit is open.
    CircuitOpen,
}

impl Waiting {
    /// The wait of a delivery in `status` whose rule's circuit is open until
    /// `open_until`, if any.
    pub fn for_circuit(status: DeliveryStatus, open_until: Option<Timestamp>) -> Option<Waiting> {
        (status == DeliveryStatus::Pending).then_some(())?;
        Some(Waiting {
            reason: WaitReason::CircuitOpen,
            until: open_until?,
        })
    }
}

/// The longest a receiver's answer is kept in the attempt log.
pub const RESPONSE_BODY_CAP: usize = 4096;

/// The full body receivers get:
/// `{"type","timestamp","event_id","tenant_id","rule_id","data","line"?}`.
/// Filters are judged on it too, so what a filter names is what arrives.
#[derive(Serialize)]
pub struct FullBody<'a> {
    #[serde(rename = "type")]
    pub trigger: Trigger,
    pub timestamp: Timestamp,
    pub event_id: &'a str,
    pub tenant_id: &'a str,
    pub rule_id: &'a str,
    pub data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<&'a Line>,
}
