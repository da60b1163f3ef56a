//! When a failed delivery is tried again. The first attempt is immediate; the
//! schedule lists the delays before each retry, so `n` delays mean `n + 1`
//! attempts in all.

use std::fmt;
use std::time::Duration;

/// The longest a delivery can wait between attempts: SQS's maximum visibility
/// timeout, which is how the AWS backend delays a retry.
pub const MAX_DELAY: Duration = Duration::from_secs(12 * 60 * 60);

/// How far a scheduled delay may be moved either way, so that receivers that
/// fail together are not retried together.
const JITTER: f64 = 0.1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a retry schedule lists delays such as 5s,5m,2h; {0:?} is not one")]
    Delay(String),
    #[error("a retry delay may be at most 12h, not {0:?}")]
    TooLong(String),
    #[error("a retry schedule lists at most 50 delays")]
    TooMany,
}

impl Default for RetrySchedule {
    /// At once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts
    /// over about 28 hours.
    fn default() -> Self {
        let m = 60;
        let h = 60 * m;
        Self {
            delays: [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .map(Duration::from_secs)
                .to_vec(),
        }
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Result<Self, ScheduleError> {
        if delays.len() > 50 {
            return Err(ScheduleError::TooMany);
        }
        if let Some(d) = delays.iter().find(|d| **d > MAX_DELAY) {
            return Err(ScheduleError::TooLong(format!("{d:?}")));
        }
        Ok(Self { delays })
    }

    /// Parses `1s,2s,4s` (units `ms`, `s`, `m`, `h`; an empty string means no retries).
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_duration(p).ok_or_else(|| ScheduleError::Delay(p.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait after failed attempt number `attempt` (1-based), or `None`
    /// when that was the last. `jitter` is a uniform draw from `[0, 1)`.
    /// A receiver's `Retry-After` is honoured in place of the schedule's
    /// delay, kept between one second and [`MAX_DELAY`].
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let scheduled = *self.delays.get(index)?;
        if let Some(asked) = retry_after {
            return Some(asked.clamp(Duration::from_secs(1), MAX_DELAY));
        }
        let factor = 1.0 + JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0);
        Some(scheduled.mul_f64(factor).min(MAX_DELAY))
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.delays.iter().map(|d| format_duration(*d)).collect();
        f.write_str(&parts.join(","))
    }
}

/// The largest whole unit that states `d` exactly: `250ms`, `5s`, `30m`, `10h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms > 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `250ms`, `5s`, `30m`, `10h`, or `1d`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a schedule prints is what `HOOKLINE_RETRY_SCHEDULE` takes.
    #[test]
    fn a_schedule_prints_as_the_setting_is_written() {
        let s = RetrySchedule::default();
        assert_eq!(s.to_string(), "5s,5m,30m,2h,5h,10h,10h");
        assert_eq!(RetrySchedule::parse(&s.to_string()).unwrap(), s);
        let odd = RetrySchedule::parse("250ms,90s").unwrap();
        assert_eq!(odd.to_string(), "250ms,90s");
    }

    #[test]
    fn default_schedule_is_eight_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.max_attempts(), 8);
        assert_eq!(s.next_delay(1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(
            s.next_delay(7, None, 0.5),
            Some(Duration::from_secs(36_000))
        );
        assert_eq!(s.next_delay(8, None, 0.5), None);
        assert_eq!(s.next_delay(0, None, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let s = RetrySchedule::default();
        let low = s.next_delay(2, None, 0.0).unwrap();
        let high = s.next_delay(2, None, 0.999_999).unwrap();
        assert_eq!(low, Duration::from_secs(270));
        assert!(high > Duration::from_secs(329) && high <= Duration::from_secs(330));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let s = RetrySchedule::default();
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(120)), 0.5),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            s.next_delay(1, Some(Duration::ZERO), 0.5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            s.next_delay(1, Some(Duration::from_secs(86_400 * 3)), 0.5),
            Some(MAX_DELAY)
        );
        // Retry-After never buys attempts beyond the schedule.
        assert_eq!(s.next_delay(8, Some(Duration::from_secs(1)), 0.5), None);
    }

    #[test]
    fn parses_env_form() {
        let s = RetrySchedule::parse("1s, 2s,250ms").unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delays()[2], Duration::from_millis(250));
        assert_eq!(RetrySchedule::parse("").unwrap().max_attempts(), 1);
        assert!(matches!(
            RetrySchedule::parse("5x"),
            Err(ScheduleError::Delay(_))
        ));
        assert!(matches!(
            RetrySchedule::parse("13h"),
            Err(ScheduleError::TooLong(_))
        ));
    }
}
