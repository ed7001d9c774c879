//! The deposit scanners against real nodes and the real PostgreSQL, no
//! mocks: anvil (chain id 31337 stands for ethereum, 97 for bsc) and
//! litecoind in regtest (standing for bitcoin: a litecoin regtest P2PKH
//! address is a bitcoin regtest one, so the customer's deposit address is
//! derived from a BIP-44 tpub). Deposit addresses are derived by
//! `DepositKeys` exactly as the api does.
//!
//! What is checked: pending with its confirmations before the network's
//! count, credited exactly once after it (however many passes), exact
//! amounts (token dust floored), and reorganisations: a deposit whose block
//! is replaced is orphaned and never credited, one back in the mempool is
//! credited once when re-mined, a credited one whose block leaves the chain
//! is reversed and credited again when re-mined.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::custody::address::NetworkKind;
use domain::custody::deposit::{self, DepositKeys};
use domain::custody::deposits::{self, Deposit, OutputKind};
use domain::ledger::{self, AccountKind, Owner};
use domain::money::{Asset, Network};
use domain::schema::{networks, transfers};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use testkit::TestDb;
use testkit::anvil::{Anvil, DEV_ADDRESSES};
use testkit::litecoind::{HOT, Litecoind};
use uuid::Uuid;
use workers::chain::evm::checksum_address;
use workers::custody::config::{BitcoinNode, ChainConfig, EvmNode};
use workers::custody::deposits::{
    SCAN_DEPOSITS_JOB, ScanReport, scan_all, scan_bitcoin, scan_deposits_job, scan_evm,
};

/// m/44'/60'/0' of the "abandon … about" mnemonic (domain/tests/hd.rs).
const EVM_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";
/// m/44'/0'/0' of the same mnemonic as a tpub: P2PKH `m…`/`n…` in regtest.
const BIP44_TPUB: &str = "tpubDCBWBScQPGv4Xk3JSbhw6wYYpayMjb2eAYyArpbSqQTbLDpphHGAetB6VQgVeftLML8vDSUEWcC2xDi3qJJ3YCDChJDvqVzpgoYSuT52MhJ";

const ETHER: u128 = 1_000_000_000_000_000_000;

#[test]
fn the_job_fits_the_registry() {
    // Compiles only if the job's future is Send + 'static, as the runner needs.
    let registry = workers::runner::Registry::new().register(SCAN_DEPOSITS_JOB, scan_deposits_job);
    assert_eq!(registry.kinds(), vec![SCAN_DEPOSITS_JOB.to_owned()]);
}

/// A verified customer (testkit's fixture), its id.
async fn customer(conn: &mut AsyncPgConnection) -> Uuid {
    testkit::custody::customer(conn).await.unwrap().0
}

/// The customer's deposit address on `network`, derived as the api does.
async fn deposit_address(
    conn: &mut AsyncPgConnection,
    keys: &str,
    user: Uuid,
    network: &str,
) -> String {
    let keys = DepositKeys::parse(keys, NetworkKind::Regtest).unwrap();
    deposit::address_for(conn, &keys, user, network)
        .await
        .unwrap()
        .0
        .address
}

async fn set_confirmations(conn: &mut AsyncPgConnection, network: Network, n: i32) {
    diesel::update(networks::table.find(network.code()))
        .set(networks::confirmations.eq(n))
        .execute(conn)
        .await
        .unwrap();
}

async fn balance(conn: &mut AsyncPgConnection, user: Uuid, asset: Asset) -> Decimal {
    ledger::account_by_key(conn, &Owner::User(user), asset, AccountKind::Customer)
        .await
        .unwrap()
        .map_or(Decimal::ZERO, |a| a.posted_balance())
}

async fn one(conn: &mut AsyncPgConnection, network: Network, txid: &str) -> Deposit {
    let rows: Vec<Deposit> = deposits::of_network(conn, network)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.txid.eq_ignore_ascii_case(txid))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

/// Ledger transfers whose reference starts with `deposit:<network>:<txid>`.
async fn deposit_transfers(conn: &mut AsyncPgConnection, network: &str, txid: &str) -> i64 {
    transfers::table
        .filter(transfers::reference.like(format!("deposit:{network}:{txid}%")))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

async fn reconciles(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

fn evm_node(network: Network, anvil: &Anvil, tokens: &[(Asset, &str)]) -> EvmNode {
    EvmNode {
        network,
        url: anvil.url().to_owned(),
        hot_key: None,
        tokens: tokens
            .iter()
            .map(|(a, t)| (*a, checksum_address(t).unwrap()))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn evm_pass(pool: &domain::db::PgPool, node: &EvmNode) -> ScanReport {
    let r = scan_evm(pool, node).await.unwrap();
    assert!(!r.skipped);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethereum_ether_and_token_deposits_are_credited_once_after_12_confirmations() {
    let started = Instant::now();
    let db = TestDb::new().await.unwrap();
    let pool = db.pool();
    let mut conn = db.conn().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let alice = customer(&mut conn).await;
    let to = deposit_address(
        &mut conn,
        &format!("ethereum={EVM_XPUB}"),
        alice,
        "ethereum",
    )
    .await;
    // Index 0 of the test vector, EIP-55.
    assert_eq!(to, "0x9858EfFD232B4033E47d90003D41EC34EcaEda94");
    let token = anvil
        .deploy_erc20(
            "Tether USD",
            "USDT",
            6,
            DEV_ADDRESSES[0],
            1_000_000 * 1_000_000,
        )
        .await
        .unwrap();
    let node = evm_node(Network::Ethereum, &anvil, &[(Asset::USDT, &token)]);
    let required = deposits::required_confirmations(&mut conn, Network::Ethereum)
        .await
        .unwrap();
    assert_eq!(required, 12);

    // Nothing yet.
    let r = evm_pass(&pool, &node).await;
    assert_eq!((r.new, r.credited), (0, 0), "{r:?}");

    // 1.5 ETH: pending with one confirmation.
    let eth_tx = anvil
        .send_eth(DEV_ADDRESSES[1], &to, 3 * ETHER / 2)
        .await
        .unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!((r.new, r.credited), (1, 0), "{r:?}");
    let eth = one(&mut conn, Network::Ethereum, &eth_tx).await;
    assert_eq!(
        (eth.state.as_str(), eth.confirmations, eth.kind.as_str()),
        ("pending", 1, "native")
    );
    assert_eq!((eth.amount, eth.asset.as_str()), (dec!(1.5), "ETH"));
    assert_eq!(eth.user_id, alice);

    // 25.5 USDT by a token transfer (and a transfer to a stranger, ignored).
    anvil
        .erc20_transfer(&token, DEV_ADDRESSES[0], DEV_ADDRESSES[5], 7_000_000)
        .await
        .unwrap();
    let usdt_tx = anvil
        .erc20_transfer(
            &token,
            DEV_ADDRESSES[0],
            &to.to_ascii_lowercase(),
            25_500_000,
        )
        .await
        .unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!((r.new, r.credited), (1, 0), "{r:?}");
    let usdt = one(&mut conn, Network::Ethereum, &usdt_tx).await;
    assert_eq!(
        (usdt.state.as_str(), usdt.confirmations, usdt.kind.as_str()),
        ("pending", 1, "token")
    );
    assert_eq!((usdt.amount, usdt.asset.as_str()), (dec!(25.5), "USDT"));
    assert_eq!(
        one(&mut conn, Network::Ethereum, &eth_tx)
            .await
            .confirmations,
        3
    );

    // ETH reaches 11 confirmations: still pending.
    anvil.mine(8).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.credited, 0, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Ethereum, &eth_tx)
            .await
            .confirmations,
        11
    );
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, Decimal::ZERO);

    // 12: ETH credited, the token (10) not yet.
    anvil.mine(1).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Ethereum, &eth_tx).await.state,
        "credited"
    );
    assert_eq!(
        one(&mut conn, Network::Ethereum, &usdt_tx).await.state,
        "pending"
    );
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, dec!(1.5));

    anvil.mine(2).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(balance(&mut conn, alice, Asset::USDT).await, dec!(25.5));

    // Further passes credit nothing more.
    for _ in 0..3 {
        anvil.mine(1).await.unwrap();
        let r = evm_pass(&pool, &node).await;
        assert_eq!((r.new, r.credited), (0, 0), "{r:?}");
    }
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, dec!(1.5));
    assert_eq!(balance(&mut conn, alice, Asset::USDT).await, dec!(25.5));
    assert_eq!(deposit_transfers(&mut conn, "ethereum", &eth_tx).await, 1);
    assert_eq!(deposit_transfers(&mut conn, "ethereum", &usdt_tx).await, 1);
    assert_eq!(
        deposits::of_network(&mut conn, Network::Ethereum)
            .await
            .unwrap()
            .len(),
        2
    );
    reconciles(&mut conn).await;
    eprintln!("ethereum deposits: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ethereum_deposit_in_a_replaced_block_is_orphaned_and_never_credited() {
    let db = TestDb::new().await.unwrap();
    let pool = db.pool();
    let mut conn = db.conn().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let alice = customer(&mut conn).await;
    let to = deposit_address(
        &mut conn,
        &format!("ethereum={EVM_XPUB}"),
        alice,
        "ethereum",
    )
    .await;
    set_confirmations(&mut conn, Network::Ethereum, 3).await;
    let token = anvil
        .deploy_erc20(
            "USD Coin",
            "USDC",
            6,
            DEV_ADDRESSES[0],
            1_000_000 * 1_000_000,
        )
        .await
        .unwrap();
    let node = evm_node(Network::Ethereum, &anvil, &[(Asset::USDC, &token)]);
    anvil.mine(2).await.unwrap();
    evm_pass(&pool, &node).await;

    // Seen in a block that is then replaced by empty blocks.
    let snapshot = anvil.snapshot().await.unwrap();
    let doomed_eth = anvil.send_eth(DEV_ADDRESSES[2], &to, ETHER).await.unwrap();
    let doomed_usdc = anvil
        .erc20_transfer(&token, DEV_ADDRESSES[0], &to, 4_000_000)
        .await
        .unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.new, 2, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Ethereum, &doomed_eth).await.state,
        "pending"
    );
    anvil.revert(&snapshot).await.unwrap();
    anvil.mine(4).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert!(r.fork.is_some(), "{r:?}");
    assert_eq!((r.orphaned, r.credited), (2, 0), "{r:?}");
    for tx in [&doomed_eth, &doomed_usdc] {
        let d = one(&mut conn, Network::Ethereum, tx).await;
        assert_eq!((d.state.as_str(), d.confirmations), ("orphaned", 0));
    }

    // A deposit in the new branch is credited normally; the orphans never.
    let kept = anvil
        .send_eth(DEV_ADDRESSES[3], &to, ETHER / 4)
        .await
        .unwrap();
    for _ in 0..3 {
        anvil.mine(2).await.unwrap();
        evm_pass(&pool, &node).await;
    }
    assert_eq!(
        one(&mut conn, Network::Ethereum, &kept).await.state,
        "credited"
    );
    for tx in [&doomed_eth, &doomed_usdc] {
        assert_eq!(
            one(&mut conn, Network::Ethereum, tx).await.state,
            "orphaned"
        );
        assert_eq!(deposit_transfers(&mut conn, "ethereum", tx).await, 0);
    }
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, dec!(0.25));
    assert_eq!(balance(&mut conn, alice, Asset::USDC).await, Decimal::ZERO);

    // A credited deposit whose block is replaced is reversed.
    let snapshot = anvil.snapshot().await.unwrap();
    let reversed = anvil
        .send_eth(DEV_ADDRESSES[4], &to, ETHER / 2)
        .await
        .unwrap();
    anvil.mine(3).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, dec!(0.75));
    anvil.revert(&snapshot).await.unwrap();
    anvil.mine(6).await.unwrap();
    let r = evm_pass(&pool, &node).await;
    assert_eq!(r.reversed, 1, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Ethereum, &reversed).await.state,
        "reversed"
    );
    assert_eq!(balance(&mut conn, alice, Asset::ETH).await, dec!(0.25));
    reconciles(&mut conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bsc_token_amounts_beyond_the_ledger_precision_are_floored_through_the_job_config() {
    let db = TestDb::new().await.unwrap();
    let pool = db.pool();
    let mut conn = db.conn().await.unwrap();
    let anvil = Anvil::start(97).await.unwrap();
    let alice = customer(&mut conn).await;
    let to = deposit_address(&mut conn, &format!("bsc={EVM_XPUB}"), alice, "bsc").await;
    set_confirmations(&mut conn, Network::Bsc, 2).await;
    // USDT on BSC has 18 decimals; the ledger keeps 6.
    let token = anvil
        .deploy_erc20("Tether USD", "USDT", 18, DEV_ADDRESSES[0], 1_000 * ETHER)
        .await
        .unwrap();
    let config = ChainConfig::parse(
        Some("regtest"),
        Some(&format!("bsc={}", anvil.url())),
        None,
        Some(&format!("USDT@bsc={token}")),
        None,
    )
    .unwrap();
    let tx = anvil
        .erc20_transfer(&token, DEV_ADDRESSES[0], &to, 1_000_000_123_000_000_000)
        .await
        .unwrap();
    let bnb = anvil
        .send_eth(DEV_ADDRESSES[1], &to, 2 * ETHER)
        .await
        .unwrap();
    let (reports, errors) = scan_all(&pool, &config).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].new, reports[0].credited), (2, 1), "{reports:?}");
    anvil.mine(1).await.unwrap();
    let (reports, errors) = scan_all(&pool, &config).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(reports[0].credited, 1, "{reports:?}");
    let d = one(&mut conn, Network::Bsc, &tx).await;
    assert_eq!((d.amount, d.dust), (dec!(1), dec!(0.000000123)));
    assert_eq!(d.kind, OutputKind::Token.as_str());
    assert_eq!(balance(&mut conn, alice, Asset::USDT).await, dec!(1));
    assert_eq!(balance(&mut conn, alice, Asset::BNB).await, dec!(2));
    assert_eq!(one(&mut conn, Network::Bsc, &bnb).await.state, "credited");
    reconciles(&mut conn).await;
}

fn bitcoin_node(node: &Litecoind) -> BitcoinNode {
    BitcoinNode {
        network: Network::Bitcoin,
        url: node.url(),
        user: node.rpc_user().to_owned(),
        password: node.rpc_password().to_owned(),
        wallet: Some(HOT.to_owned()),
    }
}

async fn btc_pass(pool: &domain::db::PgPool, node: &BitcoinNode) -> ScanReport {
    let r = scan_bitcoin(pool, node).await.unwrap();
    assert!(!r.skipped);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_like_deposits_via_listsinceblock_with_reorganisations() {
    let started = Instant::now();
    let db = TestDb::new().await.unwrap();
    let pool = db.pool();
    let mut conn = db.conn().await.unwrap();
    let ltc = Litecoind::start().await.unwrap();
    eprintln!("litecoind started in {:?}", ltc.started_in());
    let alice = customer(&mut conn).await;
    let to = deposit_address(
        &mut conn,
        &format!("bitcoin/bip44={BIP44_TPUB}"),
        alice,
        "bitcoin",
    )
    .await;
    assert!(to.starts_with('m') || to.starts_with('n'), "{to}");
    let node = bitcoin_node(&ltc);
    assert_eq!(
        deposits::required_confirmations(&mut conn, Network::Bitcoin)
            .await
            .unwrap(),
        3
    );

    // The first pass imports the address watch-only; the second imports nothing.
    let r = btc_pass(&pool, &node).await;
    assert_eq!((r.imported, r.new), (1, 0), "{r:?}");
    assert_eq!(btc_pass(&pool, &node).await.imported, 0);

    // An address made and paid (mined) between two passes: the pass imports
    // it and rescans the blocks since the cursor, so the payment is found.
    let bob = customer(&mut conn).await;
    let bobs = deposit_address(
        &mut conn,
        &format!("bitcoin/bip44={BIP44_TPUB}"),
        bob,
        "bitcoin",
    )
    .await;
    let early = ltc.pay(&bobs, "0.01").await.unwrap();
    ltc.mine(1).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!((r.imported, r.new), (1, 1), "{r:?}");
    let d = one(&mut conn, Network::Bitcoin, &early).await;
    assert_eq!((d.user_id, d.confirmations), (bob, 1));
    ltc.mine(2).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(balance(&mut conn, bob, Asset::BTC).await, dec!(0.01));

    // In the mempool, then 1, 2, 3 confirmations: credited at 3, exactly.
    let paid = ltc.pay(&to, "0.12345678").await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.new, 1, "{r:?}");
    let d = one(&mut conn, Network::Bitcoin, &paid).await;
    assert_eq!((d.state.as_str(), d.confirmations), ("pending", 0));
    assert_eq!(d.block_hash, None);
    assert_eq!(
        (d.amount, d.address.as_str()),
        (dec!(0.12345678), to.as_str())
    );
    for expected in [1, 2] {
        ltc.mine(1).await.unwrap();
        let r = btc_pass(&pool, &node).await;
        assert_eq!(r.credited, 0, "{r:?}");
        let d = one(&mut conn, Network::Bitcoin, &paid).await;
        assert_eq!((d.state.as_str(), d.confirmations), ("pending", expected));
        assert!(d.block_hash.is_some());
    }
    ltc.mine(1).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &paid).await.state,
        "credited"
    );
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.12345678)
    );
    for _ in 0..2 {
        ltc.mine(1).await.unwrap();
        let r = btc_pass(&pool, &node).await;
        assert_eq!((r.new, r.credited), (0, 0), "{r:?}");
    }
    assert_eq!(deposit_transfers(&mut conn, "bitcoin", &paid).await, 1);

    // A block leaves the chain before crediting: back to the mempool (not
    // credited), then mined again in the new branch: credited once.
    let remined = ltc.pay(&to, "0.3").await.unwrap();
    let block = ltc.mine(1).await.unwrap().pop().unwrap();
    btc_pass(&pool, &node).await;
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &remined)
            .await
            .confirmations,
        1
    );
    ltc.invalidate_block(&block).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 0, "{r:?}");
    let d = one(&mut conn, Network::Bitcoin, &remined).await;
    assert_eq!((d.state.as_str(), d.confirmations), ("pending", 0));
    assert_eq!(d.block_hash, None);
    ltc.mine(2).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 0, "{r:?}");
    ltc.mine(1).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.42345678)
    );
    assert_eq!(deposit_transfers(&mut conn, "bitcoin", &remined).await, 1);

    // A block leaves the chain and the payment is double spent in the new
    // branch: orphaned, never credited.
    let doomed = ltc.pay(&to, "0.05").await.unwrap();
    let block = ltc.mine(1).await.unwrap().pop().unwrap();
    btc_pass(&pool, &node).await;
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &doomed)
            .await
            .confirmations,
        1
    );
    ltc.invalidate_block(&block).await.unwrap();
    ltc.double_spend(&doomed).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.orphaned, 1, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &doomed).await.state,
        "orphaned"
    );
    ltc.mine(4).await.unwrap();
    btc_pass(&pool, &node).await;
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &doomed).await.state,
        "orphaned"
    );
    assert_eq!(deposit_transfers(&mut conn, "bitcoin", &doomed).await, 0);

    // A credited deposit whose blocks leave the chain is reversed, and
    // credited again (round 2) once re-mined deep enough.
    let deep = ltc.pay(&to, "0.2").await.unwrap();
    let blocks = ltc.mine(3).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.credited, 1, "{r:?}");
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.62345678)
    );
    ltc.invalidate_block(&blocks[0]).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!(r.reversed, 1, "{r:?}");
    assert_eq!(
        one(&mut conn, Network::Bitcoin, &deep).await.state,
        "reversed"
    );
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.42345678)
    );
    ltc.mine(3).await.unwrap();
    let r = btc_pass(&pool, &node).await;
    assert_eq!((r.revived, r.credited), (1, 1), "{r:?}");
    let d = one(&mut conn, Network::Bitcoin, &deep).await;
    assert_eq!((d.state.as_str(), d.credit_round), ("credited", 2));
    assert_eq!(
        balance(&mut conn, alice, Asset::BTC).await,
        dec!(0.62345678)
    );
    // credit, reversal, credit again
    assert_eq!(deposit_transfers(&mut conn, "bitcoin", &deep).await, 3);
    assert_eq!(balance(&mut conn, bob, Asset::BTC).await, dec!(0.01));

    reconciles(&mut conn).await;
    eprintln!("bitcoin-like deposits: {:?}", started.elapsed());
}
