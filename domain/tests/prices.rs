//! Reference prices against the real PostgreSQL: the newest price and its
//! staleness, the daily fixing at midnight (and that it never changes), and
//! the network figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::catalog::prices::{self, PriceError};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;

fn days_ago(n: i64) -> NaiveDate {
    (Utc::now() - Duration::days(n)).date_naive()
}

#[tokio::test]
async fn latest_is_the_newest_observation_and_current_refuses_stale_prices() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let now = Utc::now();

    // Inserted newest first: "latest" goes by observation time, not by insertion.
    prices::post_price(
        &mut conn,
        "BTC",
        dec!(97000.12),
        "test",
        now - Duration::minutes(10),
    )
    .await
    .unwrap();
    prices::post_price(
        &mut conn,
        "BTC",
        dec!(96000),
        "test",
        now - Duration::minutes(30),
    )
    .await
    .unwrap();

    let latest = prices::latest(&mut conn, "BTC").await.unwrap().unwrap();
    assert_eq!(latest.usd, dec!(97000.12));
    assert_eq!(latest.usd.to_string(), "97000.12", "normalized");
    assert_eq!(latest.source, "test");
    assert_eq!(latest.asset, "BTC");

    // Ten minutes old with a five-minute tolerance: stale.
    let err = prices::current(&mut conn, "BTC", Duration::minutes(5), now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "price_stale");
    match err {
        PriceError::Stale { asset, age_secs } => {
            assert_eq!(asset, "BTC");
            assert!((599..=601).contains(&age_secs), "{age_secs}");
        }
        other => panic!("expected Stale, got {other:?}"),
    }

    // With a fifteen-minute tolerance it is current.
    let current = prices::current(&mut conn, "BTC", Duration::minutes(15), now)
        .await
        .unwrap();
    assert_eq!(current.usd, dec!(97000.12));

    // A fresh price makes it current again.
    prices::post_price(&mut conn, "BTC", dec!(97100), "test", now)
        .await
        .unwrap();
    let current = prices::current(&mut conn, "BTC", Duration::minutes(5), now)
        .await
        .unwrap();
    assert_eq!(current.usd, dec!(97100));
}

#[tokio::test]
async fn a_coin_without_prices_is_missing() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    assert!(prices::latest(&mut conn, "LTC").await.unwrap().is_none());
    let err = prices::current(&mut conn, "LTC", Duration::minutes(5), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "price_missing");
    assert!(matches!(err, PriceError::Missing { ref asset } if asset == "LTC"));

    // Another coin's price does not count.
    prices::post_price(&mut conn, "DOGE", dec!(0.38), "test", Utc::now())
        .await
        .unwrap();
    let err = prices::current(&mut conn, "LTC", Duration::minutes(5), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "price_missing");
}

#[tokio::test]
async fn latest_all_has_one_row_per_coin() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    assert!(prices::latest_all(&mut conn).await.unwrap().is_empty());
    let now = Utc::now();
    for (coin, usd, minutes) in [
        ("BTC", dec!(1), 3),
        ("BTC", dec!(2), 1),
        ("BTC", dec!(3), 2),
        ("LTC", dec!(90), 5),
        ("ETH", dec!(3500), 4),
    ] {
        prices::post_price(
            &mut conn,
            coin,
            usd,
            "test",
            now - Duration::minutes(minutes),
        )
        .await
        .unwrap();
    }
    let all = prices::latest_all(&mut conn).await.unwrap();
    let got: Vec<(&str, Decimal)> = all.iter().map(|p| (p.asset.as_str(), p.usd)).collect();
    assert_eq!(
        got,
        vec![("BTC", dec!(2)), ("ETH", dec!(3500)), ("LTC", dec!(90))]
    );
}

#[tokio::test]
async fn fix_day_takes_the_latest_price_at_or_before_midnight() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let day = days_ago(2);
    let midnight = prices::midnight(day);
    let at = |offset: Duration| -> DateTime<Utc> { midnight + offset };

    let posts = [
        // BTC: the price exactly at midnight wins over earlier ones and
        // over every later one, however close.
        ("BTC", dec!(100), at(-Duration::hours(12))),
        ("BTC", dec!(200), at(-Duration::hours(1))),
        ("BTC", dec!(300), at(Duration::zero())),
        ("BTC", dec!(999), at(Duration::seconds(1))),
        ("BTC", dec!(998), at(Duration::hours(6))),
        // LTC (mined, not a ledger asset): one price just before midnight.
        ("LTC", dec!(91.5), at(-Duration::minutes(1))),
        // ETH: only a price more than 24 h before midnight: no fixing.
        ("ETH", dec!(3500), at(-Duration::hours(25))),
        // DOGE: only prices after midnight: no fixing.
        ("DOGE", dec!(0.4), at(Duration::minutes(1))),
        // USDT: exactly 24 h before midnight is still in the window.
        ("USDT", dec!(1.0001), at(-Duration::hours(24))),
    ];
    for (coin, usd, observed_at) in posts {
        prices::post_price(&mut conn, coin, usd, "feed-a", observed_at)
            .await
            .unwrap();
    }

    let fixings = prices::fix_day(&mut conn, day).await.unwrap();
    let got: Vec<(&str, Decimal, DateTime<Utc>)> = fixings
        .iter()
        .map(|f| (f.asset.as_str(), f.usd, f.observed_at))
        .collect();
    assert_eq!(
        got,
        vec![
            ("BTC", dec!(300), midnight),
            ("LTC", dec!(91.5), at(-Duration::minutes(1))),
            ("USDT", dec!(1.0001), at(-Duration::hours(24))),
        ]
    );
    assert!(fixings.iter().all(|f| f.day == day && f.source == "feed-a"));

    let btc = prices::fixing(&mut conn, "BTC", day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(btc.usd, dec!(300));
    assert!(
        prices::fixing(&mut conn, "ETH", day)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        prices::fixing(&mut conn, "DOGE", day)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        prices::fixing(&mut conn, "BTC", day + Duration::days(1))
            .await
            .unwrap()
            .is_none()
    );

    // A price that would now win (same instant, inserted later) and a new
    // coin do not change the fixings already made; the new coin is added.
    prices::post_price(&mut conn, "BTC", dec!(777), "feed-b", midnight)
        .await
        .unwrap();
    prices::post_price(
        &mut conn,
        "BNB",
        dec!(650),
        "feed-b",
        at(-Duration::hours(2)),
    )
    .await
    .unwrap();
    let again = prices::fix_day(&mut conn, day).await.unwrap();
    let got: Vec<(&str, Decimal, &str)> = again
        .iter()
        .map(|f| (f.asset.as_str(), f.usd, f.source.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("BNB", dec!(650), "feed-b"),
            ("BTC", dec!(300), "feed-a"),
            ("LTC", dec!(91.5), "feed-a"),
            ("USDT", dec!(1.0001), "feed-a"),
        ]
    );
    let btc_again = prices::fixing(&mut conn, "BTC", day)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(btc_again, btc, "a fixing never changes");
    assert_eq!(prices::fixings(&mut conn, day).await.unwrap(), again);

    // The next day is fixed from the prices before its own midnight.
    let next = prices::fix_day(&mut conn, day + Duration::days(1))
        .await
        .unwrap();
    let got: Vec<(&str, Decimal)> = next.iter().map(|f| (f.asset.as_str(), f.usd)).collect();
    assert_eq!(
        got,
        vec![("BTC", dec!(998)), ("DOGE", dec!(0.4))],
        "{next:?}"
    );
}

#[tokio::test]
async fn a_day_that_has_not_begun_cannot_be_fixed() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    prices::post_price(&mut conn, "BTC", dec!(1), "test", Utc::now())
        .await
        .unwrap();
    let tomorrow = (Utc::now() + Duration::days(1)).date_naive();
    let err = prices::fix_day(&mut conn, tomorrow).await.unwrap_err();
    assert!(
        matches!(err, PriceError::Invalid { field: "day", .. }),
        "{err:?}"
    );
    // Today has begun: fixing it works.
    let today = prices::fix_day(&mut conn, Utc::now().date_naive())
        .await
        .unwrap();
    assert!(
        today
            .iter()
            .all(|f| f.observed_at <= prices::midnight(Utc::now().date_naive()))
    );
}

#[tokio::test]
async fn invalid_prices_are_refused() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let now = Utc::now();
    let cases: [(&str, Decimal, &str, DateTime<Utc>, &str); 9] = [
        ("BTC", dec!(0), "test", now, "usd"),
        ("BTC", dec!(-1), "test", now, "usd"),
        ("BTC", dec!(0.0000000000001), "test", now, "usd"),
        ("BTC", dec!(1000000000000000000), "test", now, "usd"),
        ("btc", dec!(1), "test", now, "asset"),
        ("B", dec!(1), "test", now, "asset"),
        ("BTC-X", dec!(1), "test", now, "asset"),
        ("BTC", dec!(1), " ", now, "source"),
        (
            "BTC",
            dec!(1),
            "test",
            now + Duration::minutes(6),
            "observed_at",
        ),
    ];
    for (asset, usd, source, observed_at, field) in cases {
        let err = prices::post_price(&mut conn, asset, usd, source, observed_at)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_price", "{asset} {usd} {source}");
        match err {
            PriceError::Invalid { field: f, .. } => assert_eq!(f, field, "{asset} {usd}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    assert!(prices::latest(&mut conn, "BTC").await.unwrap().is_none());

    // Exactly twelve decimals, trailing zeros beyond them, and a clock a
    // little ahead are fine.
    let row = prices::post_price(&mut conn, "USDC", dec!(0.999999999999), "test", now)
        .await
        .unwrap();
    assert_eq!(row.usd, dec!(0.999999999999));
    let row = prices::post_price(&mut conn, "USDC", dec!(1.00000000000000), "test", now)
        .await
        .unwrap();
    assert_eq!(row.usd.to_string(), "1");
    prices::post_price(
        &mut conn,
        "USDC",
        dec!(1),
        "test",
        now + Duration::minutes(4),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn network_stats_keep_the_newest_figures() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    assert!(
        prices::network_stats(&mut conn, "BTC")
            .await
            .unwrap()
            .is_none()
    );
    let now = Utc::now();
    let stats = prices::upsert_network_stats(
        &mut conn,
        "BTC",
        dec!(109780000000000.5),
        dec!(3.125),
        dec!(0.02),
        "test",
        now - Duration::minutes(10),
    )
    .await
    .unwrap();
    assert_eq!(stats.difficulty, dec!(109780000000000.5));
    assert_eq!(stats.block_reward, dec!(3.125));

    let newer = prices::upsert_network_stats(
        &mut conn,
        "BTC",
        dec!(110000000000000),
        dec!(3.125),
        dec!(0.03),
        "test-2",
        now,
    )
    .await
    .unwrap();
    assert_eq!(newer.difficulty, dec!(110000000000000));
    assert_eq!(newer.source, "test-2");

    // An older report does not roll the figures back.
    let kept = prices::upsert_network_stats(
        &mut conn,
        "BTC",
        dec!(1),
        dec!(1),
        dec!(0),
        "late",
        now - Duration::hours(1),
    )
    .await
    .unwrap();
    assert_eq!(kept, newer);
    assert_eq!(
        prices::network_stats(&mut conn, "BTC").await.unwrap(),
        Some(newer)
    );

    for (difficulty, reward, fees, field) in [
        (dec!(0), dec!(1), dec!(0), "difficulty"),
        (dec!(1.0000001), dec!(1), dec!(0), "difficulty"),
        (dec!(1), dec!(-1), dec!(0), "block_reward"),
        (dec!(1), dec!(1), dec!(-0.1), "fees_per_block"),
    ] {
        let err =
            prices::upsert_network_stats(&mut conn, "LTC", difficulty, reward, fees, "t", now)
                .await
                .unwrap_err();
        assert!(
            matches!(err, PriceError::Invalid { field: f, .. } if f == field),
            "{err:?}"
        );
    }
}
