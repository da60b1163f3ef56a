//! What Hookline's tests share across crates: a local AWS endpoint (moto's
//! server) and fresh resources on it per test, made by the same script
//! developers use; and a receiver of OTLP traces ([`otlp`]).

pub mod otlp;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hookline_aws::{AwsBackend, AwsSettings};

/// `HOOKLINE_TEST_AWS_ENDPOINT` (which `infra/test` sets after starting
/// moto), or a moto server started here that stops when this process does.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<(String, Option<Mutex<Child>>)> = OnceLock::new();
    &ENDPOINT
        .get_or_init(|| match std::env::var("HOOKLINE_TEST_AWS_ENDPOINT") {
            Ok(e) => (e, None),
            Err(_) => start_moto(),
        })
        .0
}

/// A moto server of this test process alone, for a test heavy enough to
/// slow the shared one's other users, timing-sensitive tests among them.
pub fn private_endpoint() -> &'static str {
    static ENDPOINT: OnceLock<(String, Option<Mutex<Child>>)> = OnceLock::new();
    &ENDPOINT.get_or_init(start_moto).0
}

/// Starts moto on a free port; it stops when this process does.
fn start_moto() -> (String, Option<Mutex<Child>>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The shell stops moto when the test process (its parent) is gone.
    let script = format!(
        "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
     while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill $m",
        parent = std::process::id()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server (pip install 'moto[server]')");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        format!("http://127.0.0.1:{port}"),
        Some(Mutex::new(watchdog)),
    )
}

/// Creates a fresh table and queues with `infra/local-aws/create.py`, the
/// same script developers use, and answers their environment.
pub fn create_resources(max_attempts: u32, visibility_secs: u32) -> HashMap<String, String> {
    create_resources_at(endpoint(), max_attempts, visibility_secs)
}

/// [`create_resources`] on this process's own moto ([`private_endpoint`]).
pub fn create_private_resources(
    max_attempts: u32,
    visibility_secs: u32,
) -> HashMap<String, String> {
    create_resources_at(private_endpoint(), max_attempts, visibility_secs)
}

fn create_resources_at(
    endpoint: &str,
    max_attempts: u32,
    visibility_secs: u32,
) -> HashMap<String, String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../infra/local-aws/create.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            "--endpoint",
            endpoint,
            "--prefix",
            &prefix,
            "--json",
        ])
        .args([
            "--max-attempts",
            &max_attempts.to_string(),
            "--visibility",
            &visibility_secs.to_string(),
        ])
        .output()
        .expect("run create.py");
    assert!(
        out.status.success(),
        "create.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("create.py prints JSON")
}

/// SDK configuration for the endpoint and resources `env` names.
pub async fn sdk_config(env: &HashMap<String, String>) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(hookline_aws::http_client())
        .endpoint_url(&env["AWS_ENDPOINT_URL"])
        .region(aws_config::Region::new(env["AWS_REGION"].clone()))
        .credentials_provider(aws_credential_types::Credentials::from_keys(
            "test", "test", None,
        ))
        .load()
        .await
}

pub async fn backend(env: &HashMap<String, String>) -> AwsBackend {
    let config = sdk_config(env).await;
    let settings = AwsSettings {
        table: env["HOOKLINE_TABLE"].clone(),
        events_queue_url: env["HOOKLINE_EVENTS_QUEUE_URL"].clone(),
        deliveries_queue_url: env["HOOKLINE_DELIVERIES_QUEUE_URL"].clone(),
        events_dlq_url: Some(env["HOOKLINE_EVENTS_DLQ_URL"].clone()),
        deliveries_dlq_url: Some(env["HOOKLINE_DELIVERIES_DLQ_URL"].clone()),
        kms_key_id: Some(env["HOOKLINE_KMS_KEY_ID"].clone()),
        ingest_token_secret: Some(env["HOOKLINE_INGEST_TOKEN_SECRET"].clone()),
        accept_plain_keys: false,
    };
    AwsBackend::new(&config, settings)
}

/// Takes every queued delivery and records a first attempt of each that a
/// receiver took (204), as the deliverer would: a delivery is recorded, and
/// so listed, from its first attempt on. Eight takers at once, as the event
/// source mapping scales out.
pub async fn settle_deliveries(b: &AwsBackend) {
    use hookline_core::Attempt;
    use hookline_core::ports::{Clock, DeliveryQueue, Outcome, Settlement, SystemClock};
    let taker = || async {
        loop {
            let now = SystemClock.now();
            let jobs = b.receive(10, now).await.unwrap();
            if jobs.is_empty() {
                return;
            }
            let took = Attempt {
                at: now,
                status_code: Some(204),
                duration_ms: 1,
                error: None,
                response_body: None,
            };
            let settled = jobs
                .iter()
                .map(|j| Settlement::new(j, took.clone(), Outcome::Succeeded))
                .collect();
            b.settle(settled).await.unwrap();
        }
    };
    futures_util::future::join_all((0..8).map(|_| taker())).await;
}

/// Runs the router over everything on the events queue.
pub async fn drain_events(b: &AwsBackend) {
    let url = b.settings().events_queue_url.clone();
    while hookline_aws::poll_once(b, &url, 0, |batch| hookline_aws::route_batch(b, batch))
        .await
        .unwrap()
        > 0
    {}
}
