//! The back office's carbon report, the allocation of credit retirements to
//! customers' emissions, and the conservation check (no kWh, no MWh and no
//! credit unit counted twice).
//!
//! Retirement policy (`retire_month`): for each customer and calendar month,
//! the market-based emissions of their contract-days, rounded UP to whole
//! tonnes, less what was already retired for them for that month; units are
//! taken by `credits::allocate` (oldest vintage first, lowest serials first,
//! splitting blocks; each unit once; idempotent per beneficiary and period).
//! Rounding up means a customer is never under-covered; the extra fraction
//! of a tonne is the platform's contribution.

use chrono::{Datelike, NaiveDate};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date, Integer, Numeric, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::credits::{self, CreditError, Demand, KindStock};

#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct FacilityMonth {
    #[diesel(sql_type = SqlUuid)]
    pub facility_id: Uuid,
    #[diesel(sql_type = Text)]
    pub facility: String,
    /// YYYY-MM.
    #[diesel(sql_type = Text)]
    pub month: String,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub metered_kwh: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub certificates_kwh: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
    /// Certificates ÷ energy, in percent.
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub renewable_share_pct: Decimal,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NetZero {
    /// The first year with computed emissions.
    pub baseline_year: Option<i32>,
    #[schema(value_type = String)]
    pub baseline_market_tco2e: Decimal,
    #[schema(value_type = String)]
    pub year_market_tco2e: Decimal,
    /// Reduction of market-based emissions against the baseline, percent.
    #[schema(value_type = String)]
    pub reduction_pct: Decimal,
    /// The 2030 target: about 90 % reduction (SBTi), the rest by permanent removals.
    pub target_year: i32,
    #[schema(value_type = String)]
    pub target_reduction_pct: Decimal,
    /// Where a straight line from the baseline to the target is this year.
    #[schema(value_type = String)]
    pub path_reduction_pct: Decimal,
    pub on_track: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub year: i32,
    pub facilities: Vec<FacilityMonth>,
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
    #[schema(value_type = String)]
    pub certificates_kwh: Decimal,
    #[schema(value_type = String)]
    pub renewable_share_pct: Decimal,
    /// Tonnes retired for the year's periods.
    pub credits_retired_tonnes: i64,
    /// Retired tonnes ÷ market-based tonnes, percent.
    #[schema(value_type = String)]
    pub credits_coverage_pct: Decimal,
    /// Units issued, retired and still unallocated, by kind.
    pub credits: Vec<KindStock>,
    pub net_zero: NetZero,
    /// Empty when no kWh, MWh or credit unit is counted twice.
    pub conservation: Vec<String>,
}

#[derive(QueryableByName)]
struct YearTotal {
    #[diesel(sql_type = Integer)]
    year: i32,
    #[diesel(sql_type = Numeric)]
    market: Decimal,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn pct(part: Decimal, whole: Decimal) -> Decimal {
    if whole > Decimal::ZERO {
        (part * Decimal::from(100) / whole).round_dp(2).normalize()
    } else {
        Decimal::ZERO
    }
}

/// The report for `year`.
pub async fn report(conn: &mut AsyncPgConnection, year: i32) -> Result<Report, CreditError> {
    let from = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    let to = NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or_default();
    let mut facilities: Vec<FacilityMonth> = diesel::sql_query(
        "SELECT d.facility_id, f.name AS facility, to_char(d.day, 'YYYY-MM') AS month, \
                sum(d.energy_kwh) AS energy_kwh, \
                coalesce(sum(d.energy_kwh) FILTER (WHERE d.metered), 0) AS metered_kwh, \
                sum(d.covered_kwh) AS certificates_kwh, \
                sum(d.location_kgco2e) AS location_based_kgco2e, \
                sum(d.market_kgco2e) AS market_based_kgco2e, \
                CASE WHEN sum(d.energy_kwh) > 0 \
                     THEN round(sum(d.covered_kwh) * 100 / sum(d.energy_kwh), 2) ELSE 0 END AS renewable_share_pct \
         FROM carbon_days d JOIN facilities f ON f.id = d.facility_id \
         WHERE d.day BETWEEN $1 AND $2 GROUP BY 1, 2, 3 ORDER BY 2, 3",
    )
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await?;
    for f in &mut facilities {
        for d in [
            &mut f.energy_kwh,
            &mut f.metered_kwh,
            &mut f.certificates_kwh,
            &mut f.location_based_kgco2e,
            &mut f.market_based_kgco2e,
            &mut f.renewable_share_pct,
        ] {
            *d = d.normalize();
        }
    }
    let energy: Decimal = facilities.iter().map(|f| f.energy_kwh).sum();
    let location: Decimal = facilities.iter().map(|f| f.location_based_kgco2e).sum();
    let market: Decimal = facilities.iter().map(|f| f.market_based_kgco2e).sum();
    let certificates: Decimal = facilities.iter().map(|f| f.certificates_kwh).sum();
    let retired: Count = diesel::sql_query(
        "SELECT coalesce(sum(units), 0)::bigint AS n FROM credit_retirements \
         WHERE period_from >= $1 AND period_to <= $2",
    )
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .get_result(conn)
    .await?;
    let years: Vec<YearTotal> = diesel::sql_query(
        "SELECT extract(year FROM day)::int AS year, sum(market_kgco2e) AS market \
         FROM carbon_days GROUP BY 1 ORDER BY 1",
    )
    .load(conn)
    .await?;
    let baseline = years.as_slice().first();
    let this_year = years
        .iter()
        .find(|y| y.year == year)
        .map_or(Decimal::ZERO, |y| y.market);
    let tonnes = |kg: Decimal| (kg / Decimal::from(1000)).round_dp(3).normalize();
    let target_year = 2030;
    let target = Decimal::from(90);
    let (reduction, path) = match baseline {
        Some(b) if b.market > Decimal::ZERO => {
            let reduction = pct(b.market - this_year, b.market);
            let span = (target_year - b.year).max(1);
            let path = (target * Decimal::from((year - b.year).clamp(0, span))
                / Decimal::from(span))
            .round_dp(2)
            .normalize();
            (reduction, path)
        }
        _ => (Decimal::ZERO, Decimal::ZERO),
    };
    let mut conservation = energy_conservation(conn).await?;
    conservation.extend(
        super::certificates::conservation_check(conn)
            .await
            .unwrap_or_else(|e| vec![format!("certificates: {e}")]),
    );
    conservation.extend(credits::conservation_check(conn).await?);
    Ok(Report {
        year,
        energy_kwh: energy.normalize(),
        location_based_kgco2e: location.normalize(),
        market_based_kgco2e: market.normalize(),
        certificates_kwh: certificates.normalize(),
        renewable_share_pct: pct(certificates, energy),
        credits_retired_tonnes: retired.n,
        credits_coverage_pct: pct(Decimal::from(retired.n) * Decimal::from(1000), market),
        credits: credits::available_by_kind(conn).await?,
        net_zero: NetZero {
            baseline_year: baseline.map(|b| b.year),
            baseline_market_tco2e: tonnes(baseline.map_or(Decimal::ZERO, |b| b.market)),
            year_market_tco2e: tonnes(this_year),
            reduction_pct: reduction,
            target_year,
            target_reduction_pct: target,
            path_reduction_pct: path,
            on_track: baseline.is_some() && reduction >= path,
        },
        conservation,
        facilities,
    })
}

#[derive(QueryableByName)]
struct Problem {
    #[diesel(sql_type = Text)]
    problem: String,
}

/// kWh counted once: every facility-day's contract-days add up to its
/// contracts' total, a metered one's plus the unsold rest to its meter, and
/// certificate cover never exceeds the energy.
pub async fn energy_conservation(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<String>, diesel::result::Error> {
    let rows: Vec<Problem> = diesel::sql_query(
        "SELECT format('facility %s on %s: contract-days %s kWh, facility-day %s kWh', \
                       f.facility_id, f.day, coalesce(sum(d.energy_kwh), 0), f.contracts_kwh) AS problem \
         FROM carbon_facility_days f LEFT JOIN carbon_days d ON d.facility_id = f.facility_id AND d.day = f.day \
         GROUP BY f.facility_id, f.day, f.contracts_kwh \
         HAVING coalesce(sum(d.energy_kwh), 0) <> f.contracts_kwh \
         UNION ALL \
         SELECT format('facility %s on %s: meter %s kWh, attributed %s kWh', facility_id, day, meter_kwh, contracts_kwh + unsold_kwh) \
         FROM carbon_facility_days WHERE metered AND meter_kwh <> contracts_kwh + unsold_kwh \
         UNION ALL \
         SELECT format('facility %s on %s: certificates cover %s kWh of %s kWh', facility_id, day, covered_kwh, contracts_kwh) \
         FROM carbon_facility_days WHERE covered_kwh > contracts_kwh",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|p| p.problem).collect())
}

#[derive(QueryableByName)]
struct Owed {
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Numeric)]
    market: Decimal,
}

/// Retires credits for every customer's market-based emissions of the
/// calendar month holding `month` (see the module's policy). Running it
/// again tops up, never retires twice. Returns the tonnes retired by this
/// call and the shortfall (units missing).
pub async fn retire_month(
    conn: &mut AsyncPgConnection,
    month: NaiveDate,
) -> Result<(i64, i64), CreditError> {
    let from = NaiveDate::from_ymd_opt(month.year(), month.month(), 1).unwrap_or(month);
    let to = from
        .checked_add_months(chrono::Months::new(1))
        .and_then(|d| d.pred_opt())
        .unwrap_or(from);
    let owed: Vec<Owed> = diesel::sql_query(
        "SELECT d.user_id, sum(d.market_kgco2e) AS market FROM carbon_days d \
         WHERE d.day BETWEEN $1 AND $2 GROUP BY d.user_id ORDER BY d.user_id",
    )
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await?;
    let demands: Vec<Demand> = owed
        .into_iter()
        .filter_map(|o| {
            let tonnes = (o.market / Decimal::from(1000)).ceil().to_i64()?;
            (tonnes > 0).then_some(Demand {
                beneficiary_user_id: o.user_id,
                // Pseudonymous: retirements are immutable, so no personal data.
                beneficiary_name: format!("Hashgrid customer {}", o.user_id),
                period_from: from,
                period_to: to,
                tonnes,
            })
        })
        .collect();
    if demands.is_empty() {
        return Ok((0, 0));
    }
    let done = credits::allocate(conn, &demands).await?;
    Ok((
        done.iter().map(|r| r.newly_retired).sum(),
        done.iter().map(|r| r.shortfall).sum(),
    ))
}
