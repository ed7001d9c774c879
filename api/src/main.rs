//! The `api` binary: `api` (or `api serve`) serves HTTP; `api migrate`
//! applies migrations; `api openapi` prints the contract.

use std::net::TcpListener;

use anyhow::Context;
use api::config::Config;
use api::state::AppState;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "api", version, about = "Hashgrid HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP on BIND_ADDR (the default).
    Serve,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
    /// Print the OpenAPI spec (YAML) generated from the code.
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", api::openapi::spec_yaml()?);
        return Ok(());
    }
    let config = Config::from_env()?;
    api::telemetry::init_tracing(config.env);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Migrate) => runtime.block_on(async {
            api::startup::prepare_database(&config).await?;
            println!(
                "migrations applied to {}",
                domain::db::redact(&config.database_url)
            );
            Ok(())
        }),
        _ => runtime.block_on(serve(config)),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    api::startup::prepare_database(&config)
        .await
        .context("preparing the database")?;
    let pool = domain::db::pool(&config.database_url, config.db_pool_size)?;
    let listener = TcpListener::bind(config.bind_addr)
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(config, pool)?;
    tracing::info!(%addr, "listening");
    println!("Hashgrid API listening on http://{addr}  (docs: http://{addr}/docs/)");
    api::app::serve(state, listener, |_| {})?.await?;
    tracing::info!("stopped");
    Ok(())
}
