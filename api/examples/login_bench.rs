//! Login throughput: the real app in-process on a scratch database, 16
//! concurrent clients logging in for a fixed time; also the argon2 time per
//! hash. `cargo run --release -p api --example login_bench -- [--clients 16] [--seconds 10]`
//!
//! Each request comes from its own X-Forwarded-For address and the accounts
//! rotate so that the per-IP and per-account rate limits (which would
//! otherwise answer 429 after a few attempts, as they should) do not cap the
//! measurement. Needs PostgreSQL and Redis on localhost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use api::config::Config;
use api::state::AppState;
use chrono::Utc;
use domain::identity::store;

const PASSWORD: &str = "bench password with enough length";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = usize::try_from(arg("--clients", 16))?;
    let seconds = arg("--seconds", 10);
    let db = testkit::TestDb::new().await?;
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", testkit::redis_url()),
        ("HASHGRID_TRUST_PROXY", "1".to_owned()),
        ("HASHGRID_DB_POOL_SIZE", "32".to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned())?;
    let state = AppState::new(config, db.pool())?;

    // argon2 cost on this machine.
    let hasher = state.identity.hasher.clone();
    let n = 20;
    let t = Instant::now();
    let mut hash = String::new();
    for _ in 0..n {
        hash = hasher.hash(PASSWORD).await?;
    }
    let per_hash = t.elapsed() / n;
    let params = hasher.params();
    println!(
        "argon2id m={} KiB t={} p={}: {:.1} ms per hash (mean of {n}, sequential)",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        per_hash.as_secs_f64() * 1000.0
    );

    // Accounts: enough that none is used more than its per-account limit allows.
    let accounts = 400;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut conn = db.conn().await?;
    let mut emails = Vec::with_capacity(accounts);
    for i in 0..accounts {
        let email = format!("bench-{run}-{i}@example.com");
        store::insert_user(
            &mut conn,
            &store::NewUser {
                id: uuid::Uuid::now_v7(),
                email: &email,
                password_hash: &hash,
                country: "DE",
                role: None,
                partner_id: None,
                email_verified_at: Some(Utc::now()),
                must_change_password: false,
            },
        )
        .await?;
        emails.push(email);
    }
    drop(conn);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = api::app::serve(state, listener, |_| {})?;
    let handle = server.handle();
    tokio::spawn(server);
    let base = format!("http://{addr}");

    let emails = Arc::new(emails);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (emails, next, base) = (emails.clone(), next.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let email = &emails[i % emails.len()];
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                let t = Instant::now();
                let res = client
                    .post(format!("{base}/v1/auth/login"))
                    .header("x-forwarded-for", ip)
                    .json(&serde_json::json!({ "email": email, "password": PASSWORD }))
                    .send()
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
                *statuses.entry(res.status().as_u16()).or_default() += 1;
            }
            (latencies, statuses)
        }));
    }
    // Meanwhile a cheap request must stay fast: hashing runs on a bounded
    // blocking pool, not on the request threads.
    let probe = {
        let base = base.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut l = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                client.get(format!("{base}/healthz")).send().await.unwrap();
                l.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            l.sort();
            l
        })
    };
    let mut latencies = Vec::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        let (l, s) = t.await?;
        latencies.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    latencies.sort();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "login: {clients} clients for {seconds} s: {} requests, {ok} ok ({:.1} logins/s), p50 {:.0} ms, p99 {:.0} ms, statuses {statuses:?}",
        latencies.len(),
        ok as f64 / seconds as f64,
        pct(0.5),
        pct(0.99),
    );
    let health = probe.await?;
    let hp = |p: f64| {
        let idx = ((health.len() as f64 - 1.0) * p).round() as usize;
        health.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "healthz during the storm: {} requests, p50 {:.1} ms, p99 {:.1} ms",
        health.len(),
        hp(0.5),
        hp(0.99)
    );
    handle.stop(true).await;
    Ok(())
}
