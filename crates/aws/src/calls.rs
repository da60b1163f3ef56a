//! Counts of the SDK calls the adapters make: what a delivery costs.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Calls {
    dynamodb_reads: AtomicU64,
    dynamodb_writes: AtomicU64,
    sqs: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub dynamodb_reads: u64,
    pub dynamodb_writes: u64,
    pub sqs: u64,
}

impl Calls {
    pub(crate) fn read(&self) {
        self.dynamodb_reads.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn write(&self) {
        self.dynamodb_writes.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn sqs(&self) {
        self.sqs.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> CallCount {
        CallCount {
            dynamodb_reads: self.dynamodb_reads.load(Ordering::Relaxed),
            dynamodb_writes: self.dynamodb_writes.load(Ordering::Relaxed),
            sqs: self.sqs.load(Ordering::Relaxed),
        }
    }
}
