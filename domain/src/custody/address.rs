//! Withdrawal address validation: is this string an address that coins of
//! `chain` on `network` can be sent to? Pure and total: no I/O, and no input
//! makes it panic.
//!
//! What each chain accepts:
//!
//! | chain | formats | mainnet | testnet | regtest |
//! | --- | --- | --- | --- | --- |
//! | Bitcoin | base58check P2PKH / P2SH | `0x00` / `0x05` | `0x6f` / `0xc4` | as testnet |
//! | Bitcoin | segwit (BIP-173, BIP-350) | `bc` | `tb` | `bcrt` |
//! | Litecoin | base58check P2PKH / P2SH | `0x30` / `0x32`, legacy `0x05` | `0x6f` / `0x3a`, legacy `0xc4` | as testnet |
//! | Litecoin | segwit | `ltc` | `tltc` | `rltc` |
//! | Dogecoin | base58check P2PKH / P2SH | `0x1e` / `0x16` | `0x71` / `0xc4` | `0x6f` / `0xc4` |
//! | Ethereum, BSC | `0x` + 40 hex, EIP-55 | any | any | any |
//! | Tron | base58check, version `0x41` | any | any | any |
//!
//! Choices worth knowing:
//! - Dogecoin's regtest uses Bitcoin's test prefixes (`0x6f` / `0xc4`), not
//!   its own testnet's `0x71`: that is what Dogecoin Core's regtest chain
//!   parameters say, so it is what a dogecoind in regtest hands out. Dogecoin
//!   has no segwit addresses.
//! - Base58 testnet and regtest share prefixes on Bitcoin and Litecoin, so a
//!   `0x6f` address is accepted for either; when it is refused on mainnet the
//!   error names testnet.
//! - Segwit: version 0 must carry a bech32 checksum and a 20 or 32 byte
//!   program; versions 1 to 16 a bech32m checksum and 2 to 40 bytes. Version 1
//!   with 32 bytes is taproot; other valid versions come back as
//!   [`AddressKind::WitnessFuture`]: valid, but not spendable safely today,
//!   so a withdrawal policy should refuse them.
//! - Litecoin MWEB addresses (`ltcmweb1…`, `tmweb1…`) are refused as
//!   unsupported.
//! - EVM and Tron addresses carry no network: any network kind accepts them
//!   and the result echoes the one asked for.
//! - Surrounding whitespace is an error of its own, never trimmed: a pasted
//!   newline must not validate silently.
//! - Errors about the network or the chain are only given for an address
//!   that is otherwise valid (checksum and all), so they are never a guess.

use std::fmt;

use bech32::primitives::decode::{CharError, UncheckedHrpstring, UncheckedHrpstringError};
use bech32::{Bech32, Bech32m};
use serde::{Deserialize, Serialize};
use tiny_keccak::{Hasher, Keccak};
use utoipa::ToSchema;

/// No address accepted here is longer (the segwit limit, BIP-173); longer
/// input is refused before any decoding.
pub const MAX_ADDRESS_LEN: usize = 90;

/// Bech32 and bech32m checksums are six characters.
const BECH32_CHECKSUM_LEN: usize = 6;

/// Bytes in a P2PKH/P2SH hash and in a Tron or EVM account.
const HASH160_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    Bitcoin,
    Litecoin,
    Dogecoin,
    Ethereum,
    Bsc,
    Tron,
}

impl Chain {
    pub const ALL: [Chain; 6] = [
        Chain::Bitcoin,
        Chain::Litecoin,
        Chain::Dogecoin,
        Chain::Ethereum,
        Chain::Bsc,
        Chain::Tron,
    ];

    /// Stable snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            Chain::Bitcoin => "bitcoin",
            Chain::Litecoin => "litecoin",
            Chain::Dogecoin => "dogecoin",
            Chain::Ethereum => "ethereum",
            Chain::Bsc => "bsc",
            Chain::Tron => "tron",
        }
    }

    /// Name for people, as in error messages.
    pub const fn display_name(self) -> &'static str {
        match self {
            Chain::Bitcoin => "Bitcoin",
            Chain::Litecoin => "Litecoin",
            Chain::Dogecoin => "Dogecoin",
            Chain::Ethereum => "Ethereum",
            Chain::Bsc => "BNB Smart Chain",
            Chain::Tron => "Tron",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    Mainnet,
    Testnet,
    Regtest,
}

impl NetworkKind {
    pub const ALL: [NetworkKind; 3] = [
        NetworkKind::Mainnet,
        NetworkKind::Testnet,
        NetworkKind::Regtest,
    ];

    /// Stable snake_case name, as serialized; also the name for people.
    pub const fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Mainnet => "mainnet",
            NetworkKind::Testnet => "testnet",
            NetworkKind::Regtest => "regtest",
        }
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of output an address pays to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    /// Base58check pay-to-public-key-hash.
    P2pkh,
    /// Base58check pay-to-script-hash.
    P2sh,
    /// Segwit v0, 20-byte program (P2WPKH).
    WitnessV0Keyhash,
    /// Segwit v0, 32-byte program (P2WSH).
    WitnessV0Scripthash,
    /// Segwit v1, 32-byte program (P2TR).
    Taproot,
    /// A valid segwit address of a version or length with no meaning yet
    /// (v1 not 32 bytes, v2..v16). Valid by BIP-350, but coins sent there are
    /// not safely spendable today: withdrawal policy should refuse it.
    WitnessFuture { version: u8, program_len: usize },
    /// An Ethereum or BSC account (20 bytes).
    Evm,
    /// A Tron account (version 0x41, 20 bytes).
    Tron,
}

/// An address that passed [`validate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidAddress {
    pub chain: Chain,
    /// The network the address belongs to; for EVM and Tron, which carry
    /// none, the one that was asked for.
    pub network: NetworkKind,
    pub kind: AddressKind,
    /// The canonical spelling to store and send to: segwit lowercase, EVM in
    /// its EIP-55 checksummed form, base58 as given (it is case-sensitive).
    pub normalized: String,
}

/// Why a string is not an acceptable address. [`AddressError::code`] is
/// stable; the messages are meant for a 422 problem on the field `address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("must not be empty")]
    Empty,
    #[error("must not start or end with spaces or line breaks")]
    SurroundingWhitespace,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("contains characters that cannot appear in this kind of address")]
    BadCharacters,
    #[error("must not mix upper and lower case letters")]
    MixedCase,
    #[error("must start with {prefix}")]
    MissingPrefix { prefix: &'static str },
    #[error("has the wrong length for this kind of address")]
    BadLength,
    #[error("checksum does not match: the address has a typo")]
    BadChecksum,
    #[error(
        "uses the wrong checksum for its segwit version (version 0 takes bech32, later versions bech32m)"
    )]
    WrongChecksumVariant,
    #[error("has invalid padding bits")]
    BadPadding,
    #[error("has an unknown address version or type")]
    UnknownVersion,
    #[error("is a {found} address, but a {expected} address is needed")]
    WrongNetwork {
        expected: NetworkKind,
        found: NetworkKind,
    },
    #[error("is a {found} address, but a {expected} address is needed")]
    WrongChain { expected: Chain, found: Chain },
    #[error("{what} addresses are not supported")]
    Unsupported { what: &'static str },
}

impl AddressError {
    /// Stable snake_case code for API problems and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            AddressError::Empty => "empty",
            AddressError::SurroundingWhitespace => "surrounding_whitespace",
            AddressError::TooLong { .. } => "too_long",
            AddressError::BadCharacters => "bad_characters",
            AddressError::MixedCase => "mixed_case",
            AddressError::MissingPrefix { .. } => "missing_prefix",
            AddressError::BadLength => "bad_length",
            AddressError::BadChecksum => "bad_checksum",
            AddressError::WrongChecksumVariant => "wrong_checksum_variant",
            AddressError::BadPadding => "bad_padding",
            AddressError::UnknownVersion => "unknown_version",
            AddressError::WrongNetwork { .. } => "wrong_network",
            AddressError::WrongChain { .. } => "wrong_chain",
            AddressError::Unsupported { .. } => "unsupported",
        }
    }
}

/// Validates `input` as an address of `chain` on `network` and returns its
/// canonical form. See the module documentation for the rules.
pub fn validate(
    chain: Chain,
    network: NetworkKind,
    input: &str,
) -> Result<ValidAddress, AddressError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(AddressError::Empty);
    }
    if trimmed.len() != input.len() {
        return Err(AddressError::SurroundingWhitespace);
    }
    if chain == Chain::Litecoin && is_mweb(input) {
        return Err(AddressError::Unsupported { what: "MWEB" });
    }
    if input.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            max: MAX_ADDRESS_LEN,
        });
    }
    if !input.is_ascii() {
        return Err(AddressError::BadCharacters);
    }
    match chain {
        Chain::Ethereum | Chain::Bsc => evm(chain, network, input),
        Chain::Tron => base58(chain, network, input),
        Chain::Bitcoin | Chain::Litecoin | Chain::Dogecoin => match segwit_hrp(input) {
            Some(owner) => segwit(chain, network, input, owner),
            None => base58(chain, network, input),
        },
    }
}

/// `0x` and the EIP-55 checksummed hex of a 20-byte EVM account.
pub fn evm_checksum_address(account: &[u8; HASH160_LEN]) -> String {
    format!("0x{}", eip55(&hex::encode(account)))
}

// ---------------------------------------------------------------- segwit

/// Who owns a segwit human-readable part.
#[derive(Clone, Copy)]
struct SegwitOwner {
    chain: Chain,
    network: NetworkKind,
    hrp: &'static str,
}

const SEGWIT_HRPS: [SegwitOwner; 6] = [
    SegwitOwner {
        chain: Chain::Bitcoin,
        network: NetworkKind::Mainnet,
        hrp: "bc",
    },
    SegwitOwner {
        chain: Chain::Bitcoin,
        network: NetworkKind::Testnet,
        hrp: "tb",
    },
    SegwitOwner {
        chain: Chain::Bitcoin,
        network: NetworkKind::Regtest,
        hrp: "bcrt",
    },
    SegwitOwner {
        chain: Chain::Litecoin,
        network: NetworkKind::Mainnet,
        hrp: "ltc",
    },
    SegwitOwner {
        chain: Chain::Litecoin,
        network: NetworkKind::Testnet,
        hrp: "tltc",
    },
    SegwitOwner {
        chain: Chain::Litecoin,
        network: NetworkKind::Regtest,
        hrp: "rltc",
    },
];

/// The known segwit HRP that `input` starts with (followed by the `1`
/// separator), in either case. No base58 address of these chains starts so.
fn segwit_hrp(input: &str) -> Option<SegwitOwner> {
    let bytes = input.as_bytes();
    SEGWIT_HRPS.iter().copied().find(|owner| {
        let n = owner.hrp.len();
        bytes
            .get(..n)
            .is_some_and(|p| p.eq_ignore_ascii_case(owner.hrp.as_bytes()))
            && bytes.get(n) == Some(&b'1')
    })
}

fn is_mweb(input: &str) -> bool {
    let bytes = input.as_bytes();
    ["ltcmweb1", "tmweb1"].iter().any(|prefix| {
        bytes
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bech32,
    Bech32m,
}

fn segwit(
    chain: Chain,
    network: NetworkKind,
    input: &str,
    owner: SegwitOwner,
) -> Result<ValidAddress, AddressError> {
    let unchecked = UncheckedHrpstring::new(input).map_err(|e| match e {
        UncheckedHrpstringError::Char(CharError::MixedCase) => AddressError::MixedCase,
        UncheckedHrpstringError::Char(CharError::NothingAfterSeparator) => AddressError::BadLength,
        _ => AddressError::BadCharacters,
    })?;
    // The separator is the last '1': if it is not the one after the HRP, a
    // '1' (not a bech32 character) sits in the data part.
    if !unchecked
        .hrp()
        .as_bytes()
        .eq_ignore_ascii_case(owner.hrp.as_bytes())
    {
        return Err(AddressError::BadCharacters);
    }
    // At least a witness version besides the checksum.
    if unchecked.data_part_ascii().len() <= BECH32_CHECKSUM_LEN {
        return Err(AddressError::BadLength);
    }
    let (variant, mut checked) = if unchecked.has_valid_checksum::<Bech32>() {
        (Variant::Bech32, unchecked.remove_checksum::<Bech32>())
    } else if unchecked.has_valid_checksum::<Bech32m>() {
        (Variant::Bech32m, unchecked.remove_checksum::<Bech32m>())
    } else {
        return Err(AddressError::BadChecksum);
    };
    let version = checked
        .remove_witness_version()
        .ok_or(AddressError::UnknownVersion)?
        .to_u8();
    let wanted = if version == 0 {
        Variant::Bech32
    } else {
        Variant::Bech32m
    };
    if variant != wanted {
        return Err(AddressError::WrongChecksumVariant);
    }
    checked
        .validate_segwit_padding()
        .map_err(|_| AddressError::BadPadding)?;
    let program_len = checked.byte_iter().len();
    let kind = match (version, program_len) {
        (0, 20) => AddressKind::WitnessV0Keyhash,
        (0, 32) => AddressKind::WitnessV0Scripthash,
        (0, _) => return Err(AddressError::BadLength),
        (1, 32) => AddressKind::Taproot,
        (_, 2..=40) => AddressKind::WitnessFuture {
            version,
            program_len,
        },
        _ => return Err(AddressError::BadLength),
    };
    if (owner.chain, owner.network) != (chain, network) {
        return Err(mismatch(chain, network, owner.chain, owner.network));
    }
    Ok(ValidAddress {
        chain,
        network,
        kind,
        normalized: input.to_ascii_lowercase(),
    })
}

/// The error for a sound address that belongs elsewhere.
fn mismatch(
    chain: Chain,
    network: NetworkKind,
    found_chain: Chain,
    found_network: NetworkKind,
) -> AddressError {
    if found_chain != chain {
        AddressError::WrongChain {
            expected: chain,
            found: found_chain,
        }
    } else {
        AddressError::WrongNetwork {
            expected: network,
            found: found_network,
        }
    }
}

// ---------------------------------------------------------------- base58

/// Base58check version bytes. Order matters where a byte is shared: the
/// first owner found is the one named in an error (testnet before regtest,
/// Bitcoin before the chains that borrowed its bytes).
const BASE58_VERSIONS: [(Chain, NetworkKind, u8, AddressKind); 24] = {
    use AddressKind::{P2pkh, P2sh, Tron};
    use Chain::{Bitcoin, Dogecoin, Litecoin};
    use NetworkKind::{Mainnet, Regtest, Testnet};
    [
        (Bitcoin, Mainnet, 0x00, P2pkh),
        (Bitcoin, Mainnet, 0x05, P2sh),
        (Bitcoin, Testnet, 0x6f, P2pkh),
        (Bitcoin, Testnet, 0xc4, P2sh),
        (Bitcoin, Regtest, 0x6f, P2pkh),
        (Bitcoin, Regtest, 0xc4, P2sh),
        (Litecoin, Mainnet, 0x30, P2pkh),
        (Litecoin, Mainnet, 0x32, P2sh),
        (Litecoin, Mainnet, 0x05, P2sh),
        (Litecoin, Testnet, 0x6f, P2pkh),
        (Litecoin, Testnet, 0x3a, P2sh),
        (Litecoin, Testnet, 0xc4, P2sh),
        (Litecoin, Regtest, 0x6f, P2pkh),
        (Litecoin, Regtest, 0x3a, P2sh),
        (Litecoin, Regtest, 0xc4, P2sh),
        (Dogecoin, Mainnet, 0x1e, P2pkh),
        (Dogecoin, Mainnet, 0x16, P2sh),
        (Dogecoin, Testnet, 0x71, P2pkh),
        (Dogecoin, Testnet, 0xc4, P2sh),
        (Dogecoin, Regtest, 0x6f, P2pkh),
        (Dogecoin, Regtest, 0xc4, P2sh),
        (Chain::Tron, Mainnet, 0x41, Tron),
        (Chain::Tron, Testnet, 0x41, Tron),
        (Chain::Tron, Regtest, 0x41, Tron),
    ]
};

fn base58(chain: Chain, network: NetworkKind, input: &str) -> Result<ValidAddress, AddressError> {
    let decoded = bs58::decode(input)
        .with_check(None)
        .into_vec()
        .map_err(|e| match e {
            bs58::decode::Error::InvalidChecksum { .. } => AddressError::BadChecksum,
            bs58::decode::Error::NoChecksum => AddressError::BadLength,
            _ => AddressError::BadCharacters,
        })?;
    let (&version, payload) = decoded.split_first().ok_or(AddressError::BadLength)?;
    if payload.len() != HASH160_LEN {
        return Err(AddressError::BadLength);
    }
    let find = |pred: &dyn Fn(Chain, NetworkKind) -> bool| {
        BASE58_VERSIONS
            .iter()
            .find(|&&(c, n, v, _)| v == version && pred(c, n))
            .copied()
    };
    if let Some((_, _, _, kind)) = find(&|c, n| c == chain && n == network) {
        return Ok(ValidAddress {
            chain,
            network,
            kind,
            normalized: input.to_owned(),
        });
    }
    // A sound address, but not for this chain and network: say whose it is,
    // preferring this chain's other networks.
    match find(&|c, _| c == chain).or_else(|| find(&|_, _| true)) {
        Some((found_chain, found_network, ..)) => {
            Err(mismatch(chain, network, found_chain, found_network))
        }
        None => Err(AddressError::UnknownVersion),
    }
}

// ---------------------------------------------------------------- EVM

fn evm(chain: Chain, network: NetworkKind, input: &str) -> Result<ValidAddress, AddressError> {
    let hex = input
        .strip_prefix("0x")
        .ok_or(AddressError::MissingPrefix { prefix: "0x" })?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::BadCharacters);
    }
    if hex.len() != 2 * HASH160_LEN {
        return Err(AddressError::BadLength);
    }
    let checksummed = eip55(hex);
    // All one case carries no checksum (EIP-55); mixed case must be exact.
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper && checksummed != hex {
        return Err(AddressError::BadChecksum);
    }
    Ok(ValidAddress {
        chain,
        network,
        kind: AddressKind::Evm,
        normalized: format!("0x{checksummed}"),
    })
}

/// EIP-55: the hex in lowercase, each letter uppercased where the matching
/// nibble of keccak256(lowercase hex) is 8 or more.
fn eip55(hex: &str) -> String {
    let lower = hex.to_ascii_lowercase();
    let mut hasher = Keccak::v256();
    hasher.update(lower.as_bytes());
    let mut hash = [0u8; 32];
    hasher.finalize(&mut hash);
    lower
        .bytes()
        .enumerate()
        .map(|(i, c)| {
            let byte = hash.get(i / 2).copied().unwrap_or(0);
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            if nibble >= 8 {
                char::from(c.to_ascii_uppercase())
            } else {
                char::from(c)
            }
        })
        .collect()
}
