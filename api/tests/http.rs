//! The API over real HTTP: a server per test on a random port, a database
//! per test, and the shared Redis.

// clippy.toml allows these inside #[test] functions only; the helpers here
// (and in `common`) are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use actix_web::{HttpResponse, web};
use api::error::{ApiError, FieldError};
use common::{TestApp, header, problem, request_id, spawn_app, spawn_app_with, validation};
use domain::money::{Asset, DecimalString, Sign};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// Test-only routes
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Probe {
    asset: Asset,
    amount: DecimalString,
    nested: Option<Nested>,
}

#[derive(Debug, Deserialize)]
struct Nested {
    depth: u8,
}

async fn probe(body: api::extract::Json<Probe>) -> Result<HttpResponse, ApiError> {
    let probe = body.0;
    let amount = probe
        .amount
        .parse(probe.asset, Sign::Positive)
        .map_err(|e| ApiError::validation(vec![FieldError::amount("amount", &e)]))?;
    Ok(HttpResponse::Ok().json(json!({
        "asset": probe.asset,
        "amount": amount,
        "depth": probe.nested.map(|n| n.depth),
    })))
}

/// Any JSON at all: exercises the parser's own limits (nesting depth).
async fn any_json(body: api::extract::Json<Value>) -> HttpResponse {
    HttpResponse::Ok().json(&body.0)
}

async fn panics() -> HttpResponse {
    panic!("secret-internal-detail")
}

fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/test/probe", web::post().to(probe))
        .route("/test/any", web::post().to(any_json))
        .route("/test/panic", web::get().to(panics));
}

fn no_routes(_: &mut web::ServiceConfig) {}

async fn post_probe(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/test/probe"))
        .json(body)
        .send()
        .await
        .expect("POST /test/probe")
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn assert_uuid(id: &str) {
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "x-request-id {id:?} is not a UUID"
    );
}

// ---------------------------------------------------------------------------
// Liveness and request ids
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok_and_gets_a_new_request_id() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let id = request_id(&res);
    assert_uuid(&id);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok"}));

    // A new id per request.
    let again = request_id(&app.get("/healthz").await);
    assert_uuid(&again);
    assert_ne!(id, again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_request_id_is_echoed() {
    let app = spawn_app(no_routes).await;
    for sent in ["abc-123", "A.b_c-9", &"x".repeat(64)] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(request_id(&res), sent);
    }
    // Errors echo it too.
    let res = app
        .client
        .get(app.url("/no/such/route"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(request_id(&res), "abc-123");
    problem(res, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_request_id_is_replaced() {
    let app = spawn_app(no_routes).await;
    let too_long = "a".repeat(200);
    for sent in [too_long.as_str(), "abc 123", "a/b", "<script>", "ünï"] {
        // from_bytes: non-ASCII (obs-text) is allowed on the wire.
        let value = reqwest::header::HeaderValue::from_bytes(sent.as_bytes()).unwrap();
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let id = request_id(&res);
        assert_ne!(id, sent);
        assert_uuid(&id);
    }
    // An empty header is not an id either.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "")
        .send()
        .await
        .unwrap();
    assert_uuid(&request_id(&res));
}

// ---------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_postgres_and_redis_up() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    request_id(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["postgres"], "up", "{body}");
    assert_eq!(body["checks"]["redis"], "up", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_redis_is_down() {
    let app = spawn_app_with(no_routes, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let started = std::time::Instant::now();
    let res = app.get("/readyz").await;
    let body = problem(res, 503, "not_ready").await;
    let down: Vec<&str> = body["down"]
        .as_array()
        .unwrap_or_else(|| panic!("no down list: {body}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(down.contains(&"redis"), "{body}");
    assert!(!down.contains(&"postgres"), "{body}");
    assert_eq!(body["checks"]["postgres"], "up", "{body}");
    assert!(
        body["checks"]["redis"]
            .as_str()
            .is_some_and(|s| s.starts_with("down")),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("redis"), "{body}");
    // The checks are bounded: a dead dependency must not hang the probe.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // Liveness does not depend on Redis.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_pool() {
    let app = spawn_app(no_routes).await;
    for _ in 0..3 {
        assert_eq!(app.get("/healthz").await.status(), 200);
    }
    assert_eq!(app.get("/nowhere").await.status(), 404);
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains(r#"route="/healthz""#)
            && l.contains(r#"status="200""#)
            && l.contains(r#"method="GET""#)),
        "no healthz counter in:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains(r#"route="unmatched""#)
            && l.contains(r#"status="404""#)),
        "unmatched routes are counted under one label:\n{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "no latency histogram in:\n{text}"
    );
    assert!(
        text.contains(r#"db_pool_connections{state="in_use"}"#),
        "no pool gauge in:\n{text}"
    );
    assert!(text.contains("db_pool_waiting"), "{text}");
    // The 404 path is a label value nowhere: no cardinality explosion.
    assert!(!text.contains("/nowhere"), "{text}");
}

// ---------------------------------------------------------------------------
// Routing errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_a_404_problem() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/v1/no-such-thing").await;
    let body = problem(res, 404, "not_found").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/v1/no-such-thing")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_a_4xx_problem() {
    let app = spawn_app(no_routes).await;
    for (method, path) in [
        (reqwest::Method::POST, "/v1/assets"),
        (reqwest::Method::DELETE, "/healthz"),
        (reqwest::Method::PUT, "/openapi.yaml"),
    ] {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        request_id(&res);
        assert_eq!(
            header(&res, "content-type"),
            common::PROBLEM_JSON,
            "{method} {path}"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], status.as_u16(), "{body}");
        assert!(body["code"].is_string(), "{body}");
    }
}

// ---------------------------------------------------------------------------
// JSON bodies: the extractor's errors
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_body_is_parsed() {
    let app = spawn_app(test_routes).await;
    let res = post_probe(
        &app,
        &json!({"asset": "BTC", "amount": "0.00012345", "nested": {"depth": 7}}),
    )
    .await;
    assert_eq!(res.status(), 200);
    request_id(&res);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"asset": "BTC", "amount": "0.00012345", "depth": 7})
    );

    // `nested` is optional; a `+json` media type and parameters are accepted.
    let res = post_raw(
        &app,
        "/test/probe",
        "application/merge-patch+json; charset=utf-8",
        r#"{"asset":"USDT","amount":"12.5"}"#.to_owned(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"asset": "USDT", "amount": "12.5", "depth": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = spawn_app(test_routes).await;
    for raw in [
        r#"{"asset":"#,
        r#"{"asset":"BTC" "amount":"1"}"#,
        r#"{"asset":"BTC","amount":"1",}"#,
        r#"{"asset":"BTC","amount":"1"} trailing"#,
        r#"{'asset':'BTC'}"#,
        "not json",
        "",
    ] {
        let res = post_raw(&app, "/test/probe", "application/json", raw.to_owned()).await;
        let body = problem(res, 400, "malformed_json").await;
        assert!(body.get("errors").is_none(), "{raw}: {body}");
    }
}

/// A body that is not JSON is a 400 even when a prefix of it already fails
/// to deserialize: the client's first problem is the syntax, and a 422 would
/// send it looking for a field error in a document that does not parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_even_after_a_field_error() {
    let app = spawn_app(test_routes).await;
    for raw in [
        "{} trailing",
        r#"{"asset":"XYZ""#,
        r#"{"asset":"BTC","amount":1.5,"#,
        r#"{"asset":"BTC"}}"#,
    ] {
        let res = post_raw(&app, "/test/probe", "application/json", raw.to_owned()).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(
            status, 400,
            "{raw:?} is not JSON, yet the answer is: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "malformed_json", "{raw:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_amount_is_422_on_amount() {
    let app = spawn_app(test_routes).await;
    for amount in [json!(1.5), json!(1), json!(-3)] {
        let res = post_probe(&app, &json!({"asset": "BTC", "amount": amount})).await;
        let body = validation(res, "amount", None).await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("string"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_asset_is_422_on_asset() {
    let app = spawn_app(test_routes).await;
    for asset in ["XYZ", "btc", ""] {
        let res = post_probe(&app, &json!({"asset": asset, "amount": "1"})).await;
        validation(res, "asset", Some("invalid")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_field_is_required() {
    let app = spawn_app(test_routes).await;
    let res = post_probe(&app, &json!({"asset": "BTC"})).await;
    validation(res, "amount", Some("required")).await;
    let res = post_probe(&app, &json!({"amount": "1"})).await;
    validation(res, "asset", Some("required")).await;
    let res = post_probe(&app, &json!({"asset": "BTC", "amount": "1", "nested": {}})).await;
    validation(res, "nested.depth", Some("required")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_amounts_name_their_reason() {
    let app = spawn_app(test_routes).await;
    for (amount, code) in [
        ("1e5", "not_a_decimal"),
        ("-1", "negative"),
        ("0.000000001", "too_many_decimals"),
        ("1.000000000", "too_many_decimals"),
        ("0", "zero"),
        ("", "empty"),
        (" 1", "not_a_decimal"),
        ("1.", "not_a_decimal"),
        ("+1", "not_a_decimal"),
    ] {
        let res = post_probe(&app, &json!({"asset": "BTC", "amount": amount})).await;
        let body = validation(res, "amount", Some(code)).await;
        assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_field_is_named_by_its_path() {
    let app = spawn_app(test_routes).await;
    for depth in [json!(300), json!(-1), json!("7")] {
        let res = post_probe(
            &app,
            &json!({"asset": "BTC", "amount": "1", "nested": {"depth": depth}}),
        )
        .await;
        validation(res, "nested.depth", Some("invalid")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app(test_routes).await;
    let padding = "0".repeat(5000);
    let raw = format!(r#"{{"asset":"BTC","amount":"1.{padding}"}}"#);
    let res = post_raw(&app, "/test/probe", "application/json", raw).await;
    problem(res, 413, "payload_too_large").await;

    // Just under the limit is read (and then judged on its content).
    let padding = "0".repeat(4000);
    let raw = format!(r#"{{"asset":"BTC","amount":"1.{padding}"}}"#);
    assert!(raw.len() <= 4096);
    let res = post_raw(&app, "/test/probe", "application/json", raw).await;
    validation(res, "amount", Some("too_many_decimals")).await;
}

/// Without a Content-Length the limit still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_413() {
    let app = spawn_app(test_routes).await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /test/probe HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(1000);
    for _ in 0..6 {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        // The server may answer and close before reading everything.
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await;
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "unexpected response:\n{response}"
    );
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains(r#""code":"payload_too_large""#),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app(test_routes).await;
    let valid = r#"{"asset":"BTC","amount":"1"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "json"] {
        let res = post_raw(&app, "/test/probe", content_type, valid.to_owned()).await;
        problem(res, 415, "unsupported_media_type").await;
    }
    // No content type at all.
    let res = app
        .client
        .post(app.url("/test/probe"))
        .body(valid)
        .send()
        .await
        .unwrap();
    problem(res, 415, "unsupported_media_type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_a_client_error() {
    let app = spawn_app(test_routes).await;
    let cases = [
        ("/test/probe", "[".repeat(5000)),
        ("/test/probe", "[".repeat(4000)),
        (
            "/test/probe",
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
        ),
        (
            "/test/probe",
            format!(
                r#"{{"asset":"BTC","amount":"1","nested":{}{}}}"#,
                r#"{"depth":"#.repeat(400),
                "}".repeat(400)
            ),
        ),
        (
            "/test/any",
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
        ),
        ("/test/any", r#"{"a":"#.repeat(800)),
    ];
    for (path, raw) in cases {
        let len = raw.len();
        let res = post_raw(&app, path, "application/json", raw).await;
        let status = res.status();
        assert!(
            status.is_client_error(),
            "{path} with {len} bytes: {status}"
        );
        assert_eq!(header(&res, "content-type"), common::PROBLEM_JSON);
    }
    // Past serde_json's recursion limit, within the body limit: malformed.
    let raw = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let res = post_raw(&app, "/test/any", "application/json", raw).await;
    problem(res, 400, "malformed_json").await;
    // The server is still fine.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

// ---------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_500_without_internals() {
    let app = spawn_app(test_routes).await;
    // More than once: every worker may take a turn, and keeps serving.
    for i in 0..4 {
        let res = app
            .client
            .get(app.url("/test/panic"))
            .header("x-request-id", format!("panic-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(request_id(&res), format!("panic-{i}"));
        let text = res.text().await.unwrap();
        assert!(!text.contains("secret-internal-detail"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    let res = app.get("/test/panic").await;
    assert_uuid(&request_id(&res));
    let body = problem(res, 500, "internal_error").await;
    assert!(
        !body.to_string().contains("secret-internal-detail"),
        "{body}"
    );
    for _ in 0..8 {
        let res = app.get("/healthz").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    }
}

// ---------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_lists_every_asset_and_network() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/v1/assets").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    request_id(&res);
    let body: Value = res.json().await.unwrap();
    assert!(body["next_cursor"].is_null(), "{body}");
    assert!(body.as_object().unwrap().contains_key("next_cursor"));
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 6, "{body}");
    let codes: Vec<&str> = items.iter().map(|i| i["asset"].as_str().unwrap()).collect();
    assert_eq!(codes, ["BTC", "ETH", "DOGE", "BNB", "USDT", "USDC"]);

    let find = |code: &str| items.iter().find(|i| i["asset"] == code).unwrap();
    let networks = |item: &Value| -> Vec<(String, u64)> {
        item["networks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["network"].as_str().unwrap().to_owned(),
                    n["decimals"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let btc = find("BTC");
    assert_eq!(btc["decimals"], 8);
    assert_eq!(btc["name"], "Bitcoin");
    assert_eq!(networks(btc), [("bitcoin".to_owned(), 8)]);
    assert_eq!(btc["networks"][0]["confirmations"], 3);
    let usdt = find("USDT");
    assert_eq!(usdt["decimals"], 6);
    let usdt_networks: BTreeSet<(String, u64)> = networks(usdt).into_iter().collect();
    assert_eq!(
        usdt_networks,
        BTreeSet::from([
            ("ethereum".to_owned(), 6),
            ("bsc".to_owned(), 18),
            ("tron".to_owned(), 6),
        ])
    );

    // The API and the reference data in the database agree.
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        asset: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        network: String,
        #[diesel(sql_type = diesel::sql_types::Int4)]
        decimals: i32,
    }
    let mut conn = app.db.conn().await.unwrap();
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT asset, network, decimals FROM asset_networks"),
        &mut conn,
    )
    .await
    .unwrap();
    let in_db: BTreeSet<(String, String, u64)> = rows
        .into_iter()
        .map(|r| (r.asset, r.network, u64::try_from(r.decimals).unwrap()))
        .collect();
    let in_api: BTreeSet<(String, String, u64)> = items
        .iter()
        .flat_map(|i| {
            let asset = i["asset"].as_str().unwrap().to_owned();
            networks(i)
                .into_iter()
                .map(move |(network, decimals)| (asset.clone(), network, decimals))
        })
        .collect();
    assert_eq!(in_api, in_db);
}

// ---------------------------------------------------------------------------
// The contract and its docs
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_yaml_is_the_generated_spec() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/openapi.yaml").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/yaml"));
    let text = res.text().await.unwrap();
    assert_eq!(text, api::openapi::spec_yaml().unwrap());

    // The JSON flavour the docs page loads.
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let spec: Value = res.json().await.unwrap();
    assert!(spec["paths"]["/v1/assets"]["get"].is_object(), "{spec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_work_offline() {
    let app = spawn_app(no_routes).await;
    let res = app.get("/docs").await;
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(header(&res, "location"), "/docs/");
    request_id(&res);

    let res = app.get("/docs/").await;
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "{html}");

    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-initializer.js",
    ] {
        let res = app.get(asset).await;
        assert_eq!(res.status(), 200, "{asset}");
        let body = res.bytes().await.unwrap();
        assert!(body.len() > 100, "{asset} is {} bytes", body.len());
    }
    // The page points at the spec this server serves.
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
