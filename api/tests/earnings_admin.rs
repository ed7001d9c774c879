//! Pool earnings imports over real HTTP: operations and finance staff import
//! JSON and CSV (all rows or none), support and customers are forbidden
//! before the body is read, a second import of a pool-day-coin is 409, a
//! correction is accepted once, invalid input is 422 naming the field, a dry
//! run stores nothing, and every import is in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use chrono::{Days, NaiveDate, Utc};
use common::{TRUST_PROXY, TestApp, call, client_from, customer, random_ip, spawn_app_with, staff};
use domain::catalog::admin::{self, NewAlgorithm, NewFacility, NewPool};
use domain::identity::roles::Role;
use serde_json::{Value, json};
use uuid::Uuid;

const PATH: &str = "/admin/v1/pool-earnings";
const HEADER: &str = "pool_id,day,coin,amount,delivered_hashrate,difficulty,pool_tx_ids";

async fn app() -> TestApp {
    spawn_app_with(|_| {}, TRUST_PROXY).await
}

/// A merged LTC+DOGE pool.
async fn pool(app: &TestApp) -> Uuid {
    let mut conn = app.db.conn().await.unwrap();
    admin::create_algorithm(
        &mut conn,
        &NewAlgorithm {
            code: "scrypt".into(),
            name: "Scrypt".into(),
            hashrate_unit: "MH/s".into(),
        },
    )
    .await
    .unwrap();
    let facility = admin::create_facility(
        &mut conn,
        &NewFacility {
            name: "Keflavik 2".into(),
            country: "IS".into(),
            region: "Reykjanes".into(),
            miner_model: "Antminer L9".into(),
            efficiency: "0.25".parse().unwrap(),
            efficiency_unit: "J/MH".into(),
            pue: "1.08".parse().unwrap(),
            total_hashrate: "50000".parse().unwrap(),
            sellable_hashrate: "40000".parse().unwrap(),
            algorithm: "scrypt".into(),
        },
    )
    .await
    .unwrap();
    admin::create_pool(
        &mut conn,
        &NewPool {
            name: "LTC+DOGE merged".into(),
            algorithm: "scrypt".into(),
            coins: vec!["LTC".into(), "DOGE".into()],
            facility_id: facility.id,
            external_account: String::new(),
        },
    )
    .await
    .unwrap()
    .id
}

fn days_ago(n: u64) -> NaiveDate {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(n))
        .unwrap()
}

fn body(pool: Uuid, day: NaiveDate, coin: &str, amount: &str) -> Value {
    json!({
        "pool_id": pool,
        "day": day,
        "coin": coin,
        "amount": amount,
        "delivered_hashrate": "1000.5",
        "difficulty": "35000000",
        "pool_tx_ids": ["tx-1", "tx-2"],
    })
}

async fn post_csv(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    path: &str,
    csv: &str,
) -> (u16, Value) {
    let res = client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[track_caller]
fn assert_problem(got: &(u16, Value), status: u16, code: &str) -> Value {
    let (s, body) = got;
    assert_eq!(*s, status, "status; body: {body}");
    assert_eq!(body["code"], code, "code; body: {body}");
    body.clone()
}

#[track_caller]
fn assert_field(got: &(u16, Value), field: &str, code: Option<&str>) {
    let body = assert_problem(got, 422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], field, "field; body: {body}");
    if let Some(code) = code {
        assert_eq!(body["errors"][0]["code"], code, "field code; body: {body}");
    }
}

async fn audit_entries(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    id: &str,
) -> Vec<Value> {
    let (status, body) = call(
        app,
        client,
        "GET",
        &format!("/admin/v1/audit-log?target=pool_earning:{id}&limit=200"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "audit log: {body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn staff_import_json_and_csv_with_an_audit_trail() {
    let app = app().await;
    let client = client_from(&random_ip());
    let pool = pool(&app).await;
    let ops = staff(&app, &client, Role::Operations).await;
    let finance = staff(&app, &client, Role::Finance).await;
    let superadmin = staff(&app, &client, Role::Superadmin).await;
    let day = days_ago(1);

    // JSON, by operations.
    let (status, created) = call(
        &app,
        &client,
        "POST",
        PATH,
        Some(&ops),
        Some(&body(pool, day, "LTC", "1.25000000")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let ltc = &created["items"][0];
    assert_eq!(ltc["amount"], "1.25");
    assert_eq!(ltc["coin"], "LTC");
    assert_eq!(ltc["day"], day.to_string());
    assert_eq!(ltc["pool_tx_ids"], json!(["tx-1", "tx-2"]));
    assert_eq!(ltc["corrects_id"], Value::Null);
    assert!(ltc["source"].as_str().unwrap().starts_with("admin:user:"));
    let ltc_id = ltc["id"].as_str().unwrap().to_owned();

    // CSV, by finance: two rows of another day, in one go.
    let older = days_ago(2);
    let csv = format!(
        "{HEADER}\n{pool},{older},LTC,1.5,1000,35000000,a1;a2\n{pool},{older},DOGE,812.12345678,1000,4000000.5,\n"
    );
    let got = post_csv(&app, &client, &finance, PATH, &csv).await;
    assert_eq!(got.0, 201, "{}", got.1);
    let items = got.1["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["pool_tx_ids"], json!(["a1", "a2"]));
    assert_eq!(items[1]["amount"], "812.12345678");
    assert_eq!(items[1]["difficulty"], "4000000.5");

    // The list, by finance (reports_read); operations may not read it.
    let (status, list) = call(
        &app,
        &client,
        "GET",
        &format!("{PATH}?pool_id={pool}"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert_eq!(list["items"][0]["id"], ltc_id.as_str(), "newest day first");
    let (status, list) = call(
        &app,
        &client,
        "GET",
        &format!("{PATH}?day={older}"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let got = call(&app, &client, "GET", PATH, Some(&ops), None).await;
    assert_problem(&got, 403, "forbidden");
    let got = call(
        &app,
        &client,
        "GET",
        &format!("{PATH}?day=nope"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(got.0, 422, "{}", got.1);

    // Every import is audited with who did it.
    let entries = audit_entries(&app, &client, &superadmin, &ltc_id).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["action"], "admin.pool_earning.import");
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("user:"));
    assert_eq!(entries[0]["after"]["amount"], "1.25");
    for item in items {
        let entries = audit_entries(&app, &client, &superadmin, item["id"].as_str().unwrap()).await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["action"], "admin.pool_earning.import");
    }
}

#[tokio::test]
async fn support_and_customers_are_forbidden_before_the_body_is_read() {
    let app = app().await;
    let client = client_from(&random_ip());
    let pool = pool(&app).await;
    let support = staff(&app, &client, Role::Support).await;
    let (_, _, customer) = customer(&app, &client).await;
    for token in [&support, &customer] {
        // A valid body and an invalid one: both 403.
        let got = call(
            &app,
            &client,
            "POST",
            PATH,
            Some(token),
            Some(&body(pool, days_ago(1), "LTC", "1")),
        )
        .await;
        assert_problem(&got, 403, "forbidden");
        let got = call(
            &app,
            &client,
            "POST",
            PATH,
            Some(token),
            Some(&json!({"x": 1})),
        )
        .await;
        assert_problem(&got, 403, "forbidden");
        let got = post_csv(&app, &client, token, PATH, "garbage").await;
        assert_problem(&got, 403, "forbidden");
        let got = call(&app, &client, "GET", PATH, Some(token), None).await;
        assert_problem(&got, 403, "forbidden");
    }
    let got = call(&app, &client, "POST", PATH, None, Some(&json!({}))).await;
    assert_eq!(got.0, 401);
}

#[tokio::test]
async fn duplicates_are_409_and_a_correction_is_accepted_once() {
    let app = app().await;
    let client = client_from(&random_ip());
    let pool = pool(&app).await;
    let ops = staff(&app, &client, Role::Operations).await;
    let day = days_ago(3);

    let (status, created) = call(
        &app,
        &client,
        "POST",
        PATH,
        Some(&ops),
        Some(&body(pool, day, "LTC", "1")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let original = created["items"][0]["id"].as_str().unwrap().to_owned();

    let got = call(
        &app,
        &client,
        "POST",
        PATH,
        Some(&ops),
        Some(&body(pool, day, "LTC", "2")),
    )
    .await;
    assert_problem(&got, 409, "earning_exists");

    let mut fix = body(pool, day, "LTC", "1.1");
    fix["corrects"] = json!(original);
    let (status, corrected) = call(&app, &client, "POST", PATH, Some(&ops), Some(&fix)).await;
    assert_eq!(status, 201, "{corrected}");
    assert_eq!(corrected["items"][0]["corrects_id"], original.as_str());

    let got = call(&app, &client, "POST", PATH, Some(&ops), Some(&fix)).await;
    assert_problem(&got, 409, "already_corrected");

    // A CSV whose second row repeats the first: nothing is stored.
    let other = days_ago(4);
    let csv = format!("{HEADER}\n{pool},{other},DOGE,5,1,1,\n{pool},{other},DOGE,6,1,1,\n");
    let got = post_csv(&app, &client, &ops, PATH, &csv).await;
    let problem = assert_problem(&got, 409, "earning_exists");
    assert!(
        problem["detail"].as_str().unwrap().starts_with("rows[1]"),
        "{problem}"
    );
    let mut conn = app.db.conn().await.unwrap();
    assert!(
        domain::settlement::earnings::list(&mut conn, Some(pool), Some(other), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn invalid_imports_are_422_naming_the_field() {
    let app = app().await;
    let client = client_from(&random_ip());
    let pool = pool(&app).await;
    let finance = staff(&app, &client, Role::Finance).await;
    let day = days_ago(1);
    let post = |b: Value| {
        let (app, client, finance) = (&app, &client, &finance);
        async move { call(app, client, "POST", PATH, Some(finance), Some(&b)).await }
    };

    let mut numeric = body(pool, day, "LTC", "1");
    numeric["amount"] = json!(1.5);
    assert_field(&post(numeric).await, "amount", None);
    assert_field(
        &post(body(pool, day, "LTC", "0.123456789")).await,
        "amount",
        Some("too_many_decimals"),
    );
    assert_field(
        &post(body(pool, day, "LTC", "-1")).await,
        "amount",
        Some("negative"),
    );
    assert_field(
        &post(body(pool, day, "BTC", "1")).await,
        "coin",
        Some("coin_not_mined"),
    );
    assert_field(
        &post(body(pool, days_ago(0), "LTC", "1")).await,
        "day",
        Some("day_not_ended"),
    );
    assert_field(
        &post(body(Uuid::now_v7(), day, "LTC", "1")).await,
        "pool_id",
        Some("unknown_pool"),
    );
    let mut zero = body(pool, day, "LTC", "1");
    zero["difficulty"] = json!("0");
    assert_field(&post(zero).await, "difficulty", Some("not_positive"));
    let mut ids = body(pool, day, "LTC", "1");
    ids["pool_tx_ids"] = json!(["ok", ""]);
    assert_field(&post(ids).await, "pool_tx_ids[1]", Some("empty"));
    let mut unknown = body(pool, day, "LTC", "1");
    unknown["extra"] = json!(1);
    assert_eq!(post(unknown).await.0, 422);

    // CSV: the row and column are named; nothing of the upload is stored.
    let csv = format!("{HEADER}\n{pool},{day},LTC,1,1,1,\n{pool},{day},DOGE,1e2,1,1,\n");
    assert_field(
        &post_csv(&app, &client, &finance, PATH, &csv).await,
        "rows[1].amount",
        Some("invalid_decimal"),
    );
    let csv = format!("{HEADER}\n{pool},{day},LTC,1,1,1,\n{pool},{day},BTC,1,1,1,\n");
    assert_field(
        &post_csv(&app, &client, &finance, PATH, &csv).await,
        "rows[1].coin",
        Some("coin_not_mined"),
    );
    let got = post_csv(&app, &client, &finance, PATH, "pool,day\n").await;
    assert_field(&got, "header", None);
    let mut conn = app.db.conn().await.unwrap();
    assert!(
        domain::settlement::earnings::list(&mut conn, Some(pool), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Neither JSON nor CSV.
    let res = client
        .post(app.url(PATH))
        .bearer_auth(&finance)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 415);
}

#[tokio::test]
async fn a_dry_run_validates_and_stores_nothing() {
    let app = app().await;
    let client = client_from(&random_ip());
    let pool = pool(&app).await;
    let ops = staff(&app, &client, Role::Operations).await;
    let day = days_ago(1);
    let dry = format!("{PATH}?dry_run=true");

    // Without the day's LTC fixing the engine cannot plan: 409.
    let got = call(
        &app,
        &client,
        "POST",
        &dry,
        Some(&ops),
        Some(&body(pool, day, "LTC", "1.25")),
    )
    .await;
    assert_problem(&got, 409, "fixing_missing");
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use domain::schema::price_fixings;
        let mut conn = app.db.conn().await.unwrap();
        for d in [day, day.succ_opt().unwrap()] {
            diesel::insert_into(price_fixings::table)
                .values((
                    price_fixings::asset.eq("LTC"),
                    price_fixings::day.eq(d),
                    price_fixings::usd.eq("90".parse::<rust_decimal::Decimal>().unwrap()),
                    price_fixings::source.eq("test"),
                    price_fixings::observed_at.eq(Utc::now()),
                ))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    let (status, answer) = call(
        &app,
        &client,
        "POST",
        &dry,
        Some(&ops),
        Some(&body(pool, day, "LTC", "1.25")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["earning"]["amount"], "1.25");
    assert_eq!(answer["earning"]["coin"], "LTC");
    assert!(answer["allocation"].is_object(), "{answer}");
    assert_eq!(answer["allocation"]["coin"], "LTC", "{answer}");
    let got = call(
        &app,
        &client,
        "POST",
        &dry,
        Some(&ops),
        Some(&body(pool, day, "LTC", "1.123456789")),
    )
    .await;
    assert_field(&got, "amount", Some("too_many_decimals"));
    let csv = format!("{HEADER}\n{pool},{day},LTC,1,1,1,\n");
    assert_field(
        &post_csv(&app, &client, &ops, &dry, &csv).await,
        "dry_run",
        Some("json_only"),
    );

    let mut conn = app.db.conn().await.unwrap();
    assert!(
        domain::settlement::earnings::list(&mut conn, Some(pool), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
