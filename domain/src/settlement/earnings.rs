//! What the pools earned: one import per pool, day and coin.
//!
//! An import records the whole coins a pool paid for a UTC day that has
//! ended, with the hashrate it credited us with, the network difficulty and
//! the pool's payout transactions. Imports are never edited: a wrong one is
//! replaced by a *correction* that names it (`corrects`), and the effective
//! import of a pool-day-coin is the end of that chain ([`latest_for`]). Only
//! the end of a chain may be corrected, and each import at most once (the
//! database keeps both rules with unique indexes as well).
//!
//! Inputs arrive as JSON ([`NewEarningInput`], decimals as strings) or as
//! CSV ([`parse_csv`]) with the header
//!
//! ```text
//! pool_id,day,coin,amount,delivered_hashrate,difficulty,pool_tx_ids
//! ```
//!
//! (an eighth column `corrects` may follow), transaction ids separated by
//! `;`, no quoting. Every refusal names its field, e.g. `rows[3].amount`
//! (data rows count from 0; the message gives the file's line and column).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::admin::{decimal_string, parse_decimal};
use crate::catalog::model::Pool;
use crate::catalog::store;
use crate::schema::pool_earnings;

/// Most payout transaction ids one import may list.
pub const MAX_TX_IDS: usize = 1000;
/// Longest payout transaction id, in characters.
pub const MAX_TX_ID_LEN: usize = 128;
/// Decimal places of `delivered_hashrate` and `difficulty` (the columns' scale).
pub const HASHRATE_DECIMALS: u32 = 6;
/// Most data rows one CSV upload may hold.
pub const MAX_CSV_ROWS: usize = 10_000;
/// Most rows [`list`] answers.
pub const MAX_LIST: i64 = 1000;
/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 7] = [
    "pool_id",
    "day",
    "coin",
    "amount",
    "delivered_hashrate",
    "difficulty",
    "pool_tx_ids",
];
/// The optional eighth CSV column.
pub const CSV_CORRECTS: &str = "corrects";

/// Decimal places of a mined coin's smallest unit; `None` for a coin
/// Hashgrid does not settle. LTC is mined (merged with DOGE) but is not a
/// ledger asset, so this is not `Asset::ledger_decimals`.
pub fn coin_decimals(coin: &str) -> Option<u32> {
    // Pools pay these coins (stablecoins are never mined); the precision
    // itself has one home, the engine's.
    matches!(coin, "BTC" | "LTC" | "DOGE" | "ETH" | "BNB")
        .then(|| super::engine::coin_decimals(coin))
        .flatten()
}

/// An import to store, validated by [`validate`] and stored by [`import`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NewEarning {
    pub pool_id: Uuid,
    /// The UTC day earned; it must have ended.
    pub day: NaiveDate,
    pub coin: String,
    /// Whole coins, exact to the coin's smallest unit.
    #[schema(value_type = String, example = "0.01234567")]
    pub amount: Decimal,
    /// The hashrate the pool credited, in the algorithm's unit, ≤ 6 decimals.
    #[schema(value_type = String, example = "100.5")]
    pub delivered_hashrate: Decimal,
    /// The network difficulty of the day, > 0, ≤ 6 decimals.
    #[schema(value_type = String, example = "86390000000000")]
    pub difficulty: Decimal,
    pub pool_tx_ids: Vec<String>,
    /// Where it came from, e.g. `admin:user:<id>` or `http:pool.example`.
    pub source: String,
    /// The import this one corrects: the latest of its pool, day and coin.
    pub corrects: Option<Uuid>,
}

/// An import as a client sends it (JSON body or one CSV row): decimals as
/// strings, never JSON numbers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEarningInput {
    pub pool_id: Uuid,
    /// `YYYY-MM-DD` (UTC); the day must have ended.
    #[schema(value_type = String, example = "2026-11-24")]
    pub day: NaiveDate,
    /// One of the pool's coins, e.g. `BTC`.
    #[schema(example = "BTC")]
    pub coin: String,
    /// Whole coins as a decimal string, ≥ 0, at most the coin's decimals
    /// (8 for BTC, LTC and DOGE; 18 for ETH and BNB).
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "0.01234567")]
    pub amount: Decimal,
    /// Decimal string, ≥ 0, at most 6 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "100.5")]
    pub delivered_hashrate: Decimal,
    /// Decimal string, > 0, at most 6 decimals.
    #[serde(deserialize_with = "decimal_string")]
    #[schema(value_type = String, example = "86390000000000")]
    pub difficulty: Decimal,
    /// The pool's payout transactions: at most 1000 distinct ids of 1 to
    /// 128 characters without spaces, `,` or `;`.
    #[serde(default)]
    pub pool_tx_ids: Vec<String>,
    /// The id of the import this one corrects (the latest of its pool, day
    /// and coin); absent for an original import.
    #[serde(default)]
    pub corrects: Option<Uuid>,
}

impl NewEarningInput {
    /// The import with its `source`.
    pub fn into_new(self, source: impl Into<String>) -> NewEarning {
        NewEarning {
            pool_id: self.pool_id,
            day: self.day,
            coin: self.coin,
            amount: self.amount,
            delivered_hashrate: self.delivered_hashrate,
            difficulty: self.difficulty,
            pool_tx_ids: self.pool_tx_ids,
            source: source.into(),
            corrects: self.corrects,
        }
    }
}

/// A stored import.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = pool_earnings, check_for_backend(diesel::pg::Pg))]
pub struct PoolEarning {
    pub id: Uuid,
    pub pool_id: Uuid,
    #[schema(value_type = String, example = "2026-11-24")]
    pub day: NaiveDate,
    pub coin: String,
    #[schema(value_type = String, example = "0.01234567")]
    pub amount: Decimal,
    #[schema(value_type = String, example = "100.5")]
    pub delivered_hashrate: Decimal,
    #[schema(value_type = String, example = "86390000000000")]
    pub difficulty: Decimal,
    pub pool_tx_ids: Vec<String>,
    pub source: String,
    /// The import this one corrects; null for an original.
    pub corrects_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Drops the trailing zeros NUMERIC columns come back with.
fn tidy(mut e: PoolEarning) -> PoolEarning {
    e.amount = e.amount.normalize();
    e.delivered_hashrate = e.delivered_hashrate.normalize();
    e.difficulty = e.difficulty.normalize();
    e
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum EarningError {
    /// A field is invalid (the API answers 422 naming it).
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, e.g. `amount`, `pool_tx_ids[2]`, `rows[3].day`.
        field: String,
        code: &'static str,
        message: String,
    },
    /// The pool, day and coin already have an original import; a change is
    /// a correction naming the latest import (409 `earning_exists`).
    #[error(
        "{pool_id} {day} {coin} is already imported (latest import {latest}); send a correction naming it in `corrects`"
    )]
    Duplicate {
        pool_id: Uuid,
        day: NaiveDate,
        coin: String,
        /// The effective import, which a correction must name.
        latest: Uuid,
    },
    /// The import named in `corrects` already has a correction: only the
    /// latest of a chain may be corrected (409 `already_corrected`).
    #[error("import {corrects} is already corrected; the latest import is {latest}")]
    AlreadyCorrected { corrects: Uuid, latest: Uuid },
    #[error("database: {0}")]
    Database(#[from] DieselError),
}

impl EarningError {
    /// A 422 refusal of `field`.
    pub fn invalid(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        EarningError::Invalid {
            field: field.into(),
            code,
            message: message.into(),
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EarningError::Invalid { code, .. } => code,
            EarningError::Duplicate { .. } => "earning_exists",
            EarningError::AlreadyCorrected { .. } => "already_corrected",
            EarningError::Database(_) => "internal_error",
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            EarningError::Invalid { field, .. } => Some(field),
            EarningError::AlreadyCorrected { .. } => Some("corrects"),
            EarningError::Duplicate { .. } | EarningError::Database(_) => None,
        }
    }

    /// The same refusal about data row `row` of an upload: the field becomes
    /// `rows[row].<field>`.
    pub fn in_row(self, row: usize) -> Self {
        match self {
            EarningError::Invalid {
                field,
                code,
                message,
            } => EarningError::Invalid {
                field: format!("rows[{row}].{field}"),
                code,
                message,
            },
            other => other,
        }
    }
}

fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Decimal places actually used (`1.50` has one).
fn places(d: Decimal) -> u32 {
    d.normalize().scale()
}

/// A payout transaction id: 1 to 128 visible characters, no `,` or `;`.
fn tx_id_problem(id: &str) -> Option<(&'static str, String)> {
    if id.is_empty() {
        return Some(("empty", "must not be empty".to_owned()));
    }
    if id.chars().count() > MAX_TX_ID_LEN {
        return Some(("too_long", format!("at most {MAX_TX_ID_LEN} characters")));
    }
    if id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ';' || c == '"')
    {
        return Some((
            "invalid",
            "no spaces, control characters, quotes, ',' or ';'".to_owned(),
        ));
    }
    None
}

/// Checks `e` against its pool and the calendar: the coin is one the pool
/// pays; `amount` ≥ 0 with at most the coin's decimals; `delivered_hashrate`
/// ≥ 0 and `difficulty` > 0 with at most 6 decimals; `day` has ended
/// (`day < today`); the transaction ids are valid and distinct. The first
/// problem is answered, naming its field.
pub fn validate(e: &NewEarning, pool: &Pool, today: NaiveDate) -> Result<(), EarningError> {
    if e.pool_id != pool.id {
        return Err(EarningError::invalid(
            "pool_id",
            "pool_mismatch",
            "not the pool the import is checked against",
        ));
    }
    if e.day >= today {
        return Err(EarningError::invalid(
            "day",
            "day_not_ended",
            format!(
                "{} has not ended yet (UTC); import it from {}",
                e.day,
                e.day.succ_opt().unwrap_or(e.day)
            ),
        ));
    }
    if !pool.coins.contains(&e.coin) {
        return Err(EarningError::invalid(
            "coin",
            "coin_not_mined",
            format!("the pool pays {}", pool.coins.join(", ")),
        ));
    }
    let Some(decimals) = coin_decimals(&e.coin) else {
        return Err(EarningError::invalid(
            "coin",
            "unsupported_coin",
            "one of BTC, LTC, DOGE, ETH, BNB",
        ));
    };
    if e.amount.is_sign_negative() && !e.amount.is_zero() {
        return Err(EarningError::invalid(
            "amount",
            "negative",
            "must be zero or more",
        ));
    }
    if places(e.amount) > decimals {
        return Err(EarningError::invalid(
            "amount",
            "too_many_decimals",
            format!("{} has {decimals} decimal places", e.coin),
        ));
    }
    if e.delivered_hashrate.is_sign_negative() && !e.delivered_hashrate.is_zero() {
        return Err(EarningError::invalid(
            "delivered_hashrate",
            "negative",
            "must be zero or more",
        ));
    }
    if places(e.delivered_hashrate) > HASHRATE_DECIMALS {
        return Err(EarningError::invalid(
            "delivered_hashrate",
            "too_many_decimals",
            format!("at most {HASHRATE_DECIMALS} decimal places"),
        ));
    }
    // NUMERIC(30, 6): fewer than 24 integer digits.
    if e.delivered_hashrate >= Decimal::from_i128_with_scale(10_i128.pow(24), 0) {
        return Err(EarningError::invalid(
            "delivered_hashrate",
            "too_large",
            "less than 10^24",
        ));
    }
    if e.difficulty <= Decimal::ZERO {
        return Err(EarningError::invalid(
            "difficulty",
            "not_positive",
            "must be greater than zero",
        ));
    }
    if places(e.difficulty) > HASHRATE_DECIMALS {
        return Err(EarningError::invalid(
            "difficulty",
            "too_many_decimals",
            format!("at most {HASHRATE_DECIMALS} decimal places"),
        ));
    }
    if e.pool_tx_ids.len() > MAX_TX_IDS {
        return Err(EarningError::invalid(
            "pool_tx_ids",
            "too_many",
            format!("at most {MAX_TX_IDS} ids"),
        ));
    }
    for (i, id) in e.pool_tx_ids.iter().enumerate() {
        if let Some((code, message)) = tx_id_problem(id) {
            return Err(EarningError::invalid(
                format!("pool_tx_ids[{i}]"),
                code,
                message,
            ));
        }
        if e.pool_tx_ids[..i].contains(id) {
            return Err(EarningError::invalid(
                format!("pool_tx_ids[{i}]"),
                "duplicate",
                "listed twice",
            ));
        }
    }
    if e.source.trim().is_empty() || e.source.chars().count() > 200 {
        return Err(EarningError::invalid(
            "source",
            "invalid",
            "1 to 200 characters",
        ));
    }
    Ok(())
}

/// Every import of a pool, day and coin, oldest first.
async fn chain_rows(
    conn: &mut AsyncPgConnection,
    pool_id: Uuid,
    day: NaiveDate,
    coin: &str,
) -> Result<Vec<PoolEarning>, EarningError> {
    Ok(pool_earnings::table
        .filter(pool_earnings::pool_id.eq(pool_id))
        .filter(pool_earnings::day.eq(day))
        .filter(pool_earnings::coin.eq(coin))
        .order((pool_earnings::created_at, pool_earnings::id))
        .select(PoolEarning::as_select())
        .load(conn)
        .await?)
}

/// The end of the chain that starts at the original among `rows`.
fn chain_end(rows: &[PoolEarning]) -> Option<&PoolEarning> {
    let mut current = rows.iter().find(|r| r.corrects_id.is_none())?;
    // Each import has at most one correction, so the walk is a path; the
    // bound guards against a cycle the schema cannot produce.
    for _ in 0..rows.len() {
        match rows.iter().find(|r| r.corrects_id == Some(current.id)) {
            Some(next) => current = next,
            None => break,
        }
    }
    Some(current)
}

/// The effective import of a pool, day and coin: the end of its correction
/// chain; `None` when nothing was imported.
pub async fn latest_for(
    conn: &mut AsyncPgConnection,
    pool_id: Uuid,
    day: NaiveDate,
    coin: &str,
) -> Result<Option<PoolEarning>, EarningError> {
    let rows = chain_rows(conn, pool_id, day, coin).await?;
    Ok(chain_end(&rows).cloned().map(tidy))
}

/// Checks everything [`import`] checks without writing: the pool exists,
/// [`validate`] against today (UTC), and the import fits the pool-day-coin's
/// chain (an original when there is none; else a correction of the latest).
pub async fn check(conn: &mut AsyncPgConnection, e: &NewEarning) -> Result<(), EarningError> {
    let Some(pool) = store::pool(conn, e.pool_id).await? else {
        return Err(EarningError::invalid(
            "pool_id",
            "unknown_pool",
            "no pool has this id",
        ));
    };
    validate(e, &pool, Utc::now().date_naive())?;
    let rows = chain_rows(conn, e.pool_id, e.day, &e.coin).await?;
    let latest = chain_end(&rows);
    match (e.corrects, latest) {
        (None, None) => Ok(()),
        (None, Some(latest)) => Err(EarningError::Duplicate {
            pool_id: e.pool_id,
            day: e.day,
            coin: e.coin.clone(),
            latest: latest.id,
        }),
        (Some(corrects), latest) => {
            if !rows.iter().any(|r| r.id == corrects) {
                return Err(EarningError::invalid(
                    "corrects",
                    "unknown_earning",
                    "no import of this pool, day and coin has this id",
                ));
            }
            match latest {
                Some(latest) if latest.id != corrects => Err(EarningError::AlreadyCorrected {
                    corrects,
                    latest: latest.id,
                }),
                _ => Ok(()),
            }
        }
    }
}

/// Stores `e` after [`check`]: an original import, or a correction of the
/// latest import of its pool, day and coin. A second original is
/// [`EarningError::Duplicate`]; a correction of an import that already has
/// one is [`EarningError::AlreadyCorrected`] (also when two race).
pub async fn import(
    conn: &mut AsyncPgConnection,
    e: &NewEarning,
) -> Result<PoolEarning, EarningError> {
    conn.transaction(async |c| {
        check(c, e).await?;
        let inserted = diesel::insert_into(pool_earnings::table)
            .values((
                pool_earnings::id.eq(Uuid::now_v7()),
                pool_earnings::pool_id.eq(e.pool_id),
                pool_earnings::day.eq(e.day),
                pool_earnings::coin.eq(&e.coin),
                pool_earnings::amount.eq(e.amount),
                pool_earnings::delivered_hashrate.eq(e.delivered_hashrate),
                pool_earnings::difficulty.eq(e.difficulty),
                pool_earnings::pool_tx_ids.eq(&e.pool_tx_ids),
                pool_earnings::source.eq(&e.source),
                pool_earnings::corrects_id.eq(e.corrects),
            ))
            .returning(PoolEarning::as_returning())
            .get_result(c)
            .await;
        match inserted {
            Ok(row) => {
                // Settled by the workers once imported: enqueued here, in the
                // import's transaction, under a key that makes it once.
                let job = crate::outbox::jobs::NewJob::new(
                    "settle",
                    serde_json::json!({ "earning_id": row.id }),
                )
                .unique(format!("settle:{}", row.id));
                crate::outbox::jobs::enqueue(c, &job)
                    .await
                    .map_err(|e| match e {
                        crate::outbox::jobs::JobError::Database(d) => EarningError::from(d),
                        other => EarningError::from(diesel::result::Error::QueryBuilderError(
                            other.to_string().into(),
                        )),
                    })?;
                Ok(tidy(row))
            }
            // Another import won a race between the check and the insert.
            Err(err) if is_unique_violation(&err) => {
                let latest = latest_for(c, e.pool_id, e.day, &e.coin)
                    .await
                    .ok()
                    .flatten()
                    .map(|l| l.id)
                    .unwrap_or_default();
                Err(match e.corrects {
                    None => EarningError::Duplicate {
                        pool_id: e.pool_id,
                        day: e.day,
                        coin: e.coin.clone(),
                        latest,
                    },
                    Some(corrects) => EarningError::AlreadyCorrected { corrects, latest },
                })
            }
            Err(err) => Err(err.into()),
        }
    })
    .await
}

/// Imports, newest day first, optionally of one pool and/or one day; at
/// most `limit` rows (1 to [`MAX_LIST`]).
pub async fn list(
    conn: &mut AsyncPgConnection,
    pool_id: Option<Uuid>,
    day: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<PoolEarning>, EarningError> {
    let mut q = pool_earnings::table
        .select(PoolEarning::as_select())
        .into_boxed();
    if let Some(p) = pool_id {
        q = q.filter(pool_earnings::pool_id.eq(p));
    }
    if let Some(d) = day {
        q = q.filter(pool_earnings::day.eq(d));
    }
    let rows = q
        .order((
            pool_earnings::day.desc(),
            pool_earnings::pool_id,
            pool_earnings::coin,
            pool_earnings::created_at,
            pool_earnings::id,
        ))
        .limit(limit.clamp(1, MAX_LIST))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(tidy).collect())
}

/// A CSV refusal at data row `row` (from 0), column `col` (from 0).
fn csv_error(
    row: usize,
    col: usize,
    name: &str,
    code: &'static str,
    message: &str,
) -> EarningError {
    EarningError::invalid(
        format!("rows[{row}].{name}"),
        code,
        format!("line {}, column {} ({name}): {message}", row + 2, col + 1),
    )
}

/// Parses an upload (see the module documentation): a header line, then
/// one import per line; blank lines are skipped, quotes refused. Only the
/// syntax is checked here; [`validate`] judges the values (the caller
/// prefixes its fields with [`EarningError::in_row`]).
pub fn parse_csv(text: &str) -> Result<Vec<NewEarningInput>, EarningError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(EarningError::invalid(
            "header",
            "missing_header",
            format!("the first line must be {}", CSV_COLUMNS.join(",")),
        ));
    };
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let with_corrects = names.len() == CSV_COLUMNS.len() + 1 && names.last() == Some(&CSV_CORRECTS);
    if names[..names.len().min(CSV_COLUMNS.len())] != CSV_COLUMNS
        || !(names.len() == CSV_COLUMNS.len() || with_corrects)
    {
        return Err(EarningError::invalid(
            "header",
            "invalid_header",
            format!(
                "the first line must be {} (optionally followed by ,{CSV_CORRECTS})",
                CSV_COLUMNS.join(",")
            ),
        ));
    }
    let width = names.len();
    let mut out = Vec::new();
    for (row, (_, line)) in lines.enumerate() {
        if row >= MAX_CSV_ROWS {
            return Err(EarningError::invalid(
                "rows",
                "too_many_rows",
                format!("at most {MAX_CSV_ROWS} rows per upload"),
            ));
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if let Some(col) = cells.iter().position(|c| c.contains('"')) {
            return Err(csv_error(
                row,
                col,
                names.get(col).copied().unwrap_or("?"),
                "quotes_not_supported",
                "quotes are not supported; values never contain ',' or ';'",
            ));
        }
        if cells.len() != width {
            return Err(EarningError::invalid(
                format!("rows[{row}]"),
                "wrong_column_count",
                format!(
                    "line {}: {} columns, the header has {width}",
                    row + 2,
                    cells.len()
                ),
            ));
        }
        let cell = |col: usize| cells.get(col).copied().unwrap_or("");
        let pool_id = Uuid::parse_str(cell(0))
            .ok()
            .filter(|_| cell(0).len() == 36)
            .ok_or_else(|| csv_error(row, 0, "pool_id", "invalid", "a UUID"))?;
        let day = (cell(1).len() == 10)
            .then(|| NaiveDate::parse_from_str(cell(1), "%Y-%m-%d").ok())
            .flatten()
            .ok_or_else(|| csv_error(row, 1, "day", "invalid", "a day, YYYY-MM-DD"))?;
        let coin = cell(2).to_owned();
        if coin.is_empty() {
            return Err(csv_error(row, 2, "coin", "required", "a coin, e.g. BTC"));
        }
        let decimal = |col: usize| {
            parse_decimal(cell(col)).ok_or_else(|| {
                csv_error(
                    row,
                    col,
                    CSV_COLUMNS[col],
                    "invalid_decimal",
                    "a plain decimal such as 12.5 (no exponent)",
                )
            })
        };
        let amount = decimal(3)?;
        let delivered_hashrate = decimal(4)?;
        let difficulty = decimal(5)?;
        let pool_tx_ids = if cell(6).is_empty() {
            Vec::new()
        } else {
            cell(6).split(';').map(|s| s.trim().to_owned()).collect()
        };
        let corrects = if with_corrects && !cell(7).is_empty() {
            Some(
                Uuid::parse_str(cell(7))
                    .ok()
                    .filter(|_| cell(7).len() == 36)
                    .ok_or_else(|| csv_error(row, 7, CSV_CORRECTS, "invalid", "a UUID or empty"))?,
            )
        } else {
            None
        };
        out.push(NewEarningInput {
            pool_id,
            day,
            coin,
            amount,
            delivered_hashrate,
            difficulty,
            pool_tx_ids,
            corrects,
        });
    }
    if out.is_empty() {
        return Err(EarningError::invalid(
            "rows",
            "empty",
            "at least one row after the header",
        ));
    }
    Ok(out)
}
