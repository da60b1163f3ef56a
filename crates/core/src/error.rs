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
    /// Well-formed as the API's schemas describe it, but refused for a
    /// reason they cannot state: 422, with this code. An address the target
    /// policy refuses (`address_refused`), a URL too long once normalized
    /// (`url_too_long`), an order line id that repeats (`repeated_line`).
    Refused(&'static str),
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

/// Reads a JSON body into `T`, refusing it with the path of the field serde
/// stopped at (`lines[1].product_id`), or the field it found missing or
/// unknown, or `body` when the text is no JSON at all.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    // serde reads a struct from a list of its fields too; every body here is
    // an object.
    if !is_object(body) {
        return Err(FieldError::invalid("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let message = match message.rfind(" at line ") {
            Some(at) => &message[..at],
            None => &message,
        };
        // serde names a missing or unknown field in its message, at the
        // path of the object that should have held it.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        let top = path == "." || path == "?";
        // An unknown field's path ends with it already; a missing one's is
        // the object's.
        let missing = message.starts_with("missing field");
        let field = match named {
            Some(name) if top => name.to_owned(),
            Some(name) if missing => format!("{path}.{name}"),
            None if top || inner.is_syntax() || inner.is_eof() => "body".to_owned(),
            Some(_) | None => path,
        };
        let message = if missing {
            "is required".to_owned()
        } else {
            message.to_owned()
        };
        FieldError::invalid(field, message)
    })?;
    de.end()
        .map_err(|e| FieldError::invalid("body", format!("is not valid JSON: {e}")))?;
    Ok(value)
}

/// Whether JSON text is an object (by its first character; the parse that
/// follows judges the rest).
pub fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// The longest identifier, in characters (as JSON Schema's `maxLength`
/// counts them); at four bytes a character, 800 bytes, under every store's
/// key limit.
pub const MAX_ID_CHARS: usize = 200;

/// The control characters (`char::is_control`, Unicode's Cc) as the body of
/// a JSON Schema pattern's character class, for the texts that refuse them.
pub const CONTROL_CHARACTERS: &str = r"\u0000-\u001f\u007f-\u009f";

/// Identifiers are opaque strings from the platform or from Hookline. They are
/// bounded and free of control characters so they can be logged, stored and
/// put in headers safely.
pub fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::invalid(field, "must not be empty"));
    }
    // Counted only when the bytes could be too many: ingest checks every
    // line's ids.
    if value.len() > MAX_ID_CHARS && value.chars().count() > MAX_ID_CHARS {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_ID_CHARS} characters"),
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

/// An identifier in the OpenAPI document, with [`check_id`]'s limits.
#[cfg(feature = "openapi")]
pub struct IdText;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for IdText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_ID_CHARS))
            .pattern(Some(format!("^[^{CONTROL_CHARACTERS}]*$")))
            .description(Some(
                "1 to 200 characters, none of them a control character.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for IdText {}
