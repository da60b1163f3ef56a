//! The backend conformance suite on DynamoDB and SQS (moto's server).

use hookline_test_support as support;

use std::time::Duration;

use async_trait::async_trait;
use hookline_aws::AwsBackend;
use hookline_conformance::Harness;
use hookline_core::ports::{DeliveryQueue, Store};

const VISIBILITY: Duration = Duration::from_secs(4);

struct Aws(AwsBackend);

async fn harness() -> Aws {
    // Three attempts: the suite's lease check makes three receives, then
    // expects a dead delivery to be gone from the queue.
    let env = support::create_resources(3, VISIBILITY.as_secs() as u32);
    Aws(support::backend(&env)
        .await
        .with_breaker(hookline_conformance::BREAKER))
}

#[async_trait]
impl Harness for Aws {
    fn store(&self) -> &dyn Store {
        &self.0
    }
    fn queue(&self) -> &dyn DeliveryQueue {
        &self.0
    }
    async fn route(&self) {
        support::drain_events(&self.0).await;
    }
    fn visibility(&self) -> Duration {
        VISIBILITY
    }
}

hookline_conformance::conformance_tests!(harness().await);
