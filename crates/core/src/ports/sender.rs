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
