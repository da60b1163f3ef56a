//! AWS failures as store errors that keep what an operator needs: the
//! operation, the service's error code and the whole cause chain.

use std::error::Error;
use std::fmt::Debug;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use hookline_core::ports::StoreError;

/// A failed SDK call, with its AWS error code where the service sent one.
pub(crate) fn sdk_error<E, R>(operation: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    StoreError::Unavailable {
        operation: operation.to_owned(),
        code: e.code().map(str::to_owned),
        message: DisplayErrorContext(&e).to_string(),
        source: Some(Box::new(e)),
    }
}

/// A request Hookline could not even build (a missing required field).
pub(crate) fn build_error(operation: &str, e: impl Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(operation, e)
}

/// An item or message that does not decode as what it must be.
pub(crate) fn unreadable(what: &'static str, e: impl Error + Send + Sync + 'static) -> StoreError {
    StoreError::unreadable(what, e)
}

/// Logs a failed step of a delivery with its AWS error code.
pub(crate) fn log_failure(e: &StoreError, delivery: &str, what: &str) {
    tracing::error!(error = %e, code = e.code().unwrap_or("-"), delivery, "could not {what}");
}
