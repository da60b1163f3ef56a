//! Hookline's AWS backend: the store on one DynamoDB table, the events and
//! deliveries queues on SQS, and the router and deliverer that the Lambda
//! functions run. Every SDK call is counted, so tests can say what a
//! delivery costs.

mod calls;
mod deliver;
mod items;
mod messages;
mod poller;
mod queue;
mod redrive;
mod router;
mod settings;
mod store;

pub use calls::{CallCount, Calls};
pub use deliver::Deliverer;
pub use messages::{DeliveryMessage, EventMessage};
pub use poller::poll_once;
pub use redrive::redrive;
pub use router::route_batch;
pub use settings::{AwsSettings, SettingsError};
pub use store::AwsBackend;

/// The table's keys and secondary index, as `template.yaml` and
/// `infra/local-aws/create.py` create them.
pub const PARTITION_KEY: &str = "pk";
pub const SORT_KEY: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PARTITION_KEY: &str = "gsi1pk";
pub const GSI1_SORT_KEY: &str = "gsi1sk";
/// The attribute DynamoDB's TTL reads (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "ttl";

/// A failure talking to AWS, with the operation it was.
pub(crate) fn aws_error(op: &str, e: impl std::fmt::Display) -> hookline_core::ports::StoreError {
    hookline_core::ports::StoreError::Unavailable(format!("{op}: {e}"))
}

/// The SDK's HTTP client: rustls on ring (the default would bring aws-lc).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// SDK configuration from the environment (`AWS_ENDPOINT_URL`, region and
/// credentials included), on [`http_client`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}
