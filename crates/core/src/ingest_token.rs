//! The platform's ingest tokens. Two may be valid at once, so the token can
//! be rotated without downtime: add the new one beside the old, move the
//! platform over, then drop the old.

use std::fmt;

use subtle::ConstantTimeEq;

/// The most tokens valid at once: the current one and the one being retired.
pub const MAX_INGEST_TOKENS: usize = 2;

/// The tokens ingest accepts; none, on a function that serves only admin.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IngestTokens(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestTokenError {
    #[error("an ingest token is at least 16 characters of letters, digits, '_' or '-'")]
    Malformed,
    #[error("at most {MAX_INGEST_TOKENS} ingest tokens are valid at once")]
    TooMany,
}

impl IngestTokens {
    /// Reads `new` or `new,old`.
    pub fn parse(text: &str) -> Result<Self, IngestTokenError> {
        let tokens: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(IngestTokenError::Malformed);
        }
        if tokens.len() > MAX_INGEST_TOKENS {
            return Err(IngestTokenError::TooMany);
        }
        let well_formed = |t: &String| {
            t.len() >= 16
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !tokens.iter().all(well_formed) {
            return Err(IngestTokenError::Malformed);
        }
        Ok(IngestTokens(tokens))
    }

    /// The token to hand out: the first, the current one.
    pub fn current(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// Whether `presented` is one of the tokens, compared in constant time
    /// against each so the time taken tells nothing.
    pub fn accepts(&self, presented: &str) -> bool {
        self.0.iter().fold(false, |found, t| {
            found | bool::from(t.as_bytes().ct_eq(presented.as_bytes()))
        })
    }
}

impl fmt::Debug for IngestTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IngestTokens({} redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_tokens_are_valid_during_a_rotation() {
        let tokens = IngestTokens::parse("new-token-0123456789, old-token-0123456789").unwrap();
        assert!(tokens.accepts("new-token-0123456789"));
        assert!(tokens.accepts("old-token-0123456789"));
        assert!(!tokens.accepts("new-token-012345678"));
        assert_eq!(tokens.current(), Some("new-token-0123456789"));
        assert!(!format!("{tokens:?}").contains("token-"));
        assert!(!IngestTokens::default().accepts(""));
        assert_eq!(
            IngestTokens::parse("aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb,cccccccccccccccc"),
            Err(IngestTokenError::TooMany)
        );
        assert_eq!(
            IngestTokens::parse("short"),
            Err(IngestTokenError::Malformed)
        );
        assert_eq!(IngestTokens::parse(" , "), Err(IngestTokenError::Malformed));
    }
}
