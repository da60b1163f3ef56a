//! Logs and traces for every Hookline process. Logs go to stderr (text) or
//! stdout (JSON, for CloudWatch) at `HOOKLINE_LOG`'s level. Traces are
//! spans of target [`TRACE`] (ingest, fan-out, attempt, settle),
//! exported over OTLP/HTTP (JSON, [`otlp`]) when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; unset, no layer wants
//! them and they cost a disabled callsite. Between processes and queues, a span's
//! context travels as a W3C `traceparent` string ([`traceparent`],
//! [`follow`]), so one event's spans join one trace; [`attempt`] and
//! [`settle_spans`] are a delivery's, the same on both forms.

use std::collections::HashMap;

use hookline_core::Attempter;
use hookline_core::ports::{Clock, DeliveryJob, Sender, Settlement};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Instrument, Level};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The target of the spans that make up a trace; logs leave them out.
pub const TRACE: &str = "hookline::trace";

/// The W3C header (and SQS message attribute) a trace context travels in.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text lines on stderr, for a terminal (`hookline`).
    Text,
    /// JSON lines on stdout, without time (CloudWatch stamps them): Lambda.
    Json,
}

mod otlp;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP trace exporter: {0}")]
    Exporter(#[from] otlp::ExporterError),
    #[error("cannot install the log and trace subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed telemetry: what a process flushes before it may be frozen
/// (a Lambda function after each invocation) and shuts down at its end.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Where spans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traces<'a> {
    /// Where the standard variables say, if they say anywhere.
    FromEnvironment,
    /// To this OTLP/HTTP traces URL (`…/v1/traces`).
    To(&'a str),
}

/// Installs logging at `level` in `format`, and the trace exporter when an
/// OTLP endpoint is set, naming this process `service`. Call it from
/// within the async runtime: the exporter posts on it.
pub fn init(service: &str, format: LogFormat, level: Level) -> Result<Telemetry, TelemetryError> {
    init_with(service, format, level, Traces::FromEnvironment)
}

/// [`init`], with the spans sent where `traces` says.
pub fn init_with(
    service: &str,
    format: LogFormat,
    level: Level,
    traces: Traces,
) -> Result<Telemetry, TelemetryError> {
    let logs = Targets::new()
        .with_default(level)
        .with_target(TRACE, LevelFilter::OFF);
    let log_layer = match format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(logs)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .without_time()
            .with_target(false)
            .with_filter(logs)
            .boxed(),
    };
    let url = match traces {
        Traces::FromEnvironment => otlp::url_from_env(),
        Traces::To(url) => Some(url.to_owned()),
    };
    let traces = if let Some(url) = url {
        let exporter = otlp::OtlpJson::new(url)?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_owned())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let trace_layer = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("hookline"))
            .with_filter(Targets::new().with_target(TRACE, Level::TRACE))
    });
    tracing_subscriber::registry()
        .with(log_layer)
        .with(trace_layer)
        .try_init()?;
    Ok(Telemetry { traces })
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports the spans ended so far, waiting for it (blocking): a Lambda
    /// function is frozen after its invocation, and spans left behind may
    /// never go.
    pub fn flush(&self) {
        if let Some(provider) = &self.traces
            && let Err(e) = provider.force_flush()
        {
            tracing::warn!(error = %e, "could not export traces");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            let _ = provider.shutdown();
        }
    }
}

/// The `traceparent` of `span`, when it is being traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the span `traceparent` names (from another
/// process, or from before a queue), if any: so its trace goes on.
pub fn follow(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(parent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), parent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    // A span no layer records (traces off) has no parent to set.
    let _ = span.set_parent(cx);
}

/// Runs `job`'s attempt in its span, in its event's trace, and answers its
/// settlement carrying that span's context for the settle to join: the
/// one way both deliverers attempt.
pub async fn attempt(
    attempter: &Attempter,
    job: &DeliveryJob,
    sender: &dyn Sender,
    clock: &dyn Clock,
) -> Settlement {
    let span = attempt_span(job);
    let mut settled = attempter
        .attempt(job, sender, clock)
        .instrument(span.clone())
        .await;
    settled.trace = traceparent(&span);
    settled
}

/// The span of one attempt, in its event's trace.
fn attempt_span(job: &DeliveryJob) -> tracing::Span {
    let span = tracing::info_span!(target: TRACE, parent: None, "attempt",
        delivery_id = %job.delivery_id, event_id = %job.event_id, rule_id = %job.rule_id,
        attempt = job.attempt);
    follow(&span, job.trace.as_deref());
    span
}

/// A span per settlement, each in its attempt's trace, to be held for as
/// long as the write that records them takes.
pub fn settle_spans<'a>(batch: impl IntoIterator<Item = &'a Settlement>) -> Vec<tracing::Span> {
    batch
        .into_iter()
        .map(|s| {
            let span = tracing::info_span!(target: TRACE, parent: None, "settle",
                delivery_id = %s.delivery_id, outcome = ?s.outcome);
            follow(&span, s.trace.as_deref());
            span
        })
        .collect()
}
