//! Catalog management over real HTTP: operations staff build a facility,
//! pool and product and put it on sale; support staff may read but not
//! write; invalid bodies are 422 naming the field (decimals must be
//! strings); invalid state transitions are refused; every write is in the
//! audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use common::{TRUST_PROXY, TestApp, call, client_from, random_ip, spawn_app_with, staff};
use domain::identity::roles::Role;
use serde_json::{Value, json};
use uuid::Uuid;

async fn app() -> TestApp {
    spawn_app_with(|_| {}, TRUST_PROXY).await
}

/// Asserts a problem with `status` and `code`; answers its body.
#[track_caller]
fn assert_problem(got: &(u16, Value), status: u16, code: &str) -> Value {
    let (s, body) = got;
    assert_eq!(*s, status, "status; body: {body}");
    assert_eq!(body["code"], code, "code; body: {body}");
    assert_eq!(
        body["type"],
        format!("/problems/{code}"),
        "type; body: {body}"
    );
    body.clone()
}

/// Asserts a 422 whose first invalid field is `field` (with `code` when given).
#[track_caller]
fn assert_field(got: &(u16, Value), field: &str, code: Option<&str>) {
    let body = assert_problem(got, 422, "validation_failed");
    assert_eq!(body["errors"][0]["field"], field, "field; body: {body}");
    if let Some(code) = code {
        assert_eq!(body["errors"][0]["code"], code, "field code; body: {body}");
    }
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message; body: {body}"
    );
}

fn facility_body(name: &str) -> Value {
    json!({
        "name": name,
        "country": "IS",
        "region": "Reykjanes",
        "miner_model": "Antminer S21",
        "efficiency": "17.5",
        "efficiency_unit": "J/TH",
        "pue": "1.08",
        "total_hashrate": "50000",
        "sellable_hashrate": "40000",
        "algorithm": "sha256",
    })
}

fn product_body(pool_id: &str, facility_id: &str) -> Value {
    json!({
        "name": "Bitcoin 365",
        "algorithm": "sha256",
        "mined_coins": ["BTC"],
        "pool_id": pool_id,
        "facility_id": facility_id,
        "hashrate_min": "10",
        "hashrate_max": "1000",
        "hashrate_step": "5",
        "price_usd_per_unit": "12.5",
        "duration_days": 365,
        "fee_usd_per_unit_day": "0.045",
        "pay_assets": ["BTC", "USDT"],
        "payout_assets": ["BTC"],
        "spread_bps": 50,
        "stop_rule": "pause_extend",
        "stop_after_days": 3,
        "inventory": "5000",
    })
}

/// `body` with `key` set to `value`.
fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// The ids of a catalog built by `token`: an algorithm, a facility, a pool.
struct Catalog {
    facility_id: String,
    pool_id: String,
}

async fn build_catalog(app: &TestApp, client: &reqwest::Client, token: &str) -> Catalog {
    let (status, body) = call(
        app,
        client,
        "POST",
        "/admin/v1/algorithms",
        Some(token),
        Some(&json!({ "code": "sha256", "name": "SHA-256", "hashrate_unit": "TH/s" })),
    )
    .await;
    assert_eq!(status, 201, "algorithm: {body}");
    let (status, facility) = call(
        app,
        client,
        "POST",
        "/admin/v1/facilities",
        Some(token),
        Some(&facility_body("Keflavik 1")),
    )
    .await;
    assert_eq!(status, 201, "facility: {facility}");
    assert_eq!(facility["pue"], "1.08");
    assert_eq!(facility["sellable_hashrate"], "40000");
    let facility_id = facility["id"].as_str().unwrap().to_owned();
    let (status, pool) = call(
        app,
        client,
        "POST",
        "/admin/v1/pools",
        Some(token),
        Some(&json!({
            "name": "BTC main",
            "algorithm": "sha256",
            "coins": ["BTC"],
            "facility_id": facility_id,
        })),
    )
    .await;
    assert_eq!(status, 201, "pool: {pool}");
    assert_eq!(pool["coins"], json!(["BTC"]));
    Catalog {
        facility_id,
        pool_id: pool["id"].as_str().unwrap().to_owned(),
    }
}

async fn audit_entries(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    target: &str,
) -> Vec<Value> {
    let (status, body) = call(
        app,
        client,
        "GET",
        &format!("/admin/v1/audit-log?target={target}&limit=200"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "audit log: {body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn operations_build_a_product_and_put_it_on_sale_with_an_audit_trail() {
    let app = app().await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let superadmin = staff(&app, &client, Role::Superadmin).await;
    let catalog = build_catalog(&app, &client, &ops).await;

    let (status, product) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/products",
        Some(&ops),
        Some(&product_body(&catalog.pool_id, &catalog.facility_id)),
    )
    .await;
    assert_eq!(status, 201, "product: {product}");
    assert_eq!(product["state"], "draft");
    assert_eq!(product["version"], 1);
    assert_eq!(product["hashrate_unit"], "TH/s");
    assert_eq!(product["price_usd_per_unit"], "12.5");
    assert_eq!(product["sold"], "0");
    let id = product["id"].as_str().unwrap().to_owned();

    let (status, product) = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/products/{id}/state"),
        Some(&ops),
        Some(&json!({ "state": "on_sale" })),
    )
    .await;
    assert_eq!(status, 200, "on sale: {product}");
    assert_eq!(product["state"], "on_sale");

    let (status, product) = call(
        &app,
        &client,
        "PATCH",
        &format!("/admin/v1/products/{id}"),
        Some(&ops),
        Some(&json!({ "price_usd_per_unit": "13.25", "inventory": "6000" })),
    )
    .await;
    assert_eq!(status, 200, "patch: {product}");
    assert_eq!(product["version"], 2);
    assert_eq!(product["price_usd_per_unit"], "13.25");
    assert_eq!(product["inventory"], "6000");
    assert_eq!(product["name"], "Bitcoin 365");
    assert_eq!(product["state"], "on_sale");

    let (status, got) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/products/{id}"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, product);
    for (query, n) in [("", 1), ("?state=on_sale", 1), ("?state=draft", 0)] {
        let (status, list) = call(
            &app,
            &client,
            "GET",
            &format!("/admin/v1/products{query}"),
            Some(&ops),
            None,
        )
        .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            n,
            "{query}: {list}"
        );
    }
    let (status, facility) = call(
        &app,
        &client,
        "PATCH",
        &format!("/admin/v1/facilities/{}", catalog.facility_id),
        Some(&ops),
        Some(&json!({ "pue": "1.1" })),
    )
    .await;
    assert_eq!(status, 200, "{facility}");
    assert_eq!(facility["pue"], "1.1");
    let (status, got) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/facilities/{}", catalog.facility_id),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!((status, &got), (200, &facility));
    for path in [
        "/admin/v1/algorithms",
        "/admin/v1/facilities",
        "/admin/v1/pools",
    ] {
        let (status, list) = call(&app, &client, "GET", path, Some(&ops), None).await;
        assert_eq!(status, 200, "{path}: {list}");
        assert_eq!(list["items"].as_array().unwrap().len(), 1, "{path}: {list}");
    }

    // The audit log has each write, newest first, with who did it.
    let entries = audit_entries(&app, &client, &superadmin, &format!("product:{id}")).await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "admin.product.update",
            "admin.product.state",
            "admin.product.create"
        ]
    );
    let update = &entries[0];
    assert_eq!(update["before"]["price_usd_per_unit"], "12.5");
    assert_eq!(update["after"]["price_usd_per_unit"], "13.25");
    assert_eq!(update["before"]["version"], 1);
    assert_eq!(update["after"]["version"], 2);
    assert_eq!(entries[1]["before"], json!({ "state": "draft" }));
    assert_eq!(entries[1]["after"], json!({ "state": "on_sale" }));
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == entries[0]["actor"] && e["actor"] != "system"),
        "{entries:?}"
    );
    let facility_entries = audit_entries(
        &app,
        &client,
        &superadmin,
        &format!("facility:{}", catalog.facility_id),
    )
    .await;
    let actions: Vec<&str> = facility_entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["admin.facility.update", "admin.facility.create"]);
    assert_eq!(facility_entries[0]["before"]["pue"], "1.08");
    assert_eq!(facility_entries[0]["after"]["pue"], "1.1");
    let pool_entries = audit_entries(
        &app,
        &client,
        &superadmin,
        &format!("pool:{}", catalog.pool_id),
    )
    .await;
    assert_eq!(pool_entries[0]["action"], "admin.pool.create");
    let algorithm_entries = audit_entries(&app, &client, &superadmin, "algorithm:sha256").await;
    assert_eq!(algorithm_entries[0]["action"], "admin.algorithm.create");
}

#[tokio::test]
async fn support_reads_the_catalog_but_cannot_change_it() {
    let app = app().await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let support = staff(&app, &client, Role::Support).await;
    let catalog = build_catalog(&app, &client, &ops).await;
    let (status, product) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/products",
        Some(&ops),
        Some(&product_body(&catalog.pool_id, &catalog.facility_id)),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let id = product["id"].as_str().unwrap();

    let writes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/admin/v1/algorithms".into(),
            json!({ "code": "scrypt", "name": "Scrypt", "hashrate_unit": "MH/s" }),
        ),
        (
            "POST",
            "/admin/v1/facilities".into(),
            facility_body("Boden 1"),
        ),
        (
            "PATCH",
            format!("/admin/v1/facilities/{}", catalog.facility_id),
            json!({ "pue": "1.2" }),
        ),
        (
            "POST",
            "/admin/v1/pools".into(),
            json!({ "name": "Other", "algorithm": "sha256", "coins": ["BTC"], "facility_id": catalog.facility_id }),
        ),
        (
            "POST",
            "/admin/v1/products".into(),
            product_body(&catalog.pool_id, &catalog.facility_id),
        ),
        (
            "PATCH",
            format!("/admin/v1/products/{id}"),
            json!({ "price_usd_per_unit": "1" }),
        ),
        (
            "POST",
            format!("/admin/v1/products/{id}/state"),
            json!({ "state": "on_sale" }),
        ),
    ];
    for (method, path, body) in &writes {
        let got = call(&app, &client, method, path, Some(&support), Some(body)).await;
        assert_problem(&got, 403, "forbidden");
    }
    for path in [
        "/admin/v1/algorithms".to_owned(),
        "/admin/v1/facilities".to_owned(),
        format!("/admin/v1/facilities/{}", catalog.facility_id),
        "/admin/v1/pools".to_owned(),
        "/admin/v1/products".to_owned(),
        format!("/admin/v1/products/{id}"),
    ] {
        let (status, body) = call(&app, &client, "GET", &path, Some(&support), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Nothing changed.
    let (_, got) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/products/{id}"),
        Some(&support),
        None,
    )
    .await;
    assert_eq!(got, product);
}

#[tokio::test]
async fn invalid_bodies_are_422_naming_the_field() {
    let app = app().await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let catalog = build_catalog(&app, &client, &ops).await;

    let facility_cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            with(facility_body("F"), "pue", json!("0.5")),
            "pue",
            Some("out_of_range"),
        ),
        (
            with(facility_body("F"), "pue", json!(1.5)),
            "pue",
            Some("invalid"),
        ),
        (
            with(facility_body("F"), "country", json!("XX")),
            "country",
            Some("invalid"),
        ),
        (
            with(facility_body("F"), "efficiency", json!("0")),
            "efficiency",
            Some("not_positive"),
        ),
        (
            with(facility_body("F"), "efficiency", json!("1e3")),
            "efficiency",
            Some("invalid"),
        ),
        (
            with(facility_body("F"), "efficiency_unit", json!("J/PH")),
            "efficiency_unit",
            Some("invalid"),
        ),
        (
            with(facility_body("F"), "sellable_hashrate", json!("60000")),
            "sellable_hashrate",
            Some("exceeds_total"),
        ),
        (
            with(facility_body("F"), "colour", json!("blue")),
            "colour",
            None,
        ),
    ];
    for (body, field, code) in &facility_cases {
        let got = call(
            &app,
            &client,
            "POST",
            "/admin/v1/facilities",
            Some(&ops),
            Some(body),
        )
        .await;
        assert_field(&got, field, *code);
    }
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/facilities",
        Some(&ops),
        Some(&json!({ "name": "F" })),
    )
    .await;
    assert_field(&got, "country", Some("required"));

    let product = product_body(&catalog.pool_id, &catalog.facility_id);
    let product_cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            with(product.clone(), "price_usd_per_unit", json!(10.5)),
            "price_usd_per_unit",
            Some("invalid"),
        ),
        (
            with(product.clone(), "inventory", json!(100)),
            "inventory",
            Some("invalid"),
        ),
        (
            with(product.clone(), "pay_assets", json!(["BTC", "XYZ"])),
            "pay_assets[1]",
            Some("unknown_asset"),
        ),
        (
            with(product.clone(), "payout_assets", json!([])),
            "payout_assets",
            Some("required"),
        ),
        (
            with(product.clone(), "price_usd_per_unit", json!("0")),
            "price_usd_per_unit",
            Some("not_positive"),
        ),
        (
            with(product.clone(), "hashrate_min", json!("12")),
            "hashrate_min",
            Some("not_a_step"),
        ),
        (
            with(product.clone(), "duration_days", json!(4000)),
            "duration_days",
            Some("out_of_range"),
        ),
        (
            with(product.clone(), "stop_rule", json!("never")),
            "stop_rule",
            Some("invalid"),
        ),
        (
            with(product.clone(), "inventory", json!("40001")),
            "inventory",
            Some("exceeds_sellable"),
        ),
        (
            with(product.clone(), "mined_coins", json!(["LTC"])),
            "mined_coins[0]",
            Some("not_mined_by_pool"),
        ),
        (
            with(product.clone(), "pool_id", json!(Uuid::now_v7())),
            "pool_id",
            Some("unknown"),
        ),
        (
            with(product.clone(), "hashrate_unit", json!("GH/s")),
            "hashrate_unit",
            Some("unit_mismatch"),
        ),
    ];
    for (body, field, code) in &product_cases {
        let got = call(
            &app,
            &client,
            "POST",
            "/admin/v1/products",
            Some(&ops),
            Some(body),
        )
        .await;
        assert_field(&got, field, *code);
    }

    // The same rules on a PATCH, and no stray fields.
    let (status, created) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/products",
        Some(&ops),
        Some(&product),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/admin/v1/products/{}", created["id"].as_str().unwrap());
    for (body, field, code) in [
        (
            json!({ "price_usd_per_unit": 10.5 }),
            "price_usd_per_unit",
            Some("invalid"),
        ),
        (
            json!({ "pay_assets": ["USDT", "DOGE", "FOO"] }),
            "pay_assets[2]",
            Some("unknown_asset"),
        ),
        (
            json!({ "spread_bps": 2000 }),
            "spread_bps",
            Some("out_of_range"),
        ),
        (json!({ "sold": "0" }), "sold", None),
    ] {
        let got = call(&app, &client, "PATCH", &path, Some(&ops), Some(&body)).await;
        assert_field(&got, field, code);
    }
    let (_, after) = call(&app, &client, "GET", &path, Some(&ops), None).await;
    assert_eq!(after, created, "a refused patch changed the product");
}

#[tokio::test]
async fn invalid_transitions_unknown_ids_and_duplicates_are_refused() {
    let app = app().await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let catalog = build_catalog(&app, &client, &ops).await;
    let (status, product) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/products",
        Some(&ops),
        Some(&product_body(&catalog.pool_id, &catalog.facility_id)),
    )
    .await;
    assert_eq!(status, 201, "{product}");
    let state_path = format!(
        "/admin/v1/products/{}/state",
        product["id"].as_str().unwrap()
    );

    let set = async |state: &str| {
        call(
            &app,
            &client,
            "POST",
            &state_path,
            Some(&ops),
            Some(&json!({ "state": state })),
        )
        .await
    };
    assert_problem(&set("paused").await, 409, "invalid_transition");
    assert_field(&set("live").await, "state", Some("invalid"));
    assert_eq!(set("on_sale").await.0, 200);
    assert_problem(&set("on_sale").await, 409, "invalid_transition");
    assert_eq!(set("retired").await.0, 200);
    let got = assert_problem(&set("on_sale").await, 409, "invalid_transition");
    assert!(got["detail"].as_str().unwrap().contains("retired"), "{got}");

    let nobody = Uuid::now_v7();
    for (method, path, body) in [
        ("GET", format!("/admin/v1/products/{nobody}"), None),
        (
            "PATCH",
            format!("/admin/v1/products/{nobody}"),
            Some(json!({ "name": "x" })),
        ),
        (
            "POST",
            format!("/admin/v1/products/{nobody}/state"),
            Some(json!({ "state": "on_sale" })),
        ),
        ("GET", format!("/admin/v1/facilities/{nobody}"), None),
        (
            "PATCH",
            format!("/admin/v1/facilities/{nobody}"),
            Some(json!({ "pue": "1.2" })),
        ),
        ("GET", "/admin/v1/products/not-a-uuid".to_owned(), None),
    ] {
        let got = call(&app, &client, method, &path, Some(&ops), body.as_ref()).await;
        assert_problem(&got, 404, "not_found");
    }

    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/facilities",
        Some(&ops),
        Some(&facility_body("Keflavik 1")),
    )
    .await;
    assert_problem(&got, 409, "facility_exists");
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/algorithms",
        Some(&ops),
        Some(&json!({ "code": "sha256", "name": "again", "hashrate_unit": "TH/s" })),
    )
    .await;
    assert_problem(&got, 409, "algorithm_exists");
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/pools",
        Some(&ops),
        Some(&json!({
            "name": "BTC main",
            "algorithm": "sha256",
            "coins": ["BTC"],
            "facility_id": catalog.facility_id,
        })),
    )
    .await;
    assert_problem(&got, 409, "pool_exists");
}
