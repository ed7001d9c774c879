//! The ledger against the real PostgreSQL: invariants 1-7 of RELIABILITY.md,
//! concurrency, and a model-checked property test of random batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::ledger::{
    self, Account, AccountKind, LedgerError, NewTransfer, Owner, Phase, Posted, Posting,
    TransferKind,
};
use domain::money::{Amount, Asset, split_floor};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

fn btc(s: &str) -> Amount {
    Amount::parse(s, Asset::BTC, domain::money::Sign::Positive).unwrap()
}

async fn customer(conn: &mut AsyncPgConnection, asset: Asset) -> Account {
    ledger::open_account(
        conn,
        &Owner::User(Uuid::new_v4()),
        asset,
        AccountKind::Customer,
    )
    .await
    .unwrap()
}

async fn custody(conn: &mut AsyncPgConnection, asset: Asset) -> Account {
    ledger::open_account(
        conn,
        &Owner::Network(format!("test-{}", Uuid::new_v4().simple())),
        asset,
        AccountKind::Custody,
    )
    .await
    .unwrap()
}

async fn deposit(conn: &mut AsyncPgConnection, from: &Account, to: &Account, amount: Amount) {
    let t = NewTransfer::new(
        format!("deposit:{}", Uuid::new_v4()),
        TransferKind::Deposit,
        from.id,
        to.id,
        amount,
    );
    ledger::post_batch(conn, &[t.into()]).await.unwrap();
}

async fn assert_reconciled(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(
        problems.is_empty(),
        "ledger does not reconcile: {problems:#?}"
    );
}

#[tokio::test]
async fn transfers_move_balances_and_the_ledger_reconciles() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let bob = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, &bank, &alice, btc("1.5")).await;
    let t = NewTransfer::new(
        "t:1",
        TransferKind::Adjustment,
        alice.id,
        bob.id,
        btc("0.25"),
    );
    let posted = ledger::post_batch(&mut conn, &[t.into()]).await.unwrap();
    assert!(posted[0].is_created());
    assert_eq!(posted[0].transfer().phase, Phase::Single);

    let alice = ledger::account(&mut conn, alice.id).await.unwrap();
    let bob = ledger::account(&mut conn, bob.id).await.unwrap();
    assert_eq!(alice.available(), dec!(1.25));
    assert_eq!(bob.available(), dec!(0.25));
    assert_eq!(
        ledger::account(&mut conn, bank.id)
            .await
            .unwrap()
            .debits_posted,
        dec!(1.5)
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn a_batch_is_all_or_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let bob = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, &bank, &alice, btc("1")).await;

    let batch: Vec<Posting> = vec![
        NewTransfer::new("ok", TransferKind::Adjustment, alice.id, bob.id, btc("0.5")).into(),
        NewTransfer::new(
            "too-much",
            TransferKind::Adjustment,
            alice.id,
            bob.id,
            btc("0.6"),
        )
        .into(),
    ];
    let err = ledger::post_batch(&mut conn, &batch).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::InsufficientFunds { account_id, .. } if account_id == alice.id),
        "{err:?}"
    );
    assert!(
        ledger::transfer_by_reference(&mut conn, "ok")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ledger::account(&mut conn, alice.id)
            .await
            .unwrap()
            .available(),
        dec!(1)
    );
    assert_eq!(
        ledger::account(&mut conn, bob.id)
            .await
            .unwrap()
            .available(),
        dec!(0)
    );

    // Unknown accounts and mixed assets fail the whole batch too.
    let eth = customer(&mut conn, Asset::ETH).await;
    let err = ledger::post_batch(
        &mut conn,
        &[NewTransfer::new("x", TransferKind::Adjustment, alice.id, eth.id, btc("0.1")).into()],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LedgerError::AssetMismatch { .. }), "{err:?}");
    let err = ledger::post_batch(
        &mut conn,
        &[NewTransfer::new("y", TransferKind::Adjustment, alice.id, 999_999, btc("0.1")).into()],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LedgerError::UnknownAccount(999_999)),
        "{err:?}"
    );
    let err = ledger::post_batch(
        &mut conn,
        &[
            NewTransfer::new(
                "dup",
                TransferKind::Adjustment,
                alice.id,
                bob.id,
                btc("0.1"),
            )
            .into(),
            NewTransfer::new(
                "dup",
                TransferKind::Adjustment,
                alice.id,
                bob.id,
                btc("0.1"),
            )
            .into(),
        ],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LedgerError::DuplicateReferenceInBatch(_)),
        "{err:?}"
    );
    assert_reconciled(&mut conn).await;
}

/// Invariant 4: a reference is posted at most once.
#[tokio::test]
async fn a_reference_is_posted_at_most_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let t = NewTransfer::new(
        "payout:c1:2026-11-24",
        TransferKind::Payout,
        bank.id,
        alice.id,
        btc("0.001"),
    );
    let first = ledger::post_batch(&mut conn, &[t.clone().into()])
        .await
        .unwrap();
    let again = ledger::post_batch(&mut conn, &[t.clone().into()])
        .await
        .unwrap();
    assert!(first[0].is_created());
    assert!(matches!(&again[0], Posted::Existing(e) if e.id == first[0].transfer().id));
    assert_eq!(
        ledger::account(&mut conn, alice.id)
            .await
            .unwrap()
            .available(),
        dec!(0.001)
    );

    let mut other = t.clone();
    other.amount = btc("0.002");
    let err = ledger::post_batch(&mut conn, &[other.into()])
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::ReferenceConflict(_)), "{err:?}");

    // The database itself refuses a second row with the reference.
    let raw = diesel::sql_query(
        "INSERT INTO transfers (id, reference, kind, phase, asset, debit_account_id, \
         credit_account_id, amount) VALUES (gen_random_uuid(), 'payout:c1:2026-11-24', \
         'payout', 'single', 'BTC', $1, $2, 1)",
    )
    .bind::<diesel::sql_types::BigInt, _>(bank.id)
    .bind::<diesel::sql_types::BigInt, _>(alice.id)
    .execute(&mut conn)
    .await;
    assert!(raw.is_err());

    // Concurrent posts of one reference: one effect.
    let pool = db.pool();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let pool = pool.clone();
        let t = NewTransfer::new(
            "payout:c2:2026-11-24",
            TransferKind::Payout,
            bank.id,
            alice.id,
            btc("0.5"),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            ledger::post_batch(&mut c, &[t.into()]).await.unwrap()[0].is_created()
        }));
    }
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 1);
    assert_eq!(
        ledger::account(&mut conn, alice.id)
            .await
            .unwrap()
            .available(),
        dec!(0.501)
    );
    assert_reconciled(&mut conn).await;
}

/// Invariant 6: every hold ends exactly once; a void returns the funds.
#[tokio::test]
async fn holds_end_exactly_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let out = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, &bank, &alice, btc("1")).await;

    let hold = |r: &str, amount: &str| {
        Posting::from(
            NewTransfer::new(
                r,
                TransferKind::WithdrawalHold,
                alice.id,
                out.id,
                btc(amount),
            )
            .pending(),
        )
    };
    let h1 = ledger::post_batch(&mut conn, &[hold("hold:1", "0.4")])
        .await
        .unwrap()[0]
        .transfer()
        .clone();
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    assert_eq!((a.available(), a.held()), (dec!(0.6), dec!(0.4)));

    let post = |r: &str, id: Uuid| Posting::PostPending {
        reference: r.into(),
        pending_id: id,
        kind: TransferKind::WithdrawalSettle,
        amount: None,
    };
    let void = |r: &str, id: Uuid| Posting::VoidPending {
        reference: r.into(),
        pending_id: id,
        kind: TransferKind::WithdrawalRelease,
    };
    ledger::post_batch(&mut conn, &[post("settle:1", h1.id)])
        .await
        .unwrap();
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    assert_eq!(
        (a.available(), a.held(), a.debits_posted),
        (dec!(0.6), dec!(0), dec!(0.4))
    );
    // A second post or a void of the same hold is refused and changes nothing.
    let err = ledger::post_batch(&mut conn, &[post("settle:1b", h1.id)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::HoldAlreadyResolved(_)),
        "{err:?}"
    );
    let err = ledger::post_batch(&mut conn, &[void("release:1", h1.id)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::HoldAlreadyResolved(_)),
        "{err:?}"
    );
    // Retrying the same post is a no-op.
    assert!(
        !ledger::post_batch(&mut conn, &[post("settle:1", h1.id)])
            .await
            .unwrap()[0]
            .is_created()
    );

    // A void returns the funds.
    let h2 = ledger::post_batch(&mut conn, &[hold("hold:2", "0.5")])
        .await
        .unwrap()[0]
        .transfer()
        .clone();
    ledger::post_batch(&mut conn, &[void("release:2", h2.id)])
        .await
        .unwrap();
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    assert_eq!((a.available(), a.held()), (dec!(0.6), dec!(0)));

    // A partial post moves part and releases the rest.
    let h3 = ledger::post_batch(&mut conn, &[hold("hold:3", "0.5")])
        .await
        .unwrap()[0]
        .transfer()
        .clone();
    let partial = Posting::PostPending {
        reference: "settle:3".into(),
        pending_id: h3.id,
        kind: TransferKind::WithdrawalSettle,
        amount: Some(dec!(0.2)),
    };
    ledger::post_batch(&mut conn, &[partial]).await.unwrap();
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    assert_eq!((a.available(), a.held()), (dec!(0.4), dec!(0)));
    // Posting more than the hold, or ending a transfer that is not a hold, is refused.
    let h4 = ledger::post_batch(&mut conn, &[hold("hold:4", "0.1")])
        .await
        .unwrap()[0]
        .transfer()
        .clone();
    let over = Posting::PostPending {
        reference: "settle:4".into(),
        pending_id: h4.id,
        kind: TransferKind::WithdrawalSettle,
        amount: Some(dec!(0.2)),
    };
    assert!(matches!(
        ledger::post_batch(&mut conn, &[over]).await.unwrap_err(),
        LedgerError::PostExceedsPending { .. }
    ));
    let single = ledger::transfer_by_reference(&mut conn, "settle:1")
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        ledger::post_batch(&mut conn, &[void("v", single.id)])
            .await
            .unwrap_err(),
        LedgerError::NotPending(_)
    ));

    // Concurrent post and void of one hold: exactly one wins.
    let pool = db.pool();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let pool = pool.clone();
        let p = if i % 2 == 0 {
            post(&format!("race-post:{i}"), h4.id)
        } else {
            void(&format!("race-void:{i}"), h4.id)
        };
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            ledger::post_batch(&mut c, &[p]).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LedgerError::HoldAlreadyResolved(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    assert_eq!(a.held(), dec!(0));
    assert_reconciled(&mut conn).await;
}

/// Invariant 7: posted transfers are never changed; corrections are new transfers.
#[tokio::test]
async fn transfers_are_immutable_and_corrected_by_new_transfers() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    let wrong = NewTransfer::new(
        "deposit:tx1:0",
        TransferKind::Deposit,
        bank.id,
        alice.id,
        btc("0.3"),
    );
    let original = ledger::post_batch(&mut conn, &[wrong.into()])
        .await
        .unwrap()[0]
        .transfer()
        .clone();

    for sql in [
        "UPDATE transfers SET amount = 1",
        "DELETE FROM transfers",
        "TRUNCATE transfers CASCADE",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("immutable"), "{sql}: {err}");
    }

    // The deposit was 0.2, not 0.3: a correcting transfer names the original.
    let fix = NewTransfer::new(
        "correction:deposit:tx1:0",
        TransferKind::Adjustment,
        alice.id,
        bank.id,
        btc("0.1"),
    )
    .correcting(original.id);
    let fix = ledger::post_batch(&mut conn, &[fix.into()]).await.unwrap()[0]
        .transfer()
        .clone();
    assert_eq!(fix.corrects_id, Some(original.id));
    assert_eq!(
        ledger::transfer(&mut conn, original.id).await.unwrap(),
        original
    );
    assert_eq!(
        ledger::account(&mut conn, alice.id)
            .await
            .unwrap()
            .available(),
        dec!(0.2)
    );
    assert_reconciled(&mut conn).await;
}

/// Invariant 3: no customer balance is ever negative, enforced twice.
#[tokio::test]
async fn customer_balances_never_go_negative() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, &bank, &alice, btc("0.1")).await;
    let hold = NewTransfer::new(
        "h",
        TransferKind::WithdrawalHold,
        alice.id,
        bank.id,
        btc("0.08"),
    )
    .pending();
    ledger::post_batch(&mut conn, &[hold.into()]).await.unwrap();
    // 0.02 is available: 0.03 is refused, whether as a hold or a transfer.
    for (i, pending) in [true, false].into_iter().enumerate() {
        let mut t = NewTransfer::new(
            format!("over:{i}"),
            TransferKind::Purchase,
            alice.id,
            bank.id,
            btc("0.03"),
        );
        t.pending = pending;
        let err = ledger::post_batch(&mut conn, &[t.into()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::InsufficientFunds { .. }),
            "{err:?}"
        );
    }
    // Behind the conditional update, the CHECK constraint refuses a raw write.
    let err =
        diesel::sql_query("UPDATE accounts SET debits_posted = debits_posted + 1 WHERE id = $1")
            .bind::<diesel::sql_types::BigInt, _>(alice.id)
            .execute(&mut conn)
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("accounts_debits_within_credits"),
        "{err}"
    );
    assert_reconciled(&mut conn).await;
}

/// Invariants 1 and 2 are checked by the reconciliation; it must see a tampered ledger.
#[tokio::test]
async fn reconciliation_detects_a_tampered_balance() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::BTC).await;
    let alice = customer(&mut conn, Asset::BTC).await;
    deposit(&mut conn, &bank, &alice, btc("1")).await;
    assert_reconciled(&mut conn).await;
    diesel::sql_query("UPDATE accounts SET credits_posted = credits_posted + 0.5 WHERE id = $1")
        .bind::<diesel::sql_types::BigInt, _>(alice.id)
        .execute(&mut conn)
        .await
        .unwrap();
    let problems = ledger::reconcile(&mut conn).await.unwrap();
    let kinds: Vec<&str> = problems.iter().map(|p| p.problem.as_str()).collect();
    assert!(kinds.contains(&"credits_posted_mismatch"), "{problems:?}");
    assert!(kinds.contains(&"asset_posted_unbalanced"), "{problems:?}");
    let mismatch = problems
        .iter()
        .find(|p| p.problem == "credits_posted_mismatch")
        .unwrap();
    assert_eq!(mismatch.account_id, Some(alice.id));
    assert_eq!((mismatch.expected, mismatch.actual), (dec!(1), dec!(1.5)));
}

/// Invariant 5: a pool earning split in whole units is allocated in full.
#[tokio::test]
async fn a_pool_earning_is_allocated_in_full() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let pool = ledger::open_account(
        &mut conn,
        &Owner::Pool("p1".into()),
        Asset::BTC,
        AccountKind::MiningIncome,
    )
    .await
    .unwrap();
    let rounding = ledger::open_account(
        &mut conn,
        &Owner::Platform,
        Asset::BTC,
        AccountKind::Rounding,
    )
    .await
    .unwrap();
    let gross_units = 31_234_567u128; // 0.31234567 BTC
    let weights = [7u128, 13, 29, 1, 50];
    let (shares, remainder) = split_floor(gross_units, &weights);
    let mut batch = Vec::new();
    for (i, units) in shares.iter().enumerate() {
        let c = customer(&mut conn, Asset::BTC).await;
        batch.push(
            NewTransfer::new(
                format!("payout:{i}"),
                TransferKind::Payout,
                pool.id,
                c.id,
                Amount::from_units(*units, Asset::BTC).unwrap(),
            )
            .into(),
        );
    }
    if remainder > 0 {
        batch.push(
            NewTransfer::new(
                "rounding:p1",
                TransferKind::Rounding,
                pool.id,
                rounding.id,
                Amount::from_units(remainder, Asset::BTC).unwrap(),
            )
            .into(),
        );
    }
    ledger::post_batch(&mut conn, &batch).await.unwrap();
    let pool = ledger::account(&mut conn, pool.id).await.unwrap();
    assert_eq!(
        pool.debits_posted,
        Amount::from_units(gross_units, Asset::BTC).unwrap().value()
    );
    assert_reconciled(&mut conn).await;
}

/// RELIABILITY.md: 400 concurrent holds of 10 against 1000: exactly 100 succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hundred_concurrent_holds_against_one_balance() {
    let db = TestDb::with_pool_size(32).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let bank = custody(&mut conn, Asset::USDT).await;
    let alice = customer(&mut conn, Asset::USDT).await;
    let usdt = |s: &str| Amount::parse(s, Asset::USDT, domain::money::Sign::Positive).unwrap();
    deposit(&mut conn, &bank, &alice, usdt("1000")).await;

    let pool = db.pool();
    let start = Arc::new(tokio::sync::Barrier::new(400));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (pool, start) = (pool.clone(), start.clone());
        let hold = NewTransfer::new(
            format!("withdrawal:{i}"),
            TransferKind::WithdrawalHold,
            alice.id,
            bank.id,
            usdt("10"),
        )
        .pending();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut c = pool.get().await.unwrap();
            ledger::post_batch(&mut c, &[hold.into()]).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(LedgerError::InsufficientFunds { .. }) => refused += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    let a = ledger::account(&mut conn, alice.id).await.unwrap();
    println!(
        "400 concurrent holds of 10 on 1000: {ok} succeeded, {refused} refused, available {}, held {}",
        a.available(),
        a.held()
    );
    assert_eq!((ok, refused), (100, 300));
    assert_eq!(a.available(), Decimal::ZERO);
    assert_eq!(a.held(), dec!(1000));
    assert_reconciled(&mut conn).await;
}

mod model {
    //! A property test: random batches (many failing) against an in-memory
    //! model; after each batch the database must agree with the model, and at
    //! the end every invariant holds.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    pub enum Op {
        Transfer {
            from: usize,
            to: usize,
            units: u128,
            pending: bool,
        },
        Post {
            hold: usize,
            part: Option<u128>,
        },
        Void {
            hold: usize,
        },
        /// Repeats an earlier reference with the same content.
        Replay {
            of: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..6, 0usize..6, 1u128..400, any::<bool>())
                .prop_map(|(from, to, units, pending)| Op::Transfer { from, to, units, pending }),
            2 => (0usize..16, proptest::option::of(1u128..300)).prop_map(|(hold, part)| Op::Post { hold, part }),
            1 => (0usize..16).prop_map(|hold| Op::Void { hold }),
            1 => (0usize..16).prop_map(|of| Op::Replay { of }),
        ]
    }

    #[derive(Default, Clone, Copy, Debug, PartialEq)]
    struct Bal {
        dp: i128,
        dq: i128,
        cp: i128,
        cq: i128,
    }

    struct Hold {
        id: Uuid,
        from: usize,
        to: usize,
        units: u128,
        resolved: bool,
    }

    fn units(a: Decimal) -> i128 {
        i128::try_from(domain::money::decimal_to_units(a, 6).unwrap()).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn random_batches_keep_every_invariant(batches in proptest::collection::vec(proptest::collection::vec(op(), 1..5), 1..12)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run(batches));
        }
    }

    async fn run(batches: Vec<Vec<Op>>) {
        let db = TestDb::with_pool_size(2).await.unwrap();
        let mut conn = db.conn().await.unwrap();
        let asset = Asset::USDC;
        let mut accounts = Vec::new();
        // Accounts 0..2 are platform accounts (no limits), 2..6 customers.
        for i in 0..6 {
            let a = if i < 2 {
                custody(&mut conn, asset).await
            } else {
                customer(&mut conn, asset).await
            };
            accounts.push(a);
        }
        let flagged = |i: usize| i >= 2;
        let mut model: Vec<Bal> = vec![Bal::default(); 6];
        // Seed the customers so that some batches succeed.
        for i in 2..6 {
            deposit(
                &mut conn,
                &accounts[0],
                &accounts[i],
                Amount::from_units(500, asset).unwrap(),
            )
            .await;
            model[0].dp += 500;
            model[i].cp += 500;
        }
        let mut holds: Vec<Hold> = Vec::new();
        let mut history: Vec<Posting> = Vec::new();
        let mut seq = 0;

        for batch in batches {
            let mut postings = Vec::new();
            let mut next = model.clone();
            let mut expect_ok = true;
            let mut new_holds = Vec::new();
            let mut resolving = Vec::new();
            for op in batch {
                seq += 1;
                match op {
                    Op::Transfer {
                        from,
                        to,
                        units,
                        pending,
                    } => {
                        let (from, to) = if from == to {
                            (from, (to + 1) % 6)
                        } else {
                            (from, to)
                        };
                        let u = i128::try_from(units).unwrap();
                        let mut t = NewTransfer::new(
                            format!("r{seq}"),
                            TransferKind::Adjustment,
                            accounts[from].id,
                            accounts[to].id,
                            Amount::from_units(units, asset).unwrap(),
                        );
                        t.pending = pending;
                        if pending {
                            next[from].dq += u;
                            next[to].cq += u;
                            new_holds.push((format!("r{seq}"), from, to, units));
                        } else {
                            next[from].dp += u;
                            next[to].cp += u;
                        }
                        postings.push(Posting::from(t));
                    }
                    Op::Post { .. } | Op::Void { .. } if holds.is_empty() => {}
                    Op::Post { hold, part } => {
                        let h = &holds[hold % holds.len()];
                        let posted = part.unwrap_or(h.units);
                        if h.resolved || resolving.contains(&h.id) {
                            expect_ok = false;
                        }
                        if posted > h.units {
                            expect_ok = false;
                        }
                        resolving.push(h.id);
                        let (p, q) = (
                            i128::try_from(posted).unwrap(),
                            i128::try_from(h.units).unwrap(),
                        );
                        next[h.from].dq -= q;
                        next[h.from].dp += p;
                        next[h.to].cq -= q;
                        next[h.to].cp += p;
                        postings.push(Posting::PostPending {
                            reference: format!("r{seq}"),
                            pending_id: h.id,
                            kind: TransferKind::WithdrawalSettle,
                            amount: part.map(|u| Amount::from_units(u, asset).unwrap().value()),
                        });
                    }
                    Op::Void { hold } => {
                        let h = &holds[hold % holds.len()];
                        if h.resolved || resolving.contains(&h.id) {
                            expect_ok = false;
                        }
                        resolving.push(h.id);
                        let q = i128::try_from(h.units).unwrap();
                        next[h.from].dq -= q;
                        next[h.to].cq -= q;
                        postings.push(Posting::VoidPending {
                            reference: format!("r{seq}"),
                            pending_id: h.id,
                            kind: TransferKind::WithdrawalRelease,
                        });
                    }
                    Op::Replay { of } => {
                        // A replay of a posted reference changes nothing.
                        if !history.is_empty() {
                            let p = history[of % history.len()].clone();
                            if !postings
                                .iter()
                                .any(|q: &Posting| q.reference() == p.reference())
                            {
                                postings.push(p);
                            }
                        }
                    }
                }
            }
            if postings.is_empty() {
                continue;
            }
            for (i, b) in next.iter().enumerate() {
                if flagged(i) && b.dp + b.dq > b.cp {
                    expect_ok = false;
                }
            }
            let result = ledger::post_batch(&mut conn, &postings).await;
            assert_eq!(
                result.is_ok(),
                expect_ok,
                "batch {postings:#?} gave {result:?}"
            );
            if let Ok(posted) = result {
                model = next;
                for (reference, from, to, units) in new_holds {
                    let id = posted
                        .iter()
                        .find(|p| p.transfer().reference == reference)
                        .unwrap()
                        .transfer()
                        .id;
                    holds.push(Hold {
                        id,
                        from,
                        to,
                        units,
                        resolved: false,
                    });
                }
                for id in resolving {
                    if let Some(h) = holds.iter_mut().find(|h| h.id == id) {
                        h.resolved = true;
                    }
                }
                history.extend(postings);
            }
            for (i, a) in accounts.iter().enumerate() {
                let a = ledger::account(&mut conn, a.id).await.unwrap();
                let got = Bal {
                    dp: units(a.debits_posted),
                    dq: units(a.debits_pending),
                    cp: units(a.credits_posted),
                    cq: units(a.credits_pending),
                };
                assert_eq!(got, model[i], "account {i}");
            }
        }
        assert_reconciled(&mut conn).await;
    }
}
