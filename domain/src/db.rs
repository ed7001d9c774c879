//! Connections to PostgreSQL: the pool, creating the database when it is
//! missing, and the embedded migrations.

use diesel::prelude::*;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{self, Pool};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use diesel_async::AsyncPgConnection as PgConn;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// The application's connection pool.
pub type PgPool = Pool<AsyncPgConnection>;
/// A connection taken from the pool.
pub type PooledConn = deadpool::Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("invalid database URL {0:?}: it must end with /<database name>")]
    InvalidUrl(String),
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        source: diesel::ConnectionError,
    },
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migrations(String),
    #[error("connection pool: {0}")]
    Pool(String),
}

/// Builds the pool; connections are opened lazily.
pub fn pool(database_url: &str, max_size: usize) -> Result<PgPool, DbSetupError> {
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(database_url);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(::deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// Splits `postgres://…/name?opts` into the URL of the server's maintenance
/// database and the database name.
pub fn split_database_url(database_url: &str) -> Result<(String, String), DbSetupError> {
    let invalid = || DbSetupError::InvalidUrl(redact(database_url));
    let (base, query) = match database_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (database_url, None),
    };
    let scheme_end = base.find("://").ok_or_else(invalid)? + 3;
    let slash = base[scheme_end..].rfind('/').ok_or_else(invalid)? + scheme_end;
    let name = &base[slash + 1..];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid());
    }
    let mut admin = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        admin.push('?');
        admin.push_str(q);
    }
    Ok((admin, name.to_owned()))
}

/// Hides the password of a database URL for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Creates the database named in the URL when it does not exist yet.
pub async fn ensure_database(database_url: &str) -> Result<bool, DbSetupError> {
    let (admin_url, name) = split_database_url(database_url)?;
    let mut conn = AsyncPgConnection::establish(&admin_url)
        .await
        .map_err(|source| DbSetupError::Connect {
            url: redact(&admin_url),
            source,
        })?;
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await?;
    if found.exists {
        return Ok(false);
    }
    // The name was checked to be [A-Za-z0-9_-]; quoting keeps it literal.
    match diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
    {
        Ok(_) => Ok(true),
        // Another process created it between the check and now.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies the embedded migrations that are not applied yet; returns how many ran.
pub async fn run_migrations(database_url: &str) -> Result<usize, DbSetupError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .map_err(|source| DbSetupError::Connect {
                    url: redact(&url),
                    source,
                })?;
        // Several api processes may start at once: one applies, the others wait.
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_lock(727274001)"),
            &mut conn,
        )?;
        let ran = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| DbSetupError::Migrations(e.to_string()));
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_unlock(727274001)"),
            &mut conn,
        )?;
        ran
    })
    .await
    .map_err(|e| DbSetupError::Migrations(format!("migration task failed: {e}")))?
}

/// `ensure_database` then `run_migrations`.
pub async fn prepare(database_url: &str) -> Result<usize, DbSetupError> {
    ensure_database(database_url).await?;
    run_migrations(database_url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_database_urls() {
        let (admin, name) =
            split_database_url("postgres://u:p@127.0.0.1:5432/hashgrid?sslmode=disable").unwrap();
        assert_eq!(
            admin,
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"
        );
        assert_eq!(name, "hashgrid");
        assert!(split_database_url("postgres://127.0.0.1:5432/").is_err());
        assert!(split_database_url("postgres://h/x;drop").is_err());
        assert!(split_database_url("nonsense").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
