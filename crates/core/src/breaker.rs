//! The circuit breaker per rule: after a run of consecutive failed attempts
//! (timeouts and connection errors included) a rule's deliveries are held
//! back for a cool-down instead of being attempted one by one; then a single
//! probe decides. Held-back deliveries are delayed, never dropped, and never
//! charged an attempt. The cool-down doubles with every failed probe, up to a
//! ceiling, so a receiver that stays down costs little. Failures of attempts
//! that were already in flight when the circuit opened are not counted
//! (stores count a failure only while the circuit is not open), so a burst
//! of them does not escalate the cool-down.

use std::time::Duration;

use crate::time::Timestamp;

/// How the breaker is tuned; the same on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// The first cool-down; each failed probe doubles it.
    pub cool_down: Duration,
    /// The longest cool-down.
    pub max_cool_down: Duration,
    /// How long a rule may fail without a single success before it is
    /// disabled (rules of `rule.disabled` never are).
    pub disable_after: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            // A run this long is not chance: at 30 % random failures it
            // comes about once in 3 × 10^10 attempts, while at 5 it came
            // every few hundred, and a flaky receiver was held as if down.
            threshold: 20,
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// What a store keeps of a rule's receiver: its run of failures, and until
/// when its circuit is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    pub failures: u32,
    pub open_until: Option<Timestamp>,
}

impl Breaker {
    /// Whether a rule failing since `failing_since`, failing again at `at`,
    /// has failed long enough to be disabled.
    pub fn should_disable(&self, failing_since: Timestamp, at: Timestamp) -> bool {
        at.as_millis() - failing_since.as_millis()
            >= i64::try_from(self.disable_after.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What the breaker lets through for a rule right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Deliveries go as usual.
    Closed,
    /// Nothing goes before `until`.
    Open { until: Timestamp },
    /// The cool-down is over: one attempt at a time, as a probe.
    Probing,
}

impl Breaker {
    pub fn circuit(&self, health: &Health, now: Timestamp) -> Circuit {
        match health.open_until {
            Some(until) if until > now => Circuit::Open { until },
            Some(_) => Circuit::Probing,
            None => Circuit::Closed,
        }
    }

    /// Until when a run of `failures`, the last at `at`, opens the circuit:
    /// not below the threshold; from it on, for a cool-down that doubles with
    /// each failure past it.
    pub fn open_until(&self, failures: u32, at: Timestamp) -> Option<Timestamp> {
        let past = failures.checked_sub(self.threshold)?;
        let cool_down = self
            .cool_down
            .saturating_mul(1 << past.min(16))
            .min(self.max_cool_down);
        Some(at.saturating_add(cool_down))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The health after one more failed attempt at `now`, as the stores
    /// count it.
    fn after_failure(b: &Breaker, health: Health, now: Timestamp) -> Health {
        let failures = health.failures + 1;
        Health {
            failures,
            open_until: b.open_until(failures, now),
        }
    }

    #[test]
    fn opens_at_the_threshold_and_backs_off() {
        let b = Breaker {
            threshold: 3,
            cool_down: Duration::from_secs(10),
            max_cool_down: Duration::from_secs(35),
            ..Breaker::default()
        };
        let t = Timestamp::from_millis(1_000_000);
        let mut h = Health::default();
        for _ in 0..2 {
            h = after_failure(&b, h, t);
            assert_eq!(b.circuit(&h, t), Circuit::Closed);
        }
        h = after_failure(&b, h, t);
        let open = t.saturating_add(Duration::from_secs(10));
        assert_eq!(b.circuit(&h, t), Circuit::Open { until: open });
        assert_eq!(b.circuit(&h, open), Circuit::Probing);
        h = after_failure(&b, h, open);
        assert_eq!(
            h.open_until,
            Some(open.saturating_add(Duration::from_secs(20)))
        );
        h = after_failure(&b, h, open);
        assert_eq!(
            h.open_until,
            Some(open.saturating_add(Duration::from_secs(35))),
            "capped"
        );
        assert_eq!(b.circuit(&Health::default(), t), Circuit::Closed);
    }
}
