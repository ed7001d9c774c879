//! Reference prices in USD and the network inputs of the yield estimate.
//!
//! - `prices` is append-only: every observation (from a feed or typed in by
//!   staff) is kept, and the newest by `observed_at` is the current price.
//!   [`current`] refuses a price older than the caller's tolerance
//!   ([`PriceError::Stale`]) rather than quoting on it.
//! - `price_fixings` holds one price per coin and day, fixed at 00:00 UTC by
//!   [`fix_day`] from the latest observation at or before midnight. A fixing
//!   is never changed once made, so every settlement that used it can be
//!   recomputed years later.
//! - `network_stats` holds the newest difficulty, block reward and fees per
//!   block of each mined coin.
//!
//! Coins are upper-case codes matching `[A-Z0-9]{2,10}`: the ledger assets
//! (BTC, ETH, DOGE, BNB, USDT, USDC) and coins that are mined but not held,
//! such as LTC. Every amount is checked before it is stored, because the
//! `NUMERIC` columns would otherwise round excess decimals silently.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Date, Timestamptz};
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::schema::{network_stats, price_fixings, prices};

/// Decimal places a USD price may have (`prices.usd` is `NUMERIC(30, 12)`).
pub const USD_DECIMALS: u32 = 12;
/// How far in the future an observation may be dated (clock skew).
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);
/// How far before midnight a price may have been observed to become the
/// fixing of that day.
pub const FIXING_WINDOW: Duration = Duration::hours(24);
/// Longest `source` text.
pub const MAX_SOURCE_LEN: usize = 200;

/// Decimal places of a difficulty (`NUMERIC(40, 6)`).
const DIFFICULTY_DECIMALS: u32 = 6;
/// Decimal places of a block reward or fees (`NUMERIC(30, 12)`).
const REWARD_DECIMALS: u32 = 12;

/// Why a price could not be stored or used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// An input was refused; `field` names it (`asset`, `usd`, `source`,
    /// `observed_at`, `day`, `difficulty`, …).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The newest price is older than the caller accepts.
    #[error("the newest {asset} price is {age_secs} s old, older than allowed")]
    Stale { asset: String, age_secs: i64 },
    /// There is no price of the coin at all.
    #[error("there is no {asset} price")]
    Missing { asset: String },
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

impl PriceError {
    /// Stable machine-readable code, for API error bodies and job logs.
    pub const fn code(&self) -> &'static str {
        match self {
            PriceError::Invalid { .. } => "invalid_price",
            PriceError::Stale { .. } => "price_stale",
            PriceError::Missing { .. } => "price_missing",
            PriceError::Database(_) => "database_error",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        PriceError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// One observed price.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, QueryableByName, Serialize, ToSchema,
)]
#[diesel(table_name = prices, check_for_backend(diesel::pg::Pg))]
pub struct PriceRow {
    /// The coin, e.g. `BTC` or `LTC`.
    pub asset: String,
    /// USD per whole coin, as a decimal string.
    #[schema(value_type = String, example = "97000.12")]
    pub usd: Decimal,
    /// Where it came from, e.g. `http:prices.example` or `admin:user:<id>`.
    pub source: String,
    pub observed_at: DateTime<Utc>,
}

impl PriceRow {
    fn normalized(mut self) -> Self {
        self.usd = self.usd.normalize();
        self
    }

    /// How old the price is at `now` (negative when dated after `now`).
    pub fn age(&self, now: DateTime<Utc>) -> Duration {
        now - self.observed_at
    }
}

/// The price of one coin at 00:00 UTC of one day.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, QueryableByName, Serialize, ToSchema,
)]
#[diesel(table_name = price_fixings, check_for_backend(diesel::pg::Pg))]
pub struct Fixing {
    pub asset: String,
    pub day: NaiveDate,
    /// USD per whole coin, as a decimal string.
    #[schema(value_type = String, example = "97000.12")]
    pub usd: Decimal,
    /// The source of the observation the fixing was taken from.
    pub source: String,
    /// When that observation was made (at most 24 h before midnight).
    pub observed_at: DateTime<Utc>,
    /// When the fixing was made.
    pub created_at: DateTime<Utc>,
}

impl Fixing {
    fn normalized(mut self) -> Self {
        self.usd = self.usd.normalize();
        self
    }
}

/// The newest network figures of one mined coin.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = network_stats, check_for_backend(diesel::pg::Pg))]
pub struct NetworkStats {
    pub coin: String,
    #[schema(value_type = String)]
    pub difficulty: Decimal,
    /// Coins per block, before fees.
    #[schema(value_type = String)]
    pub block_reward: Decimal,
    /// Average fees per block, in coins.
    #[schema(value_type = String)]
    pub fees_per_block: Decimal,
    pub source: String,
    pub observed_at: DateTime<Utc>,
}

impl NetworkStats {
    fn normalized(mut self) -> Self {
        self.difficulty = self.difficulty.normalize();
        self.block_reward = self.block_reward.normalize();
        self.fees_per_block = self.fees_per_block.normalize();
        self
    }
}

/// Whether `code` is a coin code: `[A-Z0-9]{2,10}`.
pub fn valid_coin(code: &str) -> bool {
    (2..=10).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn check_coin(field: &'static str, code: &str) -> Result<(), PriceError> {
    if valid_coin(code) {
        Ok(())
    } else {
        Err(PriceError::invalid(
            field,
            format!("{code:?} is not a coin code: 2 to 10 characters of A-Z and 0-9"),
        ))
    }
}

fn check_source(source: &str) -> Result<(), PriceError> {
    if source.trim().is_empty() || source.chars().count() > MAX_SOURCE_LEN {
        return Err(PriceError::invalid(
            "source",
            format!("1 to {MAX_SOURCE_LEN} characters"),
        ));
    }
    Ok(())
}

/// Checks a decimal for a `NUMERIC(precision, decimals)` column: at most
/// `decimals` places and `precision - decimals` integer digits.
fn check_decimal(
    field: &'static str,
    value: Decimal,
    decimals: u32,
    integer_digits: u32,
    positive: bool,
) -> Result<Decimal, PriceError> {
    let value = value.normalize();
    if positive && value <= Decimal::ZERO {
        return Err(PriceError::invalid(field, "must be greater than zero"));
    }
    if value.is_sign_negative() && !value.is_zero() {
        return Err(PriceError::invalid(field, "must not be negative"));
    }
    if value.scale() > decimals {
        return Err(PriceError::invalid(
            field,
            format!("at most {decimals} decimal places"),
        ));
    }
    // Decimal holds at most 28 digits, so only narrower columns need this.
    if integer_digits < 28 {
        let limit = Decimal::from_i128_with_scale(10i128.pow(integer_digits), 0);
        if value.trunc() >= limit {
            return Err(PriceError::invalid(
                field,
                format!("at most {integer_digits} digits before the decimal point"),
            ));
        }
    }
    Ok(value)
}

/// Checks a USD price: greater than zero, at most [`USD_DECIMALS`] decimal
/// places, less than 10^18. Returns it normalized.
pub fn check_usd(usd: Decimal) -> Result<Decimal, PriceError> {
    check_decimal("usd", usd, USD_DECIMALS, 18, true)
}

/// Parses a USD price from a plain decimal string (`97000.12`): digits with
/// an optional fraction, no sign, exponent or spaces; then [`check_usd`].
pub fn parse_usd(s: &str) -> Result<Decimal, PriceError> {
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(PriceError::invalid(
            "usd",
            "must be a plain decimal string such as \"97000.12\"",
        ));
    }
    if fraction.is_some_and(|f| f.len() > USD_DECIMALS as usize) {
        return Err(PriceError::invalid(
            "usd",
            format!("at most {USD_DECIMALS} decimal places"),
        ));
    }
    let too_large = || PriceError::invalid("usd", "too many digits");
    let value: Decimal = s.parse().map_err(|_| too_large())?;
    // Decimal rounds what it cannot hold; a rounded price is refused.
    if value.scale() as usize != fraction.map_or(0, str::len) {
        return Err(too_large());
    }
    check_usd(value)
}

fn check_observed_at(observed_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), PriceError> {
    if observed_at > now + MAX_CLOCK_SKEW {
        return Err(PriceError::invalid(
            "observed_at",
            format!(
                "{} is more than {} minutes in the future",
                observed_at.to_rfc3339(),
                MAX_CLOCK_SKEW.num_minutes()
            ),
        ));
    }
    Ok(())
}

/// Appends an observed price. Refuses a coin that is not `[A-Z0-9]{2,10}`,
/// a price that is not positive or has more than [`USD_DECIMALS`] decimal
/// places, an empty source, and an observation dated more than
/// [`MAX_CLOCK_SKEW`] in the future.
pub async fn post_price(
    conn: &mut AsyncPgConnection,
    asset: &str,
    usd: Decimal,
    source: &str,
    observed_at: DateTime<Utc>,
) -> Result<PriceRow, PriceError> {
    check_coin("asset", asset)?;
    let usd = check_usd(usd)?;
    check_source(source)?;
    check_observed_at(observed_at, Utc::now())?;
    let row = diesel::insert_into(prices::table)
        .values((
            prices::asset.eq(asset),
            prices::usd.eq(usd),
            prices::source.eq(source),
            prices::observed_at.eq(observed_at),
        ))
        .returning(PriceRow::as_returning())
        .get_result::<PriceRow>(conn)
        .await?;
    Ok(row.normalized())
}

/// The newest price of `asset` (by observation time), if there is any.
pub async fn latest(
    conn: &mut AsyncPgConnection,
    asset: &str,
) -> Result<Option<PriceRow>, PriceError> {
    let row = prices::table
        .filter(prices::asset.eq(asset))
        .order((prices::observed_at.desc(), prices::id.desc()))
        .select(PriceRow::as_select())
        .first::<PriceRow>(conn)
        .await
        .optional()?;
    Ok(row.map(PriceRow::normalized))
}

/// The newest price of `asset` if it is at most `max_age` old at `now`:
/// [`PriceError::Stale`] when it is older, [`PriceError::Missing`] when
/// there is none.
pub async fn current(
    conn: &mut AsyncPgConnection,
    asset: &str,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<PriceRow, PriceError> {
    let row = latest(conn, asset)
        .await?
        .ok_or_else(|| PriceError::Missing {
            asset: asset.to_owned(),
        })?;
    let age = row.age(now);
    if age > max_age {
        return Err(PriceError::Stale {
            asset: asset.to_owned(),
            age_secs: age.num_seconds(),
        });
    }
    Ok(row)
}

/// The newest price of every coin that has one, by coin.
///
/// Walks the `(asset, observed_at DESC)` index one coin at a time, so the
/// cost grows with the number of coins, not with the history.
pub async fn latest_all(conn: &mut AsyncPgConnection) -> Result<Vec<PriceRow>, PriceError> {
    let rows = diesel::sql_query(
        "WITH RECURSIVE coins AS ( \
             SELECT min(asset) AS asset FROM prices \
             UNION ALL \
             SELECT (SELECT min(p.asset) FROM prices p WHERE p.asset > coins.asset) \
             FROM coins WHERE coins.asset IS NOT NULL) \
         SELECT last.asset, last.usd, last.source, last.observed_at \
         FROM coins CROSS JOIN LATERAL ( \
             SELECT p.asset, p.usd, p.source, p.observed_at FROM prices p \
             WHERE p.asset = coins.asset \
             ORDER BY p.observed_at DESC, p.id DESC LIMIT 1) last \
         ORDER BY last.asset",
    )
    .load::<PriceRow>(conn)
    .await?;
    Ok(rows.into_iter().map(PriceRow::normalized).collect())
}

/// 00:00 UTC of `day`.
pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// Makes the fixings of `day`: for every coin with prices, the latest price
/// observed at or before 00:00 UTC of `day` and at most [`FIXING_WINDOW`]
/// before it. Coins with nothing in that window get no fixing. An existing
/// fixing is kept as it is (a fixing never changes), so running this again
/// is harmless. Returns every fixing of `day`, by coin.
///
/// Refuses a day whose midnight has not come yet: later prices could still
/// arrive that belong before it.
pub async fn fix_day(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
) -> Result<Vec<Fixing>, PriceError> {
    let at = midnight(day);
    if at > Utc::now() {
        return Err(PriceError::invalid(
            "day",
            format!("{day} has not begun yet; it can be fixed from 00:00 UTC"),
        ));
    }
    diesel::sql_query(
        "WITH RECURSIVE coins AS ( \
             SELECT min(asset) AS asset FROM prices \
             UNION ALL \
             SELECT (SELECT min(p.asset) FROM prices p WHERE p.asset > coins.asset) \
             FROM coins WHERE coins.asset IS NOT NULL) \
         INSERT INTO price_fixings (asset, day, usd, source, observed_at) \
         SELECT last.asset, $1, last.usd, last.source, last.observed_at \
         FROM coins CROSS JOIN LATERAL ( \
             SELECT p.asset, p.usd, p.source, p.observed_at FROM prices p \
             WHERE p.asset = coins.asset AND p.observed_at <= $2 AND p.observed_at >= $3 \
             ORDER BY p.observed_at DESC, p.id DESC LIMIT 1) last \
         ON CONFLICT (asset, day) DO NOTHING",
    )
    .bind::<Date, _>(day)
    .bind::<Timestamptz, _>(at)
    .bind::<Timestamptz, _>(at - FIXING_WINDOW)
    .execute(conn)
    .await?;
    fixings(conn, day).await
}

/// The fixing of `asset` on `day`, if one was made.
pub async fn fixing(
    conn: &mut AsyncPgConnection,
    asset: &str,
    day: NaiveDate,
) -> Result<Option<Fixing>, PriceError> {
    let row = price_fixings::table
        .find((asset, day))
        .select(Fixing::as_select())
        .first::<Fixing>(conn)
        .await
        .optional()?;
    Ok(row.map(Fixing::normalized))
}

/// Every fixing of `day`, by coin.
pub async fn fixings(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
) -> Result<Vec<Fixing>, PriceError> {
    let rows = price_fixings::table
        .filter(price_fixings::day.eq(day))
        .order(price_fixings::asset)
        .select(Fixing::as_select())
        .load::<Fixing>(conn)
        .await?;
    Ok(rows.into_iter().map(Fixing::normalized).collect())
}

/// Stores the network figures of `coin`, replacing older ones. Figures
/// observed before the stored ones are ignored (a late report must not
/// roll the estimate back); the stored row is returned either way.
pub async fn upsert_network_stats(
    conn: &mut AsyncPgConnection,
    coin: &str,
    difficulty: Decimal,
    block_reward: Decimal,
    fees_per_block: Decimal,
    source: &str,
    observed_at: DateTime<Utc>,
) -> Result<NetworkStats, PriceError> {
    check_coin("coin", coin)?;
    let difficulty = check_decimal("difficulty", difficulty, DIFFICULTY_DECIMALS, 34, true)?;
    let block_reward = check_decimal("block_reward", block_reward, REWARD_DECIMALS, 18, false)?;
    let fees_per_block =
        check_decimal("fees_per_block", fees_per_block, REWARD_DECIMALS, 18, false)?;
    check_source(source)?;
    check_observed_at(observed_at, Utc::now())?;
    // `ON CONFLICT … DO UPDATE … WHERE`: the filter of the upsert, not of a query.
    use diesel::query_dsl::methods::FilterDsl;
    diesel::insert_into(network_stats::table)
        .values((
            network_stats::coin.eq(coin),
            network_stats::difficulty.eq(difficulty),
            network_stats::block_reward.eq(block_reward),
            network_stats::fees_per_block.eq(fees_per_block),
            network_stats::source.eq(source),
            network_stats::observed_at.eq(observed_at),
        ))
        .on_conflict(network_stats::coin)
        .do_update()
        .set((
            network_stats::difficulty.eq(excluded(network_stats::difficulty)),
            network_stats::block_reward.eq(excluded(network_stats::block_reward)),
            network_stats::fees_per_block.eq(excluded(network_stats::fees_per_block)),
            network_stats::source.eq(excluded(network_stats::source)),
            network_stats::observed_at.eq(excluded(network_stats::observed_at)),
        ))
        .filter(network_stats::observed_at.le(excluded(network_stats::observed_at)))
        .execute(conn)
        .await?;
    network_stats(conn, coin)
        .await?
        .ok_or_else(|| PriceError::Missing {
            asset: coin.to_owned(),
        })
}

/// The stored network figures of `coin`, if any.
pub async fn network_stats(
    conn: &mut AsyncPgConnection,
    coin: &str,
) -> Result<Option<NetworkStats>, PriceError> {
    let row = network_stats::table
        .find(coin)
        .select(NetworkStats::as_select())
        .first::<NetworkStats>(conn)
        .await
        .optional()?;
    Ok(row.map(NetworkStats::normalized))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coin_codes() {
        for ok in ["BTC", "LTC", "USDT", "A1", "ABCDEFGHIJ"] {
            assert!(valid_coin(ok), "{ok}");
        }
        for bad in ["", "B", "btc", "BT C", "ABCDEFGHIJK", "BTC-X", "ÉTH"] {
            assert!(!valid_coin(bad), "{bad}");
        }
    }

    #[test]
    fn usd_strings_are_strict() {
        assert_eq!(parse_usd("97000.12").unwrap(), Decimal::new(9_700_012, 2));
        assert_eq!(parse_usd("1.000000000001").unwrap().scale(), 12);
        assert_eq!(parse_usd("5.0").unwrap(), Decimal::from(5));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "+1",
            "1e5",
            " 1",
            "1.",
            ".5",
            "1.0000000000001",
            "abc",
            "1000000000000000000",
            "NaN",
        ] {
            let err = parse_usd(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_price", "{bad}");
            assert!(
                matches!(err, PriceError::Invalid { field: "usd", .. }),
                "{bad}"
            );
        }
        // 30 significant digits do not fit a Decimal: refused, not rounded.
        assert!(parse_usd("999999999999999999.999999999999").is_err());
        assert!(parse_usd("0.000000000001").is_ok());
    }

    #[test]
    fn decimals_are_checked_against_their_columns() {
        assert!(check_usd(Decimal::new(1, 12)).is_ok());
        assert!(check_usd(Decimal::new(1, 13)).is_err());
        assert!(check_usd(Decimal::new(10, 13)).is_ok()); // 0.000000000001 normalized
        assert!(check_usd(Decimal::ZERO).is_err());
        assert!(check_usd(Decimal::NEGATIVE_ONE).is_err());
        assert!(check_usd(Decimal::from(999_999_999_999_999_999i64)).is_ok());
        assert!(check_usd(Decimal::from(1_000_000_000_000_000_000i64)).is_err());
        assert!(check_decimal("block_reward", Decimal::ZERO, 12, 18, false).is_ok());
        assert!(check_decimal("block_reward", Decimal::NEGATIVE_ONE, 12, 18, false).is_err());
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            PriceError::Stale {
                asset: "BTC".into(),
                age_secs: 600
            }
            .code(),
            "price_stale"
        );
        assert_eq!(
            PriceError::Missing {
                asset: "BTC".into()
            }
            .code(),
            "price_missing"
        );
    }
}
