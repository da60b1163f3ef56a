//! `hookline tenant create`: a tenant with its API key and webhook key.

use hookline_core::ports::{Clock, NewTenant, Store, StoreError};
use hookline_core::{FieldError, TenantId, WebhookKey};
use serde_json::json;

use crate::{SystemClock, random};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no randomness for keys: {0}")]
    Random(#[from] std::io::Error),
}

pub struct Credentials {
    pub tenant_id: String,
    pub api_key: String,
    pub webhook_key: WebhookKey,
}

impl Credentials {
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "tenant_id": self.tenant_id, "api_key": self.api_key, "webhook_key": self.webhook_key.expose() })
    }
}

pub async fn create(store: &dyn Store, tenant_id: &str) -> Result<Credentials, TenantError> {
    let id = TenantId::parse("tenant_id", tenant_id)?;
    let (tenant, api_key) = NewTenant::provision(id, &random::<64>()?, SystemClock.now())?;
    let webhook_key = tenant.webhook_key.clone();
    store.create_tenant(tenant).await?;
    Ok(Credentials {
        tenant_id: tenant_id.to_owned(),
        api_key,
        webhook_key,
    })
}
