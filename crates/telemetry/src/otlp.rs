//! The span exporter: OTLP/HTTP in OTLP's JSON encoding, posted with the
//! reqwest client the sender already links, on the process's own runtime.
//!
//! Written here rather than taken from `opentelemetry-otlp`: its HTTP
//! exporter (0.31) brings a second, blocking HTTP client, prost, tonic's
//! codec and its metrics exporter, which put the ingest function over its
//! 8 MiB (8.09 MiB on arm64). What a collector takes is the JSON mapping
//! of `ExportTraceServiceRequest`: ids in hex, times as decimal strings,
//! enums as numbers. The tests decode what this sends with the
//! OpenTelemetry project's own message types (`opentelemetry-proto`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Value as Json, json};

/// How long one export may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct OtlpJson {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
    runtime: tokio::runtime::Handle,
    resource: Vec<KeyValue>,
}

impl fmt::Debug for OtlpJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The headers may hold a collector's credentials.
        f.debug_struct("OtlpJson").field("url", &self.url).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("traces are exported from an async runtime's process; none runs here")]
    NoRuntime,
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The traces URL the standard variables name, if any: the signal's own
/// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, as it is), else the base
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`) with `/v1/traces`.
pub(crate) fn url_from_env() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    })
}

/// `OTEL_EXPORTER_OTLP_HEADERS` (or the traces' own): `name=value` pairs
/// split by commas, values percent-encoded.
fn headers_from_env() -> Vec<(String, String)> {
    let text = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), percent_decoded(value.trim())))
        .filter(|(name, _)| !name.is_empty())
        .collect()
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl OtlpJson {
    /// An exporter posting to `url`, its requests run on the current
    /// runtime (the batch processor calls it from a thread of its own).
    pub(crate) fn new(url: String) -> Result<Self, ExporterError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ExporterError::NoRuntime)?;
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(OtlpJson {
            client,
            url,
            headers: headers_from_env(),
            runtime,
            resource: Vec::new(),
        })
    }
}

impl SpanExporter for OtlpJson {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let body = encode(&self.resource, &batch).to_string();
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let sent = self.runtime.spawn(async move {
            request
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map(drop)
        });
        async move {
            match sent.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(OTelSdkError::InternalFailure(format!(
                    "the collector did not take the spans: {e}"
                ))),
                Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding: the spans of
/// one resource, grouped by their instrumentation scope.
fn encode(resource: &[KeyValue], batch: &[SpanData]) -> Json {
    let mut scopes: Vec<(&opentelemetry::InstrumentationScope, Vec<Json>)> = Vec::new();
    for span in batch {
        let scope = &span.instrumentation_scope;
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, spans)) => spans.push(encode_span(span)),
            None => scopes.push((scope, vec![encode_span(span)])),
        }
    }
    let scope_spans: Vec<Json> = scopes
        .into_iter()
        .map(|(scope, spans)| {
            json!({
                "scope": {"name": scope.name(), "version": scope.version().unwrap_or_default()},
                "spans": spans,
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": attributes(resource)},
        "scopeSpans": scope_spans,
    }]})
}

fn encode_span(span: &SpanData) -> Json {
    let parent = if span.parent_span_id == SpanId::INVALID {
        String::new()
    } else {
        span.parent_span_id.to_string()
    };
    let (code, message) = match &span.status {
        Status::Unset => (0, ""),
        Status::Ok => (1, ""),
        Status::Error { description } => (2, description.as_ref()),
    };
    let events: Vec<Json> = span
        .events
        .iter()
        .map(|e| {
            json!({
                "timeUnixNano": nanos(e.timestamp),
                "name": e.name,
                "attributes": attributes(&e.attributes),
            })
        })
        .collect();
    let links: Vec<Json> = span
        .links
        .iter()
        .map(|l| {
            json!({
                "traceId": l.span_context.trace_id().to_string(),
                "spanId": l.span_context.span_id().to_string(),
                "attributes": attributes(&l.attributes),
            })
        })
        .collect();
    json!({
        "traceId": span.span_context.trace_id().to_string(),
        "spanId": span.span_context.span_id().to_string(),
        "parentSpanId": parent,
        "name": span.name,
        "kind": kind(&span.span_kind),
        "startTimeUnixNano": nanos(span.start_time),
        "endTimeUnixNano": nanos(span.end_time),
        "attributes": attributes(&span.attributes),
        "droppedAttributesCount": span.dropped_attributes_count,
        "events": events,
        "links": links,
        "status": {"code": code, "message": message},
    })
}

/// The enum's number in the protocol.
fn kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// A time as the protocol's JSON writes a fixed64: a decimal string.
fn nanos(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn attributes(kvs: &[KeyValue]) -> Vec<Json> {
    kvs.iter()
        .map(|kv| json!({"key": kv.key.as_str(), "value": any(&kv.value)}))
        .collect()
}

fn any(value: &Value) -> Json {
    match value {
        Value::Bool(b) => json!({"boolValue": b}),
        // int64 is written as a decimal string, as for times.
        Value::I64(i) => json!({"intValue": i.to_string()}),
        Value::F64(f) => json!({"doubleValue": f}),
        Value::String(s) => json!({"stringValue": s.as_str()}),
        Value::Array(array) => {
            let values: Vec<Json> = match array {
                Array::Bool(v) => v.iter().map(|b| any(&Value::Bool(*b))).collect(),
                Array::I64(v) => v.iter().map(|i| any(&Value::I64(*i))).collect(),
                Array::F64(v) => v.iter().map(|f| any(&Value::F64(*f))).collect(),
                Array::String(v) => v
                    .iter()
                    .map(|s| json!({"stringValue": s.as_str()}))
                    .collect(),
                _ => Vec::new(),
            };
            json!({"arrayValue": {"values": values}})
        }
        _ => json!({"stringValue": value.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_pairs_with_percent_encoded_values() {
        assert_eq!(percent_decoded("Basic%20abc%3D"), "Basic abc=");
        assert_eq!(percent_decoded("100%"), "100%");
        assert_eq!(percent_decoded("%zz"), "%zz");
    }
}
