//! The pool adapter against a local HTTP server, and the
//! `import_pool_earnings` job against the real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Days, NaiveDate, TimeZone, Utc};
use domain::catalog::admin::{self, NewAlgorithm, NewFacility, NewPool};
use domain::catalog::model::Pool;
use domain::outbox::jobs::JobState;
use domain::settlement::earnings::{self, NewEarning};
use rust_decimal::Decimal;
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use workers::pooladapter::{self, HttpPoolAdapter, PoolAdapter};
use workers::runner::{Registry, Runner, RunnerConfig};

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    Json(u16, String),
    Hang,
}

type Route = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection,
/// answered by `route` from the request target.
struct PoolServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolServer {
    async fn start(route: Route) -> PoolServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let route = route.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let target = head
                        .lines()
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let bytes = match route(&target) {
                        Answer::Json(status, body) => format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .into_bytes(),
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                    };
                    let _ = stream.write_all(&bytes).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        PoolServer {
            url,
            requests,
            task,
        }
    }

    async fn fixed(answer: Answer) -> PoolServer {
        Self::start(Arc::new(move |_| answer.clone())).await
    }

    /// A well-behaved pool API: `acct-ltc` earned LTC and DOGE, `acct-btc`
    /// earned BTC, any day; other accounts are 404.
    async fn pools() -> PoolServer {
        Self::start(Arc::new(|target: &str| {
            let Some(rest) = target.strip_prefix("/v1/accounts/") else {
                return Answer::Json(404, "{}".into());
            };
            let Some((account, query)) = rest.split_once("/earnings?day=") else {
                return Answer::Json(404, "{}".into());
            };
            let entries = match account {
                "acct-ltc" => {
                    r#"[{"coin": "LTC", "amount": "1.25", "delivered_hashrate": "1000.5", "difficulty": "35000000", "payout_txids": ["l1"]},
                        {"coin": "DOGE", "amount": "800.12345678", "delivered_hashrate": "1000.5", "difficulty": "4000000.5", "payout_txids": ["d1", "d2"]}]"#
                }
                "acct-btc" => {
                    r#"[{"coin": "BTC", "amount": "0.01234567", "delivered_hashrate": "100.5", "difficulty": "86390000000000", "payout_txids": []}]"#
                }
                _ => return Answer::Json(404, "{}".into()),
            };
            Answer::Json(
                200,
                format!(r#"{{"account": "{account}", "day": "{query}", "earnings": {entries}}}"#),
            )
        }))
        .await
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for PoolServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fast() -> RunnerConfig {
    RunnerConfig {
        concurrency: 2,
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        grace: Duration::from_secs(5),
    }
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[tokio::test]
async fn http_adapter_parses_the_documented_format() {
    let server = PoolServer::pools().await;
    let adapter = HttpPoolAdapter::new(&server.url).unwrap();
    assert_eq!(adapter.name(), "http:127.0.0.1");
    let got = adapter
        .fetch_day("acct-ltc", day("2026-11-24"))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].coin, "LTC");
    assert_eq!(got[0].amount, "1.25".parse::<Decimal>().unwrap());
    assert_eq!(got[1].amount.to_string(), "800.12345678");
    assert_eq!(got[1].difficulty.to_string(), "4000000.5");
    assert_eq!(got[1].payout_txids, vec!["d1", "d2"]);
    assert_eq!(
        server.requests(),
        vec!["/v1/accounts/acct-ltc/earnings?day=2026-11-24"]
    );
    // The account is one escaped path segment.
    let url = adapter.day_url("a/b c", day("2026-11-24")).unwrap();
    assert_eq!(
        url.as_str(),
        format!(
            "{}/v1/accounts/a%2Fb%20c/earnings?day=2026-11-24",
            server.url
        )
    );
    // Unknown accounts are 404: an error.
    assert!(
        adapter
            .fetch_day("nobody", day("2026-11-24"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let d = day("2026-11-24");
    let ok_entry = r#"{"coin": "BTC", "amount": "0.1", "delivered_hashrate": "1", "difficulty": "2", "payout_txids": []}"#;
    let wrap = |entries: &str| {
        format!(r#"{{"account": "acct", "day": "2026-11-24", "earnings": [{entries}]}}"#)
    };
    // Parsing alone.
    assert_eq!(
        pooladapter::parse_earnings(wrap(ok_entry).as_bytes(), "acct", d)
            .unwrap()
            .len(),
        1
    );
    let bad = [
        wrap(
            r#"{"coin": "BTC", "amount": 0.1, "delivered_hashrate": "1", "difficulty": "2", "payout_txids": []}"#,
        ),
        wrap(
            r#"{"coin": "BTC", "amount": "1e-1", "delivered_hashrate": "1", "difficulty": "2", "payout_txids": []}"#,
        ),
        wrap(
            r#"{"coin": "BTC", "amount": "0.1", "delivered_hashrate": "1", "difficulty": "2", "payout_txids": [], "extra": 1}"#,
        ),
        wrap(r#"{"coin": "BTC", "amount": "0.1", "delivered_hashrate": "1", "difficulty": "2"}"#),
        wrap(
            r#"{"coin": "btc", "amount": "0.1", "delivered_hashrate": "1", "difficulty": "2", "payout_txids": []}"#,
        ),
        wrap(&format!("{ok_entry}, {ok_entry}")),
        r#"{"account": "other", "day": "2026-11-24", "earnings": []}"#.to_owned(),
        r#"{"account": "acct", "day": "2026-11-23", "earnings": []}"#.to_owned(),
        r#"{"account": "acct", "earnings": []}"#.to_owned(),
        "not json".to_owned(),
    ];
    for body in &bad {
        assert!(
            pooladapter::parse_earnings(body.as_bytes(), "acct", d).is_err(),
            "{body}"
        );
    }
    // Over HTTP: a non-2xx status, a malformed body, a hang past the timeout.
    let server = PoolServer::fixed(Answer::Json(500, wrap(ok_entry))).await;
    let adapter = HttpPoolAdapter::new(&server.url).unwrap();
    assert!(adapter.fetch_day("acct", d).await.is_err());
    let server = PoolServer::fixed(Answer::Json(200, bad[0].clone())).await;
    let adapter = HttpPoolAdapter::new(&server.url).unwrap();
    let e = adapter.fetch_day("acct", d).await.unwrap_err();
    assert!(format!("{e:#}").contains("malformed"), "{e:#}");
    let server = PoolServer::fixed(Answer::Hang).await;
    let adapter = HttpPoolAdapter::with_timeout(&server.url, Duration::from_millis(200)).unwrap();
    assert!(adapter.fetch_day("acct", d).await.is_err());
    // Bad base URLs.
    assert!(HttpPoolAdapter::new("ftp://x").is_err());
    assert!(HttpPoolAdapter::new("http://x/?q=1").is_err());
}

async fn pool(db: &TestDb, name: &str, coins: &[&str], account: &str) -> Pool {
    let mut conn = db.conn().await.unwrap();
    let algorithm = if coins.contains(&"BTC") {
        "sha256"
    } else {
        "scrypt"
    };
    if admin::list_algorithms(&mut conn)
        .await
        .unwrap()
        .iter()
        .all(|a| a.code != algorithm)
    {
        admin::create_algorithm(
            &mut conn,
            &NewAlgorithm {
                code: algorithm.into(),
                name: algorithm.into(),
                hashrate_unit: "TH/s".into(),
            },
        )
        .await
        .unwrap();
    }
    let facility = admin::create_facility(
        &mut conn,
        &NewFacility {
            name: format!("{name} site"),
            country: "IS".into(),
            region: "Reykjanes".into(),
            miner_model: "Antminer".into(),
            efficiency: "17.5".parse().unwrap(),
            efficiency_unit: if algorithm == "sha256" {
                "J/TH"
            } else {
                "J/MH"
            }
            .into(),
            pue: "1.08".parse().unwrap(),
            total_hashrate: "50000".parse().unwrap(),
            sellable_hashrate: "40000".parse().unwrap(),
            algorithm: algorithm.into(),
        },
    )
    .await
    .unwrap();
    admin::create_pool(
        &mut conn,
        &NewPool {
            name: name.into(),
            algorithm: algorithm.into(),
            coins: coins.iter().map(|c| (*c).to_owned()).collect(),
            facility_id: facility.id,
            external_account: account.into(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_job_imports_pools_with_accounts_and_skips_what_is_imported() {
    let db = TestDb::new().await.unwrap();
    let ltc = pool(&db, "LTC+DOGE", &["LTC", "DOGE"], "acct-ltc").await;
    let btc = pool(&db, "BTC", &["BTC"], "acct-btc").await;
    let silent = pool(&db, "No account", &["BTC"], "").await;
    let d = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(2))
        .unwrap();

    // DOGE of the day is already imported by hand.
    let mut conn = db.conn().await.unwrap();
    let manual = earnings::import(
        &mut conn,
        &NewEarning {
            pool_id: ltc.id,
            day: d,
            coin: "DOGE".into(),
            amount: "799".parse().unwrap(),
            delivered_hashrate: "1000".parse().unwrap(),
            difficulty: "4000000".parse().unwrap(),
            pool_tx_ids: vec![],
            source: "admin:test".into(),
            corrects: None,
        },
    )
    .await
    .unwrap();

    let server = PoolServer::pools().await;
    let adapter: Arc<dyn PoolAdapter> = Arc::new(HttpPoolAdapter::new(&server.url).unwrap());
    let registry = pooladapter::register(Registry::new(), Some(adapter));
    let runner = Runner::new(db.pool(), registry, fast());
    let job = runner
        .run_once(
            pooladapter::IMPORT_POOL_EARNINGS_JOB,
            serde_json::json!({ "date": d }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded, "{:?}", job.last_error);

    let mut requests = server.requests();
    requests.sort();
    assert_eq!(
        requests,
        vec![
            format!("/v1/accounts/acct-btc/earnings?day={d}"),
            format!("/v1/accounts/acct-ltc/earnings?day={d}"),
        ]
    );
    let ltc_coin = earnings::latest_for(&mut conn, ltc.id, d, "LTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ltc_coin.amount.to_string(), ltc_coin.source.as_str()),
        ("1.25".to_owned(), "http:127.0.0.1")
    );
    assert_eq!(ltc_coin.pool_tx_ids, vec!["l1"]);
    let doge = earnings::latest_for(&mut conn, ltc.id, d, "DOGE")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doge.id, manual.id, "the manual import is kept");
    let btc_coin = earnings::latest_for(&mut conn, btc.id, d, "BTC")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(btc_coin.amount.to_string(), "0.01234567");
    assert!(
        earnings::list(&mut conn, Some(silent.id), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        earnings::list(&mut conn, None, Some(d), 100)
            .await
            .unwrap()
            .len(),
        3
    );

    // Running it again imports nothing new and succeeds.
    let job = runner
        .run_once(
            pooladapter::IMPORT_POOL_EARNINGS_JOB,
            serde_json::json!({ "date": d }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded, "{:?}", job.last_error);
    assert_eq!(
        earnings::list(&mut conn, None, Some(d), 100)
            .await
            .unwrap()
            .len(),
        3
    );

    // Another day: everything is new.
    let report = pooladapter::import_day(
        &db.pool(),
        &HttpPoolAdapter::new(&server.url).unwrap(),
        d.checked_sub_days(Days::new(1)).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(report.imported.len(), 3);
    assert!(report.failed.is_empty());
}

#[tokio::test]
async fn refused_coins_fail_the_job_and_the_rest_is_imported() {
    let db = TestDb::new().await.unwrap();
    // The pool pays BTC, but the account answers LTC and DOGE.
    let odd = pool(&db, "Odd", &["BTC"], "acct-ltc").await;
    let good = pool(&db, "BTC", &["BTC"], "acct-btc").await;
    let d = Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(1))
        .unwrap();
    let server = PoolServer::pools().await;
    let adapter: Arc<dyn PoolAdapter> = Arc::new(HttpPoolAdapter::new(&server.url).unwrap());
    let report = pooladapter::import_day(&db.pool(), adapter.as_ref(), d)
        .await
        .unwrap();
    assert_eq!(report.imported.len(), 1);
    assert_eq!(report.imported[0].pool_id, good.id);
    assert_eq!(report.failed.len(), 2);
    assert!(
        report
            .failed
            .iter()
            .all(|(p, _, why)| *p == odd.id && why.contains("coin"))
    );
    let runner = Runner::new(
        db.pool(),
        pooladapter::register(Registry::new(), Some(adapter)),
        fast(),
    );
    let job = runner
        .run_once(
            pooladapter::IMPORT_POOL_EARNINGS_JOB,
            serde_json::json!({ "date": d }),
        )
        .await
        .unwrap();
    assert_ne!(job.state(), JobState::Succeeded);
}

#[tokio::test]
async fn without_an_adapter_the_job_does_nothing() {
    let db = TestDb::new().await.unwrap();
    pool(&db, "BTC", &["BTC"], "acct-btc").await;
    let runner = Runner::new(
        db.pool(),
        pooladapter::register(Registry::new(), None),
        fast(),
    );
    let job = runner
        .run_once(pooladapter::IMPORT_POOL_EARNINGS_JOB, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded);
    let mut conn = db.conn().await.unwrap();
    assert!(
        earnings::list(&mut conn, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The builtin registry and schedules have the job.
    assert!(
        workers::builtin::registry()
            .kinds()
            .contains(&pooladapter::IMPORT_POOL_EARNINGS_JOB.to_owned())
    );
}

#[test]
fn the_day_defaults_to_yesterday() {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 1, 0, 0).unwrap();
    assert_eq!(
        pooladapter::import_day_of(&serde_json::Value::Null, now).unwrap(),
        day("2026-11-24")
    );
    assert_eq!(
        pooladapter::import_day_of(&serde_json::json!({ "date": "2026-11-01" }), now).unwrap(),
        day("2026-11-01")
    );
    assert_eq!(
        pooladapter::import_day_of(
            &serde_json::json!({ "scheduled_for": "2026-11-20T01:00:00Z" }),
            now
        )
        .unwrap(),
        day("2026-11-19")
    );
    assert!(pooladapter::import_day_of(&serde_json::json!({ "date": "yesterday" }), now).is_err());
}
