//! Catalog rows and the terms a contract is sold with.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::schema::{algorithms, facilities, pools, products};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = algorithms, check_for_backend(diesel::pg::Pg))]
pub struct Algorithm {
    /// e.g. `sha256`, `scrypt`
    pub code: String,
    pub name: String,
    /// The unit hashrate is sold in, e.g. `TH/s`.
    pub hashrate_unit: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = facilities, check_for_backend(diesel::pg::Pg))]
pub struct Facility {
    pub id: Uuid,
    pub name: String,
    pub country: String,
    pub region: String,
    pub miner_model: String,
    #[schema(value_type = String)]
    pub efficiency: Decimal,
    /// `J/TH` or `J/MH`
    pub efficiency_unit: String,
    #[schema(value_type = String)]
    pub pue: Decimal,
    #[schema(value_type = String)]
    pub total_hashrate: Decimal,
    #[schema(value_type = String)]
    pub sellable_hashrate: Decimal,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = pools, check_for_backend(diesel::pg::Pg))]
pub struct Pool {
    pub id: Uuid,
    pub name: String,
    pub algorithm: String,
    /// The coins it pays, e.g. `["LTC", "DOGE"]` for merged Scrypt mining.
    pub coins: Vec<String>,
    pub facility_id: Uuid,
    pub external_account: String,
    pub created_at: DateTime<Utc>,
}

/// The states a product moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductState {
    Draft,
    OnSale,
    Paused,
    Retired,
}

impl ProductState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductState::Draft => "draft",
            ProductState::OnSale => "on_sale",
            ProductState::Paused => "paused",
            ProductState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ProductState::Draft,
            ProductState::OnSale,
            ProductState::Paused,
            ProductState::Retired,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// draft → on_sale ↔ paused → retired; retired is final.
    pub fn can_become(self, next: ProductState) -> bool {
        use ProductState as S;
        matches!(
            (self, next),
            (S::Draft, S::OnSale)
                | (S::Draft, S::Retired)
                | (S::OnSale, S::Paused)
                | (S::Paused, S::OnSale)
                | (S::OnSale, S::Retired)
                | (S::Paused, S::Retired)
        )
    }
}

/// What happens after `stop_after_days` consecutive days with zero net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// Keep running whatever the day earns.
    None,
    /// Suspend; resume when a day is profitable again; the paused days are added at the end.
    PauseExtend,
    /// Suspend; resume when profitable; the end date does not move.
    Stop,
}

impl StopRule {
    pub fn as_str(self) -> &'static str {
        match self {
            StopRule::None => "none",
            StopRule::PauseExtend => "pause_extend",
            StopRule::Stop => "stop",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [StopRule::None, StopRule::PauseExtend, StopRule::Stop]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub mined_coins: Vec<String>,
    pub pool_id: Uuid,
    pub facility_id: Uuid,
    pub hashrate_unit: String,
    #[schema(value_type = String)]
    pub hashrate_min: Decimal,
    #[schema(value_type = String)]
    pub hashrate_max: Decimal,
    #[schema(value_type = String)]
    pub hashrate_step: Decimal,
    #[schema(value_type = String)]
    pub price_usd_per_unit: Decimal,
    pub duration_days: i32,
    #[schema(value_type = String)]
    pub fee_usd_per_unit_day: Decimal,
    pub pay_assets: Vec<String>,
    pub payout_assets: Vec<String>,
    pub spread_bps: i32,
    pub stop_rule: String,
    pub stop_after_days: i32,
    #[schema(value_type = String)]
    pub inventory: Decimal,
    #[schema(value_type = String)]
    pub sold: Decimal,
    pub state: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    pub fn state(&self) -> Option<ProductState> {
        ProductState::parse(&self.state)
    }

    /// Hashrate still for sale.
    pub fn remaining(&self) -> Decimal {
        (self.inventory - self.sold).max(Decimal::ZERO)
    }

    /// The terms a contract sold now would keep, whatever later edits do.
    pub fn terms(&self) -> Terms {
        Terms {
            product_id: self.id,
            product_name: self.name.clone(),
            product_version: self.version,
            algorithm: self.algorithm.clone(),
            mined_coins: self.mined_coins.clone(),
            pool_id: self.pool_id,
            facility_id: self.facility_id,
            hashrate_unit: self.hashrate_unit.clone(),
            price_usd_per_unit: self.price_usd_per_unit.normalize(),
            duration_days: self.duration_days,
            fee_usd_per_unit_day: self.fee_usd_per_unit_day.normalize(),
            payout_assets: self.payout_assets.clone(),
            spread_bps: self.spread_bps,
            stop_rule: self.stop_rule.clone(),
            stop_after_days: self.stop_after_days,
        }
    }
}

/// A copy of a product's terms, stored with each quote and contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Terms {
    pub product_id: Uuid,
    pub product_name: String,
    pub product_version: i32,
    pub algorithm: String,
    pub mined_coins: Vec<String>,
    pub pool_id: Uuid,
    pub facility_id: Uuid,
    pub hashrate_unit: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub price_usd_per_unit: Decimal,
    pub duration_days: i32,
    /// The maintenance (electricity) fee, USD per unit per day.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String)]
    pub fee_usd_per_unit_day: Decimal,
    pub payout_assets: Vec<String>,
    /// The published spread on conversions, basis points.
    pub spread_bps: i32,
    pub stop_rule: String,
    pub stop_after_days: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_states_move_forward_only_where_allowed() {
        use ProductState as S;
        assert!(S::Draft.can_become(S::OnSale));
        assert!(S::OnSale.can_become(S::Paused) && S::Paused.can_become(S::OnSale));
        assert!(!S::Retired.can_become(S::OnSale));
        assert!(!S::OnSale.can_become(S::Draft));
    }
}
