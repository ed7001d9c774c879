//! The Redis rate limiter against the shared test Redis (`TEST_REDIS_URL`);
//! every test counts under its own random key, so tests run in parallel.
//! Redis outages are simulated with a client pointing at a closed port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use actix_web::ResponseError;
use actix_web::body::to_bytes;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use api::error::{ApiError, PROBLEM_JSON};
use api::ratelimit::{
    Decision, FailMode, Limit, LimitError, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET,
    RateLimitedError, RateLimiter, headers,
};
use serde_json::Value;

const FIVE_PER_MINUTE: Limit = Limit {
    name: "test5",
    max: 5,
    window: Duration::from_secs(60),
};

fn limiter() -> RateLimiter {
    RateLimiter::new(redis::Client::open(testkit::redis_url()).unwrap())
}

/// A limiter whose Redis is never there: nothing listens on port 1.
fn unreachable_limiter() -> RateLimiter {
    RateLimiter::new(redis::Client::open("redis://127.0.0.1:1").unwrap())
}

fn random_key() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

async fn body_json(res: actix_web::HttpResponse) -> Value {
    let bytes = to_bytes(res.into_body()).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn header<'a>(
    res: &'a actix_web::HttpResponse,
    name: &actix_web::http::header::HeaderName,
) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn five_allowed_then_refused() {
    let rl = limiter();
    let key = random_key();
    for i in 1..=5u32 {
        let d = rl.check(&FIVE_PER_MINUTE, &key).await.unwrap();
        assert!(d.allowed, "hit {i} refused");
        assert_eq!((d.limit, d.remaining), (5, 5 - i));
        assert!(d.reset_after <= FIVE_PER_MINUTE.window);
    }
    let d = rl.check(&FIVE_PER_MINUTE, &key).await.unwrap();
    assert!(!d.allowed);
    assert_eq!((d.limit, d.remaining), (5, 0));
    assert!(d.reset_after <= FIVE_PER_MINUTE.window, "{d:?}");
    assert!(d.reset_after > Duration::from_secs(50), "{d:?}");

    // The counter lives at rl:{name}:{key} and expires with the window.
    let mut conn = redis::Client::open(testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let redis_key = format!("rl:test5:{key}");
    let (count, pttl): (i64, i64) = redis::pipe()
        .cmd("GET")
        .arg(&redis_key)
        .cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 6);
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
}

#[tokio::test]
async fn keys_are_independent() {
    let rl = limiter();
    let (a, b) = (random_key(), random_key());
    for _ in 0..5 {
        assert!(rl.check(&FIVE_PER_MINUTE, &a).await.unwrap().allowed);
    }
    assert!(!rl.check(&FIVE_PER_MINUTE, &a).await.unwrap().allowed);
    let d = rl.check(&FIVE_PER_MINUTE, &b).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 4);

    // Same key under another limit name is another counter too.
    let other = Limit {
        name: "test5other",
        ..FIVE_PER_MINUTE
    };
    assert!(rl.check(&other, &a).await.unwrap().allowed);
}

#[tokio::test]
async fn allows_again_after_the_window() {
    let rl = limiter();
    let key = random_key();
    let limit = Limit {
        name: "test1s",
        max: 2,
        window: Duration::from_secs(1),
    };
    assert!(rl.check(&limit, &key).await.unwrap().allowed);
    assert!(rl.check(&limit, &key).await.unwrap().allowed);
    let refused = rl.check(&limit, &key).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.reset_after <= Duration::from_secs(1));
    // Refused hits do not extend the window.
    tokio::time::sleep(refused.reset_after + Duration::from_millis(100)).await;
    let d = rl.check(&limit, &key).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.remaining, 1);
}

#[tokio::test]
async fn concurrent_checks_allow_exactly_max() {
    let rl = limiter();
    let key = random_key();
    let limit = Limit {
        name: "test10",
        max: 10,
        window: Duration::from_secs(60),
    };
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let rl = rl.clone();
            let key = key.clone();
            tokio::spawn(async move { rl.check(&limit, &key).await })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

#[tokio::test]
async fn unreachable_redis_is_unavailable_quickly() {
    let rl = unreachable_limiter();
    let started = Instant::now();
    let err = rl.check(&FIVE_PER_MINUTE, &random_key()).await.unwrap_err();
    assert!(matches!(err, LimitError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );

    // And again, once the lazy connection has failed once.
    let started = Instant::now();
    assert!(rl.check(&FIVE_PER_MINUTE, &random_key()).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unresponsive_redis_times_out() {
    // Accepts connections but never answers: the timeouts, not the OS, end it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let rl = RateLimiter::with_timeouts(
        redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap(),
        Duration::from_millis(300),
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = rl.check(&FIVE_PER_MINUTE, &random_key()).await.unwrap_err();
    assert!(matches!(err, LimitError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

/// Forwards every connection on `listener` to `target` until aborted.
async fn proxy(listener: tokio::net::TcpListener, target: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Started while Redis is down, the limiter works as soon as it is back,
/// from the very first request (no stale failure is served).
#[tokio::test]
async fn recovers_when_redis_comes_back() {
    let real = redis::Client::open(testkit::redis_url()).unwrap();
    let redis::ConnectionAddr::Tcp(host, port) = real.get_connection_info().addr().clone() else {
        eprintln!("skipping: TEST_REDIS_URL is not plain TCP");
        return;
    };
    // A port nothing listens on yet.
    let port_probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = port_probe.local_addr().unwrap().port();
    drop(port_probe);
    let info = real
        .get_connection_info()
        .clone()
        .set_addr(redis::ConnectionAddr::Tcp("127.0.0.1".into(), proxy_port));
    let rl = RateLimiter::new(redis::Client::open(info).unwrap());
    let key = random_key();

    assert!(rl.check(&FIVE_PER_MINUTE, &key).await.is_err());
    assert!(rl.check(&FIVE_PER_MINUTE, &key).await.is_err());
    // Let the background reconnect that the failure started fail as well,
    // so the manager holds a failed connection when Redis returns.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", proxy_port))
        .await
        .unwrap();
    let forward = tokio::spawn(proxy(listener, format!("{host}:{port}")));
    let d = rl.check(&FIVE_PER_MINUTE, &key).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 4);
    forward.abort();
}

#[tokio::test]
async fn fail_closed_is_503_and_fail_open_allows() {
    let rl = unreachable_limiter();

    let err = rl
        .enforce(&FIVE_PER_MINUTE, &random_key(), FailMode::Closed)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_error::<ApiError>().map(ApiError::code),
        Some("rate_limiter_unavailable")
    );
    let res = err.error_response();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, &CONTENT_TYPE), PROBLEM_JSON);
    let body = body_json(res).await;
    assert_eq!(body["code"], "rate_limiter_unavailable");
    assert_eq!(body["status"], 503);

    let d = rl
        .enforce(&FIVE_PER_MINUTE, &random_key(), FailMode::Open)
        .await
        .unwrap();
    assert!(d.allowed);
}

#[tokio::test]
async fn enforce_allows_under_the_limit() {
    let rl = limiter();
    let key = random_key();
    for mode in [FailMode::Closed, FailMode::Open] {
        let d = rl.enforce(&FIVE_PER_MINUTE, &key, mode).await.unwrap();
        assert!(d.allowed);
    }
    let d = rl
        .enforce(&FIVE_PER_MINUTE, &key, FailMode::Closed)
        .await
        .unwrap();
    assert_eq!(d.remaining, 2);
}

/// The 429 as a client sees it: problem+json, Retry-After and RateLimit-*.
#[tokio::test]
async fn over_the_limit_is_a_429_problem_with_headers() {
    let rl = limiter();
    let key = random_key();
    for _ in 0..5 {
        rl.enforce(&FIVE_PER_MINUTE, &key, FailMode::Closed)
            .await
            .unwrap();
    }
    let err = rl
        .enforce(&FIVE_PER_MINUTE, &key, FailMode::Closed)
        .await
        .unwrap_err();
    assert!(err.as_error::<RateLimitedError>().is_some());
    let res = err.error_response();

    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, &CONTENT_TYPE), PROBLEM_JSON);
    assert_eq!(header(&res, &RATELIMIT_LIMIT), "5");
    assert_eq!(header(&res, &RATELIMIT_REMAINING), "0");
    let reset: u64 = header(&res, &RATELIMIT_RESET).parse().unwrap();
    let retry: u64 = header(&res, &RETRY_AFTER).parse().unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    assert_eq!(retry, reset);

    let body = body_json(res).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["type"], "/problems/rate_limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert!(body["detail"].as_str().unwrap().contains("retry after"));
}

#[tokio::test]
async fn rate_limited_error_builds_its_own_response() {
    let decision = Decision {
        allowed: false,
        limit: 3,
        remaining: 0,
        reset_after: Duration::from_millis(4_200),
    };
    let res = RateLimitedError { decision }.error_response();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, &CONTENT_TYPE), PROBLEM_JSON);
    assert_eq!(header(&res, &RETRY_AFTER), "5");
    assert_eq!(header(&res, &RATELIMIT_RESET), "5");
    assert_eq!(header(&res, &RATELIMIT_LIMIT), "3");
    assert_eq!(header(&res, &RATELIMIT_REMAINING), "0");
    // The same pairs a handler attaches to a successful response.
    assert_eq!(headers(&decision).len(), 4);
    assert_eq!(body_json(res).await["code"], "rate_limited");
}
