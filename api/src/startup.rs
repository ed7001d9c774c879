//! What `api` does before it serves: the database, migrations and seeds.

use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::config::Config;

/// Creates the database when missing, applies migrations, loads the
/// reference data, and the demo seed when `HASHGRID_DEMO=1`.
pub async fn prepare_database(config: &Config) -> anyhow::Result<()> {
    let created = domain::db::ensure_database(&config.database_url).await?;
    if created {
        tracing::info!(url = %domain::db::redact(&config.database_url), "created the database");
    }
    let ran = domain::db::run_migrations(&config.database_url).await?;
    tracing::info!(migrations = ran, "database schema is up to date");
    let mut conn = AsyncPgConnection::establish(&config.database_url).await?;
    domain::seed::reference_data(&mut conn).await?;
    if config.demo {
        domain::seed::demo(&mut conn).await?;
        tracing::info!("demo seed loaded");
    }
    Ok(())
}
