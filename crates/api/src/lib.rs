//! Hookline's HTTP API: ingest and admin in one axum router, served by axum
//! in `hookline serve` and by `lambda_http` on Lambda, from this one copy.

mod auth;
mod body;
mod deliveries;
mod error;
mod events;
mod keys;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hookline_core::ports::{Clock, Store};
use hookline_core::target::TargetPolicy;

pub use error::ApiError;

/// The largest request body accepted, ingest events included.
pub const BODY_LIMIT: usize = 256 * 1024;

pub struct ApiConfig {
    pub ingest_token: String,
    pub policy: TargetPolicy,
    /// How long a rotated-out webhook key keeps signing.
    pub key_grace: Duration,
}

#[derive(Clone)]
pub struct ApiState {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<ApiConfig>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ApiConfig) -> Self {
        Self {
            store,
            clock,
            config: Arc::new(config),
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/events", post(events::ingest))
        .route("/v1/rules", get(rules::list).post(rules::create))
        .route(
            "/v1/rules/{id}",
            get(rules::get).patch(rules::update).delete(rules::delete),
        )
        .route("/v1/rules/{id}/recover", post(deliveries::recover))
        .route("/v1/webhook-key", get(keys::current))
        .route("/v1/webhook-key/rotate", post(keys::rotate))
        .route("/v1/deliveries", get(deliveries::list))
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/v1/deliveries/{id}/retry", post(deliveries::retry))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// An id with a type prefix that sorts by creation time, then random bits:
/// `rul_` + 12 hex digits of milliseconds + 16 random ones. DynamoDB lists
/// rules by id, so its lists come in creation order as SQLite's do.
fn new_id(prefix: &str, now: hookline_core::Timestamp) -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("no randomness: {e}"),
        )
    })?;
    Ok(format!(
        "{prefix}_{:012x}{}",
        now.as_millis(),
        hex::encode(bytes)
    ))
}
