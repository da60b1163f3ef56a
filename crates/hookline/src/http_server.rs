//! The HTTP listener of `hookline serve`: the shared API router behind the
//! limits that keep a stranger from holding the server. `axum::serve` has
//! neither a header timeout nor a connection cap, so connections are served
//! here with hyper directly, which has both hooks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use hookline_api::ApiError;

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// How long a connection may take to send a request's headers, counted
    /// from when it opened or from its last answer: so also how long an idle
    /// keep-alive connection is kept.
    pub header_timeout: Duration,
    /// How long one request may take from its headers to its answer, body
    /// upload included.
    pub request_timeout: Duration,
    /// How many connections are served at once; past it, new ones wait in
    /// the listen backlog until one closes.
    pub max_connections: usize,
}

/// How long shutdown waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then lets the requests in flight finish (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let deadline = limits.request_timeout;
    let app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
        within(deadline, req, next)
    }));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // A slot first: past the cap the kernel holds new connections, and
        // those already served are not touched.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause, not spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that leaves or times out is its own business.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
}

/// Answers 408 for a request that is not done within `deadline`.
async fn within(deadline: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request was not done within {}s", deadline.as_secs()),
        )
        .into_response(),
    }
}
