//! Hookline's AWS backend: the store on one DynamoDB table, the events and
//! deliveries queues on SQS, and the router and deliverer that the Lambda
//! functions run. Every SDK call is counted, so tests can say what a
//! delivery costs.
//!
//! Modules by what they talk to: `table` (DynamoDB) and `queues` (SQS) make
//! every call; `items` is the table's layout and `messages` what the queues
//! carry; `backend` holds them together. On top: `store` (the `Store` port),
//! `log` (the delivery log read across its shards),
//! `router` and `deliver` (the Lambda handlers, `deliver` with the
//! `DeliveryQueue` port), `traffic` (rules' counted attempts), `poller` and
//! `redrive`;
//! `migrate` moves what an earlier Hookline wrote;
//! `vault` seals webhook keys with KMS data keys; `emf` prints the
//! deliverer's metrics as CloudWatch embedded metric format.
//! This file only declares and re-exports.

mod backend;
mod calls;
mod deliver;
pub mod emf;
mod error;
mod items;
mod log;
mod messages;
mod migrate;
mod poller;
mod queues;
mod redrive;
mod router;
mod sdk;
mod secrets;
mod settings;
mod store;
mod table;
mod traffic;
mod vault;

pub use backend::AwsBackend;
pub use calls::{CallCount, Calls};
pub use deliver::Deliverer;
pub use items::{
    DELIVERY_LOG_SHARDS, EVENT_ATTRIBUTES, GSI1, GSI1_PARTITION_KEY, GSI1_SORT_KEY, GSI2,
    GSI2_PARTITION_KEY, GSI2_SORT_KEY, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, tenant_pk,
};
pub use messages::{DeliveryMessage, EventMessage};
pub use migrate::{Migrated, migrate};
pub use poller::poll_once;
pub use redrive::redrive;
pub use router::route_batch;
pub use sdk::{http_client, sdk_config};
pub use secrets::ingest_tokens;
pub use settings::{AwsSettings, SettingsError};
