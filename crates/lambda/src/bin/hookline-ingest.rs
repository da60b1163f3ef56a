//! `hookline-ingest`: the platform's `POST /v1/events` behind API Gateway,
//! with the ingest tokens read once at cold start.

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    hookline_lambda::init_logging();
    let tokens = hookline_lambda::ingest_tokens().await?;
    hookline_lambda::serve_http(tokens).await
}
