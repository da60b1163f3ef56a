//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`,
//! one entry per valid key, so receivers keep verifying across a key rotation.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::time::Timestamp;

const PREFIX: &str = "whsec_";

/// A tenant's webhook signing key. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookKey {
    secret: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a webhook key starts with whsec_")]
    Prefix,
    #[error("a webhook key is whsec_ followed by base64")]
    Base64,
    #[error("a webhook key holds 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl WebhookKey {
    /// Makes a key from random bytes the caller drew (this crate does no I/O).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if !(24..=64).contains(&secret.len()) {
            return Err(KeyError::Length(secret.len()));
        }
        Ok(Self {
            secret: secret.to_vec(),
        })
    }

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let b64 = s.strip_prefix(PREFIX).ok_or(KeyError::Prefix)?;
        let bytes = STANDARD.decode(b64).map_err(|_| KeyError::Base64)?;
        Self::from_bytes(&bytes)
    }

    /// The `whsec_…` form merchants paste into their receivers.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.secret))
    }

    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// Which of `keys` (its index) signed `body` as message `msg_id` at
/// `timestamp`, given a `webhook-signature` header of space-separated
/// `v1,<base64>` entries; each compared in constant time. None when none did.
/// The timestamp's age is the caller's to judge.
pub fn verify(
    keys: &[WebhookKey],
    msg_id: &str,
    timestamp: i64,
    header: &str,
    body: &[u8],
) -> Option<usize> {
    use subtle::ConstantTimeEq;
    keys.iter().position(|key| {
        let expected = key.sign(msg_id, timestamp, body);
        header
            .split(' ')
            .any(|given| given.as_bytes().ct_eq(expected.as_bytes()).into())
    })
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

/// The most keys that sign at once: the current one and two rotated-out keys
/// in their grace period. Every signature is an HMAC over the whole body, so
/// this bounds the work and the header a rotation spree can cause.
pub const MAX_SIGNING_KEYS: usize = 3;

/// Whether a key expiring at `expires_at` (never: the current key) still
/// signs at `now`.
pub fn signs_at(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|e| e > now)
}

/// Whether one more rotation at `now` keeps the keys that sign within
/// [`MAX_SIGNING_KEYS`], from the expiry of every stored key: no key need be
/// opened to know.
pub fn may_rotate(now: Timestamp, expiries: impl IntoIterator<Item = Option<Timestamp>>) -> bool {
    expiries.into_iter().filter(|e| signs_at(*e, now)).count() < MAX_SIGNING_KEYS
}

/// A webhook key as a store keeps it: current (no expiry) or rotated out and
/// signing until `expires_at`.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub key: WebhookKey,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// The keys that sign a tenant's deliveries right now: the current one first,
/// then any rotated-out key still inside its grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeys(pub Vec<WebhookKey>);

impl SigningKeys {
    /// The keys of `stored` that sign at `now`: the current key, then the
    /// rotated-out ones newest first, at most [`MAX_SIGNING_KEYS`].
    pub fn at(now: Timestamp, mut stored: Vec<StoredKey>) -> SigningKeys {
        stored.retain(|k| signs_at(k.expires_at, now));
        stored.sort_by_key(|k| (k.expires_at.is_some(), std::cmp::Reverse(k.created_at)));
        SigningKeys(
            stored
                .into_iter()
                .take(MAX_SIGNING_KEYS)
                .map(|k| k.key)
                .collect(),
        )
    }

    /// The `webhook-signature` header value: space-separated `v1,` entries.
    pub fn signature_header(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|k| k.sign(msg_id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_three_keys_sign_current_first() {
        let key = |b: u8| WebhookKey::from_bytes(&[b; 32]).unwrap();
        let t = Timestamp::from_millis;
        let stored = |b: u8, created: i64, expires: Option<i64>| StoredKey {
            key: key(b),
            created_at: t(created),
            expires_at: expires.map(t),
        };
        let keys = vec![
            stored(1, 10, Some(100)),
            stored(2, 20, Some(200)),
            stored(3, 30, None),
            stored(4, 5, Some(50)),
        ];
        let expiries = || keys.iter().map(|k| k.expires_at);
        let at = SigningKeys::at(t(40), keys.clone());
        assert_eq!(at.0, vec![key(3), key(2), key(1)]);
        assert!(!may_rotate(t(40), expiries()));
        let later = SigningKeys::at(t(150), keys.clone());
        assert_eq!(later.0, vec![key(3), key(2)]);
        assert!(may_rotate(t(150), expiries()));
    }

    #[test]
    fn standard_webhooks_test_vector() {
        // The example from the Standard Webhooks specification.
        let key = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn both_keys_sign_and_the_reference_library_verifies_each() {
        let old = WebhookKey::from_bytes(&[7u8; 32]).unwrap();
        let new = WebhookKey::from_bytes(&[9u8; 32]).unwrap();
        let keys = SigningKeys(vec![new.clone(), old.clone()]);
        let body = br#"{"type":"order.paid"}"#;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = keys.signature_header("msg_1", ts, body);
        assert_eq!(header.split(' ').count(), 2);
        let mut headers = http_headers(&header, ts);
        for key in [&old, &new] {
            let wh = standardwebhooks::Webhook::new(&key.expose()).unwrap();
            assert!(wh.verify(body, &headers).is_ok());
        }
        let stranger = WebhookKey::from_bytes(&[1u8; 32]).unwrap();
        let wh = standardwebhooks::Webhook::new(&stranger.expose()).unwrap();
        assert!(wh.verify(body, &headers).is_err());
        headers.insert("webhook-id", "msg_2".parse().unwrap());
        let wh = standardwebhooks::Webhook::new(&new.expose()).unwrap();
        assert!(wh.verify(body, &headers).is_err());
    }

    fn http_headers(sig: &str, ts: i64) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("webhook-id", "msg_1".parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn keys_parse_and_hide() {
        assert_eq!(WebhookKey::parse("abc"), Err(KeyError::Prefix));
        assert_eq!(WebhookKey::parse("whsec_!!"), Err(KeyError::Base64));
        assert_eq!(WebhookKey::from_bytes(&[0; 8]), Err(KeyError::Length(8)));
        let k = WebhookKey::from_bytes(&[3; 32]).unwrap();
        assert_eq!(WebhookKey::parse(&k.expose()).unwrap(), k);
        assert!(!format!("{k:?}").contains(&k.expose()[6..]));
    }
}
