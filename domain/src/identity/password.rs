//! Passwords: the acceptance policy for new passwords, and Argon2id hashing
//! and verification with bounded concurrency.
//!
//! Hashing is deliberately expensive (memory-hard), so it runs on tokio's
//! blocking pool and only `max_concurrent` hashes run at once: a login storm
//! then queues on a semaphore instead of exhausting the blocking pool and
//! memory that other requests need.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::{OnceCell, Semaphore};

/// Lower-case common passwords, one per line. Only entries of 12+ characters
/// can matter (shorter ones are refused by length), but the whole list is kept
/// so the file stays a plain copy of the public lists it came from.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// Why a new password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {min} characters")]
    TooShort { min: usize },
    #[error("password must be at most {max} characters")]
    TooLong { max: usize },
    #[error("password is too common")]
    TooCommon,
    #[error("password must not be the e-mail address")]
    SameAsEmail,
}

impl PasswordError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PasswordError::TooShort { .. } => "too_short",
            PasswordError::TooLong { .. } => "too_long",
            PasswordError::TooCommon => "too_common",
            PasswordError::SameAsEmail => "same_as_email",
        }
    }
}

/// The rules for new passwords (NIST SP 800-63B style: length and a
/// block-list, no composition rules).
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordPolicy;

impl PasswordPolicy {
    /// Minimum length in characters (Unicode scalar values, not bytes, so
    /// non-Latin passwords are not penalised or favoured).
    pub const MIN_CHARS: usize = 12;
    /// Maximum length in characters; bounds the work an attacker can make the
    /// hasher do and keeps the argument sane for any client.
    pub const MAX_CHARS: usize = 128;

    /// Checks a new password for the account `email`.
    pub fn check(&self, password: &str, email: &str) -> Result<(), PasswordError> {
        // A cheap byte bound first so a multi-megabyte body is not walked.
        if password.len() > Self::MAX_CHARS * 4 {
            return Err(PasswordError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let chars = password.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(PasswordError::TooShort {
                min: Self::MIN_CHARS,
            });
        }
        if chars > Self::MAX_CHARS {
            return Err(PasswordError::TooLong {
                max: Self::MAX_CHARS,
            });
        }

        let lower = password.to_lowercase();
        let email = email.trim().to_lowercase();
        let local = email.rsplit_once('@').map_or(email.as_str(), |(l, _)| l);
        if !email.is_empty() && (lower == email || lower == local) {
            return Err(PasswordError::SameAsEmail);
        }

        let mut it = lower.chars();
        let one_char_repeated = it.next().is_some_and(|first| it.all(|c| c == first));
        if one_char_repeated || COMMON_PASSWORDS.contains(lower.as_str()) {
            return Err(PasswordError::TooCommon);
        }
        Ok(())
    }
}

/// [`PasswordPolicy::check`] with the standard policy.
pub fn check_password(password: &str, email: &str) -> Result<(), PasswordError> {
    PasswordPolicy.check(password, email)
}

/// Failures of hashing or verification (not a wrong password: that is
/// [`Verified::Mismatch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// Parameters below the OWASP minimum (m=19456 KiB, t=2, p=1), or a zero
    /// concurrency limit.
    #[error("argon2 parameters are too weak or invalid: {0}")]
    WeakParams(String),
    /// The stored hash is not a PHC string argon2 understands.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// The hasher was shut down (semaphore closed) or the blocking task died.
    #[error("password hasher unavailable: {0}")]
    Unavailable(String),
    /// argon2 itself failed (e.g. the RNG for the salt).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The outcome of [`PasswordHasher::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password is right. When `needs_rehash` is true the stored hash was
    /// made with other (older) parameters: the caller should store a fresh
    /// [`PasswordHasher::hash`] of the password it just verified.
    Ok { needs_rehash: bool },
    /// Wrong password, or no such account.
    Mismatch,
}

/// Argon2id (v19) hashing with fixed parameters and bounded concurrency.
/// Cheap to clone: clones share the semaphore and the dummy hash.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password with `params`, verified against when the
    /// account does not exist so that an unknown e-mail costs as much time as
    /// a wrong password (no account enumeration by timing).
    dummy: Arc<OnceCell<String>>,
}

impl PasswordHasher {
    /// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
    pub const MIN_M_KIB: u32 = 19_456;
    pub const MIN_T: u32 = 2;
    pub const MIN_P: u32 = 1;

    /// A hasher with memory `m_kib` KiB, `t` passes and `p` lanes, running at
    /// most `max_concurrent` hashes at once. Refuses anything below the OWASP
    /// minimum.
    pub fn new(m_kib: u32, t: u32, p: u32, max_concurrent: usize) -> Result<Self, HashError> {
        if m_kib < Self::MIN_M_KIB || t < Self::MIN_T || p < Self::MIN_P {
            return Err(HashError::WeakParams(format!(
                "m={m_kib} t={t} p={p}; minimum is m={} t={} p={}",
                Self::MIN_M_KIB,
                Self::MIN_T,
                Self::MIN_P
            )));
        }
        if max_concurrent == 0 {
            return Err(HashError::WeakParams("max_concurrent must be >= 1".into()));
        }
        let params =
            Params::new(m_kib, t, p, None).map_err(|e| HashError::WeakParams(e.to_string()))?;
        Ok(Self::with_params(params, max_concurrent))
    }

    /// m=19456 KiB, t=2, p=1 with one concurrent hash per CPU.
    pub fn default_params() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        // `Params::DEFAULT` is exactly the OWASP minimum (19 MiB, t=2, p=1).
        Self::with_params(Params::DEFAULT, cpus)
    }

    fn with_params(params: Params, max_concurrent: usize) -> Self {
        Self {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            dummy: Arc::new(OnceCell::new()),
        }
    }

    /// The parameters new hashes are made with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Runs `f` on the blocking pool while holding a permit.
    async fn run_blocking<T, F>(&self, f: F) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| HashError::Unavailable(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            // The permit moves into the task: if the caller's future is
            // dropped (client went away) the hash still runs to the end, and
            // it must keep counting against the limit until it does.
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| HashError::Unavailable(e.to_string()))
    }

    /// An Argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a
    /// random 16-byte salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.run_blocking(move || {
            Self::argon2(params)
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| HashError::Hash(e.to_string()))
        })
        .await?
    }

    /// Verifies `password` against the stored PHC string; `None` means the
    /// account does not exist, which is answered with [`Verified::Mismatch`]
    /// after the same amount of work as a real verification.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<Verified, HashError> {
        // An account without a usable hash (unknown e-mail, or a
        // partner-managed account that never signs in) costs the same work
        // as a real one and answers the same.
        let (stored, known) = match phc {
            Some(s) if PasswordHash::new(s).is_ok() => (s.to_owned(), true),
            _ => (self.dummy_hash().await?.to_owned(), false),
        };
        let wanted = self.params.clone();
        let password = password.to_owned();
        self.run_blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(|_| HashError::MalformedHash)?;
            // Verification uses the algorithm, version and parameters recorded
            // in the hash, not ours, so old hashes keep working after an
            // upgrade and are then flagged for rehash.
            let ok = Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            Ok(match (ok, known) {
                (true, true) => Verified::Ok {
                    needs_rehash: needs_rehash(&parsed, &wanted),
                },
                _ => Verified::Mismatch,
            })
        })
        .await?
    }

    async fn dummy_hash(&self) -> Result<&str, HashError> {
        let s = self
            .dummy
            .get_or_try_init(|| async {
                // A random password nobody knows; the result is never "Ok"
                // anyway, but this way the dummy is not a known credential.
                let secret = crate::identity::crypto::random_token(32);
                self.hash(&secret).await
            })
            .await?;
        Ok(s.as_str())
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::default_params()
    }
}

/// Whether a verified hash was made differently from what we would make now.
/// Any difference counts (not only "weaker"): parameters are only ever
/// raised, and a single canonical form keeps the table uniform.
fn needs_rehash(hash: &PasswordHash, wanted: &Params) -> bool {
    if hash.algorithm != Algorithm::Argon2id.ident()
        || hash.version != Some(u32::from(Version::V0x13))
    {
        return true;
    }
    let Ok(have) = Params::try_from(hash) else {
        return true;
    };
    let default_len = Params::DEFAULT_OUTPUT_LEN;
    have.m_cost() != wanted.m_cost()
        || have.t_cost() != wanted.t_cost()
        || have.p_cost() != wanted.p_cost()
        || have.output_len().unwrap_or(default_len) != wanted.output_len().unwrap_or(default_len)
        || hash
            .salt
            .as_ref()
            .is_none_or(|s| s.len() < argon2::RECOMMENDED_SALT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "Alice.Smith@example.com";

    #[test]
    fn common_list_is_loaded() {
        assert!(COMMON_PASSWORDS.len() >= 1000);
        assert!(
            COMMON_PASSWORDS
                .iter()
                .filter(|p| p.chars().count() >= 12)
                .count()
                >= 150
        );
        assert!(COMMON_PASSWORDS.iter().all(|p| *p == p.to_lowercase()));
        assert!(COMMON_PASSWORDS.contains("123456"));
    }

    #[test]
    fn length_rules() {
        assert_eq!(
            check_password("Tr0ub4dor&3", EMAIL), // 11 chars
            Err(PasswordError::TooShort { min: 12 })
        );
        assert_eq!(check_password("Tr0ub4dor&3x", EMAIL), Ok(())); // 12 chars
        assert_eq!(
            check_password(&"ab".repeat(64), EMAIL).map_err(|e| e.code()),
            Ok(())
        ); // 128 chars
        assert_eq!(
            check_password(&format!("{}c", "ab".repeat(64)), EMAIL),
            Err(PasswordError::TooLong { max: 128 })
        );
        assert_eq!(
            check_password(&"x".repeat(100_000), EMAIL).map_err(|e| e.code()),
            Err("too_long")
        );
    }

    #[test]
    fn unicode_is_counted_by_chars() {
        // 11 chars but 33 bytes: still too short.
        let eleven = "日本語のパスワードです";
        assert_eq!(eleven.chars().count(), 11);
        assert_eq!(
            check_password(eleven, EMAIL),
            Err(PasswordError::TooShort { min: 12 })
        );
        let twelve = "日本語のパスワードですよ";
        assert_eq!(check_password(twelve, EMAIL), Ok(()));
        // 128 three-byte chars (384 bytes) are accepted; 129 are not.
        let ok = "日本語ぱ".repeat(32);
        assert_eq!(ok.chars().count(), 128);
        assert_eq!(check_password(&ok, EMAIL), Ok(()));
        assert_eq!(
            check_password(&format!("{ok}x"), EMAIL),
            Err(PasswordError::TooLong { max: 128 })
        );
    }

    #[test]
    fn common_passwords_refused_case_insensitively() {
        for p in [
            "123456789012",
            "QwertyUiop123",
            "PASSWORDPASSWORD",
            "iloveyou1234",
            "Bitcoin12345",
        ] {
            assert_eq!(
                check_password(p, EMAIL),
                Err(PasswordError::TooCommon),
                "{p}"
            );
        }
        assert_eq!(
            check_password("aaaaaaaaaaaaaaaaaaaaa", EMAIL),
            Err(PasswordError::TooCommon)
        );
        assert_eq!(
            check_password("ЖЖЖЖЖЖЖЖЖЖЖЖЖ", EMAIL),
            Err(PasswordError::TooCommon)
        );
    }

    #[test]
    fn email_and_local_part_refused() {
        assert_eq!(
            check_password("alice.smith@example.com", EMAIL),
            Err(PasswordError::SameAsEmail)
        );
        assert_eq!(
            check_password("ALICE.SMITH.JONES", "alice.smith.jones@example.com"),
            Err(PasswordError::SameAsEmail)
        );
        assert_eq!(PasswordError::SameAsEmail.code(), "same_as_email");
        // Merely containing the local part is fine.
        assert_eq!(check_password("alice.smith-rocks-42", EMAIL), Ok(()));
    }

    #[test]
    fn error_codes() {
        assert_eq!(PasswordError::TooShort { min: 12 }.code(), "too_short");
        assert_eq!(PasswordError::TooLong { max: 128 }.code(), "too_long");
        assert_eq!(PasswordError::TooCommon.code(), "too_common");
    }

    #[test]
    fn params_below_minimum_refused() {
        assert!(matches!(
            PasswordHasher::new(19_455, 2, 1, 1),
            Err(HashError::WeakParams(_))
        ));
        assert!(matches!(
            PasswordHasher::new(19_456, 1, 1, 1),
            Err(HashError::WeakParams(_))
        ));
        assert!(matches!(
            PasswordHasher::new(19_456, 2, 0, 1),
            Err(HashError::WeakParams(_))
        ));
        assert!(matches!(
            PasswordHasher::new(19_456, 2, 1, 0),
            Err(HashError::WeakParams(_))
        ));
        let h = PasswordHasher::new(19_456, 2, 1, 1).unwrap();
        let d = PasswordHasher::default_params();
        assert_eq!(h.params().m_cost(), d.params().m_cost());
        assert_eq!(h.params().t_cost(), d.params().t_cost());
        assert_eq!(h.params().p_cost(), d.params().p_cost());
    }

    #[tokio::test]
    async fn hash_verify_round_trip() {
        let h = PasswordHasher::default_params();
        let phc = h.hash("correct horse battery").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(
            h.verify("correct horse battery", Some(&phc)).await.unwrap(),
            Verified::Ok {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify("correct horse batterY", Some(&phc)).await.unwrap(),
            Verified::Mismatch
        );
        // Same password, fresh salt.
        assert_ne!(phc, h.hash("correct horse battery").await.unwrap());
    }

    #[tokio::test]
    async fn unknown_account_is_mismatch() {
        let h = PasswordHasher::default_params();
        assert_eq!(
            h.verify("anything", None).await.unwrap(),
            Verified::Mismatch
        );
        // The dummy is computed once and reused.
        let first = h.dummy.get().cloned().unwrap();
        assert_eq!(h.verify("", None).await.unwrap(), Verified::Mismatch);
        assert_eq!(h.dummy.get().cloned().unwrap(), first);
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn an_unusable_stored_hash_is_a_mismatch_like_an_unknown_account() {
        let h = PasswordHasher::default_params();
        assert_eq!(
            h.verify("x", Some("not a phc string")).await,
            Ok(Verified::Mismatch)
        );
    }

    #[tokio::test]
    async fn weaker_stored_hash_needs_rehash() {
        let old = PasswordHasher::new(19_456, 2, 1, 2).unwrap();
        let new = PasswordHasher::new(19_456, 3, 1, 2).unwrap();
        let phc = old.hash("long enough password").await.unwrap();
        assert_eq!(
            new.verify("long enough password", Some(&phc))
                .await
                .unwrap(),
            Verified::Ok { needs_rehash: true }
        );
        assert_eq!(
            new.verify("wrong password", Some(&phc)).await.unwrap(),
            Verified::Mismatch
        );

        // A different algorithm (argon2i) also needs a rehash.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::DEFAULT)
            .hash_password(b"long enough password")
            .unwrap()
            .to_string();
        assert_eq!(
            old.verify("long enough password", Some(&argon2i))
                .await
                .unwrap(),
            Verified::Ok { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let h = PasswordHasher::new(19_456, 2, 1, 1).unwrap();
        let (a, b) = tokio::join!(h.hash("first password"), h.hash("second password"));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(h.permits.available_permits(), 1);
    }
}
