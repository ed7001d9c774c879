//! Catalog fixtures: a facility, a product on sale there, contracts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::schema::{algorithms, contracts, facilities, pools, products};
use rust_decimal::Decimal;
use uuid::Uuid;

/// What differs between test facilities.
#[derive(Debug, Clone)]
pub struct FacilitySpec {
    pub country: &'static str,
    pub region: &'static str,
    pub miner_model: &'static str,
    /// J/TH.
    pub efficiency: Decimal,
    pub pue: Decimal,
    /// TH/s.
    pub total_hashrate: Decimal,
}

/// A SHA-256 facility.
pub async fn facility(conn: &mut AsyncPgConnection, spec: &FacilitySpec) -> anyhow::Result<Uuid> {
    diesel::insert_into(algorithms::table)
        .values((
            algorithms::code.eq("sha256"),
            algorithms::name.eq("SHA-256"),
            algorithms::hashrate_unit.eq("TH/s"),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let id = Uuid::now_v7();
    diesel::insert_into(facilities::table)
        .values((
            facilities::id.eq(id),
            facilities::name.eq(format!("Facility {}", id.simple())),
            facilities::country.eq(spec.country),
            facilities::region.eq(spec.region),
            facilities::miner_model.eq(spec.miner_model),
            facilities::efficiency.eq(spec.efficiency),
            facilities::efficiency_unit.eq("J/TH"),
            facilities::pue.eq(spec.pue),
            facilities::total_hashrate.eq(spec.total_hashrate),
            facilities::sellable_hashrate.eq(spec.total_hashrate),
            facilities::algorithm.eq("sha256"),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// A BTC product on sale at `facility` (with its own pool).
pub async fn product(conn: &mut AsyncPgConnection, facility: Uuid) -> anyhow::Result<Uuid> {
    let pool = Uuid::now_v7();
    diesel::insert_into(pools::table)
        .values((
            pools::id.eq(pool),
            pools::name.eq(format!("Pool {}", pool.simple())),
            pools::algorithm.eq("sha256"),
            pools::coins.eq(vec!["BTC".to_owned()]),
            pools::facility_id.eq(facility),
        ))
        .execute(conn)
        .await?;
    let id = Uuid::now_v7();
    diesel::insert_into(products::table)
        .values((
            products::id.eq(id),
            products::name.eq(format!("Product {}", id.simple())),
            products::algorithm.eq("sha256"),
            products::mined_coins.eq(vec!["BTC".to_owned()]),
            products::pool_id.eq(pool),
            products::facility_id.eq(facility),
            products::hashrate_unit.eq("TH/s"),
            products::hashrate_min.eq(Decimal::ONE),
            products::hashrate_max.eq(Decimal::from(100_000)),
            products::hashrate_step.eq(Decimal::ONE),
            products::price_usd_per_unit.eq(Decimal::from(15)),
            products::duration_days.eq(30),
            products::fee_usd_per_unit_day.eq(Decimal::new(5, 2)),
            products::pay_assets.eq(vec!["BTC".to_owned()]),
            products::payout_assets.eq(vec!["BTC".to_owned()]),
            products::stop_rule.eq("none"),
            products::stop_after_days.eq(3),
            products::inventory.eq(Decimal::from(10_000_000)),
            products::state.eq("on_sale"),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}

/// An active contract of `user` for `hashrate` TH/s over [starts_at, ends_at).
pub async fn contract(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    product: Uuid,
    hashrate: Decimal,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    diesel::insert_into(contracts::table)
        .values((
            contracts::id.eq(id),
            contracts::user_id.eq(user),
            contracts::product_id.eq(product),
            contracts::terms.eq(serde_json::json!({"mined_coins": ["BTC"]})),
            contracts::hashrate.eq(hashrate),
            contracts::pay_asset.eq("BTC"),
            contracts::paid_amount.eq(Decimal::ONE),
            contracts::payout_asset.eq("BTC"),
            contracts::state.eq("active"),
            contracts::starts_at.eq(starts_at),
            contracts::ends_at.eq(ends_at),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}
