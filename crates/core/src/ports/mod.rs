//! The ports: what the engine needs from the world, as traits the adapters
//! (SQLite, DynamoDB/SQS, reqwest) implement, one module each with the types
//! it exchanges: [`store`], [`queue`], [`sender`], [`clock`]. This module
//! sits above the data types and the logic on them; only the attempt, which
//! drives these ports, sits above it.

pub mod clock;
pub mod queue;
pub mod sender;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use queue::{
    DeliveryJob, DeliveryQueue, Destination, Endpoint, KeyCache, Lease, Outcome, Settlement,
};
pub use sender::{OutgoingRequest, ReceiverSignal, Response, Sender, Sent};
pub use store::{
    Acceptance, BoxError, DeliveryFilter, NewTenant, Page, RuleHealth, Store, StoreError,
    key_cursor, parse_key_cursor, parse_row_cursor,
};
