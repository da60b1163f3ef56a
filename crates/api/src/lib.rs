//! Hookline's HTTP API: ingest and admin in one axum router, served by axum
//! in `hookline serve` and by `lambda_http` on Lambda, from this one copy.

mod auth;
mod body;
mod dashboard;
mod deliveries;
mod error;
mod events;
mod health;
mod keys;
pub mod openapi;
mod rules;
mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
pub use body::BODY_LIMIT;
pub use error::ApiError;
pub use rules::{RuleIn, RulePatchIn};
pub use state::{ApiConfig, ApiState};

/// A header on every answer, so that a client (the CLI) can tell Hookline
/// from whatever else answers at an address.
pub const VERSION_HEADER: &str = "hookline-version";

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi::serve))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/{file}", get(dashboard::asset))
        .route("/v1/events", post(events::ingest))
        .route("/v1/events/batch", post(events::ingest_batch))
        .route("/v1/rules", get(rules::list).post(rules::create))
        .route(
            "/v1/rules/{id}",
            get(rules::get).patch(rules::update).delete(rules::delete),
        )
        .route("/v1/rules/{id}/health", get(health::get))
        .route("/v1/rules/{id}/recover", post(deliveries::recover))
        .route("/v1/rules/{id}/test", post(rules::test))
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
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                response.headers_mut().insert(
                    VERSION_HEADER,
                    axum::http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
                );
                response
            },
        ))
        .with_state(state)
}
