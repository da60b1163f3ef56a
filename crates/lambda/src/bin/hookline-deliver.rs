//! `hookline-deliver`: deliveries queue → signed POSTs → attempts recorded.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    hookline_lambda::init_logging()?;
    let settings = hookline_lambda::Settings::from_env()?;
    let deliverer = Arc::new(hookline_lambda::deliverer(
        hookline_lambda::backend().await?,
        &settings,
    )?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deliverer = deliverer.clone();
        async move { Ok::<_, hookline_lambda::Error>(deliverer.handle(event.payload).await) }
    }))
    .await
}
