//! Carbon credits (Verra VCUs, Gold Standard VERs) and their retirements: a
//! ledger of its own, never subtracted from Scope 2.
//!
//! # Serials
//!
//! A registry serial names a block of units (one unit = one tonne CO2e).
//! [`parse_serial`] is pure and total: every input gives a [`SerialBlock`] or
//! a [`SerialError`] with a stable code, never a panic (property-tested).
//! Input is trimmed and upper-cased; only `A-Z`, `0-9` and `-` are allowed.
//!
//! - Verra, 13 dash-separated fields:
//!   `19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0`
//!   = issuance batch `19381`, first unit `941412555`, last unit `941441125`
//!   (inclusive: 28 571 units), program `VCS`, unit type `VCU`, `1310` (a
//!   methodology/program reference, kept as `methodology_ref`), `VER`,
//!   country `CN` (ISO 3166-1 alpha-2), sectoral scope `13`, **project `3005`**
//!   (the VCS project id), vintage period `01012022`-`31102022` (ddmmyyyy,
//!   both inclusive), and a final one-digit flag (kept only in the serial).
//!   The project id is the field *after* the sectoral scope: that is how the
//!   published grammars read it (`{issuance}-{blockStart}-{blockEnd}-VCS-VCU-
//!   {program}-VER-{country}-{sector}-{projectId}-{ddMMyyyy}-{ddMMyyyy}-{flag}`),
//!   and e.g. `…-VCS-VCU-263-VER-KH-14-1748-…` is VCS project 1748 (a
//!   Cambodian REDD+ project, scope 14 = AFOLU). Verra's own definition of
//!   the field after `VCU` and of the last flag was not found: both are
//!   validated (digits) but carry no meaning here.
//! - Gold Standard, 9 fields: `GS1-1-KE-GS11603-16-2025-30256-110-5463` =
//!   the fixed prefix `GS1-1`, country `KE`, project `GS11603`, sectoral scope
//!   `16` (as the brief reads it; the value lies outside the CDM's 1-15 list,
//!   so it may be a Gold Standard category code: stored, not interpreted),
//!   vintage year `2025` (vintage period = that calendar year), issuance batch
//!   `30256`, first unit `110`, last unit `5463` (5 354 units). The Impact
//!   Registry's public API reports `GS1-1-KE-GS7495-16-2025-30645-608-30350`
//!   with `number_of_credits` 29 743 = 30350 − 608 + 1 and vintage 2025,
//!   which confirms the range and vintage fields. The older formats
//!   (`GS1-1-GS-VER-…`, or without a range) are refused as `malformed`.
//!
//! # Numbering spaces (overlap)
//!
//! Verra unit numbers are registry-wide (issuances of different projects
//! carry numbers in the hundreds of millions that never repeat), so every
//! Verra block lives in one space, `verra`. Gold Standard numbers are small
//! and repeat across projects (`110..5463`, `608..30350`), so they are not
//! registry-wide; whether they run per project or per issuance is not
//! documented. A unit belongs to exactly one issuance, so every real
//! duplicate shares project, vintage and batch with the original: the space
//! `gold_standard:<project>:<vintage>:<batch>` catches every duplicate under
//! either reading and never refuses two different issuances. The database
//! refuses overlapping blocks of one space (exclusion constraint
//! `carbon_credits_no_overlap`), so concurrent inserts cannot both pass.
//!
//! # Retirement policy (v1)
//!
//! [`allocate`] retires whole units, each at most once (the database refuses
//! overlapping retirements of one credit), in one transaction that holds an
//! advisory lock and the credit rows (`FOR UPDATE`), so concurrent
//! allocations queue and never take the same unit.
//!
//! - Order: oldest vintage first (vintage start, then end), then the lowest
//!   unit numbers of a block (FIFO). Avoidance and removal units are used
//!   alike; [`available_by_kind`] and each retirement's `kind` let a net-zero
//!   statement tell removals apart.
//! - A block partly retired keeps its remaining ranges available; a demand
//!   may take ranges of several blocks (one retirement row per range).
//! - Short stock: what there is is retired and the [`Retirement`] reports the
//!   shortfall; the call does not fail.
//! - Idempotent per (beneficiary, period): a demand is keyed by it
//!   (`credit_demands`, unique). Running a demand again retires only what is
//!   missing to reach its tonnes, so a completed demand retires nothing again
//!   and a short one is topped up once stock arrives. Tonnes below what is
//!   already retired never un-retire anything.
//!
//! Credits, demands and retirements are never changed or deleted (triggers).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::identity::audit::{self, AuditEntry};
use crate::schema::{carbon_credits as cc, credit_demands as cd, credit_retirements as cr, users};

/// The longest serial accepted (real ones are under 100 characters).
pub const MAX_SERIAL_LEN: usize = 200;

/// Why the allocation of [`allocate`] retires units.
pub const DEFAULT_REASON: &str =
    "Emissions of the hashrate hosted for the beneficiary in the period";

/// Serialises allocations (with the credit rows' locks).
const ALLOCATION_LOCK: i64 = 727_274_014;

// ---------------------------------------------------------------------------
// Serials
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Registry {
    Verra,
    GoldStandard,
}

impl Registry {
    pub const ALL: [Registry; 2] = [Registry::Verra, Registry::GoldStandard];

    pub fn as_str(self) -> &'static str {
        match self {
            Registry::Verra => "verra",
            Registry::GoldStandard => "gold_standard",
        }
    }

    pub fn parse(s: &str) -> Option<Registry> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The registry a (normalised) serial looks like it comes from.
    fn of_serial(s: &str) -> Option<Registry> {
        if s.starts_with("GS") {
            Some(Registry::GoldStandard)
        } else if s.contains("-VCS-") {
            Some(Registry::Verra)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The block a serial names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SerialBlock {
    pub registry: Registry,
    /// Trimmed and upper-cased.
    pub serial: String,
    pub block_start: i64,
    /// Inclusive.
    pub block_end: i64,
    /// `block_end - block_start + 1`, one tonne CO2e each.
    pub units: i64,
    /// Verra: the VCS project id (`3005`); Gold Standard: `GS11603`.
    pub project: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub vintage_start: NaiveDate,
    /// Inclusive; Gold Standard: 31 December of the vintage year.
    pub vintage_end: NaiveDate,
    /// `VCS` or `GS`.
    pub program: String,
    /// `VCU` or `VER`.
    pub unit_type: String,
    /// The issuance batch.
    pub batch: String,
    pub sectoral_scope: i32,
    /// Verra: the number after `VCS-VCU`.
    pub methodology_ref: Option<String>,
}

impl SerialBlock {
    /// Where this block's unit numbers must be unique (see the module doc).
    pub fn number_space(&self) -> String {
        match self.registry {
            Registry::Verra => "verra".to_owned(),
            Registry::GoldStandard => format!(
                "gold_standard:{}:{}:{}",
                self.project,
                self.vintage_start.year(),
                self.batch
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    #[error("unknown registry {0:?}: verra or gold_standard")]
    UnknownRegistry(String),
    #[error("this looks like a {looks_like} serial, not a {registry} one")]
    RegistryMismatch {
        registry: Registry,
        looks_like: Registry,
    },
    #[error("malformed serial: {0}")]
    Malformed(String),
    #[error("the block ends ({end}) before it starts ({start})")]
    BadRange { start: i64, end: i64 },
    #[error("bad date: {0}")]
    BadDate(String),
}

impl SerialError {
    /// Stable code for API problems.
    pub fn code(&self) -> &'static str {
        match self {
            SerialError::UnknownRegistry(_) => "unknown_registry",
            SerialError::RegistryMismatch { .. } => "registry_mismatch",
            SerialError::Malformed(_) => "malformed",
            SerialError::BadRange { .. } => "bad_range",
            SerialError::BadDate(_) => "bad_date",
        }
    }
}

fn malformed(msg: impl Into<String>) -> SerialError {
    SerialError::Malformed(msg.into())
}

/// Parses the serial of a block of `registry` (`verra` or `gold_standard`).
pub fn parse_serial(registry: &str, serial: &str) -> Result<SerialBlock, SerialError> {
    let registry = Registry::parse(registry.trim())
        .ok_or_else(|| SerialError::UnknownRegistry(registry.chars().take(40).collect()))?;
    let s = serial.trim();
    if s.is_empty() {
        return Err(malformed("empty"));
    }
    if s.len() > MAX_SERIAL_LEN {
        return Err(malformed(format!(
            "longer than {MAX_SERIAL_LEN} characters"
        )));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(malformed("only letters, digits and dashes are allowed"));
    }
    let s = s.to_ascii_uppercase();
    if let Some(looks_like) = Registry::of_serial(&s)
        && looks_like != registry
    {
        return Err(SerialError::RegistryMismatch {
            registry,
            looks_like,
        });
    }
    match registry {
        Registry::Verra => parse_verra(s),
        Registry::GoldStandard => parse_gold_standard(s),
    }
}

fn parse_verra(s: String) -> Result<SerialBlock, SerialError> {
    let parts: Vec<&str> = s.split('-').collect();
    let &[
        batch,
        start,
        end,
        program,
        unit_type,
        methodology,
        ver,
        country,
        scope,
        project,
        from,
        to,
        flag,
    ] = parts.as_slice()
    else {
        return Err(malformed(format!(
            "a Verra serial has 13 dash-separated fields \
             (batch-first-last-VCS-VCU-ref-VER-country-scope-project-ddmmyyyy-ddmmyyyy-flag), \
             this one has {}",
            parts.len()
        )));
    };
    let batch = digits("issuance batch", batch, 18)?;
    let block_start = number("first unit", start)?;
    let block_end = number("last unit", end)?;
    literal("program", program, "VCS")?;
    literal("unit type", unit_type, "VCU")?;
    let methodology = digits("methodology reference", methodology, 10)?;
    literal("seventh field", ver, "VER")?;
    let country = country_code(country)?;
    let sectoral_scope = scope_number(scope)?;
    let project = digits("project id", project, 10)?;
    let vintage_start = ddmmyyyy("vintage start", from)?;
    let vintage_end = ddmmyyyy("vintage end", to)?;
    if flag.len() != 1 || !flag.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the last field is one digit"));
    }
    let block = SerialBlock {
        registry: Registry::Verra,
        block_start,
        block_end,
        units: 0,
        project: project.to_owned(),
        country,
        vintage_start,
        vintage_end,
        program: "VCS".to_owned(),
        unit_type: "VCU".to_owned(),
        batch: batch.to_owned(),
        sectoral_scope,
        methodology_ref: Some(methodology.to_owned()),
        serial: s,
    };
    finish(block)
}

fn parse_gold_standard(s: String) -> Result<SerialBlock, SerialError> {
    let parts: Vec<&str> = s.split('-').collect();
    let &[
        gs1,
        one,
        country,
        project,
        scope,
        vintage,
        batch,
        start,
        end,
    ] = parts.as_slice()
    else {
        return Err(malformed(format!(
            "a Gold Standard serial has 9 dash-separated fields \
             (GS1-1-country-GSproject-scope-vintage-batch-first-last), this one has {}",
            parts.len()
        )));
    };
    if gs1 != "GS1" || one != "1" {
        return Err(malformed("a Gold Standard serial starts with GS1-1"));
    }
    let country = country_code(country)?;
    let project_no = project
        .strip_prefix("GS")
        .ok_or_else(|| malformed("the project is GS followed by digits"))?;
    digits("project id", project_no, 10)?;
    let sectoral_scope = scope_number(scope)?;
    if vintage.len() != 4 {
        return Err(malformed("the vintage is a four-digit year"));
    }
    let year = digits("vintage", vintage, 4)?
        .parse::<i32>()
        .map_err(|_| malformed("the vintage is a four-digit year"))?;
    let (vintage_start, vintage_end) = match (
        plausible_year(year).and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1)),
        plausible_year(year).and_then(|y| NaiveDate::from_ymd_opt(y, 12, 31)),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(SerialError::BadDate(format!(
                "vintage {year} is not a plausible year"
            )));
        }
    };
    let batch = digits("issuance batch", batch, 18)?;
    let block_start = number("first unit", start)?;
    let block_end = number("last unit", end)?;
    let block = SerialBlock {
        registry: Registry::GoldStandard,
        block_start,
        block_end,
        units: 0,
        project: project.to_owned(),
        country,
        vintage_start,
        vintage_end,
        program: "GS".to_owned(),
        unit_type: "VER".to_owned(),
        batch: batch.to_owned(),
        sectoral_scope,
        methodology_ref: None,
        serial: s,
    };
    finish(block)
}

fn finish(mut block: SerialBlock) -> Result<SerialBlock, SerialError> {
    if block.block_end < block.block_start {
        return Err(SerialError::BadRange {
            start: block.block_start,
            end: block.block_end,
        });
    }
    if block.vintage_end < block.vintage_start {
        return Err(SerialError::BadDate(format!(
            "the vintage ends ({}) before it starts ({})",
            block.vintage_end, block.vintage_start
        )));
    }
    // Both ends are below 10^18: no overflow.
    block.units = block.block_end - block.block_start + 1;
    Ok(block)
}

fn digits<'s>(what: &str, s: &'s str, max: usize) -> Result<&'s str, SerialError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!(
            "the {what} is 1 to {max} digits, not {s:?}"
        )));
    }
    Ok(s)
}

fn number(what: &str, s: &str) -> Result<i64, SerialError> {
    digits(what, s, 18)?
        .parse::<i64>()
        .map_err(|_| malformed(format!("the {what} is not a number")))
}

fn literal(what: &str, s: &str, want: &str) -> Result<(), SerialError> {
    if s == want {
        Ok(())
    } else {
        Err(malformed(format!("the {what} is {want}, not {s:?}")))
    }
}

fn country_code(s: &str) -> Result<String, SerialError> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_owned())
    } else {
        Err(malformed(format!(
            "the country is an ISO 3166 two-letter code, not {s:?}"
        )))
    }
}

fn scope_number(s: &str) -> Result<i32, SerialError> {
    digits("sectoral scope", s, 3)?
        .parse::<i32>()
        .map_err(|_| malformed("the sectoral scope is a number"))
}

fn plausible_year(y: i32) -> Option<i32> {
    (1900..=2200).contains(&y).then_some(y)
}

fn ddmmyyyy(what: &str, s: &str) -> Result<NaiveDate, SerialError> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!("the {what} is ddmmyyyy, not {s:?}")));
    }
    let field = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<u32>().ok());
    let (Some(d), Some(m), Some(y)) = (field(0..2), field(2..4), field(4..8)) else {
        return Err(malformed(format!("the {what} is ddmmyyyy, not {s:?}")));
    };
    i32::try_from(y)
        .ok()
        .and_then(plausible_year)
        .and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
        .ok_or_else(|| SerialError::BadDate(format!("the {what} {s} is not a date (ddmmyyyy)")))
}

/// What the request said about the block besides the serial; each given
/// value must agree with it.
#[derive(Debug, Clone, Default)]
pub struct Expected<'a> {
    /// A year of the vintage period.
    pub vintage: Option<i32>,
    /// `3005`, `VCS3005`, `VCS-3005`; `GS11603` or `11603`.
    pub project: Option<&'a str>,
    pub units: Option<i64>,
}

fn project_key(s: &str) -> String {
    let s = s.trim().to_ascii_uppercase();
    let s = s
        .strip_prefix("VCS-")
        .or_else(|| s.strip_prefix("VCS"))
        .or_else(|| s.strip_prefix("GS-"))
        .or_else(|| s.strip_prefix("GS"))
        .unwrap_or(&s);
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() && !s.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Checks `expected` against the parsed block (pure).
pub fn check_expected(block: &SerialBlock, expected: &Expected<'_>) -> Result<(), CreditError> {
    if let Some(year) = expected.vintage {
        let (a, b) = (block.vintage_start.year(), block.vintage_end.year());
        if year < a || year > b {
            let serial_says = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            return Err(CreditError::Disagrees {
                field: "vintage",
                serial_says,
            });
        }
    }
    if let Some(p) = expected.project
        && project_key(p) != project_key(&block.project)
    {
        return Err(CreditError::Disagrees {
            field: "project",
            serial_says: block.project.clone(),
        });
    }
    if let Some(units) = expected.units
        && units != block.units
    {
        return Err(CreditError::Disagrees {
            field: "units",
            serial_says: block.units.to_string(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Stored credits
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    Avoidance,
    Removal,
}

impl CreditKind {
    pub const ALL: [CreditKind; 2] = [CreditKind::Avoidance, CreditKind::Removal];

    pub fn as_str(self) -> &'static str {
        match self {
            CreditKind::Avoidance => "avoidance",
            CreditKind::Removal => "removal",
        }
    }

    pub fn parse(s: &str) -> Option<CreditKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("{0}")]
    Serial(#[from] SerialError),
    #[error("unknown kind {0:?}: avoidance or removal")]
    UnknownKind(String),
    #[error("the serial says {field} {serial_says}")]
    Disagrees {
        field: &'static str,
        serial_says: String,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("the block overlaps credit {credit_id} ({serial})")]
    Overlap { credit_id: Uuid, serial: String },
    #[error("no user {0}")]
    UnknownUser(Uuid),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl CreditError {
    /// Stable code for API problems.
    pub fn code(&self) -> &'static str {
        match self {
            CreditError::Serial(e) => e.code(),
            CreditError::UnknownKind(_) => "unknown_kind",
            CreditError::Disagrees { .. } => "serial_mismatch",
            CreditError::Invalid { .. } => "invalid",
            CreditError::Overlap { .. } => "credit_overlap",
            CreditError::UnknownUser(_) => "unknown_user",
            CreditError::Database(_) => "internal_error",
        }
    }
}

/// Who acts, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user:<id>`, `system`, …
    pub actor: String,
    pub ip: String,
}

impl Actor {
    pub fn new(actor: impl Into<String>, ip: impl Into<String>) -> Self {
        Actor {
            actor: actor.into(),
            ip: ip.into(),
        }
    }

    pub fn system() -> Self {
        Actor::new("system", "")
    }
}

/// A stored block.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = cc, check_for_backend(diesel::pg::Pg))]
pub struct Credit {
    pub id: Uuid,
    /// `verra` or `gold_standard`.
    pub registry: String,
    pub serial: String,
    /// Where the unit numbers are unique: `verra`, or
    /// `gold_standard:<project>:<vintage>:<batch>`.
    pub number_space: String,
    pub block_start: i64,
    /// Inclusive.
    pub block_end: i64,
    pub units: i64,
    pub project: String,
    pub country: String,
    pub vintage_start: NaiveDate,
    pub vintage_end: NaiveDate,
    pub program: String,
    pub unit_type: String,
    pub batch: String,
    pub sectoral_scope: i32,
    pub methodology_ref: Option<String>,
    /// `avoidance` or `removal`.
    pub kind: String,
    pub project_name: Option<String>,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A block with what is retired of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditStock {
    #[serde(flatten)]
    pub credit: Credit,
    pub retired: i64,
    pub available: i64,
}

/// A new block, as the back office sends it.
#[derive(Debug, Clone, Default)]
pub struct NewCredit<'a> {
    pub registry: &'a str,
    pub serial: &'a str,
    pub kind: &'a str,
    pub project_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub expected: Expected<'a>,
}

fn optional_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, CreditError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(CreditError::Invalid {
            field,
            message: format!("at most {max} characters, no control characters"),
        });
    }
    Ok(Some(v.to_owned()))
}

/// Parses, checks and stores a block; refuses a block that shares a unit
/// with a stored one of the same numbering space ([`CreditError::Overlap`]
/// naming it), also when both are inserted at once. Audited.
pub async fn create(
    conn: &mut AsyncPgConnection,
    by: &Actor,
    new: &NewCredit<'_>,
) -> Result<Credit, CreditError> {
    let block = parse_serial(new.registry, new.serial)?;
    let kind = CreditKind::parse(new.kind.trim())
        .ok_or_else(|| CreditError::UnknownKind(new.kind.chars().take(40).collect()))?;
    check_expected(&block, &new.expected)?;
    let project_name = optional_text("project_name", new.project_name, 200)?;
    let description = optional_text("description", new.description, 2000)?;
    let space = block.number_space();
    let result = conn
        .transaction(async |c| {
            insert_credit(c, by, &block, &space, kind, project_name, description).await
        })
        .await;
    match result {
        Err(CreditError::Database(e)) if is_overlap_violation(&e) => {
            // Lost a race with a concurrent insert: name the winner.
            match overlapping(conn, &space, block.block_start, block.block_end).await? {
                Some((credit_id, serial)) => Err(CreditError::Overlap { credit_id, serial }),
                None => Err(CreditError::Database(e)),
            }
        }
        other => other,
    }
}

async fn insert_credit(
    c: &mut AsyncPgConnection,
    by: &Actor,
    block: &SerialBlock,
    space: &str,
    kind: CreditKind,
    project_name: Option<String>,
    description: Option<String>,
) -> Result<Credit, CreditError> {
    if let Some((credit_id, serial)) =
        overlapping(c, space, block.block_start, block.block_end).await?
    {
        return Err(CreditError::Overlap { credit_id, serial });
    }
    let row: Credit = diesel::insert_into(cc::table)
        .values((
            cc::id.eq(Uuid::now_v7()),
            cc::registry.eq(block.registry.as_str()),
            cc::serial.eq(&block.serial),
            cc::number_space.eq(space),
            cc::block_start.eq(block.block_start),
            cc::block_end.eq(block.block_end),
            cc::units.eq(block.units),
            cc::project.eq(&block.project),
            cc::country.eq(&block.country),
            cc::vintage_start.eq(block.vintage_start),
            cc::vintage_end.eq(block.vintage_end),
            cc::program.eq(&block.program),
            cc::unit_type.eq(&block.unit_type),
            cc::batch.eq(&block.batch),
            cc::sectoral_scope.eq(block.sectoral_scope),
            cc::methodology_ref.eq(&block.methodology_ref),
            cc::kind.eq(kind.as_str()),
            cc::project_name.eq(project_name),
            cc::description.eq(description),
            cc::created_by.eq(&by.actor),
        ))
        .returning(Credit::as_returning())
        .get_result(c)
        .await?;
    audit::append(
        c,
        &AuditEntry::new(
            by.actor.clone(),
            "carbon.credit.create",
            format!("carbon_credit:{}", row.id),
        )
        .ip(by.ip.clone())
        .after(serde_json::to_value(&row).unwrap_or_default()),
    )
    .await?;
    Ok(row)
}

fn is_overlap_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(_, info)
            if matches!(
                info.constraint_name(),
                Some("carbon_credits_no_overlap" | "carbon_credits_serial_key")
            )
    )
}

/// A stored block of `space` sharing a unit with `start..=end`.
async fn overlapping(
    c: &mut AsyncPgConnection,
    space: &str,
    start: i64,
    end: i64,
) -> Result<Option<(Uuid, String)>, diesel::result::Error> {
    cc::table
        .filter(cc::number_space.eq(space))
        .filter(cc::block_start.le(end))
        .filter(cc::block_end.ge(start))
        .order(cc::block_start)
        .select((cc::id, cc::serial))
        .first(c)
        .await
        .optional()
}

#[derive(QueryableByName)]
struct RetiredSum {
    #[diesel(sql_type = SqlUuid)]
    credit_id: Uuid,
    #[diesel(sql_type = BigInt)]
    retired: i64,
}

async fn retired_sums(
    c: &mut AsyncPgConnection,
) -> Result<HashMap<Uuid, i64>, diesel::result::Error> {
    let rows: Vec<RetiredSum> = diesel::sql_query(
        "SELECT credit_id, sum(units)::int8 AS retired FROM credit_retirements GROUP BY credit_id",
    )
    .load(c)
    .await?;
    Ok(rows.into_iter().map(|r| (r.credit_id, r.retired)).collect())
}

/// Every block in allocation order (oldest vintage, lowest units first)
/// with what is retired and available.
pub async fn list_credits(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<CreditStock>, diesel::result::Error> {
    let credits: Vec<Credit> = cc::table
        .select(Credit::as_select())
        .order((cc::vintage_start, cc::vintage_end, cc::block_start, cc::id))
        .load(conn)
        .await?;
    let sums = retired_sums(conn).await?;
    Ok(credits
        .into_iter()
        .map(|credit| {
            let retired = sums.get(&credit.id).copied().unwrap_or(0);
            CreditStock {
                available: credit.units - retired,
                retired,
                credit,
            }
        })
        .collect())
}

/// Units issued, retired and available per kind (both kinds, always).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KindStock {
    pub kind: CreditKind,
    pub issued: i64,
    pub retired: i64,
    pub available: i64,
}

/// What a statement needs to tell removal units from avoidance units.
pub async fn available_by_kind(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<KindStock>, diesel::result::Error> {
    let stock = list_credits(conn).await?;
    Ok(CreditKind::ALL
        .into_iter()
        .map(|kind| {
            let of_kind = stock.iter().filter(|s| s.credit.kind == kind.as_str());
            let (issued, retired) =
                of_kind.fold((0, 0), |(i, r), s| (i + s.credit.units, r + s.retired));
            KindStock {
                kind,
                issued,
                retired,
                available: issued - retired,
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Retirements
// ---------------------------------------------------------------------------

/// Tonnes to retire for a customer and an emissions period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub beneficiary_user_id: Uuid,
    pub beneficiary_name: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub tonnes: i64,
}

/// One retired range of one block.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Serialize, ToSchema)]
pub struct RetiredRange {
    pub id: Uuid,
    pub credit_id: Uuid,
    pub serial: String,
    pub registry: String,
    /// The credit's kind: `avoidance` or `removal`.
    pub kind: String,
    pub project: String,
    pub vintage_start: NaiveDate,
    pub vintage_end: NaiveDate,
    pub unit_start: i64,
    /// Inclusive.
    pub unit_end: i64,
    pub units: i64,
    /// Null for the platform's own emissions.
    pub beneficiary_user_id: Option<Uuid>,
    pub beneficiary_name: String,
    pub reason: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// What a demand got: every range retired for its (beneficiary, period),
/// this call's included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Retirement {
    pub demand_id: Uuid,
    pub beneficiary_user_id: Option<Uuid>,
    pub beneficiary_name: String,
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    /// The tonnes asked for.
    pub requested: i64,
    /// Retired for this beneficiary and period in total.
    pub retired: i64,
    /// Retired by this call (0 when the demand was already met).
    pub newly_retired: i64,
    /// `requested - retired` when stock ran short, else 0.
    pub shortfall: i64,
    /// Oldest vintage first.
    pub ranges: Vec<RetiredRange>,
}

macro_rules! retired_range_columns {
    () => {
        (
            cr::id,
            cr::credit_id,
            cc::serial,
            cc::registry,
            cc::kind,
            cc::project,
            cc::vintage_start,
            cc::vintage_end,
            cr::unit_start,
            cr::unit_end,
            cr::units,
            cr::beneficiary_user_id,
            cr::beneficiary_name,
            cr::reason,
            cr::period_from,
            cr::period_to,
            cr::created_by,
            cr::created_at,
        )
    };
}

/// Retirements whose period overlaps `from..=to` (either bound optional),
/// by period, then oldest first; at most `limit`.
pub async fn list_retirements(
    conn: &mut AsyncPgConnection,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<RetiredRange>, diesel::result::Error> {
    let mut q = cr::table
        .inner_join(cc::table)
        .select(retired_range_columns!())
        .order((cr::period_from, cr::period_to, cr::created_at, cr::id))
        .limit(limit)
        .into_boxed();
    if let Some(from) = from {
        q = q.filter(cr::period_to.ge(from));
    }
    if let Some(to) = to {
        q = q.filter(cr::period_from.le(to));
    }
    q.load(conn).await
}

/// Allocates `demands` with [`DEFAULT_REASON`] as `system`; see the module doc.
pub async fn allocate(
    conn: &mut AsyncPgConnection,
    demands: &[Demand],
) -> Result<Vec<Retirement>, CreditError> {
    allocate_for(conn, demands, DEFAULT_REASON, &Actor::system()).await
}

/// [`allocate`] with the reason and actor recorded on the retirements.
pub async fn allocate_for(
    conn: &mut AsyncPgConnection,
    demands: &[Demand],
    reason: &str,
    by: &Actor,
) -> Result<Vec<Retirement>, CreditError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(CreditError::Invalid {
            field: "reason",
            message: "1 to 500 characters".to_owned(),
        });
    }
    for d in demands {
        check_demand(d)?;
    }
    conn.transaction(async |c| allocate_in(c, demands, reason, by).await)
        .await
}

fn check_demand(d: &Demand) -> Result<(), CreditError> {
    if d.tonnes < 0 {
        return Err(CreditError::Invalid {
            field: "tonnes",
            message: "a whole number of tonnes, 0 or more".to_owned(),
        });
    }
    if d.period_to < d.period_from {
        return Err(CreditError::Invalid {
            field: "period_to",
            message: "the period ends before it starts".to_owned(),
        });
    }
    let name = d.beneficiary_name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(CreditError::Invalid {
            field: "beneficiary_name",
            message: "1 to 200 characters".to_owned(),
        });
    }
    Ok(())
}

/// A block's free ranges, lowest first.
struct Stock {
    credit_id: Uuid,
    free: VecDeque<(i64, i64)>,
}

/// The gaps of `block_start..=block_end` left by `taken` (sorted by start).
fn free_ranges(block_start: i64, block_end: i64, taken: &[(i64, i64)]) -> VecDeque<(i64, i64)> {
    let mut free = VecDeque::new();
    let mut next = block_start;
    for &(a, b) in taken {
        if a > next {
            free.push_back((next, (a - 1).min(block_end)));
        }
        next = next.max(b.saturating_add(1));
        if next > block_end {
            return free;
        }
    }
    if next <= block_end {
        free.push_back((next, block_end));
    }
    free
}

async fn allocate_in(
    c: &mut AsyncPgConnection,
    demands: &[Demand],
    reason: &str,
    by: &Actor,
) -> Result<Vec<Retirement>, CreditError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(ALLOCATION_LOCK)
        .execute(c)
        .await?;
    let mut credits: Vec<Credit> = cc::table
        .select(Credit::as_select())
        .order(cc::id)
        .for_update()
        .load(c)
        .await?;
    credits.sort_by(|a, b| {
        (a.vintage_start, a.vintage_end, a.block_start, a.id).cmp(&(
            b.vintage_start,
            b.vintage_end,
            b.block_start,
            b.id,
        ))
    });
    let sums = retired_sums(c).await?;
    let open: Vec<&Credit> = credits
        .iter()
        .filter(|k| sums.get(&k.id).copied().unwrap_or(0) < k.units)
        .collect();
    let open_ids: Vec<Uuid> = open.iter().map(|k| k.id).collect();
    let taken: Vec<(Uuid, i64, i64)> = cr::table
        .filter(cr::credit_id.eq_any(&open_ids))
        .select((cr::credit_id, cr::unit_start, cr::unit_end))
        .order((cr::credit_id, cr::unit_start))
        .load(c)
        .await?;
    let mut taken_by: HashMap<Uuid, Vec<(i64, i64)>> = HashMap::new();
    for (id, a, b) in taken {
        taken_by.entry(id).or_default().push((a, b));
    }
    let mut stock: Vec<Stock> = open
        .iter()
        .map(|k| Stock {
            credit_id: k.id,
            free: free_ranges(
                k.block_start,
                k.block_end,
                taken_by.get(&k.id).map(Vec::as_slice).unwrap_or(&[]),
            ),
        })
        .filter(|s| !s.free.is_empty())
        .collect();

    let mut out = Vec::with_capacity(demands.len());
    for d in demands {
        out.push(allocate_one(c, d, reason, by, &mut stock).await?);
    }
    Ok(out)
}

async fn allocate_one(
    c: &mut AsyncPgConnection,
    d: &Demand,
    reason: &str,
    by: &Actor,
    stock: &mut Vec<Stock>,
) -> Result<Retirement, CreditError> {
    let known: bool = diesel::select(diesel::dsl::exists(
        users::table.filter(users::id.eq(d.beneficiary_user_id)),
    ))
    .get_result(c)
    .await?;
    if !known {
        return Err(CreditError::UnknownUser(d.beneficiary_user_id));
    }
    diesel::insert_into(cd::table)
        .values((
            cd::id.eq(Uuid::now_v7()),
            cd::beneficiary_user_id.eq(Some(d.beneficiary_user_id)),
            cd::beneficiary_name.eq(d.beneficiary_name.trim()),
            cd::period_from.eq(d.period_from),
            cd::period_to.eq(d.period_to),
            cd::created_by.eq(&by.actor),
        ))
        .on_conflict_do_nothing()
        .execute(c)
        .await?;
    let (demand_id, name): (Uuid, String) = cd::table
        .filter(cd::beneficiary_user_id.eq(d.beneficiary_user_id))
        .filter(cd::period_from.eq(d.period_from))
        .filter(cd::period_to.eq(d.period_to))
        .select((cd::id, cd::beneficiary_name))
        .for_update()
        .first(c)
        .await?;
    let already: Option<i64> = cr::table
        .filter(cr::demand_id.eq(demand_id))
        .select(diesel::dsl::sql::<diesel::sql_types::Nullable<BigInt>>(
            "sum(units)::int8",
        ))
        .first(c)
        .await?;
    let already = already.unwrap_or(0);
    let mut need = (d.tonnes - already).max(0);
    let mut rows = Vec::new();
    let mut newly = 0i64;
    while need > 0 {
        let Some(s) = stock.first_mut() else { break };
        let Some(&(a, b)) = s.free.front() else {
            stock.remove(0);
            continue;
        };
        let n = need.min(b - a + 1);
        let end = a + n - 1;
        if end == b {
            s.free.pop_front();
        } else if let Some(front) = s.free.front_mut() {
            front.0 = end + 1;
        }
        rows.push((
            cr::id.eq(Uuid::now_v7()),
            cr::credit_id.eq(s.credit_id),
            cr::demand_id.eq(demand_id),
            cr::unit_start.eq(a),
            cr::unit_end.eq(end),
            cr::units.eq(n),
            cr::beneficiary_user_id.eq(Some(d.beneficiary_user_id)),
            cr::beneficiary_name.eq(name.clone()),
            cr::reason.eq(reason),
            cr::period_from.eq(d.period_from),
            cr::period_to.eq(d.period_to),
            cr::created_by.eq(by.actor.clone()),
        ));
        need -= n;
        newly += n;
        if s.free.is_empty() {
            stock.remove(0);
        }
    }
    if !rows.is_empty() {
        diesel::insert_into(cr::table)
            .values(&rows)
            .execute(c)
            .await?;
    }
    let ranges: Vec<RetiredRange> = cr::table
        .inner_join(cc::table)
        .filter(cr::demand_id.eq(demand_id))
        .select(retired_range_columns!())
        .order((cc::vintage_start, cr::unit_start, cr::id))
        .load(c)
        .await?;
    let retired: i64 = ranges.iter().map(|r| r.units).sum();
    let retirement = Retirement {
        demand_id,
        beneficiary_user_id: Some(d.beneficiary_user_id),
        beneficiary_name: name,
        period_from: d.period_from,
        period_to: d.period_to,
        requested: d.tonnes,
        retired,
        newly_retired: newly,
        shortfall: (d.tonnes - retired).max(0),
        ranges,
    };
    if newly > 0 {
        audit::append(
            c,
            &AuditEntry::new(
                by.actor.clone(),
                "carbon.credit.retire",
                format!("credit_demand:{demand_id}"),
            )
            .ip(by.ip.clone())
            .after(serde_json::json!({
                "beneficiary_user_id": d.beneficiary_user_id,
                "period_from": d.period_from,
                "period_to": d.period_to,
                "requested": d.tonnes,
                "newly_retired": newly,
                "shortfall": retirement.shortfall,
                "reason": reason,
            })),
        )
        .await?;
    }
    Ok(retirement)
}

#[derive(QueryableByName)]
struct Problem {
    #[diesel(sql_type = Text)]
    problem: String,
}

/// Every breach of conservation; empty = clean: no unit in two retirements,
/// every retirement inside its block and matching its demand, no more
/// retired than a block holds, blocks consistent and not overlapping.
pub async fn conservation_check(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<String>, diesel::result::Error> {
    let rows: Vec<Problem> = diesel::sql_query(
        "SELECT format('credit %s: retirements %s (%s..%s) and %s (%s..%s) share units', \
                a.credit_id, a.id, a.unit_start, a.unit_end, b.id, b.unit_start, b.unit_end) AS problem \
         FROM credit_retirements a JOIN credit_retirements b \
           ON a.credit_id = b.credit_id AND a.id < b.id \
          AND int8range(a.unit_start, a.unit_end, '[]') && int8range(b.unit_start, b.unit_end, '[]') \
         UNION ALL \
         SELECT format('retirement %s: units %s..%s (%s) do not lie in the block %s..%s of credit %s', \
                r.id, r.unit_start, r.unit_end, r.units, c.block_start, c.block_end, c.id) \
         FROM credit_retirements r JOIN carbon_credits c ON c.id = r.credit_id \
         WHERE r.unit_start < c.block_start OR r.unit_end > c.block_end \
            OR r.unit_end < r.unit_start OR r.units <> r.unit_end - r.unit_start + 1 \
         UNION ALL \
         SELECT format('credit %s: %s units retired of %s', c.id, s.retired, c.units) \
         FROM carbon_credits c \
         JOIN (SELECT credit_id, sum(units) AS retired FROM credit_retirements GROUP BY credit_id) s \
           ON s.credit_id = c.id \
         WHERE s.retired > c.units \
         UNION ALL \
         SELECT format('credit %s: %s units for the block %s..%s', c.id, c.units, c.block_start, c.block_end) \
         FROM carbon_credits c WHERE c.units <> c.block_end - c.block_start + 1 \
         UNION ALL \
         SELECT format('credits %s and %s overlap in %s', a.id, b.id, a.number_space) \
         FROM carbon_credits a JOIN carbon_credits b \
           ON a.number_space = b.number_space AND a.id < b.id \
          AND int8range(a.block_start, a.block_end, '[]') && int8range(b.block_start, b.block_end, '[]') \
         UNION ALL \
         SELECT format('retirement %s: beneficiary or period differs from its demand %s', r.id, d.id) \
         FROM credit_retirements r JOIN credit_demands d ON d.id = r.demand_id \
         WHERE r.beneficiary_user_id IS DISTINCT FROM d.beneficiary_user_id \
            OR r.period_from <> d.period_from OR r.period_to <> d.period_to",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.problem).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ranges_are_the_gaps() {
        assert_eq!(free_ranges(1, 10, &[]), VecDeque::from([(1, 10)]));
        assert_eq!(
            free_ranges(1, 10, &[(1, 3), (6, 7)]),
            VecDeque::from([(4, 5), (8, 10)])
        );
        assert_eq!(free_ranges(1, 10, &[(1, 10)]), VecDeque::new());
        assert_eq!(
            free_ranges(1, 10, &[(2, 9)]),
            VecDeque::from([(1, 1), (10, 10)])
        );
    }

    #[test]
    fn project_keys_ignore_prefixes_and_zeros() {
        assert_eq!(project_key("VCS3005"), "3005");
        assert_eq!(project_key("vcs-3005"), "3005");
        assert_eq!(project_key("GS11603"), "11603");
        assert_eq!(project_key("011603"), "11603");
        assert_ne!(project_key("1310"), project_key("3005"));
    }
}
