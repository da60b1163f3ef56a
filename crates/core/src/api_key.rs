//! Tenant API keys. Only a hash is stored, so a leaked store leaks no keys.

use sha2::{Digest, Sha256};

use crate::error::{FieldError, check_id};
use crate::ports::NewTenant;
use crate::signing::WebhookKey;
use crate::time::Timestamp;

/// A new API key from 32 random bytes the caller drew.
pub fn api_key_from_bytes(bytes: &[u8; 32]) -> String {
    format!("hk_{}", hex::encode(bytes))
}

/// What the store keeps and looks keys up by.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new tenant from 64 random bytes: its API key (returned once, stored only
/// as a hash) and its first webhook key.
pub fn provision_tenant(
    id: &str,
    random: &[u8; 64],
    now: Timestamp,
) -> Result<(NewTenant, String), FieldError> {
    check_id("tenant_id", id)?;
    let (key_bytes, secret) = random.split_at(32);
    let mut api_key_bytes = [0u8; 32];
    api_key_bytes.copy_from_slice(key_bytes);
    let api_key = api_key_from_bytes(&api_key_bytes);
    let webhook_key = WebhookKey::from_bytes(secret)
        .map_err(|e| FieldError::invalid("webhook_key", e.to_string()))?;
    let tenant = NewTenant {
        id: id.to_owned(),
        api_key_hash: hash_api_key(&api_key),
        webhook_key,
        created_at: now,
    };
    Ok((tenant, api_key))
}
