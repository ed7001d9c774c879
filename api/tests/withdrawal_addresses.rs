//! The withdrawal allow-list over HTTP: validation naming `address`,
//! confirmation by the e-mailed link (once, by token), the 24-hour
//! cool-down, duplicates, removal, and another customer's view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::custody::address::NetworkKind;
use domain::custody::allowlist;
use domain::money::Network;
use serde_json::json;

const BTC: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
// EIP-55 example address, sent all lower-case.
const ETH_LOWER: &str = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
const ETH_CHECKSUMMED: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_is_validated_confirmed_by_mail_and_usable_a_day_later() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let (user, email, token) = customer(&app, &client).await;
    let (_, _, other) = customer(&app, &client).await;
    let add = |network: &str, address: &str| {
        let asset = if network == "bitcoin" { "BTC" } else { "ETH" };
        json!({"asset": asset, "network": network, "address": address, "label": "cold"})
    };

    // A typo is a 422 that names the field and the reason.
    let typo = BTC.replace("306fyu", "306fyv");
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&add("bitcoin", &typo))
        .send()
        .await
        .unwrap();
    validation(res, "address", Some("bad_checksum")).await;
    // A testnet address on our mainnet platform.
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&add(
            "bitcoin",
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
        ))
        .send()
        .await
        .unwrap();
    validation(res, "address", Some("wrong_network")).await;
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&add("solana", BTC))
        .send()
        .await
        .unwrap();
    validation(res, "network", Some("unknown_network")).await;
    // The asset may be named (the documented request shape); it must fit the network.
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&json!({"asset": "DOGE", "network": "bitcoin", "address": BTC}))
        .send()
        .await
        .unwrap();
    validation(res, "asset", Some("unsupported_network")).await;
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&json!({"asset": "XRP", "network": "bitcoin", "address": BTC}))
        .send()
        .await
        .unwrap();
    validation(res, "asset", Some("unknown_asset")).await;
    let res = client
        .post(app.url("/v1/withdrawal-addresses"))
        .bearer_auth(&token)
        .json(&add("bitcoin", &format!("{BTC}\n")))
        .send()
        .await
        .unwrap();
    validation(res, "address", Some("surrounding_whitespace")).await;

    // A good one is pending, normalised, and mailed.
    let (s, eth) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses",
        Some(&token),
        Some(&add("ethereum", ETH_LOWER)),
    )
    .await;
    assert_eq!(s, 201, "{eth}");
    assert_eq!(eth["state"], "pending");
    assert_eq!(eth["address"], ETH_CHECKSUMMED);
    assert!(eth["usable_from"].is_null());
    // The same address again (in another case) is refused.
    let (s, dup) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses",
        Some(&token),
        Some(&add("ethereum", ETH_CHECKSUMMED)),
    )
    .await;
    assert_eq!(
        (s, dup["code"].as_str()),
        (409, Some("address_exists")),
        "{dup}"
    );

    // Confirmed by the token from the e-mail, once; no login needed.
    let mail_token = mailed_token(&app, &email, "withdrawal_address_confirm").await;
    let (s, bad) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses/confirm",
        None,
        Some(&json!({"token": "nope"})),
    )
    .await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (400, Some("invalid_or_expired_token"))
    );
    let (s, confirmed) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses/confirm",
        None,
        Some(&json!({"token": mail_token})),
    )
    .await;
    assert_eq!(s, 200, "{confirmed}");
    assert_eq!(confirmed["state"], "confirmed");
    let at: DateTime<Utc> = confirmed["confirmed_at"].as_str().unwrap().parse().unwrap();
    let usable: DateTime<Utc> = confirmed["usable_from"].as_str().unwrap().parse().unwrap();
    assert_eq!(usable - at, Duration::hours(24));
    let (s, _) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses/confirm",
        None,
        Some(&json!({"token": mail_token})),
    )
    .await;
    assert_eq!(s, 400, "a link works once");

    // Not usable during the cool-down; usable once it has passed.
    let mut conn = app.db.conn().await.unwrap();
    let now_usable = allowlist::usable(
        &mut conn,
        user,
        NetworkKind::Mainnet,
        Network::Ethereum,
        ETH_LOWER,
    )
    .await
    .unwrap();
    assert!(now_usable.is_none());
    {
        use domain::schema::withdrawal_addresses as wa;
        diesel::update(wa::table.filter(wa::user_id.eq(user)))
            .set(wa::usable_from.eq(Some(Utc::now() - Duration::seconds(1))))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let later = allowlist::usable(
        &mut conn,
        user,
        NetworkKind::Mainnet,
        Network::Ethereum,
        ETH_CHECKSUMMED,
    )
    .await
    .unwrap()
    .expect("usable after the cool-down");
    assert_eq!(later.address, ETH_CHECKSUMMED);

    // Listed for its owner only; another customer cannot remove it.
    let (s, list) = call(
        &app,
        &client,
        "GET",
        "/v1/withdrawal-addresses",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, theirs) = call(
        &app,
        &client,
        "GET",
        "/v1/withdrawal-addresses",
        Some(&other),
        None,
    )
    .await;
    assert!(theirs["items"].as_array().unwrap().is_empty());
    let id = eth["id"].as_str().unwrap();
    let path = format!("/v1/withdrawal-addresses/{id}");
    let (s, _) = call(&app, &client, "DELETE", &path, Some(&other), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, &client, "DELETE", &path, Some(&token), None).await;
    assert_eq!(s, 204);
    let (_, list) = call(
        &app,
        &client,
        "GET",
        "/v1/withdrawal-addresses",
        Some(&token),
        None,
    )
    .await;
    assert!(list["items"].as_array().unwrap().is_empty());
    assert!(
        allowlist::usable(
            &mut conn,
            user,
            NetworkKind::Mainnet,
            Network::Ethereum,
            ETH_LOWER
        )
        .await
        .unwrap()
        .is_none(),
        "a removed address is not usable"
    );
    // Removed, it can be added again (and must be confirmed again).
    let (s, again) = call(
        &app,
        &client,
        "POST",
        "/v1/withdrawal-addresses",
        Some(&token),
        Some(&add("ethereum", ETH_LOWER)),
    )
    .await;
    assert_eq!((s, again["state"].as_str()), (201, Some("pending")));
    // Without a login nothing is listed.
    let (s, _) = call(&app, &client, "GET", "/v1/withdrawal-addresses", None, None).await;
    assert_eq!(s, 401);
}
