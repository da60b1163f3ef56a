//! Who is calling: the platform with the ingest token, or a merchant with a
//! tenant API key. The tenant always comes from the key.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hookline_core::TenantId;
use hookline_core::api_key::hash_api_key;

use crate::error::ApiError;
use crate::state::ApiState;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("an authorization: Bearer header is required"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the authorization header must be Bearer <token>"))
}

/// The platform, authenticated by the ingest token.
pub struct Producer;

impl FromRequestParts<ApiState> for Producer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        if state.config.ingest_tokens.accepts(bearer(parts)?) {
            Ok(Producer)
        } else {
            Err(ApiError::unauthorized("the ingest token is not valid"))
        }
    }
}

/// A merchant, authenticated by a tenant API key.
pub struct Tenant(pub TenantId);

impl FromRequestParts<ApiState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = bearer(parts)?;
        match state.store.tenant_for_api_key(&hash_api_key(key)).await? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => Err(ApiError::unauthorized("the API key is not valid")),
        }
    }
}
