//! `hookline receive`: a webhook receiver for trying Hookline out. It checks
//! every delivery's signature with the Standard Webhooks reference library,
//! prints the verified ones as JSON lines and answers 204 (400 when the
//! signature does not verify, so Hookline's log shows the failure).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Args;
use serde_json::{Value, json};
use standardwebhooks::Webhook;

#[derive(Debug, Clone, Args)]
pub struct ReceiveArgs {
    /// Where to listen for deliveries.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// The tenant's `whsec_` webhook key (repeat it to accept several during a rotation).
    #[arg(
        long = "webhook-key",
        env = "HOOKLINE_WEBHOOK_KEY",
        hide_env_values = true,
        required = true
    )]
    pub webhook_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("--webhook-key is not a whsec_ key: {0}")]
    Key(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn receive(args: ReceiveArgs) -> Result<(), ReceiveError> {
    let verifiers = args
        .webhook_keys
        .iter()
        .map(|k| Webhook::new(k).map_err(|e| ReceiveError::Key(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let app = Router::new()
        .fallback(post(deliver))
        .with_state(Arc::new(verifiers));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ReceiveError::Listen {
            addr: args.listen,
            source,
        })?;
    eprintln!(
        "hookline receive: listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn deliver(
    State(verifiers): State<Arc<Vec<Webhook>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    if !verifiers.iter().any(|v| v.verify(&body, &headers).is_ok()) {
        eprintln!("hookline receive: {id}: signature does not verify; answered 400");
        return StatusCode::BAD_REQUEST;
    }
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    println!(
        "{}",
        json!({ "webhook_id": id, "verified": true, "payload": payload })
    );
    StatusCode::NO_CONTENT
}
