//! A delivery: one event sent to one rule's URL (per line, for per-order-line
//! rules), its attempts, and the single attempt logic both backends run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::Line;
use crate::ports::{Clock, OutgoingRequest, Sender};
use crate::retry::RetrySchedule;
use crate::signing::SigningKeys;
use crate::time::Timestamp;
use crate::trigger::Trigger;

pub type DeliveryId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Queued, in flight, or waiting for a retry.
    Pending,
    Succeeded,
    /// Retries used up; listed and replayable.
    Dead,
}

impl DeliveryStatus {
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

impl FromStr for DeliveryStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "dead" => Ok(Self::Dead),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: String,
    pub rule_id: String,
    pub status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_id: Option<String>,
    pub created_at: Timestamp,
    pub attempts: Vec<Attempt>,
}

/// Where a job goes, or why it cannot go anywhere any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Url(String),
    Gone(&'static str),
}

/// Everything one attempt needs, loaded by the queue adapter in one go.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub tenant_id: String,
    pub event_id: String,
    pub rule_id: String,
    pub trigger: Trigger,
    pub occurred_at: Timestamp,
    pub line: Option<Line>,
    pub data: Box<RawValue>,
    pub target: Target,
    pub keys: SigningKeys,
    /// How often the queue has handed this delivery out, this one included:
    /// the attempt number, as SQS's ApproximateReceiveCount is.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    RetryAt(Timestamp),
    Dead,
}

/// The result of one attempt, for the queue adapter to record and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub delivery_id: DeliveryId,
    /// The lease this attempt ran under; a stale lease must not move the queue.
    pub receive_count: u32,
    pub attempt: Attempt,
    pub outcome: Outcome,
}

/// The body receivers get: `{"type","timestamp","event_id","tenant_id","rule_id","data","line"?}`.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    trigger: Trigger,
    timestamp: Timestamp,
    event_id: &'a str,
    tenant_id: &'a str,
    rule_id: &'a str,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a Line>,
}

impl DeliveryJob {
    pub fn body(&self) -> Vec<u8> {
        let payload = Payload {
            trigger: self.trigger,
            timestamp: self.occurred_at,
            event_id: &self.event_id,
            tenant_id: &self.tenant_id,
            rule_id: &self.rule_id,
            data: &self.data,
            line: self.line.as_ref(),
        };
        // Serializing owned strings and a parsed RawValue cannot fail.
        serde_json::to_vec(&payload).unwrap_or_default()
    }
}

/// How the attempt logic is tuned; the same on both backends.
#[derive(Debug, Clone)]
pub struct AttemptPolicy {
    pub schedule: RetrySchedule,
    pub user_agent: String,
}

impl AttemptPolicy {
    pub fn new(schedule: RetrySchedule) -> Self {
        Self {
            schedule,
            user_agent: format!("hookline/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Signs and sends one attempt and decides what happens next.
    pub async fn attempt(
        &self,
        job: &DeliveryJob,
        sender: &dyn Sender,
        clock: &dyn Clock,
    ) -> Settlement {
        let at = clock.now();
        let settle = |attempt: Attempt, outcome| Settlement {
            delivery_id: job.delivery_id.clone(),
            receive_count: job.receive_count,
            attempt,
            outcome,
        };
        let url = match &job.target {
            Target::Url(url) => url,
            Target::Gone(why) => return settle(failed(at, (*why).to_owned()), Outcome::Dead),
        };
        if job.keys.0.is_empty() {
            return settle(
                failed(at, "the tenant has no webhook key".into()),
                Outcome::Dead,
            );
        }
        let body = self.body_and_headers(job, at);
        let request = OutgoingRequest {
            url: url.clone(),
            headers: body.1,
            body: body.0,
        };
        let sent = sender.send(request).await;
        let duration_ms = u64::try_from(sent.elapsed.as_millis()).unwrap_or(u64::MAX);
        let (attempt, ok, retry_after) = match sent.result {
            Ok(r) => {
                let ok = (200..300).contains(&r.status);
                let honoured = matches!(r.status, 429 | 503)
                    .then_some(r.retry_after)
                    .flatten();
                let attempt = Attempt {
                    at,
                    status_code: Some(r.status),
                    duration_ms,
                    error: (!ok).then(|| format!("receiver answered {}", r.status)),
                    response_body: Some(r.body),
                };
                (attempt, ok, honoured)
            }
            Err(error) => (
                Attempt {
                    duration_ms,
                    ..failed(at, error)
                },
                false,
                None,
            ),
        };
        let outcome = if ok {
            Outcome::Succeeded
        } else {
            match self.schedule.next_delay(
                job.receive_count,
                retry_after,
                jitter(&job.delivery_id, job.receive_count),
            ) {
                Some(delay) => Outcome::RetryAt(clock.now().saturating_add(delay)),
                None => Outcome::Dead,
            }
        };
        settle(attempt, outcome)
    }

    fn body_and_headers(
        &self,
        job: &DeliveryJob,
        at: Timestamp,
    ) -> (Vec<u8>, Vec<(&'static str, String)>) {
        let body = job.body();
        let ts = at.as_secs();
        let signature = job.keys.signature_header(&job.delivery_id, ts, &body);
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", self.user_agent.clone()),
            ("webhook-id", job.delivery_id.clone()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", signature),
        ];
        (body, headers)
    }
}

/// Where in `[0, 1)` this attempt's retry falls within the jitter: derived
/// from the delivery and attempt, so deliveries that fail together spread out
/// while each delivery's schedule stays reproducible.
fn jitter(delivery_id: &str, attempt: u32) -> f64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(delivery_id)
        .chain_update(attempt.to_le_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

fn failed(at: Timestamp, error: String) -> Attempt {
    Attempt {
        at,
        status_code: None,
        duration_ms: 0,
        error: Some(error),
        response_body: None,
    }
}

/// The longest a receiver's answer is kept in the attempt log.
pub const RESPONSE_BODY_CAP: usize = 4096;

/// Result of [`Sender::send`]: the answer or why there was none, and how long it took.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<Received, String>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Received {
    pub status: u16,
    /// At most [`RESPONSE_BODY_CAP`] bytes of the answer, lossily decoded.
    pub body: String,
    pub retry_after: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::jitter;

    #[test]
    fn jitter_is_reproducible_and_spread() {
        assert_eq!(jitter("msg_a", 2), jitter("msg_a", 2));
        assert_ne!(jitter("msg_a", 2), jitter("msg_a", 3));
        let draws: Vec<f64> = (0..1000).map(|i| jitter(&format!("msg_{i}"), 1)).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)));
        let low = draws.iter().filter(|j| **j < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below one half");
    }
}
