//! What `hookline serve` is told by flags and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hookline_core::ingest_token::IngestTokens;
use hookline_core::retry::RetrySchedule;
use hookline_core::settings::{self, Settings, SettingsError};
use hookline_sqlite::parse_sealing_key;

use crate::http_server::HttpLimits;

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The SQLite file that holds everything.
    #[arg(long, env = "HOOKLINE_DB", default_value = "./hookline.db")]
    pub db: PathBuf,

    /// The key webhook keys are sealed with, as 64 hex digits; without it,
    /// the key file beside the database (`<db>.key`, made on first start).
    #[arg(long, env = "HOOKLINE_SEALING_KEY", hide_env_values = true, value_parser = parse_sealing_key)]
    pub sealing_key: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the HTTP API listens.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Let deliveries reach loopback and private addresses (local development).
    /// [env: HOOKLINE_ALLOW_PRIVATE_TARGETS]
    #[arg(long)]
    pub allow_private_targets: bool,

    /// The token the platform sends as `authorization: Bearer` (or `new,old`
    /// while rotating it); generated and printed when unset.
    /// [env: HOOKLINE_INGEST_TOKEN]
    #[arg(long, value_parser = parse_tokens)]
    pub ingest_token: Option<IngestTokens>,

    /// Delays before each retry, e.g. `5s,5m,30m` (default: 5s,5m,30m,2h,5h,10h,10h).
    /// [env: HOOKLINE_RETRY_SCHEDULE]
    #[arg(long, value_parser = settings::schedule)]
    pub retry_schedule: Option<RetrySchedule>,

    /// How long a rotated-out webhook key keeps signing, e.g. `24h` (default 24h).
    /// [env: HOOKLINE_KEY_GRACE]
    #[arg(long, value_parser = settings::duration)]
    pub key_grace: Option<Duration>,

    /// How many deliveries may be in flight at once.
    #[arg(long, env = "HOOKLINE_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,

    /// How many of them one rule may have in flight.
    #[arg(long, env = "HOOKLINE_RULE_CONCURRENCY", default_value_t = 128, value_parser = settings::count)]
    pub rule_concurrency: usize,

    /// How many of them one tenant may have in flight.
    #[arg(long, env = "HOOKLINE_TENANT_CONCURRENCY", default_value_t = 192, value_parser = settings::count)]
    pub tenant_concurrency: usize,

    /// An attempt's total timeout, e.g. `15s` (default 15s).
    /// [env: HOOKLINE_DELIVERY_TIMEOUT]
    #[arg(long, value_parser = settings::duration)]
    pub delivery_timeout: Option<Duration>,

    /// How long a client may take to send a request's headers, counted from
    /// when its connection opened or its last answer (so also how long an
    /// idle keep-alive connection is kept).
    #[arg(long, env = "HOOKLINE_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = settings::duration)]
    pub http_header_timeout: Duration,

    /// How long one request may take from its headers to its answer (408 past it).
    #[arg(long, env = "HOOKLINE_HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = settings::duration)]
    pub http_request_timeout: Duration,

    /// Serve Prometheus metrics at `/metrics` on this address (off when
    /// unset; an address of its own, so it is never on the API's listener).
    #[arg(long, env = "HOOKLINE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Add `hookline_rule_attempts_total{tenant,rule,result}` to the
    /// metrics: a series per rule, up to 10,000 (off by default: their
    /// number is the merchants' to grow).
    #[arg(long, env = "HOOKLINE_METRICS_PER_RULE", default_value = "0", value_parser = settings::flag,
        num_args = 0..=1, default_missing_value = "1")]
    pub metrics_per_rule: bool,

    /// How many connections are served at once; more wait in the listen backlog.
    #[arg(long, env = "HOOKLINE_HTTP_MAX_CONNECTIONS", default_value_t = 512, value_parser = settings::count)]
    pub http_max_connections: usize,
}

impl ServeArgs {
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: self.http_header_timeout,
            request_timeout: self.http_request_timeout,
            max_connections: self.http_max_connections,
        }
    }

    /// The shared `HOOKLINE_*` settings, read from the environment by the
    /// same parser the Lambda functions use, with flags taking precedence.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut s = Settings::from_env()?;
        s.allow_private_targets |= self.allow_private_targets;
        if let Some(t) = &self.ingest_token {
            s.ingest_tokens = Some(t.clone());
        }
        if let Some(r) = &self.retry_schedule {
            s.retry_schedule = r.clone();
        }
        if let Some(g) = self.key_grace {
            s.key_grace = g;
        }
        if let Some(t) = self.delivery_timeout {
            s.delivery_timeout = t;
        }
        Ok(s)
    }
}

fn parse_tokens(s: &str) -> Result<IngestTokens, String> {
    IngestTokens::parse(s).map_err(|e| e.to_string())
}
