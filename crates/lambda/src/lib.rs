//! What the four Lambda functions share: reading their configuration from
//! the environment and building the backend, the API and the deliverer.
//! Each function's `main` wires one of these to the Lambda runtime.

use std::sync::Arc;
use std::time::Duration;

use hookline_api::{ApiConfig, ApiState};
use hookline_aws::{AwsBackend, AwsSettings, Deliverer};
use hookline_core::delivery::AttemptPolicy;
use hookline_core::retry::{RetrySchedule, parse_duration};
use hookline_core::target::TargetPolicy;
use hookline_sender::{HttpSender, SenderConfig};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub use hookline_core::SystemClock;

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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The settings `hookline serve` reads too, from the same variables.
pub struct Settings {
    pub ingest_token: Option<String>,
    pub policy: TargetPolicy,
    pub schedule: RetrySchedule,
    pub key_grace: Duration,
    pub delivery_timeout: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Self, Error> {
        let duration = |name: &str, default: Duration| -> Result<Duration, Error> {
            match env(name) {
                None => Ok(default),
                Some(v) => parse_duration(&v).ok_or_else(|| {
                    format!("{name}={v:?} is not a duration such as 15s or 24h").into()
                }),
            }
        };
        Ok(Self {
            ingest_token: env("HOOKLINE_INGEST_TOKEN"),
            policy: TargetPolicy {
                allow_private: env("HOOKLINE_ALLOW_PRIVATE_TARGETS")
                    .is_some_and(|v| !matches!(v.as_str(), "0" | "false" | "no" | "off")),
            },
            schedule: match env("HOOKLINE_RETRY_SCHEDULE") {
                None => RetrySchedule::default(),
                Some(v) => {
                    RetrySchedule::parse(&v).map_err(|e| format!("HOOKLINE_RETRY_SCHEDULE: {e}"))?
                }
            },
            key_grace: duration("HOOKLINE_KEY_GRACE", Duration::from_secs(24 * 3600))?,
            delivery_timeout: duration("HOOKLINE_DELIVERY_TIMEOUT", Duration::from_secs(15))?,
        })
    }
}

pub async fn backend() -> Result<AwsBackend, Error> {
    let settings = AwsSettings::from_env()?;
    Ok(AwsBackend::new(&hookline_aws::sdk_config().await, settings))
}

/// The HTTP API on the AWS backend. The ingest token is required here: a
/// function has nowhere to print a generated one.
pub fn api(backend: AwsBackend, settings: &Settings) -> Result<axum::Router, Error> {
    let ingest_token = settings
        .ingest_token
        .clone()
        .ok_or("HOOKLINE_INGEST_TOKEN is not set")?;
    let config = ApiConfig {
        ingest_token,
        policy: settings.policy,
        key_grace: settings.key_grace,
    };
    Ok(hookline_api::router(ApiState::new(
        Arc::new(backend),
        Arc::new(SystemClock),
        config,
    )))
}

pub fn deliverer(backend: AwsBackend, settings: &Settings) -> Result<Deliverer, Error> {
    let sender = HttpSender::new(SenderConfig {
        policy: settings.policy,
        timeout: settings.delivery_timeout,
        ..SenderConfig::default()
    })?;
    Ok(Deliverer {
        backend,
        sender: Arc::new(sender),
        clock: Arc::new(SystemClock),
        policy: Arc::new(AttemptPolicy::new(settings.schedule.clone())),
    })
}

/// Serves the API to API Gateway (HTTP API, payload 2.0).
pub async fn serve_http() -> Result<(), Error> {
    init_logging();
    let settings = Settings::from_env()?;
    let app = api(backend().await?, &settings)?;
    lambda_http::run(app).await
}
