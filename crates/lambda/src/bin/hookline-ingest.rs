//! `hookline-ingest`: the platform's `POST /v1/events` (and its batch form)
//! behind API Gateway, with the ingest tokens read once at cold start.

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    let telemetry = hookline_lambda::init_logging("hookline-ingest")?;
    hookline_lambda::serve_ingest(telemetry).await
}
