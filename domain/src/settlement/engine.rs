//! Settling one pool-day-coin: pick the contracts that ran that day,
//! allocate the earnings (see [`super::allocation`]), convert to each
//! contract's payout asset at the day's fixing with the published spread,
//! and post it all through the ledger under deterministic references:
//! `payout:<contract>:<day>:<coin>` per contract, `earning:<import>`,
//! `fees:`/`house:`/`rounding:<settlement>`. Posting runs in chunks that
//! are idempotent by reference, so a crash part-way is resumed by running
//! the day again; the settlement row, its lines and the stop-rule counters
//! are written last, in one transaction, so a day is settled once.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Date, Int4, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::allocation::{self, ContractShare, Inputs};
use crate::catalog::prices;
use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, Posting, TransferKind};
use crate::money::{Amount, Asset, decimal_to_units, units_to_decimal};
use crate::schema::{pool_earnings, settlements};

/// Contracts per ledger batch: big enough to be fast, small enough for memory.
const CHUNK: usize = 20_000;

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
    #[error("the corrected import was already settled; correcting a paid day is not supported yet")]
    CorrectionOfSettledDay,
    #[error("allocation: {0}")]
    Allocation(String),
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
    user_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    partner_id: Option<Uuid>,
    #[diesel(sql_type = Numeric)]
    hashrate: Decimal,
    #[diesel(sql_type = Text)]
    payout_asset: String,
    #[diesel(sql_type = Text)]
    state: String,
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

/// One contract's share of a settlement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlanLine {
    pub contract_id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    #[serde(skip)]
    pub partner_id: Option<Uuid>,
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

fn day_bounds(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = day.and_time(NaiveTime::MIN).and_utc();
    (start, start + Duration::days(1))
}

async fn running_contracts(
    conn: &mut AsyncPgConnection,
    pool: Uuid,
    day: NaiveDate,
) -> QueryResult<Vec<Running>> {
    let (start, end) = day_bounds(day);
    diesel::sql_query(
        "SELECT id, user_id, partner_id, hashrate, payout_asset, state, starts_at, ends_at, ended_at, suspended_at, \
                terms->>'fee_usd_per_unit_day' AS fee_usd, terms->'mined_coins'->>0 AS primary_coin, \
                (terms->>'spread_bps')::int AS spread_bps \
         FROM contracts \
         WHERE (terms->>'pool_id')::uuid = $1 AND starts_at < $3 AND ends_at > $2 \
           AND coalesce(ended_at, ends_at) > $2 \
         ORDER BY id",
    )
    .bind::<SqlUuid, _>(pool)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .load(conn)
    .await
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

/// Allocates an import without writing anything (the dry run, and the first step of settling).
pub async fn plan(conn: &mut AsyncPgConnection, e: &EarningInput) -> Result<Plan, SettlementError> {
    let decimals =
        coin_decimals(&e.coin).ok_or_else(|| SettlementError::UnknownCoin(e.coin.clone()))?;
    let (price_usd, price_source) = fixing(conn, &e.coin, e.day).await?;
    let running = running_contracts(conn, e.pool_id, e.day).await?;
    let (day_start, day_end) = day_bounds(e.day);
    let mut shares = Vec::with_capacity(running.len());
    for c in &running {
        // Ended early (terminated) or suspended: those hours earn nothing.
        let end = c.ended_at.map_or(c.ends_at, |t| t.min(c.ends_at));
        let suspended: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = if c.state == "suspended" {
            c.suspended_at.map(|s| (s, None)).into_iter().collect()
        } else {
            Vec::new()
        };
        let seconds =
            allocation::active_seconds(day_start, c.starts_at, end.min(day_end), &suspended);
        shares.push(ContractShare {
            contract_id: c.id,
            hashrate: c.hashrate,
            active_seconds: seconds,
            fee_usd_per_unit_day: c.fee_usd.parse().unwrap_or(Decimal::ZERO),
        });
    }
    let charge_fee = running
        .as_slice()
        .first()
        .is_none_or(|c| c.primary_coin == e.coin);
    let inputs = Inputs {
        earnings_units: units(e.amount, decimals)?,
        decimals,
        delivered_hashrate: e.delivered_hashrate,
        price_usd,
        charge_fee,
    };
    let alloc = allocation::allocate(&inputs, &shares)
        .map_err(|err| SettlementError::Allocation(err.to_string()))?;

    // Payout-asset fixings, fetched once each.
    let mut rates: HashMap<String, (Decimal, String)> = HashMap::new();
    let mut lines = Vec::with_capacity(alloc.lines.len());
    for (line, (c, share)) in alloc.lines.iter().zip(running.iter().zip(shares.iter())) {
        let net = dec(line.net, decimals)?;
        let (rate, rate_source, payout_amount) = if c.payout_asset == e.coin {
            (
                Decimal::ONE,
                format!("fixing {} {price_source} (no conversion)", e.coin),
                net,
            )
        } else {
            if !rates.contains_key(&c.payout_asset) {
                let f = fixing(conn, &c.payout_asset, e.day).await?;
                rates.insert(c.payout_asset.clone(), f);
            }
            let (payout_usd, payout_source) =
                rates.get(&c.payout_asset).cloned().unwrap_or_default();
            let spread = Decimal::ONE - Decimal::from(c.spread_bps) / Decimal::from(10_000);
            let rate = (price_usd / payout_usd * spread).round_dp(18);
            let payout_decimals = coin_decimals(&c.payout_asset)
                .ok_or_else(|| SettlementError::UnknownCoin(c.payout_asset.clone()))?;
            let amount = crate::money::floor_to_decimals(net * rate, payout_decimals);
            (
                rate,
                format!(
                    "fixing {} {} / {} {}",
                    e.coin, price_source, c.payout_asset, payout_source
                ),
                amount,
            )
        };
        lines.push(PlanLine {
            contract_id: c.id,
            user_id: c.user_id,
            partner_id: c.partner_id,
            hashrate: c.hashrate.normalize(),
            active_seconds: share.active_seconds,
            gross: dec(line.gross, decimals)?,
            fee: dec(line.fee, decimals)?,
            net,
            payout_asset: c.payout_asset.clone(),
            payout_amount: payout_amount.normalize(),
            rate: rate.normalize(),
            rate_source,
            usd_value: (net * price_usd).round_dp(12).normalize(),
        });
    }
    let sold_hashrate = shares
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
        delivered_ratio: alloc.delivered_ratio().map(|r| r.round_dp(12).normalize()),
        price_usd: price_usd.normalize(),
        price_source: price_source.clone(),
        gross_total: dec(alloc.gross_total, decimals)?,
        fees_total: dec(alloc.fees, decimals)?,
        net_total: dec(alloc.net_total, decimals)?,
        house: dec(alloc.house, decimals)?,
        remainder: dec(alloc.remainder, decimals)?,
        contracts: lines.len(),
        inputs: serde_json::json!({
            "earning_id": e.id,
            "pool_id": e.pool_id,
            "day": e.day,
            "coin": e.coin,
            "amount": e.amount.normalize().to_string(),
            "delivered_hashrate": e.delivered_hashrate.normalize().to_string(),
            "difficulty": e.difficulty.normalize().to_string(),
            "pool_tx_ids": e.pool_tx_ids,
            "price_usd": price_usd.normalize().to_string(),
            "price_source": price_source,
            "charge_fee": charge_fee,
            "payout_fixings": rates.iter().map(|(k, (v, s))| (k.clone(), serde_json::json!({"usd": v.normalize().to_string(), "source": s}))).collect::<BTreeMap<_, _>>(),
        }),
        lines,
    })
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

/// Settles one import, exactly once: running it again returns the existing settlement.
pub async fn settle(
    conn: &mut AsyncPgConnection,
    earning_id: Uuid,
) -> Result<Settlement, SettlementError> {
    if let Some(done) = settlement_for(conn, earning_id).await? {
        return Ok(done);
    }
    let (earning, corrected) = load_earning(conn, earning_id).await?;
    if corrected {
        return Err(SettlementError::Superseded);
    }
    // A correction of a day already paid would need correcting transfers
    // (the difference per contract); until that exists it is refused, never
    // posted twice. A correction of an unsettled import settles normally.
    let corrects: Option<Uuid> = pool_earnings::table
        .find(earning_id)
        .select(pool_earnings::corrects_id)
        .first(conn)
        .await?;
    if let Some(original) = corrects
        && settlement_for(conn, original).await?.is_some()
    {
        return Err(SettlementError::CorrectionOfSettledDay);
    }
    let started = std::time::Instant::now();
    let plan = plan(conn, &earning).await?;
    tracing::info!(
        contracts = plan.contracts,
        ms = started.elapsed().as_millis(),
        "settlement planned"
    );
    let settlement_id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("settlement:{earning_id}").as_bytes(),
    );
    let day = earning.day;
    let coin_asset: Option<Asset> = earning.coin.parse().ok();
    let pool_owner = Owner::Pool(earning.pool_id.to_string());

    // Accounts: customers' (or partners') in their payout assets, opened in bulk.
    let mut payer_accounts: HashMap<(String, String), i64> = HashMap::new();
    let mut keys: Vec<(Owner, Asset, AccountKind)> = Vec::new();
    for l in &plan.lines {
        let owner = match l.partner_id {
            Some(p) => (Owner::Partner(p), AccountKind::Partner),
            None => (Owner::User(l.user_id), AccountKind::Customer),
        };
        let asset: Asset = l
            .payout_asset
            .parse()
            .map_err(|_| SettlementError::UnknownCoin(l.payout_asset.clone()))?;
        if let std::collections::hash_map::Entry::Vacant(slot) =
            payer_accounts.entry((owner.0.key(), l.payout_asset.clone()))
        {
            slot.insert(0);
            keys.push((owner.0, asset, owner.1));
        }
    }
    for (owner, asset, kind) in keys {
        let acc = ledger::open_account(conn, &owner, asset, kind).await?;
        payer_accounts.insert((owner.key(), asset.code().to_owned()), acc.id);
    }
    let mut treasury: HashMap<String, i64> = HashMap::new();
    let platform =
        async |conn: &mut AsyncPgConnection, owner: &Owner, asset: Asset, kind: AccountKind| {
            ledger::open_account(conn, owner, asset, kind)
                .await
                .map(|a| a.id)
        };

    // The earnings arrive in the pool's income account (only for coins the ledger holds).
    let mut first: Vec<Posting> = Vec::new();
    let income = match coin_asset {
        Some(asset) => {
            let custody = platform(
                conn,
                &Owner::Network(format!("pool-payouts:{}", asset.code())),
                asset,
                AccountKind::Custody,
            )
            .await?;
            let income = platform(conn, &pool_owner, asset, AccountKind::MiningIncome).await?;
            if let Some(amount) = positive(plan.earnings, asset)? {
                first.push(
                    NewTransfer::new(
                        format!("earning:{earning_id}"),
                        TransferKind::MiningIncome,
                        custody,
                        income,
                        amount,
                    )
                    .into(),
                );
            }
            Some((asset, income))
        }
        None => None,
    };
    if !first.is_empty() {
        ledger::post_batch(conn, &first).await?;
    }

    for chunk in plan.lines.chunks(CHUNK) {
        let mut batch: Vec<Posting> = Vec::with_capacity(chunk.len() * 2);
        for l in chunk {
            let owner_key = match l.partner_id {
                Some(p) => Owner::Partner(p).key(),
                None => Owner::User(l.user_id).key(),
            };
            let to = payer_accounts
                .get(&(owner_key, l.payout_asset.clone()))
                .copied()
                .unwrap_or_default();
            let payout_asset: Asset = l
                .payout_asset
                .parse()
                .map_err(|_| SettlementError::UnknownCoin(l.payout_asset.clone()))?;
            let reference = format!("payout:{}:{day}:{}", l.contract_id, earning.coin);
            match income {
                Some((asset, income)) if asset == payout_asset => {
                    if let Some(a) = positive(l.net, asset)? {
                        batch.push(
                            NewTransfer::new(reference, TransferKind::Payout, income, to, a).into(),
                        );
                    }
                }
                _ => {
                    // Converted: the coin goes to the treasury, the treasury pays the payout asset.
                    if let (Some((asset, income)), Some(a)) = (
                        income,
                        income
                            .map(|(a, _)| a)
                            .and_then(|a| positive(l.net, a).ok().flatten()),
                    ) {
                        let t = match treasury.get(asset.code()) {
                            Some(t) => *t,
                            None => {
                                let t = platform(
                                    conn,
                                    &Owner::Platform,
                                    asset,
                                    AccountKind::ConversionTreasury,
                                )
                                .await?;
                                treasury.insert(asset.code().to_owned(), t);
                                t
                            }
                        };
                        batch.push(
                            NewTransfer::new(
                                format!("conversion:{}:{day}:{}", l.contract_id, earning.coin),
                                TransferKind::Conversion,
                                income,
                                t,
                                a,
                            )
                            .into(),
                        );
                    }
                    if let Some(a) = positive(l.payout_amount, payout_asset)? {
                        let t = match treasury.get(payout_asset.code()) {
                            Some(t) => *t,
                            None => {
                                let t = platform(
                                    conn,
                                    &Owner::Platform,
                                    payout_asset,
                                    AccountKind::ConversionTreasury,
                                )
                                .await?;
                                treasury.insert(payout_asset.code().to_owned(), t);
                                t
                            }
                        };
                        let transfer = NewTransfer::new(reference, TransferKind::Payout, t, to, a).with_metadata(serde_json::json!({
                            "coin": earning.coin, "net": l.net.to_string(), "rate": l.rate.to_string(), "rate_source": l.rate_source,
                        }));
                        batch.push(transfer.into());
                    }
                }
            }
        }
        if !batch.is_empty() {
            ledger::post_batch(conn, &batch).await?;
        }
    }

    tracing::info!(
        ms = started.elapsed().as_millis(),
        "settlement payouts posted"
    );
    // Fees, house share and rounding, then the record: one transaction.
    let mut tail: Vec<Posting> = Vec::new();
    if let Some((asset, income)) = income {
        for (kind, tkind, amount, prefix) in [
            (
                AccountKind::FeeRevenue,
                TransferKind::Fee,
                plan.fees_total,
                "fees",
            ),
            (
                AccountKind::House,
                TransferKind::HouseShare,
                plan.house,
                "house",
            ),
            (
                AccountKind::Rounding,
                TransferKind::Rounding,
                plan.remainder,
                "rounding",
            ),
        ] {
            if let Some(a) = positive(amount, asset)? {
                let to = platform(conn, &Owner::Platform, asset, kind).await?;
                tail.push(
                    NewTransfer::new(format!("{prefix}:{settlement_id}"), tkind, income, to, a)
                        .into(),
                );
            }
        }
    }
    let charge_fee = plan
        .inputs
        .get("charge_fee")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    let settlement = conn
        .transaction(async |c| {
            if !tail.is_empty() {
                ledger::post_batch(c, &tail).await?;
            }
            let row: Settlement = diesel::insert_into(settlements::table)
                .values((
                    settlements::id.eq(settlement_id),
                    settlements::earning_id.eq(earning_id),
                    settlements::pool_id.eq(earning.pool_id),
                    settlements::day.eq(day),
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
                ))
                .returning(Settlement::as_returning())
                .get_result(c)
                .await?;
            // One statement per chunk with array parameters: far fewer binds than VALUES rows.
            for chunk in plan.lines.chunks(CHUNK) {
                let col = |f: fn(&PlanLine) -> Decimal| chunk.iter().map(f).collect::<Vec<Decimal>>();
                let ids: Vec<Uuid> = chunk.iter().map(|l| l.contract_id).collect();
                let secs: Vec<i32> = chunk.iter().map(|l| i32::try_from(l.active_seconds).unwrap_or(86_400)).collect();
                let assets: Vec<&str> = chunk.iter().map(|l| l.payout_asset.as_str()).collect();
                let sources: Vec<&str> = chunk.iter().map(|l| l.rate_source.as_str()).collect();
                diesel::sql_query(
                    "INSERT INTO settlement_lines (settlement_id, contract_id, day, coin, hashrate, active_seconds, \
                        gross, fee, net, payout_asset, payout_amount, rate, rate_source, usd_value) \
                     SELECT $1, u.contract_id, $2, $3, u.hashrate, u.secs, u.gross, u.fee, u.net, u.asset, \
                            u.payout, u.rate, u.source, u.usd \
                     FROM unnest($4::uuid[], $5::numeric[], $6::int4[], $7::numeric[], $8::numeric[], $9::numeric[], \
                                 $10::text[], $11::numeric[], $12::numeric[], $13::text[], $14::numeric[]) \
                          AS u(contract_id, hashrate, secs, gross, fee, net, asset, payout, rate, source, usd)",
                )
                .bind::<SqlUuid, _>(settlement_id)
                .bind::<Date, _>(day)
                .bind::<Text, _>(&earning.coin)
                .bind::<diesel::sql_types::Array<SqlUuid>, _>(&ids)
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.hashrate))
                .bind::<diesel::sql_types::Array<Int4>, _>(&secs)
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.gross))
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.fee))
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.net))
                .bind::<diesel::sql_types::Array<Text>, _>(&assets)
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.payout_amount))
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.rate))
                .bind::<diesel::sql_types::Array<Text>, _>(&sources)
                .bind::<diesel::sql_types::Array<Numeric>, _>(col(|l| l.usd_value))
                .execute(c)
                .await?;
            }
            // The stop rule counts days with zero net on the coin the fee is charged on.
            if charge_fee {
                apply_stop_rule(c, &plan, settlement_id).await?;
            }
            Ok::<_, SettlementError>(row)
        })
        .await?;
    tracing::info!(ms = started.elapsed().as_millis(), "settlement recorded");
    Ok(settlement)
}

/// Updates the zero-net counters and applies each product's stop rule: a
/// profitable day resets the count (in bulk); a day with zero net counts
/// (and may suspend); a suspended contract resumes when the day would have
/// paid it a positive net (the pool's gross per unit above its fee).
async fn apply_stop_rule(
    c: &mut AsyncPgConnection,
    plan: &Plan,
    settlement_id: Uuid,
) -> Result<(), SettlementError> {
    let (_, day_end) = day_bounds(plan.day);
    diesel::sql_query(
        "UPDATE contracts c SET zero_net_days = 0 FROM settlement_lines l \
         WHERE l.settlement_id = $1 AND l.contract_id = c.id AND l.active_seconds > 0 AND l.net > 0 AND c.zero_net_days <> 0",
    )
    .bind::<SqlUuid, _>(settlement_id)
    .execute(c)
    .await?;
    for l in plan
        .lines
        .iter()
        .filter(|l| l.active_seconds > 0 && l.net.is_zero())
    {
        crate::contracts::lifecycle::record_settled_day(c, l.contract_id, true, day_end)
            .await
            .map_err(|e| SettlementError::Allocation(format!("stop rule: {e}")))?;
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
