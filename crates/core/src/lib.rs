//! Hookline's domain: what an event, a rule and a delivery are, which rules an
//! event fans out to, how a delivery is signed and when it is retried, which
//! targets may be reached, and the ports (traits) that adapters implement.
//!
//! Nothing in this crate performs I/O; randomness and time come in as values.
//! The modules form layers, each importing only from those below it:
//!
//! 1. data: [`time`], [`trigger`], [`error`], [`id`], [`signing`], [`api_key`],
//!    [`ingest_token`],
//!    [`event`], [`rule`], [`delivery`], and [`record`] (how a rule is stored);
//! 2. logic on the data: [`filter`], [`fanout`], [`retry`], [`breaker`], [`rate`], [`target`],
//!    [`traffic`] (what a rule's receiver did, counted in buckets),
//!    [`sealing`] (webhook keys at rest), [`settings`];
//! 3. [`ports`]: the traits adapters implement and every type they exchange;
//! 4. [`attempt`]: the one attempt, which drives the sender and clock ports.
//!
//! `infra/module-cycles` checks that no two modules import each other.

pub mod api_key;
pub mod attempt;
pub mod breaker;
pub mod concurrency;
pub mod delivery;
pub mod error;
pub mod event;
pub mod fanout;
pub mod filter;
pub mod id;
pub mod ingest_token;
pub mod ports;
pub mod rate;
pub mod record;
pub mod retry;
pub mod rule;
pub mod sealing;
pub mod settings;
pub mod signing;
pub mod target;
pub mod time;
pub mod traffic;
pub mod trigger;

pub use attempt::Attempter;
pub use delivery::{Attempt, Delivery, DeliveryId, DeliveryStatus};
pub use error::{FieldError, FieldErrorKind};
pub use event::{Event, Line};
pub use fanout::{PlannedDelivery, plan};
pub use id::{EventId, RuleId, TenantId};
pub use ports::{DeliveryJob, Destination, Lease, Outcome, Settlement, SystemClock};
pub use retry::RetrySchedule;
pub use rule::{Rule, RuleDraft, RulePatch, Scope};
pub use signing::{SigningKeys, WebhookKey};
pub use time::Timestamp;
pub use trigger::Trigger;
