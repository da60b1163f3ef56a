//! `/v1/rules/{id}/health`: how a rule's receiver is doing, from its
//! traffic's buckets and its circuit breaker.

use axum::Json;
use axum::extract::State;
use hookline_core::Timestamp;
use hookline_core::breaker;
use hookline_core::id::RuleId;
use hookline_core::ports::RuleHealth;
use hookline_core::traffic::{Traffic, Window};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::body::Id;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

/// A rule's receiver, as its attempts of the last hour and day show it.
/// Attempts that made no request (a rule deleted or disabled meanwhile)
/// are not counted.
#[derive(Serialize, ToSchema)]
pub struct RuleHealthOut {
    rule_id: String,
    /// `closed`: deliveries go as usual; `open`: its receiver failed too
    /// often, and deliveries wait until `circuit_open_until`; `probing`: one
    /// attempt at a time decides whether it closes.
    circuit: Circuit,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    circuit_open_until: Option<Timestamp>,
    /// The first failure since the last success, while it fails.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    failing_since: Option<Timestamp>,
    /// Failed attempts since the last success (within the last day).
    consecutive_failures: u64,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_success_at: Option<Timestamp>,
    #[schema(required = true)]
    last_failure: Option<FailureOut>,
    /// How many attempts its receiver is given at once now, as learnt from
    /// its answers; null where the deliverer is another process (AWS).
    #[schema(required = true)]
    concurrency: Option<usize>,
    /// The last 55 to 60 minutes (five-minute buckets).
    last_hour: WindowOut,
    /// The last 24 hours.
    last_day: WindowOut,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    Closed,
    Open,
    Probing,
}

#[derive(Serialize, ToSchema)]
pub struct FailureOut {
    #[schema(value_type = String, format = DateTime)]
    at: Timestamp,
    /// Why it failed: the receiver's status, a timeout, a refused connection.
    #[schema(required = true)]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WindowOut {
    /// Attempts that reached (or tried to reach) the receiver.
    attempts: u64,
    successes: u64,
    failures: u64,
    /// Successes per attempt, 0 to 1; null without attempts.
    #[schema(required = true)]
    success_rate: Option<f64>,
    /// Half the attempts took at most this long (the bound of a latency
    /// bucket: 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10 s, or the
    /// slowest attempt).
    #[schema(required = true)]
    latency_p50_ms: Option<u64>,
    /// 99 in 100 attempts took at most this long.
    #[schema(required = true)]
    latency_p99_ms: Option<u64>,
}

impl From<Window> for WindowOut {
    fn from(w: Window) -> Self {
        WindowOut {
            attempts: w.attempts,
            successes: w.successes,
            failures: w.failures,
            success_rate: w.success_rate,
            latency_p50_ms: w.p50_ms,
            latency_p99_ms: w.p99_ms,
        }
    }
}

#[utoipa::path(get, operation_id = "get_rule_health", path = "/v1/rules/{id}/health", tag = "rules", security(("api_key" = [])), params(("id" = String, Path, description = "The rule's id.")),
    responses((status = 200, description = "The rule's health.", body = RuleHealthOut), (status = 400, description = "A field, the query or the path is not valid (`field` names it).", body = ErrorBody), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 404, description = "No such rule for this tenant.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
    Id(id): Id<RuleId>,
) -> Result<Json<RuleHealthOut>, ApiError> {
    let now = state.clock.now();
    let health = state
        .store
        .rule_health(&tenant, &id, now)
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))?;
    Ok(Json(RuleHealthOut::of(id, &health, now)))
}

impl RuleHealthOut {
    /// What `health` says as of `now`.
    pub(crate) fn of(rule_id: RuleId, health: &RuleHealth, now: Timestamp) -> Self {
        let traffic = Traffic::of(&health.buckets, now);
        let (circuit, circuit_open_until) = match health.health.circuit(now) {
            breaker::Circuit::Closed => (Circuit::Closed, None),
            breaker::Circuit::Open { until } => (Circuit::Open, Some(until)),
            breaker::Circuit::Probing => (Circuit::Probing, None),
        };
        RuleHealthOut {
            rule_id: rule_id.into(),
            circuit,
            circuit_open_until,
            failing_since: health.health.failing_since,
            consecutive_failures: traffic.consecutive_failures,
            last_success_at: traffic.last_success,
            last_failure: traffic.last_failure.map(|at| FailureOut {
                at,
                error: traffic.last_error.clone(),
            }),
            concurrency: health.concurrency,
            last_hour: traffic.hour.into(),
            last_day: traffic.day.into(),
        }
    }
}
