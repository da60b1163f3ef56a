//! Request bodies and query strings, with the size limit and JSON errors of
//! the API in place of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;

use crate::error::ApiError;

/// The largest request body accepted, ingest events included.
pub const BODY_LIMIT: usize = 256 * 1024;

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

pub fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid",
            "query",
            rejection.body_text(),
        )
    })
}
