//! The AWS backend as one value: the table, the queues, where they are, and
//! the counts of every call made to them. Cheap to clone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hookline_core::breaker::{Breaker, Health};

use crate::calls::Calls;
use crate::queues::Queues;
use crate::settings::AwsSettings;
use crate::table::Table;
use crate::vault::Vault;

#[derive(Clone)]
pub struct AwsBackend {
    pub(crate) table: Table,
    pub(crate) queues: Queues,
    pub(crate) settings: Arc<AwsSettings>,
    pub(crate) calls: Arc<Calls>,
    /// Tenants known to exist: ingest checks every event's tenant.
    pub(crate) known_tenants: Arc<Mutex<HashSet<String>>>,
    pub(crate) breaker: Breaker,
    /// The last health this process wrote or read of each rule that is not
    /// healthy: a success is counted in a window of failures only if the
    /// job's own view or this one shows the window, and a success on a
    /// healthy rule so writes nothing.
    pub(crate) health_seen: Arc<Mutex<HashMap<(String, String), Health>>>,
    pub(crate) vault: Vault,
}

impl AwsBackend {
    pub fn new(config: &aws_config::SdkConfig, settings: AwsSettings) -> Self {
        let calls = Arc::new(Calls::default());
        let vault = Vault::new(
            aws_sdk_kms::Client::new(config),
            settings.kms_key_id.clone(),
            settings.accept_plain_keys,
            calls.clone(),
        );
        AwsBackend {
            table: Table::new(
                aws_sdk_dynamodb::Client::new(config),
                settings.table.clone(),
                calls.clone(),
            ),
            queues: Queues::new(aws_sdk_sqs::Client::new(config), calls.clone()),
            settings: Arc::new(settings),
            vault,
            calls,
            known_tenants: Arc::default(),
            breaker: Breaker::default(),
            health_seen: Arc::default(),
        }
    }

    /// The same backend with the deliverer's circuit breaker tuned.
    pub fn with_breaker(self, breaker: Breaker) -> Self {
        AwsBackend { breaker, ..self }
    }

    /// The same clients and counters, pointed at other resources.
    pub fn with_settings(&self, settings: AwsSettings) -> Self {
        AwsBackend {
            table: self.table.with_name(settings.table.clone()),
            queues: self.queues.clone(),
            settings: Arc::new(settings),
            calls: self.calls.clone(),
            known_tenants: Arc::default(),
            breaker: self.breaker,
            health_seen: Arc::default(),
            vault: self.vault.clone(),
        }
    }

    /// What this process last saw of a rule's health, if it was unhealthy.
    pub(crate) fn health_seen(&self, tenant: &str, rule: &str) -> Option<Health> {
        let seen = self.health_seen.lock().ok()?;
        seen.get(&(tenant.to_owned(), rule.to_owned())).copied()
    }

    /// Notes a rule's health as this process wrote or read it.
    pub(crate) fn saw_health(&self, tenant: &str, rule: &str, health: Health) {
        if let Ok(mut seen) = self.health_seen.lock() {
            let key = (tenant.to_owned(), rule.to_owned());
            if health == Health::default() {
                seen.remove(&key);
            } else {
                seen.insert(key, health);
            }
        }
    }

    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }
}
