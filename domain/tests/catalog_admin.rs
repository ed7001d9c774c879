//! Catalog management against the real PostgreSQL: the validation of
//! facilities, pools and products (each refusal names its field), product
//! state transitions, version bumps on edits, and that editing a product
//! never changes the terms a contract was sold with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::catalog::admin::{
    self, CatalogError, FacilityPatch, NewAlgorithm, NewFacility, NewPool, NewProduct, ProductPatch,
};
use domain::catalog::model::{Facility, Pool, Product, ProductState, Terms};
use domain::identity::store;
use domain::schema::{contracts, products};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use uuid::Uuid;

/// A SHA-256 facility and pool, and a Scrypt facility and pool.
struct Fixture {
    db: TestDb,
    btc_facility: Facility,
    btc_pool: Pool,
    ltc_facility: Facility,
    ltc_pool: Pool,
}

fn new_facility(name: &str, algorithm: &str) -> NewFacility {
    NewFacility {
        name: name.to_owned(),
        country: "IS".to_owned(),
        region: "Reykjanes".to_owned(),
        miner_model: "Antminer S21".to_owned(),
        efficiency: dec!(17.5),
        efficiency_unit: "J/TH".to_owned(),
        pue: dec!(1.08),
        total_hashrate: dec!(50000),
        sellable_hashrate: dec!(40000),
        algorithm: algorithm.to_owned(),
    }
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    for (code, name, unit) in [("sha256", "SHA-256", "TH/s"), ("scrypt", "Scrypt", "MH/s")] {
        admin::create_algorithm(
            &mut conn,
            &NewAlgorithm {
                code: code.into(),
                name: name.into(),
                hashrate_unit: unit.into(),
            },
        )
        .await
        .unwrap();
    }
    let btc_facility = admin::create_facility(&mut conn, &new_facility("Keflavik 1", "sha256"))
        .await
        .unwrap();
    let ltc_facility = admin::create_facility(
        &mut conn,
        &NewFacility {
            efficiency_unit: "J/MH".into(),
            efficiency: dec!(0.25),
            ..new_facility("Keflavik 2", "scrypt")
        },
    )
    .await
    .unwrap();
    let btc_pool = admin::create_pool(
        &mut conn,
        &NewPool {
            name: "BTC main".into(),
            algorithm: "sha256".into(),
            coins: vec!["BTC".into()],
            facility_id: btc_facility.id,
            external_account: "hashgrid.worker".into(),
        },
    )
    .await
    .unwrap();
    let ltc_pool = admin::create_pool(
        &mut conn,
        &NewPool {
            name: "LTC+DOGE merged".into(),
            algorithm: "scrypt".into(),
            coins: vec!["LTC".into(), "DOGE".into()],
            facility_id: ltc_facility.id,
            external_account: String::new(),
        },
    )
    .await
    .unwrap();
    drop(conn);
    Fixture {
        db,
        btc_facility,
        btc_pool,
        ltc_facility,
        ltc_pool,
    }
}

impl Fixture {
    async fn conn(&self) -> domain::db::PooledConn {
        self.db.conn().await.unwrap()
    }

    fn new_product(&self) -> NewProduct {
        NewProduct {
            name: "Bitcoin 365".into(),
            algorithm: "sha256".into(),
            mined_coins: vec!["BTC".into()],
            pool_id: self.btc_pool.id,
            facility_id: self.btc_facility.id,
            hashrate_unit: None,
            hashrate_min: dec!(10),
            hashrate_max: dec!(1000),
            hashrate_step: dec!(5),
            price_usd_per_unit: dec!(12.5),
            duration_days: 365,
            fee_usd_per_unit_day: dec!(0.045),
            pay_assets: vec!["BTC".into(), "USDT".into()],
            payout_assets: vec!["BTC".into()],
            spread_bps: 50,
            stop_rule: "pause_extend".into(),
            stop_after_days: 3,
            inventory: dec!(5000),
        }
    }
}

/// Asserts `result` failed on `field` with `code`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, CatalogError>, field: &str, code: &str) {
    let err = result.expect_err("expected a refusal");
    assert_eq!(
        (err.field(), err.code()),
        (Some(field), code),
        "wrong refusal: {err}"
    );
    assert!(
        matches!(err, CatalogError::Invalid { .. }),
        "not a 422: {err:?}"
    );
}

async fn contract_terms(conn: &mut AsyncPgConnection, id: Uuid) -> serde_json::Value {
    contracts::table
        .find(id)
        .select(contracts::terms)
        .first(conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Algorithms, facilities and pools
// ---------------------------------------------------------------------------

#[tokio::test]
async fn algorithms_are_checked_and_unique() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let ok = NewAlgorithm {
        code: "ethash".into(),
        name: "Ethash".into(),
        hashrate_unit: "MH/s".into(),
    };
    assert_invalid(
        admin::create_algorithm(
            &mut conn,
            &NewAlgorithm {
                code: "SHA 256".into(),
                ..ok.clone()
            },
        )
        .await,
        "code",
        "invalid",
    );
    assert_invalid(
        admin::create_algorithm(
            &mut conn,
            &NewAlgorithm {
                hashrate_unit: "TH".into(),
                ..ok.clone()
            },
        )
        .await,
        "hashrate_unit",
        "invalid",
    );
    assert_invalid(
        admin::create_algorithm(
            &mut conn,
            &NewAlgorithm {
                name: "  ".into(),
                ..ok.clone()
            },
        )
        .await,
        "name",
        "required",
    );
    admin::create_algorithm(&mut conn, &ok).await.unwrap();
    let err = admin::create_algorithm(&mut conn, &ok).await.unwrap_err();
    assert!(matches!(err, CatalogError::Duplicate(_)), "{err:?}");
    assert_eq!(
        (err.field(), err.code()),
        (Some("code"), "algorithm_exists")
    );
    let codes: Vec<String> = admin::list_algorithms(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.code)
        .collect();
    assert_eq!(codes, ["ethash", "scrypt", "sha256"]);
}

#[tokio::test]
async fn facility_fields_are_validated() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let base = new_facility("Boden 1", "sha256");
    let cases: Vec<(NewFacility, &str, &str)> = vec![
        (
            NewFacility {
                country: "XX".into(),
                ..base.clone()
            },
            "country",
            "invalid",
        ),
        (
            NewFacility {
                country: "ISL".into(),
                ..base.clone()
            },
            "country",
            "invalid",
        ),
        (
            NewFacility {
                efficiency: Decimal::ZERO,
                ..base.clone()
            },
            "efficiency",
            "not_positive",
        ),
        (
            NewFacility {
                efficiency: dec!(17.1234567),
                ..base.clone()
            },
            "efficiency",
            "too_many_decimals",
        ),
        (
            NewFacility {
                efficiency_unit: "W/TH".into(),
                ..base.clone()
            },
            "efficiency_unit",
            "invalid",
        ),
        (
            NewFacility {
                pue: dec!(0.5),
                ..base.clone()
            },
            "pue",
            "out_of_range",
        ),
        (
            NewFacility {
                pue: dec!(0.999),
                ..base.clone()
            },
            "pue",
            "out_of_range",
        ),
        (
            NewFacility {
                pue: dec!(5),
                ..base.clone()
            },
            "pue",
            "out_of_range",
        ),
        (
            NewFacility {
                total_hashrate: dec!(-1),
                ..base.clone()
            },
            "total_hashrate",
            "negative",
        ),
        (
            NewFacility {
                sellable_hashrate: dec!(50000.000001),
                ..base.clone()
            },
            "sellable_hashrate",
            "exceeds_total",
        ),
        (
            NewFacility {
                name: String::new(),
                ..base.clone()
            },
            "name",
            "required",
        ),
        (
            NewFacility {
                region: "x".repeat(201),
                ..base.clone()
            },
            "region",
            "too_long",
        ),
        (
            NewFacility {
                algorithm: "x11".into(),
                ..base.clone()
            },
            "algorithm",
            "unknown",
        ),
    ];
    for (input, field, code) in cases {
        assert_invalid(admin::create_facility(&mut conn, &input).await, field, code);
    }
    // The bounds themselves are accepted; the country is stored upper-case.
    let made = admin::create_facility(
        &mut conn,
        &NewFacility {
            country: "se".into(),
            pue: dec!(1),
            sellable_hashrate: dec!(50000),
            ..base.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(made.country, "SE");
    assert_eq!(made.pue, dec!(1));
    let made = admin::create_facility(
        &mut conn,
        &NewFacility {
            name: "Boden 2".into(),
            pue: dec!(4.999),
            ..base.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(made.pue, dec!(4.999));
    // Names are unique.
    let err = admin::create_facility(&mut conn, &base).await.unwrap_err();
    assert_eq!((err.field(), err.code()), (Some("name"), "facility_exists"));
    assert_eq!(admin::list_facilities(&mut conn).await.unwrap().len(), 4);
}

#[tokio::test]
async fn facility_updates_check_the_merged_row() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let id = f.btc_facility.id;
    let change = admin::update_facility(
        &mut conn,
        id,
        &FacilityPatch {
            pue: Some(dec!(1.2)),
            region: Some("Sudurnes".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(change.changed);
    assert_eq!(change.before.pue, dec!(1.08));
    assert_eq!(
        (change.after.pue, change.after.region.as_str()),
        (dec!(1.2), "Sudurnes")
    );
    assert_eq!(change.after.name, f.btc_facility.name);

    // sellable above the stored total is refused, though only one is sent
    assert_invalid(
        admin::update_facility(
            &mut conn,
            id,
            &FacilityPatch {
                sellable_hashrate: Some(dec!(60000)),
                ..Default::default()
            },
        )
        .await,
        "sellable_hashrate",
        "exceeds_total",
    );
    assert_invalid(
        admin::update_facility(
            &mut conn,
            id,
            &FacilityPatch {
                pue: Some(dec!(0.5)),
                ..Default::default()
            },
        )
        .await,
        "pue",
        "out_of_range",
    );
    let err = admin::update_facility(
        &mut conn,
        id,
        &FacilityPatch {
            name: Some(f.ltc_facility.name.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "facility_exists");

    // Nothing new: nothing written.
    let same = admin::update_facility(&mut conn, id, &FacilityPatch::default())
        .await
        .unwrap();
    assert!(!same.changed);
    assert_eq!(same.after.pue, dec!(1.2));
    assert_eq!(admin::facility(&mut conn, id).await.unwrap().pue, dec!(1.2));

    let err = admin::update_facility(&mut conn, Uuid::now_v7(), &FacilityPatch::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
    let err = admin::facility(&mut conn, Uuid::now_v7())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_found");
}

#[tokio::test]
async fn pools_need_an_algorithm_coins_and_a_matching_facility() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let base = NewPool {
        name: "BTC backup".into(),
        algorithm: "sha256".into(),
        coins: vec!["BTC".into()],
        facility_id: f.btc_facility.id,
        external_account: String::new(),
    };
    let cases: Vec<(NewPool, &str, &str)> = vec![
        (
            NewPool {
                coins: vec![],
                ..base.clone()
            },
            "coins",
            "required",
        ),
        (
            NewPool {
                coins: vec!["BTC".into(), "btc".into()],
                ..base.clone()
            },
            "coins[1]",
            "invalid",
        ),
        (
            NewPool {
                coins: vec!["BTC".into(), "BTC".into()],
                ..base.clone()
            },
            "coins[1]",
            "duplicate",
        ),
        (
            NewPool {
                algorithm: "x11".into(),
                ..base.clone()
            },
            "algorithm",
            "unknown",
        ),
        (
            NewPool {
                facility_id: Uuid::now_v7(),
                ..base.clone()
            },
            "facility_id",
            "unknown",
        ),
        (
            NewPool {
                facility_id: f.ltc_facility.id,
                ..base.clone()
            },
            "facility_id",
            "algorithm_mismatch",
        ),
    ];
    for (input, field, code) in cases {
        assert_invalid(admin::create_pool(&mut conn, &input).await, field, code);
    }
    admin::create_pool(&mut conn, &base).await.unwrap();
    let err = admin::create_pool(&mut conn, &base).await.unwrap_err();
    assert_eq!((err.field(), err.code()), (Some("name"), "pool_exists"));
    assert_eq!(admin::list_pools(&mut conn).await.unwrap().len(), 3);
}

// ---------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------

#[tokio::test]
async fn product_fields_are_validated() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let base = f.new_product();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let cases: Vec<(NewProduct, &str, &str)> = vec![
        (
            NewProduct {
                name: " ".into(),
                ..base.clone()
            },
            "name",
            "required",
        ),
        (
            NewProduct {
                mined_coins: vec![],
                ..base.clone()
            },
            "mined_coins",
            "required",
        ),
        (
            NewProduct {
                hashrate_min: Decimal::ZERO,
                ..base.clone()
            },
            "hashrate_min",
            "not_positive",
        ),
        (
            NewProduct {
                hashrate_max: dec!(5),
                ..base.clone()
            },
            "hashrate_max",
            "below_min",
        ),
        (
            NewProduct {
                hashrate_step: Decimal::ZERO,
                ..base.clone()
            },
            "hashrate_step",
            "not_positive",
        ),
        (
            NewProduct {
                hashrate_min: dec!(12),
                ..base.clone()
            },
            "hashrate_min",
            "not_a_step",
        ),
        (
            NewProduct {
                hashrate_max: dec!(1001),
                ..base.clone()
            },
            "hashrate_max",
            "not_a_step",
        ),
        (
            NewProduct {
                hashrate_min: dec!(10.0000001),
                ..base.clone()
            },
            "hashrate_min",
            "too_many_decimals",
        ),
        (
            NewProduct {
                price_usd_per_unit: Decimal::ZERO,
                ..base.clone()
            },
            "price_usd_per_unit",
            "not_positive",
        ),
        (
            NewProduct {
                price_usd_per_unit: dec!(-3),
                ..base.clone()
            },
            "price_usd_per_unit",
            "not_positive",
        ),
        (
            NewProduct {
                duration_days: 0,
                ..base.clone()
            },
            "duration_days",
            "out_of_range",
        ),
        (
            NewProduct {
                duration_days: 3651,
                ..base.clone()
            },
            "duration_days",
            "out_of_range",
        ),
        (
            NewProduct {
                fee_usd_per_unit_day: dec!(-0.01),
                ..base.clone()
            },
            "fee_usd_per_unit_day",
            "negative",
        ),
        (
            NewProduct {
                fee_usd_per_unit_day: dec!(0.000000001),
                ..base.clone()
            },
            "fee_usd_per_unit_day",
            "too_many_decimals",
        ),
        (
            NewProduct {
                pay_assets: vec![],
                ..base.clone()
            },
            "pay_assets",
            "required",
        ),
        (
            NewProduct {
                pay_assets: s(&["BTC", "XYZ"]),
                ..base.clone()
            },
            "pay_assets[1]",
            "unknown_asset",
        ),
        (
            NewProduct {
                pay_assets: s(&["usdt"]),
                ..base.clone()
            },
            "pay_assets[0]",
            "unknown_asset",
        ),
        (
            NewProduct {
                payout_assets: s(&["BTC", "BTC"]),
                ..base.clone()
            },
            "payout_assets[1]",
            "duplicate",
        ),
        (
            NewProduct {
                payout_assets: vec![],
                ..base.clone()
            },
            "payout_assets",
            "required",
        ),
        (
            NewProduct {
                spread_bps: 1001,
                ..base.clone()
            },
            "spread_bps",
            "out_of_range",
        ),
        (
            NewProduct {
                spread_bps: -1,
                ..base.clone()
            },
            "spread_bps",
            "out_of_range",
        ),
        (
            NewProduct {
                stop_rule: "sometimes".into(),
                ..base.clone()
            },
            "stop_rule",
            "invalid",
        ),
        (
            NewProduct {
                stop_after_days: 0,
                ..base.clone()
            },
            "stop_after_days",
            "out_of_range",
        ),
        (
            NewProduct {
                inventory: dec!(-1),
                ..base.clone()
            },
            "inventory",
            "negative",
        ),
        (
            NewProduct {
                inventory: dec!(40000.5),
                ..base.clone()
            },
            "inventory",
            "exceeds_sellable",
        ),
        (
            NewProduct {
                algorithm: "x11".into(),
                ..base.clone()
            },
            "algorithm",
            "unknown",
        ),
        (
            NewProduct {
                hashrate_unit: Some("GH/s".into()),
                ..base.clone()
            },
            "hashrate_unit",
            "unit_mismatch",
        ),
        (
            NewProduct {
                pool_id: Uuid::now_v7(),
                ..base.clone()
            },
            "pool_id",
            "unknown",
        ),
        (
            NewProduct {
                pool_id: f.ltc_pool.id,
                ..base.clone()
            },
            "pool_id",
            "algorithm_mismatch",
        ),
        (
            NewProduct {
                facility_id: Uuid::now_v7(),
                ..base.clone()
            },
            "facility_id",
            "unknown",
        ),
        (
            NewProduct {
                facility_id: f.ltc_facility.id,
                ..base.clone()
            },
            "facility_id",
            "pool_mismatch",
        ),
        (
            NewProduct {
                mined_coins: s(&["BTC", "BCH"]),
                ..base.clone()
            },
            "mined_coins[1]",
            "not_mined_by_pool",
        ),
        (
            NewProduct {
                mined_coins: s(&["btc"]),
                ..base.clone()
            },
            "mined_coins[0]",
            "invalid",
        ),
    ];
    for (input, field, code) in cases {
        assert_invalid(admin::create_product(&mut conn, &input).await, field, code);
    }
    assert!(
        admin::list_products(&mut conn, None)
            .await
            .unwrap()
            .is_empty(),
        "a refused product was stored"
    );

    // The limits themselves are fine; the unit defaults to the algorithm's.
    let p = admin::create_product(
        &mut conn,
        &NewProduct {
            hashrate_min: dec!(5),
            hashrate_max: dec!(5),
            duration_days: 3650,
            fee_usd_per_unit_day: Decimal::ZERO,
            spread_bps: 1000,
            inventory: dec!(40000),
            ..base.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(p.hashrate_unit, "TH/s");
    assert_eq!(p.state(), Some(ProductState::Draft));
    assert_eq!((p.version, p.sold), (1, Decimal::ZERO));

    // Merged mining: a Scrypt product may pay one or both of the pool's coins.
    let ltc = admin::create_product(
        &mut conn,
        &NewProduct {
            name: "Litecoin + Doge 180".into(),
            algorithm: "scrypt".into(),
            mined_coins: s(&["DOGE", "LTC"]),
            pool_id: f.ltc_pool.id,
            facility_id: f.ltc_facility.id,
            hashrate_unit: Some("MH/s".into()),
            duration_days: 180,
            payout_assets: s(&["DOGE", "USDT"]),
            stop_rule: "none".into(),
            ..base.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(ltc.hashrate_unit, "MH/s");
}

#[tokio::test]
async fn product_states_follow_the_allowed_transitions() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let p = admin::create_product(&mut conn, &f.new_product())
        .await
        .unwrap();
    use ProductState as S;

    let refuse = async |conn: &mut AsyncPgConnection, next: S, from: S| {
        let err = admin::set_state(conn, p.id, next).await.unwrap_err();
        assert_eq!(
            (err.code(), err.field()),
            ("invalid_transition", Some("state"))
        );
        assert!(
            matches!(err, CatalogError::InvalidTransition { from: got, to } if got == from && to == next),
            "{err:?}"
        );
    };
    refuse(&mut conn, S::Paused, S::Draft).await;
    refuse(&mut conn, S::Draft, S::Draft).await;

    for (next, from) in [
        (S::OnSale, S::Draft),
        (S::Paused, S::OnSale),
        (S::OnSale, S::Paused),
    ] {
        let change = admin::set_state(&mut conn, p.id, next).await.unwrap();
        assert_eq!(change.before.state(), Some(from));
        assert_eq!(change.after.state(), Some(next));
        // A state is not a term: the version stays.
        assert_eq!(change.after.version, 1);
    }
    refuse(&mut conn, S::OnSale, S::OnSale).await;
    refuse(&mut conn, S::Draft, S::OnSale).await;
    let on_sale = admin::list_products(&mut conn, Some(S::OnSale))
        .await
        .unwrap();
    assert_eq!(on_sale.len(), 1);
    assert!(
        admin::list_products(&mut conn, Some(S::Draft))
            .await
            .unwrap()
            .is_empty()
    );

    admin::set_state(&mut conn, p.id, S::Retired).await.unwrap();
    for next in [S::OnSale, S::Paused, S::Draft, S::Retired] {
        refuse(&mut conn, next, S::Retired).await;
    }
    // Every state is listed when no filter is given.
    let draft = admin::create_product(
        &mut conn,
        &NewProduct {
            name: "Another".into(),
            ..f.new_product()
        },
    )
    .await
    .unwrap();
    admin::set_state(&mut conn, draft.id, S::Retired)
        .await
        .unwrap();
    assert_eq!(
        admin::list_products(&mut conn, None).await.unwrap().len(),
        2
    );
    assert_eq!(
        admin::list_products(&mut conn, Some(S::Retired))
            .await
            .unwrap()
            .len(),
        2
    );

    let err = admin::set_state(&mut conn, Uuid::now_v7(), S::OnSale)
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn product_edits_bump_the_version_and_keep_the_rules() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let p = admin::create_product(&mut conn, &f.new_product())
        .await
        .unwrap();

    let change = admin::update_product(
        &mut conn,
        p.id,
        &ProductPatch {
            price_usd_per_unit: Some(dec!(13.75)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(change.changed);
    assert_eq!(change.before.version, 1);
    assert_eq!(change.after.version, 2);
    assert!(change.after.updated_at > p.updated_at);
    assert_eq!(change.after.price_usd_per_unit, dec!(13.75));
    assert_eq!(change.after.name, p.name);

    // A patch asking for nothing new changes nothing.
    let same = admin::update_product(
        &mut conn,
        p.id,
        &ProductPatch {
            price_usd_per_unit: Some(dec!(13.750)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!same.changed);
    assert_eq!(admin::product(&mut conn, p.id).await.unwrap().version, 2);

    // The merged product is checked whole: a step the stored min is not a
    // multiple of is refused though min was not sent.
    assert_invalid(
        admin::update_product(
            &mut conn,
            p.id,
            &ProductPatch {
                hashrate_step: Some(dec!(3)),
                ..Default::default()
            },
        )
        .await,
        "hashrate_min",
        "not_a_step",
    );
    assert_invalid(
        admin::update_product(
            &mut conn,
            p.id,
            &ProductPatch {
                pool_id: Some(f.ltc_pool.id),
                ..Default::default()
            },
        )
        .await,
        "pool_id",
        "algorithm_mismatch",
    );
    assert_invalid(
        admin::update_product(
            &mut conn,
            p.id,
            &ProductPatch {
                pay_assets: Some(vec!["BTC".into(), "XRP".into()]),
                ..Default::default()
            },
        )
        .await,
        "pay_assets[1]",
        "unknown_asset",
    );

    // Inventory cannot drop below what is sold; the algorithm cannot change
    // once anything is sold.
    diesel::update(products::table.find(p.id))
        .set(products::sold.eq(dec!(1200)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_invalid(
        admin::update_product(
            &mut conn,
            p.id,
            &ProductPatch {
                inventory: Some(dec!(1000)),
                ..Default::default()
            },
        )
        .await,
        "inventory",
        "below_sold",
    );
    assert_invalid(
        admin::update_product(
            &mut conn,
            p.id,
            &ProductPatch {
                algorithm: Some("scrypt".into()),
                pool_id: Some(f.ltc_pool.id),
                facility_id: Some(f.ltc_facility.id),
                mined_coins: Some(vec!["LTC".into()]),
                hashrate_unit: Some("MH/s".into()),
                ..Default::default()
            },
        )
        .await,
        "algorithm",
        "has_sales",
    );
    let change = admin::update_product(
        &mut conn,
        p.id,
        &ProductPatch {
            inventory: Some(dec!(1200)),
            name: Some("Bitcoin 365 (last lots)".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(change.after.version, 3);
    assert_eq!(change.after.sold, dec!(1200));
    assert_eq!(change.after.remaining(), Decimal::ZERO);

    let err = admin::update_product(&mut conn, Uuid::now_v7(), &ProductPatch::default())
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn editing_a_product_leaves_sold_contracts_terms_alone() {
    let f = fixture().await;
    let mut conn = f.conn().await;
    let p: Product = admin::create_product(&mut conn, &f.new_product())
        .await
        .unwrap();
    admin::set_state(&mut conn, p.id, ProductState::OnSale)
        .await
        .unwrap();
    let sold_terms: Terms = p.terms();

    let user = store::insert_user(
        &mut conn,
        &store::NewUser {
            id: Uuid::now_v7(),
            email: &format!("buyer-{}@example.com", Uuid::new_v4().simple()),
            password_hash: "not-a-real-hash",
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    let contract_id = Uuid::now_v7();
    let starts_at = Utc::now() + Duration::days(1);
    diesel::insert_into(contracts::table)
        .values((
            contracts::id.eq(contract_id),
            contracts::user_id.eq(user.id),
            contracts::product_id.eq(p.id),
            contracts::terms.eq(serde_json::to_value(&sold_terms).unwrap()),
            contracts::hashrate.eq(dec!(100)),
            contracts::pay_asset.eq("USDT"),
            contracts::paid_amount.eq(dec!(1250)),
            contracts::payout_asset.eq("BTC"),
            contracts::starts_at.eq(starts_at),
            contracts::ends_at.eq(starts_at + Duration::days(365)),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let stored_before = contract_terms(&mut conn, contract_id).await;

    let change = admin::update_product(
        &mut conn,
        p.id,
        &ProductPatch {
            name: Some("Bitcoin 365 v2".into()),
            price_usd_per_unit: Some(dec!(15)),
            fee_usd_per_unit_day: Some(dec!(0.05)),
            duration_days: Some(180),
            stop_rule: Some("stop".into()),
            spread_bps: Some(75),
            payout_assets: Some(vec!["BTC".into(), "USDC".into()]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(change.after.version, 2);
    admin::set_state(&mut conn, p.id, ProductState::Paused)
        .await
        .unwrap();

    let stored_after = contract_terms(&mut conn, contract_id).await;
    assert_eq!(stored_after, stored_before);
    let kept: Terms = serde_json::from_value(stored_after).unwrap();
    assert_eq!(kept, sold_terms);
    assert_eq!(kept.product_version, 1);
    assert_eq!(kept.price_usd_per_unit, dec!(12.5));
    assert_eq!(kept.duration_days, 365);

    // New sales would get the new terms.
    let now_terms = admin::product(&mut conn, p.id).await.unwrap().terms();
    assert_eq!(now_terms.product_version, 2);
    assert_eq!(now_terms.price_usd_per_unit, dec!(15));
    assert_ne!(now_terms, kept);
}
