//! The stop rule tells the customer: a suspension and a resume each queue
//! one e-mail to the contract's owner, in the transaction that records the
//! settled day; a day that changes nothing queues none, and a contract a
//! partner bought queues none at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::catalog::model::{Product, StopRule};
use domain::contracts::lifecycle::{self, Action, LifecycleError};
use domain::contracts::store::{Contract, ContractState};
use domain::identity::{partners, store as users};
use domain::outbox::email::StoredEmail;
use domain::schema::{algorithms, contracts, emails, facilities, jobs, pools, products};
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Fixtures (as in tests/lifecycle.rs, without the ledger: the stop rule does
// not touch it)
// ---------------------------------------------------------------------------

fn midnight_days_ago(days: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::days(days))
        .duration_trunc(Duration::days(1))
        .unwrap()
}

/// A product on sale at a new facility, with the given stop rule.
async fn product(
    conn: &mut AsyncPgConnection,
    stop_rule: StopRule,
    stop_after_days: i32,
) -> Product {
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
    let facility = Uuid::now_v7();
    diesel::insert_into(facilities::table)
        .values((
            facilities::id.eq(facility),
            facilities::name.eq(format!("Facility {}", facility.simple())),
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
            products::name.eq("S21 <Hydro> 30 days"),
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
            products::pay_assets.eq(vec!["BTC".to_owned()]),
            products::payout_assets.eq(vec!["BTC".to_owned()]),
            products::stop_rule.eq(stop_rule.as_str()),
            products::stop_after_days.eq(stop_after_days),
            products::inventory.eq(dec!(1000)),
            products::state.eq("on_sale"),
        ))
        .execute(conn)
        .await
        .unwrap();
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .unwrap()
}

/// A verified customer (of `partner`, when given); their id and e-mail.
async fn customer(conn: &mut AsyncPgConnection, partner: Option<Uuid>) -> (Uuid, String) {
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
            partner_id: partner,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    (id, email)
}

/// An active 30-day contract of 10 TH/s from `starts_at`.
async fn active_contract(
    conn: &mut AsyncPgConnection,
    product: &Product,
    user: Uuid,
    partner: Option<Uuid>,
    starts_at: DateTime<Utc>,
) -> Contract {
    let contract = Contract {
        id: Uuid::now_v7(),
        user_id: user,
        partner_id: partner,
        product_id: product.id,
        terms: serde_json::to_value(product.terms()).unwrap(),
        hashrate: dec!(10),
        pay_asset: "BTC".to_owned(),
        paid_amount: dec!(0.1),
        payout_asset: "BTC".to_owned(),
        state: "active".to_owned(),
        starts_at,
        ends_at: starts_at + Duration::days(30),
        extended_hours: 0,
        zero_net_days: 0,
        suspended_at: None,
        ended_at: None,
        created_at: Utc::now(),
    };
    diesel::insert_into(contracts::table)
        .values(&contract)
        .execute(conn)
        .await
        .unwrap();
    contract
}

async fn mails(conn: &mut AsyncPgConnection) -> Vec<StoredEmail> {
    emails::table
        .order((emails::created_at, emails::id))
        .select(StoredEmail::as_select())
        .load(conn)
        .await
        .unwrap()
}

async fn send_jobs(conn: &mut AsyncPgConnection) -> i64 {
    jobs::table
        .filter(jobs::kind.eq("send_email"))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pause_extend_mails_the_owner_on_suspend_and_on_resume_only() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let p = product(&mut conn, StopRule::PauseExtend, 2).await;
    let (user, address) = customer(&mut conn, None).await;
    let start = midnight_days_ago(10);
    let c = active_contract(&mut conn, &p, user, None, start).await;
    let short = &c.id.to_string()[..8];
    let settle = |n: i64| start + Duration::days(n);

    // A first zero-net day counts, and changes nothing else: no mail.
    let day = lifecycle::record_settled_day(&mut conn, c.id, true, settle(1))
        .await
        .unwrap();
    assert_eq!((day.action, day.zero_net_days), (None, 1));
    assert!(mails(&mut conn).await.is_empty());

    // The second suspends it: one mail to the owner, with its job.
    let day = lifecycle::record_settled_day(&mut conn, c.id, true, settle(2))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Suspend));
    assert_eq!(day.state, ContractState::Suspended);
    let sent = mails(&mut conn).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let m = &sent[0];
    assert_eq!(m.template, "contract_suspended");
    assert_eq!(m.to_address, address);
    assert_eq!(m.sent_at, None);
    assert_eq!(
        m.subject,
        format!("Your Hashgrid contract S21 <Hydro> 30 days ({short}) is paused")
    );
    let when = settle(2).format("%Y-%m-%d %H:%M UTC").to_string();
    for needle in [
        format!("S21 <Hydro> 30 days ({short})"),
        "for 2 day(s) in a row".to_owned(),
        "\"paused and extended\"".to_owned(),
        when.clone(),
        "resumes by itself".to_owned(),
    ] {
        assert!(m.text_body.contains(&needle), "{needle}: {}", m.text_body);
    }
    assert!(
        m.html_body
            .contains(&format!("S21 &lt;Hydro&gt; 30 days ({short})")),
        "the HTML part escapes the product name"
    );
    assert!(m.html_body.contains(&when));
    assert_eq!(send_jobs(&mut conn).await, 1);

    // Still zero while suspended: the count goes on, no second mail.
    let day = lifecycle::record_settled_day(&mut conn, c.id, true, settle(3))
        .await
        .unwrap();
    assert_eq!((day.action, day.state), (None, ContractState::Suspended));
    assert_eq!(mails(&mut conn).await.len(), 1);

    // A profitable day resumes it 48 hours later: one resume mail.
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, settle(4))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Resume));
    assert_eq!(day.state, ContractState::Active);
    assert_eq!(day.extended_hours, 48);
    let sent = mails(&mut conn).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    let m = &sent[1];
    assert_eq!(m.template, "contract_resumed");
    assert_eq!(m.to_address, address);
    assert_eq!(
        m.subject,
        format!("Your Hashgrid contract S21 <Hydro> 30 days ({short}) is mining again")
    );
    assert!(
        m.text_body
            .contains(&format!("S21 <Hydro> 30 days ({short})"))
    );
    assert!(
        m.text_body
            .contains("Hours added to the end of the contract for this pause: 48."),
        "{}",
        m.text_body
    );
    assert!(
        m.text_body
            .contains(&settle(4).format("%Y-%m-%d %H:%M UTC").to_string())
    );
    assert!(m.html_body.contains("<td>48</td>"));
    assert_eq!(send_jobs(&mut conn).await, 2);

    // A profitable day of an active contract changes nothing: no mail.
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, settle(5))
        .await
        .unwrap();
    assert_eq!(day.action, None);
    assert_eq!(mails(&mut conn).await.len(), 2);
}

#[tokio::test]
async fn stop_rule_mails_say_stopped_and_no_hours_added() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let p = product(&mut conn, StopRule::Stop, 1).await;
    let (user, address) = customer(&mut conn, None).await;
    let start = midnight_days_ago(10);
    let c = active_contract(&mut conn, &p, user, None, start).await;

    let day = lifecycle::record_settled_day(&mut conn, c.id, true, start + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Suspend));
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, start + Duration::days(3))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Resume));
    assert_eq!(day.ends_at, c.ends_at);

    let sent = mails(&mut conn).await;
    let templates: Vec<&str> = sent.iter().map(|m| m.template.as_str()).collect();
    assert_eq!(templates, ["contract_suspended", "contract_resumed"]);
    assert!(sent.iter().all(|m| m.to_address == address));
    assert!(sent[0].text_body.contains("for 1 day(s) in a row"));
    assert!(sent[0].text_body.contains("\"stopped\""));
    assert!(
        sent[1]
            .text_body
            .contains("Hours added to the end of the contract for this pause: 0.")
    );
}

#[tokio::test]
async fn a_partner_bought_contract_is_suspended_without_mail() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let p = product(&mut conn, StopRule::PauseExtend, 1).await;
    let partner = partners::create_partner(&mut conn, "Partner")
        .await
        .unwrap()
        .id;
    let (user, _) = customer(&mut conn, Some(partner)).await;
    let start = midnight_days_ago(10);
    let c = active_contract(&mut conn, &p, user, Some(partner), start).await;

    let day = lifecycle::record_settled_day(&mut conn, c.id, true, start + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Suspend));
    let day = lifecycle::record_settled_day(&mut conn, c.id, false, start + Duration::days(2))
        .await
        .unwrap();
    assert_eq!(day.action, Some(Action::Resume));
    assert!(mails(&mut conn).await.is_empty());
    assert_eq!(send_jobs(&mut conn).await, 0);
}

#[tokio::test]
async fn a_rolled_back_settlement_leaves_no_mail() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let p = product(&mut conn, StopRule::PauseExtend, 1).await;
    let (user, _) = customer(&mut conn, None).await;
    let start = midnight_days_ago(10);
    let c = active_contract(&mut conn, &p, user, None, start).await;

    let result = conn
        .transaction(async |conn| {
            let day =
                lifecycle::record_settled_day(conn, c.id, true, start + Duration::days(1)).await?;
            assert_eq!(day.action, Some(Action::Suspend));
            assert_eq!(mails(conn).await.len(), 1, "queued inside the transaction");
            // The settlement fails after the stop rule ran.
            Err::<(), _>(LifecycleError::Corrupt("settlement failed".to_owned()))
        })
        .await;
    assert!(matches!(result, Err(LifecycleError::Corrupt(_))));

    assert!(mails(&mut conn).await.is_empty());
    assert_eq!(send_jobs(&mut conn).await, 0);
    let state: String = contracts::table
        .find(c.id)
        .select(contracts::state)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(state, "active");
}
