//! Energy and emissions of contract-days, pure.
//!
//! Formulas (hashrate H in the algorithm's unit, efficiency ε in J per unit,
//! so H·ε is watts):
//! - estimated: kWh = H · ε · PUE · active_seconds / 3 600 / 1 000
//!   (100 TH/s × 13.5 J/TH × 1.05 × 24 h = 34.02 kWh);
//! - metered: the facility's metered kWh is shared by power × time,
//!   w_i = H_i · active_seconds_i, among the contracts and the unsold rest of
//!   the facility (its total hashrate × 86 400 − Σ w_i), in whole Wh by the
//!   largest remainder, so the shares add up exactly to the meter;
//! - location-based kgCO2e = kWh × grid factor [g/kWh] / 1 000;
//! - market-based kgCO2e = (kWh − covered) × residual-mix factor / 1 000 +
//!   covered × the certificates' factor / 1 000 (0 for renewables).
//!
//! Energies are kept in kWh with 3 decimals (whole Wh), emissions in kg with
//! 6 decimals (whole mg).

use rust_decimal::{Decimal, RoundingStrategy};

use crate::money::{split_largest_remainder, units_to_decimal};

pub const SECONDS_PER_DAY: u32 = 86_400;
/// kWh are stored with this many decimals (Wh).
pub const KWH_DP: u32 = 3;
/// kgCO2e are stored with this many decimals (mg).
pub const KG_DP: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnergyError {
    #[error("hashrate, efficiency and PUE must be positive (PUE at least 1)")]
    Invalid,
    #[error("active seconds above a day")]
    TooManySeconds,
    #[error("the numbers are too large")]
    Overflow,
}

/// Estimated energy of one contract-day in kWh (3 decimals, half-up).
pub fn estimated_kwh(
    hashrate: Decimal,
    efficiency: Decimal,
    pue: Decimal,
    active_seconds: u32,
) -> Result<Decimal, EnergyError> {
    if hashrate < Decimal::ZERO || efficiency <= Decimal::ZERO || pue < Decimal::ONE {
        return Err(EnergyError::Invalid);
    }
    if active_seconds > SECONDS_PER_DAY {
        return Err(EnergyError::TooManySeconds);
    }
    let joules = hashrate
        .checked_mul(efficiency)
        .and_then(|w| w.checked_mul(pue))
        .and_then(|w| w.checked_mul(Decimal::from(active_seconds)))
        .ok_or(EnergyError::Overflow)?;
    // 1 kWh = 3 600 000 J.
    Ok((joules / Decimal::from(3_600_000u32))
        .round_dp_with_strategy(KWH_DP, RoundingStrategy::MidpointAwayFromZero)
        .normalize())
}

/// Shares `meter_kwh` by power × time among the contracts (`weights[i]` =
/// H_i · active_seconds_i) and the facility's unsold rest (`capacity` =
/// total hashrate × 86 400 minus what the contracts used; never negative).
/// Returns each contract's kWh and the unsold kWh; together exactly the meter.
pub fn share_meter(
    meter_kwh: Decimal,
    weights: &[Decimal],
    capacity: Decimal,
) -> Result<(Vec<Decimal>, Decimal), EnergyError> {
    if meter_kwh < Decimal::ZERO || weights.iter().any(|w| *w < Decimal::ZERO) {
        return Err(EnergyError::Invalid);
    }
    let sold: Decimal = weights.iter().copied().sum();
    let unsold = (capacity - sold).max(Decimal::ZERO);
    let wh = meter_kwh
        .checked_mul(Decimal::from(1000))
        .ok_or(EnergyError::Overflow)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let total = u128::try_from(wh.mantissa()).map_err(|_| EnergyError::Invalid)?;
    // Weights scaled to integers (hashrate has at most 6 decimals).
    let scale = |d: Decimal| -> Result<u128, EnergyError> {
        let scaled = d
            .checked_mul(Decimal::from(1_000_000u32))
            .ok_or(EnergyError::Overflow)?
            .trunc();
        u128::try_from(scaled.mantissa()).map_err(|_| EnergyError::Overflow)
    };
    let mut claim: Vec<u128> = Vec::with_capacity(weights.len() + 1);
    for w in weights {
        claim.push(scale(*w)?);
    }
    claim.push(scale(unsold)?);
    let shares = if claim.iter().all(|c| *c == 0) {
        // Nothing ran: the meter is the facility's own.
        let mut v = vec![0u128; claim.len()];
        if let Some(last) = v.last_mut() {
            *last = total;
        }
        v
    } else {
        split_largest_remainder(total, &claim)
    };
    let kwh = |wh: u128| units_to_decimal(wh, KWH_DP).unwrap_or_default().normalize();
    let mut out: Vec<Decimal> = shares.iter().map(|u| kwh(*u)).collect();
    let rest = out.pop().unwrap_or_default();
    Ok((out, rest))
}

/// kgCO2e of `kwh` at `gco2e_per_kwh` (6 decimals, half-up).
pub fn kg(kwh: Decimal, gco2e_per_kwh: Decimal) -> Decimal {
    (kwh * gco2e_per_kwh / Decimal::from(1000))
        .round_dp_with_strategy(KG_DP, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// Market-based kgCO2e: the uncovered part at the residual mix, the covered
/// part at the certificates' factor.
pub fn market_kg(
    kwh: Decimal,
    covered_kwh: Decimal,
    residual_gco2e_per_kwh: Decimal,
    certificate_gco2e_per_kwh: Decimal,
) -> Decimal {
    let covered = covered_kwh.min(kwh).max(Decimal::ZERO);
    ((kwh - covered) * residual_gco2e_per_kwh / Decimal::from(1000)
        + covered * certificate_gco2e_per_kwh / Decimal::from(1000))
    .round_dp_with_strategy(KG_DP, RoundingStrategy::MidpointAwayFromZero)
    .normalize()
}

/// Splits `covered_kwh` of a facility-day among its contracts in proportion
/// to their kWh, in whole Wh, adding up exactly.
pub fn share_covered(covered_kwh: Decimal, kwhs: &[Decimal]) -> Vec<Decimal> {
    let to_wh = |d: Decimal| -> u128 {
        let v = (d * Decimal::from(1000)).round_dp_with_strategy(0, RoundingStrategy::ToZero);
        u128::try_from(v.mantissa()).unwrap_or(0)
    };
    let claims: Vec<u128> = kwhs.iter().map(|k| to_wh(*k)).collect();
    let total_claim: u128 = claims.iter().sum();
    let covered = to_wh(covered_kwh).min(total_claim);
    let shares = split_largest_remainder(covered, &claims);
    shares
        .into_iter()
        .map(|wh| units_to_decimal(wh, KWH_DP).unwrap_or_default().normalize())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn the_worked_example_is_34_02_kwh() {
        // 100 TH/s on an S21 XP (13.5 J/TH) at PUE 1.05 for one day.
        assert_eq!(
            estimated_kwh(dec!(100), dec!(13.5), dec!(1.05), 86_400).unwrap(),
            dec!(34.02)
        );
        // Texas (ERCOT, 383.55 g/kWh) and Bhutan (24.19 g/kWh), data/grid_emission_factors.csv.
        assert_eq!(kg(dec!(34.02), dec!(383.55)), dec!(13.048371));
        assert_eq!(kg(dec!(34.02), dec!(24.19)), dec!(0.822944));
        // Half a day is half the energy.
        assert_eq!(
            estimated_kwh(dec!(100), dec!(13.5), dec!(1.05), 43_200).unwrap(),
            dec!(17.01)
        );
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(estimated_kwh(dec!(-1), dec!(13.5), dec!(1.05), 10).is_err());
        assert!(estimated_kwh(dec!(1), dec!(0), dec!(1.05), 10).is_err());
        assert!(estimated_kwh(dec!(1), dec!(13.5), dec!(0.9), 10).is_err());
        assert!(estimated_kwh(dec!(1), dec!(13.5), dec!(1.05), 86_401).is_err());
    }

    #[test]
    fn market_based_counts_covered_energy_at_the_certificate_factor() {
        assert_eq!(market_kg(dec!(100), dec!(40), dec!(500), dec!(0)), dec!(30));
        assert_eq!(market_kg(dec!(100), dec!(150), dec!(500), dec!(0)), dec!(0));
        assert_eq!(market_kg(dec!(100), dec!(0), dec!(500), dec!(0)), dec!(50));
    }

    proptest! {
        #[test]
        fn meter_shares_add_up_exactly(
            meter in 0u64..10_000_000_000,
            weights in proptest::collection::vec(0u64..1_000_000_000, 0..40),
            extra in 0u64..1_000_000_000,
        ) {
            let meter = Decimal::from_i128_with_scale(i128::from(meter), 3);
            let ws: Vec<Decimal> = weights.iter().map(|w| Decimal::from(*w)).collect();
            let capacity = ws.iter().copied().sum::<Decimal>() + Decimal::from(extra);
            let (shares, unsold) = share_meter(meter, &ws, capacity).unwrap();
            prop_assert_eq!(shares.len(), ws.len());
            prop_assert_eq!(shares.iter().copied().sum::<Decimal>() + unsold, meter.normalize());
            // Larger weight never gets less (up to one Wh of rounding).
            for i in 0..ws.len() {
                for j in 0..ws.len() {
                    if ws[i] > ws[j] {
                        prop_assert!(shares[i] + dec!(0.001) >= shares[j]);
                    }
                }
            }
        }

        #[test]
        fn covered_shares_add_up_and_never_exceed_energy(
            covered in 0u64..100_000_000,
            kwhs in proptest::collection::vec(0u64..10_000_000, 1..30),
        ) {
            let kwhs: Vec<Decimal> = kwhs.iter().map(|k| Decimal::from_i128_with_scale(i128::from(*k), 3)).collect();
            let total: Decimal = kwhs.iter().copied().sum();
            let covered = Decimal::from_i128_with_scale(i128::from(covered), 3);
            let shares = share_covered(covered, &kwhs);
            prop_assert_eq!(shares.iter().copied().sum::<Decimal>(), covered.min(total).normalize());
            for (s, k) in shares.iter().zip(&kwhs) {
                prop_assert!(s <= k);
            }
        }
    }
}
