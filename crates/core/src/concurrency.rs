//! How many attempts a rule's receiver is given at once, learnt from its
//! answers: Hookline starts with a few, adds one for every quick success and
//! halves at once on a sign of overload (a timeout, a failed connection, 429
//! or 503). A burst of events for one rule then reaches a small receiver at
//! the pace it can take, instead of as a wall of connections that fail and
//! trip the breaker. The deliverer caps it by `HOOKLINE_RULE_CONCURRENCY`.

use crate::delivery::Attempt;

/// What the deliverer keeps of one rule's receiver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveLimit {
    limit: f64,
    /// The quickest success seen: what "quick" is measured against.
    fastest_ms: Option<u64>,
}

/// Attempts in flight a rule starts with.
pub const START: usize = 4;

/// A success is quick when it took at most twice the fastest one seen, plus
/// this much (so that a receiver answering in 1 ms is not judged by noise).
const QUICK_SLACK_MS: u64 = 10;

impl Default for AdaptiveLimit {
    fn default() -> Self {
        AdaptiveLimit {
            limit: START as f64,
            fastest_ms: None,
        }
    }
}

impl AdaptiveLimit {
    /// How many attempts may be in flight now, at most `cap`.
    pub fn limit(&self, cap: usize) -> usize {
        (self.limit as usize).clamp(1, cap.max(1))
    }

    /// Learns from one settled attempt (`None`: no request was made, which
    /// says nothing of the receiver).
    pub fn observe(&mut self, attempt: &Attempt, receiver_ok: Option<bool>, cap: usize) {
        let Some(ok) = receiver_ok else {
            return;
        };
        let overloaded = match attempt.status_code {
            None => !ok,
            Some(status) => matches!(status, 429 | 503),
        };
        if overloaded {
            self.limit = (self.limit / 2.0).max(1.0);
            return;
        }
        if !ok {
            return;
        }
        let took = attempt.duration_ms;
        let fastest = self.fastest_ms.map_or(took, |f| f.min(took));
        self.fastest_ms = Some(fastest);
        if took <= fastest.saturating_mul(2) + QUICK_SLACK_MS {
            self.limit = (self.limit + 1.0).min(cap.max(1) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn attempt(status: Option<u16>, ms: u64) -> Attempt {
        Attempt {
            at: Timestamp::default(),
            status_code: status,
            duration_ms: ms,
            error: None,
            response_body: None,
        }
    }

    #[test]
    fn grows_on_quick_successes_and_halves_on_overload() {
        let mut a = AdaptiveLimit::default();
        assert_eq!(a.limit(128), START);
        for _ in 0..10 {
            a.observe(&attempt(Some(200), 20), Some(true), 128);
        }
        assert_eq!(a.limit(128), 14);
        assert_eq!(a.limit(8), 8, "capped");
        // Slow successes (a queue building at the receiver) hold it.
        a.observe(&attempt(Some(200), 400), Some(true), 128);
        assert_eq!(a.limit(128), 14);
        // A 4xx says nothing of load.
        a.observe(&attempt(Some(400), 20), Some(false), 128);
        assert_eq!(a.limit(128), 14);
        for overload in [
            attempt(Some(429), 5),
            attempt(Some(503), 5),
            attempt(None, 15_000),
        ] {
            a.observe(&overload, Some(false), 128);
        }
        assert_eq!(a.limit(128), 1);
        a.observe(&attempt(None, 0), Some(false), 128);
        assert_eq!(a.limit(128), 1, "never below one");
        a.observe(&attempt(None, 0), None, 128);
        assert_eq!(a.limit(128), 1, "no request, nothing learnt");
    }
}
