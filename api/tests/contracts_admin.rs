//! Contracts in the back office over real HTTP: recording a facility outage,
//! terminating a contract with its refund, and reading a contract with its
//! history; each change audited, the ledger reconciled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::{
    TRUST_PROXY, TestApp, call, client_from, insert_user, random_ip, spawn_app_with, staff,
    staff_member, unique_email,
};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::catalog::model::Product;
use domain::contracts::store::Contract;
use domain::identity::audit::{self, AuditFilter};
use domain::identity::roles::Role;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{algorithms, contracts, facilities, pools, products};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

async fn app() -> TestApp {
    spawn_app_with(|_| {}, TRUST_PROXY).await
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn midnight_days_ago(days: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::days(days))
        .duration_trunc(Duration::days(1))
        .unwrap()
}

fn assert_problem(got: &(u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "status; body: {body}");
    assert_eq!(body["code"], code, "code; body: {body}");
}

/// A facility with one product on sale (stop rule `none`); their ids.
async fn catalog(conn: &mut AsyncPgConnection) -> (Uuid, Product) {
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
            facilities::efficiency.eq(dec("17.5")),
            facilities::efficiency_unit.eq("J/TH"),
            facilities::pue.eq(dec("1.1")),
            facilities::total_hashrate.eq(dec("100000")),
            facilities::sellable_hashrate.eq(dec("80000")),
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
            products::name.eq(format!("Product {}", id.simple())),
            products::algorithm.eq("sha256"),
            products::mined_coins.eq(vec!["BTC".to_owned()]),
            products::pool_id.eq(pool),
            products::facility_id.eq(facility),
            products::hashrate_unit.eq("TH/s"),
            products::hashrate_min.eq(dec("1")),
            products::hashrate_max.eq(dec("500")),
            products::hashrate_step.eq(dec("1")),
            products::price_usd_per_unit.eq(dec("15")),
            products::duration_days.eq(30),
            products::fee_usd_per_unit_day.eq(dec("0.05")),
            products::pay_assets.eq(vec!["BTC".to_owned()]),
            products::payout_assets.eq(vec!["BTC".to_owned()]),
            products::stop_rule.eq("none"),
            products::inventory.eq(dec("1000")),
            products::state.eq("on_sale"),
        ))
        .execute(conn)
        .await
        .unwrap();
    let product = products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .unwrap();
    (facility, product)
}

/// A customer with 1 BTC who bought 10 TH/s for 0.1 BTC, 30 days from
/// `starts_at`, as purchase does; the contract.
async fn bought(app: &TestApp, product: &Product, starts_at: DateTime<Utc>) -> Contract {
    let user = insert_user(app, &unique_email("buyer"), None).await;
    let mut conn = app.db.conn().await.unwrap();
    let btc = |s: &str| Amount::parse(s, Asset::BTC, Sign::Positive).unwrap();
    let account = ledger::open_account(
        &mut conn,
        &Owner::User(user),
        Asset::BTC,
        AccountKind::Customer,
    )
    .await
    .unwrap();
    let equity = ledger::open_account(&mut conn, &Owner::Platform, Asset::BTC, AccountKind::Equity)
        .await
        .unwrap();
    let revenue = ledger::open_account(
        &mut conn,
        &Owner::Platform,
        Asset::BTC,
        AccountKind::SalesRevenue,
    )
    .await
    .unwrap();
    let fund = NewTransfer::new(
        format!("test:fund:{user}"),
        TransferKind::Adjustment,
        equity.id,
        account.id,
        btc("1"),
    );
    let pay = NewTransfer::new(
        format!("order:{}", Uuid::now_v7()),
        TransferKind::Purchase,
        account.id,
        revenue.id,
        btc("0.1"),
    );
    ledger::post_batch(&mut conn, &[fund.into(), pay.into()])
        .await
        .unwrap();
    let contract = Contract {
        id: Uuid::now_v7(),
        user_id: user,
        partner_id: None,
        product_id: product.id,
        terms: serde_json::to_value(product.terms()).unwrap(),
        hashrate: dec("10"),
        pay_asset: "BTC".to_owned(),
        paid_amount: dec("0.1"),
        payout_asset: "BTC".to_owned(),
        state: "pending".to_owned(),
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
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::update(products::table.find(product.id))
        .set(products::sold.eq(products::sold + dec("10")))
        .execute(&mut conn)
        .await
        .unwrap();
    contract
}

async fn audited(app: &TestApp, action: &str) -> Vec<audit::AuditRecord> {
    let mut conn = app.db.conn().await.unwrap();
    audit::list(
        &mut conn,
        &AuditFilter {
            action: Some(action.to_owned()),
            limit: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn assert_reconciled(app: &TestApp) {
    let mut conn = app.db.conn().await.unwrap();
    let problems = ledger::reconcile(&mut conn).await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn operations_records_an_outage_and_the_contracts_get_the_hours() {
    let app = app().await;
    let client = client_from(&random_ip());
    let (facility, product) = catalog(&mut app.db.conn().await.unwrap()).await;
    let day = midnight_days_ago(10);
    let c = bought(&app, &product, day - Duration::days(2)).await;
    let ops = staff_member(&app, &client, Role::Operations).await;
    let path = format!("/admin/v1/facilities/{facility}/outages");
    let outage = json!({
        "starts_at": day + Duration::hours(10),
        "ends_at": day + Duration::hours(13) + Duration::minutes(30),
        "reason": "grid failure",
    });

    // Support may not; operations may, without a step-up.
    let support = staff(&app, &client, Role::Support).await;
    let got = call(&app, &client, "POST", &path, Some(&support), Some(&outage)).await;
    assert_problem(&got, 403, "forbidden");
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&ops.token),
        Some(&outage),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["contracts_extended"], 1, "{body}");
    assert_eq!(body["extensions"][0]["contract_id"], c.id.to_string());
    assert_eq!(body["extensions"][0]["hours"], 4);
    assert_eq!(body["outage"]["facility_id"], facility.to_string());
    assert_eq!(body["outage"]["created_by"], ops.actor());
    let outage_id = body["outage"]["id"].as_str().unwrap().to_owned();

    let entries = audited(&app, "admin.facility.outage.record").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, ops.actor());
    assert_eq!(entries[0].target, format!("facility:{facility}"));
    let after = entries[0].after.clone().unwrap();
    assert_eq!(after["outage_id"], outage_id.as_str());
    assert_eq!(after["contracts_extended"], 1);

    // The contract shows it.
    let (status, body) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/contracts/{}", c.id),
        Some(&support),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["extended_hours"], 4, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["kind"], "outage_extension");
    assert_eq!(events[0]["detail"]["outage_id"], outage_id.as_str());

    // The same downtime again is refused, and nothing changes.
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&ops.token),
        Some(&outage),
    )
    .await;
    assert_problem(&got, 409, "outage_overlaps");
    // Invalid bodies, an outage not over, an unknown facility.
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&ops.token),
        Some(&json!({})),
    )
    .await;
    assert_problem(&got, 422, "validation_failed");
    let backwards = json!({
        "starts_at": day + Duration::hours(20),
        "ends_at": day + Duration::hours(19),
        "reason": "x",
    });
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&ops.token),
        Some(&backwards),
    )
    .await;
    assert_problem(&got, 422, "validation_failed");
    assert_eq!(got.1["errors"][0]["field"], "ends_at");
    let ongoing = json!({
        "starts_at": Utc::now() - Duration::hours(1),
        "ends_at": Utc::now() + Duration::hours(1),
        "reason": "still down",
    });
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&ops.token),
        Some(&ongoing),
    )
    .await;
    assert_problem(&got, 422, "validation_failed");
    assert_eq!(got.1["errors"][0]["code"], "in_the_future");
    let got = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/facilities/{}/outages", Uuid::now_v7()),
        Some(&ops.token),
        Some(&outage),
    )
    .await;
    assert_problem(&got, 404, "not_found");
    assert_eq!(audited(&app, "admin.facility.outage.record").await.len(), 1);
    assert_reconciled(&app).await;
}

#[tokio::test]
async fn support_terminates_a_contract_with_a_step_up_and_it_is_refunded_once() {
    let app = app().await;
    let client = client_from(&random_ip());
    let (_, product) = catalog(&mut app.db.conn().await.unwrap()).await;
    let c = bought(&app, &product, midnight_days_ago(10)).await;
    let support = staff_member(&app, &client, Role::Support).await;
    let path = format!("/admin/v1/contracts/{}/terminate", c.id);
    let body = json!({ "reason": "customer request" });

    // users_write needs a fresh step-up.
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&support.token),
        Some(&body),
    )
    .await;
    assert_problem(&got, 403, "step_up_required");
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&support.step_up),
        Some(&json!({ "reason": " " })),
    )
    .await;
    assert_problem(&got, 422, "validation_failed");
    assert_eq!(got.1["errors"][0]["field"], "reason");

    let (status, done) = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&support.step_up),
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["asset"], "BTC");
    assert_eq!(done["contract"]["state"], "terminated");
    let refund = dec(done["refund"].as_str().unwrap());
    // About two thirds of the term were left.
    assert!(refund > dec("0.06") && refund < dec("0.07"), "{done}");
    let transfer_id = done["transfer_id"].as_str().unwrap();
    let events = done["contract"]["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["kind"], "terminated");
    assert_eq!(
        events.last().unwrap()["detail"]["refund"],
        done["refund"].clone()
    );

    {
        let mut conn = app.db.conn().await.unwrap();
        let account = ledger::account_by_key(
            &mut conn,
            &Owner::User(c.user_id),
            Asset::BTC,
            AccountKind::Customer,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(account.available(), dec("0.9") + refund);
        let transfer = ledger::transfer_by_reference(&mut conn, &format!("refund:{}", c.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(transfer.id.to_string(), transfer_id);
        let sold: Decimal = products::table
            .find(product.id)
            .select(products::sold)
            .first(&mut conn)
            .await
            .unwrap();
        assert_eq!(sold, Decimal::ZERO);
    }
    let entries = audited(&app, "admin.contract.terminate").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].actor, support.actor());
    assert_eq!(entries[0].target, format!("contract:{}", c.id));
    assert_eq!(entries[0].before.clone().unwrap()["state"], "pending");
    assert_eq!(entries[0].after.clone().unwrap()["refund"], done["refund"]);

    // Again: refused, nothing refunded, nothing audited.
    let got = call(
        &app,
        &client,
        "POST",
        &path,
        Some(&support.step_up),
        Some(&body),
    )
    .await;
    assert_problem(&got, 409, "contract_not_live");
    assert_eq!(audited(&app, "admin.contract.terminate").await.len(), 1);
    let got = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/contracts/{}/terminate", Uuid::now_v7()),
        Some(&support.step_up),
        Some(&body),
    )
    .await;
    assert_problem(&got, 404, "not_found");
    assert_reconciled(&app).await;
}

#[tokio::test]
async fn reading_a_contract_needs_users_read() {
    let app = app().await;
    let client = client_from(&random_ip());
    let (_, product) = catalog(&mut app.db.conn().await.unwrap()).await;
    let c = bought(&app, &product, midnight_days_ago(-1)).await;
    let path = format!("/admin/v1/contracts/{}", c.id);
    let ops = staff(&app, &client, Role::Operations).await;
    let got = call(&app, &client, "GET", &path, Some(&ops), None).await;
    assert_problem(&got, 403, "forbidden");
    let finance = staff(&app, &client, Role::Finance).await;
    let (status, body) = call(&app, &client, "GET", &path, Some(&finance), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], c.id.to_string());
    assert_eq!(body["user_id"], c.user_id.to_string());
    assert_eq!(body["state"], "pending");
    assert_eq!(body["paid_amount"], "0.1");
    assert_eq!(body["hashrate"], "10");
    assert_eq!(body["terms"]["product_id"], product.id.to_string());
    assert_eq!(body["events"], json!([]));
    let got = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/contracts/{}", Uuid::now_v7()),
        Some(&finance),
        None,
    )
    .await;
    assert_problem(&got, 404, "not_found");
}
