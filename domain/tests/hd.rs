//! Deposit address derivation from extended public keys: published vectors
//! (BIP-84, SLIP-132, the well-known EVM address of the test mnemonic),
//! cross-checked values for the other chains, and every refusal.
//!
//! Sources of the fixed values:
//! - BIP-84 "Test vectors" (bitcoin/bips, bip-0084.mediawiki): the account
//!   zprv and the addresses m/84'/0'/0'/0/0, 0/1 and 1/0.
//! - SLIP-0132 "Bitcoin Test Vectors" (satoshilabs/slips, slip-0132.md): the
//!   account zpub, xpub and xprv of m/84'/0'/0' and m/44'/0'/0', the ypub of
//!   m/49'/0'/0', and the first addresses; also the version bytes.
//! - 0x9858EfFD232B4033E47d90003D41EC34EcaEda94 is the widely published
//!   m/44'/60'/0'/0/0 address of the test mnemonic (MetaMask, Hardhat).
//! - Everything marked "bip-utils" was computed once with the Python package
//!   bip-utils 2.12.3 (Bip32Slip10Secp256k1 from the mnemonic's seed, then its
//!   P2WPKH / P2PKH / Eth / Trx address encoders), an implementation
//!   independent of this crate's; the same script reproduced the published
//!   Bitcoin values above. Not published vectors.
//!
//! The account keys are also derived here from the mnemonic (its BIP-39 seed
//! by PBKDF2, then bip32's private derivation, in this test only) and compared
//! with the fixed strings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::OnceLock;

use bip32::{DerivationPath, Prefix, XPrv};
use domain::custody::address::{AddressKind, Chain, NetworkKind, validate};
use domain::custody::hd::{DepositKey, HARDENED, HdError, Scheme};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha512;

use Chain::{Bitcoin, Bsc, Dogecoin, Ethereum, Litecoin, Tron};
use NetworkKind::{Mainnet, Regtest, Testnet};
use Scheme::{Bip44, Bip84};

const MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// SLIP-0132: m/84'/0'/0'.
const BIP84_ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";
/// BIP-84 and SLIP-0132: the account private key of m/84'/0'/0'.
const BIP84_ZPRV: &str = "zprvAdG4iTXWBoARxkkzNpNh8r6Qag3irQB8PzEMkAFeTRXxHpbF9z4QgEvBRmfvqWvGp42t42nvgGpNgYSJA9iefm1yYNZKEm7z6qUWCroSQnE";
/// SLIP-0132: m/44'/0'/0'.
const BIP44_XPUB: &str = "xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMzG3DSSSSoekkudhUd9yLb6qx39T9nMdj";
/// SLIP-0132: the account private key of m/44'/0'/0'.
const BIP44_XPRV: &str = "xprv9xpXFhFpqdQK3TmytPBqXtGSwS3DLjojFhTGht8gwAAii8py5X6pxeBnQ6ehJiyJ6nDjWGJfZ95WxByFXVkDxHXrqu53WCRGypk2ttuqncb";
/// SLIP-0132: m/49'/0'/0' (BIP-49, not supported here).
const BIP49_YPUB: &str = "ypub6Ww3ibxVfGzLrAH1PNcjyAWenMTbbAosGNB6VvmSEgytSER9azLDWCxoJwW7Ke7icmizBMXrzBx9979FfaHxHcrArf3zbeJJJUZPf663zsP";
/// bip-utils: m/44'/60'/0' as an xpub.
const EVM_XPUB: &str = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt";

const BASE58_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The BIP-39 seed of the test mnemonic with no passphrase:
/// PBKDF2-HMAC-SHA512(mnemonic, "mnemonic", 2048 rounds), one 64-byte block.
fn seed() -> &'static [u8; 64] {
    static SEED: OnceLock<[u8; 64]> = OnceLock::new();
    SEED.get_or_init(pbkdf2)
}

fn pbkdf2() -> [u8; 64] {
    let prf = || Hmac::<Sha512>::new_from_slice(MNEMONIC.as_bytes()).unwrap();
    let mut mac = prf();
    mac.update(b"mnemonic");
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 64] = mac.finalize().into_bytes().into();
    let mut seed = u;
    for _ in 1..2048 {
        let mut mac = prf();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        seed.iter_mut().zip(u).for_each(|(s, b)| *s ^= b);
    }
    seed
}

/// The extended key at `path` of the test mnemonic, serialized with
/// `prefix`; public unless `prefix` is a private one.
fn from_mnemonic(path: &str, prefix: Prefix) -> String {
    let path: DerivationPath = path.parse().unwrap();
    let xprv = XPrv::derive_from_path(seed(), &path).unwrap();
    if prefix.is_private() {
        xprv.to_string(prefix).to_string()
    } else {
        xprv.public_key().to_string(prefix)
    }
}

#[track_caller]
fn key(chain: Chain, network: NetworkKind, scheme: Scheme, xpub: &str) -> DepositKey {
    match DepositKey::parse(chain, network, scheme, xpub) {
        Ok(k) => k,
        Err(e) => panic!("{chain:?}/{network:?}/{scheme:?}: expected a key, got {e:?} ({e})"),
    }
}

#[track_caller]
fn refused(chain: Chain, network: NetworkKind, scheme: Scheme, xpub: &str) -> HdError {
    match DepositKey::parse(chain, network, scheme, xpub) {
        Ok(k) => panic!("{chain:?}/{network:?}/{scheme:?}: expected an error, got {k:?}"),
        Err(e) => e,
    }
}

/// Address `index`, checked by the withdrawal validator: right chain and
/// network, the expected kind, and already in canonical form.
#[track_caller]
fn valid_address(key: &DepositKey, index: u32) -> String {
    let address = key.address(index).unwrap();
    let valid = validate(key.chain(), key.network(), &address)
        .unwrap_or_else(|e| panic!("{key:?} #{index}: {address} does not validate: {e}"));
    assert_eq!(valid.normalized, address, "{key:?} #{index}: not canonical");
    let kind = match (key.chain(), key.scheme()) {
        (Ethereum | Bsc, _) => AddressKind::Evm,
        (Tron, _) => AddressKind::Tron,
        (_, Bip84) => AddressKind::WitnessV0Keyhash,
        (_, Bip44) => AddressKind::P2pkh,
    };
    assert_eq!(valid.kind, kind, "{key:?} #{index}: {address}");
    address
}

/// The account key of the test mnemonic for each supported combination.
fn all_keys() -> Vec<DepositKey> {
    let mut keys = Vec::new();
    for network in NetworkKind::ALL {
        let (xpub, coin) = match network {
            Mainnet => (Prefix::XPUB, 0),
            Testnet | Regtest => (Prefix::TPUB, 1),
        };
        for (chain, main_coin) in [(Bitcoin, 0), (Litecoin, 2), (Dogecoin, 3)] {
            let coin = if network == Mainnet { main_coin } else { coin };
            let bip44 = from_mnemonic(&format!("m/44'/{coin}'/0'"), xpub);
            keys.push(key(chain, network, Bip44, &bip44));
            if chain != Dogecoin {
                let bip84 = from_mnemonic(&format!("m/84'/{coin}'/0'"), xpub);
                keys.push(key(chain, network, Bip84, &bip84));
            }
        }
        for (chain, coin) in [(Ethereum, 60), (Bsc, 60), (Tron, 195)] {
            let xpub = from_mnemonic(&format!("m/44'/{coin}'/0'"), Prefix::XPUB);
            keys.push(key(chain, network, Bip44, &xpub));
        }
    }
    keys
}

// ---------------------------------------------------------------- vectors

#[test]
fn mnemonic_gives_the_published_account_keys() {
    assert_eq!(from_mnemonic("m/84'/0'/0'", Prefix::ZPUB), BIP84_ZPUB);
    assert_eq!(from_mnemonic("m/84'/0'/0'", Prefix::ZPRV), BIP84_ZPRV);
    assert_eq!(from_mnemonic("m/44'/0'/0'", Prefix::XPUB), BIP44_XPUB);
    assert_eq!(from_mnemonic("m/44'/0'/0'", Prefix::XPRV), BIP44_XPRV);
    assert_eq!(from_mnemonic("m/49'/0'/0'", Prefix::YPUB), BIP49_YPUB);
    assert_eq!(from_mnemonic("m/44'/60'/0'", Prefix::XPUB), EVM_XPUB);
}

#[test]
fn bip84_published_vectors() {
    let k = key(Bitcoin, Mainnet, Bip84, BIP84_ZPUB);
    assert_eq!(
        valid_address(&k, 0),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    assert_eq!(
        valid_address(&k, 1),
        "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    );
    let change = k.change_address(0).unwrap();
    assert_eq!(change, "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el");
    validate(Bitcoin, Mainnet, &change).unwrap();
    // The account key's fingerprint is its children's parent fingerprint.
    let child = from_mnemonic("m/84'/0'/0'/0", Prefix::XPUB);
    let child = bs58::decode(child).with_check(None).into_vec().unwrap();
    assert_eq!(k.fingerprint()[..], child[5..9]);
}

#[test]
fn bip84_accepts_the_same_key_as_xpub() {
    let xpub = from_mnemonic("m/84'/0'/0'", Prefix::XPUB);
    let via_xpub = key(Bitcoin, Mainnet, Bip84, &xpub);
    let via_zpub = key(Bitcoin, Mainnet, Bip84, BIP84_ZPUB);
    for i in [0, 1, 7, 1000] {
        assert_eq!(via_xpub.address(i), via_zpub.address(i));
    }
    assert_eq!(via_xpub.fingerprint(), via_zpub.fingerprint());
}

#[test]
fn bip44_bitcoin_published_vector() {
    let k = key(Bitcoin, Mainnet, Bip44, BIP44_XPUB);
    assert_eq!(valid_address(&k, 0), "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA");
    // bip-utils
    assert_eq!(valid_address(&k, 1), "1Ak8PffB2meyfYnbXZR9EGfLfFZVpzJvQP");
}

#[test]
fn evm_well_known_address() {
    for chain in [Ethereum, Bsc] {
        for network in NetworkKind::ALL {
            let k = key(chain, network, Bip44, EVM_XPUB);
            assert_eq!(
                valid_address(&k, 0),
                "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
            );
            // bip-utils
            assert_eq!(
                valid_address(&k, 1),
                "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0"
            );
        }
    }
    // A tpub carries the same key; EVM addresses have no network.
    let tpub = from_mnemonic("m/44'/60'/0'", Prefix::TPUB);
    let k = key(Ethereum, Mainnet, Bip44, &tpub);
    assert_eq!(
        valid_address(&k, 0),
        "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    );
}

/// (chain, network, scheme, account path, prefix, address 0, address 1),
/// all from bip-utils.
const CROSS_CHECKED: [(Chain, NetworkKind, Scheme, &str, &str, &str); 12] = [
    (
        Bitcoin,
        Testnet,
        Bip84,
        "m/84'/1'/0'",
        "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl",
        "tb1qd7spv5q28348xl4myc8zmh983w5jx32cjhkn97",
    ),
    (
        Bitcoin,
        Regtest,
        Bip84,
        "m/84'/1'/0'",
        "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk",
        "bcrt1qd7spv5q28348xl4myc8zmh983w5jx32cs707jh",
    ),
    (
        Bitcoin,
        Testnet,
        Bip44,
        "m/44'/1'/0'",
        "mkpZhYtJu2r87Js3pDiWJDmPte2NRZ8bJV",
        "mzpbWabUQm1w8ijuJnAof5eiSTep27deVH",
    ),
    (
        Litecoin,
        Mainnet,
        Bip84,
        "m/84'/2'/0'",
        "ltc1qjmxnz78nmc8nq77wuxh25n2es7rzm5c2rkk4wh",
        "ltc1qwlezpr3890hcp6vva9twqh27mr6edadreqvhnn",
    ),
    (
        Litecoin,
        Testnet,
        Bip84,
        "m/84'/1'/0'",
        "tltc1q6rz28mcfaxtmd6v789l9rrlrusdprr9pesrjxk",
        "tltc1qd7spv5q28348xl4myc8zmh983w5jx32ctl5d4h",
    ),
    (
        Litecoin,
        Regtest,
        Bip84,
        "m/84'/1'/0'",
        "rltc1q6rz28mcfaxtmd6v789l9rrlrusdprr9puuzgkg",
        "rltc1qd7spv5q28348xl4myc8zmh983w5jx32cwn4h9f",
    ),
    (
        Litecoin,
        Mainnet,
        Bip44,
        "m/44'/2'/0'",
        "LUWPbpM43E2p7ZSh8cyTBEkvpHmr3cB8Ez",
        "Ldatw8ZjgMGNUo5HMN6RgCrjmh7q494Si3",
    ),
    (
        Dogecoin,
        Mainnet,
        Bip44,
        "m/44'/3'/0'",
        "DBus3bamQjgJULBJtYXpEzDWQRwF5iwxgC",
        "DAcDAtJRztxBHyA6D6h8du1HguyTR43Mas",
    ),
    (
        Dogecoin,
        Testnet,
        Bip44,
        "m/44'/1'/0'",
        "nZVmfmUtKPmskB9Ds4P9GUJy9eYFqPKHqH",
        "noVoUoC3q7wgmb25McqSdLCHhUAhSREkT9",
    ),
    // Dogecoin's regtest uses Bitcoin's test prefix.
    (
        Dogecoin,
        Regtest,
        Bip44,
        "m/44'/1'/0'",
        "mkpZhYtJu2r87Js3pDiWJDmPte2NRZ8bJV",
        "mzpbWabUQm1w8ijuJnAof5eiSTep27deVH",
    ),
    (
        Tron,
        Mainnet,
        Bip44,
        "m/44'/195'/0'",
        "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH",
        "TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK",
    ),
    (
        Tron,
        Testnet,
        Bip44,
        "m/44'/195'/0'",
        "TUEZSdKsoDHQMeZwihtdoBiN46zxhGWYdH",
        "TSeJkUh4Qv67VNFwY8LaAxERygNdy6NQZK",
    ),
];

#[test]
fn cross_checked_addresses_for_the_other_chains() {
    for (chain, network, scheme, path, first, second) in CROSS_CHECKED {
        let prefix = match (chain, network) {
            (Tron, _) | (_, Mainnet) => Prefix::XPUB,
            _ => Prefix::TPUB,
        };
        let k = key(chain, network, scheme, &from_mnemonic(path, prefix));
        assert_eq!(
            valid_address(&k, 0),
            first,
            "{chain:?}/{network:?}/{scheme:?}"
        );
        assert_eq!(
            valid_address(&k, 1),
            second,
            "{chain:?}/{network:?}/{scheme:?}"
        );
    }
    // The same testnet key as vpub.
    let vpub = from_mnemonic(
        "m/84'/1'/0'",
        Prefix::from_parts_unchecked("vpub", 0x045f_1cf6),
    );
    assert!(vpub.starts_with("vpub"));
    let k = key(Bitcoin, Testnet, Bip84, &vpub);
    assert_eq!(
        valid_address(&k, 0),
        "tb1q6rz28mcfaxtmd6v789l9rrlrusdprr9pqcpvkl"
    );
}

// ---------------------------------------------------------------- properties

#[test]
fn every_combination_gives_100_distinct_valid_addresses() {
    let keys = all_keys();
    assert_eq!(keys.len(), 3 * 8);
    for k in &keys {
        let addresses: HashSet<String> = (0..100).map(|i| valid_address(k, i)).collect();
        assert_eq!(addresses.len(), 100, "{k:?}");
        // Deterministic.
        assert_eq!(k.address(42), k.clone().address(42));
        // Receive and change chains differ.
        assert!(!addresses.contains(&k.change_address(0).unwrap()), "{k:?}");
    }
}

#[test]
fn index_must_be_below_2_pow_31() {
    let k = key(Bitcoin, Mainnet, Bip84, BIP84_ZPUB);
    valid_address(&k, HARDENED - 1);
    for index in [HARDENED, HARDENED + 1, u32::MAX] {
        let e = k.address(index).unwrap_err();
        assert_eq!(e, HdError::IndexOutOfRange { index });
        assert_eq!(e.code(), "index_out_of_range");
        assert_eq!(
            k.change_address(index).unwrap_err(),
            HdError::IndexOutOfRange { index }
        );
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn private_keys_are_refused() {
    let tprv = from_mnemonic("m/84'/1'/0'", Prefix::TPRV);
    let mut corrupted_xprv = BIP44_XPRV.to_owned();
    corrupted_xprv.replace_range(50..51, "z");
    let mut cases = vec![
        (Bitcoin, Mainnet, Bip84, BIP84_ZPRV.to_owned()),
        (Bitcoin, Mainnet, Bip44, BIP44_XPRV.to_owned()),
        (Bitcoin, Testnet, Bip84, tprv),
        (Bitcoin, Mainnet, Bip44, corrupted_xprv),
    ];
    for chain in [Ethereum, Bsc, Tron, Litecoin, Dogecoin] {
        cases.push((chain, Mainnet, Bip44, BIP44_XPRV.to_owned()));
    }
    // Whatever else is wrong: scheme, network, surrounding spaces.
    cases.push((Dogecoin, Mainnet, Bip84, BIP84_ZPRV.to_owned()));
    cases.push((Ethereum, Mainnet, Bip84, BIP44_XPRV.to_owned()));
    cases.push((Bitcoin, Testnet, Bip44, BIP44_XPRV.to_owned()));
    cases.push((Bitcoin, Mainnet, Bip44, format!(" {BIP44_XPRV}\n")));
    // A private key behind a public version: refused by its data.
    let mut data = bs58::decode(BIP44_XPRV)
        .with_check(None)
        .into_vec()
        .unwrap();
    data.splice(..4, 0x0488_b21e_u32.to_be_bytes());
    let disguised = bs58::encode(data).with_check().into_string();
    assert!(disguised.starts_with("xpub"));
    cases.push((Bitcoin, Mainnet, Bip44, disguised));
    for (chain, network, scheme, xprv) in cases {
        let e = refused(chain, network, scheme, &xprv);
        assert_eq!(e, HdError::PrivateKey, "{chain:?} {}", &xprv[..5]);
        assert_eq!(e.code(), "private_key");
        let message = e.to_string();
        assert!(
            message.contains("never configure a private key"),
            "{message}"
        );
        assert!(
            !message.contains(&xprv[5..20]),
            "the message repeats the key"
        );
    }
}

#[test]
fn dogecoin_has_no_segwit() {
    let e = refused(Dogecoin, Mainnet, Bip84, BIP84_ZPUB);
    assert_eq!(e.code(), "unsupported_scheme");
    assert!(e.to_string().contains("no segwit"), "{e}");
    // The scheme is refused whatever the key.
    let xpub = from_mnemonic("m/84'/3'/0'", Prefix::XPUB);
    assert_eq!(
        refused(Dogecoin, Mainnet, Bip84, &xpub).code(),
        "unsupported_scheme"
    );
    // A zpub with BIP-44 is a mix-up of its own.
    assert_eq!(
        refused(Dogecoin, Mainnet, Bip44, BIP84_ZPUB),
        HdError::WrongScheme {
            prefix: "zpub",
            scheme: Bip44
        }
    );
}

#[test]
fn evm_and_tron_are_bip44_only() {
    for chain in [Ethereum, Bsc, Tron] {
        assert_eq!(
            refused(chain, Mainnet, Bip84, EVM_XPUB).code(),
            "unsupported_scheme"
        );
        assert_eq!(
            refused(chain, Mainnet, Bip44, BIP84_ZPUB).code(),
            "wrong_scheme"
        );
    }
}

#[test]
fn one_changed_character_is_refused() {
    for xpub in [BIP84_ZPUB, BIP44_XPUB, EVM_XPUB] {
        for (i, original) in xpub.char_indices() {
            for replacement in BASE58_ALPHABET.chars().filter(|&c| c != original).take(3) {
                let mut typo = xpub.to_owned();
                typo.replace_range(i..=i, &replacement.to_string());
                let scheme = if xpub == BIP84_ZPUB { Bip84 } else { Bip44 };
                let e = refused(Bitcoin, Mainnet, scheme, &typo);
                if i == 0 {
                    // The first character also carries the length.
                    assert!(
                        matches!(e, HdError::BadChecksum | HdError::BadEncoding),
                        "{typo}: {e:?}"
                    );
                } else {
                    assert_eq!(e, HdError::BadChecksum, "{typo}");
                }
            }
        }
    }
    let e = refused(
        Bitcoin,
        Mainnet,
        Bip84,
        &BIP84_ZPUB.replace("zpub6rFR", "zpub6rFr"),
    );
    assert!(e.to_string().contains("typo"), "{e}");
}

#[test]
fn network_must_match_the_key() {
    let tpub = from_mnemonic("m/84'/1'/0'", Prefix::TPUB);
    for chain in [Bitcoin, Litecoin] {
        for network in [Testnet, Regtest] {
            assert_eq!(
                refused(chain, network, Bip84, BIP84_ZPUB),
                HdError::WrongNetwork {
                    prefix: "zpub",
                    network
                }
            );
        }
        let e = refused(chain, Mainnet, Bip84, &tpub);
        assert_eq!(
            e,
            HdError::WrongNetwork {
                prefix: "tpub",
                network: Mainnet
            }
        );
        assert_eq!(e.to_string(), "is a tpub key, which is not for mainnet");
    }
    assert_eq!(
        refused(Dogecoin, Testnet, Bip44, BIP44_XPUB).code(),
        "wrong_network"
    );
}

#[test]
fn only_account_level_keys() {
    for (path, depth) in [("m", 0), ("m/84'", 1), ("m/84'/0'/0'/0", 4)] {
        let xpub = from_mnemonic(path, Prefix::XPUB);
        let e = refused(Bitcoin, Mainnet, Bip84, &xpub);
        assert_eq!(e.code(), "not_account_level", "{path}");
        assert!(e.to_string().contains(&format!("depth {depth}")), "{e}");
    }
    // Depth 3 but reached by a non-hardened step.
    let xpub = from_mnemonic("m/84'/0'/0", Prefix::XPUB);
    let e = refused(Bitcoin, Mainnet, Bip84, &xpub);
    assert_eq!(e.code(), "not_account_level");
    assert!(e.to_string().contains("non-hardened"), "{e}");
}

#[test]
fn other_versions_are_refused() {
    let e = refused(Bitcoin, Mainnet, Bip84, BIP49_YPUB);
    assert_eq!(
        e,
        HdError::UnsupportedVersion {
            prefix: "ypub",
            what: "BIP-49 P2SH-wrapped segwit"
        }
    );
    // Dogecoin's own dgub (version 0x02facafd) is not accepted.
    let mut data = bs58::decode(BIP44_XPUB)
        .with_check(None)
        .into_vec()
        .unwrap();
    data.splice(..4, 0x02fa_cafd_u32.to_be_bytes());
    let dgub = bs58::encode(data).with_check().into_string();
    assert!(dgub.starts_with("dgub"), "{dgub}");
    assert_eq!(
        refused(Dogecoin, Mainnet, Bip44, &dgub),
        HdError::UnknownVersion
    );
}

#[test]
fn malformed_input_is_refused() {
    let cases: [(&str, &str); 8] = [
        ("", "empty"),
        ("   ", "empty"),
        (&format!("{BIP84_ZPUB}\n"), "surrounding_whitespace"),
        (&format!(" {BIP84_ZPUB}"), "surrounding_whitespace"),
        ("zpub0OIl", "bad_encoding"),
        ("xpub", "bad_encoding"),
        (&BIP84_ZPUB[..100], "bad_encoding"),
        (&"1".repeat(500), "bad_encoding"),
    ];
    for (input, code) in cases {
        assert_eq!(
            refused(Bitcoin, Mainnet, Bip84, input).code(),
            code,
            "{input:?}"
        );
    }
    // 78 bytes that are no point on the curve.
    let mut data = bs58::decode(BIP84_ZPUB)
        .with_check(None)
        .into_vec()
        .unwrap();
    data[46..].fill(0xff);
    let off_curve = bs58::encode(data).with_check().into_string();
    assert_eq!(
        refused(Bitcoin, Mainnet, Bip84, &off_curve),
        HdError::InvalidPublicKey
    );
}

#[test]
fn debug_does_not_show_the_key() {
    let k = key(Bitcoin, Mainnet, Bip84, BIP84_ZPUB);
    let debug = format!("{k:?}");
    assert!(
        debug.contains("Bitcoin") && debug.contains("fingerprint"),
        "{debug}"
    );
    assert!(
        !debug.contains("zpub") && !debug.contains("xpub"),
        "{debug}"
    );
    assert!(!debug.contains("chain_code"), "{debug}");
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(input in ".{0,130}") {
        for chain in Chain::ALL {
            for scheme in [Bip44, Bip84] {
                let _ = DepositKey::parse(chain, Mainnet, scheme, &input);
            }
        }
    }

    #[test]
    fn arbitrary_base58_never_panics(input in "[1-9A-HJ-NP-Za-km-z]{100,115}") {
        let _ = DepositKey::parse(Bitcoin, Mainnet, Bip84, &input);
    }
}
