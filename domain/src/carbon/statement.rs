//! What a customer (and an auditor) reads: energy and emissions of their
//! contracts over a period, how much was metered, the certificates applied
//! to their share of each facility's consumption, the carbon credits retired
//! for them with their serials, and the claim those numbers support.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Date, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct AppliedCertificate {
    #[diesel(sql_type = SqlUuid)]
    pub certificate_id: Uuid,
    /// REC, GO, I-REC or LGC.
    #[diesel(sql_type = Text)]
    pub scheme: String,
    #[diesel(sql_type = Text)]
    pub registry: String,
    #[diesel(sql_type = Text)]
    pub serial_start: String,
    #[diesel(sql_type = Text)]
    pub serial_end: String,
    #[diesel(sql_type = Text)]
    pub technology: String,
    #[diesel(sql_type = Text)]
    pub country: String,
    /// Your share of the facility-days it covered.
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub kwh: Decimal,
}

#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct RetiredCredits {
    #[diesel(sql_type = Text)]
    pub registry: String,
    /// The block's serial.
    #[diesel(sql_type = Text)]
    pub serial: String,
    /// `avoidance` or `removal`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The units retired for you, inclusive.
    #[diesel(sql_type = BigInt)]
    pub unit_start: i64,
    #[diesel(sql_type = BigInt)]
    pub unit_end: i64,
    /// Tonnes CO2e.
    #[diesel(sql_type = BigInt)]
    pub units: i64,
    #[diesel(sql_type = Date)]
    pub period_from: NaiveDate,
    #[diesel(sql_type = Date)]
    pub period_to: NaiveDate,
}

#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct ContractCarbon {
    #[diesel(sql_type = SqlUuid)]
    pub contract_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub days: i64,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
}

/// One contract-day, for CSV and the contract view.
#[derive(Debug, Clone, Serialize, ToSchema, QueryableByName)]
pub struct CarbonDay {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = SqlUuid)]
    pub contract_id: Uuid,
    #[diesel(sql_type = Text)]
    pub facility: String,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub active_seconds: i32,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    /// Metered (a share of the facility's meter) or estimated.
    #[diesel(sql_type = Bool)]
    pub metered: bool,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub covered_kwh: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[diesel(sql_type = Numeric)]
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
    /// The factors used (region and gCO2e/kWh), for the audit trail.
    #[diesel(sql_type = Nullable<Text>)]
    pub location_factor: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub market_factor: Option<String>,
}

/// The claim a statement's numbers support (DOMAIN "Claims").
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Claim {
    /// `carbon_neutral` (ISO 14068-1, resting on retired credits covering the
    /// market-based emissions) or `none`. `net_zero` is never claimed from
    /// credits: SBTi net zero needs about 90 % reduction first.
    pub claim: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Statement {
    pub from: NaiveDate,
    pub to: NaiveDate,
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    #[schema(value_type = String)]
    pub metered_kwh: Decimal,
    #[schema(value_type = String)]
    pub estimated_kwh: Decimal,
    /// Share of the energy that comes from meter readings, in percent.
    #[schema(value_type = String)]
    pub metered_share_pct: Decimal,
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
    /// kWh covered by energy attribute certificates.
    #[schema(value_type = String)]
    pub certificates_kwh: Decimal,
    pub certificates: Vec<AppliedCertificate>,
    pub credits_retired_tonnes: i64,
    pub credits: Vec<RetiredCredits>,
    pub claim: Claim,
    /// How to book it: cloud hashrate is a purchased service.
    pub scope: String,
    pub contracts: Vec<ContractCarbon>,
}

#[derive(QueryableByName)]
struct Totals {
    #[diesel(sql_type = Numeric)]
    energy: Decimal,
    #[diesel(sql_type = Numeric)]
    metered: Decimal,
    #[diesel(sql_type = Numeric)]
    location: Decimal,
    #[diesel(sql_type = Numeric)]
    market: Decimal,
    #[diesel(sql_type = Numeric)]
    covered: Decimal,
}

/// The claim supported by `market_kg` of emissions and `retired` tonnes.
pub fn claim_for(market_kg: Decimal, retired_tonnes: i64) -> Claim {
    let needed = (market_kg / Decimal::from(1000)).ceil();
    if market_kg > Decimal::ZERO && Decimal::from(retired_tonnes) >= needed {
        Claim {
            claim: "carbon_neutral".to_owned(),
            explanation: format!(
                "{retired_tonnes} t of carbon credits were retired for you against {market_kg} kgCO2e of market-based emissions (ISO 14068-1 carbon neutrality may rest on credits). This is not net zero: SBTi net zero needs about 90 % reduction first, with permanent removals only for the rest."
            ),
        }
    } else if market_kg <= Decimal::ZERO {
        Claim {
            claim: "none".to_owned(),
            explanation: "no market-based emissions in this period; no claim is needed".to_owned(),
        }
    } else {
        Claim {
            claim: "none".to_owned(),
            explanation: format!(
                "credits retired for you ({retired_tonnes} t) do not yet cover the {needed} t of market-based emissions: no neutrality claim is supported"
            ),
        }
    }
}

/// The customer's statement over [from, to] (days inclusive).
pub async fn customer_statement(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Statement, diesel::result::Error> {
    let t: Totals = diesel::sql_query(
        "SELECT coalesce(sum(energy_kwh), 0) AS energy, \
                coalesce(sum(energy_kwh) FILTER (WHERE metered), 0) AS metered, \
                coalesce(sum(location_kgco2e), 0) AS location, \
                coalesce(sum(market_kgco2e), 0) AS market, \
                coalesce(sum(covered_kwh), 0) AS covered \
         FROM carbon_days WHERE user_id = $1 AND day BETWEEN $2 AND $3",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .get_result(conn)
    .await?;
    let certificates: Vec<AppliedCertificate> = diesel::sql_query(
        "WITH mine AS ( \
             SELECT facility_id, day, sum(covered_kwh) AS cov FROM carbon_days \
             WHERE user_id = $1 AND day BETWEEN $2 AND $3 AND covered_kwh > 0 GROUP BY 1, 2) \
         SELECT ec.id AS certificate_id, ec.scheme, ec.registry, ec.serial_start, ec.serial_end, \
                ec.technology, ec.country, \
                round(sum(ca.kwh * m.cov / nullif(f.covered_kwh, 0)), 3) AS kwh \
         FROM mine m \
         JOIN carbon_facility_days f ON f.facility_id = m.facility_id AND f.day = m.day \
         JOIN certificate_allocations ca ON ca.facility_id = m.facility_id AND ca.day = m.day \
         JOIN energy_certificates ec ON ec.id = ca.certificate_id \
         GROUP BY ec.id ORDER BY ec.registry, ec.serial_start",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await?;
    let credits: Vec<RetiredCredits> = diesel::sql_query(
        "SELECT cc.registry, cc.serial, cc.kind, r.unit_start, r.unit_end, r.units, \
                r.period_from, r.period_to \
         FROM credit_retirements r JOIN carbon_credits cc ON cc.id = r.credit_id \
         WHERE r.beneficiary_user_id = $1 AND r.period_from >= $2 AND r.period_to <= $3 \
         ORDER BY r.period_from, cc.registry, r.unit_start",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await?;
    let contracts: Vec<ContractCarbon> = diesel::sql_query(
        "SELECT contract_id, count(*) AS days, sum(energy_kwh) AS energy_kwh, \
                sum(location_kgco2e) AS location_based_kgco2e, sum(market_kgco2e) AS market_based_kgco2e \
         FROM carbon_days WHERE user_id = $1 AND day BETWEEN $2 AND $3 \
         GROUP BY contract_id ORDER BY contract_id",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await?;
    let retired: i64 = credits.iter().map(|c| c.units).sum();
    let share = if t.energy > Decimal::ZERO {
        (t.metered * Decimal::from(100) / t.energy).round_dp(2)
    } else {
        Decimal::ZERO
    };
    Ok(Statement {
        from,
        to,
        energy_kwh: t.energy.normalize(),
        metered_kwh: t.metered.normalize(),
        estimated_kwh: (t.energy - t.metered).normalize(),
        metered_share_pct: share.normalize(),
        location_based_kgco2e: t.location.normalize(),
        market_based_kgco2e: t.market.normalize(),
        certificates_kwh: t.covered.normalize(),
        certificates,
        credits_retired_tonnes: retired,
        credits,
        claim: claim_for(t.market, retired),
        scope: "Scope 3 for you (purchased cloud hashrate); Scope 2 for the facility operator"
            .to_owned(),
        contracts,
    })
}

/// Contract-days of a customer's contracts over [from, to], or of one contract.
pub async fn days(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    contract: Option<Uuid>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<CarbonDay>, diesel::result::Error> {
    diesel::sql_query(
        "SELECT d.day, d.contract_id, f.name AS facility, d.hashrate, d.active_seconds, d.energy_kwh, \
                d.metered, d.covered_kwh, d.location_kgco2e AS location_based_kgco2e, \
                d.market_kgco2e AS market_based_kgco2e, \
                lf.region || ' ' || trim_scale(lf.gco2e_per_kwh)::text || ' g/kWh (' || lf.basis || ', ' || lf.year || ')' AS location_factor, \
                mf.region || ' ' || trim_scale(mf.gco2e_per_kwh)::text || ' g/kWh (' || mf.basis || ', ' || mf.year || ')' AS market_factor \
         FROM carbon_days d JOIN facilities f ON f.id = d.facility_id \
         LEFT JOIN emission_factors lf ON lf.id = d.location_factor_id \
         LEFT JOIN emission_factors mf ON mf.id = d.market_factor_id \
         WHERE d.user_id = $1 AND ($2::uuid IS NULL OR d.contract_id = $2) AND d.day BETWEEN $3 AND $4 \
         ORDER BY d.day, d.contract_id",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Nullable<SqlUuid>, _>(contract)
    .bind::<Date, _>(from)
    .bind::<Date, _>(to)
    .load(conn)
    .await
}

/// The contract-days as CSV (header + one line per contract-day).
pub fn days_csv(rows: &[CarbonDay]) -> String {
    let mut out = String::from(
        "day,contract_id,facility,hashrate,active_seconds,energy_kwh,metered,certificates_kwh,location_based_kgco2e,market_based_kgco2e,location_factor,market_factor\n",
    );
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.day,
            r.contract_id,
            quote(&r.facility),
            r.hashrate.normalize(),
            r.active_seconds,
            r.energy_kwh.normalize(),
            if r.metered { "metered" } else { "estimated" },
            r.covered_kwh.normalize(),
            r.location_based_kgco2e.normalize(),
            r.market_based_kgco2e.normalize(),
            quote(r.location_factor.as_deref().unwrap_or("")),
            quote(r.market_factor.as_deref().unwrap_or("")),
        ));
    }
    out
}
