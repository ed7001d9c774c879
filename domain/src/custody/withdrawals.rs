//! Withdrawals, stored: the request (checks, ledger hold, e-mail link), every
//! later transition applied with [`super::withdrawal::apply`] under the row's
//! lock (so each happens once, whoever races), the timeline the customer
//! sees, and the worker's side (claim with `SKIP LOCKED`, signed bytes and
//! txid stored before broadcasting).
//!
//! Ledger: at request time two holds leave the customer's account, the
//! amount towards the network's custody account and the fee towards fee
//! revenue. Completion posts both, failure/rejection/cancellation voids both;
//! the state machine guarantees that this happens at most once.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::{self, AddressError, AddressKind, NetworkKind};
use super::allowlist::{self, AllowlistError, chain_of};
use super::withdrawal::{self as machine, Event, HoldEffect, State, TransitionError};
use crate::identity::audit::{self, AuditEntry};
use crate::identity::{crypto, store as identity_store};
use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, Posting, TransferKind};
use crate::money::{Amount, AmountError, Asset, Network, Sign, decimals_on};
use crate::outbox::email::{self, EmailError, EmailTemplate};
use crate::schema::{asset_networks, networks, users, withdrawal_events as we, withdrawals as w};

/// How long the e-mailed confirmation link is valid; an unconfirmed
/// withdrawal is cancelled after it.
pub const CONFIRM_TTL_MINUTES: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum WithdrawalError {
    #[error("unknown asset {0:?}")]
    UnknownAsset(String),
    #[error("unknown network {0:?}")]
    UnknownNetwork(String),
    #[error("{asset} cannot be withdrawn on {network}")]
    Unsupported { asset: Asset, network: Network },
    #[error("withdrawals of {asset} on {network} are paused")]
    Disabled { asset: Asset, network: Network },
    #[error("amount: {0}")]
    Amount(#[from] AmountError),
    #[error("the minimum withdrawal is {minimum} {asset}")]
    BelowMinimum { minimum: Decimal, asset: Asset },
    #[error("address {0}")]
    Address(#[from] AddressError),
    #[error(
        "this address is not on your confirmed allow-list yet (addresses are usable 24 hours after their e-mail confirmation)"
    )]
    AddressNotAllowed,
    #[error("withdrawals are locked until {until} after a change to your password, 2FA or e-mail")]
    Locked { until: DateTime<Utc> },
    #[error("this withdrawal would exceed the daily limit of {limit} {asset} (used: {used})")]
    DailyLimit {
        limit: Decimal,
        used: Decimal,
        asset: Asset,
    },
    #[error("the balance does not cover the amount and the fee")]
    InsufficientFunds,
    #[error("no such withdrawal")]
    NotFound,
    #[error("the confirmation link is unknown, used or expired")]
    BadToken,
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error("the withdrawal is being processed by another worker")]
    NotClaimed,
    #[error("e-mail: {0}")]
    Email(#[from] EmailError),
    #[error("ledger: {0}")]
    Ledger(LedgerError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl From<LedgerError> for WithdrawalError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InsufficientFunds { .. } => WithdrawalError::InsufficientFunds,
            LedgerError::Database(d) => WithdrawalError::Database(d),
            other => WithdrawalError::Ledger(other),
        }
    }
}

impl From<AllowlistError> for WithdrawalError {
    fn from(e: AllowlistError) -> Self {
        match e {
            AllowlistError::Address(a) => WithdrawalError::Address(a),
            AllowlistError::UnknownNetwork(n) => WithdrawalError::UnknownNetwork(n),
            AllowlistError::Database(d) => WithdrawalError::Database(d),
            AllowlistError::Email(m) => WithdrawalError::Email(m),
            _ => WithdrawalError::AddressNotAllowed,
        }
    }
}

impl WithdrawalError {
    /// Stable code for API problems.
    pub fn code(&self) -> &'static str {
        match self {
            WithdrawalError::UnknownAsset(_) => "unknown_asset",
            WithdrawalError::UnknownNetwork(_) => "unknown_network",
            WithdrawalError::Unsupported { .. } => "unsupported_network",
            WithdrawalError::Disabled { .. } => "withdrawals_paused",
            WithdrawalError::Amount(e) => e.code(),
            WithdrawalError::BelowMinimum { .. } => "below_minimum",
            WithdrawalError::Address(e) => e.code(),
            WithdrawalError::AddressNotAllowed => "address_not_allowed",
            WithdrawalError::Locked { .. } => "withdrawals_locked",
            WithdrawalError::DailyLimit { .. } => "daily_limit_exceeded",
            WithdrawalError::InsufficientFunds => "insufficient_funds",
            WithdrawalError::NotFound => "not_found",
            WithdrawalError::BadToken => "invalid_token",
            WithdrawalError::Transition(e) => e.code(),
            WithdrawalError::NotClaimed => "not_claimed",
            WithdrawalError::Email(_)
            | WithdrawalError::Ledger(_)
            | WithdrawalError::Database(_) => "internal_error",
        }
    }
}

/// Refuses addresses that are well-formed but where coins would be lost or
/// stuck: segwit versions with no meaning yet, and the EVM zero address.
pub fn check_sendable(valid: &address::ValidAddress) -> Result<(), AddressError> {
    match valid.kind {
        AddressKind::WitnessFuture { .. } => Err(AddressError::Unsupported {
            what: "future segwit version",
        }),
        _ if valid
            .normalized
            .eq_ignore_ascii_case("0x0000000000000000000000000000000000000000")
            || valid
                .normalized
                .eq_ignore_ascii_case("0x000000000000000000000000000000000000dEaD") =>
        {
            Err(AddressError::Unsupported {
                what: "burn (zero or dead)",
            })
        }
        _ => Ok(()),
    }
}

/// The withdrawal policy of one asset-network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Policy {
    pub asset: Asset,
    pub network: Network,
    /// Charged on top of the amount.
    #[schema(value_type = String)]
    pub fee: Decimal,
    #[schema(value_type = String)]
    pub minimum: Decimal,
    /// Up to this amount a confirmed withdrawal is approved automatically;
    /// above it two different admins approve.
    #[schema(value_type = String)]
    pub auto_approve_max: Decimal,
    /// Per customer, amount + fee over the last 24 hours.
    #[schema(value_type = String)]
    pub daily_limit: Decimal,
    pub enabled: bool,
    pub confirmations: u32,
}

/// The defaults seeded for an asset-network when it is first configured:
/// (fee, minimum, auto-approve max, daily limit).
pub fn default_policy(
    asset: Asset,
    network: Network,
) -> (&'static str, &'static str, &'static str, &'static str) {
    match (asset, network) {
        (Asset::BTC, _) => ("0.0002", "0.0005", "0.1", "2"),
        (Asset::ETH, _) => ("0.002", "0.01", "2", "50"),
        (Asset::DOGE, _) => ("5", "50", "20000", "500000"),
        (Asset::BNB, _) => ("0.0005", "0.01", "10", "200"),
        (Asset::USDT | Asset::USDC, Network::Ethereum) => ("5", "20", "5000", "100000"),
        (Asset::USDT | Asset::USDC, _) => ("1", "10", "5000", "100000"),
    }
}

pub async fn policy(
    conn: &mut AsyncPgConnection,
    asset: Asset,
    network: Network,
) -> Result<Option<Policy>, diesel::result::Error> {
    let row: Option<(Decimal, Decimal, Decimal, Decimal, bool, i32)> = asset_networks::table
        .inner_join(networks::table)
        .filter(asset_networks::asset.eq(asset.code()))
        .filter(asset_networks::network.eq(network.code()))
        .select((
            asset_networks::withdrawal_fee,
            asset_networks::withdrawal_min,
            asset_networks::auto_approve_max,
            asset_networks::daily_limit,
            asset_networks::withdrawals_enabled,
            networks::confirmations,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(
        row.map(|(fee, minimum, auto, daily, enabled, confs)| Policy {
            asset,
            network,
            fee: fee.normalize(),
            minimum: minimum.normalize(),
            auto_approve_max: auto.normalize(),
            daily_limit: daily.normalize(),
            enabled,
            confirmations: u32::try_from(confs).unwrap_or(1).max(1),
        }),
    )
}

/// A stored withdrawal.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = w, check_for_backend(diesel::pg::Pg))]
pub struct Withdrawal {
    pub id: Uuid,
    pub user_id: Uuid,
    pub asset: String,
    pub network: String,
    pub address: String,
    pub amount: Decimal,
    pub fee: Decimal,
    pub state: String,
    pub needs_two_approvals: bool,
    pub approvals: Vec<Uuid>,
    pub required_confirmations: i32,
    pub hold_id: Uuid,
    pub fee_hold_id: Option<Uuid>,
    pub confirm_expires_at: DateTime<Utc>,
    pub hot_wallet: Option<String>,
    pub nonce: Option<i64>,
    pub signed_tx: Option<Vec<u8>>,
    pub txid: Option<String>,
    pub confirmations: i32,
    pub waiting_reason: Option<String>,
    pub reason: Option<String>,
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Withdrawal {
    pub fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Failed)
    }

    pub fn network(&self) -> Option<Network> {
        self.network.parse().ok()
    }

    pub fn asset(&self) -> Option<Asset> {
        self.asset.parse().ok()
    }

    fn machine(&self) -> machine::Withdrawal {
        machine::Withdrawal {
            state: self.state(),
            approvals: self.approvals.clone(),
            needs_two_approvals: self.needs_two_approvals,
            required_confirmations: u32::try_from(self.required_confirmations).unwrap_or(1),
        }
    }
}

/// One step of a withdrawal's timeline.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = we, check_for_backend(diesel::pg::Pg))]
pub struct TimelineEntry {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub withdrawal_id: Uuid,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event: String,
    /// `user`, `admin`, `worker` or `system` (ids are not shown to customers).
    #[serde(serialize_with = "actor_kind")]
    pub actor: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

fn actor_kind<S: serde::Serializer>(actor: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(actor.split(':').next().unwrap_or("system"))
}

/// What a customer asks for.
#[derive(Debug, Clone)]
pub struct NewWithdrawal<'a> {
    pub user: Uuid,
    pub asset: &'a str,
    pub network: &'a str,
    pub address: &'a str,
    pub amount: &'a str,
}

/// Checks the request, places the holds, stores the withdrawal as
/// `requested` and queues the confirmation e-mail, all in one transaction
/// (a savepoint inside the caller's). Run it inside the transaction that
/// claims the Idempotency-Key.
pub async fn request(
    conn: &mut AsyncPgConnection,
    kind: NetworkKind,
    app_url: &str,
    new: &NewWithdrawal<'_>,
) -> Result<Withdrawal, WithdrawalError> {
    let asset: Asset = new
        .asset
        .parse()
        .map_err(|_| WithdrawalError::UnknownAsset(new.asset.to_owned()))?;
    let network: Network = new
        .network
        .parse()
        .map_err(|_| WithdrawalError::UnknownNetwork(new.network.to_owned()))?;
    if decimals_on(asset, network).is_none() {
        return Err(WithdrawalError::Unsupported { asset, network });
    }
    let amount = Amount::parse(new.amount, asset, Sign::Positive)?;
    let valid = address::validate(chain_of(network), kind, new.address)?;
    check_sendable(&valid)?;
    let user = new.user;
    let token = crypto::random_token(32);
    let app_url = app_url.trim_end_matches('/').to_owned();
    conn.transaction(async |c| {
        let policy = policy(c, asset, network)
            .await?
            .ok_or(WithdrawalError::Unsupported { asset, network })?;
        if !policy.enabled {
            return Err(WithdrawalError::Disabled { asset, network });
        }
        if amount.value() < policy.minimum {
            return Err(WithdrawalError::BelowMinimum {
                minimum: policy.minimum,
                asset,
            });
        }
        let now = Utc::now();
        // One request of a customer at a time: the daily limit holds under races.
        let to: String = users::table
            .find(user)
            .select(users::email)
            .for_update()
            .first(c)
            .await?;
        if let Some(until) = identity_store::withdrawals_locked_until(c, user).await?
            && until > now
        {
            return Err(WithdrawalError::Locked { until });
        }
        if allowlist::usable(c, user, kind, network, &valid.normalized)
            .await?
            .is_none()
        {
            return Err(WithdrawalError::AddressNotAllowed);
        }
        let used: Option<Decimal> = w::table
            .filter(w::user_id.eq(user))
            .filter(w::asset.eq(asset.code()))
            .filter(w::network.eq(network.code()))
            .filter(w::state.ne_all(["cancelled", "rejected", "failed"]))
            .filter(w::created_at.gt(now - Duration::hours(24)))
            .select(diesel::dsl::sum(w::amount + w::fee))
            .first(c)
            .await?;
        let used = used.unwrap_or_default().normalize();
        if used + amount.value() + policy.fee > policy.daily_limit {
            return Err(WithdrawalError::DailyLimit {
                limit: policy.daily_limit,
                used,
                asset,
            });
        }
        let customer = ledger::account_by_key(c, &Owner::User(user), asset, AccountKind::Customer)
            .await?
            .ok_or(WithdrawalError::InsufficientFunds)?;
        let custody = ledger::open_account(
            c,
            &Owner::Network(network.code().to_owned()),
            asset,
            AccountKind::Custody,
        )
        .await?;
        let id = Uuid::now_v7();
        let meta = serde_json::json!({ "withdrawal": id, "network": network.code() });
        let mut postings: Vec<Posting> = vec![
            NewTransfer::new(
                format!("withdrawal:{id}:hold"),
                TransferKind::WithdrawalHold,
                customer.id,
                custody.id,
                amount,
            )
            .pending()
            .with_metadata(meta.clone())
            .into(),
        ];
        let fee = Amount::from_decimal(policy.fee, asset)?;
        if !fee.is_zero() {
            let revenue =
                ledger::open_account(c, &Owner::Platform, asset, AccountKind::FeeRevenue).await?;
            postings.push(
                NewTransfer::new(
                    format!("withdrawal:{id}:fee-hold"),
                    TransferKind::WithdrawalHold,
                    customer.id,
                    revenue.id,
                    fee,
                )
                .pending()
                .with_metadata(meta)
                .into(),
            );
        }
        let posted = ledger::post_batch(c, &postings).await?;
        let ids: Vec<Uuid> = posted.iter().map(|p| p.transfer().id).collect();
        let hold_id = *ids
            .as_slice()
            .first()
            .ok_or(WithdrawalError::Ledger(LedgerError::EmptyBatch))?;
        let fee_hold_id = ids.as_slice().get(1).copied();
        let row: Withdrawal = diesel::insert_into(w::table)
            .values((
                w::id.eq(id),
                w::user_id.eq(user),
                w::asset.eq(asset.code()),
                w::network.eq(network.code()),
                w::address.eq(&valid.normalized),
                w::amount.eq(amount.value()),
                w::fee.eq(policy.fee),
                w::state.eq(State::Requested.as_str()),
                w::needs_two_approvals.eq(amount.value() > policy.auto_approve_max),
                w::required_confirmations
                    .eq(i32::try_from(policy.confirmations).unwrap_or(i32::MAX)),
                w::hold_id.eq(hold_id),
                w::fee_hold_id.eq(fee_hold_id),
                w::confirm_token_hash.eq(Some(crypto::token_hash(&token))),
                w::confirm_expires_at.eq(now + Duration::minutes(CONFIRM_TTL_MINUTES)),
            ))
            .returning(Withdrawal::as_returning())
            .get_result(c)
            .await?;
        let actor = format!("user:{user}");
        record(
            c,
            &row,
            None,
            State::Requested,
            "request",
            &actor,
            serde_json::json!({ "amount": amount.value(), "fee": policy.fee }),
        )
        .await?;
        let link = format!("{app_url}/confirm-withdrawal?token={token}");
        let amount_s = amount.value().to_string();
        let fee_s = policy.fee.to_string();
        let outgoing = email::render(
            EmailTemplate::WithdrawalConfirm,
            &to,
            &[
                ("amount", amount_s.as_str()),
                ("asset", asset.code()),
                ("fee", fee_s.as_str()),
                ("network", network.name()),
                ("address", valid.normalized.as_str()),
                ("link", link.as_str()),
                ("expires_in", "30 minutes"),
            ],
        )?;
        email::queue(c, &outgoing).await?;
        Ok(row)
    })
    .await
}

/// Appends the timeline entry and the audit record of one transition.
async fn record(
    c: &mut AsyncPgConnection,
    row: &Withdrawal,
    from: Option<State>,
    to: State,
    event: &str,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), WithdrawalError> {
    diesel::insert_into(we::table)
        .values((
            we::withdrawal_id.eq(row.id),
            we::from_state.eq(from.map(State::as_str)),
            we::to_state.eq(to.as_str()),
            we::event.eq(event),
            we::actor.eq(actor),
            we::detail.eq(&detail),
        ))
        .execute(c)
        .await?;
    audit::append(
        c,
        &AuditEntry::new(
            actor,
            format!("withdrawal.{event}"),
            format!("withdrawal:{}", row.id),
        )
        .before(serde_json::json!({ "state": from.map(State::as_str) }))
        .after(serde_json::json!({ "state": to.as_str(), "detail": detail })),
    )
    .await?;
    Ok(())
}

/// The timeline's name of an event: the machine's, but "complete" for the
/// confirmations that complete it.
fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Confirmed { .. } => "complete",
        other => machine::event_name(other),
    }
}

/// What the worker stores with the `Sign` event.
#[derive(Debug, Clone)]
pub struct Signed {
    pub hot_wallet: String,
    pub nonce: Option<u64>,
    pub raw: Vec<u8>,
    pub txid: String,
}

/// Locks the row, applies `event`, moves the holds as the transition says,
/// stores the new state and records the transition. `only_for` restricts to
/// a customer's own withdrawal; `worker` fences worker events to the lease
/// holder.
async fn transition(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    event: Event,
    actor: &str,
    only_for: Option<Uuid>,
    worker: Option<&str>,
    signed: Option<&Signed>,
) -> Result<Withdrawal, WithdrawalError> {
    conn.transaction(async |c| {
        let row: Withdrawal = w::table
            .find(id)
            .select(Withdrawal::as_select())
            .for_update()
            .first(c)
            .await
            .optional()?
            .filter(|r| only_for.is_none_or(|user| r.user_id == user))
            .ok_or(WithdrawalError::NotFound)?;
        if let Some(worker) = worker
            && row.claimed_by.as_deref() != Some(worker)
        {
            return Err(WithdrawalError::NotClaimed);
        }
        let from = row.state();
        let t = machine::apply(&row.machine(), &event)?;
        let holds = std::iter::once(("", row.hold_id)).chain(row.fee_hold_id.map(|f| ("fee-", f)));
        let postings: Vec<Posting> = match t.hold {
            HoldEffect::Keep => Vec::new(),
            HoldEffect::Post => holds
                .map(|(p, pending_id)| Posting::PostPending {
                    reference: format!("withdrawal:{id}:{p}settle"),
                    pending_id,
                    kind: TransferKind::WithdrawalSettle,
                    amount: None,
                })
                .collect(),
            HoldEffect::Void => holds
                .map(|(p, pending_id)| Posting::VoidPending {
                    reference: format!("withdrawal:{id}:{p}release"),
                    pending_id,
                    kind: TransferKind::WithdrawalRelease,
                })
                .collect(),
        };
        if !postings.is_empty() {
            ledger::post_batch(c, &postings).await?;
        }
        let reason = match &event {
            Event::Reject { reason, .. } | Event::Fail { reason } => Some(reason.clone()),
            Event::Cancel => Some("cancelled by the customer".to_owned()),
            _ => row.reason.clone(),
        };
        let confirmations = match &event {
            Event::Confirmed { confirmations } => i32::try_from(*confirmations).unwrap_or(i32::MAX),
            _ => row.confirmations,
        };
        let now = Utc::now();
        // Signing stores the bytes with the state, in one row update.
        let hot_wallet = signed
            .map(|s| s.hot_wallet.clone())
            .or(row.hot_wallet.clone());
        let nonce = match signed {
            Some(s) => s.nonce.and_then(|n| i64::try_from(n).ok()),
            None => row.nonce,
        };
        let signed_tx = signed.map(|s| s.raw.clone()).or(row.signed_tx.clone());
        let txid = signed.map(|s| s.txid.clone()).or(row.txid.clone());
        let updated: Withdrawal = diesel::update(w::table.find(id))
            .set((
                w::state.eq(t.to.as_str()),
                w::approvals.eq(&t.approvals),
                w::reason.eq(&reason),
                w::confirmations.eq(confirmations),
                w::confirm_token_hash.eq(None::<Vec<u8>>),
                w::waiting_reason.eq(None::<String>),
                w::hot_wallet.eq(hot_wallet),
                w::nonce.eq(nonce),
                w::signed_tx.eq(signed_tx),
                w::txid.eq(txid),
                w::updated_at.eq(now),
            ))
            .returning(Withdrawal::as_returning())
            .get_result(c)
            .await?;
        let mut detail = serde_json::json!({});
        match &event {
            Event::Approve { .. } => {
                detail["approvals"] = serde_json::json!(t.approvals.len());
            }
            Event::Reject { reason, .. } | Event::Fail { reason } => {
                detail["reason"] = serde_json::json!(reason);
            }
            Event::Sign { txid } => {
                detail["txid"] = serde_json::json!(txid);
            }
            Event::Broadcast => {
                detail["txid"] = serde_json::json!(txid_of(&updated));
            }
            Event::Confirmed { confirmations } => {
                detail["confirmations"] = serde_json::json!(confirmations);
            }
            _ => {}
        }
        record(
            c,
            &updated,
            Some(from),
            t.to,
            event_name(&event),
            actor,
            detail,
        )
        .await?;
        Ok(updated)
    })
    .await
}

fn txid_of(row: &Withdrawal) -> &str {
    row.txid.as_deref().unwrap_or("")
}

/// The customer clicked the e-mailed link (once, before it expired).
pub async fn confirm_by_token(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> Result<Withdrawal, WithdrawalError> {
    let row: Option<(Uuid, Uuid)> = w::table
        .filter(w::confirm_token_hash.eq(crypto::token_hash(token)))
        .filter(w::state.eq(State::Requested.as_str()))
        .filter(w::confirm_expires_at.gt(Utc::now()))
        .select((w::id, w::user_id))
        .first(conn)
        .await
        .optional()?;
    let (id, user) = row.ok_or(WithdrawalError::BadToken)?;
    transition(
        conn,
        id,
        Event::ConfirmByEmail,
        &format!("user:{user}"),
        Some(user),
        None,
        None,
    )
    .await
    .map_err(|e| match e {
        // Raced with another click or a cancel: the link is spent.
        WithdrawalError::Transition(_) => WithdrawalError::BadToken,
        other => other,
    })
}

/// The customer cancels their own withdrawal (before it is signed).
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Cancel,
        &format!("user:{user}"),
        Some(user),
        None,
        None,
    )
    .await
}

/// An admin approves; above the threshold a second, different admin must.
pub async fn approve(
    conn: &mut AsyncPgConnection,
    admin: Uuid,
    id: Uuid,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Approve { admin },
        &format!("admin:{admin}"),
        None,
        None,
        None,
    )
    .await
}

pub async fn reject(
    conn: &mut AsyncPgConnection,
    admin: Uuid,
    id: Uuid,
    reason: &str,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Reject {
            admin,
            reason: reason.to_owned(),
        },
        &format!("admin:{admin}"),
        None,
        None,
        None,
    )
    .await
}

/// Cancels requested withdrawals whose confirmation link expired (their
/// holds are voided). Returns how many.
pub async fn expire_unconfirmed(conn: &mut AsyncPgConnection) -> Result<usize, WithdrawalError> {
    let ids: Vec<Uuid> = w::table
        .filter(w::state.eq(State::Requested.as_str()))
        .filter(w::confirm_expires_at.le(Utc::now()))
        .select(w::id)
        .limit(1000)
        .load(conn)
        .await?;
    let mut n = 0;
    for id in ids {
        match transition(conn, id, Event::Cancel, "system:expiry", None, None, None).await {
            Ok(_) => n += 1,
            // Confirmed or cancelled meanwhile.
            Err(WithdrawalError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub async fn get_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> Result<Withdrawal, WithdrawalError> {
    w::table
        .filter(w::id.eq(id))
        .filter(w::user_id.eq(user))
        .select(Withdrawal::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(WithdrawalError::NotFound)
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Withdrawal, WithdrawalError> {
    w::table
        .find(id)
        .select(Withdrawal::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(WithdrawalError::NotFound)
}

/// A customer's withdrawals, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> Result<Vec<Withdrawal>, WithdrawalError> {
    Ok(w::table
        .filter(w::user_id.eq(user))
        .order(w::created_at.desc())
        .limit(limit)
        .select(Withdrawal::as_select())
        .load(conn)
        .await?)
}

/// The back office's queue: by state (all open ones when `None`), oldest first.
pub async fn list_queue(
    conn: &mut AsyncPgConnection,
    state: Option<State>,
    limit: i64,
) -> Result<Vec<Withdrawal>, WithdrawalError> {
    let mut q = w::table.into_boxed();
    q = match state {
        Some(s) => q.filter(w::state.eq(s.as_str())),
        None => {
            q.filter(w::state.eq_any(["requested", "confirmed", "approved", "signed", "broadcast"]))
        }
    };
    Ok(q.order(w::created_at.asc())
        .limit(limit)
        .select(Withdrawal::as_select())
        .load(conn)
        .await?)
}

pub async fn timeline(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Vec<TimelineEntry>, WithdrawalError> {
    Ok(we::table
        .filter(we::withdrawal_id.eq(id))
        .order(we::id.asc())
        .select(TimelineEntry::as_select())
        .load(conn)
        .await?)
}

// ---- the worker's side ----

/// Claims the oldest withdrawal of `network` that needs the worker (approved,
/// signed or broadcast), is not leased and not in `skip`, for `lease`;
/// `SKIP LOCKED` so several workers never wait on or take the same row.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    network: Network,
    worker: &str,
    lease: Duration,
    skip: &[Uuid],
) -> Result<Option<Withdrawal>, WithdrawalError> {
    conn.transaction(async |c| {
        let now = Utc::now();
        let id: Option<Uuid> = w::table
            .filter(w::network.eq(network.code()))
            .filter(w::state.eq_any(["approved", "signed", "broadcast"]))
            .filter(w::claimed_until.is_null().or(w::claimed_until.lt(now)))
            .filter(w::id.ne_all(skip))
            .order(w::created_at.asc())
            .select(w::id)
            .for_update()
            .skip_locked()
            .first(c)
            .await
            .optional()?;
        let Some(id) = id else { return Ok(None) };
        Ok(Some(
            diesel::update(w::table.find(id))
                .set((
                    w::claimed_by.eq(Some(worker)),
                    w::claimed_until.eq(Some(now + lease)),
                ))
                .returning(Withdrawal::as_returning())
                .get_result(c)
                .await?,
        ))
    })
    .await
}

/// Gives a claimed withdrawal back (for another pass later).
pub async fn release(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
) -> Result<(), WithdrawalError> {
    diesel::update(w::table.find(id).filter(w::claimed_by.eq(worker)))
        .set((
            w::claimed_by.eq(None::<String>),
            w::claimed_until.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Notes why an approved withdrawal waits (e.g. the hot wallet is short);
/// shown in the admin report.
pub async fn set_waiting(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    reason: &str,
) -> Result<(), WithdrawalError> {
    diesel::update(w::table.find(id).filter(w::claimed_by.eq(worker)))
        .set(w::waiting_reason.eq(Some(reason)))
        .execute(conn)
        .await?;
    Ok(())
}

/// The next nonce for `hot_wallet`: after every nonce stored for it and not
/// below the chain's count of its transactions.
pub async fn next_nonce(
    conn: &mut AsyncPgConnection,
    network: Network,
    hot_wallet: &str,
    chain_count: u64,
) -> Result<u64, WithdrawalError> {
    let max: Option<i64> = w::table
        .filter(w::network.eq(network.code()))
        .filter(w::hot_wallet.eq(hot_wallet))
        .select(diesel::dsl::max(w::nonce))
        .first(conn)
        .await?;
    let stored = max.and_then(|m| u64::try_from(m).ok()).map_or(0, |m| m + 1);
    Ok(stored.max(chain_count))
}

/// Stores the signed bytes and txid (state `signed`) — before broadcasting.
pub async fn record_signed(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    signed: &Signed,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Sign {
            txid: signed.txid.clone(),
        },
        &format!("worker:{worker}"),
        None,
        Some(worker),
        Some(signed),
    )
    .await
}

pub async fn mark_broadcast(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Broadcast,
        &format!("worker:{worker}"),
        None,
        Some(worker),
        None,
    )
    .await
}

/// The network's confirmations were reached: the holds are posted.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    confirmations: u32,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Confirmed { confirmations },
        &format!("worker:{worker}"),
        None,
        Some(worker),
        None,
    )
    .await
}

/// Failed on chain (e.g. receipt status 0): the holds are voided.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    reason: &str,
) -> Result<Withdrawal, WithdrawalError> {
    transition(
        conn,
        id,
        Event::Fail {
            reason: reason.to_owned(),
        },
        &format!("worker:{worker}"),
        None,
        Some(worker),
        None,
    )
    .await
}

/// Stores the confirmations seen so far (below the network's count).
pub async fn note_confirmations(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    worker: &str,
    confirmations: u32,
) -> Result<(), WithdrawalError> {
    diesel::update(w::table.find(id).filter(w::claimed_by.eq(worker)))
        .set(w::confirmations.eq(i32::try_from(confirmations).unwrap_or(i32::MAX)))
        .execute(conn)
        .await?;
    Ok(())
}
