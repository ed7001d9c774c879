//! Allocation of one pool's earnings for one day and one coin to the
//! contracts that mined on it: gross shares by hashrate-time, the house's
//! share of unsold capacity, maintenance fees, and the rounding remainder.
//!
//! Everything is integer arithmetic on smallest units, so that
//! Σ net + Σ fee + house + remainder = E exactly. Merge-mined coins are
//! settled by calling [`allocate`] once per coin; nothing here carries state
//! from one coin to the next.

use chrono::{DateTime, TimeDelta, Utc};
use ethnum::U256;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::{decimal_to_units, split_floor};

/// Seconds in a settlement day (UTC days have no leap seconds in chrono).
pub const SECONDS_PER_DAY: u32 = 86_400;

/// Hashrates are exact at this many decimal places (micro-units).
pub const HASHRATE_DECIMALS: u32 = 6;

/// 10^19 is the largest power of ten in a `u64`: the chunk we scale by.
const MAX_POW10_STEP: u64 = 19;

/// What the pool reported for one coin on one day, and how to price fees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// The pool's credit for the day, in the coin's smallest units.
    pub earnings_units: u128,
    /// Decimal places of the coin's smallest unit (8 for BTC).
    pub decimals: u32,
    /// Average hashrate the pool saw over the day, in the product's unit.
    pub delivered_hashrate: Decimal,
    /// The day's USD fixing of the coin; must be positive.
    pub price_usd: Decimal,
    /// False for a merge-mined coin other than the product's primary coin:
    /// the fee is charged on the primary coin only.
    pub charge_fee: bool,
}

/// One contract's claim on the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractShare {
    pub contract_id: Uuid,
    /// Positive, with at most [`HASHRATE_DECIMALS`] decimal places.
    pub hashrate: Decimal,
    /// Seconds of the day the contract was running, at most 86 400.
    pub active_seconds: u32,
    /// Maintenance fee in USD per hashrate unit per full day; not negative.
    pub fee_usd_per_unit_day: Decimal,
}

/// One contract's result, in the coin's smallest units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub contract_id: Uuid,
    /// Hashrate in micro-units times active seconds.
    pub weight: u128,
    pub gross: u128,
    pub fee: u128,
    /// `gross - fee`.
    pub net: u128,
}

/// The whole day's split of one coin's earnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// One line per input contract, in input order.
    pub lines: Vec<Line>,
    /// Σ weight: sold hashrate in micro-units times seconds.
    pub sold_weight: u128,
    /// Delivered hashrate in micro-units (floored) times 86 400.
    pub delivered_weight: u128,
    /// Earnings of unsold capacity, kept by the house.
    pub house: u128,
    /// Units lost to flooring, booked to the house rounding account.
    pub remainder: u128,
    /// Σ fee.
    pub fees: u128,
    /// Σ gross.
    pub gross_total: u128,
    /// Σ net.
    pub net_total: u128,
}

impl Allocation {
    /// H_delivered / H_sold, the proof-of-delivery ratio shown to customers;
    /// `None` when nothing was sold.
    ///
    /// Truncated toward zero at the finest scale `Decimal` can hold for the
    /// value (28 places for ratios below 7.9), so it is display-exact.
    pub fn delivered_ratio(&self) -> Option<Decimal> {
        if self.sold_weight == 0 {
            return None;
        }
        let delivered = U256::from(self.delivered_weight);
        let sold = U256::from(self.sold_weight);
        let max_mantissa = U256::from(Decimal::MAX.mantissa().unsigned_abs());
        for scale in (0..=28u32).rev() {
            // delivered < 2^128 and 10^28 < 2^94, so the product fits.
            let quotient = delivered.checked_mul(U256::from(10u8).checked_pow(scale)?)? / sold;
            if quotient <= max_mantissa {
                let mantissa = i128::try_from(quotient).ok()?;
                return Decimal::try_from_i128_with_scale(mantissa, scale)
                    .ok()
                    .map(|ratio| ratio.normalize());
            }
        }
        None
    }

    /// Whether the allocation is internally consistent and accounts for
    /// exactly `earnings_units`: every line has fee ≤ gross and
    /// net = gross − fee, the totals are the sums of the lines, and
    /// Σ net + Σ fee + house + remainder = E.
    pub fn check_conservation(&self, earnings_units: u128) -> bool {
        let mut weight = U256::ZERO;
        let mut gross = U256::ZERO;
        let mut fees = U256::ZERO;
        let mut net = U256::ZERO;
        for line in &self.lines {
            if line.fee > line.gross || line.gross.checked_sub(line.fee) != Some(line.net) {
                return false;
            }
            // At most 2^32 lines of at most 2^128 each: no 256-bit overflow.
            weight += U256::from(line.weight);
            gross += U256::from(line.gross);
            fees += U256::from(line.fee);
            net += U256::from(line.net);
        }
        let accounted = net + fees + U256::from(self.house) + U256::from(self.remainder);
        weight == U256::from(self.sold_weight)
            && gross == U256::from(self.gross_total)
            && fees == U256::from(self.fees)
            && net == U256::from(self.net_total)
            && accounted == U256::from(earnings_units)
    }
}

/// Why a day cannot be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("hashrate must be positive with at most 6 decimal places, got {0}")]
    InvalidHashrate(Decimal),
    #[error("active seconds must be at most 86400, got {0}")]
    InvalidActiveSeconds(u32),
    #[error("the coin's USD price must be positive, got {0}")]
    InvalidPrice(Decimal),
    #[error("the maintenance fee must not be negative, got {0}")]
    NegativeFee(Decimal),
    #[error("delivered hashrate must not be negative, got {0}")]
    NegativeDeliveredHashrate(Decimal),
    #[error("{0} does not fit in 128 bits")]
    Overflow(&'static str),
    #[error("contract {contract_id}: {error}")]
    Contract {
        contract_id: Uuid,
        error: Box<AllocationError>,
    },
}

impl AllocationError {
    /// A stable machine-readable code; a contract's error has the code of
    /// what was wrong with it.
    pub fn code(&self) -> &'static str {
        match self {
            AllocationError::InvalidHashrate(_) => "invalid_hashrate",
            AllocationError::InvalidActiveSeconds(_) => "invalid_active_seconds",
            AllocationError::InvalidPrice(_) => "invalid_price",
            AllocationError::NegativeFee(_) => "negative_fee",
            AllocationError::NegativeDeliveredHashrate(_) => "negative_delivered_hashrate",
            AllocationError::Overflow(_) => "arithmetic_overflow",
            AllocationError::Contract { error, .. } => error.code(),
        }
    }

    fn in_contract(self, contract_id: Uuid) -> Self {
        AllocationError::Contract {
            contract_id,
            error: Box::new(self),
        }
    }
}

/// Splits `inputs.earnings_units` among `contracts` for one coin and day.
///
/// Contract i weighs w_i = hashrate_micro_i × active_seconds_i. With
/// H_sold = Σ w_i and H_delivered = delivered_micro × 86 400, the
/// denominator is max(H_delivered, H_sold): an oversold pool shares what it
/// earned, and unsold capacity earns for the house.
/// gross_i = ⌊E·w_i/denominator⌋, house = ⌊E·(denominator − H_sold)/denominator⌋,
/// fee_i = min(gross_i, [`fee_units`]) when `charge_fee`, net_i = gross_i − fee_i,
/// and the remainder is what flooring left over.
///
/// The delivered hashrate is floored to micro-units: a sub-micro excess can
/// only enlarge the house's share, so it goes to the customers. When nothing
/// was sold or delivered at all, the whole of E is the house's.
pub fn allocate(
    inputs: &Inputs,
    contracts: &[ContractShare],
) -> Result<Allocation, AllocationError> {
    check_price(inputs.price_usd)?;
    let delivered_weight = delivered_weight(inputs.delivered_hashrate)?;

    let mut weights = Vec::with_capacity(contracts.len() + 1);
    let mut sold_weight: u128 = 0;
    for contract in contracts {
        let weight = contract_weight(contract).map_err(|e| e.in_contract(contract.contract_id))?;
        sold_weight = sold_weight
            .checked_add(weight)
            .ok_or(AllocationError::Overflow("sold hashrate weight"))?;
        weights.push(weight);
    }
    let denominator = delivered_weight.max(sold_weight);
    // Unsold capacity is one more claimant, so a single floor split over
    // Σ weights = denominator yields every gross share and the house's.
    let unsold = denominator
        .checked_sub(sold_weight)
        .ok_or(AllocationError::Overflow("unsold hashrate weight"))?;
    weights.push(unsold);
    let (mut shares, _) = split_floor(inputs.earnings_units, &weights);
    let house_share = shares.pop().unwrap_or(0);
    // Earnings with neither sold nor delivered hashrate cannot be shared by
    // weight; the house keeps them as it keeps unsold capacity's.
    let house = if denominator == 0 {
        inputs.earnings_units
    } else {
        house_share
    };

    let mut lines = Vec::with_capacity(contracts.len());
    let mut gross_total: u128 = 0;
    let mut fees: u128 = 0;
    let mut net_total: u128 = 0;
    for ((contract, weight), gross) in contracts.iter().zip(weights).zip(shares) {
        let fee = if inputs.charge_fee && gross > 0 {
            // A fee past u128 is certainly above gross: the cap applies.
            fee_units_for_weight(
                U256::from(weight),
                contract.fee_usd_per_unit_day,
                inputs.price_usd,
                inputs.decimals,
            )
            .map_or(gross, |fee| fee.min(gross))
        } else {
            0
        };
        let net = gross
            .checked_sub(fee)
            .ok_or(AllocationError::Overflow("net payout"))?;
        gross_total = gross_total
            .checked_add(gross)
            .ok_or(AllocationError::Overflow("gross total"))?;
        fees = fees
            .checked_add(fee)
            .ok_or(AllocationError::Overflow("fee total"))?;
        net_total = net_total
            .checked_add(net)
            .ok_or(AllocationError::Overflow("net total"))?;
        lines.push(Line {
            contract_id: contract.contract_id,
            weight,
            gross,
            fee,
            net,
        });
    }
    let remainder = inputs
        .earnings_units
        .checked_sub(gross_total)
        .and_then(|left| left.checked_sub(house))
        .ok_or(AllocationError::Overflow("rounding remainder"))?;

    Ok(Allocation {
        lines,
        sold_weight,
        delivered_weight,
        house,
        remainder,
        fees,
        gross_total,
        net_total,
    })
}

/// The uncapped maintenance fee in smallest units:
/// ⌊hashrate × active_seconds / 86 400 × fee_usd / price_usd × 10^decimals⌋,
/// computed exactly and floored in the customer's favour.
///
/// Fails on invalid inputs, or with `Overflow` if the fee exceeds `u128`.
pub fn fee_units(
    hashrate: Decimal,
    active_seconds: u32,
    fee_usd_per_unit_day: Decimal,
    price_usd: Decimal,
    decimals: u32,
) -> Result<u128, AllocationError> {
    let micro = hashrate_micro(hashrate)?;
    check_seconds(active_seconds)?;
    check_fee(fee_usd_per_unit_day)?;
    check_price(price_usd)?;
    // Kept in 256 bits: this weight may exceed u128 while the fee does not.
    let weight = U256::from(micro) * U256::from(active_seconds);
    fee_units_for_weight(weight, fee_usd_per_unit_day, price_usd, decimals)
        .ok_or(AllocationError::Overflow("fee"))
}

/// Seconds a contract ran on the day starting at `day_start`: from its start
/// to its end or earlier termination (`ended_at`), less a suspension still
/// running since `suspended_since`. Settlement and carbon both count this.
pub fn contract_seconds(
    day_start: DateTime<Utc>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    suspended_since: Option<DateTime<Utc>>,
) -> u32 {
    let end = ended_at.map_or(ends_at, |t| t.min(ends_at));
    let suspended: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> =
        suspended_since.map(|s| (s, None)).into_iter().collect();
    active_seconds(day_start, starts_at, end, &suspended)
}

/// Seconds of the day [day_start, day_start + 1 day) during which a contract
/// running over [starts_at, ends_at) was not suspended.
///
/// A suspension is [from, until), `None` meaning still suspended;
/// suspensions may overlap each other. Sub-second parts are floored.
pub fn active_seconds(
    day_start: DateTime<Utc>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    suspended: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
) -> u32 {
    let day_end = day_start
        .checked_add_signed(TimeDelta::days(1))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let from = day_start.max(starts_at);
    let to = day_end.min(ends_at);
    if from >= to {
        return 0;
    }
    let mut gaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = suspended
        .iter()
        .filter_map(|(start, end)| {
            let start = (*start).max(from);
            let end = end.map_or(to, |end| end.min(to));
            (start < end).then_some((start, end))
        })
        .collect();
    gaps.sort_unstable();
    let mut running = to - from;
    // Sweep the sorted gaps so overlapping suspensions are subtracted once.
    let mut covered_until = from;
    for (start, end) in gaps {
        let start = start.max(covered_until);
        if start < end {
            running -= end - start;
            covered_until = end;
        }
    }
    u32::try_from(running.num_seconds())
        .unwrap_or(0)
        .min(SECONDS_PER_DAY)
}

fn check_price(price_usd: Decimal) -> Result<(), AllocationError> {
    if price_usd <= Decimal::ZERO {
        return Err(AllocationError::InvalidPrice(price_usd));
    }
    Ok(())
}

fn check_fee(fee_usd_per_unit_day: Decimal) -> Result<(), AllocationError> {
    if fee_usd_per_unit_day < Decimal::ZERO {
        return Err(AllocationError::NegativeFee(fee_usd_per_unit_day));
    }
    Ok(())
}

fn check_seconds(active_seconds: u32) -> Result<(), AllocationError> {
    if active_seconds > SECONDS_PER_DAY {
        return Err(AllocationError::InvalidActiveSeconds(active_seconds));
    }
    Ok(())
}

/// The hashrate in micro-units; at most 7.9 × 10^34, so it fits `u128`.
fn hashrate_micro(hashrate: Decimal) -> Result<u128, AllocationError> {
    decimal_to_units(hashrate, HASHRATE_DECIMALS)
        .filter(|micro| *micro > 0)
        .ok_or(AllocationError::InvalidHashrate(hashrate))
}

fn contract_weight(contract: &ContractShare) -> Result<u128, AllocationError> {
    let micro = hashrate_micro(contract.hashrate)?;
    check_seconds(contract.active_seconds)?;
    // Validated even when unused (merged coin), so bad terms never pass.
    check_fee(contract.fee_usd_per_unit_day)?;
    micro
        .checked_mul(u128::from(contract.active_seconds))
        .ok_or(AllocationError::Overflow("contract hashrate weight"))
}

fn delivered_weight(delivered_hashrate: Decimal) -> Result<u128, AllocationError> {
    if delivered_hashrate < Decimal::ZERO {
        return Err(AllocationError::NegativeDeliveredHashrate(
            delivered_hashrate,
        ));
    }
    let floored =
        delivered_hashrate.round_dp_with_strategy(HASHRATE_DECIMALS, RoundingStrategy::ToZero);
    decimal_to_units(floored, HASHRATE_DECIMALS)
        .and_then(|micro| micro.checked_mul(u128::from(SECONDS_PER_DAY)))
        .ok_or(AllocationError::Overflow("delivered hashrate weight"))
}

/// ⌊weight × fee × 10^decimals / (10^6 × 86 400 × price)⌋, or `None` when it
/// exceeds `u128`. `fee` must be ≥ 0 and `price` > 0; `weight` < 2^134.
///
/// With fee = f / 10^fs and price = p / 10^ps this is
/// ⌊weight·f·10^(ps + decimals) / (86 400·p·10^(6 + fs))⌋. The powers of ten
/// can pass 2^256, so we keep quotient and remainder over 86 400·p while
/// scaling up, then floor-divide by the rest: ⌊⌊x/a⌋/b⌋ = ⌊x/(ab)⌋.
fn fee_units_for_weight(weight: U256, fee: Decimal, price: Decimal, decimals: u32) -> Option<u128> {
    let fee_mantissa = u128::try_from(fee.mantissa()).ok()?;
    let price_mantissa = u128::try_from(price.mantissa()).ok().filter(|p| *p > 0)?;
    // weight < 2^134 and a mantissa < 2^96: the product fits in 256 bits.
    let numerator = weight.checked_mul(U256::from(fee_mantissa))?;
    if numerator == U256::ZERO {
        return Some(0);
    }
    let up = u64::from(price.scale()) + u64::from(decimals);
    let down = u64::from(HASHRATE_DECIMALS) + u64::from(fee.scale());
    let common = up.min(down);
    let (mut up, mut down) = (up - common, down - common);

    // 86 400 · p < 2^113, so remainder · 10^19 < 2^177.
    let divisor = U256::from(SECONDS_PER_DAY) * U256::from(price_mantissa);
    let mut quotient = numerator / divisor;
    let mut remainder = numerator % divisor;
    let limit = U256::from(u128::MAX);
    while up > 0 {
        // `down` is 0 here (the common power was cancelled), so a quotient
        // past u128 is final; stopping early also bounds the loop.
        if quotient > limit {
            return None;
        }
        let step = up.min(MAX_POW10_STEP);
        let factor = pow10(step)?;
        let scaled = remainder * factor;
        quotient = quotient
            .checked_mul(factor)?
            .checked_add(scaled / divisor)?;
        remainder = scaled % divisor;
        up -= step;
    }
    while down > 0 && quotient > U256::ZERO {
        let step = down.min(MAX_POW10_STEP);
        quotient /= pow10(step)?;
        down -= step;
    }
    u128::try_from(quotient).ok()
}

/// 10^exp for exp ≤ 19.
fn pow10(exp: u64) -> Option<U256> {
    10u64.checked_pow(u32::try_from(exp).ok()?).map(U256::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const SAT: u32 = 8;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn btc_day(earnings: u128, delivered: Decimal) -> Inputs {
        Inputs {
            earnings_units: earnings,
            decimals: SAT,
            delivered_hashrate: delivered,
            price_usd: dec!(100000),
            charge_fee: true,
        }
    }

    fn share(n: u128, hashrate: Decimal, seconds: u32) -> ContractShare {
        ContractShare {
            contract_id: id(n),
            hashrate,
            active_seconds: seconds,
            fee_usd_per_unit_day: dec!(0.05),
        }
    }

    fn amounts(allocation: &Allocation) -> Vec<(u128, u128, u128)> {
        allocation
            .lines
            .iter()
            .map(|line| (line.gross, line.fee, line.net))
            .collect()
    }

    #[test]
    fn full_day_exactly_sold() {
        // 100 TH/s delivered, 60 + 40 TH/s sold: gross is E·60/100 and E·40/100.
        // Fee per TH/day = $0.05 / $100 000 = 0.0000005 BTC = 50 sat, so
        // 60 TH pays 3 000 sat and 40 TH pays 2 000 sat.
        let inputs = btc_day(100_000_000, dec!(100));
        let contracts = [
            share(1, dec!(60), SECONDS_PER_DAY),
            share(2, dec!(40), SECONDS_PER_DAY),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        assert_eq!(
            amounts(&allocation),
            vec![
                (60_000_000, 3_000, 59_997_000),
                (40_000_000, 2_000, 39_998_000)
            ]
        );
        // 60·10^6 µTH × 86 400 s and 40·10^6 × 86 400.
        assert_eq!(allocation.lines[0].weight, 5_184_000_000_000);
        assert_eq!(allocation.lines[1].weight, 3_456_000_000_000);
        assert_eq!(allocation.sold_weight, 8_640_000_000_000);
        assert_eq!(allocation.delivered_weight, 8_640_000_000_000);
        assert_eq!(allocation.house, 0);
        assert_eq!(allocation.remainder, 0);
        assert_eq!(allocation.fees, 5_000);
        assert_eq!(allocation.gross_total, 100_000_000);
        assert_eq!(allocation.net_total, 99_995_000);
        assert_eq!(allocation.delivered_ratio(), Some(dec!(1)));
        assert!(allocation.check_conservation(100_000_000));
        assert_eq!(allocation.lines[0].contract_id, id(1));
        assert_eq!(allocation.lines[1].contract_id, id(2));
    }

    #[test]
    fn oversold_pool_shares_what_it_earned() {
        // Sold 90 + 60 = 150 TH/s, delivered 100: the denominator is 150.
        // E = 100 000 001: 90/150 of it is 60 000 000.6 and 60/150 is
        // 40 000 000.4; the two floored tenths make a remainder of 1 sat.
        let inputs = btc_day(100_000_001, dec!(100));
        let contracts = [
            share(1, dec!(90), SECONDS_PER_DAY),
            share(2, dec!(60), SECONDS_PER_DAY),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        // Fees: 90 × 50 = 4 500 sat and 60 × 50 = 3 000 sat.
        assert_eq!(
            amounts(&allocation),
            vec![
                (60_000_000, 4_500, 59_995_500),
                (40_000_000, 3_000, 39_997_000)
            ]
        );
        assert_eq!(allocation.house, 0);
        assert_eq!(allocation.remainder, 1);
        // 100 / 150 truncated at 28 places.
        assert_eq!(
            allocation.delivered_ratio(),
            Some(dec!(0.6666666666666666666666666666))
        );
        assert!(allocation.check_conservation(100_000_001));
    }

    #[test]
    fn undersold_pool_earns_for_the_house() {
        // Sold 30 + 20 = 50 of 100 TH/s delivered; E = 99 999 999.
        // 30/100 → 29 999 999.7, 20/100 → 19 999 999.8, house 50/100 →
        // 49 999 999.5: floors 29 999 999, 19 999 999, 49 999 999, and the
        // three lost fractions (0.7 + 0.8 + 0.5) make a remainder of 2.
        let inputs = btc_day(99_999_999, dec!(100));
        let contracts = [
            share(1, dec!(30), SECONDS_PER_DAY),
            share(2, dec!(20), SECONDS_PER_DAY),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        // Fees: 30 × 50 = 1 500 and 20 × 50 = 1 000 sat.
        assert_eq!(
            amounts(&allocation),
            vec![
                (29_999_999, 1_500, 29_998_499),
                (19_999_999, 1_000, 19_998_999)
            ]
        );
        assert_eq!(allocation.house, 49_999_999);
        assert_eq!(allocation.remainder, 2);
        assert_eq!(allocation.delivered_ratio(), Some(dec!(2)));
        assert!(allocation.check_conservation(99_999_999));
    }

    #[test]
    fn contract_starting_mid_day_is_weighted_by_hours() {
        // B starts at 06:00, so it runs 18 h = 64 800 s.
        let day = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
        let b_start = Utc.with_ymd_and_hms(2025, 3, 1, 6, 0, 0).unwrap();
        let b_end = Utc.with_ymd_and_hms(2025, 4, 1, 6, 0, 0).unwrap();
        let b_seconds = active_seconds(day, b_start, b_end, &[]);
        assert_eq!(b_seconds, 64_800);

        // Weights: A 60·10^6 × 86 400 = 5.184·10^12, B 40·10^6 × 64 800 =
        // 2.592·10^12; delivered 100 TH/s → 8.64·10^12. So A gets 60 %, B
        // 30 %, the house the unsold 10 %. B's fee is 40 TH × 0.75 day × 50.
        let inputs = btc_day(100_000_000, dec!(100));
        let contracts = [
            share(1, dec!(60), SECONDS_PER_DAY),
            share(2, dec!(40), b_seconds),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        assert_eq!(
            amounts(&allocation),
            vec![
                (60_000_000, 3_000, 59_997_000),
                (30_000_000, 1_500, 29_998_500)
            ]
        );
        assert_eq!(allocation.lines[1].weight, 2_592_000_000_000);
        assert_eq!(allocation.house, 10_000_000);
        assert_eq!(allocation.remainder, 0);
        assert!(allocation.check_conservation(100_000_000));
    }

    #[test]
    fn fee_is_capped_at_gross() {
        // At $0.01 per BTC a $0.05 fee is 5 BTC per TH/day, far above gross.
        let mut inputs = btc_day(100_000_000, dec!(100));
        inputs.price_usd = dec!(0.01);
        let contracts = [
            share(1, dec!(60), SECONDS_PER_DAY),
            share(2, dec!(40), SECONDS_PER_DAY),
        ];
        assert_eq!(
            fee_units(dec!(60), SECONDS_PER_DAY, dec!(0.05), dec!(0.01), SAT),
            Ok(30_000_000_000)
        );
        let allocation = allocate(&inputs, &contracts).unwrap();
        assert_eq!(
            amounts(&allocation),
            vec![(60_000_000, 60_000_000, 0), (40_000_000, 40_000_000, 0)]
        );
        assert_eq!(allocation.net_total, 0);
        assert!(allocation.check_conservation(100_000_000));
    }

    #[test]
    fn merged_coin_charges_no_fee() {
        // DOGE merge-mined beside LTC: the fee is charged on LTC only.
        let inputs = Inputs {
            earnings_units: 5_000_000_000,
            decimals: SAT,
            delivered_hashrate: dec!(1000),
            price_usd: dec!(0.2),
            charge_fee: false,
        };
        let contracts = [
            share(1, dec!(600), SECONDS_PER_DAY),
            share(2, dec!(400), SECONDS_PER_DAY),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        assert_eq!(
            amounts(&allocation),
            vec![
                (3_000_000_000, 0, 3_000_000_000),
                (2_000_000_000, 0, 2_000_000_000)
            ]
        );
        assert_eq!(allocation.fees, 0);
        assert!(allocation.check_conservation(5_000_000_000));
    }

    #[test]
    fn zero_second_contracts_get_a_zero_line() {
        let inputs = btc_day(100_000_000, dec!(100));
        let contracts = [share(1, dec!(60), 0), share(2, dec!(40), SECONDS_PER_DAY)];
        let allocation = allocate(&inputs, &contracts).unwrap();
        assert_eq!(
            allocation.lines[0],
            Line {
                contract_id: id(1),
                weight: 0,
                gross: 0,
                fee: 0,
                net: 0
            }
        );
        assert_eq!(allocation.lines[1].gross, 40_000_000);
        assert_eq!(allocation.house, 60_000_000);
        assert!(allocation.check_conservation(100_000_000));
    }

    #[test]
    fn no_delivered_hashrate_shares_by_sold() {
        let inputs = btc_day(1_000, Decimal::ZERO);
        let contracts = [
            share(1, dec!(1), SECONDS_PER_DAY),
            share(2, dec!(2), SECONDS_PER_DAY),
        ];
        let allocation = allocate(&inputs, &contracts).unwrap();
        // 1/3 and 2/3 of 1 000 sat; fee 50 and 100 sat.
        assert_eq!(amounts(&allocation), vec![(333, 50, 283), (666, 100, 566)]);
        assert_eq!(allocation.house, 0);
        assert_eq!(allocation.remainder, 1);
        assert_eq!(allocation.delivered_ratio(), Some(Decimal::ZERO));
        assert!(allocation.check_conservation(1_000));
    }

    #[test]
    fn nothing_sold_goes_to_the_house() {
        let allocation = allocate(&btc_day(12_345, dec!(100)), &[]).unwrap();
        assert_eq!(allocation.house, 12_345);
        assert_eq!(allocation.remainder, 0);
        assert_eq!(allocation.delivered_ratio(), None);
        assert!(allocation.check_conservation(12_345));

        // Neither delivered nor sold (every contract suspended all day).
        let contracts = [share(1, dec!(5), 0)];
        let allocation = allocate(&btc_day(12_345, Decimal::ZERO), &contracts).unwrap();
        assert_eq!(allocation.house, 12_345);
        assert_eq!(allocation.lines[0].gross, 0);
        assert!(allocation.check_conservation(12_345));

        let allocation = allocate(&btc_day(0, Decimal::ZERO), &[]).unwrap();
        assert!(allocation.check_conservation(0));
    }

    #[test]
    fn delivered_hashrate_is_floored_to_micro_units() {
        let allocation = allocate(&btc_day(0, dec!(1.0000009)), &[]).unwrap();
        assert_eq!(allocation.delivered_weight, 1_000_000 * 86_400);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let good = share(7, dec!(1), SECONDS_PER_DAY);
        let inputs = btc_day(100, dec!(1));
        let contract_error = |contract: ContractShare| {
            let err = allocate(&inputs, &[good.clone(), contract]).unwrap_err();
            match &err {
                AllocationError::Contract { contract_id, .. } => assert_eq!(*contract_id, id(9)),
                other => panic!("not a contract error: {other:?}"),
            }
            err.code()
        };
        for hashrate in [dec!(0), dec!(-1), dec!(0.0000001)] {
            assert_eq!(
                contract_error(share(9, hashrate, 1)),
                "invalid_hashrate",
                "{hashrate}"
            );
        }
        // Trailing zeros are not extra precision.
        assert!(allocate(&inputs, &[share(9, dec!(1.50000000), 1)]).is_ok());
        assert_eq!(
            contract_error(share(9, dec!(1), SECONDS_PER_DAY + 1)),
            "invalid_active_seconds"
        );
        let mut negative_fee = share(9, dec!(1), 1);
        negative_fee.fee_usd_per_unit_day = dec!(-0.01);
        assert_eq!(contract_error(negative_fee), "negative_fee");

        for price in [dec!(0), dec!(-1)] {
            let mut inputs = inputs.clone();
            inputs.price_usd = price;
            assert_eq!(
                allocate(&inputs, &[]),
                Err(AllocationError::InvalidPrice(price))
            );
        }
        let mut negative = inputs.clone();
        negative.delivered_hashrate = dec!(-0.1);
        assert_eq!(
            allocate(&negative, &[]).unwrap_err().code(),
            "negative_delivered_hashrate"
        );
        let mut huge = inputs.clone();
        huge.delivered_hashrate = Decimal::MAX;
        assert_eq!(
            allocate(&huge, &[]),
            Err(AllocationError::Overflow("delivered hashrate weight"))
        );
        assert_eq!(
            contract_error(share(9, Decimal::MAX, SECONDS_PER_DAY)),
            "arithmetic_overflow"
        );
        // Each weight (3·10^33 µ × 86 400 ≈ 2.6·10^38) fits, their sum does not.
        let big = share(9, dec!(3000000000000000000000000000), SECONDS_PER_DAY);
        assert_eq!(
            allocate(&inputs, &[big.clone(), big]),
            Err(AllocationError::Overflow("sold hashrate weight"))
        );
    }

    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            AllocationError::InvalidHashrate(dec!(0)),
            AllocationError::InvalidActiveSeconds(86_401),
            AllocationError::InvalidPrice(dec!(0)),
            AllocationError::NegativeFee(dec!(-1)),
            AllocationError::NegativeDeliveredHashrate(dec!(-1)),
            AllocationError::Overflow("fee"),
        ];
        let mut codes: Vec<_> = errors.iter().map(AllocationError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        let wrapped = AllocationError::NegativeFee(dec!(-1)).in_contract(id(3));
        assert_eq!(wrapped.code(), "negative_fee");
        assert!(wrapped.to_string().contains(&id(3).to_string()));
    }

    #[test]
    fn fee_units_examples() {
        // 50 sat per TH/day at $0.05 / $100 000.
        assert_eq!(
            fee_units(dec!(1), 86_400, dec!(0.05), dec!(100000), SAT),
            Ok(50)
        );
        assert_eq!(
            fee_units(dec!(60), 86_400, dec!(0.05), dec!(100000), SAT),
            Ok(3_000)
        );
        // Half a day: 25 sat; one second: 50/86 400 sat floors to 0.
        assert_eq!(
            fee_units(dec!(1), 43_200, dec!(0.05), dec!(100000), SAT),
            Ok(25)
        );
        assert_eq!(fee_units(dec!(1), 1, dec!(0.05), dec!(100000), SAT), Ok(0));
        // 1 TH for 1 h: 50/24 = 2.083 sat → 2.
        assert_eq!(
            fee_units(dec!(1), 3_600, dec!(0.05), dec!(100000), SAT),
            Ok(2)
        );
        // ETH: $0.05 / $3 000 = 0.0000166… ETH = 16 666 666 666 666.6 wei.
        assert_eq!(
            fee_units(dec!(1), 86_400, dec!(0.05), dec!(3000), 18),
            Ok(16_666_666_666_666)
        );
        // A 6-decimal hashrate and an odd price: 0.000001 × 0.07 / 1.5 ×
        // 10^8 = 4.666… units → 4; 1 234.567891 × 0.07 / 1.5 × 10^8 =
        // 5 761 316 824.666… → 5 761 316 824.
        assert_eq!(
            fee_units(dec!(0.000001), 86_400, dec!(0.07), dec!(1.5), SAT),
            Ok(4)
        );
        assert_eq!(
            fee_units(dec!(1234.567891), 86_400, dec!(0.07), dec!(1.5), SAT),
            Ok(5_761_316_824)
        );
        assert_eq!(fee_units(dec!(5), 86_400, dec!(0), dec!(1), SAT), Ok(0));
        assert_eq!(fee_units(dec!(5), 0, dec!(1), dec!(1), SAT), Ok(0));
        // Exactly representable extremes still work.
        assert_eq!(
            fee_units(Decimal::MAX, 86_400, dec!(1), dec!(1), 0),
            Ok(79_228_162_514_264_337_593_543_950_335)
        );
        assert_eq!(
            fee_units(dec!(1), 86_400, dec!(1), Decimal::MAX, 28),
            // 10^28 / (2^96 − 1) = 0.126… → 0
            Ok(0)
        );
        assert_eq!(
            fee_units(
                dec!(1),
                86_400,
                dec!(0.0000000000000000000000000001),
                dec!(1),
                28
            ),
            Ok(1)
        );
        // Past u128: refused, not wrapped.
        assert_eq!(
            fee_units(
                Decimal::MAX,
                86_400,
                Decimal::MAX,
                dec!(0.0000000000000000000000000001),
                18
            ),
            Err(AllocationError::Overflow("fee"))
        );
        assert_eq!(
            fee_units(dec!(1), 86_400, dec!(1), dec!(1), u32::MAX),
            Err(AllocationError::Overflow("fee"))
        );
        assert_eq!(
            fee_units(dec!(1), 86_400, dec!(0), dec!(1), u32::MAX),
            Ok(0)
        );
        // Invalid inputs.
        assert_eq!(
            fee_units(dec!(0), 1, dec!(1), dec!(1), SAT)
                .unwrap_err()
                .code(),
            "invalid_hashrate"
        );
        assert_eq!(
            fee_units(dec!(1), 86_401, dec!(1), dec!(1), SAT)
                .unwrap_err()
                .code(),
            "invalid_active_seconds"
        );
        assert_eq!(
            fee_units(dec!(1), 1, dec!(-1), dec!(1), SAT)
                .unwrap_err()
                .code(),
            "negative_fee"
        );
        assert_eq!(
            fee_units(dec!(1), 1, dec!(1), dec!(0), SAT)
                .unwrap_err()
                .code(),
            "invalid_price"
        );
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, hour, minute, 0).unwrap()
    }

    #[test]
    fn active_seconds_cases() {
        let day = at(0, 0);
        let before = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap();
        let next_day = Utc.with_ymd_and_hms(2025, 3, 2, 0, 0, 0).unwrap();
        // Whole day.
        assert_eq!(active_seconds(day, before, after, &[]), 86_400);
        assert_eq!(active_seconds(day, day, next_day, &[]), 86_400);
        // Starts at 06:00, ends at 20:00, both, or outside the day.
        assert_eq!(active_seconds(day, at(6, 0), after, &[]), 64_800);
        assert_eq!(active_seconds(day, before, at(20, 0), &[]), 72_000);
        assert_eq!(active_seconds(day, at(6, 0), at(20, 0), &[]), 50_400);
        assert_eq!(active_seconds(day, next_day, after, &[]), 0);
        assert_eq!(active_seconds(day, before, day, &[]), 0);
        assert_eq!(active_seconds(day, at(20, 0), at(6, 0), &[]), 0);
        // Suspended 10:00–12:00 and, overlapping, 11:00–13:30: 3.5 h off.
        let overlapping = [(at(10, 0), Some(at(12, 0))), (at(11, 0), Some(at(13, 30)))];
        assert_eq!(active_seconds(day, before, after, &overlapping), 73_800);
        // Listed in any order, nested ones subtracted once.
        let nested = [
            (at(11, 0), Some(at(11, 30))),
            (at(10, 0), Some(at(12, 0))),
            (at(11, 15), Some(at(11, 45))),
        ];
        assert_eq!(active_seconds(day, before, after, &nested), 79_200);
        // Suspended since last week and still suspended.
        assert_eq!(active_seconds(day, before, after, &[(before, None)]), 0);
        // Suspended at 18:00, not resumed: 18 h.
        assert_eq!(
            active_seconds(day, before, after, &[(at(18, 0), None)]),
            64_800
        );
        // Suspended from before the day until 02:00.
        assert_eq!(
            active_seconds(day, before, after, &[(before, Some(at(2, 0)))]),
            79_200
        );
        // Suspensions wholly outside the day or the contract change nothing.
        let outside = [
            (before, Some(day)),
            (next_day, None),
            (at(3, 0), Some(at(5, 0))),
        ];
        assert_eq!(active_seconds(day, at(6, 0), after, &outside), 64_800);
        // An inverted suspension is empty.
        assert_eq!(
            active_seconds(day, before, after, &[(at(12, 0), Some(at(11, 0)))]),
            86_400
        );
        // Sub-second parts are floored.
        let start = at(6, 0) + TimeDelta::milliseconds(500);
        assert_eq!(active_seconds(day, start, after, &[]), 64_799);
    }

    // ---------------------------------------------------------------------
    // Properties
    // ---------------------------------------------------------------------

    fn u256(x: u128) -> U256 {
        U256::from(x)
    }

    fn hashrate() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000_000_000, 0u32..=6).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn seconds() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0), Just(SECONDS_PER_DAY), 0..=SECONDS_PER_DAY]
    }

    fn fee() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            Just(Decimal::ZERO),
            (0i64..10_000_000, 0u32..=8).prop_map(|(m, s)| Decimal::new(m, s)),
        ]
    }

    fn price() -> impl Strategy<Value = Decimal> {
        (1i64..1_000_000_000_000, 0u32..=10).prop_map(|(m, s)| Decimal::new(m, s))
    }

    fn earnings() -> impl Strategy<Value = u128> {
        prop_oneof![0u128..1_000, 0..=(1u128 << 80)]
    }

    fn contract() -> impl Strategy<Value = ContractShare> {
        (any::<u128>(), hashrate(), seconds(), fee()).prop_map(
            |(n, hashrate, active_seconds, fee_usd_per_unit_day)| ContractShare {
                contract_id: id(n),
                hashrate,
                active_seconds,
                fee_usd_per_unit_day,
            },
        )
    }

    /// Contracts and a delivered hashrate that is zero, unrelated, or a
    /// fraction of what was sold (both under- and oversold).
    fn day() -> impl Strategy<Value = (Inputs, Vec<ContractShare>)> {
        let contracts = prop::collection::vec(contract(), 0..=60);
        let delivered_kind = prop_oneof![
            Just(None),
            (0i64..1_000_000_000_000_000, 0u32..=9).prop_map(|(m, s)| Some(Decimal::new(m, s))),
            (0i64..300).prop_map(|percent| Some(Decimal::new(-percent - 1, 0))),
        ];
        (
            earnings(),
            prop::sample::select(vec![0u32, 6, 8, 18]),
            price(),
            any::<bool>(),
            contracts,
            delivered_kind,
        )
            .prop_map(
                |(earnings_units, decimals, price_usd, charge_fee, contracts, kind)| {
                    let delivered_hashrate = match kind {
                        None => Decimal::ZERO,
                        // Negative marks "this percentage of the sold hashrate".
                        Some(d) if d.is_sign_negative() => {
                            let sold: Decimal = contracts.iter().map(|c| c.hashrate).sum();
                            sold * (-d - Decimal::ONE) / dec!(100)
                        }
                        Some(d) => d,
                    };
                    let inputs = Inputs {
                        earnings_units,
                        decimals,
                        delivered_hashrate,
                        price_usd,
                        charge_fee,
                    };
                    (inputs, contracts)
                },
            )
    }

    /// Checks every number of an allocation against the formula, with
    /// independent 256-bit arithmetic.
    fn assert_matches_formula(inputs: &Inputs, contracts: &[ContractShare], a: &Allocation) {
        let e = u256(inputs.earnings_units);
        assert!(a.check_conservation(inputs.earnings_units));
        assert_eq!(a.lines.len(), contracts.len());
        let sold: U256 = a.lines.iter().map(|l| u256(l.weight)).sum();
        let denominator = sold.max(u256(a.delivered_weight));
        for (line, contract) in a.lines.iter().zip(contracts) {
            assert_eq!(line.contract_id, contract.contract_id);
            let micro = decimal_to_units(contract.hashrate, 6).unwrap();
            assert_eq!(line.weight, micro * u128::from(contract.active_seconds));
            if denominator == U256::ZERO {
                assert_eq!(line.gross, 0);
            } else {
                assert_eq!(u256(line.gross), e * u256(line.weight) / denominator);
            }
            let fee = fee_units(
                contract.hashrate,
                contract.active_seconds,
                contract.fee_usd_per_unit_day,
                inputs.price_usd,
                inputs.decimals,
            )
            .unwrap_or(u128::MAX);
            let expected_fee = if inputs.charge_fee {
                fee.min(line.gross)
            } else {
                0
            };
            assert_eq!(line.fee, expected_fee);
            assert!(line.fee <= line.gross);
            assert_eq!(line.net + line.fee, line.gross);
        }
        if denominator == U256::ZERO {
            assert_eq!(a.house, inputs.earnings_units);
        } else {
            assert_eq!(u256(a.house), e * (denominator - sold) / denominator);
        }
        // Each of the n gross floors and the house floor loses under 1 unit.
        assert!(a.remainder <= u128::try_from(contracts.len()).unwrap());
        let total = a
            .lines
            .iter()
            .map(|l| u256(l.net) + u256(l.fee))
            .sum::<U256>()
            + u256(a.house)
            + u256(a.remainder);
        assert_eq!(total, e);
    }

    proptest! {
        #[test]
        fn conserves_and_follows_the_formula((inputs, contracts) in day()) {
            let allocation = allocate(&inputs, &contracts).unwrap();
            assert_matches_formula(&inputs, &contracts, &allocation);
            if !inputs.charge_fee {
                prop_assert_eq!(allocation.fees, 0);
            }
            // A pool sold out (or oversold) leaves nothing for the house.
            if allocation.sold_weight > 0
                && allocation.sold_weight >= allocation.delivered_weight
            {
                prop_assert_eq!(allocation.house, 0);
            }
        }

        #[test]
        fn extreme_inputs_conserve_or_overflow(
            earnings_units in any::<u128>(),
            raw in prop::collection::vec(
                (1u128..(1u128 << 96), 0u32..=6, 0..=SECONDS_PER_DAY, 0u128..(1u128 << 96), 0u32..=28),
                0..8,
            ),
            delivered in (0u128..(1u128 << 96), 0u32..=28),
            price in (1u128..(1u128 << 96), 0u32..=28),
            decimals in 0u32..=40,
        ) {
            let decimal = |(m, s): (u128, u32)| {
                Decimal::from_i128_with_scale(i128::try_from(m).unwrap(), s)
            };
            let contracts: Vec<_> = raw
                .into_iter()
                .enumerate()
                .map(|(i, (h, hs, active_seconds, f, fs))| ContractShare {
                    contract_id: id(u128::try_from(i).unwrap()),
                    hashrate: decimal((h, hs)),
                    active_seconds,
                    fee_usd_per_unit_day: decimal((f, fs)),
                })
                .collect();
            let inputs = Inputs {
                earnings_units,
                decimals,
                delivered_hashrate: decimal(delivered),
                price_usd: decimal(price),
                charge_fee: true,
            };
            match allocate(&inputs, &contracts) {
                Ok(allocation) => assert_matches_formula(&inputs, &contracts, &allocation),
                Err(err) => prop_assert_eq!(err.code(), "arithmetic_overflow"),
            }
        }

        #[test]
        fn more_hashrate_never_earns_less(
            (inputs, contracts) in day(),
            pick in any::<prop::sample::Index>(),
            extra in hashrate(),
        ) {
            prop_assume!(!contracts.is_empty());
            let j = pick.index(contracts.len());
            let before = allocate(&inputs, &contracts).unwrap();
            let mut bigger = contracts.clone();
            bigger[j].hashrate += extra;
            let after = allocate(&inputs, &bigger).unwrap();
            prop_assert!(after.lines[j].gross >= before.lines[j].gross);
            prop_assert!(after.lines[j].weight >= before.lines[j].weight);
            // Longer running time is more hashrate-time too.
            let mut longer = contracts.clone();
            longer[j].active_seconds = SECONDS_PER_DAY;
            let after = allocate(&inputs, &longer).unwrap();
            prop_assert!(after.lines[j].gross >= before.lines[j].gross);
        }

        #[test]
        fn fees_never_exceed_gross(
            (mut inputs, contracts) in day(),
            tiny_price in (1i64..1_000, 0u32..=12).prop_map(|(m, s)| Decimal::new(m, s)),
        ) {
            // Low prices make the cap bind often.
            inputs.price_usd = tiny_price;
            inputs.charge_fee = true;
            let allocation = allocate(&inputs, &contracts).unwrap();
            for line in &allocation.lines {
                prop_assert!(line.fee <= line.gross);
                prop_assert_eq!(line.net, line.gross - line.fee);
            }
            prop_assert!(allocation.fees <= allocation.gross_total);
            prop_assert!(allocation.check_conservation(inputs.earnings_units));
        }

        #[test]
        fn merged_coins_settle_independently(
            (primary, contracts) in day(),
            (other_primary, _) in day(),
            merged_earnings in earnings(),
            merged_delivered in (0i64..1_000_000_000_000, 0u32..=6)
                .prop_map(|(m, s)| Decimal::new(m, s)),
        ) {
            let merged = Inputs {
                earnings_units: merged_earnings,
                decimals: 8,
                delivered_hashrate: merged_delivered,
                price_usd: dec!(0.2),
                charge_fee: false,
            };
            let alone = allocate(&merged, &contracts).unwrap();
            // Settling the primary coin first, or a different primary day,
            // changes nothing about the merged coin's lines.
            let primary_result = allocate(&primary, &contracts).unwrap();
            let after_primary = allocate(&merged, &contracts).unwrap();
            let _ = allocate(&other_primary, &contracts).unwrap();
            let after_other = allocate(&merged, &contracts).unwrap();
            prop_assert_eq!(&alone, &after_primary);
            prop_assert_eq!(&alone, &after_other);
            // Each coin conserves its own earnings, and the merged coin
            // carries no fee while its gross follows its own pool numbers.
            prop_assert!(alone.check_conservation(merged_earnings));
            prop_assert!(primary_result.check_conservation(primary.earnings_units));
            prop_assert_eq!(alone.fees, 0);
            let mut charged = merged.clone();
            charged.charge_fee = true;
            let charged = allocate(&charged, &contracts).unwrap();
            for (free, paid) in alone.lines.iter().zip(&charged.lines) {
                prop_assert_eq!(free.gross, paid.gross);
                prop_assert_eq!(free.net, free.gross);
            }
        }

        #[test]
        fn fee_units_matches_direct_formula(
            micro in 1u64..(1u64 << 40),
            active_seconds in 0..=SECONDS_PER_DAY,
            (fee_m, fee_s) in (0i64..(1i64 << 30), 0u32..=10),
            (price_m, price_s) in (1i64..(1i64 << 40), 0u32..=8),
            decimals in prop::sample::select(vec![0u32, 6, 8, 18]),
        ) {
            // Small enough that the unreduced fraction fits in 256 bits.
            let hashrate = Decimal::new(i64::try_from(micro).unwrap(), 6);
            let fee = Decimal::new(fee_m, fee_s);
            let price = Decimal::new(price_m, price_s);
            let pow = |e: u32| U256::from(10u8).pow(e);
            let numerator = U256::from(micro)
                * U256::from(active_seconds)
                * U256::from(u64::try_from(fee_m).unwrap())
                * pow(price_s + decimals);
            let denominator = pow(6) * U256::from(86_400u32)
                * pow(fee_s)
                * U256::from(u64::try_from(price_m).unwrap());
            let expected = u128::try_from(numerator / denominator).unwrap();
            prop_assert_eq!(
                fee_units(hashrate, active_seconds, fee, price, decimals),
                Ok(expected)
            );
        }

        #[test]
        fn active_seconds_matches_minute_count(
            start in -600i64..2_040,
            length in 0i64..2_640,
            suspensions in prop::collection::vec(
                (-600i64..2_040, prop::option::of(0i64..1_000)),
                0..5,
            ),
        ) {
            let day = at(0, 0);
            let minute = |m: i64| day + TimeDelta::minutes(m);
            let ends = start + length;
            let gaps: Vec<_> = suspensions
                .iter()
                .map(|(from, len)| (minute(*from), len.map(|l| minute(from + l))))
                .collect();
            let counted = (0..1_440)
                .filter(|m| {
                    *m >= start
                        && *m < ends
                        && !suspensions.iter().any(|(from, len)| {
                            *m >= *from && len.is_none_or(|l| *m < from + l)
                        })
                })
                .count();
            let expected = u32::try_from(counted).unwrap() * 60;
            prop_assert_eq!(
                active_seconds(day, minute(start), minute(ends), &gaps),
                expected
            );
        }
    }
}
