//! Pushes events through a running Hookline to a loopback receiver and prints
//! events/s ingested, deliveries/s, ingest-to-delivery latency and the
//! server's peak memory. `infra/bench/run` starts a server and calls this.
//!
//! First it measures the machine's ceiling in the same run: this client
//! posting the same bodies straight to the same receiver over the same
//! number of connections. Every delivery costs at least one such exchange
//! (and Hookline's ingest one more), so deliveries/s over that rate says how
//! close Hookline comes to what this machine can do, whatever the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Measure Hookline end to end: ingest, fan-out, signed delivery.")]
struct Args {
    /// The running Hookline's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "HOOKLINE_INGEST_TOKEN")]
    ingest_token: String,
    /// A tenant's API key and id (from `hookline tenant create`).
    #[arg(long)]
    api_key: String,
    #[arg(long)]
    tenant: String,
    /// How many events to send.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Events per second to aim for; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The server's pid, to read its peak memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Requests for the loopback ceiling measured first (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    ceiling_requests: usize,
}

/// Requests/s of `connections` concurrent loops posting event-sized bodies
/// straight to the receiver: the loopback ceiling of this client, this
/// receiver and this machine.
async fn ceiling(client: &reqwest::Client, url: &str, requests: usize, connections: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..connections {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        loops.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let body = format!(
                    r#"{{"type":"order.paid","timestamp":"2026-11-29T12:00:00Z","event_id":"ceiling","data":{{"order":1,"sent_us":{}}}}}"#,
                    micros_now()
                );
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Received {
    latencies_us: Mutex<Vec<u64>>,
    count: AtomicUsize,
}

/// The receiver: finds `"sent_us":N` in the body without a full parse and
/// answers 204, so it costs the 2 shared cores as little as possible.
async fn receive(State(r): State<Arc<Received>>, body: Bytes) -> StatusCode {
    let now = micros_now();
    let text = std::str::from_utf8(&body).unwrap_or("");
    if let Some(sent) = text
        .split("\"sent_us\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
    {
        r.latencies_us.lock().await.push(now.saturating_sub(sent));
    }
    r.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The process's user + system CPU time so far, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let received = Arc::new(Received {
        latencies_us: Mutex::new(Vec::with_capacity(args.events)),
        count: AtomicUsize::new(0),
    });
    let app = Router::new().fallback(receive).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let ceiling_rate = if args.ceiling_requests > 0 {
        let rate = ceiling(&client, &receiver, args.ceiling_requests, args.connections).await;
        // The ceiling's requests are not deliveries.
        received.count.store(0, Ordering::Relaxed);
        received.latencies_us.lock().await.clear();
        Some(rate)
    } else {
        None
    };

    let rule = client
        .post(format!("{}/v1/rules", args.url))
        .bearer_auth(&args.api_key)
        .json(&json!({"name": "bench", "trigger": "order.paid", "url": receiver}))
        .send()
        .await?;
    if rule.status() != 201 {
        return Err(format!(
            "creating the bench rule answered {}: {}",
            rule.status(),
            rule.text().await?
        )
        .into());
    }
    let rule_id = rule.json::<serde_json::Value>().await?["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let cpu_before = args.pid.and_then(cpu_secs);
    let run = micros_now();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..args.connections {
        let (client, next, failures) = (client.clone(), next.clone(), failures.clone());
        let (url, token, tenant) = (
            format!("{}/v1/events", args.url),
            args.ingest_token.clone(),
            args.tenant.clone(),
        );
        let (total, rate) = (args.events, args.rate);
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Some(offset) = (i as u64 * 1_000_000).checked_div(rate) {
                    tokio::time::sleep_until((started + Duration::from_micros(offset)).into()).await;
                }
                let body = format!(
                    r#"{{"id":"bench_{run}_{i}","tenant_id":"{tenant}","type":"order.paid","occurred_at":"2026-11-29T12:00:00Z","lines":[{{"id":"l1","product_id":"p1"}}],"data":{{"order":{i},"sent_us":{}}}}}"#,
                    micros_now()
                );
                let ok = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status() == 202)
                    .unwrap_or(false);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let accepted = args.events - failures.load(Ordering::Relaxed);

    let deadline = Instant::now() + Duration::from_secs(120);
    while received.count.load(Ordering::Relaxed) < accepted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivery_secs = started.elapsed().as_secs_f64();
    let delivered = received.count.load(Ordering::Relaxed);
    let mut lat = received.latencies_us.lock().await.clone();
    lat.sort_unstable();

    let mode = if args.rate == 0 {
        "as fast as accepted".to_owned()
    } else {
        format!("{} events/s offered", args.rate)
    };
    println!(
        "hookline bench: {} events, {mode}, {} ingest connections",
        args.events, args.connections
    );
    println!(
        "  accepted            {accepted} ({} refused or failed)",
        args.events - accepted
    );
    println!(
        "  ingested            {:.0} events/s",
        accepted as f64 / ingest_secs
    );
    println!(
        "  delivered           {delivered} in {delivery_secs:.2} s = {:.0} deliveries/s",
        delivered as f64 / delivery_secs
    );
    if let Some(rate) = ceiling_rate {
        println!(
            "  loopback ceiling    {rate:.0} posts/s (this client straight to this receiver, {} connections)",
            args.connections
        );
        println!(
            "  of the ceiling      {:.1} % (deliveries/s over the ceiling)",
            100.0 * delivered as f64 / delivery_secs / rate
        );
    }
    println!(
        "  ingest->delivery    p50 {:.1} ms   p95 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    if let (Some(before), Some(after)) = (cpu_before, args.pid.and_then(cpu_secs)) {
        let used = after - before;
        println!(
            "  server CPU          {used:.2} s = {:.0} us per delivery ({:.0}% of one core)",
            used * 1e6 / delivered.max(1) as f64,
            100.0 * used / delivery_secs
        );
    }
    if let Some(mib) = args.pid.and_then(peak_rss_mib) {
        println!("  server peak memory  {mib:.1} MiB (VmHWM)");
    }
    let _ = client
        .delete(format!("{}/v1/rules/{rule_id}", args.url))
        .bearer_auth(&args.api_key)
        .send()
        .await;
    if delivered < accepted {
        return Err(format!(
            "only {delivered} of {accepted} accepted events were delivered within 120 s"
        )
        .into());
    }
    Ok(())
}
