//! The `hookline` binary's pieces: configuration, the local deliverer and
//! `serve`, which wires the SQLite backend, the sender and the API together.

pub mod config;
pub mod http_server;
pub mod metrics;
pub mod receive;
pub mod remote;
pub mod serve;
pub mod tenant;
pub mod verify;
pub mod worker;

pub use hookline_core::SystemClock;

/// `n` bytes from the operating system's random source.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}

/// Logs to stderr at `HOOKLINE_LOG`'s level (info by default), and traces
/// over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; an unknown level is
/// refused by name. Keep what it answers until the process ends: dropping
/// it exports the last spans.
pub fn init_logging() -> Result<hookline_telemetry::Telemetry, String> {
    let level = hookline_core::settings::log_level_from_env().map_err(|e| e.to_string())?;
    hookline_telemetry::init(
        "hookline",
        hookline_telemetry::LogFormat::Text,
        level.parse().unwrap_or(tracing::Level::INFO),
    )
    .map_err(|e| e.to_string())
}
