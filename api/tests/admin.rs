//! The back office over real HTTP: every admin route against every kind of
//! caller and role, step-up, one-time staff passwords, the audit log and its
//! hash chain, disabling accounts and the reconciliation report.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use std::collections::{BTreeSet, HashSet};

use api::auth::ADMIN_ROUTES;
use common::{
    PartnerKey, TRUST_PROXY, TestApp, USER_PASSWORD, call, client_from, create_partner,
    create_partner_key, customer, insert_user, login, new_nonce, problem, random_ip,
    signature_headers, spawn_app_with, staff, staff_member, unique_email,
};
use diesel_async::SimpleAsyncConnection;
use domain::identity::roles::Role;
use serde_json::{Value, json};
use uuid::Uuid;

async fn app() -> TestApp {
    spawn_app_with(|_| {}, TRUST_PROXY).await
}

/// Asserts an answer is a problem with `status` and `code`.
fn assert_problem(got: &(u16, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(*s, status, "status; body: {body}");
    assert_eq!(body["code"], code, "code; body: {body}");
    assert_eq!(
        body["type"],
        format!("/problems/{code}"),
        "type; body: {body}"
    );
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------------------
// 1. The route table
// ---------------------------------------------------------------------------

/// A body that lets the handler of `pattern` run (and, where it can, succeed).
fn body_for(method: &str, pattern: &str) -> Option<Value> {
    match (method, pattern) {
        ("POST", "/admin/v1/staff") => Some(json!({
            "email": unique_email("new-staff"),
            "role": "support",
        })),
        ("POST", "/admin/v1/partners") => Some(json!({
            "name": format!("Partner {}", Uuid::new_v4().simple()),
        })),
        ("POST", "/admin/v1/partners/{id}/keys") => Some(json!({ "scopes": ["read"] })),
        ("POST", _) => Some(json!({})),
        _ => None,
    }
}

/// Sends a request with valid partner signature headers and no bearer token.
async fn call_as_partner(
    app: &TestApp,
    client: &reqwest::Client,
    key: &PartnerKey,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let headers = signature_headers(key, method, path, &bytes, unix_now(), &new_nonce());
    let res = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(path),
        )
        .headers(headers)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_admin_route_checks_its_permission_for_every_kind_of_caller() {
    let app = app().await;
    let client = client_from(&random_ip());
    let mut roles = Vec::new();
    for role in Role::ALL {
        roles.push((role, staff(&app, &client, role).await));
    }
    let superadmin = roles
        .iter()
        .find(|(r, _)| *r == Role::Superadmin)
        .map(|(_, t)| t.clone())
        .unwrap();
    let (_, _, customer_token) = customer(&app, &client).await;
    let victim = insert_user(&app, &unique_email("victim"), None).await;
    let partner = create_partner(&app, &client, &superadmin).await;
    // The partner's credentials, and a second key for the revocation route.
    let partner_key = create_partner_key(&app, &client, &superadmin, partner, &["read"], &[]).await;
    let doomed_key = create_partner_key(&app, &client, &superadmin, partner, &["read"], &[]).await;

    let mut matrix: Vec<(String, Vec<u16>)> = Vec::new();
    for (method, pattern, permission) in ADMIN_ROUTES {
        let id = if pattern.starts_with("/admin/v1/partners") {
            partner
        } else {
            victim
        };
        let path = pattern
            .replace("{key_id}", &doomed_key.id)
            .replace("{id}", &id.to_string());
        let what = format!("{method} {path} ({permission:?})");
        let mut row = Vec::new();

        let got = call(
            &app,
            &client,
            method,
            &path,
            None,
            body_for(method, pattern).as_ref(),
        )
        .await;
        assert_problem(&got, 401, "unauthorized");
        row.push(got.0);

        let got = call(
            &app,
            &client,
            method,
            &path,
            Some(&customer_token),
            body_for(method, pattern).as_ref(),
        )
        .await;
        assert_eq!(got.0, 403, "customer token on {what}: {}", got.1);
        assert_eq!(got.1["code"], "forbidden", "customer token on {what}");
        row.push(got.0);

        let got = call_as_partner(
            &app,
            &client,
            &partner_key,
            method,
            &path,
            body_for(method, pattern).as_ref(),
        )
        .await;
        assert_eq!(got.0, 403, "partner key on {what}: {}", got.1);
        assert_eq!(got.1["code"], "forbidden", "partner key on {what}");
        row.push(got.0);

        for (role, token) in &roles {
            let (status, body) = call(
                &app,
                &client,
                method,
                &path,
                Some(token),
                body_for(method, pattern).as_ref(),
            )
            .await;
            if role.can(*permission) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{} on {what} should pass the permission check, got {status}: {body}",
                    role.as_str()
                );
            } else {
                assert_eq!(status, 403, "{} on {what}: {body}", role.as_str());
                assert_eq!(body["code"], "forbidden", "{} on {what}", role.as_str());
            }
            row.push(status);
        }
        matrix.push((format!("{method:<6} {pattern}"), row));
    }

    let width = matrix.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    let mut header = format!("{:width$}", "route");
    for name in ["none", "customer", "partner"]
        .into_iter()
        .chain(Role::ALL.map(Role::as_str))
    {
        header.push_str(&format!(" {name:>10}"));
    }
    println!("{header}");
    for (route, row) in &matrix {
        let mut line = format!("{route:width$}");
        for status in row {
            line.push_str(&format!(" {status:>10}"));
        }
        println!("{line}");
    }
}

#[test]
fn every_documented_admin_route_is_in_the_permission_table() {
    let spec = serde_json::to_value(api::openapi::spec()).unwrap();
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let own_account = path.starts_with("/admin/v1/auth/")
            || path.starts_with("/admin/v1/me/")
            || path == "/admin/v1/me";
        if !path.starts_with("/admin/v1/") || own_account {
            continue;
        }
        for method in item.as_object().expect("a path item").keys() {
            if methods.contains(&method.as_str()) {
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let table: BTreeSet<(String, String)> = ADMIN_ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(table.len(), ADMIN_ROUTES.len(), "a route is listed twice");
    let undeclared: Vec<_> = documented.difference(&table).collect();
    let undocumented: Vec<_> = table.difference(&documented).collect();
    assert!(
        undeclared.is_empty(),
        "documented admin routes missing from ADMIN_ROUTES: {undeclared:?}"
    );
    assert!(
        undocumented.is_empty(),
        "ADMIN_ROUTES entries that are not documented routes: {undocumented:?}"
    );
}

// ---------------------------------------------------------------------------
// 2. Step-up
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sensitive_actions_need_a_fresh_step_up() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff_member(&app, &client, Role::Superadmin).await;
    let partner = json!({ "name": format!("Partner {}", Uuid::new_v4().simple()) });

    // The login token alone (no 2FA at login) may read but not manage.
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/partners",
        Some(&admin.token),
        Some(&partner),
    )
    .await;
    assert_problem(&got, 403, "step_up_required");
    let res = client
        .post(app.url("/admin/v1/partners"))
        .bearer_auth(&admin.token)
        .json(&partner)
        .send()
        .await
        .unwrap();
    problem(res, 403, "step_up_required").await;
    let (status, body) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/users",
        Some(&admin.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["items"].is_array(), "{body}");

    // With the step-up token it works.
    let (status, body) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/partners",
        Some(&admin.step_up),
        Some(&partner),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], partner["name"]);

    // Step-up does not survive a refresh.
    let (status, pair) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/auth/refresh",
        None,
        Some(&json!({ "refresh_token": admin.refresh_token })),
    )
    .await;
    assert_eq!(status, 200, "{pair}");
    let refreshed = pair["access_token"].as_str().unwrap();
    let other = json!({ "name": format!("Partner {}", Uuid::new_v4().simple()) });
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/partners",
        Some(refreshed),
        Some(&other),
    )
    .await;
    assert_problem(&got, 403, "step_up_required");

    // A wrong code gives no step-up; nor does an account without 2FA.
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/auth/step-up",
        Some(&admin.token),
        Some(&json!({ "code": "000000" })),
    )
    .await;
    // 000000 could be the real code once in a million runs.
    if got.0 != 200 {
        assert_problem(&got, 401, "invalid_second_factor");
    }
    let email = unique_email("no-2fa");
    insert_user(&app, &email, Some(Role::Superadmin)).await;
    let pair = login(&app, &client, "/admin/v1/auth/login", &email, USER_PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/auth/step-up",
        Some(token),
        Some(&json!({ "code": "123456" })),
    )
    .await;
    assert_problem(&got, 409, "totp_not_enabled");
}

// ---------------------------------------------------------------------------
// 3. One-time passwords of new staff
// ---------------------------------------------------------------------------

#[tokio::test]
async fn new_staff_must_replace_the_one_time_password() {
    let app = app().await;
    let client = client_from(&random_ip());
    let admin = staff(&app, &client, Role::Superadmin).await;
    let email = unique_email("new-support");

    let (status, created) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/staff",
        Some(&admin),
        Some(&json!({ "email": email, "role": "support" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["user"]["email"], email.as_str());
    assert_eq!(created["user"]["role"], "support");
    assert_eq!(created["user"]["status"], "active");
    let one_time = created["one_time_password"].as_str().unwrap().to_owned();
    assert!(one_time.len() >= 16, "{one_time}");

    // The same address again is a conflict.
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/staff",
        Some(&admin),
        Some(&json!({ "email": email, "role": "finance" })),
    )
    .await;
    assert_problem(&got, 409, "email_taken");

    // Logging in works, but no permissioned route does until the password changes.
    let pair = login(&app, &client, "/admin/v1/auth/login", &email, &one_time).await;
    let first = pair["access_token"].as_str().unwrap().to_owned();
    let got = call(&app, &client, "GET", "/admin/v1/users", Some(&first), None).await;
    assert_problem(&got, 403, "password_change_required");
    // A route the role may not use at all stays `forbidden`.
    let got = call(
        &app,
        &client,
        "GET",
        "/admin/v1/partners",
        Some(&first),
        None,
    )
    .await;
    assert_problem(&got, 403, "forbidden");

    let new_password = "Harbour-violin-cobalt-58";
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/me/password",
        Some(&first),
        Some(&json!({ "current_password": one_time, "new_password": new_password })),
    )
    .await;
    assert_eq!(got.0, 204, "{}", got.1);

    // The change ended the session; a new login works fully.
    let got = call(&app, &client, "GET", "/admin/v1/users", Some(&first), None).await;
    assert_eq!(got.0, 401, "{}", got.1);
    let pair = login(&app, &client, "/admin/v1/auth/login", &email, new_password).await;
    let second = pair["access_token"].as_str().unwrap();
    let (status, body) = call(&app, &client, "GET", "/admin/v1/users", Some(second), None).await;
    assert_eq!(status, 200, "{body}");
    // The one-time password is gone.
    let got = call(
        &app,
        &client,
        "POST",
        "/admin/v1/auth/login",
        None,
        Some(&json!({ "email": email, "password": one_time })),
    )
    .await;
    assert_problem(&got, 401, "invalid_credentials");
}

// ---------------------------------------------------------------------------
// 4. The audit log
// ---------------------------------------------------------------------------

async fn audit_page(app: &TestApp, client: &reqwest::Client, token: &str, query: &str) -> Value {
    let (status, body) = call(
        app,
        client,
        "GET",
        &format!("/admin/v1/audit-log?{query}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "audit-log?{query}: {body}");
    body
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

/// Walks every page of `query` with `limit=1`; answers the ids in order.
async fn walk(app: &TestApp, client: &reqwest::Client, token: &str, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let q = match &cursor {
            Some(c) => format!("{query}&limit=1&cursor={c}"),
            None => format!("{query}&limit=1"),
        };
        let page = audit_page(app, client, token, &q).await;
        assert!(items(&page).len() <= 1, "{page}");
        ids.extend(items(&page).iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
    panic!("the audit log pagination does not end");
}

#[tokio::test]
async fn the_audit_log_lists_filters_pages_and_detects_tampering() {
    let app = app().await;
    let ip = random_ip();
    let client = client_from(&ip);
    let admin = staff_member(&app, &client, Role::Superadmin).await;
    let compliance = staff(&app, &client, Role::Compliance).await;
    let victim = insert_user(&app, &unique_email("victim"), None).await;

    let partner = create_partner(&app, &client, &admin.step_up).await;
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/users/{victim}/disable"),
        Some(&admin.step_up),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disabled");

    // Newest first, with actor, action, target and IP.
    let all = audit_page(&app, &client, &compliance, "limit=200").await;
    let all = items(&all);
    assert!(all.len() < 200, "the test expects one page");
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {ids:?}"
    );
    let pos = |action: &str, target: &str| {
        all.iter()
            .position(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("no {action} on {target} in {all:?}"))
    };
    let disable = pos("admin.user.disable", &format!("user:{victim}"));
    let create = pos("admin.partner.create", &format!("partner:{partner}"));
    assert!(disable < create, "the later action must come first");
    for at in [disable, create] {
        let e = &all[at];
        assert_eq!(e["actor"], admin.actor(), "{e}");
        assert_eq!(e["ip"], ip.as_str(), "{e}");
        assert!(e["at"].is_string() && e["hash"].is_string(), "{e}");
    }
    assert_eq!(all[disable]["before"], json!({ "status": "active" }));
    assert_eq!(all[disable]["after"], json!({ "status": "disabled" }));
    assert!(
        all.iter()
            .any(|e| !e["action"].as_str().unwrap().starts_with("admin.")),
        "the log should also hold non-admin entries (logins)"
    );

    // Filters.
    let page = audit_page(&app, &client, &compliance, "action=admin.partner.create").await;
    assert!(!items(&page).is_empty());
    assert!(
        items(&page)
            .iter()
            .all(|e| e["action"] == "admin.partner.create"),
        "{page}"
    );
    assert!(
        items(&page)
            .iter()
            .any(|e| e["target"] == format!("partner:{partner}"))
    );

    let page = audit_page(&app, &client, &compliance, "action=admin.*").await;
    let actions: HashSet<&str> = items(&page)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.iter().all(|a| a.starts_with("admin.")),
        "{actions:?}"
    );
    assert!(actions.contains("admin.partner.create") && actions.contains("admin.user.disable"));

    // `_` in a prefix is literal, not a LIKE wildcard.
    let page = audit_page(&app, &client, &compliance, "action=admin.partner_*").await;
    assert!(items(&page).is_empty(), "{page}");

    let page = audit_page(
        &app,
        &client,
        &compliance,
        &format!("actor={}", admin.actor()),
    )
    .await;
    assert!(
        items(&page).iter().all(|e| e["actor"] == admin.actor()),
        "{page}"
    );
    let actions: HashSet<&str> = items(&page)
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "auth.login",
        "auth.step_up",
        "admin.partner.create",
        "admin.user.disable",
    ] {
        assert!(actions.contains(a), "{a} missing from {actions:?}");
    }

    let page = audit_page(
        &app,
        &client,
        &compliance,
        &format!("target=partner:{partner}"),
    )
    .await;
    assert_eq!(items(&page).len(), 1, "{page}");
    assert_eq!(items(&page)[0]["action"], "admin.partner.create");

    // Cursor pagination walks every entry once, in order.
    let walked = walk(&app, &client, &compliance, "").await;
    assert_eq!(walked, ids, "limit=1 pages");
    let unique: HashSet<i64> = walked.iter().copied().collect();
    assert_eq!(unique.len(), walked.len(), "an entry repeats");
    let admin_only = walk(&app, &client, &compliance, "action=admin.*").await;
    let expected: Vec<i64> = all
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("admin."))
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(admin_only, expected);

    // The hash chain: intact, then broken by an edit behind the triggers' back.
    let (status, body) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/audit-log/verify",
        Some(&compliance),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "intact": true, "broken_ids": [] }));

    let min_id = *ids.last().unwrap();
    let mut conn = app.db.conn().await.unwrap();
    conn.batch_execute(
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete; \
         UPDATE audit_log SET actor = 'evil' WHERE id = (SELECT min(id) FROM audit_log); \
         ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete;",
    )
    .await
    .unwrap();
    let (status, body) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/audit-log/verify",
        Some(&admin.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "intact": false, "broken_ids": [min_id] }));

    // The database refuses plain changes.
    for sql in [
        "UPDATE audit_log SET actor = 'evil2'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = conn
            .batch_execute(sql)
            .await
            .expect_err(&format!("{sql} must be refused"));
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Every row is still there, the edited one with its edit.
    let page = audit_page(&app, &client, &compliance, "limit=200").await;
    assert_eq!(items(&page).len(), ids.len(), "{page}");
    assert_eq!(items(&page).last().unwrap()["actor"], "evil");
}

// ---------------------------------------------------------------------------
// 5. Disabling accounts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_disabled_customer_loses_its_sessions_and_cannot_log_in() {
    let app = app().await;
    let client = client_from(&random_ip());
    let support = staff_member(&app, &client, Role::Support).await;
    let (id, email, token) = customer(&app, &client).await;
    let (status, body) = call(&app, &client, "GET", "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");

    // Without step-up, no.
    let path = format!("/admin/v1/users/{id}/disable");
    let got = call(&app, &client, "POST", &path, Some(&support.token), None).await;
    assert_problem(&got, 403, "step_up_required");

    let (status, body) = call(&app, &client, "POST", &path, Some(&support.step_up), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disabled");
    assert_eq!(body["id"], id.to_string());

    let (status, body) = call(&app, &client, "GET", "/v1/me", Some(&token), None).await;
    assert_eq!(status, 401, "{body}");
    let got = call(
        &app,
        &client,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({ "email": email, "password": USER_PASSWORD })),
    )
    .await;
    assert_problem(&got, 403, "account_disabled");
    let (status, body) = call(
        &app,
        &client,
        "GET",
        &format!("/admin/v1/users/{id}"),
        Some(&support.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disabled");

    // A staff member cannot disable themselves.
    let got = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/users/{}/disable", support.id),
        Some(&support.step_up),
        None,
    )
    .await;
    assert_problem(&got, 403, "forbidden");

    // An unknown user is 404; enabling brings the customer back.
    let got = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/users/{}/disable", Uuid::new_v4()),
        Some(&support.step_up),
        None,
    )
    .await;
    assert_eq!(got.0, 404, "{}", got.1);
    let (status, body) = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/users/{id}/enable"),
        Some(&support.step_up),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    login(&app, &client, "/v1/auth/login", &email, USER_PASSWORD).await;
}

// ---------------------------------------------------------------------------
// 6. Reports
// ---------------------------------------------------------------------------

#[tokio::test]
async fn finance_sees_a_reconciled_ledger() {
    let app = app().await;
    let client = client_from(&random_ip());
    let finance = staff(&app, &client, Role::Finance).await;
    let (status, body) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/reports/reconciliation",
        Some(&finance),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reconciled"], true, "{body}");
    assert_eq!(body["problems"], json!([]), "{body}");
    assert!(body["checked_at"].is_string(), "{body}");
}

// ---------------------------------------------------------------------------
// Known bugs (see the report); un-ignore once fixed.
// ---------------------------------------------------------------------------

/// `users_write` is a customer-support permission, but `set_status` applies
/// it to any account: support (or compliance) can disable a superadmin —
/// locking the back office out — or re-enable a disabled staff member.
#[tokio::test]
async fn only_staff_managers_change_a_staff_accounts_status() {
    let app = app().await;
    let client = client_from(&random_ip());
    let support = staff(&app, &client, Role::Support).await;
    let admin = staff_member(&app, &client, Role::Superadmin).await;
    let got = call(
        &app,
        &client,
        "POST",
        &format!("/admin/v1/users/{}/disable", admin.id),
        Some(&support),
        None,
    )
    .await;
    assert_problem(&got, 403, "forbidden");
    let (status, body) = call(
        &app,
        &client,
        "GET",
        "/admin/v1/users",
        Some(&admin.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Every other admin action records the caller's IP; staff creation does not.
#[tokio::test]
async fn creating_staff_is_audited_with_the_ip() {
    let app = app().await;
    let ip = random_ip();
    let client = client_from(&ip);
    let admin = staff(&app, &client, Role::Superadmin).await;
    let email = unique_email("new-staff");
    let (status, created) = call(
        &app,
        &client,
        "POST",
        "/admin/v1/staff",
        Some(&admin),
        Some(&json!({ "email": email, "role": "finance" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, log) = call(
        &app,
        &client,
        "GET",
        &format!(
            "/admin/v1/audit-log?action=admin.staff.create&target=user:{}",
            created["user"]["id"].as_str().unwrap()
        ),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["items"][0]["ip"], ip.as_str(), "{log}");
}
