//! The `HOOKLINE_*` settings that `hookline serve` and every Lambda function
//! share, parsed in this one place so that the same text means the same thing
//! everywhere. A value that does not parse is an error naming its variable,
//! never a silent default.

use std::time::Duration;

use crate::breaker::Breaker;
use crate::ingest_token::IngestTokens;
use crate::retry::{RetrySchedule, parse_duration};
use crate::target::TargetPolicy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HOOKLINE_INGEST_TOKEN`: the platform's bearer token, or two
    /// (`new,old`) while it is rotated.
    pub ingest_tokens: Option<IngestTokens>,
    /// `HOOKLINE_ALLOW_PRIVATE_TARGETS`: permit loopback and private receivers.
    pub allow_private_targets: bool,
    /// `HOOKLINE_RETRY_SCHEDULE`: the delays before each retry.
    pub retry_schedule: RetrySchedule,
    /// `HOOKLINE_KEY_GRACE`: how long a rotated-out webhook key still signs.
    pub key_grace: Duration,
    /// `HOOKLINE_DELIVERY_TIMEOUT`: an attempt's total timeout.
    pub delivery_timeout: Duration,
    /// `HOOKLINE_MAX_RULES`: how many rules one tenant may have.
    pub max_rules: usize,
    /// `HOOKLINE_BREAKER_THRESHOLD` (consecutive failures that open a rule's
    /// circuit), `HOOKLINE_BREAKER_COOL_DOWN` (its first cool-down) and
    /// `HOOKLINE_DISABLE_AFTER` (how long a rule may fail before it is disabled).
    pub breaker: Breaker,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ingest_tokens: None,
            allow_private_targets: false,
            retry_schedule: RetrySchedule::default(),
            key_grace: Duration::from_secs(24 * 3600),
            delivery_timeout: Duration::from_secs(15),
            max_rules: 100,
            breaker: Breaker::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

/// The log levels `HOOKLINE_LOG` takes, least to most verbose.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `HOOKLINE_LOG`: how much the process logs (default `info`), as one of
/// [`LOG_LEVELS`]; any other value is an error naming the variable.
pub fn log_level(lookup: impl Fn(&str) -> Option<String>) -> Result<&'static str, SettingsError> {
    let Some(value) = lookup("HOOKLINE_LOG").filter(|v| !v.is_empty()) else {
        return Ok("info");
    };
    LOG_LEVELS
        .into_iter()
        .find(|level| level.eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| {
            error(
                "HOOKLINE_LOG",
                &value,
                format!("must be one of {}", LOG_LEVELS.join(", ")),
            )
        })
}

/// [`log_level`] from the process environment.
pub fn log_level_from_env() -> Result<&'static str, SettingsError> {
    log_level(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads each variable through `lookup`. Unset means the default, and so
    /// does empty, except for the retry schedule, where an empty list of
    /// delays means no retries.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let defaults = Settings::default();
        let b = defaults.breaker;
        let threshold = |v: &str| count(v).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(Settings {
            ingest_tokens: match set("HOOKLINE_INGEST_TOKEN") {
                None => None,
                // The value is a secret: the error names the variable, not it.
                Some(v) => Some(
                    IngestTokens::parse(&v)
                        .map_err(|e| error("HOOKLINE_INGEST_TOKEN", "<redacted>", e.to_string()))?,
                ),
            },
            allow_private_targets: parsed(
                "HOOKLINE_ALLOW_PRIVATE_TARGETS",
                set("HOOKLINE_ALLOW_PRIVATE_TARGETS"),
                defaults.allow_private_targets,
                flag,
            )?,
            // Set but empty is a schedule too: no retries.
            retry_schedule: parsed(
                "HOOKLINE_RETRY_SCHEDULE",
                lookup("HOOKLINE_RETRY_SCHEDULE"),
                defaults.retry_schedule,
                schedule,
            )?,
            key_grace: parsed(
                "HOOKLINE_KEY_GRACE",
                set("HOOKLINE_KEY_GRACE"),
                defaults.key_grace,
                duration,
            )?,
            delivery_timeout: parsed(
                "HOOKLINE_DELIVERY_TIMEOUT",
                set("HOOKLINE_DELIVERY_TIMEOUT"),
                defaults.delivery_timeout,
                duration,
            )?,
            max_rules: parsed(
                "HOOKLINE_MAX_RULES",
                set("HOOKLINE_MAX_RULES"),
                defaults.max_rules,
                count,
            )?,
            breaker: Breaker {
                threshold: parsed(
                    "HOOKLINE_BREAKER_THRESHOLD",
                    set("HOOKLINE_BREAKER_THRESHOLD"),
                    b.threshold,
                    threshold,
                )?,
                failure_rate: parsed(
                    "HOOKLINE_BREAKER_FAILURE_RATE",
                    set("HOOKLINE_BREAKER_FAILURE_RATE"),
                    b.failure_rate,
                    percent,
                )?,
                window: parsed(
                    "HOOKLINE_BREAKER_WINDOW",
                    set("HOOKLINE_BREAKER_WINDOW"),
                    b.window,
                    duration,
                )?,
                cool_down: parsed(
                    "HOOKLINE_BREAKER_COOL_DOWN",
                    set("HOOKLINE_BREAKER_COOL_DOWN"),
                    b.cool_down,
                    duration,
                )?,
                disable_after: parsed(
                    "HOOKLINE_DISABLE_AFTER",
                    set("HOOKLINE_DISABLE_AFTER"),
                    b.disable_after,
                    duration,
                )?,
                ..b
            },
        })
    }

    pub fn target_policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_private: self.allow_private_targets,
        }
    }
}

/// `text` of variable `name` parsed, or `default` when it is not set.
fn parsed<T>(
    name: &'static str,
    text: Option<String>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, SettingsError> {
    match text {
        None => Ok(default),
        Some(v) => parse(&v).map_err(|reason| error(name, &v, reason)),
    }
}

fn error(variable: &'static str, value: &str, reason: String) -> SettingsError {
    SettingsError {
        variable,
        value: value.to_owned(),
        reason,
    }
}

/// `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`, in any case.
pub fn flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected one of 1, true, yes, on, 0, false, no, off".into()),
    }
}

/// A duration such as `250ms`, `15s`, `30m`, `24h` or `1d`.
pub fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s.trim()).ok_or_else(|| "expected a duration such as 15s, 30m or 24h".into())
}

/// A share in percent, `1` to `100`, with or without its `%`.
pub fn percent(s: &str) -> Result<u32, String> {
    s.trim()
        .trim_end_matches('%')
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| "expected a share in percent from 1 to 100, such as 70%".into())
}

/// A whole number of at least one.
pub fn count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected a whole number of at least 1".into())
}

/// A retry schedule such as `5s,5m,30m`.
pub fn schedule(s: &str) -> Result<RetrySchedule, String> {
    RetrySchedule::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, value: &str) -> Result<Settings, SettingsError> {
        let value = value.to_owned();
        Settings::from_lookup(move |n| (n == name).then(|| value.clone()))
    }

    #[test]
    fn the_same_text_means_the_same_flag() {
        for (text, expected) in [
            ("0", Some(false)),
            ("1", Some(true)),
            ("true", Some(true)),
            ("False", Some(false)),
            ("yes", Some(true)),
            ("NO", Some(false)),
            ("off", Some(false)),
            ("", Some(false)),
            ("maybe", None),
            ("2", None),
        ] {
            let got = with("HOOKLINE_ALLOW_PRIVATE_TARGETS", text);
            match expected {
                Some(b) => assert_eq!(got.unwrap().allow_private_targets, b, "{text:?}"),
                None => {
                    let e = got.unwrap_err();
                    assert_eq!(e.variable, "HOOKLINE_ALLOW_PRIVATE_TARGETS", "{text:?}");
                    assert!(e.to_string().starts_with("HOOKLINE_ALLOW_PRIVATE_TARGETS="));
                }
            }
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for name in [
            "HOOKLINE_RETRY_SCHEDULE",
            "HOOKLINE_KEY_GRACE",
            "HOOKLINE_DELIVERY_TIMEOUT",
            "HOOKLINE_MAX_RULES",
            "HOOKLINE_BREAKER_THRESHOLD",
            "HOOKLINE_BREAKER_FAILURE_RATE",
            "HOOKLINE_BREAKER_WINDOW",
            "HOOKLINE_BREAKER_COOL_DOWN",
            "HOOKLINE_DISABLE_AFTER",
        ] {
            assert_eq!(with(name, "soon").unwrap_err().variable, name);
        }
        let s = with("HOOKLINE_RETRY_SCHEDULE", "1s,2s").unwrap();
        assert_eq!(s.retry_schedule.max_attempts(), 3);
        let none = with("HOOKLINE_RETRY_SCHEDULE", "").unwrap();
        assert_eq!(
            none.retry_schedule.max_attempts(),
            1,
            "empty means no retries"
        );
        assert_eq!(
            with("HOOKLINE_BREAKER_FAILURE_RATE", "55%")
                .unwrap()
                .breaker
                .failure_rate,
            55
        );
        assert!(with("HOOKLINE_BREAKER_FAILURE_RATE", "0").is_err());
        assert_eq!(
            with("HOOKLINE_KEY_GRACE", "2h").unwrap().key_grace,
            Duration::from_secs(7200)
        );
        assert_eq!(
            Settings::from_lookup(|_| None).unwrap(),
            Settings::default()
        );
    }
}
