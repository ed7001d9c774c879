//! Order throughput: the real app in-process on a scratch database; 64
//! funded customers buy concurrently (quote, then order with an
//! Idempotency-Key) for a fixed time. Prints orders/s and the p50/p99 of
//! `POST /v1/orders`, then checks that the ledger reconciles and that the
//! product's sold hashrate equals the sum of the contracts.
//! `cargo run --release -p api --example order_bench -- [--buyers 64] [--seconds 10]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use api::config::Config;
use api::state::AppState;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::identity::store;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{contracts, products};

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
    let buyers = usize::try_from(arg("--buyers", 64))?;
    let seconds = arg("--seconds", 10);
    let db = testkit::TestDb::with_pool_size(8).await?;
    let vars: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", testkit::redis_url()),
        ("HASHGRID_TRUST_PROXY", "1".to_owned()),
        ("HASHGRID_DB_POOL_SIZE", "24".to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned())?;
    let state = AppState::new(config, db.pool())?;

    // The demo catalog gives products, prices and network inputs.
    let mut conn = db.conn().await?;
    domain::seed::platform_accounts(&mut conn).await?;
    domain::seed::demo_catalog(&mut conn).await?;
    let product: uuid::Uuid = products::table
        .filter(products::name.like("BTC 180 days%"))
        .select(products::id)
        .first(&mut conn)
        .await?;
    diesel::update(products::table.find(product))
        .set(products::inventory.eq(rust_decimal::Decimal::from(10_000_000)))
        .execute(&mut conn)
        .await?;
    let hash = state
        .identity
        .hasher
        .hash("bench password with enough length")
        .await?;
    let bank = ledger::open_account(
        &mut conn,
        &Owner::Network("bench".into()),
        Asset::USDT,
        AccountKind::Custody,
    )
    .await?;
    let mut tokens = Vec::new();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let mut emails = Vec::new();
    for i in 0..buyers {
        let email = format!("buyer-{i}-{}@example.com", uuid::Uuid::new_v4().simple());
        let user = store::insert_user(
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
        let account = ledger::open_account(
            &mut conn,
            &Owner::User(user.id),
            Asset::USDT,
            AccountKind::Customer,
        )
        .await?;
        let amount = Amount::parse("100000000", Asset::USDT, Sign::Positive)?;
        ledger::post_batch(
            &mut conn,
            &[NewTransfer::new(
                format!("fund:{i}"),
                TransferKind::Deposit,
                bank.id,
                account.id,
                amount,
            )
            .into()],
        )
        .await?;
        emails.push(email);
    }
    drop(conn);
    let server = api::app::serve(state, listener, |_| {})?;
    let handle = server.handle();
    tokio::spawn(server);
    let client = reqwest::Client::new();
    for (i, email) in emails.iter().enumerate() {
        let res: serde_json::Value = client
            .post(format!("{base}/v1/auth/login"))
            .header("x-forwarded-for", format!("10.9.{}.{}", i / 250, i % 250))
            .json(&serde_json::json!({ "email": email, "password": "bench password with enough length" }))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(res["access_token"].as_str().unwrap().to_owned());
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (base, client) = (base.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: HashMap<u16, usize> = HashMap::new();
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let quote: serde_json::Value = client
                    .post(format!("{base}/v1/quotes"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "product_id": product, "hashrate": "10", "pay_asset": "USDT" }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let t = Instant::now();
                let res = client
                    .post(format!("{base}/v1/orders"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", format!("bench-{i}-{n}"))
                    .json(&serde_json::json!({ "quote_id": quote["id"] }))
                    .send()
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
                *statuses.entry(res.status().as_u16()).or_default() += 1;
            }
            (latencies, statuses)
        }));
    }
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
    let pct = |p: f64| {
        let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ok = statuses.get(&201).copied().unwrap_or(0);
    let mut conn = db.conn().await?;
    let contracts_n: i64 = contracts::table.count().get_result(&mut conn).await?;
    let sold: rust_decimal::Decimal = products::table
        .find(product)
        .select(products::sold)
        .first(&mut conn)
        .await?;
    let reconciled = ledger::reconcile(&mut conn).await?.is_empty();
    println!(
        "orders: {buyers} buyers for {seconds} s: {ok} orders ({:.1} orders/s), POST /v1/orders p50 {:.1} ms, p99 {:.1} ms, statuses {statuses:?}; contracts {contracts_n}, sold {} TH/s, ledger reconciles: {}",
        ok as f64 / seconds as f64,
        pct(0.5),
        pct(0.99),
        sold.normalize(),
        if reconciled { "yes" } else { "NO" }
    );
    handle.stop(true).await;
    Ok(())
}
