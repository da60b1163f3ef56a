//! `/v1/rules`: a merchant's integration rules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use hookline_core::{Rule, RuleDraft, RulePatch};
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::body::{self, Id};
use crate::deliveries::Paging;
use crate::error::ApiError;
use crate::state::ApiState;

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

pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let paging = body::query(paging)?;
    let limit = paging.limit()?;
    let page = state
        .store
        .rules(&tenant, limit, paging.cursor.as_deref())
        .await?;
    Ok(Json(
        json!({ "data": page.data, "next_cursor": page.next_cursor }),
    ))
}

pub async fn create(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    let draft = RuleDraft::from_json(&body::bytes(raw)?, &state.config.policy)?;
    let now = state.clock.now();
    let rule = Rule::new(new_id("rul", now)?, tenant, draft, now);
    state
        .store
        .insert_rule(&rule, state.config.max_rules)
        .await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

async fn find(state: &ApiState, tenant: &str, id: &str) -> Result<Rule, ApiError> {
    state
        .store
        .rule(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))
}

pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<Json<Rule>, ApiError> {
    Ok(Json(find(&state, &tenant, &id).await?))
}

pub async fn update(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Rule>, ApiError> {
    let mut rule = find(&state, &tenant, &id).await?;
    rule.apply(RulePatch::from_json(
        &body::bytes(raw)?,
        &state.config.policy,
    )?);
    if !state.store.update_rule(&rule).await? {
        return Err(ApiError::not_found("rule"));
    }
    Ok(Json(rule))
}

pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_rule(&tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("rule"))
    }
}
