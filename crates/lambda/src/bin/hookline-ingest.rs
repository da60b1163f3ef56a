//! `hookline-ingest`: the HTTP API behind API Gateway. Ingest and admin serve
//! the same router; API Gateway sends each function its routes.

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    hookline_lambda::serve_http().await
}
