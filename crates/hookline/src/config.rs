//! What `hookline serve` is told by flags and the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hookline_core::retry::{RetrySchedule, parse_duration};

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The SQLite file that holds everything.
    #[arg(long, env = "HOOKLINE_DB", default_value = "./hookline.db")]
    pub db: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where the HTTP API listens.
    #[arg(long, env = "HOOKLINE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Let deliveries reach loopback and private addresses (local development).
    #[arg(long, env = "HOOKLINE_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,

    /// The token the platform sends as `authorization: Bearer`; generated and
    /// printed when unset.
    #[arg(long, env = "HOOKLINE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// Delays before each retry, e.g. `5s,5m,30m` (default: 5s,5m,30m,2h,5h,10h,10h).
    #[arg(long, env = "HOOKLINE_RETRY_SCHEDULE", value_parser = parse_schedule)]
    pub retry_schedule: Option<RetrySchedule>,

    /// How long a rotated-out webhook key keeps signing, e.g. `24h`.
    #[arg(long, env = "HOOKLINE_KEY_GRACE", default_value = "24h", value_parser = parse_grace)]
    pub key_grace: Duration,

    /// How many deliveries may be in flight at once.
    #[arg(long, env = "HOOKLINE_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,

    /// An attempt's total timeout, e.g. `15s`.
    #[arg(long, env = "HOOKLINE_DELIVERY_TIMEOUT", default_value = "15s", value_parser = parse_grace)]
    pub delivery_timeout: Duration,
}

fn parse_schedule(s: &str) -> Result<RetrySchedule, String> {
    RetrySchedule::parse(s).map_err(|e| e.to_string())
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 30s, 15m or 24h"))
}
