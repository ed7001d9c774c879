//! Energy attribute certificates over HTTP: registration by operations
//! (201), each invalid field named (422), overlapping serials (409), the
//! permission checks (support may neither register nor list; a forbidden
//! caller learns nothing about the body), and the list with allocated and
//! remaining MWh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use common::*;
use domain::carbon::certificates;
use domain::identity::roles::Role;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use testkit::catalog::FacilitySpec;

const PATH: &str = "/admin/v1/carbon/certificates";

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn go_block() -> Value {
    json!({
        "scheme": "GO",
        "registry": "AIB hub",
        "serial_start": "643002406000000000000001",
        "serial_end": "643002406000000000001000",
        "mwh": 1000,
        "generator": "Hellisheidi geothermal",
        "technology": "geothermal",
        "country": "IS",
        "production_start": "2026-01-01",
        "production_end": "2026-01-31",
    })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(app.url(PATH))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_registers_a_block_and_the_list_shows_what_remains() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let finance = staff(&app, &client, Role::Finance).await;

    let (status, created) = call(&app, &client, "POST", PATH, Some(&ops), Some(&go_block())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scheme"], "GO");
    assert_eq!(created["serial_start"], "643002406000000000000001");
    // EECS numbers have 24 digits: the last 18 are the number, as strings.
    assert_eq!(created["range_first"], "406000000000000001");
    assert_eq!(created["range_last"], "406000000000001000");
    assert_eq!(created["mwh"], 1000);
    assert_eq!(created["renewable"], true);
    assert_eq!(created["emission_factor_gco2e_per_kwh"], "0");
    assert_eq!(created["allocated_mwh"], "0");
    assert_eq!(created["remaining_mwh"], "1000");
    assert!(created["created_by"].as_str().unwrap().starts_with("user:"));
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();

    // 1 500.5 kWh of an Icelandic facility-day are matched to it.
    let mut conn = app.db.conn().await.unwrap();
    let site = testkit::catalog::facility(
        &mut conn,
        &FacilitySpec {
            country: "IS",
            region: "Reykjanes",
            miner_model: "Antminer S21 XP",
            efficiency: dec("13.5"),
            pue: dec("1.05"),
            total_hashrate: dec("1000"),
        },
    )
    .await
    .unwrap();
    let cov = certificates::allocate_for_day(
        &mut conn,
        site,
        "2026-02-01".parse().unwrap(),
        dec("1500.5"),
    )
    .await
    .unwrap();
    assert_eq!(cov.covered_kwh, dec("1500.5"));

    let (status, list) = call(&app, &client, "GET", PATH, Some(&finance), None).await;
    assert_eq!(status, 200, "{list}");
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.to_string())
        .unwrap()
        .clone();
    assert_eq!(item["allocated_mwh"], "1.5005");
    assert_eq!(item["remaining_mwh"], "998.4995");
    assert!(item.get("serial_prefix").is_none(), "{item}");

    // Filtered by market.
    let (status, other) = call(
        &app,
        &client,
        "GET",
        &format!("{PATH}?country=no"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["items"].as_array().unwrap().len(), 0);
    let res = client
        .get(app.url(&format!("{PATH}?country=XX")))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap();
    validation(res, "country", Some("invalid")).await;

    // A US REC from a gas plant, with its factor.
    let rec = json!({
        "scheme": "REC",
        "registry": "M-RETS",
        "serial_start": "M-RETS-1234-MN-01-2026-1",
        "serial_end": "M-RETS-1234-MN-01-2026-25",
        "mwh": 25,
        "generator": "Cottage Grove",
        "technology": "gas",
        "country": "us",
        "production_start": "2026-01-01",
        "production_end": "2026-01-31",
        "emission_factor_gco2e_per_kwh": "402.5",
    });
    let (status, body) = call(&app, &client, "POST", PATH, Some(&ops), Some(&rec)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["country"], "US");
    assert_eq!(body["renewable"], false);
    assert_eq!(body["emission_factor_gco2e_per_kwh"], "402.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_are_named() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            with(go_block(), "mwh", json!(999)),
            "mwh",
            Some("range_count_mismatch"),
        ),
        (
            with(go_block(), "production_end", json!("2025-12-31")),
            "production_end",
            Some("before_start"),
        ),
        (
            with(go_block(), "production_end", json!("2026-02-30")),
            "production_end",
            None,
        ),
        (
            with(go_block(), "country", json!("ISL")),
            "country",
            Some("invalid"),
        ),
        (
            with(go_block(), "country", json!("US")),
            "country",
            Some("scheme_market_mismatch"),
        ),
        (
            with(
                with(go_block(), "scheme", json!("REC")),
                "country",
                json!("DE"),
            ),
            "country",
            Some("scheme_market_mismatch"),
        ),
        (
            with(
                with(go_block(), "scheme", json!("LGC")),
                "country",
                json!("NZ"),
            ),
            "country",
            Some("scheme_market_mismatch"),
        ),
        (
            with(go_block(), "scheme", json!("EECS")),
            "scheme",
            Some("invalid"),
        ),
        (
            with(go_block(), "technology", json!("fusion")),
            "technology",
            Some("invalid"),
        ),
        (
            with(go_block(), "serial_end", json!("643002406000000000000000")),
            "serial_end",
            Some("before_start"),
        ),
        (
            with(go_block(), "serial_start", json!("GO-START")),
            "serial_start",
            Some("invalid"),
        ),
        (
            with(go_block(), "registry", json!("  ")),
            "registry",
            Some("invalid"),
        ),
        (
            with(go_block(), "emission_factor_gco2e_per_kwh", json!("3")),
            "emission_factor_gco2e_per_kwh",
            Some("must_be_zero"),
        ),
        (
            with(go_block(), "technology", json!("nuclear")),
            "emission_factor_gco2e_per_kwh",
            Some("required"),
        ),
    ];
    for (body, field, code) in cases {
        let res = post(&app, &client, &ops, &body).await;
        validation(res, field, code).await;
    }
    let mut missing = go_block();
    missing.as_object_mut().unwrap().remove("mwh");
    validation(post(&app, &client, &ops, &missing).await, "mwh", None).await;
    // Nothing was registered.
    let admin = staff(&app, &client, Role::Superadmin).await;
    let (status, list) = call(&app, &client, "GET", PATH, Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_serials_are_409() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let ops = staff(&app, &client, Role::Operations).await;
    let (status, first) = call(&app, &client, "POST", PATH, Some(&ops), Some(&go_block())).await;
    assert_eq!(status, 201, "{first}");
    // The same block again, and one sharing its last certificate (registry
    // written differently).
    let tail = json!({
        "scheme": "GO",
        "registry": "aib-HUB",
        "serial_start": "643002406000000000001000",
        "serial_end": "643002406000000000001009",
        "mwh": 10,
        "generator": "Hellisheidi geothermal",
        "technology": "geothermal",
        "country": "IS",
        "production_start": "2026-01-01",
        "production_end": "2026-01-31",
    });
    for body in [go_block(), tail.clone()] {
        let body = problem(
            post(&app, &client, &ops, &body).await,
            409,
            "certificate_overlap",
        )
        .await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(first["id"].as_str().unwrap()),
            "{body}"
        );
    }
    // The next block is fine.
    let next = with(
        with(tail, "serial_start", json!("643002406000000000001001")),
        "mwh",
        json!(9),
    );
    let (status, body) = call(&app, &client, "POST", PATH, Some(&ops), Some(&next)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_may_neither_register_nor_list() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let support = staff(&app, &client, Role::Support).await;
    let finance = staff(&app, &client, Role::Finance).await;
    // Forbidden before the body is looked at: a valid, an invalid and a
    // non-JSON body all answer 403.
    for token in [&support, &finance] {
        problem(
            post(&app, &client, token, &go_block()).await,
            403,
            "forbidden",
        )
        .await;
        problem(
            post(&app, &client, token, &with(go_block(), "mwh", json!(1))).await,
            403,
            "forbidden",
        )
        .await;
        let res = client
            .post(app.url(PATH))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        problem(res, 403, "forbidden").await;
    }
    let res = client
        .get(app.url(PATH))
        .bearer_auth(&support)
        .send()
        .await
        .unwrap();
    problem(res, 403, "forbidden").await;
    let res = client.get(app.url(PATH)).send().await.unwrap();
    problem(res, 401, "unauthorized").await;
    let (_, _, customer) = customer(&app, &client).await;
    let (status, body) = call(&app, &client, "GET", PATH, Some(&customer), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
}
