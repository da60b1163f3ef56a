//! Where the local sealing key lives, and sealing the webhook keys a store
//! made before keys were sealed.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hookline_core::WebhookKey;
use hookline_core::ports::StoreError;
use hookline_core::sealing::{KeySealer, SEALED_PREFIX};
use rusqlite::{Connection, params};

/// A sealing key as text: 64 hex digits.
pub fn parse_sealing_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "expected 64 hex digits".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| "expected 64 hex digits (32 bytes)".to_owned())
}

/// The sealing key file could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("the sealing key file {path}: {reason}")]
pub struct SealingKeyError {
    path: PathBuf,
    reason: String,
}

/// The key in `<db>.key`, made with 32 random bytes and mode 0600 when the
/// file does not exist yet.
pub(crate) fn key_beside(db: &Path) -> Result<[u8; 32], SealingKeyError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".key");
    let path = PathBuf::from(name);
    let fail = |reason: String| SealingKeyError {
        path: path.clone(),
        reason,
    };
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| fail(e.to_string()))?;
            file.write_all(hex::encode(key).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| fail(e.to_string()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| fail(e.to_string()))?;
            parse_sealing_key(&text).map_err(fail)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// 12 random bytes for one seal.
pub(crate) fn nonce() -> Result<[u8; 12], StoreError> {
    let mut n = [0u8; 12];
    getrandom::fill(&mut n).map_err(|e| {
        StoreError::unavailable("draw a nonce", std::io::Error::other(e.to_string()))
    })?;
    Ok(n)
}

/// The stored text of `key`.
pub(crate) fn seal(sealer: &KeySealer, key: &WebhookKey) -> Result<String, StoreError> {
    Ok(sealer.seal(key, nonce()?))
}

/// Seals every webhook key still stored in clear (from before keys were
/// sealed), in place.
pub(crate) fn seal_plain_keys(conn: &Connection, sealer: &KeySealer) -> rusqlite::Result<()> {
    let plain: Vec<(String, String)> = conn
        .prepare("SELECT tenant_id, key FROM webhook_keys WHERE substr(key, 1, length(?1)) <> ?1")?
        .query_map([SEALED_PREFIX], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (tenant, text) in plain {
        let Ok(key) = WebhookKey::parse(&text) else {
            continue;
        };
        let sealed = seal(sealer, &key).map_err(|e| {
            rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(e.to_string())))
        })?;
        conn.execute(
            "UPDATE webhook_keys SET key = ?3 WHERE tenant_id = ?1 AND key = ?2",
            params![tenant, text, sealed],
        )?;
    }
    Ok(())
}

/// A stored key back, sealed or (before migration) in clear.
pub(crate) fn open(sealer: &KeySealer, stored: &str) -> Result<WebhookKey, StoreError> {
    match sealer.open(stored) {
        Ok(key) => Ok(key),
        Err((_, Some(plain))) => Ok(plain),
        Err((e, None)) => Err(StoreError::unreadable("webhook key", e)),
    }
}
