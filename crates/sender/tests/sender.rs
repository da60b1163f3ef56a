//! The sender against real receivers on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use hookline_core::ports::{OutgoingRequest, Sender};
use hookline_core::target::TargetPolicy;
use std::collections::HashMap;
use std::net::IpAddr;

use hookline_sender::{BoxFuture, HttpSender, Lookup, SenderConfig, SystemLookup};

async fn receiver(hits: Arc<AtomicUsize>) -> u16 {
    let app = Router::new()
        .route(
            "/ok",
            post(|headers: HeaderMap| async move {
                let ua = headers
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (StatusCode::OK, ua)
            }),
        )
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [("location", "/ok")]) }),
        )
        .route("/big", post(|| async { "x".repeat(100_000) }))
        .route(
            "/busy",
            post(|| async {
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "7")]).into_response()
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                let hits = hits.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn sender(allow_private: bool) -> HttpSender {
    HttpSender::new(SenderConfig {
        policy: TargetPolicy { allow_private },
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(1500),
        ..SenderConfig::default()
    })
    .unwrap()
}

/// Answers names from a table, as a DNS server under an attacker's control
/// might; anything else goes to the system resolver.
struct Answers(HashMap<&'static str, Vec<IpAddr>>);

impl Lookup for Answers {
    fn lookup(&self, host: String) -> BoxFuture<std::io::Result<Vec<IpAddr>>> {
        let answer = self.0.get(host.as_str()).cloned();
        Box::pin(async move {
            match answer {
                Some(ips) => Ok(ips),
                None => SystemLookup.lookup(host).await,
            }
        })
    }
}

/// The one answer for every target Hookline will not or cannot reach.
fn unreachable() -> String {
    format!("refused: {}", hookline_sender::Unreachable)
}

fn post_to(url: String) -> OutgoingRequest {
    OutgoingRequest {
        url,
        headers: vec![("user-agent".into(), "hookline/test".into())],
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn refuses_non_public_targets_by_default() {
    let hits = Arc::new(AtomicUsize::new(0));
    let port = receiver(hits.clone()).await;
    let strict = sender(false);
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://[::1]:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        "http://10.0.0.1/ok".into(),
        "http://172.20.1.1/ok".into(),
        "http://192.168.1.1/ok".into(),
        "http://169.254.10.10/ok".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[fe80::1]/ok".into(),
    ] {
        let sent = strict.send(post_to(url.clone())).await;
        let err = sent.result.expect_err(&url);
        assert_eq!(err, unreachable(), "{url}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused target was reached"
    );
}

#[tokio::test]
async fn delivers_when_private_targets_are_allowed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let port = receiver(hits.clone()).await;
    let open = sender(true);

    let ok = open
        .send(post_to(format!("http://localhost:{port}/ok")))
        .await
        .result
        .unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, "hookline/test"));

    let redirect = open
        .send(post_to(format!("http://127.0.0.1:{port}/redirect")))
        .await
        .result
        .unwrap();
    assert_eq!(redirect.status, 302, "redirects are not followed");

    let big = open
        .send(post_to(format!("http://127.0.0.1:{port}/big")))
        .await
        .result
        .unwrap();
    assert_eq!(big.body.len(), hookline_core::delivery::RESPONSE_BODY_CAP);

    let busy = open
        .send(post_to(format!("http://127.0.0.1:{port}/busy")))
        .await
        .result
        .unwrap();
    assert_eq!(
        (busy.status, busy.retry_after),
        (503, Some(Duration::from_secs(7)))
    );

    let slow = open
        .send(post_to(format!("http://127.0.0.1:{port}/slow")))
        .await;
    assert!(slow.result.unwrap_err().starts_with("timed out"));
    assert!(slow.elapsed < Duration::from_secs(4));
    assert_eq!(hits.load(Ordering::SeqCst), 5);

    let closed = open.send(post_to("http://127.0.0.1:1/ok".into())).await;
    assert!(closed.result.unwrap_err().starts_with("connection failed"));
}

/// Names are judged by every address they resolve to, at connect time, and
/// the attempt log does not say what they resolved to, nor whether they
/// resolved at all: a name with no addresses, one whose lookup fails and one
/// that resolves to loopback get the same answer (no DNS oracle).
#[tokio::test]
async fn names_resolving_to_any_non_global_address_are_refused() {
    let hits = Arc::new(AtomicUsize::new(0));
    let port = receiver(hits.clone()).await;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let answers = Answers(HashMap::from([
        ("loopback.test", vec![ip("127.0.0.1")]),
        ("mixed.test", vec![ip("8.8.8.8"), ip("127.0.0.1")]),
        ("mixed6.test", vec![ip("2606:4700::1111"), ip("::1")]),
        ("mapped.test", vec![ip("::ffff:127.0.0.1")]),
        ("compat.test", vec![ip("::127.0.0.1")]),
        ("nat64.test", vec![ip("64:ff9b::a9fe:a9fe")]),
        ("sixtofour.test", vec![ip("2002:7f00:1::1")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("cgnat.test", vec![ip("100.64.0.1")]),
        ("sitelocal.test", vec![ip("fec0::1")]),
        ("discard.test", vec![ip("100::1")]),
        ("nowhere.test", vec![]),
    ]));
    let mut names: Vec<&str> = answers.0.keys().copied().collect();
    // Not in the table: the system resolver's lookup fails for it.
    names.push("no-such-host.invalid");
    let strict = HttpSender::new(SenderConfig {
        policy: TargetPolicy {
            allow_private: false,
        },
        timeout: Duration::from_millis(1500),
        lookup: Arc::new(answers),
        ..SenderConfig::default()
    })
    .unwrap();
    for name in names {
        let url = format!("http://{name}:{port}/ok");
        let err = strict
            .send(post_to(url.clone()))
            .await
            .result
            .expect_err(&url);
        assert_eq!(err, unreachable(), "{url}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused target was reached"
    );
}
