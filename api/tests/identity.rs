//! The identity features over real HTTP: registration and e-mail
//! verification (mail delivered by the workers' runner to a real SMTP sink),
//! login, JWT checks, refresh rotation, logout, 2FA, password reset and
//! sessions.
//!
//! Every test gets its own server and database; Redis is shared. The rate
//! limits count per client IP and per account, and every request comes from
//! 127.0.0.1, so each app trusts `X-Forwarded-For` and its client sends a
//! random `10.x.y.z` address: the per-IP limits are then per test, and the
//! per-account ones are per test through random e-mail addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::web;
use chrono::{DateTime, Utc};
use common::{PROBLEM_JSON, TestApp, header, problem, spawn_app_with, validation};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use domain::identity::password::PasswordHasher;
use domain::identity::roles::Role;
use domain::identity::service::IdentityError;
use domain::identity::store;
use domain::identity::tokens::{
    ACCESS_TTL_SECS, Audience, Claims, KeyRing, MFA_TTL_SECS, Purpose, TokenError,
    generate_private_pem,
};
use domain::identity::totp;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use testkit::smtp::{ReceivedMessage, SmtpSink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workers::mailer::{self, Mailer, MailerConfig};
use workers::runner::{Registry, Runner, RunnerConfig};

const PASSWORD: &str = "correct horse battery staple 42";
const NEW_PASSWORD: &str = "another horse battery staple 43";

const SUBJECT_VERIFY: &str = "Confirm your Hashgrid e-mail address";
const SUBJECT_RESET: &str = "Reset your Hashgrid password";
const SUBJECT_PASSWORD_CHANGED: &str = "Your Hashgrid password was changed";
const SUBJECT_2FA_ON: &str = "Two-factor authentication was turned on";

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn no_routes(_: &mut web::ServiceConfig) {}

/// A random private address, so that per-IP rate limits are per test.
fn random_ip() -> String {
    let b = *Uuid::new_v4().as_bytes();
    format!("10.{}.{}.{}", b[0], b[1], b[2].max(1))
}

fn unique_email() -> String {
    format!("u-{}@example.com", Uuid::new_v4().simple())
}

/// The SMTP sink and a job runner delivering the app's e-mail outbox to it.
/// Dropping it stops the runner.
struct MailHarness {
    sink: SmtpSink,
    shutdown: CancellationToken,
}

impl Drop for MailHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl MailHarness {
    async fn start(app: &TestApp) -> MailHarness {
        let sink = SmtpSink::start().await.expect("starting the SMTP sink");
        let mailer = Mailer::from_config(&MailerConfig {
            smtp_url: Some(sink.url()),
            mail_dir: std::env::temp_dir().join("hashgrid-identity-tests-unused"),
            from: "Hashgrid <no-reply@hashgrid.test>".to_owned(),
            require_smtp: true,
        })
        .expect("the mailer");
        let registry = mailer::register(Registry::new(), Arc::new(mailer));
        let shutdown = CancellationToken::new();
        let runner = Runner::new(
            app.db.pool(),
            registry,
            RunnerConfig {
                concurrency: 4,
                poll: Duration::from_millis(20),
                lease: Duration::from_secs(10),
                backoff_base: Duration::from_millis(100),
                backoff_cap: Duration::from_millis(500),
                grace: Duration::from_secs(2),
            },
        );
        tokio::spawn(runner.run(shutdown.clone()));
        MailHarness { sink, shutdown }
    }

    /// The messages received so far for `to`.
    fn messages_to(&self, to: &str) -> Vec<ReceivedMessage> {
        self.sink
            .messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// Waits for a message to `to` whose subject contains `subject`.
    async fn wait_mail(&self, to: &str, subject: &str) -> ReceivedMessage {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mine = self.messages_to(to);
            if let Some(m) = mine
                .iter()
                .find(|m| m.subject().is_some_and(|s| s.contains(subject)))
            {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no e-mail {subject:?} to {to} within 20 s; got subjects {:?}",
                mine.iter()
                    .map(ReceivedMessage::subject)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The token in the link of the e-mail `subject` to `to`.
    async fn token(&self, to: &str, subject: &str) -> String {
        let m = self.wait_mail(to, subject).await;
        m.find_token()
            .unwrap_or_else(|| panic!("no token= in {subject:?}: {}", m.decoded_body()))
    }
}

/// A server that trusts `X-Forwarded-For` and a client that sends `ip` in
/// it, with the mail harness. `overrides` go to the configuration.
async fn spawn_identity_app_with(ip: &str, overrides: &[(&str, &str)]) -> (TestApp, MailHarness) {
    let mut vars = vec![("HASHGRID_TRUST_PROXY", "1")];
    vars.extend_from_slice(overrides);
    let mut app = spawn_app_with(no_routes, &vars).await;
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(ip).unwrap());
    app.client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("http client");
    let mail = MailHarness::start(&app).await;
    (app, mail)
}

async fn spawn_identity_app() -> (TestApp, MailHarness) {
    spawn_identity_app_with(&random_ip(), &[]).await
}

/// Sends a request. Every error answer must be problem+json.
async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    let res = req.send().await.expect("sending the request");
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(
            content_type,
            PROBLEM_JSON,
            "error answer {status} to {} is not problem+json",
            res.url()
        );
    }
    res
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    send(app.client.post(app.url(path)).json(body)).await
}

async fn post_auth(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    send(app.client.post(app.url(path)).bearer_auth(token).json(body)).await
}

async fn get_auth(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app.client.get(app.url(path)).bearer_auth(token)).await
}

async fn delete_auth(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    send(app.client.delete(app.url(path)).bearer_auth(token)).await
}

/// Asserts `status` and answers the JSON body (`Null` when empty).
async fn body(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let url = res.url().clone();
    let text = res.text().await.expect("reading the body");
    assert_eq!(got, status, "{url}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

async fn register(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    post(
        app,
        "/v1/auth/register",
        &json!({"email": email, "password": password, "country": "DE"}),
    )
    .await
}

/// Reads the verification e-mail to `email` from the sink and uses its
/// token; answers the token.
async fn verify(app: &TestApp, mail: &MailHarness, email: &str) -> String {
    let token = mail.token(email, SUBJECT_VERIFY).await;
    let res = post(app, "/v1/auth/verify-email", &json!({"token": token})).await;
    body(res, 204).await;
    token
}

async fn login_raw(
    app: &TestApp,
    email: &str,
    password: &str,
    totp_code: Option<&str>,
) -> reqwest::Response {
    let mut b = json!({"email": email, "password": password});
    if let Some(code) = totp_code {
        b["totp_code"] = json!(code);
    }
    post(app, "/v1/auth/login", &b).await
}

/// Asserts a token pair and answers it.
fn assert_token_pair(pair: &Value) {
    assert!(
        pair["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{pair}"
    );
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 32),
        "{pair}"
    );
    assert_eq!(pair["token_type"], "Bearer", "{pair}");
    let expires_in = pair["expires_in"].as_i64().expect("expires_in");
    assert!((1..=900).contains(&expires_in), "{pair}");
}

/// Logs in (no 2FA) and answers the token pair.
async fn login(app: &TestApp, email: &str, password: &str) -> Value {
    let pair = body(login_raw(app, email, password, None).await, 200).await;
    assert_token_pair(&pair);
    pair
}

/// A verified customer, stored directly: registration itself is what the
/// registration tests cover, and the other tests do not depend on it.
async fn customer(app: &TestApp) -> String {
    let email = unique_email();
    let hasher = PasswordHasher::new(19_456, 2, 1, 1).unwrap();
    let hash = hasher.hash(PASSWORD).await.unwrap();
    let mut conn = app.db.conn().await.unwrap();
    store::insert_user(
        &mut conn,
        &store::NewUser {
            id: Uuid::now_v7(),
            email: &email,
            password_hash: &hash,
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    email
}

async fn refresh(app: &TestApp, refresh_token: &Value) -> reqwest::Response {
    post(
        app,
        "/v1/auth/refresh",
        &json!({"refresh_token": refresh_token}),
    )
    .await
}

async fn me(app: &TestApp, access_token: &Value) -> reqwest::Response {
    get_auth(app, "/v1/me", &s(access_token)).await
}

/// Asserts that `until` is about 24 hours from now.
fn assert_locked_for_a_day(me: &Value) {
    let until: DateTime<Utc> = s(&me["withdrawals_locked_until"]).parse().unwrap();
    let hours = (until - Utc::now()).num_seconds() as f64 / 3600.0;
    assert!((23.9..=24.0).contains(&hours), "locked for {hours} h: {me}");
}

async fn count_users(app: &TestApp, email: &str) -> i64 {
    use domain::schema::users;
    let mut conn = app.db.conn().await.unwrap();
    users::table
        .filter(users::email.eq(email))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

async fn count_emails(app: &TestApp, to: &str) -> i64 {
    use domain::schema::emails;
    let mut conn = app.db.conn().await.unwrap();
    emails::table
        .filter(emails::to_address.eq(to))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An authenticator app that remembers the last step it handed out, since
/// the server accepts each step once and only steps after the last used.
struct Authenticator {
    secret: Vec<u8>,
    last_step: i64,
}

impl Authenticator {
    fn new(base32: &str) -> Authenticator {
        Authenticator {
            secret: totp_rs::Secret::try_from_base32(base32)
                .expect("base32 secret")
                .as_bytes()
                .to_vec(),
            last_step: 0,
        }
    }

    /// The code of the lowest unused step inside the server's window
    /// (now ± 1 step); waits for the next step when none is left.
    async fn next_code(&mut self) -> String {
        loop {
            let now = unix_now();
            let step = i64::try_from(now / 30).unwrap();
            let mut candidate = (self.last_step + 1).max(step - 1);
            // The previous step stops working at the next boundary: keep a margin.
            if now % 30 >= 25 {
                candidate = candidate.max(step);
            }
            if candidate <= step + 1 {
                self.last_step = candidate;
                return totp::current_code(&self.secret, u64::try_from(candidate).unwrap() * 30);
            }
            tokio::time::sleep(Duration::from_secs(30 - now % 30) + Duration::from_millis(100))
                .await;
        }
    }

    /// Six digits valid at no step near now.
    fn wrong_code(&self) -> String {
        let step = unix_now() / 30;
        let near: Vec<String> = (step - 2..=step + 2)
            .map(|st| totp::current_code(&self.secret, st * 30))
            .collect();
        (0u32..)
            .map(|i| format!("{:06}", (123_457 + i * 7_919) % 1_000_000))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}

/// Enrols and confirms 2FA; answers the authenticator and the recovery codes.
async fn enable_2fa(app: &TestApp, access_token: &Value) -> (Authenticator, Vec<String>) {
    let at = s(access_token);
    let enrolment = body(post_auth(app, "/v1/me/2fa", &at, &json!({})).await, 201).await;
    let uri = s(&enrolment["otpauth_uri"]);
    let secret = s(&enrolment["secret"]);
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=Hashgrid"), "{uri}");
    let status = body(get_auth(app, "/v1/me/2fa", &at).await, 200).await;
    assert_eq!(status, json!({"enabled": false, "pending": true}));
    let mut auth = Authenticator::new(&secret);
    let code = auth.next_code().await;
    let codes = body(
        post_auth(app, "/v1/me/2fa/confirm", &at, &json!({"code": code})).await,
        200,
    )
    .await;
    let codes: Vec<String> = codes["recovery_codes"]
        .as_array()
        .expect("recovery_codes")
        .iter()
        .map(s)
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    (auth, codes)
}

// ---------------------------------------------------------------------------
// JWT forging helpers (no JWT library on purpose: tokens are built by hand)
// ---------------------------------------------------------------------------

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn b64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = B64URL
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("not base64url: {text}"));
        acc = (acc << 6) | u32::try_from(v).unwrap();
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits).unwrap());
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// HMAC-SHA-256 (RFC 2104) over the domain's SHA-256.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use domain::identity::crypto::sha256;
    let mut k = if key.len() > 64 {
        sha256(key)
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(sha256(&inner)).collect();
    sha256(&outer)
}

fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (
        serde_json::from_slice(&b64url_decode(parts[0])).unwrap(),
        serde_json::from_slice(&b64url_decode(parts[1])).unwrap(),
    )
}

/// `header.claims.signature` with the signature made by `sign` over the first two.
fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    );
    let sig = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(&sig))
}

/// A PEM file, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A 401 whose body is a bare problem (no internals) with `code`, and the
/// detail that code always has.
async fn assert_refused(app: &TestApp, case: &str, token: &str, code: &str) {
    let res = get_auth(app, "/v1/me", token).await;
    assert_eq!(res.status().as_u16(), 401, "{case}");
    let b = problem(res, 401, code).await;
    let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| ["type", "title", "status", "code", "detail"].contains(&k.as_str())),
        "{case}: {b}"
    );
    let known = [
        TokenError::Invalid,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::WrongAudience,
        TokenError::WrongPurpose,
        TokenError::UnknownKey,
    ]
    .into_iter()
    .find(|e| e.code() == code)
    .map(|e| e.to_string())
    .or_else(|| (code == "session_ended").then(|| IdentityError::SessionEnded.to_string()))
    .unwrap_or_else(|| panic!("{case}: unexpected code {code}"));
    assert_eq!(b["detail"], known, "{case}: {b}");
    let text = b.to_string();
    for leak in token.split('.').filter(|p| p.len() > 8) {
        assert!(
            !text.contains(leak),
            "{case}: the body echoes the token: {b}"
        );
    }
    println!("{case}: 401 {code}");
}

// ---------------------------------------------------------------------------
// Registration and e-mail
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_verify_by_smtp_then_login() {
    let (app, mail) = spawn_identity_app().await;
    let id = Uuid::new_v4().simple().to_string();
    let typed = format!("U-{id}@Example.COM");
    let email = format!("u-{id}@example.com");

    let created = body(register(&app, &typed, PASSWORD).await, 201).await;
    assert!(Uuid::parse_str(&s(&created["id"])).is_ok(), "{created}");
    assert_eq!(created["email"], email.as_str());
    assert_eq!(created["email_verified"], false);

    // The verification e-mail goes out over real SMTP.
    let m = mail.wait_mail(&email, SUBJECT_VERIFY).await;
    assert_eq!(m.to, vec![email.clone()]);
    assert_eq!(m.from, "no-reply@hashgrid.test");
    assert_eq!(m.subject().as_deref(), Some(SUBJECT_VERIFY));
    assert!(
        m.header("Content-Type")
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/alternative")),
        "{}",
        m.data
    );
    let lower = m.data.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/plain"), "{}", m.data);
    assert!(lower.contains("content-type: text/html"), "{}", m.data);
    assert!(m.body_contains("token="), "{}", m.decoded_body());
    assert!(m.find_token().is_some(), "{}", m.decoded_body());

    let res = login_raw(&app, &email, PASSWORD, None).await;
    problem(res, 403, "email_not_verified").await;

    let token = verify(&app, &mail, &email).await;
    let res = post(&app, "/v1/auth/verify-email", &json!({"token": token})).await;
    problem(res, 400, "invalid_or_expired_token").await;

    // The address is matched case-insensitively at login too.
    let pair = login(&app, &typed, PASSWORD).await;
    assert_eq!(pair["expires_in"], ACCESS_TTL_SECS);
    assert!(pair["expires_in"].as_i64().unwrap() <= 900);
    let me = body(me(&app, &pair["access_token"]).await, 200).await;
    assert_eq!(me["email"], email.as_str());
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["country"], "DE");
    assert_eq!(me["kyc_level"], 0);
    assert_eq!(me["totp_enabled"], false);
    assert_eq!(me["withdrawals_locked_until"], Value::Null);
    assert_eq!(mail.messages_to(&email).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_validation() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;

    let res = register(&app, &email.to_uppercase(), PASSWORD).await;
    problem(res, 409, "email_taken").await;

    let res = register(&app, &unique_email(), "Tr0ub4dor&3").await;
    validation(res, "password", Some("too_short")).await;
    let res = register(&app, &unique_email(), "password1234").await;
    validation(res, "password", Some("too_common")).await;
    let res = register(&app, "not-an-e-mail", PASSWORD).await;
    validation(res, "email", None).await;

    let with_country =
        |country: &str| json!({"email": unique_email(), "password": PASSWORD, "country": country});
    let res = post(&app, "/v1/auth/register", &with_country("XX")).await;
    validation(res, "country", None).await;
    for restricted in ["CN", "KP"] {
        let res = post(&app, "/v1/auth/register", &with_country(restricted)).await;
        problem(res, 451, "jurisdiction_restricted").await;
    }

    // Mass assignment: fields the client may not set are refused, by name.
    // (A fresh client IP for each: the register limit is 10 per IP and hour.)
    for (field, value) in [
        ("role", json!("superadmin")),
        ("kyc_level", json!(3)),
        ("balance", json!("1000")),
    ] {
        let victim = unique_email();
        let mut b = json!({"email": victim, "password": PASSWORD, "country": "DE"});
        b[field] = value;
        let res = send(
            app.client
                .post(app.url("/v1/auth/register"))
                .header("x-forwarded-for", random_ip())
                .json(&b),
        )
        .await;
        let p = problem(res, 422, "validation_failed").await;
        let e = &p["errors"][0];
        assert_eq!(e["field"], field, "{p}");
        assert!(s(&e["message"]).contains("unknown field"), "{field}: {p}");
        assert_eq!(count_users(&app, &victim).await, 0, "{field}");
        println!("mass assignment of {field}: 422 {}", e);
    }
    // No registration above created a user.
    let mut conn = app.db.conn().await.unwrap();
    let users: i64 = domain::schema::users::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

// ---------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_look_alike() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let nobody = unique_email();

    // Also warms up the dummy hash verified for unknown addresses.
    let unknown = problem(
        login_raw(&app, &nobody, PASSWORD, None).await,
        401,
        "invalid_credentials",
    )
    .await;
    let wrong = problem(
        login_raw(&app, &email, "wrong horse battery staple", None).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(unknown, wrong);

    let (mut t_unknown, mut t_wrong) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let res = login_raw(&app, &nobody, PASSWORD, None).await;
        t_unknown.push(t.elapsed());
        assert_eq!(problem(res, 401, "invalid_credentials").await, unknown);
        let t = Instant::now();
        let res = login_raw(&app, &email, "wrong horse battery staple", None).await;
        t_wrong.push(t.elapsed());
        assert_eq!(problem(res, 401, "invalid_credentials").await, unknown);
    }
    println!("login timings, unknown e-mail: {t_unknown:?}");
    println!("login timings, wrong password: {t_wrong:?}");
    let (a, b) = (median(&mut t_unknown), median(&mut t_wrong));
    println!("median unknown e-mail {a:?}, wrong password {b:?}");
    let ratio = a.max(b).as_secs_f64() / a.min(b).as_secs_f64();
    assert!(ratio <= 2.0, "medians {a:?} vs {b:?} (x{ratio:.2})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_rate_limited_per_account() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let attempt = |password: &'static str| {
        send(
            app.client
                .post(app.url("/v1/auth/login"))
                // Another address each time: only the per-account limit counts.
                .header("x-forwarded-for", random_ip())
                .json(&json!({"email": email, "password": password})),
        )
    };
    for i in 1..=10 {
        let res = attempt("wrong horse battery staple").await;
        assert_eq!(res.status().as_u16(), 401, "attempt {i}");
        problem(res, 401, "invalid_credentials").await;
    }
    let res = attempt("wrong horse battery staple").await;
    let retry_after: u64 = header(&res, "retry-after").parse().unwrap();
    let limit = header(&res, "ratelimit-limit");
    println!("11th attempt: 429, Retry-After {retry_after}, RateLimit-Limit {limit}");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(limit, "10");
    assert_eq!(header(&res, "ratelimit-remaining"), "0");
    problem(res, 429, "rate_limited").await;
    // The right password does not get through the limit either.
    let res = attempt(PASSWORD).await;
    problem(res, 429, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_login_fails_closed_reads_work() {
    let (app, _mail) =
        spawn_identity_app_with(&random_ip(), &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let res = login_raw(&app, &unique_email(), PASSWORD, None).await;
    problem(res, 503, "rate_limiter_unavailable").await;
    let res = register(&app, &unique_email(), PASSWORD).await;
    problem(res, 503, "rate_limiter_unavailable").await;
    let res = post(
        &app,
        "/v1/auth/login/2fa",
        &json!({"mfa_token": "x", "code": "123456"}),
    )
    .await;
    problem(res, 503, "rate_limiter_unavailable").await;
    let res = post(
        &app,
        "/v1/auth/password-reset",
        &json!({"email": unique_email()}),
    )
    .await;
    problem(res, 503, "rate_limiter_unavailable").await;
    // Reads still work.
    let assets = body(send(app.client.get(app.url("/v1/assets"))).await, 200).await;
    assert!(!assets["items"].as_array().unwrap().is_empty());
    // Refresh fails open: the token itself is checked.
    let res = refresh(&app, &json!("not-a-refresh-token")).await;
    problem(res, 401, "invalid_refresh_token").await;
}

// ---------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------

#[test]
fn forging_helpers_are_correct() {
    // RFC 4231 test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // RFC 4231 test case 6: a key longer than the block.
    let mac = hmac_sha256(
        &[0xaa; 131],
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
        assert_eq!(b64url_decode(&b64url(data)), data);
    }
    assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misused_tokens_are_refused() {
    // The app signs with a key this test holds, so it can mint tokens whose
    // only fault is the one under test.
    let pem = generate_private_pem().unwrap();
    let ring = KeyRing::from_pems(std::slice::from_ref(&pem)).unwrap();
    let kid = ring.current_kid().to_owned();
    let key_file = TempFile(std::env::temp_dir().join(format!(
        "hashgrid-identity-test-{}.pem",
        Uuid::new_v4().simple()
    )));
    std::fs::write(&key_file.0, &pem).unwrap();
    let key_path = key_file.0.to_str().unwrap().to_owned();
    let (app, _mail) =
        spawn_identity_app_with(&random_ip(), &[("HASHGRID_JWT_KEYS", &key_path)]).await;

    // The JWKS lists that key, public parts only.
    let jwks = body(
        send(app.client.get(app.url("/.well-known/jwks.json"))).await,
        200,
    )
    .await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let jwk = &keys[0];
    assert_eq!(jwk["kid"], kid.as_str(), "{jwks}");
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    assert!(jwk.get("d").is_none(), "private key in the JWKS: {jwks}");
    let x = s(&jwk["x"]);
    assert_eq!(b64url_decode(&x).len(), 32);

    let email = customer(&app).await;
    let pair = login(&app, &email, PASSWORD).await;
    let access = s(&pair["access_token"]);
    let (h, real) = jwt_parts(&access);
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["kid"], kid.as_str());
    assert_eq!(real["aud"], "hashgrid:customer");
    assert_eq!(real["purpose"], "access");
    assert!(real["exp"].as_i64().unwrap() - real["iat"].as_i64().unwrap() <= 900);
    let claims: Claims = serde_json::from_value(real.clone()).unwrap();

    // Controls: the real token, and one minted with the same claims by our ring.
    body(get_auth(&app, "/v1/me", &access).await, 200).await;
    let minted = ring
        .sign(&Claims {
            jti: Uuid::new_v4().to_string(),
            ..claims.clone()
        })
        .unwrap();
    body(get_auth(&app, "/v1/me", &minted).await, 200).await;

    let real_claims = serde_json::to_value(&claims).unwrap();
    let none = forge(
        &json!({"alg": "none", "typ": "JWT", "kid": kid}),
        &real_claims,
        |_| Vec::new(),
    );
    assert_refused(&app, "alg none", &none, "invalid_token").await;
    let none_upper = forge(
        &json!({"alg": "None", "typ": "JWT", "kid": kid}),
        &real_claims,
        |_| Vec::new(),
    );
    assert_refused(&app, "alg None", &none_upper, "invalid_token").await;

    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let hs_text = forge(&hs_header, &real_claims, |m| hmac_sha256(x.as_bytes(), m));
    assert_refused(
        &app,
        "HS256 keyed with x as text",
        &hs_text,
        "invalid_token",
    )
    .await;
    let raw = b64url_decode(&x);
    let hs_raw = forge(&hs_header, &real_claims, |m| hmac_sha256(&raw, m));
    assert_refused(&app, "HS256 keyed with x decoded", &hs_raw, "invalid_token").await;

    let now = Utc::now().timestamp();
    let expired = ring
        .sign(&Claims {
            iat: now - 1200,
            nbf: now - 1200,
            exp: now - 600,
            ..claims.clone()
        })
        .unwrap();
    assert_refused(&app, "expired", &expired, "token_expired").await;
    let future = ring
        .sign(&Claims {
            iat: now,
            nbf: now + 600,
            exp: now + 1200,
            ..claims.clone()
        })
        .unwrap();
    assert_refused(&app, "nbf in the future", &future, "token_not_yet_valid").await;
    let admin_aud = ring
        .sign(&Claims {
            aud: Audience::Admin.aud().to_owned(),
            ..claims.clone()
        })
        .unwrap();
    assert_refused(
        &app,
        "aud hashgrid:admin (minted)",
        &admin_aud,
        "wrong_audience",
    )
    .await;
    let mfa = ring
        .sign(&Claims {
            purpose: Purpose::Mfa,
            exp: now + MFA_TTL_SECS,
            ..claims.clone()
        })
        .unwrap();
    assert_refused(&app, "mfa purpose (minted)", &mfa, "wrong_token_purpose").await;
    let other_iss = ring
        .sign(&Claims {
            iss: "someone-else".to_owned(),
            ..claims.clone()
        })
        .unwrap();
    assert_refused(&app, "another issuer", &other_iss, "invalid_token").await;

    // A real staff token (the audience is checked before anything else).
    let config = api::config::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(app.db.url().to_owned()),
        "HASHGRID_JWT_KEYS" => Some(key_path.clone()),
        _ => None,
    })
    .unwrap();
    let identity = api::identity::build(&config, false).unwrap();
    let staff_email = unique_email();
    let (_, one_time) = {
        let mut conn = app.db.conn().await.unwrap();
        identity
            .create_staff(&mut conn, &staff_email, Role::Support, "system", "")
            .await
            .unwrap()
    };
    let staff = body(
        post(
            &app,
            "/admin/v1/auth/login",
            &json!({"email": staff_email, "password": one_time}),
        )
        .await,
        200,
    )
    .await;
    let staff_access = s(&staff["access_token"]);
    assert_eq!(jwt_parts(&staff_access).1["aud"], "hashgrid:admin");
    assert_refused(&app, "real staff token", &staff_access, "wrong_audience").await;

    assert_refused(
        &app,
        "refresh token as bearer",
        &s(&pair["refresh_token"]),
        "invalid_token",
    )
    .await;

    // Signed by a key the app does not know.
    let stranger = KeyRing::from_pems(&[generate_private_pem().unwrap()]).unwrap();
    let foreign = stranger.sign(&claims).unwrap();
    assert_refused(&app, "unknown kid", &foreign, "unknown_key").await;
    // The foreign key under our kid.
    let mut parts: Vec<String> = foreign.split('.').map(str::to_owned).collect();
    let mut fh = jwt_parts(&foreign).0;
    fh["kid"] = json!(kid);
    parts[0] = b64url(&serde_json::to_vec(&fh).unwrap());
    assert_refused(
        &app,
        "foreign key, our kid",
        &parts.join("."),
        "invalid_token",
    )
    .await;

    // Tampered payloads keep the real signature.
    for (field, value) in [
        ("sub", json!(Uuid::new_v4().to_string())),
        ("exp", json!(now + 86_400)),
    ] {
        let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
        let mut c = real.clone();
        c[field] = value;
        parts[1] = b64url(&serde_json::to_vec(&c).unwrap());
        let case = format!("tampered {field}");
        assert_refused(&app, &case, &parts.join("."), "invalid_token").await;
    }

    // Other junk.
    assert_refused(&app, "garbage", "not.a.token", "invalid_token").await;
    let res = send(app.client.get(app.url("/v1/me"))).await;
    problem(res, 401, "unauthorized").await;
    let res = send(
        app.client
            .get(app.url("/v1/me"))
            .header("authorization", format!("Basic {access}")),
    )
    .await;
    problem(res, 401, "unauthorized").await;

    // The real token still works: nothing above disturbed the session.
    body(get_auth(&app, "/v1/me", &access).await, 200).await;
}

// ---------------------------------------------------------------------------
// Refresh, logout, password change
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let first = login(&app, &email, PASSWORD).await;

    let second = body(refresh(&app, &first["refresh_token"]).await, 200).await;
    assert_token_pair(&second);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    body(me(&app, &second["access_token"]).await, 200).await;

    let res = refresh(&app, &first["refresh_token"]).await;
    problem(res, 401, "refresh_token_reused").await;
    let res = refresh(&app, &second["refresh_token"]).await;
    problem(res, 401, "session_ended").await;
    problem(
        me(&app, &second["access_token"]).await,
        401,
        "session_ended",
    )
    .await;
    problem(me(&app, &first["access_token"]).await, 401, "session_ended").await;

    let res = refresh(&app, &json!("never-issued-token")).await;
    problem(res, 401, "invalid_refresh_token").await;

    // Another login is another family, unaffected.
    let other = login(&app, &email, PASSWORD).await;
    body(refresh(&app, &other["refresh_token"]).await, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_one_wins() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    for round in 1..=5 {
        let pair = login(&app, &email, PASSWORD).await;
        let (a, b) = tokio::join!(
            refresh(&app, &pair["refresh_token"]),
            refresh(&app, &pair["refresh_token"])
        );
        let (sa, sb) = (a.status().as_u16(), b.status().as_u16());
        println!("round {round}: {sa} / {sb}");
        let (winner, loser) = match (sa, sb) {
            (200, 401) => (a, b),
            (401, 200) => (b, a),
            _ => panic!(
                "round {round}: want one 200 and one 401, got {sa} {}, {sb} {}",
                a.text().await.unwrap(),
                b.text().await.unwrap()
            ),
        };
        let won = body(winner, 200).await;
        assert_token_pair(&won);
        problem(loser, 401, "refresh_token_reused").await;
        // A reuse revokes the session (documented): the winner's tokens die too.
        let res = refresh(&app, &won["refresh_token"]).await;
        problem(res, 401, "session_ended").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_logout_all_and_password_change_end_sessions() {
    let (app, mail) = spawn_identity_app().await;
    let email = customer(&app).await;

    let one = login(&app, &email, PASSWORD).await;
    let res = post_auth(
        &app,
        "/v1/auth/logout",
        &s(&one["access_token"]),
        &json!({}),
    )
    .await;
    body(res, 204).await;
    problem(
        refresh(&app, &one["refresh_token"]).await,
        401,
        "session_ended",
    )
    .await;
    problem(me(&app, &one["access_token"]).await, 401, "session_ended").await;

    let (a, b) = (
        login(&app, &email, PASSWORD).await,
        login(&app, &email, PASSWORD).await,
    );
    let res = post_auth(
        &app,
        "/v1/auth/logout-all",
        &s(&a["access_token"]),
        &json!({}),
    )
    .await;
    body(res, 204).await;
    for (name, pair) in [("a", &a), ("b", &b)] {
        let res = refresh(&app, &pair["refresh_token"]).await;
        assert_eq!(res.status().as_u16(), 401, "{name}");
        problem(res, 401, "session_ended").await;
        problem(me(&app, &pair["access_token"]).await, 401, "session_ended").await;
    }

    let (c, d) = (
        login(&app, &email, PASSWORD).await,
        login(&app, &email, PASSWORD).await,
    );
    let at = s(&c["access_token"]);
    let res = post_auth(
        &app,
        "/v1/me/password",
        &at,
        &json!({"current_password": "wrong horse battery staple", "new_password": NEW_PASSWORD}),
    )
    .await;
    validation(res, "current_password", Some("wrong_password")).await;
    let res = post_auth(
        &app,
        "/v1/me/password",
        &at,
        &json!({"current_password": PASSWORD, "new_password": "password1234"}),
    )
    .await;
    validation(res, "new_password", Some("too_common")).await;
    body(me(&app, &c["access_token"]).await, 200).await;
    let res = post_auth(
        &app,
        "/v1/me/password",
        &at,
        &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    body(res, 204).await;
    for pair in [&c, &d] {
        problem(
            refresh(&app, &pair["refresh_token"]).await,
            401,
            "session_ended",
        )
        .await;
        problem(me(&app, &pair["access_token"]).await, 401, "session_ended").await;
    }
    let res = login_raw(&app, &email, PASSWORD, None).await;
    problem(res, 401, "invalid_credentials").await;
    let fresh = login(&app, &email, NEW_PASSWORD).await;
    let me = body(me(&app, &fresh["access_token"]).await, 200).await;
    assert_locked_for_a_day(&me);
    mail.wait_mail(&email, SUBJECT_PASSWORD_CHANGED).await;
}

// ---------------------------------------------------------------------------
// 2FA
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_enrol_login_recovery_and_disable() {
    let (app, mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let pair = login(&app, &email, PASSWORD).await;
    let (mut auth, recovery) = enable_2fa(&app, &pair["access_token"]).await;
    let me_now = body(me(&app, &pair["access_token"]).await, 200).await;
    assert_eq!(me_now["totp_enabled"], true);
    mail.wait_mail(&email, SUBJECT_2FA_ON).await;

    // Password step, then the code.
    let step1 = body(login_raw(&app, &email, PASSWORD, None).await, 200).await;
    assert_eq!(step1["mfa_required"], true, "{step1}");
    assert!(step1.get("access_token").is_none(), "{step1}");
    let expires_in = step1["expires_in"].as_i64().unwrap();
    assert!((1..=MFA_TTL_SECS).contains(&expires_in), "{step1}");
    let code = auth.next_code().await;
    let tokens = body(
        post(
            &app,
            "/v1/auth/login/2fa",
            &json!({"mfa_token": step1["mfa_token"], "code": code}),
        )
        .await,
        200,
    )
    .await;
    assert_token_pair(&tokens);
    body(me(&app, &tokens["access_token"]).await, 200).await;

    // The same code with another login's mfa token: used once already.
    let step1b = body(login_raw(&app, &email, PASSWORD, None).await, 200).await;
    let res = post(
        &app,
        "/v1/auth/login/2fa",
        &json!({"mfa_token": step1b["mfa_token"], "code": code}),
    )
    .await;
    problem(res, 401, "invalid_second_factor").await;

    // One step: the code with the password (the next step's code, accepted
    // within the ±1 step window).
    let next = auth.next_code().await;
    let one_step = body(login_raw(&app, &email, PASSWORD, Some(&next)).await, 200).await;
    assert_token_pair(&one_step);

    // A recovery code works once (typed in upper case, dashes as spaces).
    let typed = recovery[0].to_uppercase().replace('-', " ");
    let res = login_raw(&app, &email, PASSWORD, Some(&typed)).await;
    assert_token_pair(&body(res, 200).await);
    let res = login_raw(&app, &email, PASSWORD, Some(&recovery[0])).await;
    problem(res, 401, "invalid_second_factor").await;

    // The mfa token is no access token.
    let mfa_token = s(&step1b["mfa_token"]);
    assert_eq!(jwt_parts(&mfa_token).1["purpose"], "mfa");
    assert_refused(&app, "real mfa token", &mfa_token, "wrong_token_purpose").await;

    // Disabling needs a valid code.
    let at = s(&one_step["access_token"]);
    let res = send(
        app.client
            .delete(app.url("/v1/me/2fa"))
            .bearer_auth(&at)
            .json(&json!({"code": auth.wrong_code()})),
    )
    .await;
    problem(res, 401, "invalid_second_factor").await;
    let res = send(
        app.client
            .delete(app.url("/v1/me/2fa"))
            .bearer_auth(&at)
            .json(&json!({"code": recovery[1]})),
    )
    .await;
    body(res, 204).await;

    // One step again.
    let plain = login(&app, &email, PASSWORD).await;
    let me_after = body(me(&app, &plain["access_token"]).await, 200).await;
    assert_eq!(me_after["totp_enabled"], false);
    assert_locked_for_a_day(&me_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_totp_code_sent_twice_at_once_works_once() {
    let (app, _mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let pair = login(&app, &email, PASSWORD).await;
    let (mut auth, _) = enable_2fa(&app, &pair["access_token"]).await;

    // Two logins' mfa tokens, one code, sent together.
    let t1 = body(login_raw(&app, &email, PASSWORD, None).await, 200).await;
    let t2 = body(login_raw(&app, &email, PASSWORD, None).await, 200).await;
    let code = auth.next_code().await;
    let first = json!({"mfa_token": t1["mfa_token"], "code": code});
    let second = json!({"mfa_token": t2["mfa_token"], "code": code});
    let (a, b) = tokio::join!(
        post(&app, "/v1/auth/login/2fa", &first),
        post(&app, "/v1/auth/login/2fa", &second)
    );
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    println!("second step, same code twice at once: {statuses:?}");
    let (ok, refused) = if statuses == [200, 401] {
        (a, b)
    } else {
        assert_eq!(statuses, [401, 200], "want exactly one 200");
        (b, a)
    };
    assert_token_pair(&body(ok, 200).await);
    problem(refused, 401, "invalid_second_factor").await;

    // And in one step (password and code together).
    let code = auth.next_code().await;
    let (a, b) = tokio::join!(
        login_raw(&app, &email, PASSWORD, Some(&code)),
        login_raw(&app, &email, PASSWORD, Some(&code))
    );
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    println!("one-step login, same code twice at once: {statuses:?}");
    let (ok, refused) = if statuses == [200, 401] {
        (a, b)
    } else {
        assert_eq!(statuses, [401, 200], "want exactly one 200");
        (b, a)
    };
    assert_token_pair(&body(ok, 200).await);
    problem(refused, 401, "invalid_second_factor").await;
}

// ---------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_reset_by_e_mail() {
    let (app, mail) = spawn_identity_app().await;
    let email = customer(&app).await;
    let before = [
        login(&app, &email, PASSWORD).await,
        login(&app, &email, PASSWORD).await,
    ];

    let nobody = unique_email();
    let res = post(&app, "/v1/auth/password-reset", &json!({"email": nobody})).await;
    assert_eq!(body(res, 202).await, Value::Null);
    let res = post(
        &app,
        "/v1/auth/password-reset",
        &json!({"email": email.to_uppercase()}),
    )
    .await;
    assert_eq!(body(res, 202).await, Value::Null);
    let token = mail.token(&email, SUBJECT_RESET).await;
    assert_eq!(count_emails(&app, &nobody).await, 0);
    assert!(mail.messages_to(&nobody).is_empty());

    let confirm = async |new_password: &str| {
        let b = json!({"token": token, "new_password": new_password});
        post(&app, "/v1/auth/password-reset/confirm", &b).await
    };
    validation(
        confirm("password1234").await,
        "new_password",
        Some("too_common"),
    )
    .await;
    // The weak attempt did not spend the token.
    body(confirm(NEW_PASSWORD).await, 204).await;
    problem(confirm(NEW_PASSWORD).await, 400, "invalid_or_expired_token").await;

    let res = login_raw(&app, &email, PASSWORD, None).await;
    problem(res, 401, "invalid_credentials").await;
    for pair in &before {
        problem(
            refresh(&app, &pair["refresh_token"]).await,
            401,
            "session_ended",
        )
        .await;
        problem(me(&app, &pair["access_token"]).await, 401, "session_ended").await;
    }
    let fresh = login(&app, &email, NEW_PASSWORD).await;
    let me = body(me(&app, &fresh["access_token"]).await, 200).await;
    assert_locked_for_a_day(&me);
    let notice = mail.wait_mail(&email, SUBJECT_PASSWORD_CHANGED).await;
    assert!(notice.find_token().is_none(), "{}", notice.decoded_body());
    assert_eq!(count_emails(&app, &nobody).await, 0);
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_list_and_revoke() {
    let ip = random_ip();
    let (app, _mail) = spawn_identity_app_with(&ip, &[]).await;
    let email = customer(&app).await;
    let login_as = |device: &'static str| {
        send(
            app.client
                .post(app.url("/v1/auth/login"))
                .header("user-agent", device)
                .json(&json!({"email": email, "password": PASSWORD})),
        )
    };
    let laptop = body(login_as("Laptop/1.0").await, 200).await;
    let phone = body(login_as("Phone/2.0").await, 200).await;
    let at = s(&laptop["access_token"]);

    let list = body(get_auth(&app, "/v1/me/sessions", &at).await, 200).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        assert!(Uuid::parse_str(&s(&item["id"])).is_ok(), "{item}");
        assert_eq!(item["ip"], ip.as_str(), "{item}");
        let created: DateTime<Utc> = s(&item["created_at"]).parse().unwrap();
        let used: DateTime<Utc> = s(&item["last_used_at"]).parse().unwrap();
        assert!(used >= created, "{item}");
        assert!((Utc::now() - created).num_seconds() < 60, "{item}");
    }
    let find = |device: &str| {
        items
            .iter()
            .find(|i| i["device"] == device)
            .unwrap_or_else(|| panic!("no {device} session: {list}"))
            .clone()
    };
    let (mine, other) = (find("Laptop/1.0"), find("Phone/2.0"));
    assert_eq!(mine["current"], true);
    assert_eq!(other["current"], false);
    assert_eq!(
        jwt_parts(&at).1["sid"],
        mine["id"],
        "the access token names its session"
    );

    let res = delete_auth(&app, &format!("/v1/me/sessions/{}", s(&other["id"])), &at).await;
    body(res, 204).await;
    problem(
        refresh(&app, &phone["refresh_token"]).await,
        401,
        "session_ended",
    )
    .await;
    problem(me(&app, &phone["access_token"]).await, 401, "session_ended").await;
    let list = body(get_auth(&app, "/v1/me/sessions", &at).await, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    let res = delete_auth(&app, &format!("/v1/me/sessions/{}", Uuid::new_v4()), &at).await;
    problem(res, 404, "not_found").await;

    // Another customer's session is not found, not forbidden, and survives.
    let stranger = customer(&app).await;
    let theirs = login(&app, &stranger, PASSWORD).await;
    let their_sid = s(&jwt_parts(&s(&theirs["access_token"])).1["sid"]);
    let res = delete_auth(&app, &format!("/v1/me/sessions/{their_sid}"), &at).await;
    problem(res, 404, "not_found").await;
    body(me(&app, &theirs["access_token"]).await, 200).await;
    body(refresh(&app, &theirs["refresh_token"]).await, 200).await;
    // Mine still works.
    body(me(&app, &laptop["access_token"]).await, 200).await;
}
