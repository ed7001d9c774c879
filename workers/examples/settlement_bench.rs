//! Settles one pool-day of N active contracts on a scratch database and
//! compares it with a plain COPY of N transfer-shaped rows in the same run.
//! `cargo run --release -p workers --example settlement_bench -- --contracts N [--per-customer K]`
//! (K contracts per customer, default 10).
//! Ends with: `settlement: N contracts in S s (R contracts/s), copy baseline
//! B s, ratio X, conserved yes|no, peak RSS M MiB`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "shared/mod.rs"]
mod shared;

use std::time::Instant;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::schema::{pool_earnings, price_fixings, products};
use futures::SinkExt;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = shared::arg("--contracts", 100_000);
    // Contracts per customer (each customer account gets one payout transfer).
    let per_customer = shared::arg("--per-customer", 10).max(1);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("domain=info"))
        .with_writer(std::io::stderr)
        .try_init();
    let db = testkit::TestDb::with_pool_size(4).await?;
    let mut conn = db.conn().await?;
    domain::seed::platform_accounts(&mut conn).await?;
    domain::seed::demo_catalog(&mut conn).await?;
    let (product, pool, terms): (uuid::Uuid, uuid::Uuid, i32) = products::table
        .filter(products::name.like("BTC 180 days%"))
        .select((products::id, products::pool_id, products::duration_days))
        .first(&mut conn)
        .await?;
    let _ = terms;
    let day = (Utc::now() - chrono::Duration::days(1)).date_naive();
    // Seed: one user per K contracts, contracts active all day, paid in USDT, paid out in BTC.
    let t = Instant::now();
    let users = n.div_ceil(per_customer);
    diesel::sql_query(
        "INSERT INTO users (id, email, password_hash, country, email_verified_at) \
         SELECT gen_random_uuid(), 'bench-' || g || '@example.com', 'x', 'DE', now() FROM generate_series(1, $1) g",
    )
    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(users)?)
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO contracts (id, user_id, product_id, terms, hashrate, pay_asset, paid_amount, payout_asset, state, starts_at, ends_at) \
         SELECT gen_random_uuid(), u.id, p.id, \
                jsonb_build_object('pool_id', p.pool_id, 'fee_usd_per_unit_day', p.fee_usd_per_unit_day::text, \
                                   'mined_coins', p.mined_coins, 'spread_bps', p.spread_bps, 'payout_assets', p.payout_assets), \
                (10 + (g % 50) * 10)::numeric, 'USDT', 100, 'BTC', 'active', $2::date - 1, $2::date + 179 \
         FROM generate_series(0, $1 - 1) g \
         JOIN LATERAL (SELECT id FROM users WHERE email = 'bench-' || (g / $4 + 1) || '@example.com') u ON true \
         CROSS JOIN (SELECT * FROM products WHERE id = $3) p",
    )
    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(n)?)
    .bind::<diesel::sql_types::Date, _>(day)
    .bind::<diesel::sql_types::Uuid, _>(product)
    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(per_customer)?)
    .execute(&mut conn)
    .await?;
    let sold: Decimal = diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map(|_| Decimal::ZERO)?;
    let _ = sold;
    for (asset, usd) in [("BTC", dec!(97250)), ("USDT", dec!(1))] {
        diesel::insert_into(price_fixings::table)
            .values((
                price_fixings::asset.eq(asset),
                price_fixings::day.eq(day),
                price_fixings::usd.eq(usd),
                price_fixings::source.eq("bench"),
                price_fixings::observed_at.eq(Utc::now()),
            ))
            .execute(&mut conn)
            .await?;
    }
    // Earnings: about 60 sat per TH/s per day for the sold hashrate.
    let sold_th: Decimal = diesel::sql_query("SELECT sum(hashrate) AS s FROM contracts")
        .get_result::<SumRow>(&mut conn)
        .await?
        .s;
    let earnings = (sold_th * dec!(0.0000006)).round_dp(8);
    let earning = uuid::Uuid::now_v7();
    diesel::insert_into(pool_earnings::table)
        .values((
            pool_earnings::id.eq(earning),
            pool_earnings::pool_id.eq(pool),
            pool_earnings::day.eq(day),
            pool_earnings::coin.eq("BTC"),
            pool_earnings::amount.eq(earnings),
            pool_earnings::delivered_hashrate.eq(sold_th * dec!(1.02)),
            pool_earnings::difficulty.eq(dec!(102289407543323)),
            pool_earnings::pool_tx_ids.eq(vec!["bench".to_owned()]),
            pool_earnings::source.eq("bench"),
        ))
        .execute(&mut conn)
        .await?;
    eprintln!("seeded {n} contracts in {:.1} s", t.elapsed().as_secs_f64());

    // The settlement.
    let t = Instant::now();
    let s = domain::settlement::engine::settle(&mut conn, earning).await?;
    let settle_secs = t.elapsed().as_secs_f64();
    let problems = domain::ledger::reconcile(&mut conn).await?;
    let paid: Decimal = diesel::sql_query(
        "SELECT coalesce(sum(amount), 0) AS s FROM transfers WHERE reference LIKE 'payout:%' OR reference LIKE 'fees:%' \
         OR reference LIKE 'house:%' OR reference LIKE 'rounding:%'",
    )
    .get_result::<SumRow>(&mut conn)
    .await?
    .s;
    let conserved = problems.is_empty()
        && s.earnings == s.gross_total + s.house + s.remainder
        && s.gross_total == s.net_total + s.fees_total
        && paid == earnings
        && usize::try_from(s.contracts)? == usize::try_from(n)?;

    // The baseline: COPY n transfer rows into the transfers table itself
    // (its indexes, keys and checks: what writing a transfer costs here),
    // between two BTC accounts. Also, for reference, into a bare copy of it.
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let accounts = client
        .query(
            "SELECT id FROM accounts WHERE asset = 'BTC' AND kind IN ('custody', 'mining_income') ORDER BY id LIMIT 2",
            &[],
        )
        .await?;
    let (from, to): (i64, i64) = (accounts[0].get(0), accounts[1].get(0));
    client
        .batch_execute("CREATE TABLE copy_bare (LIKE transfers INCLUDING DEFAULTS); CHECKPOINT")
        .await?;
    let copy = async |table: &str, tag: &str| -> anyhow::Result<f64> {
        let t = Instant::now();
        let sink = client
            .copy_in(&format!("COPY {table} (id, reference, kind, phase, asset, debit_account_id, credit_account_id, amount) FROM STDIN"))
            .await?;
        futures::pin_mut!(sink);
        let mut buf = String::with_capacity(8 << 20);
        for i in 0..n {
            buf.push_str(&format!(
                "{}\tcopy:{tag}:{i}\tpayout\tsingle\tBTC\t{from}\t{to}\t0.00001234\n",
                uuid::Uuid::now_v7()
            ));
            if buf.len() > (4 << 20) {
                sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                    .await?;
            }
        }
        sink.send(bytes::Bytes::from(buf)).await?;
        sink.as_mut().finish().await?;
        Ok(t.elapsed().as_secs_f64())
    };
    let bare_secs = copy("copy_bare", "bare").await?;
    let copy_secs = copy("transfers", "real").await?;
    eprintln!(
        "copy of {n} rows: into transfers {copy_secs:.1} s, into a bare table (no index, key or check) {bare_secs:.1} s; \
         settlement / bare copy {:.1}",
        settle_secs / bare_secs
    );

    println!(
        "settlement: {n} contracts in {settle_secs:.1} s ({:.0} contracts/s), copy baseline {copy_secs:.1} s, ratio {:.1}, conserved {}, peak RSS {} MiB",
        n as f64 / settle_secs,
        settle_secs / copy_secs,
        if conserved { "yes" } else { "no" },
        shared::peak_rss_mib()
    );
    Ok(())
}

#[derive(QueryableByName)]
struct SumRow {
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    s: Decimal,
}
