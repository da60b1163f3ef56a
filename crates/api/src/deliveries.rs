//! `/v1/deliveries`: the delivery log, manual retry and recovery.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use hookline_core::ports::DeliveryFilter;
use hookline_core::{Delivery, DeliveryStatus, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::body::{self, Id};
use crate::error::ApiError;
use crate::schema;
use crate::state::ApiState;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 250;

/// `limit` and `cursor`, taken as strings so a bad value is named, not a
/// generic query rejection.
#[derive(Deserialize)]
pub struct Paging {
    limit: Option<String>,
    pub cursor: Option<String>,
}

impl Paging {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match &self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(s) => s
                .parse()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        "limit",
                        format!("limit: must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    rule_id: Option<String>,
    event_id: Option<String>,
    status: Option<String>,
    #[serde(flatten)]
    paging: Paging,
}

#[utoipa::path(get, operation_id = "list_deliveries", path = "/v1/deliveries", tag = "deliveries", security(("api_key" = [])), params(schema::DeliveryQuery),
    responses((status = 200, description = "Deliveries, newest first.", body = schema::DeliveryList), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
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
        rule_id: q.rule_id,
        event_id: q.event_id,
        status,
        limit: q.paging.limit()?,
        cursor: q.paging.cursor,
    };
    let page = state.store.deliveries(&tenant, &filter).await?;
    Ok(Json(
        json!({ "data": page.data, "next_cursor": page.next_cursor }),
    ))
}

#[utoipa::path(get, operation_id = "get_delivery", path = "/v1/deliveries/{id}", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The delivery's id.")),
    responses((status = 200, description = "The delivery and its attempts.", body = schema::Delivery), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such delivery for this tenant.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<Json<Delivery>, ApiError> {
    let delivery = state.store.delivery(&tenant, &id).await?;
    delivery
        .map(Json)
        .ok_or_else(|| ApiError::not_found("delivery"))
}

#[utoipa::path(post, operation_id = "retry_delivery", path = "/v1/deliveries/{id}/retry", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The delivery's id.")),
    responses(
        (status = 202, description = "Queued now with a fresh set of retries.", body = schema::Delivery),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such delivery for this tenant.", body = schema::ErrorBody),
        (status = 409, description = "`already_pending`: it is queued or waiting for a retry.", body = schema::ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
pub async fn retry(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    let delivery = state
        .store
        .retry_delivery(&tenant, &id, state.clock.now())
        .await?;
    delivery
        .map(|d| (StatusCode::ACCEPTED, Json(d)))
        .ok_or_else(|| ApiError::not_found("delivery"))
}

fn timestamp(body: &Value, field: &str) -> Result<Option<Timestamp>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
            .map(Some)
            .ok_or_else(|| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    field,
                    format!("{field}: must be an RFC 3339 timestamp such as 2026-11-29T12:00:00Z"),
                )
            }),
    }
}

/// Re-queues every dead delivery of the rule made in `[since, until)`
/// (`until` defaults to now), each with its own `webhook-id` unchanged.
#[utoipa::path(post, operation_id = "recover_rule", path = "/v1/rules/{id}/recover", tag = "deliveries", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")), request_body = schema::RecoverIn,
    responses(
        (status = 202, description = "The rule's dead deliveries made in the window, queued again with their `webhook-id`.", body = schema::Recovered),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such rule for this tenant.", body = schema::ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
pub async fn recover(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(rule_id): Id,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let raw = body::bytes(raw)?;
    let parsed: Value = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "body",
            format!("body: is not valid JSON: {e}"),
        )
    })?;
    if let Some(unknown) = parsed
        .as_object()
        .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "since" | "until")))
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            unknown,
            format!("{unknown}: is not a field of recover (since, until)"),
        ));
    }
    let now = state.clock.now();
    let since = timestamp(&parsed, "since")?.ok_or_else(|| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "since",
            "since: is required",
        )
    })?;
    let until = timestamp(&parsed, "until")?.unwrap_or(now);
    if until < since {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "until",
            "until: must not be before since",
        ));
    }
    match state
        .store
        .recover(&tenant, &rule_id, since, until, now)
        .await?
    {
        Some(n) => Ok((StatusCode::ACCEPTED, Json(json!({ "recovered": n })))),
        None => Err(ApiError::not_found("rule")),
    }
}
