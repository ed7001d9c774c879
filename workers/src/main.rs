//! The `workers` binary: `workers` runs the job queue until SIGTERM;
//! `workers run-once JOB [--date YYYY-MM-DD]` runs one job kind now.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use workers::runner::{Runner, RunnerConfig};

#[derive(Parser)]
#[command(name = "workers", version, about = "Hashgrid background workers")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job queue (the default).
    Run,
    /// Run one job of kind JOB now, in the foreground, and exit.
    RunOnce {
        job: String,
        /// The day the job is about (for daily jobs), YYYY-MM-DD.
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
    },
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let prod = std::env::var("HASHGRID_ENV").is_ok_and(|v| v == "prod");
    init_tracing(prod);
    let database_url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/hashgrid".to_owned());
    if prod && std::env::var("DATABASE_URL").is_err() {
        anyhow::bail!("HASHGRID_ENV=prod refuses to start: DATABASE_URL must be set");
    }
    let config = RunnerConfig {
        concurrency: usize::try_from(env_number("WORKERS_CONCURRENCY", 4)?)?.max(1),
        poll: Duration::from_millis(env_number("WORKERS_POLL_MS", 500)?),
        lease: Duration::from_secs(env_number("WORKERS_LEASE_SECS", 30)?.max(3)),
        ..RunnerConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Either binary may start first: both make sure the schema is there.
        domain::db::prepare(&database_url)
            .await
            .context("preparing the database")?;
        let pool = domain::db::pool(&database_url, config.concurrency * 2 + 2)?;
        let runner = Runner::new(pool, workers::builtin::registry(), config);
        match cli.command {
            Some(Command::RunOnce { job, date }) => {
                let payload = match date {
                    Some(d) => serde_json::json!({ "date": d }),
                    None => serde_json::json!({}),
                };
                let done = runner.run_once(&job, payload).await?;
                println!("job {} ({}) {}", done.id, done.kind, done.state);
                if let Some(e) = done.last_error {
                    anyhow::bail!("job {} failed: {e}", done.id);
                }
                Ok(())
            }
            _ => {
                let shutdown = CancellationToken::new();
                stop_on_signal(shutdown.clone())?;
                let runner = runner.with_schedules(workers::builtin::schedules());
                println!("workers running (worker id {})", runner.worker_id());
                runner.run(shutdown).await
            }
        }
    })
}

/// Registers SIGTERM and SIGINT now (so a signal that comes right after
/// start-up is not lost) and cancels `shutdown` on the first of them.
fn stop_on_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown signal received");
        shutdown.cancel();
    });
    Ok(())
}

fn init_tracing(prod: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if prod {
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
}
