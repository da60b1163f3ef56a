//! The one error shape of the API: `{"error": {"code", "message", "field"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookline_core::ports::StoreError;
use hookline_core::{FieldError, FieldErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"error": {...}}`, the one error shape.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid", "message": "url: must be an http or https URL", "field": "url"}}))]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid`, `unknown_type`, `unknown_tenant`, `address_refused`,
    /// `unknown_cursor`, `repeated_line`, `invalid_window`, `url_too_long`, `unauthorized`, `not_found`, `too_large`,
    /// `limit_exceeded`, `already_pending`, `rate_limited`,
    /// `fanout_too_large`, `method_not_allowed`, `unavailable`, ...
    code: &'static str,
    /// What is wrong, in words.
    message: String,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds to wait, sent as `Retry-After` (on 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(status, code, message)
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// 429 `rate_limited`, to be tried again in `seconds`.
    pub fn rate_limited(message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        let (status, code) = match e.kind {
            FieldErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
            FieldErrorKind::UnknownType => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_type"),
            FieldErrorKind::Refused(code) => (StatusCode::UNPROCESSABLE_ENTITY, code),
        };
        let message = format!("{}: {}", e.field, e.message);
        Self {
            field: Some(e.field),
            ..Self::new(status, code, message)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::LimitExceeded(m) => Self::new(StatusCode::CONFLICT, "limit_exceeded", m),
            StoreError::AlreadyPending => Self::new(
                StatusCode::CONFLICT,
                "already_pending",
                "the delivery is queued or waiting for a retry already; retry it once it is dead or succeeded",
            ),
            StoreError::BadCursor => Self::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_cursor",
                "cursor",
                e.to_string(),
            ),
            StoreError::Unavailable { .. } | StoreError::Unreadable { .. } => {
                tracing::error!(error = %e, code = e.code().unwrap_or("-"), "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// `{"code","message","field"?}`: what `{"error": …}` holds.
    pub fn detail(self) -> ErrorDetail {
        ErrorDetail {
            code: self.code,
            message: self.message,
            field: self.field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = (self.status, self.retry_after);
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
