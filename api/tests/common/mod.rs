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
