//! The contract lifecycle against the real PostgreSQL: activation and
//! expiry (idempotent, and once under concurrency), facility outages, the
//! stop rule and termination with its pro-rata refund. Every test ends with
//! a reconciled ledger.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::catalog::model::{Product, StopRule};
use domain::contracts::lifecycle::{self, Action, LifecycleError};
use domain::contracts::store::{self, Contract, ContractState};
use domain::identity::{partners, store as users};
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{algorithms, facilities, pools, products};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Fixtures: catalog rows, a funded buyer and contracts bought as purchase does
// ---------------------------------------------------------------------------

/// 00:00 UTC, `days` days ago: contracts start at midnight, and outages
/// must be over when they are recorded, so the tests live in the past.
fn midnight_days_ago(days: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::days(days))
        .duration_trunc(Duration::days(1))
        .unwrap()
}

fn amount(s: &str, asset: Asset) -> Amount {
    Amount::parse(s, asset, Sign::Positive).unwrap()
}

async fn assert_reconciled(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(
        problems.is_empty(),
        "ledger does not reconcile: {problems:#?}"
    );
}

/// An algorithm, a facility, a pool on it and the facility's id.
async fn facility(conn: &mut AsyncPgConnection) -> Uuid {
    diesel::insert_into(algorithms::table)
        .values((
            algorithms::code.eq("sha256"),
            algorithms::name.eq("SHA-256"),
            algorithms::hashrate_unit.eq("TH/s"),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .unwrap();
    let id = Uuid::now_v7();
    diesel::insert_into(facilities::table)
        .values((
            facilities::id.eq(id),
            facilities::name.eq(format!("Facility {}", id.simple())),
            facilities::country.eq("IS"),
            facilities::region.eq("Reykjanes"),
            facilities::miner_model.eq("Antminer S21"),
            facilities::efficiency.eq(dec!(17.5)),
            facilities::efficiency_unit.eq("J/TH"),
            facilities::pue.eq(dec!(1.1)),
            facilities::total_hashrate.eq(dec!(100000)),
            facilities::sellable_hashrate.eq(dec!(80000)),
            facilities::algorithm.eq("sha256"),
        ))
        .execute(conn)
        .await
        .unwrap();
    id
}

/// A product on sale at `facility` with 1000 TH/s of inventory.
async fn product(
    conn: &mut AsyncPgConnection,
    facility: Uuid,
    stop_rule: StopRule,
    stop_after_days: i32,
) -> Product {
    let pool = Uuid::now_v7();
    diesel::insert_into(pools::table)
        .values((
            pools::id.eq(pool),
            pools::name.eq(format!("Pool {}", pool.simple())),
            pools::algorithm.eq("sha256"),
            pools::coins.eq(vec!["BTC".to_owned()]),
            pools::facility_id.eq(facility),
        ))
        .execute(conn)
        .await
        .unwrap();
    let id = Uuid::now_v7();
    diesel::insert_into(products::table)
        .values((
            products::id.eq(id),
            products::name.eq(format!("Product {}", id.simple())),
            products::algorithm.eq("sha256"),
            products::mined_coins.eq(vec!["BTC".to_owned()]),
            products::pool_id.eq(pool),
            products::facility_id.eq(facility),
            products::hashrate_unit.eq("TH/s"),
            products::hashrate_min.eq(dec!(1)),
            products::hashrate_max.eq(dec!(500)),
            products::hashrate_step.eq(dec!(1)),
            products::price_usd_per_unit.eq(dec!(15)),
            products::duration_days.eq(30),
            products::fee_usd_per_unit_day.eq(dec!(0.05)),
            products::pay_assets.eq(vec!["BTC".to_owned(), "USDT".to_owned()]),
            products::payout_assets.eq(vec!["BTC".to_owned()]),
            products::stop_rule.eq(stop_rule.as_str()),
            products::stop_after_days.eq(stop_after_days),
            products::inventory.eq(dec!(1000)),
            products::state.eq("on_sale"),
        ))
        .execute(conn)
        .await
        .unwrap();
    product_row(conn, id).await
}

async fn product_row(conn: &mut AsyncPgConnection, id: Uuid) -> Product {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .unwrap()
}

async fn sold(conn: &mut AsyncPgConnection, product: Uuid) -> Decimal {
    product_row(conn, product).await.sold.normalize()
}

/// Who pays: a customer, or a partner buying for its customer.
#[derive(Clone, Copy)]
struct Buyer {
    user: Uuid,
    partner: Option<Uuid>,
}

impl Buyer {
    fn owner(self) -> (Owner, AccountKind) {
        match self.partner {
            Some(p) => (Owner::Partner(p), AccountKind::Partner),
            None => (Owner::User(self.user), AccountKind::Customer),
        }
    }
}

async fn fund(conn: &mut AsyncPgConnection, buyer: Buyer, funds: Amount) {
    let (owner, kind) = buyer.owner();
    let account = ledger::open_account(conn, &owner, funds.asset(), kind)
        .await
        .unwrap();
    let equity = ledger::open_account(conn, &Owner::Platform, funds.asset(), AccountKind::Equity)
        .await
        .unwrap();
    let t = NewTransfer::new(
        format!("test:fund:{}", Uuid::new_v4()),
        TransferKind::Adjustment,
        equity.id,
        account.id,
        funds,
    );
    ledger::post_batch(conn, &[t.into()]).await.unwrap();
}

/// A verified customer with `funds` in their account.
async fn customer(conn: &mut AsyncPgConnection, funds: Amount) -> Buyer {
    let id = Uuid::now_v7();
    let email = format!("buyer-{}@example.com", id.simple());
    users::insert_user(
        conn,
        &users::NewUser {
            id,
            email: &email,
            password_hash: "not-a-hash",
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    let buyer = Buyer {
        user: id,
        partner: None,
    };
    fund(conn, buyer, funds).await;
    buyer
}

/// A partner with `funds` prepaid, and one sub-customer of it.
async fn partner_customer(conn: &mut AsyncPgConnection, funds: Amount) -> Buyer {
    let partner = partners::create_partner(conn, &format!("Partner {}", Uuid::new_v4().simple()))
        .await
        .unwrap();
    let id = Uuid::now_v7();
    let email = format!("sub-{}@example.com", id.simple());
    users::insert_user(
        conn,
        &users::NewUser {
            id,
            email: &email,
            password_hash: "not-a-hash",
            country: "DE",
            role: None,
            partner_id: Some(partner.id),
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    let buyer = Buyer {
        user: id,
        partner: Some(partner.id),
    };
    fund(conn, buyer, funds).await;
    buyer
}

async fn balance(conn: &mut AsyncPgConnection, buyer: Buyer, asset: Asset) -> Decimal {
    let (owner, kind) = buyer.owner();
    ledger::account_by_key(conn, &owner, asset, kind)
        .await
        .unwrap()
        .unwrap()
        .available()
}

async fn sales_revenue(conn: &mut AsyncPgConnection, asset: Asset) -> Decimal {
    ledger::account_by_key(conn, &Owner::Platform, asset, AccountKind::SalesRevenue)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.posted_balance())
}

/// What purchase does: the `purchase` transfer from the buyer to sales
/// revenue, the pending contract row and `sold` raised, in one transaction.
async fn buy(
    conn: &mut AsyncPgConnection,
    buyer: Buyer,
    product: &Product,
    hashrate: Decimal,
    paid: Amount,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Contract {
    use diesel_async::AsyncConnection;
    let terms = serde_json::to_value(product.terms()).unwrap();
    let product_id = product.id;
    conn.transaction(async |conn| {
        let (owner, kind) = buyer.owner();
        let from = ledger::open_account(conn, &owner, paid.asset(), kind)
            .await
            .unwrap();
        let to = ledger::open_account(
            conn,
            &Owner::Platform,
            paid.asset(),
            AccountKind::SalesRevenue,
        )
        .await
        .unwrap();
        let t = NewTransfer::new(
            format!("order:{}", Uuid::now_v7()),
            TransferKind::Purchase,
            from.id,
            to.id,
            paid,
        );
        ledger::post_batch(conn, &[t.into()]).await.unwrap();
        let contract = Contract {
            id: Uuid::now_v7(),
            user_id: buyer.user,
            partner_id: buyer.partner,
            product_id,
            terms,
            hashrate,
            pay_asset: paid.asset().to_string(),
            paid_amount: paid.value(),
            payout_asset: "BTC".to_owned(),
            state: "pending".to_owned(),
            starts_at,
            ends_at,
            extended_hours: 0,
            zero_net_days: 0,
            suspended_at: None,
            ended_at: None,
            created_at: Utc::now(),
        };
        diesel::insert_into(domain::schema::contracts::table)
            .values(&contract)
            .execute(conn)
            .await?;
        diesel::update(products::table.find(product_id))
            .set(products::sold.eq(products::sold + hashrate))
            .execute(conn)
            .await?;
        Ok::<_, diesel::result::Error>(contract)
    })
    .await
    .unwrap()
}

async fn contract(conn: &mut AsyncPgConnection, id: Uuid) -> Contract {
    store::contract(conn, id).await.unwrap().unwrap()
}

async fn event_kinds(conn: &mut AsyncPgConnection, id: Uuid) -> Vec<String> {
    store::events(conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// A test world: one facility, one product, one funded customer.
struct World {
    facility: Uuid,
    product: Product,
    buyer: Buyer,
}

async fn world(conn: &mut AsyncPgConnection, rule: StopRule, stop_after_days: i32) -> World {
    let facility = facility(conn).await;
    let product = product(conn, facility, rule, stop_after_days).await;
    let buyer = customer(conn, amount("10", Asset::BTC)).await;
    World {
        facility,
        product,
        buyer,
    }
}

impl World {
    /// A contract of `days` days from `starts_at`, 10 TH/s for 0.1 BTC.
    async fn contract(
        &self,
        conn: &mut AsyncPgConnection,
        starts_at: DateTime<Utc>,
        days: i64,
    ) -> Contract {
        buy(
            conn,
            self.buyer,
            &self.product,
            dec!(10),
            amount("0.1", Asset::BTC),
            starts_at,
            starts_at + Duration::days(days),
        )
        .await
    }
}

// ---------------------------------------------------------------------------
// Activation and expiry
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_contract_activates_at_its_start_and_not_before() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(5);
    let c = w.contract(&mut conn, start, 30).await;

    let report = lifecycle::run_due(&mut conn, start - Duration::seconds(1))
        .await
        .unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(
        contract(&mut conn, c.id).await.state(),
        ContractState::Pending
    );

    let report = lifecycle::run_due(&mut conn, start).await.unwrap();
    assert_eq!(report.activated, vec![c.id]);
    assert!(report.expired.is_empty());
    let now = contract(&mut conn, c.id).await;
    assert_eq!(now.state(), ContractState::Active);
    assert_eq!(now.ends_at, c.ends_at);
    assert_eq!(event_kinds(&mut conn, c.id).await, ["activated"]);
    // Activation does not touch the inventory.
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(10));
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn expiry_ends_the_contract_and_releases_its_hashrate() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(40);
    let c = w.contract(&mut conn, start, 30).await;
    let other = w.contract(&mut conn, start, 31).await;
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(20));

    lifecycle::run_due(&mut conn, start).await.unwrap();
    let report = lifecycle::run_due(&mut conn, c.ends_at - Duration::seconds(1))
        .await
        .unwrap();
    assert!(report.is_empty(), "{report:?}");

    let late = c.ends_at + Duration::minutes(3);
    let report = lifecycle::run_due(&mut conn, late).await.unwrap();
    assert_eq!(report.expired, vec![c.id]);
    let ended = contract(&mut conn, c.id).await;
    assert_eq!(ended.state(), ContractState::Expired);
    // Ended at its contractual end, even when the job ran late.
    assert_eq!(ended.ended_at, Some(c.ends_at));
    assert_eq!(event_kinds(&mut conn, c.id).await, ["activated", "expired"]);
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(10));
    assert_eq!(
        contract(&mut conn, other.id).await.state(),
        ContractState::Active
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn a_contract_whose_whole_term_passed_unseen_is_activated_and_expired_at_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let c = w.contract(&mut conn, midnight_days_ago(10), 2).await;
    let report = lifecycle::run_due(&mut conn, Utc::now()).await.unwrap();
    assert_eq!(report.activated, vec![c.id]);
    assert_eq!(report.expired, vec![c.id]);
    assert_eq!(event_kinds(&mut conn, c.id).await, ["activated", "expired"]);
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(0));
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn running_due_twice_changes_nothing_the_second_time() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(3);
    let starting = w.contract(&mut conn, start, 30).await;
    let ending = w.contract(&mut conn, midnight_days_ago(40), 30).await;
    let future = w.contract(&mut conn, midnight_days_ago(-1), 30).await;
    let now = Utc::now();

    let first = lifecycle::run_due(&mut conn, now).await.unwrap();
    assert_eq!(first.activated.len(), 2);
    assert!(first.activated.contains(&starting.id) && first.activated.contains(&ending.id));
    assert_eq!(first.expired, vec![ending.id]);
    let sold_after = sold(&mut conn, w.product.id).await;
    assert_eq!(sold_after, dec!(20));

    let second = lifecycle::run_due(&mut conn, now).await.unwrap();
    assert!(second.is_empty(), "{second:?}");
    assert_eq!(sold(&mut conn, w.product.id).await, sold_after);
    assert_eq!(event_kinds(&mut conn, starting.id).await, ["activated"]);
    assert_eq!(
        event_kinds(&mut conn, ending.id).await,
        ["activated", "expired"]
    );
    assert!(event_kinds(&mut conn, future.id).await.is_empty());
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn concurrent_runs_move_each_contract_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let mut starting = Vec::new();
    let mut ending = Vec::new();
    for i in 0..40 {
        starting.push(
            w.contract(&mut conn, midnight_days_ago(i % 5 + 1), 30)
                .await
                .id,
        );
        ending.push(
            w.contract(&mut conn, midnight_days_ago(40 + i % 5), 30)
                .await
                .id,
        );
    }
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(800));
    let now = Utc::now();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let pool = db.pool();
        tasks.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            lifecycle::run_due(&mut conn, now).await.unwrap()
        });
    }
    let mut activated = Vec::new();
    let mut expired = Vec::new();
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        activated.extend(report.activated);
        expired.extend(report.expired);
    }
    activated.sort();
    expired.sort();
    let mut want_activated: Vec<Uuid> = starting.iter().chain(&ending).copied().collect();
    want_activated.sort();
    ending.sort();
    assert_eq!(activated, want_activated, "each activated exactly once");
    assert_eq!(expired, ending, "each expired exactly once");
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(400));
    for id in &ending {
        assert_eq!(event_kinds(&mut conn, *id).await, ["activated", "expired"]);
    }
    for id in &starting {
        assert_eq!(event_kinds(&mut conn, *id).await, ["activated"]);
    }
    assert!(lifecycle::run_due(&mut conn, now).await.unwrap().is_empty());
    assert_reconciled(&mut conn).await;
}

// ---------------------------------------------------------------------------
// Facility outages
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_outage_extends_the_contracts_that_ran_during_it_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let day = midnight_days_ago(10);
    // Ran through the whole outage.
    let through = w.contract(&mut conn, day - Duration::days(5), 30).await;
    // Started during the outage and was never activated ("pending but started").
    let mid = buy(
        &mut conn,
        w.buyer,
        &w.product,
        dec!(5),
        amount("0.05", Asset::BTC),
        day + Duration::hours(12),
        day + Duration::days(30),
    )
    .await;
    // Starts after the outage; ended before it.
    let later = w.contract(&mut conn, day + Duration::days(1), 30).await;
    let ended = w.contract(&mut conn, day - Duration::days(40), 30).await;
    lifecycle::run_due(&mut conn, day).await.unwrap();
    assert_eq!(
        contract(&mut conn, through.id).await.state(),
        ContractState::Active
    );
    assert_eq!(
        contract(&mut conn, mid.id).await.state(),
        ContractState::Pending
    );
    assert_eq!(
        contract(&mut conn, ended.id).await.state(),
        ContractState::Expired
    );
    // Another facility's contract is not affected.
    let elsewhere = world(&mut conn, StopRule::None, 3).await;
    let far = elsewhere
        .contract(&mut conn, day - Duration::days(5), 30)
        .await;

    // 10:00 to 13:30: 3.5 hours, rounded up to 4; the contract that started
    // at 12:00 ran 1.5 of them, rounded up to 2.
    let from = day + Duration::hours(10);
    let until = day + Duration::hours(13) + Duration::minutes(30);
    let recorded = lifecycle::record_outage(
        &mut conn,
        w.facility,
        from,
        until,
        "  grid failure ",
        "user:test",
    )
    .await
    .unwrap();
    assert_eq!(recorded.outage.facility_id, w.facility);
    assert_eq!(recorded.outage.reason, "grid failure");
    assert_eq!(recorded.outage.created_by, "user:test");
    let mut got: Vec<(Uuid, i64)> = recorded
        .extensions
        .iter()
        .map(|e| (e.contract_id, e.hours))
        .collect();
    got.sort();
    let mut want = vec![(through.id, 4), (mid.id, 2)];
    want.sort();
    assert_eq!(got, want);

    let t = contract(&mut conn, through.id).await;
    assert_eq!(t.ends_at, through.ends_at + Duration::hours(4));
    assert_eq!(t.extended_hours, 4);
    let m = contract(&mut conn, mid.id).await;
    assert_eq!(m.ends_at, mid.ends_at + Duration::hours(2));
    assert_eq!(m.extended_hours, 2);
    for before in [&later, &ended, &far] {
        let now = contract(&mut conn, before.id).await;
        assert_eq!(now.ends_at, before.ends_at);
        assert_eq!(now.extended_hours, 0);
    }
    let events = store::events(&mut conn, through.id).await.unwrap();
    let ext = events
        .iter()
        .find(|e| e.kind == "outage_extension")
        .expect("an outage_extension event");
    assert_eq!(
        ext.dedupe_key.as_deref(),
        Some(format!("outage:{}", recorded.outage.id).as_str())
    );
    assert_eq!(ext.detail["hours"], 4);
    assert_eq!(ext.detail["reason"], "grid failure");
    assert_eq!(
        ext.detail["outage_id"],
        recorded.outage.id.to_string().as_str()
    );

    // Applying the same outage again extends nothing.
    let again = lifecycle::apply_outage(&mut conn, &recorded.outage)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(contract(&mut conn, through.id).await.extended_hours, 4);
    assert_eq!(contract(&mut conn, mid.id).await.extended_hours, 2);
    let n = event_kinds(&mut conn, through.id)
        .await
        .iter()
        .filter(|k| *k == "outage_extension")
        .count();
    assert_eq!(n, 1);

    // Twice at once: still once.
    let (a, b) = {
        let pool = db.pool();
        let outage = recorded.outage.clone();
        let one = tokio::spawn({
            let (pool, outage) = (pool.clone(), outage.clone());
            async move {
                let mut c = pool.get().await.unwrap();
                lifecycle::apply_outage(&mut c, &outage).await.unwrap()
            }
        });
        let two = tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            lifecycle::apply_outage(&mut c, &outage).await.unwrap()
        });
        (one.await.unwrap(), two.await.unwrap())
    };
    assert!(a.is_empty() && b.is_empty());
    assert_eq!(contract(&mut conn, through.id).await.extended_hours, 4);
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn outages_are_checked() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let day = midnight_days_ago(3);
    let c = w.contract(&mut conn, day, 30).await;
    let (from, until) = (day + Duration::hours(1), day + Duration::hours(2));
    let recorded =
        lifecycle::record_outage(&mut conn, w.facility, from, until, "fire", "user:test")
            .await
            .unwrap();
    assert_eq!(recorded.extensions.len(), 1);

    // The same downtime entered again, even in part, is refused.
    let err = lifecycle::record_outage(
        &mut conn,
        w.facility,
        from + Duration::minutes(30),
        until + Duration::hours(1),
        "fire again",
        "user:test",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LifecycleError::OutageOverlaps(id) if id == recorded.outage.id),
        "{err:?}"
    );
    // Adjacent is fine.
    let next = lifecycle::record_outage(
        &mut conn,
        w.facility,
        until,
        until + Duration::minutes(10),
        "smoke",
        "user:test",
    )
    .await
    .unwrap();
    assert_eq!(next.extensions[0].hours, 1);
    assert_eq!(contract(&mut conn, c.id).await.extended_hours, 2);

    let err = lifecycle::record_outage(&mut conn, w.facility, until, from, "x", "user:test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LifecycleError::InvalidOutageWindow),
        "{err:?}"
    );
    let err = lifecycle::record_outage(
        &mut conn,
        w.facility,
        Utc::now() - Duration::hours(1),
        Utc::now() + Duration::hours(1),
        "still down",
        "user:test",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LifecycleError::OutageNotOver), "{err:?}");
    let err = lifecycle::record_outage(&mut conn, w.facility, from, until, " ", "user:test")
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::InvalidReason), "{err:?}");
    let err = lifecycle::record_outage(
        &mut conn,
        Uuid::now_v7(),
        day - Duration::days(1),
        day - Duration::days(1) + Duration::hours(1),
        "nowhere",
        "user:test",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LifecycleError::FacilityNotFound(_)),
        "{err:?}"
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn an_outage_while_paused_gives_back_only_the_hours_that_ran() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::PauseExtend, 1).await;
    let day = midnight_days_ago(10);
    let c = w.contract(&mut conn, day - Duration::days(1), 30).await;
    lifecycle::run_due(&mut conn, day).await.unwrap();
    // Suspended at 12:00, resumed at 20:00 (8 hours added for the pause).
    lifecycle::record_settled_day(&mut conn, c.id, true, day + Duration::hours(12))
        .await
        .unwrap();
    let resumed = lifecycle::record_settled_day(&mut conn, c.id, false, day + Duration::hours(20))
        .await
        .unwrap();
    assert_eq!(resumed.extended_hours, 8);
    // Outage 10:00 to 22:00: the contract ran 10-12 and 20-22, 4 hours.
    let recorded = lifecycle::record_outage(
        &mut conn,
        w.facility,
        day + Duration::hours(10),
        day + Duration::hours(22),
        "cooling",
        "user:test",
    )
    .await
    .unwrap();
    assert_eq!(recorded.extensions.len(), 1);
    assert_eq!(recorded.extensions[0].hours, 4);
    let now = contract(&mut conn, c.id).await;
    assert_eq!(now.extended_hours, 12);
    assert_eq!(now.ends_at, c.ends_at + Duration::hours(12));
    assert_reconciled(&mut conn).await;
}

// ---------------------------------------------------------------------------
// The stop rule
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pause_extend_suspends_after_n_zero_days_and_adds_the_paused_hours() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::PauseExtend, 3).await;
    let start = midnight_days_ago(20);
    let c = w.contract(&mut conn, start, 30).await;
    lifecycle::run_due(&mut conn, start).await.unwrap();
    let settle = |n: i64| start + Duration::days(n) + Duration::hours(2);

    // Two zero days, a good one (the count starts over), then three zero days.
    for (n, zero, count) in [
        (1, true, 1),
        (2, true, 2),
        (3, false, 0),
        (4, true, 1),
        (5, true, 2),
    ] {
        let day = lifecycle::record_settled_day(&mut conn, c.id, zero, settle(n))
            .await
            .unwrap();
        assert_eq!((day.zero_net_days, day.action), (count, None), "day {n}");
        assert_eq!(day.state, ContractState::Active);
    }
    let day = lifecycle::record_settled_day(&mut conn, c.id, true, settle(6))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Suspend));
    assert_eq!(day.state, ContractState::Suspended);
    let suspended = contract(&mut conn, c.id).await;
    assert_eq!(suspended.state(), ContractState::Suspended);
    assert_eq!(suspended.suspended_at, Some(settle(6)));
    assert_eq!(suspended.zero_net_days, 3);
    let events = store::events(&mut conn, c.id).await.unwrap();
    let ev = events.last().unwrap();
    assert_eq!(ev.kind, "suspended");
    assert_eq!(ev.detail["reason"], "stop_rule");
    assert_eq!(ev.detail["stop_rule"], "pause_extend");
    assert_eq!(ev.at, settle(6));

    // Still zero: stays suspended, the count goes on.
    let day = lifecycle::record_settled_day(&mut conn, c.id, true, settle(7))
        .await
        .unwrap();
    assert_eq!((day.action, day.zero_net_days), (None, 4));
    // A profitable day two days later resumes it, 48 hours later.
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, settle(8))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Resume));
    assert_eq!(day.extended_hours, 48);
    let resumed = contract(&mut conn, c.id).await;
    assert_eq!(resumed.state(), ContractState::Active);
    assert_eq!(resumed.suspended_at, None);
    assert_eq!(resumed.zero_net_days, 0);
    assert_eq!(resumed.extended_hours, 48);
    assert_eq!(resumed.ends_at, c.ends_at + Duration::hours(48));
    let events = store::events(&mut conn, c.id).await.unwrap();
    let ev = events.last().unwrap();
    assert_eq!(ev.kind, "resumed");
    assert_eq!(ev.detail["paused_hours"], 48);
    assert_eq!(ev.detail["extended_hours"], 48);
    assert_eq!(
        event_kinds(&mut conn, c.id).await,
        ["activated", "suspended", "resumed"]
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn stop_suspends_and_resumes_without_moving_the_end() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::Stop, 2).await;
    let start = midnight_days_ago(20);
    let c = w.contract(&mut conn, start, 30).await;
    lifecycle::run_due(&mut conn, start).await.unwrap();
    let settle = |n: i64| start + Duration::days(n) + Duration::hours(2);
    for n in 1..=2 {
        lifecycle::record_settled_day(&mut conn, c.id, true, settle(n))
            .await
            .unwrap();
    }
    assert_eq!(
        contract(&mut conn, c.id).await.state(),
        ContractState::Suspended
    );
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, settle(5))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Resume));
    assert_eq!(day.extended_hours, 0);
    let resumed = contract(&mut conn, c.id).await;
    assert_eq!(resumed.state(), ContractState::Active);
    assert_eq!(resumed.ends_at, c.ends_at);
    assert_eq!(resumed.extended_hours, 0);
    let events = store::events(&mut conn, c.id).await.unwrap();
    assert_eq!(events.last().unwrap().detail["paused_hours"], 72);
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn without_a_stop_rule_nothing_is_suspended() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 1).await;
    let start = midnight_days_ago(20);
    let c = w.contract(&mut conn, start, 30).await;
    lifecycle::run_due(&mut conn, start).await.unwrap();
    for n in 1..=5 {
        let day = lifecycle::record_settled_day(&mut conn, c.id, true, start + Duration::days(n))
            .await
            .unwrap();
        assert_eq!(
            (day.action, day.zero_net_days),
            (None, i32::try_from(n).unwrap())
        );
    }
    let now = contract(&mut conn, c.id).await;
    assert_eq!(now.state(), ContractState::Active);
    assert_eq!(now.zero_net_days, 5);
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn a_settled_day_of_an_ended_contract_is_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::PauseExtend, 1).await;
    let c = w.contract(&mut conn, midnight_days_ago(40), 30).await;
    lifecycle::run_due(&mut conn, Utc::now()).await.unwrap();
    let err = lifecycle::record_settled_day(&mut conn, c.id, true, Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::NotLive {
                state: ContractState::Expired,
                ..
            }
        ),
        "{err:?}"
    );
    let err = lifecycle::record_settled_day(&mut conn, Uuid::now_v7(), true, Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LifecycleError::ContractNotFound(_)),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Termination
// ---------------------------------------------------------------------------

#[tokio::test]
async fn termination_refunds_pro_rata_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(20);
    // 0.1 BTC for 3 days, ended after 1: 0.1 × 2/3 = 0.0666666666…, floored
    // to 8 places: 0.06666666; sales revenue keeps 0.03333334.
    let c = w.contract(&mut conn, start, 3).await;
    lifecycle::run_due(&mut conn, start).await.unwrap();
    assert_eq!(balance(&mut conn, w.buyer, Asset::BTC).await, dec!(9.9));
    assert_eq!(sales_revenue(&mut conn, Asset::BTC).await, dec!(0.1));
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(10));

    let at = start + Duration::days(1);
    let done = lifecycle::terminate(&mut conn, c.id, "user:staff", "customer request", at)
        .await
        .unwrap();
    assert_eq!(done.refund.value(), dec!(0.06666666));
    assert_eq!(done.refund.asset(), Asset::BTC);
    assert_eq!(done.contract.state(), ContractState::Terminated);
    assert_eq!(done.contract.ended_at, Some(at));
    assert_eq!(
        balance(&mut conn, w.buyer, Asset::BTC).await,
        dec!(9.96666666)
    );
    assert_eq!(sales_revenue(&mut conn, Asset::BTC).await, dec!(0.03333334));
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(0));

    let transfer = ledger::transfer_by_reference(&mut conn, &format!("refund:{}", c.id))
        .await
        .unwrap()
        .expect("the refund transfer");
    assert_eq!(Some(transfer.id), done.transfer_id);
    assert_eq!(transfer.kind, TransferKind::Refund);
    assert_eq!(transfer.amount, dec!(0.06666666));
    let events = store::events(&mut conn, c.id).await.unwrap();
    let ev = events.last().unwrap();
    assert_eq!(ev.kind, "terminated");
    assert_eq!(ev.detail["refund"], "0.06666666");
    assert_eq!(ev.detail["reason"], "customer request");
    assert_eq!(ev.detail["actor"], "user:staff");

    // A second termination is refused and refunds nothing.
    let err = lifecycle::terminate(&mut conn, c.id, "user:staff", "again", at)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::NotLive {
                state: ContractState::Terminated,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        balance(&mut conn, w.buyer, Asset::BTC).await,
        dec!(9.96666666)
    );
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(0));
    // And the expiry job leaves it alone.
    assert!(
        lifecycle::run_due(&mut conn, c.ends_at)
            .await
            .unwrap()
            .is_empty()
    );
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn a_partner_paid_contract_is_refunded_to_the_partner_exactly() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let facility = facility(&mut conn).await;
    let product = product(&mut conn, facility, StopRule::None, 3).await;
    let buyer = partner_customer(&mut conn, amount("1000", Asset::USDT)).await;
    let start = midnight_days_ago(20);
    // 100 USDT for 30 days, ended after 7.5: 22.5 / 30 × 100 = 75 exactly.
    let c = buy(
        &mut conn,
        buyer,
        &product,
        dec!(7),
        amount("100", Asset::USDT),
        start,
        start + Duration::days(30),
    )
    .await;
    assert_eq!(balance(&mut conn, buyer, Asset::USDT).await, dec!(900));
    let done = lifecycle::terminate(
        &mut conn,
        c.id,
        "user:staff",
        "facility closed",
        start + Duration::days(7) + Duration::hours(12),
    )
    .await
    .unwrap();
    assert_eq!(done.refund.value(), dec!(75));
    assert_eq!(balance(&mut conn, buyer, Asset::USDT).await, dec!(975));
    // The sub-customer has no account of its own: nothing went there.
    assert!(
        ledger::account_by_key(
            &mut conn,
            &Owner::User(buyer.user),
            Asset::USDT,
            AccountKind::Customer
        )
        .await
        .unwrap()
        .is_none()
    );
    assert_eq!(sales_revenue(&mut conn, Asset::USDT).await, dec!(25));
    assert_eq!(sold(&mut conn, product.id).await, dec!(0));
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn termination_before_the_start_refunds_all_and_after_the_end_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(20);
    let pending = w.contract(&mut conn, start, 30).await;
    let done = lifecycle::terminate(
        &mut conn,
        pending.id,
        "user:staff",
        "changed mind",
        start - Duration::hours(3),
    )
    .await
    .unwrap();
    assert_eq!(done.refund.value(), dec!(0.1));
    assert_eq!(balance(&mut conn, w.buyer, Asset::BTC).await, dec!(10));

    // Past its end but not yet expired by the job: no time left, no transfer.
    let over = w.contract(&mut conn, midnight_days_ago(40), 30).await;
    let done = lifecycle::terminate(
        &mut conn,
        over.id,
        "user:staff",
        "cleanup",
        over.ends_at + Duration::minutes(1),
    )
    .await
    .unwrap();
    assert!(done.refund.is_zero());
    assert_eq!(done.transfer_id, None);
    assert!(
        ledger::transfer_by_reference(&mut conn, &format!("refund:{}", over.id))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(done.contract.state(), ContractState::Terminated);
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(0));
    let events = store::events(&mut conn, over.id).await.unwrap();
    assert_eq!(events.last().unwrap().detail["refund"], "0");

    // An expired contract cannot be terminated.
    let expired = w.contract(&mut conn, midnight_days_ago(40), 30).await;
    lifecycle::run_due(&mut conn, Utc::now()).await.unwrap();
    let err = lifecycle::terminate(&mut conn, expired.id, "user:staff", "late", Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::NotLive {
                state: ContractState::Expired,
                ..
            }
        ),
        "{err:?}"
    );
    let err = lifecycle::terminate(&mut conn, Uuid::now_v7(), "user:staff", "x", Utc::now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LifecycleError::ContractNotFound(_)),
        "{err:?}"
    );
    let err = lifecycle::terminate(&mut conn, expired.id, "user:staff", "", Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::InvalidReason), "{err:?}");
    assert_reconciled(&mut conn).await;
}

#[tokio::test]
async fn concurrent_terminations_refund_once() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let w = world(&mut conn, StopRule::None, 3).await;
    let start = midnight_days_ago(10);
    let c = w.contract(&mut conn, start, 30).await;
    lifecycle::run_due(&mut conn, start).await.unwrap();
    let at = start + Duration::days(10);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let pool = db.pool();
        tasks.spawn(async move {
            let mut conn = pool.get().await.unwrap();
            lifecycle::terminate(&mut conn, c.id, "user:staff", "race", at).await
        });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(done) => {
                ok += 1;
                // 0.1 × 20/30, floored: 0.06666666.
                assert_eq!(done.refund.value(), dec!(0.06666666));
            }
            Err(LifecycleError::NotLive { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        balance(&mut conn, w.buyer, Asset::BTC).await,
        dec!(9.96666666)
    );
    assert_eq!(sold(&mut conn, w.product.id).await, dec!(0));
    let terminated = event_kinds(&mut conn, c.id)
        .await
        .iter()
        .filter(|k| *k == "terminated")
        .count();
    assert_eq!(terminated, 1);
    assert_reconciled(&mut conn).await;
}
