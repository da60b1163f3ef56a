//! A receiver of OTLP/HTTP traces on 127.0.0.1, as a collector is: it takes
//! `POST /v1/traces` in OTLP's JSON encoding, decoded with the OpenTelemetry
//! project's own message types (`opentelemetry-proto`, whose serde mapping
//! is the protocol's), and keeps each span with its trace, its parent, its
//! service and its attributes. A body they do not decode is refused, and
//! counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// A span as the receiver got it, ids in hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub service: String,
    pub attributes: HashMap<String, String>,
}

pub struct OtlpReceiver {
    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    pub url: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let spans: Arc<Mutex<Vec<ReceivedSpan>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (kept, why) = (spans.clone(), refused.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let (kept, why) = (kept.clone(), why.clone());
                async move {
                    let json = headers
                        .get("content-type")
                        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
                    let request = match serde_json::from_slice::<ExportTraceServiceRequest>(&body) {
                        Ok(request) if json => request,
                        Ok(_) => {
                            why.lock()
                                .unwrap()
                                .push("not sent as application/json".into());
                            return StatusCode::UNSUPPORTED_MEDIA_TYPE;
                        }
                        Err(e) => {
                            why.lock().unwrap().push(e.to_string());
                            return StatusCode::BAD_REQUEST;
                        }
                    };
                    let mut kept = kept.lock().unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .as_ref()
                            .map(|r| attributes(&r.attributes))
                            .and_then(|a| a.get("service.name").cloned())
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                kept.push(ReceivedSpan {
                                    name: span.name,
                                    trace_id: hex(&span.trace_id),
                                    span_id: hex(&span.span_id),
                                    parent_span_id: hex(&span.parent_span_id),
                                    service: service.clone(),
                                    attributes: attributes(&span.attributes),
                                });
                            }
                        }
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        OtlpReceiver {
            url,
            spans,
            refused,
        }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Why each export the receiver refused was refused.
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }

    /// Waits until the spans received satisfy `done`, for up to 30 s.
    pub async fn wait_for(&self, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            assert!(self.refused().is_empty(), "refused: {:?}", self.refused());
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "spans received: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks that each event's spans form one trace of their own, each span
/// the child of the one before: `chain` names them from the root (the
/// ingest) on, and `event_ids` the events. Answers the traces' ids.
pub fn one_trace_per_event(
    spans: &[ReceivedSpan],
    event_ids: &[&str],
    chain: &[&str],
) -> Vec<String> {
    let mut traces = Vec::new();
    for event in event_ids {
        let root = spans
            .iter()
            .find(|s| {
                s.name == chain[0]
                    && s.attributes.get("event_id").map(String::as_str) == Some(event)
            })
            .unwrap_or_else(|| panic!("no {} span for {event}: {spans:#?}", chain[0]));
        assert!(root.parent_span_id.is_empty(), "{root:?} is not a root");
        let mut parent = root;
        for name in &chain[1..] {
            let child = spans
                .iter()
                .find(|s| s.name == *name && s.parent_span_id == parent.span_id)
                .unwrap_or_else(|| panic!("no {name} span under {parent:?}: {spans:#?}"));
            assert_eq!(
                child.trace_id, root.trace_id,
                "{child:?} left {event}'s trace"
            );
            parent = child;
        }
        assert!(!traces.contains(&root.trace_id), "{event} shares a trace");
        traces.push(root.trace_id.clone());
    }
    traces
}
