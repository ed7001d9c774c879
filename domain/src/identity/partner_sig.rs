//! Partner request signing: the canonical request, its HMAC-SHA256
//! signature, header parsing, the timestamp window, key scopes and the IP
//! allow-list. Pure functions only; the nonce store, the key lookup and the
//! clock belong to the caller, so every rule here is testable without I/O.
//!
//! A partner signs
//!
//! ```text
//! <timestamp>\n<nonce>\n<METHOD>\n<path>\n<sorted query>\n<hex sha256(body)>
//! ```
//!
//! with its key secret and sends the result as lower-case hex in
//! [`HEADER_SIGNATURE`]. `scripts/partner-sign.sh` is the reference client;
//! a test below runs it and checks it agrees with [`sign`].

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The partner's key id (`hgk_…`).
pub const HEADER_KEY: &str = "X-Hashgrid-Key";
/// Unix seconds at which the request was signed.
pub const HEADER_TIMESTAMP: &str = "X-Hashgrid-Timestamp";
/// 16–64 characters of `[A-Za-z0-9_-]`, unique per key within the window.
pub const HEADER_NONCE: &str = "X-Hashgrid-Nonce";
/// Lower-case hex HMAC-SHA256 of the canonical request.
pub const HEADER_SIGNATURE: &str = "X-Hashgrid-Signature";

/// The product rule for clock skew; callers pass it to [`check_timestamp`].
pub const DEFAULT_WINDOW_SECS: i64 = 30;

/// Prefix of every partner key id.
pub const KEY_ID_PREFIX: &str = "hgk_";

const NONCE_MIN_LEN: usize = 16;
const NONCE_MAX_LEN: usize = 64;
// Generous, but bounded so a hostile header cannot become a huge store key.
const KEY_ID_MAX_LEN: usize = 128;
// Unix seconds fit in 10 digits until 2286; 12 leaves room and rejects
// absurd values before parsing.
const TIMESTAMP_MAX_DIGITS: usize = 12;
const SIGNATURE_HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Why a partner request was refused. Each has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("the {header} header is missing")]
    MissingHeader { header: &'static str },
    #[error("the {header} header is malformed")]
    MalformedHeader { header: &'static str },
    #[error(
        "the request timestamp is {skew_secs} s away from the server clock (allowed: ±{window_secs} s)"
    )]
    TimestampOutOfWindow { skew_secs: i64, window_secs: i64 },
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("the nonce was already used")]
    NonceReplayed,
    #[error("requests from this IP address are not allowed for this key")]
    IpNotAllowed,
    #[error("the key lacks the {required} scope")]
    ScopeMissing { required: Scope },
    #[error("the key is revoked or expired")]
    KeyRevokedOrExpired,
    #[error("unknown key")]
    UnknownKey,
}

impl SigError {
    /// Stable machine-readable code for problem+json bodies.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::MissingHeader { .. } => "missing_signature_header",
            SigError::MalformedHeader { .. } => "malformed_signature_header",
            SigError::TimestampOutOfWindow { .. } => "timestamp_out_of_window",
            SigError::BadSignature => "bad_signature",
            SigError::NonceReplayed => "nonce_replayed",
            SigError::IpNotAllowed => "ip_not_allowed",
            SigError::ScopeMissing { .. } => "scope_missing",
            SigError::KeyRevokedOrExpired => "key_revoked_or_expired",
            SigError::UnknownKey => "unknown_key",
        }
    }

    /// The HTTP status this maps to: 401 when the request is not
    /// authenticated, 403 when it is but the key may not do this.
    /// (domain has no HTTP types, hence a bare number.)
    pub fn http_status(&self) -> u16 {
        match self {
            SigError::IpNotAllowed | SigError::ScopeMissing { .. } => 403,
            SigError::MissingHeader { .. }
            | SigError::MalformedHeader { .. }
            | SigError::TimestampOutOfWindow { .. }
            | SigError::BadSignature
            | SigError::NonceReplayed
            | SigError::KeyRevokedOrExpired
            | SigError::UnknownKey => 401,
        }
    }
}

/// The four signature headers, format-checked by [`parse_headers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub key_id: String,
    pub timestamp: i64,
    pub nonce: String,
    /// Lower-case hex, 64 characters.
    pub signature: String,
}

/// What a partner key may do. Withdraw is separate from trade so that a
/// leaked trading key cannot move funds out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Trade,
    Withdraw,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Trade, Scope::Withdraw];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Trade => "trade",
            Scope::Withdraw => "withdraw",
        }
    }

    /// The scope named exactly `s` (lower case, as stored), if any.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string a partner signs; see the module doc for its shape.
///
/// `path` and `query` are taken as received (percent-encoded, never
/// decoded) so that client and server agree byte for byte without sharing a
/// URL decoder. Only the order of query parameters is normalised, because
/// HTTP libraries reorder them freely.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    [
        timestamp.to_string(),
        nonce.to_owned(),
        method.to_ascii_uppercase(),
        path.to_owned(),
        sorted_query(query),
        body_hash,
    ]
    .join("\n")
}

/// Query parameters sorted by key, then value, then the raw parameter (so
/// that `a` and `a=` have a fixed order). Comparison is bytewise, which is
/// what `LC_ALL=C sort -t '=' -k1,1 -k2` does in the reference script.
/// Empty parameters (`a=1&&b=2`) are kept: nothing is dropped or decoded.
fn sorted_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut params: Vec<(&str, &str, &str)> = query
        .split('&')
        .map(|raw| {
            let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
            (key, value, raw)
        })
        .collect();
    params.sort_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
            .then_with(|| a.2.as_bytes().cmp(b.2.as_bytes()))
    });
    params
        .iter()
        .map(|(_, _, raw)| *raw)
        .collect::<Vec<_>>()
        .join("&")
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (long ones are hashed first), so this
    // constructor cannot fail; the match keeps unwrap out of library code.
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

/// Lower-case hex HMAC-SHA256 of `canonical` under `secret`.
pub fn sign(secret: &[u8], canonical: &str) -> String {
    let mut mac = mac(secret);
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature_hex` is the signature of `canonical` under `secret`.
/// The comparison is constant time (`Mac::verify_slice`), so the answer
/// time does not reveal how many leading bytes matched. Malformed hex or a
/// wrong length is simply `false`.
pub fn verify(secret: &[u8], canonical: &str, signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(canonical.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// Refuses a timestamp more than `window_secs` away from `now` in either
/// direction; the edges are allowed. Bounding the window is what lets the
/// nonce store forget nonces after `2 × window`.
pub fn check_timestamp(timestamp: i64, now: i64, window_secs: i64) -> Result<(), SigError> {
    let window = window_secs.max(0);
    // Checked: a hostile timestamp near i64::MIN must not overflow.
    match now.checked_sub(timestamp) {
        Some(skew) if skew.unsigned_abs() <= window.unsigned_abs() => Ok(()),
        Some(skew) => Err(SigError::TimestampOutOfWindow {
            skew_secs: skew,
            window_secs: window,
        }),
        None => Err(SigError::TimestampOutOfWindow {
            skew_secs: i64::MAX,
            window_secs: window,
        }),
    }
}

/// Checks that the four headers are present and well formed. It does not
/// check the signature, the window or the nonce: those need the key and
/// the clock.
pub fn parse_headers(
    key: Option<&str>,
    timestamp: Option<&str>,
    nonce: Option<&str>,
    signature: Option<&str>,
) -> Result<SignedHeaders, SigError> {
    let key = key.ok_or(SigError::MissingHeader { header: HEADER_KEY })?;
    let timestamp = timestamp.ok_or(SigError::MissingHeader {
        header: HEADER_TIMESTAMP,
    })?;
    let nonce = nonce.ok_or(SigError::MissingHeader {
        header: HEADER_NONCE,
    })?;
    let signature = signature.ok_or(SigError::MissingHeader {
        header: HEADER_SIGNATURE,
    })?;

    if !valid_key_id(key) {
        return Err(SigError::MalformedHeader { header: HEADER_KEY });
    }
    let timestamp = parse_timestamp(timestamp).ok_or(SigError::MalformedHeader {
        header: HEADER_TIMESTAMP,
    })?;
    if !(NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len()) || !nonce.bytes().all(is_token_byte)
    {
        return Err(SigError::MalformedHeader {
            header: HEADER_NONCE,
        });
    }
    if signature.len() != SIGNATURE_HEX_LEN
        || !signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(SigError::MalformedHeader {
            header: HEADER_SIGNATURE,
        });
    }
    Ok(SignedHeaders {
        key_id: key.to_owned(),
        timestamp,
        nonce: nonce.to_owned(),
        signature: signature.to_owned(),
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn valid_key_id(key: &str) -> bool {
    key.len() <= KEY_ID_MAX_LEN
        && key
            .strip_prefix(KEY_ID_PREFIX)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(is_token_byte))
}

/// Digits only: `str::parse` would also accept a sign, which no client
/// sends and which would give two spellings of one signed value.
fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > TIMESTAMP_MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether `ip` may use a key with this allow-list. An empty list allows
/// any address; entries are CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single
/// addresses. An entry that does not parse matches nothing, so a typo
/// narrows access rather than widening it.
pub fn ip_allowed(allowlist: &[String], ip: IpAddr) -> bool {
    if allowlist.is_empty() {
        return true;
    }
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; compare
    // them as the IPv4 address the partner put in its list.
    let ip = ip.to_canonical();
    allowlist
        .iter()
        .filter_map(|entry| parse_allow_entry(entry.trim()))
        .any(|net| net.contains(&ip))
}

fn parse_allow_entry(entry: &str) -> Option<IpNet> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Some(net);
    }
    entry
        .parse::<IpAddr>()
        .ok()
        .map(|ip| IpNet::from(ip.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"hgs_test_secret";
    const TS: i64 = 1_700_000_000;
    const NONCE: &str = "nonce_0123456789abcdef";
    const BODY: &[u8] = br#"{"q":1}"#;
    // printf '%s' '{"q":1}' | openssl dgst -sha256
    const BODY_SHA256: &str = "6ae0f660046dadcf5fe8462c0e00a062db4c8d67be82f4098c5ea4208d19b076";
    // printf '%s' "<EXPECTED_CANONICAL>" | openssl dgst -sha256 -hmac hgs_test_secret
    const OPENSSL_SIGNATURE: &str =
        "78c84296dd1b30690412a22488a00361292449580ca31c7b526bfbc0343ac079";

    type Headers<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn canonical() -> String {
        canonical_request("post", "/partner/v1/orders", "b=2&a=1", TS, NONCE, BODY)
    }

    fn signed() -> String {
        sign(SECRET, &canonical())
    }

    #[test]
    fn canonical_request_matches_the_documented_shape() {
        let expected = format!(
            "1700000000\nnonce_0123456789abcdef\nPOST\n/partner/v1/orders\na=1&b=2\n{BODY_SHA256}"
        );
        assert_eq!(canonical(), expected);
    }

    #[test]
    fn signature_matches_openssl() {
        let sig = signed();
        assert_eq!(sig, OPENSSL_SIGNATURE);
        assert!(verify(SECRET, &canonical(), &sig));
    }

    #[test]
    fn empty_body_and_query() {
        let c = canonical_request("GET", "/partner/v1/balances", "", TS, NONCE, b"");
        assert_eq!(
            c,
            "1700000000\nnonce_0123456789abcdef\nGET\n/partner/v1/balances\n\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn any_tampering_fails() {
        let sig = signed();
        let tampered = [
            canonical_request(
                "post",
                "/partner/v1/orders",
                "b=2&a=1",
                TS,
                NONCE,
                b"{\"q\":2}",
            ),
            canonical_request("post", "/partner/v1/order", "b=2&a=1", TS, NONCE, BODY),
            canonical_request("post", "/partner/v1/orders", "b=3&a=1", TS, NONCE, BODY),
            canonical_request("post", "/partner/v1/orders", "b=2", TS, NONCE, BODY),
            canonical_request("put", "/partner/v1/orders", "b=2&a=1", TS, NONCE, BODY),
            canonical_request("post", "/partner/v1/orders", "b=2&a=1", TS + 1, NONCE, BODY),
            canonical_request(
                "post",
                "/partner/v1/orders",
                "b=2&a=1",
                TS,
                "nonce_0123456789abcdeX",
                BODY,
            ),
        ];
        for c in &tampered {
            assert_ne!(c, &canonical());
            assert!(!verify(SECRET, c, &sig), "accepted tampered {c:?}");
        }
        assert!(!verify(b"another secret", &canonical(), &sig));
    }

    #[test]
    fn method_case_does_not_matter() {
        let lower = canonical_request("post", "/p", "", TS, NONCE, BODY);
        let upper = canonical_request("POST", "/p", "", TS, NONCE, BODY);
        assert_eq!(lower, upper);
    }

    #[test]
    fn query_order_does_not_matter() {
        let a = canonical_request("GET", "/p", "b=2&a=1&a=0&c=", TS, NONCE, b"");
        let b = canonical_request("GET", "/p", "c=&a=0&b=2&a=1", TS, NONCE, b"");
        assert_eq!(a, b);
        assert!(a.contains("\na=0&a=1&b=2&c=\n"), "{a}");
    }

    #[test]
    fn query_sorts_by_key_then_value_raw() {
        // "a" sorts before "a-b" and "a1" by key even though '-' and '1' sort
        // before '=' bytewise: the key is compared on its own.
        let c = canonical_request(
            "GET",
            "/p",
            "a1=x&a=2&a-b=3&b&a=1&a=&a&c=%20+",
            TS,
            NONCE,
            b"",
        );
        assert!(c.contains("\na&a=&a=1&a=2&a-b=3&a1=x&b&c=%20+\n"), "{c}");
        // Nothing is decoded: %41 is not A.
        let encoded = canonical_request("GET", "/p%41", "k=%41", TS, NONCE, b"");
        assert!(encoded.contains("\n/p%41\nk=%41\n"), "{encoded}");
    }

    #[test]
    fn bad_hex_fails() {
        let c = canonical();
        let sig = signed();
        assert!(!verify(SECRET, &c, "zz"));
        assert!(!verify(SECRET, &c, ""));
        assert!(!verify(SECRET, &c, &sig[..63]));
        assert!(!verify(SECRET, &c, &sig[..62]));
        assert!(!verify(SECRET, &c, &format!("{sig}00")));
        assert!(!verify(SECRET, &c, &format!("{}g", &sig[..63])));
    }

    #[test]
    fn timestamp_window_edges() {
        let now = TS;
        assert_eq!(check_timestamp(now, now, 30), Ok(()));
        assert_eq!(check_timestamp(now - 30, now, 30), Ok(()));
        assert_eq!(check_timestamp(now + 30, now, 30), Ok(()));
        for ts in [now - 31, now + 31] {
            let err = check_timestamp(ts, now, 30).unwrap_err();
            assert_eq!(err.code(), "timestamp_out_of_window");
        }
        assert_eq!(
            check_timestamp(now + 31, now, 30),
            Err(SigError::TimestampOutOfWindow {
                skew_secs: -31,
                window_secs: 30
            })
        );
        // Extremes do not overflow.
        assert!(check_timestamp(i64::MIN, now, 30).is_err());
        assert!(check_timestamp(i64::MAX, -1, 30).is_err());
        assert!(check_timestamp(now, now, -5).is_ok());
        assert!(check_timestamp(now + 1, now, -5).is_err());
    }

    #[test]
    fn parse_headers_accepts_well_formed() {
        let sig = signed();
        let h = parse_headers(
            Some("hgk_abc123"),
            Some("1700000000"),
            Some(NONCE),
            Some(&sig),
        )
        .unwrap();
        assert_eq!(
            h,
            SignedHeaders {
                key_id: "hgk_abc123".into(),
                timestamp: TS,
                nonce: NONCE.into(),
                signature: sig,
            }
        );
    }

    #[test]
    fn parse_headers_reports_missing_and_malformed() {
        let sig = signed();
        let ok = (
            Some("hgk_abc123"),
            Some("1700000000"),
            Some(NONCE),
            Some(sig.as_str()),
        );
        let missing = [
            (None, ok.1, ok.2, ok.3, HEADER_KEY),
            (ok.0, None, ok.2, ok.3, HEADER_TIMESTAMP),
            (ok.0, ok.1, None, ok.3, HEADER_NONCE),
            (ok.0, ok.1, ok.2, None, HEADER_SIGNATURE),
        ];
        for (k, t, n, s, header) in missing {
            let err = parse_headers(k, t, n, s).unwrap_err();
            assert_eq!(err, SigError::MissingHeader { header });
            assert_eq!(err.code(), "missing_signature_header");
            assert_eq!(err.http_status(), 401);
        }

        let upper = sig.to_uppercase();
        let long_nonce = "n".repeat(65);
        let long_key = format!("hgk_{}", "k".repeat(200));
        let malformed: Vec<(Headers, &str)> = vec![
            ((Some("abc123"), ok.1, ok.2, ok.3), HEADER_KEY),
            ((Some("hgk_"), ok.1, ok.2, ok.3), HEADER_KEY),
            ((Some("hgk_a b"), ok.1, ok.2, ok.3), HEADER_KEY),
            ((Some(&long_key), ok.1, ok.2, ok.3), HEADER_KEY),
            ((ok.0, Some(""), ok.2, ok.3), HEADER_TIMESTAMP),
            ((ok.0, Some("-1700000000"), ok.2, ok.3), HEADER_TIMESTAMP),
            ((ok.0, Some("+1700000000"), ok.2, ok.3), HEADER_TIMESTAMP),
            ((ok.0, Some("1700000000.5"), ok.2, ok.3), HEADER_TIMESTAMP),
            ((ok.0, Some("9999999999999"), ok.2, ok.3), HEADER_TIMESTAMP),
            ((ok.0, ok.1, Some("short_nonce_15c"), ok.3), HEADER_NONCE),
            ((ok.0, ok.1, Some(&long_nonce), ok.3), HEADER_NONCE),
            (
                (ok.0, ok.1, Some("nonce with spaces!!"), ok.3),
                HEADER_NONCE,
            ),
            ((ok.0, ok.1, ok.2, Some(&upper)), HEADER_SIGNATURE),
            ((ok.0, ok.1, ok.2, Some(&sig[..63])), HEADER_SIGNATURE),
            ((ok.0, ok.1, ok.2, Some("not hex")), HEADER_SIGNATURE),
        ];
        for ((k, t, n, s), header) in malformed {
            let err = parse_headers(k, t, n, s).unwrap_err();
            assert_eq!(
                err,
                SigError::MalformedHeader { header },
                "{k:?} {t:?} {n:?} {s:?}"
            );
            assert_eq!(err.code(), "malformed_signature_header");
        }
        // Length edges of the nonce.
        let n16 = "a".repeat(16);
        let n64 = "Z-_9".repeat(16);
        assert!(parse_headers(ok.0, ok.1, Some(&n16), ok.3).is_ok());
        assert!(parse_headers(ok.0, ok.1, Some(&n64), ok.3).is_ok());
    }

    #[test]
    fn error_codes_are_stable() {
        let all = [
            (
                SigError::MissingHeader { header: HEADER_KEY },
                "missing_signature_header",
                401,
            ),
            (
                SigError::MalformedHeader { header: HEADER_KEY },
                "malformed_signature_header",
                401,
            ),
            (
                SigError::TimestampOutOfWindow {
                    skew_secs: 40,
                    window_secs: 30,
                },
                "timestamp_out_of_window",
                401,
            ),
            (SigError::BadSignature, "bad_signature", 401),
            (SigError::NonceReplayed, "nonce_replayed", 401),
            (SigError::IpNotAllowed, "ip_not_allowed", 403),
            (
                SigError::ScopeMissing {
                    required: Scope::Withdraw,
                },
                "scope_missing",
                403,
            ),
            (SigError::KeyRevokedOrExpired, "key_revoked_or_expired", 401),
            (SigError::UnknownKey, "unknown_key", 401),
        ];
        for (err, code, status) in all {
            assert_eq!((err.code(), err.http_status()), (code, status), "{err}");
        }
    }

    #[test]
    fn scopes_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("Read"), None);
        assert_eq!(Scope::parse("admin"), None);
        assert_eq!(
            serde_json::to_string(&Scope::Withdraw).unwrap(),
            "\"withdraw\""
        );
    }

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_allow_list() {
        // Empty: anyone.
        assert!(ip_allowed(&[], ip("203.0.113.7")));
        assert!(ip_allowed(&[], ip("2001:db8::1")));

        let l = list(&["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "::1"]);
        // v4 single address
        assert!(ip_allowed(&l, ip("203.0.113.7")));
        assert!(!ip_allowed(&l, ip("203.0.113.8")));
        // v4 CIDR
        assert!(ip_allowed(&l, ip("10.255.0.1")));
        assert!(!ip_allowed(&l, ip("11.0.0.1")));
        // v6 CIDR and single
        assert!(ip_allowed(&l, ip("2001:db8:ffff::42")));
        assert!(!ip_allowed(&l, ip("2001:db9::1")));
        assert!(ip_allowed(&l, ip("::1")));
        assert!(!ip_allowed(&l, ip("::2")));
        // An IPv4 client seen through a dual-stack socket.
        assert!(ip_allowed(&l, ip("::ffff:203.0.113.7")));
        assert!(!ip_allowed(&l, ip("::ffff:203.0.113.8")));
        // Families do not cross otherwise.
        assert!(!ip_allowed(&list(&["0.0.0.0/0"]), ip("2001:db8::1")));
        assert!(ip_allowed(&list(&["0.0.0.0/0"]), ip("198.51.100.1")));
        // Whitespace around entries is tolerated.
        assert!(ip_allowed(&list(&[" 198.51.100.1 "]), ip("198.51.100.1")));
    }

    #[test]
    fn malformed_allow_entries_match_nothing() {
        assert!(!ip_allowed(&list(&["not-an-ip"]), ip("198.51.100.1")));
        assert!(!ip_allowed(&list(&[""]), ip("198.51.100.1")));
        assert!(!ip_allowed(&list(&["10.0.0.0/33"]), ip("10.0.0.1")));
        assert!(ip_allowed(&list(&["garbage", "10.0.0.1"]), ip("10.0.0.1")));
    }

    /// Runs the reference client in `--dry-run` mode and checks it signs
    /// exactly what the server verifies, so the README example cannot drift.
    #[test]
    fn reference_script_agrees_with_server() {
        let has = |cmd: &str, arg: &str| {
            std::process::Command::new(cmd)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !has("openssl", "version") || !has("bash", "--version") {
            eprintln!("skipping reference_script_agrees_with_server: openssl or bash is missing");
            return;
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/partner-sign.sh");
        let cases: [(&str, &str, &str, Option<&str>); 4] = [
            ("POST", "/partner/v1/orders", "b=2&a=1", Some(r#"{"q":1}"#)),
            ("GET", "/partner/v1/balances", "", None),
            (
                "get",
                "/partner/v1/a%20b",
                "a1=x&a=2&a-b=3&b&a=1&a=&a&c=%20+",
                None,
            ),
            ("DELETE", "/partner/v1/orders/7", "x=1&x=1&", Some("")),
        ];
        for (method, path, query, body) in cases {
            let url = if query.is_empty() {
                format!("http://x:8080{path}")
            } else {
                format!("http://x:8080{path}?{query}#frag")
            };
            let mut cmd = std::process::Command::new("bash");
            cmd.arg(&script).arg("--dry-run").arg(method).arg(&url);
            if let Some(body) = body {
                cmd.arg(body);
            }
            let out = cmd
                .env("HASHGRID_KEY_ID", "hgk_test")
                .env("HASHGRID_KEY_SECRET", "hgs_test_secret")
                .env("HASHGRID_TIMESTAMP", TS.to_string())
                .env("HASHGRID_NONCE", NONCE)
                .output()
                .unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            assert!(
                out.status.success(),
                "script failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (head, printed_canonical) = stdout.split_once("\n\n").unwrap();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_else(|| panic!("no {name} in {head}"))
                    .to_owned()
            };
            let canonical = canonical_request(
                method,
                path,
                query,
                TS,
                NONCE,
                body.unwrap_or("").as_bytes(),
            );
            assert_eq!(printed_canonical.trim_end_matches('\n'), canonical);
            assert_eq!(header(HEADER_SIGNATURE), sign(SECRET, &canonical));
            assert_eq!(header(HEADER_KEY), "hgk_test");
            assert_eq!(header(HEADER_TIMESTAMP), TS.to_string());
            assert_eq!(header(HEADER_NONCE), NONCE);
            let parsed = parse_headers(
                Some(&header(HEADER_KEY)),
                Some(&header(HEADER_TIMESTAMP)),
                Some(&header(HEADER_NONCE)),
                Some(&header(HEADER_SIGNATURE)),
            )
            .unwrap();
            assert!(verify(SECRET, &canonical, &parsed.signature));
        }
        // Without overrides it makes its own timestamp and a valid nonce.
        let out = std::process::Command::new("bash")
            .arg(&script)
            .args(["--dry-run", "GET", "http://x/partner/v1/balances"])
            .env("HASHGRID_KEY_ID", "hgk_test")
            .env("HASHGRID_KEY_SECRET", "hgs_test_secret")
            .env_remove("HASHGRID_TIMESTAMP")
            .env_remove("HASHGRID_NONCE")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let get = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        let parsed = parse_headers(
            get(HEADER_KEY).as_deref(),
            get(HEADER_TIMESTAMP).as_deref(),
            get(HEADER_NONCE).as_deref(),
            get(HEADER_SIGNATURE).as_deref(),
        )
        .unwrap();
        let now = chrono::Utc::now().timestamp();
        assert_eq!(
            check_timestamp(parsed.timestamp, now, DEFAULT_WINDOW_SECS),
            Ok(())
        );
    }
}
