//! A rule's rate limit: at most N deliveries a second, excess ones delayed
//! (never dropped, never charged an attempt). Locally a token bucket per rule;
//! on AWS a count per rule and second in the table.

use crate::time::Timestamp;

/// The most a rule may ask for.
pub const MAX_RATE_LIMIT: u32 = 10_000;

/// A token bucket holding at most one second's worth of sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    per_second: u32,
    tokens: f64,
    at: Timestamp,
}

impl TokenBucket {
    /// A full bucket for `per_second` sends a second.
    pub fn new(per_second: u32, now: Timestamp) -> Self {
        TokenBucket {
            per_second,
            tokens: f64::from(per_second),
            at: now,
        }
    }

    /// Takes a token if there is one; the limit may have changed since.
    pub fn try_take(&mut self, per_second: u32, now: Timestamp) -> bool {
        let elapsed = (now.as_millis() - self.at.as_millis()).max(0) as f64 / 1000.0;
        self.per_second = per_second;
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(per_second));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let t = |ms| Timestamp::from_millis(ms);
        let mut b = TokenBucket::new(5, t(0));
        assert_eq!((0..7).filter(|_| b.try_take(5, t(0))).count(), 5);
        assert!(!b.try_take(5, t(100)));
        assert!(b.try_take(5, t(200)), "one more after a fifth of a second");
        let sent = (1..=100)
            .filter(|i| b.try_take(5, t(200 + i * 100)))
            .count();
        assert_eq!(sent, 50, "5 a second over 10 s");
    }
}
