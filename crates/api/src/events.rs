//! `POST /v1/events`: the platform reports an event.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use hookline_core::Event;
use hookline_core::error::{is_object, parse_json};
use hookline_core::event::EventIn;
use hookline_core::ports::Acceptance;
use hookline_telemetry::TRACE;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::auth::Producer;
use crate::body;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::state::ApiState;

/// What ingest answers for an event it took.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    id: String,
    /// True when the tenant sent this event id before: nothing is delivered twice.
    duplicate: bool,
}

/// `{"events": [...]}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// Each an `EventIn`, judged alone: one that `POST /v1/events` would
    /// refuse is answered in its place, and the others are taken.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 100)]
    events: Vec<Box<RawValue>>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    /// One per event, in order.
    results: Vec<BatchResult>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// The event's `id` as it was sent (null when it had none).
    #[schema(value_type = Value, required = true)]
    id: Value,
    /// What `POST /v1/events` would have answered for this event.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    duplicate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<ErrorDetail>,
}

#[utoipa::path(post, operation_id = "ingest_event", path = "/v1/events", tag = "ingest", security(("ingest_token" = [])),
    request_body = EventIn,
    responses(
        (status = 202, description = "Stored and queued.", body = Accepted),
        (status = 200, description = "A duplicate: the tenant sent this id before; nothing more is delivered.", body = Accepted),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid ingest token.", body = ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = ErrorBody),
        (status = 422, description = "An unknown `type` or `tenant_id` (`unknown_type`, `unknown_tenant`), an order line id that repeats an earlier one (`repeated_line`), or an event whose fan-out across the tenant's rules is over its budget (`fanout_too_large`: more than 10,000 deliveries, or more than 2,000,000 filter steps).", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn ingest(
    _: Producer,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut event = Event::from_json(&body::bytes(raw)?)?;
    let span = traced(&mut event);
    let acceptance = state
        .store
        .accept_event(&event, state.clock.now())
        .instrument(span)
        .await?;
    let (status, duplicate) = answer(&event, acceptance)?;
    Ok((
        status,
        Json(Accepted {
            id: event.id.into(),
            duplicate,
        }),
    ))
}

/// What ingest answers for an event the store took as `acceptance`.
/// The span of an event's ingest, the root of its trace, which the event
/// carries on to its deliveries' attempts (locally, and through the queues
/// on AWS). Without an exporter no layer takes it, and it costs nothing.
fn traced(event: &mut Event) -> tracing::Span {
    let span = tracing::info_span!(target: TRACE, parent: None, "ingest",
        event_id = %event.id, tenant_id = %event.tenant_id, trigger = %event.trigger);
    event.trace = hookline_telemetry::traceparent(&span);
    span
}

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
    request_body = BatchIn,
    responses(
        (status = 200, description = "Each event judged alone, in order.", body = BatchAnswer),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid ingest token.", body = ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn ingest_batch(
    _: Producer,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchAnswer>, ApiError> {
    let batch: BatchIn = parse_json(&body::bytes(raw)?)?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "events",
            format!("events: must hold 1 to {MAX_BATCH} events"),
        ));
    }
    if let Some(i) = batch
        .events
        .iter()
        .position(|raw| !is_object(raw.get().as_bytes()))
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("events[{i}]"),
            format!("events[{i}]: must be a JSON object"),
        ));
    }
    // The valid events go to the store in one call; each result keeps its
    // event's place, or the error that kept it out.
    let mut valid = Vec::with_capacity(batch.events.len());
    let places: Vec<Result<usize, ApiError>> = batch
        .events
        .iter()
        .map(|raw| {
            let event = Event::from_json(raw.get().as_bytes())?;
            valid.push(event);
            Ok(valid.len() - 1)
        })
        .collect();
    // One trace per event; their spans last as long as the store's call.
    let spans: Vec<tracing::Span> = valid.iter_mut().map(traced).collect();
    let mut accepted = state
        .store
        .accept_events(&valid, state.clock.now())
        .await
        .into_iter();
    drop(spans);
    let results = batch
        .events
        .iter()
        .zip(places)
        .map(|(raw, place)| match place {
            Ok(i) => {
                let event = &valid[i];
                let outcome = match accepted.next() {
                    Some(Ok(acceptance)) => answer(event, acceptance),
                    Some(Err(e)) => Err(ApiError::from(e)),
                    None => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the store answered fewer events than it was given",
                    )),
                };
                result(Value::String(event.id.to_string()), outcome)
            }
            // Only an event that did not parse is read again, for its id.
            Err(e) => {
                let id = serde_json::from_str::<Value>(raw.get())
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(Value::Null);
                result(id, Err(e))
            }
        })
        .collect();
    Ok(Json(BatchAnswer { results }))
}

fn result(id: Value, outcome: Result<(StatusCode, bool), ApiError>) -> BatchResult {
    match outcome {
        Ok((status, duplicate)) => BatchResult {
            id,
            status: status.as_u16(),
            duplicate: Some(duplicate),
            error: None,
        },
        Err(e) => BatchResult {
            id,
            status: e.status().as_u16(),
            duplicate: None,
            error: Some(e.detail()),
        },
    }
}
