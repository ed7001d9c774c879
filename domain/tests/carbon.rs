//! The daily carbon computation on a real database: the worked example
//! (100 TH/s on an S21 XP at 13.5 J/TH, PUE 1.05, one day = 34.02 kWh) in
//! Texas (ERCOT) and Bhutan with the reference factors; metered facilities
//! whose contract shares add up exactly to the meter; factor versions by
//! day; exactly once per (contract, day) however often it runs; and the
//! customer's statement with its claim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{NaiveDate, TimeDelta};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::carbon::factors::{self, Basis, NewFactor};
use domain::carbon::{daily, meter, statement};
use domain::schema::{carbon_days as cd, carbon_facility_days as cfd};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use testkit::catalog::{self, FacilitySpec};
use testkit::custody::customer;
use uuid::Uuid;

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn s21xp(region: &'static str, country: &'static str) -> FacilitySpec {
    FacilitySpec {
        country,
        region,
        miner_model: "Antminer S21 XP",
        efficiency: dec!(13.5),
        pue: dec!(1.05),
        total_hashrate: dec!(1000),
    }
}

/// A contract of `th` TH/s running all of `d` (and the days around it).
async fn running(
    conn: &mut diesel_async::AsyncPgConnection,
    user: Uuid,
    product: Uuid,
    th: Decimal,
    d: NaiveDate,
) -> Uuid {
    let start = (d - TimeDelta::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    catalog::contract(conn, user, product, th, start, start + TimeDelta::days(30))
        .await
        .unwrap()
}

async fn row(
    conn: &mut diesel_async::AsyncPgConnection,
    contract: Uuid,
    d: NaiveDate,
) -> (Decimal, Decimal, Decimal, bool) {
    cd::table
        .find((contract, d))
        .select((
            cd::energy_kwh,
            cd::location_kgco2e,
            cd::market_kgco2e,
            cd::metered,
        ))
        .first(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_worked_example_in_texas_and_bhutan() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let d = day("2026-11-20");
    let (user, _) = customer(&mut conn).await.unwrap();
    let texas = catalog::facility(&mut conn, &s21xp("USA-Texas-ERCOT", "US"))
        .await
        .unwrap();
    let bhutan = catalog::facility(&mut conn, &s21xp("Bhutan", "BT"))
        .await
        .unwrap();
    let tx_product = catalog::product(&mut conn, texas).await.unwrap();
    let tx_contract = running(&mut conn, user, tx_product, dec!(100), d).await;
    let bt_product = catalog::product(&mut conn, bhutan).await.unwrap();
    let bt_contract = running(&mut conn, user, bt_product, dec!(100), d).await;

    let report = daily::compute_day(&mut conn, d).await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.facilities, report.contract_days), (2, 2));
    // 100 × 13.5 × 1.05 × 24 / 1000 = 34.02 kWh; × 383.55 g and × 24.19 g.
    assert_eq!(
        row(&mut conn, tx_contract, d).await,
        (dec!(34.02), dec!(13.048371), dec!(13.048371), false)
    );
    assert_eq!(
        row(&mut conn, bt_contract, d).await,
        (dec!(34.02), dec!(0.822944), dec!(0.822944), false)
    );

    // Exactly once, however often the day runs.
    let again = daily::compute_day(&mut conn, d).await.unwrap();
    assert_eq!(
        (
            again.facilities,
            again.already_computed,
            again.contract_days
        ),
        (0, 2, 0)
    );
    let n: i64 = cd::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(n, 2);

    // The statement: both contracts, estimated, no certificates, no credits, no claim.
    let s = statement::customer_statement(&mut conn, user, d, d)
        .await
        .unwrap();
    assert_eq!(s.energy_kwh, dec!(68.04));
    assert_eq!(s.metered_share_pct, Decimal::ZERO);
    assert_eq!(s.location_based_kgco2e, dec!(13.871315));
    assert_eq!(s.claim.claim, "none");
    assert_eq!(s.contracts.len(), 2);
    let days = statement::days(&mut conn, user, Some(tx_contract), d, d)
        .await
        .unwrap();
    let csv = statement::days_csv(&days);
    assert!(
        csv.contains("34.02,estimated,0,13.048371,13.048371"),
        "{csv}"
    );
    assert!(
        csv.contains("USA-Texas-ERCOT 383.55 g/kWh (location, 2024)"),
        "{csv}"
    );
}

#[tokio::test]
async fn metered_shares_add_up_to_the_meter_and_factor_versions_apply_by_day() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (d1, d2) = (day("2026-11-20"), day("2026-11-21"));
    let (user, _) = customer(&mut conn).await.unwrap();
    let site = catalog::facility(&mut conn, &s21xp("Norway", "NO"))
        .await
        .unwrap();
    let product = catalog::product(&mut conn, site).await.unwrap();
    let a = running(&mut conn, user, product, dec!(100), d1).await;
    let b = running(&mut conn, user, product, dec!(233), d1).await;
    // A new grid factor for Norway from d2 on; d1 keeps the 2024 one.
    factors::add(
        &mut conn,
        "test",
        &NewFactor {
            region: "Norway".into(),
            basis: Basis::Location,
            gco2e_per_kwh: "40".into(),
            source: "test edition".into(),
            year: 2026,
            valid_from: d2,
            note: String::new(),
        },
    )
    .await
    .unwrap();
    // A version is never overwritten.
    let dup = factors::add(
        &mut conn,
        "test",
        &NewFactor {
            region: "Norway".into(),
            basis: Basis::Location,
            gco2e_per_kwh: "41".into(),
            source: "again".into(),
            year: 2026,
            valid_from: d2,
            note: String::new(),
        },
    )
    .await;
    assert_eq!(dup.unwrap_err().code(), "factor_version_exists");
    let tampered = diesel::sql_query("UPDATE emission_factors SET gco2e_per_kwh = 1")
        .execute(&mut conn)
        .await;
    assert!(tampered.is_err(), "versions are immutable");

    // d1 metered (1000 TH/s facility: 333 TH/s sold, the rest the platform's), d2 estimated.
    meter::import(
        &mut conn,
        site,
        "test",
        "utility bill",
        &[meter::Reading {
            day: d1,
            hour: None,
            kwh: "336000.001".into(),
        }],
    )
    .await
    .unwrap();
    for d in [d1, d2] {
        let r = daily::compute_day(&mut conn, d).await.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    let (ka, _, _, ma) = row(&mut conn, a, d1).await;
    let (kb, _, _, mb) = row(&mut conn, b, d1).await;
    assert!(ma && mb);
    let (meter_kwh, contracts_kwh, unsold): (Option<Decimal>, Decimal, Decimal) = cfd::table
        .find((site, d1))
        .select((cfd::meter_kwh, cfd::contracts_kwh, cfd::unsold_kwh))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(ka + kb, contracts_kwh);
    assert_eq!(
        contracts_kwh + unsold,
        meter_kwh.unwrap(),
        "shares add up exactly to the meter"
    );
    assert_eq!(ka, dec!(33600)); // 100/1000 of the meter
    // Residual mix for Norway (509 g) from the reference table: market-based differs.
    let (_, loc_b, market_b, _) = row(&mut conn, b, d1).await;
    assert_eq!(loc_b, (kb * dec!(30.75) / dec!(1000)).round_dp(6));
    assert_eq!(market_b, (kb * dec!(509) / dec!(1000)).round_dp(6));
    // d2 estimated with the new factor version.
    let (k2, loc2, _, m2) = row(&mut conn, a, d2).await;
    assert!(!m2);
    assert_eq!((k2, loc2), (dec!(34.02), dec!(1.3608)));
    // A computed day's readings are closed.
    let late = meter::import(
        &mut conn,
        site,
        "test",
        "late",
        &[meter::Reading {
            day: d1,
            hour: Some(3),
            kwh: "1".into(),
        }],
    )
    .await;
    assert_eq!(late.unwrap_err().code(), "day_already_computed");
}

#[tokio::test]
async fn certificates_cover_the_renewable_share_and_retired_credits_support_a_neutrality_claim() {
    use domain::carbon::certificates::{self, NewCertificate};
    use domain::carbon::credits::{self, Actor, NewCredit};
    use domain::carbon::report;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let d = day("2026-11-20");
    let (user, _) = customer(&mut conn).await.unwrap();
    let site = catalog::facility(&mut conn, &s21xp("Texas", "US"))
        .await
        .unwrap();
    let product = catalog::product(&mut conn, site).await.unwrap();
    let contract = running(&mut conn, user, product, dec!(1000), d).await;
    // ERCOT grid, half the supply contracted renewable (RECs).
    meter::set_profile(
        &mut conn,
        site,
        "test",
        &meter::SetProfile {
            grid_region: "USA-Texas-ERCOT".into(),
            renewable_share_pct: "50".into(),
        },
    )
    .await
    .unwrap();
    certificates::create(
        &mut conn,
        "test",
        "127.0.0.1",
        &NewCertificate {
            scheme: "REC".into(),
            registry: "M-RETS".into(),
            serial_start: "MRETS-2026-WIND-1".into(),
            serial_end: "MRETS-2026-WIND-10".into(),
            mwh: 10,
            generator: "Panhandle Wind 3".into(),
            technology: "wind".into(),
            country: "US".into(),
            production_start: day("2026-01-01"),
            production_end: day("2026-06-30"),
            emission_factor_gco2e_per_kwh: None,
        },
    )
    .await
    .unwrap();
    // 1000 TH/s × 13.5 × 1.05 × 24 h = 340.2 kWh; 170.1 kWh covered.
    let r = daily::compute_day(&mut conn, d).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let (kwh, loc, market, _) = row(&mut conn, contract, d).await;
    assert_eq!(kwh, dec!(340.2));
    assert_eq!(loc, dec!(130.48371));
    // Uncovered 170.1 kWh at the grid factor (no residual mix for ERCOT), covered at 0.
    assert_eq!(market, dec!(65.241855));

    // A Verra block; the month's market-based emissions (0.065 t) round up to 1 t.
    credits::create(
        &mut conn,
        &Actor::new("test", "127.0.0.1"),
        &NewCredit {
            registry: "verra",
            serial: "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0",
            kind: "avoidance",
            ..NewCredit::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report::retire_month(&mut conn, d).await.unwrap(), (1, 0));
    assert_eq!(
        report::retire_month(&mut conn, d).await.unwrap(),
        (0, 0),
        "never twice"
    );

    let s = statement::customer_statement(&mut conn, user, day("2026-11-01"), day("2026-11-30"))
        .await
        .unwrap();
    assert_eq!(s.certificates_kwh, dec!(170.1));
    assert_eq!(s.certificates.len(), 1);
    assert_eq!(
        (s.certificates[0].scheme.as_str(), s.certificates[0].kwh),
        ("REC", dec!(170.1))
    );
    assert_eq!(s.credits_retired_tonnes, 1);
    assert_eq!(
        (s.credits[0].unit_start, s.credits[0].unit_end),
        (941_412_555, 941_412_555)
    );
    assert_eq!(s.claim.claim, "carbon_neutral");
    let rep = report::report(&mut conn, 2026).await.unwrap();
    assert_eq!(rep.conservation, Vec::<String>::new());
    assert_eq!(rep.renewable_share_pct, dec!(50));
    assert_eq!(rep.credits_retired_tonnes, 1);
}

#[tokio::test]
async fn every_demo_facility_has_a_grid_region_with_a_factor() {
    use domain::schema::facilities;
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    domain::seed::demo_catalog(&mut conn).await.unwrap();
    let ids: Vec<Uuid> = facilities::table
        .select(facilities::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    for id in ids {
        let p = meter::profile(&mut conn, id)
            .await
            .unwrap()
            .expect("a profile");
        let f = factors::factor_for(
            &mut conn,
            &p.grid_region,
            Basis::Location,
            day("2026-11-20"),
        )
        .await
        .unwrap();
        assert!(f.is_some(), "{}", p.grid_region);
    }
}
