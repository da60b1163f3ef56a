//! Webhook keys at rest on AWS, by envelope encryption: a process asks KMS
//! for one data key when it first seals (a cold start's worth of keys under
//! it), and each stored key carries that data key as KMS encrypted it, so a
//! process opens a key with one KMS Decrypt per data key it has not seen.
//! Stored text: `kms1:<base64 encrypted data key>:<sealed key>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hookline_core::WebhookKey;
use hookline_core::ports::StoreError;
use hookline_core::sealing::KeySealer;
use tokio::sync::OnceCell;

use crate::calls::Calls;
use crate::error::{sdk_error, unreadable};

const PREFIX: &str = "kms1:";

#[derive(Clone)]
pub(crate) struct Vault {
    kms: aws_sdk_kms::Client,
    key_id: Option<String>,
    calls: Arc<Calls>,
    /// The data key this process seals with, and its encrypted form.
    current: Arc<OnceCell<(String, KeySealer)>>,
    /// Data keys opened so far, by their encrypted form.
    opened: Arc<Mutex<HashMap<String, KeySealer>>>,
}

#[derive(Debug, thiserror::Error)]
enum VaultError {
    #[error("HOOKLINE_KMS_KEY_ID is not set: webhook keys are never stored in clear")]
    NoKey,
    #[error("KMS answered a data key that is not 32 bytes")]
    DataKey,
    #[error("the stored key is not in the kms1 form")]
    Form,
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
    pub fn new(kms: aws_sdk_kms::Client, key_id: Option<String>, calls: Arc<Calls>) -> Self {
        Vault {
            kms,
            key_id,
            calls,
            current: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// The stored text of `key`.
    pub async fn seal(&self, key: &WebhookKey) -> Result<String, StoreError> {
        let (blob, sealer) = self
            .current
            .get_or_try_init(|| async {
                let key_id = self.key_id.as_deref().ok_or_else(|| {
                    StoreError::unavailable("seal a webhook key", VaultError::NoKey)
                })?;
                self.calls.count_kms();
                let out = self
                    .kms
                    .generate_data_key()
                    .key_id(key_id)
                    .key_spec(DataKeySpec::Aes256)
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
                    opened.insert(blob.clone(), sealer.clone());
                }
                Ok::<_, StoreError>((blob, sealer))
            })
            .await?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| {
            StoreError::unavailable("draw a nonce", std::io::Error::other(e.to_string()))
        })?;
        Ok(format!("{PREFIX}{blob}:{}", sealer.seal(key, nonce)))
    }

    /// A stored key back. A key stored in clear before keys were sealed
    /// opens too, with `true` to say it should be sealed now.
    pub async fn open(&self, stored: &str) -> Result<(WebhookKey, bool), StoreError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return WebhookKey::parse(stored)
                .map(|k| (k, true))
                .map_err(|_| unreadable("webhook key", VaultError::Form));
        };
        let (blob, sealed) = rest
            .split_once(':')
            .ok_or_else(|| unreadable("webhook key", VaultError::Form))?;
        let known = self.opened.lock().ok().and_then(|o| o.get(blob).cloned());
        let sealer = match known {
            Some(s) => s,
            None => {
                let encrypted = STANDARD
                    .decode(blob)
                    .map_err(|_| unreadable("webhook key", VaultError::Form))?;
                self.calls.count_kms();
                let out = self
                    .kms
                    .decrypt()
                    .ciphertext_blob(Blob::new(encrypted))
                    .send()
                    .await
                    .map_err(|e| sdk_error("Decrypt", e))?;
                let sealer = sealer_of(&out.plaintext.map(Blob::into_inner).unwrap_or_default())?;
                if let Ok(mut opened) = self.opened.lock() {
                    opened.insert(blob.to_owned(), sealer.clone());
                }
                sealer
            }
        };
        sealer
            .open(sealed)
            .map(|k| (k, false))
            .map_err(|(e, _)| unreadable("webhook key", VaultError::Seal(e)))
    }
}
