//! Carbon credits: serial parsing (the DOMAIN.md vectors, malformed inputs,
//! no input panics), stored blocks that never overlap (also when inserted
//! at once), and retirements that take each unit once: FIFO by vintage,
//! splitting blocks, reporting shortfalls, idempotent per beneficiary and
//! period, and safe under concurrent allocations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::carbon::credits::{
    self, Actor, CreditError, CreditKind, Demand, Expected, NewCredit, Registry, SerialError,
    parse_serial,
};
use domain::identity::audit;
use domain::schema::{carbon_credits as cc, credit_retirements as cr};
use testkit::TestDb;
use testkit::custody::customer;
use uuid::Uuid;

const VERRA: &str = "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0";
const GOLD: &str = "GS1-1-KE-GS11603-16-2025-30256-110-5463";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A Verra serial for units `start..=end` with vintage year `year`.
fn verra(batch: u32, start: i64, end: i64, year: i32) -> String {
    format!("{batch}-{start}-{end}-VCS-VCU-1310-VER-CN-13-3005-0101{year}-3112{year}-0")
}

fn gold(batch: u32, start: i64, end: i64) -> String {
    format!("GS1-1-KE-GS11603-16-2025-{batch}-{start}-{end}")
}

fn admin() -> Actor {
    Actor::new("user:test-admin", "10.0.0.1")
}

async fn add(
    conn: &mut AsyncPgConnection,
    registry: &str,
    serial: &str,
    kind: &str,
) -> Result<credits::Credit, CreditError> {
    credits::create(
        conn,
        &admin(),
        &NewCredit {
            registry,
            serial,
            kind,
            ..NewCredit::default()
        },
    )
    .await
}

fn demand(user: Uuid, month: u32, tonnes: i64) -> Demand {
    Demand {
        beneficiary_user_id: user,
        beneficiary_name: format!("Customer {user}"),
        period_from: date(2026, month, 1),
        period_to: date(2026, month, 28),
        tonnes,
    }
}

/// (serial, first unit, last unit) of each range.
fn ranges(r: &credits::Retirement) -> Vec<(String, i64, i64)> {
    r.ranges
        .iter()
        .map(|x| (x.serial.clone(), x.unit_start, x.unit_end))
        .collect()
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

#[test]
fn the_verra_example_is_a_block_of_28571_units() {
    let b = parse_serial("verra", VERRA).unwrap();
    assert_eq!(b.registry, Registry::Verra);
    assert_eq!(b.serial, VERRA);
    assert_eq!((b.block_start, b.block_end), (941_412_555, 941_441_125));
    assert_eq!(b.units, 28_571);
    assert_eq!(b.project, "3005");
    assert_eq!(b.country, "CN");
    assert_eq!(b.sectoral_scope, 13);
    assert_eq!(b.methodology_ref.as_deref(), Some("1310"));
    assert_eq!((b.program.as_str(), b.unit_type.as_str()), ("VCS", "VCU"));
    assert_eq!(b.batch, "19381");
    assert_eq!(b.vintage_start, date(2022, 1, 1));
    assert_eq!(b.vintage_end, date(2022, 10, 31));
    assert_eq!(b.number_space(), "verra");
}

#[test]
fn the_gold_standard_example_is_a_block_of_5354_units() {
    let b = parse_serial("gold_standard", GOLD).unwrap();
    assert_eq!(b.registry, Registry::GoldStandard);
    assert_eq!((b.block_start, b.block_end, b.units), (110, 5463, 5354));
    assert_eq!(b.project, "GS11603");
    assert_eq!(b.country, "KE");
    assert_eq!(b.sectoral_scope, 16);
    assert_eq!(b.batch, "30256");
    assert_eq!((b.program.as_str(), b.unit_type.as_str()), ("GS", "VER"));
    assert_eq!(b.methodology_ref, None);
    assert_eq!(b.vintage_start, date(2025, 1, 1));
    assert_eq!(b.vintage_end, date(2025, 12, 31));
    assert_eq!(b.number_space(), "gold_standard:GS11603:2025:30256");
    // The Impact Registry's own record: 29 743 credits.
    let other = parse_serial("gold_standard", "GS1-1-KE-GS7495-16-2025-30645-608-30350").unwrap();
    assert_eq!(other.units, 29_743);
}

#[test]
fn serials_are_trimmed_and_upper_cased() {
    let b = parse_serial(" verra", &format!("  {}\n", VERRA.to_lowercase())).unwrap();
    assert_eq!(b.serial, VERRA);
    let one = parse_serial("gold_standard", "GS1-1-KE-GS11603-16-2025-30256-7-7").unwrap();
    assert_eq!(one.units, 1);
}

#[test]
fn bad_serials_have_stable_codes() {
    let cases: &[(&str, &str, &str)] = &[
        ("vera", VERRA, "unknown_registry"),
        ("", VERRA, "unknown_registry"),
        ("VERRA", VERRA, "unknown_registry"),
        ("verra", GOLD, "registry_mismatch"),
        ("gold_standard", VERRA, "registry_mismatch"),
        ("verra", "", "malformed"),
        ("verra", "   ", "malformed"),
        ("verra", "19381-941412555-941441125", "malformed"),
        // 14 fields
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0-0",
            "malformed",
        ),
        // unit type, program, VER literal
        (
            "verra",
            "19381-941412555-941441125-VCS-CER-1310-VER-CN-13-3005-01012022-31102022-0",
            "malformed",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VCS-CN-13-3005-01012022-31102022-0",
            "malformed",
        ),
        // letters in a number, a 19-digit unit, a three-letter country
        (
            "verra",
            "19381-94141255X-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0",
            "malformed",
        ),
        (
            "verra",
            "19381-1234567890123456789-1234567890123456790-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0",
            "malformed",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CHN-13-3005-01012022-31102022-0",
            "malformed",
        ),
        // the flag is one digit; dates are eight digits
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-O",
            "malformed",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-1012022-31102022-0",
            "malformed",
        ),
        (
            "verra",
            "19381-941441125-941412555-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0",
            "bad_range",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-31022022-31102022-0",
            "bad_date",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01132022-31102022-0",
            "bad_date",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012023-31102022-0",
            "bad_date",
        ),
        (
            "verra",
            "19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01010000-31102022-0",
            "bad_date",
        ),
        ("verra", "19381–941412555", "malformed"),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-2025-30256-110",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-GS-VER-GS11603-2025-30256-110-5463",
            "malformed",
        ),
        (
            "gold_standard",
            "GS2-1-KE-GS11603-16-2025-30256-110-5463",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-KE-11603-16-2025-30256-110-5463",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS-16-2025-30256-110-5463",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-25-30256-110-5463",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-2025-30256-5463-110",
            "bad_range",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-0025-30256-110-5463",
            "bad_date",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-2025-30256-110-5463 x",
            "malformed",
        ),
        (
            "gold_standard",
            "GS1-1-KE-GS11603-16-2025-30256-110-5463--",
            "malformed",
        ),
    ];
    for (registry, serial, code) in cases {
        let got = parse_serial(registry, serial);
        match got {
            Err(e) => {
                assert_eq!(e.code(), *code, "{registry} {serial:?}: {e}");
                assert!(!e.to_string().is_empty());
            }
            Ok(b) => panic!("{registry} {serial:?} parsed as {b:?}, wanted {code}"),
        }
    }
    let long = "1".repeat(300);
    assert!(matches!(
        parse_serial("verra", &long),
        Err(SerialError::Malformed(_))
    ));
}

#[test]
fn the_request_must_agree_with_the_serial() {
    let b = parse_serial("verra", VERRA).unwrap();
    let ok = Expected {
        vintage: Some(2022),
        project: Some("VCS3005"),
        units: Some(28_571),
    };
    credits::check_expected(&b, &ok).unwrap();
    for (bad, field) in [
        (
            Expected {
                vintage: Some(2021),
                ..Expected::default()
            },
            "vintage",
        ),
        (
            Expected {
                project: Some("1310"),
                ..Expected::default()
            },
            "project",
        ),
        (
            Expected {
                units: Some(28_570),
                ..Expected::default()
            },
            "units",
        ),
    ] {
        match credits::check_expected(&b, &bad) {
            Err(e @ CreditError::Disagrees { field: f, .. }) => {
                assert_eq!(f, field);
                assert_eq!(e.code(), "serial_mismatch");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let g = parse_serial("gold_standard", GOLD).unwrap();
    credits::check_expected(
        &g,
        &Expected {
            vintage: Some(2025),
            project: Some("11603"),
            units: Some(5354),
        },
    )
    .unwrap();
}

mod no_input_panics {
    use super::*;
    use proptest::prelude::*;

    /// A field of a serial: digits, letters, empty, long, or junk.
    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,20}",
            "[A-Z]{0,4}",
            "(VCS|VCU|VER|GS1|GS[0-9]{1,6}|1|0)",
            "[0-9]{8}",
            ".{0,6}",
        ]
    }

    fn registry() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("verra".to_owned()),
            Just("gold_standard".to_owned()),
            ".{0,14}"
        ]
    }

    /// Checks what a parse promises, whatever the input.
    fn check(registry: &str, serial: &str) -> Result<(), TestCaseError> {
        match parse_serial(registry, serial) {
            Ok(b) => {
                prop_assert!(b.block_start >= 0);
                prop_assert!(b.block_end >= b.block_start);
                prop_assert_eq!(b.units, b.block_end - b.block_start + 1);
                prop_assert!(b.vintage_end >= b.vintage_start);
                prop_assert_eq!(b.country.len(), 2);
                // The normalised serial parses to the same block.
                prop_assert_eq!(parse_serial(registry, &b.serial), Ok(b.clone()));
            }
            Err(e) => {
                prop_assert!(!e.code().is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_strings(registry in registry(), serial in ".{0,250}") {
            check(&registry, &serial)?;
        }

        #[test]
        fn dash_separated_fields(registry in registry(), fields in proptest::collection::vec(field(), 0..16)) {
            check(&registry, &fields.join("-"))?;
        }

        #[test]
        fn the_examples_with_one_field_replaced(which in 0usize..13, value in field(), gs in any::<bool>()) {
            let (registry, serial) = if gs { ("gold_standard", GOLD) } else { ("verra", VERRA) };
            let mut parts: Vec<String> = serial.split('-').map(str::to_owned).collect();
            let i = which % parts.len();
            parts[i] = value;
            check(registry, &parts.join("-"))?;
        }

        #[test]
        fn any_valid_verra_block(start in 0i64..999_999_999_999_999_999, len in 0i64..1_000_000, year in 1990i32..2100) {
            let end = start.saturating_add(len).min(999_999_999_999_999_999);
            let b = parse_serial("verra", &verra(1, start, end, year)).unwrap();
            prop_assert_eq!(b.units, end - start + 1);
            prop_assert_eq!(b.vintage_start, date(year, 1, 1));
        }
    }
}

// ---------------------------------------------------------------------------
// Stored credits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_credit_is_stored_with_its_block_and_audited() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let c = credits::create(
        &mut conn,
        &admin(),
        &NewCredit {
            registry: "verra",
            serial: &VERRA.to_lowercase(),
            kind: "avoidance",
            project_name: Some("  Landfill gas, Shandong "),
            expected: Expected {
                units: Some(28_571),
                ..Expected::default()
            },
            ..NewCredit::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(c.serial, VERRA);
    assert_eq!(
        (c.block_start, c.block_end, c.units),
        (941_412_555, 941_441_125, 28_571)
    );
    assert_eq!(c.project_name.as_deref(), Some("Landfill gas, Shandong"));
    assert_eq!(c.created_by, "user:test-admin");
    let g = add(&mut conn, "gold_standard", GOLD, "removal")
        .await
        .unwrap();
    assert_eq!(g.units, 5354);

    let stock = credits::list_credits(&mut conn).await.unwrap();
    assert_eq!(stock.len(), 2);
    // Oldest vintage first.
    assert_eq!(stock[0].credit.id, c.id);
    assert!(
        stock
            .iter()
            .all(|s| s.retired == 0 && s.available == s.credit.units)
    );

    let entries = audit::list(
        &mut conn,
        &audit::AuditFilter {
            action: Some("carbon.credit.create".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 2);

    // Kind and request checks.
    let e = add(&mut conn, "verra", &verra(2, 1, 5, 2020), "offset")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_kind");
    let e = add(&mut conn, "verra", "nope", "removal")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "malformed");

    // Never changed or deleted.
    let changed = diesel::update(cc::table.find(c.id))
        .set(cc::kind.eq("removal"))
        .execute(&mut conn)
        .await;
    assert!(changed.is_err(), "a credit was changed");
    let deleted = diesel::delete(cc::table.find(c.id))
        .execute(&mut conn)
        .await;
    assert!(deleted.is_err(), "a credit was deleted");
}

#[tokio::test]
async fn an_overlapping_block_is_refused_naming_the_credit() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let first = add(&mut conn, "verra", &verra(1, 1000, 1999, 2021), "avoidance")
        .await
        .unwrap();
    // Verra numbers are registry-wide: another batch and project still clash.
    let other_project = "77-1500-2500-VCS-VCU-263-VER-KH-14-1748-01012019-31122019-1";
    for serial in [
        verra(1, 1000, 1999, 2021),
        verra(2, 1999, 2005, 2022),
        verra(3, 10, 1000, 2020),
        verra(4, 1200, 1300, 2021),
        other_project.to_owned(),
    ] {
        match add(&mut conn, "verra", &serial, "avoidance").await {
            Err(CreditError::Overlap {
                credit_id,
                serial: s,
            }) => {
                assert_eq!(credit_id, first.id, "{serial}");
                assert_eq!(s, first.serial);
            }
            other => panic!("{serial}: {other:?}"),
        }
    }
    // Adjacent blocks are fine.
    add(&mut conn, "verra", &verra(5, 2000, 2999, 2021), "avoidance")
        .await
        .unwrap();
    add(&mut conn, "verra", &verra(6, 1, 999, 2021), "avoidance")
        .await
        .unwrap();

    // Gold Standard numbers repeat across issuances: same numbers, another
    // batch or project, are different units; within one issuance they clash.
    let g = add(
        &mut conn,
        "gold_standard",
        &gold(30256, 110, 5463),
        "removal",
    )
    .await
    .unwrap();
    add(
        &mut conn,
        "gold_standard",
        &gold(30257, 110, 5463),
        "removal",
    )
    .await
    .unwrap();
    add(
        &mut conn,
        "gold_standard",
        "GS1-1-KE-GS7495-16-2025-30256-110-5463",
        "removal",
    )
    .await
    .unwrap();
    let e = add(
        &mut conn,
        "gold_standard",
        &gold(30256, 5000, 6000),
        "removal",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, CreditError::Overlap { credit_id, .. } if *credit_id == g.id),
        "{e:?}"
    );
    assert_eq!(e.code(), "credit_overlap");
    assert_eq!(credits::list_credits(&mut conn).await.unwrap().len(), 6);
    assert_eq!(
        credits::conservation_check(&mut conn).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn eight_concurrent_overlapping_inserts_store_one() {
    let db = TestDb::new().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let pool = db.pool();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            // Every pair of these blocks shares units 5000..5000+.
            let serial = verra(100 + i, 1000 + i64::from(i) * 100, 9000, 2023);
            add(&mut conn, "verra", &serial, "avoidance").await
        }));
    }
    let mut stored = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => stored.push(c),
            Err(CreditError::Overlap { .. }) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(refused, 7);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(credits::list_credits(&mut conn).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Retirements
// ---------------------------------------------------------------------------

#[tokio::test]
async fn allocation_takes_oldest_vintage_first_and_splits_blocks() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (a, _) = customer(&mut conn).await.unwrap();
    let (b, _) = customer(&mut conn).await.unwrap();
    let (c, _) = customer(&mut conn).await.unwrap();
    // Inserted newest first: the order comes from the vintage.
    let newer = add(&mut conn, "verra", &verra(2, 1000, 1019, 2023), "removal")
        .await
        .unwrap();
    let older = add(&mut conn, "verra", &verra(1, 100, 109, 2021), "avoidance")
        .await
        .unwrap();

    let got = credits::allocate(
        &mut conn,
        &[demand(a, 1, 4), demand(b, 1, 10), demand(c, 1, 30)],
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(ranges(&got[0]), vec![(older.serial.clone(), 100, 103)]);
    assert_eq!(
        ranges(&got[1]),
        vec![
            (older.serial.clone(), 104, 109),
            (newer.serial.clone(), 1000, 1003)
        ]
    );
    assert_eq!(ranges(&got[2]), vec![(newer.serial.clone(), 1004, 1019)]);
    assert_eq!(
        got.iter()
            .map(|r| (r.requested, r.retired, r.newly_retired, r.shortfall))
            .collect::<Vec<_>>(),
        vec![(4, 4, 4, 0), (10, 10, 10, 0), (30, 16, 16, 14)]
    );
    assert_eq!(got[1].ranges[0].kind, "avoidance");
    assert_eq!(got[1].ranges[1].kind, "removal");
    assert_eq!(got[0].ranges[0].reason, credits::DEFAULT_REASON);
    assert_eq!(got[0].ranges[0].beneficiary_user_id, Some(a));

    // Running the same demands again retires nothing.
    let again = credits::allocate(
        &mut conn,
        &[demand(a, 1, 4), demand(b, 1, 10), demand(c, 1, 30)],
    )
    .await
    .unwrap();
    for (first, second) in got.iter().zip(&again) {
        assert_eq!(second.newly_retired, 0);
        assert_eq!(second.ranges, first.ranges);
        assert_eq!(second.demand_id, first.demand_id);
    }
    let rows: i64 = cr::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(rows, 4);

    // Another period is another demand; stock is empty: all shortfall.
    let next = credits::allocate(&mut conn, &[demand(a, 2, 3)])
        .await
        .unwrap();
    assert_eq!((next[0].retired, next[0].shortfall), (0, 3));

    // New stock tops the short demand up, once.
    let more = add(
        &mut conn,
        "gold_standard",
        &gold(30256, 110, 5463),
        "avoidance",
    )
    .await
    .unwrap();
    let topped = credits::allocate(&mut conn, &[demand(c, 1, 30)])
        .await
        .unwrap();
    assert_eq!(topped[0].newly_retired, 14);
    assert_eq!(topped[0].shortfall, 0);
    assert_eq!(
        ranges(&topped[0]),
        vec![
            (newer.serial.clone(), 1004, 1019),
            (more.serial.clone(), 110, 123)
        ]
    );
    let once_more = credits::allocate(&mut conn, &[demand(c, 1, 30)])
        .await
        .unwrap();
    assert_eq!(once_more[0].newly_retired, 0);

    let stock = credits::list_credits(&mut conn).await.unwrap();
    let by_id = |id: Uuid| stock.iter().find(|s| s.credit.id == id).unwrap();
    assert_eq!(
        (by_id(older.id).retired, by_id(older.id).available),
        (10, 0)
    );
    assert_eq!(
        (by_id(newer.id).retired, by_id(newer.id).available),
        (20, 0)
    );
    assert_eq!(
        (by_id(more.id).retired, by_id(more.id).available),
        (14, 5340)
    );

    let kinds = credits::available_by_kind(&mut conn).await.unwrap();
    let kind = |k: CreditKind| kinds.iter().find(|x| x.kind == k).unwrap().clone();
    assert_eq!(
        (
            kind(CreditKind::Avoidance).issued,
            kind(CreditKind::Avoidance).retired
        ),
        (10 + 5354, 24)
    );
    assert_eq!(kind(CreditKind::Avoidance).available, 5340);
    assert_eq!(
        (
            kind(CreditKind::Removal).issued,
            kind(CreditKind::Removal).available
        ),
        (20, 0)
    );

    let listed = credits::list_retirements(
        &mut conn,
        Some(date(2026, 1, 1)),
        Some(date(2026, 1, 31)),
        100,
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 5);
    let feb = credits::list_retirements(&mut conn, Some(date(2026, 2, 1)), None, 100)
        .await
        .unwrap();
    assert!(feb.is_empty());
    assert_eq!(
        credits::conservation_check(&mut conn).await.unwrap(),
        Vec::<String>::new()
    );

    // Retirements are records, and the database keeps units single.
    let row_id = listed[0].id;
    let changed = diesel::update(cr::table.find(row_id))
        .set(cr::unit_end.eq(200))
        .execute(&mut conn)
        .await;
    assert!(changed.is_err());
    let again_same_units = diesel::sql_query(format!(
        "INSERT INTO credit_retirements (id, credit_id, demand_id, unit_start, unit_end, units, \
         beneficiary_user_id, beneficiary_name, reason, period_from, period_to, created_by) \
         SELECT gen_random_uuid(), credit_id, demand_id, unit_start, unit_start, 1, \
         beneficiary_user_id, beneficiary_name, reason, period_from, period_to, 'test' \
         FROM credit_retirements WHERE id = '{row_id}'"
    ))
    .execute(&mut conn)
    .await;
    assert!(again_same_units.is_err(), "a unit was retired twice");
}

#[tokio::test]
async fn demands_are_checked() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let (a, _) = customer(&mut conn).await.unwrap();
    let e = credits::allocate(&mut conn, &[demand(Uuid::now_v7(), 1, 1)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_user");
    let e = credits::allocate(&mut conn, &[demand(a, 1, -1)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CreditError::Invalid {
                field: "tonnes",
                ..
            }
        ),
        "{e:?}"
    );
    let mut backwards = demand(a, 3, 1);
    backwards.period_to = date(2026, 2, 1);
    let e = credits::allocate(&mut conn, &[backwards])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CreditError::Invalid {
                field: "period_to",
                ..
            }
        ),
        "{e:?}"
    );
    let e = credits::allocate_for(&mut conn, &[demand(a, 1, 1)], " ", &admin())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CreditError::Invalid {
                field: "reason",
                ..
            }
        ),
        "{e:?}"
    );
    // Zero tonnes: recorded, nothing retired.
    let got = credits::allocate(&mut conn, &[demand(a, 1, 0)])
        .await
        .unwrap();
    assert_eq!((got[0].retired, got[0].shortfall), (0, 0));
}

#[tokio::test]
async fn eight_concurrent_allocations_never_retire_a_unit_twice() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    add(&mut conn, "verra", &verra(1, 1, 17, 2020), "avoidance")
        .await
        .unwrap();
    add(&mut conn, "verra", &verra(2, 500, 520, 2021), "removal")
        .await
        .unwrap();
    add(&mut conn, "gold_standard", &gold(30256, 1, 12), "avoidance")
        .await
        .unwrap();
    let total = 17 + 21 + 12;
    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(customer(&mut conn).await.unwrap().0);
    }
    drop(conn);

    let mut tasks = Vec::new();
    for (i, user) in users.iter().copied().enumerate() {
        let pool = db.pool();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            // Each asks twice (the same demand): 8 × 9 = 72 > 50 units.
            let mut out = Vec::new();
            for _ in 0..2 {
                let tonnes = 9 - i64::try_from(i % 2).unwrap();
                out.push(
                    credits::allocate(&mut conn, &[demand(user, 6, tonnes)])
                        .await
                        .unwrap()
                        .remove(0),
                );
            }
            out
        }));
    }
    let mut retired = 0;
    let mut shortfall = 0;
    for t in tasks {
        let runs = t.await.unwrap();
        assert!(!runs[0].ranges.is_empty() || runs[0].shortfall > 0);
        // The second run of the same demand adds nothing unless the first
        // was short and stock appeared (it does not here).
        assert_eq!(runs[1].retired, runs[0].retired);
        assert_eq!(runs[1].newly_retired, 0);
        assert_eq!(runs[0].retired + runs[0].shortfall, runs[0].requested);
        retired += runs[0].retired;
        shortfall += runs[0].shortfall;
    }
    assert_eq!(retired, total);
    assert_eq!(shortfall, 4 * 9 + 4 * 8 - total);

    let mut conn = db.conn().await.unwrap();
    let rows: Vec<(Uuid, i64, i64)> = cr::table
        .select((cr::credit_id, cr::unit_start, cr::unit_end))
        .order((cr::credit_id, cr::unit_start))
        .load(&mut conn)
        .await
        .unwrap();
    for pair in rows.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(pair[0].2 < pair[1].1, "units retired twice: {pair:?}");
        }
    }
    let units: i64 = rows.iter().map(|(_, a, b)| b - a + 1).sum();
    assert_eq!(units, total);
    assert_eq!(
        credits::conservation_check(&mut conn).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(
        credits::list_credits(&mut conn)
            .await
            .unwrap()
            .iter()
            .all(|s| s.available == 0)
    );
}
