//! Set-based ledger posting (`ledger::open_accounts`, `ledger::post_bulk`)
//! against the real PostgreSQL: balances move exactly, replays are no-ops,
//! conflicts and overdrafts fail the whole batch, validation stores nothing,
//! corrections are recorded, and concurrent posts of one batch move money once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Numeric};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::ledger::{
    self, Account, AccountKind, BulkPosted, BulkTransfers, LedgerError, NewTransfer, Owner, Phase,
    TransferKind,
};
use domain::money::{Amount, Asset, Sign};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

fn amount(s: &str, asset: Asset) -> Amount {
    Amount::parse(s, asset, Sign::Positive).unwrap()
}

/// `n` satoshis as a BTC decimal.
fn sats(n: i64) -> Decimal {
    Decimal::new(n, 8)
}

fn user_key() -> String {
    Owner::User(Uuid::new_v4()).key()
}

async fn open(
    conn: &mut AsyncPgConnection,
    owner: &Owner,
    asset: Asset,
    kind: AccountKind,
) -> Account {
    ledger::open_account(conn, owner, asset, kind)
        .await
        .unwrap()
}

async fn customer(conn: &mut AsyncPgConnection, asset: Asset) -> Account {
    open(
        conn,
        &Owner::User(Uuid::new_v4()),
        asset,
        AccountKind::Customer,
    )
    .await
}

async fn custody(conn: &mut AsyncPgConnection, asset: Asset) -> Account {
    open(
        conn,
        &Owner::Network(format!("test-{}", Uuid::new_v4().simple())),
        asset,
        AccountKind::Custody,
    )
    .await
}

/// Funds `to` from `from` through the ordinary `post_batch`.
async fn deposit(conn: &mut AsyncPgConnection, from: i64, to: i64, value: Amount) {
    let t = NewTransfer::new(
        format!("deposit:{}", Uuid::new_v4()),
        TransferKind::Deposit,
        from,
        to,
        value,
    );
    ledger::post_batch(conn, &[t.into()]).await.unwrap();
}

async fn get(conn: &mut AsyncPgConnection, id: i64) -> Account {
    ledger::account(conn, id).await.unwrap()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn transfer_count(conn: &mut AsyncPgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM transfers")
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
}

async fn account_count(conn: &mut AsyncPgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM accounts")
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
}

#[derive(QueryableByName)]
struct Sums {
    #[diesel(sql_type = Numeric)]
    debits: Decimal,
    #[diesel(sql_type = Numeric)]
    credits: Decimal,
}

/// Posted debits and credits summed over `ids`.
async fn posted_sums(conn: &mut AsyncPgConnection, ids: &[i64]) -> (Decimal, Decimal) {
    let s: Sums = diesel::sql_query(
        "SELECT coalesce(sum(debits_posted), 0) AS debits, coalesce(sum(credits_posted), 0) AS credits \
         FROM accounts WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .get_result(conn)
    .await
    .unwrap();
    (s.debits.normalize(), s.credits.normalize())
}

/// Every account row, to compare before and after a refused batch.
async fn all_balances(
    conn: &mut AsyncPgConnection,
) -> Vec<(i64, Decimal, Decimal, Decimal, Decimal)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Numeric)]
        debits_pending: Decimal,
        #[diesel(sql_type = Numeric)]
        debits_posted: Decimal,
        #[diesel(sql_type = Numeric)]
        credits_pending: Decimal,
        #[diesel(sql_type = Numeric)]
        credits_posted: Decimal,
    }
    diesel::sql_query(
        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted \
         FROM accounts ORDER BY id",
    )
    .load::<Row>(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.id,
            r.debits_pending,
            r.debits_posted,
            r.credits_pending,
            r.credits_posted,
        )
    })
    .collect()
}

async fn assert_reconciled(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(
        problems.is_empty(),
        "ledger does not reconcile: {problems:#?}"
    );
}

fn payouts(asset: Asset) -> BulkTransfers {
    BulkTransfers::new(
        TransferKind::Payout,
        asset,
        serde_json::json!({"settlement": "test"}),
    )
}

#[tokio::test]
async fn open_accounts_creates_missing_and_returns_existing_in_input_order() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();

    // Owners 1 and 3 already have their BTC customer account; owner 2 only
    // a BTC custody account and owner 4 only an ETH customer account, which
    // must not be mistaken for the accounts asked for.
    let owners: Vec<Owner> = (0..6).map(|_| Owner::User(Uuid::new_v4())).collect();
    let keys: Vec<String> = owners.iter().map(Owner::key).collect();
    let existing1 = open(&mut conn, &owners[1], Asset::BTC, AccountKind::Customer).await;
    let existing3 = open(&mut conn, &owners[3], Asset::BTC, AccountKind::Customer).await;
    let other_kind = open(&mut conn, &owners[2], Asset::BTC, AccountKind::Custody).await;
    let other_asset = open(&mut conn, &owners[4], Asset::ETH, AccountKind::Customer).await;
    // An existing account keeps its balance.
    let bank = custody(&mut conn, Asset::BTC).await;
    deposit(&mut conn, bank.id, existing3.id, amount("0.75", Asset::BTC)).await;
    let accounts_before = account_count(&mut conn).await;

    let ids = ledger::open_accounts(&mut conn, &keys, Asset::BTC, AccountKind::Customer)
        .await
        .unwrap();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[1], existing1.id);
    assert_eq!(ids[3], existing3.id);
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "ids must be distinct: {ids:?}");
    assert!(!ids.contains(&other_kind.id));
    assert!(!ids.contains(&other_asset.id));
    assert_eq!(account_count(&mut conn).await, accounts_before + 4);

    for (id, key) in ids.iter().zip(&keys) {
        let a = get(&mut conn, *id).await;
        assert_eq!(&a.owner, key);
        assert_eq!(a.asset, Asset::BTC);
        assert_eq!(a.kind, AccountKind::Customer);
        assert!(a.debits_must_not_exceed_credits, "customer flag on {id}");
        assert!(!a.credits_must_not_exceed_debits);
    }
    assert_eq!(get(&mut conn, existing3.id).await.available(), dec!(0.75));
    assert_eq!(get(&mut conn, ids[0]).await.available(), Decimal::ZERO);

    // Again, in another order: the same ids, in the new order, nothing created.
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    let again = ledger::open_accounts(&mut conn, &reversed, Asset::BTC, AccountKind::Customer)
        .await
        .unwrap();
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(again, expected);
    assert_eq!(account_count(&mut conn).await, accounts_before + 4);

    // The same owners as custody accounts: owner 2's existing one is found,
    // the rest are new and have no overdraft flag.
    let custody_ids = ledger::open_accounts(&mut conn, &keys, Asset::BTC, AccountKind::Custody)
        .await
        .unwrap();
    assert_eq!(custody_ids[2], other_kind.id);
    assert_eq!(account_count(&mut conn).await, accounts_before + 9);
    for id in &custody_ids {
        assert!(!ids.contains(id));
        let a = get(&mut conn, *id).await;
        assert_eq!(a.kind, AccountKind::Custody);
        assert!(!a.debits_must_not_exceed_credits);
    }

    // Partners are protected like customers.
    let partner_keys = vec![Owner::Partner(Uuid::new_v4()).key()];
    let partner =
        ledger::open_accounts(&mut conn, &partner_keys, Asset::USDT, AccountKind::Partner)
            .await
            .unwrap();
    assert!(
        get(&mut conn, partner[0])
            .await
            .debits_must_not_exceed_credits
    );

    assert_eq!(
        ledger::open_accounts(&mut conn, &[], Asset::BTC, AccountKind::Customer)
            .await
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_reconciled(&mut conn).await;
}

/// 500 payouts to 400 customers (the first 100 get two): amount of payout
/// `i` is `(i + 1) * 1000 + 7` satoshis.
const N: usize = 500;
const RECIPIENTS: usize = 400;

fn payout_sats(i: usize) -> i64 {
    i64::try_from(i).unwrap() * 1000 + 1007
}

#[tokio::test]
async fn post_bulk_moves_every_balance_exactly_and_replays_are_no_ops() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    // The source is a partner account (flagged), funded with the batch sum
    // plus one BTC.
    let source = open(
        &mut conn,
        &Owner::Partner(Uuid::new_v4()),
        Asset::BTC,
        AccountKind::Partner,
    )
    .await;
    // sum over i of ((i + 1) * 1000 + 7) = 1000 * 500 * 501 / 2 + 7 * 500
    //   = 125 250 000 + 3 500 = 125 253 500 satoshis
    let total = dec!(1.252535);
    deposit(
        &mut conn,
        bank.id,
        source.id,
        amount("2.252535", Asset::BTC),
    )
    .await;

    let keys: Vec<String> = (0..RECIPIENTS).map(|_| user_key()).collect();
    let recipients = ledger::open_accounts(&mut conn, &keys, Asset::BTC, AccountKind::Customer)
        .await
        .unwrap();
    // One recipient had money already.
    deposit(&mut conn, bank.id, recipients[7], amount("0.5", Asset::BTC)).await;

    let mut batch = payouts(Asset::BTC);
    for i in 0..N {
        batch.push(
            format!("payout:day1:{i}"),
            source.id,
            recipients[i % RECIPIENTS],
            sats(payout_sats(i)),
        );
    }
    assert_eq!(batch.len(), N);
    let before = transfer_count(&mut conn).await;

    let posted = ledger::post_bulk(&mut conn, &batch).await.unwrap();
    assert_eq!(
        posted,
        BulkPosted {
            created: N,
            existing: 0
        }
    );
    assert_eq!(transfer_count(&mut conn).await, before + 500);

    let s = get(&mut conn, source.id).await;
    assert_eq!(s.debits_posted, total);
    assert_eq!(s.credits_posted, dec!(2.252535));
    assert_eq!(s.available(), dec!(1));
    let (debits, credits) = posted_sums(&mut conn, &recipients).await;
    assert_eq!(debits, Decimal::ZERO);
    assert_eq!(credits, total + dec!(0.5));
    // Recipient 0 got payouts 0 and 400: 1007 + 401007 satoshis.
    assert_eq!(
        get(&mut conn, recipients[0]).await.available(),
        dec!(0.00402014)
    );
    // Recipient 7 had 0.5 and got payouts 7 and 407: 8007 + 408007 satoshis.
    assert_eq!(
        get(&mut conn, recipients[7]).await.available(),
        dec!(0.50416014)
    );
    // Recipient 250 got payout 250 only: 251007 satoshis.
    assert_eq!(
        get(&mut conn, recipients[250]).await.available(),
        dec!(0.00251007)
    );
    // Recipient 399 got payout 399 only: 400007 satoshis.
    assert_eq!(
        get(&mut conn, recipients[399]).await.available(),
        dec!(0.00400007)
    );

    // The stored rows are what was asked for.
    let t = ledger::transfer_by_reference(&mut conn, "payout:day1:499")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, TransferKind::Payout);
    assert_eq!(t.phase, Phase::Single);
    assert_eq!(t.asset, Asset::BTC);
    assert_eq!(t.debit_account_id, source.id);
    assert_eq!(t.credit_account_id, recipients[99]);
    assert_eq!(t.amount, dec!(0.00500007));
    assert_eq!(t.pending_id, None);
    assert_eq!(t.corrects_id, None);
    assert_eq!(t.metadata, serde_json::json!({"settlement": "test"}));
    assert_reconciled(&mut conn).await;

    // The exact same batch again: nothing new, no balance moves.
    let balances = all_balances(&mut conn).await;
    let replay = ledger::post_bulk(&mut conn, &batch).await.unwrap();
    assert_eq!(
        replay,
        BulkPosted {
            created: 0,
            existing: N
        }
    );
    assert_eq!(transfer_count(&mut conn).await, before + 500);
    assert_eq!(all_balances(&mut conn).await, balances);

    // A partial replay: 100 old rows and 5 new ones; only the new ones move money.
    let mut mixed = payouts(Asset::BTC);
    for i in 0..100 {
        mixed.push(
            format!("payout:day1:{i}"),
            source.id,
            recipients[i % RECIPIENTS],
            sats(payout_sats(i)),
        );
    }
    for i in 0..5 {
        mixed.push(
            format!("payout:day2:{i}"),
            source.id,
            recipients[300 + i],
            dec!(0.01),
        );
    }
    let posted = ledger::post_bulk(&mut conn, &mixed).await.unwrap();
    assert_eq!(
        posted,
        BulkPosted {
            created: 5,
            existing: 100
        }
    );
    assert_eq!(transfer_count(&mut conn).await, before + 505);
    assert_eq!(get(&mut conn, source.id).await.available(), dec!(0.95));
    // Recipient 300 got payout 300 (301007 satoshis) and 0.01 now.
    assert_eq!(
        get(&mut conn, recipients[300]).await.available(),
        dec!(0.01301007)
    );
    // Recipient 0 (in the replayed part) did not move.
    assert_eq!(
        get(&mut conn, recipients[0]).await.available(),
        dec!(0.00402014)
    );
    let (_, credits) = posted_sums(&mut conn, &recipients).await;
    assert_eq!(credits, total + dec!(0.5) + dec!(0.05));
    assert_reconciled(&mut conn).await;

    // One reused reference with another amount among new rows: all or nothing.
    let balances = all_balances(&mut conn).await;
    let count = transfer_count(&mut conn).await;
    let mut conflicting = payouts(Asset::BTC);
    for (i, r) in recipients.iter().enumerate().take(3) {
        conflicting.push(format!("payout:day3:{i}"), source.id, *r, dec!(0.1));
    }
    conflicting.push(
        "payout:day1:42".to_owned(),
        source.id,
        recipients[42],
        sats(payout_sats(42) + 1),
    );
    let err = ledger::post_bulk(&mut conn, &conflicting)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::ReferenceConflict(r) if r == "payout:day1:42"),
        "{err:?}"
    );
    assert_eq!(transfer_count(&mut conn).await, count);
    assert_eq!(all_balances(&mut conn).await, balances);
    for i in 0..3 {
        assert!(
            ledger::transfer_by_reference(&mut conn, &format!("payout:day3:{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    let stored = ledger::transfer_by_reference(&mut conn, "payout:day1:42")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.amount, sats(payout_sats(42)));

    // Another credit account under a reused reference conflicts as well.
    let mut other_credit = payouts(Asset::BTC);
    other_credit.push(
        "payout:day1:43".to_owned(),
        source.id,
        recipients[44],
        sats(payout_sats(43)),
    );
    let err = ledger::post_bulk(&mut conn, &other_credit)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::ReferenceConflict(r) if r == "payout:day1:43"),
        "{err:?}"
    );
    // And another kind.
    let mut other_kind = BulkTransfers::new(TransferKind::Fee, Asset::BTC, serde_json::json!({}));
    other_kind.push(
        "payout:day1:44".to_owned(),
        source.id,
        recipients[44],
        sats(payout_sats(44)),
    );
    let err = ledger::post_bulk(&mut conn, &other_kind).await.unwrap_err();
    assert!(
        matches!(&err, LedgerError::ReferenceConflict(r) if r == "payout:day1:44"),
        "{err:?}"
    );
    assert_eq!(transfer_count(&mut conn).await, count);
    assert_eq!(all_balances(&mut conn).await, balances);
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn an_overdraft_fails_the_whole_bulk_batch() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, bank.id, alice.id, amount("1", Asset::BTC)).await;
    let keys: Vec<String> = (0..10).map(|_| user_key()).collect();
    let recipients = ledger::open_accounts(&mut conn, &keys, Asset::BTC, AccountKind::Customer)
        .await
        .unwrap();
    let bob = customer(&mut conn, Asset::BTC).await;

    // 10 × 0.15 = 1.5 from alice, who has 1; plus a row from the bank to bob
    // that alone would be fine.
    let mut batch = BulkTransfers::new(TransferKind::Adjustment, Asset::BTC, serde_json::json!({}));
    batch.push("bank-to-bob".to_owned(), bank.id, bob.id, dec!(3));
    for (i, r) in recipients.iter().enumerate() {
        batch.push(format!("alice:{i}"), alice.id, *r, dec!(0.15));
    }
    let count = transfer_count(&mut conn).await;
    let balances = all_balances(&mut conn).await;
    let err = ledger::post_bulk(&mut conn, &batch).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::InsufficientFunds { account_id, asset: Asset::BTC } if account_id == alice.id),
        "{err:?}"
    );
    assert_eq!(transfer_count(&mut conn).await, count);
    assert_eq!(all_balances(&mut conn).await, balances);
    assert_eq!(get(&mut conn, alice.id).await.available(), dec!(1));
    assert_eq!(get(&mut conn, bob.id).await.available(), Decimal::ZERO);
    assert!(
        ledger::transfer_by_reference(&mut conn, "bank-to-bob")
            .await
            .unwrap()
            .is_none()
    );
    assert_reconciled(&mut conn).await;

    // A hold counts against the balance: with 0.3 held, 0.8 is too much.
    let hold = NewTransfer::new(
        "withdrawal:alice",
        TransferKind::WithdrawalHold,
        alice.id,
        bank.id,
        amount("0.3", Asset::BTC),
    )
    .pending();
    ledger::post_batch(&mut conn, &[hold.into()]).await.unwrap();
    let mut batch = payouts(Asset::BTC);
    for (i, r) in recipients.iter().enumerate().take(8) {
        batch.push(format!("held:{i}"), alice.id, *r, dec!(0.1));
    }
    let count = transfer_count(&mut conn).await;
    let balances = all_balances(&mut conn).await;
    let err = ledger::post_bulk(&mut conn, &batch).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::InsufficientFunds { account_id, .. } if account_id == alice.id),
        "{err:?}"
    );
    assert_eq!(transfer_count(&mut conn).await, count);
    assert_eq!(all_balances(&mut conn).await, balances);

    // Exactly what is available (0.7) passes and leaves alice at zero.
    let mut exact = payouts(Asset::BTC);
    for (i, r) in recipients.iter().enumerate().take(7) {
        exact.push(format!("exact:{i}"), alice.id, *r, dec!(0.1));
    }
    assert_eq!(
        ledger::post_bulk(&mut conn, &exact).await.unwrap(),
        BulkPosted {
            created: 7,
            existing: 0
        }
    );
    let a = get(&mut conn, alice.id).await;
    assert_eq!(a.available(), Decimal::ZERO);
    assert_eq!(a.held(), dec!(0.3));
    assert_eq!(a.debits_posted, dec!(0.7));
    let (_, credits) = posted_sums(&mut conn, &recipients).await;
    assert_eq!(credits, dec!(0.7));

    // One satoshi more is refused.
    let mut one_more = payouts(Asset::BTC);
    one_more.push("one-more".to_owned(), alice.id, recipients[9], sats(1));
    let err = ledger::post_bulk(&mut conn, &one_more).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::InsufficientFunds { account_id, .. } if account_id == alice.id),
        "{err:?}"
    );
    assert_eq!(
        get(&mut conn, recipients[9]).await.available(),
        Decimal::ZERO
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn invalid_bulk_batches_store_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let bob = customer(&mut conn, Asset::BTC).await;
    let eth = customer(&mut conn, Asset::ETH).await;
    deposit(&mut conn, bank.id, alice.id, amount("1", Asset::BTC)).await;
    let count = transfer_count(&mut conn).await;
    let balances = all_balances(&mut conn).await;

    // Each batch starts with a valid row that must not be stored.
    let with_valid_row = || {
        let mut b = payouts(Asset::BTC);
        b.push("valid".to_owned(), bank.id, bob.id, dec!(0.1));
        b
    };

    let err = ledger::post_bulk(&mut conn, &payouts(Asset::BTC))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::EmptyBatch), "{err:?}");

    let mut b = with_valid_row();
    b.push("dup".to_owned(), bank.id, bob.id, dec!(0.1));
    b.push("dup".to_owned(), bank.id, alice.id, dec!(0.2));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(
        matches!(&err, LedgerError::DuplicateReferenceInBatch(r) if r == "dup"),
        "{err:?}"
    );

    let mut b = with_valid_row();
    b.push("same".to_owned(), alice.id, alice.id, dec!(0.1));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(matches!(err, LedgerError::SameAccount), "{err:?}");

    for bad in [Decimal::ZERO, dec!(-0.1), sats(-1)] {
        let mut b = with_valid_row();
        b.push("bad-amount".to_owned(), alice.id, bob.id, bad);
        let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
        assert!(
            matches!(err, LedgerError::NonPositiveAmount),
            "{bad}: {err:?}"
        );
    }

    let mut b = with_valid_row();
    b.push(
        "unknown-credit".to_owned(),
        alice.id,
        999_999_999,
        dec!(0.1),
    );
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::UnknownAccount(999_999_999)),
        "{err:?}"
    );
    let mut b = with_valid_row();
    b.push("unknown-debit".to_owned(), 999_999_998, bob.id, dec!(0.1));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::UnknownAccount(999_999_998)),
        "{err:?}"
    );

    let mut b = with_valid_row();
    b.push("eth-credit".to_owned(), alice.id, eth.id, dec!(0.1));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::AssetMismatch { account_id, account_asset: Asset::ETH, asset: Asset::BTC }
                if account_id == eth.id
        ),
        "{err:?}"
    );
    let mut b = with_valid_row();
    b.push("eth-debit".to_owned(), eth.id, bob.id, dec!(0.1));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::AssetMismatch { account_id, .. } if account_id == eth.id),
        "{err:?}"
    );

    // BTC keeps 8 decimals: a ninth is refused; USDT keeps 6.
    let mut b = with_valid_row();
    b.push("too-fine".to_owned(), alice.id, bob.id, dec!(0.000000001));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
    let mut b = with_valid_row();
    b.push("too-fine-2".to_owned(), alice.id, bob.id, dec!(0.123456789));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");
    let usdt_bank = custody(&mut conn, Asset::USDT).await;
    let usdt_alice = customer(&mut conn, Asset::USDT).await;
    let mut b = payouts(Asset::USDT);
    b.push(
        "usdt".to_owned(),
        usdt_bank.id,
        usdt_alice.id,
        dec!(1.0000001),
    );
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");

    // References: empty, too long, with a control character.
    for bad in [String::new(), "r".repeat(201), "line\nbreak".to_owned()] {
        let mut b = with_valid_row();
        b.push(bad.clone(), alice.id, bob.id, dec!(0.1));
        let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
        assert!(
            matches!(err, LedgerError::InvalidReference),
            "{bad:?}: {err:?}"
        );
    }

    // Columns of different lengths.
    let mut b = with_valid_row();
    b.amounts.push(dec!(0.1));
    let err = ledger::post_bulk(&mut conn, &b).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt(_)), "{err:?}");

    // None of the above stored anything (the two new USDT accounts aside).
    assert_eq!(transfer_count(&mut conn).await, count);
    let after: Vec<_> = all_balances(&mut conn)
        .await
        .into_iter()
        .filter(|a| a.0 != usdt_bank.id && a.0 != usdt_alice.id)
        .collect();
    assert_eq!(after, balances);
    assert!(
        ledger::transfer_by_reference(&mut conn, "valid")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(get(&mut conn, bob.id).await.available(), Decimal::ZERO);

    // Trailing zeros are not decimals: 0.100000000000 BTC is 0.1.
    let mut b = with_valid_row();
    b.push("zeros".to_owned(), alice.id, bob.id, dec!(0.100000000000));
    assert_eq!(
        ledger::post_bulk(&mut conn, &b).await.unwrap(),
        BulkPosted {
            created: 2,
            existing: 0
        }
    );
    let t = ledger::transfer_by_reference(&mut conn, "zeros")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.amount, dec!(0.1));
    assert_eq!(get(&mut conn, bob.id).await.available(), dec!(0.2));
    assert_eq!(get(&mut conn, alice.id).await.available(), dec!(0.9));
    assert_eq!(transfer_count(&mut conn).await, count + 2);
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn a_correcting_row_names_the_transfer_it_corrects() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let pool = open(
        &mut conn,
        &Owner::Pool(format!("pool-{}", Uuid::new_v4().simple())),
        Asset::BTC,
        AccountKind::MiningIncome,
    )
    .await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let bob = customer(&mut conn, Asset::BTC).await;

    let mut day = payouts(Asset::BTC);
    day.push("payout:s1:alice".to_owned(), pool.id, alice.id, dec!(0.5));
    day.push("payout:s1:bob".to_owned(), pool.id, bob.id, dec!(0.25));
    ledger::post_bulk(&mut conn, &day).await.unwrap();
    let original = ledger::transfer_by_reference(&mut conn, "payout:s1:alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(original.corrects_id, None);

    // The day is corrected: alice gets 0.02 more, bob is new-style plain.
    let mut correction = payouts(Asset::BTC);
    correction.push_correcting(
        "payout:s2:alice".to_owned(),
        pool.id,
        alice.id,
        dec!(0.02),
        Some(original.id),
    );
    correction.push("payout:s2:bob".to_owned(), pool.id, bob.id, dec!(0.01));
    assert_eq!(
        ledger::post_bulk(&mut conn, &correction).await.unwrap(),
        BulkPosted {
            created: 2,
            existing: 0
        }
    );
    let fix = ledger::transfer_by_reference(&mut conn, "payout:s2:alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fix.corrects_id, Some(original.id));
    assert_eq!(fix.amount, dec!(0.02));
    let plain = ledger::transfer_by_reference(&mut conn, "payout:s2:bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plain.corrects_id, None);
    // By id too, and the original is untouched.
    assert_eq!(
        ledger::transfer(&mut conn, fix.id)
            .await
            .unwrap()
            .corrects_id,
        Some(original.id)
    );
    assert_eq!(
        ledger::transfer(&mut conn, original.id).await.unwrap(),
        original
    );
    assert_eq!(get(&mut conn, alice.id).await.available(), dec!(0.52));
    assert_eq!(get(&mut conn, bob.id).await.available(), dec!(0.26));

    // Replaying the correction changes nothing.
    assert_eq!(
        ledger::post_bulk(&mut conn, &correction).await.unwrap(),
        BulkPosted {
            created: 0,
            existing: 2
        }
    );
    assert_eq!(get(&mut conn, alice.id).await.available(), dec!(0.52));

    // Correcting a transfer that does not exist is refused, and nothing is stored.
    let count = transfer_count(&mut conn).await;
    let mut dangling = payouts(Asset::BTC);
    dangling.push("payout:s3:bob".to_owned(), pool.id, bob.id, dec!(0.01));
    dangling.push_correcting(
        "payout:s3:alice".to_owned(),
        pool.id,
        alice.id,
        dec!(0.01),
        Some(Uuid::now_v7()),
    );
    assert!(ledger::post_bulk(&mut conn, &dangling).await.is_err());
    assert_eq!(transfer_count(&mut conn).await, count);
    assert_eq!(get(&mut conn, bob.id).await.available(), dec!(0.26));
    assert_reconciled(&mut conn).await;
}

/// `post_batch` treats `corrects` as part of a transfer's content (a replay
/// with another `corrects` is a `ReferenceConflict`); `post_bulk` promises
/// the same guarantees.
#[tokio::test]
async fn a_replay_with_another_corrects_is_a_conflict() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let pool = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let mut day = payouts(Asset::BTC);
    day.push("payout:s1:alice".to_owned(), pool.id, alice.id, dec!(0.5));
    ledger::post_bulk(&mut conn, &day).await.unwrap();
    let original = ledger::transfer_by_reference(&mut conn, "payout:s1:alice")
        .await
        .unwrap()
        .unwrap();
    let mut correction = payouts(Asset::BTC);
    correction.push_correcting(
        "payout:s2:alice".to_owned(),
        pool.id,
        alice.id,
        dec!(0.02),
        Some(original.id),
    );
    ledger::post_bulk(&mut conn, &correction).await.unwrap();

    // post_batch refuses the same reference, accounts and amount without
    // the `corrects`: other content.
    let t = NewTransfer::new(
        "payout:s2:alice",
        TransferKind::Payout,
        pool.id,
        alice.id,
        amount("0.02", Asset::BTC),
    );
    let err = ledger::post_batch(&mut conn, &[t.into()])
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::ReferenceConflict(_)), "{err:?}");

    // post_bulk must refuse it too.
    let mut not_a_correction = payouts(Asset::BTC);
    not_a_correction.push("payout:s2:alice".to_owned(), pool.id, alice.id, dec!(0.02));
    let result = ledger::post_bulk(&mut conn, &not_a_correction).await;
    assert!(
        matches!(&result, Err(LedgerError::ReferenceConflict(r)) if r == "payout:s2:alice"),
        "{result:?}"
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_posting_the_same_batch_move_money_once() {
    const ROUNDS: usize = 8;
    const PER_ROUND: usize = 200;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let source = customer(&mut conn, Asset::BTC).await;
    // Enough for every round once, not twice: a double post would overdraw.
    // Each round pays sum over i of (i + 1) satoshis = 200 * 201 / 2 = 20 100.
    deposit(
        &mut conn,
        bank.id,
        source.id,
        amount("0.00160800", Asset::BTC),
    )
    .await;
    let keys: Vec<String> = (0..PER_ROUND).map(|_| user_key()).collect();
    let recipients = ledger::open_accounts(&mut conn, &keys, Asset::BTC, AccountKind::Customer)
        .await
        .unwrap();
    let before = transfer_count(&mut conn).await;

    for round in 0..ROUNDS {
        let mut batch = payouts(Asset::BTC);
        for (i, r) in recipients.iter().enumerate() {
            batch.push(
                format!("payout:race{round}:{i}"),
                source.id,
                *r,
                sats(i64::try_from(i).unwrap() + 1),
            );
        }
        let mut a = db.conn().await.unwrap();
        let mut b = db.conn().await.unwrap();
        let start = tokio::sync::Barrier::new(2);
        let (ra, rb) = tokio::join!(
            async {
                start.wait().await;
                ledger::post_bulk(&mut a, &batch).await
            },
            async {
                start.wait().await;
                ledger::post_bulk(&mut b, &batch).await
            }
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.created + rb.created, PER_ROUND, "{ra:?} {rb:?}");
        assert_eq!(ra.existing + rb.existing, PER_ROUND, "{ra:?} {rb:?}");
        // Accounts are locked before anything is inserted: one post does it all.
        assert!(
            (ra.created == PER_ROUND && rb.existing == PER_ROUND)
                || (rb.created == PER_ROUND && ra.existing == PER_ROUND),
            "{ra:?} {rb:?}"
        );
    }

    assert_eq!(
        transfer_count(&mut conn).await,
        before + i64::try_from(ROUNDS * PER_ROUND).unwrap()
    );
    let s = get(&mut conn, source.id).await;
    assert_eq!(s.debits_posted, dec!(0.00160800));
    assert_eq!(s.available(), Decimal::ZERO);
    // Recipient i got i + 1 satoshis per round.
    assert_eq!(get(&mut conn, recipients[0]).await.available(), sats(8));
    assert_eq!(
        get(&mut conn, recipients[199]).await.available(),
        sats(1600)
    );
    let (_, credits) = posted_sums(&mut conn, &recipients).await;
    assert_eq!(credits, dec!(0.00160800));
    assert_reconciled(&mut conn).await;
}
