//! Deposits, stored: what the chain scanners saw arrive at customers'
//! deposit addresses, one row per on-chain output — `(network, txid, kind,
//! index)` where `kind` is `output` (a bitcoin-like vout), `native` (an EVM
//! transaction's own value, index 0) or `token` (an ERC-20/BEP-20 `Transfer`
//! log, index = its log index in the block).
//!
//! States:
//!
//! ```text
//!   pending ──(confirmations ≥ network's)──▶ credited
//!      │  ▲                                    │
//!  block left│ seen in a block again            │ block left
//!      ▼  │                                    ▼
//!   orphaned                                reversed ──(seen in a block again)──▶ pending (next round)
//! ```
//!
//! - [`observe`] upserts what a scanner saw. It never changes the asset,
//!   amount, address or customer of a known row: a different answer for the
//!   same key is [`DepositsError::Conflict`] (logged, nothing overwritten).
//! - [`credit_ready`] credits each deposit deep enough in its own
//!   transaction under the row's lock: `deposit` transfer from the network's
//!   custody account to the customer's account with the reference
//!   `deposit:<network>:<txid>:<kind>:<index>` (the ledger answers a replay of
//!   a reference as a no-op, so even a raced state update cannot credit twice).
//! - [`orphan`]: the transaction's block left the chain (or it was double
//!   spent). A pending deposit becomes `orphaned` and is never credited; a
//!   credited one is `reversed` by correcting transfers.
//!
//! # Reversal policy
//!
//! Reversing a credit takes back what the customer's balance can give:
//! `min(amount, available)` is debited from the customer account (a
//! `deposit` transfer correcting the credit). What the customer already
//! spent or has on hold — the shortfall — is debited instead from the
//! customer's **deposit receivable**, the ledger account (`user:<id>`,
//! asset, `equity`), which may go negative: a negative balance there is a
//! debt of the customer to the platform, visible to operations (the
//! reversal is audited with the shortfall and logged as an error) and never
//! shown as a customer balance. Customer balances thus never go negative and
//! the ledger still reconciles; the custody account is made whole in both
//! cases.
//!
//! If a reversed deposit's transaction comes back into the chain (re-mined
//! after the reorganisation) it is pending again and credited in the next
//! round (`credit_round` 2, reference suffixed `:2`, …): net, each output is
//! credited once while it is in the chain.
//!
//! # Precision
//!
//! Amounts arrive in on-chain base units. The credit is floored to the
//! asset's ledger precision (USDT on BSC has 18 decimals on chain, 6 in the
//! ledger); the rest is stored as `dust` and never credited. An output whose
//! whole amount is dust is ignored ([`Observation::DustOnly`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::identity::audit::{self, AuditEntry};
use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, Posting, TransferKind};
use crate::money::{Amount, Asset, Network, decimals_on, floor_to_decimals, units_to_decimal};
use crate::schema::{
    accounts, deposit_address_imports as imp, deposit_addresses as da, deposit_scan_blocks as sb,
    deposit_scan_cursors as sc, deposits as d, networks,
};

/// The actor of the scanner's audit records.
pub const ACTOR: &str = "system:deposit-scanner";

/// How many deposits one [`credit_ready`] call credits at most.
const CREDIT_BATCH: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DepositsError {
    #[error("{asset} is not carried on {network}")]
    Unsupported { asset: Asset, network: Network },
    #[error("invalid observation: {0}")]
    Invalid(String),
    #[error("deposit {key} was seen before as {known}, now as {seen}: not overwritten")]
    Conflict {
        key: String,
        known: String,
        seen: String,
    },
    #[error("stored deposit is corrupt: {0}")]
    Corrupt(String),
    #[error("ledger: {0}")]
    Ledger(LedgerError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl From<LedgerError> for DepositsError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Database(d) => DepositsError::Database(d),
            other => DepositsError::Ledger(other),
        }
    }
}

/// What part of a transaction a deposit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// An output (vout) of a bitcoin-like transaction.
    Output,
    /// The value of an EVM transaction itself (index 0).
    Native,
    /// An ERC-20/BEP-20 `Transfer` log (index: the log index).
    Token,
}

impl OutputKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputKind::Output => "output",
            OutputKind::Native => "native",
            OutputKind::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [OutputKind::Output, OutputKind::Native, OutputKind::Token]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a deposit is on chain: the unique key of a deposit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutputRef {
    pub network: Network,
    pub txid: String,
    pub kind: OutputKind,
    pub index: u64,
}

impl OutputRef {
    /// `deposit:<network>:<txid>:<kind>:<index>`: the reference of the
    /// first credit (and the prefix of every other transfer of the deposit).
    pub fn reference(&self) -> String {
        format!(
            "deposit:{}:{}:{}:{}",
            self.network.code(),
            self.txid,
            self.kind.as_str(),
            self.index
        )
    }
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.network.code(),
            self.txid,
            self.kind.as_str(),
            self.index
        )
    }
}

/// What a scanner saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub network: Network,
    pub asset: Asset,
    pub txid: String,
    pub kind: OutputKind,
    pub index: u64,
    /// As stored in `deposit_addresses` (EIP-55 for EVM networks).
    pub address: String,
    /// On-chain base units: satoshis, wei, token base units.
    pub amount_units: u128,
    /// `None` while the transaction is not in a block (mempool).
    pub block_height: Option<u64>,
    pub block_hash: Option<String>,
    /// 0 outside a block.
    pub confirmations: u32,
}

impl Observed {
    pub fn output_ref(&self) -> OutputRef {
        OutputRef {
            network: self.network,
            txid: self.txid.clone(),
            kind: self.kind,
            index: self.index,
        }
    }
}

/// A stored deposit.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = d, check_for_backend(diesel::pg::Pg))]
pub struct Deposit {
    pub id: Uuid,
    pub user_id: Uuid,
    pub network: String,
    pub asset: String,
    pub txid: String,
    pub kind: String,
    pub output_index: i64,
    pub address: String,
    pub amount: Decimal,
    pub dust: Decimal,
    pub block_height: Option<i64>,
    pub block_hash: Option<String>,
    pub confirmations: i32,
    pub state: String,
    pub credit_round: i32,
    pub transfer_id: Option<Uuid>,
    pub reversal_id: Option<Uuid>,
    pub shortfall: Decimal,
    pub first_seen_at: DateTime<Utc>,
    pub credited_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Deposit {
    pub fn output_ref(&self) -> Result<OutputRef, DepositsError> {
        Ok(OutputRef {
            network: self
                .network
                .parse()
                .map_err(|_| DepositsError::Corrupt(format!("network {:?}", self.network)))?,
            txid: self.txid.clone(),
            kind: OutputKind::parse(&self.kind)
                .ok_or_else(|| DepositsError::Corrupt(format!("kind {:?}", self.kind)))?,
            index: u64::try_from(self.output_index)
                .map_err(|_| DepositsError::Corrupt(format!("index {}", self.output_index)))?,
        })
    }

    fn asset_code(&self) -> Result<Asset, DepositsError> {
        self.asset
            .parse()
            .map_err(|_| DepositsError::Corrupt(format!("asset {:?}", self.asset)))
    }

    /// The reference of this round's credit.
    fn credit_reference(&self) -> Result<String, DepositsError> {
        Ok(with_round(
            self.output_ref()?.reference(),
            self.credit_round,
        ))
    }

    fn reversal_reference(&self, part: &str) -> Result<String, DepositsError> {
        Ok(with_round(
            format!("{}:{part}", self.output_ref()?.reference()),
            self.credit_round,
        ))
    }
}

fn with_round(base: String, round: i32) -> String {
    if round <= 1 {
        base
    } else {
        format!("{base}:{round}")
    }
}

/// What [`observe`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The address is not a deposit address of the network: ignored.
    NotOurs,
    /// Nothing of the amount reaches the ledger precision: ignored.
    DustOnly,
    /// First seen now (pending).
    New(Deposit),
    /// Its block, height or confirmations changed.
    Updated(Deposit),
    Unchanged(Deposit),
    /// Orphaned or reversed before, seen in a block again: pending.
    Revived(Deposit),
    /// Credited, but its block left the chain (it is back in the mempool):
    /// the credit was reversed.
    Reversed(Deposit),
}

impl Observation {
    pub fn deposit(&self) -> Option<&Deposit> {
        match self {
            Observation::NotOurs | Observation::DustOnly => None,
            Observation::New(d)
            | Observation::Updated(d)
            | Observation::Unchanged(d)
            | Observation::Revived(d)
            | Observation::Reversed(d) => Some(d),
        }
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, DepositsError> {
    i64::try_from(v).map_err(|_| DepositsError::Invalid(format!("{what} {v} is too large")))
}

/// The on-chain amount as (credited at ledger precision, dust).
fn split_amount(o: &Observed) -> Result<(Decimal, Decimal), DepositsError> {
    let decimals = decimals_on(o.asset, o.network).ok_or(DepositsError::Unsupported {
        asset: o.asset,
        network: o.network,
    })?;
    let on_chain = units_to_decimal(o.amount_units, decimals).ok_or_else(|| {
        DepositsError::Invalid(format!("amount {} units is too large", o.amount_units))
    })?;
    let credited = floor_to_decimals(on_chain, o.asset.ledger_decimals()).normalize();
    Ok((credited, (on_chain - credited).normalize()))
}

/// Records what a scanner saw (see [`Observation`]). Run per output; each
/// call is its own transaction (a savepoint inside the caller's).
pub async fn observe(
    conn: &mut AsyncPgConnection,
    o: &Observed,
) -> Result<Observation, DepositsError> {
    if o.txid.is_empty() {
        return Err(DepositsError::Invalid("empty txid".into()));
    }
    let block = match (o.block_height, &o.block_hash) {
        (Some(h), Some(hash)) => Some((to_i64(h, "block height")?, hash.clone())),
        (None, None) => None,
        _ => {
            return Err(DepositsError::Invalid(
                "block height and hash go together".into(),
            ));
        }
    };
    let (amount, dust) = split_amount(o)?;
    if amount <= Decimal::ZERO {
        return Ok(Observation::DustOnly);
    }
    let index = to_i64(o.index, "index")?;
    let confirmations = if block.is_some() {
        i32::try_from(o.confirmations).unwrap_or(i32::MAX)
    } else {
        0
    };
    let key = o.output_ref();
    conn.transaction(async |c| {
        let owner: Option<Uuid> = da::table
            .filter(da::network.eq(o.network.code()))
            .filter(da::address.eq(&o.address))
            .select(da::user_id)
            .first(c)
            .await
            .optional()?;
        let Some(user) = owner else {
            return Ok(Observation::NotOurs);
        };
        let (height, hash) = match &block {
            Some((h, hash)) => (Some(*h), Some(hash.clone())),
            None => (None, None),
        };
        let inserted: Option<Deposit> = diesel::insert_into(d::table)
            .values((
                d::id.eq(Uuid::now_v7()),
                d::user_id.eq(user),
                d::network.eq(o.network.code()),
                d::asset.eq(o.asset.code()),
                d::txid.eq(&o.txid),
                d::kind.eq(o.kind.as_str()),
                d::output_index.eq(index),
                d::address.eq(&o.address),
                d::amount.eq(amount),
                d::dust.eq(dust),
                d::block_height.eq(height),
                d::block_hash.eq(&hash),
                d::confirmations.eq(confirmations),
            ))
            .on_conflict((d::network, d::txid, d::kind, d::output_index))
            .do_nothing()
            .returning(Deposit::as_returning())
            .get_result(c)
            .await
            .optional()?;
        if let Some(row) = inserted {
            tracing::info!(deposit = %row.id, key = %key, amount = %amount, asset = %o.asset,
                confirmations, "deposit seen");
            return Ok(Observation::New(row));
        }
        let row = lock(c, &key).await?.ok_or_else(|| {
            DepositsError::Corrupt(format!("deposit {key} vanished after a conflict"))
        })?;
        let known = format!(
            "{} {} to {} (user {})",
            row.amount.normalize(),
            row.asset,
            row.address,
            row.user_id
        );
        let seen = format!("{amount} {} to {} (user {user})", o.asset, o.address);
        if row.asset != o.asset.code()
            || row.amount != amount
            || row.dust != dust
            || row.address != o.address
            || row.user_id != user
        {
            tracing::error!(key = %key, %known, %seen,
                "a deposit was seen with other content than before: not overwritten");
            return Err(DepositsError::Conflict {
                key: key.to_string(),
                known,
                seen,
            });
        }
        let same_place = row.block_height == height
            && row.block_hash == hash
            && row.confirmations == confirmations;
        match (row.state.as_str(), block.is_some()) {
            ("pending" | "credited", true) | ("pending", false) => {
                if same_place {
                    return Ok(Observation::Unchanged(row));
                }
                Ok(Observation::Updated(
                    place(c, row.id, height, hash, confirmations).await?,
                ))
            }
            ("credited", false) => {
                // Its block left the chain; it waits in the mempool.
                let reversed = reverse(c, row, "its block left the chain").await?;
                Ok(Observation::Reversed(reversed))
            }
            ("orphaned" | "reversed", true) => {
                let round = if row.state == "reversed" {
                    row.credit_round.saturating_add(1)
                } else {
                    row.credit_round
                };
                let revived: Deposit = diesel::update(d::table.find(row.id))
                    .set((
                        d::state.eq("pending"),
                        d::credit_round.eq(round),
                        d::block_height.eq(height),
                        d::block_hash.eq(&hash),
                        d::confirmations.eq(confirmations),
                        d::updated_at.eq(Utc::now()),
                    ))
                    .returning(Deposit::as_returning())
                    .get_result(c)
                    .await?;
                record(
                    c,
                    &revived,
                    "revive",
                    Some(&row.state),
                    serde_json::json!({
                        "block_height": height,
                        "block_hash": hash,
                        "credit_round": round,
                    }),
                )
                .await?;
                tracing::warn!(deposit = %row.id, key = %key, from = %row.state,
                    "deposit back in the chain: pending again");
                Ok(Observation::Revived(revived))
            }
            // Orphaned or reversed and only in the mempool: counts once mined.
            _ => Ok(Observation::Unchanged(row)),
        }
    })
    .await
}

async fn place(
    c: &mut AsyncPgConnection,
    id: Uuid,
    height: Option<i64>,
    hash: Option<String>,
    confirmations: i32,
) -> Result<Deposit, DepositsError> {
    Ok(diesel::update(d::table.find(id))
        .set((
            d::block_height.eq(height),
            d::block_hash.eq(hash),
            d::confirmations.eq(confirmations),
            d::updated_at.eq(Utc::now()),
        ))
        .returning(Deposit::as_returning())
        .get_result(c)
        .await?)
}

async fn lock(
    c: &mut AsyncPgConnection,
    key: &OutputRef,
) -> Result<Option<Deposit>, DepositsError> {
    Ok(d::table
        .filter(d::network.eq(key.network.code()))
        .filter(d::txid.eq(&key.txid))
        .filter(d::kind.eq(key.kind.as_str()))
        .filter(d::output_index.eq(to_i64(key.index, "index")?))
        .select(Deposit::as_select())
        .for_update()
        .first(c)
        .await
        .optional()?)
}

/// Appends the audit record of one transition.
async fn record(
    c: &mut AsyncPgConnection,
    row: &Deposit,
    event: &str,
    from: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), DepositsError> {
    audit::append(
        c,
        &AuditEntry::new(
            ACTOR,
            format!("deposit.{event}"),
            format!("deposit:{}", row.id),
        )
        .before(serde_json::json!({ "state": from }))
        .after(serde_json::json!({
            "state": row.state,
            "user": row.user_id,
            "network": row.network,
            "txid": row.txid,
            "kind": row.kind,
            "index": row.output_index,
            "asset": row.asset,
            "amount": row.amount.normalize(),
            "detail": detail,
        })),
    )
    .await?;
    Ok(())
}

/// The confirmations `network` needs before a deposit is credited
/// (`networks.confirmations`; operations may change it).
pub async fn required_confirmations(
    conn: &mut AsyncPgConnection,
    network: Network,
) -> Result<u32, DepositsError> {
    let n: Option<i32> = networks::table
        .find(network.code())
        .select(networks::confirmations)
        .first(conn)
        .await
        .optional()?;
    Ok(n.and_then(|n| u32::try_from(n).ok())
        .unwrap_or_else(|| network.confirmations())
        .max(1))
}

/// Credits every pending deposit of `network` in a block with at least
/// `required` confirmations, each in its own transaction under its row's
/// lock. Returns the deposits credited by this call (not those another
/// caller credited meanwhile).
pub async fn credit_ready(
    conn: &mut AsyncPgConnection,
    network: Network,
    required: u32,
) -> Result<Vec<Deposit>, DepositsError> {
    let required = i32::try_from(required.max(1)).unwrap_or(i32::MAX);
    let ids: Vec<Uuid> = d::table
        .filter(d::network.eq(network.code()))
        .filter(d::state.eq("pending"))
        .filter(d::block_hash.is_not_null())
        .filter(d::confirmations.ge(required))
        .order(d::first_seen_at.asc())
        .limit(CREDIT_BATCH)
        .select(d::id)
        .load(conn)
        .await?;
    let mut credited = Vec::new();
    for id in ids {
        if let Some(row) = credit_one(conn, id, required).await? {
            credited.push(row);
        }
    }
    Ok(credited)
}

async fn credit_one(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    required: i32,
) -> Result<Option<Deposit>, DepositsError> {
    conn.transaction(async |c| {
        let row: Deposit = d::table
            .find(id)
            .select(Deposit::as_select())
            .for_update()
            .first(c)
            .await?;
        if row.state != "pending" || row.block_hash.is_none() || row.confirmations < required {
            return Ok(None); // credited (or orphaned) by someone else meanwhile
        }
        let key = row.output_ref()?;
        let asset = row.asset_code()?;
        let amount = Amount::from_decimal(row.amount, asset)
            .map_err(|e| DepositsError::Corrupt(format!("amount of {key}: {e}")))?;
        let customer =
            ledger::open_account(c, &Owner::User(row.user_id), asset, AccountKind::Customer)
                .await?;
        let custody = ledger::open_account(
            c,
            &Owner::Network(key.network.code().to_owned()),
            asset,
            AccountKind::Custody,
        )
        .await?;
        let posted = ledger::post_batch(
            c,
            &[NewTransfer::new(
                row.credit_reference()?,
                TransferKind::Deposit,
                custody.id,
                customer.id,
                amount,
            )
            .with_metadata(serde_json::json!({
                "deposit": row.id,
                "network": row.network,
                "txid": row.txid,
                "kind": row.kind,
                "index": row.output_index,
                "block_hash": row.block_hash,
            }))
            .into()],
        )
        .await?;
        let transfer = posted
            .as_slice()
            .first()
            .ok_or(DepositsError::Ledger(LedgerError::EmptyBatch))?
            .transfer()
            .clone();
        let now = Utc::now();
        let updated: Deposit = diesel::update(d::table.find(id))
            .set((
                d::state.eq("credited"),
                d::transfer_id.eq(Some(transfer.id)),
                d::credited_at.eq(Some(now)),
                d::updated_at.eq(now),
            ))
            .returning(Deposit::as_returning())
            .get_result(c)
            .await?;
        record(
            c,
            &updated,
            "credit",
            Some("pending"),
            serde_json::json!({
                "transfer": transfer.id,
                "reference": transfer.reference,
                "confirmations": row.confirmations,
                "block_hash": row.block_hash,
                "credit_round": row.credit_round,
            }),
        )
        .await?;
        tracing::info!(deposit = %id, key = %key, amount = %row.amount.normalize(),
            asset = %row.asset, "deposit credited");
        Ok(Some(updated))
    })
    .await
}

/// The deposit's block left the chain, or the transaction was double spent:
/// a pending deposit becomes `orphaned` (never credited), a credited one is
/// `reversed` (see the module's reversal policy). Orphaned, reversed or
/// unknown deposits are left alone (`None`).
pub async fn orphan(
    conn: &mut AsyncPgConnection,
    key: &OutputRef,
    reason: &str,
) -> Result<Option<Deposit>, DepositsError> {
    conn.transaction(async |c| {
        let Some(row) = lock(c, key).await? else {
            return Ok(None);
        };
        match row.state.as_str() {
            "pending" => {
                let updated: Deposit = diesel::update(d::table.find(row.id))
                    .set((
                        d::state.eq("orphaned"),
                        d::confirmations.eq(0),
                        d::updated_at.eq(Utc::now()),
                    ))
                    .returning(Deposit::as_returning())
                    .get_result(c)
                    .await?;
                record(
                    c,
                    &updated,
                    "orphan",
                    Some("pending"),
                    serde_json::json!({
                        "reason": reason,
                        "block_hash": row.block_hash,
                        "block_height": row.block_height,
                    }),
                )
                .await?;
                tracing::warn!(deposit = %row.id, key = %key, reason, "pending deposit orphaned");
                Ok(Some(updated))
            }
            "credited" => Ok(Some(reverse(c, row, reason).await?)),
            _ => Ok(None),
        }
    })
    .await
}

/// Reverses the credit of a locked, credited row (inside a transaction).
async fn reverse(
    c: &mut AsyncPgConnection,
    row: Deposit,
    reason: &str,
) -> Result<Deposit, DepositsError> {
    let key = row.output_ref()?;
    let asset = row.asset_code()?;
    let original = row
        .transfer_id
        .ok_or_else(|| DepositsError::Corrupt(format!("credited deposit {key} has no transfer")))?;
    let customer =
        ledger::open_account(c, &Owner::User(row.user_id), asset, AccountKind::Customer).await?;
    let custody = ledger::open_account(
        c,
        &Owner::Network(key.network.code().to_owned()),
        asset,
        AccountKind::Custody,
    )
    .await?;
    let receivable =
        ledger::open_account(c, &Owner::User(row.user_id), asset, AccountKind::Equity).await?;
    // Lock the three accounts in id order (as post_batch does) before
    // reading what the customer can give back.
    let mut ids = vec![customer.id, custody.id, receivable.id];
    ids.sort_unstable();
    let _: Vec<i64> = accounts::table
        .filter(accounts::id.eq_any(&ids))
        .order(accounts::id)
        .for_update()
        .select(accounts::id)
        .load(c)
        .await?;
    let customer = ledger::account(c, customer.id).await?;
    let available = customer.available().max(Decimal::ZERO);
    let taken_back = row.amount.min(available);
    let shortfall = (row.amount - taken_back).normalize();
    let meta = serde_json::json!({
        "deposit": row.id,
        "reason": reason,
        "network": row.network,
        "txid": row.txid,
    });
    let mut postings: Vec<Posting> = Vec::new();
    let amount_of = |v: Decimal| {
        Amount::from_decimal(v, asset)
            .map_err(|e| DepositsError::Corrupt(format!("amount of {key}: {e}")))
    };
    if taken_back > Decimal::ZERO {
        postings.push(
            NewTransfer::new(
                row.reversal_reference("reversal")?,
                TransferKind::Deposit,
                customer.id,
                custody.id,
                amount_of(taken_back)?,
            )
            .correcting(original)
            .with_metadata(meta.clone())
            .into(),
        );
    }
    if shortfall > Decimal::ZERO {
        postings.push(
            NewTransfer::new(
                row.reversal_reference("shortfall")?,
                TransferKind::Deposit,
                receivable.id,
                custody.id,
                amount_of(shortfall)?,
            )
            .correcting(original)
            .with_metadata(meta)
            .into(),
        );
    }
    let posted = ledger::post_batch(c, &postings).await?;
    let reversal_id = posted
        .as_slice()
        .first()
        .ok_or(DepositsError::Ledger(LedgerError::EmptyBatch))?
        .transfer()
        .id;
    let updated: Deposit = diesel::update(d::table.find(row.id))
        .set((
            d::state.eq("reversed"),
            d::reversal_id.eq(Some(reversal_id)),
            d::shortfall.eq(shortfall),
            d::confirmations.eq(0),
            d::updated_at.eq(Utc::now()),
        ))
        .returning(Deposit::as_returning())
        .get_result(c)
        .await?;
    record(
        c,
        &updated,
        "reverse",
        Some("credited"),
        serde_json::json!({
            "reason": reason,
            "original": original,
            "reversal": reversal_id,
            "taken_back": taken_back.normalize(),
            "shortfall": shortfall,
            "receivable_account": receivable.id,
            "block_hash": row.block_hash,
            "block_height": row.block_height,
        }),
    )
    .await?;
    if shortfall > Decimal::ZERO {
        tracing::error!(deposit = %row.id, key = %key, user = %row.user_id, %shortfall,
            asset = %row.asset, "deposit reversed but partly spent: shortfall booked to the customer's deposit receivable");
    } else {
        tracing::warn!(deposit = %row.id, key = %key, reason, "credited deposit reversed");
    }
    Ok(updated)
}

/// Sets the confirmations of the pending and credited deposits of `network`
/// in the last `window` blocks up to `head` to `head − height + 1` (EVM
/// scanners). Older deposits keep what they had (at least `window`): the
/// count is followed while it matters, not forever.
pub async fn update_confirmations(
    conn: &mut AsyncPgConnection,
    network: Network,
    head: u64,
    window: u64,
) -> Result<usize, DepositsError> {
    Ok(diesel::sql_query(
        "UPDATE deposits SET confirmations = LEAST($2 - block_height + 1, 2147483647)::int, \
                updated_at = now() \
         WHERE network = $1 AND state IN ('pending', 'credited') \
           AND block_height > $2 - $3 AND block_height <= $2 \
           AND confirmations <> LEAST($2 - block_height + 1, 2147483647)::int",
    )
    .bind::<Text, _>(network.code())
    .bind::<BigInt, _>(to_i64(head, "head")?)
    .bind::<BigInt, _>(to_i64(window.saturating_add(1), "window")?)
    .execute(conn)
    .await?)
}

/// Pending and credited deposits of `network` in a block above `height`
/// (all when `None`), lowest first: what a scanner re-checks after a
/// reorganisation.
pub async fn in_blocks_above(
    conn: &mut AsyncPgConnection,
    network: Network,
    height: Option<u64>,
) -> Result<Vec<Deposit>, DepositsError> {
    let floor = match height {
        Some(h) => to_i64(h, "height")?,
        None => -1,
    };
    Ok(d::table
        .filter(d::network.eq(network.code()))
        .filter(d::state.eq_any(["pending", "credited"]))
        .filter(d::block_height.gt(floor))
        .order((d::block_height.asc(), d::id.asc()))
        .select(Deposit::as_select())
        .load(conn)
        .await?)
}

/// Pending deposits of `network` (in a block or not).
pub async fn pending(
    conn: &mut AsyncPgConnection,
    network: Network,
) -> Result<Vec<Deposit>, DepositsError> {
    Ok(d::table
        .filter(d::network.eq(network.code()))
        .filter(d::state.eq("pending"))
        .order(d::first_seen_at.asc())
        .select(Deposit::as_select())
        .load(conn)
        .await?)
}

pub async fn get(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Deposit, DepositsError> {
    Ok(d::table
        .find(id)
        .select(Deposit::as_select())
        .first(conn)
        .await?)
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    key: &OutputRef,
) -> Result<Option<Deposit>, DepositsError> {
    Ok(d::table
        .filter(d::network.eq(key.network.code()))
        .filter(d::txid.eq(&key.txid))
        .filter(d::kind.eq(key.kind.as_str()))
        .filter(d::output_index.eq(to_i64(key.index, "index")?))
        .select(Deposit::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Every deposit of `network`, oldest first (tests and operations).
pub async fn of_network(
    conn: &mut AsyncPgConnection,
    network: Network,
) -> Result<Vec<Deposit>, DepositsError> {
    Ok(d::table
        .filter(d::network.eq(network.code()))
        .order(d::first_seen_at.asc())
        .select(Deposit::as_select())
        .load(conn)
        .await?)
}

/// A customer's deposits, newest first, each with the confirmations its
/// network requires now.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    limit: i64,
) -> Result<Vec<(Deposit, i32)>, DepositsError> {
    Ok(d::table
        .inner_join(networks::table)
        .filter(d::user_id.eq(user))
        .order((d::first_seen_at.desc(), d::id.desc()))
        .limit(limit)
        .select((Deposit::as_select(), networks::confirmations))
        .load(conn)
        .await?)
}

// ---------------------------------------------------------------- scanning state

/// Where a network's scanner continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// EVM: the last scanned height; bitcoin-like: the height of `block_hash`
    /// when known.
    pub height: Option<u64>,
    /// EVM: the hash of that block; bitcoin-like: listsinceblock's `lastblock`.
    pub block_hash: String,
}

pub async fn cursor(
    conn: &mut AsyncPgConnection,
    network: Network,
) -> Result<Option<Cursor>, DepositsError> {
    let row: Option<(Option<i64>, String)> = sc::table
        .find(network.code())
        .select((sc::height, sc::block_hash))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(height, block_hash)| Cursor {
        height: height.and_then(|h| u64::try_from(h).ok()),
        block_hash,
    }))
}

pub async fn set_cursor(
    conn: &mut AsyncPgConnection,
    network: Network,
    cursor: &Cursor,
) -> Result<(), DepositsError> {
    let height = cursor.height.map(|h| to_i64(h, "height")).transpose()?;
    diesel::insert_into(sc::table)
        .values((
            sc::network.eq(network.code()),
            sc::height.eq(height),
            sc::block_hash.eq(&cursor.block_hash),
        ))
        .on_conflict(sc::network)
        .do_update()
        .set((
            sc::height.eq(height),
            sc::block_hash.eq(&cursor.block_hash),
            sc::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Remembers the hashes of scanned blocks (EVM), replacing what was stored
/// at those heights.
pub async fn record_blocks(
    conn: &mut AsyncPgConnection,
    network: Network,
    blocks: &[(u64, String)],
) -> Result<(), DepositsError> {
    for chunk in blocks.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|(h, hash)| {
                Ok((
                    sb::network.eq(network.code()),
                    sb::height.eq(to_i64(*h, "height")?),
                    sb::block_hash.eq(hash.clone()),
                ))
            })
            .collect::<Result<Vec<_>, DepositsError>>()?;
        diesel::insert_into(sb::table)
            .values(rows)
            .on_conflict((sb::network, sb::height))
            .do_update()
            .set(sb::block_hash.eq(diesel::upsert::excluded(sb::block_hash)))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The stored hashes of scanned blocks of `network` at or below `height`,
/// highest first, at most `limit`.
pub async fn scanned_blocks(
    conn: &mut AsyncPgConnection,
    network: Network,
    height: u64,
    limit: i64,
) -> Result<Vec<(u64, String)>, DepositsError> {
    let rows: Vec<(i64, String)> = sb::table
        .filter(sb::network.eq(network.code()))
        .filter(sb::height.le(to_i64(height, "height")?))
        .order(sb::height.desc())
        .limit(limit)
        .select((sb::height, sb::block_hash))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(h, hash)| u64::try_from(h).ok().map(|h| (h, hash)))
        .collect())
}

/// Forgets stored block hashes above `height` (they left the chain) and
/// below `keep_from` (old enough not to matter).
pub async fn forget_blocks(
    conn: &mut AsyncPgConnection,
    network: Network,
    above: Option<u64>,
    below: Option<u64>,
) -> Result<(), DepositsError> {
    if let Some(h) = above {
        diesel::delete(
            sb::table
                .filter(sb::network.eq(network.code()))
                .filter(sb::height.gt(to_i64(h, "height")?)),
        )
        .execute(conn)
        .await?;
    }
    if let Some(h) = below {
        diesel::delete(
            sb::table
                .filter(sb::network.eq(network.code()))
                .filter(sb::height.lt(to_i64(h, "height")?)),
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Every deposit address of `network`, as stored.
pub async fn addresses_of(
    conn: &mut AsyncPgConnection,
    network: Network,
) -> Result<Vec<String>, DepositsError> {
    Ok(da::table
        .filter(da::network.eq(network.code()))
        .select(da::address)
        .load(conn)
        .await?)
}

/// Deposit addresses of `network` not yet imported into `watcher` (a
/// bitcoin-like node's wallet), oldest first.
pub async fn unimported_addresses(
    conn: &mut AsyncPgConnection,
    network: Network,
    watcher: &str,
) -> Result<Vec<String>, DepositsError> {
    Ok(da::table
        .filter(da::network.eq(network.code()))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            imp::table
                .filter(imp::network.eq(da::network))
                .filter(imp::address.eq(da::address))
                .filter(imp::watcher.eq(watcher)),
        )))
        .order(da::created_at.asc())
        .select(da::address)
        .load(conn)
        .await?)
}

pub async fn mark_imported(
    conn: &mut AsyncPgConnection,
    network: Network,
    addresses: &[String],
    watcher: &str,
) -> Result<(), DepositsError> {
    if addresses.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = addresses
        .iter()
        .map(|a| {
            (
                imp::network.eq(network.code()),
                imp::address.eq(a.as_str()),
                imp::watcher.eq(watcher),
            )
        })
        .collect();
    diesel::insert_into(imp::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}
