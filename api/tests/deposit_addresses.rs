//! Deposit addresses over HTTP, derived from configured account xpubs (the
//! BIP-84 / BIP-44 test vectors of the "abandon … about" mnemonic): one per
//! customer and network, the next index for the next customer, the same
//! address when asked again, concurrent requests of many customers never
//! sharing an index.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use common::*;
use serde_json::json;

const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";
const EVM_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_customer_gets_their_own_derived_address_once() {
    let keys = format!("bitcoin={ZPUB},ethereum={EVM_XPUB}");
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
    let post = |network: &str| json!({ "network": network });

    let (s, a) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&alice),
        Some(&post("bitcoin")),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    // Index 0 of the BIP-84 test vector.
    assert_eq!(a["address"], "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
    let (s, again) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&alice),
        Some(&post("bitcoin")),
    )
    .await;
    assert_eq!((s, &again["address"]), (200, &a["address"]));
    let (s, b) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&bob),
        Some(&post("bitcoin")),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(b["address"], "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g");
    let (s, e) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&alice),
        Some(&post("ethereum")),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(e["address"], "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");

    // A network without a key, and one that does not exist.
    let (s, p) = call(
        &app,
        &client,
        "POST",
        "/v1/deposit-addresses",
        Some(&alice),
        Some(&post("dogecoin")),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (409, Some("deposits_unavailable")),
        "{p}"
    );
    let res = client
        .post(app.url("/v1/deposit-addresses"))
        .bearer_auth(&alice)
        .json(&post("solana"))
        .send()
        .await
        .unwrap();
    validation(res, "network", Some("unknown_network")).await;

    let (s, list) = call(
        &app,
        &client,
        "GET",
        "/v1/deposit-addresses",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let (s, _) = call(&app, &client, "GET", "/v1/deposit-addresses", None, None).await;
    assert_eq!(s, 401);

    // Twelve customers at once: twelve distinct addresses.
    let mut tokens = Vec::new();
    for _ in 0..12 {
        tokens.push(customer(&app, &client).await.2);
    }
    let asks = tokens.iter().map(|t| {
        let client = client.clone();
        let app = &app;
        async move {
            call(
                app,
                &client,
                "POST",
                "/v1/deposit-addresses",
                Some(t),
                Some(&json!({"network": "bitcoin"})),
            )
            .await
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut addresses: Vec<String> = answers
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 201, "{v}");
            v["address"].as_str().unwrap().to_owned()
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 12);
    assert!(!addresses.contains(&"bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu".to_owned()));
}
