//! `workers::chain::evm` against real anvil nodes (no mocks): locally signed
//! legacy transactions with explicit nonces, re-sent bytes, ERC-20 logs,
//! failed transfers, chain ids, and a reorg made with snapshot/revert.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ethnum::U256;
use serde_json::{Value, json};
use testkit::anvil::{Anvil, DEV_ADDRESSES, DEV_BALANCE_WEI, DEV_PRIVATE_KEYS};
use workers::chain::evm::{
    EvmClient, EvmError, INVALID_PARAMS, LegacyTx, LocalSigner, Receipt, SendError,
    checksum_address, erc20_transfer_data,
};

const ETHER: u128 = 1_000_000_000_000_000_000;

/// dev account `i` as a local signer.
fn dev_signer(i: usize) -> LocalSigner {
    LocalSigner::from_hex(DEV_PRIVATE_KEYS[i]).unwrap()
}

/// A checksummed address nobody has used (`seed` keeps tests apart).
fn fresh_address(seed: u64) -> String {
    checksum_address(&format!("0x{:040x}", 0x00c0_ffee_0000_0000u64 + seed)).unwrap()
}

/// The receipt of `txid`, waiting for it: anvil answers a send before the
/// automined block is visible.
async fn mined(client: &EvmClient, txid: &str) -> Receipt {
    for _ in 0..500 {
        if let Some(receipt) = client.receipt(txid).await.unwrap() {
            return receipt;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{txid} not mined within 10 s");
}

async fn node(chain_id: u64) -> (Anvil, EvmClient) {
    let anvil = Anvil::start(chain_id).await.unwrap();
    let client = EvmClient::new(anvil.url());
    (anvil, client)
}

/// A native transfer with an explicit `nonce` (sign it with the sender's key).
async fn transfer_tx(client: &EvmClient, nonce: u64, to: &str, wei: u128) -> LegacyTx {
    LegacyTx {
        chain_id: client.chain_id().await.unwrap(),
        nonce,
        gas_price: client.gas_price().await.unwrap(),
        gas_limit: 21_000,
        to: to.to_owned(),
        value: U256::new(wei),
        data: vec![],
    }
}

/// A token transfer from `signer`, call data from [`erc20_transfer_data`].
async fn token_tx(
    client: &EvmClient,
    signer: &LocalSigner,
    token: &str,
    to: &str,
    amount: u128,
    gas_limit: u64,
) -> LegacyTx {
    LegacyTx {
        chain_id: client.chain_id().await.unwrap(),
        nonce: client.nonce(&signer.address(), true).await.unwrap(),
        gas_price: client.gas_price().await.unwrap(),
        gas_limit,
        to: token.to_owned(),
        value: U256::ZERO,
        data: erc20_transfer_data(to, U256::new(amount)).unwrap(),
    }
}

#[tokio::test]
async fn dev_accounts_match_their_keys() {
    let (anvil, client) = node(31337).await;
    let listed: Vec<String> = client.call("eth_accounts", json!([])).await.unwrap();
    let listed: Vec<String> = listed
        .iter()
        .map(|a| checksum_address(a).unwrap())
        .collect();
    assert_eq!(listed, anvil.accounts());
    for (i, address) in DEV_ADDRESSES.iter().enumerate() {
        assert_eq!(dev_signer(i).address(), *address);
        assert_eq!(
            client.balance(address).await.unwrap(),
            U256::new(DEV_BALANCE_WEI)
        );
    }
    assert_eq!(client.chain_id().await.unwrap(), 31337);
    assert_eq!(client.block_number().await.unwrap(), 0);
}

#[tokio::test]
async fn native_transfer_signed_locally_moves_exact_balances() {
    let (_anvil, client) = node(31337).await;
    let signer = dev_signer(1);
    let from = signer.address();
    let to = fresh_address(1);
    let nonce = client.nonce(&from, true).await.unwrap();
    assert_eq!(nonce, 0);
    let before = client.balance(&from).await.unwrap();
    let value = 3 * ETHER / 2;
    let tx = transfer_tx(&client, nonce, &to, value).await;
    let signed = signer.sign(&tx).unwrap();

    let txid = client.send_raw(&signed.raw).await.unwrap();
    assert_eq!(txid, signed.txid);
    let receipt = mined(&client, &txid).await;
    assert!(receipt.status);
    assert_eq!(receipt.gas_used, 21_000);
    // A legacy transaction pays its gas price whole.
    assert_eq!(receipt.effective_gas_price, Some(tx.gas_price));
    let fee = U256::new(receipt.gas_used) * tx.gas_price;
    assert_eq!(
        client.balance(&from).await.unwrap(),
        before - U256::new(value) - fee
    );
    assert_eq!(client.balance(&to).await.unwrap(), U256::new(value));
    assert!(client.transaction_known(&txid).await.unwrap());
    assert_eq!(client.nonce(&from, false).await.unwrap(), nonce + 1);

    // The same bytes again, after they were mined: refused, nothing doubles.
    let again = client.send_raw(&signed.raw).await;
    assert!(
        matches!(again, Err(SendError::AlreadyKnown | SendError::NonceTooLow)),
        "{again:?}"
    );
    assert_eq!(
        again,
        Err(SendError::NonceTooLow),
        "anvil's answer once mined"
    );
    assert_eq!(client.nonce(&from, false).await.unwrap(), nonce + 1);
    assert_eq!(client.nonce(&from, true).await.unwrap(), nonce + 1);
    assert_eq!(client.balance(&to).await.unwrap(), U256::new(value));
    assert_eq!(
        client.block_number().await.unwrap(),
        receipt.block_number,
        "no block mined for the re-sent bytes"
    );
}

#[tokio::test]
async fn resending_identical_bytes_never_makes_a_second_transaction() {
    let (anvil, client) = node(31337).await;
    anvil.set_automine(false).await.unwrap();
    let signer = dev_signer(2);
    let to = fresh_address(2);
    let nonce = client.nonce(&signer.address(), true).await.unwrap();
    let tx = transfer_tx(&client, nonce, &to, ETHER).await;
    // A crashed worker signs again: the same bytes (RFC 6979).
    let signed = signer.sign(&tx).unwrap();
    assert_eq!(signer.sign(&tx).unwrap(), signed);

    assert_eq!(client.send_raw(&signed.raw).await.unwrap(), signed.txid);
    assert!(client.transaction_known(&signed.txid).await.unwrap());
    assert_eq!(client.receipt(&signed.txid).await.unwrap(), None, "pending");
    // still pending: anvil says "transaction already imported"
    assert_eq!(
        client.send_raw(&signed.raw).await,
        Err(SendError::AlreadyKnown)
    );
    assert_eq!(
        client.nonce(&signer.address(), true).await.unwrap(),
        nonce + 1
    );
    assert_eq!(client.nonce(&signer.address(), false).await.unwrap(), nonce);

    anvil.mine(1).await.unwrap();
    let receipt = mined(&client, &signed.txid).await;
    assert!(receipt.status);
    // mined: anvil says "nonce too low"
    assert_eq!(
        client.send_raw(&signed.raw).await,
        Err(SendError::NonceTooLow)
    );
    anvil.mine(1).await.unwrap();
    let block = client.block(receipt.block_number).await.unwrap().unwrap();
    assert_eq!(block.transactions.len(), 1);
    let next = client
        .block(receipt.block_number + 1)
        .await
        .unwrap()
        .unwrap();
    assert!(next.transactions.is_empty());
    assert_eq!(
        client.nonce(&signer.address(), false).await.unwrap(),
        nonce + 1
    );
    assert_eq!(client.balance(&to).await.unwrap(), U256::new(ETHER));
}

#[tokio::test]
async fn consecutive_explicit_nonces_all_mine() {
    let (anvil, client) = node(31337).await;
    let signer = dev_signer(3);
    let to = fresh_address(3);
    let first = client.nonce(&signer.address(), true).await.unwrap();

    // Automine: one block each.
    let mut receipts = Vec::new();
    for k in 0..3u64 {
        let tx = transfer_tx(&client, first + k, &to, u128::from(k + 1)).await;
        let txid = client
            .send_raw(&signer.sign(&tx).unwrap().raw)
            .await
            .unwrap();
        receipts.push(mined(&client, &txid).await);
    }
    assert!(receipts.iter().all(|r| r.status));
    assert_eq!(receipts[1].block_number, receipts[0].block_number + 1);
    assert_eq!(receipts[2].block_number, receipts[0].block_number + 2);
    assert_eq!(
        client.nonce(&signer.address(), false).await.unwrap(),
        first + 3
    );
    assert_eq!(client.balance(&to).await.unwrap(), U256::new(6));

    // Sent out of order without automine: the gap waits, one block takes all
    // three in nonce order.
    anvil.set_automine(false).await.unwrap();
    let mut txids = Vec::new();
    for k in [5u64, 4, 3] {
        let tx = transfer_tx(&client, first + k, &to, 10).await;
        txids.push(
            client
                .send_raw(&signer.sign(&tx).unwrap().raw)
                .await
                .unwrap(),
        );
    }
    anvil.mine(1).await.unwrap();
    let tip = client.block_number().await.unwrap();
    let block = client.block(tip).await.unwrap().unwrap();
    let in_block: Vec<&str> = block.transactions.iter().map(|t| t.hash.as_str()).collect();
    txids.reverse();
    assert_eq!(in_block, txids);
    for txid in &txids {
        let r = mined(&client, txid).await;
        assert!(r.status);
        assert_eq!(r.block_number, tip);
    }
    assert_eq!(
        client.nonce(&signer.address(), false).await.unwrap(),
        first + 6
    );
}

#[tokio::test]
async fn block_lists_the_transfer() {
    let (anvil, client) = node(31337).await;
    let signer = dev_signer(4);
    let to = fresh_address(4);
    let tx = transfer_tx(&client, 0, &to, 7 * ETHER).await;
    let signed = signer.sign(&tx).unwrap();
    client.send_raw(&signed.raw).await.unwrap();
    let receipt = mined(&client, &signed.txid).await;
    let n = receipt.block_number;

    let block = client.block(n).await.unwrap().unwrap();
    assert_eq!(block.number, n);
    assert_eq!(block.hash, receipt.block_hash);
    assert_eq!(
        client.block_hash(n).await.unwrap(),
        Some(block.hash.clone())
    );
    assert_eq!(
        client.block_hash(n - 1).await.unwrap(),
        Some(block.parent_hash.clone())
    );
    assert!(block.timestamp > 1_600_000_000);
    assert_eq!(block.transactions.len(), 1);
    let t = &block.transactions[0];
    assert_eq!(t.hash, signed.txid);
    assert_eq!(t.from, signer.address());
    assert_eq!(t.to.as_deref(), Some(to.as_str()));
    assert_eq!(t.value, U256::new(7 * ETHER));
    assert_eq!(t.input, "0x");

    // A contract creation has no `to`, and its input is the init code.
    let token = anvil
        .deploy_erc20("Token", "TKN", 18, &signer.address(), 1)
        .await
        .unwrap();
    let tip = client.block_number().await.unwrap();
    let block = client.block(tip).await.unwrap().unwrap();
    assert_eq!(block.transactions.len(), 1);
    assert_eq!(block.transactions[0].to, None);
    assert_eq!(block.transactions[0].from, DEV_ADDRESSES[0]);
    assert!(block.transactions[0].input.starts_with("0x6080"));
    assert_ne!(checksum_address(&token).unwrap(), DEV_ADDRESSES[0]);

    // Past the tip: nothing.
    assert_eq!(client.block(tip + 1).await.unwrap(), None);
    assert_eq!(client.block_hash(tip + 100).await.unwrap(), None);
}

#[tokio::test]
async fn erc20_transfer_signed_locally_gives_one_log() {
    let (anvil, client) = node(31337).await;
    let signer = dev_signer(5);
    let holder = signer.address();
    let supply = 1_000_000 * 1_000_000u128;
    let token = anvil
        .deploy_erc20("Tether USD", "USDT", 6, &holder, supply)
        .await
        .unwrap();
    let token = checksum_address(&token).unwrap();
    let deployed_at = client.block_number().await.unwrap();
    assert_eq!(
        client.token_balance(&token, &holder).await.unwrap(),
        U256::new(supply)
    );
    let other_token = anvil
        .deploy_erc20("Other", "OTH", 18, &holder, 5)
        .await
        .unwrap();

    let to = fresh_address(5);
    let amount = 250_000_000u128;
    let data = erc20_transfer_data(&to, U256::new(amount)).unwrap();
    let gas = client
        .estimate_gas(&holder, &token, U256::ZERO, &data)
        .await
        .unwrap();
    let tx = token_tx(&client, &signer, &token, &to, amount, gas + gas / 5).await;
    let signed = signer.sign(&tx).unwrap();
    client.send_raw(&signed.raw).await.unwrap();
    let receipt = mined(&client, &signed.txid).await;
    assert!(receipt.status);
    let n = receipt.block_number;

    let logs = client
        .transfer_logs(n, n, std::slice::from_ref(&token))
        .await
        .unwrap();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.token, token);
    assert_eq!(log.from, holder);
    assert_eq!(log.to, to);
    assert_eq!(log.amount, U256::new(amount));
    assert_eq!(log.tx_hash, signed.txid);
    assert_eq!(log.log_index, 0);
    assert_eq!(log.block_number, n);
    assert_eq!(log.block_hash, receipt.block_hash);

    // From the deployment on: the mint (from the zero address), then the transfer.
    let lowercase = token.to_ascii_lowercase();
    let all = client
        .transfer_logs(deployed_at, n, &[lowercase, other_token.clone()])
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].from, "0x0000000000000000000000000000000000000000");
    assert_eq!(all[0].to, holder);
    assert_eq!(all[0].amount, U256::new(supply));
    assert_eq!(all[0].token, token);
    assert_eq!(all[1].token, checksum_address(&other_token).unwrap());
    assert_eq!(all[2], *log);
    // Only the tokens asked for; no tokens, no query.
    let others = client
        .transfer_logs(deployed_at, n, std::slice::from_ref(&other_token))
        .await
        .unwrap();
    assert_eq!(others.len(), 1);
    assert!(client.transfer_logs(0, n, &[]).await.unwrap().is_empty());

    assert_eq!(
        client.token_balance(&token, &to).await.unwrap(),
        U256::new(amount)
    );
    assert_eq!(
        client.token_balance(&token, &holder).await.unwrap(),
        U256::new(supply - amount)
    );
    assert_eq!(anvil.erc20_balance(&token, &to).await.unwrap(), amount);
}

#[tokio::test]
async fn token_transfer_exceeding_the_balance_mines_with_status_false() {
    let (anvil, client) = node(31337).await;
    let signer = dev_signer(6);
    let holder = signer.address();
    let token = anvil
        .deploy_erc20("Token", "TKN", 6, &holder, 1_000)
        .await
        .unwrap();
    let to = fresh_address(6);
    let nonce = client.nonce(&holder, true).await.unwrap();
    let eth_before = client.balance(&holder).await.unwrap();

    // Estimating it fails: the node runs it and it reverts.
    let data = erc20_transfer_data(&to, U256::new(1_001)).unwrap();
    let estimate = client
        .estimate_gas(&holder, &token, U256::ZERO, &data)
        .await;
    assert!(
        matches!(estimate, Err(EvmError::Rpc { .. })),
        "{estimate:?}"
    );

    // Sent anyway with an explicit gas limit: mined, reverted.
    let tx = token_tx(&client, &signer, &token, &to, 1_001, 100_000).await;
    let signed = signer.sign(&tx).unwrap();
    assert_eq!(client.send_raw(&signed.raw).await.unwrap(), signed.txid);
    let receipt = mined(&client, &signed.txid).await;
    assert!(!receipt.status);
    assert!(receipt.gas_used > 21_000 && receipt.gas_used <= 100_000);
    assert!(
        client
            .transfer_logs(
                receipt.block_number,
                receipt.block_number,
                std::slice::from_ref(&token)
            )
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(client.nonce(&holder, false).await.unwrap(), nonce + 1);
    assert_eq!(
        client.token_balance(&token, &holder).await.unwrap(),
        U256::new(1_000)
    );
    assert_eq!(client.token_balance(&token, &to).await.unwrap(), U256::ZERO);
    assert_eq!(
        client.balance(&holder).await.unwrap(),
        eth_before - U256::new(receipt.gas_used) * tx.gas_price,
        "the gas is paid"
    );
}

#[tokio::test]
async fn chain_id_is_part_of_the_signature() {
    let (_eth, eth) = node(31337).await;
    let (bsc_node, bsc) = node(97).await;
    assert_eq!(eth.chain_id().await.unwrap(), 31337);
    assert_eq!(bsc.chain_id().await.unwrap(), 97);
    let signer = dev_signer(7);
    let to = fresh_address(7);

    let for_bsc = transfer_tx(&bsc, 0, &to, ETHER).await;
    assert_eq!(for_bsc.chain_id, 97);
    let signed = signer.sign(&for_bsc).unwrap();
    assert_eq!(bsc.send_raw(&signed.raw).await.unwrap(), signed.txid);
    assert!(mined(&bsc, &signed.txid).await.status);

    // Nonce 1, signed for 31337, sent to the chain-97 node: never executed.
    // geth refuses it at once ("invalid sender" / "invalid chain id for
    // signer": Rejected); anvil 1.7.1 answers with its txid and then drops it
    // (not in the pool, never mined, the nonce stays free).
    let mut for_eth = transfer_tx(&eth, 1, &to, ETHER).await;
    assert_eq!(for_eth.chain_id, 31337);
    for_eth.gas_price = bsc.gas_price().await.unwrap();
    let wrong = signer.sign(&for_eth).unwrap();
    let answer = bsc.send_raw(&wrong.raw).await;
    assert!(
        matches!(&answer, Ok(txid) if *txid == wrong.txid)
            || matches!(answer, Err(SendError::Rejected(_))),
        "{answer:?}"
    );
    bsc_node.mine(2).await.unwrap();
    let tip = bsc.block_number().await.unwrap();
    for n in 0..=tip {
        let block = bsc.block(n).await.unwrap().unwrap();
        assert!(block.transactions.iter().all(|t| t.hash != wrong.txid));
    }
    assert_eq!(bsc.receipt(&wrong.txid).await.unwrap(), None);
    assert!(!bsc.transaction_known(&wrong.txid).await.unwrap());
    assert_eq!(bsc.nonce(&signer.address(), true).await.unwrap(), 1);
    assert_eq!(bsc.balance(&to).await.unwrap(), U256::new(ETHER));
    // Nonce 1 is still free for a transaction signed for 97.
    let right = signer.sign(&transfer_tx(&bsc, 1, &to, 5).await).unwrap();
    assert_eq!(bsc.send_raw(&right.raw).await.unwrap(), right.txid);
    assert!(mined(&bsc, &right.txid).await.status);
    assert_eq!(bsc.balance(&to).await.unwrap(), U256::new(ETHER + 5));

    // The same signer's transactions are different bytes per chain.
    let mut same_for_eth = for_bsc.clone();
    same_for_eth.chain_id = 31337;
    let on_eth = signer.sign(&same_for_eth).unwrap();
    assert_ne!(on_eth.txid, signed.txid);
    assert_eq!(eth.send_raw(&on_eth.raw).await.unwrap(), on_eth.txid);
    assert!(mined(&eth, &on_eth.txid).await.status);
}

#[tokio::test]
async fn reorg_drops_the_receipt_and_changes_the_block_hash() {
    let (anvil, client) = node(31337).await;
    let signer = dev_signer(8);
    let holder = signer.address();
    let token = anvil
        .deploy_erc20("Token", "TKN", 6, &holder, 1_000)
        .await
        .unwrap();
    let to = fresh_address(8);
    let base = client.block_number().await.unwrap();
    let snapshot = anvil.snapshot().await.unwrap();

    let tx = transfer_tx(
        &client,
        client.nonce(&holder, true).await.unwrap(),
        &to,
        ETHER,
    )
    .await;
    let native = signer.sign(&tx).unwrap();
    client.send_raw(&native.raw).await.unwrap();
    let tx = token_tx(&client, &signer, &token, &to, 400, 100_000).await;
    let tokens = signer.sign(&tx).unwrap();
    client.send_raw(&tokens.raw).await.unwrap();
    let r1 = mined(&client, &native.txid).await;
    let r2 = mined(&client, &tokens.txid).await;
    assert_eq!((r1.block_number, r2.block_number), (base + 1, base + 2));
    let old_hashes = [
        client.block_hash(base + 1).await.unwrap().unwrap(),
        client.block_hash(base + 2).await.unwrap().unwrap(),
    ];
    let seen = client
        .transfer_logs(base + 1, base + 2, std::slice::from_ref(&token))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);

    anvil.revert(&snapshot).await.unwrap();
    assert_eq!(client.block_number().await.unwrap(), base);
    anvil.mine(3).await.unwrap();

    assert_eq!(client.receipt(&native.txid).await.unwrap(), None);
    assert_eq!(client.receipt(&tokens.txid).await.unwrap(), None);
    assert!(!client.transaction_known(&native.txid).await.unwrap());
    for (k, old) in old_hashes.iter().enumerate() {
        let now = client
            .block_hash(base + 1 + k as u64)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(&now, old);
    }
    let block = client.block(base + 1).await.unwrap().unwrap();
    assert!(block.transactions.is_empty());
    assert_eq!(
        Some(block.parent_hash),
        client.block_hash(base).await.unwrap(),
        "the new branch grows from the fork point"
    );
    assert!(
        client
            .transfer_logs(base + 1, base + 3, std::slice::from_ref(&token))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(client.balance(&to).await.unwrap(), U256::ZERO);
    // The reverted nonce is free again: the same bytes go through once more.
    assert_eq!(client.send_raw(&native.raw).await.unwrap(), native.txid);
    assert!(mined(&client, &native.txid).await.status);
}

#[tokio::test]
async fn errors_are_typed() {
    let (_anvil, client) = node(31337).await;
    let unknown = client.call::<Value>("no_such_method", json!([])).await;
    assert!(matches!(unknown, Err(EvmError::Rpc { .. })), "{unknown:?}");
    assert!(matches!(
        client.receipt("0x1234").await,
        Err(EvmError::Rpc {
            code: INVALID_PARAMS,
            ..
        })
    ));
    assert!(matches!(
        client.balance("0xnot-an-address").await,
        Err(EvmError::Rpc {
            code: INVALID_PARAMS,
            ..
        })
    ));
    // An account without code has no balanceOf.
    let no_token = client
        .token_balance(DEV_ADDRESSES[0], DEV_ADDRESSES[1])
        .await;
    assert!(matches!(no_token, Err(EvmError::Decode(_))), "{no_token:?}");
    let garbage = client.send_raw(&[0xc0]).await;
    assert!(
        matches!(garbage, Err(SendError::Rejected(_))),
        "{garbage:?}"
    );
    let unknown_tx = format!("0x{}", "ab".repeat(32));
    assert_eq!(client.receipt(&unknown_tx).await.unwrap(), None);
    assert!(!client.transaction_known(&unknown_tx).await.unwrap());

    // Nobody listens on port 1.
    let down = EvmClient::with_timeout("http://127.0.0.1:1", std::time::Duration::from_secs(2));
    assert!(matches!(down.chain_id().await, Err(EvmError::Transport(_))));
    assert!(matches!(
        down.send_raw(&[0xc0]).await,
        Err(SendError::Transport(_))
    ));
}
