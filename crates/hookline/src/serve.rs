//! `hookline serve`: the API and the deliverer on one SQLite file.

use std::sync::Arc;

use hookline_api::{ApiConfig, ApiState, router};
use hookline_core::Attempter;
use hookline_core::ingest_token::IngestTokens;
use hookline_core::ports::{Clock, StoreError};
use hookline_core::settings::Settings;
use hookline_sender::{HttpSender, SenderConfig};
use hookline_sqlite::{Fairness, OpenError, SqliteBackend, SqliteOptions};
use tokio::sync::watch;

use crate::SystemClock;
use crate::config::ServeArgs;
use crate::http_server;
use crate::metrics::Metrics;
use crate::tenant::{self, Credentials, TenantError};
use crate::worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] hookline_core::settings::SettingsError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot create the demo tenant: {0}")]
    Demo(#[from] TenantError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sender(#[from] hookline_sender::BuildError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the generated ingest token is not valid: {0}")]
    Token(String),
}

pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let settings = args.settings()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let schedule = settings.retry_schedule.clone();
    let options = SqliteOptions {
        visibility_timeout: settings.delivery_timeout * 2 + std::time::Duration::from_secs(30),
        fairness: Fairness {
            per_rule: args.rule_concurrency,
            per_tenant: args.tenant_concurrency,
            adaptive: true,
        },
        breaker: settings.breaker,
        sealing_key: args.store.sealing_key,
        ..SqliteOptions::default()
    };
    let backend = SqliteBackend::open(&args.store.db, options)?;
    let policy = settings.target_policy();

    let ingest_tokens = match settings.ingest_tokens.clone() {
        Some(t) => t,
        None => {
            let token = format!("ing_{}", hex::encode(crate::random::<24>()?));
            println!(
                "HOOKLINE_INGEST_TOKEN was not set; this run's ingest token is:\n\n  {token}\n"
            );
            IngestTokens::parse(&token).map_err(|e| ServeError::Token(e.to_string()))?
        }
    };
    let ingest_token = ingest_tokens.current().unwrap_or_default().to_owned();
    if backend.tenant_count().await? == 0 {
        let demo = tenant::create(&backend, "demo").await?;
        println!("{}", walkthrough(&demo, &args, &settings, &ingest_token));
    }

    let pending = backend.queued();
    if pending > 0 {
        tracing::info!(
            pending,
            "resuming the deliveries the last run left pending, each at its next attempt time"
        );
    }

    let sender: Arc<dyn hookline_core::ports::Sender> = Arc::new(HttpSender::new(SenderConfig {
        policy,
        timeout: settings.delivery_timeout,
        ..SenderConfig::default()
    })?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(if args.metrics_per_rule {
        Metrics::per_rule()
    } else {
        Metrics::default()
    });
    let metrics_server = match args.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen { addr, source })?;
            // Before "listening": whoever waits for that line knows both.
            println!(
                "hookline metrics on http://{}/metrics",
                listener.local_addr()?
            );
            let app = crate::metrics::router(metrics.clone(), backend.clone(), clock.clone());
            // The API's listener limits (header and request timeouts, a
            // connection cap) hold here too; it stops with the process.
            let limits = args.http_limits();
            Some(tokio::spawn(http_server::serve(
                listener,
                app,
                limits,
                std::future::pending(),
            )))
        }
        None => None,
    };
    let worker = Worker {
        queue: backend.clone(),
        sender: sender.clone(),
        clock: clock.clone(),
        attempter: Arc::new(Attempter::new(schedule.clone())),
        concurrency: args.concurrency,
        metrics: metrics.clone(),
    };
    let worker = tokio::spawn(worker.run(stop_rx));

    let api = ApiState::new(
        Arc::new(backend.clone()),
        clock.clone(),
        ApiConfig {
            ingest_tokens,
            policy,
            key_grace: settings.key_grace,
            max_rules: settings.max_rules,
        },
    )
    .with_sender(sender);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        db = %args.store.db.display(),
        retry_schedule = %schedule,
        allow_private_targets = settings.allow_private_targets,
        "hookline is serving"
    );
    println!("hookline listening on http://{local}");

    let app = router(api).layer(axum::middleware::from_fn_with_state(
        metrics.clone(),
        crate::metrics::count_ingest,
    ));
    http_server::serve(listener, app, args.http_limits(), shutdown_signal()).await;
    tracing::info!("stopped taking work; finishing deliveries in flight");
    let _ = stop_tx.send(true);
    let _ = worker.await;
    if let Err(e) = backend.write_traffic(clock.now()).await {
        tracing::warn!(error = %e, "could not write the last seconds of rules' traffic; those counts are lost");
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// What a newcomer reads on the first start: the demo tenant's keys and the
/// curl commands that make a rule, send an event and show the delivery.
fn walkthrough(
    demo: &Credentials,
    args: &ServeArgs,
    settings: &Settings,
    ingest_token: &str,
) -> String {
    let base = format!("http://{}", args.listen);
    let private_note = if settings.allow_private_targets {
        ""
    } else {
        "\n  (receivers on loopback or private addresses need --allow-private-targets)"
    };
    format!(
        r#"Created the demo tenant in an empty store. Keep these; they are shown once.

  tenant_id    {tenant}
  api_key      {api_key}
  webhook_key  {webhook_key}

Try it (a receiver is any URL that answers 2xx, e.g. a request-bin){private_note}:

  export HOOKLINE={base} API_KEY={api_key} INGEST_TOKEN={ingest_token}

  # 1. a rule: every paid order goes to your receiver
  curl -s $HOOKLINE/v1/rules -H "authorization: Bearer $API_KEY" \
    -d '{{"name":"paid orders","trigger":"{paid}","url":"http://127.0.0.1:9000/hook"}}'

  # 2. the platform reports an order
  curl -s $HOOKLINE/v1/events -H "authorization: Bearer $INGEST_TOKEN" \
    -d '{{"id":"evt_1","tenant_id":"{tenant}","type":"{paid}","occurred_at":"2026-11-29T12:00:00Z","lines":[{{"id":"line_1","product_id":"prod_1"}}],"data":{{"order_id":"ord_1","amount":4900}}}}'

  # 3. the signed delivery and its attempts
  curl -s "$HOOKLINE/v1/deliveries?event_id=evt_1" -H "authorization: Bearer $API_KEY"
"#,
        tenant = demo.tenant_id,
        paid = hookline_core::Trigger::OrderPaid,
        api_key = demo.api_key,
        webhook_key = demo.webhook_key.expose(),
    )
}
