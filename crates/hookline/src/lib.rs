//! The `hookline` binary's pieces: configuration, the local deliverer and
//! `serve`, which wires the SQLite backend, the sender and the API together.

pub mod config;
pub mod receive;
pub mod serve;
pub mod tenant;
pub mod worker;

use hookline_core::Timestamp;
use hookline_core::ports::Clock;

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

/// `n` bytes from the operating system's random source.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes)
}
