//! Reference data that every environment needs, and the demo seed.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, TransferKind};
use crate::money::{Amount, Asset, Network, Sign, decimals_on};
use crate::schema::{asset_networks, assets, networks, users};

/// Makes the assets and networks tables match `domain::money`, the source of
/// truth. Idempotent; runs at every start.
pub async fn reference_data(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    conn.transaction(async |conn| {
        for asset in Asset::ALL {
            let decimals = i32::try_from(asset.ledger_decimals()).unwrap_or(18);
            diesel::insert_into(assets::table)
                .values((
                    assets::code.eq(asset.to_string()),
                    assets::name.eq(asset.name()),
                    assets::ledger_decimals.eq(decimals),
                ))
                .on_conflict(assets::code)
                .do_update()
                .set((
                    assets::name.eq(excluded(assets::name)),
                    assets::ledger_decimals.eq(excluded(assets::ledger_decimals)),
                ))
                .execute(conn)
                .await?;
        }
        for network in Network::ALL {
            let confirmations = i32::try_from(network.confirmations()).unwrap_or(i32::MAX);
            diesel::insert_into(networks::table)
                .values((
                    networks::code.eq(network.to_string()),
                    networks::name.eq(network.name()),
                    networks::native_symbol.eq(network.native_symbol()),
                    networks::confirmations.eq(confirmations),
                ))
                .on_conflict(networks::code)
                .do_update()
                .set((
                    networks::name.eq(excluded(networks::name)),
                    networks::native_symbol.eq(excluded(networks::native_symbol)),
                ))
                .execute(conn)
                .await?;
        }
        for asset in Asset::ALL {
            for network in Network::ALL {
                if let Some(decimals) = decimals_on(asset, network) {
                    let decimals = i32::try_from(decimals).unwrap_or(18);
                    diesel::insert_into(asset_networks::table)
                        .values((
                            asset_networks::asset.eq(asset.to_string()),
                            asset_networks::network.eq(network.to_string()),
                            asset_networks::decimals.eq(decimals),
                        ))
                        .on_conflict((asset_networks::asset, asset_networks::network))
                        .do_update()
                        .set(asset_networks::decimals.eq(excluded(asset_networks::decimals)))
                        .execute(conn)
                        .await?;
                    // Withdrawal policy defaults, only where nobody configured one.
                    let (fee, min, auto, daily) =
                        crate::custody::withdrawals::default_policy(asset, network);
                    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap_or_default();
                    diesel::update(
                        asset_networks::table
                            .filter(asset_networks::asset.eq(asset.code()))
                            .filter(asset_networks::network.eq(network.code()))
                            .filter(asset_networks::withdrawal_fee.eq(rust_decimal::Decimal::ZERO))
                            .filter(asset_networks::withdrawal_min.eq(rust_decimal::Decimal::ZERO))
                            .filter(
                                asset_networks::auto_approve_max.eq(rust_decimal::Decimal::ZERO),
                            )
                            .filter(asset_networks::daily_limit.eq(rust_decimal::Decimal::ZERO)),
                    )
                    .set((
                        asset_networks::withdrawal_fee.eq(dec(fee)),
                        asset_networks::withdrawal_min.eq(dec(min)),
                        asset_networks::auto_approve_max.eq(dec(auto)),
                        asset_networks::daily_limit.eq(dec(daily)),
                        // No Tron node adapter yet: its withdrawals would only wait.
                        asset_networks::withdrawals_enabled.eq(network != Network::Tron),
                    ))
                    .execute(conn)
                    .await?;
                }
            }
        }
        crate::carbon::factors::seed_reference(conn)
            .await
            .map_err(|e| match e {
                crate::carbon::factors::FactorError::Database(d) => d,
                other => diesel::result::Error::QueryBuilderError(other.to_string().into()),
            })?;
        Ok(())
    })
    .await
}

/// An Ethereum address (anvil's dev account 9) on the demo customer's
/// withdrawal allow-list, confirmed and past its cool-down, so a newcomer can
/// withdraw at once against the local chain `scripts/start` runs.
pub const DEMO_WITHDRAWAL_ADDRESS: &str = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720";

async fn demo_withdrawal_address(
    conn: &mut AsyncPgConnection,
    customer: uuid::Uuid,
) -> Result<(), diesel::result::Error> {
    use crate::schema::withdrawal_addresses as wa;
    let exists: i64 = wa::table
        .filter(wa::user_id.eq(customer))
        .filter(wa::address.eq(DEMO_WITHDRAWAL_ADDRESS))
        .filter(wa::state.ne("removed"))
        .count()
        .get_result(conn)
        .await?;
    if exists == 0 {
        let now = chrono::Utc::now();
        diesel::insert_into(wa::table)
            .values((
                wa::id.eq(uuid::Uuid::now_v7()),
                wa::user_id.eq(customer),
                wa::network.eq("ethereum"),
                wa::address.eq(DEMO_WITHDRAWAL_ADDRESS),
                wa::label.eq("demo (local chain)"),
                wa::state.eq("confirmed"),
                wa::confirm_expires_at.eq(now),
                wa::confirmed_at.eq(Some(now - chrono::Duration::hours(25))),
                wa::usable_from.eq(Some(now - chrono::Duration::hours(1))),
            ))
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub const DEMO_ADMIN_EMAIL: &str = "admin@hashgrid.local";
pub const DEMO_CUSTOMER_EMAIL: &str = "demo@hashgrid.local";

/// What the demo customer starts with, per asset.
const DEMO_BALANCES: [(Asset, &str); 6] = [
    (Asset::BTC, "1.5"),
    (Asset::ETH, "20"),
    (Asset::DOGE, "100000"),
    (Asset::BNB, "40"),
    (Asset::USDT, "50000"),
    (Asset::USDC, "50000"),
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error("demo seed: {0}")]
    Other(String),
}

/// The demo seed (`HASHGRID_DEMO=1`): reference data, the platform's own
/// accounts, the superadmin `admin@hashgrid.local` and the verified customer
/// `demo@hashgrid.local` with a balance in every asset. `password_hash` is
/// the argon2 hash of `HASHGRID_DEMO_PASSWORD` (reset at every start).
/// Idempotent: balances are posted under fixed references.
pub async fn demo(conn: &mut AsyncPgConnection, password_hash: &str) -> Result<(), SeedError> {
    platform_accounts(conn).await?;
    let now = chrono::Utc::now();
    for (email, role) in [
        (DEMO_ADMIN_EMAIL, Some("superadmin")),
        (DEMO_CUSTOMER_EMAIL, None),
    ] {
        diesel::insert_into(users::table)
            .values((
                users::id.eq(uuid::Uuid::now_v7()),
                users::email.eq(email),
                users::password_hash.eq(password_hash),
                users::country.eq("DE"),
                users::role.eq(role),
                users::email_verified_at.eq(now),
            ))
            // The printed demo password must work after a restart too.
            .on_conflict(users::email)
            .do_update()
            .set(users::password_hash.eq(password_hash))
            .execute(conn)
            .await?;
    }
    let customer: uuid::Uuid = users::table
        .filter(users::email.eq(DEMO_CUSTOMER_EMAIL))
        .select(users::id)
        .first(conn)
        .await?;
    // Balances arrive as deposits from a demo funding account, as real ones would.
    let funding = Owner::Network("demo-funding".to_owned());
    for (asset, amount) in DEMO_BALANCES {
        let amount = Amount::parse(amount, asset, Sign::Positive)
            .map_err(|e| SeedError::Other(e.to_string()))?;
        let source = ledger::open_account(conn, &funding, asset, AccountKind::Custody).await?;
        let account =
            ledger::open_account(conn, &Owner::User(customer), asset, AccountKind::Customer)
                .await?;
        let t = NewTransfer::new(
            format!("demo:deposit:{asset}"),
            TransferKind::Deposit,
            source.id,
            account.id,
            amount,
        );
        ledger::post_batch(conn, &[t.into()]).await?;
    }
    demo_withdrawal_address(conn, customer).await?;
    demo_catalog(conn).await?;
    Ok(())
}

/// The demo catalog, from ../shared/data: SHA-256 plans mining BTC at
/// facilities in Texas, Norway and Paraguay, a Scrypt plan mining LTC with
/// merge-mined DOGE in Kazakhstan, payouts converted to ETH, BNB, USDT and
/// USDC, current prices and network inputs. Idempotent (by name).
pub async fn demo_catalog(conn: &mut AsyncPgConnection) -> Result<(), SeedError> {
    use crate::schema::{algorithms, facilities, network_stats, pools, prices, products};
    use rust_decimal::Decimal;
    let dec = |s: &str| {
        s.parse::<Decimal>()
            .map_err(|e| SeedError::Other(format!("{s}: {e}")))
    };
    let now = chrono::Utc::now();
    for (code, name, unit) in [("sha256", "SHA-256", "TH/s"), ("scrypt", "Scrypt", "MH/s")] {
        diesel::insert_into(algorithms::table)
            .values((
                algorithms::code.eq(code),
                algorithms::name.eq(name),
                algorithms::hashrate_unit.eq(unit),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    // (name, country, region, model, efficiency, unit, pue, total, sellable, algorithm)
    let sites = [
        (
            "Permian Basin 1",
            "US",
            "Texas (ERCOT)",
            "Antminer S21 XP",
            "13.5",
            "J/TH",
            "1.05",
            "60000",
            "50000",
            "sha256",
        ),
        (
            "Fjord Hydro",
            "NO",
            "Vestland",
            "Antminer S19 XP",
            "21.5",
            "J/TH",
            "1.03",
            "30000",
            "24000",
            "sha256",
        ),
        (
            "Itaipu West",
            "PY",
            "Alto Paraná",
            "Antminer S21 Pro",
            "15.1",
            "J/TH",
            "1.06",
            "40000",
            "32000",
            "sha256",
        ),
        (
            "Ekibastuz Scrypt",
            "KZ",
            "Pavlodar",
            "Antminer L9",
            "0.21",
            "J/MH",
            "1.10",
            "3200000",
            "2400000",
            "scrypt",
        ),
    ];
    for (name, country, region, model, eff, unit, pue, total, sellable, algo) in sites {
        diesel::insert_into(facilities::table)
            .values((
                facilities::id.eq(uuid::Uuid::now_v7()),
                facilities::name.eq(name),
                facilities::country.eq(country),
                facilities::region.eq(region),
                facilities::miner_model.eq(model),
                facilities::efficiency.eq(dec(eff)?),
                facilities::efficiency_unit.eq(unit),
                facilities::pue.eq(dec(pue)?),
                facilities::total_hashrate.eq(dec(total)?),
                facilities::sellable_hashrate.eq(dec(sellable)?),
                facilities::algorithm.eq(algo),
            ))
            .on_conflict(facilities::name)
            .do_nothing()
            .execute(conn)
            .await?;
    }
    // Each site's grid region for the emission factors (no renewable
    // contract: without certificates nothing may be claimed as covered).
    for (name, grid) in [
        ("Permian Basin 1", "USA-Texas-ERCOT"),
        ("Fjord Hydro", "Norway"),
        ("Itaipu West", "Paraguay"),
        ("Ekibastuz Scrypt", "Kazakhstan"),
    ] {
        diesel::sql_query(
            "INSERT INTO facility_energy (facility_id, grid_region, renewable_share_pct, updated_by) \
             SELECT id, $2, 0, 'seed' FROM facilities WHERE name = $1 \
             ON CONFLICT (facility_id) DO NOTHING",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .bind::<diesel::sql_types::Text, _>(grid)
        .execute(conn)
        .await?;
    }
    let facility =
        async |conn: &mut AsyncPgConnection, name: &str| -> Result<uuid::Uuid, SeedError> {
            Ok(facilities::table
                .filter(facilities::name.eq(name))
                .select(facilities::id)
                .first(conn)
                .await?)
        };
    // (pool, algorithm, coins, facility)
    let pool_rows: [(&str, &str, &[&str], &str); 4] = [
        (
            "Hashgrid BTC · Texas",
            "sha256",
            &["BTC"],
            "Permian Basin 1",
        ),
        ("Hashgrid BTC · Norway", "sha256", &["BTC"], "Fjord Hydro"),
        ("Hashgrid BTC · Paraguay", "sha256", &["BTC"], "Itaipu West"),
        (
            "Hashgrid LTC+DOGE · Kazakhstan",
            "scrypt",
            &["LTC", "DOGE"],
            "Ekibastuz Scrypt",
        ),
    ];
    for (name, algo, coins, site) in pool_rows {
        let facility_id = facility(conn, site).await?;
        let coins: Vec<String> = coins.iter().map(|c| (*c).to_owned()).collect();
        diesel::insert_into(pools::table)
            .values((
                pools::id.eq(uuid::Uuid::now_v7()),
                pools::name.eq(name),
                pools::algorithm.eq(algo),
                pools::coins.eq(coins),
                pools::facility_id.eq(facility_id),
                pools::external_account.eq(format!("demo-{}", algo)),
            ))
            .on_conflict(pools::name)
            .do_nothing()
            .execute(conn)
            .await?;
    }
    let all: Vec<String> = Asset::ALL.iter().map(|a| a.code().to_owned()).collect();
    let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    // (name, pool, mined, unit, min, max, step, usd/unit, days, fee/unit/day, payouts, stop rule, inventory)
    type Plan<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        i32,
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
    );
    let plans: [Plan; 5] = [
        (
            "BTC 180 days · S21 XP Texas",
            "Hashgrid BTC · Texas",
            &["BTC"],
            "TH/s",
            "10",
            "5000",
            "10",
            "14.50",
            180,
            "0.0195",
            &["BTC", "USDT", "USDC"],
            "pause_extend",
            "30000",
        ),
        (
            "BTC 365 days · S19 XP Norway hydro",
            "Hashgrid BTC · Norway",
            &["BTC"],
            "TH/s",
            "10",
            "2000",
            "10",
            "11.80",
            365,
            "0.0280",
            &["BTC", "ETH"],
            "stop",
            "20000",
        ),
        (
            "BTC 90 days · S21 Pro Paraguay hydro",
            "Hashgrid BTC · Paraguay",
            &["BTC"],
            "TH/s",
            "10",
            "3000",
            "10",
            "9.90",
            90,
            "0.0160",
            &["BTC", "BNB", "USDT"],
            "pause_extend",
            "25000",
        ),
        (
            "BTC to stablecoins · S21 XP Texas",
            "Hashgrid BTC · Texas",
            &["BTC"],
            "TH/s",
            "50",
            "5000",
            "50",
            "14.90",
            365,
            "0.0195",
            &["USDC", "USDT"],
            "pause_extend",
            "15000",
        ),
        (
            "LTC+DOGE 180 days · L9 Kazakhstan",
            "Hashgrid LTC+DOGE · Kazakhstan",
            &["LTC", "DOGE"],
            "MH/s",
            "100",
            "200000",
            "100",
            "0.62",
            180,
            "0.00030",
            &["DOGE", "USDT", "USDC", "ETH"],
            "stop",
            "2000000",
        ),
    ];
    for (
        name,
        pool_name,
        mined,
        unit,
        min,
        max,
        step,
        price,
        days,
        fee,
        payouts,
        stop,
        inventory,
    ) in plans
    {
        let exists: i64 = products::table
            .filter(products::name.eq(name))
            .count()
            .get_result(conn)
            .await?;
        if exists > 0 {
            continue;
        }
        let (pool_id, facility_id, algo): (uuid::Uuid, uuid::Uuid, String) = pools::table
            .filter(pools::name.eq(pool_name))
            .select((pools::id, pools::facility_id, pools::algorithm))
            .first(conn)
            .await?;
        diesel::insert_into(products::table)
            .values((
                products::id.eq(uuid::Uuid::now_v7()),
                products::name.eq(name),
                products::algorithm.eq(algo),
                products::mined_coins.eq(list(mined)),
                products::pool_id.eq(pool_id),
                products::facility_id.eq(facility_id),
                products::hashrate_unit.eq(unit),
                products::hashrate_min.eq(dec(min)?),
                products::hashrate_max.eq(dec(max)?),
                products::hashrate_step.eq(dec(step)?),
                products::price_usd_per_unit.eq(dec(price)?),
                products::duration_days.eq(days),
                products::fee_usd_per_unit_day.eq(dec(fee)?),
                products::pay_assets.eq(&all),
                products::payout_assets.eq(list(payouts)),
                products::spread_bps.eq(50),
                products::stop_rule.eq(stop),
                products::stop_after_days.eq(3),
                products::inventory.eq(dec(inventory)?),
                products::state.eq("on_sale"),
            ))
            .execute(conn)
            .await?;
    }
    // Reference prices (posted now, so quotes work at once) and network inputs.
    for (asset, usd) in [
        ("BTC", "97250"),
        ("ETH", "3620"),
        ("DOGE", "0.385"),
        ("BNB", "655"),
        ("USDT", "1"),
        ("USDC", "1"),
        ("LTC", "104.5"),
    ] {
        // One observation now (quotes) and one before midnight (today's fixing).
        let before_midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
            - chrono::Duration::hours(1);
        for observed in [before_midnight, now] {
            diesel::insert_into(prices::table)
                .values((
                    prices::asset.eq(asset),
                    prices::usd.eq(dec(usd)?),
                    prices::source.eq("demo"),
                    prices::observed_at.eq(observed),
                ))
                .execute(conn)
                .await?;
        }
    }
    for (coin, difficulty, reward, fees) in [
        ("BTC", "102289407543323", "3.125", "0.03"),
        ("LTC", "62000000", "6.25", "0.01"),
        ("DOGE", "38000000", "10000", "5"),
    ] {
        diesel::insert_into(network_stats::table)
            .values((
                network_stats::coin.eq(coin),
                network_stats::difficulty.eq(dec(difficulty)?),
                network_stats::block_reward.eq(dec(reward)?),
                network_stats::fees_per_block.eq(dec(fees)?),
                network_stats::source.eq("demo"),
                network_stats::observed_at.eq(now),
            ))
            .on_conflict(network_stats::coin)
            .do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The platform's own accounts in every asset.
pub async fn platform_accounts(conn: &mut AsyncPgConnection) -> Result<(), SeedError> {
    reference_data(conn).await?;
    for asset in Asset::ALL {
        for kind in [
            AccountKind::House,
            AccountKind::FeeRevenue,
            AccountKind::SalesRevenue,
            AccountKind::ConversionTreasury,
            AccountKind::Rounding,
            AccountKind::Equity,
        ] {
            ledger::open_account(conn, &Owner::Platform, asset, kind).await?;
        }
    }
    Ok(())
}
