//! The `api` binary: `api` (or `api serve`) serves HTTP; `api migrate`
//! applies migrations; `api openapi` prints the contract; `api create-admin`
//! creates a staff account with a one-time password.

use std::net::TcpListener;

use anyhow::Context;
use api::config::Config;
use api::state::AppState;
use clap::{Parser, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};

/// Prints a line; a closed stdout (a supervisor that stopped reading) must not crash the server.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

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
    /// Create a staff account and print its one-time password.
    CreateAdmin {
        #[arg(long)]
        email: String,
        /// support, finance, compliance, operations or superadmin
        #[arg(long, default_value = "superadmin")]
        role: String,
    },
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
            api::startup::prepare_database(&config, None).await?;
            say!(
                "migrations applied to {}",
                domain::db::redact(&config.database_url)
            );
            Ok(())
        }),
        Some(Command::CreateAdmin { email, role }) => {
            runtime.block_on(create_admin(config, email, role))
        }
        _ => runtime.block_on(serve(config)),
    }
}

async fn create_admin(config: Config, email: String, role: String) -> anyhow::Result<()> {
    let role = domain::identity::roles::Role::parse(&role)
        .with_context(|| format!("unknown role {role:?}"))?;
    api::startup::prepare_database(&config, None).await?;
    let identity = api::identity::build(&config, true)?;
    let mut conn = AsyncPgConnection::establish(&config.database_url).await?;
    let (user, password) = identity
        .create_staff(&mut conn, &email, role, "cli", "")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    say!(
        "created {} ({}); one-time password:",
        user.email,
        role.as_str()
    );
    say!("{password}");
    say!("it must be changed at first login: POST /admin/v1/me/password");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let identity = api::identity::build(&config, true).context("loading keys")?;
    let generated = api::startup::prepare_database(&config, Some(&identity))
        .await
        .context("preparing the database")?;
    let pool = domain::db::pool(&config.database_url, config.db_pool_size)?;
    let listener = TcpListener::bind(config.bind_addr)
        .with_context(|| format!("binding {}", config.bind_addr))?;
    let addr = listener.local_addr()?;
    let demo = config.demo;
    let state = AppState::with_identity(config, pool, identity)?;
    tracing::info!(%addr, "listening");
    say!("Hashgrid API listening on http://{addr}  (docs: http://{addr}/docs/)");
    if demo {
        let password =
            generated.unwrap_or_else(|| "the value of HASHGRID_DEMO_PASSWORD".to_owned());
        say!(
            "demo logins: {} (superadmin) and {} (customer), password: {password}",
            domain::seed::DEMO_ADMIN_EMAIL,
            domain::seed::DEMO_CUSTOMER_EMAIL
        );
    }
    api::app::serve(state, listener, |_| {})?.await?;
    tracing::info!("stopped");
    Ok(())
}
