//! Set-based posting for the ledger's big batches (a day's payouts):
//! the same guarantees as [`super::post_batch`] (references once, accounts
//! locked in id order, balances moved in the transaction that inserts the
//! transfers, overdraft refused) in a fixed number of statements, whatever
//! the number of transfers. Only single-phase transfers of one kind and one
//! asset; holds go through `post_batch`.

use std::collections::{HashMap, HashSet};

use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::store::valid_reference;
use super::{AccountKind, LedgerError, TransferKind};
use crate::money::Asset;

/// Opens (or finds) the accounts of many owners, one asset and kind, in two
/// statements. `owners` are owner keys (`Owner::key`), each once. Returns
/// the account ids in the order of `owners`.
pub async fn open_accounts(
    conn: &mut AsyncPgConnection,
    owners: &[String],
    asset: Asset,
    kind: AccountKind,
) -> Result<Vec<i64>, LedgerError> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    // Most days every account exists: look them up first (`= ANY` keeps to
    // the (owner, asset, kind) index), then open only the missing ones.
    let mut rows = lookup(conn, owners, asset, kind).await?;
    if rows.len() < owners.len() {
        let found: HashSet<&str> = rows.iter().map(|r| r.owner.as_str()).collect();
        let mut missing: Vec<&str> = owners
            .iter()
            .map(String::as_str)
            .filter(|o| !found.contains(o))
            .collect();
        missing.sort_unstable();
        sql_query(
            "INSERT INTO accounts (owner, asset, kind, debits_must_not_exceed_credits) \
             SELECT o, $2, $3, $4 FROM unnest($1::text[]) AS o \
             ON CONFLICT (owner, asset, kind) DO NOTHING",
        )
        .bind::<Array<Text>, _>(&missing)
        .bind::<Text, _>(asset.code())
        .bind::<Text, _>(kind.as_str())
        .bind::<diesel::sql_types::Bool, _>(kind.debits_must_not_exceed_credits())
        .execute(conn)
        .await?;
        // Opened now, or concurrently by someone else: read them back.
        rows.extend(lookup(conn, &missing, asset, kind).await?);
    }
    let by_owner: HashMap<String, i64> = rows.into_iter().map(|r| (r.owner, r.id)).collect();
    owners
        .iter()
        .map(|o| {
            by_owner
                .get(o)
                .copied()
                .ok_or_else(|| LedgerError::Corrupt(format!("account {o} vanished")))
        })
        .collect()
}

#[derive(QueryableByName)]
struct OwnedAccount {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    owner: String,
}

/// The accounts of `owners` (owner keys) of one asset and kind that exist.
async fn lookup<S: diesel::serialize::ToSql<Text, diesel::pg::Pg> + Sync>(
    conn: &mut AsyncPgConnection,
    owners: &[S],
    asset: Asset,
    kind: AccountKind,
) -> Result<Vec<OwnedAccount>, LedgerError> {
    Ok(sql_query(
        "SELECT id, owner FROM accounts WHERE owner = ANY($1) AND asset = $2 AND kind = $3",
    )
    .bind::<Array<Text>, _>(owners)
    .bind::<Text, _>(asset.code())
    .bind::<Text, _>(kind.as_str())
    .load(conn)
    .await?)
}

/// Many transfers of one kind and asset, as columns.
#[derive(Debug, Clone)]
pub struct BulkTransfers {
    pub kind: TransferKind,
    pub asset: Asset,
    pub references: Vec<String>,
    pub debits: Vec<i64>,
    pub credits: Vec<i64>,
    pub amounts: Vec<Decimal>,
    /// The transfer a row corrects, if any.
    pub corrects: Vec<Option<Uuid>>,
    /// Stored on every row.
    pub metadata: serde_json::Value,
}

impl BulkTransfers {
    pub fn new(kind: TransferKind, asset: Asset, metadata: serde_json::Value) -> Self {
        BulkTransfers {
            kind,
            asset,
            references: Vec::new(),
            debits: Vec::new(),
            credits: Vec::new(),
            amounts: Vec::new(),
            corrects: Vec::new(),
            metadata,
        }
    }

    pub fn push(&mut self, reference: String, debit: i64, credit: i64, amount: Decimal) {
        self.push_correcting(reference, debit, credit, amount, None);
    }

    pub fn push_correcting(
        &mut self,
        reference: String,
        debit: i64,
        credit: i64,
        amount: Decimal,
        corrects: Option<Uuid>,
    ) {
        self.references.push(reference);
        self.debits.push(debit);
        self.credits.push(credit);
        self.amounts.push(amount);
        self.corrects.push(corrects);
    }

    pub fn len(&self) -> usize {
        self.references.len()
    }

    pub fn is_empty(&self) -> bool {
        self.references.is_empty()
    }

    fn validate(&self) -> Result<(), LedgerError> {
        let n = self.references.len();
        if [
            self.debits.len(),
            self.credits.len(),
            self.amounts.len(),
            self.corrects.len(),
        ]
        .iter()
        .any(|l| *l != n)
        {
            return Err(LedgerError::Corrupt("bulk columns differ in length".into()));
        }
        let mut seen = HashSet::with_capacity(n);
        for (i, reference) in self.references.iter().enumerate() {
            if !valid_reference(reference) {
                return Err(LedgerError::InvalidReference);
            }
            if !seen.insert(reference.as_str()) {
                return Err(LedgerError::DuplicateReferenceInBatch(reference.clone()));
            }
            if self.debits.get(i) == self.credits.get(i) {
                return Err(LedgerError::SameAccount);
            }
            let amount = self.amounts.get(i).copied().unwrap_or_default();
            if amount <= Decimal::ZERO {
                return Err(LedgerError::NonPositiveAmount);
            }
            if amount.normalize().scale() > self.asset.ledger_decimals() {
                return Err(LedgerError::Corrupt(format!(
                    "{amount} has more decimals than {}",
                    self.asset
                )));
            }
        }
        Ok(())
    }
}

/// What a bulk post did: new rows, and rows that existed with the same content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkPosted {
    pub created: usize,
    pub existing: usize,
}

/// Posts `batch` in one transaction (a savepoint inside the caller's):
/// references that exist with the same content are skipped (replay), with
/// other content refused; every account is locked in id order first; the
/// balances of the accounts move by the new rows only; an account that
/// would break its flag fails the whole batch.
pub async fn post_bulk(
    conn: &mut AsyncPgConnection,
    batch: &BulkTransfers,
) -> Result<BulkPosted, LedgerError> {
    if batch.is_empty() {
        return Err(LedgerError::EmptyBatch);
    }
    batch.validate()?;
    conn.transaction(async |c| post_bulk_in_tx(c, batch).await)
        .await
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    asset: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    debits_must_not_exceed_credits: bool,
}

#[derive(QueryableByName)]
struct Outcome {
    #[diesel(sql_type = BigInt)]
    inserted: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    refused: Option<i64>,
}

#[derive(QueryableByName)]
struct Conflict {
    #[diesel(sql_type = Text)]
    reference: String,
}

async fn post_bulk_in_tx(
    conn: &mut AsyncPgConnection,
    batch: &BulkTransfers,
) -> Result<BulkPosted, LedgerError> {
    let mut ids: Vec<i64> = batch
        .debits
        .iter()
        .chain(batch.credits.iter())
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let locked: Vec<Locked> = sql_query(
        "SELECT id, asset, debits_must_not_exceed_credits FROM accounts \
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .load(conn)
    .await?;
    let by_id: HashMap<i64, &Locked> = locked.iter().map(|a| (a.id, a)).collect();
    for id in &ids {
        let acc = by_id.get(id).ok_or(LedgerError::UnknownAccount(*id))?;
        if acc.asset != batch.asset.code() {
            return Err(LedgerError::AssetMismatch {
                account_id: *id,
                account_asset: acc
                    .asset
                    .parse()
                    .map_err(|_| LedgerError::Corrupt(format!("asset {}", acc.asset)))?,
                asset: batch.asset,
            });
        }
    }

    let transfer_ids: Vec<Uuid> = (0..batch.len()).map(|_| Uuid::now_v7()).collect();
    // One statement: insert the new rows, sum their effect per account, move
    // the balances where the flags allow, and report what was refused.
    let outcome: Outcome = sql_query(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::numeric[], $6::uuid[]) \
                 AS u(id, reference, debit, credit, amount, corrects) \
         ), ins AS ( \
             INSERT INTO transfers (id, reference, kind, phase, asset, debit_account_id, credit_account_id, \
                                    amount, corrects_id, metadata) \
             SELECT id, reference, $7, 'single', $8, debit, credit, amount, corrects, $9 FROM input \
             ORDER BY credit, reference \
             ON CONFLICT (reference) DO NOTHING \
             RETURNING debit_account_id, credit_account_id, amount \
         ), d AS ( \
             SELECT id, sum(dp) AS dp, sum(cp) AS cp FROM ( \
                 SELECT debit_account_id AS id, amount AS dp, 0::numeric AS cp FROM ins \
                 UNION ALL SELECT credit_account_id, 0::numeric, amount FROM ins) x \
             GROUP BY id \
         ), upd AS ( \
             UPDATE accounts a SET debits_posted = a.debits_posted + d.dp, \
                                   credits_posted = a.credits_posted + d.cp \
             FROM d WHERE a.id = d.id \
               AND (NOT a.debits_must_not_exceed_credits \
                    OR a.debits_posted + d.dp + a.debits_pending <= a.credits_posted + d.cp) \
               AND (NOT a.credits_must_not_exceed_debits \
                    OR a.credits_posted + d.cp + a.credits_pending <= a.debits_posted + d.dp) \
             RETURNING a.id \
         ) \
         SELECT (SELECT count(*) FROM ins) AS inserted, \
                (SELECT min(id) FROM d WHERE id NOT IN (SELECT id FROM upd)) AS refused",
    )
    .bind::<Array<SqlUuid>, _>(&transfer_ids)
    .bind::<Array<Text>, _>(&batch.references)
    .bind::<Array<BigInt>, _>(&batch.debits)
    .bind::<Array<BigInt>, _>(&batch.credits)
    .bind::<Array<Numeric>, _>(&batch.amounts)
    .bind::<Array<Nullable<SqlUuid>>, _>(&batch.corrects)
    .bind::<Text, _>(batch.kind.as_str())
    .bind::<Text, _>(batch.asset.code())
    .bind::<Jsonb, _>(&batch.metadata)
    .get_result(conn)
    .await?;
    if let Some(refused) = outcome.refused {
        let limited_by_debits = by_id
            .get(&refused)
            .is_some_and(|a| a.debits_must_not_exceed_credits);
        return Err(if limited_by_debits {
            LedgerError::InsufficientFunds {
                account_id: refused,
                asset: batch.asset,
            }
        } else {
            LedgerError::CreditLimitExceeded {
                account_id: refused,
                asset: batch.asset,
            }
        });
    }
    let created = usize::try_from(outcome.inserted)
        .map_err(|_| LedgerError::Corrupt("negative count".into()))?;
    if created < batch.len() {
        // Replayed references must carry the same content.
        let conflict: Option<Conflict> = sql_query(
            "SELECT u.reference FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::numeric[], $7::uuid[]) \
                 AS u(reference, debit, credit, amount, corrects) \
             JOIN transfers t ON t.reference = u.reference \
             WHERE t.kind <> $5 OR t.asset <> $6 OR t.phase <> 'single' \
                OR t.debit_account_id <> u.debit OR t.credit_account_id <> u.credit OR t.amount <> u.amount \
                OR t.corrects_id IS DISTINCT FROM u.corrects \
             LIMIT 1",
        )
        .bind::<Array<Text>, _>(&batch.references)
        .bind::<Array<BigInt>, _>(&batch.debits)
        .bind::<Array<BigInt>, _>(&batch.credits)
        .bind::<Array<Numeric>, _>(&batch.amounts)
        .bind::<Text, _>(batch.kind.as_str())
        .bind::<Text, _>(batch.asset.code())
        .bind::<Array<Nullable<SqlUuid>>, _>(&batch.corrects)
        .get_result(conn)
        .await
        .map(Some)
        .or_else(|e| match e {
            diesel::result::Error::NotFound => Ok(None),
            other => Err(other),
        })?;
        if let Some(c) = conflict {
            return Err(LedgerError::ReferenceConflict(c.reference));
        }
    }
    Ok(BulkPosted {
        created,
        existing: batch.len() - created,
    })
}
