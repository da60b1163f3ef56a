//! The circuit breaker per rule, judged by failure *rate*: within a window
//! of recent attempts (from a rule's first failure, for `window`), once at
//! least `threshold` attempts were made and `failure_rate` percent of them
//! failed (timeouts and connection errors included), the rule's deliveries
//! are held back for a cool-down instead of being attempted one by one;
//! then a single probe decides. So a receiver that fails now and then keeps
//! flowing (its failures are retried), and one that fails nearly everything
//! gets probes only. Held-back deliveries are delayed, never dropped, and
//! never charged an attempt. The cool-down doubles with every failed probe,
//! up to a ceiling. Failures of attempts that were already in flight when the
//! circuit opened are not counted, so a burst of them does not escalate it.
//!
//! [`Breaker::after`] is the one place the health of a rule moves; the
//! stores keep [`Health`] and apply it atomically.

use std::time::Duration;

use crate::time::Timestamp;

/// How the breaker is tuned; the same on both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// The fewest attempts in a window before its failure rate may open the
    /// circuit.
    pub threshold: u32,
    /// The share of a window's attempts, in percent, whose failure opens it.
    pub failure_rate: u32,
    /// How long a window of attempts lasts, from its first failure.
    pub window: Duration,
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
            threshold: 20,
            failure_rate: 70,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            max_cool_down: Duration::from_secs(600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// What a store keeps of a rule's receiver. The default is a healthy rule,
/// which the stores keep nothing for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// Attempts and failures in the window that began at `window_start`.
    pub attempts: u32,
    pub failures: u32,
    pub window_start: Option<Timestamp>,
    /// Until when the circuit is open.
    pub open_until: Option<Timestamp>,
    /// How many times it opened since the last success: the cool-down
    /// doubles with each.
    pub trips: u32,
    /// The first failure since the last success.
    pub failing_since: Option<Timestamp>,
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

impl Health {
    /// What the breaker lets through now, by this health.
    pub fn circuit(&self, now: Timestamp) -> Circuit {
        match self.open_until {
            Some(until) if until > now => Circuit::Open { until },
            Some(_) => Circuit::Probing,
            None => Circuit::Closed,
        }
    }
}

impl Breaker {
    pub fn circuit(&self, health: &Health, now: Timestamp) -> Circuit {
        health.circuit(now)
    }

    /// The health after an attempt that ended at `at`, which the receiver
    /// took (`ok`) or did not.
    pub fn after(&self, health: &Health, ok: bool, at: Timestamp) -> Health {
        if ok {
            return self.after_success(health, at);
        }
        let failing_since = Some(health.failing_since.unwrap_or(at));
        match self.circuit(health, at) {
            // In flight before the circuit opened: not counted.
            Circuit::Open { .. } => *health,
            Circuit::Probing => {
                let trips = health.trips.saturating_add(1);
                Health {
                    open_until: Some(at.saturating_add(self.cool_down_after(trips))),
                    trips,
                    failing_since,
                    ..Health::default()
                }
            }
            Circuit::Closed => {
                let window_over = health
                    .window_start
                    .is_none_or(|start| at >= start.saturating_add(self.window));
                let mut next = if window_over {
                    Health {
                        window_start: Some(at),
                        trips: health.trips,
                        ..Health::default()
                    }
                } else {
                    *health
                };
                next.failing_since = failing_since;
                next.attempts = next.attempts.saturating_add(1);
                next.failures = next.failures.saturating_add(1);
                if self.trips(&next) {
                    next.trips = next.trips.saturating_add(1);
                    next.open_until = Some(at.saturating_add(self.cool_down_after(next.trips)));
                }
                next
            }
        }
    }

    /// The health after a success at `at`: within a window it is counted
    /// (one success does not wipe a window of failures, so a flaky rule is
    /// judged by its rate); otherwise, and whenever the circuit was open or
    /// probing, the rule is healthy again.
    fn after_success(&self, health: &Health, at: Timestamp) -> Health {
        match self.circuit(health, at) {
            Circuit::Closed
                if health
                    .window_start
                    .is_some_and(|start| at < start.saturating_add(self.window)) =>
            {
                Health {
                    attempts: health.attempts.saturating_add(1),
                    failing_since: None,
                    ..*health
                }
            }
            _ => Health::default(),
        }
    }

    fn trips(&self, h: &Health) -> bool {
        h.attempts >= self.threshold
            && u64::from(h.failures) * 100 >= u64::from(self.failure_rate) * u64::from(h.attempts)
    }

    /// The cool-down after the circuit opened `trips` times in a row.
    fn cool_down_after(&self, trips: u32) -> Duration {
        let doublings = trips.saturating_sub(1).min(16);
        self.cool_down
            .saturating_mul(1 << doublings)
            .min(self.max_cool_down)
    }

    /// Whether a rule failing since `failing_since`, failing again at `at`,
    /// has failed long enough to be disabled.
    pub fn should_disable(&self, failing_since: Timestamp, at: Timestamp) -> bool {
        at.as_millis() - failing_since.as_millis()
            >= i64::try_from(self.disable_after.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker {
            threshold: 10,
            failure_rate: 70,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(10),
            max_cool_down: Duration::from_secs(35),
            ..Breaker::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + s * 1000)
    }

    /// `outcomes` (true: ok) one a second from `start`.
    fn run(b: &Breaker, mut h: Health, start: i64, outcomes: &[bool]) -> Health {
        for (i, ok) in outcomes.iter().enumerate() {
            let t = at(start + i as i64);
            h = b.after(&h, *ok, t);
        }
        h
    }

    #[test]
    fn a_receiver_that_fails_everything_opens_and_backs_off() {
        let b = breaker();
        let h = run(&b, Health::default(), 0, &[false; 9]);
        assert_eq!(b.circuit(&h, at(9)), Circuit::Closed, "below the threshold");
        let h = run(&b, h, 9, &[false]);
        let open = at(9).saturating_add(Duration::from_secs(10));
        assert_eq!(b.circuit(&h, at(9)), Circuit::Open { until: open });
        assert_eq!(h.failing_since, Some(at(0)));
        // In flight before it opened: not counted.
        assert_eq!(b.after(&h, false, at(10)), h);
        assert_eq!(b.circuit(&h, open), Circuit::Probing);
        let h = b.after(&h, false, open);
        assert_eq!(
            h.open_until,
            Some(open.saturating_add(Duration::from_secs(20)))
        );
        let later = h.open_until.unwrap();
        let h = b.after(&h, false, later);
        assert_eq!(
            h.open_until,
            Some(later.saturating_add(Duration::from_secs(35))),
            "capped"
        );
        assert_eq!(
            h.failing_since,
            Some(at(0)),
            "still failing since the first"
        );
        assert_eq!(
            b.after(&h, true, later),
            Health::default(),
            "a probe that succeeds closes it"
        );
    }

    #[test]
    fn a_flaky_receiver_is_judged_by_its_rate() {
        let b = breaker();
        // Three in ten fail, over and over: never open.
        let pattern = [
            false, true, true, false, true, true, true, false, true, true,
        ];
        let mut h = Health::default();
        for round in 0..30 {
            h = run(&b, h, round * 10, &pattern);
            assert_eq!(
                b.circuit(&h, at(round * 10 + 10)),
                Circuit::Closed,
                "round {round}"
            );
        }
        // Eight in ten within a window: open.
        let h = run(
            &b,
            Health::default(),
            0,
            &[
                false, false, true, false, false, false, true, false, false, false,
            ],
        );
        assert!(
            matches!(b.circuit(&h, at(10)), Circuit::Open { .. }),
            "{h:?}"
        );
    }

    #[test]
    fn a_window_ends_and_a_new_one_starts_at_the_next_failure() {
        let b = breaker();
        let h = run(&b, Health::default(), 0, &[false; 9]);
        // A minute later the nine old failures no longer count.
        let h = b.after(&h, false, at(70));
        assert_eq!(
            (h.attempts, h.failures, h.window_start),
            (1, 1, Some(at(70)))
        );
        assert_eq!(b.circuit(&h, at(70)), Circuit::Closed);
        // A success after the window clears what is kept.
        assert_eq!(b.after(&h, true, at(140)), Health::default());
        assert_eq!(b.after(&Health::default(), true, at(0)), Health::default());
    }
}
