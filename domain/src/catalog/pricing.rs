//! Pure pricing rules: hashrate steps, contract dates, the amount a quote
//! asks in the pay asset, and the yield estimate (hashprice).

use chrono::{DateTime, Duration, NaiveTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use utoipa::ToSchema;

use crate::money::{Amount, AmountError, Asset};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashrateError {
    #[error("at least {0}")]
    BelowMin(Decimal),
    #[error("at most {0}")]
    AboveMax(Decimal),
    #[error("must be a multiple of {0}")]
    NotAStep(Decimal),
    #[error("must be a positive decimal string")]
    NotPositive,
}

impl HashrateError {
    pub fn code(&self) -> &'static str {
        match self {
            HashrateError::BelowMin(_) => "below_min",
            HashrateError::AboveMax(_) => "above_max",
            HashrateError::NotAStep(_) => "not_a_step",
            HashrateError::NotPositive => "not_positive",
        }
    }
}

/// A hashrate a product can sell: within [min, max] and a whole number of steps.
pub fn check_hashrate(
    h: Decimal,
    min: Decimal,
    max: Decimal,
    step: Decimal,
) -> Result<(), HashrateError> {
    if h <= Decimal::ZERO {
        return Err(HashrateError::NotPositive);
    }
    if h < min {
        return Err(HashrateError::BelowMin(min.normalize()));
    }
    if h > max {
        return Err(HashrateError::AboveMax(max.normalize()));
    }
    if step > Decimal::ZERO && !(h % step).is_zero() {
        return Err(HashrateError::NotAStep(step.normalize()));
    }
    Ok(())
}

/// A contract bought at `at` starts at the next 00:00 UTC and runs `days` days.
pub fn contract_window(at: DateTime<Utc>, days: i32) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = (at.date_naive() + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc();
    (start, start + Duration::days(i64::from(days)))
}

/// What a quote asks: the USD price of the hashrate, converted at the
/// reference rate with the published spread added, rounded UP to the pay
/// asset's precision (the platform never sells below its price).
pub fn quote_amount(
    hashrate: Decimal,
    price_usd_per_unit: Decimal,
    pay_asset: Asset,
    usd_per_pay_unit: Decimal,
    spread_bps: i32,
) -> Result<(Decimal, Amount), AmountError> {
    let price_usd = hashrate
        .checked_mul(price_usd_per_unit)
        .ok_or(AmountError::TooLarge)?;
    if usd_per_pay_unit <= Decimal::ZERO {
        return Err(AmountError::Zero);
    }
    let spread = Decimal::ONE + Decimal::from(spread_bps) / Decimal::from(10_000);
    let raw = price_usd
        .checked_div(usd_per_pay_unit)
        .and_then(|v| v.checked_mul(spread))
        .ok_or(AmountError::TooLarge)?;
    let rounded =
        raw.round_dp_with_strategy(pay_asset.ledger_decimals(), RoundingStrategy::AwayFromZero);
    Ok((
        price_usd.normalize(),
        Amount::from_decimal(rounded.normalize(), pay_asset)?,
    ))
}

/// Hashes per second in one unit.
pub fn unit_hashes(unit: &str) -> Option<Decimal> {
    let exp = match unit {
        "H/s" => 0,
        "KH/s" => 3,
        "MH/s" => 6,
        "GH/s" => 9,
        "TH/s" => 12,
        "PH/s" => 15,
        _ => return None,
    };
    Some(Decimal::from(10u64.pow(exp)))
}

/// Coins one unit of hashrate earns per day at difficulty `d`:
/// unit · 86 400 / (d · 2^32) · (block reward + fees per block).
pub fn hashprice(
    unit: &str,
    difficulty: Decimal,
    block_reward: Decimal,
    fees_per_block: Decimal,
) -> Option<Decimal> {
    let hashes = unit_hashes(unit)?;
    let denominator = difficulty.checked_mul(Decimal::from(4_294_967_296u64))?;
    if denominator.is_zero() {
        return None;
    }
    hashes
        .checked_mul(Decimal::from(86_400))?
        .checked_div(denominator)?
        .checked_mul(block_reward + fees_per_block)
}

/// One mined coin's inputs to the estimate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CoinInputs {
    pub coin: String,
    #[schema(value_type = String)]
    pub difficulty: Decimal,
    #[schema(value_type = String)]
    pub block_reward: Decimal,
    #[schema(value_type = String)]
    pub fees_per_block: Decimal,
    #[schema(value_type = String)]
    pub price_usd: Decimal,
    /// Coins per unit per day at this difficulty.
    #[schema(value_type = String)]
    pub hashprice: Decimal,
}

/// An estimate, never a promise: the inputs are shown with it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct YieldEstimate {
    /// USD per unit per day before the fee, today's inputs.
    #[schema(value_type = String)]
    pub gross_usd_per_unit_day: Decimal,
    #[schema(value_type = String)]
    pub fee_usd_per_unit_day: Decimal,
    /// Net USD per unit per day if difficulty rises 10% and prices fall 10%.
    #[schema(value_type = String)]
    pub net_low_usd_per_unit_day: Decimal,
    /// Net USD per unit per day at today's inputs.
    #[schema(value_type = String)]
    pub net_high_usd_per_unit_day: Decimal,
    pub inputs: Vec<CoinInputs>,
    pub note: String,
}

/// The daily yield range of one unit from current network inputs; the fee
/// is capped at gross (as in settlement), so net is never negative.
pub fn yield_estimate(inputs: Vec<CoinInputs>, fee_usd_per_unit_day: Decimal) -> YieldEstimate {
    let gross: Decimal = inputs.iter().map(|c| c.hashprice * c.price_usd).sum();
    // +10% difficulty and -10% price: 0.9 / 1.1 of today's gross.
    let low_gross = gross * Decimal::new(9, 1) / Decimal::new(11, 1);
    let net = |g: Decimal| (g - fee_usd_per_unit_day.min(g)).round_dp(6).normalize();
    YieldEstimate {
        gross_usd_per_unit_day: gross.round_dp(6).normalize(),
        fee_usd_per_unit_day: fee_usd_per_unit_day.normalize(),
        net_low_usd_per_unit_day: net(low_gross),
        net_high_usd_per_unit_day: net(gross),
        inputs,
        note: "estimate from current difficulty, block reward, fees and prices; difficulty growth and price moves change it"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn hashrate_steps() {
        let (min, max, step) = (dec!(10), dec!(1000), dec!(5));
        assert!(check_hashrate(dec!(10), min, max, step).is_ok());
        assert!(check_hashrate(dec!(1000), min, max, step).is_ok());
        assert_eq!(
            check_hashrate(dec!(5), min, max, step).unwrap_err().code(),
            "below_min"
        );
        assert_eq!(
            check_hashrate(dec!(1005), min, max, step)
                .unwrap_err()
                .code(),
            "above_max"
        );
        assert_eq!(
            check_hashrate(dec!(12), min, max, step).unwrap_err().code(),
            "not_a_step"
        );
        assert_eq!(
            check_hashrate(dec!(0), min, max, step).unwrap_err().code(),
            "not_positive"
        );
    }

    #[test]
    fn contracts_start_at_the_next_midnight_utc() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        let (s, e) = contract_window(at, 30);
        assert_eq!(s.to_rfc3339(), "2026-11-26T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-12-26T00:00:00+00:00");
        let midnight = DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            contract_window(midnight, 1).0.to_rfc3339(),
            "2026-11-26T00:00:00+00:00"
        );
    }

    #[test]
    fn quotes_round_up_and_add_the_spread() {
        // 100 TH/s at $15 = $1500; BTC at $100 000 → 0.015 BTC, +0.5% = 0.015075
        let (usd, amount) =
            quote_amount(dec!(100), dec!(15), Asset::BTC, dec!(100000), 50).unwrap();
        assert_eq!(usd, dec!(1500));
        assert_eq!(amount.value(), dec!(0.015075));
        // a price that does not divide: rounded up to the satoshi
        let (_, amount) = quote_amount(dec!(1), dec!(1), Asset::BTC, dec!(3), 0).unwrap();
        assert_eq!(amount.value(), dec!(0.33333334));
        let (_, usdt) = quote_amount(dec!(7), dec!(1.1), Asset::USDT, dec!(1), 0).unwrap();
        assert_eq!(usdt.value(), dec!(7.7));
    }

    #[test]
    fn hashprice_matches_the_domain_example() {
        // D = 86.39 T, subsidy 3.125, fees 0.1 BTC → about 75 sat per TH/s per day
        let hp = hashprice("TH/s", dec!(86390000000000), dec!(3.125), dec!(0.1)).unwrap();
        let sats = hp * dec!(100000000);
        assert!(sats > dec!(74) && sats < dec!(76), "{sats}");
        assert!(hashprice("furlongs", dec!(1), dec!(1), dec!(0)).is_none());
    }

    #[test]
    fn yield_caps_the_fee_at_gross() {
        let input = CoinInputs {
            coin: "BTC".into(),
            difficulty: dec!(1),
            block_reward: dec!(0),
            fees_per_block: dec!(0),
            price_usd: dec!(100000),
            hashprice: dec!(0.00000075),
        };
        let e = yield_estimate(vec![input], dec!(0.05));
        assert_eq!(e.gross_usd_per_unit_day, dec!(0.075));
        assert_eq!(e.net_high_usd_per_unit_day, dec!(0.025));
        assert!(e.net_low_usd_per_unit_day < e.net_high_usd_per_unit_day);
        let broke = yield_estimate(vec![], dec!(0.05));
        assert_eq!(broke.net_high_usd_per_unit_day, dec!(0));
    }
}
