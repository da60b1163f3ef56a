//! Webhook keys at rest: sealed with AES-256-GCM under a key the store does
//! not hold (locally a key file or variable, on AWS a KMS data key), so a
//! copy of the database or table leaks no signing key. The stored text is
//! `sealed1:` and the base64 of a 12-byte nonce followed by the ciphertext.
//! The caller draws the nonce: this crate does no I/O.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::signing::WebhookKey;

/// How every sealed key's stored text starts; text without it is in clear.
pub const SEALED_PREFIX: &str = "sealed1:";

/// Seals and opens webhook keys with one 256-bit key.
#[derive(Clone)]
pub struct KeySealer {
    cipher: Aes256Gcm,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Stored before keys were sealed; the store seals it on its next write.
    #[error("the key is stored in clear")]
    Plain,
    #[error("the sealed key does not open with this sealing key")]
    WrongKey,
    #[error("the sealed key is malformed")]
    Malformed,
}

impl std::fmt::Debug for KeySealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySealer(<redacted>)")
    }
}

impl KeySealer {
    pub fn new(key: &[u8; 32]) -> Self {
        KeySealer {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The stored text of `key`, under a `nonce` of 12 random bytes never
    /// used before with this sealing key.
    pub fn seal(&self, key: &WebhookKey, nonce: [u8; 12]) -> String {
        let plain = key.expose();
        // Encrypting a short buffer with AES-GCM cannot fail.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .unwrap_or_default();
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The key back from [`KeySealer::seal`]'s text; [`SealError::Plain`]
    /// for a key stored in clear, with the key, so it can be sealed now.
    pub fn open(&self, stored: &str) -> Result<WebhookKey, (SealError, Option<WebhookKey>)> {
        let Some(b64) = stored.strip_prefix(SEALED_PREFIX) else {
            return Err((SealError::Plain, WebhookKey::parse(stored).ok()));
        };
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| (SealError::Malformed, None))?;
        if bytes.len() < 12 {
            return Err((SealError::Malformed, None));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| (SealError::WrongKey, None))?;
        let text = String::from_utf8(plain).map_err(|_| (SealError::Malformed, None))?;
        WebhookKey::parse(&text).map_err(|_| (SealError::Malformed, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_without_showing_the_key() {
        let sealer = KeySealer::new(&[7; 32]);
        let key = WebhookKey::from_bytes(&[1; 32]).unwrap();
        let stored = sealer.seal(&key, [3; 12]);
        assert!(stored.starts_with(SEALED_PREFIX));
        assert!(!stored.contains(&key.expose()["whsec_".len()..]));
        assert_eq!(sealer.open(&stored).unwrap(), key);
        assert_ne!(
            stored,
            sealer.seal(&key, [4; 12]),
            "another nonce, another text"
        );
        let other = KeySealer::new(&[8; 32]);
        assert_eq!(other.open(&stored).unwrap_err().0, SealError::WrongKey);
        let (plain, found) = sealer.open(&key.expose()).unwrap_err();
        assert_eq!((plain, found), (SealError::Plain, Some(key)));
        assert_eq!(
            sealer.open("sealed1:AAAA").unwrap_err().0,
            SealError::Malformed
        );
    }
}
