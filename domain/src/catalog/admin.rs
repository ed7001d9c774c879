//! Back-office management of the catalog: algorithms, facilities, pools and
//! products, and the validation every write of them goes through.
//!
//! The input types are the request bodies of the `/admin/v1` catalog routes:
//! decimals are JSON strings (a JSON number is refused, never rounded), and
//! every check answers a [`CatalogError`] naming the offending field by its
//! path in the body (`pue`, `pay_assets[1]`). Each write checks the whole row
//! it would store, so a partial update (PATCH) cannot leave a product whose
//! pool, facility and algorithm disagree.
//!
//! Editing a product bumps its `version` and `updated_at` and never touches
//! contracts or quotes: they keep their own copy of the terms
//! ([`Product::terms`]). State changes follow [`ProductState::can_become`].
//!
//! Functions that run more than one statement open a transaction, which
//! nests (as a savepoint) in the caller's: the API appends the audit entry in
//! the same outer transaction.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::model::{Algorithm, Facility, Pool, Product, ProductState, StopRule};
use crate::identity::jurisdictions::Country;
use crate::money::Asset;
use crate::schema::{algorithms, facilities, pools, products};

/// The units hashrate is sold in (the `algorithms.hashrate_unit` CHECK).
pub const HASHRATE_UNITS: [&str; 6] = ["H/s", "KH/s", "MH/s", "GH/s", "TH/s", "PH/s"];

/// The units of a facility's efficiency (the `facilities.efficiency_unit` CHECK).
pub const EFFICIENCY_UNITS: [&str; 3] = ["J/TH", "J/GH", "J/MH"];

/// Longest name, region, miner model or pool account accepted, in characters.
pub const MAX_TEXT: usize = 200;

/// The longest a product may run, in days (the `duration_days` CHECK).
pub const MAX_DURATION_DAYS: i32 = 3650;

/// The highest published conversion spread, in basis points.
pub const MAX_SPREAD_BPS: i32 = 1000;

/// The kinds of catalog rows, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Algorithm,
    Facility,
    Pool,
    Product,
}

impl Entity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Entity::Algorithm => "algorithm",
            Entity::Facility => "facility",
            Entity::Pool => "pool",
            Entity::Product => "product",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a catalog read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A field of the input is invalid, or names a row that does not exist
    /// or does not fit the others (the API answers 422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path in the request body, e.g. `pay_assets[1]`.
        field: String,
        code: &'static str,
        message: String,
    },
    /// The addressed row does not exist (404).
    #[error("{0} not found")]
    NotFound(Entity),
    /// Another row already has this name (or code, for algorithms) (409).
    #[error("a {0} with this {field} already exists", field = duplicate_field(*.0))]
    Duplicate(Entity),
    /// The product's state cannot move to the one asked (409).
    #[error("a product in state {} cannot become {}", .from.as_str(), .to.as_str())]
    InvalidTransition {
        from: ProductState,
        to: ProductState,
    },
    /// A stored row breaks an invariant the database should have kept.
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] DieselError),
}

fn duplicate_field(e: Entity) -> &'static str {
    match e {
        Entity::Algorithm => "code",
        Entity::Facility | Entity::Pool | Entity::Product => "name",
    }
}

impl CatalogError {
    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            CatalogError::Invalid { field, .. } => Some(field),
            CatalogError::Duplicate(e) => Some(duplicate_field(*e)),
            CatalogError::InvalidTransition { .. } => Some("state"),
            CatalogError::NotFound(_) | CatalogError::Corrupt(_) | CatalogError::Database(_) => {
                None
            }
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::Invalid { code, .. } => code,
            CatalogError::NotFound(_) => "not_found",
            CatalogError::Duplicate(Entity::Algorithm) => "algorithm_exists",
            CatalogError::Duplicate(Entity::Facility) => "facility_exists",
            CatalogError::Duplicate(Entity::Pool) => "pool_exists",
            CatalogError::Duplicate(Entity::Product) => "product_exists",
            CatalogError::InvalidTransition { .. } => "invalid_transition",
            CatalogError::Corrupt(_) | CatalogError::Database(_) => "internal_error",
        }
    }

    /// The 422 message of `field`.
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        CatalogError::Invalid {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// A row before and after a change. `changed` is false when the input asked
/// for nothing new: then nothing was written and `before` equals `after`.
#[derive(Debug, Clone)]
pub struct Changed<T> {
    pub before: T,
    pub after: T,
    pub changed: bool,
}

// ---------------------------------------------------------------------------
// Decimals in request bodies
// ---------------------------------------------------------------------------

const NOT_A_DECIMAL: &str = "must be a decimal string such as \"12.5\" (digits, an optional \
     '.' and fraction, an optional leading '-'); JSON numbers and exponents are not accepted";

/// Parses a plain decimal `-?[0-9]+(\.[0-9]+)?` exactly: no exponent, no
/// spaces, and no rounding (more than 28 significant digits is refused).
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    Decimal::from_str_exact(s).ok()
}

struct DecimalVisitor;

impl serde::de::Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal string such as \"12.5\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v).ok_or_else(|| E::custom(NOT_A_DECIMAL))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Decimal, E> {
        Err(E::custom(NOT_A_DECIMAL))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Decimal, E> {
        Err(E::custom(NOT_A_DECIMAL))
    }

    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<Decimal, E> {
        Err(E::custom(NOT_A_DECIMAL))
    }

    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<Decimal, E> {
        Err(E::custom(NOT_A_DECIMAL))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Decimal, E> {
        Err(E::custom(NOT_A_DECIMAL))
    }
}

/// `deserialize_with` for a decimal that must arrive as a JSON string.
pub fn decimal_string<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    // deserialize_any: serde_json answers a number given to deserialize_str
    // with its own message, without asking the visitor.
    d.deserialize_any(DecimalVisitor)
}

/// [`decimal_string`] for an optional field (`null` or absent is `None`).
pub fn optional_decimal_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    struct Wrapped(Decimal);
    impl<'de> Deserialize<'de> for Wrapped {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            decimal_string(d).map(Wrapped)
        }
    }
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

// ---------------------------------------------------------------------------
// Field checks
// ---------------------------------------------------------------------------

fn pow10(k: u32) -> Decimal {
    10i128
        .checked_pow(k)
        .and_then(|p| Decimal::try_from_i128_with_scale(p, 0).ok())
        .unwrap_or(Decimal::MAX)
}

/// Fits a `NUMERIC(precision, scale)` column without rounding.
fn check_numeric(field: &str, v: Decimal, precision: u32, scale: u32) -> Result<()> {
    if v.normalize().scale() > scale {
        return Err(CatalogError::invalid(
            field,
            "too_many_decimals",
            format!("at most {scale} decimal places"),
        ));
    }
    let int_digits = precision.saturating_sub(scale);
    if v.abs() >= pow10(int_digits) {
        return Err(CatalogError::invalid(
            field,
            "too_large",
            format!("must be less than 10^{int_digits}"),
        ));
    }
    Ok(())
}

fn positive(field: &str, v: Decimal, precision: u32, scale: u32) -> Result<()> {
    if v <= Decimal::ZERO {
        return Err(CatalogError::invalid(
            field,
            "not_positive",
            "must be greater than zero",
        ));
    }
    check_numeric(field, v, precision, scale)
}

fn non_negative(field: &str, v: Decimal, precision: u32, scale: u32) -> Result<()> {
    if v < Decimal::ZERO {
        return Err(CatalogError::invalid(
            field,
            "negative",
            "must not be negative",
        ));
    }
    check_numeric(field, v, precision, scale)
}

/// A trimmed, non-empty text of at most [`MAX_TEXT`] characters.
fn text(field: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(CatalogError::invalid(
            field,
            "required",
            "must not be empty",
        ));
    }
    if v.chars().count() > MAX_TEXT {
        return Err(CatalogError::invalid(
            field,
            "too_long",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(v.to_owned())
}

fn int_range(field: &str, v: i32, min: i32, max: i32) -> Result<()> {
    if v < min || v > max {
        return Err(CatalogError::invalid(
            field,
            "out_of_range",
            format!("must be from {min} to {max}"),
        ));
    }
    Ok(())
}

/// A non-empty list of distinct coin tickers (`^[A-Z0-9]{2,10}$`).
fn coins(field: &str, list: &[String]) -> Result<()> {
    if list.is_empty() {
        return Err(CatalogError::invalid(
            field,
            "required",
            "at least one coin",
        ));
    }
    let mut seen = HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let ok = (2..=10).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            return Err(CatalogError::invalid(
                format!("{field}[{i}]"),
                "invalid",
                "a coin ticker: 2 to 10 upper-case letters or digits, e.g. \"LTC\"",
            ));
        }
        if !seen.insert(c.as_str()) {
            return Err(CatalogError::invalid(
                format!("{field}[{i}]"),
                "duplicate",
                format!("{c} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A non-empty list of distinct ledger assets.
fn assets(field: &str, list: &[String]) -> Result<()> {
    if list.is_empty() {
        return Err(CatalogError::invalid(
            field,
            "required",
            "at least one asset",
        ));
    }
    let mut seen = HashSet::new();
    for (i, a) in list.iter().enumerate() {
        let asset = Asset::from_str(a).map_err(|e| {
            CatalogError::invalid(format!("{field}[{i}]"), "unknown_asset", e.to_string())
        })?;
        if !seen.insert(asset) {
            return Err(CatalogError::invalid(
                format!("{field}[{i}]"),
                "duplicate",
                format!("{asset} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn unknown(field: &str, what: Entity) -> CatalogError {
    CatalogError::invalid(field, "unknown", format!("no such {what}"))
}

fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Drops the trailing zeros NUMERIC columns come back with ("1.080").
fn tidy_facility(f: Facility) -> Facility {
    Facility {
        efficiency: f.efficiency.normalize(),
        pue: f.pue.normalize(),
        total_hashrate: f.total_hashrate.normalize(),
        sellable_hashrate: f.sellable_hashrate.normalize(),
        ..f
    }
}

/// Drops the trailing zeros NUMERIC columns come back with ("12.500000").
fn tidy_product(p: Product) -> Product {
    Product {
        hashrate_min: p.hashrate_min.normalize(),
        hashrate_max: p.hashrate_max.normalize(),
        hashrate_step: p.hashrate_step.normalize(),
        price_usd_per_unit: p.price_usd_per_unit.normalize(),
        fee_usd_per_unit_day: p.fee_usd_per_unit_day.normalize(),
        inventory: p.inventory.normalize(),
        sold: p.sold.normalize(),
        ..p
    }
}

// ---------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlgorithm {
    /// 2 to 20 of `a-z 0-9 _ -`, e.g. `sha256`.
    pub code: String,
    pub name: String,
    /// One of `H/s`, `KH/s`, `MH/s`, `GH/s`, `TH/s`, `PH/s`.
    pub hashrate_unit: String,
}

fn check_algorithm(new: &NewAlgorithm) -> Result<Algorithm> {
    let code = &new.code;
    let code_ok = (2..=20).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !code_ok {
        return Err(CatalogError::invalid(
            "code",
            "invalid",
            "2 to 20 of a-z, 0-9, '_' and '-', e.g. \"sha256\"",
        ));
    }
    let name = text("name", &new.name)?;
    if !HASHRATE_UNITS.contains(&new.hashrate_unit.as_str()) {
        return Err(CatalogError::invalid(
            "hashrate_unit",
            "invalid",
            format!("one of {}", HASHRATE_UNITS.join(", ")),
        ));
    }
    Ok(Algorithm {
        code: code.clone(),
        name,
        hashrate_unit: new.hashrate_unit.clone(),
    })
}

pub async fn create_algorithm(
    conn: &mut AsyncPgConnection,
    new: &NewAlgorithm,
) -> Result<Algorithm> {
    let row = check_algorithm(new)?;
    diesel::insert_into(algorithms::table)
        .values(&row)
        .returning(Algorithm::as_returning())
        .get_result(conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                CatalogError::Duplicate(Entity::Algorithm)
            } else {
                e.into()
            }
        })
}

/// Every algorithm, by code.
pub async fn list_algorithms(conn: &mut AsyncPgConnection) -> Result<Vec<Algorithm>> {
    Ok(algorithms::table
        .select(Algorithm::as_select())
        .order(algorithms::code)
        .load(conn)
        .await?)
}

async fn find_algorithm(conn: &mut AsyncPgConnection, code: &str) -> Result<Option<Algorithm>> {
    Ok(algorithms::table
        .find(code)
        .select(Algorithm::as_select())
        .first(conn)
        .await
        .optional()?)
}

// ---------------------------------------------------------------------------
// Facilities
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFacility {
    pub name: String,
    /// ISO 3166-1 alpha-2, e.g. `IS`.
    pub country: String,
    pub region: String,
    pub miner_model: String,
    /// Joules per unit of hashrate, greater than zero, at most 6 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "17.5")]
    pub efficiency: Decimal,
    /// `J/TH`, `J/GH` or `J/MH`.
    pub efficiency_unit: String,
    /// Power usage effectiveness: at least 1, below 5, at most 3 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "1.08")]
    pub pue: Decimal,
    /// In the algorithm's hashrate unit.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "50000")]
    pub total_hashrate: Decimal,
    /// At most `total_hashrate`, in the algorithm's hashrate unit.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "40000")]
    pub sellable_hashrate: Decimal,
    /// The code of an existing algorithm.
    pub algorithm: String,
}

/// A facility update: absent (or null) fields keep their value. The
/// algorithm cannot change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityPatch {
    pub name: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub miner_model: Option<String>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub efficiency: Option<Decimal>,
    pub efficiency_unit: Option<String>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub pue: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub total_hashrate: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub sellable_hashrate: Option<Decimal>,
}

/// The columns a facility write sets.
#[derive(Debug, Clone, PartialEq, Insertable, AsChangeset)]
#[diesel(table_name = facilities)]
struct FacilityRow {
    name: String,
    country: String,
    region: String,
    miner_model: String,
    efficiency: Decimal,
    efficiency_unit: String,
    pue: Decimal,
    total_hashrate: Decimal,
    sellable_hashrate: Decimal,
    algorithm: String,
}

impl FacilityRow {
    fn of(f: &Facility) -> Self {
        FacilityRow {
            name: f.name.clone(),
            country: f.country.clone(),
            region: f.region.clone(),
            miner_model: f.miner_model.clone(),
            efficiency: f.efficiency,
            efficiency_unit: f.efficiency_unit.clone(),
            pue: f.pue,
            total_hashrate: f.total_hashrate,
            sellable_hashrate: f.sellable_hashrate,
            algorithm: f.algorithm.clone(),
        }
    }

    /// Checks every field and answers the row to store (trimmed text, the
    /// upper-case country).
    fn checked(self) -> Result<Self> {
        let name = text("name", &self.name)?;
        let country = Country::parse(&self.country)
            .ok_or_else(|| {
                CatalogError::invalid(
                    "country",
                    "invalid",
                    "an ISO 3166-1 alpha-2 country code, e.g. \"IS\"",
                )
            })?
            .as_str()
            .to_owned();
        let region = text("region", &self.region)?;
        let miner_model = text("miner_model", &self.miner_model)?;
        positive("efficiency", self.efficiency, 20, 6)?;
        if !EFFICIENCY_UNITS.contains(&self.efficiency_unit.as_str()) {
            return Err(CatalogError::invalid(
                "efficiency_unit",
                "invalid",
                format!("one of {}", EFFICIENCY_UNITS.join(", ")),
            ));
        }
        if self.pue < Decimal::ONE || self.pue >= Decimal::from(5) {
            return Err(CatalogError::invalid(
                "pue",
                "out_of_range",
                "must be at least 1 and less than 5",
            ));
        }
        check_numeric("pue", self.pue, 6, 3)?;
        non_negative("total_hashrate", self.total_hashrate, 30, 6)?;
        non_negative("sellable_hashrate", self.sellable_hashrate, 30, 6)?;
        if self.sellable_hashrate > self.total_hashrate {
            return Err(CatalogError::invalid(
                "sellable_hashrate",
                "exceeds_total",
                "must not exceed total_hashrate",
            ));
        }
        Ok(FacilityRow {
            name,
            country,
            region,
            miner_model,
            ..self
        })
    }
}

fn facility_name_taken(e: DieselError) -> CatalogError {
    if is_unique_violation(&e) {
        CatalogError::Duplicate(Entity::Facility)
    } else {
        e.into()
    }
}

pub async fn create_facility(conn: &mut AsyncPgConnection, new: &NewFacility) -> Result<Facility> {
    let row = FacilityRow {
        name: new.name.clone(),
        country: new.country.clone(),
        region: new.region.clone(),
        miner_model: new.miner_model.clone(),
        efficiency: new.efficiency,
        efficiency_unit: new.efficiency_unit.clone(),
        pue: new.pue,
        total_hashrate: new.total_hashrate,
        sellable_hashrate: new.sellable_hashrate,
        algorithm: new.algorithm.clone(),
    }
    .checked()?;
    conn.transaction(async |c| {
        if find_algorithm(c, &row.algorithm).await?.is_none() {
            return Err(unknown("algorithm", Entity::Algorithm));
        }
        diesel::insert_into(facilities::table)
            .values((facilities::id.eq(Uuid::now_v7()), &row))
            .returning(Facility::as_returning())
            .get_result(c)
            .await
            .map(tidy_facility)
            .map_err(facility_name_taken)
    })
    .await
}

/// Every facility, by name.
pub async fn list_facilities(conn: &mut AsyncPgConnection) -> Result<Vec<Facility>> {
    let rows: Vec<Facility> = facilities::table
        .select(Facility::as_select())
        .order((facilities::name, facilities::id))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(tidy_facility).collect())
}

pub async fn facility(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Facility> {
    facilities::table
        .find(id)
        .select(Facility::as_select())
        .first(conn)
        .await
        .optional()?
        .map(tidy_facility)
        .ok_or(CatalogError::NotFound(Entity::Facility))
}

/// Applies `patch` to facility `id`; the merged row is checked as a whole.
pub async fn update_facility(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    patch: &FacilityPatch,
) -> Result<Changed<Facility>> {
    conn.transaction(async |c| {
        let before: Facility = facilities::table
            .find(id)
            .select(Facility::as_select())
            .for_update()
            .first(c)
            .await
            .optional()?
            .map(tidy_facility)
            .ok_or(CatalogError::NotFound(Entity::Facility))?;
        let current = FacilityRow::of(&before);
        let p = patch.clone();
        let merged = FacilityRow {
            name: p.name.unwrap_or_else(|| current.name.clone()),
            country: p.country.unwrap_or_else(|| current.country.clone()),
            region: p.region.unwrap_or_else(|| current.region.clone()),
            miner_model: p.miner_model.unwrap_or_else(|| current.miner_model.clone()),
            efficiency: p.efficiency.unwrap_or(current.efficiency),
            efficiency_unit: p
                .efficiency_unit
                .unwrap_or_else(|| current.efficiency_unit.clone()),
            pue: p.pue.unwrap_or(current.pue),
            total_hashrate: p.total_hashrate.unwrap_or(current.total_hashrate),
            sellable_hashrate: p.sellable_hashrate.unwrap_or(current.sellable_hashrate),
            algorithm: current.algorithm.clone(),
        }
        .checked()?;
        if merged == current {
            return Ok(Changed {
                after: before.clone(),
                before,
                changed: false,
            });
        }
        let after = diesel::update(facilities::table.find(id))
            .set(&merged)
            .returning(Facility::as_returning())
            .get_result(c)
            .await
            .map(tidy_facility)
            .map_err(facility_name_taken)?;
        Ok(Changed {
            before,
            after,
            changed: true,
        })
    })
    .await
}

// ---------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    pub name: String,
    /// The code of an existing algorithm; the facility's algorithm.
    pub algorithm: String,
    /// The coins the pool pays: distinct upper-case tickers, e.g. `["LTC", "DOGE"]`.
    pub coins: Vec<String>,
    /// An existing facility that mines `algorithm`.
    pub facility_id: Uuid,
    /// The account at the pool; may be empty.
    #[serde(default)]
    pub external_account: String,
}

pub async fn create_pool(conn: &mut AsyncPgConnection, new: &NewPool) -> Result<Pool> {
    let name = text("name", &new.name)?;
    coins("coins", &new.coins)?;
    let external_account = new.external_account.trim().to_owned();
    if external_account.chars().count() > MAX_TEXT {
        return Err(CatalogError::invalid(
            "external_account",
            "too_long",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    conn.transaction(async |c| {
        if find_algorithm(c, &new.algorithm).await?.is_none() {
            return Err(unknown("algorithm", Entity::Algorithm));
        }
        let facility = match facility(c, new.facility_id).await {
            Err(CatalogError::NotFound(_)) => return Err(unknown("facility_id", Entity::Facility)),
            other => other?,
        };
        if facility.algorithm != new.algorithm {
            return Err(CatalogError::invalid(
                "facility_id",
                "algorithm_mismatch",
                format!(
                    "the facility mines {}, not {}",
                    facility.algorithm, new.algorithm
                ),
            ));
        }
        diesel::insert_into(pools::table)
            .values((
                pools::id.eq(Uuid::now_v7()),
                pools::name.eq(&name),
                pools::algorithm.eq(&new.algorithm),
                pools::coins.eq(&new.coins),
                pools::facility_id.eq(new.facility_id),
                pools::external_account.eq(&external_account),
            ))
            .returning(Pool::as_returning())
            .get_result(c)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    CatalogError::Duplicate(Entity::Pool)
                } else {
                    e.into()
                }
            })
    })
    .await
}

/// Every pool, by name.
pub async fn list_pools(conn: &mut AsyncPgConnection) -> Result<Vec<Pool>> {
    Ok(pools::table
        .select(Pool::as_select())
        .order((pools::name, pools::id))
        .load(conn)
        .await?)
}

async fn find_pool(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Pool>> {
    Ok(pools::table
        .find(id)
        .select(Pool::as_select())
        .first(conn)
        .await
        .optional()?)
}

// ---------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------

fn default_spread_bps() -> i32 {
    50
}

fn default_stop_after_days() -> i32 {
    3
}

/// A new product; it starts as a draft with nothing sold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub name: String,
    /// The code of an existing algorithm.
    pub algorithm: String,
    /// Coins the product pays out of: a subset of the pool's coins.
    pub mined_coins: Vec<String>,
    /// A pool of `algorithm` at `facility_id`.
    pub pool_id: Uuid,
    pub facility_id: Uuid,
    /// The algorithm's hashrate unit; any other is refused. Defaults to it.
    #[serde(default)]
    pub hashrate_unit: Option<String>,
    /// Smallest purchase: greater than zero and a multiple of `hashrate_step`.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "10")]
    pub hashrate_min: Decimal,
    /// Largest purchase: at least `hashrate_min` and a multiple of `hashrate_step`.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "1000")]
    pub hashrate_max: Decimal,
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "10")]
    pub hashrate_step: Decimal,
    /// Greater than zero, at most 6 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "12.5")]
    pub price_usd_per_unit: Decimal,
    /// 1 to 3650.
    pub duration_days: i32,
    /// The maintenance fee: zero or more, at most 8 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "0.045")]
    pub fee_usd_per_unit_day: Decimal,
    /// Assets a buyer may pay with, e.g. `["BTC", "USDT"]`.
    pub pay_assets: Vec<String>,
    /// Assets payouts may be taken in.
    pub payout_assets: Vec<String>,
    /// 0 to 1000 basis points; 50 when absent.
    #[serde(default = "default_spread_bps")]
    pub spread_bps: i32,
    /// `none`, `pause_extend` or `stop`.
    pub stop_rule: String,
    /// At least 1; 3 when absent.
    #[serde(default = "default_stop_after_days")]
    pub stop_after_days: i32,
    /// Hashrate for sale in total: at most the facility's sellable hashrate.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "5000")]
    pub inventory: Decimal,
}

/// A product update: absent (or null) fields keep their value. The state has
/// its own operation, and `sold` is the orders' business.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    /// Only while nothing is sold.
    pub algorithm: Option<String>,
    pub mined_coins: Option<Vec<String>>,
    pub pool_id: Option<Uuid>,
    pub facility_id: Option<Uuid>,
    pub hashrate_unit: Option<String>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub hashrate_min: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub hashrate_max: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub hashrate_step: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub price_usd_per_unit: Option<Decimal>,
    pub duration_days: Option<i32>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub fee_usd_per_unit_day: Option<Decimal>,
    pub pay_assets: Option<Vec<String>>,
    pub payout_assets: Option<Vec<String>>,
    pub spread_bps: Option<i32>,
    pub stop_rule: Option<String>,
    pub stop_after_days: Option<i32>,
    #[serde(default, deserialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<String>)]
    pub inventory: Option<Decimal>,
}

/// The columns a product write sets (everything but id, sold, state,
/// version and the timestamps).
#[derive(Debug, Clone, PartialEq, Insertable, AsChangeset)]
#[diesel(table_name = products)]
struct ProductRow {
    name: String,
    algorithm: String,
    mined_coins: Vec<String>,
    pool_id: Uuid,
    facility_id: Uuid,
    hashrate_unit: String,
    hashrate_min: Decimal,
    hashrate_max: Decimal,
    hashrate_step: Decimal,
    price_usd_per_unit: Decimal,
    duration_days: i32,
    fee_usd_per_unit_day: Decimal,
    pay_assets: Vec<String>,
    payout_assets: Vec<String>,
    spread_bps: i32,
    stop_rule: String,
    stop_after_days: i32,
    inventory: Decimal,
}

impl ProductRow {
    fn of(p: &Product) -> Self {
        ProductRow {
            name: p.name.clone(),
            algorithm: p.algorithm.clone(),
            mined_coins: p.mined_coins.clone(),
            pool_id: p.pool_id,
            facility_id: p.facility_id,
            hashrate_unit: p.hashrate_unit.clone(),
            hashrate_min: p.hashrate_min,
            hashrate_max: p.hashrate_max,
            hashrate_step: p.hashrate_step,
            price_usd_per_unit: p.price_usd_per_unit,
            duration_days: p.duration_days,
            fee_usd_per_unit_day: p.fee_usd_per_unit_day,
            pay_assets: p.pay_assets.clone(),
            payout_assets: p.payout_assets.clone(),
            spread_bps: p.spread_bps,
            stop_rule: p.stop_rule.clone(),
            stop_after_days: p.stop_after_days,
            inventory: p.inventory,
        }
    }

    /// The checks that need no other row.
    fn check_fields(&mut self, sold: Decimal) -> Result<()> {
        self.name = text("name", &self.name)?;
        coins("mined_coins", &self.mined_coins)?;
        positive("hashrate_min", self.hashrate_min, 30, 6)?;
        positive("hashrate_max", self.hashrate_max, 30, 6)?;
        positive("hashrate_step", self.hashrate_step, 30, 6)?;
        if self.hashrate_max < self.hashrate_min {
            return Err(CatalogError::invalid(
                "hashrate_max",
                "below_min",
                "must be at least hashrate_min",
            ));
        }
        for (field, v) in [
            ("hashrate_min", self.hashrate_min),
            ("hashrate_max", self.hashrate_max),
        ] {
            if !(v % self.hashrate_step).is_zero() {
                return Err(CatalogError::invalid(
                    field,
                    "not_a_step",
                    format!(
                        "must be a multiple of hashrate_step ({})",
                        self.hashrate_step.normalize()
                    ),
                ));
            }
        }
        positive("price_usd_per_unit", self.price_usd_per_unit, 20, 6)?;
        int_range("duration_days", self.duration_days, 1, MAX_DURATION_DAYS)?;
        non_negative("fee_usd_per_unit_day", self.fee_usd_per_unit_day, 20, 8)?;
        assets("pay_assets", &self.pay_assets)?;
        assets("payout_assets", &self.payout_assets)?;
        int_range("spread_bps", self.spread_bps, 0, MAX_SPREAD_BPS)?;
        if StopRule::parse(&self.stop_rule).is_none() {
            return Err(CatalogError::invalid(
                "stop_rule",
                "invalid",
                "one of none, pause_extend, stop",
            ));
        }
        int_range("stop_after_days", self.stop_after_days, 1, i32::MAX)?;
        non_negative("inventory", self.inventory, 30, 6)?;
        if self.inventory < sold {
            return Err(CatalogError::invalid(
                "inventory",
                "below_sold",
                format!(
                    "must be at least the hashrate already sold ({})",
                    sold.normalize()
                ),
            ));
        }
        Ok(())
    }

    /// Every check: the fields, then the algorithm, pool and facility they
    /// name, which must exist and agree.
    async fn check(&mut self, conn: &mut AsyncPgConnection, sold: Decimal) -> Result<()> {
        self.check_fields(sold)?;
        let algorithm = find_algorithm(conn, &self.algorithm)
            .await?
            .ok_or_else(|| unknown("algorithm", Entity::Algorithm))?;
        if self.hashrate_unit != algorithm.hashrate_unit {
            return Err(CatalogError::invalid(
                "hashrate_unit",
                "unit_mismatch",
                format!("must be the algorithm's unit, {}", algorithm.hashrate_unit),
            ));
        }
        let pool = find_pool(conn, self.pool_id)
            .await?
            .ok_or_else(|| unknown("pool_id", Entity::Pool))?;
        if pool.algorithm != self.algorithm {
            return Err(CatalogError::invalid(
                "pool_id",
                "algorithm_mismatch",
                format!("the pool mines {}, not {}", pool.algorithm, self.algorithm),
            ));
        }
        let facility = match facility(conn, self.facility_id).await {
            Err(CatalogError::NotFound(_)) => return Err(unknown("facility_id", Entity::Facility)),
            other => other?,
        };
        if pool.facility_id != facility.id {
            return Err(CatalogError::invalid(
                "facility_id",
                "pool_mismatch",
                "must be the pool's facility",
            ));
        }
        if facility.algorithm != self.algorithm {
            return Err(CatalogError::invalid(
                "facility_id",
                "algorithm_mismatch",
                format!(
                    "the facility mines {}, not {}",
                    facility.algorithm, self.algorithm
                ),
            ));
        }
        for (i, coin) in self.mined_coins.iter().enumerate() {
            if !pool.coins.contains(coin) {
                return Err(CatalogError::invalid(
                    format!("mined_coins[{i}]"),
                    "not_mined_by_pool",
                    format!("the pool pays {}", pool.coins.join(", ")),
                ));
            }
        }
        // Both are in the algorithm's unit: the facility's hashrate is kept
        // in it, and hashrate_unit was checked to be it above.
        if self.inventory > facility.sellable_hashrate {
            return Err(CatalogError::invalid(
                "inventory",
                "exceeds_sellable",
                format!(
                    "must not exceed the facility's sellable hashrate ({} {})",
                    facility.sellable_hashrate.normalize(),
                    algorithm.hashrate_unit
                ),
            ));
        }
        Ok(())
    }
}

/// Creates a draft product.
pub async fn create_product(conn: &mut AsyncPgConnection, new: &NewProduct) -> Result<Product> {
    conn.transaction(async |c| {
        let hashrate_unit = match &new.hashrate_unit {
            Some(u) => u.clone(),
            None => find_algorithm(c, &new.algorithm)
                .await?
                .map(|a| a.hashrate_unit)
                .unwrap_or_default(),
        };
        let mut row = ProductRow {
            name: new.name.clone(),
            algorithm: new.algorithm.clone(),
            mined_coins: new.mined_coins.clone(),
            pool_id: new.pool_id,
            facility_id: new.facility_id,
            hashrate_unit,
            hashrate_min: new.hashrate_min,
            hashrate_max: new.hashrate_max,
            hashrate_step: new.hashrate_step,
            price_usd_per_unit: new.price_usd_per_unit,
            duration_days: new.duration_days,
            fee_usd_per_unit_day: new.fee_usd_per_unit_day,
            pay_assets: new.pay_assets.clone(),
            payout_assets: new.payout_assets.clone(),
            spread_bps: new.spread_bps,
            stop_rule: new.stop_rule.clone(),
            stop_after_days: new.stop_after_days,
            inventory: new.inventory,
        };
        row.check(c, Decimal::ZERO).await?;
        Ok(diesel::insert_into(products::table)
            .values((
                products::id.eq(Uuid::now_v7()),
                &row,
                products::state.eq(ProductState::Draft.as_str()),
            ))
            .returning(Product::as_returning())
            .get_result(c)
            .await
            .map(tidy_product)?)
    })
    .await
}

pub async fn product(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Product> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()?
        .map(tidy_product)
        .ok_or(CatalogError::NotFound(Entity::Product))
}

async fn product_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Product> {
    products::table
        .find(id)
        .select(Product::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .map(tidy_product)
        .ok_or(CatalogError::NotFound(Entity::Product))
}

/// Every product in any state (or in `state`), oldest first.
pub async fn list_products(
    conn: &mut AsyncPgConnection,
    state: Option<ProductState>,
) -> Result<Vec<Product>> {
    let mut q = products::table
        .select(Product::as_select())
        .order((products::created_at, products::id))
        .into_boxed();
    if let Some(s) = state {
        q = q.filter(products::state.eq(s.as_str()));
    }
    let rows: Vec<Product> = q.load(conn).await?;
    Ok(rows.into_iter().map(tidy_product).collect())
}

/// Applies `patch` to product `id`. The merged product is checked as a
/// whole; a real change bumps `version` and `updated_at`. Contracts and
/// quotes are not touched: they keep the terms they were sold with.
pub async fn update_product(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    patch: &ProductPatch,
) -> Result<Changed<Product>> {
    conn.transaction(async |c| {
        // Locked, so that `sold` cannot grow past the new inventory meanwhile.
        let before = product_for_update(c, id).await?;
        let current = ProductRow::of(&before);
        let p = patch.clone();
        let mut merged = ProductRow {
            name: p.name.unwrap_or_else(|| current.name.clone()),
            algorithm: p.algorithm.unwrap_or_else(|| current.algorithm.clone()),
            mined_coins: p.mined_coins.unwrap_or_else(|| current.mined_coins.clone()),
            pool_id: p.pool_id.unwrap_or(current.pool_id),
            facility_id: p.facility_id.unwrap_or(current.facility_id),
            hashrate_unit: p
                .hashrate_unit
                .unwrap_or_else(|| current.hashrate_unit.clone()),
            hashrate_min: p.hashrate_min.unwrap_or(current.hashrate_min),
            hashrate_max: p.hashrate_max.unwrap_or(current.hashrate_max),
            hashrate_step: p.hashrate_step.unwrap_or(current.hashrate_step),
            price_usd_per_unit: p.price_usd_per_unit.unwrap_or(current.price_usd_per_unit),
            duration_days: p.duration_days.unwrap_or(current.duration_days),
            fee_usd_per_unit_day: p
                .fee_usd_per_unit_day
                .unwrap_or(current.fee_usd_per_unit_day),
            pay_assets: p.pay_assets.unwrap_or_else(|| current.pay_assets.clone()),
            payout_assets: p
                .payout_assets
                .unwrap_or_else(|| current.payout_assets.clone()),
            spread_bps: p.spread_bps.unwrap_or(current.spread_bps),
            stop_rule: p.stop_rule.unwrap_or_else(|| current.stop_rule.clone()),
            stop_after_days: p.stop_after_days.unwrap_or(current.stop_after_days),
            inventory: p.inventory.unwrap_or(current.inventory),
        };
        // `sold` counts hashrate of this algorithm's unit: another algorithm
        // would make it meaningless.
        if merged.algorithm != current.algorithm && !before.sold.is_zero() {
            return Err(CatalogError::invalid(
                "algorithm",
                "has_sales",
                "cannot change once hashrate has been sold",
            ));
        }
        merged.check(c, before.sold).await?;
        if merged == current {
            return Ok(Changed {
                after: before.clone(),
                before,
                changed: false,
            });
        }
        let after = diesel::update(products::table.find(id))
            .set((
                &merged,
                products::version.eq(products::version + 1),
                products::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Product::as_returning())
            .get_result(c)
            .await
            .map(tidy_product)?;
        Ok(Changed {
            before,
            after,
            changed: true,
        })
    })
    .await
}

/// Moves product `id` to `next` when [`ProductState::can_become`] allows it
/// (draft → on_sale ↔ paused → retired); otherwise
/// [`CatalogError::InvalidTransition`].
pub async fn set_state(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    next: ProductState,
) -> Result<Changed<Product>> {
    conn.transaction(async |c| {
        let before = product_for_update(c, id).await?;
        let from = before
            .state()
            .ok_or_else(|| CatalogError::Corrupt(format!("product {id} state {}", before.state)))?;
        if !from.can_become(next) {
            return Err(CatalogError::InvalidTransition { from, to: next });
        }
        let after = diesel::update(products::table.find(id))
            .set((
                products::state.eq(next.as_str()),
                products::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Product::as_returning())
            .get_result(c)
            .await
            .map(tidy_product)?;
        Ok(Changed {
            before,
            after,
            changed: true,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn decimals_are_plain_strings() {
        assert_eq!(parse_decimal("12.5"), Some(dec!(12.5)));
        assert_eq!(parse_decimal("-0.001"), Some(dec!(-0.001)));
        assert_eq!(parse_decimal("007"), Some(dec!(7)));
        for bad in [
            "", "-", ".5", "5.", "1e3", "+1", " 1", "1 ", "1,5", "0x10", "NaN", "--1",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("1.00000000000000000000000000001"), None);
    }

    #[test]
    fn json_numbers_are_refused() {
        #[derive(Debug, Deserialize)]
        struct Body {
            #[serde(deserialize_with = "decimal_string")]
            #[allow(dead_code)]
            v: Decimal,
            #[serde(default, deserialize_with = "optional_decimal_string")]
            o: Option<Decimal>,
        }
        for body in [r#"{"v": 1.5}"#, r#"{"v": 2}"#, r#"{"v": "1e2"}"#] {
            let err = serde_json::from_str::<Body>(body).unwrap_err();
            assert!(err.to_string().contains("decimal string"), "{body}: {err}");
        }
        let err = serde_json::from_str::<Body>(r#"{"v": "1", "o": 2.5}"#).err();
        assert!(err.is_some());
        let ok: Body = serde_json::from_str(r#"{"v": "1", "o": null}"#).unwrap();
        assert_eq!(ok.o, None);
        let ok: Body = serde_json::from_str(r#"{"v": "1", "o": "0.25"}"#).unwrap();
        assert_eq!(ok.o, Some(dec!(0.25)));
    }

    #[test]
    fn numeric_columns_are_not_rounded() {
        assert!(check_numeric("x", dec!(1.123456), 20, 6).is_ok());
        assert_eq!(
            check_numeric("x", dec!(1.1234567), 20, 6)
                .err()
                .map(|e| e.code()),
            Some("too_many_decimals")
        );
        assert!(check_numeric("x", dec!(1.1000000), 20, 6).is_ok());
        assert_eq!(
            check_numeric("x", dec!(100000000000000), 20, 6)
                .err()
                .map(|e| e.code()),
            Some("too_large")
        );
    }
}
