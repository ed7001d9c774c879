//! Deposits against the real PostgreSQL: one row per on-chain output however
//! often it is seen, credited exactly once after the confirmations (even by
//! eight callers at once), orphaned deposits never credited, credited ones
//! reversed (and re-credited when their transaction comes back), the
//! shortfall of a spent deposit on the customer's receivable, dust, and the
//! ledger reconciling throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::custody::deposits::{
    self, DepositsError, Observation, Observed, OutputKind, OutputRef,
};
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Network, Sign};
use domain::schema::{audit_log, deposit_addresses, transfers};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

/// A verified customer (testkit's fixture), its id.
async fn customer(conn: &mut AsyncPgConnection) -> Uuid {
    testkit::custody::customer(conn).await.unwrap().0
}

/// Gives `user` a deposit address on `network` (as the api would).
async fn address(conn: &mut AsyncPgConnection, user: Uuid, network: Network) -> String {
    let index: i32 = rand_index();
    let address = format!("addr-{}-{}", network.code(), Uuid::new_v4().simple());
    diesel::insert_into(deposit_addresses::table)
        .values((
            deposit_addresses::network.eq(network.code()),
            deposit_addresses::key_fingerprint.eq("0badc0de"),
            deposit_addresses::derivation_index.eq(index),
            deposit_addresses::user_id.eq(user),
            deposit_addresses::address.eq(&address),
        ))
        .execute(conn)
        .await
        .unwrap();
    address
}

fn rand_index() -> i32 {
    i32::try_from(Uuid::new_v4().as_u128() % 1_000_000_000).unwrap()
}

fn btc(txid: &str, vout: u64, to: &str, sats: u128, confirmations: u32) -> Observed {
    Observed {
        network: Network::Bitcoin,
        asset: Asset::BTC,
        txid: txid.to_owned(),
        kind: OutputKind::Output,
        index: vout,
        address: to.to_owned(),
        amount_units: sats,
        block_height: (confirmations > 0).then_some(100),
        block_hash: (confirmations > 0).then(|| "00aa".repeat(16)),
        confirmations,
    }
}

async fn balance(conn: &mut AsyncPgConnection, user: Uuid, asset: Asset) -> Decimal {
    ledger::account_by_key(conn, &Owner::User(user), asset, AccountKind::Customer)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.posted_balance())
}

async fn reconciles(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

async fn audits(conn: &mut AsyncPgConnection, action: &str, id: Uuid) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .filter(audit_log::target.eq(format!("deposit:{id}")))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

fn txid() -> String {
    format!("{:064x}", Uuid::new_v4().as_u128())
}

#[tokio::test]
async fn seen_twice_is_one_row_and_other_content_is_a_conflict() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bitcoin).await;
    let tx = txid();

    let first = deposits::observe(&mut conn, &btc(&tx, 1, &to, 150_000_000, 0))
        .await
        .unwrap();
    let Observation::New(row) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        (
            row.state.as_str(),
            row.user_id,
            row.amount,
            row.confirmations
        ),
        ("pending", alice, dec!(1.5), 0)
    );
    assert_eq!(row.block_hash, None);
    let again = deposits::observe(&mut conn, &btc(&tx, 1, &to, 150_000_000, 0))
        .await
        .unwrap();
    assert!(matches!(again, Observation::Unchanged(_)), "{again:?}");
    // Mined: the same row, now in a block.
    let mined = deposits::observe(&mut conn, &btc(&tx, 1, &to, 150_000_000, 1))
        .await
        .unwrap();
    let Observation::Updated(mined) = mined else {
        panic!("{mined:?}")
    };
    assert_eq!((mined.id, mined.confirmations), (row.id, 1));
    assert_eq!(mined.block_height, Some(100));

    // Another output of the same transaction is another deposit.
    let other = deposits::observe(&mut conn, &btc(&tx, 0, &to, 1_000, 1))
        .await
        .unwrap();
    assert!(matches!(other, Observation::New(_)), "{other:?}");

    // The same key with another amount is refused, the row kept.
    let err = deposits::observe(&mut conn, &btc(&tx, 1, &to, 150_000_001, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, DepositsError::Conflict { .. }), "{err}");
    let kept = deposits::get(&mut conn, row.id).await.unwrap();
    assert_eq!((kept.amount, kept.confirmations), (dec!(1.5), 1));

    // Not one of our addresses: ignored, nothing stored.
    let stranger = deposits::observe(&mut conn, &btc(&txid(), 0, "elsewhere", 5, 1))
        .await
        .unwrap();
    assert_eq!(stranger, Observation::NotOurs);
    assert_eq!(
        deposits::of_network(&mut conn, Network::Bitcoin)
            .await
            .unwrap()
            .len(),
        2
    );
    // An asset the network does not carry.
    let mut bad = btc(&txid(), 0, &to, 5, 1);
    bad.asset = Asset::ETH;
    assert!(matches!(
        deposits::observe(&mut conn, &bad).await,
        Err(DepositsError::Unsupported { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credited_once_after_the_confirmations_even_by_eight_at_once() {
    let db = TestDb::with_pool_size(12).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bitcoin).await;
    let tx = txid();
    let required = deposits::required_confirmations(&mut conn, Network::Bitcoin)
        .await
        .unwrap();
    assert_eq!(required, 3, "seeded from Network::confirmations");

    deposits::observe(&mut conn, &btc(&tx, 0, &to, 12_345, 2))
        .await
        .unwrap();
    let none = deposits::credit_ready(&mut conn, Network::Bitcoin, required)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, Decimal::ZERO);

    let seen = deposits::observe(&mut conn, &btc(&tx, 0, &to, 12_345, 3))
        .await
        .unwrap();
    let id = seen.deposit().unwrap().id;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let pool = db.pool();
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            deposits::credit_ready(&mut c, Network::Bitcoin, 3)
                .await
                .unwrap()
                .len()
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 1, "exactly one caller credits");
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.00012345)
    );
    let row = deposits::get(&mut conn, id).await.unwrap();
    assert_eq!(row.state, "credited");
    let reference = format!("deposit:bitcoin:{tx}:output:0");
    let credit = ledger::transfer_by_reference(&mut conn, &reference)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.transfer_id, Some(credit.id));
    assert_eq!(credit.kind, TransferKind::Deposit);
    let custody = ledger::account_by_key(
        &mut conn,
        &Owner::Network("bitcoin".into()),
        Asset::BTC,
        AccountKind::Custody,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(credit.debit_account_id, custody.id);
    assert_eq!(audits(&mut conn, "deposit.credit", id).await, 1);

    // Later scans (more confirmations) change nothing.
    deposits::observe(&mut conn, &btc(&tx, 0, &to, 12_345, 7))
        .await
        .unwrap();
    assert!(
        deposits::credit_ready(&mut conn, Network::Bitcoin, 3)
            .await
            .unwrap()
            .is_empty()
    );
    let n: i64 = transfers::table
        .filter(transfers::reference.like(format!("deposit:bitcoin:{tx}%")))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.00012345)
    );
    reconciles(&mut conn).await;
}

#[tokio::test]
async fn an_orphaned_pending_deposit_is_never_credited() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bitcoin).await;
    let tx = txid();
    let seen = deposits::observe(&mut conn, &btc(&tx, 0, &to, 100_000, 1))
        .await
        .unwrap();
    let key = seen.deposit().unwrap().output_ref().unwrap();
    let orphaned = deposits::orphan(&mut conn, &key, "test: block left the chain")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (orphaned.state.as_str(), orphaned.confirmations),
        ("orphaned", 0)
    );
    assert_eq!(audits(&mut conn, "deposit.orphan", orphaned.id).await, 1);
    // Orphaning again is a no-op.
    assert!(
        deposits::orphan(&mut conn, &key, "again")
            .await
            .unwrap()
            .is_none()
    );
    // Only in the mempool again: still not counted.
    let back = deposits::observe(&mut conn, &btc(&tx, 0, &to, 100_000, 0))
        .await
        .unwrap();
    assert!(matches!(back, Observation::Unchanged(_)), "{back:?}");
    assert!(
        deposits::credit_ready(&mut conn, Network::Bitcoin, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, Decimal::ZERO);
    assert_eq!(
        deposits::get(&mut conn, orphaned.id).await.unwrap().state,
        "orphaned"
    );
    // A key never seen: nothing to orphan.
    let unknown = OutputRef {
        network: Network::Bitcoin,
        txid: txid(),
        kind: OutputKind::Output,
        index: 0,
    };
    assert!(
        deposits::orphan(&mut conn, &unknown, "x")
            .await
            .unwrap()
            .is_none()
    );

    // Mined again: pending, and then credited once.
    let revived = deposits::observe(&mut conn, &btc(&tx, 0, &to, 100_000, 3))
        .await
        .unwrap();
    assert!(matches!(revived, Observation::Revived(_)), "{revived:?}");
    let credited = deposits::credit_ready(&mut conn, Network::Bitcoin, 3)
        .await
        .unwrap();
    assert_eq!(credited.len(), 1);
    assert_eq!(credited[0].credit_round, 1);
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, dec!(0.001));
    reconciles(&mut conn).await;
}

#[tokio::test]
async fn a_credited_deposit_that_leaves_the_chain_is_reversed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bitcoin).await;
    let tx = txid();
    deposits::observe(&mut conn, &btc(&tx, 2, &to, 50_000_000, 3))
        .await
        .unwrap();
    let credited = deposits::credit_ready(&mut conn, Network::Bitcoin, 3)
        .await
        .unwrap();
    assert_eq!(credited.len(), 1);
    let id = credited[0].id;
    let original = credited[0].transfer_id.unwrap();
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, dec!(0.5));

    let key = credited[0].output_ref().unwrap();
    let reversed = deposits::orphan(&mut conn, &key, "test: reorganisation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reversed.state, "reversed");
    assert_eq!(reversed.shortfall, Decimal::ZERO);
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, Decimal::ZERO);
    let reversal = ledger::transfer(&mut conn, reversed.reversal_id.unwrap())
        .await
        .unwrap();
    assert_eq!(reversal.corrects_id, Some(original));
    assert_eq!(reversal.amount, dec!(0.5));
    assert_eq!(
        reversal.reference,
        format!("deposit:bitcoin:{tx}:output:2:reversal")
    );
    assert_eq!(audits(&mut conn, "deposit.reverse", id).await, 1);
    // Not credited again while it stays out of the chain.
    assert!(
        deposits::credit_ready(&mut conn, Network::Bitcoin, 1)
            .await
            .unwrap()
            .is_empty()
    );
    reconciles(&mut conn).await;

    // The transaction is mined again: a second round, credited once more.
    let revived = deposits::observe(&mut conn, &btc(&tx, 2, &to, 50_000_000, 3))
        .await
        .unwrap();
    let Observation::Revived(revived) = revived else {
        panic!("{revived:?}")
    };
    assert_eq!(
        (revived.state.as_str(), revived.credit_round),
        ("pending", 2)
    );
    let again = deposits::credit_ready(&mut conn, Network::Bitcoin, 3)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, dec!(0.5));
    assert!(
        ledger::transfer_by_reference(&mut conn, &format!("deposit:bitcoin:{tx}:output:2:2"))
            .await
            .unwrap()
            .is_some()
    );

    // Its block leaves the chain and it waits in the mempool: reversed again.
    let back = deposits::observe(&mut conn, &btc(&tx, 2, &to, 50_000_000, 0))
        .await
        .unwrap();
    let Observation::Reversed(back) = back else {
        panic!("{back:?}")
    };
    assert_eq!(back.state, "reversed");
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, Decimal::ZERO);
    reconciles(&mut conn).await;
}

#[tokio::test]
async fn a_reversal_the_customer_already_spent_books_the_shortfall_to_the_receivable() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    domain::seed::platform_accounts(&mut conn).await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bitcoin).await;
    let tx = txid();
    deposits::observe(&mut conn, &btc(&tx, 0, &to, 100_000_000, 3))
        .await
        .unwrap();
    let credited = deposits::credit_ready(&mut conn, Network::Bitcoin, 3)
        .await
        .unwrap();
    let original = credited[0].transfer_id.unwrap();
    // Alice spends 0.7 BTC of it.
    let me = ledger::account_by_key(
        &mut conn,
        &Owner::User(alice),
        Asset::BTC,
        AccountKind::Customer,
    )
    .await
    .unwrap()
    .unwrap();
    let sales = ledger::open_account(
        &mut conn,
        &Owner::Platform,
        Asset::BTC,
        AccountKind::SalesRevenue,
    )
    .await
    .unwrap();
    ledger::post_batch(
        &mut conn,
        &[NewTransfer::new(
            format!("purchase:{}", Uuid::new_v4()),
            TransferKind::Purchase,
            me.id,
            sales.id,
            Amount::parse("0.7", Asset::BTC, Sign::Positive).unwrap(),
        )
        .into()],
    )
    .await
    .unwrap();

    let key = credited[0].output_ref().unwrap();
    let reversed = deposits::orphan(&mut conn, &key, "test: deep reorganisation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reversed.state, "reversed");
    assert_eq!(reversed.shortfall, dec!(0.7));
    // Alice's balance is empty, never negative; she owes 0.7 on her receivable.
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, Decimal::ZERO);
    let receivable = ledger::account_by_key(
        &mut conn,
        &Owner::User(alice),
        Asset::BTC,
        AccountKind::Equity,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(receivable.posted_balance(), dec!(-0.7));
    let shortfall = ledger::transfer_by_reference(
        &mut conn,
        &format!("deposit:bitcoin:{tx}:output:0:shortfall"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (shortfall.amount, shortfall.corrects_id),
        (dec!(0.7), Some(original))
    );
    // The custody account is whole again: the credit is fully undone there.
    let custody = ledger::account_by_key(
        &mut conn,
        &Owner::Network("bitcoin".into()),
        Asset::BTC,
        AccountKind::Custody,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(custody.posted_balance(), Decimal::ZERO);
    reconciles(&mut conn).await;
}

#[tokio::test]
async fn token_amounts_are_floored_to_the_ledger_and_the_dust_kept() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let to = address(&mut conn, alice, Network::Bsc).await;
    let observed = |units: u128, index: u64| Observed {
        network: Network::Bsc,
        asset: Asset::USDT, // 18 decimals on BSC, 6 in the ledger
        txid: format!("0x{}", "ab".repeat(32)),
        kind: OutputKind::Token,
        index,
        address: to.clone(),
        amount_units: units,
        block_height: Some(7),
        block_hash: Some(format!("0x{}", "cd".repeat(32))),
        confirmations: 15,
    };
    let seen = deposits::observe(&mut conn, &observed(1_234_567_890_123_456_789, 4))
        .await
        .unwrap();
    let row = seen.deposit().unwrap();
    assert_eq!(row.amount, dec!(1.234567));
    assert_eq!(row.dust, dec!(0.000000890123456789));
    // Less than a ledger unit: nothing to credit, nothing stored.
    assert_eq!(
        deposits::observe(&mut conn, &observed(999_999_999_999, 5))
            .await
            .unwrap(),
        Observation::DustOnly
    );
    // The native transfer of the same transaction is another deposit.
    let mut native = observed(2_000_000_000_000_000_000, 0);
    native.asset = Asset::BNB;
    native.kind = OutputKind::Native;
    deposits::observe(&mut conn, &native).await.unwrap();
    let credited = deposits::credit_ready(&mut conn, Network::Bsc, 15)
        .await
        .unwrap();
    assert_eq!(credited.len(), 2);
    assert_eq!(balance(&mut conn, alice, Asset::USDT).await, dec!(1.234567));
    assert_eq!(balance(&mut conn, alice, Asset::BNB).await, dec!(2));
    reconciles(&mut conn).await;
}

#[tokio::test]
async fn a_customer_lists_their_own_deposits_newest_first() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let alice = customer(&mut conn).await;
    let bob = customer(&mut conn).await;
    let a = address(&mut conn, alice, Network::Bitcoin).await;
    let b = address(&mut conn, bob, Network::Bitcoin).await;
    let first = txid();
    let second = txid();
    deposits::observe(&mut conn, &btc(&first, 0, &a, 1_000, 1))
        .await
        .unwrap();
    deposits::observe(&mut conn, &btc(&second, 0, &a, 2_000, 0))
        .await
        .unwrap();
    deposits::observe(&mut conn, &btc(&txid(), 0, &b, 3_000, 0))
        .await
        .unwrap();
    let listed = deposits::list_for_user(&mut conn, alice, 50).await.unwrap();
    let txids: Vec<&str> = listed.iter().map(|(d, _)| d.txid.as_str()).collect();
    assert_eq!(txids, vec![second.as_str(), first.as_str()]);
    assert!(listed.iter().all(|(_, required)| *required == 3));
    assert_eq!(
        deposits::list_for_user(&mut conn, alice, 1)
            .await
            .unwrap()
            .len(),
        1
    );
}
