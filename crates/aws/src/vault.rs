//! Webhook keys at rest on AWS, by envelope encryption: sealing a key asks
//! KMS for a data key under the encryption context `{"tenant": <tenant id>}`,
//! and each stored key carries that data key as KMS encrypted it, so a
//! process opens a key with one KMS Decrypt per data key it has not seen,
//! naming the tenant. A data key is bound to its tenant: opened as another
//! tenant's, KMS refuses it, and CloudTrail records whose key each Decrypt
//! was for. Stored text: `kms2:<base64 encrypted data key>:<sealed key>`.
//! `kms1:` keys (one data key per process, no context) and keys in clear
//! from earlier Hookline versions still open, and are sealed anew when read;
//! a key in clear only while `HOOKLINE_ACCEPT_PLAIN_KEYS` allows it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hookline_core::WebhookKey;
use hookline_core::ports::StoreError;
use hookline_core::sealing::KeySealer;

use crate::calls::Calls;
use crate::error::{sdk_error, unreadable};

const PREFIX: &str = "kms2:";
/// Sealed by an earlier Hookline: opened without an encryption context.
const OLD_PREFIX: &str = "kms1:";
/// The encryption context's one key.
const TENANT: &str = "tenant";

#[derive(Clone)]
pub(crate) struct Vault {
    kms: aws_sdk_kms::Client,
    key_id: Option<String>,
    calls: Arc<Calls>,
    /// Whether a key stored in clear is read (and then sealed).
    accept_plain: bool,
    /// Data keys opened so far, by tenant and encrypted form.
    opened: Arc<Mutex<HashMap<(String, String), KeySealer>>>,
}

#[derive(Debug, thiserror::Error)]
enum VaultError {
    #[error("HOOKLINE_KMS_KEY_ID is not set: webhook keys are never stored in clear")]
    NoKey,
    #[error("KMS answered a data key that is not 32 bytes")]
    DataKey,
    #[error("the stored key is not in the kms2 form")]
    Form,
    #[error(
        "a webhook key is stored in clear; set HOOKLINE_ACCEPT_PLAIN_KEYS=1 while migrating a table from before keys were sealed"
    )]
    InClear,
    #[error("{0}")]
    Seal(#[from] hookline_core::sealing::SealError),
}

fn sealer_of(plaintext: &[u8]) -> Result<KeySealer, StoreError> {
    let key: [u8; 32] = plaintext
        .try_into()
        .map_err(|_| unreadable("KMS data key", VaultError::DataKey))?;
    Ok(KeySealer::new(&key))
}

impl Vault {
    pub fn new(
        kms: aws_sdk_kms::Client,
        key_id: Option<String>,
        accept_plain: bool,
        calls: Arc<Calls>,
    ) -> Self {
        Vault {
            kms,
            key_id,
            calls,
            accept_plain,
            opened: Arc::default(),
        }
    }

    /// The stored text of `tenant`'s `key`: sealing is rare (a tenant made,
    /// a key rotated), so each asks KMS for a data key of its own.
    pub async fn seal(&self, tenant: &str, key: &WebhookKey) -> Result<String, StoreError> {
        let key_id = self
            .key_id
            .as_deref()
            .ok_or_else(|| StoreError::unavailable("seal a webhook key", VaultError::NoKey))?;
        self.calls.count_kms();
        let out = self
            .kms
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(TENANT, tenant)
            .send()
            .await
            .map_err(|e| sdk_error("GenerateDataKey", e))?;
        let plain = out.plaintext.map(Blob::into_inner).unwrap_or_default();
        let blob = STANDARD.encode(
            out.ciphertext_blob
                .map(Blob::into_inner)
                .unwrap_or_default(),
        );
        let sealer = sealer_of(&plain)?;
        // What this process seals, it opens without asking KMS.
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert((tenant.to_owned(), blob.clone()), sealer.clone());
        }
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| {
            StoreError::unavailable("draw a nonce", std::io::Error::other(e.to_string()))
        })?;
        Ok(format!("{PREFIX}{blob}:{}", sealer.seal(key, nonce)))
    }

    /// `tenant`'s stored key back, with `true` when it should be sealed anew
    /// (it was in clear, or sealed the earlier way).
    pub async fn open(&self, tenant: &str, stored: &str) -> Result<(WebhookKey, bool), StoreError> {
        let (rest, context) = match (stored.strip_prefix(PREFIX), stored.strip_prefix(OLD_PREFIX)) {
            (Some(rest), _) => (rest, Some(tenant)),
            (None, Some(rest)) => (rest, None),
            (None, None) if self.accept_plain => {
                return WebhookKey::parse(stored)
                    .map(|k| (k, true))
                    .map_err(|_| unreadable("webhook key", VaultError::Form));
            }
            (None, None) => return Err(unreadable("webhook key", VaultError::InClear)),
        };
        let (blob, sealed) = rest
            .split_once(':')
            .ok_or_else(|| unreadable("webhook key", VaultError::Form))?;
        let cache_key = (context.unwrap_or_default().to_owned(), blob.to_owned());
        let known = self
            .opened
            .lock()
            .ok()
            .and_then(|o| o.get(&cache_key).cloned());
        let sealer = match known {
            Some(s) => s,
            None => {
                let encrypted = STANDARD
                    .decode(blob)
                    .map_err(|_| unreadable("webhook key", VaultError::Form))?;
                self.calls.count_kms();
                let mut decrypt = self.kms.decrypt().ciphertext_blob(Blob::new(encrypted));
                if let Some(tenant) = context {
                    decrypt = decrypt.encryption_context(TENANT, tenant);
                }
                let out = decrypt.send().await.map_err(|e| sdk_error("Decrypt", e))?;
                let sealer = sealer_of(&out.plaintext.map(Blob::into_inner).unwrap_or_default())?;
                if let Ok(mut opened) = self.opened.lock() {
                    opened.insert(cache_key, sealer.clone());
                }
                sealer
            }
        };
        sealer
            .open(sealed)
            .map(|k| (k, context.is_none()))
            .map_err(|(e, _)| unreadable("webhook key", VaultError::Seal(e)))
    }
}
