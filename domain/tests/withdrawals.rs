//! Stored withdrawals: an unconfirmed one expires and releases its hold;
//! racing transitions (clicks, cancels, admin approvals) apply once each
//! under the row lock, and the hold ends exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::custody::withdrawals::{self, WithdrawalError};
use domain::ledger::{self, AccountKind, Owner};
use domain::money::Asset;
use domain::schema::{asset_networks, transfers, withdrawals as w};
use rust_decimal::Decimal;
use testkit::TestDb;
use testkit::custody::*;
use uuid::Uuid;

async fn available(db: &TestDb, user: Uuid) -> Decimal {
    let mut conn = db.conn().await.unwrap();
    ledger::account_by_key(
        &mut conn,
        &Owner::User(user),
        Asset::ETH,
        AccountKind::Customer,
    )
    .await
    .unwrap()
    .unwrap()
    .available()
}

async fn count_refs(db: &TestDb, pattern: String) -> i64 {
    let mut conn = db.conn().await.unwrap();
    transfers::table
        .filter(transfers::reference.like(pattern))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unconfirmed_withdrawal_expires_and_releases_its_hold() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::ETH, "ethereum", "1")
        .await
        .unwrap();
    let to = random_evm_address();
    allow(&mut conn, user, "ethereum", &to).await.unwrap();
    let (id, token) = requested_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "0.5")
        .await
        .unwrap();
    assert_eq!(
        available(&db, user).await,
        "0.499".parse::<Decimal>().unwrap()
    );
    // Not yet expired: nothing happens.
    assert_eq!(withdrawals::expire_unconfirmed(&mut conn).await.unwrap(), 0);
    diesel::update(w::table.find(id))
        .set(w::confirm_expires_at.eq(Utc::now() - Duration::seconds(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        withdrawals::confirm_by_token(&mut conn, &token).await,
        Err(WithdrawalError::BadToken)
    ));
    assert_eq!(withdrawals::expire_unconfirmed(&mut conn).await.unwrap(), 1);
    assert_eq!(withdrawals::expire_unconfirmed(&mut conn).await.unwrap(), 0);
    let row = withdrawals::get(&mut conn, id).await.unwrap();
    assert_eq!(row.state, "cancelled");
    assert_eq!(available(&db, user).await, Decimal::ONE);
    let last = withdrawals::timeline(&mut conn, id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.event.as_str(), last.actor.as_str()),
        ("cancel", "system:expiry")
    );
    reconciles(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_clicks_cancels_and_approvals_apply_once_and_end_the_hold_once() {
    let db = TestDb::with_pool_size(16).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::ETH, "ethereum", "10")
        .await
        .unwrap();
    let to = random_evm_address();
    allow(&mut conn, user, "ethereum", &to).await.unwrap();

    // Clicks and cancels at once, eight rounds.
    for _ in 0..8 {
        let (id, token) =
            requested_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "0.1")
                .await
                .unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let pool = db.pool();
                let token = token.clone();
                tokio::spawn(async move {
                    let mut c = pool.get().await.unwrap();
                    if i % 2 == 0 {
                        withdrawals::confirm_by_token(&mut c, &token).await.is_ok()
                    } else {
                        withdrawals::cancel(&mut c, user, id).await.is_ok()
                    }
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        let row = withdrawals::get(&mut conn, id).await.unwrap();
        // A click can only win before the first cancel; exactly one cancel wins.
        assert_eq!(row.state, "cancelled");
        assert!((1..=2).contains(&ok), "{ok} transitions");
        assert_eq!(count_refs(&db, format!("withdrawal:{id}:release")).await, 1);
        assert_eq!(count_refs(&db, format!("withdrawal:{id}:%settle")).await, 0);
    }
    assert_eq!(available(&db, user).await, Decimal::from(10));

    // Above the threshold: admins approving at once, each counted once.
    diesel::update(asset_networks::table.filter(asset_networks::asset.eq("ETH")))
        .set(asset_networks::auto_approve_max.eq(Decimal::ZERO))
        .execute(&mut conn)
        .await
        .unwrap();
    let (id, token) = requested_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "0.2")
        .await
        .unwrap();
    assert_eq!(
        withdrawals::confirm_by_token(&mut conn, &token)
            .await
            .unwrap()
            .state,
        "confirmed"
    );
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let tasks: Vec<_> = [a, a, a, b, b, b]
        .into_iter()
        .map(|admin| {
            let pool = db.pool();
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                withdrawals::approve(&mut c, admin, id).await.map(|_| ())
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 2, "one approval per admin");
    let row = withdrawals::get(&mut conn, id).await.unwrap();
    assert_eq!(row.state, "approved");
    let mut approvals = row.approvals.clone();
    approvals.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(approvals, expected);
    reconciles(&mut conn).await.unwrap();
}
