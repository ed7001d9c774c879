//! A facility's carbon profile (its grid region for the emission factors and
//! its contracted renewable supply) and its metered energy, per day or per
//! hour.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::schema::{
    carbon_facility_days as cfd, emission_factors as ef, facilities, facility_energy as fe,
    meter_readings as mr,
};

#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error("no such facility")]
    UnknownFacility,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{day} is computed already; its readings cannot change")]
    DayComputed { day: NaiveDate },
    #[error("a reading for {day} (hour {hour:?}) exists")]
    Exists { day: NaiveDate, hour: Option<i16> },
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl MeterError {
    pub fn code(&self) -> &'static str {
        match self {
            MeterError::UnknownFacility => "not_found",
            MeterError::Invalid { .. } => "invalid",
            MeterError::DayComputed { .. } => "day_already_computed",
            MeterError::Exists { .. } => "reading_exists",
            MeterError::Database(_) => "internal_error",
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> MeterError {
    MeterError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = fe, check_for_backend(diesel::pg::Pg))]
pub struct FacilityEnergy {
    pub facility_id: Uuid,
    /// The emission factors' region.
    pub grid_region: String,
    /// Share of consumption covered by contracted renewable supply, 0-100.
    #[schema(value_type = String)]
    pub renewable_share_pct: Decimal,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProfile {
    /// A region of the emission factor registry, e.g. `USA-Texas-ERCOT`.
    pub grid_region: String,
    /// 0-100, a decimal string.
    #[schema(value_type = String, example = "35")]
    pub renewable_share_pct: String,
}

/// Sets a facility's profile (the region must have a location factor).
pub async fn set_profile(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    actor: &str,
    p: &SetProfile,
) -> Result<FacilityEnergy, MeterError> {
    let exists: i64 = facilities::table
        .find(facility_id)
        .count()
        .get_result(conn)
        .await?;
    if exists == 0 {
        return Err(MeterError::UnknownFacility);
    }
    let known: i64 = ef::table
        .filter(ef::region.eq(&p.grid_region))
        .filter(ef::basis.eq("location"))
        .count()
        .get_result(conn)
        .await?;
    if known == 0 {
        return Err(invalid(
            "grid_region",
            "no location-based emission factor for this region; add one first",
        ));
    }
    let pct: Decimal = p
        .renewable_share_pct
        .parse()
        .map_err(|_| invalid("renewable_share_pct", "a decimal string from 0 to 100"))?;
    if pct < Decimal::ZERO || pct > Decimal::from(100) || pct.scale() > 2 {
        return Err(invalid(
            "renewable_share_pct",
            "from 0 to 100, at most 2 decimals",
        ));
    }
    Ok(diesel::insert_into(fe::table)
        .values((
            fe::facility_id.eq(facility_id),
            fe::grid_region.eq(&p.grid_region),
            fe::renewable_share_pct.eq(pct),
            fe::updated_by.eq(actor),
        ))
        .on_conflict(fe::facility_id)
        .do_update()
        .set((
            fe::grid_region.eq(&p.grid_region),
            fe::renewable_share_pct.eq(pct),
            fe::updated_by.eq(actor),
            fe::updated_at.eq(Utc::now()),
        ))
        .returning(FacilityEnergy::as_returning())
        .get_result(conn)
        .await?)
}

pub async fn profile(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
) -> Result<Option<FacilityEnergy>, MeterError> {
    Ok(fe::table
        .find(facility_id)
        .select(FacilityEnergy::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// One metered value: a whole day, or one hour (0-23) of it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub day: NaiveDate,
    #[serde(default)]
    pub hour: Option<i16>,
    /// kWh, a decimal string with at most 3 decimals.
    #[schema(value_type = String, example = "81234.5")]
    pub kwh: String,
}

/// Stores readings all or nothing: a day is metered either daily or hourly,
/// never both; a computed day is closed; a reading is never overwritten.
pub async fn import(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    actor: &str,
    source: &str,
    readings: &[Reading],
) -> Result<usize, MeterError> {
    if readings.is_empty() || readings.len() > 10_000 {
        return Err(invalid("readings", "1 to 10 000 readings"));
    }
    let mut parsed = Vec::with_capacity(readings.len());
    for (i, r) in readings.iter().enumerate() {
        let kwh: Decimal = r
            .kwh
            .parse()
            .map_err(|_| invalid(format!("readings[{i}].kwh"), "a decimal string"))?;
        if kwh < Decimal::ZERO || kwh.scale() > 3 || kwh >= Decimal::from(100_000_000_000i64) {
            return Err(invalid(
                format!("readings[{i}].kwh"),
                "0 or more, at most 3 decimals",
            ));
        }
        if let Some(h) = r.hour
            && !(0..=23).contains(&h)
        {
            return Err(invalid(format!("readings[{i}].hour"), "0 to 23"));
        }
        parsed.push((r.day, r.hour, kwh));
    }
    let exists: i64 = facilities::table
        .find(facility_id)
        .count()
        .get_result(conn)
        .await?;
    if exists == 0 {
        return Err(MeterError::UnknownFacility);
    }
    conn.transaction(async |c| {
        let mut days: Vec<NaiveDate> = parsed.iter().map(|(d, _, _)| *d).collect();
        days.sort_unstable();
        days.dedup();
        let computed: Vec<NaiveDate> = cfd::table
            .filter(cfd::facility_id.eq(facility_id))
            .filter(cfd::day.eq_any(&days))
            .select(cfd::day)
            .load(c)
            .await?;
        if let Some(day) = computed.as_slice().first() {
            return Err(MeterError::DayComputed { day: *day });
        }
        let existing: Vec<(NaiveDate, Option<i16>)> = mr::table
            .filter(mr::facility_id.eq(facility_id))
            .filter(mr::day.eq_any(&days))
            .select((mr::day, mr::hour))
            .load(c)
            .await?;
        for day in &days {
            let kinds: Vec<bool> = existing
                .iter()
                .filter(|(d, _)| d == day)
                .map(|(_, h)| h.is_some())
                .chain(
                    parsed
                        .iter()
                        .filter(|(d, _, _)| d == day)
                        .map(|(_, h, _)| h.is_some()),
                )
                .collect();
            if kinds.contains(&true) && kinds.contains(&false) {
                return Err(invalid(
                    "readings",
                    format!("{day} is metered either per day or per hour, not both"),
                ));
            }
        }
        for (day, hour, kwh) in &parsed {
            diesel::insert_into(mr::table)
                .values((
                    mr::facility_id.eq(facility_id),
                    mr::day.eq(day),
                    mr::hour.eq(hour),
                    mr::kwh.eq(kwh),
                    mr::source.eq(source),
                    mr::imported_by.eq(actor),
                ))
                .execute(c)
                .await
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => MeterError::Exists {
                        day: *day,
                        hour: *hour,
                    },
                    other => other.into(),
                })?;
        }
        Ok(parsed.len())
    })
    .await
}

/// The facility's metered kWh for `day`: its daily reading, or the sum of
/// its hourly readings (only when all 24 hours are there).
pub async fn day_total(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    day: NaiveDate,
) -> Result<Option<Decimal>, MeterError> {
    let rows: Vec<(Option<i16>, Decimal)> = mr::table
        .filter(mr::facility_id.eq(facility_id))
        .filter(mr::day.eq(day))
        .select((mr::hour, mr::kwh))
        .load(conn)
        .await?;
    if let Some((_, kwh)) = rows.iter().find(|(h, _)| h.is_none()) {
        return Ok(Some(*kwh));
    }
    if rows.len() == 24 {
        return Ok(Some(rows.iter().map(|(_, k)| *k).sum()));
    }
    Ok(None)
}
