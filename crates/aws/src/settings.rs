//! Where the AWS backend's resources are, from the environment.

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub table: String,
    pub events_queue_url: String,
    pub deliveries_queue_url: String,
    pub events_dlq_url: Option<String>,
    pub deliveries_dlq_url: Option<String>,
    /// The KMS key webhook keys are sealed under (`HOOKLINE_KMS_KEY_ID`).
    pub kms_key_id: Option<String>,
    /// The Secrets Manager secret holding the ingest tokens
    /// (`HOOKLINE_INGEST_TOKEN_SECRET`); only the ingest function has it.
    pub ingest_token_secret: Option<String>,
    /// Whether a webhook key stored in clear (by a Hookline from before keys
    /// were sealed) is read and sealed, or refused
    /// (`HOOKLINE_ACCEPT_PLAIN_KEYS`, default off).
    pub accept_plain_keys: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0} is not set: it names the AWS resource Hookline uses")]
    Missing(&'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

fn var(name: &'static str) -> Result<String, SettingsError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(SettingsError::Missing(name))
}

/// An optional flag: unset or empty is off.
fn flag(name: &'static str) -> Result<bool, SettingsError> {
    match var(name) {
        Ok(v) => hookline_core::settings::flag(&v).map_err(|e| SettingsError::Invalid(name, e)),
        Err(_) => Ok(false),
    }
}

impl AwsSettings {
    /// `HOOKLINE_TABLE`, `HOOKLINE_EVENTS_QUEUE_URL`, `HOOKLINE_DELIVERIES_QUEUE_URL`,
    /// and the optional `HOOKLINE_EVENTS_DLQ_URL`, `HOOKLINE_DELIVERIES_DLQ_URL`
    /// `HOOKLINE_KMS_KEY_ID` and `HOOKLINE_ACCEPT_PLAIN_KEYS`.
    pub fn from_env() -> Result<Self, SettingsError> {
        Ok(Self {
            table: var("HOOKLINE_TABLE")?,
            events_queue_url: var("HOOKLINE_EVENTS_QUEUE_URL")?,
            deliveries_queue_url: var("HOOKLINE_DELIVERIES_QUEUE_URL")?,
            events_dlq_url: var("HOOKLINE_EVENTS_DLQ_URL").ok(),
            deliveries_dlq_url: var("HOOKLINE_DELIVERIES_DLQ_URL").ok(),
            kms_key_id: var("HOOKLINE_KMS_KEY_ID").ok(),
            ingest_token_secret: var("HOOKLINE_INGEST_TOKEN_SECRET").ok(),
            accept_plain_keys: flag("HOOKLINE_ACCEPT_PLAIN_KEYS")?,
        })
    }
}
