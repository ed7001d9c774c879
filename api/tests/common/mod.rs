//! Shared harness for the HTTP tests: a real server on a random port, backed
//! by a fresh database, and a client that does not follow redirects.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use api::app::Extra;
use api::config::Config;
use api::state::AppState;
use serde_json::Value;
use testkit::TestDb;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A running server. The database lives as long as the value; dropping it
/// stops the server.
pub struct TestApp {
    pub base_url: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    server: ServerHandle,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the server task finishes it (or is
        // dropped with the test's runtime, which stops it as well).
        drop(self.server.stop(false));
    }
}

/// A server with the default test configuration and `extra` routes.
pub async fn spawn_app(extra: Extra) -> TestApp {
    spawn_app_with(extra, &[]).await
}

/// A server whose configuration is the default test one with `overrides`.
pub async fn spawn_app_with(extra: Extra, overrides: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new().await.expect("creating the test database");
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".to_owned(), db.url().to_owned()),
        ("REDIS_URL".to_owned(), testkit::redis_url()),
        ("BIND_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("HASHGRID_BODY_LIMIT".to_owned(), "4096".to_owned()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration");
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a random port");
    let addr = listener.local_addr().expect("local address");
    let state = AppState::new(config, db.pool()).expect("application state");
    let server = api::app::serve(state, listener, extra).expect("starting the server");
    let handle = server.handle();
    tokio::spawn(server);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    TestApp {
        base_url: format!("http://{addr}"),
        db,
        client,
        server: handle,
    }
}

/// The value of header `name`, which must be present and ASCII.
pub fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {res:?}"))
        .to_str()
        .unwrap_or_else(|e| panic!("{name} is not ASCII: {e}"))
        .to_owned()
}

/// The response's `x-request-id`, which every response must carry.
pub fn request_id(res: &reqwest::Response) -> String {
    header(res, "x-request-id")
}

/// Asserts `res` is a problem+json document with `status` and `code` (and
/// the matching `status` and `type` members); returns the document.
pub async fn problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    let content_type = header(&res, "content-type");
    request_id(&res);
    let text = res.text().await.expect("reading the body");
    assert_eq!(got, status, "status; body: {text}");
    assert_eq!(content_type, PROBLEM_JSON, "content type; body: {text}");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["code"], code, "code; body: {body}");
    assert_eq!(body["status"], status, "status member; body: {body}");
    assert_eq!(
        body["type"],
        format!("/problems/{code}"),
        "type; body: {body}"
    );
    assert!(body["title"].is_string(), "title; body: {body}");
    body
}

/// Asserts a 422 `validation_failed` whose first error is `field` with
/// `code` (when given); returns the document.
pub async fn validation(res: reqwest::Response, field: &str, code: Option<&str>) -> Value {
    let body = problem(res, 422, "validation_failed").await;
    let first = &body["errors"][0];
    assert_eq!(first["field"], field, "field; body: {body}");
    if let Some(code) = code {
        assert_eq!(first["code"], code, "field code; body: {body}");
    }
    assert!(
        first["message"].as_str().is_some_and(|m| !m.is_empty()),
        "field message; body: {body}"
    );
    body
}

// ---------------------------------------------------------------------------
// Back office and partner helpers (admin.rs, partner.rs). Each test gives
// its clients their own address with `X-Forwarded-For` (the server trusts
// it with [`TRUST_PROXY`]), so per-IP limits in the shared Redis do not
// collide across parallel tests.
// ---------------------------------------------------------------------------

/// Overrides for a server that takes the client address from `X-Forwarded-For`.
#[allow(dead_code)]
pub const TRUST_PROXY: &[(&str, &str)] = &[("HASHGRID_TRUST_PROXY", "1")];

/// The password of every account made by [`insert_user`].
#[allow(dead_code)]
pub const USER_PASSWORD: &str = "Quartz-lantern-meadow-91";

/// A random `10.a.b.c` address (only ever sent as a header).
#[allow(dead_code)]
pub fn random_ip() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("10.{}.{}.{}", b[0], b[1], b[2].max(1))
}

/// A client like [`TestApp::client`] that sends `X-Forwarded-For: ip`.
#[allow(dead_code)]
pub fn client_from(ip: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_str(ip).expect("an address"),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// An e-mail address no other test uses.
#[allow(dead_code)]
pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// Inserts an active, verified account with [`USER_PASSWORD`] straight into
/// the app's database: staff with `role`, or a customer when `None`.
#[allow(dead_code)]
pub async fn insert_user(
    app: &TestApp,
    email: &str,
    role: Option<domain::identity::roles::Role>,
) -> uuid::Uuid {
    use domain::identity::store;
    let hash = domain::identity::password::PasswordHasher::default_params()
        .hash(USER_PASSWORD)
        .await
        .expect("hashing the password");
    let mut conn = app.db.conn().await.expect("a database connection");
    store::insert_user(
        &mut conn,
        &store::NewUser {
            id: uuid::Uuid::now_v7(),
            email,
            password_hash: &hash,
            country: if role.is_some() { "ZZ" } else { "DE" },
            role: role.map(domain::identity::roles::Role::as_str),
            partner_id: None,
            email_verified_at: Some(chrono::Utc::now()),
            must_change_password: false,
        },
    )
    .await
    .expect("inserting the user")
    .id
}

/// Sends `body` as JSON with an optional bearer token; answers the status
/// and the body (JSON, or null when empty).
#[allow(dead_code)]
pub async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = client.request(method.clone(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = res.status().as_u16();
    let text = res.text().await.expect("reading the body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
    };
    (status, value)
}

/// Logs in at `path` (`/v1/auth/login` or `/admin/v1/auth/login`) without
/// 2FA; answers the token pair.
#[allow(dead_code)]
pub async fn login(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    email: &str,
    password: &str,
) -> Value {
    let (status, body) = call(
        app,
        client,
        "POST",
        path,
        None,
        Some(&serde_json::json!({ "email": email, "password": password })),
    )
    .await;
    assert_eq!(status, 200, "login of {email}: {body}");
    assert!(body["access_token"].is_string(), "login of {email}: {body}");
    body
}

/// A staff member logged in with 2FA on and a fresh step-up.
#[allow(dead_code)]
pub struct StaffMember {
    pub id: uuid::Uuid,
    pub email: String,
    /// The access token of the login (no step-up).
    pub token: String,
    pub refresh_token: String,
    /// An access token of the same session that carries a fresh step-up.
    pub step_up: String,
    pub totp_secret: Vec<u8>,
}

impl StaffMember {
    #[allow(dead_code)]
    pub fn actor(&self) -> String {
        format!("user:{}", self.id)
    }
}

#[allow(dead_code)]
fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// A new staff member with `role`: inserted, logged in, 2FA enrolled and
/// confirmed, and stepped up (with the code of the next 30 s step, since
/// each step is accepted once and one step either side is allowed).
#[allow(dead_code)]
pub async fn staff_member(
    app: &TestApp,
    client: &reqwest::Client,
    role: domain::identity::roles::Role,
) -> StaffMember {
    use domain::identity::totp::current_code;
    let email = unique_email(role.as_str());
    let id = insert_user(app, &email, Some(role)).await;
    let pair = login(app, client, "/admin/v1/auth/login", &email, USER_PASSWORD).await;
    let token = pair["access_token"].as_str().expect("a token").to_owned();
    let (status, enrolment) =
        call(app, client, "POST", "/admin/v1/me/2fa", Some(&token), None).await;
    assert_eq!(status, 201, "2FA enrolment: {enrolment}");
    let secret = totp_rs::Secret::try_from_base32(enrolment["secret"].as_str().expect("a secret"))
        .expect("a base32 secret")
        .as_bytes()
        .to_vec();
    let now = unix_secs();
    let (status, body) = call(
        app,
        client,
        "POST",
        "/admin/v1/me/2fa/confirm",
        Some(&token),
        Some(&serde_json::json!({ "code": current_code(&secret, now) })),
    )
    .await;
    assert_eq!(status, 200, "2FA confirmation: {body}");
    let (status, body) = call(
        app,
        client,
        "POST",
        "/admin/v1/auth/step-up",
        Some(&token),
        Some(&serde_json::json!({ "code": current_code(&secret, now + 30) })),
    )
    .await;
    assert_eq!(status, 200, "step-up: {body}");
    StaffMember {
        id,
        email,
        token,
        refresh_token: pair["refresh_token"]
            .as_str()
            .expect("a refresh token")
            .to_owned(),
        step_up: body["access_token"]
            .as_str()
            .expect("a step-up token")
            .to_owned(),
        totp_secret: secret,
    }
}

/// A staff access token with `role` and a fresh step-up.
#[allow(dead_code)]
pub async fn staff(
    app: &TestApp,
    client: &reqwest::Client,
    role: domain::identity::roles::Role,
) -> String {
    staff_member(app, client, role).await.step_up
}

/// A new verified customer, logged in: its id, e-mail and access token.
#[allow(dead_code)]
pub async fn customer(app: &TestApp, client: &reqwest::Client) -> (uuid::Uuid, String, String) {
    let email = unique_email("customer");
    let id = insert_user(app, &email, None).await;
    let pair = login(app, client, "/v1/auth/login", &email, USER_PASSWORD).await;
    let token = pair["access_token"].as_str().expect("a token").to_owned();
    (id, email, token)
}

/// A partner API key and the secret it signs with.
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub struct PartnerKey {
    pub partner_id: uuid::Uuid,
    pub id: String,
    pub secret: String,
}

/// A new partner organisation, created by a superadmin's step-up token.
#[allow(dead_code)]
pub async fn create_partner(app: &TestApp, client: &reqwest::Client, step_up: &str) -> uuid::Uuid {
    let name = format!("Partner {}", uuid::Uuid::new_v4().simple());
    let (status, body) = call(
        app,
        client,
        "POST",
        "/admin/v1/partners",
        Some(step_up),
        Some(&serde_json::json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "creating a partner: {body}");
    body["id"].as_str().expect("an id").parse().expect("a uuid")
}

/// A new key of `partner_id` with `scopes` and an IP allow-list.
#[allow(dead_code)]
pub async fn create_partner_key(
    app: &TestApp,
    client: &reqwest::Client,
    step_up: &str,
    partner_id: uuid::Uuid,
    scopes: &[&str],
    ip_allowlist: &[&str],
) -> PartnerKey {
    let (status, body) = call(
        app,
        client,
        "POST",
        &format!("/admin/v1/partners/{partner_id}/keys"),
        Some(step_up),
        Some(&serde_json::json!({ "scopes": scopes, "ip_allowlist": ip_allowlist })),
    )
    .await;
    assert_eq!(status, 201, "creating a partner key: {body}");
    PartnerKey {
        partner_id,
        id: body["key"]["id"].as_str().expect("a key id").to_owned(),
        secret: body["secret"].as_str().expect("a secret").to_owned(),
    }
}

/// A fresh nonce: 32 characters of `[0-9a-f]`.
#[allow(dead_code)]
pub fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The four signature headers of a request (`path_and_query` as sent)
/// signed with `key` at `timestamp` with `nonce`.
#[allow(dead_code)]
pub fn signature_headers(
    key: &PartnerKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> reqwest::header::HeaderMap {
    use domain::identity::partner_sig::{
        self, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let canonical = partner_sig::canonical_request(method, path, query, timestamp, nonce, body);
    let signature = partner_sig::sign(key.secret.as_bytes(), &canonical);
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in [
        (HEADER_KEY, key.id.clone()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_NONCE, nonce.to_owned()),
        (HEADER_SIGNATURE, signature),
    ] {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            reqwest::header::HeaderValue::from_str(&value).expect("a header value"),
        );
    }
    headers
}

/// Sends a request signed with `key` now, with a fresh nonce.
#[allow(dead_code)]
pub async fn send_signed(
    app: &TestApp,
    client: &reqwest::Client,
    key: &PartnerKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> reqwest::Response {
    let timestamp = i64::try_from(unix_secs()).expect("a timestamp");
    let headers = signature_headers(key, method, path_and_query, body, timestamp, &new_nonce());
    client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("a method"),
            app.url(path_and_query),
        )
        .headers(headers)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"))
}

/// The token in the link of the newest e-mail of `template` to `to`.
#[allow(dead_code)]
pub async fn mailed_token(app: &TestApp, to: &str, template: &str) -> String {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use domain::schema::emails;
    let mut conn = app.db.conn().await.expect("a database connection");
    let bodies: Vec<String> = emails::table
        .filter(emails::to_address.eq(to))
        .filter(emails::template.eq(template))
        .order(emails::created_at.desc())
        .select(emails::text_body)
        .load(&mut conn)
        .await
        .expect("reading the e-mails");
    let body = bodies.as_slice().first().expect("an e-mail");
    let at = body.find("token=").expect("a link with a token") + "token=".len();
    body[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}
