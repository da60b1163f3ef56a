//! Hookline's domain: what an event, a rule and a delivery are, which rules an
//! event fans out to, how a delivery is signed and when it is retried, which
//! targets may be reached, and the ports (traits) that adapters implement.
//!
//! Nothing in this crate performs I/O; randomness and time come in as values.

pub mod api_key;
pub mod delivery;
pub mod error;
pub mod event;
pub mod fanout;
pub mod ports;
pub mod retry;
pub mod rule;
pub mod signing;
pub mod target;
pub mod time;
pub mod trigger;

pub use delivery::{Attempt, Delivery, DeliveryId, DeliveryJob, DeliveryStatus, Settlement};
pub use error::{FieldError, FieldErrorKind};
pub use event::{Event, Line};
pub use fanout::{PlannedDelivery, plan};
pub use retry::RetrySchedule;
pub use rule::{Rule, RuleDraft, RulePatch, Scope};
pub use signing::{SigningKeys, WebhookKey};
pub use time::{SystemClock, Timestamp};
pub use trigger::Trigger;
