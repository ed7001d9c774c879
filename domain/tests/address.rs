//! Withdrawal address validation: published test vectors (BIP-173, BIP-350,
//! EIP-55), well-known mainnet addresses, network and chain mix-ups, and
//! property tests that nothing panics and that typos are caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::custody::address::{
    AddressError, AddressKind, Chain, MAX_ADDRESS_LEN, NetworkKind, ValidAddress,
    evm_checksum_address, validate,
};
use proptest::prelude::*;
use tiny_keccak::{Hasher, Keccak};

use AddressKind::*;
use Chain::{Bitcoin, Bsc, Dogecoin, Ethereum, Litecoin, Tron};
use NetworkKind::{Mainnet, Regtest, Testnet};

const BASE58_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const BECH32_CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

#[track_caller]
fn ok(chain: Chain, network: NetworkKind, input: &str) -> ValidAddress {
    match validate(chain, network, input) {
        Ok(v) => v,
        Err(e) => panic!("{chain:?}/{network:?} {input:?}: expected valid, got {e:?} ({e})"),
    }
}

#[track_caller]
fn err(chain: Chain, network: NetworkKind, input: &str) -> AddressError {
    match validate(chain, network, input) {
        Ok(v) => panic!("{chain:?}/{network:?} {input:?}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_valid(chain: Chain, network: NetworkKind, input: &str, kind: AddressKind) {
    let v = ok(chain, network, input);
    assert_eq!(v.chain, chain, "{input}");
    assert_eq!(v.network, network, "{input}");
    assert_eq!(v.kind, kind, "{input}");
}

/// base58check of version ‖ payload, written here with bs58's encoder.
fn base58check(version: u8, payload: &[u8]) -> String {
    let mut data = vec![version];
    data.extend_from_slice(payload);
    bs58::encode(data).with_check().into_string()
}

fn segwit_encode(hrp: &str, version: u8, program: &[u8]) -> String {
    let hrp = bech32::Hrp::parse(hrp).expect("hrp");
    let version = bech32::Fe32::try_from(version).expect("witness version");
    bech32::segwit::encode(hrp, version, program).expect("encodable")
}

/// EIP-55 written out again from the EIP, independent of the crate's.
fn eip55_reference(account: &[u8; 20]) -> String {
    let lower = hex::encode(account);
    let mut hash = [0u8; 32];
    let mut k = Keccak::v256();
    k.update(lower.as_bytes());
    k.finalize(&mut hash);
    let mut out = String::from("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (4 * (1 - i % 2))) & 0xf;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// Changes the character at byte `pos` (ASCII input) to `c`.
fn replace_at(s: &str, pos: usize, c: char) -> String {
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..pos]);
    out.push(c);
    out.push_str(&s[pos + 1..]);
    out
}

/// Another character of the same alphabet: the next one, cyclically.
fn next_in(alphabet: &str, c: char) -> char {
    let chars: Vec<char> = alphabet.chars().collect();
    let i = chars.iter().position(|&a| a == c).expect("in alphabet");
    chars[(i + 1) % chars.len()]
}

// ------------------------------------------------------------ base58 chains

#[test]
fn well_known_bitcoin_base58_addresses() {
    // The genesis block's coinbase address, and the P2SH example of the
    // Bitcoin wiki.
    assert_valid(
        Bitcoin,
        Mainnet,
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
        P2pkh,
    );
    assert_valid(Bitcoin, Mainnet, "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", P2sh);
    // Testnet prefixes, shared by regtest.
    for network in [Testnet, Regtest] {
        assert_valid(
            Bitcoin,
            network,
            "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
            P2pkh,
        );
        assert_valid(
            Bitcoin,
            network,
            "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",
            P2sh,
        );
    }
    // Base58 is case-sensitive: kept exactly as given.
    let v = ok(Bitcoin, Mainnet, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa");
    assert_eq!(v.normalized, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa");
}

#[test]
fn litecoin_addresses() {
    assert_valid(
        Litecoin,
        Mainnet,
        "LM2WMpR1Rp6j3Sa59cMXMs1SPzj9eXpGc1",
        P2pkh,
    );
    assert_valid(
        Litecoin,
        Mainnet,
        "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9",
        P2pkh,
    );
    assert_valid(
        Litecoin,
        Mainnet,
        "MQMcJhpWHYVeQArcZR3sBgyPZxxRtnH441",
        P2sh,
    );
    // Legacy P2SH (Bitcoin's 0x05) is still a Litecoin mainnet P2SH.
    assert_valid(
        Litecoin,
        Mainnet,
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        P2sh,
    );
    let h = [0x11u8; 20];
    for network in [Testnet, Regtest] {
        assert_valid(Litecoin, network, &base58check(0x6f, &h), P2pkh);
        assert_valid(Litecoin, network, &base58check(0x3a, &h), P2sh);
        assert_valid(Litecoin, network, &base58check(0xc4, &h), P2sh);
    }
    // Segwit.
    assert_valid(
        Litecoin,
        Mainnet,
        "ltc1qg42tkwuuxefutzxezdkdel39gfstuap288mfea",
        WitnessV0Keyhash,
    );
    assert_valid(
        Litecoin,
        Mainnet,
        "ltc1q3qkpj5s4ru3cx9t7dt27pdfmz5aqy3wplamkns",
        WitnessV0Keyhash,
    );
    assert_valid(
        Litecoin,
        Testnet,
        "tltc1qu78xur5xnq6fjy83amy0qcjfau8m367defyhms",
        WitnessV0Keyhash,
    );
    let rltc = segwit_encode("rltc", 0, &[7u8; 32]);
    assert!(rltc.starts_with("rltc1q"));
    assert_valid(Litecoin, Regtest, &rltc, WitnessV0Scripthash);
    let taproot = segwit_encode("ltc", 1, &[9u8; 32]);
    assert_valid(Litecoin, Mainnet, &taproot, Taproot);
}

#[test]
fn litecoin_mweb_is_unsupported() {
    // MWEB addresses are far longer than 90 characters; the prefix decides.
    let mweb = format!("ltcmweb1{}", "q".repeat(120));
    let e = err(Litecoin, Mainnet, &mweb);
    assert_eq!(e.code(), "unsupported");
    assert_eq!(e.to_string(), "MWEB addresses are not supported");
    assert_eq!(
        err(Litecoin, Testnet, &format!("tmweb1{}", "q".repeat(120))).code(),
        "unsupported"
    );
    // On Bitcoin it is just too long.
    assert_eq!(err(Bitcoin, Mainnet, &mweb).code(), "too_long");
}

#[test]
fn dogecoin_addresses() {
    assert_valid(
        Dogecoin,
        Mainnet,
        "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L",
        P2pkh,
    );
    let h = [0x42u8; 20];
    assert_valid(Dogecoin, Mainnet, &base58check(0x16, &h), P2sh);
    let test_p2pkh = base58check(0x71, &h);
    assert!(test_p2pkh.starts_with('n'));
    assert_valid(Dogecoin, Testnet, &test_p2pkh, P2pkh);
    assert_valid(Dogecoin, Testnet, &base58check(0xc4, &h), P2sh);
    // Regtest: Dogecoin Core's regtest uses 0x6f / 0xc4, not testnet's 0x71.
    assert_valid(Dogecoin, Regtest, &base58check(0x6f, &h), P2pkh);
    assert_valid(Dogecoin, Regtest, &base58check(0xc4, &h), P2sh);
    assert_eq!(
        err(Dogecoin, Regtest, &test_p2pkh),
        AddressError::WrongNetwork {
            expected: Regtest,
            found: Testnet
        }
    );
    assert_eq!(
        err(Dogecoin, Testnet, &base58check(0x6f, &h)),
        AddressError::WrongNetwork {
            expected: Testnet,
            found: Regtest
        }
    );
    // No segwit on Dogecoin: a Bitcoin segwit address is Bitcoin's.
    assert_eq!(
        err(
            Dogecoin,
            Mainnet,
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
        ),
        AddressError::WrongChain {
            expected: Dogecoin,
            found: Bitcoin
        }
    );
}

#[test]
fn tron_addresses() {
    for network in NetworkKind::ALL {
        for a in [
            "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7",
            // The USDT TRC-20 contract.
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        ] {
            let v = ok(Tron, network, a);
            assert_eq!(v.kind, AddressKind::Tron);
            assert_eq!(v.network, network);
            assert_eq!(v.normalized, a);
        }
    }
    // A Bitcoin address is not a Tron one, and the other way round.
    assert_eq!(
        err(Tron, Mainnet, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
        AddressError::WrongChain {
            expected: Tron,
            found: Bitcoin
        }
    );
    assert_eq!(
        err(Bitcoin, Mainnet, "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"),
        AddressError::WrongChain {
            expected: Bitcoin,
            found: Tron
        }
    );
    // 21 payload bytes with the right version: wrong length.
    assert_eq!(
        err(Tron, Mainnet, &base58check(0x41, &[1u8; 21])),
        AddressError::BadLength
    );
    // Tron addresses can't be lowercased.
    assert_eq!(
        err(Tron, Mainnet, "tLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"),
        AddressError::BadChecksum
    );
}

#[test]
fn base58_unknown_version_and_bad_length() {
    let h = [3u8; 20];
    assert_eq!(
        err(Bitcoin, Mainnet, &base58check(0x99, &h)),
        AddressError::UnknownVersion
    );
    assert_eq!(
        err(Bitcoin, Mainnet, &base58check(0x00, &[3u8; 19])),
        AddressError::BadLength
    );
    assert_eq!(
        err(Bitcoin, Mainnet, &base58check(0x00, &[3u8; 32])),
        AddressError::BadLength
    );
    // Fewer than four bytes: no room for a checksum.
    assert_eq!(err(Bitcoin, Mainnet, "1"), AddressError::BadLength);
    assert_eq!(err(Bitcoin, Mainnet, "11"), AddressError::BadLength);
    // Characters base58 leaves out.
    for bad in ["0", "O", "I", "l"] {
        let a = replace_at(
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            5,
            bad.chars().next().unwrap(),
        );
        assert_eq!(err(Bitcoin, Mainnet, &a), AddressError::BadCharacters);
    }
}

#[test]
fn flipping_one_character_breaks_the_checksum() {
    const HEX: &str = "0123456789abcdef";
    let cases: [(Chain, NetworkKind, &str, &str); 9] = [
        (
            Bitcoin,
            Mainnet,
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            BASE58_ALPHABET,
        ),
        (
            Bitcoin,
            Mainnet,
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            BASE58_ALPHABET,
        ),
        (
            Bitcoin,
            Testnet,
            "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
            BASE58_ALPHABET,
        ),
        (
            Litecoin,
            Mainnet,
            "LM2WMpR1Rp6j3Sa59cMXMs1SPzj9eXpGc1",
            BASE58_ALPHABET,
        ),
        (
            Dogecoin,
            Mainnet,
            "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L",
            BASE58_ALPHABET,
        ),
        (
            Tron,
            Mainnet,
            "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7",
            BASE58_ALPHABET,
        ),
        (
            Bitcoin,
            Mainnet,
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            BECH32_CHARSET,
        ),
        (
            Litecoin,
            Mainnet,
            "ltc1qg42tkwuuxefutzxezdkdel39gfstuap288mfea",
            BECH32_CHARSET,
        ),
        (
            Ethereum,
            Mainnet,
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            HEX,
        ),
    ];
    for (chain, network, a, alphabet) in cases {
        ok(chain, network, a);
        // The last character, and one in the middle.
        for pos in [a.len() - 1, a.len() / 2] {
            let mut c = a.as_bytes()[pos] as char;
            if chain == Ethereum {
                // Another hex digit, in lowercase: the case pattern (the
                // checksum) no longer fits.
                c = c.to_ascii_lowercase();
            }
            let flipped = replace_at(a, pos, next_in(alphabet, c));
            assert_ne!(flipped, a);
            assert_eq!(
                err(chain, network, &flipped),
                AddressError::BadChecksum,
                "{a} -> {flipped}"
            );
        }
    }
}

// ------------------------------------------------------------ segwit vectors

#[test]
fn bip_350_valid_addresses() {
    let cases: [(&str, NetworkKind, AddressKind); 8] = [
        (
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            Mainnet,
            WitnessV0Keyhash,
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            Testnet,
            WitnessV0Scripthash,
        ),
        (
            "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
            Mainnet,
            WitnessFuture {
                version: 1,
                program_len: 40,
            },
        ),
        (
            "BC1SW50QGDZ25J",
            Mainnet,
            WitnessFuture {
                version: 16,
                program_len: 2,
            },
        ),
        (
            "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",
            Mainnet,
            WitnessFuture {
                version: 2,
                program_len: 16,
            },
        ),
        (
            "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
            Testnet,
            WitnessV0Scripthash,
        ),
        (
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
            Testnet,
            Taproot,
        ),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
            Mainnet,
            Taproot,
        ),
    ];
    for (a, network, kind) in cases {
        let v = ok(Bitcoin, network, a);
        assert_eq!(v.kind, kind, "{a}");
        // Uppercase is a legal spelling; stored lowercase.
        assert_eq!(v.normalized, a.to_lowercase());
    }
}

#[test]
fn other_well_known_segwit_addresses() {
    assert_valid(
        Bitcoin,
        Mainnet,
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        WitnessV0Keyhash,
    );
    assert_valid(
        Bitcoin,
        Regtest,
        "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
        WitnessV0Keyhash,
    );
    assert_valid(
        Bitcoin,
        Regtest,
        "bcrt1q6rhpng9evdsfnn833a4f4vej0asu6dk5srld6x",
        WitnessV0Keyhash,
    );
    let upper = "BCRT1QS758URSH4Q9Z627KT3PP5YYSM78DDNY6TXAQGW";
    assert_eq!(
        ok(Bitcoin, Regtest, upper).normalized,
        "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw"
    );
}

#[test]
fn bip_350_invalid_addresses() {
    use AddressError as E;
    let cases: [(&str, AddressError); 15] = [
        // Invalid human-readable part: not a segwit HRP, so read as base58.
        (
            "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
            E::BadCharacters,
        ),
        // Bech32 instead of bech32m.
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
            E::WrongChecksumVariant,
        ),
        (
            "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
            E::WrongChecksumVariant,
        ),
        (
            "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
            E::WrongChecksumVariant,
        ),
        // Bech32m instead of bech32.
        (
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
            E::WrongChecksumVariant,
        ),
        (
            "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
            E::WrongChecksumVariant,
        ),
        // Invalid character ('o') in the checksum.
        (
            "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
            E::BadCharacters,
        ),
        // Witness version 17.
        (
            "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
            E::UnknownVersion,
        ),
        // Program of 1 byte, and of 41.
        ("bc1pw5dgrnzv", E::BadLength),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
            E::BadLength,
        ),
        // Version 0 with a 16-byte program (BIP-141).
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", E::BadLength),
        // Mixed case.
        (
            "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
            E::MixedCase,
        ),
        // More than 4 padding bits.
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
            E::BadPadding,
        ),
        // Non-zero padding.
        (
            "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
            E::BadPadding,
        ),
        // Empty data section.
        ("bc1gmk9yu", E::BadLength),
    ];
    for (a, want) in cases {
        let network = if a.to_lowercase().starts_with("tb") {
            Testnet
        } else {
            Mainnet
        };
        assert_eq!(err(Bitcoin, network, a), want, "{a}");
    }
}

#[test]
fn bip_173_invalid_addresses() {
    use AddressError as E;
    let cases: [(&str, AddressError); 10] = [
        (
            "tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty",
            E::BadCharacters,
        ),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", E::BadChecksum),
        // Version 17 under the bech32 checksum: the version is what's wrong.
        (
            "BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2",
            E::UnknownVersion,
        ),
        // Under BIP-350 these v1+ strings have the wrong checksum first.
        ("bc1rw5uspcuh", E::WrongChecksumVariant),
        (
            "bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
            E::WrongChecksumVariant,
        ),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", E::BadLength),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7",
            E::MixedCase,
        ),
        (
            "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",
            E::WrongChecksumVariant,
        ),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv",
            E::BadPadding,
        ),
        ("bc1gmk9yu", E::BadLength),
    ];
    for (a, want) in cases {
        let network = if a.to_lowercase().starts_with("tb") {
            Testnet
        } else {
            Mainnet
        };
        assert_eq!(err(Bitcoin, network, a), want, "{a}");
    }
}

#[test]
fn bip_173_witness_v1_plus_vectors_now_need_bech32m() {
    // Valid under BIP-173, invalid since BIP-350.
    for a in [
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx",
        "BC1SW50QA3JX3S",
        "bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj",
    ] {
        assert_eq!(
            err(Bitcoin, Mainnet, a),
            AddressError::WrongChecksumVariant,
            "{a}"
        );
    }
    // Their v0 vectors are unchanged.
    ok(
        Bitcoin,
        Mainnet,
        "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
    );
}

#[test]
fn segwit_with_a_one_inside_the_data_part() {
    let a = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq";
    let with_one = replace_at(a, 10, '1');
    assert_eq!(
        err(Bitcoin, Mainnet, &with_one),
        AddressError::BadCharacters
    );
    // Only the HRP and separator.
    assert_eq!(err(Bitcoin, Mainnet, "bc1"), AddressError::BadLength);
}

// ------------------------------------------------------------ networks and chains

#[test]
fn wrong_network() {
    use AddressError::WrongNetwork;
    let cases: [(Chain, NetworkKind, &str, NetworkKind); 10] = [
        // (chain, asked for, address, its network)
        (
            Bitcoin,
            Mainnet,
            "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
            Testnet,
        ),
        (
            Bitcoin,
            Mainnet,
            "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",
            Testnet,
        ),
        (
            Bitcoin,
            Testnet,
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
            Mainnet,
        ),
        (
            Bitcoin,
            Regtest,
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            Mainnet,
        ),
        (
            Bitcoin,
            Mainnet,
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
            Testnet,
        ),
        (
            Bitcoin,
            Testnet,
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            Mainnet,
        ),
        (
            Bitcoin,
            Testnet,
            "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw",
            Regtest,
        ),
        (
            Bitcoin,
            Regtest,
            "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
            Testnet,
        ),
        (
            Litecoin,
            Mainnet,
            "tltc1qu78xur5xnq6fjy83amy0qcjfau8m367defyhms",
            Testnet,
        ),
        (
            Dogecoin,
            Testnet,
            "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L",
            Mainnet,
        ),
    ];
    for (chain, asked, a, found) in cases {
        let e = err(chain, asked, a);
        assert_eq!(
            e,
            WrongNetwork {
                expected: asked,
                found
            },
            "{a}"
        );
        assert_eq!(e.code(), "wrong_network");
    }
    assert_eq!(
        err(Bitcoin, Mainnet, "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn").to_string(),
        "is a testnet address, but a mainnet address is needed"
    );
}

#[test]
fn wrong_chain() {
    use AddressError::WrongChain;
    let cases: [(Chain, &str, Chain); 7] = [
        (Bitcoin, "LM2WMpR1Rp6j3Sa59cMXMs1SPzj9eXpGc1", Litecoin),
        (Bitcoin, "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", Dogecoin),
        (
            Bitcoin,
            "ltc1qg42tkwuuxefutzxezdkdel39gfstuap288mfea",
            Litecoin,
        ),
        (
            Litecoin,
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            Bitcoin,
        ),
        (Litecoin, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", Bitcoin),
        (Dogecoin, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", Bitcoin),
        (Tron, "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", Dogecoin),
    ];
    for (chain, a, found) in cases {
        let e = err(chain, Mainnet, a);
        assert_eq!(
            e,
            WrongChain {
                expected: chain,
                found
            },
            "{a}"
        );
        assert_eq!(e.code(), "wrong_chain");
    }
    assert_eq!(
        err(Bitcoin, Mainnet, "LM2WMpR1Rp6j3Sa59cMXMs1SPzj9eXpGc1").to_string(),
        "is a Litecoin address, but a Bitcoin address is needed"
    );
    // An EVM address on a UTXO chain, and the other way round.
    assert_eq!(
        err(
            Bitcoin,
            Mainnet,
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        ),
        AddressError::BadCharacters
    );
    assert_eq!(
        err(Ethereum, Mainnet, "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"),
        AddressError::MissingPrefix { prefix: "0x" }
    );
}

// ------------------------------------------------------------ EVM

#[test]
fn eip_55_examples() {
    // The checksummed examples of EIP-55.
    let checksummed = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        // Its all-caps and all-lower cases, which happen to be checksummed.
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
    ];
    for chain in [Ethereum, Bsc] {
        for network in NetworkKind::ALL {
            for a in checksummed {
                let v = ok(chain, network, a);
                assert_eq!(v.normalized, a);
                assert_eq!(v.kind, Evm);
                assert_eq!(v.network, network);
                // Without checksum (one case) it normalizes to the same.
                let lower = format!("0x{}", a[2..].to_lowercase());
                assert_eq!(ok(chain, network, &lower).normalized, a);
                let upper = format!("0x{}", a[2..].to_uppercase());
                assert_eq!(ok(chain, network, &upper).normalized, a);
            }
        }
    }
    let account: [u8; 20] = hex::decode("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        evm_checksum_address(&account),
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    );
}

#[test]
fn evm_malformed() {
    use AddressError as E;
    let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
    // One letter's case flipped.
    assert_eq!(
        err(
            Ethereum,
            Mainnet,
            "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        ),
        E::BadChecksum
    );
    assert_eq!(
        err(Ethereum, Mainnet, &good[2..]),
        E::MissingPrefix { prefix: "0x" }
    );
    assert_eq!(
        err(Ethereum, Mainnet, &format!("0X{}", &good[2..])),
        E::MissingPrefix { prefix: "0x" }
    );
    assert_eq!(err(Ethereum, Mainnet, "0x"), E::BadLength);
    assert_eq!(err(Ethereum, Mainnet, &good[..41]), E::BadLength);
    assert_eq!(err(Ethereum, Mainnet, &format!("{good}0")), E::BadLength);
    assert_eq!(
        err(Ethereum, Mainnet, &replace_at(good, 7, 'g')),
        E::BadCharacters
    );
    assert_eq!(
        err(Bsc, Testnet, &replace_at(good, 7, ' ')),
        E::BadCharacters
    );
}

// ------------------------------------------------------------ general input rules

#[test]
fn whitespace_is_refused_not_trimmed() {
    let a = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";
    for input in [
        format!("{a}\n"),
        format!("{a}\r\n"),
        format!(" {a}"),
        format!("\t{a}"),
        format!("{a}\u{a0}"),
        format!("\u{2003}{a}"),
    ] {
        let e = err(Bitcoin, Mainnet, &input);
        assert_eq!(e, AddressError::SurroundingWhitespace, "{input:?}");
        assert_eq!(e.code(), "surrounding_whitespace");
    }
    for chain in Chain::ALL {
        assert_eq!(err(chain, Mainnet, ""), AddressError::Empty);
        assert_eq!(err(chain, Mainnet, "  \n"), AddressError::Empty);
    }
    // Inside, whitespace is just a bad character.
    assert_eq!(
        err(Bitcoin, Mainnet, "1A1zP1eP5QGefi2 DMPTfTL5SLmv7DivfNa"),
        AddressError::BadCharacters
    );
    assert_eq!(
        err(
            Bitcoin,
            Mainnet,
            "bc1qar0srrr7xfkvy5l643 lydnw9re59gtzzwf5mdq"
        ),
        AddressError::BadCharacters
    );
}

#[test]
fn too_long_and_non_ascii() {
    for chain in Chain::ALL {
        let long = "1".repeat(MAX_ADDRESS_LEN + 1);
        assert_eq!(
            err(chain, Mainnet, &long),
            AddressError::TooLong {
                max: MAX_ADDRESS_LEN
            }
        );
        assert_eq!(
            err(chain, Mainnet, "1A1zP1eP5QGéfi2DMPTfTL5SLmv7DivfNa"),
            AddressError::BadCharacters
        );
    }
    // 90 characters is allowed through to decoding.
    let ninety = "1".repeat(MAX_ADDRESS_LEN);
    assert_ne!(err(Bitcoin, Mainnet, &ninety).code(), "too_long");
}

#[test]
fn error_codes_are_distinct_snake_case_and_messages_read_well() {
    use AddressError as E;
    let all = [
        E::Empty,
        E::SurroundingWhitespace,
        E::TooLong { max: 90 },
        E::BadCharacters,
        E::MixedCase,
        E::MissingPrefix { prefix: "0x" },
        E::BadLength,
        E::BadChecksum,
        E::WrongChecksumVariant,
        E::BadPadding,
        E::UnknownVersion,
        E::WrongNetwork {
            expected: Mainnet,
            found: Testnet,
        },
        E::WrongChain {
            expected: Bitcoin,
            found: Litecoin,
        },
        E::Unsupported { what: "MWEB" },
    ];
    let mut codes: Vec<&str> = all.iter().map(|e| e.code()).collect();
    for c in &codes {
        assert!(
            c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
            "{c}"
        );
    }
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
    for e in &all {
        let m = e.to_string();
        assert!(!m.is_empty() && !m.ends_with('.'), "{m}");
    }
    assert_eq!(E::BadChecksum.code(), "bad_checksum");
    assert_eq!(
        E::TooLong { max: 90 }.to_string(),
        "must be at most 90 characters"
    );
}

#[test]
fn chain_and_network_names() {
    assert_eq!(Chain::Bsc.as_str(), "bsc");
    assert_eq!(Chain::Bsc.to_string(), "BNB Smart Chain");
    assert_eq!(
        serde_json::to_string(&Chain::Dogecoin).unwrap(),
        "\"dogecoin\""
    );
    assert_eq!(
        serde_json::from_str::<NetworkKind>("\"regtest\"").unwrap(),
        Regtest
    );
    for c in Chain::ALL {
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{}\"", c.as_str())
        );
    }
    for n in NetworkKind::ALL {
        assert_eq!(serde_json::to_string(&n).unwrap(), format!("\"{n}\""));
    }
}

// ------------------------------------------------------------ properties

/// Every base58check version byte we accept, restated from the chains'
/// parameters: (chain, network, version, kind).
const BASE58_VERSIONS: [(Chain, NetworkKind, u8, AddressKind); 24] = [
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
    (Tron, Mainnet, 0x41, AddressKind::Tron),
    (Tron, Testnet, 0x41, AddressKind::Tron),
    (Tron, Regtest, 0x41, AddressKind::Tron),
];

const SEGWIT_HRPS: [(Chain, NetworkKind, &str); 6] = [
    (Bitcoin, Mainnet, "bc"),
    (Bitcoin, Testnet, "tb"),
    (Bitcoin, Regtest, "bcrt"),
    (Litecoin, Mainnet, "ltc"),
    (Litecoin, Testnet, "tltc"),
    (Litecoin, Regtest, "rltc"),
];

fn check_never_panics(input: &str) {
    for chain in Chain::ALL {
        for network in NetworkKind::ALL {
            // Whatever the answer, it is an answer; a valid one is stable.
            if let Ok(v) = validate(chain, network, input) {
                assert_eq!(v.chain, chain);
                assert_eq!(validate(chain, network, &v.normalized), Ok(v));
            }
        }
    }
}

/// Strings that get past the first checks: known prefixes followed by
/// characters from the alphabets in play.
fn near_miss() -> impl Strategy<Value = String> {
    let prefixes = prop::sample::select(vec![
        "", "bc1", "BC1", "tb1", "bcrt1", "ltc1", "tltc1", "rltc1", "bc1q", "bc1p", "0x", "0X",
        "1", "3", "L", "M", "D", "T", "m", "n", "2", "ltcmweb1",
    ]);
    let alphabet: Vec<char> = format!("{BASE58_ALPHABET}{BECH32_CHARSET}0OIlxX1 \n")
        .chars()
        .collect();
    let body = prop::collection::vec(prop::sample::select(alphabet), 0..100);
    (prefixes, body).prop_map(|(p, b)| format!("{p}{}", b.into_iter().collect::<String>()))
}

proptest! {
    #[test]
    fn never_panics_on_any_string(s in any::<String>()) {
        check_never_panics(&s);
    }

    #[test]
    fn never_panics_on_any_bytes_as_latin1(
        bytes in prop::collection::vec(any::<u8>(), 0..140),
    ) {
        let s: String = bytes.iter().map(|&b| char::from(b)).collect();
        check_never_panics(&s);
    }

    #[test]
    fn never_panics_on_near_misses(s in near_miss()) {
        check_never_panics(&s);
    }

    #[test]
    fn evm_round_trip_and_case_flips(
        account in any::<[u8; 20]>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let checksummed = eip55_reference(&account);
        prop_assert_eq!(evm_checksum_address(&account), checksummed.clone());
        for chain in [Ethereum, Bsc] {
            let v = validate(chain, Mainnet, &checksummed).unwrap();
            prop_assert_eq!(&v.normalized, &checksummed);
            let lower = checksummed.to_lowercase();
            let v = validate(chain, Testnet, &lower).unwrap();
            prop_assert_eq!(&v.normalized, &checksummed);
        }
        // Flip the case of one letter of the hex.
        let letters: Vec<usize> = checksummed
            .char_indices()
            .skip(2)
            .filter(|(_, c)| c.is_ascii_alphabetic())
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!letters.is_empty());
        let pos = letters[pick.index(letters.len())];
        let c = checksummed.as_bytes()[pos] as char;
        let flipped_char = if c.is_ascii_uppercase() {
            c.to_ascii_lowercase()
        } else {
            c.to_ascii_uppercase()
        };
        let flipped = replace_at(&checksummed, pos, flipped_char);
        let hex = &flipped[2..];
        let one_case = !hex.chars().any(|c| c.is_ascii_uppercase())
            || !hex.chars().any(|c| c.is_ascii_lowercase());
        match validate(Ethereum, Mainnet, &flipped) {
            // The flip left the hex all one case (the address had a single
            // letter of the other case): no checksum to check, same account.
            Ok(v) => {
                prop_assert!(one_case, "{flipped} accepted");
                prop_assert_eq!(v.normalized, checksummed);
            }
            Err(e) => {
                prop_assert!(!one_case);
                prop_assert_eq!(e, AddressError::BadChecksum);
            }
        }
    }

    #[test]
    fn base58check_round_trip_and_typos(
        entry in prop::sample::select(BASE58_VERSIONS.to_vec()),
        payload in any::<[u8; 20]>(),
        pick in any::<prop::sample::Index>(),
        shift in 1usize..58,
    ) {
        let (chain, network, version, kind) = entry;
        let a = base58check(version, &payload);
        let v = validate(chain, network, &a).unwrap();
        prop_assert_eq!(v.kind, kind);
        prop_assert_eq!(v.network, network);
        prop_assert_eq!(&v.normalized, &a);
        if chain == Tron {
            prop_assert!(a.starts_with('T'));
        }
        // One character changed to another base58 character.
        let pos = pick.index(a.len());
        let alphabet: Vec<char> = BASE58_ALPHABET.chars().collect();
        let old = alphabet.iter().position(|&c| c == a.as_bytes()[pos] as char).unwrap();
        let typo = replace_at(&a, pos, alphabet[(old + shift) % 58]);
        prop_assert_ne!(&typo, &a);
        match validate(chain, network, &typo) {
            Err(_) => {}
            // A 32-bit checksum lets about one typo in four billion through:
            // then it must really be another well-formed address (another
            // string is other bytes: base58 is a bijection).
            Ok(other) => {
                let decoded = bs58::decode(&typo).with_check(None).into_vec();
                let original = bs58::decode(&a).with_check(None).into_vec();
                prop_assert!(decoded.is_ok());
                prop_assert_ne!(decoded, original);
                prop_assert_eq!(other.normalized, typo);
            }
        }
    }

    #[test]
    fn segwit_round_trip_and_typos(
        owner in prop::sample::select(SEGWIT_HRPS.to_vec()),
        version in 0u8..=16,
        program in prop::collection::vec(any::<u8>(), 2..=40),
        pick in any::<prop::sample::Index>(),
        shift in 1usize..32,
        upper in any::<bool>(),
    ) {
        let (chain, network, hrp) = owner;
        let program = if version == 0 {
            // v0 takes only 20 or 32 bytes.
            let n = if program.len() < 26 { 20 } else { 32 };
            program.iter().cycle().take(n).copied().collect::<Vec<u8>>()
        } else {
            program
        };
        let a = segwit_encode(hrp, version, &program);
        let input = if upper { a.to_uppercase() } else { a.clone() };
        let v = validate(chain, network, &input).unwrap();
        prop_assert_eq!(&v.normalized, &a);
        let want = match (version, program.len()) {
            (0, 20) => WitnessV0Keyhash,
            (0, _) => WitnessV0Scripthash,
            (1, 32) => Taproot,
            (version, program_len) => WitnessFuture { version, program_len },
        };
        prop_assert_eq!(v.kind, want);
        // Bech32 and bech32m detect any single substitution in the data part.
        let data_start = hrp.len() + 1;
        let pos = data_start + pick.index(a.len() - data_start);
        let charset: Vec<char> = BECH32_CHARSET.chars().collect();
        let old = charset.iter().position(|&c| c == a.as_bytes()[pos] as char).unwrap();
        let typo = replace_at(&a, pos, charset[(old + shift) % 32]);
        prop_assert!(validate(chain, network, &typo).is_err(), "{} accepted", typo);
        // Any other network of any chain refuses it, saying whose it is.
        for (c, n, _) in SEGWIT_HRPS {
            if (c, n) != (chain, network) {
                let e = validate(c, n, &a).unwrap_err();
                let elsewhere = matches!(
                    e,
                    AddressError::WrongChain { .. } | AddressError::WrongNetwork { .. }
                );
                prop_assert!(elsewhere, "{:?}", e);
            }
        }
    }
}
