//! Settling one pool-day-coin: pick the contracts that ran that day,
//! allocate the earnings (see [`super::allocation`]), convert to each
//! contract's payout asset at the day's fixing with the published spread,
//! and post it all through the ledger under deterministic references.
//!
//! Posting, built for a million contracts a pool-day:
//! - `earning:<import>`: the pool's coins arrive in its income account;
//! - `conversion:<settlement>:<asset>`: for contracts paid in another asset,
//!   their net coin goes to the conversion treasury, one transfer per asset;
//! - `payout:<settlement>:<account>`: ONE transfer per customer (or partner)
//!   account, the sum of its contracts' payouts; each contract's share is a
//!   row of `settlement_lines` (unique per contract and settlement) naming
//!   that account, so the ledger stays small and every satoshi is traceable;
//! - `fees:`/`house:`/`rounding:<settlement>`: the rest of the earnings.
//!
//! The payouts and lines are written in chunks of whole accounts, each chunk
//! one transaction, idempotent (references, and lines unique per contract
//! and settlement): a crash part-way is resumed by settling again. The
//! settlement row, the fees and the stop rule are written last, in one
//! transaction, so a day is settled once.
//!
//! A correction of a day already settled settles the corrected import again
//! and posts only the differences against what the earlier settlements of
//! the pool-day-coin posted, each transfer naming the one it corrects. A
//! customer who was paid too much keeps it (nothing is taken back from a
//! balance that may have been withdrawn); the house bears it, and the
//! settlement records how much (`inputs.correction.not_reclaimed`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Date, Int4, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::TryStreamExt;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::allocation::{self, Allocation, ContractShare, Inputs};
use crate::catalog::prices;
use crate::ledger::{
    self, AccountKind, BulkTransfers, LedgerError, NewTransfer, Owner, Posting, TransferKind,
};
use crate::money::{Amount, Asset, decimal_to_units, units_to_decimal};
use crate::schema::{pool_earnings, settlements};

/// Contracts per posting transaction (rounded up to whole accounts).
const CHUNK: usize = 50_000;
/// Accounts looked up (and opened) per statement.
const OPEN_SLICE: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    #[error("no such pool earnings import")]
    UnknownEarning,
    #[error("the {0} fixing of {1} is missing: run price_fixing first")]
    FixingMissing(String, NaiveDate),
    #[error("{0} has no known precision")]
    UnknownCoin(String),
    #[error("this import was corrected; settle the correction")]
    Superseded,
    #[error(
        "the corrected day was settled before per-account posting existed; correct it by an adjustment"
    )]
    CorrectionOfSettledDay,
    #[error("allocation: {0}")]
    Allocation(String),
    #[error("stopped part-way (a test's simulated crash); settle again to complete")]
    Interrupted,
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl SettlementError {
    pub fn code(&self) -> &'static str {
        match self {
            SettlementError::UnknownEarning => "not_found",
            SettlementError::FixingMissing(..) => "fixing_missing",
            SettlementError::UnknownCoin(_) => "unknown_coin",
            SettlementError::Superseded => "earning_corrected",
            SettlementError::CorrectionOfSettledDay => "correction_of_settled_day",
            SettlementError::Allocation(_) => "allocation_failed",
            SettlementError::Interrupted => "interrupted",
            SettlementError::Ledger(_) | SettlementError::Database(_) => "internal_error",
        }
    }
}

/// The precision of a mined coin (LTC is mined, not held in the ledger).
pub fn coin_decimals(coin: &str) -> Option<u32> {
    match coin {
        "LTC" => Some(8),
        other => other.parse::<Asset>().ok().map(Asset::ledger_decimals),
    }
}

/// What is settled: one pool's earnings of one coin on one day.
#[derive(Debug, Clone)]
pub struct EarningInput {
    pub id: Option<Uuid>,
    pub pool_id: Uuid,
    pub day: NaiveDate,
    pub coin: String,
    pub amount: Decimal,
    pub delivered_hashrate: Decimal,
    pub difficulty: Decimal,
    pub pool_tx_ids: Vec<String>,
}

#[derive(Debug, Clone, QueryableByName)]
struct Running {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    owner: Uuid,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    partner: bool,
    #[diesel(sql_type = Numeric)]
    hashrate: Decimal,
    #[diesel(sql_type = Text)]
    payout_asset: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    suspended: bool,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    ended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    suspended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    fee_usd: String,
    #[diesel(sql_type = Text)]
    primary_coin: String,
    #[diesel(sql_type = Int4)]
    spread_bps: i32,
}

/// What a contract needs besides its share, kept small: a million fit in memory.
#[derive(Debug, Clone, Copy)]
struct Payee {
    owner: Uuid,
    partner: bool,
    payout: Asset,
    spread_bps: i32,
}

/// One contract's share of a settlement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanLine {
    pub contract_id: Uuid,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    pub active_seconds: u32,
    #[schema(value_type = String)]
    pub gross: Decimal,
    #[schema(value_type = String)]
    pub fee: Decimal,
    #[schema(value_type = String)]
    pub net: Decimal,
    pub payout_asset: String,
    #[schema(value_type = String)]
    pub payout_amount: Decimal,
    /// Payout asset per coin, spread included.
    #[schema(value_type = String)]
    pub rate: Decimal,
    pub rate_source: String,
    #[schema(value_type = String)]
    pub usd_value: Decimal,
}

/// A settlement before (dry run) or as it is posted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Plan {
    pub pool_id: Uuid,
    pub day: NaiveDate,
    pub coin: String,
    #[schema(value_type = String)]
    pub earnings: Decimal,
    #[schema(value_type = String)]
    pub delivered_hashrate: Decimal,
    #[schema(value_type = String)]
    pub sold_hashrate: Decimal,
    /// H_delivered / H_sold: proof of delivery.
    #[schema(value_type = Option<String>)]
    pub delivered_ratio: Option<Decimal>,
    #[schema(value_type = String)]
    pub price_usd: Decimal,
    pub price_source: String,
    #[schema(value_type = String)]
    pub gross_total: Decimal,
    #[schema(value_type = String)]
    pub fees_total: Decimal,
    #[schema(value_type = String)]
    pub net_total: Decimal,
    #[schema(value_type = String)]
    pub house: Decimal,
    #[schema(value_type = String)]
    pub remainder: Decimal,
    pub contracts: usize,
    pub lines: Vec<PlanLine>,
    /// Every input, so a recomputation gives the same result.
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
}

/// The UTC day [00:00, next 00:00).
pub(crate) fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(NaiveTime::MIN).and_utc();
    (start, start + Duration::days(1))
}

async fn fixing(
    conn: &mut AsyncPgConnection,
    coin: &str,
    day: NaiveDate,
) -> Result<(Decimal, String), SettlementError> {
    let f = prices::fixing(conn, coin, day)
        .await
        .map_err(|e| SettlementError::Allocation(e.to_string()))?
        .ok_or_else(|| SettlementError::FixingMissing(coin.to_owned(), day))?;
    Ok((f.usd, f.source))
}

fn units(value: Decimal, decimals: u32) -> Result<u128, SettlementError> {
    decimal_to_units(value, decimals).ok_or_else(|| {
        SettlementError::Allocation(format!("{value} does not fit {decimals} decimals"))
    })
}

fn dec(units: u128, decimals: u32) -> Result<Decimal, SettlementError> {
    units_to_decimal(units, decimals)
        .ok_or_else(|| SettlementError::Allocation("amount too large".into()))
}

fn parse_asset(code: &str) -> Result<Asset, SettlementError> {
    code.parse()
        .map_err(|_| SettlementError::UnknownCoin(code.to_owned()))
}

/// The allocation of an import, computed once: the totals, and per contract
/// its share and payee, in the order of their accounts.
struct Computed {
    e: EarningInput,
    decimals: u32,
    coin_asset: Option<Asset>,
    price_usd: Decimal,
    price_source: String,
    charge_fee: bool,
    shares: Vec<ContractShare>,
    payees: Vec<Payee>,
    alloc: Allocation,
    /// Payout asset and spread → (payout asset per coin, its source).
    rates: HashMap<(Asset, i32), (Decimal, String)>,
    fixings: BTreeMap<String, (Decimal, String)>,
}

impl Computed {
    fn net(&self, i: usize) -> Result<Decimal, SettlementError> {
        dec(self.alloc.lines.get(i).map_or(0, |l| l.net), self.decimals)
    }

    /// The payout of contract `i` in its payout asset, and the rate used.
    fn payout(&self, i: usize) -> Result<(Decimal, Decimal, &str), SettlementError> {
        let p = self
            .payees
            .get(i)
            .ok_or_else(|| SettlementError::Allocation("line out of range".into()))?;
        let net = self.net(i)?;
        let (rate, source) = self
            .rates
            .get(&(p.payout, p.spread_bps))
            .ok_or_else(|| SettlementError::Allocation("rate missing".into()))?;
        if Some(p.payout) == self.coin_asset {
            return Ok((net, *rate, source));
        }
        Ok((
            crate::money::floor_to_decimals(net * rate, p.payout.ledger_decimals()),
            *rate,
            source,
        ))
    }

    fn line(&self, i: usize) -> Result<PlanLine, SettlementError> {
        let (share, p, l) = match (
            self.shares.get(i),
            self.payees.get(i),
            self.alloc.lines.get(i),
        ) {
            (Some(s), Some(p), Some(l)) => (s, p, l),
            _ => return Err(SettlementError::Allocation("line out of range".into())),
        };
        let net = dec(l.net, self.decimals)?;
        let (payout_amount, rate, source) = self.payout(i)?;
        Ok(PlanLine {
            contract_id: share.contract_id,
            hashrate: share.hashrate.normalize(),
            active_seconds: share.active_seconds,
            gross: dec(l.gross, self.decimals)?,
            fee: dec(l.fee, self.decimals)?,
            net,
            payout_asset: p.payout.code().to_owned(),
            payout_amount: payout_amount.normalize(),
            rate: rate.normalize(),
            rate_source: source.to_owned(),
            usd_value: (net * self.price_usd).round_dp(12).normalize(),
        })
    }

    fn plan(&self, with_lines: bool) -> Result<Plan, SettlementError> {
        let e = &self.e;
        let lines = if with_lines {
            (0..self.shares.len())
                .map(|i| self.line(i))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let sold_hashrate = self
            .shares
            .iter()
            .map(|s| s.hashrate * Decimal::from(s.active_seconds) / Decimal::from(86_400))
            .sum::<Decimal>()
            .round_dp(6);
        Ok(Plan {
            pool_id: e.pool_id,
            day: e.day,
            coin: e.coin.clone(),
            earnings: e.amount.normalize(),
            delivered_hashrate: e.delivered_hashrate.normalize(),
            sold_hashrate: sold_hashrate.normalize(),
            delivered_ratio: self
                .alloc
                .delivered_ratio()
                .map(|r| r.round_dp(12).normalize()),
            price_usd: self.price_usd.normalize(),
            price_source: self.price_source.clone(),
            gross_total: dec(self.alloc.gross_total, self.decimals)?,
            fees_total: dec(self.alloc.fees, self.decimals)?,
            net_total: dec(self.alloc.net_total, self.decimals)?,
            house: dec(self.alloc.house, self.decimals)?,
            remainder: dec(self.alloc.remainder, self.decimals)?,
            contracts: self.shares.len(),
            lines,
            inputs: serde_json::json!({
                "earning_id": e.id,
                "pool_id": e.pool_id,
                "day": e.day,
                "coin": e.coin,
                "amount": e.amount.normalize().to_string(),
                "delivered_hashrate": e.delivered_hashrate.normalize().to_string(),
                "difficulty": e.difficulty.normalize().to_string(),
                "pool_tx_ids": e.pool_tx_ids,
                "price_usd": self.price_usd.normalize().to_string(),
                "price_source": self.price_source,
                "charge_fee": self.charge_fee,
                "payout_fixings": self.fixings.iter().map(|(k, (v, s))| (k.clone(), serde_json::json!({"usd": v.normalize().to_string(), "source": s}))).collect::<BTreeMap<_, _>>(),
                "posting": "per_account",
            }),
        })
    }
}

/// Reads the contracts that ran on the day (streamed, kept compact) and allocates.
async fn compute(
    conn: &mut AsyncPgConnection,
    e: &EarningInput,
) -> Result<Computed, SettlementError> {
    let decimals =
        coin_decimals(&e.coin).ok_or_else(|| SettlementError::UnknownCoin(e.coin.clone()))?;
    let coin_asset: Option<Asset> = e.coin.parse().ok();
    let (price_usd, price_source) = fixing(conn, &e.coin, e.day).await?;
    let (day_start, day_end) = day_bounds(e.day);
    let mut shares: Vec<ContractShare> = Vec::new();
    let mut payees: Vec<Payee> = Vec::new();
    let mut primary_coin: Option<String> = None;
    let mut fees: HashMap<String, Decimal> = HashMap::new();
    {
        // Ordered by account, so that chunks hold whole accounts.
        let mut rows = diesel::sql_query(
            "SELECT id, coalesce(partner_id, user_id) AS owner, partner_id IS NOT NULL AS partner, hashrate, \
                    payout_asset, state = 'suspended' AS suspended, starts_at, ends_at, ended_at, suspended_at, \
                    terms->>'fee_usd_per_unit_day' AS fee_usd, terms->'mined_coins'->>0 AS primary_coin, \
                    (terms->>'spread_bps')::int AS spread_bps \
             FROM contracts \
             WHERE (terms->>'pool_id')::uuid = $1 AND starts_at < $3 AND ends_at > $2 \
               AND coalesce(ended_at, ends_at) > $2 \
             ORDER BY coalesce(partner_id, user_id), partner_id IS NOT NULL, payout_asset, id",
        )
        .bind::<SqlUuid, _>(e.pool_id)
        .bind::<Timestamptz, _>(day_start)
        .bind::<Timestamptz, _>(day_end)
        .load_stream::<Running>(conn)
        .await?;
        while let Some(c) = rows.try_next().await? {
            // Ended early (terminated) or suspended: those hours earn nothing.
            let seconds = allocation::contract_seconds(
                day_start,
                c.starts_at,
                c.ends_at,
                c.ended_at,
                c.suspended_at.filter(|_| c.suspended),
            );
            let fee = match fees.get(&c.fee_usd) {
                Some(f) => *f,
                None => {
                    let f = c.fee_usd.parse().unwrap_or(Decimal::ZERO);
                    fees.insert(c.fee_usd.clone(), f);
                    f
                }
            };
            if primary_coin.is_none() {
                primary_coin = Some(c.primary_coin.clone());
            }
            shares.push(ContractShare {
                contract_id: c.id,
                hashrate: c.hashrate,
                active_seconds: seconds,
                fee_usd_per_unit_day: fee,
            });
            payees.push(Payee {
                owner: c.owner,
                partner: c.partner,
                payout: parse_asset(&c.payout_asset)?,
                spread_bps: c.spread_bps,
            });
        }
    }
    let charge_fee = primary_coin.is_none_or(|c| c == e.coin);
    let inputs = Inputs {
        earnings_units: units(e.amount, decimals)?,
        decimals,
        delivered_hashrate: e.delivered_hashrate,
        price_usd,
        charge_fee,
    };
    let alloc = allocation::allocate(&inputs, &shares)
        .map_err(|err| SettlementError::Allocation(err.to_string()))?;

    // Rates per payout asset and spread, each fixing fetched once.
    let mut fixings: BTreeMap<String, (Decimal, String)> = BTreeMap::new();
    let mut rates: HashMap<(Asset, i32), (Decimal, String)> = HashMap::new();
    for p in &payees {
        if rates.contains_key(&(p.payout, p.spread_bps)) {
            continue;
        }
        let rate = if Some(p.payout) == coin_asset {
            (
                Decimal::ONE,
                format!("fixing {} {price_source} (no conversion)", e.coin),
            )
        } else {
            if !fixings.contains_key(p.payout.code()) {
                let f = fixing(conn, p.payout.code(), e.day).await?;
                fixings.insert(p.payout.code().to_owned(), f);
            }
            let (payout_usd, payout_source) =
                fixings.get(p.payout.code()).cloned().unwrap_or_default();
            let spread = Decimal::ONE - Decimal::from(p.spread_bps) / Decimal::from(10_000);
            (
                (price_usd / payout_usd * spread).round_dp(18),
                format!(
                    "fixing {} {price_source} / {} {payout_source}",
                    e.coin,
                    p.payout.code()
                ),
            )
        };
        rates.insert((p.payout, p.spread_bps), rate);
    }
    Ok(Computed {
        e: e.clone(),
        decimals,
        coin_asset,
        price_usd,
        price_source,
        charge_fee,
        shares,
        payees,
        alloc,
        rates,
        fixings,
    })
}

/// Allocates an import without writing anything (the dry run).
pub async fn plan(conn: &mut AsyncPgConnection, e: &EarningInput) -> Result<Plan, SettlementError> {
    compute(conn, e).await?.plan(true)
}

/// The dry run of an import that is not stored yet.
pub async fn dry_run(
    conn: &mut AsyncPgConnection,
    e: &EarningInput,
) -> Result<Plan, SettlementError> {
    plan(conn, e).await
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = settlements, check_for_backend(diesel::pg::Pg))]
pub struct Settlement {
    pub id: Uuid,
    pub earning_id: Uuid,
    pub pool_id: Uuid,
    pub day: NaiveDate,
    pub coin: String,
    pub state: String,
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    #[schema(value_type = String)]
    pub earnings: Decimal,
    #[schema(value_type = String)]
    pub gross_total: Decimal,
    #[schema(value_type = String)]
    pub fees_total: Decimal,
    #[schema(value_type = String)]
    pub net_total: Decimal,
    #[schema(value_type = String)]
    pub house: Decimal,
    #[schema(value_type = String)]
    pub remainder: Decimal,
    pub contracts: i32,
    #[schema(value_type = Option<String>)]
    pub delivered_ratio: Option<Decimal>,
    pub created_at: DateTime<Utc>,
    /// The settlement of the same pool-day-coin this one corrects.
    pub corrects_id: Option<Uuid>,
}

async fn load_earning(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<(EarningInput, bool), SettlementError> {
    let row: (
        Uuid,
        Uuid,
        NaiveDate,
        String,
        Decimal,
        Decimal,
        Decimal,
        Vec<String>,
    ) = pool_earnings::table
        .find(id)
        .select((
            pool_earnings::id,
            pool_earnings::pool_id,
            pool_earnings::day,
            pool_earnings::coin,
            pool_earnings::amount,
            pool_earnings::delivered_hashrate,
            pool_earnings::difficulty,
            pool_earnings::pool_tx_ids,
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or(SettlementError::UnknownEarning)?;
    let corrected: i64 = pool_earnings::table
        .filter(pool_earnings::corrects_id.eq(id))
        .count()
        .get_result(conn)
        .await?;
    Ok((
        EarningInput {
            id: Some(row.0),
            pool_id: row.1,
            day: row.2,
            coin: row.3,
            amount: row.4,
            delivered_hashrate: row.5,
            difficulty: row.6,
            pool_tx_ids: row.7,
        },
        corrected > 0,
    ))
}

pub async fn settlement_for(
    conn: &mut AsyncPgConnection,
    earning: Uuid,
) -> QueryResult<Option<Settlement>> {
    settlements::table
        .filter(settlements::earning_id.eq(earning))
        .select(Settlement::as_select())
        .first(conn)
        .await
        .optional()
}

/// The net amount `refs` moved out of `from` (out minus in).
async fn moved_out_of(
    conn: &mut AsyncPgConnection,
    refs: &[String],
    from: i64,
) -> Result<Decimal, SettlementError> {
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Numeric)]
        s: Decimal,
    }
    if refs.is_empty() {
        return Ok(Decimal::ZERO);
    }
    let row: Sum = diesel::sql_query(
        "SELECT coalesce(sum(CASE WHEN debit_account_id = $2 THEN amount ELSE -amount END), 0) AS s \
         FROM transfers WHERE reference = ANY($1)",
    )
    .bind::<Array<Text>, _>(refs)
    .bind::<BigInt, _>(from)
    .get_result(conn)
    .await?;
    Ok(row.s)
}

/// A transfer of `delta` from `from` to `to`, or of `-delta` back when negative.
fn signed(
    out: &mut Vec<Posting>,
    reference: String,
    kind: TransferKind,
    (from, to): (i64, i64),
    delta: Decimal,
    asset: Asset,
) -> Result<(), SettlementError> {
    let (debit, credit) = if delta < Decimal::ZERO {
        (to, from)
    } else {
        (from, to)
    };
    if let Some(amount) = positive(delta.abs(), asset)? {
        out.push(NewTransfer::new(reference, kind, debit, credit, amount).into());
    }
    Ok(())
}

/// The accounts a settlement moves money between.
struct Accounts {
    /// The coin's custody and the pool's income account (coins the ledger holds).
    income: Option<(Asset, i64, i64)>,
    treasury: HashMap<Asset, i64>,
    /// Per contract (in plan order), the account it is paid to.
    payee: Vec<i64>,
}

async fn open_all(
    conn: &mut AsyncPgConnection,
    computed: &Computed,
) -> Result<Accounts, SettlementError> {
    let income = match computed.coin_asset {
        Some(asset) => {
            let custody = ledger::open_account(
                conn,
                &Owner::Network(format!("pool-payouts:{}", asset.code())),
                asset,
                AccountKind::Custody,
            )
            .await?
            .id;
            let income = ledger::open_account(
                conn,
                &Owner::Pool(computed.e.pool_id.to_string()),
                asset,
                AccountKind::MiningIncome,
            )
            .await?
            .id;
            Some((asset, custody, income))
        }
        None => None,
    };
    // Conversion treasuries: one per payout asset other than the coin, and
    // the coin's own when anything is converted.
    let mut treasury = HashMap::new();
    let mut assets: Vec<Asset> = computed
        .rates
        .keys()
        .map(|(a, _)| *a)
        .filter(|a| Some(*a) != computed.coin_asset)
        .collect();
    if let (Some(coin), false) = (computed.coin_asset, assets.is_empty()) {
        assets.push(coin);
    }
    assets.sort_unstable();
    assets.dedup();
    for asset in assets {
        let t = ledger::open_account(
            conn,
            &Owner::Platform,
            asset,
            AccountKind::ConversionTreasury,
        )
        .await?
        .id;
        treasury.insert(asset, t);
    }
    // Customers' and partners' accounts, in bulk: one list per asset and
    // kind, opened a slice at a time so that memory stays flat.
    let mut groups: BTreeMap<(Asset, bool), Vec<Uuid>> = BTreeMap::new();
    let mut index: Vec<((Asset, bool), usize)> = Vec::with_capacity(computed.payees.len());
    let mut last: Option<(Uuid, bool, Asset)> = None;
    for p in &computed.payees {
        let list = groups.entry((p.payout, p.partner)).or_default();
        // Payees come ordered by account: a repeat is the previous entry.
        if last != Some((p.owner, p.partner, p.payout)) {
            list.push(p.owner);
            last = Some((p.owner, p.partner, p.payout));
        }
        index.push(((p.payout, p.partner), list.len().saturating_sub(1)));
    }
    let mut ids: BTreeMap<(Asset, bool), Vec<i64>> = BTreeMap::new();
    for ((asset, partner), owners) in &groups {
        let kind = if *partner {
            AccountKind::Partner
        } else {
            AccountKind::Customer
        };
        let mut opened = Vec::with_capacity(owners.len());
        for slice in owners.chunks(OPEN_SLICE) {
            let keys: Vec<String> = slice
                .iter()
                .map(|o| {
                    if *partner {
                        Owner::Partner(*o).key()
                    } else {
                        Owner::User(*o).key()
                    }
                })
                .collect();
            opened.extend(ledger::open_accounts(conn, &keys, *asset, kind).await?);
        }
        ids.insert((*asset, *partner), opened);
    }
    let payee = index
        .into_iter()
        .map(|(group, i)| {
            ids.get(&group)
                .and_then(|v| v.get(i))
                .copied()
                .ok_or_else(|| SettlementError::Allocation("payee account missing".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Accounts {
        income,
        treasury,
        payee,
    })
}

/// The references `f` gives each earlier settlement of a pool-day-coin.
fn refs_of(earlier: &[Settlement], f: impl Fn(&Settlement) -> String) -> Vec<String> {
    earlier.iter().map(f).collect()
}

/// Posts one chunk of whole accounts: their payouts (the difference against
/// earlier settlements, for a correction) and their contracts' lines.
async fn post_chunk(
    conn: &mut AsyncPgConnection,
    computed: &Computed,
    accounts: &Accounts,
    settlement_id: Uuid,
    earlier: &[Settlement],
    range: std::ops::Range<usize>,
    not_reclaimed: &mut BTreeMap<Asset, Decimal>,
) -> Result<(), SettlementError> {
    let n = range.len();
    let mut contract_ids = Vec::with_capacity(n);
    let mut hashrates = Vec::with_capacity(n);
    let mut secs = Vec::with_capacity(n);
    let mut gross = Vec::with_capacity(n);
    let mut fees = Vec::with_capacity(n);
    let mut nets = Vec::with_capacity(n);
    let mut assets = Vec::with_capacity(n);
    let mut payouts = Vec::with_capacity(n);
    let mut rates = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut usd = Vec::with_capacity(n);
    let mut account_ids = Vec::with_capacity(n);
    // Per account (consecutive), what it is owed.
    let mut owed: Vec<(i64, Asset, Decimal)> = Vec::new();
    for i in range {
        let (p, account) = match (computed.payees.get(i), accounts.payee.get(i)) {
            (Some(p), Some(a)) => (p, *a),
            _ => return Err(SettlementError::Allocation("line out of range".into())),
        };
        let line = computed.line(i)?;
        match owed.last_mut() {
            Some((a, _, sum)) if *a == account => *sum += line.payout_amount,
            _ => owed.push((account, p.payout, line.payout_amount)),
        }
        contract_ids.push(line.contract_id);
        hashrates.push(line.hashrate);
        secs.push(i32::try_from(line.active_seconds).unwrap_or(86_400));
        gross.push(line.gross);
        fees.push(line.fee);
        nets.push(line.net);
        assets.push(line.payout_asset);
        payouts.push(line.payout_amount);
        rates.push(line.rate);
        sources.push(line.rate_source);
        usd.push(line.usd_value);
        account_ids.push(account);
    }

    // For a correction: what earlier settlements paid these accounts.
    let mut paid: HashMap<i64, (Decimal, Uuid)> = HashMap::new();
    if !earlier.is_empty() {
        #[derive(QueryableByName)]
        struct Paid {
            #[diesel(sql_type = SqlUuid)]
            id: Uuid,
            #[diesel(sql_type = BigInt)]
            credit_account_id: i64,
            #[diesel(sql_type = Numeric)]
            amount: Decimal,
        }
        let refs: Vec<String> = earlier
            .iter()
            .flat_map(|s| {
                owed.iter()
                    .map(move |(a, _, _)| format!("payout:{}:{a}", s.id))
            })
            .collect();
        let rows: Vec<Paid> = diesel::sql_query(
            "SELECT id, credit_account_id, amount FROM transfers WHERE reference = ANY($1) ORDER BY id",
        )
        .bind::<Array<Text>, _>(&refs)
        .load(conn)
        .await?;
        for r in rows {
            let e = paid
                .entry(r.credit_account_id)
                .or_insert((Decimal::ZERO, r.id));
            e.0 += r.amount;
        }
    }

    let mut batches: BTreeMap<Asset, BulkTransfers> = BTreeMap::new();
    for (account, asset, amount) in owed {
        let (before, original) = paid
            .get(&account)
            .map_or((Decimal::ZERO, None), |(p, id)| (*p, Some(*id)));
        let delta = amount - before;
        if delta < Decimal::ZERO {
            *not_reclaimed.entry(asset).or_default() -= delta;
            continue;
        }
        if delta.is_zero() {
            continue;
        }
        let debit = match accounts.income {
            Some((coin, _, income)) if coin == asset => income,
            _ => *accounts
                .treasury
                .get(&asset)
                .ok_or_else(|| SettlementError::Allocation(format!("no {asset} treasury")))?,
        };
        batches
            .entry(asset)
            .or_insert_with(|| {
                BulkTransfers::new(
                    TransferKind::Payout,
                    asset,
                    serde_json::json!({ "settlement": settlement_id }),
                )
            })
            .push_correcting(
                format!("payout:{settlement_id}:{account}"),
                debit,
                account,
                delta.normalize(),
                original,
            );
    }

    let day = computed.e.day;
    let coin = computed.e.coin.as_str();
    conn.transaction(async |c| {
        for batch in batches.values() {
            ledger::post_bulk(c, batch).await?;
        }
        diesel::sql_query(
            "INSERT INTO settlement_lines (settlement_id, contract_id, day, coin, hashrate, active_seconds, \
                gross, fee, net, payout_asset, payout_amount, rate, rate_source, usd_value, account_id) \
             SELECT $1, u.contract_id, $2, $3, u.hashrate, u.secs, u.gross, u.fee, u.net, u.asset, \
                    u.payout, u.rate, u.source, u.usd, u.account \
             FROM unnest($4::uuid[], $5::numeric[], $6::int4[], $7::numeric[], $8::numeric[], $9::numeric[], \
                         $10::text[], $11::numeric[], $12::numeric[], $13::text[], $14::numeric[], $15::int8[]) \
                  AS u(contract_id, hashrate, secs, gross, fee, net, asset, payout, rate, source, usd, account) \
             ON CONFLICT (contract_id, settlement_id) DO NOTHING",
        )
        .bind::<SqlUuid, _>(settlement_id)
        .bind::<Date, _>(day)
        .bind::<Text, _>(coin)
        .bind::<Array<SqlUuid>, _>(&contract_ids)
        .bind::<Array<Numeric>, _>(&hashrates)
        .bind::<Array<Int4>, _>(&secs)
        .bind::<Array<Numeric>, _>(&gross)
        .bind::<Array<Numeric>, _>(&fees)
        .bind::<Array<Numeric>, _>(&nets)
        .bind::<Array<Text>, _>(&assets)
        .bind::<Array<Numeric>, _>(&payouts)
        .bind::<Array<Numeric>, _>(&rates)
        .bind::<Array<Text>, _>(&sources)
        .bind::<Array<Numeric>, _>(&usd)
        .bind::<Array<BigInt>, _>(&account_ids)
        .execute(c)
        .await?;
        Ok::<_, SettlementError>(())
    })
    .await
}

/// How [`settle_with`] posts: the chunk size, and (for crash tests) a stop
/// after some chunks, as if the process died there.
#[derive(Debug, Clone, Copy)]
pub struct SettleOptions {
    pub chunk: usize,
    pub stop_after_chunks: Option<usize>,
}

impl Default for SettleOptions {
    fn default() -> Self {
        SettleOptions {
            chunk: CHUNK,
            stop_after_chunks: None,
        }
    }
}

/// Settles one import, exactly once: running it again returns the existing settlement.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    earning_id: Uuid,
) -> Result<Settlement, SettlementError> {
    settle_with(conn, earning_id, SettleOptions::default()).await
}

/// [`settle`] with explicit options. A stop after some chunks returns
/// `Interrupted` with those chunks committed; settling again completes the day.
pub async fn settle_with(
    conn: &mut AsyncPgConnection,
    earning_id: Uuid,
    options: SettleOptions,
) -> Result<Settlement, SettlementError> {
    if let Some(done) = settlement_for(conn, earning_id).await? {
        return Ok(done);
    }
    let (earning, corrected) = load_earning(conn, earning_id).await?;
    if corrected {
        return Err(SettlementError::Superseded);
    }
    // Earlier settlements of this pool-day-coin: this one corrects the last.
    let earlier_rows: Vec<Settlement> = settlements::table
        .filter(settlements::pool_id.eq(earning.pool_id))
        .filter(settlements::day.eq(earning.day))
        .filter(settlements::coin.eq(&earning.coin))
        .order(settlements::created_at.asc())
        .select(Settlement::as_select())
        .load(conn)
        .await?;
    if earlier_rows
        .iter()
        .any(|s| s.inputs.get("posting").and_then(serde_json::Value::as_str) != Some("per_account"))
    {
        return Err(SettlementError::CorrectionOfSettledDay);
    }
    let earlier = earlier_rows.as_slice();
    let corrects = earlier_rows.last().map(|s| s.id);

    let started = std::time::Instant::now();
    let computed = compute(conn, &earning).await?;
    let mut plan = computed.plan(false)?;
    tracing::info!(
        contracts = plan.contracts,
        ms = started.elapsed().as_millis(),
        "settlement planned"
    );
    let settlement_id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("settlement:{earning_id}").as_bytes(),
    );
    let accounts = open_all(conn, &computed).await?;
    tracing::info!(
        ms = started.elapsed().as_millis(),
        "settlement accounts open"
    );

    // The earnings into the pool's income account, and the coin of converted
    // payouts into the treasury (each the difference against earlier posts).
    let mut first: Vec<Posting> = Vec::new();
    if let Some((asset, custody, income)) = accounts.income {
        let before = moved_out_of(
            conn,
            &refs_of(earlier, |s| format!("earning:{}", s.earning_id)),
            custody,
        )
        .await?;
        signed(
            &mut first,
            format!("earning:{earning_id}"),
            TransferKind::MiningIncome,
            (custody, income),
            earning.amount - before,
            asset,
        )?;
        let mut converted: BTreeMap<Asset, u128> = BTreeMap::new();
        for (p, l) in computed.payees.iter().zip(&computed.alloc.lines) {
            if p.payout != asset {
                let e = converted.entry(p.payout).or_default();
                *e = e.saturating_add(l.net);
            }
        }
        for (x, net_units) in converted {
            let t = *accounts
                .treasury
                .get(&asset)
                .ok_or_else(|| SettlementError::Allocation(format!("no {asset} treasury")))?;
            let before = moved_out_of(
                conn,
                &refs_of(earlier, |s| format!("conversion:{}:{x}", s.id)),
                income,
            )
            .await?;
            signed(
                &mut first,
                format!("conversion:{settlement_id}:{x}"),
                TransferKind::Conversion,
                (income, t),
                dec(net_units, computed.decimals)? - before,
                asset,
            )?;
        }
    }
    if !first.is_empty() {
        ledger::post_batch(conn, &first).await?;
    }

    // Payouts and lines, in chunks of whole accounts.
    let n = computed.shares.len();
    let mut not_reclaimed: BTreeMap<Asset, Decimal> = BTreeMap::new();
    let mut start = 0;
    let mut chunks = 0;
    while start < n {
        if options.stop_after_chunks == Some(chunks) {
            return Err(SettlementError::Interrupted);
        }
        chunks += 1;
        let mut end = (start + options.chunk.max(1)).min(n);
        while end < n && accounts.payee.get(end) == accounts.payee.get(end - 1) {
            end += 1;
        }
        post_chunk(
            conn,
            &computed,
            &accounts,
            settlement_id,
            earlier,
            start..end,
            &mut not_reclaimed,
        )
        .await?;
        start = end;
    }
    tracing::info!(
        ms = started.elapsed().as_millis(),
        "settlement payouts posted"
    );

    // Fees, house share and rounding, then the record: one transaction.
    let mut tail: Vec<Posting> = Vec::new();
    if let Some((asset, _, income)) = accounts.income {
        // What customers were overpaid and keep is the house's loss.
        let house = plan.house - not_reclaimed.get(&asset).copied().unwrap_or_default();
        for (kind, tkind, target, prefix) in [
            (
                AccountKind::FeeRevenue,
                TransferKind::Fee,
                plan.fees_total,
                "fees",
            ),
            (AccountKind::House, TransferKind::HouseShare, house, "house"),
            (
                AccountKind::Rounding,
                TransferKind::Rounding,
                plan.remainder,
                "rounding",
            ),
        ] {
            let to = ledger::open_account(conn, &Owner::Platform, asset, kind)
                .await?
                .id;
            let before = moved_out_of(
                conn,
                &refs_of(earlier, |s| format!("{prefix}:{}", s.id)),
                income,
            )
            .await?;
            signed(
                &mut tail,
                format!("{prefix}:{settlement_id}"),
                tkind,
                (income, to),
                target - before,
                asset,
            )?;
        }
    }
    if let (Some(original), Some(inputs)) = (corrects, plan.inputs.as_object_mut()) {
        inputs.insert(
            "correction".into(),
            serde_json::json!({
                "corrects": original,
                "not_reclaimed": not_reclaimed.iter().map(|(a, v)| (a.code().to_owned(), v.normalize().to_string())).collect::<BTreeMap<_, _>>(),
            }),
        );
    }
    let charge_fee = computed.charge_fee;
    let inserted = conn
        .transaction(async |c| {
            if !tail.is_empty() {
                ledger::post_batch(c, &tail).await?;
            }
            let row: Settlement = diesel::insert_into(settlements::table)
                .values((
                    settlements::id.eq(settlement_id),
                    settlements::earning_id.eq(earning_id),
                    settlements::pool_id.eq(earning.pool_id),
                    settlements::day.eq(earning.day),
                    settlements::coin.eq(&earning.coin),
                    settlements::state.eq("posted"),
                    settlements::inputs.eq(&plan.inputs),
                    settlements::earnings.eq(plan.earnings),
                    settlements::gross_total.eq(plan.gross_total),
                    settlements::fees_total.eq(plan.fees_total),
                    settlements::net_total.eq(plan.net_total),
                    settlements::house.eq(plan.house),
                    settlements::remainder.eq(plan.remainder),
                    settlements::contracts.eq(i32::try_from(plan.contracts).unwrap_or(i32::MAX)),
                    settlements::delivered_ratio.eq(plan.delivered_ratio),
                    settlements::corrects_id.eq(corrects),
                ))
                .returning(Settlement::as_returning())
                .get_result(c)
                .await?;
            // The stop rule counts days with zero net on the coin the fee is
            // charged on, once per day: a correction does not count again.
            if charge_fee && corrects.is_none() {
                apply_stop_rule(c, &computed, &plan).await?;
            }
            Ok::<_, SettlementError>(row)
        })
        .await;
    let settlement = match inserted {
        Ok(row) => row,
        // Settled concurrently by another worker: that one counts.
        Err(SettlementError::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ))) => settlement_for(conn, earning_id)
            .await?
            .ok_or(SettlementError::UnknownEarning)?,
        Err(e) => return Err(e),
    };
    tracing::info!(ms = started.elapsed().as_millis(), "settlement recorded");
    Ok(settlement)
}

/// Updates the zero-net counters and applies each product's stop rule, set
/// based: a profitable day resets the count; a day with zero net counts, and
/// the contracts it brings to their product's limit are suspended one by
/// one (with their notice); a suspended contract resumes when the day would
/// have paid it a positive net (the pool's gross per unit above its fee).
async fn apply_stop_rule(
    c: &mut AsyncPgConnection,
    computed: &Computed,
    plan: &Plan,
) -> Result<(), SettlementError> {
    #[derive(QueryableByName)]
    struct Counting {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let (_, day_end) = day_bounds(plan.day);
    // Contracts counting zero-net days are few (a partial index finds them):
    // those that earned today start again from zero.
    let counting: Vec<Counting> = diesel::sql_query(
        "SELECT id FROM contracts WHERE zero_net_days <> 0 AND (terms->>'pool_id')::uuid = $1",
    )
    .bind::<SqlUuid, _>(plan.pool_id)
    .load(c)
    .await?;
    let counting: std::collections::HashSet<Uuid> = counting.into_iter().map(|r| r.id).collect();
    let mut earned: Vec<Uuid> = Vec::new();
    let mut zero: Vec<Uuid> = Vec::new();
    for (share, line) in computed.shares.iter().zip(&computed.alloc.lines) {
        if share.active_seconds == 0 {
            continue;
        }
        if line.net == 0 {
            zero.push(share.contract_id);
        } else if counting.contains(&share.contract_id) {
            earned.push(share.contract_id);
        }
    }
    if !earned.is_empty() {
        diesel::sql_query("UPDATE contracts SET zero_net_days = 0 WHERE id = ANY($1)")
            .bind::<Array<SqlUuid>, _>(&earned)
            .execute(c)
            .await?;
    }
    if !zero.is_empty() {
        const REACHES_LIMIT: &str = "coalesce(terms->>'stop_rule', 'none') <> 'none' \
             AND zero_net_days + 1 >= greatest((terms->>'stop_after_days')::int, 1)";
        // Those that reach their product's limit are suspended one by one (with
        // their notice); the others only count.
        let reaching: Vec<Counting> = diesel::sql_query(format!(
            "SELECT id FROM contracts WHERE id = ANY($1) AND state = 'active' AND {REACHES_LIMIT} ORDER BY id"
        ))
        .bind::<Array<SqlUuid>, _>(&zero)
        .load(c)
        .await?;
        diesel::sql_query(format!(
            "UPDATE contracts SET zero_net_days = zero_net_days + 1 \
             WHERE id = ANY($1) AND state = 'active' AND NOT ({REACHES_LIMIT})"
        ))
        .bind::<Array<SqlUuid>, _>(&zero)
        .execute(c)
        .await?;
        for r in reaching {
            crate::contracts::lifecycle::record_settled_day(c, r.id, true, day_end)
                .await
                .map_err(|e| SettlementError::Allocation(format!("stop rule: {e}")))?;
        }
    }
    // Suspended contracts of this pool: would today have paid them?
    let denominator = plan.delivered_hashrate.max(plan.sold_hashrate);
    let gross_per_unit = if denominator.is_zero() {
        Decimal::ZERO
    } else {
        plan.earnings / denominator
    };
    #[derive(QueryableByName)]
    struct Suspended {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        fee_usd: String,
    }
    let suspended: Vec<Suspended> = diesel::sql_query(
        "SELECT id, terms->>'fee_usd_per_unit_day' AS fee_usd FROM contracts \
         WHERE state = 'suspended' AND (terms->>'pool_id')::uuid = $1 AND ends_at > $2",
    )
    .bind::<SqlUuid, _>(plan.pool_id)
    .bind::<Timestamptz, _>(day_end)
    .load(c)
    .await?;
    for s in suspended {
        let fee_per_unit = s.fee_usd.parse::<Decimal>().unwrap_or(Decimal::ZERO) / plan.price_usd;
        let profitable = gross_per_unit > fee_per_unit;
        crate::contracts::lifecycle::record_settled_day(c, s.id, !profitable, day_end)
            .await
            .map_err(|e| SettlementError::Allocation(format!("stop rule: {e}")))?;
    }
    Ok(())
}

fn positive(value: Decimal, asset: Asset) -> Result<Option<Amount>, SettlementError> {
    if value <= Decimal::ZERO {
        return Ok(None);
    }
    Amount::from_decimal(value.normalize(), asset)
        .map(Some)
        .map_err(|e| SettlementError::Allocation(format!("{value} {asset}: {e}")))
}

/// Settlements, newest day first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    day: Option<NaiveDate>,
    limit: i64,
) -> QueryResult<Vec<Settlement>> {
    let mut q = settlements::table
        .select(Settlement::as_select())
        .order((settlements::day.desc(), settlements::created_at.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(d) = day {
        q = q.filter(settlements::day.eq(d));
    }
    q.load(conn).await
}

/// The effective (latest, uncorrected) imports of a day that are not settled yet.
pub async fn unsettled_imports(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT e.id FROM pool_earnings e \
         WHERE e.day = $1 \
           AND NOT EXISTS (SELECT 1 FROM pool_earnings c WHERE c.corrects_id = e.id) \
           AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.earning_id = e.id) \
         ORDER BY e.created_at",
    )
    .bind::<Date, _>(day)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
