//! `/v1/webhook-key`: the tenant's signing key, and its rotation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookline_core::WebhookKey;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::error::{ApiError, ErrorBody};
use crate::state::ApiState;

#[derive(Serialize, ToSchema)]
pub struct WebhookKeyOut {
    /// `whsec_` and the base64 of 32 bytes.
    #[schema(pattern = "^whsec_")]
    key: String,
}

impl From<&WebhookKey> for WebhookKeyOut {
    fn from(key: &WebhookKey) -> Self {
        WebhookKeyOut { key: key.expose() }
    }
}

#[utoipa::path(get, operation_id = "get_webhook_key", path = "/v1/webhook-key", tag = "webhook key", security(("api_key" = [])),
    responses((status = 200, description = "The key deliveries are signed with now.", body = WebhookKeyOut), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn current(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
) -> Result<Json<WebhookKeyOut>, ApiError> {
    let keys = state.store.signing_keys(&tenant, state.clock.now()).await?;
    let key = keys
        .0
        .first()
        .ok_or_else(|| ApiError::not_found("webhook key"))?;
    Ok(Json(WebhookKeyOut::from(key)))
}

#[utoipa::path(post, operation_id = "rotate_webhook_key", path = "/v1/webhook-key/rotate", tag = "webhook key", security(("api_key" = [])),
    responses((status = 200, description = "The new key. The old one keeps signing beside it for HOOKLINE_KEY_GRACE.", body = WebhookKeyOut), (status = 401, description = "No valid API key.", body = ErrorBody), (status = 409, description = "`limit_exceeded`: three keys sign already; rotate again once the oldest one's grace period has ended.", body = ErrorBody), (status = 503, description = "The store is unavailable; try again.", body = ErrorBody)))]
pub async fn rotate(
    Tenant(tenant): Tenant,
    State(state): State<ApiState>,
) -> Result<Json<WebhookKeyOut>, ApiError> {
    let key = generate_key()?;
    let now = state.clock.now();
    let old_until = now.saturating_add(state.config.key_grace);
    state
        .store
        .rotate_webhook_key(&tenant, key.clone(), now, old_until)
        .await?;
    Ok(Json(WebhookKeyOut::from(&key)))
}

/// A new `whsec_` key of 32 random bytes.
pub fn generate_key() -> Result<WebhookKey, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .ok()
        .and_then(|()| WebhookKey::from_bytes(&bytes).ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no randomness for a key",
            )
        })
}
