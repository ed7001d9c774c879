//! The `api` binary as an operator runs it: it creates a missing database,
//! applies migrations (`api migrate` and at start), serves, and stops
//! gracefully on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use testkit::MissingDb;

const API: &str = env!("CARGO_BIN_EXE_api");

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "process did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn migrate_creates_the_database_and_applies_migrations() {
    let db = MissingDb::new().unwrap();
    let out = Command::new(API)
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", testkit::redis_url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM assets")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.n, 6, "reference data loaded");
    // Running it again is a no-op.
    let again = Command::new(API)
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[tokio::test]
async fn serves_and_stops_gracefully_on_sigterm() {
    let db = MissingDb::new().unwrap();
    let mut child = Command::new(API)
        .env("DATABASE_URL", db.url())
        .env("REDIS_URL", testkit::redis_url())
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("HASHGRID_DEMO", "1")
        .env("HASHGRID_ENV", "dev")
        .env(
            "HASHGRID_STATE_DIR",
            std::env::temp_dir().join(format!("hg-state-{}", db.name())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read stdout to the end in the background, handing over the "listening" line.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("listening on")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.await.expect("api exited before listening");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();

    let client = reqwest::Client::new();
    let res = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait_exit(&mut child, Duration::from_secs(35));
    assert!(status.success(), "api exited with {status:?} after SIGTERM");
}

#[test]
fn prod_refuses_to_start_with_defaults() {
    let out = Command::new(API)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("SMTP_URL")
        .env("HASHGRID_ENV", "prod")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refuses to start"), "{err}");
}

#[test]
fn openapi_command_prints_the_committed_spec() {
    let out = Command::new(API).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn create_admin_prints_a_one_time_password() {
    let db = MissingDb::new().unwrap();
    let state_dir = std::env::temp_dir().join(format!("hg-state-{}", db.name()));
    let run = |email: &str| {
        Command::new(API)
            .args(["create-admin", "--email", email, "--role", "finance"])
            .env("DATABASE_URL", db.url())
            .env("HASHGRID_STATE_DIR", &state_dir)
            .output()
            .unwrap()
    };
    let out = run("Ops@Example.com");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("created ops@example.com (finance)"),
        "{stdout}"
    );
    let password = stdout.lines().nth(1).unwrap().trim();
    assert!(password.len() >= 20, "{stdout}");
    // The same address again is refused.
    let again = run("ops@example.com");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
