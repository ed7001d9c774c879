//! Pool earnings imports against the real PostgreSQL: validation (each
//! refusal names its field), one original per pool-day-coin, corrections of
//! the latest import only, the effective import, and the CSV format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Days, NaiveDate, Utc};
use domain::catalog::admin::{self, NewAlgorithm, NewFacility, NewPool};
use domain::catalog::model::Pool;
use domain::settlement::earnings::{self, EarningError, NewEarning, coin_decimals};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

async fn merged_pool(db: &TestDb, external_account: &str) -> Pool {
    let mut conn = db.conn().await.unwrap();
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
            efficiency: dec!(0.25),
            efficiency_unit: "J/MH".into(),
            pue: dec!(1.08),
            total_hashrate: dec!(50000),
            sellable_hashrate: dec!(40000),
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
            external_account: external_account.into(),
        },
    )
    .await
    .unwrap()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(n: u64) -> NaiveDate {
    today().checked_sub_days(Days::new(n)).unwrap()
}

fn earning(pool: &Pool, day: NaiveDate, coin: &str, amount: Decimal) -> NewEarning {
    NewEarning {
        pool_id: pool.id,
        day,
        coin: coin.into(),
        amount,
        delivered_hashrate: dec!(1000.5),
        difficulty: dec!(35000000.25),
        pool_tx_ids: vec!["ab01".into(), "ab02".into()],
        source: "test".into(),
        corrects: None,
    }
}

fn field_of(r: Result<(), EarningError>) -> (String, &'static str) {
    let e = r.unwrap_err();
    (e.field().unwrap().to_owned(), e.code())
}

#[tokio::test]
async fn validation_names_the_field() {
    let db = TestDb::new().await.unwrap();
    let pool = merged_pool(&db, "").await;
    let base = earning(&pool, days_ago(1), "LTC", dec!(1.5));
    let t = today();
    assert!(earnings::validate(&base, &pool, t).is_ok());
    assert_eq!(coin_decimals("LTC"), Some(8));
    assert_eq!(coin_decimals("ETH"), Some(18));
    assert_eq!(coin_decimals("USDT"), None);

    let cases: Vec<(NewEarning, &str, &str)> = vec![
        (
            NewEarning {
                coin: "BTC".into(),
                ..base.clone()
            },
            "coin",
            "coin_not_mined",
        ),
        (
            NewEarning {
                amount: dec!(-0.1),
                ..base.clone()
            },
            "amount",
            "negative",
        ),
        (
            NewEarning {
                amount: dec!(0.123456789),
                ..base.clone()
            },
            "amount",
            "too_many_decimals",
        ),
        (
            NewEarning {
                delivered_hashrate: dec!(-1),
                ..base.clone()
            },
            "delivered_hashrate",
            "negative",
        ),
        (
            NewEarning {
                delivered_hashrate: dec!(1.1234567),
                ..base.clone()
            },
            "delivered_hashrate",
            "too_many_decimals",
        ),
        (
            NewEarning {
                difficulty: Decimal::ZERO,
                ..base.clone()
            },
            "difficulty",
            "not_positive",
        ),
        (
            NewEarning {
                day: t,
                ..base.clone()
            },
            "day",
            "day_not_ended",
        ),
        (
            NewEarning {
                day: t.succ_opt().unwrap(),
                ..base.clone()
            },
            "day",
            "day_not_ended",
        ),
        (
            NewEarning {
                pool_tx_ids: vec!["ok".into(), String::new()],
                ..base.clone()
            },
            "pool_tx_ids[1]",
            "empty",
        ),
        (
            NewEarning {
                pool_tx_ids: vec!["x".repeat(129)],
                ..base.clone()
            },
            "pool_tx_ids[0]",
            "too_long",
        ),
        (
            NewEarning {
                pool_tx_ids: (0..1001).map(|i| format!("tx{i}")).collect(),
                ..base.clone()
            },
            "pool_tx_ids",
            "too_many",
        ),
        (
            NewEarning {
                pool_tx_ids: vec!["a".into(), "a".into()],
                ..base.clone()
            },
            "pool_tx_ids[1]",
            "duplicate",
        ),
    ];
    for (e, field, code) in cases {
        assert_eq!(
            field_of(earnings::validate(&e, &pool, t)),
            (field.to_owned(), code),
            "{e:?}"
        );
    }
    // Exactly the coin's decimals, zero, and 128-character ids are fine.
    for ok in [
        NewEarning {
            amount: dec!(0.12345678),
            ..base.clone()
        },
        NewEarning {
            amount: Decimal::ZERO,
            pool_tx_ids: vec![],
            ..base.clone()
        },
        NewEarning {
            pool_tx_ids: vec!["x".repeat(128)],
            ..base.clone()
        },
        NewEarning {
            amount: dec!(1.50000000000),
            ..base.clone()
        },
    ] {
        earnings::validate(&ok, &pool, t).unwrap();
    }

    // import checks too, and knows unknown pools.
    let mut conn = db.conn().await.unwrap();
    let unknown = NewEarning {
        pool_id: Uuid::now_v7(),
        ..base.clone()
    };
    let e = earnings::import(&mut conn, &unknown).await.unwrap_err();
    assert_eq!((e.field(), e.code()), (Some("pool_id"), "unknown_pool"));
    let e = earnings::import(&mut conn, &NewEarning { day: t, ..base })
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("day"));
}

#[tokio::test]
async fn one_original_then_corrections_of_the_latest_only() {
    let db = TestDb::new().await.unwrap();
    let pool = merged_pool(&db, "").await;
    let mut conn = db.conn().await.unwrap();
    let day = days_ago(2);

    assert!(
        earnings::latest_for(&mut conn, pool.id, day, "LTC")
            .await
            .unwrap()
            .is_none()
    );
    let original = earnings::import(&mut conn, &earning(&pool, day, "LTC", dec!(1.25)))
        .await
        .unwrap();
    assert_eq!(original.amount.to_string(), "1.25");
    assert_eq!(original.corrects_id, None);
    assert_eq!(original.pool_tx_ids, vec!["ab01", "ab02"]);
    // Another coin of the same day is its own import.
    earnings::import(&mut conn, &earning(&pool, day, "DOGE", dec!(800)))
        .await
        .unwrap();

    // A second original is refused.
    let e = earnings::import(&mut conn, &earning(&pool, day, "LTC", dec!(1.3)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "earning_exists");
    assert!(
        matches!(e, EarningError::Duplicate { latest, .. } if latest == original.id),
        "{e:?}"
    );

    // A correction naming it is accepted.
    let fix1 = earnings::import(
        &mut conn,
        &NewEarning {
            corrects: Some(original.id),
            ..earning(&pool, day, "LTC", dec!(1.3))
        },
    )
    .await
    .unwrap();
    assert_eq!(fix1.corrects_id, Some(original.id));
    let latest = earnings::latest_for(&mut conn, pool.id, day, "LTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.id, fix1.id);

    // Correcting the original again: already corrected.
    let e = earnings::import(
        &mut conn,
        &NewEarning {
            corrects: Some(original.id),
            ..earning(&pool, day, "LTC", dec!(1.4))
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), e.field()),
        ("already_corrected", Some("corrects"))
    );

    // The end of the chain can be corrected, and latest_for follows it.
    let fix2 = earnings::import(
        &mut conn,
        &NewEarning {
            corrects: Some(fix1.id),
            ..earning(&pool, day, "LTC", dec!(1.35))
        },
    )
    .await
    .unwrap();
    let latest = earnings::latest_for(&mut conn, pool.id, day, "LTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((latest.id, latest.amount), (fix2.id, dec!(1.35)));
    let e = earnings::import(
        &mut conn,
        &NewEarning {
            corrects: Some(fix1.id),
            ..earning(&pool, day, "LTC", dec!(9))
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "already_corrected");

    // A correction must name an import of the same pool, day and coin.
    let doge = earnings::latest_for(&mut conn, pool.id, day, "DOGE")
        .await
        .unwrap()
        .unwrap();
    let e = earnings::import(
        &mut conn,
        &NewEarning {
            corrects: Some(doge.id),
            ..earning(&pool, day, "LTC", dec!(9))
        },
    )
    .await
    .unwrap_err();
    assert_eq!((e.field(), e.code()), (Some("corrects"), "unknown_earning"));

    // The list holds all four rows; filters work.
    let all = earnings::list(&mut conn, Some(pool.id), Some(day), 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        earnings::list(&mut conn, None, Some(days_ago(5)), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[test]
fn csv_parses_and_names_row_and_column() {
    let pool = Uuid::now_v7();
    let header = "pool_id,day,coin,amount,delivered_hashrate,difficulty,pool_tx_ids";
    let text = format!(
        "{header}\r\n{pool},2026-11-24,LTC,1.25,1000.5,35000000,aa;bb\n\n{pool},2026-11-24,DOGE,800,1000.5,4000000,\n"
    );
    let rows = earnings::parse_csv(&text).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].pool_tx_ids, vec!["aa", "bb"]);
    assert_eq!(rows[0].amount, dec!(1.25));
    assert!(rows[1].pool_tx_ids.is_empty());
    assert_eq!(rows[1].corrects, None);

    // With the optional corrects column.
    let fixed = Uuid::now_v7();
    let rows = earnings::parse_csv(&format!(
        "{header},corrects\n{pool},2026-11-24,LTC,1.25,1,1,,{fixed}\n"
    ))
    .unwrap();
    assert_eq!(rows[0].corrects, Some(fixed));

    let good = format!("{pool},2026-11-24,LTC,1.25,1000.5,35000000,aa");
    let cases = [
        (
            format!("{header}\n{good}\n{good}\n{good}\n{pool},2026-11-24,LTC,1e3,1,1,"),
            "rows[3].amount",
            "column 4",
        ),
        (
            format!("{header}\n{pool},24.11.2026,LTC,1,1,1,"),
            "rows[0].day",
            "column 2",
        ),
        (
            format!("{header}\n{good}\nnot-a-uuid,2026-11-24,LTC,1,1,1,"),
            "rows[1].pool_id",
            "column 1",
        ),
        (
            format!("{header}\n{pool},2026-11-24,LTC,1,\"1\",1,"),
            "rows[0].delivered_hashrate",
            "column 5",
        ),
        (
            format!("{header}\n{pool},2026-11-24,LTC,1,1,abc,"),
            "rows[0].difficulty",
            "column 6",
        ),
        (
            format!("{header}\n{pool},2026-11-24,LTC,1,1"),
            "rows[0]",
            "5 columns",
        ),
        (format!("{header}\n"), "rows", ""),
        ("pool,day\n".to_owned(), "header", ""),
        (String::new(), "header", ""),
    ];
    for (text, field, hint) in cases {
        let e = earnings::parse_csv(&text).unwrap_err();
        assert_eq!(e.field(), Some(field), "{text}: {e}");
        assert!(e.to_string().contains(hint), "{text}: {e}");
    }
    // The line number counts the header: row 3 is line 5.
    let e = earnings::parse_csv(&format!(
        "{header}\n{good}\n{good}\n{good}\n{pool},2026-11-24,LTC,x,1,1,"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("line 5, column 4"), "{e}");

    // Validation of a parsed row names it.
    let e = EarningError::invalid("amount", "negative", "no").in_row(3);
    assert_eq!(e.field(), Some("rows[3].amount"));
}
