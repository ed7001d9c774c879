//! The signed partner API over real HTTP: what a valid key may do, every
//! refusal of `PartnerCall` with its code, and the reference signing script
//! (`scripts/partner-sign.sh`) against the running server.
//!
//! The signature is compared in constant time (`Mac::verify_slice`); that
//! is not testable by timing here and is left to the unit tests' review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    PartnerKey, TRUST_PROXY, TestApp, call, client_from, create_partner, create_partner_key,
    new_nonce, problem, random_ip, send_signed, signature_headers, spawn_app_with, staff,
    unique_email,
};
use diesel_async::SimpleAsyncConnection;
use domain::identity::partner_sig::{
    self, HEADER_KEY, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use domain::identity::roles::Role;
use serde_json::{Value, json};
use uuid::Uuid;

/// A server, a client with its own address, and a superadmin's step-up token.
struct Setup {
    app: TestApp,
    client: reqwest::Client,
    admin: String,
}

async fn setup() -> Setup {
    let app = spawn_app_with(|_| {}, TRUST_PROXY).await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;
    Setup { app, client, admin }
}

impl Setup {
    async fn partner_key(&self, scopes: &[&str], ip_allowlist: &[&str]) -> PartnerKey {
        let partner = create_partner(&self.app, &self.client, &self.admin).await;
        self.key_of(partner, scopes, ip_allowlist).await
    }

    async fn key_of(&self, partner: Uuid, scopes: &[&str], ip_allowlist: &[&str]) -> PartnerKey {
        create_partner_key(
            &self.app,
            &self.client,
            &self.admin,
            partner,
            scopes,
            ip_allowlist,
        )
        .await
    }

    /// Sends with explicit signature headers (`headers` as signed or not).
    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: reqwest::header::HeaderMap,
        body: &[u8],
    ) -> reqwest::Response {
        self.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                self.app.url(path_and_query),
            )
            .headers(headers)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn signed(
        &self,
        key: &PartnerKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> reqwest::Response {
        send_signed(&self.app, &self.client, key, method, path_and_query, body).await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Waits until just after a whole second and answers it, so that a request
/// sent at once is checked by the server within the same second: the skew
/// it computes is exactly the one the test chose.
async fn start_of_second() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let wait =
        Duration::from_millis(1020) - Duration::from_millis(u64::from(since.subsec_millis()));
    tokio::time::sleep(wait).await;
    now()
}

async fn json_of(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// 7. What a valid key does
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_partner_manages_its_own_customers_and_never_sees_another_partners() {
    let s = setup().await;
    let a = s.partner_key(&["read", "trade"], &[]).await;
    let b = s.partner_key(&["read"], &[]).await;

    let list = json_of(s.signed(&a, "GET", "/partner/v1/customers", b"").await, 200).await;
    assert_eq!(list["items"], json!([]), "{list}");

    let email = unique_email("sub");
    let body = serde_json::to_vec(&json!({ "email": email, "country": "DE" })).unwrap();
    let created = json_of(
        s.signed(&a, "POST", "/partner/v1/customers", &body).await,
        201,
    )
    .await;
    assert_eq!(created["email"], email.as_str());
    assert_eq!(created["country"], "DE");
    let id = created["id"].as_str().unwrap().to_owned();

    let list = json_of(s.signed(&a, "GET", "/partner/v1/customers", b"").await, 200).await;
    assert_eq!(ids(&list), vec![id.clone()]);
    let other = json_of(s.signed(&b, "GET", "/partner/v1/customers", b"").await, 200).await;
    assert_eq!(
        other["items"],
        json!([]),
        "partner B sees A's customers: {other}"
    );

    // The back office sees whose customer it is.
    let (status, user) = call(
        &s.app,
        &s.client,
        "GET",
        &format!("/admin/v1/users/{id}"),
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["partner_id"], a.partner_id.to_string());
    assert_eq!(user["role"], Value::Null);

    // The same address again, a restricted country, a bad body.
    let res = s.signed(&a, "POST", "/partner/v1/customers", &body).await;
    problem(res, 409, "email_taken").await;
    let kp = serde_json::to_vec(&json!({ "email": unique_email("sub"), "country": "KP" })).unwrap();
    let res = s.signed(&a, "POST", "/partner/v1/customers", &kp).await;
    problem(res, 451, "jurisdiction_restricted").await;
    let bad = serde_json::to_vec(&json!({ "email": "not-an-address", "country": "DE" })).unwrap();
    let res = s.signed(&a, "POST", "/partner/v1/customers", &bad).await;
    assert_eq!(res.status().as_u16(), 422);

    let balances = json_of(s.signed(&a, "GET", "/partner/v1/balances", b"").await, 200).await;
    assert!(balances["items"].is_array(), "{balances}");

    // Each creation is audited under the key.
    let (status, log) = call(
        &s.app,
        &s.client,
        "GET",
        &format!("/admin/v1/audit-log?actor=partner_key:{}", a.id),
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log["items"][0]["action"], "partner.customer.create");
    assert_eq!(log["items"][0]["target"], format!("user:{id}"));
}

/// Known bug (see the report): a sub-customer's placeholder password hash
/// is not a PHC string, so `PasswordHasher::verify` fails and its login
/// answers 500 (an account-enumeration oracle too); and a password reset
/// gives it a real password although sub-customers must never sign in with
/// one.
#[tokio::test]
async fn a_partner_sub_customer_never_signs_in_with_a_password() {
    let s = setup().await;
    let key = s.partner_key(&["read", "trade"], &[]).await;
    let email = unique_email("sub");
    let body = serde_json::to_vec(&json!({ "email": email, "country": "DE" })).unwrap();
    json_of(
        s.signed(&key, "POST", "/partner/v1/customers", &body).await,
        201,
    )
    .await;

    let login = json!({ "email": email, "password": "Harbour-violin-cobalt-58" });
    let got = call(
        &s.app,
        &s.client,
        "POST",
        "/v1/auth/login",
        None,
        Some(&login),
    )
    .await;
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["code"], "invalid_credentials", "{}", got.1);

    // A reset is answered like any other (202) but sends no link.
    let got = call(
        &s.app,
        &s.client,
        "POST",
        "/v1/auth/password-reset",
        None,
        Some(&json!({ "email": email })),
    )
    .await;
    assert_eq!(got.0, 202, "{}", got.1);
    let mut conn = s.app.db.conn().await.unwrap();
    // Fails (and so proves the e-mail was not queued) when a row exists.
    conn.batch_execute(&format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM emails WHERE to_address = '{email}') \
         THEN RAISE EXCEPTION 'a reset link was sent to a partner sub-customer'; END IF; END $$"
    ))
    .await
    .unwrap();
}

/// Known bug (see the report): behind a proxy that forwards `ip:port` (or a
/// bracketed IPv6 address) the client address does not parse, and every
/// key, even one without an allow-list, answers `ip_not_allowed`.
#[tokio::test]
async fn a_forwarded_address_with_a_port_is_still_the_client_address() {
    let s = setup().await;
    let open = s.partner_key(&["read"], &[]).await;
    let fenced = s.partner_key(&["read"], &["192.0.2.0/24"]).await;
    let client = client_from("192.0.2.7:4444");
    for key in [&open, &fenced] {
        let res = send_signed(&s.app, &client, key, "GET", "/partner/v1/customers", b"").await;
        json_of(res, 200).await;
    }
}

// ---------------------------------------------------------------------------
// 8. Refusals
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_timestamp_must_be_within_30_seconds() {
    let s = setup().await;
    let key = s.partner_key(&["read"], &[]).await;
    let path = "/partner/v1/customers";
    let at =
        |offset: i64, t: i64| signature_headers(&key, "GET", path, b"", t + offset, &new_nonce());

    // Refused whatever the server's clock did meanwhile.
    let res = s.send("GET", path, at(-31, now()), b"").await;
    problem(res, 401, "timestamp_out_of_window").await;
    // Allowed whatever the server's clock did meanwhile.
    let res = s.send("GET", path, at(30, now()), b"").await;
    json_of(res, 200).await;
    // These two depend on the second the server checks them in.
    let t = start_of_second().await;
    let res = s.send("GET", path, at(31, t), b"").await;
    problem(res, 401, "timestamp_out_of_window").await;
    let t = start_of_second().await;
    let res = s.send("GET", path, at(-30, t), b"").await;
    json_of(res, 200).await;
}

#[tokio::test]
async fn a_nonce_works_once_and_only_a_valid_request_spends_it() {
    let s = setup().await;
    let key = s.partner_key(&["read"], &[]).await;
    let other = s.partner_key(&["read"], &[]).await;
    let path = "/partner/v1/balances";
    let nonce = new_nonce();

    // A badly signed request does not spend the nonce.
    let mut forged = signature_headers(&key, "GET", path, b"", now(), &nonce);
    forged.insert(HEADER_SIGNATURE, "0".repeat(64).parse().unwrap());
    problem(s.send("GET", path, forged, b"").await, 401, "bad_signature").await;

    let headers = signature_headers(&key, "GET", path, b"", now(), &nonce);
    json_of(s.send("GET", path, headers.clone(), b"").await, 200).await;
    problem(
        s.send("GET", path, headers, b"").await,
        401,
        "nonce_replayed",
    )
    .await;
    // A fresh signature with the same nonce is still a replay.
    let again = signature_headers(&key, "GET", "/partner/v1/customers", b"", now(), &nonce);
    problem(
        s.send("GET", "/partner/v1/customers", again, b"").await,
        401,
        "nonce_replayed",
    )
    .await;
    // Nonces are per key.
    let theirs = signature_headers(&other, "GET", path, b"", now(), &nonce);
    json_of(s.send("GET", path, theirs, b"").await, 200).await;
}

#[tokio::test]
async fn tampering_with_any_signed_part_breaks_the_signature() {
    let s = setup().await;
    let key = s.partner_key(&["read", "trade"], &[]).await;
    let stranger = s.partner_key(&["read", "trade"], &[]).await;
    let customers = "/partner/v1/customers";
    let signed_body =
        serde_json::to_vec(&json!({ "email": unique_email("a"), "country": "DE" })).unwrap();
    let sent_body =
        serde_json::to_vec(&json!({ "email": unique_email("b"), "country": "DE" })).unwrap();
    let sig = |method: &str, path: &str, body: &[u8]| {
        signature_headers(&key, method, path, body, now(), &new_nonce())
    };

    // Body.
    let res = s
        .send(
            "POST",
            customers,
            sig("POST", customers, &signed_body),
            &sent_body,
        )
        .await;
    problem(res, 401, "bad_signature").await;
    // Path.
    let res = s
        .send(
            "GET",
            customers,
            sig("GET", "/partner/v1/balances", b""),
            b"",
        )
        .await;
    problem(res, 401, "bad_signature").await;
    // Query: a changed value, an added parameter.
    let res = s
        .send(
            "GET",
            "/partner/v1/customers?a=2",
            sig("GET", "/partner/v1/customers?a=1", b""),
            b"",
        )
        .await;
    problem(res, 401, "bad_signature").await;
    let res = s
        .send(
            "GET",
            "/partner/v1/customers?a=1",
            sig("GET", customers, b""),
            b"",
        )
        .await;
    problem(res, 401, "bad_signature").await;
    // Method.
    let res = s
        .send("POST", customers, sig("GET", customers, b""), b"")
        .await;
    problem(res, 401, "bad_signature").await;
    // Timestamp.
    let mut headers = sig("GET", customers, b"");
    let t: i64 = headers[HEADER_TIMESTAMP].to_str().unwrap().parse().unwrap();
    headers.insert(HEADER_TIMESTAMP, (t - 1).to_string().parse().unwrap());
    problem(
        s.send("GET", customers, headers, b"").await,
        401,
        "bad_signature",
    )
    .await;
    // Another key's secret.
    let mut headers = signature_headers(&stranger, "GET", customers, b"", now(), &new_nonce());
    headers.insert(HEADER_KEY, key.id.parse().unwrap());
    problem(
        s.send("GET", customers, headers, b"").await,
        401,
        "bad_signature",
    )
    .await;

    // The order of query parameters is not signed, their content is.
    let res = s
        .send(
            "GET",
            "/partner/v1/customers?a=1&b=2",
            sig("GET", "/partner/v1/customers?b=2&a=1", b""),
            b"",
        )
        .await;
    json_of(res, 200).await;
    // Nothing was created by the refused POSTs.
    let list = json_of(s.signed(&key, "GET", customers, b"").await, 200).await;
    assert_eq!(list["items"], json!([]), "{list}");
}

#[tokio::test]
async fn scopes_allow_lists_and_key_states_are_enforced() {
    let s = setup().await;
    let body =
        serde_json::to_vec(&json!({ "email": unique_email("sub"), "country": "DE" })).unwrap();

    // Scope.
    let reader = s.partner_key(&["read"], &[]).await;
    let res = s
        .signed(&reader, "POST", "/partner/v1/customers", &body)
        .await;
    problem(res, 403, "scope_missing").await;
    let trader = s.partner_key(&["trade"], &[]).await;
    let res = s.signed(&trader, "GET", "/partner/v1/customers", b"").await;
    problem(res, 403, "scope_missing").await;

    // IP allow-list: our 10.x address is outside 192.0.2.0/24, 192.0.2.7 inside.
    let fenced = s.partner_key(&["read"], &["192.0.2.0/24"]).await;
    let res = s.signed(&fenced, "GET", "/partner/v1/customers", b"").await;
    problem(res, 403, "ip_not_allowed").await;
    let inside = client_from("192.0.2.7");
    let res = send_signed(
        &s.app,
        &inside,
        &fenced,
        "GET",
        "/partner/v1/customers",
        b"",
    )
    .await;
    json_of(res, 200).await;
    let single = s.partner_key(&["read"], &["192.0.2.7"]).await;
    let res = send_signed(
        &s.app,
        &inside,
        &single,
        "GET",
        "/partner/v1/customers",
        b"",
    )
    .await;
    json_of(res, 200).await;

    // Revoked.
    let doomed = s.partner_key(&["read"], &[]).await;
    json_of(
        s.signed(&doomed, "GET", "/partner/v1/balances", b"").await,
        200,
    )
    .await;
    let revoke = format!(
        "/admin/v1/partners/{}/keys/{}",
        doomed.partner_id, doomed.id
    );
    let wrong_partner = format!("/admin/v1/partners/{}/keys/{}", Uuid::new_v4(), doomed.id);
    let got = call(
        &s.app,
        &s.client,
        "DELETE",
        &wrong_partner,
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(got.0, 404, "{}", got.1);
    let got = call(&s.app, &s.client, "DELETE", &revoke, Some(&s.admin), None).await;
    assert_eq!(got.0, 204, "{}", got.1);
    let res = s.signed(&doomed, "GET", "/partner/v1/balances", b"").await;
    problem(res, 401, "key_revoked_or_expired").await;
    let got = call(&s.app, &s.client, "DELETE", &revoke, Some(&s.admin), None).await;
    assert_eq!(got.0, 404, "revoking twice: {}", got.1);
    let (status, keys) = call(
        &s.app,
        &s.client,
        "GET",
        &format!("/admin/v1/partners/{}/keys", doomed.partner_id),
        Some(&s.admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{keys}");
    assert!(keys["items"][0]["revoked_at"].is_string(), "{keys}");
    assert!(keys["items"][0].get("secret").is_none(), "{keys}");

    // Expired (a key cannot be created expired, so it expires in the database).
    let got = call(
        &s.app,
        &s.client,
        "POST",
        &format!("/admin/v1/partners/{}/keys", doomed.partner_id),
        Some(&s.admin),
        Some(&json!({ "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z" })),
    )
    .await;
    assert_eq!(got.0, 422, "{}", got.1);
    let expiring = s.partner_key(&["read"], &[]).await;
    json_of(
        s.signed(&expiring, "GET", "/partner/v1/balances", b"")
            .await,
        200,
    )
    .await;
    let mut conn = s.app.db.conn().await.unwrap();
    conn.batch_execute(&format!(
        "UPDATE partner_keys SET expires_at = now() - interval '1 second' WHERE id = '{}'",
        expiring.id
    ))
    .await
    .unwrap();
    let res = s
        .signed(&expiring, "GET", "/partner/v1/balances", b"")
        .await;
    problem(res, 401, "key_revoked_or_expired").await;

    // Unknown.
    let unknown = PartnerKey {
        partner_id: Uuid::new_v4(),
        id: format!("hgk_{}", "abcdefghijklmnopqrst"),
        secret: "whatever".to_owned(),
    };
    let res = s.signed(&unknown, "GET", "/partner/v1/balances", b"").await;
    problem(res, 401, "unknown_key").await;
}

#[tokio::test]
async fn missing_or_malformed_headers_are_refused() {
    let s = setup().await;
    let key = s.partner_key(&["read"], &[]).await;
    let path = "/partner/v1/customers";

    let res = s
        .send("GET", path, reqwest::header::HeaderMap::new(), b"")
        .await;
    let body = problem(res, 401, "missing_signature_header").await;
    assert!(
        body["detail"].as_str().unwrap().contains(HEADER_KEY),
        "{body}"
    );
    for dropped in [HEADER_KEY, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE] {
        let mut headers = signature_headers(&key, "GET", path, b"", now(), &new_nonce());
        headers.remove(dropped);
        let body = problem(
            s.send("GET", path, headers, b"").await,
            401,
            "missing_signature_header",
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains(dropped),
            "{dropped}: {body}"
        );
    }
    for (name, value) in [
        (HEADER_KEY, "not-a-key"),
        (HEADER_TIMESTAMP, "-5"),
        (HEADER_NONCE, "short"),
        (HEADER_SIGNATURE, "ABCDEF"),
    ] {
        let mut headers = signature_headers(&key, "GET", path, b"", now(), &new_nonce());
        headers.insert(name, value.parse().unwrap());
        let res = s.send("GET", path, headers, b"").await;
        problem(res, 401, "malformed_signature_header").await;
    }
}

#[tokio::test]
async fn partner_keys_cannot_call_the_back_office() {
    let s = setup().await;
    let key = s.partner_key(&["read", "trade", "withdraw"], &[]).await;
    let res = s.signed(&key, "GET", "/admin/v1/users", b"").await;
    problem(res, 403, "forbidden").await;
    // Nor the customer API.
    let res = s.signed(&key, "GET", "/v1/me", b"").await;
    problem(res, 401, "unauthorized").await;
}

// ---------------------------------------------------------------------------
// 9. The reference signing script
// ---------------------------------------------------------------------------

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || std::process::Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/partner-sign.sh");

/// Runs the script (off the runtime's thread, which also serves the app).
async fn script(key: &PartnerKey, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(SCRIPT)
        .args(args)
        .env("HASHGRID_KEY_ID", &key.id)
        .env("HASHGRID_KEY_SECRET", &key.secret)
        .env_remove("HASHGRID_TIMESTAMP")
        .env_remove("HASHGRID_NONCE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!("{SCRIPT} {args:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_reference_signing_script_agrees_with_the_server() {
    if !have("openssl") || !have("curl") {
        println!("skipped: the signing script needs openssl and curl");
        return;
    }
    let s = setup().await;
    let key = s.partner_key(&["read", "trade"], &[]).await;

    // It signs exactly what the server's code signs.
    let canonical = script(
        &key,
        &[
            ("HASHGRID_TIMESTAMP", "1700000000"),
            ("HASHGRID_NONCE", "nonce_0123456789abcdef"),
        ],
        &[
            "--dry-run",
            "post",
            &s.app.url("/partner/v1/customers?b=2&a=1"),
            r#"{"q":1}"#,
        ],
    )
    .await;
    let expected = partner_sig::canonical_request(
        "POST",
        "/partner/v1/customers",
        "b=2&a=1",
        1_700_000_000,
        "nonce_0123456789abcdef",
        br#"{"q":1}"#,
    );
    let signature = partner_sig::sign(key.secret.as_bytes(), &expected);
    assert!(
        canonical.contains(&format!("X-Hashgrid-Signature: {signature}")),
        "{canonical}"
    );
    assert!(canonical.ends_with(&format!("{expected}\n")), "{canonical}");

    // And the server accepts what it sends (no X-Forwarded-For: the key has
    // no allow-list, and partners have no per-IP limit).
    let email = unique_email("scripted");
    let body = json!({ "email": email, "country": "DE" }).to_string();
    let out = script(
        &key,
        &[],
        &["POST", &s.app.url("/partner/v1/customers"), &body],
    )
    .await;
    let created: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(created["email"], email.as_str(), "{created}");
    let out = script(
        &key,
        &[],
        &["GET", &s.app.url("/partner/v1/customers?b=2&a=1")],
    )
    .await;
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        ids(&list),
        vec![created["id"].as_str().unwrap().to_owned()],
        "{list}"
    );
    let out = script(&key, &[], &["GET", &s.app.url("/partner/v1/balances")]).await;
    let balances: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(balances["items"].is_array(), "{balances}");
}
