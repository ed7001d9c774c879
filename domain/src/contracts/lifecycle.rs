//! The contract lifecycle: activation at `starts_at`, expiry at `ends_at`,
//! the product's stop rule (suspend after N days with zero net, resume on a
//! profitable day), facility outages (the lost hours are added at the end)
//! and early termination with a pro-rata refund.
//!
//! The rules are pure functions ([`stop_rule_action`], [`running_time`],
//! [`whole_hours_up`], [`pro_rata_refund`]) so they can be tested without a
//! database. The storage functions apply them to locked rows, one
//! transaction each (a savepoint inside a caller's transaction):
//!
//! - every state transition is an `UPDATE` of rows locked for it and still
//!   in the expected state, so it happens once however many workers run;
//! - inventory (`products.sold`) is released in the same transaction as the
//!   transition that ends a contract, so it is released exactly once;
//! - an event that must happen at most once carries a dedupe key (the
//!   `UNIQUE (contract_id, dedupe_key)` constraint stands behind it), and a
//!   change that goes with such an event is applied only when the event is
//!   new — an outage extends a contract once however often it is applied;
//! - a refund is a ledger transfer with the reference `refund:<contract id>`,
//!   which the ledger accepts once.
//!
//! Lock order, to stay free of deadlocks with the other writers: contract
//! rows (by id), then product rows (by id), then ledger accounts (by id,
//! inside `post_batch`).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Numeric, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use ethnum::U256;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::{Contract, ContractState};
use crate::catalog::model::{StopRule, Terms};
use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, TransferKind};
use crate::money::{Amount, Asset};
use crate::outbox::email::{self as mail, EmailError, EmailTemplate};
use crate::schema::{contract_events, contracts, facilities, facility_outages, products, users};

/// Contracts moved per transaction by [`run_due`]: bounds how long rows stay
/// locked and how large one transaction gets after a long worker outage.
const BATCH: i64 = 500;

/// Longest reason accepted for an outage or a termination, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// How far in the future an outage may end when it is recorded: the
/// operator's clock may run a little ahead of ours.
const OUTAGE_END_SKEW: Duration = Duration::minutes(5);

/// The states in which a contract still holds inventory.
const LIVE: [&str; 3] = ["pending", "active", "suspended"];

/// Event kinds written here (see `store::ContractEvent::kind`).
pub mod event {
    pub const ACTIVATED: &str = "activated";
    pub const EXPIRED: &str = "expired";
    pub const SUSPENDED: &str = "suspended";
    pub const RESUMED: &str = "resumed";
    pub const OUTAGE_EXTENSION: &str = "outage_extension";
    pub const TERMINATED: &str = "terminated";
}

/// `detail.reason` of a suspension by the stop rule; only those are lifted
/// by a profitable day.
const STOP_RULE_REASON: &str = "stop_rule";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("contract {0} does not exist")]
    ContractNotFound(Uuid),
    #[error("facility {0} does not exist")]
    FacilityNotFound(Uuid),
    #[error("contract {id} is {}, not live", .state.as_str())]
    NotLive { id: Uuid, state: ContractState },
    #[error("the reason must be 1 to {MAX_REASON_CHARS} characters")]
    InvalidReason,
    #[error("an outage must end after it starts")]
    InvalidOutageWindow,
    #[error("an outage can be recorded only once it has ended")]
    OutageNotOver,
    #[error("the outage overlaps outage {0} of the same facility")]
    OutageOverlaps(Uuid),
    #[error("stored contract data is corrupt: {0}")]
    Corrupt(String),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

impl LifecycleError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LifecycleError::ContractNotFound(_) | LifecycleError::FacilityNotFound(_) => {
                "not_found"
            }
            LifecycleError::NotLive { .. } => "contract_not_live",
            LifecycleError::InvalidReason => "invalid_reason",
            LifecycleError::InvalidOutageWindow => "invalid_outage_window",
            LifecycleError::OutageNotOver => "outage_not_over",
            LifecycleError::OutageOverlaps(_) => "outage_overlaps",
            LifecycleError::Corrupt(_) => "contract_corrupt",
            LifecycleError::Ledger(e) => e.code(),
            LifecycleError::Database(_) => "database_error",
        }
    }
}

// ---------------------------------------------------------------------------
// Pure rules
// ---------------------------------------------------------------------------

/// What the stop rule does to a contract after a settled day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Suspend,
    Resume,
}

/// The stop rule after a settled day, given the count of consecutive
/// zero-net days *including* that day (0 when the day was profitable).
///
/// An active contract is suspended once the count reaches `stop_after_days`
/// (the database keeps that at least 1; a smaller value is read as 1 so a
/// profitable day can never suspend). A suspended contract resumes when a
/// profitable day resets the count. With [`StopRule::None`] the rule never
/// acts: a suspended contract of such a product was suspended by someone
/// else, and a good day must not lift that.
pub fn stop_rule_action(
    rule: StopRule,
    stop_after_days: i32,
    zero_net_days: i32,
    state: ContractState,
) -> Option<Action> {
    if rule == StopRule::None {
        return None;
    }
    match state {
        ContractState::Active if zero_net_days >= stop_after_days.max(1) => Some(Action::Suspend),
        ContractState::Suspended if zero_net_days == 0 => Some(Action::Resume),
        _ => None,
    }
}

/// Whole hours in `d`, rounded up (any started hour counts); 0 when `d` is
/// zero or negative. Rounding up favours the customer, who lost the time.
pub fn whole_hours_up(d: Duration) -> i64 {
    const MICROS_PER_HOUR: i64 = 3_600_000_000;
    if d <= Duration::zero() {
        return 0;
    }
    // Over 292 000 years does not fit in microseconds; whole seconds do.
    match d.num_microseconds() {
        Some(us) => us.div_euclid(MICROS_PER_HOUR) + i64::from(us % MICROS_PER_HOUR != 0),
        None => d.num_seconds().div_euclid(3600) + 1,
    }
}

/// A time a contract was paused (suspended); `until` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub from: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// How long a contract running over `[starts_at, ends_at)` ran during
/// `[from, until)`, less the times it was paused (a paused contract lost
/// nothing to an outage, and `pause_extend` already gives paused time back).
pub fn running_time(
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    pauses: &[Pause],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Duration {
    let start = starts_at.max(from);
    let end = ends_at.min(until);
    if end <= start {
        return Duration::zero();
    }
    let mut ran = end - start;
    for p in pauses {
        let p_start = p.from.max(start);
        let p_end = p.until.map_or(end, |u| u.min(end));
        if p_end > p_start {
            ran -= p_end - p_start;
        }
    }
    // Overlapping pauses (not written by this module) must not make it negative.
    ran.max(Duration::zero())
}

/// The pauses told by a contract's `suspended` and `resumed` events, given
/// as (kind, at) in the order they happened.
pub fn pauses_from_events<'a>(
    events: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>,
) -> Vec<Pause> {
    let mut pauses: Vec<Pause> = Vec::new();
    for (kind, at) in events {
        let open = pauses.last_mut().filter(|p| p.until.is_none());
        match (kind, open) {
            (event::SUSPENDED, None) => pauses.push(Pause {
                from: at,
                until: None,
            }),
            (event::RESUMED, Some(p)) => p.until = Some(at.max(p.from)),
            // A second suspension while paused keeps the first start; a
            // resume without a pause changes nothing.
            _ => {}
        }
    }
    pauses
}

/// The refund for ending a contract at `now`: `paid × remaining / total`,
/// where remaining runs from `max(now, starts_at)` to `ends_at` and total
/// from `starts_at` to `ends_at`, in whole seconds, floored to the asset's
/// ledger precision (the platform never refunds more than the time left).
/// Exact: the product is computed on 256-bit integers. `None` only when
/// `paid` is not a valid amount of `asset`.
pub fn pro_rata_refund(
    paid: Decimal,
    asset: Asset,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Amount> {
    let total = (ends_at - starts_at).num_seconds();
    let remaining = (ends_at - now.max(starts_at))
        .num_seconds()
        .clamp(0, total.max(0));
    if paid <= Decimal::ZERO || total <= 0 || remaining == 0 {
        return Some(Amount::zero(asset));
    }
    let paid = paid.normalize();
    let decimals = asset.ledger_decimals();
    let mantissa = U256::from(u128::try_from(paid.mantissa()).ok()?);
    let pow10 = |n: u32| U256::from(10u8).pow(n);
    // units = floor(mantissa / 10^scale × remaining / total × 10^decimals)
    let numerator = mantissa * U256::from(remaining.unsigned_abs()) * pow10(decimals);
    let denominator = U256::from(total.unsigned_abs()) * pow10(paid.scale());
    let units = u128::try_from(numerator / denominator).ok()?;
    Amount::from_units(units, asset).ok()
}

fn valid_reason(reason: &str) -> Result<&str, LifecycleError> {
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        return Err(LifecycleError::InvalidReason);
    }
    Ok(reason)
}

// ---------------------------------------------------------------------------
// Storage helpers
// ---------------------------------------------------------------------------

fn corrupt(what: impl Into<String>) -> LifecycleError {
    LifecycleError::Corrupt(what.into())
}

/// The contract, locked until the end of the transaction.
async fn lock_contract(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Contract, LifecycleError> {
    contracts::table
        .find(id)
        .for_update()
        .select(Contract::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(LifecycleError::ContractNotFound(id))
}

/// Like `store::add_event`, with the time it happened: callers pass their
/// `now`, so events and the timestamps on the contract row agree.
async fn add_event_at(
    conn: &mut AsyncPgConnection,
    contract: Uuid,
    kind: &str,
    dedupe_key: Option<&str>,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::insert_into(contract_events::table)
        .values((
            contract_events::contract_id.eq(contract),
            contract_events::kind.eq(kind),
            contract_events::dedupe_key.eq(dedupe_key),
            contract_events::detail.eq(detail),
            contract_events::at.eq(at),
        ))
        .on_conflict((contract_events::contract_id, contract_events::dedupe_key))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Gives hashrate back to products, one UPDATE per product in id order (so
/// two transactions releasing the same products never deadlock). The
/// `sold >= 0` CHECK fails the whole transaction rather than hide a release
/// that was never sold.
async fn release_inventory(
    conn: &mut AsyncPgConnection,
    released: &BTreeMap<Uuid, Decimal>,
) -> Result<(), LifecycleError> {
    for (product, hashrate) in released {
        let n = diesel::update(products::table.find(*product))
            .set(products::sold.eq(products::sold - *hashrate))
            .execute(conn)
            .await?;
        if n != 1 {
            return Err(corrupt(format!(
                "product {product} of a contract is missing"
            )));
        }
    }
    Ok(())
}

fn hours_i32(hours: i64) -> Result<i32, LifecycleError> {
    i32::try_from(hours).map_err(|_| corrupt(format!("{hours} hours is out of range")))
}

fn add_hours(at: DateTime<Utc>, hours: i64) -> Result<DateTime<Utc>, LifecycleError> {
    Duration::try_hours(hours)
        .and_then(|d| at.checked_add_signed(d))
        .ok_or_else(|| corrupt(format!("{at} + {hours} h is out of range")))
}

// ---------------------------------------------------------------------------
// 1. The stop rule
// ---------------------------------------------------------------------------

/// What [`record_settled_day`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettledDay {
    pub contract_id: Uuid,
    /// Consecutive zero-net days after this one.
    pub zero_net_days: i32,
    pub action: Option<Action>,
    /// Hours added to `ends_at` by a resume under `pause_extend`.
    pub extended_hours: i64,
    pub state: ContractState,
    pub ends_at: DateTime<Utc>,
}

/// Records one settled day of a live contract: counts it as a zero-net day
/// or resets the count, then applies the stop rule of the contract's terms
/// (the rule it was sold with). A suspension sets `suspended_at` and writes
/// a `suspended` event with its reason; a resume makes it active again —
/// under `pause_extend` with the paused hours (rounded up) added to
/// `ends_at` and `extended_hours` — and writes a `resumed` event. Both queue
/// an e-mail to the customer (`contract_suspended`, `contract_resumed`) in
/// the same transaction; none for a contract a partner bought.
///
/// Call it for every settled day of an active or suspended contract (for a
/// suspended one: whether the day would have had a positive net), inside
/// the transaction that records the day's settlement: the count is not
/// keyed by day, so a settlement retried in a new transaction would count
/// its day twice. Fails with `NotLive` for an ended contract.
pub async fn record_settled_day(
    conn: &mut AsyncPgConnection,
    contract_id: Uuid,
    net_was_zero: bool,
    now: DateTime<Utc>,
) -> Result<SettledDay, LifecycleError> {
    conn.transaction(async |conn| {
        let c = lock_contract(conn, contract_id).await?;
        let state = c.state();
        if !state.is_live() {
            return Err(LifecycleError::NotLive { id: c.id, state });
        }
        let terms = c
            .terms()
            .map_err(|e| corrupt(format!("contract {} terms: {e}", c.id)))?;
        let rule = StopRule::parse(&terms.stop_rule)
            .ok_or_else(|| corrupt(format!("contract {} stop rule {:?}", c.id, terms.stop_rule)))?;
        let zero_net_days = if net_was_zero {
            c.zero_net_days.saturating_add(1)
        } else {
            0
        };
        let mut action = stop_rule_action(rule, terms.stop_after_days, zero_net_days, state);
        if action == Some(Action::Resume) && !suspended_by_stop_rule(conn, c.id).await? {
            action = None;
        }
        let mut out = SettledDay {
            contract_id: c.id,
            zero_net_days,
            action,
            extended_hours: 0,
            state,
            ends_at: c.ends_at,
        };
        match action {
            None => {
                diesel::update(contracts::table.find(c.id))
                    .set(contracts::zero_net_days.eq(zero_net_days))
                    .execute(conn)
                    .await?;
            }
            Some(Action::Suspend) => {
                diesel::update(contracts::table.find(c.id))
                    .set((
                        contracts::state.eq(ContractState::Suspended.as_str()),
                        contracts::suspended_at.eq(Some(now)),
                        contracts::zero_net_days.eq(zero_net_days),
                    ))
                    .execute(conn)
                    .await?;
                add_event_at(
                    conn,
                    c.id,
                    event::SUSPENDED,
                    None,
                    serde_json::json!({
                        "reason": STOP_RULE_REASON,
                        "stop_rule": rule.as_str(),
                        "zero_net_days": zero_net_days,
                        "stop_after_days": terms.stop_after_days,
                    }),
                    now,
                )
                .await?;
                let rule_words = match rule {
                    StopRule::Stop => "stopped",
                    StopRule::PauseExtend | StopRule::None => "paused and extended",
                };
                notify_owner(
                    conn,
                    &c,
                    &terms,
                    EmailTemplate::ContractSuspended,
                    &[
                        ("days", zero_net_days.to_string()),
                        ("rule", rule_words.to_owned()),
                        ("suspended_at", mail_time(now)),
                    ],
                )
                .await?;
                out.state = ContractState::Suspended;
            }
            Some(Action::Resume) => {
                let paused_hours = whole_hours_up(now - c.suspended_at.unwrap_or(now));
                let extension = if rule == StopRule::PauseExtend {
                    paused_hours
                } else {
                    0
                };
                let ends_at = add_hours(c.ends_at, extension)?;
                let extended_hours = c
                    .extended_hours
                    .checked_add(hours_i32(extension)?)
                    .ok_or_else(|| corrupt(format!("contract {} extended_hours", c.id)))?;
                diesel::update(contracts::table.find(c.id))
                    .set((
                        contracts::state.eq(ContractState::Active.as_str()),
                        contracts::suspended_at.eq(None::<DateTime<Utc>>),
                        contracts::zero_net_days.eq(0),
                        contracts::ends_at.eq(ends_at),
                        contracts::extended_hours.eq(extended_hours),
                    ))
                    .execute(conn)
                    .await?;
                add_event_at(
                    conn,
                    c.id,
                    event::RESUMED,
                    None,
                    serde_json::json!({
                        "reason": "profitable_day",
                        "stop_rule": rule.as_str(),
                        "paused_hours": paused_hours,
                        "extended_hours": extension,
                        "ends_at": ends_at,
                    }),
                    now,
                )
                .await?;
                notify_owner(
                    conn,
                    &c,
                    &terms,
                    EmailTemplate::ContractResumed,
                    &[
                        ("resumed_at", mail_time(now)),
                        ("extended_hours", extension.to_string()),
                    ],
                )
                .await?;
                out.state = ContractState::Active;
                out.extended_hours = extension;
                out.ends_at = ends_at;
            }
        }
        Ok(out)
    })
    .await
}

/// Queues `template` to the owner of contract `c`, in the caller's
/// transaction, with `vars` and `contract` (the product name and the first
/// block of the id). A contract a partner bought is left to the partner,
/// which has no contact address on file: nothing is sent for it.
async fn notify_owner(
    conn: &mut AsyncPgConnection,
    c: &Contract,
    terms: &Terms,
    template: EmailTemplate,
    vars: &[(&'static str, String)],
) -> Result<(), LifecycleError> {
    if c.partner_id.is_some() {
        return Ok(());
    }
    let to: String = users::table
        .find(c.user_id)
        .select(users::email)
        .first(conn)
        .await?;
    // Product names may hold line breaks, which a subject must not: they
    // would fail the mail and with it the settlement.
    let product: String = terms
        .product_name
        .chars()
        .map(|ch| {
            if ch.is_control() || ch == '\u{2028}' || ch == '\u{2029}' {
                ' '
            } else {
                ch
            }
        })
        .collect();
    let id = c.id.to_string();
    let contract = format!("{} ({})", product.trim(), &id[..8]);
    let mut all: Vec<(&str, &str)> = vec![("contract", contract.as_str())];
    all.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let email_error = |e: EmailError| match e {
        EmailError::Database(e) => LifecycleError::Database(e),
        e => corrupt(format!("{template} e-mail for contract {}: {e}", c.id)),
    };
    let email = mail::render(template, &to, &all).map_err(email_error)?;
    mail::queue(conn, &email).await.map_err(email_error)?;
    Ok(())
}

fn mail_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Whether the contract's latest suspension was the stop rule's (and not,
/// say, an operator's, which a profitable day must not lift).
async fn suspended_by_stop_rule(
    conn: &mut AsyncPgConnection,
    contract: Uuid,
) -> Result<bool, LifecycleError> {
    let detail: Option<serde_json::Value> = contract_events::table
        .filter(contract_events::contract_id.eq(contract))
        .filter(contract_events::kind.eq(event::SUSPENDED))
        .order(contract_events::id.desc())
        .select(contract_events::detail)
        .first(conn)
        .await
        .optional()?;
    Ok(detail.is_some_and(|d| d["reason"] == STOP_RULE_REASON))
}

// ---------------------------------------------------------------------------
// 2. Activation and expiry
// ---------------------------------------------------------------------------

/// What [`run_due`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleReport {
    /// Contracts that went from pending to active.
    pub activated: Vec<Uuid>,
    /// Contracts that ended at their `ends_at`; their hashrate is for sale again.
    pub expired: Vec<Uuid>,
}

impl LifecycleReport {
    pub fn is_empty(&self) -> bool {
        self.activated.is_empty() && self.expired.is_empty()
    }
}

#[derive(QueryableByName)]
struct ActivatedRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    starts_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ExpiredRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    product_id: Uuid,
    #[diesel(sql_type = Numeric)]
    hashrate: Decimal,
    #[diesel(sql_type = Text)]
    was: String,
    #[diesel(sql_type = Timestamptz)]
    ends_at: DateTime<Utc>,
}

/// Activates pending contracts whose `starts_at` has come and expires live
/// contracts whose `ends_at` has come (releasing their hashrate), each with
/// its event. A contract whose whole term passed unseen is activated and
/// expired in the same run.
///
/// Idempotent, and safe with any number of workers at once: each batch
/// locks its rows with `FOR UPDATE SKIP LOCKED` and moves only rows still in
/// the expected state, so every transition (and every release) happens
/// once; a row another transaction holds is left for the next run.
pub async fn run_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<LifecycleReport, LifecycleError> {
    let mut report = LifecycleReport::default();
    loop {
        let batch = conn
            .transaction(async |conn| activate_batch(conn, now).await)
            .await?;
        let last = batch.len() < BATCH as usize;
        report.activated.extend(batch);
        if last {
            break;
        }
    }
    loop {
        let batch = conn
            .transaction(async |conn| expire_batch(conn, now).await)
            .await?;
        let last = batch.len() < BATCH as usize;
        report.expired.extend(batch);
        if last {
            break;
        }
    }
    Ok(report)
}

async fn activate_batch(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, LifecycleError> {
    let rows: Vec<ActivatedRow> = diesel::sql_query(
        "WITH due AS ( \
             SELECT id FROM contracts \
             WHERE state = 'pending' AND starts_at <= $1 \
             ORDER BY starts_at, id \
             LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE contracts c SET state = 'active' \
         FROM due WHERE c.id = due.id AND c.state = 'pending' \
         RETURNING c.id, c.starts_at",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(BATCH)
    .load(conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let events: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                contract_events::contract_id.eq(r.id),
                contract_events::kind.eq(event::ACTIVATED),
                contract_events::dedupe_key.eq(Some(event::ACTIVATED)),
                contract_events::detail.eq(serde_json::json!({ "starts_at": r.starts_at })),
                contract_events::at.eq(now),
            )
        })
        .collect();
    diesel::insert_into(contract_events::table)
        .values(&events)
        .on_conflict((contract_events::contract_id, contract_events::dedupe_key))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

async fn expire_batch(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, LifecycleError> {
    // ended_at is the contractual end, not the moment this job noticed it.
    let rows: Vec<ExpiredRow> = diesel::sql_query(
        "WITH due AS ( \
             SELECT id, state FROM contracts \
             WHERE state IN ('pending', 'active', 'suspended') AND ends_at <= $1 \
             ORDER BY ends_at, id \
             LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE contracts c SET state = 'expired', ended_at = c.ends_at \
         FROM due WHERE c.id = due.id AND c.state IN ('pending', 'active', 'suspended') \
         RETURNING c.id, c.product_id, c.hashrate, due.state AS was, c.ends_at",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(BATCH)
    .load(conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut released: BTreeMap<Uuid, Decimal> = BTreeMap::new();
    for r in &rows {
        *released.entry(r.product_id).or_default() += r.hashrate;
    }
    release_inventory(conn, &released).await?;
    let events: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                contract_events::contract_id.eq(r.id),
                contract_events::kind.eq(event::EXPIRED),
                contract_events::dedupe_key.eq(Some(event::EXPIRED)),
                contract_events::detail.eq(serde_json::json!({
                    "ends_at": r.ends_at,
                    "was": r.was,
                    "released_hashrate": r.hashrate.normalize().to_string(),
                })),
                contract_events::at.eq(now),
            )
        })
        .collect();
    diesel::insert_into(contract_events::table)
        .values(&events)
        .on_conflict((contract_events::contract_id, contract_events::dedupe_key))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

// ---------------------------------------------------------------------------
// 3. Facility outages
// ---------------------------------------------------------------------------

/// A period a facility did not mine.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, Serialize, ToSchema)]
#[diesel(table_name = facility_outages, check_for_backend(diesel::pg::Pg))]
pub struct Outage {
    pub id: Uuid,
    pub facility_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    /// Who recorded it, e.g. `user:<id>`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The hours one contract got for an outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OutageExtension {
    pub contract_id: Uuid,
    pub hours: i64,
    /// The contract's new end.
    pub ends_at: DateTime<Utc>,
}

/// An outage as recorded, with the contracts it extended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RecordedOutage {
    pub outage: Outage,
    pub extensions: Vec<OutageExtension>,
}

/// Records an outage of a facility that is over (it may end up to a few
/// minutes in the future, for clock skew) and extends every live contract
/// of the facility's products by the hours it ran during the outage —
/// paused time excluded — rounded up: `ends_at` and `extended_hours` grow,
/// and an `outage_extension` event (dedupe key `outage:<id>`) says why.
///
/// An outage still running is refused: contracts bought later could start
/// during it and would never be extended. An outage overlapping one already
/// recorded for the facility is refused too, so that the same downtime
/// entered twice is not compensated twice; record only the part not yet
/// covered. Contracts that already ended are not extended.
pub async fn record_outage(
    conn: &mut AsyncPgConnection,
    facility_id: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: &str,
    actor: &str,
) -> Result<RecordedOutage, LifecycleError> {
    let reason = valid_reason(reason)?;
    if ends_at <= starts_at {
        return Err(LifecycleError::InvalidOutageWindow);
    }
    if ends_at > Utc::now() + OUTAGE_END_SKEW {
        return Err(LifecycleError::OutageNotOver);
    }
    conn.transaction(async |conn| {
        // Serializes outages of one facility, so the overlap check holds.
        facilities::table
            .find(facility_id)
            .for_update()
            .select(facilities::id)
            .first::<Uuid>(conn)
            .await
            .optional()?
            .ok_or(LifecycleError::FacilityNotFound(facility_id))?;
        let overlapping: Option<Uuid> = facility_outages::table
            .filter(facility_outages::facility_id.eq(facility_id))
            .filter(facility_outages::starts_at.lt(ends_at))
            .filter(facility_outages::ends_at.gt(starts_at))
            .order(facility_outages::starts_at)
            .select(facility_outages::id)
            .first(conn)
            .await
            .optional()?;
        if let Some(existing) = overlapping {
            return Err(LifecycleError::OutageOverlaps(existing));
        }
        let outage: Outage = diesel::insert_into(facility_outages::table)
            .values((
                facility_outages::id.eq(Uuid::now_v7()),
                facility_outages::facility_id.eq(facility_id),
                facility_outages::starts_at.eq(starts_at),
                facility_outages::ends_at.eq(ends_at),
                facility_outages::reason.eq(reason),
                facility_outages::created_by.eq(actor),
            ))
            .returning(Outage::as_returning())
            .get_result(conn)
            .await?;
        let extensions = apply_outage(conn, &outage).await?;
        Ok(RecordedOutage { outage, extensions })
    })
    .await
}

/// Extends the live contracts of `outage`'s facility for it (see
/// [`record_outage`]). Exactly once per (outage, contract): a contract that
/// already has the outage's event is left alone, so applying an outage
/// again — a retry, a second worker — returns no new extensions.
pub async fn apply_outage(
    conn: &mut AsyncPgConnection,
    outage: &Outage,
) -> Result<Vec<OutageExtension>, LifecycleError> {
    conn.transaction(async |conn| {
        let facility_products = products::table
            .filter(products::facility_id.eq(outage.facility_id))
            .select(products::id);
        // Locks only the contract rows: the products stay free for purchases.
        let candidates: Vec<Contract> = contracts::table
            .filter(contracts::product_id.eq_any(facility_products))
            .filter(contracts::state.eq_any(LIVE))
            .filter(contracts::starts_at.lt(outage.ends_at))
            .filter(contracts::ends_at.gt(outage.starts_at))
            .order(contracts::id)
            .for_update()
            .select(Contract::as_select())
            .load(conn)
            .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = candidates.iter().map(|c| c.id).collect();
        let pause_events: Vec<(Uuid, String, DateTime<Utc>)> = contract_events::table
            .filter(contract_events::contract_id.eq_any(&ids))
            .filter(contract_events::kind.eq_any([event::SUSPENDED, event::RESUMED]))
            .order(contract_events::id)
            .select((
                contract_events::contract_id,
                contract_events::kind,
                contract_events::at,
            ))
            .load(conn)
            .await?;
        let mut by_contract: HashMap<Uuid, Vec<(String, DateTime<Utc>)>> = HashMap::new();
        for (id, kind, at) in pause_events {
            by_contract.entry(id).or_default().push((kind, at));
        }
        let dedupe_key = format!("outage:{}", outage.id);
        let mut extensions = Vec::new();
        for c in candidates {
            let history = by_contract.remove(&c.id).unwrap_or_default();
            let mut pauses = pauses_from_events(history.iter().map(|(k, at)| (k.as_str(), *at)));
            // A suspension without its event (an older or manual one) still counts.
            if c.state() == ContractState::Suspended
                && pauses.last().is_none_or(|p| p.until.is_some())
            {
                pauses.push(Pause {
                    from: c.suspended_at.unwrap_or(c.starts_at),
                    until: None,
                });
            }
            let hours = whole_hours_up(running_time(
                c.starts_at,
                c.ends_at,
                &pauses,
                outage.starts_at,
                outage.ends_at,
            ));
            if hours == 0 {
                continue;
            }
            let new = add_event_at(
                conn,
                c.id,
                event::OUTAGE_EXTENSION,
                Some(&dedupe_key),
                serde_json::json!({
                    "outage_id": outage.id,
                    "hours": hours,
                    "reason": outage.reason,
                }),
                Utc::now(),
            )
            .await?;
            if !new {
                continue;
            }
            let ends_at = add_hours(c.ends_at, hours)?;
            let extended_hours = c
                .extended_hours
                .checked_add(hours_i32(hours)?)
                .ok_or_else(|| corrupt(format!("contract {} extended_hours", c.id)))?;
            diesel::update(contracts::table.find(c.id))
                .set((
                    contracts::ends_at.eq(ends_at),
                    contracts::extended_hours.eq(extended_hours),
                ))
                .execute(conn)
                .await?;
            extensions.push(OutageExtension {
                contract_id: c.id,
                hours,
                ends_at,
            });
        }
        Ok(extensions)
    })
    .await
}

// ---------------------------------------------------------------------------
// 4. Termination
// ---------------------------------------------------------------------------

/// What [`terminate`] did.
#[derive(Debug, Clone)]
pub struct Termination {
    /// The contract as it is now (terminated).
    pub contract: Contract,
    /// The state it was in before.
    pub was: ContractState,
    /// The refund, in the asset it was paid in; zero when no time was left.
    pub refund: Amount,
    /// The ledger transfer of the refund; `None` for a zero refund.
    pub transfer_id: Option<Uuid>,
}

/// The ledger account a contract was paid from: the partner's prepaid
/// account when a partner bought it, else the customer's own.
pub fn buyer_account(contract: &Contract) -> (Owner, AccountKind) {
    match contract.partner_id {
        Some(partner) => (Owner::Partner(partner), AccountKind::Partner),
        None => (Owner::User(contract.user_id), AccountKind::Customer),
    }
}

/// Ends a live contract early, in one transaction: refunds
/// [`pro_rata_refund`] of what was paid from the platform's sales revenue
/// to the account that paid (transfer `refund`, reference
/// `refund:<contract id>`, posted only when above zero), marks it
/// terminated with `ended_at = now`, releases its hashrate and writes a
/// `terminated` event with the refund. A contract that is no longer live is
/// refused (`NotLive`); the reference makes a second refund impossible
/// even so.
pub async fn terminate(
    conn: &mut AsyncPgConnection,
    contract_id: Uuid,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Termination, LifecycleError> {
    let reason = valid_reason(reason)?;
    conn.transaction(async |conn| {
        let c = lock_contract(conn, contract_id).await?;
        let state = c.state();
        if !state.is_live() {
            return Err(LifecycleError::NotLive { id: c.id, state });
        }
        let asset = Asset::from_str(&c.pay_asset)
            .map_err(|_| corrupt(format!("contract {} pay asset {:?}", c.id, c.pay_asset)))?;
        let refund = pro_rata_refund(c.paid_amount, asset, c.starts_at, c.ends_at, now)
            .ok_or_else(|| corrupt(format!("contract {} paid amount {}", c.id, c.paid_amount)))?;

        // The product row before the ledger accounts: the lock order above.
        release_inventory(conn, &BTreeMap::from([(c.product_id, c.hashrate)])).await?;

        let transfer_id = if refund.is_zero() {
            None
        } else {
            let (owner, kind) = buyer_account(&c);
            let buyer = ledger::open_account(conn, &owner, asset, kind).await?;
            let revenue =
                ledger::open_account(conn, &Owner::Platform, asset, AccountKind::SalesRevenue)
                    .await?;
            let transfer = NewTransfer::new(
                format!("refund:{}", c.id),
                TransferKind::Refund,
                revenue.id,
                buyer.id,
                refund,
            )
            .with_metadata(serde_json::json!({
                "contract_id": c.id,
                "actor": actor,
                "reason": reason,
            }));
            let posted = ledger::post_batch(conn, &[transfer.into()]).await?;
            let posted = posted
                .into_iter()
                .next()
                .ok_or_else(|| corrupt("the ledger returned no transfer"))?;
            Some(posted.transfer().id)
        };

        diesel::update(
            contracts::table
                .find(c.id)
                .filter(contracts::state.eq_any(LIVE)),
        )
        .set((
            contracts::state.eq(ContractState::Terminated.as_str()),
            contracts::ended_at.eq(Some(now)),
        ))
        .execute(conn)
        .await?;
        add_event_at(
            conn,
            c.id,
            event::TERMINATED,
            Some(event::TERMINATED),
            serde_json::json!({
                "reason": reason,
                "actor": actor,
                "was": state.as_str(),
                "refund": refund.value().normalize().to_string(),
                "asset": asset,
                "transfer_id": transfer_id,
            }),
            now,
        )
        .await?;
        let contract = contracts::table
            .find(c.id)
            .select(Contract::as_select())
            .first(conn)
            .await?;
        Ok(Termination {
            contract,
            was: state,
            refund,
            transfer_id,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_stop_rule_suspends_after_n_zero_days_and_resumes_on_a_good_one() {
        use Action::*;
        use ContractState as S;
        for rule in [StopRule::PauseExtend, StopRule::Stop] {
            assert_eq!(stop_rule_action(rule, 3, 2, S::Active), None);
            assert_eq!(stop_rule_action(rule, 3, 3, S::Active), Some(Suspend));
            assert_eq!(stop_rule_action(rule, 3, 4, S::Active), Some(Suspend));
            assert_eq!(stop_rule_action(rule, 3, 5, S::Suspended), None);
            assert_eq!(stop_rule_action(rule, 3, 0, S::Suspended), Some(Resume));
            assert_eq!(stop_rule_action(rule, 3, 0, S::Active), None);
            // Not live, or not started: the rule does nothing.
            for state in [S::Pending, S::Expired, S::Terminated] {
                assert_eq!(stop_rule_action(rule, 3, 9, state), None);
                assert_eq!(stop_rule_action(rule, 3, 0, state), None);
            }
            // A nonsensical threshold never suspends on a good day.
            assert_eq!(stop_rule_action(rule, 0, 0, S::Active), None);
            assert_eq!(stop_rule_action(rule, 0, 1, S::Active), Some(Suspend));
        }
        assert_eq!(stop_rule_action(StopRule::None, 1, 100, S::Active), None);
        assert_eq!(stop_rule_action(StopRule::None, 1, 0, S::Suspended), None);
    }

    #[test]
    fn hours_round_up() {
        assert_eq!(whole_hours_up(Duration::zero()), 0);
        assert_eq!(whole_hours_up(Duration::seconds(-5)), 0);
        assert_eq!(whole_hours_up(Duration::microseconds(1)), 1);
        assert_eq!(whole_hours_up(Duration::hours(2)), 2);
        assert_eq!(whole_hours_up(Duration::hours(2) + Duration::seconds(1)), 3);
        assert_eq!(whole_hours_up(Duration::minutes(90)), 2);
    }

    #[test]
    fn running_time_is_the_overlap_less_the_pauses() {
        let (s, e) = (t("2026-01-01T00:00:00Z"), t("2026-01-31T00:00:00Z"));
        // Outage inside the term.
        assert_eq!(
            running_time(
                s,
                e,
                &[],
                t("2026-01-10T10:00:00Z"),
                t("2026-01-10T14:30:00Z")
            ),
            Duration::minutes(270)
        );
        // Outage across the start, and across the end.
        assert_eq!(
            running_time(
                s,
                e,
                &[],
                t("2025-12-31T22:00:00Z"),
                t("2026-01-01T03:00:00Z")
            ),
            Duration::hours(3)
        );
        assert_eq!(
            running_time(
                s,
                e,
                &[],
                t("2026-01-30T23:00:00Z"),
                t("2026-02-01T00:00:00Z")
            ),
            Duration::hours(1)
        );
        // Entirely outside.
        assert_eq!(
            running_time(
                s,
                e,
                &[],
                t("2026-02-01T00:00:00Z"),
                t("2026-02-02T00:00:00Z")
            ),
            Duration::zero()
        );
        // A pause inside the outage, and an open pause.
        let pauses = [
            Pause {
                from: t("2026-01-10T11:00:00Z"),
                until: Some(t("2026-01-10T12:00:00Z")),
            },
            Pause {
                from: t("2026-01-10T13:00:00Z"),
                until: None,
            },
        ];
        assert_eq!(
            running_time(
                s,
                e,
                &pauses,
                t("2026-01-10T10:00:00Z"),
                t("2026-01-10T14:00:00Z")
            ),
            Duration::hours(2)
        );
    }

    #[test]
    fn pauses_come_from_suspend_and_resume_events() {
        let a = t("2026-01-02T00:00:00Z");
        let b = t("2026-01-04T00:00:00Z");
        let c = t("2026-01-06T00:00:00Z");
        let pauses = pauses_from_events([
            (event::RESUMED, a),
            (event::SUSPENDED, a),
            (event::SUSPENDED, b),
            (event::RESUMED, b),
            (event::ACTIVATED, b),
            (event::SUSPENDED, c),
        ]);
        assert_eq!(
            pauses,
            vec![
                Pause {
                    from: a,
                    until: Some(b)
                },
                Pause {
                    from: c,
                    until: None
                }
            ]
        );
    }

    #[test]
    fn the_refund_is_pro_rata_and_floored_to_the_ledger_precision() {
        let s = t("2026-01-01T00:00:00Z");
        let e = t("2026-01-04T00:00:00Z");
        // A third of the term used: two thirds of 1 BTC, floored to 8 places.
        let r = pro_rata_refund(dec!(1), Asset::BTC, s, e, t("2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(r.value(), dec!(0.66666666));
        // Before the start: everything; at or after the end: nothing.
        let r = pro_rata_refund(dec!(1), Asset::BTC, s, e, t("2025-12-31T00:00:00Z")).unwrap();
        assert_eq!(r.value(), dec!(1));
        assert!(
            pro_rata_refund(dec!(1), Asset::BTC, s, e, e)
                .unwrap()
                .is_zero()
        );
        assert!(
            pro_rata_refund(dec!(1), Asset::BTC, s, e, t("2027-01-01T00:00:00Z"))
                .unwrap()
                .is_zero()
        );
        // 100 USDT over 30 days, 7.5 days used: exactly 75.
        let r = pro_rata_refund(
            dec!(100),
            Asset::USDT,
            s,
            t("2026-01-31T00:00:00Z"),
            t("2026-01-08T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(r.value(), dec!(75));
        // Large amounts at 18 decimals do not overflow.
        let big = dec!(1234567890.123456789012345678);
        let r = pro_rata_refund(big, Asset::ETH, s, e, t("2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(r.value(), dec!(823045260.082304526008230452));
        // Never more than paid, whatever the clock says.
        let r = pro_rata_refund(dec!(0.00000001), Asset::BTC, s, e, s).unwrap();
        assert_eq!(r.value(), dec!(0.00000001));
        let r =
            pro_rata_refund(dec!(0.00000001), Asset::BTC, s, e, s + Duration::seconds(1)).unwrap();
        assert!(r.is_zero());
    }

    #[test]
    fn reasons_are_checked() {
        assert_eq!(valid_reason("  power cut ").unwrap(), "power cut");
        assert!(valid_reason("   ").is_err());
        assert!(valid_reason("a\nb").is_err());
        assert!(valid_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert!(valid_reason(&"x".repeat(MAX_REASON_CHARS)).is_ok());
    }
}
