//! Request bodies, query strings and path ids, with the size limit and JSON
//! errors of the API in place of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use hookline_core::id::Identifier;

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

/// The id in a route's path (`/v1/rules/{id}`), refused with a JSON error
/// naming `path` when it does not decode (`%ff%fe` is no UTF-8). One that no
/// id Hookline keeps can be (too long, a control character) is answered 404
/// before a store is asked (a DynamoDB key has a limit of its own, which
/// would answer 503).
pub struct Id<T>(pub T);

impl<S: Send + Sync, T: Identifier> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "path",
                    rejection.body_text(),
                )
            })
            .and_then(|Path(id): Path<String>| {
                T::from_text("path", id).map(Id).map_err(|e| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no such id: an id {}", e.message),
                    )
                })
            })
    }
}
