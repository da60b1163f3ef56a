//! What every handler shares: the store, the clock and the configuration.

use std::sync::Arc;
use std::time::Duration;

use hookline_core::ingest_token::IngestTokens;
use hookline_core::ports::{Clock, Sender, Store};
use hookline_core::target::TargetPolicy;

pub struct ApiConfig {
    /// The tokens ingest accepts; none where only admin is served.
    pub ingest_tokens: IngestTokens,
    pub policy: TargetPolicy,
    /// How long a rotated-out webhook key keeps signing.
    pub key_grace: Duration,
    /// How many rules one tenant may have.
    pub max_rules: usize,
}

#[derive(Clone)]
pub struct ApiState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<ApiConfig>,
    /// Sends a rule's test delivery; without one, test sends answer 503.
    pub(crate) sender: Option<Arc<dyn Sender>>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ApiConfig) -> Self {
        Self {
            store,
            clock,
            config: Arc::new(config),
            sender: None,
        }
    }

    /// The same state, sending rules' test deliveries through `sender`.
    pub fn with_sender(self, sender: Arc<dyn Sender>) -> Self {
        Self {
            sender: Some(sender),
            ..self
        }
    }
}
