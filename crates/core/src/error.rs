//! The validation error every input check in the domain returns: what is
//! wrong and which field it is, so the edge can answer with a precise 4xx.

use std::fmt;

/// Why a field was refused. The HTTP edge maps each kind to its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// Malformed or out of range: 400.
    Invalid,
    /// Well-formed but names a trigger Hookline does not know: 422.
    UnknownType,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// The offending field as a path, e.g. `lines[1].product_id`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The longest identifier, in bytes.
pub const MAX_ID_BYTES: usize = 200;

/// Identifiers are opaque strings from the platform or from Hookline. They are
/// bounded and free of control characters so they can be logged, stored and
/// put in headers safely.
pub fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_ID_BYTES} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(FieldError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
