//! A rule's traffic: what its receiver did with the attempts made, counted
//! per rule in fixed five-minute buckets ([`Tally`]) rather than read back
//! from the attempt log. A store keeps a day of buckets; [`Traffic`] turns
//! them into what a merchant sees of a rule (success rate and latency over
//! the last hour and day, the last success and failure, the failures in a
//! row). Tallies are added up in the deliverer's process and written a few
//! at a time ([`TrafficBuffer`]), so counting costs no write per attempt.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::delivery::Attempt;
use crate::id::{RuleId, TenantId};
use crate::time::Timestamp;

/// How long one bucket counts.
pub const BUCKET: Duration = Duration::from_secs(300);

/// How far back a store keeps buckets (and [`Traffic`] looks).
pub const KEPT: Duration = Duration::from_secs(24 * 3600);

/// The upper bounds, in milliseconds, of the latency bins; the last bin
/// holds every slower attempt.
pub const LATENCY_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// How many latency bins a tally has.
pub const LATENCY_BINS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// The longest error text a tally keeps of the last failure.
const ERROR_CHARS: usize = 300;

/// The start of the bucket `at` falls in.
pub fn bucket_of(at: Timestamp) -> Timestamp {
    let width = BUCKET.as_millis() as i64;
    Timestamp::from_millis(at.as_millis().div_euclid(width) * width)
}

/// One rule's attempts in one bucket (or in several, added up).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub successes: u64,
    pub failures: u64,
    /// Attempts by how long they took, in the bins of [`LATENCY_BOUNDS_MS`].
    pub latency: [u64; LATENCY_BINS],
    /// The slowest attempt: what the last bin reaches up to.
    pub slowest_ms: u64,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    /// Why the last failure failed.
    pub last_error: Option<String>,
    /// The failures after the last success (all of them when there was none).
    pub trailing_failures: u64,
}

impl Tally {
    /// Counts one attempt the receiver took (`ok`) or did not, ending at
    /// `at` after `duration_ms`.
    pub fn record(&mut self, ok: bool, at: Timestamp, duration_ms: u64, error: Option<&str>) {
        let bin = LATENCY_BOUNDS_MS
            .iter()
            .position(|&bound| duration_ms <= bound)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency[bin] += 1;
        self.slowest_ms = self.slowest_ms.max(duration_ms);
        if ok {
            self.successes += 1;
            self.last_success = self.last_success.max(Some(at));
            self.trailing_failures = 0;
        } else {
            self.failures += 1;
            self.trailing_failures += 1;
            if self.last_failure <= Some(at) {
                self.last_failure = Some(at);
                self.last_error = error.map(|e| e.chars().take(ERROR_CHARS).collect());
            }
        }
    }

    /// Adds `other` in. Which failures trail the last success is told by
    /// time: the tally with the later success keeps its trailing failures,
    /// and the other's count too when its last failure came after that
    /// success (exact when the two cover one stretch of time after another).
    pub fn absorb(&mut self, other: &Tally) {
        self.trailing_failures = match (self.last_success, other.last_success) {
            (None, None) => self.trailing_failures + other.trailing_failures,
            (mine, theirs) if mine >= theirs => {
                self.trailing_failures
                    + if other.last_failure > mine {
                        other.trailing_failures
                    } else {
                        0
                    }
            }
            (_, theirs) => {
                other.trailing_failures
                    + if self.last_failure > theirs {
                        self.trailing_failures
                    } else {
                        0
                    }
            }
        };
        self.successes += other.successes;
        self.failures += other.failures;
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency) {
            *mine += theirs;
        }
        self.slowest_ms = self.slowest_ms.max(other.slowest_ms);
        self.last_success = self.last_success.max(other.last_success);
        if other.last_failure > self.last_failure {
            self.last_failure = other.last_failure;
            self.last_error.clone_from(&other.last_error);
        }
    }

    pub fn attempts(&self) -> u64 {
        self.successes + self.failures
    }

    /// The latency `percent` of the attempts took at most, as the upper
    /// bound of its bin (the slowest attempt for the last bin).
    pub fn percentile_ms(&self, percent: u64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total * percent).div_ceil(100).max(1);
        let mut seen = 0;
        for (bin, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // The slowest attempt narrows the bin's bound when it fell
                // in it; it is kept to the bin, for a store that keeps it
                // only near enough.
                let lower = bin.checked_sub(1).map_or(0, |b| LATENCY_BOUNDS_MS[b]);
                let slowest = self.slowest_ms.max(lower);
                return Some(
                    LATENCY_BOUNDS_MS
                        .get(bin)
                        .map_or(slowest, |&b| b.min(slowest)),
                );
            }
        }
        Some(self.slowest_ms)
    }
}

/// A rule's traffic over some stretch: its buckets added up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    /// Successes per attempt; none without attempts.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

impl Window {
    fn of(tally: &Tally) -> Self {
        let attempts = tally.attempts();
        Window {
            attempts,
            successes: tally.successes,
            failures: tally.failures,
            success_rate: (attempts > 0).then(|| tally.successes as f64 / attempts as f64),
            p50_ms: tally.percentile_ms(50),
            p99_ms: tally.percentile_ms(99),
        }
    }
}

/// What a rule's buckets of the last day say.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// The buckets that began within the last hour: 55 to 60 minutes.
    pub hour: Window,
    /// The buckets that began within the last day.
    pub day: Window,
    pub last_success: Option<Timestamp>,
    pub last_failure: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Failures since the last success (within the day kept).
    pub consecutive_failures: u64,
}

impl Traffic {
    /// Sums `buckets` (each with its start, in any order) as of `now`.
    pub fn of(buckets: &[(Timestamp, Tally)], now: Timestamp) -> Self {
        let since = |d: Duration| Timestamp::from_millis(now.as_millis() - d.as_millis() as i64);
        let (hour_from, day_from) = (since(Duration::from_secs(3600)), since(KEPT));
        let (mut hour, mut day) = (Tally::default(), Tally::default());
        let mut in_order: Vec<&(Timestamp, Tally)> = buckets.iter().collect();
        in_order.sort_by_key(|(start, _)| *start);
        for (start, tally) in in_order {
            if *start > day_from {
                day.absorb(tally);
            }
            if *start > hour_from {
                hour.absorb(tally);
            }
        }
        Traffic {
            hour: Window::of(&hour),
            day: Window::of(&day),
            last_success: day.last_success,
            last_failure: day.last_failure,
            last_error: day.last_error.clone(),
            consecutive_failures: day.trailing_failures,
        }
    }
}

/// The tallies a deliverer process has counted and not yet written, by
/// rule and bucket. Written when the oldest is `every` old, so a store
/// writes each busy rule's bucket once per `every` however many attempts
/// it had; what a crash loses is that much counting, never a delivery.
#[derive(Debug, Default)]
pub struct TrafficBuffer {
    tallies: HashMap<(TenantId, RuleId, Timestamp), Tally>,
    since: Option<Timestamp>,
}

/// The most tallies a buffer holds: past it they are due whatever their
/// age, and an attempt of a rule and bucket not held is not counted (a cap
/// on memory when very many rules are busy at once and the writes fall
/// behind).
const BUFFERED_MAX: usize = 10_000;

/// Tallies taken from a buffer to write: (tenant, rule, bucket start).
pub type Tallies = Vec<((TenantId, RuleId, Timestamp), Tally)>;

impl TrafficBuffer {
    /// Counts an attempt of `rule` that the receiver took (`ok`) or did not.
    pub fn record(&mut self, tenant: &TenantId, rule: &RuleId, ok: bool, attempt: &Attempt) {
        let at = attempt.at;
        let key = (tenant.clone(), rule.clone(), bucket_of(at));
        if self.tallies.len() >= BUFFERED_MAX && !self.tallies.contains_key(&key) {
            return;
        }
        self.since.get_or_insert(at);
        self.tallies.entry(key).or_default().record(
            ok,
            at,
            attempt.duration_ms,
            attempt.error.as_deref(),
        );
    }

    /// The tallies to write now, at most `at_most`, taken out of the
    /// buffer: once the oldest was counted `every` before `now`, or the
    /// buffer is full. What is left over stays due, for the next write: so
    /// one write never holds a store for every busy rule at once.
    pub fn take_due(&mut self, now: Timestamp, every: Duration, at_most: usize) -> Tallies {
        let due = self
            .since
            .is_some_and(|since| now >= since.saturating_add(every))
            || self.tallies.len() >= BUFFERED_MAX;
        if !due {
            return Vec::new();
        }
        if self.tallies.len() <= at_most {
            return self.take_all();
        }
        let keys: Vec<_> = self.tallies.keys().take(at_most).cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.tallies.remove_entry(&k))
            .collect()
    }

    /// Every tally, taken out of the buffer: for a process that stops.
    pub fn take_all(&mut self) -> Tallies {
        self.since = None;
        self.tallies.drain().collect()
    }

    /// The tallies of one rule not yet written, to add to what a store read.
    pub fn of_rule(&self, tenant: &TenantId, rule: &RuleId) -> Vec<(Timestamp, Tally)> {
        self.tallies
            .iter()
            .filter(|((t, r, _), _)| t == tenant && r == rule)
            .map(|((_, _, bucket), tally)| (*bucket, tally.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_millis(1_795_953_600_000 + s * 1000)
    }

    #[test]
    fn a_tally_counts_rates_latencies_and_the_failures_since_the_last_success() {
        let mut t = Tally::default();
        t.record(true, at(0), 3, None);
        t.record(false, at(1), 40, Some("receiver answered 500"));
        t.record(true, at(2), 700, None);
        t.record(false, at(3), 12_000, Some("timed out"));
        t.record(false, at(4), 20, Some("receiver answered 503"));
        assert_eq!((t.successes, t.failures, t.trailing_failures), (2, 3, 2));
        assert_eq!(t.last_success, Some(at(2)));
        assert_eq!(t.last_failure, Some(at(4)));
        assert_eq!(t.last_error.as_deref(), Some("receiver answered 503"));
        // 3, 20, 40, 700, 12000 ms: the median is in the 50 ms bin, the
        // 99th the slowest.
        assert_eq!(t.percentile_ms(50), Some(50));
        assert_eq!(t.percentile_ms(99), Some(12_000));
        assert_eq!(Tally::default().percentile_ms(50), None);
    }

    #[test]
    fn absorbing_tallies_is_counting_their_attempts_in_one() {
        // The same attempts split at every point, in both orders, give
        // what counting them in one tally gives.
        let attempts = [
            (false, 1, 8),
            (true, 2, 30),
            (false, 3, 90),
            (false, 4, 3000),
            (true, 5, 4),
            (false, 6, 60),
        ];
        let mut whole = Tally::default();
        for (ok, s, ms) in attempts {
            whole.record(ok, at(s), ms, (!ok).then_some("no"));
        }
        for split in 0..=attempts.len() {
            let (mut a, mut b) = (Tally::default(), Tally::default());
            for (i, (ok, s, ms)) in attempts.into_iter().enumerate() {
                let t = if i < split { &mut a } else { &mut b };
                t.record(ok, at(s), ms, (!ok).then_some("no"));
            }
            let mut ab = a.clone();
            ab.absorb(&b);
            b.absorb(&a);
            assert_eq!(ab, whole, "split at {split}");
            assert_eq!(b, whole, "split at {split}, later first");
        }
    }

    #[test]
    fn traffic_sums_the_last_hour_and_day_and_forgets_older_buckets() {
        let now = at(2 * 24 * 3600);
        let ago = |s: i64| bucket_of(Timestamp::from_millis(now.as_millis() - s * 1000));
        let tally = |ok: u64, failed: u64| {
            let mut t = Tally::default();
            (0..ok).for_each(|_| t.record(true, at(0), 10, None));
            (0..failed).for_each(|_| t.record(false, at(0), 10, Some("x")));
            t
        };
        let buckets = vec![
            (ago(60), tally(3, 1)),
            (ago(2 * 3600), tally(6, 0)),
            (ago(25 * 3600), tally(100, 100)),
        ];
        let traffic = Traffic::of(&buckets, now);
        assert_eq!(traffic.hour.attempts, 4);
        assert_eq!(traffic.hour.success_rate, Some(0.75));
        assert_eq!((traffic.day.successes, traffic.day.failures), (9, 1));
        assert_eq!(Traffic::of(&[], now).day.success_rate, None);
    }

    #[test]
    fn a_buffer_hands_out_its_tallies_once_the_oldest_is_due() {
        let (tenant, rule) = (TenantId::stored("t"), RuleId::stored("r"));
        let attempt = |s| Attempt {
            at: at(s),
            status_code: Some(200),
            duration_ms: 5,
            error: None,
            response_body: None,
        };
        let mut buffer = TrafficBuffer::default();
        buffer.record(&tenant, &rule, true, &attempt(0));
        buffer.record(&tenant, &rule, false, &attempt(1));
        let every = Duration::from_secs(10);
        assert!(buffer.take_due(at(9), every, 10).is_empty());
        let seen = buffer.of_rule(&tenant, &rule);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.attempts(), 2);
        assert!(buffer.of_rule(&tenant, &RuleId::stored("other")).is_empty());
        let taken = buffer.take_due(at(10), every, 10);
        assert_eq!(taken.len(), 1);
        assert!(buffer.take_due(at(100), every, 10).is_empty(), "taken once");

        // Three rules due, two at a time: the third stays due.
        for r in ["a", "b", "c"] {
            buffer.record(&tenant, &RuleId::stored(r), true, &attempt(200));
        }
        assert_eq!(buffer.take_due(at(210), every, 2).len(), 2);
        assert_eq!(
            buffer.take_due(at(210), every, 2).len(),
            1,
            "left over, still due"
        );
        assert!(buffer.take_due(at(210), every, 2).is_empty());
    }
}
