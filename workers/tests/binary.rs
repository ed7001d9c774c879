//! The `workers` binary: `run-once` runs a job now; the runner stops
//! gracefully on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::MissingDb;

const WORKERS: &str = env!("CARGO_BIN_EXE_workers");

#[test]
fn run_once_runs_a_job_and_reports_it() {
    let db = MissingDb::new().unwrap();
    let out = Command::new(WORKERS)
        .args(["run-once", "reconcile_ledger"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(reconcile_ledger) succeeded"));
    let bad = Command::new(WORKERS)
        .args(["run-once", "no_such_job", "--date", "2026-11-24"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("known kinds"));
    let bad_date = Command::new(WORKERS)
        .args(["run-once", "noop", "--date", "2026-13-01"])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!bad_date.status.success());
}

#[test]
fn stops_gracefully_on_sigterm() {
    let db = MissingDb::new().unwrap();
    let mut child = Command::new(WORKERS)
        .env("DATABASE_URL", db.url())
        .env("WORKERS_POLL_MS", "50")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("workers running"), "{line}");
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "workers did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
