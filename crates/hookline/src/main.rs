//! `hookline`: run the engine locally, and the operator's commands. The
//! AWS form's own commands are `hookline-aws` (crates/aws-cli), so that this
//! binary links no AWS SDK.

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
    },
}

// The deliverer allocates small, short-lived buffers on many threads; glibc's
// malloc spent a tenth of the server's time on them in the bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // One core is left to the store's writer and read threads, which do
    // the SQLite work: on 2 cores, one runtime thread instead of two cost
    // a fifth less CPU per delivery at 250 events/s and nothing flat out
    // (docs/performance.md). TOKIO_WORKER_THREADS still decides when set.
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        runtime.worker_threads(cores.saturating_sub(1).max(1));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("hookline: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = match hookline::init_logging() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("hookline: {e}");
            return ExitCode::FAILURE;
        }
    };
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

async fn create_tenant(tenant_id: &str, store: &StoreArgs) -> Result<(), String> {
    let options = SqliteOptions {
        sealing_key: store.sealing_key,
        ..SqliteOptions::default()
    };
    let sqlite = SqliteBackend::open(&store.db, options).map_err(|e| e.to_string())?;
    let credentials = hookline::tenant::create(&sqlite, tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", credentials.to_json());
    Ok(())
}
