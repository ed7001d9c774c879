//! Computes one carbon day of N contracts spread over F facilities (half of
//! them metered) on a scratch database, as the `carbon_day` job does.
//! `cargo run --release -p workers --example carbon_bench -- --contracts N [--facilities F]`
//! Ends with: `carbon: N contract-days in S s (R contract-days/s), conserved yes|no, peak RSS M MiB`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "shared/mod.rs"]
mod shared;

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use diesel_async::RunQueryDsl;
use domain::carbon::{daily, meter, report};
use rust_decimal_macros::dec;
use testkit::catalog::{self, FacilitySpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = shared::arg("--contracts", 100_000);
    let f = shared::arg("--facilities", 10).max(1);
    let db = testkit::TestDb::with_pool_size(2).await?;
    let mut conn = db.conn().await?;
    let day = (Utc::now() - TimeDelta::days(1)).date_naive();
    let regions = [
        "USA-Texas-ERCOT",
        "Norway",
        "Kazakhstan",
        "Canada-Quebec",
        "Bhutan",
    ];
    let t = Instant::now();
    diesel::sql_query(
        "INSERT INTO users (id, email, password_hash, country, email_verified_at) \
         SELECT gen_random_uuid(), 'carbon-bench-' || g || '@example.com', 'x', 'DE', now() FROM generate_series(1, $1) g",
    )
    .bind::<diesel::sql_types::BigInt, _>(i64::try_from(n.div_ceil(10))?)
    .execute(&mut conn)
    .await?;
    for i in 0..f {
        let facility = catalog::facility(
            &mut conn,
            &FacilitySpec {
                country: "US",
                region: regions[usize::try_from(i)? % regions.len()],
                miner_model: "Antminer S21 XP",
                efficiency: dec!(13.5),
                pue: dec!(1.05),
                total_hashrate: dec!(100000000),
            },
        )
        .await?;
        let product = catalog::product(&mut conn, facility).await?;
        let per = n / f + u64::from(i < n % f);
        diesel::sql_query(
            "INSERT INTO contracts (id, user_id, product_id, terms, hashrate, pay_asset, paid_amount, payout_asset, state, starts_at, ends_at) \
             SELECT gen_random_uuid(), u.id, $1, '{}'::jsonb, (10 + (g % 50) * 10)::numeric, 'BTC', 1, 'BTC', 'active', $2::date - 1, $2::date + 29 \
             FROM generate_series(1, $3) g \
             JOIN LATERAL (SELECT id FROM users WHERE email = 'carbon-bench-' || (1 + (g - 1) % $4) || '@example.com') u ON true",
        )
        .bind::<diesel::sql_types::Uuid, _>(product)
        .bind::<diesel::sql_types::Date, _>(day)
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(per)?)
        .bind::<diesel::sql_types::BigInt, _>(i64::try_from(n.div_ceil(10))?)
        .execute(&mut conn)
        .await?;
        if i % 2 == 0 {
            meter::import(
                &mut conn,
                facility,
                "bench",
                "bench",
                &[meter::Reading {
                    day,
                    hour: None,
                    kwh: "9876543.21".into(),
                }],
            )
            .await?;
        }
    }
    eprintln!(
        "seeded {n} contracts at {f} facilities in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let done = daily::compute_day(&mut conn, day).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(done.errors.is_empty(), "{:?}", done.errors);
    let conserved = report::energy_conservation(&mut conn).await?.is_empty();
    println!(
        "carbon: {} contract-days in {secs:.1} s ({:.0} contract-days/s), conserved {}, peak RSS {} MiB",
        done.contract_days,
        done.contract_days as f64 / secs,
        if conserved { "yes" } else { "no" },
        shared::peak_rss_mib()
    );
    Ok(())
}
