//! `hookline-admin`: the merchant's API behind API Gateway. It serves the
//! same router as ingest but holds no ingest token: API Gateway never sends
//! it an event, and a function that cannot accept one cannot leak one.

#[tokio::main]
async fn main() -> Result<(), hookline_lambda::Error> {
    let telemetry = hookline_lambda::init_logging("hookline-admin")?;
    hookline_lambda::serve_admin(telemetry).await
}
