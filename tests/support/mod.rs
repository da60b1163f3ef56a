//! What the end-to-end tests run against: the real `hookline` binary on a
//! real SQLite file, and real HTTP receivers on 127.0.0.1.

#![allow(dead_code)]

pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookline");
pub const INGEST_TOKEN: &str = "ingest-test-token";

/// A `hookline serve` process.
pub struct Hookline {
    child: Child,
    pub base: String,
    /// The metrics URL, when started with `--metrics-listen`.
    pub metrics: Option<String>,
    pub db: PathBuf,
    http: reqwest::Client,
}

pub struct Tenant {
    pub id: String,
    pub api_key: String,
    pub webhook_key: String,
}

impl Hookline {
    /// Starts `hookline serve` on `db`, letting deliveries reach loopback.
    pub fn start(db: &Path, env: &[(&str, &str)]) -> Hookline {
        Self::start_with(db, env, &["--allow-private-targets"])
    }

    pub fn start_with(db: &Path, env: &[(&str, &str)], args: &[&str]) -> Hookline {
        Self::spawn(db, env, args, Stdio::inherit())
    }

    /// Starts `hookline serve` with its log (stderr) going to `log`.
    pub fn start_logging_to(db: &Path, env: &[(&str, &str)], log: &Path) -> Hookline {
        let file = std::fs::File::create(log).expect("log file");
        Self::spawn(db, env, &["--allow-private-targets"], Stdio::from(file))
    }

    fn spawn(db: &Path, env: &[(&str, &str)], args: &[&str], stderr: Stdio) -> Hookline {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(args)
            .env("HOOKLINE_INGEST_TOKEN", INGEST_TOKEN)
            .env("HOOKLINE_LOG", "warn")
            .env_remove("HOOKLINE_ALLOW_PRIVATE_TARGETS")
            .env_remove("HOOKLINE_RETRY_SCHEDULE")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hookline serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // `serve` prints its metrics URL (if any) before "listening".
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut metrics = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("hookline metrics on ") {
                    metrics = Some(url.to_owned());
                }
                let Some(url) = line.strip_prefix("hookline listening on ") else {
                    continue;
                };
                if let Some(tx) = tx.take() {
                    let _ = tx.send((url.to_owned(), metrics.take()));
                }
            }
        });
        let (base, metrics) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hookline serve did not start");
        Hookline {
            child,
            base,
            metrics,
            db: db.to_path_buf(),
            http: reqwest::Client::new(),
        }
    }

    /// `hookline tenant create`, run beside the server on the same file.
    pub fn tenant(&self, id: &str) -> Tenant {
        create_tenant(&self.db, id)
    }

    pub async fn send_event(&self, event: &Value) -> (u16, Value) {
        self.request(
            "POST",
            "/v1/events",
            Some(INGEST_TOKEN),
            Some(event.to_string()),
        )
        .await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request to hookline");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(
        &self,
        tenant: &Tenant,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.request(
            method,
            path,
            Some(&tenant.api_key),
            body.map(|b| b.to_string()),
        )
        .await
    }

    pub async fn create_rule(&self, tenant: &Tenant, rule: Value) -> String {
        let (status, body) = self.admin(tenant, "POST", "/v1/rules", Some(rule)).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// A rule sending every `order.paid` event to `url`.
    pub async fn paid_orders_to(&self, tenant: &Tenant, url: String) -> String {
        self.create_rule(
            tenant,
            json!({"name": "paid orders", "trigger": "order.paid", "url": url}),
        )
        .await
    }

    /// Sends an `order.paid` event of `tenant` and answers the id of its
    /// newest delivery.
    pub async fn paid_order(&self, tenant: &Tenant, event_id: &str) -> String {
        let (status, body) = self
            .send_event(&event(event_id, &tenant.id, "order.paid"))
            .await;
        assert_eq!(status, 202, "{body}");
        let query = format!("event_id={event_id}");
        self.deliveries(tenant, &query).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn deliveries(&self, tenant: &Tenant, query: &str) -> Vec<Value> {
        let (status, body) = self
            .admin(tenant, "GET", &format!("/v1/deliveries?{query}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Waits until the delivery has `status`, and returns it.
    pub async fn wait_delivery(&self, tenant: &Tenant, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, d) = self
                .admin(tenant, "GET", &format!("/v1/deliveries/{id}"), None)
                .await;
            if d["status"] == status {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {id} never became {status}: {d}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, as Ctrl-C or a process manager sends, then waits for the exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for hookline")
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hookline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn create_tenant(db: &Path, id: &str) -> Tenant {
    let out = Command::new(BIN)
        .args(["tenant", "create", id, "--db"])
        .arg(db)
        .env("HOOKLINE_LOG", "warn")
        .output()
        .expect("run hookline tenant create");
    assert!(
        out.status.success(),
        "tenant create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("tenant create prints JSON");
    assert_eq!(v["tenant_id"], id);
    Tenant {
        id: id.to_owned(),
        api_key: v["api_key"].as_str().unwrap().to_owned(),
        webhook_key: v["webhook_key"].as_str().unwrap().to_owned(),
    }
}

/// How the receiver answers a request: a status, or no answer for a long time.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// A status with a `webhook-delivery` header of this value.
    Signal(u16, &'static str),
    Hang,
}

#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    /// Verifies the signature with the Standard Webhooks reference library.
    pub fn verifies_with(&self, key: &str) -> bool {
        standardwebhooks::Webhook::new(key)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

type Plan = Box<dyn FnMut(usize, &Hit) -> Reply + Send>;

struct ReceiverState {
    hits: Mutex<Vec<Hit>>,
    plan: Mutex<Plan>,
}

/// A webhook receiver on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with(|_, _| Reply::Status(200)).await
    }

    /// `plan` gets the request's number (0-based) and the request.
    pub async fn start_with(plan: impl FnMut(usize, &Hit) -> Reply + Send + 'static) -> Receiver {
        let state = Arc::new(ReceiverState {
            hits: Mutex::new(Vec::new()),
            plan: Mutex::new(Box::new(plan)),
        });
        let app = Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn set_plan(&self, plan: impl FnMut(usize, &Hit) -> Reply + Send + 'static) {
        *self.state.plan.lock().unwrap() = Box::new(plan);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {n} requests",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let hit = Hit {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    };
    let reply = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.len();
        hits.push(hit.clone());
        (state.plan.lock().unwrap())(n, &hit)
    };
    match reply {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::Signal(s, value) => (
            StatusCode::from_u16(s).unwrap(),
            [("webhook-delivery", value)],
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// An event in the ingest contract's shape.
pub fn event(id: &str, tenant: &str, kind: &str) -> Value {
    json!({
        "id": id,
        "tenant_id": tenant,
        "type": kind,
        "occurred_at": "2026-11-29T12:00:00Z",
        "data": { "object": kind, "event": id }
    })
}

pub fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("hookline.db")
}
