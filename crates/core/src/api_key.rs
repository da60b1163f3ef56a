//! Tenant API keys. Only a hash is stored, so a leaked store leaks no keys.

use sha2::{Digest, Sha256};

/// A new API key from 32 random bytes the caller drew.
pub fn api_key_from_bytes(bytes: &[u8; 32]) -> String {
    format!("hk_{}", hex::encode(bytes))
}

/// What the store keeps and looks keys up by.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
