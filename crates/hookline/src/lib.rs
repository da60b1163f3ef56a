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

/// Logs to stderr at `HOOKLINE_LOG`'s level (info by default); an unknown
/// level is refused by name.
pub fn init_logging() -> Result<(), String> {
    let level = hookline_core::settings::log_level_from_env().map_err(|e| e.to_string())?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level.parse().unwrap_or(tracing::Level::INFO))
        .with_target(false)
        .init();
    Ok(())
}
