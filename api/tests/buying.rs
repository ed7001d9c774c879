#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The buying flow over real HTTP: the catalog, quotes, orders and the
//! contracts they create, checked against the database and the ledger;
//! every refusal with its code and nothing written; inventory under 64
//! concurrent buyers; idempotency keys; payout-asset changes; and partners
//! buying for their sub-customers from their own balance.

#[allow(dead_code)]
mod common;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use common::{
    PartnerKey, TRUST_PROXY, TestApp, USER_PASSWORD, call, client_from, create_partner,
    create_partner_key, customer, login, problem, random_ip, send_signed, spawn_app_with, staff,
    unique_email, validation,
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::catalog::prices;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{
    algorithms, contracts, facilities, idempotency_keys, orders, pools, products, quotes,
};
use futures::StreamExt;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn d(s: &str) -> Decimal {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a decimal: {e}"))
}

/// A decimal member of a JSON body (sent as a string).
fn dec_of(v: &Value) -> Decimal {
    d(v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}")))
}

fn time_of(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_str()
        .unwrap_or_else(|| panic!("not an id: {v}"))
        .parse()
        .unwrap()
}

/// A server that takes client addresses from `X-Forwarded-For`, and a
/// client with an address of its own.
async fn setup() -> (TestApp, reqwest::Client) {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    (app, client)
}

/// What a test product looks like; [`Default`] is an on-sale SHA-256
/// product mining BTC, paid in BTC or USDT, paying out in BTC or USDT.
#[derive(Clone)]
struct Spec {
    state: &'static str,
    algorithm: &'static str,
    unit: &'static str,
    mined: &'static [&'static str],
    pay: &'static [&'static str],
    payout: &'static [&'static str],
    min: &'static str,
    max: &'static str,
    step: &'static str,
    price: &'static str,
    fee: &'static str,
    duration: i32,
    spread_bps: i32,
    inventory: &'static str,
    sold: &'static str,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            state: "on_sale",
            algorithm: "sha256",
            unit: "TH/s",
            mined: &["BTC"],
            pay: &["BTC", "USDT"],
            payout: &["BTC", "USDT"],
            min: "1",
            max: "1000",
            step: "1",
            price: "15.5",
            fee: "0.04",
            duration: 30,
            spread_bps: 50,
            inventory: "10000",
            sold: "0",
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Inserts the algorithm (once), a facility, a pool and a product of `spec`.
async fn insert_product(app: &TestApp, spec: &Spec) -> Uuid {
    let mut conn = app.db.conn().await.unwrap();
    diesel::insert_into(algorithms::table)
        .values((
            algorithms::code.eq(spec.algorithm),
            algorithms::name.eq(spec.algorithm.to_uppercase()),
            algorithms::hashrate_unit.eq(spec.unit),
        ))
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .await
        .unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let facility = Uuid::now_v7();
    diesel::insert_into(facilities::table)
        .values((
            facilities::id.eq(facility),
            facilities::name.eq(format!("Facility {tag}")),
            facilities::country.eq("US"),
            facilities::region.eq("Texas (ERCOT)"),
            facilities::miner_model.eq("Antminer S21"),
            facilities::efficiency.eq(d("15")),
            facilities::efficiency_unit.eq(if spec.unit == "TH/s" { "J/TH" } else { "J/MH" }),
            facilities::pue.eq(d("1.05")),
            facilities::total_hashrate.eq(d("100000")),
            facilities::sellable_hashrate.eq(d("90000")),
            facilities::algorithm.eq(spec.algorithm),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let pool = Uuid::now_v7();
    diesel::insert_into(pools::table)
        .values((
            pools::id.eq(pool),
            pools::name.eq(format!("Pool {tag}")),
            pools::algorithm.eq(spec.algorithm),
            pools::coins.eq(strings(spec.mined)),
            pools::facility_id.eq(facility),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let id = Uuid::now_v7();
    diesel::insert_into(products::table)
        .values((
            products::id.eq(id),
            products::name.eq(format!("Product {tag}")),
            products::algorithm.eq(spec.algorithm),
            products::mined_coins.eq(strings(spec.mined)),
            products::pool_id.eq(pool),
            products::facility_id.eq(facility),
            products::hashrate_unit.eq(spec.unit),
            products::hashrate_min.eq(d(spec.min)),
            products::hashrate_max.eq(d(spec.max)),
            products::hashrate_step.eq(d(spec.step)),
            products::price_usd_per_unit.eq(d(spec.price)),
            products::duration_days.eq(spec.duration),
            products::fee_usd_per_unit_day.eq(d(spec.fee)),
            products::pay_assets.eq(strings(spec.pay)),
            products::payout_assets.eq(strings(spec.payout)),
            products::spread_bps.eq(spec.spread_bps),
            products::stop_rule.eq("pause_extend"),
            products::stop_after_days.eq(3),
            products::inventory.eq(d(spec.inventory)),
            products::sold.eq(d(spec.sold)),
            products::state.eq(spec.state),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    id
}

async fn post_price(app: &TestApp, asset: &str, usd: &str, observed_at: DateTime<Utc>) {
    let mut conn = app.db.conn().await.unwrap();
    prices::post_price(&mut conn, asset, d(usd), "test", observed_at)
        .await
        .unwrap();
}

/// Credits `amount` of `asset` to (owner, kind) with a deposit from custody.
async fn fund(app: &TestApp, owner: &Owner, kind: AccountKind, asset: Asset, amount: &str) {
    let mut conn = app.db.conn().await.unwrap();
    let custody = ledger::open_account(
        &mut conn,
        &Owner::Network("test".to_owned()),
        asset,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let account = ledger::open_account(&mut conn, owner, asset, kind)
        .await
        .unwrap();
    let t = NewTransfer::new(
        format!("deposit:{}", Uuid::new_v4()),
        TransferKind::Deposit,
        custody.id,
        account.id,
        Amount::parse(amount, asset, Sign::Positive).unwrap(),
    );
    ledger::post_batch(&mut conn, &[t.into()]).await.unwrap();
}

async fn fund_user(app: &TestApp, user: Uuid, asset: Asset, amount: &str) {
    fund(
        app,
        &Owner::User(user),
        AccountKind::Customer,
        asset,
        amount,
    )
    .await;
}

/// The available balance of (owner, asset, kind); zero without an account.
async fn balance(app: &TestApp, owner: &Owner, asset: Asset, kind: AccountKind) -> Decimal {
    let mut conn = app.db.conn().await.unwrap();
    ledger::account_by_key(&mut conn, owner, asset, kind)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.available())
}

async fn user_balance(app: &TestApp, user: Uuid, asset: Asset) -> Decimal {
    balance(app, &Owner::User(user), asset, AccountKind::Customer).await
}

/// What the platform's sales revenue account in `asset` has received.
async fn sales_revenue(app: &TestApp, asset: Asset) -> Decimal {
    let mut conn = app.db.conn().await.unwrap();
    ledger::account_by_key(
        &mut conn,
        &Owner::Platform,
        asset,
        AccountKind::SalesRevenue,
    )
    .await
    .unwrap()
    .map_or(Decimal::ZERO, |a| a.posted_balance())
}

async fn assert_reconciled(app: &TestApp) {
    let mut conn = app.db.conn().await.unwrap();
    let problems = ledger::reconcile(&mut conn).await.unwrap();
    assert!(
        problems.is_empty(),
        "ledger does not reconcile: {problems:#?}"
    );
}

async fn sold(app: &TestApp, product: Uuid) -> Decimal {
    let mut conn = app.db.conn().await.unwrap();
    products::table
        .find(product)
        .select(products::sold)
        .first::<Decimal>(&mut conn)
        .await
        .unwrap()
        .normalize()
}

async fn contracts_of_user(app: &TestApp, user: Uuid) -> i64 {
    let mut conn = app.db.conn().await.unwrap();
    contracts::table
        .filter(contracts::user_id.eq(user))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

async fn contracts_of_product(app: &TestApp, product: Uuid) -> i64 {
    let mut conn = app.db.conn().await.unwrap();
    contracts::table
        .filter(contracts::product_id.eq(product))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

async fn orders_of_user(app: &TestApp, user: Uuid) -> i64 {
    let mut conn = app.db.conn().await.unwrap();
    orders::table
        .filter(orders::user_id.eq(user))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

async fn quote_used_at(app: &TestApp, quote: Uuid) -> Option<DateTime<Utc>> {
    let mut conn = app.db.conn().await.unwrap();
    quotes::table
        .find(quote)
        .select(quotes::used_at)
        .first(&mut conn)
        .await
        .unwrap()
}

/// The expected quote amount: hashrate × USD price / rate × (1 + spread),
/// rounded up to the asset's ledger precision.
fn expected_price(hashrate: &str, usd_per_unit: &str, rate: &str, bps: i64, dp: u32) -> Decimal {
    let spread = Decimal::ONE + Decimal::from(bps) / Decimal::from(10_000);
    (d(hashrate) * d(usd_per_unit) / d(rate) * spread)
        .round_dp_with_strategy(dp, RoundingStrategy::AwayFromZero)
        .normalize()
}

async fn quote_res(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(app.url("/v1/quotes"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A quote that must succeed (201).
async fn quote(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    product: Uuid,
    hashrate: &str,
    pay_asset: &str,
) -> Value {
    let (status, body) = call(
        app,
        client,
        "POST",
        "/v1/quotes",
        Some(token),
        Some(&json!({ "product_id": product, "hashrate": hashrate, "pay_asset": pay_asset })),
    )
    .await;
    assert_eq!(status, 201, "quote: {body}");
    body
}

/// POST /v1/orders for `quote_id`, with an `Idempotency-Key` when given.
async fn order_res(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    quote_id: &Value,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(app.url("/v1/orders"))
        .bearer_auth(token)
        .json(&json!({ "quote_id": quote_id }));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

/// Status, `Idempotent-Replayed` header and body text of a response.
async fn parts(res: reqwest::Response) -> (u16, Option<String>, String) {
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, res.text().await.unwrap())
}

async fn json_body(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An order that must succeed (201).
async fn order(app: &TestApp, client: &reqwest::Client, token: &str, quote_id: &Value) -> Value {
    json_body(order_res(app, client, token, quote_id, None).await, 201).await
}

/// A verified customer of `country`, inserted straight into the database
/// and logged in: its id and access token.
async fn customer_in(app: &TestApp, client: &reqwest::Client, country: &str) -> (Uuid, String) {
    use domain::identity::store;
    let hash = domain::identity::password::PasswordHasher::default_params()
        .hash(USER_PASSWORD)
        .await
        .unwrap();
    let email = unique_email("buyer");
    let id = {
        let mut conn = app.db.conn().await.unwrap();
        store::insert_user(
            &mut conn,
            &store::NewUser {
                id: Uuid::now_v7(),
                email: &email,
                password_hash: &hash,
                country,
                role: None,
                partner_id: None,
                email_verified_at: Some(Utc::now()),
                must_change_password: false,
            },
        )
        .await
        .unwrap()
        .id
    };
    let pair = login(app, client, "/v1/auth/login", &email, USER_PASSWORD).await;
    (id, pair["access_token"].as_str().unwrap().to_owned())
}

fn next_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    (at.date_naive() + Duration::days(1))
        .and_time(NaiveTime::MIN)
        .and_utc()
}

fn find_product(list: &Value, id: Uuid) -> Option<&Value> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == id.to_string())
}

// ---------------------------------------------------------------------------
// 1. The catalog
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_catalog_lists_products_on_sale_with_terms_fees_and_a_yield_estimate() {
    let (app, _) = setup().await;
    let on_sale = insert_product(&app, &Spec::default()).await;
    let draft = insert_product(
        &app,
        &Spec {
            state: "draft",
            ..Spec::default()
        },
    )
    .await;
    let paused = insert_product(
        &app,
        &Spec {
            state: "paused",
            ..Spec::default()
        },
    )
    .await;
    let sold_out = insert_product(
        &app,
        &Spec {
            inventory: "100",
            sold: "100",
            ..Spec::default()
        },
    )
    .await;
    let scrypt = insert_product(
        &app,
        &Spec {
            algorithm: "scrypt",
            unit: "MH/s",
            mined: &["LTC", "DOGE"],
            pay: &["USDT"],
            payout: &["DOGE", "USDT"],
            min: "100",
            max: "100000",
            step: "100",
            price: "0.05",
            fee: "0.0012",
            inventory: "500000",
            sold: "1500",
            ..Spec::default()
        },
    )
    .await;
    post_price(&app, "BTC", "97000.12", Utc::now()).await;

    // A price but no network figures: no estimate.
    let list = json_body(app.get("/v1/products").await, 200).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![on_sale.to_string(), scrypt.to_string()],
        "only products on sale with hashrate left, oldest first: {list}"
    );
    for hidden in [draft, paused, sold_out] {
        assert!(find_product(&list, hidden).is_none(), "{hidden} listed");
    }
    let p = find_product(&list, on_sale).unwrap();
    assert_eq!(p["estimated_yield"], Value::Null, "{p}");

    // Network figures of BTC (difficulty 86.39 T, 3.125 + 0.1 BTC a block).
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::sql_query(
            "INSERT INTO network_stats (coin, difficulty, block_reward, fees_per_block, source, observed_at) \
             VALUES ('BTC', 86390000000000, 3.125, 0.1, 'test', now())",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        // LTC figures, but no LTC price (and nothing for DOGE): still no estimate.
        diesel::sql_query(
            "INSERT INTO network_stats (coin, difficulty, block_reward, fees_per_block, source, observed_at) \
             VALUES ('LTC', 45000000, 6.25, 0.01, 'test', now())",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let list = json_body(app.get("/v1/products").await, 200).await;
    let p = find_product(&list, on_sale).unwrap().clone();
    assert!(p["name"].as_str().unwrap().starts_with("Product "));
    assert_eq!(p["algorithm"], "sha256");
    assert_eq!(p["mined_coins"], json!(["BTC"]));
    assert_eq!(p["hashrate_unit"], "TH/s");
    assert_eq!(dec_of(&p["hashrate_min"]), d("1"));
    assert_eq!(dec_of(&p["hashrate_max"]), d("1000"));
    assert_eq!(dec_of(&p["hashrate_step"]), d("1"));
    assert_eq!(dec_of(&p["hashrate_available"]), d("10000"));
    assert_eq!(dec_of(&p["price_usd_per_unit"]), d("15.5"));
    assert_eq!(dec_of(&p["fee_usd_per_unit_day"]), d("0.04"));
    assert_eq!(p["duration_days"], 30);
    assert_eq!(p["spread_bps"], 50);
    assert_eq!(p["pay_assets"], json!(["BTC", "USDT"]));
    assert_eq!(p["payout_assets"], json!(["BTC", "USDT"]));
    assert_eq!(p["stop_rule"], "pause_extend");
    assert_eq!(p["facility"]["country"], "US");
    assert_eq!(p["facility"]["miner_model"], "Antminer S21");

    let y = &p["estimated_yield"];
    assert!(y.is_object(), "an estimate with inputs: {p}");
    let input = &y["inputs"][0];
    assert_eq!(input["coin"], "BTC");
    let sats = dec_of(&input["hashprice"]) * d("100000000");
    println!("BTC hashprice: {sats} sat/TH/day; estimate: {y}");
    assert!(sats > d("74") && sats < d("76"), "hashprice {sats} sat");
    assert_eq!(dec_of(&input["price_usd"]), d("97000.12"));
    let gross = dec_of(&y["gross_usd_per_unit_day"]);
    // 75.0966 sat × $97 000.12 = $0.072844
    assert_eq!(gross, d("0.072844"), "{y}");
    assert_eq!(dec_of(&y["fee_usd_per_unit_day"]), d("0.04"));
    assert_eq!(dec_of(&y["net_high_usd_per_unit_day"]), d("0.032844"));
    let low = dec_of(&y["net_low_usd_per_unit_day"]);
    assert!(low < d("0.032844") && low >= Decimal::ZERO, "{y}");
    assert!(y["note"].as_str().is_some_and(|n| !n.is_empty()));

    let s = find_product(&list, scrypt).unwrap();
    assert_eq!(s["estimated_yield"], Value::Null, "no LTC price: {s}");
    assert_eq!(dec_of(&s["hashrate_available"]), d("498500"));
    assert_eq!(s["hashrate_unit"], "MH/s");

    // One product: on sale → 200 as listed; draft or paused → 404.
    let one = json_body(app.get(&format!("/v1/products/{on_sale}")).await, 200).await;
    assert_eq!(one, p);
    for hidden in [draft, paused] {
        problem(
            app.get(&format!("/v1/products/{hidden}")).await,
            404,
            "not_found",
        )
        .await;
    }
    problem(
        app.get(&format!("/v1/products/{}", Uuid::now_v7())).await,
        404,
        "not_found",
    )
    .await;
}

// ---------------------------------------------------------------------------
// 2. Quote → order → contract
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_quote_becomes_an_order_a_debit_and_a_pending_contract() {
    let (app, client) = setup().await;
    let product = insert_product(&app, &Spec::default()).await;
    post_price(&app, "BTC", "97000.12", Utc::now()).await;
    let (buyer, _, token) = customer(&app, &client).await;
    let (_, _, other) = customer(&app, &client).await;
    fund_user(&app, buyer, Asset::BTC, "0.01").await;

    let before = Utc::now();
    let q = quote(&app, &client, &token, product, "10", "BTC").await;
    let after = Utc::now();
    // 10 TH/s × $15.5 / $97 000.12 × 1.005 = 0.00160592584…, rounded up.
    let price = expected_price("10", "15.5", "97000.12", 50, 8);
    assert_eq!(price, d("0.00160593"));
    assert_eq!(dec_of(&q["price"]), price, "{q}");
    assert_eq!(dec_of(&q["price_usd"]), d("155"));
    assert_eq!(dec_of(&q["usd_rate"]), d("97000.12"));
    assert_eq!(dec_of(&q["hashrate"]), d("10"));
    assert_eq!(q["pay_asset"], "BTC");
    assert_eq!(q["spread_bps"], 50);
    assert_eq!(q["rate_source"], "test");
    assert_eq!(dec_of(&q["maintenance_fee_usd_per_day"]), d("0.4"));
    let expires = time_of(&q["expires_at"]);
    assert!(
        expires >= before + Duration::seconds(59) && expires <= after + Duration::seconds(61),
        "expires_at {expires}"
    );
    let starts = time_of(&q["starts_at"]);
    assert!(
        starts == next_midnight(before) || starts == next_midnight(after),
        "starts_at {starts}"
    );
    assert_eq!(time_of(&q["ends_at"]), starts + Duration::days(30));
    assert_eq!(q["terms"]["product_id"], product.to_string());
    let quote_id = uuid_of(&q["id"]);

    let sold_before = sold(&app, product).await;
    let revenue_before = sales_revenue(&app, Asset::BTC).await;
    let o = order(&app, &client, &token, &q["id"]).await;
    assert_eq!(o["quote_id"], q["id"]);
    assert_eq!(o["pay_asset"], "BTC");
    assert_eq!(dec_of(&o["amount"]), price);
    let order_id = uuid_of(&o["id"]);
    let contract_id = uuid_of(&o["contract_id"]);

    // The ledger: the buyer paid exactly the price to sales revenue.
    assert_eq!(
        user_balance(&app, buyer, Asset::BTC).await,
        d("0.01") - price
    );
    assert_eq!(
        sales_revenue(&app, Asset::BTC).await - revenue_before,
        price
    );
    {
        let mut conn = app.db.conn().await.unwrap();
        let t = ledger::transfer(&mut conn, uuid_of(&o["transfer_id"]))
            .await
            .unwrap();
        assert_eq!(t.kind, TransferKind::Purchase);
        assert_eq!(t.amount.normalize(), price);
        assert_eq!(t.reference, format!("order:{order_id}"));
    }
    assert_eq!(sold(&app, product).await, sold_before + d("10"));
    assert!(quote_used_at(&app, quote_id).await.is_some());

    // The order reads back for its owner only.
    let (status, got) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/orders/{order_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, o);
    let res = client
        .get(app.url(&format!("/v1/orders/{order_id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;

    // The contract: pending, from the next 00:00 UTC for 30 days, with the terms.
    let (status, c) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "pending");
    assert_eq!(c["product_id"], product.to_string());
    assert_eq!(dec_of(&c["hashrate"]), d("10"));
    assert_eq!(c["hashrate_unit"], "TH/s");
    assert_eq!(c["pay_asset"], "BTC");
    assert_eq!(dec_of(&c["paid_amount"]), price);
    assert_eq!(
        c["payout_asset"], "BTC",
        "the first payout asset by default"
    );
    assert_eq!(time_of(&c["starts_at"]), starts);
    assert_eq!(starts.time(), NaiveTime::MIN);
    assert!(starts > before && starts - before <= Duration::days(1));
    assert_eq!(time_of(&c["ends_at"]), starts + Duration::days(30));
    assert_eq!(c["days_left"], 30);
    assert_eq!(c["extended_hours"], 0);
    assert_eq!(c["earnings"], json!([]));
    assert_eq!(c["terms"], q["terms"]);
    let terms = &c["terms"];
    assert_eq!(terms["product_id"], product.to_string());
    assert_eq!(terms["price_usd_per_unit"], "15.5");
    assert_eq!(terms["fee_usd_per_unit_day"], "0.04");
    assert_eq!(terms["duration_days"], 30);
    assert_eq!(terms["payout_assets"], json!(["BTC", "USDT"]));
    assert_eq!(terms["spread_bps"], 50);
    assert_eq!(terms["stop_rule"], "pause_extend");
    assert_eq!(terms["mined_coins"], json!(["BTC"]));
    let kinds: Vec<&str> = c["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["created"], "{c}");

    let (status, list) = call(&app, &client, "GET", "/v1/contracts", Some(&token), None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], contract_id.to_string());

    // Another customer sees neither the contract nor it in a list.
    let res = client
        .get(app.url(&format!("/v1/contracts/{contract_id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;
    let (status, list) = call(&app, &client, "GET", "/v1/contracts", Some(&other), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]), "{list}");

    // The product shows the hashrate as sold.
    let p = json_body(app.get(&format!("/v1/products/{product}")).await, 200).await;
    assert_eq!(dec_of(&p["hashrate_available"]), d("9990"));

    // Without a token: 401.
    let res = client
        .post(app.url("/v1/quotes"))
        .json(&json!({ "product_id": product, "hashrate": "10", "pay_asset": "BTC" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);

    assert_reconciled(&app).await;
}

// ---------------------------------------------------------------------------
// 3. Refusals
// ---------------------------------------------------------------------------

/// Nothing of an order was written: no contract or order of `user`, the
/// product's `sold` unchanged, the quote unused, the balance unchanged.
async fn assert_nothing_written(
    app: &TestApp,
    user: Uuid,
    product: Uuid,
    sold_before: Decimal,
    quote: Uuid,
    asset: Asset,
    balance_before: Decimal,
) {
    assert_eq!(contracts_of_user(app, user).await, 0, "a contract was made");
    assert_eq!(orders_of_user(app, user).await, 0, "an order was made");
    assert_eq!(sold(app, product).await, sold_before, "sold moved");
    assert_eq!(quote_used_at(app, quote).await, None, "quote marked used");
    assert_eq!(user_balance(app, user, asset).await, balance_before);
}

#[tokio::test]
async fn quotes_and_orders_are_refused_with_their_codes_and_leave_nothing_behind() {
    let (app, client) = setup().await;
    let spec = Spec {
        min: "5",
        max: "500",
        step: "5",
        price: "20",
        pay: &["BTC", "USDT", "ETH", "USDC"],
        payout: &["BTC"],
        ..Spec::default()
    };
    let product = insert_product(&app, &spec).await;
    let now = Utc::now();
    post_price(&app, "BTC", "100000", now).await;
    post_price(&app, "USDT", "1", now).await;
    // 10 minutes old, with the default tolerance of 300 s.
    post_price(&app, "ETH", "3000", now - Duration::minutes(10)).await;
    let (buyer, _, token) = customer(&app, &client).await;
    fund_user(&app, buyer, Asset::USDT, "1000").await;

    let q = |body: Value| {
        let (app, client, token) = (&app, &client, token.clone());
        async move { quote_res(app, client, &token, &body).await }
    };

    // Invalid requests.
    let res = q(json!({ "product_id": product, "hashrate": "12", "pay_asset": "USDT" })).await;
    validation(res, "hashrate", Some("not_a_step")).await;
    let res = q(json!({ "product_id": product, "hashrate": "0", "pay_asset": "USDT" })).await;
    validation(res, "hashrate", None).await;
    let res = q(json!({ "product_id": product, "hashrate": "505", "pay_asset": "USDT" })).await;
    validation(res, "hashrate", Some("above_max")).await;
    let res = q(json!({ "product_id": product, "hashrate": 10, "pay_asset": "USDT" })).await;
    validation(res, "hashrate", None).await;
    let res = q(json!({ "product_id": product, "hashrate": "10", "pay_asset": "DOGE" })).await;
    validation(res, "pay_asset", Some("not_accepted")).await;
    let res = q(json!({ "product_id": product, "hashrate": "10", "pay_asset": "XRP" })).await;
    validation(res, "pay_asset", None).await;
    let res =
        q(json!({ "product_id": Uuid::now_v7(), "hashrate": "10", "pay_asset": "USDT" })).await;
    problem(res, 404, "not_found").await;

    // No fresh reference price: no quote.
    let res = q(json!({ "product_id": product, "hashrate": "10", "pay_asset": "ETH" })).await;
    problem(res, 503, "price_stale").await;
    let res = q(json!({ "product_id": product, "hashrate": "10", "pay_asset": "USDC" })).await;
    problem(res, 503, "price_missing").await;

    // More than is left for sale: sold_out at the quote.
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::update(products::table.find(product))
            .set(products::inventory.eq(d("100")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = q(json!({ "product_id": product, "hashrate": "105", "pay_asset": "USDT" })).await;
    problem(res, 409, "sold_out").await;

    // An expired quote.
    let sold0 = sold(&app, product).await;
    let expired = quote(&app, &client, &token, product, "10", "USDT").await;
    let expired_id = uuid_of(&expired["id"]);
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::sql_query(
            "UPDATE quotes SET expires_at = now() - interval '1 second' WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(expired_id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let res = order_res(&app, &client, &token, &expired["id"], None).await;
    problem(res, 409, "quote_expired").await;
    assert_nothing_written(
        &app,
        buyer,
        product,
        sold0,
        expired_id,
        Asset::USDT,
        d("1000"),
    )
    .await;

    // Another customer's quote, and a quote that does not exist: 404.
    let (_, _, other) = customer(&app, &client).await;
    let mine = quote(&app, &client, &token, product, "10", "USDT").await;
    let res = order_res(&app, &client, &other, &mine["id"], None).await;
    problem(res, 404, "not_found").await;
    let res = order_res(&app, &client, &token, &json!(Uuid::now_v7()), None).await;
    problem(res, 404, "not_found").await;

    // A used quote: the first order succeeds, the second is refused.
    // 10 × $20 × 1.005 = 201 USDT.
    let price = expected_price("10", "20", "1", 50, 6);
    assert_eq!(dec_of(&mine["price"]), price);
    let o = order(&app, &client, &token, &mine["id"]).await;
    assert_eq!(dec_of(&o["amount"]), d("201"));
    let res = order_res(&app, &client, &token, &mine["id"], None).await;
    problem(res, 409, "quote_used").await;
    assert_eq!(contracts_of_user(&app, buyer).await, 1);
    assert_eq!(orders_of_user(&app, buyer).await, 1);
    assert_eq!(user_balance(&app, buyer, Asset::USDT).await, d("799"));
    assert_eq!(sold(&app, product).await, sold0 + d("10"));

    // Insufficient funds: one unit of USDT short.
    let (poor, _, poor_token) = customer(&app, &client).await;
    fund_user(&app, poor, Asset::USDT, "200.999999").await;
    let pq = quote(&app, &client, &poor_token, product, "10", "USDT").await;
    let sold1 = sold(&app, product).await;
    let revenue = sales_revenue(&app, Asset::USDT).await;
    let res = order_res(&app, &client, &poor_token, &pq["id"], None).await;
    problem(res, 422, "insufficient_funds").await;
    assert_nothing_written(
        &app,
        poor,
        product,
        sold1,
        uuid_of(&pq["id"]),
        Asset::USDT,
        d("200.999999"),
    )
    .await;
    assert_eq!(sales_revenue(&app, Asset::USDT).await, revenue);
    // No balance at all in the pay asset (no account yet).
    let bq = quote(&app, &client, &poor_token, product, "10", "BTC").await;
    let res = order_res(&app, &client, &poor_token, &bq["id"], None).await;
    problem(res, 422, "insufficient_funds").await;
    assert_eq!(user_balance(&app, poor, Asset::BTC).await, Decimal::ZERO);

    // A resident of a restricted country (CN) may quote but not buy.
    let (cn, cn_token) = customer_in(&app, &client, "CN").await;
    fund_user(&app, cn, Asset::USDT, "1000").await;
    let cq = quote(&app, &client, &cn_token, product, "10", "USDT").await;
    let res = order_res(&app, &client, &cn_token, &cq["id"], None).await;
    problem(res, 451, "jurisdiction_restricted").await;
    assert_nothing_written(
        &app,
        cn,
        product,
        sold1,
        uuid_of(&cq["id"]),
        Asset::USDT,
        d("1000"),
    )
    .await;

    // A product taken off sale after the quote: product_unavailable.
    let late = quote(&app, &client, &token, product, "10", "USDT").await;
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::update(products::table.find(product))
            .set(products::state.eq("paused"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = order_res(&app, &client, &token, &late["id"], None).await;
    problem(res, 409, "product_unavailable").await;
    assert_eq!(quote_used_at(&app, uuid_of(&late["id"])).await, None);
    let res = q(json!({ "product_id": product, "hashrate": "10", "pay_asset": "USDT" })).await;
    problem(res, 409, "product_unavailable").await;

    // Malformed order bodies.
    let res = client
        .post(app.url("/v1/orders"))
        .bearer_auth(&token)
        .json(&json!({ "quote_id": "nope" }))
        .send()
        .await
        .unwrap();
    validation(res, "quote_id", None).await;

    assert_eq!(contracts_of_user(&app, buyer).await, 1);
    assert_reconciled(&app).await;
}

// ---------------------------------------------------------------------------
// 4. Inventory under concurrency
// ---------------------------------------------------------------------------

struct Buyer {
    id: Uuid,
    token: String,
    client: reqwest::Client,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_buyers_never_oversell_fifty_units() {
    const BUYERS: usize = 64;
    const UNITS: i64 = 50;
    let (app, _) = setup().await;
    let product = insert_product(
        &app,
        &Spec {
            min: "1",
            max: "10",
            step: "1",
            price: "10",
            pay: &["USDT"],
            payout: &["USDT"],
            inventory: "50",
            ..Spec::default()
        },
    )
    .await;
    post_price(&app, "USDT", "1", Utc::now()).await;

    // Each buyer has its own address (the login limit is per address).
    let buyers: Vec<Buyer> = futures::stream::iter(0..BUYERS)
        .map(|_| async {
            let client = client_from(&random_ip());
            let (id, _, token) = customer(&app, &client).await;
            fund_user(&app, id, Asset::USDT, "20").await;
            Buyer { id, token, client }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let quotes: Vec<Value> = futures::future::join_all(
        buyers
            .iter()
            .map(|b| quote(&app, &b.client, &b.token, product, "1", "USDT")),
    )
    .await;
    let price = expected_price("1", "10", "1", 50, 6);
    for q in &quotes {
        assert_eq!(dec_of(&q["price"]), price);
    }

    let started = std::time::Instant::now();
    let results: Vec<(u16, Value)> =
        futures::future::join_all(buyers.iter().zip(&quotes).map(|(b, q)| async {
            let res = order_res(&app, &b.client, &b.token, &q["id"], None).await;
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap())
        }))
        .await;
    let elapsed = started.elapsed();

    let created = results.iter().filter(|(s, _)| *s == 201).count();
    let sold_out = results
        .iter()
        .filter(|(s, b)| *s == 409 && b["code"] == "sold_out")
        .count();
    let others: Vec<&(u16, Value)> = results
        .iter()
        .filter(|(s, b)| *s != 201 && !(*s == 409 && b["code"] == "sold_out"))
        .collect();
    println!(
        "{BUYERS} concurrent orders for {UNITS} units in {elapsed:?}: {created} × 201, \
         {sold_out} × 409 sold_out, {} other",
        others.len()
    );
    assert!(others.is_empty(), "unexpected answers: {others:?}");
    assert_eq!(created, 50);
    assert_eq!(sold_out, 14);
    assert_eq!(sold(&app, product).await, d("50"));
    assert_eq!(contracts_of_product(&app, product).await, UNITS);

    let mut winners = 0;
    for (b, (status, body)) in buyers.iter().zip(&results) {
        let balance = user_balance(&app, b.id, Asset::USDT).await;
        if *status == 201 {
            winners += 1;
            assert_eq!(dec_of(&body["amount"]), price);
            assert_eq!(balance, d("20") - price, "winner {}", b.id);
            assert_eq!(contracts_of_user(&app, b.id).await, 1);
        } else {
            assert_eq!(balance, d("20"), "loser {} was charged", b.id);
            assert_eq!(contracts_of_user(&app, b.id).await, 0);
        }
    }
    assert_eq!(winners, 50);
    assert_eq!(
        sales_revenue(&app, Asset::USDT).await,
        price * Decimal::from(UNITS)
    );
    // Sold out: no longer listed.
    let list = json_body(app.get("/v1/products").await, 200).await;
    assert!(find_product(&list, product).is_none(), "{list}");
    assert_reconciled(&app).await;
}

// ---------------------------------------------------------------------------
// 5. Idempotency keys
// ---------------------------------------------------------------------------

async fn key_stored(app: &TestApp, owner: &str, key: &str) -> bool {
    let mut conn = app.db.conn().await.unwrap();
    idempotency_keys::table
        .filter(idempotency_keys::owner.eq(owner))
        .filter(idempotency_keys::key.eq(key))
        .count()
        .get_result::<i64>(&mut conn)
        .await
        .unwrap()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_gives_one_effect_per_request() {
    let (app, client) = setup().await;
    let product = insert_product(
        &app,
        &Spec {
            price: "10",
            ..Spec::default()
        },
    )
    .await;
    post_price(&app, "USDT", "1", Utc::now()).await;
    let (buyer, _, token) = customer(&app, &client).await;
    fund_user(&app, buyer, Asset::USDT, "1000").await;
    // 2 × $10 × 1.005
    let price = expected_price("2", "10", "1", 50, 6);
    assert_eq!(price, d("20.1"));

    // The same key and body twice: the same answer, one effect.
    let q1 = quote(&app, &client, &token, product, "2", "USDT").await;
    let key = format!("order-{}", Uuid::new_v4());
    let (s1, r1, b1) = parts(order_res(&app, &client, &token, &q1["id"], Some(&key)).await).await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(r1, None, "the first answer is no replay");
    let (s2, r2, b2) = parts(order_res(&app, &client, &token, &q1["id"], Some(&key)).await).await;
    assert_eq!(s2, 201, "{b2}");
    assert_eq!(r2.as_deref(), Some("true"));
    let (v1, v2): (Value, Value) = (
        serde_json::from_str(&b1).unwrap(),
        serde_json::from_str(&b2).unwrap(),
    );
    assert_eq!(v1, v2);
    assert_eq!(b1, b2, "the replay is byte for byte the first body");
    assert_eq!(orders_of_user(&app, buyer).await, 1);
    assert_eq!(contracts_of_user(&app, buyer).await, 1);
    assert_eq!(
        user_balance(&app, buyer, Asset::USDT).await,
        d("1000") - price
    );
    // Without the key, the same quote is used.
    let res = order_res(&app, &client, &token, &q1["id"], None).await;
    problem(res, 409, "quote_used").await;

    // The same key with another body (another quote): refused, no effect.
    let q2 = quote(&app, &client, &token, product, "2", "USDT").await;
    let res = order_res(&app, &client, &token, &q2["id"], Some(&key)).await;
    problem(res, 422, "idempotency_key_reused").await;
    assert_eq!(quote_used_at(&app, uuid_of(&q2["id"])).await, None);
    assert_eq!(orders_of_user(&app, buyer).await, 1);
    assert_eq!(
        user_balance(&app, buyer, Asset::USDT).await,
        d("1000") - price
    );

    // Keys belong to their owner: another customer may use the same one.
    let (buyer2, _, token2) = customer(&app, &client).await;
    fund_user(&app, buyer2, Asset::USDT, "100").await;
    let q3 = quote(&app, &client, &token2, product, "2", "USDT").await;
    let (s, r, b) = parts(order_res(&app, &client, &token2, &q3["id"], Some(&key)).await).await;
    assert_eq!((s, r), (201, None), "{b}");
    assert_eq!(contracts_of_user(&app, buyer2).await, 1);

    // An invalid key is refused before anything happens.
    let res = order_res(&app, &client, &token, &q2["id"], Some("has space")).await;
    validation(res, "Idempotency-Key", None).await;
    assert_eq!(quote_used_at(&app, uuid_of(&q2["id"])).await, None);

    // Two concurrent requests with one key and body: one effect.
    let contracts_before = contracts_of_user(&app, buyer).await;
    let balance_before = user_balance(&app, buyer, Asset::USDT).await;
    for round in 0..5 {
        let q = quote(&app, &client, &token, product, "2", "USDT").await;
        let key = format!("race-{round}-{}", Uuid::new_v4());
        let (a, b) = tokio::join!(
            order_res(&app, &client, &token, &q["id"], Some(&key)),
            order_res(&app, &client, &token, &q["id"], Some(&key)),
        );
        let (a, b) = (parts(a).await, parts(b).await);
        println!(
            "concurrent round {round}: {} (replayed {:?}) and {} (replayed {:?})",
            a.0, a.1, b.0, b.1
        );
        let statuses = [a.0, b.0];
        assert!(statuses.contains(&201), "one of them succeeds: {a:?} {b:?}");
        if a.0 == 201 && b.0 == 201 {
            assert_eq!(
                serde_json::from_str::<Value>(&a.2).unwrap(),
                serde_json::from_str::<Value>(&b.2).unwrap(),
                "two 201s must be the same order"
            );
            assert!(
                a.1.is_some() != b.1.is_some(),
                "exactly one is a replay: {a:?} {b:?}"
            );
        } else {
            let other = if a.0 == 201 { &b } else { &a };
            assert_eq!(other.0, 409, "{other:?}");
            let body: Value = serde_json::from_str(&other.2).unwrap();
            assert_eq!(body["code"], "quote_used", "{body}");
        }
        assert_eq!(
            contracts_of_user(&app, buyer).await,
            contracts_before + round + 1,
            "two effects for one key"
        );
    }
    assert_eq!(
        user_balance(&app, buyer, Asset::USDT).await,
        balance_before - price * Decimal::from(5)
    );

    // A request that failed is not stored: after funding, the retry runs.
    let (poor, _, poor_token) = customer(&app, &client).await;
    let pq = quote(&app, &client, &poor_token, product, "2", "USDT").await;
    let key = format!("retry-{}", Uuid::new_v4());
    let res = order_res(&app, &client, &poor_token, &pq["id"], Some(&key)).await;
    problem(res, 422, "insufficient_funds").await;
    assert!(!key_stored(&app, &format!("user:{poor}"), &key).await);
    fund_user(&app, poor, Asset::USDT, "50").await;
    let (s, r, b) = parts(order_res(&app, &client, &poor_token, &pq["id"], Some(&key)).await).await;
    assert_eq!((s, r), (201, None), "{b}");
    assert!(key_stored(&app, &format!("user:{poor}"), &key).await);
    let (s, r, b2) =
        parts(order_res(&app, &client, &poor_token, &pq["id"], Some(&key)).await).await;
    assert_eq!((s, r.as_deref()), (201, Some("true")));
    assert_eq!(b, b2);
    assert_eq!(contracts_of_user(&app, poor).await, 1);
    assert_eq!(user_balance(&app, poor, Asset::USDT).await, d("50") - price);

    assert_reconciled(&app).await;
}

// ---------------------------------------------------------------------------
// 6. The payout asset
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_payout_asset_can_change_to_one_the_terms_offer() {
    let (app, client) = setup().await;
    let product = insert_product(&app, &Spec::default()).await;
    post_price(&app, "USDT", "1", Utc::now()).await;
    let (buyer, _, token) = customer(&app, &client).await;
    let (_, _, other) = customer(&app, &client).await;
    fund_user(&app, buyer, Asset::USDT, "1000").await;
    let q = quote(&app, &client, &token, product, "10", "USDT").await;
    let o = order(&app, &client, &token, &q["id"]).await;
    let id = o["contract_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/contracts/{id}");

    let (status, c) = call(
        &app,
        &client,
        "PATCH",
        &path,
        Some(&token),
        Some(&json!({ "payout_asset": "USDT" })),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["payout_asset"], "USDT");
    assert_eq!(c["id"], id.as_str());

    let (status, detail) = call(&app, &client, "GET", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["payout_asset"], "USDT");
    let changes: Vec<&Value> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "payout_asset_changed")
        .collect();
    assert_eq!(changes.len(), 1, "{detail}");
    assert_eq!(changes[0]["detail"], json!({ "from": "BTC", "to": "USDT" }));

    // The same asset again changes nothing and records nothing.
    let (status, _) = call(
        &app,
        &client,
        "PATCH",
        &path,
        Some(&token),
        Some(&json!({ "payout_asset": "USDT" })),
    )
    .await;
    assert_eq!(status, 200);
    let (_, detail) = call(&app, &client, "GET", &path, Some(&token), None).await;
    assert_eq!(detail["events"].as_array().unwrap().len(), 2, "{detail}");

    // An asset the terms do not offer.
    let res = client
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({ "payout_asset": "ETH" }))
        .send()
        .await
        .unwrap();
    validation(res, "payout_asset", Some("not_offered")).await;
    let res = client
        .patch(app.url(&path))
        .bearer_auth(&token)
        .json(&json!({ "payout_asset": "XRP" }))
        .send()
        .await
        .unwrap();
    validation(res, "payout_asset", None).await;
    // Not the caller's contract.
    let res = client
        .patch(app.url(&path))
        .bearer_auth(&other)
        .json(&json!({ "payout_asset": "BTC" }))
        .send()
        .await
        .unwrap();
    problem(res, 404, "not_found").await;

    let (_, detail) = call(&app, &client, "GET", &path, Some(&token), None).await;
    assert_eq!(detail["payout_asset"], "USDT");
    assert_eq!(detail["events"].as_array().unwrap().len(), 2, "{detail}");
}

// ---------------------------------------------------------------------------
// 7. Partners
// ---------------------------------------------------------------------------

async fn signed_json(
    app: &TestApp,
    client: &reqwest::Client,
    key: &PartnerKey,
    method: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    send_signed(app, client, key, method, path, &bytes).await
}

#[tokio::test]
async fn a_partner_buys_for_its_customer_from_its_own_balance() {
    use domain::identity::roles::Role;
    let (app, client) = setup().await;
    let admin = staff(&app, &client, Role::Superadmin).await;
    let p1 = create_partner(&app, &client, &admin).await;
    let p2 = create_partner(&app, &client, &admin).await;
    let k1 = create_partner_key(&app, &client, &admin, p1, &["read", "trade"], &[]).await;
    let k2 = create_partner_key(&app, &client, &admin, p2, &["read", "trade"], &[]).await;

    let product = insert_product(&app, &Spec::default()).await;
    post_price(&app, "BTC", "97000.12", Utc::now()).await;
    fund(
        &app,
        &Owner::Partner(p1),
        AccountKind::Partner,
        Asset::BTC,
        "0.1",
    )
    .await;

    let created = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "POST",
            "/partner/v1/customers",
            &json!({ "email": unique_email("sub"), "country": "DE" }),
        )
        .await,
        201,
    )
    .await;
    let sub = uuid_of(&created["id"]);

    let q = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "POST",
            "/partner/v1/quotes",
            &json!({ "customer_id": sub, "product_id": product, "hashrate": "10", "pay_asset": "BTC" }),
        )
        .await,
        201,
    )
    .await;
    let price = expected_price("10", "15.5", "97000.12", 50, 8);
    assert_eq!(dec_of(&q["price"]), price, "{q}");

    let revenue_before = sales_revenue(&app, Asset::BTC).await;
    let o = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "POST",
            "/partner/v1/orders",
            &json!({ "quote_id": q["id"] }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(dec_of(&o["amount"]), price);
    let contract_id = o["contract_id"].as_str().unwrap().to_owned();

    // The partner paid, not the customer.
    assert_eq!(
        balance(&app, &Owner::Partner(p1), Asset::BTC, AccountKind::Partner).await,
        d("0.1") - price
    );
    assert_eq!(user_balance(&app, sub, Asset::BTC).await, Decimal::ZERO);
    assert_eq!(
        sales_revenue(&app, Asset::BTC).await - revenue_before,
        price
    );
    {
        let mut conn = app.db.conn().await.unwrap();
        let (user, partner): (Uuid, Option<Uuid>) = contracts::table
            .find(uuid_of(&o["contract_id"]))
            .select((contracts::user_id, contracts::partner_id))
            .first(&mut conn)
            .await
            .unwrap();
        assert_eq!((user, partner), (sub, Some(p1)));
    }
    let balances = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "GET",
            "/partner/v1/balances",
            &Value::Null,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(balances["items"][0]["asset"], "BTC", "{balances}");
    assert_eq!(dec_of(&balances["items"][0]["available"]), d("0.1") - price);

    // The partner sees the contract.
    let list = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "GET",
            "/partner/v1/contracts",
            &Value::Null,
        )
        .await,
        200,
    )
    .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], contract_id.as_str());
    assert_eq!(items[0]["state"], "pending");
    assert_eq!(dec_of(&items[0]["paid_amount"]), price);

    // Another partner: cannot quote for the customer, sees no contracts,
    // cannot order with the first partner's quote.
    fund(
        &app,
        &Owner::Partner(p2),
        AccountKind::Partner,
        Asset::BTC,
        "0.1",
    )
    .await;
    let res = signed_json(
        &app,
        &client,
        &k2,
        "POST",
        "/partner/v1/quotes",
        &json!({ "customer_id": sub, "product_id": product, "hashrate": "10", "pay_asset": "BTC" }),
    )
    .await;
    problem(res, 404, "not_found").await;
    let list = json_body(
        signed_json(
            &app,
            &client,
            &k2,
            "GET",
            "/partner/v1/contracts",
            &Value::Null,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(list["items"], json!([]), "{list}");
    let unused = json_body(
        signed_json(
            &app,
            &client,
            &k1,
            "POST",
            "/partner/v1/quotes",
            &json!({ "customer_id": sub, "product_id": product, "hashrate": "10", "pay_asset": "BTC" }),
        )
        .await,
        201,
    )
    .await;
    let res = signed_json(
        &app,
        &client,
        &k2,
        "POST",
        "/partner/v1/orders",
        &json!({ "quote_id": unused["id"] }),
    )
    .await;
    problem(res, 404, "not_found").await;
    assert_eq!(quote_used_at(&app, uuid_of(&unused["id"])).await, None);
    assert_eq!(
        balance(&app, &Owner::Partner(p2), Asset::BTC, AccountKind::Partner).await,
        d("0.1")
    );
    // The first partner's quote was used once: a second order is refused.
    let res = signed_json(
        &app,
        &client,
        &k1,
        "POST",
        "/partner/v1/orders",
        &json!({ "quote_id": q["id"] }),
    )
    .await;
    problem(res, 409, "quote_used").await;
    assert_eq!(contracts_of_user(&app, sub).await, 1);

    assert_reconciled(&app).await;
}

// ---------------------------------------------------------------------------
// Known bugs (see the report); run with `--ignored`.
// ---------------------------------------------------------------------------

/// Known bug: `quotes.price_usd` is `NUMERIC(30, 6)`, but hashrate (6
/// decimals) × price per unit (6 decimals) has up to 12, so PostgreSQL
/// rounds the quoted USD price silently (the debit itself is computed from
/// the exact value); a USD price under 0.0000005 rounds to zero, breaks
/// `CHECK (price_usd > 0)` and the quote answers 500.
#[tokio::test]
async fn the_quoted_usd_price_is_exact() {
    let (app, client) = setup().await;
    let fractional = insert_product(
        &app,
        &Spec {
            min: "0.000001",
            step: "0.000001",
            price: "15.123457",
            pay: &["USDT"],
            ..Spec::default()
        },
    )
    .await;
    let cheap = insert_product(
        &app,
        &Spec {
            min: "0.000001",
            step: "0.000001",
            price: "0.000001",
            pay: &["USDT"],
            ..Spec::default()
        },
    )
    .await;
    post_price(&app, "USDT", "1", Utc::now()).await;
    let (_, _, token) = customer(&app, &client).await;

    let (status, tiny) = call(
        &app,
        &client,
        "POST",
        "/v1/quotes",
        Some(&token),
        Some(&json!({ "product_id": cheap, "hashrate": "0.000001", "pay_asset": "USDT" })),
    )
    .await;
    assert_ne!(status, 500, "a valid hashrate of a valid product: {tiny}");

    let q = quote(&app, &client, &token, fractional, "0.5", "USDT").await;
    // 0.5 × 15.123457 = 7.5617285; shown as 7.561729
    assert_eq!(dec_of(&q["price_usd"]), d("7.5617285"), "{q}");
    assert_eq!(
        dec_of(&q["price"]),
        expected_price("0.5", "15.123457", "1", 50, 6)
    );
}
