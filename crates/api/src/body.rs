//! Request bodies as bytes, with the size limit and JSON errors of the API.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use crate::{ApiError, BODY_LIMIT};

pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {} KiB", BODY_LIMIT / 1024),
            )
        } else {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid",
                "body",
                rejection.body_text(),
            )
        }
    })
}
