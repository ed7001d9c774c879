//! A local secp256k1 signer for legacy (type 0) EIP-155 transactions.
//!
//! Signing is deterministic (RFC 6979 nonces): the same transaction signed
//! twice gives the same bytes and so the same txid. That is what lets a
//! withdrawal worker that crashed after signing re-send exactly what it may
//! already have broadcast, instead of a second transaction.

use ethnum::U256;
use k256::ecdsa::{RecoveryId, SigningKey};

use super::{keccak256, parse_address, rlp};

/// Why a key, an address or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// Never says anything about the key itself.
    #[error("not a secp256k1 private key (64 hex digits, optionally 0x-prefixed)")]
    InvalidKey,
    #[error("{0}")]
    InvalidAddress(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A legacy transaction to sign; `to` is `0x` + 40 hex (any case; mixed
/// case must be a valid EIP-55 checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTx {
    pub chain_id: u64,
    pub nonce: u64,
    /// Wei per gas.
    pub gas_price: U256,
    pub gas_limit: u64,
    pub to: String,
    /// Wei.
    pub value: U256,
    pub data: Vec<u8>,
}

/// A signed transaction, ready for `eth_sendRawTransaction`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The RLP bytes.
    pub raw: Vec<u8>,
    /// `0x` + lowercase hex of keccak256(raw): the transaction hash.
    pub txid: String,
}

impl std::fmt::Debug for SignedTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTx")
            .field("txid", &self.txid)
            .field("raw", &format_args!("0x{}", hex::encode(&self.raw)))
            .finish()
    }
}

/// A private key held in memory. `Debug` shows only its address; nothing
/// here prints, logs or returns the key.
pub struct LocalSigner {
    key: SigningKey,
    address: String,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// The signer of the 32-byte key in hex (64 digits, `0x` optional).
    pub fn from_hex(private_key_hex: &str) -> Result<LocalSigner, SignerError> {
        let digits = private_key_hex
            .strip_prefix("0x")
            .unwrap_or(private_key_hex);
        if digits.len() != 64 {
            return Err(SignerError::InvalidKey);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| SignerError::InvalidKey)?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| SignerError::InvalidKey);
        bytes.fill(0);
        let key = key?;
        let address = address_of(&key);
        Ok(LocalSigner { key, address })
    }

    /// The EIP-55 checksummed address of the key.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Signs `tx` as an EIP-155 legacy transaction:
    /// `rlp([nonce, gasPrice, gas, to, value, data, v, r, s])` with
    /// `v = recid + 35 + 2 * chain_id` and a low `s`, over
    /// `keccak256(rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0]))`.
    pub fn sign(&self, tx: &LegacyTx) -> Result<SignedTx, SignerError> {
        let to = parse_address(&tx.to).map_err(SignerError::InvalidAddress)?;
        let mut fields = vec![
            rlp::uint(u128::from(tx.nonce)),
            rlp::uint_be(&tx.gas_price.to_be_bytes()),
            rlp::uint(u128::from(tx.gas_limit)),
            rlp::bytes(&to),
            rlp::uint_be(&tx.value.to_be_bytes()),
            rlp::bytes(&tx.data),
        ];
        let mut unsigned = fields.clone();
        unsigned.extend([
            rlp::uint(u128::from(tx.chain_id)),
            rlp::uint(0),
            rlp::uint(0),
        ]);
        let sighash = keccak256(&rlp::list(&unsigned));

        let (mut sig, mut recid) = self
            .key
            .sign_prehash_recoverable(&sighash)
            .map_err(|e| SignerError::Signing(e.to_string()))?;
        // k256 already returns a low s; normalising again keeps this true
        // whatever the library does (s → n - s flips the parity of y).
        if let Some(low) = sig.normalize_s() {
            sig = low;
            recid = RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced());
        }
        if recid.is_x_reduced() {
            // Probability ~2^-128; Ethereum's v cannot express it.
            return Err(SignerError::Signing("reduced x in signature".to_owned()));
        }
        let v = u128::from(recid.is_y_odd()) + 35 + 2 * u128::from(tx.chain_id);
        let (r, s) = sig.split_bytes();
        fields.extend([rlp::uint(v), rlp::uint_be(&r), rlp::uint_be(&s)]);
        let raw = rlp::list(&fields);
        let txid = format!("0x{}", hex::encode(keccak256(&raw)));
        Ok(SignedTx { raw, txid })
    }
}

/// The EIP-55 address of `key`: the last 20 bytes of keccak256 of the
/// uncompressed public key without its 0x04 prefix.
fn address_of(key: &SigningKey) -> String {
    let point = key.verifying_key().to_encoded_point(false);
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut account = [0u8; 20];
    account.copy_from_slice(&hash[12..]);
    domain::custody::address::evm_checksum_address(&account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::{Signature, VerifyingKey};

    const EIP155_KEY: &str = "0x4646464646464646464646464646464646464646464646464646464646464646";

    fn eip155_tx() -> LegacyTx {
        LegacyTx {
            chain_id: 1,
            nonce: 9,
            gas_price: U256::new(20_000_000_000),
            gas_limit: 21_000,
            to: "0x3535353535353535353535353535353535353535".to_owned(),
            value: U256::new(1_000_000_000_000_000_000),
            data: vec![],
        }
    }

    /// The example of EIP-155's text.
    #[test]
    fn eip155_example_vector() {
        let signer = LocalSigner::from_hex(EIP155_KEY).unwrap();
        let signed = signer.sign(&eip155_tx()).unwrap();
        assert_eq!(
            hex::encode(&signed.raw),
            "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a7640000\
             8025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f\
             761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
        assert_eq!(
            signed.txid,
            format!("0x{}", hex::encode(keccak256(&signed.raw)))
        );
        // the signing data and hash of the EIP text
        let unsigned = hex::decode(
            "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080",
        )
        .unwrap();
        assert_eq!(
            hex::encode(keccak256(&unsigned)),
            "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
    }

    #[test]
    fn signing_is_deterministic() {
        let signer = LocalSigner::from_hex(EIP155_KEY).unwrap();
        let mut tx = eip155_tx();
        tx.data = vec![1, 2, 3];
        let a = signer.sign(&tx).unwrap();
        let b = signer.sign(&tx).unwrap();
        assert_eq!(a, b);
        let again = LocalSigner::from_hex(&EIP155_KEY[2..]).unwrap();
        assert_eq!(
            again.sign(&tx).unwrap(),
            a,
            "a fresh signer of the same key too"
        );
        tx.nonce += 1;
        assert_ne!(signer.sign(&tx).unwrap().txid, a.txid);
    }

    #[test]
    fn signatures_are_low_s_and_recover_the_signer() {
        let signer = LocalSigner::from_hex(EIP155_KEY).unwrap();
        for nonce in 0..40u64 {
            let mut tx = eip155_tx();
            tx.nonce = nonce;
            tx.chain_id = 97;
            let signed = signer.sign(&tx).unwrap();
            // r and s are the last two 32-byte (or shorter) items: re-derive
            // them from the signature of the same hash instead of parsing RLP.
            let mut unsigned = vec![
                rlp::uint(u128::from(tx.nonce)),
                rlp::uint_be(&tx.gas_price.to_be_bytes()),
                rlp::uint(u128::from(tx.gas_limit)),
                rlp::bytes(&parse_address(&tx.to).unwrap()),
                rlp::uint_be(&tx.value.to_be_bytes()),
                rlp::bytes(&tx.data),
            ];
            unsigned.extend([rlp::uint(97), rlp::uint(0), rlp::uint(0)]);
            let sighash = keccak256(&rlp::list(&unsigned));
            let (sig, _) = signer.key.sign_prehash_recoverable(&sighash).unwrap();
            assert!(sig.normalize_s().is_none(), "low s");
            let (r, s) = sig.split_bytes();
            let tail = [rlp::uint_be(&r), rlp::uint_be(&s)].concat();
            assert!(signed.raw.ends_with(&tail));
            // v sits right before r: 35 + 2*97 + parity = 229 or 230 → 0x81 0xe5|0xe6
            let v_at = signed.raw.len() - tail.len() - 2;
            assert_eq!(signed.raw[v_at], 0x81);
            let parity = signed.raw[v_at + 1] - 229;
            assert!(parity <= 1);
            let recid = RecoveryId::new(parity == 1, false);
            let sig = Signature::from_scalars(r, s).unwrap();
            let recovered = VerifyingKey::recover_from_prehash(&sighash, &sig, recid).unwrap();
            assert_eq!(&recovered, signer.key.verifying_key());
        }
    }

    #[test]
    fn addresses_of_known_keys() {
        // anvil / hardhat dev account 0
        let signer = LocalSigner::from_hex(
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        )
        .unwrap();
        assert_eq!(
            signer.address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        // the EIP-155 example key
        assert_eq!(
            LocalSigner::from_hex(EIP155_KEY).unwrap().address(),
            "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
        );
    }

    #[test]
    fn bad_keys_and_addresses_are_refused_without_echoing_the_key() {
        for bad in [
            "",
            "0x",
            "00",
            "0x0000000000000000000000000000000000000000000000000000000000000000",
            "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", // = n
            "0xzz46464646464646464646464646464646464646464646464646464646464646",
            "4646464646464646464646464646464646464646464646464646464646464646aa",
        ] {
            let err = LocalSigner::from_hex(bad).unwrap_err();
            assert_eq!(err, SignerError::InvalidKey);
            assert!(!err.to_string().contains("4646"));
        }
        let signer = LocalSigner::from_hex(EIP155_KEY).unwrap();
        let shown = format!("{signer:?}");
        assert!(shown.contains("0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"));
        assert!(!shown.contains("4646"), "{shown}");

        let mut tx = eip155_tx();
        tx.to = "0x3535".to_owned();
        assert!(matches!(
            signer.sign(&tx),
            Err(SignerError::InvalidAddress(_))
        ));
        // a mixed-case address with a wrong checksum
        tx.to = "0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266".to_owned();
        assert!(matches!(
            signer.sign(&tx),
            Err(SignerError::InvalidAddress(_))
        ));
        tx.to = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".to_owned();
        assert!(signer.sign(&tx).is_ok());
    }
}
