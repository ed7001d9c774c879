//! Energy attribute certificates against the real PostgreSQL: registration
//! (overlapping serials refused by the database, also when racing; rows
//! immutable), matching to facility-days (two certificates, exact kWh,
//! oldest first, market and vintage rules, once per facility-day), races of
//! many facility-days on one certificate, the conservation check, and the
//! coverage totals for reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::carbon::certificates::{
    self, Certificate, CertificateError, DayCoverage, NewCertificate,
};
use domain::schema::{algorithms, certificate_allocations as ca, facilities};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

const ACTOR: &str = "user:00000000-0000-0000-0000-000000000001";

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

async fn facility(conn: &mut AsyncPgConnection, country: &str) -> Uuid {
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
            facilities::name.eq(format!("Site {}", id.simple())),
            facilities::country.eq(country),
            facilities::region.eq("Somewhere"),
            facilities::miner_model.eq("Antminer S21 XP"),
            facilities::efficiency.eq(dec!(13.5)),
            facilities::efficiency_unit.eq("J/TH"),
            facilities::pue.eq(dec!(1.05)),
            facilities::total_hashrate.eq(dec!(1000)),
            facilities::sellable_hashrate.eq(dec!(1000)),
            facilities::algorithm.eq("sha256"),
        ))
        .execute(conn)
        .await
        .unwrap();
    id
}

/// A renewable block of `mwh` certificates numbered from `first`.
#[allow(clippy::too_many_arguments)]
fn block(
    scheme: &str,
    registry: &str,
    prefix: &str,
    first: i64,
    mwh: i64,
    country: &str,
    start: &str,
    end: &str,
) -> NewCertificate {
    NewCertificate {
        scheme: scheme.into(),
        registry: registry.into(),
        serial_start: format!("{prefix}{first}"),
        serial_end: format!("{prefix}{}", first + mwh - 1),
        mwh,
        generator: "Hellisheidi".into(),
        technology: "geothermal".into(),
        country: country.into(),
        production_start: d(start),
        production_end: d(end),
        emission_factor_gco2e_per_kwh: None,
    }
}

async fn register(conn: &mut AsyncPgConnection, new: &NewCertificate) -> Certificate {
    certificates::create(conn, ACTOR, "192.0.2.1", new)
        .await
        .unwrap()
}

async fn go(conn: &mut AsyncPgConnection, prefix: &str, mwh: i64, start: &str, end: &str) -> Uuid {
    register(
        conn,
        &block("GO", "AIB hub", prefix, 1, mwh, "IS", start, end),
    )
    .await
    .id
}

async fn allocate(
    conn: &mut AsyncPgConnection,
    facility: Uuid,
    day: &str,
    kwh: Decimal,
) -> DayCoverage {
    certificates::allocate_for_day(conn, facility, d(day), kwh)
        .await
        .unwrap()
}

async fn clean(conn: &mut AsyncPgConnection) {
    let problems = certificates::conservation_check(conn).await.unwrap();
    assert!(problems.is_empty(), "conservation problems: {problems:?}");
}

async fn remaining_mwh(conn: &mut AsyncPgConnection, id: Uuid) -> Decimal {
    certificates::get(conn, id)
        .await
        .unwrap()
        .unwrap()
        .remaining_mwh
}

#[tokio::test]
async fn a_day_is_covered_across_two_certificates_oldest_first_to_the_wh() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "IS").await;
    // Registered newest first: the order of production decides, not of registration.
    let february = go(&mut conn, "IS-FEB-", 5, "2026-02-01", "2026-02-28").await;
    let january = go(&mut conn, "IS-JAN-", 1, "2026-01-01", "2026-01-31").await;

    let cov = allocate(&mut conn, site, "2026-03-10", dec!(1500.1239)).await;
    assert_eq!(cov.covered_kwh, dec!(1500.123), "rounded down to whole Wh");
    assert_eq!(
        cov.allocations,
        vec![
            (january, dec!(1000), Decimal::ZERO),
            (february, dec!(500.123), Decimal::ZERO),
        ]
    );
    assert_eq!(remaining_mwh(&mut conn, january).await, Decimal::ZERO);
    assert_eq!(remaining_mwh(&mut conn, february).await, dec!(4.499877));

    // The next day continues in February's block and stops at what is left.
    let cov = allocate(&mut conn, site, "2026-03-11", dec!(10000)).await;
    assert_eq!(cov.covered_kwh, dec!(4499.877));
    assert_eq!(
        cov.allocations,
        vec![(february, dec!(4499.877), Decimal::ZERO)]
    );
    let cov = allocate(&mut conn, site, "2026-03-12", dec!(1)).await;
    assert_eq!(cov.covered_kwh, Decimal::ZERO);
    assert!(cov.allocations.is_empty());
    clean(&mut conn).await;
}

#[tokio::test]
async fn a_non_renewable_source_carries_its_factor() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "US").await;
    let mut gas = block(
        "REC",
        "M-RETS",
        "M-RETS-1234-MN-01-2026-",
        1,
        2,
        "US",
        "2026-01-01",
        "2026-01-31",
    );
    gas.technology = "gas".into();
    gas.emission_factor_gco2e_per_kwh = Some("402.5".into());
    let cert = register(&mut conn, &gas).await;
    assert!(!cert.renewable);
    let cov = allocate(&mut conn, site, "2026-04-01", dec!(100)).await;
    assert_eq!(cov.allocations, vec![(cert.id, dec!(100), dec!(402.5))]);
}

#[tokio::test]
async fn certificates_of_another_market_are_not_used() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let texas = facility(&mut conn, "US").await;
    let iceland = facility(&mut conn, "IS").await;
    // A Canadian REC is not used in the US (US and CA are separate markets),
    // a Norwegian GO not in Iceland.
    register(
        &mut conn,
        &block(
            "REC",
            "NAR",
            "NAR-ON-",
            1,
            10,
            "CA",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await;
    register(
        &mut conn,
        &block(
            "GO",
            "AIB hub",
            "NO-",
            1,
            10,
            "NO",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await;
    for site in [texas, iceland] {
        let cov = allocate(&mut conn, site, "2026-02-01", dec!(500)).await;
        assert_eq!(cov.covered_kwh, Decimal::ZERO);
        assert!(cov.allocations.is_empty());
    }
    // A US REC covers the US site.
    let us = register(
        &mut conn,
        &block(
            "REC",
            "ERCOT",
            "TX-",
            1,
            1,
            "US",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await;
    let cov = allocate(&mut conn, texas, "2026-02-02", dec!(500)).await;
    assert_eq!(cov.allocations, vec![(us.id, dec!(500), Decimal::ZERO)]);
    clean(&mut conn).await;
}

#[tokio::test]
async fn certificates_outside_the_vintage_window_are_not_used() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "IS").await;
    // Last year's production, and production after the day: never.
    go(&mut conn, "OLD-", 10, "2025-12-01", "2025-12-31").await;
    go(&mut conn, "LATER-", 10, "2026-01-16", "2026-01-31").await;
    let cov = allocate(&mut conn, site, "2026-01-15", dec!(100)).await;
    assert_eq!(cov.covered_kwh, Decimal::ZERO);

    // A period reaching into the day's year and started before it: yes.
    let straddling = go(&mut conn, "XMAS-", 1, "2025-12-15", "2026-01-14").await;
    let cov = allocate(&mut conn, site, "2026-01-20", dec!(100)).await;
    assert_eq!(
        cov.allocations,
        vec![(straddling, dec!(100), Decimal::ZERO)]
    );

    // The same certificate later in the year, but not in the next year.
    let cov = allocate(&mut conn, site, "2026-12-31", dec!(100)).await;
    assert_eq!(cov.covered_kwh, dec!(100));
    assert!(cov.allocations.iter().all(|(id, _, _)| *id == straddling));
    let cov = allocate(&mut conn, site, "2027-01-01", dec!(100)).await;
    assert!(
        cov.allocations.iter().all(|(id, _, _)| *id != straddling),
        "{cov:?}"
    );
    clean(&mut conn).await;
}

#[tokio::test]
async fn a_rerun_answers_the_stored_coverage_and_allocates_nothing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "IS").await;
    let cert = go(&mut conn, "RERUN-", 2, "2026-01-01", "2026-01-31").await;
    let first = allocate(&mut conn, site, "2026-02-01", dec!(750.5)).await;
    assert_eq!(first.covered_kwh, dec!(750.5));
    for kwh in [dec!(750.5), dec!(1999), dec!(0)] {
        let again = allocate(&mut conn, site, "2026-02-01", kwh).await;
        assert_eq!(again, first, "re-run with {kwh}");
    }
    let rows: i64 = ca::table
        .filter(ca::facility_id.eq(site))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(remaining_mwh(&mut conn, cert).await, dec!(1.2495));

    // A day matched with nothing to allocate stays matched with nothing.
    let empty = facility(&mut conn, "DE").await;
    assert_eq!(
        allocate(&mut conn, empty, "2026-02-01", dec!(10)).await,
        DayCoverage {
            covered_kwh: Decimal::ZERO,
            allocations: vec![]
        }
    );
    register(
        &mut conn,
        &block(
            "GO",
            "UBA HKNR",
            "DE-",
            1,
            1,
            "DE",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await;
    assert!(
        allocate(&mut conn, empty, "2026-02-01", dec!(10))
            .await
            .allocations
            .is_empty()
    );
    assert_eq!(
        allocate(&mut conn, empty, "2026-02-02", dec!(10))
            .await
            .covered_kwh,
        dec!(10)
    );

    // Unknown facilities and negative needs are refused.
    assert!(matches!(
        certificates::allocate_for_day(&mut conn, Uuid::now_v7(), d("2026-02-01"), dec!(1)).await,
        Err(CertificateError::UnknownFacility)
    ));
    assert!(matches!(
        certificates::allocate_for_day(&mut conn, site, d("2026-02-03"), dec!(-1)).await,
        Err(CertificateError::NegativeKwh)
    ));
    clean(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_facility_days_never_exceed_a_certificate() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let cert = go(&mut conn, "RACE-", 1, "2026-01-01", "2026-01-31").await;
    let mut sites = Vec::new();
    for _ in 0..8 {
        sites.push(facility(&mut conn, "IS").await);
    }
    // 8 × 300 kWh asked of 1000 kWh, all at once.
    let tasks: Vec<_> = sites
        .iter()
        .map(|site| {
            let pool = db.pool();
            let site = *site;
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                certificates::allocate_for_day(&mut c, site, d("2026-03-01"), dec!(300))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut total = Decimal::ZERO;
    for t in tasks {
        let cov = t.await.unwrap();
        assert!(cov.covered_kwh <= dec!(300));
        total += cov.covered_kwh;
    }
    assert_eq!(total, dec!(1000), "the certificate is used up, never more");
    assert_eq!(remaining_mwh(&mut conn, cert).await, Decimal::ZERO);

    // 8 calls for one facility-day at once: one matching, 8 equal answers.
    let more = go(&mut conn, "RACE2-", 1, "2026-01-01", "2026-01-31").await;
    let site = *sites.as_slice().first().unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let pool = db.pool();
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                certificates::allocate_for_day(&mut c, site, d("2026-03-02"), dec!(400))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let first = answers.as_slice().first().unwrap().clone();
    assert_eq!(first.allocations, vec![(more, dec!(400), Decimal::ZERO)]);
    assert!(answers.iter().all(|a| *a == first));
    assert_eq!(remaining_mwh(&mut conn, more).await, dec!(0.6));
    clean(&mut conn).await;
}

#[tokio::test]
async fn the_conservation_check_finds_what_the_database_would_refuse() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "IS").await;
    let cert = go(&mut conn, "CONS-", 1, "2026-01-01", "2026-01-31").await;
    let norway = register(
        &mut conn,
        &block(
            "GO",
            "AIB hub",
            "NO-",
            1,
            1,
            "NO",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await
    .id;
    allocate(&mut conn, site, "2026-02-01", dec!(900)).await;
    clean(&mut conn).await;

    // The database refuses over-allocation, another market and another year.
    for (id, day, kwh) in [
        (cert, "2026-02-01", dec!(200)),
        (norway, "2026-02-01", dec!(1)),
    ] {
        let err = diesel::insert_into(ca::table)
            .values((
                ca::certificate_id.eq(id),
                ca::facility_id.eq(site),
                ca::day.eq(d(day)),
                ca::hour.eq(Some(1)),
                ca::kwh.eq(kwh),
            ))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }
    allocate(&mut conn, site, "2027-01-05", dec!(1)).await;
    let err = diesel::insert_into(ca::table)
        .values((
            ca::certificate_id.eq(cert),
            ca::facility_id.eq(site),
            ca::day.eq(d("2027-01-05")),
            ca::kwh.eq(dec!(1)),
        ))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vintage"), "{err}");
    // Rows are never changed or deleted.
    for sql in [
        "UPDATE energy_certificates SET mwh = 2, range_last = range_first + 1",
        "DELETE FROM energy_certificates",
        "UPDATE certificate_allocations SET kwh = 1",
        "DELETE FROM certificate_allocations",
        "DELETE FROM certificate_coverage_days",
    ] {
        let err = conn.batch_execute(sql).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }

    // With the triggers off (as a superuser could), the check sees all three.
    conn.batch_execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO certificate_allocations (certificate_id, facility_id, day, hour, kwh)
             VALUES ('{cert}', '{site}', '2026-02-01', 1, 200),
                    ('{norway}', '{site}', '2026-02-01', 2, 1),
                    ('{cert}', '{site}', '2027-01-05', 3, 1);
         SET session_replication_role = DEFAULT;"
    ))
    .await
    .unwrap();
    let problems = certificates::conservation_check(&mut conn).await.unwrap();
    let all = problems.join("\n");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&cert.to_string()) && p.contains("holds 1000 kWh")),
        "{all}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&norway.to_string()) && p.contains("market NO")),
        "{all}"
    );
    assert!(problems.iter().any(|p| p.contains("vintage")), "{all}");
    assert!(problems.iter().any(|p| p.contains("covered of")), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_serials_are_refused_also_when_racing() {
    let db = TestDb::new().await.unwrap();
    // 8 blocks at once, all holding certificate 500 of the same registry.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let pool = db.pool();
            tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                let new = block(
                    "GO",
                    if i % 2 == 0 { "AIB hub" } else { "aib-HUB" },
                    "EECS-IS-",
                    400 + i * 10,
                    200,
                    "IS",
                    "2026-01-01",
                    "2026-01-31",
                );
                certificates::create(&mut c, ACTOR, "", &new).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => winners.push(c.id),
            Err(CertificateError::Overlap { existing }) => refused.push(existing),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "refused: {refused:?}");
    assert_eq!(refused.len(), 7);
    let winner = *winners.as_slice().first().unwrap();
    assert!(refused.iter().all(|e| *e == Some(winner)));

    let mut conn = db.conn().await.unwrap();
    let won = certificates::get(&mut conn, winner).await.unwrap().unwrap();
    let (first, last) = (won.certificate.range_first, won.certificate.range_last);
    // Adjacent blocks, another prefix and another registry are fine.
    for (registry, prefix, start) in [
        ("AIB hub", "EECS-IS-", first - 10),
        ("AIB hub", "EECS-IS-", last + 1),
        ("AIB hub", "EECS-IX-", first),
        ("Evident", "EECS-IS-", first),
    ] {
        let mut new = block(
            "GO",
            registry,
            prefix,
            start,
            10,
            "IS",
            "2026-01-01",
            "2026-01-31",
        );
        if registry == "Evident" {
            new.scheme = "I-REC".into();
            new.country = "BR".into();
        }
        certificates::create(&mut conn, ACTOR, "", &new)
            .await
            .unwrap_or_else(|e| panic!("{registry} {prefix} {start}: {e:?}"));
    }
    // One certificate of overlap is enough to refuse.
    let err = certificates::create(
        &mut conn,
        ACTOR,
        "",
        &block(
            "GO",
            "AIB-Hub",
            "eecs-is-",
            last,
            5,
            "IS",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "certificate_overlap");
    let ids: HashSet<Uuid> = certificates::list(&mut conn, Some("is"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.certificate.id)
        .collect();
    assert_eq!(ids.len(), 4);
    // The registration is in the audit log.
    let audited: i64 = domain::schema::audit_log::table
        .filter(domain::schema::audit_log::action.eq("carbon.certificate.create"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(audited, 5);
}

#[tokio::test]
async fn registration_checks_each_field() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let ok = block(
        "GO",
        "AIB hub",
        "IS-",
        1,
        10,
        "IS",
        "2026-01-01",
        "2026-01-31",
    );
    let cases: Vec<(NewCertificate, &str, &str)> = vec![
        (
            NewCertificate {
                mwh: 9,
                ..ok.clone()
            },
            "mwh",
            "range_count_mismatch",
        ),
        (
            NewCertificate {
                scheme: "RECS".into(),
                ..ok.clone()
            },
            "scheme",
            "invalid",
        ),
        (
            NewCertificate {
                country: "XX".into(),
                ..ok.clone()
            },
            "country",
            "invalid",
        ),
        (
            NewCertificate {
                scheme: "REC".into(),
                ..ok.clone()
            },
            "country",
            "scheme_market_mismatch",
        ),
        (
            NewCertificate {
                production_end: d("2025-12-31"),
                ..ok.clone()
            },
            "production_end",
            "before_start",
        ),
        (
            NewCertificate {
                production_end: d("2999-01-01"),
                production_start: d("2998-12-01"),
                ..ok.clone()
            },
            "production_end",
            "in_future",
        ),
        (
            NewCertificate {
                technology: "fusion".into(),
                ..ok.clone()
            },
            "technology",
            "invalid",
        ),
        (
            NewCertificate {
                emission_factor_gco2e_per_kwh: Some("12".into()),
                ..ok.clone()
            },
            "emission_factor_gco2e_per_kwh",
            "must_be_zero",
        ),
        (
            NewCertificate {
                technology: "nuclear".into(),
                ..ok.clone()
            },
            "emission_factor_gco2e_per_kwh",
            "required",
        ),
        (
            NewCertificate {
                serial_end: "IT-10".into(),
                ..ok.clone()
            },
            "serial_end",
            "prefix_mismatch",
        ),
    ];
    for (new, field, code) in cases {
        match certificates::create(&mut conn, ACTOR, "", &new).await {
            Err(CertificateError::Invalid {
                field: f, code: c, ..
            }) => assert_eq!((f, c), (field, code), "{new:?}"),
            other => panic!("{field}/{code}: {other:?}"),
        }
    }
    let created = register(&mut conn, &ok).await;
    assert_eq!(created.serial_start, "IS-1");
    assert_eq!((created.range_first, created.range_last), (1, 10));
    assert!(created.renewable);
}

#[tokio::test]
async fn coverage_totals_a_period_for_reports() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let site = facility(&mut conn, "US").await;
    let solar = register(
        &mut conn,
        &block(
            "REC",
            "WREGIS",
            "W-",
            1,
            1,
            "US",
            "2026-01-01",
            "2026-01-31",
        ),
    )
    .await;
    let mut nuclear = block(
        "REC",
        "PJM-GATS",
        "G-",
        1,
        1,
        "US",
        "2026-02-01",
        "2026-02-28",
    );
    nuclear.technology = "nuclear".into();
    nuclear.emission_factor_gco2e_per_kwh = Some("12".into());
    let nuclear = register(&mut conn, &nuclear).await;
    for day in ["2026-03-01", "2026-03-02", "2026-03-03"] {
        allocate(&mut conn, site, day, dec!(600)).await;
    }
    let cov = certificates::coverage(&mut conn, site, d("2026-03-01"), d("2026-03-31"))
        .await
        .unwrap();
    assert_eq!(cov.days_matched, 3);
    assert_eq!(cov.kwh_needed, dec!(1800));
    assert_eq!(cov.covered_kwh, dec!(1800));
    assert_eq!(cov.uncovered_kwh, Decimal::ZERO);
    assert_eq!(cov.renewable_kwh, dec!(1000));
    assert_eq!(cov.covered_gco2e, dec!(9600));
    let uses: Vec<(Uuid, Decimal)> = cov
        .certificates
        .iter()
        .map(|u| (u.certificate_id, u.kwh))
        .collect();
    assert_eq!(uses, vec![(solar.id, dec!(1000)), (nuclear.id, dec!(800))]);
    let march_2 = certificates::coverage(&mut conn, site, d("2026-03-02"), d("2026-03-02"))
        .await
        .unwrap();
    assert_eq!(march_2.days_matched, 1);
    assert_eq!(march_2.covered_kwh, dec!(600));
    clean(&mut conn).await;
}
