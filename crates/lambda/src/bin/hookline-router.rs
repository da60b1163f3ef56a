//! `hookline-router`: events queue → rules → deliveries recorded and queued.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    let telemetry = hookline_lambda::init_logging("hookline-router")?;
    let backend = hookline_lambda::backend().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (backend, telemetry) = (backend.clone(), telemetry.clone());
        async move {
            let answer = hookline_aws::route_batch(&backend, event.payload).await;
            hookline_lambda::flush(&telemetry).await;
            Ok::<_, hookline_lambda::Error>(answer)
        }
    }))
    .await
}
