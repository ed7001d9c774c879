//! Deposit addresses derived from an account's extended *public* key
//! (BIP-32). Pure: no I/O, no private key, and no input makes it panic.
//!
//! The operator configures, per chain and network, the account-level key
//! `m/purpose'/coin'/account'` exported from the custody wallet. Customer
//! deposit address `i` is the key at `<account>/0/i` (the external chain;
//! [`DepositKey::change_address`] gives `<account>/1/i`), so the wallet that
//! holds the private key finds every deposit without this process ever
//! seeing it.
//!
//! | chain | [`Scheme::Bip84`] | [`Scheme::Bip44`] |
//! | --- | --- | --- |
//! | Bitcoin | P2WPKH `bc1q…` / `tb1q…` / `bcrt1q…` | P2PKH `0x00` / `0x6f` / `0x6f` |
//! | Litecoin | P2WPKH `ltc1q…` / `tltc1q…` / `rltc1q…` | P2PKH `0x30` / `0x6f` / `0x6f` |
//! | Dogecoin | refused: no segwit | P2PKH `0x1e` / `0x71` / `0x6f` |
//! | Ethereum, BSC | refused | EIP-55 `0x…`: keccak256 of the uncompressed key, last 20 bytes |
//! | Tron | refused | base58check `0x41` + the same 20 bytes as EVM |
//!
//! Keys accepted:
//! - `xpub` (mainnet) and `tpub` (testnet and regtest), for either scheme;
//!   `zpub` / `vpub` (SLIP-132 native segwit) for [`Scheme::Bip84`] only.
//!   They carry the same key: only the version bytes differ.
//! - EVM and Tron addresses carry no network, so there `xpub` and `tpub` are
//!   accepted for any network kind.
//! - The key must be account level: depth 3, reached by a hardened step.
//!
//! Refused: any extended private key (`xprv`, `tprv`, `zprv`, …, or any key
//! whose data is a private key), a bad checksum, BIP-49 `ypub`/`upub` and
//! multisig `Ypub`/`Zpub`/`Upub`/`Vpub` keys, other versions (including
//! coin-specific ones such as Dogecoin's `dgub` or Litecoin's `Ltub`:
//! re-export as `xpub`/`tpub`), and indexes of 2^31 and above (hardened
//! derivation needs the private key).

use std::fmt;

use bech32::Hrp;
use bip32::{ChildNumber, ExtendedKeyAttrs, PublicKey as _, XPub};
use ripemd::Ripemd160;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiny_keccak::{Hasher, Keccak};

use super::address::{Chain, NetworkKind, evm_checksum_address};

/// Serialized extended keys are 78 bytes (BIP-32) before the checksum.
const EXTENDED_KEY_LEN: usize = 78;

/// Base58check appends four checksum bytes.
const CHECKSUM_LEN: usize = 4;

/// An extended key in base58check is 111 characters; anything much longer
/// is refused before decoding.
const MAX_EXTENDED_KEY_CHARS: usize = 120;

/// The depth of `m/purpose'/coin'/account'`.
const ACCOUNT_DEPTH: u8 = 3;

/// BIP-32 child indexes at and above this are hardened.
pub const HARDENED: u32 = 1 << 31;

/// Tron's base58check address version.
const TRON_VERSION: u8 = 0x41;

/// How addresses are made from the derived keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Native segwit P2WPKH; the key is `m/84'/coin'/account'`.
    Bip84,
    /// P2PKH on Bitcoin-like chains, the account address on EVM chains and
    /// Tron; the key is `m/44'/coin'/account'`.
    Bip44,
}

impl Scheme {
    /// Stable snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Bip84 => "bip84",
            Scheme::Bip44 => "bip44",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Bip84 => "BIP-84",
            Scheme::Bip44 => "BIP-44",
        })
    }
}

/// Why a key could not be configured or an address derived. Messages never
/// repeat the key. [`HdError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HdError {
    #[error("must not be empty")]
    Empty,
    #[error("must not start or end with spaces or line breaks")]
    SurroundingWhitespace,
    #[error(
        "is an extended private key: never configure a private key here; \
         export the account's extended public key (xpub/tpub/zpub/vpub) instead"
    )]
    PrivateKey,
    #[error("is not a base58check extended key (bad characters, or too short or long)")]
    BadEncoding,
    #[error("checksum does not match: the key has a typo")]
    BadChecksum,
    #[error("has an unknown version prefix; use an xpub or tpub (or zpub/vpub for BIP-84)")]
    UnknownVersion,
    #[error(
        "{prefix} keys are not supported ({what}); use an xpub or tpub (or zpub/vpub for BIP-84)"
    )]
    UnsupportedVersion {
        prefix: &'static str,
        what: &'static str,
    },
    #[error("is a {prefix} key, which is not for {network}")]
    WrongNetwork {
        prefix: &'static str,
        network: NetworkKind,
    },
    #[error("a {prefix} key is for BIP-84 (native segwit), not {scheme}")]
    WrongScheme {
        prefix: &'static str,
        scheme: Scheme,
    },
    #[error("{chain} has no {scheme} addresses{hint}")]
    UnsupportedScheme {
        chain: Chain,
        scheme: Scheme,
        hint: &'static str,
    },
    #[error(
        "must be an account-level key (depth 3, m/purpose'/coin'/account'), \
         but it has depth {depth}{hardened}"
    )]
    NotAccountLevel { depth: u8, hardened: &'static str },
    #[error("does not hold a valid secp256k1 public key")]
    InvalidPublicKey,
    #[error("index {index} is out of range: deposit indexes are below 2^31 (non-hardened)")]
    IndexOutOfRange { index: u32 },
    #[error(
        "index {index} gives no valid key (BIP-32, probability below 2^-127): skip to the next index"
    )]
    UnusableIndex { index: u32 },
    #[error("could not encode the address")]
    Encoding,
}

impl HdError {
    /// Stable snake_case code for problems, logs and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            HdError::Empty => "empty",
            HdError::SurroundingWhitespace => "surrounding_whitespace",
            HdError::PrivateKey => "private_key",
            HdError::BadEncoding => "bad_encoding",
            HdError::BadChecksum => "bad_checksum",
            HdError::UnknownVersion => "unknown_version",
            HdError::UnsupportedVersion { .. } => "unsupported_version",
            HdError::WrongNetwork { .. } => "wrong_network",
            HdError::WrongScheme { .. } => "wrong_scheme",
            HdError::UnsupportedScheme { .. } => "unsupported_scheme",
            HdError::NotAccountLevel { .. } => "not_account_level",
            HdError::InvalidPublicKey => "invalid_public_key",
            HdError::IndexOutOfRange { .. } => "index_out_of_range",
            HdError::UnusableIndex { .. } => "unusable_index",
            HdError::Encoding => "encoding",
        }
    }
}

// ---------------------------------------------------------------- versions

/// Which networks a version's keys are for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyNet {
    Main,
    Test,
}

#[derive(Clone, Copy)]
enum VersionUse {
    /// Public, for either scheme.
    Any(KeyNet),
    /// Public, BIP-84 only (SLIP-132 `zpub`/`vpub`).
    Segwit(KeyNet),
    /// Public, but of a kind not supported here.
    Unsupported(&'static str),
    Private,
}

/// BIP-32 and SLIP-132 version bytes.
const VERSIONS: [(u32, &str, VersionUse); 20] = {
    use KeyNet::{Main, Test};
    use VersionUse::{Any, Private, Segwit, Unsupported};
    const BIP49: VersionUse = Unsupported("BIP-49 P2SH-wrapped segwit");
    const MULTISIG: VersionUse = Unsupported("multisig");
    [
        (0x0488_b21e, "xpub", Any(Main)),
        (0x0435_87cf, "tpub", Any(Test)),
        (0x04b2_4746, "zpub", Segwit(Main)),
        (0x045f_1cf6, "vpub", Segwit(Test)),
        (0x049d_7cb2, "ypub", BIP49),
        (0x044a_5262, "upub", BIP49),
        (0x0295_b43f, "Ypub", MULTISIG),
        (0x02aa_7ed3, "Zpub", MULTISIG),
        (0x0242_89ef, "Upub", MULTISIG),
        (0x0257_5483, "Vpub", MULTISIG),
        (0x0488_ade4, "xprv", Private),
        (0x0435_8394, "tprv", Private),
        (0x049d_7878, "yprv", Private),
        (0x044a_4e28, "uprv", Private),
        (0x04b2_430c, "zprv", Private),
        (0x045f_18bc, "vprv", Private),
        (0x0295_b005, "Yprv", Private),
        (0x02aa_7a99, "Zprv", Private),
        (0x0242_85b5, "Uprv", Private),
        (0x0257_5048, "Vprv", Private),
    ]
};

// ---------------------------------------------------------------- formats

/// How a derived public key becomes an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Segwit(Hrp),
    P2pkh(u8),
    Evm,
    Tron,
}

fn format(chain: Chain, network: NetworkKind, scheme: Scheme) -> Result<Format, HdError> {
    use NetworkKind::{Mainnet, Regtest, Testnet};
    let refused = |hint| {
        Err(HdError::UnsupportedScheme {
            chain,
            scheme,
            hint,
        })
    };
    match (chain, scheme) {
        (Chain::Bitcoin, Scheme::Bip84) => Ok(Format::Segwit(match network {
            Mainnet => bech32::hrp::BC,
            Testnet => bech32::hrp::TB,
            Regtest => bech32::hrp::BCRT,
        })),
        (Chain::Litecoin, Scheme::Bip84) => {
            Ok(Format::Segwit(Hrp::parse_unchecked(match network {
                Mainnet => "ltc",
                Testnet => "tltc",
                Regtest => "rltc",
            })))
        }
        (Chain::Bitcoin, Scheme::Bip44) => Ok(Format::P2pkh(match network {
            Mainnet => 0x00,
            Testnet | Regtest => 0x6f,
        })),
        (Chain::Litecoin, Scheme::Bip44) => Ok(Format::P2pkh(match network {
            Mainnet => 0x30,
            Testnet | Regtest => 0x6f,
        })),
        // Dogecoin's regtest takes Bitcoin's test prefix, not its testnet's.
        (Chain::Dogecoin, Scheme::Bip44) => Ok(Format::P2pkh(match network {
            Mainnet => 0x1e,
            Testnet => 0x71,
            Regtest => 0x6f,
        })),
        (Chain::Dogecoin, Scheme::Bip84) => refused(" (Dogecoin has no segwit): use BIP-44"),
        (Chain::Ethereum | Chain::Bsc, Scheme::Bip44) => Ok(Format::Evm),
        (Chain::Tron, Scheme::Bip44) => Ok(Format::Tron),
        (Chain::Ethereum | Chain::Bsc | Chain::Tron, Scheme::Bip84) => refused(": use BIP-44"),
    }
}

// ---------------------------------------------------------------- key

/// A configured account key that derives deposit addresses. Holds public
/// keys only. Its `Debug` shows the account fingerprint, not the key: an
/// extended public key links every address it derives.
#[derive(Clone)]
pub struct DepositKey {
    chain: Chain,
    network: NetworkKind,
    scheme: Scheme,
    format: Format,
    fingerprint: [u8; 4],
    /// `<account>/0`, where deposit addresses come from.
    external: XPub,
    /// `<account>/1`.
    internal: XPub,
}

impl fmt::Debug for DepositKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DepositKey")
            .field("chain", &self.chain)
            .field("network", &self.network)
            .field("scheme", &self.scheme)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

impl DepositKey {
    /// Parses the account-level extended public key `key` for deposits of
    /// `chain` on `network`. See the module documentation for what is
    /// accepted.
    pub fn parse(
        chain: Chain,
        network: NetworkKind,
        scheme: Scheme,
        key: &str,
    ) -> Result<Self, HdError> {
        // The key first: a private key is refused whatever else is wrong.
        let account = decode(chain, network, scheme, key)?;
        let format = format(chain, network, scheme)?;
        let external = derive(&account, 0).map_err(|_| HdError::InvalidPublicKey)?;
        let internal = derive(&account, 1).map_err(|_| HdError::InvalidPublicKey)?;
        Ok(DepositKey {
            chain,
            network,
            scheme,
            format,
            fingerprint: account.fingerprint(),
            external,
            internal,
        })
    }

    pub fn chain(&self) -> Chain {
        self.chain
    }

    pub fn network(&self) -> NetworkKind {
        self.network
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The account key's BIP-32 fingerprint (hash160 of its public key, first
    /// four bytes): which key an address came from, without revealing it.
    pub fn fingerprint(&self) -> [u8; 4] {
        self.fingerprint
    }

    /// Deposit (receive) address number `index`: the key `<account>/0/index`.
    /// `index` must be below 2^31.
    pub fn address(&self, index: u32) -> Result<String, HdError> {
        self.encode(&derive(&self.external, index)?)
    }

    /// Change address number `index`: the key `<account>/1/index`. Not for
    /// deposits; for watching the wallet's own change.
    pub fn change_address(&self, index: u32) -> Result<String, HdError> {
        self.encode(&derive(&self.internal, index)?)
    }

    fn encode(&self, key: &XPub) -> Result<String, HdError> {
        match self.format {
            Format::Segwit(hrp) => bech32::segwit::encode_v0(hrp, &hash160(&key.to_bytes()))
                .map_err(|_| HdError::Encoding),
            Format::P2pkh(version) => Ok(base58check(version, &hash160(&key.to_bytes()))),
            Format::Evm => Ok(evm_checksum_address(&evm_account(key)?)),
            Format::Tron => Ok(base58check(TRON_VERSION, &evm_account(key)?)),
        }
    }
}

/// The non-hardened child `index` of `key`.
fn derive(key: &XPub, index: u32) -> Result<XPub, HdError> {
    if index >= HARDENED {
        return Err(HdError::IndexOutOfRange { index });
    }
    let number = ChildNumber::new(index, false).map_err(|_| HdError::IndexOutOfRange { index })?;
    key.derive_child(number)
        .map_err(|_| HdError::UnusableIndex { index })
}

fn decode(chain: Chain, network: NetworkKind, scheme: Scheme, key: &str) -> Result<XPub, HdError> {
    let trimmed = key.trim();
    // Refuse anything that looks like a private key before looking further:
    // typo, stray spaces or not.
    if trimmed.get(1..4) == Some("prv") {
        return Err(HdError::PrivateKey);
    }
    if trimmed.is_empty() {
        return Err(HdError::Empty);
    }
    if trimmed.len() != key.len() {
        return Err(HdError::SurroundingWhitespace);
    }
    if key.len() > MAX_EXTENDED_KEY_CHARS {
        return Err(HdError::BadEncoding);
    }
    // Characters and length first, so that a key cut short is reported as
    // such rather than as a typo.
    let raw_len = bs58::decode(key)
        .into_vec()
        .map_err(|_| HdError::BadEncoding)?
        .len();
    if raw_len != EXTENDED_KEY_LEN + CHECKSUM_LEN {
        return Err(HdError::BadEncoding);
    }
    let decoded = bs58::decode(key)
        .with_check(None)
        .into_vec()
        .map_err(|e| match e {
            bs58::decode::Error::InvalidChecksum { .. } => HdError::BadChecksum,
            _ => HdError::BadEncoding,
        })?;
    let bytes: [u8; EXTENDED_KEY_LEN] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| HdError::BadEncoding)?;
    let [
        v0,
        v1,
        v2,
        v3,
        depth,
        f0,
        f1,
        f2,
        f3,
        n0,
        n1,
        n2,
        n3,
        rest @ ..,
    ] = bytes;
    let (chain_code, key_bytes) = rest.split_first_chunk::<32>().ok_or(HdError::BadEncoding)?;
    let key_bytes: [u8; 33] = key_bytes.try_into().map_err(|_| HdError::BadEncoding)?;
    // A private key is serialized as 0x00 and the 32-byte scalar, whatever
    // the version says.
    if key_bytes.first() == Some(&0x00) {
        return Err(HdError::PrivateKey);
    }
    let version = u32::from_be_bytes([v0, v1, v2, v3]);
    let &(_, prefix, usage) = VERSIONS
        .iter()
        .find(|(v, ..)| *v == version)
        .ok_or(HdError::UnknownVersion)?;
    let net = match usage {
        VersionUse::Private => return Err(HdError::PrivateKey),
        VersionUse::Unsupported(what) => {
            return Err(HdError::UnsupportedVersion { prefix, what });
        }
        VersionUse::Segwit(_) if scheme != Scheme::Bip84 => {
            return Err(HdError::WrongScheme { prefix, scheme });
        }
        VersionUse::Any(net) | VersionUse::Segwit(net) => net,
    };
    let network_free = matches!(chain, Chain::Ethereum | Chain::Bsc | Chain::Tron);
    let wanted = match network {
        NetworkKind::Mainnet => KeyNet::Main,
        NetworkKind::Testnet | NetworkKind::Regtest => KeyNet::Test,
    };
    if !network_free && net != wanted {
        return Err(HdError::WrongNetwork { prefix, network });
    }
    let child_number = ChildNumber::from_bytes([n0, n1, n2, n3]);
    if depth != ACCOUNT_DEPTH || !child_number.is_hardened() {
        return Err(HdError::NotAccountLevel {
            depth,
            hardened: if child_number.is_hardened() {
                ""
            } else {
                " and a non-hardened last step"
            },
        });
    }
    let public_key = bip32::secp256k1::ecdsa::VerifyingKey::from_bytes(key_bytes)
        .map_err(|_| HdError::InvalidPublicKey)?;
    Ok(XPub::new(
        public_key,
        ExtendedKeyAttrs {
            depth,
            parent_fingerprint: [f0, f1, f2, f3],
            child_number,
            chain_code: *chain_code,
        },
    ))
}

// ---------------------------------------------------------------- hashes

/// RIPEMD-160 of SHA-256: the hash in P2PKH and P2WPKH.
fn hash160(data: &[u8]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(data)).into()
}

fn base58check(version: u8, payload: &[u8; 20]) -> String {
    let mut bytes = Vec::with_capacity(1 + payload.len());
    bytes.push(version);
    bytes.extend_from_slice(payload);
    bs58::encode(bytes).with_check().into_string()
}

/// The EVM account of a public key: the last 20 bytes of keccak256 of its
/// uncompressed form without the 0x04 tag. Tron uses the same bytes.
fn evm_account(key: &XPub) -> Result<[u8; 20], HdError> {
    let point = key.public_key().to_encoded_point(false);
    let xy = point.as_bytes().get(1..).ok_or(HdError::Encoding)?;
    let mut hasher = Keccak::v256();
    hasher.update(xy);
    let mut hash = [0u8; 32];
    hasher.finalize(&mut hash);
    hash.last_chunk::<20>().copied().ok_or(HdError::Encoding)
}
