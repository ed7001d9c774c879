//! Custody end to end on real nodes: anvil for ethereum (chain id 31337)
//! and, with chain id 97, for bsc; a test ERC-20 standing for a stablecoin;
//! litecoind in regtest behind the Bitcoin-Core-RPC adapter for the
//! `bitcoin` network. Withdrawals are requested and confirmed through the
//! domain, sent by the production sender, and followed to completion; the
//! ledger reconciles after each test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::custody::withdrawal::State;
use domain::custody::withdrawals;
use domain::ledger::{self, AccountKind, Owner};
use domain::money::{Asset, Network};
use domain::schema::withdrawals as w;
use rust_decimal::Decimal;
use testkit::TestDb;
use testkit::anvil::{Anvil, DEV_ADDRESSES, DEV_PRIVATE_KEYS};
use testkit::custody::*;
use testkit::litecoind::{Litecoind, PAYER};
use workers::custody::config::{BitcoinNode, EvmNode};
use workers::custody::withdraw::{Sender, Step};

fn evm_node(network: Network, anvil: &Anvil, tokens: &[(Asset, &str)]) -> EvmNode {
    EvmNode {
        network,
        url: anvil.url().to_owned(),
        hot_key: Some(DEV_PRIVATE_KEYS[0].to_owned()),
        tokens: tokens
            .iter()
            .map(|(a, t)| (*a, workers::chain::evm::checksum_address(t).unwrap()))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn state_of(db: &TestDb, id: uuid::Uuid) -> (String, Option<String>, Option<String>) {
    let mut conn = db.conn().await.unwrap();
    w::table
        .find(id)
        .select((w::state, w::waiting_reason, w::reason))
        .first(&mut conn)
        .await
        .unwrap()
}

async fn available(db: &TestDb, user: uuid::Uuid, asset: Asset) -> Decimal {
    let mut conn = db.conn().await.unwrap();
    ledger::account_by_key(&mut conn, &Owner::User(user), asset, AccountKind::Customer)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.available())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eth_withdrawal_is_broadcast_then_completed_after_confirmations() {
    let db = TestDb::new().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "ethereum", 3).await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::ETH, "ethereum", "2")
        .await
        .unwrap();
    let to = random_evm_address();
    allow(&mut conn, user, "ethereum", &to).await.unwrap();
    let id = approved_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "0.25")
        .await
        .unwrap();
    assert_eq!(
        available(&db, user, Asset::ETH).await,
        "1.749".parse::<Decimal>().unwrap()
    );

    let sender = Sender::evm(&evm_node(Network::Ethereum, &anvil, &[]), "e2e")
        .await
        .unwrap()
        .unwrap();
    // One pass signs, stores, sends and marks; anvil mines it at once.
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Moved(State::Broadcast))]);
    // anvil mines at once, but indexes the receipt a moment later.
    let txid = withdrawals::get(&mut conn, id).await.unwrap().txid.unwrap();
    anvil.wait_receipt(&txid).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Confirming(1))]);
    anvil.mine(2).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Moved(State::Completed))]);
    assert!(
        sender.run_once(&db.pool()).await.unwrap().is_empty(),
        "nothing left to do"
    );

    assert_eq!(anvil.balance(&to).await.unwrap(), 250_000_000_000_000_000);
    let w = withdrawals::get(&mut conn, id).await.unwrap();
    let receipt = anvil
        .wait_receipt(w.txid.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(w.nonce, Some(0));
    // The customer paid amount + fee once; nothing is held any more.
    let account = ledger::account_by_key(
        &mut conn,
        &Owner::User(user),
        Asset::ETH,
        AccountKind::Customer,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(account.debits_pending, Decimal::ZERO);
    assert_eq!(account.available(), "1.749".parse::<Decimal>().unwrap());
    let timeline: Vec<String> = withdrawals::timeline(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(
        timeline,
        ["request", "confirm", "sign", "broadcast", "complete"]
    );
    reconciles(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stablecoin_withdrawals_on_a_second_chain_standing_for_bsc_and_a_revert_releases_the_hold()
{
    let db = TestDb::new().await.unwrap();
    let bsc = Anvil::start(97).await.unwrap();
    let hot = DEV_ADDRESSES[0];
    // USDT on BSC has 18 decimals; the hot wallet holds 100.
    let token = bsc
        .deploy_erc20("Tether USD", "USDT", 18, hot, 100 * 10u128.pow(18))
        .await
        .unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "bsc", 2).await.unwrap();
    policy(&mut conn, "USDT", "bsc", "0.5", "1").await.unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::USDT, "bsc", "500")
        .await
        .unwrap();
    let (a, b, c) = (
        random_evm_address(),
        random_evm_address(),
        random_evm_address(),
    );
    for addr in [&a, &b, &c] {
        allow(&mut conn, user, "bsc", addr).await.unwrap();
    }
    let sender = Sender::evm(
        &evm_node(Network::Bsc, &bsc, &[(Asset::USDT, &token)]),
        "e2e",
    )
    .await
    .unwrap()
    .unwrap();

    let first = approved_withdrawal(&mut conn, user, &email, "USDT", "bsc", &a, "25")
        .await
        .unwrap();
    sender.run_once(&db.pool()).await.unwrap();
    let txid = withdrawals::get(&mut conn, first)
        .await
        .unwrap()
        .txid
        .unwrap();
    bsc.wait_receipt(&txid).await.unwrap();
    bsc.mine(1).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(first, Step::Moved(State::Completed))]);
    assert_eq!(
        bsc.erc20_balance(&token, &a).await.unwrap(),
        25 * 10u128.pow(18)
    );

    // Two withdrawals of 60 signed while the hot wallet still holds 75: both
    // pass the balance check, both are sent, the second reverts on chain
    // (receipt status 0): it fails and its hold is released.
    bsc.set_automine(false).await.unwrap();
    let second = approved_withdrawal(&mut conn, user, &email, "USDT", "bsc", &b, "60")
        .await
        .unwrap();
    let third = approved_withdrawal(&mut conn, user, &email, "USDT", "bsc", &c, "60")
        .await
        .unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(
        steps,
        vec![
            (second, Step::Moved(State::Broadcast)),
            (third, Step::Moved(State::Broadcast))
        ]
    );
    bsc.mine(1).await.unwrap();
    bsc.set_automine(true).await.unwrap();
    bsc.mine(1).await.unwrap();
    for id in [second, third] {
        let txid = withdrawals::get(&mut conn, id).await.unwrap().txid.unwrap();
        bsc.wait_receipt(&txid).await.unwrap();
    }
    let steps: BTreeMap<_, _> = sender
        .run_once(&db.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(steps[&second], Step::Moved(State::Completed));
    assert_eq!(steps[&third], Step::Moved(State::Failed));
    let (_, _, reason) = state_of(&db, third).await;
    assert!(reason.unwrap().contains("status 0"));
    assert_eq!(
        bsc.erc20_balance(&token, &b).await.unwrap(),
        60 * 10u128.pow(18)
    );
    assert_eq!(bsc.erc20_balance(&token, &c).await.unwrap(), 0);
    // 500 − (25 + 0.5) − (60 + 0.5); the failed one is back.
    assert_eq!(
        available(&db, user, Asset::USDT).await,
        "414".parse::<Decimal>().unwrap()
    );
    reconciles(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bitcoin_like_withdrawal_goes_through_the_node_wallet_and_waits_when_the_hot_wallet_is_short()
 {
    let db = TestDb::new().await.unwrap();
    let node = Litecoind::start().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "bitcoin", 3).await.unwrap();
    policy(&mut conn, "BTC", "bitcoin", "0.0001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::BTC, "bitcoin", "500")
        .await
        .unwrap();
    // A legacy (P2PKH, version 0x6f) address: valid on litecoin regtest and
    // as a bitcoin regtest address, which is what the platform validates.
    let to = node.new_legacy_address(PAYER).await.unwrap();
    allow(&mut conn, user, "bitcoin", &to).await.unwrap();
    let sender = Sender::bitcoin(
        &BitcoinNode {
            network: Network::Bitcoin,
            url: node.url(),
            user: node.rpc_user().to_owned(),
            password: node.rpc_password().to_owned(),
            wallet: Some("hot".to_owned()),
        },
        "e2e",
    );

    let id = approved_withdrawal(&mut conn, user, &email, "BTC", "bitcoin", &to, "1.23456789")
        .await
        .unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Moved(State::Broadcast))]);
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Confirming(0))]);
    node.mine(3).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Moved(State::Completed))]);
    let received = node
        .rpc(
            Some(PAYER),
            "getreceivedbyaddress",
            serde_json::json!([to, 1]),
        )
        .await
        .unwrap();
    assert_eq!(received.to_string(), "1.23456789");

    // More than the hot wallet holds (a few hundred): it waits, shown for the
    // admin report, and is sent once the wallet is topped up.
    let big = approved_withdrawal(&mut conn, user, &email, "BTC", "bitcoin", &to, "400")
        .await
        .unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert!(
        matches!(&steps[..], [(i, Step::Waiting(_))] if *i == big),
        "{steps:?}"
    );
    let (state, waiting, _) = state_of(&db, big).await;
    assert_eq!(state, "approved");
    assert!(waiting.unwrap().contains("hot wallet"));
    let queue = withdrawals::list_queue(&mut conn, Some(State::Approved), 10)
        .await
        .unwrap();
    assert!(
        queue
            .iter()
            .any(|w| w.id == big && w.waiting_reason.is_some())
    );
    // Mining to the hot wallet tops it up (50 per block, spendable after 100).
    node.mine(102).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(big, Step::Moved(State::Broadcast))]);
    let (_, waiting, _) = state_of(&db, big).await;
    assert!(waiting.is_none(), "no longer waiting");
    reconciles(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_senders_racing_over_one_hot_wallet_send_each_withdrawal_once_with_distinct_nonces() {
    let db = TestDb::new().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "ethereum", 1).await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::ETH, "ethereum", "5")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        let to = random_evm_address();
        allow(&mut conn, user, "ethereum", &to).await.unwrap();
        ids.push(
            approved_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "0.1")
                .await
                .unwrap(),
        );
    }
    let node = evm_node(Network::Ethereum, &anvil, &[]);
    let a = Sender::evm(&node, "sender-a").await.unwrap().unwrap();
    let b = Sender::evm(&node, "sender-b").await.unwrap().unwrap();
    for _ in 0..30 {
        let pool = db.pool();
        let (ra, rb) = tokio::join!(a.run_once(&pool), b.run_once(&pool));
        ra.unwrap();
        rb.unwrap();
        let open: i64 = w::table
            .filter(w::state.ne("completed"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if open == 0 {
            break;
        }
    }
    let rows: Vec<(String, Option<i64>)> = w::table
        .select((w::state, w::nonce))
        .order(w::nonce.asc())
        .load(&mut conn)
        .await
        .unwrap();
    assert!(rows.iter().all(|(s, _)| s == "completed"), "{rows:?}");
    let nonces: Vec<i64> = rows.iter().map(|(_, n)| n.unwrap()).collect();
    assert_eq!(
        nonces,
        (0..12).collect::<Vec<i64>>(),
        "one nonce each, no gaps"
    );
    let client = workers::chain::evm::EvmClient::new(anvil.url());
    assert_eq!(
        client.nonce(DEV_ADDRESSES[0], false).await.unwrap(),
        12,
        "twelve transactions"
    );
    assert_eq!(
        available(&db, user, Asset::ETH).await,
        "3.788".parse::<Decimal>().unwrap()
    );
    reconciles(&mut conn).await.unwrap();
}

/// m/44'/60'/0' of the "abandon … about" mnemonic (domain/tests/hd.rs).
const EVM_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_is_seen_credited_after_confirmations_then_withdrawn() {
    use domain::custody::deposit::{self, DepositKeys};
    use domain::custody::deposits;
    use workers::custody::deposits::scan_evm;

    let db = TestDb::new().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "ethereum", 3).await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    let keys = DepositKeys::parse(&format!("ethereum={EVM_XPUB}"), KIND).unwrap();
    let (address, _) = deposit::address_for(&mut conn, &keys, user, "ethereum")
        .await
        .unwrap();
    let node = evm_node(Network::Ethereum, &anvil, &[]);

    // Seen at once, pending below the network's confirmations.
    let txid = anvil
        .send_eth(DEV_ADDRESSES[1], &address.address, 2 * 10u128.pow(18))
        .await
        .unwrap();
    scan_evm(&db.pool(), &node).await.unwrap();
    let seen = deposits::list_for_user(&mut conn, user, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.txid.to_lowercase(), txid.to_lowercase());
    assert_eq!(
        (seen[0].0.state.as_str(), seen[0].0.confirmations),
        ("pending", 1)
    );
    assert_eq!(available(&db, user, Asset::ETH).await, Decimal::ZERO);
    // Credited once the third block is on top, and only once however often
    // the scanner runs.
    anvil.mine(2).await.unwrap();
    for _ in 0..3 {
        scan_evm(&db.pool(), &node).await.unwrap();
    }
    let seen = deposits::list_for_user(&mut conn, user, 10).await.unwrap();
    assert_eq!(seen[0].0.state, "credited");
    assert_eq!(available(&db, user, Asset::ETH).await, Decimal::from(2));

    // The deposited coins leave again as a withdrawal.
    let to = random_evm_address();
    allow(&mut conn, user, "ethereum", &to).await.unwrap();
    let id = approved_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, "1.5")
        .await
        .unwrap();
    let sender = Sender::evm(&node, "e2e").await.unwrap().unwrap();
    sender.run_once(&db.pool()).await.unwrap();
    anvil.mine(2).await.unwrap();
    let steps = sender.run_once(&db.pool()).await.unwrap();
    assert_eq!(steps, vec![(id, Step::Moved(State::Completed))]);
    assert_eq!(anvil.balance(&to).await.unwrap(), 15 * 10u128.pow(17));
    assert_eq!(
        available(&db, user, Asset::ETH).await,
        "0.499".parse::<Decimal>().unwrap()
    );
    // The network's custody account: 2 in, 1.5 out.
    let custody = ledger::account_by_key(
        &mut conn,
        &Owner::Network("ethereum".into()),
        Asset::ETH,
        AccountKind::Custody,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (custody.debits_posted - custody.credits_posted).normalize(),
        "0.5".parse::<Decimal>().unwrap()
    );
    reconciles(&mut conn).await.unwrap();
}
