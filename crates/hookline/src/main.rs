//! `hookline`: run the engine locally, and the operator's commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookline::config::{ServeArgs, StoreArgs};
use hookline::remote::RemoteArgs;
use hookline::remote::deliveries::{DeliveriesCommand, RecoverArgs};
use hookline::remote::rules::RulesCommand;
use hookline::remote::send::SendArgs;
use hookline::verify::VerifyArgs;
use hookline_sqlite::{SqliteBackend, SqliteOptions};

#[derive(Parser)]
#[command(
    name = "hookline",
    version,
    about = "Webhooks for Plug&Pay-style events, delivered reliably."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and deliver webhooks, on an embedded SQLite store.
    Serve(ServeArgs),
    /// Receive deliveries, verify their signatures and print them (for trying Hookline out).
    Receive(hookline::receive::ReceiveArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Dead-letter queues of the AWS backend.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Move what an earlier Hookline wrote to where this one reads it (the
    /// delivery log's entries to gsi2, rules filed by scope), once after
    /// upgrading the AWS form (HOOKLINE_TABLE and AWS credentials from the
    /// environment); running it again moves nothing.
    #[command(alias = "migrate-deliveries")]
    Migrate,
    /// A running Hookline's rules (over its HTTP API, with the tenant API key).
    Rules {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// A running Hookline's delivery log.
    Deliveries {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Send a rule's dead deliveries of a window again.
    Recover(RecoverArgs),
    /// Post an event as the platform does, with the ingest token.
    Send(SendArgs),
    /// Check a captured delivery's signature with a webhook key.
    Verify(VerifyArgs),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key and webhook key as JSON.
    Create {
        tenant_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Where tenants live: the SQLite file, or DynamoDB (HOOKLINE_TABLE and
        /// the queue URLs, AWS credentials and region from the environment).
        #[arg(long, value_enum, default_value = "sqlite", env = "HOOKLINE_BACKEND")]
        backend: Backend,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Move every message of a dead-letter queue back to its work queue
    /// (AWS backend; HOOKLINE_*_QUEUE_URL and HOOKLINE_*_DLQ_URL from the environment).
    Redrive {
        /// Which queue's dead letters.
        #[arg(long, value_enum, default_value = "deliveries")]
        queue: QueueName,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Backend {
    Sqlite,
    Aws,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueueName {
    Deliveries,
    Events,
}

// The deliverer allocates small, short-lived buffers on many threads; glibc's
// malloc spent a tenth of the server's time on them in the bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match hookline_core::settings::log_level_from_env() {
        Ok(level) => level.parse().unwrap_or(tracing::Level::INFO),
        Err(e) => {
            eprintln!("hookline: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Serve(args) => hookline::serve::serve(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Receive(args) => hookline::receive::receive(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Tenant(TenantCommand::Create {
            tenant_id,
            store,
            backend,
        }) => create_tenant(&tenant_id, &store, backend).await,
        Command::Dlq(DlqCommand::Redrive { queue }) => redrive(queue).await,
        Command::Migrate => migrate().await,
        Command::Rules { remote, command } => hookline::remote::rules::run(remote, command)
            .await
            .map_err(|e| e.to_string()),
        Command::Deliveries { remote, command } => {
            hookline::remote::deliveries::run(remote, command)
                .await
                .map_err(|e| e.to_string())
        }
        Command::Recover(args) => hookline::remote::deliveries::recover(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Send(args) => hookline::remote::send::run(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Verify(args) => hookline::verify::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookline: {}", hookline::remote::printable(&e));
            ExitCode::FAILURE
        }
    }
}

async fn aws_backend() -> Result<hookline_aws::AwsBackend, String> {
    let settings = hookline_aws::AwsSettings::from_env().map_err(|e| e.to_string())?;
    Ok(hookline_aws::AwsBackend::new(
        &hookline_aws::sdk_config().await,
        settings,
    ))
}

async fn create_tenant(tenant_id: &str, store: &StoreArgs, backend: Backend) -> Result<(), String> {
    let credentials = match backend {
        Backend::Sqlite => {
            let options = SqliteOptions {
                sealing_key: store.sealing_key,
                ..SqliteOptions::default()
            };
            let sqlite = SqliteBackend::open(&store.db, options).map_err(|e| e.to_string())?;
            hookline::tenant::create(&sqlite, tenant_id).await
        }
        Backend::Aws => hookline::tenant::create(&aws_backend().await?, tenant_id).await,
    };
    println!("{}", credentials.map_err(|e| e.to_string())?.to_json());
    Ok(())
}

async fn migrate() -> Result<(), String> {
    let migrated = hookline_aws::migrate(&aws_backend().await?)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!(migrated));
    Ok(())
}

async fn redrive(queue: QueueName) -> Result<(), String> {
    let backend = aws_backend().await?;
    let s = backend.settings().clone();
    let (name, work, dlq) = match queue {
        QueueName::Deliveries => ("deliveries", s.deliveries_queue_url, s.deliveries_dlq_url),
        QueueName::Events => ("events", s.events_queue_url, s.events_dlq_url),
    };
    let dlq = dlq.ok_or_else(|| format!("HOOKLINE_{}_DLQ_URL is not set", name.to_uppercase()))?;
    let moved = hookline_aws::redrive(&backend, &dlq, &work)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({ "queue": name, "redriven": moved })
    );
    Ok(())
}
