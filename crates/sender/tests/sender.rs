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
use hookline_sender::{HttpSender, SenderConfig};

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
    })
    .unwrap()
}

fn post_to(url: String) -> OutgoingRequest {
    OutgoingRequest {
        url,
        headers: vec![("user-agent", "hookline/test".into())],
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn refuses_non_public_targets_by_default() {
    let hits = Arc::new(AtomicUsize::new(0));
    let port = receiver(hits.clone()).await;
    let strict = sender(false);
    for (url, reason) in [
        (format!("http://127.0.0.1:{port}/ok"), "loopback"),
        (format!("http://[::1]:{port}/ok"), "loopback"),
        (
            format!("http://localhost:{port}/ok"),
            "localhost resolves only to non-public addresses",
        ),
        ("http://10.0.0.1/ok".into(), "private"),
        ("http://172.20.1.1/ok".into(), "private"),
        ("http://192.168.1.1/ok".into(), "private"),
        ("http://169.254.10.10/ok".into(), "link-local"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "cloud metadata",
        ),
        ("http://[fe80::1]/ok".into(), "link-local"),
    ] {
        let sent = strict.send(post_to(url.clone())).await;
        let err = sent.result.expect_err(&url);
        assert!(
            err.starts_with("refused: ") && err.contains(reason),
            "{url}: {err}"
        );
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
