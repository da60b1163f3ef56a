//! `/v1/rules`: a merchant's integration rules.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use std::collections::BTreeMap;

use hookline_core::error::parse_json;
use hookline_core::filter::{Filter, FilterSchema};
use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
use hookline_core::ports::{DeliveryJob, Destination, Endpoint};
use hookline_core::retry::RetrySchedule;
use hookline_core::rule::described::{RuleHeaders, RuleName, WebhookUrl};
use hookline_core::rule::{
    DisabledReason, PayloadFormat, RuleOptions, check_headers, check_name, check_rate_limit,
    check_scope, check_url, parse_trigger,
};
use hookline_core::target::TargetPolicy;
use hookline_core::{Attempter, FieldError, Rule, RuleDraft, RulePatch, Scope, Trigger};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::body::{self, Id};
use crate::deliveries::{AttemptOut, Paging};
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// A rule as `POST /v1/rules` takes it; any other field is refused by name.
/// A field left out or `null` takes its default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "paid orders", "trigger": Trigger::OrderPaid, "url": "https://example.com/hook"}))]
pub struct RuleIn {
    #[schema(value_type = RuleName)]
    name: String,
    /// Read as text, so that an unknown one is named (422 `unknown_type`).
    #[schema(value_type = Trigger)]
    trigger: String,
    #[schema(value_type = WebhookUrl)]
    url: String,
    /// Default `{"type": "universal"}`.
    scope: Option<Scope>,
    /// One delivery per order line (default false).
    per_order_line: Option<bool>,
    /// Only a subscription's first payment (default false).
    first_payment_only: Option<bool>,
    /// Default true.
    enabled: Option<bool>,
    #[schema(value_type = Option<FilterSchema>)]
    filter: Option<Value>,
    /// Default `full`.
    payload: Option<PayloadFormat>,
    #[schema(value_type = Option<RuleHeaders>)]
    headers: Option<BTreeMap<String, String>>,
    /// At most this many deliveries a second; excess ones wait.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 10000)]
    rate_limit: Option<u32>,
}

/// Any subset of a rule's fields. `name`, `trigger` and `url` cannot be
/// `null`; any other field set to `null` goes back to its default.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatchIn {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = RuleName)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Trigger)]
    trigger: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = WebhookUrl)]
    url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Scope>)]
    scope: Option<Option<Scope>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<bool>)]
    per_order_line: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<bool>)]
    first_payment_only: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<bool>)]
    enabled: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<FilterSchema>)]
    filter: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PayloadFormat>)]
    payload: Option<Option<PayloadFormat>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RuleHeaders>)]
    headers: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "nullable_whole_number")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    rate_limit: Option<Option<u32>>,
}

/// A field that may be left out but not be `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A field left out (`None`) apart from one set to `null` (`Some(None)`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A whole number as JSON Schema's `integer` counts them: `86.0` is one.
fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
                .map(|f| f as u64)
        })
        .and_then(|w| u32::try_from(w).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

fn nullable_whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    whole_number(d).map(Some)
}

fn filter(source: Option<Value>) -> Result<Option<Filter>, FieldError> {
    source.as_ref().map(Filter::parse).transpose()
}

fn headers(
    headers: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, FieldError> {
    let headers = headers.unwrap_or_default();
    check_headers(&headers)?;
    Ok(headers)
}

fn rate_limit(per_second: Option<u32>) -> Result<Option<u32>, FieldError> {
    per_second.map(check_rate_limit).transpose()?;
    Ok(per_second)
}

fn scope(scope: Option<Scope>) -> Result<Scope, FieldError> {
    let scope = scope.unwrap_or(Scope::Universal);
    check_scope(&scope)?;
    Ok(scope)
}

impl RuleIn {
    /// Reads a `POST /v1/rules` body into a checked draft.
    pub fn parse(body: &[u8], policy: &TargetPolicy) -> Result<RuleDraft, FieldError> {
        parse_json::<RuleIn>(body)?.into_draft(policy)
    }

    fn into_draft(self, policy: &TargetPolicy) -> Result<RuleDraft, FieldError> {
        check_name(&self.name)?;
        Ok(RuleDraft {
            trigger: parse_trigger(&self.trigger)?,
            url: check_url(&self.url, policy)?,
            name: self.name,
            scope: scope(self.scope)?,
            per_order_line: self.per_order_line.unwrap_or(false),
            first_payment_only: self.first_payment_only.unwrap_or(false),
            enabled: self.enabled.unwrap_or(true),
            options: RuleOptions {
                filter: filter(self.filter)?,
                payload: self.payload.unwrap_or_default(),
                headers: headers(self.headers)?,
                rate_limit: rate_limit(self.rate_limit)?,
            },
        })
    }
}

impl RulePatchIn {
    /// Reads a `PATCH /v1/rules/{id}` body into a checked patch.
    pub fn parse(body: &[u8], policy: &TargetPolicy) -> Result<RulePatch, FieldError> {
        parse_json::<RulePatchIn>(body)?.into_patch(policy)
    }

    fn into_patch(self, policy: &TargetPolicy) -> Result<RulePatch, FieldError> {
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        Ok(RulePatch {
            trigger: self.trigger.as_deref().map(parse_trigger).transpose()?,
            url: self
                .url
                .as_deref()
                .map(|url| check_url(url, policy))
                .transpose()?,
            name: self.name,
            scope: self.scope.map(scope).transpose()?,
            per_order_line: self.per_order_line.map(|v| v.unwrap_or(false)),
            first_payment_only: self.first_payment_only.map(|v| v.unwrap_or(false)),
            enabled: self.enabled.map(|v| v.unwrap_or(true)),
            filter: self.filter.map(filter).transpose()?,
            payload: self.payload.map(Option::unwrap_or_default),
            headers: self.headers.map(headers).transpose()?,
            rate_limit: self.rate_limit.map(rate_limit).transpose()?,
        })
    }
}

/// A rule as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct RuleOut {
    /// `rul_` and 28 hex digits.
    id: String,
    name: String,
    trigger: Trigger,
    url: String,
    scope: Scope,
    per_order_line: bool,
    first_payment_only: bool,
    enabled: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: hookline_core::Timestamp,
    #[schema(value_type = Option<FilterSchema>, required = true)]
    filter: Option<Value>,
    payload: PayloadFormat,
    headers: BTreeMap<String, String>,
    #[schema(required = true)]
    rate_limit: Option<u32>,
    /// Why Hookline disabled the rule, until it is enabled again: `failing`
    /// (no success for `HOOKLINE_DISABLE_AFTER`) or `gone` (its receiver
    /// answered 410 or `webhook-delivery: disable`).
    #[schema(required = true)]
    disabled_reason: Option<DisabledReason>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    disabled_at: Option<hookline_core::Timestamp>,
}

impl From<Rule> for RuleOut {
    fn from(rule: Rule) -> Self {
        RuleOut {
            id: rule.id.into(),
            name: rule.name,
            trigger: rule.trigger,
            url: rule.url,
            scope: rule.scope,
            per_order_line: rule.per_order_line,
            first_payment_only: rule.first_payment_only,
            enabled: rule.enabled,
            created_at: rule.created_at,
            filter: rule.options.filter.map(|f| f.source().clone()),
            payload: rule.options.payload,
            headers: rule.options.headers,
            rate_limit: rule.options.rate_limit,
            disabled_reason: rule.disabled_reason,
            disabled_at: rule.disabled_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    data: Vec<RuleOut>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TestSend {
    attempt: AttemptOut,
}

/// Random bits for a new id.
fn random_bits() -> Result<[u8; 8], ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("no randomness: {e}"),
        )
    })?;
    Ok(bytes)
}

#[utoipa::path(get, operation_id = "list_rules", path = "/v1/rules", tag = "rules", security(("api_key" = [])), params(Paging),
    responses((status = 200, description = "The tenant's rules, oldest first.", body = RuleList), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 422, description = "A `cursor` this listing did not hand out (`unknown_cursor`).", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<RuleList>, ApiError> {
    let paging = body::query(paging)?;
    let limit = paging.limit()?;
    let page = state
        .store
        .rules(&tenant, limit, paging.cursor.as_deref())
        .await?;
    Ok(Json(RuleList {
        data: page.data.into_iter().map(RuleOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(post, operation_id = "create_rule", path = "/v1/rules", tag = "rules", security(("api_key" = [])), request_body = RuleIn,
    responses(
        (status = 201, description = "The rule.", body = RuleOut),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody),
        (status = 409, description = "`limit_exceeded`: the tenant has HOOKLINE_MAX_RULES rules.", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB.", body = ErrorBody),
        (status = 422, description = "An unknown `trigger` (`unknown_type`), a `url` at an address the server may not reach, such as a private or loopback one (`address_refused`), or one that normalizing makes longer than 2000 bytes (`url_too_long`).", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn create(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RuleOut>), ApiError> {
    let draft = RuleIn::parse(&body::bytes(raw)?, &state.config.policy)?;
    let now = state.clock.now();
    let rule = Rule::new(RuleId::generate(now, random_bits()?), tenant, draft, now);
    state
        .store
        .insert_rule(&rule, state.config.max_rules)
        .await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

async fn find(state: &ApiState, tenant: &TenantId, id: &RuleId) -> Result<Rule, ApiError> {
    state
        .store
        .rule(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))
}

#[utoipa::path(get, operation_id = "get_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses((status = 200, description = "The rule.", body = RuleOut), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<RuleId>,
) -> Result<Json<RuleOut>, ApiError> {
    Ok(Json(find(&state, &tenant, &id).await?.into()))
}

#[utoipa::path(patch, operation_id = "update_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")), request_body = RulePatchIn,
    responses(
        (status = 200, description = "The rule as changed.", body = RuleOut),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 413, description = "The body is over 256 KiB.", body = ErrorBody),
        (status = 422, description = "An unknown `trigger` (`unknown_type`), a `url` at an address the server may not reach, such as a private or loopback one (`address_refused`), or one that normalizing makes longer than 2000 bytes (`url_too_long`).", body = ErrorBody),
        (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn update(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<RuleId>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<RuleOut>, ApiError> {
    let patch = RulePatchIn::parse(&body::bytes(raw)?, &state.config.policy)?;
    let mut rule = find(&state, &tenant, &id).await?;
    rule.apply(patch);
    if !state.store.update_rule(&rule).await? {
        return Err(ApiError::not_found("rule"));
    }
    Ok(Json(rule.into()))
}

#[utoipa::path(delete, operation_id = "delete_rule", path = "/v1/rules/{id}", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses((status = 204, description = "Deleted; its pending deliveries end dead."), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<RuleId>,
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
        (status = 200, description = "The receiver's answer to one signed sample event (`data.test` is true); not recorded, not retried.", body = TestSend),
        (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 429, description = "The tenant made its 10 test sends of this minute (`rate_limited`); `Retry-After` says when the next minute begins.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody),
    ))]
pub async fn test(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<RuleId>,
) -> Result<Json<TestSend>, ApiError> {
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
        delivery_id: DeliveryId::test_send(now, random_bits()?),
        tenant_id: tenant,
        event_id: EventId::test_send(now),
        rule_id: rule.id.clone(),
        trigger: rule.trigger,
        occurred_at: now,
        line: None,
        data,
        subject: None,
        destination: Destination::Endpoint(Endpoint::of(&rule)),
        keys,
        lease: None,
        attempt: 1,
        rule_health: Default::default(),
        trace: None,
    };
    let attempter = Attempter::new(RetrySchedule::default());
    let settled = attempter.attempt(&job, &*sender, &*state.clock).await;
    Ok(Json(TestSend {
        attempt: settled.attempt.into(),
    }))
}
