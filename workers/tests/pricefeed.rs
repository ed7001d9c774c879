//! The price feed against a local HTTP server, and the `fetch_prices` and
//! `price_fixing` jobs against the real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::catalog::prices;
use domain::outbox::jobs::JobState;
use domain::outbox::schedule::{Every, Schedule};
use domain::schema::{jobs, prices as prices_table};
use rust_decimal::Decimal;
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use workers::pricefeed::{self, HttpPriceFeed, PriceFeed};
use workers::runner::{Registry, Runner, RunnerConfig};

/// What the test server answers.
#[derive(Clone)]
enum Answer {
    /// A status and a JSON body.
    Json(u16, String),
    /// Bytes as they are, not even HTTP.
    Raw(Vec<u8>),
    /// Nothing, ever.
    Hang,
}

type Route = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection,
/// answered by `route` from the request target (path and query).
struct FeedServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    async fn start(route: Route) -> FeedServer {
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
                        Answer::Raw(bytes) => bytes,
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
        FeedServer {
            url,
            requests,
            task,
        }
    }

    /// A server always giving the same answer.
    async fn fixed(answer: Answer) -> FeedServer {
        Self::start(Arc::new(move |_| answer.clone())).await
    }

    /// A well-behaved feed: a price for every coin asked for but `unknown`,
    /// observed `age` ago.
    async fn prices(age: ChronoDuration, unknown: &'static [&'static str]) -> FeedServer {
        Self::start(Arc::new(move |target: &str| {
            let Some(coins) = target.strip_prefix("/v1/prices?coins=") else {
                return Answer::Json(404, r#"{"error": "not found"}"#.to_owned());
            };
            let time = (Utc::now() - age).to_rfc3339_opts(SecondsFormat::Secs, true);
            let entries: Vec<String> = coins
                .split(',')
                .filter(|c| !unknown.contains(c))
                .map(|c| {
                    format!(
                        r#"{{"coin": "{c}", "usd": "{}", "time": "{time}"}}"#,
                        usd_of(c)
                    )
                })
                .collect();
            Answer::Json(200, format!(r#"{{"prices": [{}]}}"#, entries.join(", ")))
        }))
        .await
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The test server's price of `coin`.
fn usd_of(coin: &str) -> &'static str {
    match coin {
        "BTC" => "97000.12",
        "ETH" => "3500.5",
        "DOGE" => "0.381234567891",
        "BNB" => "650",
        "USDT" => "1.0001",
        "USDC" => "0.9999",
        "LTC" => "91.5",
        _ => "1",
    }
}

fn strings(coins: &[&str]) -> Vec<String> {
    coins.iter().map(|c| (*c).to_owned()).collect()
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

#[tokio::test]
async fn http_feed_parses_the_documented_format() {
    let time = "2026-11-25T10:00:00Z";
    let server = FeedServer::fixed(Answer::Json(
        200,
        format!(
            r#"{{"prices": [{{"coin": "BTC", "usd": "97000.12", "time": "{time}"}},
                            {{"coin": "ETH", "usd": "3500.5", "time": "{time}"}},
                            {{"coin": "XMR", "usd": "150", "time": "{time}"}}]}}"#
        ),
    ))
    .await;
    // A trailing slash on the base URL is fine.
    let feed = HttpPriceFeed::new(&format!("{}/", server.url)).unwrap();
    assert_eq!(feed.name(), "http:127.0.0.1");
    let quotes = feed.fetch(&strings(&["BTC", "ETH"])).await.unwrap();
    assert_eq!(server.requests(), vec!["/v1/prices?coins=BTC,ETH"]);
    // XMR was not asked for: left out.
    let got: Vec<(&str, Decimal, DateTime<Utc>)> = quotes
        .iter()
        .map(|q| (q.coin.as_str(), q.usd, q.observed_at))
        .collect();
    let at: DateTime<Utc> = time.parse().unwrap();
    assert_eq!(
        got,
        vec![
            ("BTC", "97000.12".parse().unwrap(), at),
            ("ETH", "3500.5".parse().unwrap(), at),
        ]
    );

    // Under a path prefix.
    let feed = HttpPriceFeed::new(&format!("{}/feed", server.url)).unwrap();
    feed.fetch(&strings(&["LTC"])).await.unwrap();
    assert_eq!(server.requests()[1], "/feed/v1/prices?coins=LTC");
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let ok_time = r#""time": "2026-11-25T10:00:00Z""#;
    let answers = [
        (
            "a number instead of a string",
            Answer::Json(
                200,
                format!(r#"{{"prices": [{{"coin": "BTC", "usd": 97000.12, {ok_time}}}]}}"#),
            ),
        ),
        (
            "a negative price",
            Answer::Json(
                200,
                format!(r#"{{"prices": [{{"coin": "BTC", "usd": "-1", {ok_time}}}]}}"#),
            ),
        ),
        (
            "a zero price",
            Answer::Json(
                200,
                format!(r#"{{"prices": [{{"coin": "BTC", "usd": "0", {ok_time}}}]}}"#),
            ),
        ),
        (
            "an unknown field",
            Answer::Json(
                200,
                format!(r#"{{"prices": [{{"coin": "BTC", "usd": "1", "bid": "1", {ok_time}}}]}}"#),
            ),
        ),
        (
            "a missing field",
            Answer::Json(200, r#"{"prices": [{"coin": "BTC", "usd": "1"}]}"#.to_owned()),
        ),
        (
            "a 500",
            Answer::Json(
                500,
                format!(r#"{{"prices": [{{"coin": "BTC", "usd": "1", {ok_time}}}]}}"#),
            ),
        ),
        (
            "a redirect",
            Answer::Raw(
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
                    .to_vec(),
            ),
        ),
        ("garbage JSON", Answer::Json(200, "<html>oops</html>".to_owned())),
        (
            "not HTTP at all",
            Answer::Raw(b"\x00\x01\x02 garbage \xff\r\n\r\n".to_vec()),
        ),
        (
            "a truncated body",
            Answer::Raw(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"prices\": ["
                    .to_vec(),
            ),
        ),
    ];
    for (what, answer) in answers {
        let server = FeedServer::fixed(answer).await;
        let feed = HttpPriceFeed::new(&server.url).unwrap();
        let result = feed.fetch(&strings(&["BTC"])).await;
        assert!(result.is_err(), "{what}: {result:?}");
    }

    // A feed that never answers times out.
    let server = FeedServer::fixed(Answer::Hang).await;
    let feed = HttpPriceFeed::with_timeout(&server.url, Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let err = feed.fetch(&strings(&["BTC"])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{err:#}");

    // Nobody listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let feed = HttpPriceFeed::new(&closed).unwrap();
    assert!(feed.fetch(&strings(&["BTC"])).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_fetch_prices_job_stores_every_coin() {
    let db = TestDb::new().await.unwrap();
    let server = FeedServer::prices(ChronoDuration::seconds(30), &[]).await;
    let feed: Arc<dyn PriceFeed> = Arc::new(HttpPriceFeed::new(&server.url).unwrap());
    let registry = pricefeed::register(Registry::new(), Some(feed));
    let runner = Runner::new(db.pool(), registry, fast()).with_schedules(vec![Schedule::new(
        pricefeed::FETCH_PRICES_JOB,
        Every::Seconds(60),
    )]);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(runner.run(shutdown.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = db.conn().await.unwrap();
        let done: i64 = jobs::table
            .filter(jobs::kind.eq(pricefeed::FETCH_PRICES_JOB))
            .filter(jobs::state.eq(JobState::Succeeded.as_str()))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if done >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fetch_prices did not succeed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();

    assert_eq!(
        server.requests()[0],
        "/v1/prices?coins=BTC,ETH,DOGE,BNB,USDT,USDC,LTC"
    );
    let mut conn = db.conn().await.unwrap();
    let stored = prices::latest_all(&mut conn).await.unwrap();
    let got: Vec<(String, String, String)> = stored
        .iter()
        .map(|p| (p.asset.clone(), p.usd.to_string(), p.source.clone()))
        .collect();
    let mut want: Vec<(String, String, String)> = pricefeed::COINS
        .iter()
        .map(|c| {
            (
                (*c).to_owned(),
                usd_of(c).to_owned(),
                "http:127.0.0.1".to_owned(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    let rows: i64 = prices_table::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    // One fetch per schedule slot (two if the test crossed a minute).
    let fetches: i64 = jobs::table
        .filter(jobs::kind.eq(pricefeed::FETCH_PRICES_JOB))
        .filter(jobs::state.eq(JobState::Succeeded.as_str()))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 7 * fetches);
    assert_eq!(server.requests().len() as i64, fetches);
    // Fresh enough to quote on.
    prices::current(&mut conn, "BTC", ChronoDuration::minutes(5), Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn fetch_prices_keeps_what_it_can_and_fails_when_it_gets_nothing() {
    let db = TestDb::new().await.unwrap();
    let runner_with = |url: &str| {
        let feed: Arc<dyn PriceFeed> = Arc::new(HttpPriceFeed::new(url).unwrap());
        Runner::new(
            db.pool(),
            pricefeed::register(Registry::new(), Some(feed)),
            fast(),
        )
    };

    // LTC and DOGE unknown to the feed: the others are stored.
    let partial = FeedServer::prices(ChronoDuration::seconds(1), &["LTC", "DOGE"]).await;
    let job = runner_with(&partial.url)
        .run_once(pricefeed::FETCH_PRICES_JOB, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded, "{:?}", job.last_error);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(prices::latest_all(&mut conn).await.unwrap().len(), 5);
    assert!(prices::latest(&mut conn, "LTC").await.unwrap().is_none());

    // A feed that is down fails the job with its reason.
    let down = FeedServer::fixed(Answer::Json(503, "{}".to_owned())).await;
    let job = runner_with(&down.url)
        .run_once(pricefeed::FETCH_PRICES_JOB, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Failed);
    assert!(
        job.last_error.as_deref().unwrap_or("").contains("503"),
        "{:?}",
        job.last_error
    );

    // Prices dated an hour ahead are refused; nothing usable fails the job.
    let ahead = FeedServer::prices(ChronoDuration::hours(-1), &[]).await;
    let job = runner_with(&ahead.url)
        .run_once(pricefeed::FETCH_PRICES_JOB, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Failed);
    assert_eq!(prices::latest_all(&mut conn).await.unwrap().len(), 5);

    // Without a feed the job does nothing, successfully.
    let job = Runner::new(
        db.pool(),
        pricefeed::register(Registry::new(), None),
        fast(),
    )
    .run_once(pricefeed::FETCH_PRICES_JOB, serde_json::json!({}))
    .await
    .unwrap();
    assert_eq!(job.state(), JobState::Succeeded);
}

#[tokio::test]
async fn price_fixing_run_once_fixes_the_given_day() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let day = (Utc::now() - ChronoDuration::days(3)).date_naive();
    let midnight = prices::midnight(day);
    for (coin, usd, offset) in [
        ("BTC", "96000", -ChronoDuration::hours(2)),
        ("BTC", "96500.5", -ChronoDuration::minutes(1)),
        ("BTC", "99999", ChronoDuration::minutes(1)),
        ("LTC", "90", -ChronoDuration::hours(3)),
    ] {
        prices::post_price(
            &mut conn,
            coin,
            usd.parse().unwrap(),
            "test",
            midnight + offset,
        )
        .await
        .unwrap();
    }

    // The builtin registry has the job; the payload is what
    // `workers run-once price_fixing --date D` sends.
    let runner = Runner::new(db.pool(), workers::builtin::registry(), fast());
    let job = runner
        .run_once(
            pricefeed::PRICE_FIXING_JOB,
            serde_json::json!({ "date": day }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded, "{:?}", job.last_error);
    let fixings = prices::fixings(&mut conn, day).await.unwrap();
    let got: Vec<(&str, String)> = fixings
        .iter()
        .map(|f| (f.asset.as_str(), f.usd.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![("BTC", "96500.5".to_owned()), ("LTC", "90".to_owned())]
    );

    // Running it again changes nothing.
    let job = runner
        .run_once(
            pricefeed::PRICE_FIXING_JOB,
            serde_json::json!({ "date": day }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Succeeded);
    assert_eq!(prices::fixings(&mut conn, day).await.unwrap(), fixings);

    // A day without prices before its midnight fails visibly.
    let empty = day - ChronoDuration::days(5);
    let job = runner
        .run_once(
            pricefeed::PRICE_FIXING_JOB,
            serde_json::json!({ "date": empty }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Failed);
    assert!(prices::fixings(&mut conn, empty).await.unwrap().is_empty());

    // A malformed date fails the job.
    let job = runner
        .run_once(
            pricefeed::PRICE_FIXING_JOB,
            serde_json::json!({ "date": "yesterday" }),
        )
        .await
        .unwrap();
    assert_eq!(job.state(), JobState::Failed);
}
