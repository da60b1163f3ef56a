//! What the four Lambda functions share: reading their configuration from
//! the environment and building the backend, the API and the deliverer.
//! Each function's `main` wires one of these to the Lambda runtime.

use std::sync::Arc;

use hookline_api::{ApiConfig, ApiState};
use hookline_aws::{AwsBackend, AwsSettings, Deliverer};
use hookline_core::Attempter;
use hookline_core::ingest_token::IngestTokens;
use hookline_sender::{HttpSender, SenderConfig};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub use hookline_core::SystemClock;
/// The settings `hookline serve` reads too, parsed by the same code.
pub use hookline_core::settings::Settings;

/// JSON logs for CloudWatch; `HOOKLINE_LOG` sets the level.
pub fn init_logging() {
    let level = std::env::var("HOOKLINE_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .init();
}

/// The ingest tokens: from the secret `HOOKLINE_INGEST_TOKEN_SECRET` names
/// (on AWS, where no function's environment holds a token), else from
/// `HOOKLINE_INGEST_TOKEN` (local runs).
pub async fn ingest_tokens() -> Result<IngestTokens, Error> {
    if let Some(secret) = AwsSettings::from_env()?.ingest_token_secret {
        return Ok(hookline_aws::ingest_tokens(&hookline_aws::sdk_config().await, &secret).await?);
    }
    Settings::from_env()?.ingest_tokens.ok_or_else(|| {
        "neither HOOKLINE_INGEST_TOKEN_SECRET nor HOOKLINE_INGEST_TOKEN is set".into()
    })
}

pub async fn backend() -> Result<AwsBackend, Error> {
    let settings = AwsSettings::from_env()?;
    Ok(AwsBackend::new(&hookline_aws::sdk_config().await, settings))
}

/// The HTTP API on the AWS backend. `ingest_tokens` is what ingest accepts:
/// none on the admin function, which API Gateway never sends an event.
pub fn api(
    backend: AwsBackend,
    settings: &Settings,
    ingest_tokens: IngestTokens,
) -> Result<axum::Router, Error> {
    let config = ApiConfig {
        ingest_tokens,
        policy: settings.target_policy(),
        key_grace: settings.key_grace,
        max_rules: settings.max_rules,
    };
    let state = ApiState::new(Arc::new(backend), Arc::new(SystemClock), config)
        .with_sender(Arc::new(sender(settings)?));
    Ok(hookline_api::router(state))
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
    })
}

/// Serves the API to API Gateway (HTTP API, payload 2.0) with the ingest
/// tokens given: the ingest function's, or none on the admin function.
pub async fn serve_http(ingest_tokens: IngestTokens) -> Result<(), Error> {
    let settings = Settings::from_env()?;
    let app = api(backend().await?, &settings, ingest_tokens)?;
    lambda_http::run(app).await
}
