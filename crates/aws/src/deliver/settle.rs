//! What is left of each message: [`settle`] records each attempt and acts
//! on its outcome under its lease; [`hold`] sends a held-back message again.
//!
//! `settle` acts on each outcome:
//! - succeeded: the message is done (deleted);
//! - retry: its visibility is set to the retry's delay, and it stays;
//! - dead: it is sent to the dead-letter queue, then done. A delivery can be
//!   dead before the queue's `maxReceiveCount` (its rule deleted, a schedule
//!   shorter than the queue's), so the deliverer moves it itself; the redrive
//!   policy stays behind it for messages that fail to be handled at all.

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::ports::{Lease, Outcome, Settlement, StoreError};
use hookline_core::{DeliveryStatus, Timestamp};

use super::health::{disable_gone, record_health};
use super::record::{described, record, set_fields};
use crate::backend::AwsBackend;
use crate::error::log_failure;
use crate::items::*;
use crate::messages::DeliveryMessage;
use crate::queues::{Outgoing, outgoing};

#[derive(Debug, thiserror::Error)]
#[error("the settlement's lease is not an SQS message's")]
struct ForeignLease;

/// The receipt handle and body of the message a settlement's lease names.
pub(super) fn sqs_lease(lease: Option<&Lease>) -> Result<(&str, &str), StoreError> {
    match lease {
        Some(Lease::Message { receipt, body, .. }) => Ok((receipt, body)),
        _ => Err(StoreError::unavailable("settle", ForeignLease)),
    }
}

/// What [`settle`] leaves of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Settled: the message may be deleted.
    Done,
    /// It stays on the queue and comes back when its visibility ends (at the
    /// retry's time, or after the queue's timeout when recording failed).
    Stays,
}

/// Records each attempt and acts on its outcome under its lease; answers
/// what is left of each message, in order. Failures are logged with their
/// AWS error code and leave the message to come back.
pub(crate) async fn settle(backend: &AwsBackend, settlements: &[Settlement]) -> Vec<Disposition> {
    let mut dispositions = vec![Disposition::Stays; settlements.len()];
    let mut delays = Vec::new();
    let mut dead = Vec::new();
    for (i, s) in settlements.iter().enumerate() {
        let (receipt, body) = match sqs_lease(s.lease.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                log_failure(&e, &s.delivery_id, "settle");
                continue;
            }
        };
        match record(backend, s).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %s.delivery_id, "the delivery succeeded already or is gone; this message is dropped");
                dispositions[i] = Disposition::Done;
                continue;
            }
            Err(e) => {
                log_failure(
                    &e,
                    &s.delivery_id,
                    "record an attempt; SQS will hand it out again",
                );
                continue;
            }
        }
        if let Err(e) = record_health(backend, s).await {
            // The breaker misses one data point; the delivery is settled all the same.
            log_failure(&e, &s.delivery_id, "record the rule's health");
        }
        if s.gone
            && let Err(e) = disable_gone(backend, s).await
        {
            // Its next delivery to the receiver says so again.
            log_failure(&e, &s.delivery_id, "disable a rule whose receiver is gone");
        }
        match s.outcome {
            Outcome::Succeeded => dispositions[i] = Disposition::Done,
            Outcome::RetryAt(at) => delays.push((receipt.to_owned(), visibility_until(at))),
            Outcome::Dead => dead.push((
                i,
                Outgoing {
                    body: body.to_owned(),
                    tenant: Some(s.tenant_id.to_string()),
                    trace: s.trace.clone(),
                },
            )),
        }
    }
    let queue = &backend.settings.deliveries_queue_url;
    if let Err(e) = backend.queues.change_visibility(queue, &delays).await {
        // The messages come back after the queue's visibility timeout instead.
        log_failure(&e, "-", "set retry delays");
    }
    if !dead.is_empty() {
        let (indexes, bodies): (Vec<usize>, Vec<Outgoing>) = dead.into_iter().unzip();
        let sent = match &backend.settings.deliveries_dlq_url {
            Some(dlq) => backend.queues.send(dlq, bodies).await,
            None => Err(StoreError::unavailable(
                "send to the dead-letter queue",
                NoDlq,
            )),
        };
        match sent {
            Ok(()) => indexes
                .into_iter()
                .for_each(|i| dispositions[i] = Disposition::Done),
            Err(e) => log_failure(&e, "-", "move dead deliveries to the dead-letter queue"),
        }
    }
    dispositions
}

#[derive(Debug, thiserror::Error)]
#[error("HOOKLINE_DELIVERIES_DLQ_URL is not set")]
struct NoDlq;

/// Seconds from now until `at`, within SQS's 12-hour visibility limit.
fn visibility_until(at: Timestamp) -> i32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let secs = (at.as_millis() - now + 999).div_euclid(1000);
    i32::try_from(secs.clamp(0, 43_200)).unwrap_or(43_200)
}

/// Sends held-back messages again, each due when its rule's circuit lets it
/// (SQS delays a message by at most 15 minutes; a longer hold takes more
/// rounds, each costing no attempt).
pub(crate) async fn hold(
    backend: &AwsBackend,
    message: &DeliveryMessage,
    until: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    // Held, a delivery is listed (pending, with why it waits) although no
    // attempt has recorded it.
    let m = message;
    if let Some(fields) = described(&m.delivery_id, &m.event_id, &m.rule_id, m.line.clone()) {
        backend
            .table
            .update(delivery_key(&m.tenant_id, &m.delivery_id), |u| {
                let (set, u) = set_fields(u, fields);
                u.update_expression(format!(
                    "SET {set}, #s = if_not_exists(#s, :pending), \
                     attempt_count = if_not_exists(attempt_count, :zero)"
                ))
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(
                    ":pending",
                    AttributeValue::S(DeliveryStatus::Pending.as_str().into()),
                )
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            })
            .await?;
    }
    let secs = (until.as_millis() - now.as_millis() + 999)
        .div_euclid(1000)
        .clamp(0, 900);
    backend
        .queues
        .send_delayed(
            &backend.settings.deliveries_queue_url,
            vec![outgoing(message)?],
            Some(i32::try_from(secs).unwrap_or(900)),
        )
        .await
}
