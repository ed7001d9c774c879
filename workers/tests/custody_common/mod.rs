//! Setup shared by the custody tests: customers with balances, allow-listed
//! addresses, withdrawal policies, and withdrawals requested and confirmed
//! through the domain (the same code the api runs).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::custody::address::NetworkKind;
use domain::custody::{allowlist, withdrawals};
use domain::identity::store;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{asset_networks, emails, networks, withdrawal_addresses as wa};
use rust_decimal::Decimal;
use uuid::Uuid;

pub const KIND: NetworkKind = NetworkKind::Regtest;

pub async fn customer(conn: &mut AsyncPgConnection) -> (Uuid, String) {
    let id = Uuid::now_v7();
    let email = format!("c-{}@example.com", id.simple());
    store::insert_user(
        conn,
        &store::NewUser {
            id,
            email: &email,
            password_hash: "not-used",
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    (id, email)
}

/// Credits `amount` of `asset` to the customer as a deposit on `network`.
pub async fn fund(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    asset: Asset,
    network: &str,
    amount: &str,
) {
    let custody = ledger::open_account(
        conn,
        &Owner::Network(network.into()),
        asset,
        AccountKind::Custody,
    )
    .await
    .unwrap();
    let account = ledger::open_account(conn, &Owner::User(user), asset, AccountKind::Customer)
        .await
        .unwrap();
    let t = NewTransfer::new(
        format!("test:deposit:{}", Uuid::now_v7()),
        TransferKind::Deposit,
        custody.id,
        account.id,
        Amount::parse(amount, asset, Sign::Positive).unwrap(),
    );
    ledger::post_batch(conn, &[t.into()]).await.unwrap();
}

/// Adds, confirms and cools down an allow-list entry.
pub async fn allow(conn: &mut AsyncPgConnection, user: Uuid, network: &str, address: &str) {
    let row = allowlist::add(
        conn,
        user,
        KIND,
        "https://app.test",
        &allowlist::NewAddress {
            network,
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
        .execute(conn)
        .await
        .unwrap();
}

/// Fee, minimum, auto-approval threshold and daily limit of an asset-network.
pub async fn policy(
    conn: &mut AsyncPgConnection,
    asset: &str,
    network: &str,
    fee: &str,
    min: &str,
) {
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    diesel::update(
        asset_networks::table
            .filter(asset_networks::asset.eq(asset))
            .filter(asset_networks::network.eq(network)),
    )
    .set((
        asset_networks::withdrawal_fee.eq(d(fee)),
        asset_networks::withdrawal_min.eq(d(min)),
        asset_networks::auto_approve_max.eq(d("1000000")),
        asset_networks::daily_limit.eq(d("100000000")),
    ))
    .execute(conn)
    .await
    .unwrap();
}

pub async fn confirmations(conn: &mut AsyncPgConnection, network: &str, n: i32) {
    diesel::update(networks::table.find(network))
        .set(networks::confirmations.eq(n))
        .execute(conn)
        .await
        .unwrap();
}

/// Requests a withdrawal and confirms it by the e-mailed link: `approved`.
pub async fn approved_withdrawal(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    email: &str,
    asset: &str,
    network: &str,
    address: &str,
    amount: &str,
) -> Uuid {
    let w = withdrawals::request(
        conn,
        KIND,
        "https://app.test",
        &withdrawals::NewWithdrawal {
            user,
            asset,
            network,
            address,
            amount,
        },
    )
    .await
    .unwrap();
    let bodies: Vec<String> = emails::table
        .filter(emails::to_address.eq(email))
        .filter(emails::template.eq("withdrawal_confirm"))
        .order(emails::created_at.desc())
        .select(emails::text_body)
        .load(conn)
        .await
        .unwrap();
    let body = bodies.as_slice().first().unwrap();
    let at = body.find("token=").unwrap() + "token=".len();
    let token: String = body[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let confirmed = withdrawals::confirm_by_token(conn, &token).await.unwrap();
    assert_eq!(confirmed.state, "approved");
    assert_eq!(confirmed.id, w.id);
    w.id
}

pub async fn reconciles(conn: &mut AsyncPgConnection) {
    let problems = ledger::reconcile(conn).await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}

/// A fresh random EVM address (checksummed).
pub fn random_evm_address() -> String {
    let bytes: [u8; 20] = rand::random();
    workers::chain::evm::checksum_address(&format!("0x{}", hex::encode(bytes))).unwrap()
}
