//! `hookline-aws`: the operator's commands for the AWS form. Each reads
//! HOOKLINE_TABLE, the queue URLs, the KMS key and AWS credentials from the
//! environment, as the functions do.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookline_aws::{AwsBackend, AwsSettings};

#[derive(Parser)]
#[command(
    name = "hookline-aws",
    version,
    about = "Operate Hookline's AWS form: tenants, dead-letter queues, upgrades."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage tenants in DynamoDB.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// The dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Move what an earlier Hookline wrote to where this one reads it (the
    /// delivery log's entries to gsi2, rules filed by scope), once after
    /// upgrading; running it again moves nothing.
    #[command(alias = "migrate-deliveries")]
    Migrate,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key and webhook key as JSON.
    Create { tenant_id: String },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Move every message of a dead-letter queue back to its work queue.
    Redrive {
        /// Which queue's dead letters.
        #[arg(long, value_enum, default_value = "deliveries")]
        queue: QueueName,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueueName {
    Deliveries,
    Events,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = match hookline::init_logging() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("hookline-aws: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Tenant(TenantCommand::Create { tenant_id }) => create_tenant(&tenant_id).await,
        Command::Dlq(DlqCommand::Redrive { queue }) => redrive(queue).await,
        Command::Migrate => migrate().await,
    };
    match result {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hookline-aws: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn backend() -> Result<AwsBackend, String> {
    let settings = AwsSettings::from_env().map_err(|e| e.to_string())?;
    Ok(AwsBackend::new(&hookline_aws::sdk_config().await, settings))
}

async fn create_tenant(tenant_id: &str) -> Result<serde_json::Value, String> {
    let credentials = hookline::tenant::create(&backend().await?, tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(credentials.to_json())
}

async fn migrate() -> Result<serde_json::Value, String> {
    let migrated = hookline_aws::migrate(&backend().await?)
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!(migrated))
}

async fn redrive(queue: QueueName) -> Result<serde_json::Value, String> {
    let backend = backend().await?;
    let s = backend.settings().clone();
    let (name, work, dlq) = match queue {
        QueueName::Deliveries => ("deliveries", s.deliveries_queue_url, s.deliveries_dlq_url),
        QueueName::Events => ("events", s.events_queue_url, s.events_dlq_url),
    };
    let dlq = dlq.ok_or_else(|| format!("HOOKLINE_{}_DLQ_URL is not set", name.to_uppercase()))?;
    let moved = hookline_aws::redrive(&backend, &dlq, &work)
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "queue": name, "redriven": moved }))
}
