//! The ingest tokens in Secrets Manager: read once, when the ingest function
//! starts. The secret's value is the token, or `new,old` while it is rotated.

use aws_sdk_secretsmanager::Client;
use hookline_core::ingest_token::IngestTokens;
use hookline_core::ports::StoreError;

use crate::error::{sdk_error, unreadable};

/// The tokens in secret `secret_id` (its name or ARN).
pub async fn ingest_tokens(
    config: &aws_config::SdkConfig,
    secret_id: &str,
) -> Result<IngestTokens, StoreError> {
    let out = Client::new(config)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| sdk_error("GetSecretValue", e))?;
    IngestTokens::parse(out.secret_string().unwrap_or_default())
        .map_err(|e| unreadable("ingest token secret", e))
}
