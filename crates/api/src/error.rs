//! The one error shape of the API: `{"error": {"code", "message", "field"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hookline_core::ports::StoreError;
use hookline_core::{FieldError, FieldErrorKind};
use serde_json::{Value, json};

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
            StoreError::BadCursor => {
                Self::field(StatusCode::BAD_REQUEST, "invalid", "cursor", e.to_string())
            }
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
    pub fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.body() }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
