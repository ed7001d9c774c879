//! The settle job: an import enqueues its settlement once; two runners
//! settle it once; `run-once settle --date D` settles a day.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::contracts::orders::{self, Buyer};
use domain::identity::jurisdictions::Restrictions;
use domain::identity::store;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{contracts, jobs, price_fixings, products, settlements, transfers};
use domain::settlement::earnings::{self, NewEarning};
use rust_decimal_macros::dec;
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workers::runner::{Runner, RunnerConfig};

async fn bought_day(conn: &mut AsyncPgConnection) -> (Uuid, NaiveDate) {
    domain::seed::platform_accounts(conn).await.unwrap();
    domain::seed::demo_catalog(conn).await.unwrap();
    let (product, pool): (Uuid, Uuid) = products::table
        .filter(products::name.like("BTC 180 days%"))
        .select((products::id, products::pool_id))
        .first(conn)
        .await
        .unwrap();
    let user = store::insert_user(
        conn,
        &store::NewUser {
            id: Uuid::now_v7(),
            email: "settle@example.com",
            password_hash: "x",
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    let bank = ledger::open_account(
        conn,
        &Owner::Network("t".into()),
        Asset::USDT,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let acc = ledger::open_account(
        conn,
        &Owner::User(user.id),
        Asset::USDT,
        AccountKind::Customer,
    )
    .await
    .unwrap();
    let amount = Amount::parse("100000", Asset::USDT, Sign::Positive).unwrap();
    ledger::post_batch(
        conn,
        &[NewTransfer::new("fund", TransferKind::Deposit, bank.id, acc.id, amount).into()],
    )
    .await
    .unwrap();
    let buyer = Buyer {
        user: user.id,
        partner: None,
    };
    let q = orders::create_quote(
        conn,
        buyer,
        product,
        dec!(100),
        Asset::USDT,
        chrono::Duration::hours(1),
        Utc::now(),
    )
    .await
    .unwrap();
    orders::place_order(conn, buyer, q.id, &Restrictions::default_list(), Utc::now())
        .await
        .unwrap();
    // Settle a day that has ended: move the contract a few days back.
    let day = (Utc::now() - chrono::Duration::days(1)).date_naive();
    diesel::update(contracts::table)
        .set((
            contracts::starts_at
                .eq(day.and_hms_opt(0, 0, 0).unwrap().and_utc() - chrono::Duration::days(2)),
            contracts::state.eq("active"),
        ))
        .execute(conn)
        .await
        .unwrap();
    for (asset, usd) in [("BTC", dec!(97000)), ("USDT", dec!(1))] {
        diesel::insert_into(price_fixings::table)
            .values((
                price_fixings::asset.eq(asset),
                price_fixings::day.eq(day),
                price_fixings::usd.eq(usd),
                price_fixings::source.eq("test"),
                price_fixings::observed_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await
            .unwrap();
    }
    (pool, day)
}

fn fast() -> RunnerConfig {
    RunnerConfig {
        concurrency: 2,
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        ..RunnerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_is_settled_once_by_two_runners() {
    let db = TestDb::with_pool_size(16).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (pool, day) = bought_day(&mut conn).await;
    let e = NewEarning {
        pool_id: pool,
        day,
        coin: "BTC".into(),
        amount: dec!(0.0001),
        delivered_hashrate: dec!(100),
        difficulty: dec!(102289407543323),
        pool_tx_ids: vec!["tx1".into()],
        source: "test".into(),
        corrects: None,
    };
    let imported = earnings::import(&mut conn, &e).await.unwrap();
    let queued: i64 = jobs::table
        .filter(jobs::kind.eq("settle"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(queued, 1, "the import enqueued its settlement");

    let shutdown = CancellationToken::new();
    let a = tokio::spawn(
        Runner::new(db.pool(), workers::builtin::registry(), fast()).run(shutdown.clone()),
    );
    let b = tokio::spawn(
        Runner::new(db.pool(), workers::builtin::registry(), fast()).run(shutdown.clone()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = settlements::table
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        let done: i64 = jobs::table
            .filter(jobs::kind.eq("settle"))
            .filter(jobs::state.eq("succeeded"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if n == 1 && done == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled: {n} settlements, {done} jobs done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    let payouts: i64 = transfers::table
        .filter(transfers::reference.like("payout:%"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(payouts, 1);
    let s: Uuid = settlements::table
        .select(settlements::earning_id)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(s, imported.id);

    // run-once for the day settles nothing more.
    let runner = Runner::new(db.pool(), workers::builtin::registry(), fast());
    let job = runner
        .run_once("settle", serde_json::json!({ "date": day }))
        .await
        .unwrap();
    assert_eq!(job.state, "succeeded");
    assert_eq!(
        settlements::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        1
    );
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());
}
