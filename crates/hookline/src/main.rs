//! `hookline`: run the engine locally, and the operator's commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookline::config::{ServeArgs, StoreArgs};
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
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key and webhook key as JSON.
    Create {
        tenant_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

// The deliverer allocates small, short-lived buffers on many threads; glibc's
// malloc spent a tenth of the server's time on them in the bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(log_level())
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Serve(args) => hookline::serve::serve(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Receive(args) => hookline::receive::receive(args)
            .await
            .map_err(|e| e.to_string()),
        Command::Tenant(TenantCommand::Create { tenant_id, store }) => {
            create_tenant(&tenant_id, &store).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log_level() -> tracing::Level {
    std::env::var("HOOKLINE_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO)
}

async fn create_tenant(tenant_id: &str, store: &StoreArgs) -> Result<(), String> {
    let backend =
        SqliteBackend::open(&store.db, SqliteOptions::default()).map_err(|e| e.to_string())?;
    let credentials = hookline::tenant::create(&backend, tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", credentials.to_json());
    Ok(())
}
