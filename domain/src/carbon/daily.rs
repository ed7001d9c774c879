//! The daily carbon computation: for every facility with contracts running on
//! the day, the energy of each contract (its share of the facility's meter,
//! or an estimate), the certificates matched to the facility's contracted
//! renewable supply, and location- and market-based emissions — stored once
//! per (contract, day) and per (facility, day). Running a day again computes
//! only the facilities not computed yet.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Date, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use uuid::Uuid;

use super::energy::{self, EnergyError};
use super::factors::{self, Basis, FactorError};
use super::meter::{self, MeterError};
use super::{certificates, certificates::CertificateError};
use crate::schema::{carbon_days as cd, carbon_facility_days as cfd, facilities};
use crate::settlement::allocation;
use crate::settlement::engine::day_bounds;

#[derive(Debug, thiserror::Error)]
pub enum CarbonError {
    #[error("no location-based emission factor for region {region:?} on {day}")]
    NoFactor { region: String, day: NaiveDate },
    #[error("energy: {0}")]
    Energy(#[from] EnergyError),
    #[error("factors: {0}")]
    Factor(#[from] FactorError),
    #[error("meter: {0}")]
    Meter(#[from] MeterError),
    #[error("certificates: {0}")]
    Certificates(#[from] CertificateError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

/// What a day's run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DayReport {
    pub day: Option<NaiveDate>,
    pub facilities: usize,
    pub metered_facilities: usize,
    pub already_computed: usize,
    pub contract_days: usize,
    /// Facilities that could not be computed, and why (the run retries them).
    pub errors: Vec<String>,
}

#[derive(QueryableByName)]
struct FacilityId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Computes `day` for every facility that needs it.
pub async fn compute_day(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
) -> Result<DayReport, CarbonError> {
    let (start, end) = day_bounds(day);
    let ids: Vec<FacilityId> = diesel::sql_query(
        "SELECT DISTINCT p.facility_id AS id FROM contracts c JOIN products p ON p.id = c.product_id \
         WHERE c.starts_at < $2 AND c.ends_at > $1 AND coalesce(c.ended_at, c.ends_at) > $1 \
         UNION SELECT facility_id FROM meter_readings WHERE day = $3 \
         ORDER BY 1",
    )
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .bind::<Date, _>(day)
    .load(conn)
    .await?;
    let mut report = DayReport {
        day: Some(day),
        ..DayReport::default()
    };
    for FacilityId { id } in ids {
        match compute_facility_day(conn, id, day).await {
            Ok(Some(done)) => {
                report.facilities += 1;
                report.contract_days += done.contracts;
                report.metered_facilities += usize::from(done.metered);
            }
            Ok(None) => report.already_computed += 1,
            Err(e) => report.errors.push(format!("facility {id}: {e}")),
        }
    }
    Ok(report)
}

/// What one facility-day gave.
#[derive(Debug, Clone, Copy)]
pub struct FacilityDay {
    pub contracts: usize,
    pub metered: bool,
}

#[derive(QueryableByName)]
struct Running {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    hashrate: Decimal,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    suspended: bool,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    ended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    suspended_at: Option<DateTime<Utc>>,
}

/// Computes one facility-day in one transaction, or `None` when it was
/// computed already (by this run or a concurrent one).
pub async fn compute_facility_day(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    day: NaiveDate,
) -> Result<Option<FacilityDay>, CarbonError> {
    conn.transaction(async |c| {
        // One computation of a facility-day at a time.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<Text, _>(format!("carbon:{facility_id}:{day}"))
            .execute(c)
            .await?;
        let done: i64 = cfd::table
            .filter(cfd::facility_id.eq(facility_id))
            .filter(cfd::day.eq(day))
            .count()
            .get_result(c)
            .await?;
        if done > 0 {
            return Ok(None);
        }
        let (region, efficiency, pue, total_hashrate): (String, Decimal, Decimal, Decimal) =
            facilities::table
                .find(facility_id)
                .select((
                    facilities::region,
                    facilities::efficiency,
                    facilities::pue,
                    facilities::total_hashrate,
                ))
                .first(c)
                .await?;
        let profile = meter::profile(c, facility_id).await?;
        let grid_region = profile
            .as_ref()
            .map_or(region.clone(), |p| p.grid_region.clone());
        let renewable_pct = profile
            .as_ref()
            .map_or(Decimal::ZERO, |p| p.renewable_share_pct);
        let location = factors::factor_for(c, &grid_region, Basis::Location, day)
            .await?
            .ok_or_else(|| CarbonError::NoFactor {
                region: grid_region.clone(),
                day,
            })?;
        // Without a residual mix, the market-based method falls back to the
        // grid average (GHG Protocol Scope 2 guidance), as recorded per day.
        let residual = factors::factor_for(c, &grid_region, Basis::ResidualMix, day).await?;
        let market = residual.as_ref().unwrap_or(&location);

        let (start, end) = day_bounds(day);
        let running: Vec<Running> = diesel::sql_query(
            "SELECT c.id, c.user_id, c.hashrate, c.state = 'suspended' AS suspended, c.starts_at, \
                    c.ends_at, c.ended_at, c.suspended_at \
             FROM contracts c JOIN products p ON p.id = c.product_id \
             WHERE p.facility_id = $1 AND c.starts_at < $3 AND c.ends_at > $2 \
               AND coalesce(c.ended_at, c.ends_at) > $2 ORDER BY c.id",
        )
        .bind::<SqlUuid, _>(facility_id)
        .bind::<Timestamptz, _>(start)
        .bind::<Timestamptz, _>(end)
        .load(c)
        .await?;
        let seconds: Vec<u32> = running
            .iter()
            .map(|r| {
                allocation::contract_seconds(
                    start,
                    r.starts_at,
                    r.ends_at,
                    r.ended_at,
                    r.suspended_at.filter(|_| r.suspended),
                )
            })
            .collect();
        let meter_kwh = meter::day_total(c, facility_id, day).await?;
        let (kwhs, unsold) = match meter_kwh {
            Some(m) => {
                let weights: Vec<Decimal> = running
                    .iter()
                    .zip(&seconds)
                    .map(|(r, s)| r.hashrate * Decimal::from(*s))
                    .collect();
                energy::share_meter(
                    m,
                    &weights,
                    total_hashrate * Decimal::from(energy::SECONDS_PER_DAY),
                )?
            }
            None => {
                let mut v = Vec::with_capacity(running.len());
                for (r, s) in running.iter().zip(&seconds) {
                    v.push(energy::estimated_kwh(r.hashrate, efficiency, pue, *s)?);
                }
                (v, Decimal::ZERO)
            }
        };
        let contracts_kwh: Decimal = kwhs.iter().copied().sum();
        // The contracted renewable supply, backed by certificates.
        let needed = (contracts_kwh * renewable_pct / Decimal::from(100))
            .round_dp_with_strategy(energy::KWH_DP, RoundingStrategy::ToZero);
        let (covered, certificate_factor) = if needed > Decimal::ZERO {
            let coverage = certificates::allocate_for_day(c, facility_id, day, needed).await?;
            let weighted: Decimal = coverage
                .allocations
                .iter()
                .map(|(_, kwh, factor)| *kwh * *factor)
                .sum();
            let factor = if coverage.covered_kwh > Decimal::ZERO {
                weighted / coverage.covered_kwh
            } else {
                Decimal::ZERO
            };
            (coverage.covered_kwh.min(contracts_kwh), factor)
        } else {
            (Decimal::ZERO, Decimal::ZERO)
        };
        let covered_shares = energy::share_covered(covered, &kwhs);
        diesel::insert_into(cfd::table)
            .values((
                cfd::facility_id.eq(facility_id),
                cfd::day.eq(day),
                cfd::metered.eq(meter_kwh.is_some()),
                cfd::meter_kwh.eq(meter_kwh),
                cfd::contracts_kwh.eq(contracts_kwh),
                cfd::unsold_kwh.eq(unsold),
                cfd::covered_kwh.eq(covered),
                cfd::location_factor_id.eq(Some(location.id)),
                cfd::market_factor_id.eq(Some(market.id)),
                cfd::contracts.eq(i32::try_from(running.len()).unwrap_or(i32::MAX)),
            ))
            .execute(c)
            .await?;
        let rows: Vec<_> = running
            .iter()
            .zip(&seconds)
            .zip(kwhs.iter().zip(&covered_shares))
            .map(|((r, s), (kwh, cov))| {
                (
                    cd::contract_id.eq(r.id),
                    cd::day.eq(day),
                    cd::user_id.eq(r.user_id),
                    cd::facility_id.eq(facility_id),
                    cd::hashrate.eq(r.hashrate),
                    cd::active_seconds.eq(i32::try_from(*s).unwrap_or(0)),
                    cd::energy_kwh.eq(*kwh),
                    cd::metered.eq(meter_kwh.is_some()),
                    cd::covered_kwh.eq(*cov),
                    cd::location_kgco2e.eq(energy::kg(*kwh, location.gco2e_per_kwh)),
                    cd::market_kgco2e.eq(energy::market_kg(
                        *kwh,
                        *cov,
                        market.gco2e_per_kwh,
                        certificate_factor,
                    )),
                    cd::location_factor_id.eq(Some(location.id)),
                    cd::market_factor_id.eq(Some(market.id)),
                )
            })
            .collect();
        for chunk in rows.chunks(2000) {
            diesel::insert_into(cd::table)
                .values(chunk)
                .on_conflict((cd::contract_id, cd::day))
                .do_nothing()
                .execute(c)
                .await?;
        }
        Ok(Some(FacilityDay {
            contracts: running.len(),
            metered: meter_kwh.is_some(),
        }))
    })
    .await
}
