//! Settlement over HTTP: an import by finance, the day run (and re-run),
//! the customer's per-day earnings and the tax statement as CSV.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use chrono::Utc;
use common::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::identity::roles::Role;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{contracts, price_fixings, products};
use rust_decimal::Decimal;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_day_shows_in_earnings_and_statements() {
    let app = spawn_app_with(|_| {}, &[("HASHGRID_TRUST_PROXY", "1")]).await;
    let client = client_from(&random_ip());
    let (user, _, token) = customer(&app, &client).await;
    let (_, _, other) = customer(&app, &client).await;
    let mut conn = app.db.conn().await.unwrap();
    domain::seed::platform_accounts(&mut conn).await.unwrap();
    domain::seed::demo_catalog(&mut conn).await.unwrap();
    let bank = ledger::open_account(
        &mut conn,
        &Owner::Network("t".into()),
        Asset::USDT,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let acc = ledger::open_account(
        &mut conn,
        &Owner::User(user),
        Asset::USDT,
        AccountKind::Customer,
    )
    .await
    .unwrap();
    let amount = Amount::parse("100000", Asset::USDT, Sign::Positive).unwrap();
    ledger::post_batch(
        &mut conn,
        &[NewTransfer::new("fund", TransferKind::Deposit, bank.id, acc.id, amount).into()],
    )
    .await
    .unwrap();
    let (product, pool): (uuid::Uuid, uuid::Uuid) = products::table
        .filter(products::name.like("BTC 180 days%"))
        .select((products::id, products::pool_id))
        .first(&mut conn)
        .await
        .unwrap();

    let (s, quote) = call(
        &app,
        &client,
        "POST",
        "/v1/quotes",
        Some(&token),
        Some(&json!({"product_id": product, "hashrate": "100", "pay_asset": "USDT"})),
    )
    .await;
    assert_eq!(s, 201, "{quote}");
    let (s, order) = call(
        &app,
        &client,
        "POST",
        "/v1/orders",
        Some(&token),
        Some(&json!({"quote_id": quote["id"]})),
    )
    .await;
    assert_eq!(s, 201, "{order}");
    let contract = order["contract_id"].as_str().unwrap().to_owned();
    // The contract has been running for a few days; yesterday ended.
    let day = (Utc::now() - chrono::Duration::days(1)).date_naive();
    diesel::update(contracts::table)
        .set((
            contracts::starts_at
                .eq(day.and_hms_opt(0, 0, 0).unwrap().and_utc() - chrono::Duration::days(2)),
            contracts::state.eq("active"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    for (asset, usd) in [("BTC", "97000"), ("USDT", "1")] {
        diesel::insert_into(price_fixings::table)
            .values((
                price_fixings::asset.eq(asset),
                price_fixings::day.eq(day),
                price_fixings::usd.eq(usd.parse::<Decimal>().unwrap()),
                price_fixings::source.eq("test fixing"),
                price_fixings::observed_at.eq(Utc::now()),
            ))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let finance = staff(&app, &client, Role::Finance).await;
    let import = json!({
        "pool_id": pool, "day": day, "coin": "BTC", "amount": "0.00007",
        "delivered_hashrate": "100", "difficulty": "102289407543323", "pool_tx_ids": ["txid-1"]
    });
    let (s, body) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/pool-earnings",
        Some(&finance),
        Some(&import),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let path = format!("/admin/v1/settlements/{day}/run");
    let (s, run) = call(&app, &client, "POST", &path, Some(&finance), None).await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["settlements"].as_array().unwrap().len(), 1);
    let (s, again) = call(&app, &client, "POST", &path, Some(&finance), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        again["settlements"][0]["id"], run["settlements"][0]["id"],
        "a re-run changes nothing"
    );

    let (s, earnings) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract}/earnings"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{earnings}");
    let d = &earnings["items"][0];
    let dec = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    assert_eq!(dec(&d["gross"]), dec(&d["net"]) + dec(&d["fee"]));
    assert_eq!(d["payout_asset"], "BTC");
    assert_eq!(dec(&d["delivered_ratio"]), Decimal::ONE);
    let (s, _) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract}/earnings"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!(s, 404);

    let res = client
        .get(app.url(&format!("/v1/statements?from={day}&to={day}&format=csv")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "date,contract_id,asset,amount,usd_value,usd_source,mined_coin,fee,conversion_rate"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(
        lines[1].starts_with(&format!("{day},{contract},BTC,")),
        "{csv}"
    );
    assert!(lines[1].contains("test fixing"), "{csv}");
    let (s, _) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/statements?from={day}&to=2000-01-01"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 422);
    let (s, list) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/settlements?day={day}"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // The pool corrects the day upwards: a re-run settles the correction,
    // the earnings page and the statement show the corrected day once.
    let before = dec(&d["payout_amount"]);
    let mut correction = import.clone();
    correction["amount"] = json!("0.00009");
    correction["corrects"] = body["items"][0]["id"].clone();
    let (s, fixed) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/pool-earnings",
        Some(&finance),
        Some(&correction),
    )
    .await;
    assert_eq!(s, 201, "{fixed}");
    let (s, run) = call(&app, &client, "POST", &path, Some(&finance), None).await;
    assert_eq!(s, 200, "{run}");
    let (s, list) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/settlements?day={day}"),
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let ids: Vec<&serde_json::Value> = items.iter().map(|i| &i["id"]).collect();
    assert!(
        items
            .iter()
            .any(|i| i["corrects_id"].is_string() && ids.contains(&&i["corrects_id"])),
        "{list}"
    );
    let (s, earnings) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/contracts/{contract}/earnings"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let days = earnings["items"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{earnings}");
    assert!(dec(&days[0]["payout_amount"]) > before, "{earnings}");
    let csv = client
        .get(app.url(&format!("/v1/statements?from={day}&to={day}&format=csv")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_list_every_asset() {
    let app = spawn_app_with(|_| {}, &[("HASHGRID_TRUST_PROXY", "1")]).await;
    let client = client_from(&random_ip());
    let (user, _, token) = customer(&app, &client).await;
    let mut conn = app.db.conn().await.unwrap();
    let bank = ledger::open_account(
        &mut conn,
        &Owner::Network("t".into()),
        Asset::USDT,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let acc = ledger::open_account(
        &mut conn,
        &Owner::User(user),
        Asset::USDT,
        AccountKind::Customer,
    )
    .await
    .unwrap();
    let amount = Amount::parse("1000.5", Asset::USDT, Sign::Positive).unwrap();
    ledger::post_batch(
        &mut conn,
        &[NewTransfer::new("fund", TransferKind::Deposit, bank.id, acc.id, amount).into()],
    )
    .await
    .unwrap();
    let hold = NewTransfer::new(
        "hold",
        TransferKind::WithdrawalHold,
        acc.id,
        bank.id,
        Amount::parse("0.5", Asset::USDT, Sign::Positive).unwrap(),
    )
    .pending();
    ledger::post_batch(&mut conn, &[hold.into()]).await.unwrap();
    let (s, body) = call(&app, &client, "GET", "/v1/balances", Some(&token), None).await;
    assert_eq!(s, 200, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    let usdt = items.iter().find(|i| i["asset"] == "USDT").unwrap();
    assert_eq!(
        (usdt["available"].as_str(), usdt["held"].as_str()),
        (Some("1000"), Some("0.5"))
    );
    let btc = items.iter().find(|i| i["asset"] == "BTC").unwrap();
    assert_eq!(btc["available"], "0");
    let (s, _) = call(&app, &client, "GET", "/v1/balances", None, None).await;
    assert_eq!(s, 401);
    // The ledger lists both movements, newest first, with their direction; pages by cursor.
    let (s, page) = call(
        &app,
        &client,
        "GET",
        "/v1/ledger?limit=1",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"][0]["kind"], "withdrawal_hold");
    assert_eq!(page["items"][0]["direction"], "debit");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, next) = call(
        &app,
        &client,
        "GET",
        &format!("/v1/ledger?limit=1&cursor={cursor}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(next["items"][0]["kind"], "deposit");
    assert_eq!(next["items"][0]["direction"], "credit");
    assert_eq!(next["items"][0]["amount"], "1000.5");
}
