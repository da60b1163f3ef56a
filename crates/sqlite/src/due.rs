//! The deliveries queue, held in memory: when each pending delivery is due,
//! which are leased and until when, and how often each was received (SQS's
//! semantics). The file holds only what outlives a process (a pending
//! delivery's next attempt time and its receives so far); this is rebuilt
//! from it at open, every pending delivery due at its next attempt, and is
//! changed only by commits ([`Change`], applied by the writer once its
//! transaction is committed) and by receiving, which writes nothing: a lease
//! lives as long as the process, as an SQS lease outlives no queue.
//!
//! It holds at most `cap` deliveries. Past that, accepted deliveries stay in
//! the file only, and the queue is refilled from it as it drains
//! ([`DueQueue::spilled`]), so a receiver down for days costs disk, not
//! memory. A delivery accepted by this process also keeps its event until
//! its first receive ([`Fresh`]), within [`EVENT_BYTES`], so its first
//! attempt reads nothing from the file.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use hookline_core::Event;
use hookline_core::event::Line;

/// How many bytes of event data the queue keeps for first attempts; past
/// it, a first attempt reads its event like any other.
pub(crate) const EVENT_BYTES: usize = 8 << 20;

/// What a first attempt of a delivery accepted by this process needs
/// besides its rule and keys: its ids and line, and its event (shared by
/// the event's deliveries).
pub(crate) struct Fresh {
    pub delivery_id: String,
    pub line: Option<Line>,
    pub event: Arc<Event>,
}

impl Fresh {
    fn bytes(&self) -> usize {
        self.event.data.get().len()
    }
}

/// What a lease hands out of a delivery: its receive count, and, at its
/// first receive, what was kept of it.
pub(crate) struct Leased {
    pub receive_count: u32,
    pub fresh: Option<Fresh>,
    pub trace: Option<Arc<str>>,
}

/// A pending delivery as the queue keeps it.
pub(crate) struct Entry {
    pub tenant_id: Arc<str>,
    pub rule_id: Arc<str>,
    /// When it is due; while leased, when the lease runs out.
    pub visible_at: i64,
    pub receive_count: u32,
    pub leased: bool,
    pub fresh: Option<Fresh>,
    /// The `traceparent` its event's ingest was traced under, which each
    /// of its attempts in this process continues.
    pub trace: Option<Arc<str>>,
}

/// What a commit did to the queue.
pub(crate) enum Change {
    /// A delivery accepted, or sent again: due at `at`, received
    /// `receive_count` times so far.
    Queue {
        seq: i64,
        tenant_id: Arc<str>,
        rule_id: Arc<str>,
        at: i64,
        receive_count: u32,
        fresh: Option<Fresh>,
    },
    /// The attempt made under the lease `receive_count` was recorded: the
    /// delivery ended (`next` none) or is due again at `next`.
    Settle {
        seq: i64,
        receive_count: u32,
        next: Option<i64>,
    },
}

pub(crate) struct DueQueue {
    entries: HashMap<i64, Entry>,
    /// Every entry by (visible_at, seq): the oldest due first.
    by_time: BTreeSet<(i64, i64)>,
    cap: usize,
    /// Pending deliveries are in the file that are not held here.
    pub spilled: bool,
    /// Counts spills, so a refill that read the file while one happened
    /// knows it may have missed it.
    pub spills: u64,
    /// Event bytes the entries' [`Fresh`] parts hold (an event of many
    /// deliveries counted for each).
    event_bytes: usize,
    /// While a refill reads the file: the deliveries that ended meanwhile,
    /// which its read may still show pending and must not bring back.
    ended_during_refill: Option<HashSet<i64>>,
}

impl DueQueue {
    pub fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_time: BTreeSet::new(),
            cap: cap.max(1),
            spilled: false,
            spills: 0,
            event_bytes: 0,
            ended_during_refill: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Applies a committed change; true when it made something due.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Queue {
                seq,
                tenant_id,
                rule_id,
                at,
                receive_count,
                fresh,
            } => {
                if !self.entries.contains_key(&seq) && self.entries.len() >= self.cap {
                    self.spilled = true;
                    self.spills += 1;
                    return false;
                }
                let trace = fresh
                    .as_ref()
                    .and_then(|f| f.event.trace.as_deref())
                    .map(Arc::from);
                let fresh = fresh.filter(|f| self.event_bytes + f.bytes() <= EVENT_BYTES);
                self.put(
                    seq,
                    Entry {
                        tenant_id,
                        rule_id,
                        visible_at: at,
                        receive_count,
                        leased: false,
                        fresh,
                        trace,
                    },
                );
                true
            }
            Change::Settle {
                seq,
                receive_count,
                next,
            } => {
                // Only the lease the attempt ran under: a delivery received
                // again since is settled by that receive.
                if !self.holds_lease(seq, receive_count) {
                    return false;
                }
                match next {
                    None => {
                        self.remove(seq);
                        false
                    }
                    Some(at) => {
                        self.reschedule(seq, at, false);
                        true
                    }
                }
            }
        }
    }

    /// Whether `receive_count` is the delivery's latest receive.
    pub fn holds_lease(&self, seq: i64, receive_count: u32) -> bool {
        self.entries
            .get(&seq)
            .is_some_and(|e| e.receive_count == receive_count)
    }

    /// Leases a due delivery until `until`; answers its receive count and,
    /// at its first receive, what this process kept of it.
    pub fn lease(&mut self, seq: i64, until: i64) -> Option<Leased> {
        self.reschedule(seq, until, true)?;
        let entry = self.entries.get_mut(&seq)?;
        entry.receive_count += 1;
        let fresh = entry.fresh.take();
        self.event_bytes -= fresh.as_ref().map_or(0, Fresh::bytes);
        Some(Leased {
            receive_count: entry.receive_count,
            fresh,
            trace: entry.trace.clone(),
        })
    }

    /// Forgets a delivery (it ended, or is gone from the file).
    pub fn remove(&mut self, seq: i64) {
        if let Some(ended) = self.ended_during_refill.as_mut() {
            ended.insert(seq);
        }
        if let Some(e) = self.entries.remove(&seq) {
            self.by_time.remove(&(e.visible_at, seq));
            self.event_bytes -= e.fresh.as_ref().map_or(0, Fresh::bytes);
        }
    }

    /// Adds a delivery read from the file, unless it is held already.
    pub fn restore(&mut self, seq: i64, entry: Entry) -> bool {
        if self.entries.contains_key(&seq) || self.entries.len() >= self.cap {
            return false;
        }
        self.put(seq, entry);
        true
    }

    /// Starts a refill: deliveries that end from now on are noted, so the
    /// file's rows read meanwhile do not bring them back. Answers the spill
    /// count, for [`DueQueue::finish_refill`].
    pub fn start_refill(&mut self) -> u64 {
        self.ended_during_refill = Some(HashSet::new());
        self.spills
    }

    /// Adds what a refill read, but what ended while it read; nothing is
    /// left spilled if the read had everything pending, all of it fit, and
    /// nothing spilled meanwhile.
    pub fn finish_refill(&mut self, read: DueQueue, spills_at_start: u64) {
        let ended = self.ended_during_refill.take().unwrap_or_default();
        let mut held_all = !read.spilled;
        for (seq, entry) in read.entries {
            if !ended.contains(&seq) && !self.entries.contains_key(&seq) {
                held_all &= self.restore(seq, entry);
            }
        }
        self.spilled = !(held_all && self.spills == spills_at_start);
    }

    pub fn entry(&self, seq: i64) -> Option<&Entry> {
        self.entries.get(&seq)
    }

    /// When the earliest delivery becomes due (or its lease runs out).
    pub fn next_due(&self) -> Option<i64> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Due deliveries, oldest first.
    pub fn oldest_due(&self, now: i64) -> impl Iterator<Item = (i64, &Entry)> {
        self.by_time
            .range(..=(now, i64::MAX))
            .filter_map(|(_, seq)| self.entries.get(seq).map(|e| (*seq, e)))
    }

    /// Due deliveries, newest first.
    pub fn newest_due(&self, now: i64) -> impl Iterator<Item = (i64, &Entry)> {
        self.by_time
            .range(..=(now, i64::MAX))
            .rev()
            .filter_map(|(_, seq)| self.entries.get(seq).map(|e| (*seq, e)))
    }

    /// Deliveries leased and not yet run out: the attempts in flight.
    pub fn in_flight(&self, now: i64) -> impl Iterator<Item = &Entry> {
        self.by_time
            .range((now + 1, i64::MIN)..)
            .filter_map(|(_, seq)| self.entries.get(seq))
            .filter(|e| e.leased)
    }

    fn put(&mut self, seq: i64, entry: Entry) {
        self.event_bytes += entry.fresh.as_ref().map_or(0, Fresh::bytes);
        if let Some(old) = self.entries.insert(seq, entry) {
            self.by_time.remove(&(old.visible_at, seq));
            self.event_bytes -= old.fresh.as_ref().map_or(0, Fresh::bytes);
        }
        self.by_time.insert((self.entries[&seq].visible_at, seq));
    }

    fn reschedule(&mut self, seq: i64, at: i64, leased: bool) -> Option<()> {
        let entry = self.entries.get_mut(&seq)?;
        self.by_time.remove(&(entry.visible_at, seq));
        entry.visible_at = at;
        entry.leased = leased;
        self.by_time.insert((at, seq));
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(seq: i64, at: i64) -> Change {
        Change::Queue {
            seq,
            tenant_id: "t".into(),
            rule_id: "r".into(),
            at,
            receive_count: 0,
            fresh: None,
        }
    }

    #[test]
    fn a_lease_hides_a_delivery_until_it_runs_out_and_counts_receives() {
        let mut q = DueQueue::new(10);
        q.apply(queued(1, 100));
        assert_eq!(q.oldest_due(100).count(), 1);
        assert_eq!(q.lease(1, 200).map(|l| l.receive_count), Some(1));
        assert_eq!(q.oldest_due(150).count(), 0);
        assert_eq!(q.in_flight(150).count(), 1);
        assert_eq!(q.oldest_due(200).count(), 1, "due again when it runs out");
        assert_eq!(q.in_flight(200).count(), 0);
        assert_eq!(q.lease(1, 300).map(|l| l.receive_count), Some(2));
        // The first lease's settlement moves nothing; the second's does.
        assert!(!q.apply(Change::Settle {
            seq: 1,
            receive_count: 1,
            next: None
        }));
        assert_eq!(q.len(), 1);
        assert!(q.apply(Change::Settle {
            seq: 1,
            receive_count: 2,
            next: Some(400)
        }));
        assert_eq!(q.next_due(), Some(400));
        q.apply(Change::Settle {
            seq: 1,
            receive_count: 2,
            next: None,
        });
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn past_its_cap_the_queue_spills_and_says_so() {
        let mut q = DueQueue::new(2);
        assert!(q.apply(queued(1, 1)));
        assert!(q.apply(queued(2, 2)));
        assert!(!q.apply(queued(3, 3)));
        assert!(q.spilled);
        assert_eq!(q.len(), 2);
        let newest: Vec<i64> = q.newest_due(10).map(|(s, _)| s).collect();
        assert_eq!(newest, vec![2, 1]);
    }

    /// A refill's read of the file may show a delivery pending that ended
    /// while it read: it is not brought back.
    #[test]
    fn a_refill_does_not_bring_back_what_ended_while_it_read() {
        let mut q = DueQueue::new(4);
        q.apply(queued(1, 1));
        q.apply(queued(2, 2));
        q.apply(queued(3, 3));
        q.apply(queued(4, 4));
        q.apply(queued(5, 5));
        assert!(q.spilled);
        let spills = q.start_refill();
        // What the file shows as pending, read while delivery 1 ends.
        let mut read = DueQueue::new(4);
        for seq in [1, 5] {
            read.apply(queued(seq, seq));
        }
        q.lease(1, 100);
        q.apply(Change::Settle {
            seq: 1,
            receive_count: 1,
            next: None,
        });
        q.finish_refill(read, spills);
        let held: Vec<i64> = q.oldest_due(10).map(|(s, _)| s).collect();
        assert_eq!(held, vec![2, 3, 4, 5]);
        assert!(!q.spilled, "the read had everything pending");
    }
}
