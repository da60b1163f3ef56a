//! `POST /v1/events`: the platform reports an event.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use hookline_core::Event;
use hookline_core::ports::Acceptance;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::Producer;
use crate::body;
use crate::error::ApiError;
use crate::schema;
use crate::state::ApiState;

#[utoipa::path(post, operation_id = "ingest_event", path = "/v1/events", tag = "ingest", security(("ingest_token" = [])),
    request_body = schema::EventIn,
    responses(
        (status = 202, description = "Stored and queued.", body = schema::Accepted),
        (status = 200, description = "A duplicate: the tenant sent this id before; nothing more is delivered.", body = schema::Accepted),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid ingest token.", body = schema::ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = schema::ErrorBody),
        (status = 422, description = "An unknown `type` or `tenant_id` (`unknown_type`, `unknown_tenant`), or an event whose fan-out across the tenant's rules is over its budget (`fanout_too_large`: more than 10,000 deliveries, or more than 2,000,000 filter steps).", body = schema::ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
pub async fn ingest(
    _: Producer,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = Event::from_json(&body::bytes(raw)?)?;
    let reply = |status, duplicate| {
        (
            status,
            Json(json!({ "id": event.id, "duplicate": duplicate })),
        )
    };
    let acceptance = state.store.accept_event(&event, state.clock.now()).await?;
    let (status, duplicate) = answer(&event, acceptance)?;
    Ok(reply(status, duplicate))
}

/// What ingest answers for an event the store took as `acceptance`.
fn answer(event: &Event, acceptance: Acceptance) -> Result<(StatusCode, bool), ApiError> {
    match acceptance {
        Acceptance::Accepted => Ok((StatusCode::ACCEPTED, false)),
        Acceptance::Duplicate => Ok((StatusCode::OK, true)),
        Acceptance::UnknownTenant => Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_tenant",
            "tenant_id",
            format!("tenant_id: no tenant {:?}", event.tenant_id),
        )),
        Acceptance::TooLarge(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fanout_too_large",
            why.to_string(),
        )),
    }
}

/// The most events one batch carries.
pub const MAX_BATCH: usize = 100;

/// `POST /v1/events/batch` `{"events": [...]}`: up to 100 events, each
/// judged alone; answers 200 with one result per event, in order:
/// `{"id", "status", "duplicate"?, "error"?}` where `status` is what
/// `POST /v1/events` would have answered for it.
#[utoipa::path(post, operation_id = "ingest_events", path = "/v1/events/batch", tag = "ingest", security(("ingest_token" = [])),
    request_body = schema::BatchIn,
    responses(
        (status = 200, description = "Each event judged alone, in order.", body = schema::BatchAnswer),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid ingest token.", body = schema::ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
pub async fn ingest_batch(
    _: Producer,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        events: Vec<Box<RawValue>>,
    }
    let batch: Batch = serde_json::from_slice(&body::bytes(raw)?).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "events",
            format!(r#"the body must be {{"events": [...]}}: {e}"#),
        )
    })?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "events",
            format!("events: must hold 1 to {MAX_BATCH} events"),
        ));
    }
    let parsed: Vec<Result<Event, ApiError>> = batch
        .events
        .iter()
        .map(|raw| Event::from_json(raw.get().as_bytes()).map_err(ApiError::from))
        .collect();
    let valid: Vec<Event> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned())
        .collect();
    let mut accepted = state
        .store
        .accept_events(&valid, state.clock.now())
        .await
        .into_iter();
    let results: Vec<Value> = batch
        .events
        .iter()
        .zip(parsed)
        .map(|(raw, parsed)| {
            let id = serde_json::from_str::<Value>(raw.get())
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            let outcome = parsed.and_then(|event| match accepted.next() {
                Some(Ok(acceptance)) => answer(&event, acceptance),
                Some(Err(e)) => Err(ApiError::from(e)),
                None => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store answered fewer events than it was given",
                )),
            });
            match outcome {
                Ok((status, duplicate)) => {
                    json!({"id": id, "status": status.as_u16(), "duplicate": duplicate})
                }
                Err(e) => json!({"id": id, "status": e.status().as_u16(), "error": e.body()}),
            }
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}
