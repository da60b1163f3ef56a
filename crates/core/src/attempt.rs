//! One attempt at a delivery: the body and signature, the send, and what
//! follows from the answer. Both backends' deliverers run exactly this and
//! then hand the [`Settlement`] to their queue's one `settle`.
//!
//! This is the top of the core: it drives the [`Sender`] and [`Clock`] ports.

use serde::Serialize;

use crate::delivery::{Attempt, FullBody};
use crate::event::Line;
use crate::ports::{
    Clock, DeliveryJob, Destination, Endpoint, Outcome, OutgoingRequest, ReceiverSignal, Sender,
    Settlement,
};
use crate::retry::RetrySchedule;
use crate::rule::PayloadFormat;
use crate::time::Timestamp;

/// Plug&Pay's thin V2 envelope: what happened and to what, for the receiver
/// to fetch the rest.
#[derive(Serialize)]
struct ThinBody<'a> {
    trigger_type: String,
    triggerable_id: &'a str,
    triggerable_type: &'a str,
    sent_at: Timestamp,
    tenant_id: &'a str,
    rule_id: &'a str,
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a Line>,
}

/// The thin body of a delivery, sent at `at`.
pub fn thin_body(job: &DeliveryJob, at: Timestamp) -> Vec<u8> {
    let (kind, id) = match &job.subject {
        Some(s) => (s.kind.as_str(), s.id.as_str()),
        None => (job.trigger.noun(), job.event_id.as_str()),
    };
    let thin = ThinBody {
        trigger_type: job.trigger.as_str().replace('.', "_"),
        triggerable_id: id,
        triggerable_type: kind,
        sent_at: at,
        tenant_id: &job.tenant_id,
        rule_id: &job.rule_id,
        event_id: &job.event_id,
        line: job.line.as_ref(),
    };
    serde_json::to_vec(&thin).unwrap_or_default()
}

/// The full body of a delivery, the same on every attempt.
pub fn body(job: &DeliveryJob) -> Vec<u8> {
    let payload = FullBody {
        trigger: job.trigger,
        timestamp: job.occurred_at,
        event_id: &job.event_id,
        tenant_id: &job.tenant_id,
        rule_id: &job.rule_id,
        data: &job.data,
        line: job.line.as_ref(),
    };
    // Serializing owned strings and a parsed RawValue cannot fail.
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Runs attempts: signs, sends and decides what comes next, the same way on
/// both backends.
#[derive(Debug, Clone)]
pub struct Attempter {
    pub schedule: RetrySchedule,
    pub user_agent: String,
}

impl Attempter {
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
        let endpoint = match &job.destination {
            Destination::Endpoint(endpoint) => endpoint,
            Destination::Gone(why) => {
                return Settlement::new(job, failed(at, (*why).to_owned()), Outcome::Dead);
            }
        };
        if job.keys.0.is_empty() {
            let attempt = failed(at, "the tenant has no webhook key".into());
            return Settlement::new(job, attempt, Outcome::Dead);
        }
        let sent = sender.send(self.request(job, endpoint, at)).await;
        let duration_ms = u64::try_from(sent.elapsed.as_millis()).unwrap_or(u64::MAX);
        let (attempt, ok, retry_after, signal) = match sent.result {
            Ok(r) => {
                let ok = (200..300).contains(&r.status);
                let honoured = matches!(r.status, 429 | 503)
                    .then_some(r.retry_after)
                    .flatten();
                // 410 Gone says what `webhook-delivery: disable` says.
                let signal = r
                    .signal
                    .or((r.status == 410).then_some(ReceiverSignal::Disable));
                let attempt = Attempt {
                    at,
                    status_code: Some(r.status),
                    duration_ms,
                    error: (!ok).then(|| failure(r.status, r.signal)),
                    response_body: Some(r.body),
                };
                (attempt, ok, honoured, signal)
            }
            Err(error) => (
                Attempt {
                    duration_ms,
                    ..failed(at, error)
                },
                false,
                None,
                None,
            ),
        };
        let attempt_number = job.attempt;
        let outcome = if ok {
            Outcome::Succeeded
        } else if signal.is_some() {
            // Gone, or asked not to be retried: no retry would be taken.
            Outcome::Dead
        } else {
            match self.schedule.next_delay(
                attempt_number,
                retry_after,
                jitter(&job.delivery_id, attempt_number),
            ) {
                Some(delay) => Outcome::RetryAt(clock.now().saturating_add(delay)),
                None => Outcome::Dead,
            }
        };
        Settlement {
            receiver_ok: Some(ok),
            gone: signal == Some(ReceiverSignal::Disable),
            ..Settlement::new(job, attempt, outcome)
        }
    }

    fn request(&self, job: &DeliveryJob, endpoint: &Endpoint, at: Timestamp) -> OutgoingRequest {
        let body = match endpoint.payload {
            PayloadFormat::Full => body(job),
            PayloadFormat::Thin => thin_body(job, at),
        };
        let ts = at.as_secs();
        let signature = job.keys.signature_header(&job.delivery_id, ts, &body);
        // The rule's own headers first; Hookline's cannot be among them.
        let mut headers = endpoint.headers.clone();
        headers.extend([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), self.user_agent.clone()),
            ("webhook-id".to_owned(), job.delivery_id.to_string()),
            ("webhook-timestamp".to_owned(), ts.to_string()),
            ("webhook-signature".to_owned(), signature),
        ]);
        OutgoingRequest {
            url: endpoint.url.clone(),
            headers,
            body,
        }
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

/// Why an answer that is not 2xx failed, with what the receiver asked.
fn failure(status: u16, signal: Option<ReceiverSignal>) -> String {
    match (status, signal) {
        (_, Some(ReceiverSignal::Disable)) => {
            format!(
                "receiver answered {status} with webhook-delivery: disable; the rule is disabled"
            )
        }
        (_, Some(ReceiverSignal::AbortMessage)) => {
            format!("receiver answered {status} with webhook-delivery: abort-message; not retried")
        }
        (410, None) => "receiver answered 410 Gone; the rule is disabled".to_owned(),
        _ => format!("receiver answered {status}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Response;
    use std::time::Duration;

    /// Answers every request with `status` and `header`'s signal, if any.
    struct Answers(u16, Option<&'static str>);

    #[async_trait::async_trait]
    impl Sender for Answers {
        async fn send(&self, _: OutgoingRequest) -> crate::ports::Sent {
            crate::ports::Sent {
                result: Ok(Response {
                    status: self.0,
                    body: String::new(),
                    retry_after: None,
                    signal: self.1.and_then(ReceiverSignal::parse),
                }),
                elapsed: Duration::from_millis(3),
            }
        }
    }

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(1_795_953_600_000)
        }
    }

    fn job() -> DeliveryJob {
        DeliveryJob {
            delivery_id: crate::delivery::DeliveryId::stored("msg_1"),
            tenant_id: crate::id::TenantId::stored("t"),
            event_id: crate::id::EventId::stored("evt_1"),
            rule_id: crate::id::RuleId::stored("rul_1"),
            trigger: crate::trigger::Trigger::OrderPaid,
            occurred_at: Timestamp::default(),
            line: None,
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            subject: None,
            destination: Destination::Endpoint(Endpoint {
                url: "https://example.com/hook".into(),
                payload: PayloadFormat::Full,
                headers: Vec::new(),
            }),
            keys: crate::signing::SigningKeys(vec![
                crate::signing::WebhookKey::from_bytes(&[7; 32]).unwrap(),
            ]),
            lease: None,
            attempt: 1,
            rule_health: Default::default(),
            trace: None,
        }
    }

    /// A receiver's signals: 410 and `webhook-delivery: disable` end the
    /// delivery and mark its rule gone; `abort-message` ends the delivery
    /// only; a 2xx is delivered whatever it asks; anything else is retried.
    #[tokio::test]
    async fn a_receiver_can_ask_to_be_disabled_or_not_retried() {
        let attempter = Attempter::new(RetrySchedule::parse("1s").unwrap());
        let settle = |status, header| {
            let attempter = attempter.clone();
            async move {
                attempter
                    .attempt(&job(), &Answers(status, header), &Fixed)
                    .await
            }
        };
        let gone = settle(410, None).await;
        assert_eq!((gone.outcome, gone.gone), (Outcome::Dead, true));
        assert_eq!(
            gone.attempt.error.as_deref(),
            Some("receiver answered 410 Gone; the rule is disabled")
        );
        let disable = settle(503, Some("Disable")).await;
        assert_eq!((disable.outcome, disable.gone), (Outcome::Dead, true));
        let abort = settle(500, Some("abort-message")).await;
        assert_eq!((abort.outcome, abort.gone), (Outcome::Dead, false));
        assert!(abort.attempt.error.unwrap().contains("abort-message"));
        let taken = settle(200, Some("disable")).await;
        assert_eq!((taken.outcome, taken.gone), (Outcome::Succeeded, true));
        let unknown = settle(500, Some("later")).await;
        assert!(matches!(unknown.outcome, Outcome::RetryAt(_)) && !unknown.gone);
    }

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
