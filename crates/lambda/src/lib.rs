//! What the four Lambda functions share: reading their configuration from
//! the environment and building the backend, the API and the deliverer.
//! Each function's `main` wires one of these to the Lambda runtime.

use std::sync::Arc;

use hookline_api::{ApiConfig, ApiState};
use hookline_aws::{AwsBackend, AwsSettings, Deliverer};
use hookline_core::Attempter;
use hookline_core::ingest_token::IngestTokens;
use hookline_sender::{HttpSender, SenderConfig};
use hookline_telemetry::{LogFormat, Telemetry};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub use hookline_core::SystemClock;
/// The settings `hookline serve` reads too, parsed by the same code.
pub use hookline_core::settings::Settings;

/// JSON logs for CloudWatch (`HOOKLINE_LOG` sets the level), and traces
/// over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the ADOT collector
/// extension's `http://localhost:4318`, say), as `service`.
pub fn init_logging(service: &str) -> Result<Arc<Telemetry>, Error> {
    let level = hookline_core::settings::log_level_from_env()?
        .parse()
        .unwrap_or(tracing::Level::INFO);
    Ok(Arc::new(hookline_telemetry::init(
        service,
        LogFormat::Json,
        level,
    )?))
}

/// Exports an invocation's spans before Lambda may freeze the process;
/// nothing when traces are off.
pub async fn flush(telemetry: &Arc<Telemetry>) {
    if telemetry.traces() {
        let telemetry = telemetry.clone();
        let _ = tokio::task::spawn_blocking(move || telemetry.flush()).await;
    }
}

/// The API's router, flushing the spans of each request once it is answered.
fn flushing(router: axum::Router, telemetry: Arc<Telemetry>) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let telemetry = telemetry.clone();
            async move {
                let response = next.run(request).await;
                flush(&telemetry).await;
                response
            }
        },
    ))
}

pub async fn backend() -> Result<AwsBackend, Error> {
    let settings = AwsSettings::from_env()?;
    Ok(AwsBackend::new(&hookline_aws::sdk_config().await, settings))
}

/// The HTTP API's state on the AWS backend, accepting `ingest_tokens` (none
/// on the admin function, which API Gateway never sends an event).
fn api_state(backend: AwsBackend, settings: &Settings, ingest_tokens: IngestTokens) -> ApiState {
    let config = ApiConfig {
        ingest_tokens,
        policy: settings.target_policy(),
        key_grace: settings.key_grace,
        max_rules: settings.max_rules,
    };
    ApiState::new(Arc::new(backend), Arc::new(SystemClock), config)
}

/// `hookline-ingest`: the tokens from the secret `HOOKLINE_INGEST_TOKEN_SECRET`
/// names, read once at cold start (on AWS no function's environment holds a
/// token), else from `HOOKLINE_INGEST_TOKEN` (local runs).
pub async fn serve_ingest(telemetry: Arc<Telemetry>) -> Result<(), Error> {
    let settings = Settings::from_env()?;
    let aws = AwsSettings::from_env()?;
    let sdk = hookline_aws::sdk_config().await;
    let tokens = match &aws.ingest_token_secret {
        Some(secret) => hookline_aws::ingest_tokens(&sdk, secret).await?,
        None => settings
            .ingest_tokens
            .clone()
            .ok_or("neither HOOKLINE_INGEST_TOKEN_SECRET nor HOOKLINE_INGEST_TOKEN is set")?,
    };
    let state = api_state(AwsBackend::new(&sdk, aws), &settings, tokens);
    lambda_http::run(flushing(hookline_api::router(state), telemetry)).await
}

/// `hookline-admin`: no ingest token, and the sender a rule's test send uses.
pub async fn serve_admin(telemetry: Arc<Telemetry>) -> Result<(), Error> {
    let settings = Settings::from_env()?;
    let state = api_state(backend().await?, &settings, IngestTokens::default())
        .with_sender(Arc::new(sender(&settings)?));
    lambda_http::run(flushing(hookline_api::router(state), telemetry)).await
}

/// The HTTP sender, as the deliverer and a rule's test send use it.
fn sender(settings: &Settings) -> Result<HttpSender, Error> {
    Ok(HttpSender::new(SenderConfig {
        policy: settings.target_policy(),
        timeout: settings.delivery_timeout,
        ..SenderConfig::default()
    })?)
}

/// The deliverer moves dead deliveries to the dead-letter queue itself, so it
/// needs to know where that is.
pub fn deliverer(backend: AwsBackend, settings: &Settings) -> Result<Deliverer, Error> {
    if backend.settings().deliveries_dlq_url.is_none() {
        return Err(
            "HOOKLINE_DELIVERIES_DLQ_URL is not set: the deliverer moves dead deliveries there"
                .into(),
        );
    }
    Ok(Deliverer {
        backend: backend.with_breaker(settings.breaker),
        sender: Arc::new(sender(settings)?),
        clock: Arc::new(SystemClock),
        attempter: Arc::new(Attempter::new(settings.retry_schedule.clone())),
        metrics_namespace: std::env::var(hookline_aws::emf::NAMESPACE_VAR)
            .ok()
            .filter(|ns| !ns.is_empty()),
    })
}
