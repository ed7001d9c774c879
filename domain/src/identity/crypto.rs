//! Small cryptographic helpers for identity: random tokens, SHA-256 digests
//! for storing tokens hashed, constant-time comparison, and [`SecretBox`], an
//! AES-256-GCM envelope for secrets that must be stored recoverably (TOTP
//! seeds) under a server-held key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rand_core06::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Errors from key parsing and from opening a sealed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key is not base64 or does not decode to exactly 32 bytes.
    #[error("encryption key must be 32 bytes of base64")]
    BadKey,
    /// Authentication failed: wrong key, wrong AAD or tampered ciphertext.
    #[error("ciphertext could not be decrypted")]
    Decrypt,
    /// Too short, or an unknown format version.
    #[error("ciphertext is malformed")]
    Malformed,
}

/// `n` bytes from the OS RNG, URL-safe base64 without padding, so the token
/// can travel in URLs, headers and JSON without escaping. 32 bytes (256 bits)
/// is the usual size for refresh tokens, e-mail links and API key secrets.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// The digest under which a bearer token is stored. Tokens carry 256 bits of
/// entropy, so a fast unsalted hash suffices: a leaked table cannot be used to
/// authenticate, and look-up stays an indexed equality.
pub fn token_hash(token: &str) -> Vec<u8> {
    sha256(token.as_bytes())
}

/// Equality whose running time does not depend on where the inputs differ.
/// (A length mismatch returns early; lengths are not secret here.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Format version written as the first byte of every sealed value, so the
/// scheme can change later without guessing what old rows contain.
const VERSION: u8 = 1;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// AES-256-GCM with a server-held key. Sealed layout:
/// `version (1) || nonce (12) || ciphertext || tag (16)`.
///
/// Nonces are random: with 96-bit nonces the collision risk stays negligible
/// for far more seals than this key will ever see (secrets are sealed once per
/// enrolment).
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    // Never print the key, even in debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<redacted>)")
    }
}

impl SecretBox {
    /// Parses a key given as standard or URL-safe base64 (padding optional)
    /// that decodes to exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
            .into_iter()
            .find_map(|engine| engine.decode(s).ok())
            .ok_or(CryptoError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(key: &[u8]) -> Result<Self, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::BadKey);
        }
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    /// A fresh random key and its standard base64 form (for configuration).
    pub fn generate() -> (Self, String) {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        let cipher = Aes256Gcm::new(&key.into());
        (Self { cipher }, STANDARD.encode(key))
    }

    /// Encrypts `plaintext`, authenticating `aad` with it. `aad` names the row
    /// the value belongs to (e.g. `b"totp:<user id>"`) so that a ciphertext
    /// copied into another row fails to open.
    ///
    /// # Panics
    ///
    /// Only if `plaintext` exceeds AES-GCM's limit of 2^36 - 32 bytes (64 GiB),
    /// which no caller comes near (secrets here are tens of bytes).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = match self.cipher.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        ) {
            Ok(c) => c,
            // The only failure mode of aes-gcm's encrypt is the length limit
            // above; the signature stays infallible so callers need not
            // handle an error that cannot occur for their inputs.
            Err(_) => panic!("AES-GCM plaintext exceeds 64 GiB"),
        };
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value produced by [`SecretBox::seal`] with the same key and
    /// `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn seal_open_round_trip() {
        let (sb, _) = SecretBox::generate();
        let sealed = sb.seal(b"totp seed", b"totp:1");
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 9 + TAG_LEN);
        assert_eq!(sb.open(&sealed, b"totp:1").unwrap(), b"totp seed");
        // Random nonces: sealing twice gives different ciphertexts.
        assert_ne!(sealed, sb.seal(b"totp seed", b"totp:1"));
        // Empty plaintext is fine too.
        let empty = sb.seal(b"", b"");
        assert_eq!(sb.open(&empty, b"").unwrap(), b"");
    }

    #[test]
    fn wrong_aad_fails() {
        let (sb, _) = SecretBox::generate();
        let sealed = sb.seal(b"secret", b"totp:1");
        assert_eq!(sb.open(&sealed, b"totp:2"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn tampered_byte_fails() {
        let (sb, _) = SecretBox::generate();
        let sealed = sb.seal(b"secret", b"aad");
        for i in 1..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(sb.open(&t, b"aad"), Err(CryptoError::Decrypt), "byte {i}");
        }
        let mut t = sealed.clone();
        t[0] = 2;
        assert_eq!(sb.open(&t, b"aad"), Err(CryptoError::Malformed));
        assert_eq!(
            sb.open(&sealed[..1 + NONCE_LEN + TAG_LEN - 1], b"aad"),
            Err(CryptoError::Malformed)
        );
        assert_eq!(sb.open(&[], b"aad"), Err(CryptoError::Malformed));
    }

    #[test]
    fn wrong_key_fails() {
        let (a, _) = SecretBox::generate();
        let (b, _) = SecretBox::generate();
        let sealed = a.seal(b"secret", b"aad");
        assert_eq!(b.open(&sealed, b"aad"), Err(CryptoError::Decrypt));
    }

    #[test]
    fn key_parsing() {
        let (sb, b64) = SecretBox::generate();
        let sealed = sb.seal(b"x", b"");
        let parsed = SecretBox::from_base64(&b64).unwrap();
        assert_eq!(parsed.open(&sealed, b"").unwrap(), b"x");

        // The same key in URL-safe and unpadded forms.
        let raw = STANDARD.decode(&b64).unwrap();
        for s in [URL_SAFE.encode(&raw), URL_SAFE_NO_PAD.encode(&raw)] {
            let k = SecretBox::from_base64(&format!(" {s}\n")).unwrap();
            assert_eq!(k.open(&sealed, b"").unwrap(), b"x");
        }

        assert_eq!(
            SecretBox::from_base64(&STANDARD.encode([0u8; 31])).unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            SecretBox::from_base64(&STANDARD.encode([0u8; 33])).unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(
            SecretBox::from_base64("not base64 at all!").unwrap_err(),
            CryptoError::BadKey
        );
        assert_eq!(SecretBox::from_base64("").unwrap_err(), CryptoError::BadKey);
    }

    #[test]
    fn debug_hides_key() {
        let (sb, b64) = SecretBox::generate();
        let dbg = format!("{sb:?}");
        assert!(!dbg.contains(&b64));
        assert_eq!(dbg, "SecretBox(<redacted>)");
    }

    #[test]
    fn tokens_are_unique_and_url_safe() {
        let tokens: HashSet<String> = (0..100).map(|_| random_token(32)).collect();
        assert_eq!(tokens.len(), 100);
        for t in &tokens {
            assert_eq!(t.len(), 43); // 32 bytes -> 43 chars unpadded
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        assert_eq!(random_token(0), "");
    }

    #[test]
    fn hashing_and_comparison() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(token_hash("abc"), sha256(b"abc"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
