//! Energy attribute certificates (RECs, GOs, I-RECs, LGCs): the registry of
//! the blocks the platform holds, and their matching to the consumption of
//! facility-days for the market-based Scope 2 figure.
//!
//! # The registry
//!
//! A row is a block of consecutive certificates of one registry, one MWh
//! each: `serial_start`..`serial_end`, which share a prefix and end in a
//! number (the last up to 18 digits: longer numbers, such as the 24-digit
//! EECS numbers of GOs, keep their leading digits in the prefix). `mwh` must
//! equal the count. The database refuses a block whose numbers overlap
//! another block of the same registry (compared without case and
//! punctuation, so `AIB hub` = `aib-HUB`) and serial prefix (an exclusion
//! constraint), and refuses any change or deletion: a certificate is retired
//! once.
//!
//! # Matching rules (GHG Protocol Scope 2 Guidance, 2015, Quality Criteria)
//!
//! - Each kWh once: the allocations of a certificate never exceed its
//!   `mwh × 1000` kWh (criterion 2, unique claims). [`allocate_for_day`]
//!   locks the candidate certificates (`FOR UPDATE`, in one order) in one
//!   transaction; an insert trigger checks the sum again under the same lock.
//! - Same market (criterion 5: instruments sourced from the same market as
//!   the consumption): the certificate's country must equal the facility's.
//!   The United States and Canada are NOT merged into one market: RE100 and
//!   CDP treat them as one, but the Scope 2 Guidance itself (as the US EPA
//!   Green Power Partnership reads its p. 65) suggests two markets with
//!   separate regulatory oversight. Nor are European countries merged, for
//!   the same reason (RE100's single European market is RE100's rule).
//! - Vintage (criterion 4: issued and redeemed as close as possible to the
//!   period of consumption): production must have started on or before the
//!   day and must not have ended before 1 January of the day's calendar
//!   year — the same-calendar-year rule, so no certificate carries over into
//!   the next reporting year. [`in_vintage`] is the rule; the trigger and
//!   [`conservation_check`] repeat it in SQL.
//! - Oldest production first (the window of older certificates closes first).
//! - Granularity: kWh with 3 decimals (whole Wh). The need is rounded down
//!   to whole Wh, so the coverage never exceeds it.
//! - Hourly matching (proposed by the Scope 2 revision, final standard
//!   expected 2027): allocations carry an `hour` (NULL for a whole day); the
//!   daily matching writes NULL.
//!
//! A facility-day is matched once: the first call stores the day (kWh
//! asked, the facility's market) and its allocations; later calls answer the
//! stored coverage, whatever `kwh_needed` says then.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Date, Numeric, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::identity::audit::{self, AuditEntry};
use crate::identity::jurisdictions::Country;
use crate::schema::{
    certificate_allocations as ca, certificate_coverage_days as cd, energy_certificates as ec,
    facilities,
};

/// kWh in one certificate (1 MWh).
pub const KWH_PER_CERTIFICATE: i64 = 1000;
/// Allocations are in kWh with this many decimals (whole Wh).
pub const KWH_DECIMALS: u32 = 3;
/// The last this many digits of a serial are its number (fits an `i64`).
const MAX_SERIAL_DIGITS: usize = 18;

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A field of the input is invalid (the API answers 422 naming it).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    /// The serials overlap a block already registered (409).
    #[error("{}", overlap_message(.existing))]
    Overlap { existing: Option<Uuid> },
    #[error("no such facility")]
    UnknownFacility,
    #[error("kwh_needed must not be negative")]
    NegativeKwh,
    #[error("database: {0}")]
    Database(#[from] DieselError),
}

fn overlap_message(existing: &Option<Uuid>) -> String {
    match existing {
        Some(id) => format!(
            "these serials overlap certificate {id} of the same registry: a certificate is registered once"
        ),
        None => "these serials overlap a certificate of the same registry: a certificate is registered once".to_owned(),
    }
}

impl CertificateError {
    fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        CertificateError::Invalid {
            field,
            code,
            message: message.into(),
        }
    }

    /// Stable code for API problems.
    pub fn code(&self) -> &'static str {
        match self {
            CertificateError::Invalid { code, .. } => code,
            CertificateError::Overlap { .. } => "certificate_overlap",
            CertificateError::UnknownFacility => "unknown_facility",
            CertificateError::NegativeKwh => "negative_kwh",
            CertificateError::Database(_) => "internal_error",
        }
    }
}

// ---------------------------------------------------------------------------
// Schemes, technologies, markets, serials, vintage
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Scheme {
    /// Renewable Energy Certificate (United States, Canada).
    #[serde(rename = "REC")]
    Rec,
    /// Guarantee of Origin (Europe, EECS via the AIB hub).
    #[serde(rename = "GO")]
    Go,
    /// International REC (countries without a statutory scheme).
    #[serde(rename = "I-REC")]
    IRec,
    /// Large-scale Generation Certificate (Australia).
    #[serde(rename = "LGC")]
    Lgc,
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [Scheme::Rec, Scheme::Go, Scheme::IRec, Scheme::Lgc];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Rec => "REC",
            Scheme::Go => "GO",
            Scheme::IRec => "I-REC",
            Scheme::Lgc => "LGC",
        }
    }

    pub fn parse(s: &str) -> Option<Scheme> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Technology {
    Solar,
    Wind,
    Hydro,
    Geothermal,
    Biomass,
    Biogas,
    /// Tidal and wave.
    Marine,
    Nuclear,
    Gas,
    Coal,
    Oil,
}

impl Technology {
    pub const ALL: [Technology; 11] = [
        Technology::Solar,
        Technology::Wind,
        Technology::Hydro,
        Technology::Geothermal,
        Technology::Biomass,
        Technology::Biogas,
        Technology::Marine,
        Technology::Nuclear,
        Technology::Gas,
        Technology::Coal,
        Technology::Oil,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Technology::Solar => "solar",
            Technology::Wind => "wind",
            Technology::Hydro => "hydro",
            Technology::Geothermal => "geothermal",
            Technology::Biomass => "biomass",
            Technology::Biogas => "biogas",
            Technology::Marine => "marine",
            Technology::Nuclear => "nuclear",
            Technology::Gas => "gas",
            Technology::Coal => "coal",
            Technology::Oil => "oil",
        }
    }

    pub fn parse(s: &str) -> Option<Technology> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Renewable sources carry an emission factor of 0 (the same list as the
    /// `renewable` column the database derives).
    pub fn renewable(self) -> bool {
        !matches!(
            self,
            Technology::Nuclear | Technology::Gas | Technology::Coal | Technology::Oil
        )
    }
}

/// The EU and the EEA, where Guarantees of Origin are the statutory
/// instrument (Directive (EU) 2018/2001, art. 19).
const EU_EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "IS", "LI", "NO",
];

/// Other European countries issuing GOs (Switzerland, the UK's GOs, the
/// Energy Community's contracting parties, the microstates).
const EUROPE_OTHER: &[&str] = &[
    "CH", "GB", "AL", "BA", "GE", "MD", "ME", "MK", "RS", "UA", "AD", "MC", "SM",
];

/// Whether `scheme` is issued in `country`: GO only in Europe, REC only in
/// the US and Canada, LGC only in Australia; I-REC only where none of those
/// (nor the EU's statutory GO) exists.
pub fn scheme_fits_country(scheme: Scheme, country: &str) -> bool {
    let europe = EU_EEA.contains(&country) || EUROPE_OTHER.contains(&country);
    match scheme {
        Scheme::Go => europe,
        Scheme::Rec => matches!(country, "US" | "CA"),
        Scheme::Lgc => country == "AU",
        Scheme::IRec => !matches!(country, "US" | "CA" | "AU") && !EU_EEA.contains(&country),
    }
}

/// The first day of the vintage window of consumption on `day`.
pub fn vintage_window_start(day: NaiveDate) -> NaiveDate {
    day.with_ordinal(1).unwrap_or(day)
}

/// The vintage rule: production started on or before `day` and did not end
/// before 1 January of its calendar year.
pub fn in_vintage(production_start: NaiveDate, production_end: NaiveDate, day: NaiveDate) -> bool {
    production_start <= day && production_end >= vintage_window_start(day)
}

/// A block of serials: the shared prefix (upper case) and the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRange {
    pub prefix: String,
    pub first: i64,
    pub last: i64,
}

impl SerialRange {
    pub fn count(&self) -> i64 {
        self.last - self.first + 1
    }
}

fn split_serial(field: &'static str, serial: &str) -> Result<(String, i64), CertificateError> {
    let s = serial.trim();
    if s.is_empty() || s.len() > 100 {
        return Err(CertificateError::invalid(
            field,
            "invalid",
            "1 to 100 characters",
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | ' '))
    {
        return Err(CertificateError::invalid(
            field,
            "invalid",
            "letters, digits, spaces and - _ . / : only",
        ));
    }
    let digits = s.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(CertificateError::invalid(
            field,
            "invalid",
            "a serial ends in its certificate number",
        ));
    }
    let take = digits.min(MAX_SERIAL_DIGITS);
    let (prefix, number) = s.split_at(s.len() - take);
    let number: i64 = number.parse().map_err(|_| {
        CertificateError::invalid(field, "invalid", "the certificate number is too long")
    })?;
    Ok((prefix.to_ascii_uppercase(), number))
}

/// Splits `start` and `end` into their shared prefix and numbers.
pub fn parse_serials(start: &str, end: &str) -> Result<SerialRange, CertificateError> {
    let (prefix, first) = split_serial("serial_start", start)?;
    let (end_prefix, last) = split_serial("serial_end", end)?;
    if end_prefix != prefix {
        return Err(CertificateError::invalid(
            "serial_end",
            "prefix_mismatch",
            format!(
                "serial_end must differ from serial_start only in its number (prefix {prefix:?}, got {end_prefix:?})"
            ),
        ));
    }
    if last < first {
        return Err(CertificateError::invalid(
            "serial_end",
            "before_start",
            "serial_end's number must not be below serial_start's",
        ));
    }
    Ok(SerialRange {
        prefix,
        first,
        last,
    })
}

// ---------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------

/// A block of certificates to register.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    /// `REC`, `GO`, `I-REC` or `LGC`.
    #[schema(example = "GO")]
    pub scheme: String,
    /// The tracking registry, e.g. `M-RETS`, `AIB hub`, `Evident`.
    #[schema(example = "AIB hub")]
    pub registry: String,
    /// The first serial of the block, ending in its number.
    #[schema(example = "643002406000000000000001")]
    pub serial_start: String,
    /// The last serial: the same prefix, a number not below the first.
    #[schema(example = "643002406000000000001000")]
    pub serial_end: String,
    /// Certificates (1 MWh each): must equal the count of the serial range.
    #[schema(example = 1000)]
    pub mwh: i64,
    /// The generating unit, as the registry names it.
    pub generator: String,
    /// `solar`, `wind`, `hydro`, `geothermal`, `biomass`, `biogas`, `marine`
    /// (renewable), `nuclear`, `gas`, `coal` or `oil`.
    pub technology: String,
    /// ISO 3166-1 alpha-2 of the generator: the market it serves. GO only in
    /// Europe, REC only in US/CA, LGC only in AU.
    #[schema(example = "IS")]
    pub country: String,
    #[schema(value_type = String, format = Date, example = "2026-01-01")]
    pub production_start: NaiveDate,
    /// On or after `production_start`, within a year of it, not in the future.
    #[schema(value_type = String, format = Date, example = "2026-01-31")]
    pub production_end: NaiveDate,
    /// gCO2e per kWh of the source, a decimal string: absent or `0` for
    /// renewables, required otherwise.
    #[serde(default)]
    #[schema(example = "0")]
    pub emission_factor_gco2e_per_kwh: Option<String>,
}

/// A checked [`NewCertificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCertificate {
    pub scheme: Scheme,
    pub registry: String,
    pub serial_start: String,
    pub serial_end: String,
    pub range: SerialRange,
    pub mwh: i64,
    pub generator: String,
    pub technology: Technology,
    pub country: String,
    pub production_start: NaiveDate,
    pub production_end: NaiveDate,
    pub emission_factor: Decimal,
}

fn text(field: &'static str, value: &str, max: usize) -> Result<String, CertificateError> {
    let v = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(CertificateError::invalid(
            field,
            "invalid",
            format!("1 to {max} characters"),
        ));
    }
    Ok(v)
}

impl NewCertificate {
    /// Checks every field against the others; `today` bounds the production.
    pub fn check(&self, today: NaiveDate) -> Result<CheckedCertificate, CertificateError> {
        let scheme = Scheme::parse(&self.scheme).ok_or_else(|| {
            CertificateError::invalid("scheme", "invalid", "one of REC, GO, I-REC, LGC")
        })?;
        let registry = text("registry", &self.registry, 100)?;
        let range = parse_serials(&self.serial_start, &self.serial_end)?;
        if self.mwh != range.count() {
            return Err(CertificateError::invalid(
                "mwh",
                "range_count_mismatch",
                format!(
                    "the serials hold {} certificates of 1 MWh; mwh must equal that",
                    range.count()
                ),
            ));
        }
        let generator = text("generator", &self.generator, 200)?;
        let technology = Technology::parse(&self.technology).ok_or_else(|| {
            CertificateError::invalid(
                "technology",
                "invalid",
                format!(
                    "one of {}",
                    Technology::ALL.map(Technology::as_str).join(", ")
                ),
            )
        })?;
        let country = Country::parse(&self.country)
            .ok_or_else(|| {
                CertificateError::invalid(
                    "country",
                    "invalid",
                    "an ISO 3166-1 alpha-2 country code, e.g. \"IS\"",
                )
            })?
            .as_str()
            .to_owned();
        if !scheme_fits_country(scheme, &country) {
            return Err(CertificateError::invalid(
                "country",
                "scheme_market_mismatch",
                format!(
                    "{} certificates are not issued in {country} (GO: Europe; REC: US, CA; LGC: AU; I-REC: elsewhere)",
                    scheme.as_str()
                ),
            ));
        }
        if self.production_end < self.production_start {
            return Err(CertificateError::invalid(
                "production_end",
                "before_start",
                "production_end must not be before production_start",
            ));
        }
        if self.production_end > today {
            return Err(CertificateError::invalid(
                "production_end",
                "in_future",
                "certificates are issued for energy already produced",
            ));
        }
        if self
            .production_start
            .checked_add_months(chrono::Months::new(12))
            .is_none_or(|limit| self.production_end >= limit)
        {
            return Err(CertificateError::invalid(
                "production_end",
                "period_too_long",
                "a production period spans less than a year (registries issue per month to year)",
            ));
        }
        let emission_factor = match (technology.renewable(), &self.emission_factor_gco2e_per_kwh) {
            (true, None) => Decimal::ZERO,
            (false, None) => {
                return Err(CertificateError::invalid(
                    "emission_factor_gco2e_per_kwh",
                    "required",
                    "a non-renewable source needs its emission factor (gCO2e/kWh)",
                ));
            }
            (renewable, Some(s)) => {
                let f: Decimal = s.trim().parse().map_err(|_| {
                    CertificateError::invalid(
                        "emission_factor_gco2e_per_kwh",
                        "invalid",
                        "a decimal string, e.g. \"12.5\"",
                    )
                })?;
                if f < Decimal::ZERO || f >= Decimal::from(5000) {
                    return Err(CertificateError::invalid(
                        "emission_factor_gco2e_per_kwh",
                        "out_of_range",
                        "at least 0 and below 5000",
                    ));
                }
                if f.normalize().scale() > 3 {
                    return Err(CertificateError::invalid(
                        "emission_factor_gco2e_per_kwh",
                        "too_many_decimals",
                        "at most 3 decimals",
                    ));
                }
                if renewable && !f.is_zero() {
                    return Err(CertificateError::invalid(
                        "emission_factor_gco2e_per_kwh",
                        "must_be_zero",
                        "renewable sources count 0 gCO2e/kWh",
                    ));
                }
                f.normalize()
            }
        };
        Ok(CheckedCertificate {
            scheme,
            registry,
            serial_start: self.serial_start.trim().to_owned(),
            serial_end: self.serial_end.trim().to_owned(),
            range,
            mwh: self.mwh,
            generator,
            technology,
            country,
            production_start: self.production_start,
            production_end: self.production_end,
            emission_factor,
        })
    }
}

/// A registered block of certificates.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = ec, check_for_backend(diesel::pg::Pg))]
pub struct Certificate {
    pub id: Uuid,
    /// `REC`, `GO`, `I-REC` or `LGC`.
    pub scheme: String,
    pub registry: String,
    pub serial_start: String,
    pub serial_end: String,
    #[serde(skip)]
    pub serial_prefix: String,
    /// The number of the first certificate of the block (the serial's last
    /// up to 18 digits), as a string: it may exceed what a JSON number
    /// holds exactly in JavaScript.
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String, example = "406000000000000001")]
    pub range_first: i64,
    /// The number of the last certificate, as a string.
    #[serde(serialize_with = "as_string")]
    #[schema(value_type = String, example = "406000000000001000")]
    pub range_last: i64,
    pub mwh: i64,
    pub generator: String,
    pub technology: String,
    pub renewable: bool,
    /// The market (ISO 3166-1 alpha-2).
    pub country: String,
    #[schema(value_type = String, format = Date)]
    pub production_start: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub production_end: NaiveDate,
    #[schema(value_type = String)]
    pub emission_factor_gco2e_per_kwh: Decimal,
    pub created_by: String,
    pub created_at: chrono::DateTime<Utc>,
}

fn as_string<S: serde::Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

fn tidy(c: Certificate) -> Certificate {
    Certificate {
        emission_factor_gco2e_per_kwh: c.emission_factor_gco2e_per_kwh.normalize(),
        ..c
    }
}

/// A certificate block with what is allocated and what remains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CertificateBalance {
    #[serde(flatten)]
    pub certificate: Certificate,
    /// MWh allocated to facility-days (up to 6 decimals: whole Wh).
    #[schema(value_type = String, example = "12.345678")]
    pub allocated_mwh: Decimal,
    #[schema(value_type = String, example = "987.654322")]
    pub remaining_mwh: Decimal,
}

impl CertificateBalance {
    /// `certificate` with `allocated_kwh` of it allocated.
    pub fn new(certificate: Certificate, allocated_kwh: Decimal) -> Self {
        let total = Decimal::from(certificate.mwh);
        let allocated = (allocated_kwh / Decimal::from(KWH_PER_CERTIFICATE)).normalize();
        CertificateBalance {
            certificate,
            allocated_mwh: allocated,
            remaining_mwh: (total - allocated).normalize(),
        }
    }
}

fn is_overlap(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ExclusionViolation, info)
            if info.constraint_name() == Some("energy_certificates_no_overlap")
    )
}

/// The block that overlaps `c`, if any (for the 409's detail).
async fn overlapping(
    conn: &mut AsyncPgConnection,
    c: &CheckedCertificate,
) -> Result<Option<Uuid>, DieselError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let found: Option<Found> = diesel::sql_query(
        "SELECT id FROM energy_certificates \
         WHERE lower(regexp_replace(registry, '[^[:alnum:]]', '', 'g')) \
             = lower(regexp_replace($1, '[^[:alnum:]]', '', 'g')) \
           AND serial_prefix = $2 \
           AND int8range(range_first, range_last, '[]') && int8range($3, $4, '[]') \
         ORDER BY created_at LIMIT 1",
    )
    .bind::<Text, _>(&c.registry)
    .bind::<Text, _>(&c.range.prefix)
    .bind::<BigInt, _>(c.range.first)
    .bind::<BigInt, _>(c.range.last)
    .get_result(conn)
    .await
    .optional()?;
    Ok(found.map(|f| f.id))
}

/// Registers a block of certificates and appends it to the audit log, in
/// one transaction. `actor` is the staff member (`user:<id>`).
pub async fn create(
    conn: &mut AsyncPgConnection,
    actor: &str,
    ip: &str,
    new: &NewCertificate,
) -> Result<Certificate, CertificateError> {
    let c = new.check(Utc::now().date_naive())?;
    let id = Uuid::now_v7();
    let result = conn
        .transaction(async |t| {
            let row: Certificate = diesel::insert_into(ec::table)
                .values((
                    ec::id.eq(id),
                    ec::scheme.eq(c.scheme.as_str()),
                    ec::registry.eq(&c.registry),
                    ec::serial_start.eq(&c.serial_start),
                    ec::serial_end.eq(&c.serial_end),
                    ec::serial_prefix.eq(&c.range.prefix),
                    ec::range_first.eq(c.range.first),
                    ec::range_last.eq(c.range.last),
                    ec::mwh.eq(c.mwh),
                    ec::generator.eq(&c.generator),
                    ec::technology.eq(c.technology.as_str()),
                    ec::country.eq(&c.country),
                    ec::production_start.eq(c.production_start),
                    ec::production_end.eq(c.production_end),
                    ec::emission_factor_gco2e_per_kwh.eq(c.emission_factor),
                    ec::created_by.eq(actor),
                ))
                .returning(Certificate::as_returning())
                .get_result(t)
                .await?;
            let row = tidy(row);
            audit::append(
                t,
                &AuditEntry::new(
                    actor,
                    "carbon.certificate.create",
                    format!("energy_certificate:{id}"),
                )
                .ip(ip)
                .after(serde_json::to_value(&row).unwrap_or_default()),
            )
            .await?;
            Ok::<_, DieselError>(row)
        })
        .await;
    match result {
        Ok(row) => Ok(row),
        Err(e) if is_overlap(&e) => Err(CertificateError::Overlap {
            existing: overlapping(conn, &c).await?,
        }),
        Err(e) => Err(e.into()),
    }
}

/// kWh allocated per certificate, for `ids`.
async fn allocated_kwh(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Decimal>, DieselError> {
    let rows: Vec<(Uuid, Option<Decimal>)> = ca::table
        .filter(ca::certificate_id.eq_any(ids))
        .group_by(ca::certificate_id)
        .select((ca::certificate_id, diesel::dsl::sum(ca::kwh)))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kwh)| (id, kwh.unwrap_or_default()))
        .collect())
}

/// Registered blocks, newest first, of one market when `country` is given,
/// with their allocated and remaining MWh.
pub async fn list(
    conn: &mut AsyncPgConnection,
    country: Option<&str>,
    limit: i64,
) -> Result<Vec<CertificateBalance>, CertificateError> {
    let mut q = ec::table.into_boxed();
    if let Some(country) = country {
        q = q.filter(ec::country.eq(country.to_ascii_uppercase()));
    }
    let rows: Vec<Certificate> = q
        .order((ec::created_at.desc(), ec::id.desc()))
        .limit(limit)
        .select(Certificate::as_select())
        .load(conn)
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
    let used = allocated_kwh(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|c| {
            let kwh = used.get(&c.id).copied().unwrap_or_default();
            CertificateBalance::new(tidy(c), kwh)
        })
        .collect())
}

/// One block with its balance.
pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<CertificateBalance>, CertificateError> {
    let row: Option<Certificate> = ec::table
        .find(id)
        .select(Certificate::as_select())
        .first(conn)
        .await
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let used = allocated_kwh(conn, &[id]).await?;
    let kwh = used.get(&id).copied().unwrap_or_default();
    Ok(Some(CertificateBalance::new(tidy(row), kwh)))
}

// ---------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------

/// What certificates cover of a facility-day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCoverage {
    /// Σ of the allocations' kWh (3 decimals), at most the kWh asked for.
    pub covered_kwh: Decimal,
    /// (certificate id, kWh, the source's emission factor in gCO2e/kWh), in
    /// the order they were allocated (oldest production first).
    pub allocations: Vec<(Uuid, Decimal, Decimal)>,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = BigInt)]
    mwh: i64,
    #[diesel(sql_type = Numeric)]
    factor: Decimal,
}

/// The stored coverage of a facility-day (the whole-day allocations).
async fn stored_coverage(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    day: NaiveDate,
) -> Result<DayCoverage, DieselError> {
    let rows: Vec<(Uuid, Decimal, Decimal)> = ca::table
        .inner_join(ec::table)
        .filter(ca::facility_id.eq(facility_id))
        .filter(ca::day.eq(day))
        .filter(ca::hour.is_null())
        .order(ca::id.asc())
        .select((
            ca::certificate_id,
            ca::kwh,
            ec::emission_factor_gco2e_per_kwh,
        ))
        .load(conn)
        .await?;
    let allocations: Vec<(Uuid, Decimal, Decimal)> = rows
        .into_iter()
        .map(|(id, kwh, f)| (id, kwh.normalize(), f.normalize()))
        .collect();
    Ok(DayCoverage {
        covered_kwh: allocations
            .iter()
            .map(|(_, kwh, _)| *kwh)
            .sum::<Decimal>()
            .normalize(),
        allocations,
    })
}

/// Covers `kwh_needed` of `facility_id`'s consumption on `day` with
/// certificates of the facility's market and the day's vintage window,
/// oldest production first, each kWh once. Called once per facility-day by
/// the carbon daily job; a second call answers the stored coverage and
/// allocates nothing. Runs in one transaction (a savepoint inside the
/// caller's).
pub async fn allocate_for_day(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    day: NaiveDate,
    kwh_needed: Decimal,
) -> Result<DayCoverage, CertificateError> {
    if kwh_needed < Decimal::ZERO {
        return Err(CertificateError::NegativeKwh);
    }
    let needed = kwh_needed
        .round_dp_with_strategy(KWH_DECIMALS, RoundingStrategy::ToZero)
        .normalize();
    conn.transaction(async |c| {
        let country: String = facilities::table
            .find(facility_id)
            .select(facilities::country)
            .first(c)
            .await
            .optional()?
            .ok_or(CertificateError::UnknownFacility)?;
        // The day's row is the once-only marker: a concurrent call for the
        // same facility-day waits here, then finds it and answers what the
        // first one stored.
        let fresh = diesel::insert_into(cd::table)
            .values((
                cd::facility_id.eq(facility_id),
                cd::day.eq(day),
                cd::country.eq(&country),
                cd::kwh_needed.eq(needed),
            ))
            .on_conflict_do_nothing()
            .execute(c)
            .await?;
        if fresh == 0 || needed.is_zero() {
            return Ok(stored_coverage(c, facility_id, day).await?);
        }
        // Certificates of the market and vintage window that still hold kWh
        // (allocations only grow, so one seen exhausted stays so), locked in
        // one order so that concurrent matchings queue instead of deadlocking.
        let candidates: Vec<Candidate> = diesel::sql_query(
            "SELECT c.id, c.mwh, c.emission_factor_gco2e_per_kwh AS factor \
             FROM energy_certificates c \
             WHERE c.country = $1 AND c.production_start <= $2 AND c.production_end >= $3 \
               AND c.mwh * 1000 > (SELECT coalesce(sum(a.kwh), 0) FROM certificate_allocations a \
                                   WHERE a.certificate_id = c.id) \
             ORDER BY c.production_start, c.production_end, c.created_at, c.id \
             FOR UPDATE OF c",
        )
        .bind::<Text, _>(&country)
        .bind::<Date, _>(day)
        .bind::<Date, _>(vintage_window_start(day))
        .load(c)
        .await?;
        // Read after the locks: every allocation committed before them counts.
        let ids: Vec<Uuid> = candidates.iter().map(|x| x.id).collect();
        let used = allocated_kwh(c, &ids).await?;
        let mut left = needed;
        let mut planned: Vec<(Uuid, Decimal)> = Vec::new();
        for cand in &candidates {
            if left.is_zero() {
                break;
            }
            let capacity = Decimal::from(cand.mwh) * Decimal::from(KWH_PER_CERTIFICATE);
            let free = capacity - used.get(&cand.id).copied().unwrap_or_default();
            if free <= Decimal::ZERO {
                continue;
            }
            let take = free.min(left);
            planned.push((cand.id, take));
            left -= take;
        }
        if !planned.is_empty() {
            let rows: Vec<_> = planned
                .iter()
                .map(|(id, kwh)| {
                    (
                        ca::certificate_id.eq(*id),
                        ca::facility_id.eq(facility_id),
                        ca::day.eq(day),
                        ca::kwh.eq(*kwh),
                    )
                })
                .collect();
            diesel::insert_into(ca::table)
                .values(rows)
                .execute(c)
                .await?;
        }
        let factors: HashMap<Uuid, Decimal> = candidates.iter().map(|x| (x.id, x.factor)).collect();
        let allocations: Vec<(Uuid, Decimal, Decimal)> = planned
            .into_iter()
            .map(|(id, kwh)| {
                (
                    id,
                    kwh.normalize(),
                    factors.get(&id).copied().unwrap_or_default().normalize(),
                )
            })
            .collect();
        Ok(DayCoverage {
            covered_kwh: (needed - left).normalize(),
            allocations,
        })
    })
    .await
}

/// Everything the certificate records must satisfy; one sentence per
/// violation, empty when clean: no certificate allocated beyond its MWh, no
/// allocation outside its market or vintage window, no facility-day covered
/// beyond the kWh it asked for.
pub async fn conservation_check(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<String>, CertificateError> {
    #[derive(QueryableByName)]
    struct Problem {
        #[diesel(sql_type = Text)]
        problem: String,
    }
    let queries = [
        "SELECT format('certificate %s (%s %s..%s) holds %s kWh but %s kWh are allocated', \
                c.id, c.registry, c.serial_start, c.serial_end, c.mwh * 1000, sum(a.kwh)) AS problem \
         FROM energy_certificates c JOIN certificate_allocations a ON a.certificate_id = c.id \
         GROUP BY c.id HAVING sum(a.kwh) > c.mwh * 1000 ORDER BY c.id",
        "SELECT format('allocation %s: certificate %s of market %s used for facility %s on %s in market %s', \
                a.id, c.id, c.country, a.facility_id, a.day, d.country) AS problem \
         FROM certificate_allocations a \
         JOIN energy_certificates c ON c.id = a.certificate_id \
         JOIN certificate_coverage_days d ON d.facility_id = a.facility_id AND d.day = a.day \
         WHERE c.country <> d.country ORDER BY a.id",
        "SELECT format('allocation %s: certificate %s produced %s to %s used on %s, outside the vintage window', \
                a.id, c.id, c.production_start, c.production_end, a.day) AS problem \
         FROM certificate_allocations a JOIN energy_certificates c ON c.id = a.certificate_id \
         WHERE NOT (c.production_start <= a.day \
                    AND c.production_end >= date_trunc('year', a.day)::date) ORDER BY a.id",
        "SELECT format('facility %s on %s: %s kWh covered of %s kWh asked', \
                d.facility_id, d.day, sum(a.kwh), d.kwh_needed) AS problem \
         FROM certificate_coverage_days d \
         JOIN certificate_allocations a ON a.facility_id = d.facility_id AND a.day = d.day \
         GROUP BY d.facility_id, d.day HAVING sum(a.kwh) > d.kwh_needed \
         ORDER BY d.facility_id, d.day",
    ];
    let mut out = Vec::new();
    for q in queries {
        let rows: Vec<Problem> = diesel::sql_query(q).load(conn).await?;
        out.extend(rows.into_iter().map(|p| p.problem));
    }
    Ok(out)
}

/// What one certificate block covered of a facility over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CertificateUse {
    pub certificate_id: Uuid,
    pub scheme: String,
    pub registry: String,
    pub serial_start: String,
    pub serial_end: String,
    pub technology: String,
    pub renewable: bool,
    pub country: String,
    #[schema(value_type = String, format = Date)]
    pub production_start: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub production_end: NaiveDate,
    #[schema(value_type = String)]
    pub kwh: Decimal,
    #[schema(value_type = String)]
    pub emission_factor_gco2e_per_kwh: Decimal,
}

/// Certificate coverage of a facility over `from..=to`, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Coverage {
    pub facility_id: Uuid,
    #[schema(value_type = String, format = Date)]
    pub from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    pub to: NaiveDate,
    /// Facility-days matched in the period.
    pub days_matched: i64,
    /// Σ kWh the matched days asked certificates to cover.
    #[schema(value_type = String)]
    pub kwh_needed: Decimal,
    #[schema(value_type = String)]
    pub covered_kwh: Decimal,
    /// `kwh_needed - covered_kwh`: for the residual mix factor.
    #[schema(value_type = String)]
    pub uncovered_kwh: Decimal,
    /// Of `covered_kwh`, from renewable sources.
    #[schema(value_type = String)]
    pub renewable_kwh: Decimal,
    /// Σ kWh × the source's factor over the covered kWh, in gCO2e.
    #[schema(value_type = String)]
    pub covered_gco2e: Decimal,
    /// Per certificate block, oldest production first.
    pub certificates: Vec<CertificateUse>,
}

/// Totals of the certificate coverage of `facility_id` from `from` to `to`
/// (both included).
pub async fn coverage(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Coverage, CertificateError> {
    let (days_matched, kwh_needed): (i64, Option<Decimal>) = cd::table
        .filter(cd::facility_id.eq(facility_id))
        .filter(cd::day.between(from, to))
        .select((diesel::dsl::count_star(), diesel::dsl::sum(cd::kwh_needed)))
        .first(conn)
        .await?;
    let rows: Vec<(Decimal, Certificate)> = ca::table
        .inner_join(ec::table)
        .filter(ca::facility_id.eq(facility_id))
        .filter(ca::day.between(from, to))
        .order((ec::production_start, ec::production_end, ec::id))
        .select((ca::kwh, Certificate::as_select()))
        .load(conn)
        .await?;
    let mut uses: Vec<CertificateUse> = Vec::new();
    for (kwh, c) in rows {
        match uses.last_mut() {
            Some(u) if u.certificate_id == c.id => u.kwh += kwh,
            _ => uses.push(CertificateUse {
                certificate_id: c.id,
                scheme: c.scheme,
                registry: c.registry,
                serial_start: c.serial_start,
                serial_end: c.serial_end,
                technology: c.technology,
                renewable: c.renewable,
                country: c.country,
                production_start: c.production_start,
                production_end: c.production_end,
                kwh,
                emission_factor_gco2e_per_kwh: c.emission_factor_gco2e_per_kwh.normalize(),
            }),
        }
    }
    let kwh_needed = kwh_needed.unwrap_or_default().normalize();
    let covered: Decimal = uses.iter().map(|u| u.kwh).sum();
    let renewable: Decimal = uses.iter().filter(|u| u.renewable).map(|u| u.kwh).sum();
    let gco2e: Decimal = uses
        .iter()
        .map(|u| u.kwh * u.emission_factor_gco2e_per_kwh)
        .sum();
    for u in &mut uses {
        u.kwh = u.kwh.normalize();
    }
    Ok(Coverage {
        facility_id,
        from,
        to,
        days_matched,
        kwh_needed,
        covered_kwh: covered.normalize(),
        uncovered_kwh: (kwh_needed - covered).max(Decimal::ZERO).normalize(),
        renewable_kwh: renewable.normalize(),
        covered_gco2e: gco2e.normalize(),
        certificates: uses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn serials_split_into_prefix_and_number() {
        let r = parse_serials("mrets-1234-MN-03-2026-1", "MRETS-1234-MN-03-2026-1000").unwrap();
        assert_eq!(r.prefix, "MRETS-1234-MN-03-2026-");
        assert_eq!((r.first, r.last, r.count()), (1, 1000, 1000));
        // 24-digit EECS numbers keep their first 6 digits in the prefix.
        let r = parse_serials("643002406000000000000001", "643002406000000000001000").unwrap();
        assert_eq!(r.prefix, "643002");
        assert_eq!(r.count(), 1000);
        assert!(matches!(
            parse_serials("A-1", "B-2"),
            Err(CertificateError::Invalid {
                field: "serial_end",
                code: "prefix_mismatch",
                ..
            })
        ));
        assert!(matches!(
            parse_serials("A-9", "A-2"),
            Err(CertificateError::Invalid {
                field: "serial_end",
                code: "before_start",
                ..
            })
        ));
        assert!(matches!(
            parse_serials("A-", "A-2"),
            Err(CertificateError::Invalid {
                field: "serial_start",
                ..
            })
        ));
    }

    #[test]
    fn vintage_is_the_calendar_year_up_to_the_day() {
        let day = d("2026-06-15");
        assert!(in_vintage(d("2026-01-01"), d("2026-01-31"), day));
        assert!(in_vintage(d("2026-06-01"), d("2026-06-30"), day));
        assert!(in_vintage(d("2025-12-01"), d("2026-01-31"), day));
        assert!(!in_vintage(d("2025-12-01"), d("2025-12-31"), day));
        assert!(!in_vintage(d("2026-06-16"), d("2026-06-30"), day));
    }

    #[test]
    fn schemes_belong_to_their_markets() {
        assert!(scheme_fits_country(Scheme::Go, "IS"));
        assert!(scheme_fits_country(Scheme::Go, "NO"));
        assert!(!scheme_fits_country(Scheme::Go, "US"));
        assert!(scheme_fits_country(Scheme::Rec, "CA"));
        assert!(!scheme_fits_country(Scheme::Rec, "DE"));
        assert!(scheme_fits_country(Scheme::Lgc, "AU"));
        assert!(!scheme_fits_country(Scheme::Lgc, "NZ"));
        assert!(scheme_fits_country(Scheme::IRec, "BR"));
        assert!(!scheme_fits_country(Scheme::IRec, "DE"));
        assert_eq!(Scheme::parse("i-rec"), Some(Scheme::IRec));
        assert!(Technology::Biomass.renewable() && !Technology::Nuclear.renewable());
    }
}
