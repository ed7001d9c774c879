//! Emission factors: a registry of versions, never overwritten. A version of
//! (region, basis) applies from its `valid_from` until the next version's;
//! a day is computed with the version valid that day. Seeded from
//! `domain/data/grid_emission_factors.csv` (a copy of the reference table
//! with its sources).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::schema::emission_factors as ef;

/// The reference table shipped with the code.
pub const REFERENCE_CSV: &str = include_str!("../../data/grid_emission_factors.csv");

#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "a version of {region} ({basis}) valid from {valid_from} exists; versions are never overwritten"
    )]
    Exists {
        region: String,
        basis: String,
        valid_from: NaiveDate,
    },
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl FactorError {
    pub fn code(&self) -> &'static str {
        match self {
            FactorError::Invalid { .. } => "invalid",
            FactorError::Exists { .. } => "factor_version_exists",
            FactorError::Database(_) => "internal_error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Grid average (Scope 2 location-based).
    Location,
    /// What remains after certificates are claimed (Scope 2 market-based).
    ResidualMix,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Location => "location",
            Basis::ResidualMix => "residual_mix",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = ef, check_for_backend(diesel::pg::Pg))]
pub struct Factor {
    pub id: Uuid,
    pub region: String,
    /// `location` or `residual_mix`.
    pub basis: String,
    #[schema(value_type = String)]
    pub gco2e_per_kwh: Decimal,
    pub source: String,
    pub year: i32,
    pub valid_from: NaiveDate,
    pub note: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFactor {
    /// E.g. `USA-Texas-ERCOT`, `Bhutan`.
    pub region: String,
    pub basis: Basis,
    /// gCO2e per kWh, a decimal string.
    #[schema(value_type = String, example = "383.55")]
    pub gco2e_per_kwh: String,
    /// Where the number comes from (publisher, dataset, edition).
    pub source: String,
    /// The data year.
    pub year: i32,
    /// From this day on (until a later version of the same region and basis).
    pub valid_from: NaiveDate,
    #[serde(default)]
    pub note: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> FactorError {
    FactorError::Invalid {
        field,
        message: message.into(),
    }
}

/// Adds a version; an existing (region, basis, valid_from) is refused.
pub async fn add(
    conn: &mut AsyncPgConnection,
    actor: &str,
    new: &NewFactor,
) -> Result<Factor, FactorError> {
    let region = new.region.trim();
    if region.len() < 2
        || region.len() > 64
        || region != new.region
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._()-".contains(c))
    {
        return Err(invalid(
            "region",
            "2-64 letters, digits, spaces and . _ ( ) -, no surrounding spaces",
        ));
    }
    let value: Decimal = new
        .gco2e_per_kwh
        .parse()
        .map_err(|_| invalid("gco2e_per_kwh", "a decimal string such as \"383.55\""))?;
    if value < Decimal::ZERO || value >= Decimal::from(5000) || value.scale() > 4 {
        return Err(invalid(
            "gco2e_per_kwh",
            "from 0 to below 5000, at most 4 decimals",
        ));
    }
    if new.source.trim().is_empty() || new.source.len() > 500 {
        return Err(invalid("source", "1-500 characters naming the source"));
    }
    if !(1990..=2100).contains(&new.year) {
        return Err(invalid("year", "1990-2100"));
    }
    if new.note.len() > 1000 {
        return Err(invalid("note", "at most 1000 characters"));
    }
    diesel::insert_into(ef::table)
        .values((
            ef::id.eq(Uuid::now_v7()),
            ef::region.eq(region),
            ef::basis.eq(new.basis.as_str()),
            ef::gco2e_per_kwh.eq(value),
            ef::source.eq(new.source.trim()),
            ef::year.eq(new.year),
            ef::valid_from.eq(new.valid_from),
            ef::note.eq(&new.note),
            ef::created_by.eq(actor),
        ))
        .returning(Factor::as_returning())
        .get_result(conn)
        .await
        .map(normalized)
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => FactorError::Exists {
                region: region.to_owned(),
                basis: new.basis.as_str().to_owned(),
                valid_from: new.valid_from,
            },
            other => other.into(),
        })
}

/// The version of (region, basis) valid on `day`.
pub async fn factor_for(
    conn: &mut AsyncPgConnection,
    region: &str,
    basis: Basis,
    day: NaiveDate,
) -> Result<Option<Factor>, FactorError> {
    Ok(ef::table
        .filter(ef::region.eq(region))
        .filter(ef::basis.eq(basis.as_str()))
        .filter(ef::valid_from.le(day))
        .order(ef::valid_from.desc())
        .select(Factor::as_select())
        .first(conn)
        .await
        .optional()?
        .map(normalized))
}

/// Every version, by region, basis and validity.
pub async fn list(
    conn: &mut AsyncPgConnection,
    region: Option<&str>,
) -> Result<Vec<Factor>, FactorError> {
    let mut q = ef::table.into_boxed();
    if let Some(r) = region {
        q = q.filter(ef::region.eq(r.to_owned()));
    }
    Ok(
        q.order((ef::region.asc(), ef::basis.asc(), ef::valid_from.asc()))
            .select(Factor::as_select())
            .load::<Factor>(conn)
            .await?
            .into_iter()
            .map(normalized)
            .collect(),
    )
}

fn normalized(mut f: Factor) -> Factor {
    f.gco2e_per_kwh = f.gco2e_per_kwh.normalize();
    f
}

/// The rows of the reference table as factor versions: each region's
/// location-based factor from the first day of its data year; and the one
/// residual mix the table's notes give (Norway, NVE 2015).
pub fn reference_rows() -> Vec<NewFactor> {
    let mut out = Vec::new();
    let mut lines = REFERENCE_CSV.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(region), Some(value), Some(year), Some(basis), Some(source)) = (
        col("region"),
        col("location_based_gco2e_per_kwh"),
        col("year"),
        col("basis"),
        col("source"),
    ) else {
        return out;
    };
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let get = |i: usize| cells.get(i).copied().unwrap_or_default().trim();
        let Ok(y) = get(year).parse::<i32>() else {
            continue;
        };
        let Some(from) = NaiveDate::from_ymd_opt(y, 1, 1) else {
            continue;
        };
        out.push(NewFactor {
            region: get(region).to_owned(),
            basis: Basis::Location,
            gco2e_per_kwh: get(value).to_owned(),
            source: format!("{} ({})", get(source), get(basis)),
            year: y,
            valid_from: from,
            note: cells
                .get(col("note").unwrap_or(usize::MAX))
                .copied()
                .unwrap_or_default()
                .to_owned(),
        });
    }
    if let Some(from) = NaiveDate::from_ymd_opt(2015, 1, 1) {
        out.push(NewFactor {
            region: "Norway".to_owned(),
            basis: Basis::ResidualMix,
            gco2e_per_kwh: "509".to_owned(),
            source: "NVE 2015 residual mix, as noted in grid_emission_factors.csv".to_owned(),
            year: 2015,
            valid_from: from,
            note: "production average 17 g/kWh; the residual mix after guarantees of origin is far higher".to_owned(),
        });
    }
    out
}

/// Loads the reference rows that are not there yet (idempotent, safe when
/// several processes start at once; existing versions are never touched).
pub async fn seed_reference(conn: &mut AsyncPgConnection) -> Result<usize, FactorError> {
    let mut added = 0;
    for row in reference_rows() {
        let value: Decimal = row
            .gco2e_per_kwh
            .parse()
            .map_err(|_| invalid("gco2e_per_kwh", row.gco2e_per_kwh.clone()))?;
        added += diesel::insert_into(ef::table)
            .values((
                ef::id.eq(Uuid::now_v7()),
                ef::region.eq(&row.region),
                ef::basis.eq(row.basis.as_str()),
                ef::gco2e_per_kwh.eq(value),
                ef::source.eq(&row.source),
                ef::year.eq(row.year),
                ef::valid_from.eq(row.valid_from),
                ef::note.eq(&row.note),
                ef::created_by.eq("seed"),
            ))
            .on_conflict((ef::region, ef::basis, ef::valid_from))
            .do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_table_gives_every_region_a_location_factor() {
        let rows = reference_rows();
        assert_eq!(
            rows.iter().filter(|r| r.basis == Basis::Location).count(),
            14
        );
        let ercot = rows.iter().find(|r| r.region == "USA-Texas-ERCOT");
        assert_eq!(ercot.map(|r| r.gco2e_per_kwh.as_str()), Some("383.55"));
        let bhutan = rows.iter().find(|r| r.region == "Bhutan");
        assert_eq!(
            bhutan.map(|r| (r.gco2e_per_kwh.as_str(), r.year)),
            Some(("24.19", 2023))
        );
    }
}
