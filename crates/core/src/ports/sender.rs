//! The sender port: one HTTP request to a receiver and its answer.

use std::time::Duration;

use async_trait::async_trait;

pub struct OutgoingRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A receiver's answer to one request.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// At most [`RESPONSE_BODY_CAP`] bytes of the answer, lossily decoded.
    ///
    /// [`RESPONSE_BODY_CAP`]: crate::delivery::RESPONSE_BODY_CAP
    pub body: String,
    pub retry_after: Option<Duration>,
    /// What its `webhook-delivery` header asked, if anything it knows.
    pub signal: Option<ReceiverSignal>,
}

/// What a receiver may ask beyond its status, in the `webhook-delivery`
/// header of the Standard Webhooks proposal (standard-webhooks PR #291).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverSignal {
    /// `disable`: send this rule nothing more (as 410 Gone says).
    Disable,
    /// `abort-message`: stop retrying this delivery.
    AbortMessage,
}

impl ReceiverSignal {
    /// The header's name, as receivers send it.
    pub const HEADER: &'static str = "webhook-delivery";

    /// A `webhook-delivery` value; any other is ignored.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "disable" => Some(ReceiverSignal::Disable),
            "abort-message" => Some(ReceiverSignal::AbortMessage),
            _ => None,
        }
    }
}

/// Result of [`Sender::send`]: the answer or why there was none, and how long it took.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<Response, String>,
    pub elapsed: Duration,
}

#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, request: OutgoingRequest) -> Sent;
}
