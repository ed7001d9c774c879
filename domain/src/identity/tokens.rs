//! Access tokens: short-lived JWTs signed with Ed25519 (EdDSA), each key
//! named by its RFC 7638 thumbprint (`kid`). The ring holds one signing key
//! and any number of older keys that only verify, so a rotation keeps old
//! tokens valid until they expire. Verification allows only EdDSA, only the
//! ring's kids, the expected audience, issuer and purpose — nothing in a
//! token decides which key or algorithm checks it.

use std::collections::HashMap;

use chrono::Utc;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const ISSUER: &str = "hashgrid";
/// Access tokens live 10 minutes (the rule is at most 15).
pub const ACCESS_TTL_SECS: i64 = 600;
/// The token between the password step and the 2FA step of a login.
pub const MFA_TTL_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Customer,
    Admin,
}

impl Audience {
    pub fn aud(self) -> &'static str {
        match self {
            Audience::Customer => "hashgrid:customer",
            Audience::Admin => "hashgrid:admin",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Customer => "customer",
            Audience::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Audience> {
        match s {
            "customer" => Some(Audience::Customer),
            "admin" => Some(Audience::Admin),
            _ => None,
        }
    }
}

/// What a token may be used for; one purpose is never accepted for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Calls the API.
    Access,
    /// Proves the password step of a login; only exchanged with a 2FA code.
    Mfa,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub purpose: Purpose,
    /// The session (refresh-token family) the token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
    /// When the second factor was last proven in this session (step-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_at: Option<i64>,
}

impl Claims {
    pub fn new(
        audience: Audience,
        purpose: Purpose,
        user: Uuid,
        session: Option<Uuid>,
        ttl_secs: i64,
    ) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: ISSUER.to_owned(),
            aud: audience.aud().to_owned(),
            sub: user.to_string(),
            exp: now + ttl_secs,
            nbf: now,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            purpose,
            sid: session,
            mfa_at: None,
        }
    }

    pub fn user_id(&self) -> Result<Uuid, TokenError> {
        Uuid::parse_str(&self.sub).map_err(|_| TokenError::Invalid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another audience")]
    WrongAudience,
    #[error("the token is for another purpose")]
    WrongPurpose,
    #[error("the token's key is not known")]
    UnknownKey,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Invalid => "invalid_token",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongPurpose => "wrong_token_purpose",
            TokenError::UnknownKey => "unknown_key",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    BadKey(String),
    #[error("the key ring is empty")]
    Empty,
}

struct RingKey {
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    jwk: Jwk,
}

/// The signing key and the older keys that still verify.
pub struct KeyRing {
    current: String,
    keys: HashMap<String, RingKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("kids", &self.kids())
            .finish()
    }
}

fn load_private(pem: &str) -> Result<(String, RingKey), KeyError> {
    use base64::Engine;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, KeypairBytes};
    let bad = |e: &dyn std::fmt::Display| KeyError::BadKey(e.to_string());
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map_err(|e| bad(&e))?;
    // jsonwebtoken wants the 48-byte PKCS#8 v1 form (no public key inside).
    let v1 = KeypairBytes {
        secret_key: signing.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_der()
    .map_err(|e| bad(&e))?;
    let encoding = EncodingKey::from_ed_der(v1.as_bytes());
    let x =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let mut jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"
    }))
    .map_err(|e| bad(&e))?;
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| bad(&e))?;
    jwk.common.key_id = Some(kid.clone());
    let decoding = DecodingKey::from_ed_components(&x).map_err(|e| bad(&e))?;
    Ok((
        kid,
        RingKey {
            encoding: Some(encoding),
            decoding,
            jwk,
        },
    ))
}

/// A new Ed25519 private key as PKCS#8 PEM.
pub fn generate_private_pem() -> Result<String, KeyError> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core06::OsRng);
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| KeyError::BadKey(e.to_string()))
}

impl KeyRing {
    /// The first PEM signs; the others only verify (older keys after a rotation).
    pub fn from_pems(pems: &[String]) -> Result<KeyRing, KeyError> {
        let mut keys = HashMap::new();
        let mut current = None;
        for (i, pem) in pems.iter().enumerate() {
            let (kid, mut key) = load_private(pem)?;
            if i > 0 {
                key.encoding = None;
            } else {
                current = Some(kid.clone());
            }
            keys.entry(kid).or_insert(key);
        }
        Ok(KeyRing {
            current: current.ok_or(KeyError::Empty)?,
            keys,
        })
    }

    pub fn current_kid(&self) -> &str {
        &self.current
    }

    pub fn kids(&self) -> Vec<String> {
        let mut k: Vec<String> = self.keys.keys().cloned().collect();
        k.sort();
        k
    }

    /// The public keys, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        let mut keys: Vec<Jwk> = self.keys.values().map(|k| k.jwk.clone()).collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        JwkSet { keys }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let key = self
            .keys
            .get(&self.current)
            .and_then(|k| k.encoding.as_ref())
            .ok_or(TokenError::UnknownKey)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.current.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|_| TokenError::Invalid)
    }

    /// Verifies signature, algorithm, kid, issuer, audience, times and purpose.
    pub fn verify(
        &self,
        token: &str,
        audience: Audience,
        purpose: Purpose,
    ) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.algorithms = vec![Algorithm::EdDSA];
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[audience.aud()]);
        v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => TokenError::Expired,
                K::ImmatureSignature => TokenError::NotYetValid,
                K::InvalidAudience => TokenError::WrongAudience,
                _ => TokenError::Invalid,
            }
        })?;
        if data.claims.purpose != purpose {
            return Err(TokenError::WrongPurpose);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn ring() -> (KeyRing, String) {
        let pem = generate_private_pem().unwrap();
        (KeyRing::from_pems(std::slice::from_ref(&pem)).unwrap(), pem)
    }

    fn access(aud: Audience) -> Claims {
        Claims::new(
            aud,
            Purpose::Access,
            Uuid::new_v4(),
            Some(Uuid::new_v4()),
            ACCESS_TTL_SECS,
        )
    }

    fn forge(header: &serde_json::Value, claims: &Claims, sig: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn round_trip_and_claims() {
        let (ring, _) = ring();
        let claims = access(Audience::Customer);
        let token = ring.sign(&claims).unwrap();
        let back = ring
            .verify(&token, Audience::Customer, Purpose::Access)
            .unwrap();
        assert_eq!(back, claims);
        assert!(back.exp - back.iat <= 15 * 60);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(ring.current_kid()));
    }

    #[test]
    fn alg_none_and_hs256_with_our_public_key_are_refused() {
        let (ring, _) = ring();
        let claims = access(Audience::Customer);
        let none = forge(
            &serde_json::json!({"alg": "none", "typ": "JWT", "kid": ring.current_kid()}),
            &claims,
            b"",
        );
        assert_eq!(
            ring.verify(&none, Audience::Customer, Purpose::Access),
            Err(TokenError::Invalid)
        );
        // HS256 "signed" with the public key bytes from the JWKS.
        let jwks = serde_json::to_value(ring.jwks()).unwrap();
        let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.current_kid().to_owned());
        for secret in [
            x.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(&x).unwrap(),
            serde_json::to_vec(&jwks).unwrap(),
        ] {
            let hs =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(
                ring.verify(&hs, Audience::Customer, Purpose::Access),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn expired_future_wrong_audience_and_wrong_purpose_are_refused() {
        let (ring, _) = ring();
        let mut c = access(Audience::Customer);
        c.exp = Utc::now().timestamp() - 60;
        assert_eq!(
            ring.verify(&ring.sign(&c).unwrap(), Audience::Customer, Purpose::Access),
            Err(TokenError::Expired)
        );
        let mut c = access(Audience::Customer);
        c.nbf = Utc::now().timestamp() + 600;
        assert_eq!(
            ring.verify(&ring.sign(&c).unwrap(), Audience::Customer, Purpose::Access),
            Err(TokenError::NotYetValid)
        );
        let admin = ring.sign(&access(Audience::Admin)).unwrap();
        assert_eq!(
            ring.verify(&admin, Audience::Customer, Purpose::Access),
            Err(TokenError::WrongAudience)
        );
        let customer = ring.sign(&access(Audience::Customer)).unwrap();
        assert_eq!(
            ring.verify(&customer, Audience::Admin, Purpose::Access),
            Err(TokenError::WrongAudience)
        );
        let mfa = ring
            .sign(&Claims::new(
                Audience::Customer,
                Purpose::Mfa,
                Uuid::new_v4(),
                None,
                MFA_TTL_SECS,
            ))
            .unwrap();
        assert_eq!(
            ring.verify(&mfa, Audience::Customer, Purpose::Access),
            Err(TokenError::WrongPurpose)
        );
        let mut c = access(Audience::Customer);
        c.iss = "someone-else".into();
        assert_eq!(
            ring.verify(&ring.sign(&c).unwrap(), Audience::Customer, Purpose::Access),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn unknown_kid_tampered_and_garbage_are_refused() {
        let (ring, _) = ring();
        let (other, _) = self::ring();
        let foreign = other.sign(&access(Audience::Customer)).unwrap();
        assert_eq!(
            ring.verify(&foreign, Audience::Customer, Purpose::Access),
            Err(TokenError::UnknownKey)
        );
        let token = ring.sign(&access(Audience::Customer)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut c: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        c.sub = Uuid::new_v4().to_string();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        assert_eq!(
            ring.verify(&parts.join("."), Audience::Customer, Purpose::Access),
            Err(TokenError::Invalid)
        );
        for junk in ["", "a.b.c", "not a token", "eyJhbGciOiJFZERTQSJ9.e30."] {
            assert!(
                ring.verify(junk, Audience::Customer, Purpose::Access)
                    .is_err()
            );
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_verifying() {
        let (old_ring, old_pem) = ring();
        let old_token = old_ring.sign(&access(Audience::Customer)).unwrap();
        let new_pem = generate_private_pem().unwrap();
        let rotated = KeyRing::from_pems(&[new_pem, old_pem]).unwrap();
        assert_ne!(rotated.current_kid(), old_ring.current_kid());
        assert_eq!(rotated.jwks().keys.len(), 2);
        assert!(
            rotated
                .verify(&old_token, Audience::Customer, Purpose::Access)
                .is_ok()
        );
        let new_token = rotated.sign(&access(Audience::Customer)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some(rotated.current_kid())
        );
        // The JWKS carries public parts only.
        let jwks = serde_json::to_string(&rotated.jwks()).unwrap();
        assert!(!jwks.contains("\"d\""), "{jwks}");
    }
}
