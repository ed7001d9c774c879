//! `GET /v1/deposits`: a customer's deposits, newest first, pending with
//! their confirmations and then credited (recorded through the same domain
//! functions the scanners call); nobody else's; only when signed in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use common::*;
use domain::custody::deposits::{self, Observed, OutputKind};
use domain::money::{Asset, Network};
use serde_json::json;

const EVM_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";

fn seen(
    to: &str,
    txid: &str,
    kind: OutputKind,
    asset: Asset,
    units: u128,
    confirmations: u32,
) -> Observed {
    Observed {
        network: Network::Ethereum,
        asset,
        txid: txid.to_owned(),
        kind,
        index: if kind == OutputKind::Token { 3 } else { 0 },
        address: to.to_owned(),
        amount_units: units,
        block_height: Some(1000),
        block_hash: Some(format!("0x{}", "ee".repeat(32))),
        confirmations,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_show_pending_then_credited_to_their_owner_only() {
    let keys = format!("ethereum={EVM_XPUB}");
    let app = spawn_app_with(
        |_| {},
        &[
            ("HASHGRID_TRUST_PROXY", "1"),
            ("HASHGRID_DEPOSIT_XPUBS", keys.as_str()),
        ],
    )
    .await;
    let client = client_from(&random_ip());
    let (_, _, alice) = customer(&app, &client).await;
    let (_, _, bob) = customer(&app, &client).await;

    let (s, empty) = call(&app, &client, "GET", "/v1/deposits", Some(&alice), None).await;
    assert_eq!(s, 200, "{empty}");
    assert_eq!(empty["items"], json!([]));

    let (s, addr) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&alice),
        Some(&json!({ "network": "ethereum" })),
    )
    .await;
    assert_eq!(s, 201, "{addr}");
    let to = addr["address"].as_str().unwrap().to_owned();

    let token_tx = format!("0x{}", "01".repeat(32));
    let eth_tx = format!("0x{}", "02".repeat(32));
    let mut conn = app.db.conn().await.unwrap();
    // 25.5 USDT (6 decimals on ethereum), then 1.5 ETH.
    deposits::observe(
        &mut conn,
        &seen(
            &to,
            &token_tx,
            OutputKind::Token,
            Asset::USDT,
            25_500_000,
            12,
        ),
    )
    .await
    .unwrap();
    deposits::observe(
        &mut conn,
        &seen(
            &to,
            &eth_tx,
            OutputKind::Native,
            Asset::ETH,
            1_500_000_000_000_000_000,
            2,
        ),
    )
    .await
    .unwrap();

    let (s, list) = call(&app, &client, "GET", "/v1/deposits", Some(&alice), None).await;
    assert_eq!(s, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    let eth = &items[0];
    assert_eq!(eth["txid"], json!(eth_tx), "newest first: {list}");
    assert_eq!(eth["state"], "pending");
    assert_eq!(eth["confirmations"], 2);
    assert_eq!(eth["required_confirmations"], 12);
    assert_eq!(eth["amount"], "1.5");
    assert_eq!(eth["asset"], "ETH");
    assert_eq!(eth["network"], "ethereum");
    assert_eq!(eth["address"], json!(to));
    assert_eq!(eth["kind"], "native");
    assert_eq!(eth["credited_at"], json!(null));
    assert_eq!(items[1]["state"], "pending");
    assert_eq!(items[1]["amount"], "25.5");
    assert_eq!(
        (items[1]["kind"].as_str(), items[1]["index"].as_i64()),
        (Some("token"), Some(3))
    );

    // Enough confirmations: credited, and on the balance.
    let credited = deposits::credit_ready(&mut conn, Network::Ethereum, 12)
        .await
        .unwrap();
    assert_eq!(credited.len(), 1);
    deposits::observe(
        &mut conn,
        &seen(
            &to,
            &eth_tx,
            OutputKind::Native,
            Asset::ETH,
            1_500_000_000_000_000_000,
            12,
        ),
    )
    .await
    .unwrap();
    deposits::credit_ready(&mut conn, Network::Ethereum, 12)
        .await
        .unwrap();
    let (s, list) = call(&app, &client, "GET", "/v1/deposits", Some(&alice), None).await;
    assert_eq!(s, 200);
    let items = list["items"].as_array().unwrap();
    for item in items {
        assert_eq!(item["state"], "credited", "{list}");
        assert!(item["credited_at"].is_string(), "{list}");
    }
    assert_eq!(items[0]["confirmations"], 12);
    let (_, balances) = call(&app, &client, "GET", "/v1/balances", Some(&alice), None).await;
    let eth_balance = balances["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == "ETH")
        .unwrap();
    assert_eq!(eth_balance["available"], "1.5", "{balances}");

    // Paging.
    let (s, one) = call(
        &app,
        &client,
        "GET",
        "/v1/deposits?limit=1",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["items"].as_array().unwrap().len(), 1);

    // Bob sees none of it; nobody without a login.
    let (s, theirs) = call(&app, &client, "GET", "/v1/deposits", Some(&bob), None).await;
    assert_eq!((s, &theirs["items"]), (200, &json!([])));
    let res = client.get(app.url("/v1/deposits")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(header(&res, "content-type"), PROBLEM_JSON);
}
