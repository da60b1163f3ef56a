//! The AWS SDK's configuration, on an HTTP client without aws-lc.

/// The SDK's HTTP client: rustls on ring (the default would bring aws-lc).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// SDK configuration from the environment (`AWS_ENDPOINT_URL`, region and
/// credentials included), on [`http_client`].
///
/// `HOOKLINE_AWS_ENDPOINT`, when not empty, points every client at one
/// endpoint (moto's server under `sam local`). The template declares it empty
/// so that `sam local --env-vars` may set it: SAM only overrides variables a
/// template declares, and an empty value leaves the SDK's own resolution alone.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client());
    match std::env::var("HOOKLINE_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => loader.endpoint_url(endpoint),
        _ => loader,
    }
    .load()
    .await
}
