//! Counts of the SDK calls the adapters make: what a delivery costs.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Calls {
    dynamodb_reads: AtomicU64,
    dynamodb_writes: AtomicU64,
    sqs: AtomicU64,
    event_source_sqs: AtomicU64,
    kms: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub dynamodb_reads: u64,
    pub dynamodb_writes: u64,
    pub sqs: u64,
    /// Receives and deletes made by [`crate::poll_once`], standing in for
    /// Lambda's event source mapping (which makes them on AWS).
    pub event_source_sqs: u64,
    /// KMS calls: a data key generated or decrypted, once per process each.
    pub kms: u64,
}

impl Calls {
    pub(crate) fn count_read(&self) {
        self.dynamodb_reads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_write(&self) {
        self.dynamodb_writes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_sqs(&self) {
        self.sqs.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_kms(&self) {
        self.kms.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_event_source(&self) {
        self.event_source_sqs.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> CallCount {
        CallCount {
            dynamodb_reads: self.dynamodb_reads.load(Ordering::Relaxed),
            dynamodb_writes: self.dynamodb_writes.load(Ordering::Relaxed),
            sqs: self.sqs.load(Ordering::Relaxed),
            event_source_sqs: self.event_source_sqs.load(Ordering::Relaxed),
            kms: self.kms.load(Ordering::Relaxed),
        }
    }
}
