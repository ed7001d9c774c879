//! Deposit addresses: one per customer and network, derived from the
//! configured account xpubs (public keys only: the api process can make
//! addresses but never spend from them) at the next free index of the key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::NetworkKind;
use super::allowlist::chain_of;
use super::hd::{DepositKey, HdError, Scheme};
use crate::money::Network;
use crate::schema::deposit_addresses as da;

#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("unknown network {0:?}")]
    UnknownNetwork(String),
    #[error("deposits on {0} are not available")]
    Unavailable(&'static str),
    #[error("the deposit key of {0} has no index left")]
    Exhausted(&'static str),
    #[error("derivation: {0}")]
    Derivation(#[from] HdError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl DepositError {
    pub fn code(&self) -> &'static str {
        match self {
            DepositError::UnknownNetwork(_) => "unknown_network",
            DepositError::Unavailable(_) => "deposits_unavailable",
            DepositError::Exhausted(_)
            | DepositError::Derivation(_)
            | DepositError::Database(_) => "internal_error",
        }
    }
}

/// The scheme used for each network: native segwit for bitcoin, BIP44 otherwise.
pub fn scheme_of(network: Network) -> Scheme {
    match network {
        Network::Bitcoin => Scheme::Bip84,
        _ => Scheme::Bip44,
    }
}

/// The configured account keys, by network.
#[derive(Debug, Default)]
pub struct DepositKeys {
    keys: BTreeMap<Network, DepositKey>,
}

impl DepositKeys {
    /// Parses `bitcoin=zpub…,ethereum=xpub…` (networks by code; a private key
    /// or a key of the wrong network is refused). A network may name its
    /// scheme, `bitcoin/bip44=tpub…` (P2PKH addresses instead of the default
    /// native segwit; `bip84` or `bip44`); without one it is [`scheme_of`].
    pub fn parse(spec: &str, kind: NetworkKind) -> Result<DepositKeys, String> {
        let mut keys = BTreeMap::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, key) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not network=xpub"))?;
            let (name, scheme) = match name.trim().split_once('/') {
                Some((name, scheme)) => (name, Some(scheme.trim())),
                None => (name.trim(), None),
            };
            let network: Network = name
                .trim()
                .parse()
                .map_err(|_| format!("unknown network {name:?}"))?;
            let scheme = match scheme {
                None => scheme_of(network),
                Some("bip84") => Scheme::Bip84,
                Some("bip44") => Scheme::Bip44,
                Some(other) => {
                    return Err(format!(
                        "{}: unknown scheme {other:?} (bip84 or bip44)",
                        network.code()
                    ));
                }
            };
            if keys.contains_key(&network) {
                return Err(format!("{}: configured twice", network.code()));
            }
            let key = DepositKey::parse(chain_of(network), kind, scheme, key.trim())
                .map_err(|e| format!("{}: {e}", network.code()))?;
            keys.insert(network, key);
        }
        Ok(DepositKeys { keys })
    }

    pub fn get(&self, network: Network) -> Option<&DepositKey> {
        self.keys.get(&network)
    }

    pub fn networks(&self) -> Vec<Network> {
        self.keys.keys().copied().collect()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = da, check_for_backend(diesel::pg::Pg))]
pub struct DepositAddress {
    pub network: String,
    pub address: String,
    #[serde(skip)]
    pub key_fingerprint: String,
    #[serde(skip)]
    pub derivation_index: i32,
    pub created_at: DateTime<Utc>,
}

/// The customer's deposit addresses (of the keys configured now).
pub async fn list(
    conn: &mut AsyncPgConnection,
    keys: &DepositKeys,
    user: Uuid,
) -> Result<Vec<DepositAddress>, DepositError> {
    let fingerprints: Vec<String> = keys
        .keys
        .values()
        .map(|k| hex::encode(k.fingerprint()))
        .collect();
    Ok(da::table
        .filter(da::user_id.eq(user))
        .filter(da::key_fingerprint.eq_any(&fingerprints))
        .order(da::network)
        .select(DepositAddress::as_select())
        .load(conn)
        .await?)
}

/// The customer's address on `network`, made at the next free index the
/// first time (idempotent: asking again answers the same address). Returns
/// whether it was made now.
pub async fn address_for(
    conn: &mut AsyncPgConnection,
    keys: &DepositKeys,
    user: Uuid,
    network: &str,
) -> Result<(DepositAddress, bool), DepositError> {
    let network: Network = network
        .parse()
        .map_err(|_| DepositError::UnknownNetwork(network.to_owned()))?;
    let key = keys
        .get(network)
        .ok_or(DepositError::Unavailable(network.name()))?;
    let fingerprint = hex::encode(key.fingerprint());
    if let Some(found) = existing(conn, user, network, &fingerprint).await? {
        return Ok((found, false));
    }
    conn.transaction(async |c| {
        // One allocator per key: the next index is taken under a lock.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<Text, _>(format!("deposit:{}:{fingerprint}", network.code()))
            .execute(c)
            .await?;
        if let Some(found) = existing(c, user, network, &fingerprint).await? {
            return Ok((found, false));
        }
        let last: Option<i32> = da::table
            .filter(da::network.eq(network.code()))
            .filter(da::key_fingerprint.eq(&fingerprint))
            .select(diesel::dsl::max(da::derivation_index))
            .first(c)
            .await?;
        let index = last
            .map_or(Some(0), |i| i.checked_add(1))
            .ok_or(DepositError::Exhausted(network.name()))?;
        let address = key
            .address(u32::try_from(index).map_err(|_| DepositError::Exhausted(network.name()))?)?;
        let row = diesel::insert_into(da::table)
            .values((
                da::network.eq(network.code()),
                da::key_fingerprint.eq(&fingerprint),
                da::derivation_index.eq(index),
                da::user_id.eq(user),
                da::address.eq(&address),
            ))
            .returning(DepositAddress::as_returning())
            .get_result(c)
            .await?;
        Ok((row, true))
    })
    .await
}

async fn existing(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    network: Network,
    fingerprint: &str,
) -> QueryResult<Option<DepositAddress>> {
    da::table
        .filter(da::user_id.eq(user))
        .filter(da::network.eq(network.code()))
        .filter(da::key_fingerprint.eq(fingerprint))
        .select(DepositAddress::as_select())
        .first(conn)
        .await
        .optional()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// m/84'/0'/0' and m/44'/0'/0' of the "abandon … about" mnemonic; the
    /// second also as a tpub (same key, testnet version bytes).
    const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";
    const XPUB44: &str = "xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMzG3DSSSSoekkudhUd9yLb6qx39T9nMdj";
    const TPUB44: &str = "tpubDCBWBScQPGv4Xk3JSbhw6wYYpayMjb2eAYyArpbSqQTbLDpphHGAetB6VQgVeftLML8vDSUEWcC2xDi3qJJ3YCDChJDvqVzpgoYSuT52MhJ";

    #[test]
    fn bitcoin_defaults_to_bip84_and_may_name_bip44() {
        let keys = DepositKeys::parse(&format!("bitcoin={ZPUB}"), NetworkKind::Mainnet).unwrap();
        let k = keys.get(Network::Bitcoin).unwrap();
        assert_eq!(k.scheme(), Scheme::Bip84);
        assert_eq!(
            k.address(0).unwrap(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );

        let keys = DepositKeys::parse(&format!(" bitcoin/bip44 = {XPUB44}"), NetworkKind::Mainnet)
            .unwrap();
        let k = keys.get(Network::Bitcoin).unwrap();
        assert_eq!(k.scheme(), Scheme::Bip44);
        // BIP-44 test vector, m/44'/0'/0'/0/0.
        assert_eq!(k.address(0).unwrap(), "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA");

        // Regtest: P2PKH with version 0x6f (m… / n…), which litecoind's
        // regtest wallet also accepts.
        let keys =
            DepositKeys::parse(&format!("bitcoin/bip44={TPUB44}"), NetworkKind::Regtest).unwrap();
        let a = keys.get(Network::Bitcoin).unwrap().address(0).unwrap();
        assert!(a.starts_with('m') || a.starts_with('n'), "{a}");
        assert_eq!(keys.networks(), vec![Network::Bitcoin]);
    }

    #[test]
    fn refuses_unknown_schemes_and_duplicates() {
        let e = DepositKeys::parse(&format!("bitcoin/bip49={XPUB44}"), NetworkKind::Mainnet)
            .unwrap_err();
        assert!(e.contains("unknown scheme"), "{e}");
        let e = DepositKeys::parse(
            &format!("bitcoin={ZPUB},bitcoin/bip44={XPUB44}"),
            NetworkKind::Mainnet,
        )
        .unwrap_err();
        assert!(e.contains("configured twice"), "{e}");
        // A zpub is BIP-84 only.
        assert!(
            DepositKeys::parse(&format!("bitcoin/bip44={ZPUB}"), NetworkKind::Mainnet).is_err()
        );
        assert!(
            DepositKeys::parse(&format!("solana/bip44={XPUB44}"), NetworkKind::Mainnet).is_err()
        );
    }
}
