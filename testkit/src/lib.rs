//! Test harness: each test gets its own PostgreSQL database, cloned from a
//! migrated template (`CREATE DATABASE … TEMPLATE …`) so tests run in
//! parallel without seeing each other; and a real SMTP server ([`smtp`]).

pub mod anvil;
pub mod catalog;
pub mod custody;
pub mod litecoind;
pub mod smtp;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::db::{self, PgPool, PooledConn};

/// The server tests use; override with `TEST_DATABASE_URL` (any database name).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis tests use; override with `TEST_REDIS_URL`.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The URL of database `name` on the test server.
pub fn url_for(name: &str) -> anyhow::Result<String> {
    let (admin, _) = db::split_database_url(&server_url())?;
    // admin is …/postgres plus an optional query string
    let at = admin
        .rfind("/postgres")
        .ok_or_else(|| anyhow::anyhow!("unexpected admin URL"))?;
    Ok(format!(
        "{}/{name}{}",
        &admin[..at],
        &admin[at + "/postgres".len()..]
    ))
}

/// A fingerprint of the migrations, so that a changed migration gets a new template.
fn migrations_fingerprint() -> anyhow::Result<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut entries: Vec<_> = walk(&dir)?;
    entries.sort();
    let mut hasher = DefaultHasher::new();
    for path in entries {
        path.to_string_lossy().hash(&mut hasher);
        std::fs::read(&path)?.hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

async fn admin_conn() -> anyhow::Result<AsyncPgConnection> {
    let (admin, _) = db::split_database_url(&server_url())?;
    AsyncPgConnection::establish(&admin)
        .await
        .with_context(|| format!("connecting to {} (is PostgreSQL up?)", db::redact(&admin)))
}

/// Builds the migrated template once per migration set, safely across the
/// many processes that nextest starts.
async fn template() -> anyhow::Result<String> {
    let name = format!("hashgrid_tmpl_{}", migrations_fingerprint()?);
    let mut conn = admin_conn().await?;
    diesel::sql_query("SELECT pg_advisory_lock(727274002)")
        .execute(&mut conn)
        .await?;
    let result = build_template_locked(&mut conn, &name).await;
    diesel::sql_query("SELECT pg_advisory_unlock(727274002)")
        .execute(&mut conn)
        .await?;
    result.map(|_| name)
}

async fn build_template_locked(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate) AS found",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .get_result(conn)
    .await?;
    if found.found {
        return Ok(());
    }
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(conn)
        .await?;
    diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
        .execute(conn)
        .await?;
    let url = url_for(name)?;
    db::run_migrations(&url).await?;
    {
        let mut c = AsyncPgConnection::establish(&url).await?;
        domain::seed::reference_data(&mut c).await?;
    }
    // Marked only once complete: a half-built template is rebuilt.
    diesel::sql_query(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE true"))
        .execute(conn)
        .await?;
    Ok(())
}

/// A fresh database for one test, dropped when the value is dropped.
pub struct TestDb {
    name: String,
    url: String,
    pool: PgPool,
}

impl TestDb {
    /// A new database with every migration applied and the reference data loaded.
    pub async fn new() -> anyhow::Result<TestDb> {
        Self::with_pool_size(16).await
    }

    pub async fn with_pool_size(max: usize) -> anyhow::Result<TestDb> {
        let template = template().await?;
        let name = format!("hgtest_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_conn().await?;
        diesel::sql_query(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating {name} from {template}"))?;
        let url = url_for(&name)?;
        let pool = db::pool(&url, max)?;
        Ok(TestDb { name, url, pool })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    pub async fn conn(&self) -> anyhow::Result<PooledConn> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("test pool: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        drop_database_blocking(self.name.clone());
    }
}

/// The name and URL of a database that does not exist yet (for testing that
/// the binaries create it); dropped, if it was created, when this is dropped.
pub struct MissingDb {
    name: String,
    url: String,
}

impl MissingDb {
    pub fn new() -> anyhow::Result<MissingDb> {
        let name = format!("hgnew_{}", uuid::Uuid::new_v4().simple());
        let url = url_for(&name)?;
        Ok(MissingDb { name, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for MissingDb {
    fn drop(&mut self) {
        drop_database_blocking(self.name.clone());
    }
}

fn drop_database_blocking(name: String) {
    // Drop may run inside a test's runtime: use a thread with its own.
    let dropper = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(mut conn) = admin_conn().await {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
            }
        });
    });
    let _ = dropper.join();
}
