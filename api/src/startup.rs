//! What `api` does before it serves: the database, migrations and seeds.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::identity::service::Identity;

use crate::config::Config;

/// The demo password: `HASHGRID_DEMO_PASSWORD`, or a generated one (printed).
pub fn demo_password(config: &Config) -> (String, bool) {
    match &config.demo_password {
        Some(p) => (p.clone(), false),
        None => (domain::identity::crypto::random_token(12), true),
    }
}

/// Creates the database when missing, applies migrations, loads the
/// reference data, and the demo seed when `HASHGRID_DEMO=1` (returning the
/// demo password when it was generated, so it can be printed).
pub async fn prepare_database(
    config: &Config,
    identity: Option<&Identity>,
) -> anyhow::Result<Option<String>> {
    let created = domain::db::ensure_database(&config.database_url).await?;
    if created {
        tracing::info!(url = %domain::db::redact(&config.database_url), "created the database");
    }
    let ran = domain::db::run_migrations(&config.database_url).await?;
    tracing::info!(migrations = ran, "database schema is up to date");
    let mut conn = AsyncPgConnection::establish(&config.database_url).await?;
    domain::seed::reference_data(&mut conn).await?;
    let (Some(identity), true) = (identity, config.demo) else {
        return Ok(None);
    };
    let (password, generated) = demo_password(config);
    let hash = identity.hasher.hash(&password).await?;
    domain::seed::demo(&mut conn, &hash).await?;
    tracing::info!("demo seed loaded");
    Ok(generated.then_some(password))
}
