//! Ledger storage: the one place that writes transfers and account balances.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Numeric};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::types::*;
use crate::money::Asset;
use crate::schema::{accounts, transfers};

/// Rows per INSERT: PostgreSQL allows 65 535 bind parameters per statement.
const INSERT_CHUNK: usize = 4_000;

#[derive(Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
struct AccountRow {
    id: i64,
    owner: String,
    asset: String,
    kind: String,
    debits_pending: Decimal,
    debits_posted: Decimal,
    credits_pending: Decimal,
    credits_posted: Decimal,
    debits_must_not_exceed_credits: bool,
    credits_must_not_exceed_debits: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<AccountRow> for Account {
    type Error = LedgerError;
    fn try_from(r: AccountRow) -> Result<Self, LedgerError> {
        Ok(Account {
            id: r.id,
            owner: r.owner,
            asset: parse_asset(&r.asset)?,
            kind: AccountKind::parse(&r.kind)
                .ok_or_else(|| LedgerError::Corrupt(format!("account kind {:?}", r.kind)))?,
            debits_pending: r.debits_pending,
            debits_posted: r.debits_posted,
            credits_pending: r.credits_pending,
            credits_posted: r.credits_posted,
            debits_must_not_exceed_credits: r.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits: r.credits_must_not_exceed_debits,
            created_at: r.created_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = transfers, check_for_backend(diesel::pg::Pg))]
struct TransferRow {
    id: Uuid,
    reference: String,
    kind: String,
    phase: String,
    asset: String,
    debit_account_id: i64,
    credit_account_id: i64,
    amount: Decimal,
    pending_id: Option<Uuid>,
    corrects_id: Option<Uuid>,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl TryFrom<TransferRow> for Transfer {
    type Error = LedgerError;
    fn try_from(r: TransferRow) -> Result<Self, LedgerError> {
        Ok(Transfer {
            id: r.id,
            kind: TransferKind::parse(&r.kind)
                .ok_or_else(|| LedgerError::Corrupt(format!("transfer kind {:?}", r.kind)))?,
            phase: Phase::parse(&r.phase)
                .ok_or_else(|| LedgerError::Corrupt(format!("transfer phase {:?}", r.phase)))?,
            asset: parse_asset(&r.asset)?,
            reference: r.reference,
            debit_account_id: r.debit_account_id,
            credit_account_id: r.credit_account_id,
            amount: r.amount.normalize(),
            pending_id: r.pending_id,
            corrects_id: r.corrects_id,
            metadata: r.metadata,
            created_at: r.created_at,
        })
    }
}

fn parse_asset(code: &str) -> Result<Asset, LedgerError> {
    Asset::from_str(code).map_err(|_| LedgerError::Corrupt(format!("asset {code:?}")))
}

/// Opens the account (owner, asset, kind), or returns it when it exists.
pub async fn open_account(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
    asset: Asset,
    kind: AccountKind,
) -> Result<Account, LedgerError> {
    let owner_key = owner.key();
    diesel::insert_into(accounts::table)
        .values((
            accounts::owner.eq(&owner_key),
            accounts::asset.eq(asset.to_string()),
            accounts::kind.eq(kind.as_str()),
            accounts::debits_must_not_exceed_credits.eq(kind.debits_must_not_exceed_credits()),
        ))
        .on_conflict((accounts::owner, accounts::asset, accounts::kind))
        .do_nothing()
        .execute(conn)
        .await?;
    account_by_key(conn, owner, asset, kind)
        .await?
        .ok_or_else(|| LedgerError::Corrupt(format!("account {owner_key} vanished")))
}

pub async fn account_by_key(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
    asset: Asset,
    kind: AccountKind,
) -> Result<Option<Account>, LedgerError> {
    accounts::table
        .filter(accounts::owner.eq(owner.key()))
        .filter(accounts::asset.eq(asset.to_string()))
        .filter(accounts::kind.eq(kind.as_str()))
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Account::try_from)
        .transpose()
}

pub async fn account(conn: &mut AsyncPgConnection, id: i64) -> Result<Account, LedgerError> {
    accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(LedgerError::UnknownAccount(id))?
        .try_into()
}

/// Every account of an owner, ordered by asset then kind.
pub async fn balances_of_owner(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
) -> Result<Vec<Account>, LedgerError> {
    accounts::table
        .filter(accounts::owner.eq(owner.key()))
        .order((accounts::asset, accounts::kind))
        .select(AccountRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
}

pub async fn transfer(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Transfer, LedgerError> {
    transfers::table
        .find(id)
        .select(TransferRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(LedgerError::UnknownTransfer(id))?
        .try_into()
}

pub async fn transfer_by_reference(
    conn: &mut AsyncPgConnection,
    reference: &str,
) -> Result<Option<Transfer>, LedgerError> {
    transfers::table
        .filter(transfers::reference.eq(reference))
        .select(TransferRow::as_select())
        .first(conn)
        .await
        .optional()?
        .map(Transfer::try_from)
        .transpose()
}

/// Transfers that touch an account, newest first; `before` is the cursor (a transfer id).
pub async fn transfers_of_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Transfer>, LedgerError> {
    let mut query = transfers::table
        .filter(
            transfers::debit_account_id
                .eq(account_id)
                .or(transfers::credit_account_id.eq(account_id)),
        )
        .select(TransferRow::as_select())
        .order(transfers::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(cursor) = before {
        query = query.filter(transfers::id.lt(cursor));
    }
    query
        .load(conn)
        .await?
        .into_iter()
        .map(Transfer::try_from)
        .collect()
}

/// Changes to one account's four balance columns.
#[derive(Default, Clone, Copy)]
struct Delta {
    debits_pending: Decimal,
    debits_posted: Decimal,
    credits_pending: Decimal,
    credits_posted: Decimal,
}

pub(crate) fn valid_reference(r: &str) -> bool {
    !r.is_empty() && r.chars().count() <= 200 && !r.chars().any(char::is_control)
}

/// Posts a batch of transfers atomically: all of them or none.
///
/// Runs in its own transaction (a savepoint when the caller is already in
/// one, so it composes with the caller's writes). Accounts are locked in id
/// order, so concurrent batches never deadlock, and each account's balances
/// are changed by one conditional UPDATE that refuses to overdraw; the
/// CHECK constraints on `accounts` stand behind it. A posting whose reference
/// was already posted with the same content is returned as
/// [`Posted::Existing`] and changes nothing.
pub async fn post_batch(
    conn: &mut AsyncPgConnection,
    postings: &[Posting],
) -> Result<Vec<Posted>, LedgerError> {
    if postings.is_empty() {
        return Err(LedgerError::EmptyBatch);
    }
    let mut seen = HashSet::with_capacity(postings.len());
    for p in postings {
        if !valid_reference(p.reference()) {
            return Err(LedgerError::InvalidReference);
        }
        if !seen.insert(p.reference()) {
            return Err(LedgerError::DuplicateReferenceInBatch(
                p.reference().to_owned(),
            ));
        }
        if let Posting::Transfer(t) = p {
            if t.debit_account_id == t.credit_account_id {
                return Err(LedgerError::SameAccount);
            }
            if t.amount.value() <= Decimal::ZERO {
                return Err(LedgerError::NonPositiveAmount);
            }
        }
    }
    conn.transaction(async |conn| post_batch_in_tx(conn, postings).await)
        .await
}

async fn post_batch_in_tx(
    conn: &mut AsyncPgConnection,
    postings: &[Posting],
) -> Result<Vec<Posted>, LedgerError> {
    // Holds being ended: immutable rows, so reading them unlocked is safe; the
    // unique index on pending_id makes their ending exactly-once.
    let pending_ids: Vec<Uuid> = postings
        .iter()
        .filter_map(|p| match p {
            Posting::PostPending { pending_id, .. } | Posting::VoidPending { pending_id, .. } => {
                Some(*pending_id)
            }
            Posting::Transfer(_) => None,
        })
        .collect();
    let holds: HashMap<Uuid, TransferRow> = if pending_ids.is_empty() {
        HashMap::new()
    } else {
        transfers::table
            .filter(transfers::id.eq_any(&pending_ids))
            .select(TransferRow::as_select())
            .load(conn)
            .await?
            .into_iter()
            .map(|r| (r.id, r))
            .collect()
    };

    let now = Utc::now();
    let mut rows = Vec::with_capacity(postings.len());
    // What each row would change, by reference, applied only if the row is new.
    let mut effects: HashMap<String, Vec<(i64, Delta)>> = HashMap::with_capacity(postings.len());
    for p in postings {
        let (row, effect) = match p {
            Posting::Transfer(t) => {
                let amount = t.amount.value();
                let (debit, credit) = if t.pending {
                    (
                        Delta {
                            debits_pending: amount,
                            ..Delta::default()
                        },
                        Delta {
                            credits_pending: amount,
                            ..Delta::default()
                        },
                    )
                } else {
                    (
                        Delta {
                            debits_posted: amount,
                            ..Delta::default()
                        },
                        Delta {
                            credits_posted: amount,
                            ..Delta::default()
                        },
                    )
                };
                let row = TransferRow {
                    id: Uuid::now_v7(),
                    reference: t.reference.clone(),
                    kind: t.kind.as_str().to_owned(),
                    phase: if t.pending {
                        Phase::Pending
                    } else {
                        Phase::Single
                    }
                    .as_str()
                    .to_owned(),
                    asset: t.amount.asset().to_string(),
                    debit_account_id: t.debit_account_id,
                    credit_account_id: t.credit_account_id,
                    amount,
                    pending_id: None,
                    corrects_id: t.corrects,
                    metadata: t.metadata.clone(),
                    created_at: now,
                };
                (
                    row,
                    vec![(t.debit_account_id, debit), (t.credit_account_id, credit)],
                )
            }
            Posting::PostPending {
                reference,
                pending_id,
                kind,
                amount,
            } => {
                let hold = hold_of(&holds, *pending_id)?;
                let posted = amount.unwrap_or(hold.amount);
                if posted <= Decimal::ZERO {
                    return Err(LedgerError::NonPositiveAmount);
                }
                if posted > hold.amount {
                    return Err(LedgerError::PostExceedsPending {
                        pending: hold.amount.normalize(),
                        posted: posted.normalize(),
                    });
                }
                let debit = Delta {
                    debits_pending: -hold.amount,
                    debits_posted: posted,
                    ..Delta::default()
                };
                let credit = Delta {
                    credits_pending: -hold.amount,
                    credits_posted: posted,
                    ..Delta::default()
                };
                let row = ending_row(hold, reference, *kind, Phase::Post, posted, now);
                (
                    row,
                    vec![
                        (hold.debit_account_id, debit),
                        (hold.credit_account_id, credit),
                    ],
                )
            }
            Posting::VoidPending {
                reference,
                pending_id,
                kind,
            } => {
                let hold = hold_of(&holds, *pending_id)?;
                let debit = Delta {
                    debits_pending: -hold.amount,
                    ..Delta::default()
                };
                let credit = Delta {
                    credits_pending: -hold.amount,
                    ..Delta::default()
                };
                let row = ending_row(hold, reference, *kind, Phase::Void, hold.amount, now);
                (
                    row,
                    vec![
                        (hold.debit_account_id, debit),
                        (hold.credit_account_id, credit),
                    ],
                )
            }
        };
        effects.insert(row.reference.clone(), effect);
        rows.push(row);
    }

    // Lock every account involved, in id order, and check them.
    let account_ids: Vec<i64> = {
        let mut ids: Vec<i64> = rows
            .iter()
            .flat_map(|r| [r.debit_account_id, r.credit_account_id])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let locked: HashMap<i64, AccountRow> = accounts::table
        .filter(accounts::id.eq_any(&account_ids))
        .order(accounts::id)
        .for_update()
        .select(AccountRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    for row in &rows {
        for id in [row.debit_account_id, row.credit_account_id] {
            let acc = locked.get(&id).ok_or(LedgerError::UnknownAccount(id))?;
            if acc.asset != row.asset {
                return Err(LedgerError::AssetMismatch {
                    account_id: id,
                    account_asset: parse_asset(&acc.asset)?,
                    asset: parse_asset(&row.asset)?,
                });
            }
        }
    }

    // Insert; a reference that exists already comes back as not inserted.
    let mut inserted: HashMap<String, TransferRow> = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(INSERT_CHUNK) {
        let result = diesel::insert_into(transfers::table)
            .values(chunk)
            .on_conflict(transfers::reference)
            .do_nothing()
            .returning(TransferRow::as_returning())
            .get_results::<TransferRow>(conn)
            .await;
        let created = match result {
            Ok(created) => created,
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                info,
            )) if info.constraint_name() == Some("transfers_pending_id_key") => {
                let id = chunk
                    .iter()
                    .find_map(|r| r.pending_id)
                    .unwrap_or_else(Uuid::nil);
                return Err(LedgerError::HoldAlreadyResolved(id));
            }
            Err(e) => return Err(e.into()),
        };
        inserted.extend(created.into_iter().map(|r| (r.reference.clone(), r)));
    }

    let missing: Vec<&str> = rows
        .iter()
        .filter(|r| !inserted.contains_key(&r.reference))
        .map(|r| r.reference.as_str())
        .collect();
    let existing: HashMap<String, TransferRow> = if missing.is_empty() {
        HashMap::new()
    } else {
        transfers::table
            .filter(transfers::reference.eq_any(&missing))
            .select(TransferRow::as_select())
            .load(conn)
            .await?
            .into_iter()
            .map(|r| (r.reference.clone(), r))
            .collect()
    };

    // Sum the effects of the new rows per account, in id order.
    let mut deltas: BTreeMap<i64, Delta> = BTreeMap::new();
    for row in &rows {
        if inserted.contains_key(&row.reference) {
            for (account_id, d) in effects.remove(&row.reference).unwrap_or_default() {
                let e = deltas.entry(account_id).or_default();
                e.debits_pending += d.debits_pending;
                e.debits_posted += d.debits_posted;
                e.credits_pending += d.credits_pending;
                e.credits_posted += d.credits_posted;
            }
        }
    }
    apply_deltas(conn, &deltas, &locked).await?;

    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(created) = inserted.remove(&row.reference) {
            out.push(Posted::Created(created.try_into()?));
        } else {
            let stored = existing
                .get(&row.reference)
                .ok_or_else(|| LedgerError::Corrupt(format!("reference {}", row.reference)))?;
            if !same_content(stored, &row) {
                return Err(LedgerError::ReferenceConflict(row.reference));
            }
            out.push(Posted::Existing(clone_row(stored).try_into()?));
        }
    }
    Ok(out)
}

fn hold_of(holds: &HashMap<Uuid, TransferRow>, id: Uuid) -> Result<&TransferRow, LedgerError> {
    let hold = holds.get(&id).ok_or(LedgerError::UnknownTransfer(id))?;
    if hold.phase != Phase::Pending.as_str() {
        return Err(LedgerError::NotPending(id));
    }
    Ok(hold)
}

fn ending_row(
    hold: &TransferRow,
    reference: &str,
    kind: TransferKind,
    phase: Phase,
    amount: Decimal,
    now: DateTime<Utc>,
) -> TransferRow {
    TransferRow {
        id: Uuid::now_v7(),
        reference: reference.to_owned(),
        kind: kind.as_str().to_owned(),
        phase: phase.as_str().to_owned(),
        asset: hold.asset.clone(),
        debit_account_id: hold.debit_account_id,
        credit_account_id: hold.credit_account_id,
        amount,
        pending_id: Some(hold.id),
        corrects_id: None,
        metadata: serde_json::Value::Object(Default::default()),
        created_at: now,
    }
}

fn clone_row(r: &TransferRow) -> TransferRow {
    TransferRow {
        id: r.id,
        reference: r.reference.clone(),
        kind: r.kind.clone(),
        phase: r.phase.clone(),
        asset: r.asset.clone(),
        debit_account_id: r.debit_account_id,
        credit_account_id: r.credit_account_id,
        amount: r.amount,
        pending_id: r.pending_id,
        corrects_id: r.corrects_id,
        metadata: r.metadata.clone(),
        created_at: r.created_at,
    }
}

/// Whether a stored transfer is the one a retry asks for (ids and times differ).
fn same_content(stored: &TransferRow, asked: &TransferRow) -> bool {
    stored.kind == asked.kind
        && stored.phase == asked.phase
        && stored.asset == asked.asset
        && stored.debit_account_id == asked.debit_account_id
        && stored.credit_account_id == asked.credit_account_id
        && stored.amount == asked.amount
        && stored.pending_id == asked.pending_id
        && stored.corrects_id == asked.corrects_id
}

#[derive(QueryableByName)]
struct UpdatedId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// One conditional UPDATE for every account of the batch; an account whose
/// flags would be broken is not updated, which fails the batch.
async fn apply_deltas(
    conn: &mut AsyncPgConnection,
    deltas: &BTreeMap<i64, Delta>,
    locked: &HashMap<i64, AccountRow>,
) -> Result<(), LedgerError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = deltas.keys().copied().collect();
    let col = |f: fn(&Delta) -> Decimal| deltas.values().map(f).collect::<Vec<Decimal>>();
    let updated: Vec<UpdatedId> = diesel::sql_query(
        "UPDATE accounts a SET \
            debits_pending = a.debits_pending + d.dq, \
            debits_posted = a.debits_posted + d.dp, \
            credits_pending = a.credits_pending + d.cq, \
            credits_posted = a.credits_posted + d.cp \
         FROM unnest($1::bigint[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[]) \
              AS d(id, dq, dp, cq, cp) \
         WHERE a.id = d.id \
           AND (NOT a.debits_must_not_exceed_credits \
                OR a.debits_posted + d.dp + a.debits_pending + d.dq <= a.credits_posted + d.cp) \
           AND (NOT a.credits_must_not_exceed_debits \
                OR a.credits_posted + d.cp + a.credits_pending + d.cq <= a.debits_posted + d.dp) \
         RETURNING a.id",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Numeric>, _>(col(|d| d.debits_pending))
    .bind::<Array<Numeric>, _>(col(|d| d.debits_posted))
    .bind::<Array<Numeric>, _>(col(|d| d.credits_pending))
    .bind::<Array<Numeric>, _>(col(|d| d.credits_posted))
    .load(conn)
    .await?;
    if updated.len() == ids.len() {
        return Ok(());
    }
    let done: HashSet<i64> = updated.into_iter().map(|u| u.id).collect();
    let refused = ids
        .into_iter()
        .find(|id| !done.contains(id))
        .ok_or_else(|| LedgerError::Corrupt("account update count".into()))?;
    let acc = locked
        .get(&refused)
        .ok_or(LedgerError::UnknownAccount(refused))?;
    let asset = parse_asset(&acc.asset)?;
    Err(if acc.debits_must_not_exceed_credits {
        LedgerError::InsufficientFunds {
            account_id: refused,
            asset,
        }
    } else {
        LedgerError::CreditLimitExceeded {
            account_id: refused,
            asset,
        }
    })
}

#[derive(QueryableByName)]
struct ProblemRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    problem: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    asset: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    account_id: Option<i64>,
    #[diesel(sql_type = Numeric)]
    expected: Decimal,
    #[diesel(sql_type = Numeric)]
    actual: Decimal,
}

/// Checks invariants 1-3 over the whole ledger: per asset debits equal
/// credits, every cached balance equals the sum of its transfers, and no
/// customer or partner balance is negative. Empty means reconciled.
pub async fn reconcile(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<ReconciliationProblem>, LedgerError> {
    let rows: Vec<ProblemRow> = diesel::sql_query(
        "SELECT problem, asset, account_id, expected, actual FROM ledger_reconciliation() \
         ORDER BY problem, asset, account_id",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ReconciliationProblem {
            problem: r.problem,
            asset: r.asset,
            account_id: r.account_id,
            expected: r.expected.normalize(),
            actual: r.actual.normalize(),
        })
        .collect())
}
