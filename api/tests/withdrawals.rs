//! Withdrawals over HTTP: every check of a request (Idempotency-Key, the
//! allow-list, address validation, minimum, precision, balance, daily limit,
//! the 24 h lock after a security change, 2FA), the hold on the balance, the
//! e-mail confirmation, cancellation, two-admin approval, rejection, the
//! customer's timeline, and races (same key, many keys) that must never
//! withdraw twice or overdraw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use chrono::{Duration, Utc};
use common::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::custody::address::NetworkKind;
use domain::custody::allowlist;
use domain::identity::roles::Role;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{asset_networks, security_events, withdrawal_addresses as wa};
use serde_json::{Value, json};
use uuid::Uuid;

const BTC_ADDR: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
const BTC_OTHER: &str = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g";

async fn fund(app: &TestApp, user: Uuid, btc: &str) {
    let mut conn = app.db.conn().await.unwrap();
    let custody = ledger::open_account(
        &mut conn,
        &Owner::Network("bitcoin".into()),
        Asset::BTC,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let account = ledger::open_account(
        &mut conn,
        &Owner::User(user),
        Asset::BTC,
        AccountKind::Customer,
    )
    .await
    .unwrap();
    let t = NewTransfer::new(
        format!("test:deposit:{}", Uuid::now_v7()),
        TransferKind::Deposit,
        custody.id,
        account.id,
        Amount::parse(btc, Asset::BTC, Sign::Positive).unwrap(),
    );
    ledger::post_batch(&mut conn, &[t.into()]).await.unwrap();
}

/// Adds `address` to the allow-list, confirms it and skips the cool-down.
async fn allow(app: &TestApp, user: Uuid, address: &str) {
    let mut conn = app.db.conn().await.unwrap();
    let row = allowlist::add(
        &mut conn,
        user,
        NetworkKind::Mainnet,
        "https://app.test",
        &allowlist::NewAddress {
            network: "bitcoin",
            address,
            label: "",
        },
    )
    .await
    .unwrap();
    diesel::update(wa::table.find(row.id))
        .set((
            wa::state.eq("confirmed"),
            wa::confirm_token_hash.eq(None::<Vec<u8>>),
            wa::confirmed_at.eq(Some(Utc::now() - Duration::hours(25))),
            wa::usable_from.eq(Some(Utc::now() - Duration::hours(1))),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn balance(app: &TestApp, client: &reqwest::Client, token: &str) -> (String, String) {
    let (status, body) = call(app, client, "GET", "/v1/balances", Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    let btc = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "BTC")
        .unwrap()
        .clone();
    (
        btc["available"].as_str().unwrap().to_owned(),
        btc["held"].as_str().unwrap().to_owned(),
    )
}

async fn withdraw(
    app: &TestApp,
    client: &reqwest::Client,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = client
        .post(app.url("/v1/withdrawals"))
        .bearer_auth(token)
        .json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

fn btc(address: &str, amount: &str) -> Value {
    json!({"asset": "BTC", "network": "bitcoin", "address": address, "amount": amount})
}

fn key() -> String {
    Uuid::new_v4().to_string()
}

async fn confirm(app: &TestApp, client: &reqwest::Client, token: &str) -> (u16, Value) {
    call(
        app,
        client,
        "POST",
        "/v1/withdrawals/confirm",
        None,
        Some(&json!({"token": token})),
    )
    .await
}

async fn reconciles(app: &TestApp) {
    let mut conn = app.db.conn().await.unwrap();
    let problems = ledger::reconcile(&mut conn).await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_is_checked_held_confirmed_approved_or_released() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let (user, email, token) = customer(&app, &client).await;
    fund(&app, user, "1").await;
    allow(&app, user, BTC_ADDR).await;

    // Refusals, each naming what is wrong; none holds anything.
    let res = withdraw(&app, &client, &token, None, &btc(BTC_ADDR, "0.05")).await;
    validation(res, "Idempotency-Key", Some("required")).await;
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_OTHER, "0.05")).await;
    validation(res, "address", Some("address_not_allowed")).await;
    let typo = BTC_ADDR.replace("306fyu", "306fyv");
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(&typo, "0.05")).await;
    validation(res, "address", Some("bad_checksum")).await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &btc("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "0.05"),
    )
    .await;
    validation(res, "address", Some("wrong_network")).await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &btc(BTC_ADDR, "0.0001"),
    )
    .await;
    validation(res, "amount", Some("below_minimum")).await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &btc(BTC_ADDR, "0.000000001"),
    )
    .await;
    validation(res, "amount", Some("too_many_decimals")).await;
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "-1")).await;
    validation(res, "amount", None).await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &json!({"asset": "BTC", "network": "ethereum", "address": BTC_ADDR, "amount": "0.05"}),
    )
    .await;
    validation(res, "network", Some("unsupported_network")).await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &json!({"asset": "USDT", "network": "tron", "address": "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7", "amount": "50"}),
    )
    .await;
    problem(res, 409, "withdrawals_paused").await;
    let res = withdraw(
        &app,
        &client,
        &token,
        Some(&key()),
        &btc(BTC_ADDR, "0.9999"),
    )
    .await;
    problem(res, 422, "insufficient_funds").await;
    assert_eq!(
        balance(&app, &client, &token).await,
        ("1".into(), "0".into())
    );

    // A request holds amount + fee at once; a replay answers the same.
    let k = key();
    let res = withdraw(&app, &client, &token, Some(&k), &btc(BTC_ADDR, "0.05")).await;
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["state"], "requested");
    assert_eq!(first["fee"], "0.0002");
    assert_eq!(first["total"], "0.0502");
    assert_eq!(
        balance(&app, &client, &token).await,
        ("0.9498".into(), "0.0502".into())
    );
    let res = withdraw(&app, &client, &token, Some(&k), &btc(BTC_ADDR, "0.05")).await;
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "Idempotent-Replayed"), "true");
    let replay: Value = res.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    let res = withdraw(&app, &client, &token, Some(&k), &btc(BTC_ADDR, "0.06")).await;
    problem(res, 422, "idempotency_key_reused").await;
    assert_eq!(
        balance(&app, &client, &token).await,
        ("0.9498".into(), "0.0502".into())
    );

    // The e-mailed link confirms once; under the threshold that approves it.
    let link = mailed_token(&app, &email, "withdrawal_confirm").await;
    let (status, body) = confirm(&app, &client, &link).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "approved");
    let (status, body) = confirm(&app, &client, &link).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_or_expired_token"))
    );

    // Cancelling releases the hold, once.
    let id = first["id"].as_str().unwrap();
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &format!("/v1/withdrawals/{id}/cancel"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(
        balance(&app, &client, &token).await,
        ("1".into(), "0".into())
    );
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &format!("/v1/withdrawals/{id}/cancel"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("invalid_state"))
    );

    // Above the threshold: confirmed, then two different admins.
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.5")).await;
    assert_eq!(res.status(), 201);
    let big: Value = res.json().await.unwrap();
    assert_eq!(big["needs_two_approvals"], true);
    let big_id = big["id"].as_str().unwrap().to_owned();
    let (status, body) = confirm(
        &app,
        &client,
        &mailed_token(&app, &email, "withdrawal_confirm").await,
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("confirmed")),
        "{body}"
    );
    let admin_a = staff(&app, &client, Role::Finance).await;
    let admin_b = staff(&app, &client, Role::Compliance).await;
    let support = staff(&app, &client, Role::Support).await;
    let (status, queue) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/withdrawals?state=confirmed",
        Some(&admin_a),
        None,
    )
    .await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == big["id"])
    );
    let approve = format!("/admin/v1/withdrawals/{big_id}/approve");
    let (status, _) = call(&app, &client, "POST", &approve, Some(&support), None).await;
    assert_eq!(status, 403, "support may not approve");
    let (status, _) = call(&app, &client, "POST", &approve, Some(&token), None).await;
    assert_eq!(status, 403, "a customer token is not an admin's");
    let (status, body) = call(&app, &client, "POST", &approve, Some(&admin_a), None).await;
    assert_eq!(
        (status, body["state"].as_str(), body["approvals"].as_u64()),
        (200, Some("confirmed"), Some(1)),
        "{body}"
    );
    let (status, body) = call(&app, &client, "POST", &approve, Some(&admin_a), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("same_approver"))
    );
    let (status, body) = call(&app, &client, "POST", &approve, Some(&admin_b), None).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("approved")),
        "{body}"
    );
    assert_eq!(body["approved_by"].as_array().unwrap().len(), 2);

    // The customer sees every step; another customer sees nothing.
    let (status, body) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/withdrawals/{big_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let steps: Vec<(String, String)> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("request", "user"),
            ("confirm", "user"),
            ("approve", "admin"),
            ("approve", "admin")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let (_, _, other) = customer(&app, &client).await;
    let (status, _) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/withdrawals/{big_id}"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &client,
        "POST",
        &format!("/v1/withdrawals/{big_id}/cancel"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, list) = call(&app, &client, "GET", "/v1/withdrawals", Some(&token), None).await;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 2));

    // The sender could not pay it (hot wallet short): the report shows it.
    {
        use domain::schema::withdrawals as w;
        let mut conn = app.db.conn().await.unwrap();
        diesel::update(w::table.find(big_id.parse::<Uuid>().unwrap()))
            .set(w::waiting_reason.eq(Some("hot wallet holds 0.1 BTC, needs 0.5")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (status, report) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/withdrawals/waiting",
        Some(&admin_b),
        None,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["waiting"][0]["id"], big["id"]);
    assert_eq!(
        report["waiting"][0]["waiting_reason"],
        "hot wallet holds 0.1 BTC, needs 0.5"
    );
    assert_eq!(
        report["totals"],
        json!([{"asset": "BTC", "network": "bitcoin", "count": 1, "amount": "0.5"}])
    );

    // The daily limit counts live withdrawals (not the cancelled one).
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::update(asset_networks::table.filter(asset_networks::asset.eq("BTC")))
            .set(asset_networks::daily_limit.eq("0.6".parse::<rust_decimal::Decimal>().unwrap()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.1")).await;
    validation(res, "amount", Some("daily_limit_exceeded")).await;

    // A rejection releases the hold and tells the customer why.
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.05")).await;
    let small: Value = res.json().await.unwrap();
    let small_id = small["id"].as_str().unwrap();
    let reject = format!("/admin/v1/withdrawals/{small_id}/reject");
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &reject,
        Some(&admin_a),
        Some(&json!({"reason": ""})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &reject,
        Some(&admin_a),
        Some(&json!({"reason": "address flagged"})),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str(), body["reason"].as_str()),
        (200, Some("rejected"), Some("address flagged")),
        "{body}"
    );
    assert_eq!(
        balance(&app, &client, &token).await,
        ("0.4998".into(), "0.5002".into())
    );

    // After a security change: no withdrawal for 24 hours.
    {
        let mut conn = app.db.conn().await.unwrap();
        domain::identity::store::record_security_event(
            &mut conn,
            user,
            "password_changed",
            "203.0.113.9",
            true,
        )
        .await
        .unwrap();
    }
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.01")).await;
    problem(res, 403, "withdrawals_locked").await;

    reconciles(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_factor_on_a_withdrawal_needs_a_fresh_code() {
    use domain::identity::totp::current_code;
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let (user, _, token) = customer(&app, &client).await;
    fund(&app, user, "1").await;
    allow(&app, user, BTC_ADDR).await;
    let (status, enrolment) = call(&app, &client, "POST", "/v1/me/2fa", Some(&token), None).await;
    assert_eq!(status, 201, "{enrolment}");
    let secret = totp_rs::Secret::try_from_base32(enrolment["secret"].as_str().unwrap())
        .unwrap()
        .as_bytes()
        .to_vec();
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    let (status, body) = call(
        &app,
        &client,
        "POST",
        "/v1/me/2fa/confirm",
        Some(&token),
        Some(&json!({"code": current_code(&secret, now)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Turning 2FA on is a security change: withdrawals wait 24 hours.
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.01")).await;
    problem(res, 403, "withdrawals_locked").await;
    {
        let mut conn = app.db.conn().await.unwrap();
        diesel::update(security_events::table.filter(security_events::user_id.eq(user)))
            .set(
                security_events::withdrawals_locked_until
                    .eq(Some(Utc::now() - Duration::seconds(1))),
            )
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let res = withdraw(&app, &client, &token, Some(&key()), &btc(BTC_ADDR, "0.01")).await;
    problem(res, 403, "second_factor_required").await;
    let mut body = btc(BTC_ADDR, "0.01");
    body["totp_code"] = json!("000000");
    let res = withdraw(&app, &client, &token, Some(&key()), &body).await;
    problem(res, 401, "invalid_second_factor").await;
    body["totp_code"] = json!(current_code(&secret, now + 30));
    let res = withdraw(&app, &client, &token, Some(&key()), &body).await;
    assert_eq!(res.status(), 201);
    // The same code does not work twice.
    let res = withdraw(&app, &client, &token, Some(&key()), &body).await;
    problem(res, 401, "invalid_second_factor").await;
    assert_eq!(
        balance(&app, &client, &token).await,
        ("0.9898".into(), "0.0102".into())
    );
    reconciles(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_requests_never_withdraw_twice_or_overdraw() {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let (user, _, token) = customer(&app, &client).await;
    fund(&app, user, "0.31").await;
    allow(&app, user, BTC_ADDR).await;

    // One key sent eight times at once: one withdrawal.
    let k = key();
    let one = btc(BTC_ADDR, "0.1");
    let same =
        futures::future::join_all((0..8).map(|_| withdraw(&app, &client, &token, Some(&k), &one)))
            .await;
    let mut ids = Vec::new();
    for res in same {
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one withdrawal for one key");

    // Ten keys at once for 0.1 + 0.0002 each, 0.2098 left: exactly two more.
    let many = futures::future::join_all((0..10).map(|_| {
        let k = key();
        let (app, client, token) = (&app, &client, &token);
        async move {
            withdraw(app, client, token, Some(&k), &btc(BTC_ADDR, "0.1"))
                .await
                .status()
                .as_u16()
        }
    }))
    .await;
    assert_eq!(many.iter().filter(|s| **s == 201).count(), 2, "{many:?}");
    assert_eq!(many.iter().filter(|s| **s == 422).count(), 8, "{many:?}");
    assert_eq!(
        balance(&app, &client, &token).await,
        ("0.0094".into(), "0.3006".into())
    );
    reconciles(&app).await;
}
