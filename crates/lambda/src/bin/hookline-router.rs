//! `hookline-router`: events queue → rules → deliveries recorded and queued.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    hookline_lambda::init_logging()?;
    let backend = hookline_lambda::backend().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let backend = backend.clone();
        async move {
            Ok::<_, hookline_lambda::Error>(
                hookline_aws::route_batch(&backend, event.payload).await,
            )
        }
    }))
    .await
}
