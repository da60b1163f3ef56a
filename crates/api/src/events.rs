//! `POST /v1/events`: the platform reports an event.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use hookline_core::Event;
use hookline_core::ports::Acceptance;
use serde_json::{Value, json};

use crate::auth::Producer;
use crate::body;
use crate::error::ApiError;
use crate::state::ApiState;

pub async fn ingest(
    _: Producer,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = Event::from_json(&body::bytes(raw)?)?;
    let answer = |status, duplicate| {
        (
            status,
            Json(json!({ "id": event.id, "duplicate": duplicate })),
        )
    };
    match state.store.accept_event(&event, state.clock.now()).await? {
        Acceptance::Accepted => Ok(answer(StatusCode::ACCEPTED, false)),
        Acceptance::Duplicate => Ok(answer(StatusCode::OK, true)),
        Acceptance::UnknownTenant => Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_tenant",
            "tenant_id",
            format!("tenant_id: no tenant {:?}", event.tenant_id),
        )),
    }
}
