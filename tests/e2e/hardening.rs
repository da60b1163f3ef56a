//! What a stranger without a key, or a merchant out to hurt the others, can
//! hold of `hookline serve`: not its listener, not its writer thread.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn addr(hookline: &Hookline) -> String {
    hookline.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or `limit` passes);
/// answers what it sent and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

/// Slowloris: a client that sends one header line every few hundred
/// milliseconds is cut off at the header timeout, not kept for as long as
/// it trickles.
#[tokio::test]
async fn a_client_trickling_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_HTTP_HEADER_TIMEOUT", "1s")]);
    let mut stream = TcpStream::connect(addr(&hookline)).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    // Trickling for up to 8 s; the server must close well before.
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream
            .write_all(format!("x-trickle-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            cut_off = true;
            break;
        }
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the trickling client was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cut off only after {:?}",
        started.elapsed()
    );
}

/// A body that never finishes arriving is answered 408 at the request
/// timeout, naming it.
#[tokio::test]
async fn a_request_slower_than_the_request_timeout_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[("HOOKLINE_HTTP_REQUEST_TIMEOUT", "1s")]);
    let mut stream = TcpStream::connect(addr(&hookline)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST_TOKEN}\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// `GET /health` on a kept-alive connection: the first bytes of the answer.
async fn answer_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .expect("no answer within 2 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Past the connection cap, idle connections wait in the backlog: those
/// already served keep being answered, and a new one is served as soon as
/// the header timeout frees a slot.
#[tokio::test]
async fn connections_past_the_cap_do_not_starve_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(
        &db_in(&dir),
        &[
            ("HOOKLINE_HTTP_MAX_CONNECTIONS", "4"),
            ("HOOKLINE_HTTP_HEADER_TIMEOUT", "3s"),
        ],
    );
    // A client that is already being served, on a kept-alive connection.
    let mut served = TcpStream::connect(addr(&hookline)).await.unwrap();
    assert!(answer_on(&mut served).await.starts_with("HTTP/1.1 200"));

    // Twenty idle connections: three take the free slots, the rest wait.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr(&hookline)).await.unwrap());
    }
    assert!(
        answer_on(&mut served).await.starts_with("HTTP/1.1 200"),
        "a connection already served was starved by idle ones"
    );

    // A new client gets its answer once the idle ones are cut off.
    let started = Instant::now();
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(30),
        hookline.request("GET", "/health", None, None),
    )
    .await
    .expect("/health was never answered past the cap");
    assert_eq!(status, 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(25));
    // It did wait: the idle connections held every slot until the header
    // timeout (3 s) cut them off, so the cap is there.
    assert!(
        waited > Duration::from_secs(1),
        "answered at once: no cap held it, {waited:?}"
    );
    drop(idle);
}

/// Tenant A saves the biggest filter the API accepts on a per-line rule and
/// sends the biggest orders that rule accepts; tenant B's one-line events
/// are meanwhile accepted as fast as ever (p99 under 100 ms), because A's
/// fan-out is planned off the writer thread and within a budget.
#[tokio::test]
async fn a_heavy_fanout_does_not_hold_up_another_tenants_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let (a, b) = (hookline.tenant("shop_a"), hookline.tenant("shop_b"));
    let receiver = Receiver::start().await;
    // 254 nodes of 256: the key path and 251 values, none of them a line
    // id, so each line is compared with every value.
    let values: Vec<Value> = (0..251).map(|i| json!(format!("v{i}"))).collect();
    let filter = json!({"line": {"id": {"$nin": values}}});
    let (status, body) = hookline
        .admin(
            &a,
            "POST",
            "/v1/rules",
            // Its deliveries trickle out at 10 a second: this test is about
            // accepting A's fan-out, not about sending it (fairness.rs is).
            Some(
                json!({"name": "every line", "trigger": "order.paid", "rate_limit": 10,
                "url": receiver.url("/a"), "per_order_line": true, "filter": filter}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // One more node is refused by name.
    let mut over: Vec<Value> = (0..260).map(|i| json!(i)).collect();
    over.push(json!("x"));
    let (status, body) = hookline
        .admin(
            &a,
            "POST",
            "/v1/rules",
            Some(json!({"name": "too big", "trigger": "order.paid",
                "url": receiver.url("/a"), "filter": {"data": {"tier": {"$nin": over}}}})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("filter.data.tier.$nin")),
        "{body}"
    );
    hookline.paid_orders_to(&b, receiver.url("/b")).await;

    let heavy = |i: usize| {
        let lines: Vec<Value> = (0..1000)
            .map(|l| json!({"id": format!("l{l}"), "product_id": "p"}))
            .collect();
        let mut e = event(&format!("big_{i}"), "shop_a", "order.paid");
        e["lines"] = Value::Array(lines);
        e
    };
    let flood = {
        let (base, http) = (hookline.base.clone(), reqwest::Client::new());
        tokio::spawn(async move {
            for i in 0..6 {
                let status = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(INGEST_TOKEN)
                    .json(&heavy(i))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, 202, "the biggest accepted order");
            }
        })
    };
    let mut took = Vec::new();
    for i in 0..50 {
        let started = Instant::now();
        let (status, _) = hookline
            .send_event(&event(&format!("small_{i}"), "shop_b", "order.paid"))
            .await;
        took.push(started.elapsed());
        assert_eq!(status, 202);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flood.await.unwrap();
    took.sort();
    eprintln!("B's ingest, slowest five: {:?}", &took[took.len() - 5..]);
    let p99 = took[took.len() * 99 / 100 - 1];
    assert!(
        p99 < Duration::from_millis(100),
        "B's ingest p99 was {p99:?}"
    );
    let a_deliveries = hookline.deliveries(&a, "limit=1").await;
    assert_eq!(a_deliveries.len(), 1, "A's heavy events were delivered too");
}

/// A receiver as many merchants run one: a single worker that takes one
/// connection at a time, 20 ms a request, with a listen backlog of 8.
/// Answers its address and the count of requests it served.
async fn one_worker_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            // The whole request: headers, then content-length bytes.
            let mut seen = Vec::new();
            let mut buf = [0u8; 8192];
            let complete = loop {
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
                else {
                    break false;
                };
                if n == 0 {
                    break false;
                }
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        break true;
                    }
                }
            };
            if complete {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                count.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stream.shutdown().await;
        }
    });
    (url, served)
}

/// A receiver that sheds load as a well-behaved small service does: one
/// worker, 20 ms a request, and once eight requests wait for it, 429 with
/// `Retry-After: 1` at once. Answers its address and the count it served.
async fn shedding_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(AtomicUsize::new(0));
    let worker = Arc::new(tokio::sync::Semaphore::new(1));
    let count = served.clone();
    let app = axum::Router::new().fallback(move || {
        let (served, waiting, worker) = (count.clone(), waiting.clone(), worker.clone());
        async move {
            use axum::response::IntoResponse;
            if waiting.fetch_add(1, Ordering::SeqCst) >= 8 {
                waiting.fetch_sub(1, Ordering::SeqCst);
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                )
                    .into_response();
            }
            let _turn = worker.acquire().await.unwrap();
            waiting.fetch_sub(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            served.fetch_add(1, Ordering::SeqCst);
            axum::http::StatusCode::OK.into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, served)
}

/// A burst of 200 events for one rule reaches a one-worker receiver at the
/// pace it can take: at most 5 % of attempts fail, and the burst takes at
/// most twice what the receiver's capacity allows (200 × 20 ms = 4 s).
#[tokio::test]
async fn a_burst_reaches_a_small_receiver_at_its_pace() {
    let (url, served) = one_worker_receiver().await;
    burst_of_200(url, served).await;
}

/// The same for a receiver that sheds load with 429 and `Retry-After`.
#[tokio::test]
async fn a_burst_reaches_a_shedding_receiver_at_its_pace() {
    let (url, served) = shedding_receiver().await;
    burst_of_200(url, served).await;
}

/// `n` paid orders of `tenant`, `evt_0` on, posted 100 to a batch.
async fn paid_orders_in_batches(hookline: &Hookline, tenant: &str, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| event(&format!("evt_{i}"), tenant, "order.paid"))
        .collect();
    for chunk in events.chunks(100) {
        let (status, body) = hookline
            .request(
                "POST",
                "/v1/events/batch",
                Some(INGEST_TOKEN),
                Some(json!({ "events": chunk }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn burst_of_200(url: String, served: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let shop = hookline.tenant("shop_1");
    let rule = hookline.paid_orders_to(&shop, url).await;
    let started = Instant::now();
    paid_orders_in_batches(&hookline, "shop_1", 200).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.load(std::sync::atomic::Ordering::SeqCst) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    let mut attempts = 0;
    let mut failed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/v1/deliveries?rule_id={rule}&limit=100&cursor={c}"),
            None => format!("/v1/deliveries?rule_id={rule}&limit=100"),
        };
        let (_, page) = hookline.admin(&shop, "GET", &query, None).await;
        for d in page["data"].as_array().unwrap() {
            for a in d["attempts"].as_array().unwrap() {
                attempts += 1;
                failed += usize::from(a["error"].is_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    eprintln!("200 events in {took:?}: {attempts} attempts, {failed} failed");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 200);
    assert!(
        failed * 20 <= attempts,
        "{failed} of {attempts} attempts failed"
    );
    assert!(took < Duration::from_secs(8), "the burst took {took:?}");
}

/// How long `n` events take to drain to a receiver that fails 30 % of
/// requests at random (and answers the rest at once), with `env` set.
async fn drain_to_a_flaky_receiver(n: usize, env: &[(&str, &str)]) -> Duration {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.push(("HOOKLINE_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"));
    let hookline = Hookline::start(&db_in(&dir), &env);
    let shop = hookline.tenant("shop_1");
    let ok = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = ok.clone();
    let receiver = Receiver::start_with(move |i, _| {
        // A fixed scramble of the request number: random-looking, the same
        // in both runs.
        let h = (i as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        if (h >> 32) % 10 < 3 {
            Reply::Status(500)
        } else {
            counted.fetch_add(1, Ordering::SeqCst);
            Reply::Status(200)
        }
    })
    .await;
    hookline.paid_orders_to(&shop, receiver.url("/flaky")).await;
    let started = Instant::now();
    paid_orders_in_batches(&hookline, "shop_1", n).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while ok.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} delivered after 300 s",
            ok.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// A receiver that fails 30 % of requests at random is not down: 5,000
/// events drain to it within 1.5 times what they take with the breaker
/// switched off, measured in the same run.
#[tokio::test]
async fn a_flaky_receiver_is_not_held_as_if_down() {
    let off = drain_to_a_flaky_receiver(5000, &[("HOOKLINE_BREAKER_THRESHOLD", "1000000")]).await;
    let on = drain_to_a_flaky_receiver(5000, &[]).await;
    eprintln!("5,000 events to a 30 % flaky receiver: breaker off {off:?}, defaults {on:?}");
    assert!(
        on.as_secs_f64() <= off.as_secs_f64() * 1.5,
        "with the breaker {on:?}, without {off:?}"
    );
}

/// Test sends hold a request for up to the delivery timeout: each tenant
/// gets ten a minute, then 429 with `Retry-After`; another tenant is not
/// affected.
#[tokio::test]
async fn test_sends_are_limited_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let hookline = Hookline::start(&db_in(&dir), &[]);
    let (a, b) = (hookline.tenant("shop_a"), hookline.tenant("shop_b"));
    let receiver = Receiver::start().await;
    let rule_a = hookline.paid_orders_to(&a, receiver.url("/a")).await;
    let rule_b = hookline.paid_orders_to(&b, receiver.url("/b")).await;
    let http = reqwest::Client::new();
    let send = |tenant: &Tenant, rule: &str| {
        http.post(format!("{}/v1/rules/{rule}/test", hookline.base))
            .bearer_auth(&tenant.api_key)
            .send()
    };
    // Until the first refusal; a minute may turn once on the way, which
    // starts the count again.
    let mut granted = 0;
    let refusal = loop {
        let answer = send(&a, &rule_a).await.unwrap();
        match answer.status().as_u16() {
            200 => granted += 1,
            _ => break answer,
        }
        assert!(granted <= 20, "never refused");
    };
    assert!((10..=20).contains(&granted), "{granted} granted");
    assert_eq!(refusal.status().as_u16(), 429);
    let retry_after = refusal
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "{retry_after:?}"
    );
    let body: Value = refusal.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(send(&b, &rule_b).await.unwrap().status().as_u16(), 200);
}
