//! Carbon over HTTP: the back office adds a factor version, sets a
//! facility's profile, imports its meter and runs a day; the customer reads
//! the statement (JSON and CSV) and a contract's carbon; the report shows
//! the facility-month, net-zero progress and a clean conservation check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use chrono::{TimeDelta, Utc};
use common::*;
use domain::identity::roles::Role;
use rust_decimal::Decimal;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}
use serde_json::json;
use testkit::catalog::{self, FacilitySpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_is_computed_and_read_by_the_customer_and_the_back_office() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let (user, _, token) = customer(&app, &client).await;
    let (_, _, other) = customer(&app, &client).await;
    let ops = staff(&app, &client, Role::Superadmin).await;
    let support = staff(&app, &client, Role::Support).await;
    let finance = staff(&app, &client, Role::Finance).await;
    let day = Utc::now().date_naive() - TimeDelta::days(2);
    let (facility, contract) = {
        let mut conn = app.db.conn().await.unwrap();
        let f = catalog::facility(
            &mut conn,
            &FacilitySpec {
                country: "US",
                region: "Texas",
                miner_model: "Antminer S21 XP",
                efficiency: dec("13.5"),
                pue: dec("1.05"),
                total_hashrate: dec("1000"),
            },
        )
        .await
        .unwrap();
        let p = catalog::product(&mut conn, f).await.unwrap();
        let start = (day - TimeDelta::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let c = catalog::contract(
            &mut conn,
            user,
            p,
            dec("100"),
            start,
            start + TimeDelta::days(30),
        )
        .await
        .unwrap();
        (f, c)
    };

    // Factor versions: added, never overwritten, validated.
    let new = json!({"region": "Test-Grid", "basis": "location", "gco2e_per_kwh": "400",
                     "source": "test", "year": 2026, "valid_from": "2020-01-01"});
    let (status, body) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/carbon/factors",
        Some(&ops),
        Some(&new),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/carbon/factors",
        Some(&ops),
        Some(&new),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("factor_version_exists"))
    );
    let mut bad = new.clone();
    bad["gco2e_per_kwh"] = json!("-1");
    let res = client
        .post(app.url("/admin/v1/carbon/factors"))
        .bearer_auth(&ops)
        .json(&bad)
        .send()
        .await
        .unwrap();
    validation(res, "gco2e_per_kwh", Some("invalid")).await;
    let (status, _) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/carbon/factors",
        Some(&support),
        Some(&new),
    )
    .await;
    assert_eq!(status, 403);
    let (status, list) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/carbon/factors?region=USA-Texas-ERCOT",
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["items"][0]["gco2e_per_kwh"], "383.55");

    // The facility: ERCOT grid, no renewable contract; metered.
    let profile = format!("/admin/v1/carbon/facilities/{facility}");
    let res = client
        .put(app.url(&profile))
        .bearer_auth(&ops)
        .json(&json!({"grid_region": "Atlantis", "renewable_share_pct": "0"}))
        .send()
        .await
        .unwrap();
    validation(res, "grid_region", Some("invalid")).await;
    let (status, body) = call(
        &app,
        &client,
        "PUT",
        &profile,
        Some(&ops),
        Some(&json!({"grid_region": "USA-Texas-ERCOT", "renewable_share_pct": "0"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let readings = format!("/admin/v1/carbon/facilities/{facility}/meter-readings");
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &readings,
        Some(&ops),
        Some(&json!({"source": "bill", "readings": [{"day": day, "kwh": "340.2"}]})),
    )
    .await;
    assert_eq!(
        (status, body["imported"].as_u64()),
        (201, Some(1)),
        "{body}"
    );
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/carbon/days/{day}/run"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(
        (status, body["contract_days"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &readings,
        Some(&ops),
        Some(&json!({"source": "late", "readings": [{"day": day, "kwh": "1"}]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("day_already_computed"))
    );

    // The customer: 100 of the facility's 1000 TH/s → a tenth of the meter.
    let (status, s) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/carbon/statement?from={day}&to={day}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["energy_kwh"], "34.02");
    assert_eq!(s["metered_share_pct"], "100");
    assert_eq!(s["location_based_kgco2e"], "13.048371");
    assert_eq!(s["market_based_kgco2e"], "13.048371");
    assert_eq!(s["claim"]["claim"], "none");
    let res = client
        .get(app.url(&format!(
            "/v1/carbon/statement?from={day}&to={day}&format=csv"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "content-type"), "text/csv; charset=utf-8");
    let csv = res.text().await.unwrap();
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains(",34.02,metered,0,13.048371,13.048371,"),
        "{csv}"
    );
    let (status, c) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract}/carbon"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            c["energy_kwh"].as_str(),
            c["days"].as_array().unwrap().len()
        ),
        (200, Some("34.02"), 1),
        "{c}"
    );
    let (status, _) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract}/carbon"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, s) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/carbon/statement?from={day}&to={day}"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!((status, s["energy_kwh"].as_str()), (200, Some("0")));
    let res = client
        .get(app.url(&format!("/v1/carbon/statement?from={day}&to=2020-01-01")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    validation(res, "to", Some("invalid_range")).await;
    let (status, _) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/carbon/statement?from={day}&to={day}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);

    // The back office report: the facility-month, and nothing counted twice.
    use chrono::Datelike;
    let (status, r) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/carbon/report?year={}", day.year()),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["conservation"], json!([]));
    let row = r["facilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["facility_id"] == json!(facility))
        .unwrap();
    assert_eq!(row["metered_kwh"], "34.02");
    assert_eq!(r["net_zero"]["target_year"], 2030);
}
