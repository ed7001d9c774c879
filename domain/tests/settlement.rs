//! Settling pool-days against the real PostgreSQL: conservation in the
//! ledger, exactly once, conversion through the treasury, merged coins,
//! the stop-rule counter, and a recomputation from the stored inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::contracts::orders::{self, Buyer};
use domain::identity::jurisdictions::Restrictions;
use domain::identity::store;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{
    contracts, pool_earnings, pools, price_fixings, products, settlement_lines, transfers,
};
use domain::settlement::engine;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

async fn customer(conn: &mut AsyncPgConnection) -> Uuid {
    let user = store::insert_user(
        conn,
        &store::NewUser {
            id: Uuid::now_v7(),
            email: &format!("s-{}@example.com", Uuid::new_v4().simple()),
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
        &Owner::Network("test".into()),
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
    let amount = Amount::parse("1000000", Asset::USDT, Sign::Positive).unwrap();
    ledger::post_batch(
        conn,
        &[NewTransfer::new(
            format!("fund:{}", user.id),
            TransferKind::Deposit,
            bank.id,
            acc.id,
            amount,
        )
        .into()],
    )
    .await
    .unwrap();
    user.id
}

async fn product_named(conn: &mut AsyncPgConnection, like: &str) -> (Uuid, Uuid) {
    products::table
        .filter(products::name.like(like))
        .select((products::id, products::pool_id))
        .first(conn)
        .await
        .unwrap()
}

/// Buys `hashrate` and returns the contract id and its first day.
async fn buy(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    product: Uuid,
    hashrate: &str,
) -> (Uuid, NaiveDate) {
    let q = orders::create_quote(
        conn,
        Buyer {
            user,
            partner: None,
        },
        product,
        hashrate.parse().unwrap(),
        Asset::USDT,
        chrono::Duration::hours(1),
        Utc::now(),
    )
    .await
    .unwrap();
    let (_, c) = orders::place_order(
        conn,
        Buyer {
            user,
            partner: None,
        },
        q.id,
        &Restrictions::default_list(),
        Utc::now(),
    )
    .await
    .unwrap();
    (c.id, c.starts_at.date_naive())
}

async fn fix(conn: &mut AsyncPgConnection, day: NaiveDate, prices: &[(&str, Decimal)]) {
    for (asset, usd) in prices {
        diesel::insert_into(price_fixings::table)
            .values((
                price_fixings::asset.eq(*asset),
                price_fixings::day.eq(day),
                price_fixings::usd.eq(*usd),
                price_fixings::source.eq("test fixing"),
                price_fixings::observed_at.eq(Utc::now()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await
            .unwrap();
    }
}

async fn import(
    conn: &mut AsyncPgConnection,
    pool: Uuid,
    day: NaiveDate,
    coin: &str,
    amount: Decimal,
    delivered: Decimal,
) -> Uuid {
    let id = Uuid::now_v7();
    diesel::insert_into(pool_earnings::table)
        .values((
            pool_earnings::id.eq(id),
            pool_earnings::pool_id.eq(pool),
            pool_earnings::day.eq(day),
            pool_earnings::coin.eq(coin),
            pool_earnings::amount.eq(amount),
            pool_earnings::delivered_hashrate.eq(delivered),
            pool_earnings::difficulty.eq(dec!(102289407543323)),
            pool_earnings::pool_tx_ids.eq(vec!["tx-a".to_owned()]),
            pool_earnings::source.eq("test"),
        ))
        .execute(conn)
        .await
        .unwrap();
    id
}

async fn setup(
    db: &TestDb,
) -> diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection> {
    let mut conn = db.conn().await.unwrap();
    domain::seed::platform_accounts(&mut conn).await.unwrap();
    domain::seed::demo_catalog(&mut conn).await.unwrap();
    conn
}

async fn balance(conn: &mut AsyncPgConnection, user: Uuid, asset: Asset) -> Decimal {
    ledger::account_by_key(conn, &Owner::User(user), asset, AccountKind::Customer)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.available())
}

#[tokio::test]
async fn a_btc_day_is_settled_once_conserved_and_converted() {
    let db = TestDb::new().await.unwrap();
    let mut conn = setup(&db).await;
    let (product, pool) = product_named(&mut conn, "BTC 180 days%").await;
    let alice = customer(&mut conn).await;
    let bob = customer(&mut conn).await;
    let (a1, day) = buy(&mut conn, alice, product, "600").await;
    let (_a2, _) = buy(&mut conn, alice, product, "100").await;
    let (b1, _) = buy(&mut conn, bob, product, "300").await;
    // Bob is paid in USDT: converted at the day's fixing with the spread.
    domain::contracts::store::set_payout_asset(&mut conn, b1, "USDT")
        .await
        .unwrap();
    fix(&mut conn, day, &[("BTC", dec!(100000)), ("USDT", dec!(1))]).await;
    // The pool saw 1200 TH/s; 1000 were sold: a sixth earns for the house.
    let earning = import(&mut conn, pool, day, "BTC", dec!(0.01234567), dec!(1200)).await;

    let before: i64 = transfers::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    let s = engine::settle(&mut conn, earning).await.unwrap();
    assert_eq!(s.contracts, 3);
    assert_eq!(s.earnings, s.gross_total + s.house + s.remainder);
    assert_eq!(s.gross_total, s.net_total + s.fees_total);
    assert!(s.house > Decimal::ZERO);
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());
    let after: i64 = transfers::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();

    // Exactly once: running it again returns the same settlement and posts nothing.
    let again = engine::settle(&mut conn, earning).await.unwrap();
    assert_eq!(again.id, s.id);
    assert_eq!(
        transfers::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap(),
        after
    );
    assert!(after > before);

    // Alice got BTC, Bob got USDT.
    let lines: Vec<(Uuid, Decimal, Decimal, Decimal, String, Decimal)> = settlement_lines::table
        .filter(settlement_lines::settlement_id.eq(s.id))
        .select((
            settlement_lines::contract_id,
            settlement_lines::gross,
            settlement_lines::fee,
            settlement_lines::net,
            settlement_lines::payout_asset,
            settlement_lines::payout_amount,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    let alice_btc: Decimal = lines.iter().filter(|l| l.4 == "BTC").map(|l| l.5).sum();
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        alice_btc.normalize()
    );
    let bob_line = lines.iter().find(|l| l.0 == b1).unwrap();
    // net BTC × 100 000 × (1 − 0.5 %), floored to the cent-of-a-cent (6 decimals)
    let expected = (bob_line.3 * dec!(100000) * dec!(0.995))
        .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::ToZero);
    assert_eq!(bob_line.5, expected);
    assert_eq!(
        balance(&mut conn, bob, Asset::USDT).await,
        dec!(1000000) - bob_usdt_paid(&mut conn, bob).await + expected
    );
    // More hashrate earned more.
    let a1_gross = lines.iter().find(|l| l.0 == a1).unwrap().1;
    assert!(a1_gross > bob_line.1);

    // Recomputing from the stored inputs gives the same lines.
    let (input, _) = (
        engine::EarningInput {
            id: Some(earning),
            pool_id: pool,
            day,
            coin: "BTC".into(),
            amount: dec!(0.01234567),
            delivered_hashrate: dec!(1200),
            difficulty: dec!(102289407543323),
            pool_tx_ids: vec!["tx-a".into()],
        },
        (),
    );
    let plan = engine::plan(&mut conn, &input).await.unwrap();
    for l in &plan.lines {
        let stored = lines.iter().find(|s| s.0 == l.contract_id).unwrap();
        assert_eq!(
            (
                stored.1.normalize(),
                stored.2.normalize(),
                stored.3.normalize(),
                stored.5.normalize()
            ),
            (l.gross, l.fee, l.net, l.payout_amount)
        );
    }
    assert_eq!(plan.inputs, s.inputs);
}

async fn bob_usdt_paid(conn: &mut AsyncPgConnection, bob: Uuid) -> Decimal {
    use domain::schema::contracts as c;
    let paid: Vec<Decimal> = c::table
        .filter(c::user_id.eq(bob))
        .select(c::paid_amount)
        .load(conn)
        .await
        .unwrap();
    paid.into_iter().sum()
}

#[tokio::test]
async fn merged_coins_settle_independently_and_the_fee_is_taken_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = setup(&db).await;
    let (product, pool) = product_named(&mut conn, "LTC+DOGE%").await;
    let carol = customer(&mut conn).await;
    let (c1, day) = buy(&mut conn, carol, product, "10000").await;
    fix(
        &mut conn,
        day,
        &[("LTC", dec!(100)), ("DOGE", dec!(0.4)), ("USDT", dec!(1))],
    )
    .await;
    let ltc = import(&mut conn, pool, day, "LTC", dec!(0.05), dec!(10000)).await;
    let doge = import(&mut conn, pool, day, "DOGE", dec!(150), dec!(10000)).await;
    let s_ltc = engine::settle(&mut conn, ltc).await.unwrap();
    let s_doge = engine::settle(&mut conn, doge).await.unwrap();
    // The fee is charged on the primary coin (LTC) only.
    assert!(s_ltc.fees_total > Decimal::ZERO);
    assert_eq!(s_doge.fees_total, Decimal::ZERO);
    assert_eq!(s_doge.net_total, dec!(150));
    // LTC is not held: its net reaches Carol converted to DOGE (her payout asset).
    let lines: Vec<(String, Decimal)> = settlement_lines::table
        .filter(settlement_lines::contract_id.eq(c1))
        .select((settlement_lines::coin, settlement_lines::payout_amount))
        .load(&mut conn)
        .await
        .unwrap();
    let total: Decimal = lines.iter().map(|l| l.1).sum();
    assert_eq!(
        balance(&mut conn, carol, Asset::DOGE).await,
        total.normalize()
    );
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_day_with_zero_net_counts_towards_the_stop_rule() {
    let db = TestDb::new().await.unwrap();
    let mut conn = setup(&db).await;
    let (product, pool) = product_named(&mut conn, "BTC 180 days%").await;
    let dave = customer(&mut conn).await;
    let (c1, day) = buy(&mut conn, dave, product, "100").await;
    // The lifecycle job has activated it by the time its days are settled.
    diesel::update(contracts::table.find(c1))
        .set(contracts::state.eq("active"))
        .execute(&mut conn)
        .await
        .unwrap();
    // A BTC price so low the fee eats the whole gross.
    fix(&mut conn, day, &[("BTC", dec!(1)), ("USDT", dec!(1))]).await;
    let e = import(&mut conn, pool, day, "BTC", dec!(0.00001), dec!(100)).await;
    let s = engine::settle(&mut conn, e).await.unwrap();
    assert_eq!(s.net_total, Decimal::ZERO);
    let zero: i32 = contracts::table
        .find(c1)
        .select(contracts::zero_net_days)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(zero, 1);
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());
    // Two more days without net: the product's stop rule (3 days) suspends it.
    let mut d = day;
    for _ in 0..2 {
        d = d.succ_opt().unwrap();
        fix(&mut conn, d, &[("BTC", dec!(1)), ("USDT", dec!(1))]).await;
        let e = import(&mut conn, pool, d, "BTC", dec!(0.00001), dec!(100)).await;
        engine::settle(&mut conn, e).await.unwrap();
    }
    let state: String = contracts::table
        .find(c1)
        .select(contracts::state)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(state, "suspended");
    // A profitable day resumes it; pause_extend adds the paused hours to the end.
    let ends_before: chrono::DateTime<Utc> = contracts::table
        .find(c1)
        .select(contracts::ends_at)
        .first(&mut conn)
        .await
        .unwrap();
    d = d.succ_opt().unwrap();
    fix(&mut conn, d, &[("BTC", dec!(100000)), ("USDT", dec!(1))]).await;
    let e = import(&mut conn, pool, d, "BTC", dec!(0.0001), dec!(100)).await;
    engine::settle(&mut conn, e).await.unwrap();
    let (state, ends_after): (String, chrono::DateTime<Utc>) = contracts::table
        .find(c1)
        .select((contracts::state, contracts::ends_at))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(state, "active");
    assert!(ends_after > ends_before, "paused hours added");
    let kinds: Vec<String> = domain::contracts::store::events(&mut conn, c1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&"suspended".to_owned()) && kinds.contains(&"resumed".to_owned()),
        "{kinds:?}"
    );
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());

    // A missing fixing is refused before anything is posted.
    let next = d.succ_opt().unwrap();
    let e2 = import(&mut conn, pool, next, "BTC", dec!(0.001), dec!(100)).await;
    assert!(matches!(
        engine::settle(&mut conn, e2).await,
        Err(engine::SettlementError::FixingMissing(..))
    ));
    let _ = pools::table
        .count()
        .get_result::<i64>(&mut conn)
        .await
        .unwrap();
}

async fn correct(
    conn: &mut AsyncPgConnection,
    original: Uuid,
    amount: Decimal,
    delivered: Decimal,
) -> Uuid {
    let (pool, day, coin): (Uuid, NaiveDate, String) = pool_earnings::table
        .find(original)
        .select((
            pool_earnings::pool_id,
            pool_earnings::day,
            pool_earnings::coin,
        ))
        .first(conn)
        .await
        .unwrap();
    let id = Uuid::now_v7();
    diesel::insert_into(pool_earnings::table)
        .values((
            pool_earnings::id.eq(id),
            pool_earnings::pool_id.eq(pool),
            pool_earnings::day.eq(day),
            pool_earnings::coin.eq(coin),
            pool_earnings::amount.eq(amount),
            pool_earnings::delivered_hashrate.eq(delivered),
            pool_earnings::difficulty.eq(dec!(102289407543323)),
            pool_earnings::pool_tx_ids.eq(vec!["tx-b".to_owned()]),
            pool_earnings::source.eq("test correction"),
            pool_earnings::corrects_id.eq(Some(original)),
        ))
        .execute(conn)
        .await
        .unwrap();
    id
}

/// The pool's income account must end every settlement at zero: all that
/// came in went out to customers, fees, the house and rounding.
async fn income_is_empty(conn: &mut AsyncPgConnection, pool: Uuid) {
    let income = ledger::account_by_key(
        conn,
        &Owner::Pool(pool.to_string()),
        Asset::BTC,
        AccountKind::MiningIncome,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(income.debits_posted, income.credits_posted);
    assert!(ledger::reconcile(conn).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_correction_of_a_settled_day_posts_the_differences_and_never_takes_back() {
    let db = TestDb::new().await.unwrap();
    let mut conn = setup(&db).await;
    let (product, pool) = product_named(&mut conn, "BTC 180 days%").await;
    let alice = customer(&mut conn).await;
    let bob = customer(&mut conn).await;
    let (_a1, day) = buy(&mut conn, alice, product, "600").await;
    let (_a2, _) = buy(&mut conn, alice, product, "100").await;
    let (b1, _) = buy(&mut conn, bob, product, "300").await;
    domain::contracts::store::set_payout_asset(&mut conn, b1, "USDT")
        .await
        .unwrap();
    fix(&mut conn, day, &[("BTC", dec!(100000)), ("USDT", dec!(1))]).await;
    let e1 = import(&mut conn, pool, day, "BTC", dec!(0.01234567), dec!(1200)).await;
    let s1 = engine::settle(&mut conn, e1).await.unwrap();
    income_is_empty(&mut conn, pool).await;
    let alice_1 = balance(&mut conn, alice, Asset::BTC).await;
    let bob_1 = balance(&mut conn, bob, Asset::USDT).await;

    // The pool reports more: the difference is paid, naming the original transfer.
    let e2 = correct(&mut conn, e1, dec!(0.02), dec!(1200)).await;
    let s2 = engine::settle(&mut conn, e2).await.unwrap();
    assert_eq!(s2.corrects_id, Some(s1.id));
    assert_eq!(s2.earnings, dec!(0.02));
    income_is_empty(&mut conn, pool).await;
    let alice_2 = balance(&mut conn, alice, Asset::BTC).await;
    let bob_2 = balance(&mut conn, bob, Asset::USDT).await;
    assert!(alice_2 > alice_1 && bob_2 > bob_1);
    // Each customer now holds exactly the corrected day's lines.
    let alice_lines: Decimal = settlement_lines::table
        .filter(settlement_lines::settlement_id.eq(s2.id))
        .filter(settlement_lines::payout_asset.eq("BTC"))
        .select(settlement_lines::payout_amount)
        .load::<Decimal>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .sum();
    assert_eq!(alice_2, alice_lines.normalize());
    let corrective: Vec<(String, Option<Uuid>)> = transfers::table
        .filter(transfers::reference.like(format!("payout:{}:%", s2.id)))
        .select((transfers::reference, transfers::corrects_id))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(corrective.len(), 2);
    assert!(corrective.iter().all(|(_, c)| c.is_some()));
    // Running it again changes nothing; the original cannot be settled again.
    let before = transfer_count(&mut conn).await;
    assert_eq!(engine::settle(&mut conn, e2).await.unwrap().id, s2.id);
    assert_eq!(engine::settle(&mut conn, e1).await.unwrap().id, s1.id);
    assert_eq!(transfer_count(&mut conn).await, before);

    // The pool reports less: nobody's balance is taken back; the house bears it.
    let e3 = correct(&mut conn, e2, dec!(0.005), dec!(1200)).await;
    let s3 = engine::settle(&mut conn, e3).await.unwrap();
    assert_eq!(s3.corrects_id, Some(s2.id));
    income_is_empty(&mut conn, pool).await;
    assert_eq!(balance(&mut conn, alice, Asset::BTC).await, alice_2);
    assert_eq!(balance(&mut conn, bob, Asset::USDT).await, bob_2);
    let not_reclaimed: Decimal = s3.inputs["correction"]["not_reclaimed"]["BTC"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(not_reclaimed > Decimal::ZERO);
    assert_eq!(
        alice_2 - not_reclaimed,
        settlement_lines::table
            .filter(settlement_lines::settlement_id.eq(s3.id))
            .filter(settlement_lines::payout_asset.eq("BTC"))
            .select(settlement_lines::payout_amount)
            .load::<Decimal>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .sum::<Decimal>()
    );
    // The platform's side: the house account paid for what was not reclaimed.
    let house = ledger::account_by_key(&mut conn, &Owner::Platform, Asset::BTC, AccountKind::House)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        house.credits_posted - house.debits_posted,
        s3.house - not_reclaimed
    );
}

async fn transfer_count(conn: &mut AsyncPgConnection) -> i64 {
    transfers::table.count().get_result(conn).await.unwrap()
}

#[tokio::test]
async fn a_settlement_stopped_part_way_completes_once_when_run_again() {
    let db = TestDb::new().await.unwrap();
    let mut conn = setup(&db).await;
    let (product, pool) = product_named(&mut conn, "BTC 180 days%").await;
    let mut users = Vec::new();
    for _ in 0..4 {
        let u = customer(&mut conn).await;
        buy(&mut conn, u, product, "200").await;
        users.push(u);
    }
    let (_, day) = buy(&mut conn, users[0], product, "100").await;
    fix(&mut conn, day, &[("BTC", dec!(100000)), ("USDT", dec!(1))]).await;
    let earning = import(&mut conn, pool, day, "BTC", dec!(0.01), dec!(900)).await;
    // One account per chunk; the "crash" comes after two of four chunks.
    let crash = engine::SettleOptions {
        chunk: 1,
        stop_after_chunks: Some(2),
    };
    assert!(matches!(
        engine::settle_with(&mut conn, earning, crash).await,
        Err(engine::SettlementError::Interrupted)
    ));
    let paid_part: i64 = transfers::table
        .filter(transfers::reference.like("payout:%"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(paid_part, 2);
    assert!(
        engine::settlement_for(&mut conn, earning)
            .await
            .unwrap()
            .is_none()
    );
    assert!(ledger::reconcile(&mut conn).await.unwrap().is_empty());

    // Run again, crash again at the same place: nothing is paid twice.
    assert!(
        engine::settle_with(&mut conn, earning, crash)
            .await
            .is_err()
    );
    let s = engine::settle_with(
        &mut conn,
        earning,
        engine::SettleOptions {
            chunk: 1,
            stop_after_chunks: None,
        },
    )
    .await
    .unwrap();
    let payouts: i64 = transfers::table
        .filter(transfers::reference.like("payout:%"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(payouts, 4);
    assert_eq!(s.contracts, 5);
    income_is_empty(&mut conn, pool).await;
    // Every customer holds exactly their lines.
    for u in users {
        let lines: Decimal = settlement_lines::table
            .inner_join(contracts::table)
            .filter(contracts::user_id.eq(u))
            .select(settlement_lines::payout_amount)
            .load::<Decimal>(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .sum();
        assert_eq!(balance(&mut conn, u, Asset::BTC).await, lines.normalize());
    }
}
