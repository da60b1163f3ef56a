//! SQLite failures as store errors, with their cause kept.

use hookline_core::ports::StoreError;

pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable("sqlite", e)
}
