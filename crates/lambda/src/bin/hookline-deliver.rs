//! `hookline-deliver`: deliveries queue → signed POSTs → attempts recorded.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    let telemetry = hookline_lambda::init_logging("hookline-deliver")?;
    let settings = hookline_lambda::Settings::from_env()?;
    let deliverer = Arc::new(hookline_lambda::deliverer(
        hookline_lambda::backend().await?,
        &settings,
    )?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (deliverer, telemetry) = (deliverer.clone(), telemetry.clone());
        async move {
            let answer = deliverer.handle(event.payload).await;
            hookline_lambda::flush(&telemetry).await;
            Ok::<_, hookline_lambda::Error>(answer)
        }
    }))
    .await
}
