//! `/v1/deliveries`: the delivery log, manual retry and recovery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use hookline_core::delivery::{Attempt, WaitReason, Waiting};
use hookline_core::error::{IdText, parse_json};
use hookline_core::id::{DeliveryId, EventId, RuleId};
use hookline_core::ports::DeliveryFilter;
use hookline_core::{Delivery, DeliveryStatus, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Tenant;
use crate::body::{self, Id};
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 250;

/// One try at a delivery.
#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// The receiver's status; null when there was no answer.
    #[schema(required = true)]
    status_code: Option<u16>,
    duration_ms: u64,
    /// Why it failed (timeout, connection, refused address, ...), when it did.
    #[schema(required = true)]
    error: Option<String>,
    /// The receiver's answer, cut at 4 KiB.
    #[schema(required = true)]
    response_body: Option<String>,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        AttemptOut {
            at: a.at,
            status_code: a.status_code,
            duration_ms: a.duration_ms,
            error: a.error,
            response_body: a.response_body,
        }
    }
}

/// One event to one rule's URL (one per line for per-order-line rules).
#[derive(Serialize, ToSchema)]
pub struct DeliveryOut {
    /// The `webhook-id` the receiver sees, the same on every retry.
    id: String,
    event_id: String,
    rule_id: String,
    status: DeliveryStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    line_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// Every attempt made.
    attempt_count: u64,
    /// The 20 most recent attempts, oldest first.
    attempts: Vec<AttemptOut>,
    /// Why a pending delivery is held back beyond its schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    waiting: Option<WaitingOut>,
}

#[derive(Serialize, ToSchema)]
pub struct WaitingOut {
    /// `circuit_open`: the rule's receiver failed too often; its circuit is open.
    reason: WaitReason,
    /// When the hold ends (then one probe attempt decides).
    #[schema(value_type = String, format = DateTime)]
    until: Timestamp,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        DeliveryOut {
            id: d.id.into(),
            event_id: d.event_id.into(),
            rule_id: d.rule_id.into(),
            status: d.status,
            line_id: d.line_id,
            created_at: d.created_at,
            attempt_count: d.attempt_count,
            attempts: d.attempts.into_iter().map(AttemptOut::from).collect(),
            waiting: d
                .waiting
                .map(|Waiting { reason, until }| WaitingOut { reason, until }),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    data: Vec<DeliveryOut>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// `{"since", "until"?}`: a window of deliveries' creation times.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// The start of the window (deliveries made at or after it).
    #[schema(value_type = String, format = DateTime)]
    since: Timestamp,
    /// Its end (before it); default, and when null, now. An `until` before
    /// `since` is refused (422 `invalid_window`).
    #[schema(value_type = Option<String>, format = DateTime)]
    until: Option<Timestamp>,
}

#[derive(Serialize, ToSchema)]
pub struct Recovered {
    /// How many dead deliveries were queued again.
    recovered: u64,
}

/// `limit` and `cursor`, taken as strings so a bad value is named, not a
/// generic query rejection.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// 1 to 250 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    limit: Option<String>,
    /// The `next_cursor` of the page before; one this listing did not hand
    /// out is refused (422 `unknown_cursor`).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

impl Paging {
    pub fn limit(&self) -> Result<usize, ApiError> {
        limit(self.limit.as_deref())
    }
}

fn limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    text.parse()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid",
                "limit",
                format!("limit: must be a whole number from 1 to {MAX_LIMIT}"),
            )
        })
}

/// The delivery list's query. `limit` and `cursor` repeat [`Paging`]'s:
/// utoipa's `IntoParams` cannot flatten one parameter struct into another.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<IdText>)]
    rule_id: Option<String>,
    #[param(value_type = Option<IdText>)]
    event_id: Option<String>,
    #[param(value_type = Option<DeliveryStatus>, inline)]
    status: Option<String>,
    /// 1 to 250 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 250)]
    limit: Option<String>,
    /// The `next_cursor` of the page before; one this listing did not hand
    /// out is refused (422 `unknown_cursor`).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

#[utoipa::path(get, operation_id = "list_deliveries", path = "/v1/deliveries", tag = "deliveries", security(("api_key" = [])), params(ListQuery),
    responses((status = 200, description = "Deliveries, newest first.", body = DeliveryList), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 422, description = "A `cursor` this listing did not hand out (`unknown_cursor`).", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let q = body::query(q)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<DeliveryStatus>().map_err(|_| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "status",
                    "status: must be pending, succeeded or dead",
                )
            })
        })
        .transpose()?;
    let filter = DeliveryFilter {
        rule_id: q
            .rule_id
            .map(|id| RuleId::parse("rule_id", id))
            .transpose()?,
        event_id: q
            .event_id
            .map(|id| EventId::parse("event_id", id))
            .transpose()?,
        status,
        limit: limit(q.limit.as_deref())?,
        cursor: q.cursor,
    };
    let page = state.store.deliveries(&tenant, &filter).await?;
    Ok(Json(DeliveryList {
        data: page.data.into_iter().map(DeliveryOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, operation_id = "get_delivery", path = "/v1/deliveries/{id}", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The delivery's id.")),
    responses((status = 200, description = "The delivery and its attempts.", body = DeliveryOut), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such delivery for this tenant.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<DeliveryId>,
) -> Result<Json<DeliveryOut>, ApiError> {
    let delivery = state.store.delivery(&tenant, &id).await?;
    delivery
        .map(|d| Json(d.into()))
        .ok_or_else(|| ApiError::not_found("delivery"))
}

#[utoipa::path(post, operation_id = "retry_delivery", path = "/v1/deliveries/{id}/retry", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The delivery's id.")),
    responses(
        (status = 202, description = "Queued now with a fresh set of retries.", body = DeliveryOut),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such delivery for this tenant.", body = ErrorBody),
        (status = 409, description = "`already_pending`: it is queued or waiting for a retry.", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn retry(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<DeliveryId>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let delivery = state
        .store
        .retry_delivery(&tenant, &id, state.clock.now())
        .await?;
    delivery
        .map(|d| (StatusCode::ACCEPTED, Json(d.into())))
        .ok_or_else(|| ApiError::not_found("delivery"))
}

/// Re-queues every dead delivery of the rule made in `[since, until)`
/// (`until` defaults to now), each with its own `webhook-id` unchanged.
#[utoipa::path(post, operation_id = "recover_rule", path = "/v1/rules/{id}/recover", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")), request_body = RecoverIn,
    responses(
        (status = 202, description = "The rule's dead deliveries made in the window, queued again with their `webhook-id`.", body = Recovered),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = ErrorBody), (status = 422, description = "`until` is before `since` (`invalid_window`).", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn recover(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(rule_id): Id<RuleId>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Recovered>), ApiError> {
    let window: RecoverIn = parse_json(&body::bytes(raw)?)?;
    let now = state.clock.now();
    let until = window.until.unwrap_or(now);
    if until < window.since {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_window",
            "until",
            "until: must not be before since",
        ));
    }
    match state
        .store
        .recover(&tenant, &rule_id, window.since, until, now)
        .await?
    {
        Some(recovered) => Ok((StatusCode::ACCEPTED, Json(Recovered { recovered }))),
        None => Err(ApiError::not_found("rule")),
    }
}
