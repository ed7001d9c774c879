//! Carbon credits over HTTP: registering Verra and Gold Standard blocks,
//! the 422s that name the serial, the 409 for an overlapping block, who may
//! write and read, and retirements (with their idempotent repeat) listed
//! back with what stays available.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use common::*;
use domain::identity::roles::Role;
use serde_json::{Value, json};
use uuid::Uuid;

const VERRA: &str = "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0";
const GOLD: &str = "GS1-1-KE-GS11603-16-2025-30256-110-5463";

async fn app() -> TestApp {
    spawn_app_with(|_| {}, TRUST_PROXY).await
}

/// Asserts a 422 whose first error names `field` with `code`.
fn assert_field(got: &(u16, Value), field: &str, code: &str) {
    let (status, body) = got;
    assert_eq!(*status, 422, "status; body: {body}");
    assert_eq!(body["code"], "validation_failed", "body: {body}");
    assert_eq!(body["errors"][0]["field"], field, "field; body: {body}");
    assert_eq!(body["errors"][0]["code"], code, "field code; body: {body}");
}

async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    call(app, client, "POST", path, Some(token), Some(&body)).await
}

async fn get(app: &TestApp, client: &reqwest::Client, token: &str, path: &str) -> (u16, Value) {
    call(app, client, "GET", path, Some(token), None).await
}

#[tokio::test]
async fn admin_registers_verra_and_gold_standard_blocks_and_lists_them() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;

    let (status, verra) = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/credits",
        json!({
            "registry": "verra",
            "serial": VERRA,
            "kind": "avoidance",
            "project_name": "Landfill gas",
            "vintage": 2022,
            "project": "VCS3005",
            "units": 28571,
        }),
    )
    .await;
    assert_eq!(status, 201, "{verra}");
    assert_eq!(verra["serial"], VERRA);
    assert_eq!(verra["block_start"], 941_412_555);
    assert_eq!(verra["block_end"], 941_441_125);
    assert_eq!(verra["units"], 28_571);
    assert_eq!(verra["available"], 28_571);
    assert_eq!(verra["project"], "3005");
    assert_eq!(verra["country"], "CN");
    assert_eq!(verra["vintage_start"], "2022-01-01");
    assert_eq!(verra["vintage_end"], "2022-10-31");
    assert_eq!(verra["kind"], "avoidance");
    assert_eq!(verra["project_name"], "Landfill gas");

    let (status, gold) = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/credits",
        json!({ "registry": "gold_standard", "serial": GOLD, "kind": "removal" }),
    )
    .await;
    assert_eq!(status, 201, "{gold}");
    assert_eq!(gold["units"], 5354);
    assert_eq!(gold["project"], "GS11603");
    assert_eq!(gold["vintage_start"], "2025-01-01");
    assert_eq!(gold["vintage_end"], "2025-12-31");
    assert_eq!(gold["number_space"], "gold_standard:GS11603:2025:30256");

    let (status, list) = get(&app, &client, &admin, "/admin/v1/carbon/credits").await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    // Oldest vintage first.
    assert_eq!(items[0]["serial"], VERRA);
    assert_eq!(items[0]["retired"], 0);
    assert_eq!(items[1]["available"], 5354);
}

#[tokio::test]
async fn bad_serials_are_422_naming_the_field() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;
    let path = "/admin/v1/carbon/credits";
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "registry": "verra", "serial": "19381-941412555", "kind": "removal" }),
            "serial",
            "malformed",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA.replace("941412555-941441125", "941441125-941412555"), "kind": "removal" }),
            "serial",
            "bad_range",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA.replace("01012022", "31022022"), "kind": "removal" }),
            "serial",
            "bad_date",
        ),
        (
            json!({ "registry": "verra", "serial": GOLD, "kind": "removal" }),
            "serial",
            "registry_mismatch",
        ),
        (
            json!({ "registry": "apx", "serial": GOLD, "kind": "removal" }),
            "registry",
            "unknown_registry",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA, "kind": "offset" }),
            "kind",
            "unknown_kind",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA, "kind": "removal", "units": 28570 }),
            "units",
            "serial_mismatch",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA, "kind": "removal", "vintage": 2023 }),
            "vintage",
            "serial_mismatch",
        ),
        (
            json!({ "registry": "verra", "serial": VERRA, "kind": "removal", "project": "1310" }),
            "project",
            "serial_mismatch",
        ),
    ];
    for (body, field, code) in cases {
        let got = post(&app, &client, &admin, path, body.clone()).await;
        assert_field(&got, field, code);
    }
    // Nothing was stored.
    let (_, list) = get(&app, &client, &admin, path).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_overlapping_block_is_409_naming_the_credit() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;
    let path = "/admin/v1/carbon/credits";
    let (status, first) = post(
        &app,
        &client,
        &admin,
        path,
        json!({ "registry": "verra", "serial": VERRA, "kind": "avoidance" }),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    // Another batch and project, sharing units 941441000..941441125.
    let other = "20000-941441000-941450000-VCS-VCU-263-VER-KH-14-1748-01012019-31122019-1";
    for serial in [VERRA, other] {
        let (status, body) = post(
            &app,
            &client,
            &admin,
            path,
            json!({ "registry": "verra", "serial": serial, "kind": "avoidance" }),
        )
        .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "credit_overlap");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains(first["id"].as_str().unwrap()) && detail.contains(VERRA),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn only_carbon_writers_write_and_carbon_readers_read() {
    let app = app().await;
    let client = client_from(&random_ip());
    let support = staff(&app, &client, Role::Support).await;
    let finance = staff(&app, &client, Role::Finance).await;
    let operations = staff(&app, &client, Role::Operations).await;
    let credit = json!({ "registry": "verra", "serial": VERRA, "kind": "avoidance" });
    let retire = json!({
        "beneficiary_user_id": Uuid::now_v7(),
        "tonnes": 1,
        "period_from": "2026-01-01",
        "period_to": "2026-01-31",
        "reason": "test",
    });
    for token in [&support, &finance] {
        for (path, body) in [
            ("/admin/v1/carbon/credits", &credit),
            ("/admin/v1/carbon/retirements", &retire),
        ] {
            let (status, body) = post(&app, &client, token, path, body.clone()).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_eq!(body["code"], "forbidden");
        }
    }
    for path in ["/admin/v1/carbon/credits", "/admin/v1/carbon/retirements"] {
        let (status, _) = get(&app, &client, &support, path).await;
        assert_eq!(status, 403, "support reads {path}");
        let (status, _) = get(&app, &client, &finance, path).await;
        assert_eq!(status, 200, "finance reads {path}");
    }
    // Operations registers blocks (carbon_write) and reads them (carbon_read).
    let (status, body) = post(
        &app,
        &client,
        &operations,
        "/admin/v1/carbon/credits",
        credit.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = get(&app, &client, &operations, "/admin/v1/carbon/credits").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_retirement_via_the_api_is_listed_and_repeats_do_nothing() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;
    let customer = insert_user(&app, &unique_email("carbon"), None).await;
    let older = "500-1000-1009-VCS-VCU-1310-VER-CN-13-3005-01012021-31122021-0";
    let newer = "501-2000-2099-VCS-VCU-1310-VER-CN-13-3005-01012022-31122022-0";
    for serial in [newer, older] {
        let (status, body) = post(
            &app,
            &client,
            &admin,
            "/admin/v1/carbon/credits",
            json!({ "registry": "verra", "serial": serial, "kind": "removal" }),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let retire = json!({
        "beneficiary_user_id": customer,
        "tonnes": 14,
        "period_from": "2026-01-01",
        "period_to": "2026-01-31",
        "reason": "January emissions (Scope 3 of the customer)",
    });
    let (status, got) = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements",
        retire.clone(),
    )
    .await;
    assert_eq!(status, 201, "{got}");
    assert_eq!(got["retired"], 14);
    assert_eq!(got["newly_retired"], 14);
    assert_eq!(got["shortfall"], 0);
    assert_eq!(
        got["beneficiary_name"],
        format!("Hashgrid customer {customer}")
    );
    let ranges: Vec<(String, i64, i64)> = got["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap().to_owned(),
                r["unit_start"].as_i64().unwrap(),
                r["unit_end"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranges,
        vec![
            (older.to_owned(), 1000, 1009),
            (newer.to_owned(), 2000, 2003)
        ]
    );

    // The same request again: nothing new.
    let (status, again) = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements",
        retire.clone(),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["newly_retired"], 0);
    assert_eq!(again["retired"], 14);
    assert_eq!(again["demand_id"], got["demand_id"]);

    // More than there is: what there is, and the shortfall.
    let (status, short) = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements",
        json!({
            "beneficiary_user_id": customer,
            "tonnes": 100,
            "period_from": "2026-02-01",
            "period_to": "2026-02-28",
            "reason": "February emissions",
        }),
    )
    .await;
    assert_eq!(status, 201, "{short}");
    assert_eq!(
        (short["retired"].as_i64(), short["shortfall"].as_i64()),
        (Some(96), Some(4))
    );

    let (status, jan) = get(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements?from=2026-01-01&to=2026-01-31",
    )
    .await;
    assert_eq!(status, 200, "{jan}");
    let items = jan["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|r| r["beneficiary_user_id"] == json!(customer))
    );
    assert_eq!(items[0]["kind"], "removal");
    let (_, all) = get(&app, &client, &admin, "/admin/v1/carbon/retirements").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);

    let (_, credits) = get(&app, &client, &admin, "/admin/v1/carbon/credits").await;
    let available: Vec<i64> = credits["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["available"].as_i64().unwrap())
        .collect();
    assert_eq!(available, vec![0, 0]);

    // Checks.
    let got = post(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements",
        json!({
            "beneficiary_user_id": Uuid::now_v7(),
            "tonnes": 1,
            "period_from": "2026-01-01",
            "period_to": "2026-01-31",
            "reason": "x",
        }),
    )
    .await;
    assert_field(&got, "beneficiary_user_id", "unknown_user");
    let mut zero = retire.clone();
    zero["tonnes"] = json!(0);
    assert_field(
        &post(&app, &client, &admin, "/admin/v1/carbon/retirements", zero).await,
        "tonnes",
        "invalid",
    );
    let mut backwards = retire.clone();
    backwards["period_to"] = json!("2025-12-31");
    assert_field(
        &post(
            &app,
            &client,
            &admin,
            "/admin/v1/carbon/retirements",
            backwards,
        )
        .await,
        "period_to",
        "invalid",
    );
    let got = get(
        &app,
        &client,
        &admin,
        "/admin/v1/carbon/retirements?from=2026-02-01&to=2026-01-01",
    )
    .await;
    assert_field(&got, "to", "invalid");
}
