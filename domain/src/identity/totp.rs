//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30 s
//! steps) for second-factor login, and single-use recovery codes.
//!
//! The code arithmetic comes from `totp-rs`; this module adds what the
//! library leaves to its caller: one use per code (via the last accepted
//! step), constant-time comparison and input validation.

use rand::Rng as _;
use rand_core06::{OsRng, RngCore as _};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::identity::crypto::constant_time_eq;

/// Seconds per step.
const STEP: u64 = 30;
/// Digits per code.
const DIGITS: usize = 6;
/// RFC 4226 recommends 160-bit secrets; fewer than 128 bits is refused.
const SECRET_LEN: usize = 20;
const MIN_SECRET_LEN: usize = 16;

/// Recovery-code alphabet: lower-case letters and digits without the easily
/// confused `0 o 1 l i`, so codes read off paper are typed back correctly.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const RECOVERY_CODES: usize = 10;
const RECOVERY_GROUPS: usize = 3;
const RECOVERY_GROUP_LEN: usize = 4;

/// Why a code or secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not exactly six ASCII digits.
    #[error("code must be 6 digits")]
    Malformed,
    /// Well-formed but not valid for the current time window.
    #[error("code is not valid")]
    Invalid,
    /// Valid, but its time step was already used.
    #[error("code was already used")]
    Reused,
    /// The stored secret is shorter than 128 bits.
    #[error("TOTP secret is invalid")]
    BadSecret,
    /// Issuer or account name unusable in an otpauth URI (empty or contains
    /// ':', which authenticator apps treat as the label separator).
    #[error("issuer or account name is not valid in an otpauth URI")]
    BadLabel,
}

impl TotpError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TotpError::Malformed => "malformed_code",
            TotpError::Invalid => "invalid_code",
            TotpError::Reused => "code_reused",
            TotpError::BadSecret => "bad_secret",
            TotpError::BadLabel => "bad_label",
        }
    }
}

/// A fresh 160-bit secret from the OS RNG.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_LEN];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// The secret as unpadded RFC 4648 base32, for manual entry in an app.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

fn builder(secret: &[u8]) -> Builder {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
}

/// A `Totp` for generating codes; refuses secrets below 128 bits.
fn totp(secret: &[u8]) -> Result<Totp, TotpError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(TotpError::BadSecret);
    }
    builder(secret).build().map_err(|_| TotpError::BadSecret)
}

/// `otpauth://totp/Issuer:email?secret=…&issuer=Issuer&algorithm=SHA1&digits=6&period=30`
/// for the enrolment QR code. Label parts are percent-encoded.
pub fn otpauth_uri(secret: &[u8], account_email: &str, issuer: &str) -> Result<String, TotpError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(TotpError::BadSecret);
    }
    if issuer.is_empty() || account_email.is_empty() {
        return Err(TotpError::BadLabel);
    }
    let totp = builder(secret)
        .with_account_name(account_email)
        .with_issuer(Some(issuer))
        .build()
        .map_err(|e| match e {
            totp_rs::TotpError::SecretTooShort { .. } => TotpError::BadSecret,
            _ => TotpError::BadLabel,
        })?;
    let url = totp.to_url().map_err(|_| TotpError::BadLabel)?;
    // totp-rs omits parameters equal to the defaults; some authenticator apps
    // mishandle a missing one, so they are always spelled out.
    Ok(format!(
        "{url}&algorithm=SHA1&digits={DIGITS}&period={STEP}"
    ))
}

/// The code for the step containing `now_unix`. Panic-free for any secret
/// (a too-short secret still yields a code; [`verify_code`] refuses it).
pub fn current_code(secret: &[u8], now_unix: u64) -> String {
    builder(secret)
        .build_noncompliant()
        .generate(now_unix)
        .to_string()
}

/// Checks `code` at time `now_unix` and returns the step it matched.
///
/// Accepts the current step and one step either side (clock skew), but only
/// a step strictly greater than `last_used_step` (pass 0 when no code has
/// been used yet): each code works once, and an older code cannot be
/// replayed after a newer one. The caller must store the returned step with
/// a conditional `UPDATE … WHERE totp_last_step < $step` so that this also
/// holds between concurrent requests.
pub fn verify_code(
    secret: &[u8],
    code: &str,
    now_unix: u64,
    last_used_step: i64,
) -> Result<i64, TotpError> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    let totp = totp(secret)?;

    let now_step = now_unix / STEP;
    let mut matched = false;
    let mut accepted: Option<i64> = None;
    // All candidate steps are computed and compared (no early exit), so the
    // timing does not reveal which window a guess fell into.
    for step in now_step.saturating_sub(1)..=now_step.saturating_add(1) {
        let (Some(time), Ok(step_i64)) = (step.checked_mul(STEP), i64::try_from(step)) else {
            continue;
        };
        let expected = totp.generate(time).to_string();
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            matched = true;
            if step_i64 > last_used_step {
                accepted = Some(accepted.map_or(step_i64, |a| a.max(step_i64)));
            }
        }
    }
    match (accepted, matched) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(TotpError::Reused),
        (None, false) => Err(TotpError::Invalid),
    }
}

/// Ten recovery codes `xxxx-xxxx-xxxx` (about 59 bits each). Show them once;
/// store only `crypto::token_hash(&normalize_recovery_code(code))`.
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let mut code = String::with_capacity(RECOVERY_GROUPS * (RECOVERY_GROUP_LEN + 1));
        for group in 0..RECOVERY_GROUPS {
            if group > 0 {
                code.push('-');
            }
            for _ in 0..RECOVERY_GROUP_LEN {
                let i = rng.random_range(0..RECOVERY_ALPHABET.len());
                code.push(char::from(RECOVERY_ALPHABET[i]));
            }
        }
        // A duplicate is astronomically unlikely, but a set of ten with a
        // repeat would silently be nine, so it is cheap to rule out.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The canonical form of a typed recovery code: lower-case, without spaces
/// or dashes, so "ABCD-EFGH-JKMN" and "abcd efgh jkmn" hash the same.
pub fn normalize_recovery_code(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B (8-digit values; the 6-digit code is the tail).
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(current_code(RFC_SECRET, t), code, "T={t}");
            let step = i64::try_from(t / 30).unwrap();
            assert_eq!(verify_code(RFC_SECRET, code, t, 0), Ok(step), "T={t}");
        }
    }

    #[test]
    fn skew_of_one_step_accepted_two_refused() {
        let secret = new_secret();
        let now = 1_700_000_015;
        let step = i64::try_from(now / 30).unwrap();
        let past = current_code(&secret, now - 30);
        let future = current_code(&secret, now + 30);
        assert_eq!(verify_code(&secret, &past, now, 0), Ok(step - 1));
        assert_eq!(verify_code(&secret, &future, now, 0), Ok(step + 1));
        let current = current_code(&secret, now);
        assert_eq!(verify_code(&secret, &current, now, 0), Ok(step));

        let too_old = current_code(&secret, now - 60);
        let too_new = current_code(&secret, now + 60);
        // Guard against a chance collision with a code in the window.
        if ![&past, &current, &future].contains(&&too_old) {
            assert_eq!(
                verify_code(&secret, &too_old, now, 0),
                Err(TotpError::Invalid)
            );
        }
        if ![&past, &current, &future].contains(&&too_new) {
            assert_eq!(
                verify_code(&secret, &too_new, now, 0),
                Err(TotpError::Invalid)
            );
        }
        // Deterministic check with the RFC secret.
        assert_eq!(
            verify_code(RFC_SECRET, "287082", 59 + 60, 0),
            Err(TotpError::Invalid)
        );
        assert_eq!(verify_code(RFC_SECRET, "287082", 59 + 30, 0), Ok(1));
    }

    #[test]
    fn reuse_refused() {
        let secret = RFC_SECRET;
        let now = 1_111_111_111;
        let step = i64::try_from(now / 30).unwrap();
        let code = current_code(secret, now);
        let used = verify_code(secret, &code, now, step - 1).unwrap();
        assert_eq!(used, step);
        // Same code again.
        assert_eq!(
            verify_code(secret, &code, now, used),
            Err(TotpError::Reused)
        );
        // The previous step's code, still inside the skew window, after a
        // newer one was used.
        let older = current_code(secret, now - 30);
        assert_eq!(
            verify_code(secret, &older, now, used),
            Err(TotpError::Reused)
        );
        assert_eq!(TotpError::Reused.code(), "code_reused");
    }

    #[test]
    fn malformed_refused() {
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "12 345",
            "+12345",
            "１２３４５６",
        ] {
            assert_eq!(
                verify_code(RFC_SECRET, bad, 59, 0),
                Err(TotpError::Malformed),
                "{bad:?}"
            );
        }
        // Surrounding whitespace is tolerated.
        assert_eq!(verify_code(RFC_SECRET, " 287082\n", 59, 0), Ok(1));
        assert_eq!(
            verify_code(RFC_SECRET, "000000", 59, 0),
            Err(TotpError::Invalid)
        );
        assert_eq!(
            verify_code(&[0u8; 15], "000000", 59, 0),
            Err(TotpError::BadSecret)
        );
        assert_eq!(TotpError::Malformed.code(), "malformed_code");
        assert_eq!(TotpError::Invalid.code(), "invalid_code");
        assert_eq!(TotpError::BadSecret.code(), "bad_secret");
    }

    #[test]
    fn time_zero_and_far_future() {
        let code = current_code(RFC_SECRET, 0);
        assert_eq!(verify_code(RFC_SECRET, &code, 0, -1), Ok(0));
        let code = current_code(RFC_SECRET, u64::MAX - 100);
        assert!(verify_code(RFC_SECRET, &code, u64::MAX - 100, 0).is_ok());
    }

    #[test]
    fn secrets_and_uri() {
        let s = new_secret();
        assert_eq!(s.len(), 20);
        assert_ne!(s, new_secret());
        assert_eq!(
            secret_base32(RFC_SECRET),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(
            otpauth_uri(RFC_SECRET, "alice@example.com", "Hashgrid").unwrap(),
            "otpauth://totp/Hashgrid:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Hashgrid&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(
            otpauth_uri(RFC_SECRET, "a:b@example.com", "Hashgrid"),
            Err(TotpError::BadLabel)
        );
        assert_eq!(
            otpauth_uri(RFC_SECRET, "alice@example.com", "Hash:grid"),
            Err(TotpError::BadLabel)
        );
        assert_eq!(
            otpauth_uri(RFC_SECRET, "", "Hashgrid"),
            Err(TotpError::BadLabel)
        );
        assert_eq!(
            otpauth_uri(&[1u8; 10], "alice@example.com", "Hashgrid"),
            Err(TotpError::BadSecret)
        );
    }

    #[test]
    fn recovery_codes() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 14);
            let groups: Vec<&str> = c.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(
                c.bytes()
                    .all(|b| b == b'-' || RECOVERY_ALPHABET.contains(&b))
            );
            assert_eq!(normalize_recovery_code(c), c.replace('-', ""));
            assert_eq!(
                normalize_recovery_code(&c.to_uppercase().replace('-', " ")),
                normalize_recovery_code(c)
            );
        }
        assert!(!"0o1li".bytes().any(|b| RECOVERY_ALPHABET.contains(&b)));
        assert_eq!(normalize_recovery_code(" ABCD-efgh jkmn\t"), "abcdefghjkmn");
        assert_ne!(new_recovery_codes(), codes);
    }
}
