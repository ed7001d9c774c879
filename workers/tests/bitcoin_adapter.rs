//! `workers::chain::bitcoin` against a real `litecoind -regtest`
//! (`testkit::litecoind`; 0.21.2.1, the Bitcoin Core 0.21 RPC). No mocks:
//! every behaviour asserted here is what the node did, and the deposit
//! scanner and the withdrawal worker rely on it. Chains stay far below
//! height 431 (MWEB).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use serde_json::{Value, json};
use testkit::litecoind::{HOT, Litecoind, PAYER};
use workers::chain::bitcoin::{
    BitcoinClient, BitcoinError, SendError, SignedTx, WalletTx, sats_of,
};

fn client(node: &Litecoind, wallet: Option<&str>) -> BitcoinClient {
    BitcoinClient::new(&node.url(), node.rpc_user(), node.rpc_password(), wallet)
}

/// The entries of `txid` with category `receive`.
fn receives<'a>(list: &'a [WalletTx], txid: &str) -> Vec<&'a WalletTx> {
    list.iter()
        .filter(|t| t.txid == txid && t.category == "receive")
        .collect()
}

/// The index of the output of `txid` paying `address`.
async fn vout_paying(node: &Litecoind, txid: &str, address: &str) -> u32 {
    let tx = node
        .rpc(None, "getrawtransaction", json!([txid, true]))
        .await
        .unwrap();
    let outs = tx["vout"].as_array().unwrap();
    let out = outs
        .iter()
        .find(|o| o["scriptPubKey"]["addresses"][0] == json!(address))
        .unwrap();
    u32::try_from(out["n"].as_u64().unwrap()).unwrap()
}

/// A fresh bech32 address of a throwaway wallet (`addresses`), imported
/// watch-only into `hot` like an address derived from our xpub.
async fn watched_address(node: &Litecoind, hot: &BitcoinClient, label: &str) -> String {
    if node
        .rpc(Some("addresses"), "getwalletinfo", json!([]))
        .await
        .is_err()
    {
        node.create_wallet("addresses").await.unwrap();
    }
    let address = node.new_address("addresses").await.unwrap();
    assert!(address.starts_with("rltc1"), "{address}");
    hot.import_address(&address, label, false).await.unwrap();
    address
}

/// The outpoints a raw transaction spends.
async fn inputs_of(node: &Litecoind, hex: &str) -> BTreeSet<(String, u64)> {
    let d = node
        .rpc(None, "decoderawtransaction", json!([hex]))
        .await
        .unwrap();
    d["vin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["txid"].as_str().unwrap().to_owned(),
                i["vout"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn litecoind_starts_with_funded_wallets() {
    let node = Litecoind::start().await.unwrap();
    eprintln!("litecoind started in {:?}", node.started_in());
    assert_eq!(node.height().await.unwrap(), 102);
    let hot = client(&node, Some(HOT));
    let payer = client(&node, Some(PAYER));
    assert_eq!(hot.block_count().await.unwrap(), 102);
    assert_eq!(
        hot.best_block_hash().await.unwrap(),
        node.tip().await.unwrap()
    );
    assert_eq!(
        hot.block_hash(102).await.unwrap(),
        node.tip().await.unwrap()
    );
    assert_eq!(payer.balance_sats().await.unwrap(), 20 * 100_000_000);
    // 50 (block 1) - 20 - fee + 50 (block 2, mature at 102)
    let balance = hot.balance_sats().await.unwrap();
    assert!(
        balance > 79 * 100_000_000 && balance < 80 * 100_000_000,
        "{balance}"
    );
    let wallets = node.rpc(None, "listwallets", json!([])).await.unwrap();
    assert_eq!(wallets, json!([HOT, PAYER]));
    let info = node
        .rpc(Some(HOT), "getwalletinfo", json!([]))
        .await
        .unwrap();
    assert_eq!(info["format"], json!("bdb"));
}

#[tokio::test]
async fn watch_only_deposit_confirms_and_is_listed_once() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let w = watched_address(&node, &hot, "deposit:1").await;
    let base = hot.best_block_hash().await.unwrap();

    let txid = node.pay(&w, "0.12345678").await.unwrap();
    let vout = vout_paying(&node, &txid, &w).await;

    // In the mempool: listed at once, 0 confirmations, no block.
    let s = hot.list_since_block(Some(&base), 1).await.unwrap();
    let expected = WalletTx {
        txid: txid.clone(),
        vout,
        address: Some(w.clone()),
        category: "receive".into(),
        amount_sats: 12_345_678,
        confirmations: 0,
        blockhash: None,
        blockheight: None,
    };
    assert_eq!(receives(&s.transactions, &txid), vec![&expected]);
    assert!(s.removed.is_empty());
    assert_eq!(s.lastblock, base);
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(0));

    // Mined: 1, then 3 confirmations, same block.
    let b1 = node.mine(1).await.unwrap().remove(0);
    let s = hot.list_since_block(Some(&base), 1).await.unwrap();
    let confirmed = WalletTx {
        confirmations: 1,
        blockhash: Some(b1.clone()),
        blockheight: Some(103),
        ..expected.clone()
    };
    assert_eq!(receives(&s.transactions, &txid), vec![&confirmed]);
    assert_eq!(s.lastblock, b1);
    let b = node.mine(2).await.unwrap();
    let s = hot.list_since_block(Some(&base), 1).await.unwrap();
    assert_eq!(
        receives(&s.transactions, &txid),
        vec![&WalletTx {
            confirmations: 3,
            ..confirmed.clone()
        }]
    );
    assert_eq!(s.lastblock, b[1]);
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(3));
    // A client without a wallet asks the node (txindex) instead.
    let node_only = client(&node, None);
    assert_eq!(node_only.tx_confirmations(&txid).await.unwrap(), Some(3));

    // From the tip, or from the block that confirmed it: not again.
    let s = hot.list_since_block(Some(&b[1]), 1).await.unwrap();
    assert!(receives(&s.transactions, &txid).is_empty());
    assert!(s.removed.is_empty());
    assert_eq!(s.lastblock, b[1]);
    let s = hot.list_since_block(Some(&b1), 1).await.unwrap();
    assert!(receives(&s.transactions, &txid).is_empty());

    // target_confirmations = 3: lastblock is the block 2 below the tip
    // (b1), so the next call from there lists again what has fewer than 3
    // confirmations; our deposit has 3 now.
    let s = hot.list_since_block(Some(&base), 3).await.unwrap();
    assert_eq!(s.lastblock, b1);
    assert_eq!(receives(&s.transactions, &txid).len(), 1);

    // Without a cursor: everything the wallet has (coinbases included).
    let s = hot.list_since_block(None, 1).await.unwrap();
    assert_eq!(receives(&s.transactions, &txid).len(), 1);
    assert!(s.transactions.iter().any(|t| t.category == "generate"));
    assert!(s.transactions.iter().any(|t| t.category == "immature"));
    assert_eq!(s.lastblock, b[1]);
}

#[tokio::test]
async fn reorged_deposit_goes_back_to_the_mempool_and_is_mined_again() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let w = watched_address(&node, &hot, "deposit:2").await;
    let base = hot.best_block_hash().await.unwrap();
    let txid = node.pay(&w, "1.5").await.unwrap();
    let b = node.mine(3).await.unwrap();
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(3));

    // The block that confirmed it leaves the chain (with its two children).
    node.invalidate_block(&b[0]).await.unwrap();
    assert_eq!(node.height().await.unwrap(), 102);
    let mempool = node.rpc(None, "getrawmempool", json!([])).await.unwrap();
    assert_eq!(mempool, json!([txid]));
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(0));

    // Observed: from the old tip, the deposit is in `transactions` with 0
    // confirmations and no block, and in `removed` (its current state: 0
    // confirmations too), next to the three coinbases of the detached
    // blocks, now category `orphan`. lastblock is the new tip.
    let s = hot.list_since_block(Some(&b[2]), 1).await.unwrap();
    let unconfirmed = WalletTx {
        txid: txid.clone(),
        vout: vout_paying(&node, &txid, &w).await,
        address: Some(w.clone()),
        category: "receive".into(),
        amount_sats: 150_000_000,
        confirmations: 0,
        blockhash: None,
        blockheight: None,
    };
    assert_eq!(receives(&s.transactions, &txid), vec![&unconfirmed]);
    assert_eq!(receives(&s.removed, &txid), vec![&unconfirmed]);
    let orphans = s.removed.iter().filter(|t| t.category == "orphan").count();
    assert_eq!(orphans, 3);
    assert_eq!(s.lastblock, base);

    // Mined again in another block: both lists show it with the new block
    // (removed entries carry the transaction's state now, not the old one).
    let nb = node.mine(1).await.unwrap().remove(0);
    let remined = WalletTx {
        confirmations: 1,
        blockhash: Some(nb.clone()),
        blockheight: Some(103),
        ..unconfirmed.clone()
    };
    let s = hot.list_since_block(Some(&b[2]), 1).await.unwrap();
    assert_eq!(receives(&s.transactions, &txid), vec![&remined]);
    assert_eq!(receives(&s.removed, &txid), vec![&remined]);
    assert_eq!(s.lastblock, nb);

    // The old branch comes back (3 blocks beat 1): the deposit is in b[0]
    // again; from nb, the detached block is listed in `removed` and the
    // deposit in both lists with b[0].
    node.reconsider_block(&b[0]).await.unwrap();
    assert_eq!(node.tip().await.unwrap(), b[2]);
    let back = WalletTx {
        confirmations: 3,
        blockhash: Some(b[0].clone()),
        blockheight: Some(103),
        ..unconfirmed.clone()
    };
    let s = hot.list_since_block(Some(&nb), 1).await.unwrap();
    assert_eq!(receives(&s.transactions, &txid), vec![&back]);
    assert_eq!(receives(&s.removed, &txid), vec![&back]);
    assert_eq!(s.lastblock, b[2]);
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(3));
}

#[tokio::test]
async fn double_spent_deposit_gets_negative_confirmations() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let node_only = client(&node, None);
    let w = watched_address(&node, &hot, "deposit:3").await;
    let base = hot.best_block_hash().await.unwrap();
    let txid = node.pay(&w, "2").await.unwrap();
    let b1 = node.mine(1).await.unwrap().remove(0);
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(1));

    // Reorg, then the payer's double spend is mined instead (litecoind
    // refuses a replacement in its mempool, so it goes straight into a
    // block with generateblock); the deposit leaves the mempool.
    node.invalidate_block(&b1).await.unwrap();
    let (conflict, block) = node.double_spend(&txid).await.unwrap();
    assert_ne!(conflict, txid);
    assert_eq!(node.tip().await.unwrap(), block);
    assert!(!hot.in_mempool(&txid).await.unwrap());

    // Observed: confirmations −1 (the conflict is 1 deep); the deposit is
    // no longer in `transactions` at all, only in `removed`, and only when
    // asking from a block of the abandoned branch.
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(-1));
    let s = hot.list_since_block(Some(&b1), 1).await.unwrap();
    assert!(receives(&s.transactions, &txid).is_empty());
    let gone = WalletTx {
        txid: txid.clone(),
        vout: vout_paying(&node, &txid, &w).await,
        address: Some(w.clone()),
        category: "receive".into(),
        amount_sats: 200_000_000,
        confirmations: -1,
        blockhash: None,
        blockheight: None,
    };
    assert_eq!(receives(&s.removed, &txid), vec![&gone]);
    assert_eq!(s.lastblock, block);
    // From below the fork (base): in neither list. A scanner must follow
    // credited deposits by txid until final.
    let s = hot.list_since_block(Some(&base), 1).await.unwrap();
    assert!(s.transactions.iter().all(|t| t.txid != txid));
    assert!(s.removed.is_empty());

    // Deeper and deeper negative as the conflict gets buried.
    node.mine(2).await.unwrap();
    assert_eq!(hot.tx_confirmations(&txid).await.unwrap(), Some(-3));
    let s = hot.list_since_block(Some(&b1), 1).await.unwrap();
    assert_eq!(receives(&s.removed, &txid)[0].confirmations, -3);
    // The watching wallet never saw the conflicting transaction.
    let t = node
        .rpc(Some(HOT), "gettransaction", json!([txid, true]))
        .await
        .unwrap();
    assert_eq!(t["walletconflicts"], json!([]));
    // The node without a wallet: the txindex still points at the detached
    // block, the mempool does not have it: unknown.
    assert_eq!(node_only.tx_confirmations(&txid).await.unwrap(), None);
    assert_eq!(
        node_only.tx_confirmations(&conflict).await.unwrap(),
        Some(3)
    );
}

#[tokio::test]
async fn create_signed_then_send_raw_pays_exactly_the_amount() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let payer = client(&node, Some(PAYER));
    let to = node.new_address(PAYER).await.unwrap();
    let before = hot.balance_sats().await.unwrap();

    let tx: SignedTx = hot.create_signed(&to, 123_456_789).await.unwrap();
    assert_eq!(hot.txid_of(&tx.hex).await.unwrap(), tx.txid);
    assert!(tx.fee_sats > 0 && tx.fee_sats < 100_000, "{}", tx.fee_sats);
    // Signed, not broadcast: the node knows nothing of it.
    assert_eq!(hot.tx_confirmations(&tx.txid).await.unwrap(), None);
    assert!(!hot.in_mempool(&tx.txid).await.unwrap());
    assert_eq!(hot.balance_sats().await.unwrap(), before);

    assert_eq!(hot.send_raw(&tx.hex).await.unwrap(), tx.txid);
    assert_eq!(hot.tx_confirmations(&tx.txid).await.unwrap(), Some(0));
    // The fee came on top; the change is trusted at once.
    assert_eq!(
        hot.balance_sats().await.unwrap(),
        before - 123_456_789 - tx.fee_sats
    );
    let s = payer.list_since_block(None, 1).await.unwrap();
    let got = receives(&s.transactions, &tx.txid);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].amount_sats, 123_456_789);
    assert_eq!(got[0].address.as_deref(), Some(to.as_str()));
    assert_eq!(got[0].vout, vout_paying(&node, &tx.txid, &to).await);
    // The hot wallet sees its send (negative) to the same output.
    let s = hot.list_since_block(None, 1).await.unwrap();
    let sends: Vec<_> = s
        .transactions
        .iter()
        .filter(|t| t.txid == tx.txid && t.category == "send")
        .collect();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].amount_sats, -123_456_789);

    node.mine(1).await.unwrap();
    assert_eq!(hot.tx_confirmations(&tx.txid).await.unwrap(), Some(1));
    assert_eq!(payer.tx_confirmations(&tx.txid).await.unwrap(), Some(1));
}

#[tokio::test]
async fn sending_the_same_bytes_again_is_classified() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let payer = client(&node, Some(PAYER));
    let to = node.new_address(PAYER).await.unwrap();
    let tx = hot.create_signed(&to, 100_000_000).await.unwrap();

    // In the mempool: the node answers the txid again (and re-relays).
    assert_eq!(hot.send_raw(&tx.hex).await.unwrap(), tx.txid);
    assert_eq!(hot.send_raw(&tx.hex).await.unwrap(), tx.txid);
    let mempool = node.rpc(None, "getrawmempool", json!([])).await.unwrap();
    assert_eq!(mempool, json!([tx.txid]));

    // In a block: -27 "Transaction already in block chain".
    node.mine(1).await.unwrap();
    let raw = hot.call("sendrawtransaction", json!([tx.hex])).await;
    assert_eq!(
        raw,
        Err(BitcoinError::Rpc {
            code: -27,
            message: "Transaction already in block chain".into()
        })
    );
    assert_eq!(hot.send_raw(&tx.hex).await, Err(SendError::AlreadyKnown));

    // Every output spent (the payer and the hot wallet each sweep
    // everything): the node answers -25 bad-txns-inputs-missingorspent,
    // as for a conflict; send_raw finds the transaction in the chain.
    let hot_addr = node.new_address(HOT).await.unwrap();
    let payer_addr = node.new_address(PAYER).await.unwrap();
    let all = |c: i64| workers::chain::bitcoin::sats_to_coins(c);
    let payer_all = payer.balance_sats().await.unwrap();
    node.rpc(
        Some(PAYER),
        "sendtoaddress",
        json!([hot_addr, all(payer_all), "", "", true]),
    )
    .await
    .unwrap();
    let hot_all = hot.balance_sats().await.unwrap();
    node.rpc(
        Some(HOT),
        "sendtoaddress",
        json!([payer_addr, all(hot_all), "", "", true]),
    )
    .await
    .unwrap();
    node.mine(1).await.unwrap();
    for n in 0..2 {
        let out = node
            .rpc(None, "gettxout", json!([tx.txid, n, true]))
            .await
            .unwrap();
        assert!(out.is_null(), "output {n} unspent: {out}");
    }
    let raw = hot.call("sendrawtransaction", json!([tx.hex])).await;
    assert_eq!(
        raw,
        Err(BitcoinError::Rpc {
            code: -25,
            message: "bad-txns-inputs-missingorspent".into()
        })
    );
    assert_eq!(hot.send_raw(&tx.hex).await, Err(SendError::AlreadyKnown));
    // Without the wallet, the txindex finds it.
    assert_eq!(
        client(&node, None).send_raw(&tx.hex).await,
        Err(SendError::AlreadyKnown)
    );
}

#[tokio::test]
async fn inputs_spent_by_a_conflicting_transaction_are_rejected() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let to = node.new_address(PAYER).await.unwrap();
    let tx = hot.create_signed(&to, 100_000_000).await.unwrap();

    // Another transaction spends the same inputs (all back to hot) first.
    let mut total = 0;
    let mut inputs = Vec::new();
    for (prev, n) in inputs_of(&node, &tx.hex).await {
        let out = hot.call("gettxout", json!([prev, n])).await.unwrap();
        total += sats_of(&out["value"]).unwrap();
        inputs.push(json!({"txid": prev, "vout": n}));
    }
    let back = node.new_address(HOT).await.unwrap();
    let raw = node
        .rpc(
            None,
            "createrawtransaction",
            json!([inputs, [{ back: workers::chain::bitcoin::sats_to_coins(total - 100_000) }]]),
        )
        .await
        .unwrap();
    let signed = node
        .rpc(Some(HOT), "signrawtransactionwithwallet", json!([raw]))
        .await
        .unwrap();
    let conflict = hot.send_raw(signed["hex"].as_str().unwrap()).await.unwrap();

    // Conflict in the mempool: -26 txn-mempool-conflict.
    match hot.send_raw(&tx.hex).await {
        Err(SendError::Rejected(m)) => assert_eq!(m, "-26: txn-mempool-conflict"),
        other => panic!("{other:?}"),
    }
    // Conflict mined: -25 bad-txns-inputs-missingorspent, still rejected.
    node.mine(1).await.unwrap();
    match hot.send_raw(&tx.hex).await {
        Err(SendError::Rejected(m)) => assert_eq!(m, "-25: bad-txns-inputs-missingorspent"),
        other => panic!("{other:?}"),
    }
    assert_eq!(hot.tx_confirmations(&tx.txid).await.unwrap(), None);
    assert_eq!(hot.tx_confirmations(&conflict).await.unwrap(), Some(1));
    // Garbage is rejected too.
    match hot.send_raw("00").await {
        Err(SendError::Rejected(m)) => assert!(m.starts_with("-22: TX decode failed"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn payments_prepared_together_use_disjoint_inputs() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let unspent = node.rpc(Some(HOT), "listunspent", json!([])).await.unwrap();
    // The change of the payer's funding and block 2's coinbase.
    assert_eq!(unspent.as_array().unwrap().len(), 2, "{unspent}");
    let to1 = node.new_address(PAYER).await.unwrap();
    let to2 = node.new_address(PAYER).await.unwrap();

    let a = hot.create_signed(&to1, 100_000_000).await.unwrap();
    let b = hot.create_signed(&to2, 200_000_000).await.unwrap();
    let (ia, ib) = (
        inputs_of(&node, &a.hex).await,
        inputs_of(&node, &b.hex).await,
    );
    assert!(ia.is_disjoint(&ib), "{ia:?} {ib:?}");
    let locked = node
        .rpc(Some(HOT), "listlockunspent", json!([]))
        .await
        .unwrap();
    assert_eq!(locked.as_array().unwrap().len(), ia.len() + ib.len());

    // Everything is locked now: a third payment cannot be funded (the
    // balance still counts the locked outputs).
    let c = hot.create_signed(&to1, 100_000_000).await.unwrap_err();
    assert!(c.is_insufficient_funds(), "{c:?}");
    assert!(hot.balance_sats().await.unwrap() > 300_000_000);
    // Giving up on b releases its inputs.
    hot.unlock_inputs(&b.hex).await.unwrap();
    let c = hot.create_signed(&to1, 100_000_000).await.unwrap();
    assert_eq!(inputs_of(&node, &c.hex).await, ib);
    hot.unlock_inputs(&c.hex).await.unwrap();

    // Both prepared payments go through and confirm.
    assert_eq!(hot.send_raw(&a.hex).await.unwrap(), a.txid);
    assert_eq!(hot.send_raw(&b.hex).await.unwrap(), b.txid);
    node.mine(1).await.unwrap();
    assert_eq!(hot.tx_confirmations(&a.txid).await.unwrap(), Some(1));
    assert_eq!(hot.tx_confirmations(&b.txid).await.unwrap(), Some(1));
    // Locks of spent outputs are gone.
    let locked = node
        .rpc(Some(HOT), "listlockunspent", json!([]))
        .await
        .unwrap();
    assert_eq!(locked, json!([]));
}

#[tokio::test]
async fn more_than_the_balance_is_insufficient_funds() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    let to = node.new_address(PAYER).await.unwrap();
    let balance = u64::try_from(hot.balance_sats().await.unwrap()).unwrap();
    for amount in [balance + 1, balance, 21_000_000 * 100_000_000] {
        let e = hot.create_signed(&to, amount).await.unwrap_err();
        assert!(e.is_insufficient_funds(), "{amount}: {e:?}");
        assert_eq!(
            e,
            BitcoinError::Rpc {
                code: -4,
                message: "Insufficient funds".into()
            }
        );
    }
    // Nothing was left locked.
    let locked = node
        .rpc(Some(HOT), "listlockunspent", json!([]))
        .await
        .unwrap();
    assert_eq!(locked, json!([]));
    // Just below the balance, minus the fee, works.
    let ok = hot.create_signed(&to, balance - 1_000_000).await.unwrap();
    hot.unlock_inputs(&ok.hex).await.unwrap();
}

#[tokio::test]
async fn errors_are_typed() {
    let node = Litecoind::start().await.unwrap();
    let hot = client(&node, Some(HOT));
    // Wrong password: HTTP 401 without a body.
    let bad = BitcoinClient::new(&node.url(), node.rpc_user(), "wrong", Some(HOT));
    match bad.block_count().await {
        Err(BitcoinError::Transport(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Unknown wallet: -18.
    let missing = client(&node, Some("nope"));
    assert_eq!(
        missing.balance_sats().await.unwrap_err().rpc_code(),
        Some(-18)
    );
    // Two wallets loaded and none named: -19.
    let none = client(&node, None);
    assert_eq!(none.balance_sats().await.unwrap_err().rpc_code(), Some(-19));
    // Above the tip: -8.
    assert_eq!(hot.block_hash(1000).await.unwrap_err().rpc_code(), Some(-8));
    // Unknown txid: None, from the wallet and from the node.
    let unknown = "00".repeat(32);
    assert_eq!(hot.tx_confirmations(&unknown).await.unwrap(), None);
    assert_eq!(none.tx_confirmations(&unknown).await.unwrap(), None);
    // Unknown method: 404 with a JSON error.
    assert_eq!(
        hot.call("nosuchmethod", json!([]))
            .await
            .unwrap_err()
            .rpc_code(),
        Some(-32601)
    );
    // A bad address.
    let e = hot
        .create_signed("ltc1notanaddress", 1000)
        .await
        .unwrap_err();
    assert_eq!(e.rpc_code(), Some(-5), "{e:?}");
    // Amounts in any answer come back exact.
    let v: Value = hot.call("getbalances", json!([])).await.unwrap();
    assert!(v["mine"]["trusted"].is_string(), "{v}");
    assert_eq!(
        sats_of(&v["mine"]["trusted"]).unwrap(),
        hot.balance_sats().await.unwrap()
    );
}
