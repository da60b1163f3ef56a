//! The AWS backend as one value: the table, the queues, where they are, and
//! the counts of every call made to them. Cheap to clone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline_core::breaker::{Breaker, Health};
use hookline_core::traffic::TrafficBuffer;

use crate::calls::Calls;
use crate::items::RuleItem;
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
    /// Rules as the deliverer last read them (`None`: gone), each kept for
    /// [`RULE_CACHE_FOR`]: how long an edit or a delete made in another
    /// process may take to reach this one's attempts. This process's own
    /// writes to a rule drop its entry.
    pub(crate) rules: Arc<Mutex<HashMap<(String, String), CachedRule>>>,
    pub(crate) rule_cache_for: Duration,
    pub(crate) vault: Vault,
    /// Rules' traffic this process counted and has not yet written, and
    /// how long a count may wait ([`TRAFFIC_WRITE_EVERY`]).
    pub(crate) traffic: Arc<Mutex<TrafficBuffer>>,
    pub(crate) traffic_every: Duration,
}

/// A rule as read (`None`: gone), and when.
pub(crate) type CachedRule = (Option<RuleItem>, Instant);

/// How long a deliverer uses a rule it read (docs/cost.md: one read a rule
/// a function process in that time, instead of one a batch).
pub const RULE_CACHE_FOR: Duration = Duration::from_secs(15);

/// How long a deliverer process adds up rules' traffic before writing it:
/// one write per busy rule and process this often, instead of one per
/// batch (a rule with a batch of ten a second would add 0.1 write units to
/// each delivery). At 10 s, `infra/cost`'s fan-out-10 run (about one
/// delivery a second per rule, moto being slow) paid 0.10 write units a
/// delivery for it, over the AWS path's budget; a minute is a sixth of
/// that. A rule's health on AWS is so up to a minute behind, and what a
/// reclaimed function process had not written is lost: counts, never
/// deliveries.
pub(crate) const TRAFFIC_WRITE_EVERY: Duration = Duration::from_secs(60);

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
            rules: Arc::default(),
            rule_cache_for: RULE_CACHE_FOR,
            traffic: Arc::default(),
            traffic_every: TRAFFIC_WRITE_EVERY,
        }
    }

    /// The same backend keeping rules it read for `ttl`.
    pub fn with_rule_cache(self, ttl: Duration) -> Self {
        AwsBackend {
            rule_cache_for: ttl,
            rules: Arc::default(),
            ..self
        }
    }

    /// The same backend writing the traffic it counts once it is `every` old.
    pub fn with_traffic_every(self, every: Duration) -> Self {
        AwsBackend {
            traffic_every: every,
            ..self
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
            rules: Arc::default(),
            rule_cache_for: self.rule_cache_for,
            vault: self.vault.clone(),
            traffic: Arc::default(),
            traffic_every: self.traffic_every,
        }
    }

    /// What this process last saw of a rule's health, if it was unhealthy.
    pub(crate) fn health_seen(&self, tenant: &str, rule: &str) -> Option<Health> {
        let seen = self.health_seen.lock().ok()?;
        seen.get(&(tenant.to_owned(), rule.to_owned())).copied()
    }

    /// The rule as read within the cache's time: `Some(None)` when it was
    /// gone, `None` when it is to be read.
    pub(crate) fn cached_rule(&self, tenant: &str, rule: &str) -> Option<Option<RuleItem>> {
        let rules = self.rules.lock().ok()?;
        let (item, read_at) = rules.get(&(tenant.to_owned(), rule.to_owned()))?;
        (read_at.elapsed() < self.rule_cache_for).then(|| item.clone())
    }

    pub(crate) fn cache_rule(&self, tenant: &str, rule: &str, item: Option<RuleItem>) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.retain(|_, (_, read_at)| read_at.elapsed() < self.rule_cache_for);
            rules.insert((tenant.to_owned(), rule.to_owned()), (item, Instant::now()));
        }
    }

    /// Drops the rule's cached copy: this process wrote it.
    pub(crate) fn forget_rule(&self, tenant: &str, rule: &str) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.remove(&(tenant.to_owned(), rule.to_owned()));
        }
    }

    /// Notes a rule's health as this process wrote or read it.
    pub(crate) fn saw_health(&self, tenant: &str, rule: &str, health: Health) {
        self.forget_rule(tenant, rule);
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
