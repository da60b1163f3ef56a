//! Traces of `hookline serve` over OTLP/HTTP to a receiver on 127.0.0.1:
//! each event's ingest, its delivery's attempts (a retry's too) and their
//! settles, in one trace of its own.

use hookline_test_support::otlp::{OtlpReceiver, one_trace_per_event};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_is_one_trace_from_ingest_to_its_attempt() {
    let otlp = OtlpReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(
        &db_in(&dir),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url),
            ("HOOKLINE_RETRY_SCHEDULE", "50ms"),
        ],
    );
    let shop = h.tenant("shop_1");
    // The first request fails: evt_1's delivery is attempted twice.
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 500 } else { 204 })).await;
    h.paid_orders_to(&shop, receiver.url("/")).await;
    let mut deliveries = Vec::new();
    for id in ["evt_1", "evt_2"] {
        let delivery = h.paid_order(&shop, id).await;
        h.wait_delivery(&shop, &delivery, "succeeded").await;
        deliveries.push(delivery);
    }
    // Stopping exports what the batch exporter still holds.
    assert!(h.stop().success());
    let spans = otlp
        .wait_for(|spans| spans.iter().filter(|s| s.name == "settle").count() >= 3)
        .await;
    let traces = one_trace_per_event(
        &spans,
        &["evt_1", "evt_2"],
        &["ingest", "attempt", "settle"],
    );
    for (delivery, (trace, tries)) in deliveries.iter().zip(traces.iter().zip([2, 1])) {
        let attempts: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "attempt" && s.attributes["delivery_id"] == *delivery)
            .collect();
        assert_eq!(attempts.len(), tries, "{delivery}: {attempts:#?}");
        for (n, attempt) in attempts.iter().enumerate() {
            assert_eq!(
                &attempt.trace_id, trace,
                "a retry stays in its event's trace"
            );
            assert_eq!(attempt.attributes["attempt"], (n + 1).to_string());
            assert_eq!(attempt.service, "hookline");
        }
    }
    assert!(
        spans
            .iter()
            .all(|s| !s.attributes.values().any(|v| v.contains("whsec_"))),
        "no webhook key in a span"
    );
}
