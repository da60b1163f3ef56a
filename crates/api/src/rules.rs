//! `/v1/rules`: a merchant's integration rules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use hookline_core::ports::{DeliveryJob, Destination, Endpoint, Lease};
use hookline_core::retry::RetrySchedule;
use hookline_core::{Attempter, Rule, RuleDraft, RulePatch};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::Tenant;
use crate::body::{self, Id};
use crate::deliveries::Paging;
use crate::error::ApiError;
use crate::schema;
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

#[utoipa::path(get, operation_id = "list_rules", path = "/v1/rules", tag = "rules", security(("api_key" = [])), params(schema::PageQuery),
    responses((status = 200, description = "The tenant's rules, oldest first.", body = schema::RuleList), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody)))]
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

#[utoipa::path(post, operation_id = "create_rule", path = "/v1/rules", tag = "rules", security(("api_key" = [])), request_body = schema::RuleIn,
    responses(
        (status = 201, description = "The rule.", body = schema::Rule),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody),
        (status = 409, description = "`limit_exceeded`: the tenant has HOOKLINE_MAX_RULES rules.", body = schema::ErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = schema::ErrorBody),
        (status = 422, description = "An unknown `trigger`.", body = schema::ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
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

#[utoipa::path(get, operation_id = "get_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses((status = 200, description = "The rule.", body = schema::Rule), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such rule for this tenant.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<Json<Rule>, ApiError> {
    Ok(Json(find(&state, &tenant, &id).await?))
}

#[utoipa::path(patch, operation_id = "update_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")), request_body = schema::RulePatchIn,
    responses(
        (status = 200, description = "The rule as changed.", body = schema::Rule),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such rule for this tenant.", body = schema::ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = schema::ErrorBody),
        (status = 422, description = "An unknown `trigger`.", body = schema::ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
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

#[utoipa::path(delete, operation_id = "delete_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses((status = 204, description = "Deleted; its pending deliveries end dead."), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such rule for this tenant.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody)))]
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

/// How many test sends one tenant may make a minute: each holds a request
/// (on Lambda, a function) for up to the delivery timeout.
pub const TEST_SENDS_PER_MINUTE: u32 = 10;

/// `POST /v1/rules/{id}/test`: one signed send of a sample event of the
/// rule's trigger, now, to the rule as it is (disabled or not); not recorded
/// and not retried. Answers 200 with the attempt.
#[utoipa::path(post, operation_id = "test_rule", path = "/v1/rules/{id}/test", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses(
        (status = 200, description = "The receiver's answer to one signed sample event (`data.test` is true); not recorded, not retried.", body = schema::TestSend),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = schema::ErrorBody), (status = 401, description = "No valid API key.", body = schema::ErrorBody), (status = 404, description = "No such rule for this tenant.", body = schema::ErrorBody), (status = 429, description = "The tenant made its 10 test sends of this minute (`rate_limited`); `Retry-After` says when the next minute begins.", body = schema::ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = schema::ErrorBody),
    ))]
pub async fn test(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let sender = state.sender.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "test sends are not available on this server",
        )
    })?;
    let rule = state
        .store
        .rule(&tenant, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))?;
    let now = state.clock.now();
    if !state
        .store
        .take_test_send(&tenant, now, TEST_SENDS_PER_MINUTE)
        .await?
    {
        let next_minute = 60 - now.as_secs().rem_euclid(60);
        return Err(ApiError::rate_limited(
            format!("at most {TEST_SENDS_PER_MINUTE} test sends a minute per tenant"),
            next_minute as u64,
        ));
    }
    let keys = state.store.signing_keys(&tenant, now).await?;
    let data = RawValue::from_string(rule.trigger.sample_data()).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    let job = DeliveryJob {
        delivery_id: new_id("msg_test", now)?,
        tenant_id: tenant,
        event_id: format!("evt_test_{}", now.as_millis()),
        rule_id: rule.id.clone(),
        trigger: rule.trigger,
        occurred_at: now,
        line: None,
        data,
        subject: None,
        destination: Destination::Endpoint(Endpoint::of(&rule)),
        keys,
        lease: Lease {
            receive_count: 1,
            handle: String::new(),
        },
        attempt: 1,
        rule_health: Default::default(),
    };
    let attempter = Attempter::new(RetrySchedule::default());
    let settled = attempter.attempt(&job, &*sender, &*state.clock).await;
    Ok(Json(json!({ "attempt": settled.attempt })))
}
