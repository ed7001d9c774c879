//! Fixed-window rate limits kept in Redis, shared by every API instance.
//!
//! One Lua script per check (`INCR`, `PEXPIRE` on the first hit, `PTTL`)
//! makes the count and its expiry atomic, so concurrent requests can never
//! exceed the limit and a window can never be left without an expiry.
//!
//! Redis is optional at start-up: the connection is made on first use, with
//! short timeouts, and every failure is reported as
//! [`LimitError::Unavailable`]. [`RateLimiter::enforce`] then applies the
//! caller's [`FailMode`]: login and 2FA fail closed (503), reads fail open.
//!
//! A 429 is a [`RateLimitedError`], which writes the same problem+json body
//! as [`ApiError`] plus `Retry-After` and the `RateLimit-*` headers of the
//! IETF draft (draft-ietf-httpapi-ratelimit-headers, the three-header form).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::error::{ApiError, Problem, problem_response};

/// How long one connection attempt may take before the check is given up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long Redis may take to answer the script.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// KEYS[1] = counter, ARGV[1] = window in ms. Returns {count, ms left}.
///
/// The expiry is set on the first hit only, so hammering a refused key does
/// not push its window out. A counter found without an expiry (written by
/// hand, or by an older version) gets one rather than locking the key out
/// for ever.
const SCRIPT_SRC: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

// Built once: `Script::new` hashes the source for EVALSHA.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT_SRC));

/// A named limit: at most `max` hits per `window` for each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Part of the Redis key (`rl:{name}:{key}`) and of metrics labels;
    /// keep it short and fixed, e.g. `login`.
    pub name: &'static str,
    pub max: u32,
    pub window: Duration,
}

/// The outcome of one counted hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The limit's `max`.
    pub limit: u32,
    /// Hits left in the current window after this one.
    pub remaining: u32,
    /// Time until the window ends and the count starts again.
    pub reset_after: Duration,
}

impl Decision {
    /// What fail-open answers when Redis is unavailable: allowed, with the
    /// full quota, since nothing was counted.
    fn unlimited(limit: &Limit) -> Decision {
        Decision {
            allowed: true,
            limit: limit.max,
            remaining: limit.max,
            reset_after: limit.window,
        }
    }

    /// Whole seconds until the window resets, rounded up so that a client
    /// that waits this long is never refused again for the same window.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset_after)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Redis could not be reached, timed out or answered with an error.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// What to do when Redis is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse with 503 `rate_limiter_unavailable`: for endpoints where an
    /// unlimited attacker is worse than an outage (login, 2FA).
    Closed,
    /// Allow: for reads, which must keep working during a Redis outage.
    Open,
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds),
/// and `Retry-After` (seconds, at least 1) when the hit was refused.
pub fn headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = vec![
        (RATELIMIT_LIMIT, HeaderValue::from(decision.limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(decision.remaining)),
        (RATELIMIT_RESET, HeaderValue::from(decision.reset_secs())),
    ];
    if !decision.allowed {
        // Retry-After: 0 would invite an immediate retry that may still land
        // in the old window (Redis rounds PTTL, clocks differ).
        out.push((RETRY_AFTER, HeaderValue::from(decision.reset_secs().max(1))));
    }
    out
}

/// The 429 answer: a problem+json body like [`ApiError`]'s plus the
/// rate-limit headers, which `ApiError` has no room for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limited; retry after {} s", .decision.reset_secs().max(1))]
pub struct RateLimitedError {
    pub decision: Decision,
}

impl RateLimitedError {
    pub const CODE: &'static str = "rate_limited";

    pub fn problem(&self) -> Problem {
        let status = StatusCode::TOO_MANY_REQUESTS;
        Problem {
            type_uri: format!("/problems/{}", Self::CODE),
            title: status
                .canonical_reason()
                .unwrap_or("Too Many Requests")
                .to_owned(),
            status: status.as_u16(),
            code: Self::CODE.to_owned(),
            detail: Some(format!(
                "too many requests; retry after {} s",
                self.decision.reset_secs().max(1)
            )),
            errors: Vec::new(),
        }
    }
}

impl ResponseError for RateLimitedError {
    fn status_code(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = problem_response(&self.problem());
        for (name, value) in headers(&self.decision) {
            res.headers_mut().insert(name, value);
        }
        res
    }
}

/// Counts hits in Redis. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RateLimiter {
    client: redis::Client,
    // Created on first use, not in `new`: building a ConnectionManager
    // needs a Tokio runtime, and the api must start with Redis down. The
    // manager itself is lazy and reconnects after I/O errors, so one
    // instance serves for the life of the process.
    conn: Arc<OnceCell<ConnectionManager>>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("connected", &self.conn.initialized())
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Does no I/O and needs no runtime; Redis is contacted on first check.
    pub fn new(client: redis::Client) -> RateLimiter {
        Self::with_timeouts(client, DEFAULT_CONNECT_TIMEOUT, DEFAULT_COMMAND_TIMEOUT)
    }

    pub fn with_timeouts(
        client: redis::Client,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RateLimiter {
        RateLimiter {
            client,
            conn: Arc::new(OnceCell::new()),
            connect_timeout,
            command_timeout,
        }
    }

    /// The shared Redis connection (also used for partner nonces).
    pub async fn connection(&self) -> Result<ConnectionManager, LimitError> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.command_timeout))
                    // No retry loop inside a request: a failed attempt is
                    // reported at once, and the manager starts a fresh
                    // attempt in the background for the next request.
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .map_err(|e| LimitError::Unavailable(e.to_string()))?;
        Ok(conn.clone())
    }

    /// Counts one hit of `key` against `limit`, on Redis key
    /// `rl:{limit.name}:{key}`. The hit is counted even when refused.
    pub async fn check(&self, limit: &Limit, key: &str) -> Result<Decision, LimitError> {
        let redis_key = format!("rl:{}:{}", limit.name, key);
        // PEXPIRE 0 would delete the key at once and never limit anything.
        let window_ms = u64::try_from(limit.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let run = async {
            let mut conn = self.connection().await?;
            let mut invocation = SCRIPT.prepare_invoke();
            invocation.key(&redis_key).arg(window_ms);
            match invocation.invoke_async::<(i64, i64)>(&mut conn).await {
                // On an I/O error the manager starts a new connection
                // attempt; waiting for it once means the first request
                // after Redis comes back is not refused on a stale failure.
                // (If the lost answer was to a script that did run, the hit
                // is counted twice: erring towards limiting is fine.)
                Err(e) if e.is_io_error() => invocation.invoke_async(&mut conn).await,
                other => other,
            }
            .map_err(|e| LimitError::Unavailable(e.to_string()))
        };
        // The manager's own timeouts cover connecting and answering; this
        // outer bound also covers waiting on a connection attempt started
        // by another request.
        let deadline = self.connect_timeout + self.command_timeout;
        let (count, ttl_ms) = tokio::time::timeout(deadline, run)
            .await
            .map_err(|_| LimitError::Unavailable(format!("no answer within {deadline:?}")))??;

        let count = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
        let ttl_ms = u64::try_from(ttl_ms).unwrap_or(0);
        Ok(Decision {
            allowed: count <= limit.max,
            limit: limit.max,
            remaining: limit.max.saturating_sub(count),
            reset_after: Duration::from_millis(ttl_ms),
        })
    }

    /// [`check`](Self::check), turned into an answer: `Ok` when allowed, a
    /// [`RateLimitedError`] (429) when over the limit, and per `mode` when
    /// Redis is unavailable: 503 `rate_limiter_unavailable` ([`ApiError`])
    /// or allowed. Callers may add [`headers`] of the `Ok` decision to
    /// their response; after a fail-open they describe an uncounted hit.
    pub async fn enforce(
        &self,
        limit: &Limit,
        key: &str,
        mode: FailMode,
    ) -> Result<Decision, actix_web::Error> {
        match self.check(limit, key).await {
            Ok(decision) if decision.allowed => Ok(decision),
            Ok(decision) => {
                metrics::counter!("rate_limit_refused_total", "limit" => limit.name).increment(1);
                Err(RateLimitedError { decision }.into())
            }
            Err(LimitError::Unavailable(cause)) => {
                metrics::counter!("rate_limit_unavailable_total", "limit" => limit.name)
                    .increment(1);
                tracing::warn!(limit = limit.name, ?mode, cause, "rate limiter unavailable");
                match mode {
                    FailMode::Closed => Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "rate_limiter_unavailable",
                        "this request cannot be rate-limited right now; retry later",
                    )
                    .into()),
                    FailMode::Open => Ok(Decision::unlimited(limit)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool, remaining: u32, reset_ms: u64) -> Decision {
        Decision {
            allowed,
            limit: 5,
            remaining,
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    fn find<'a>(h: &'a [(HeaderName, HeaderValue)], name: &HeaderName) -> Option<&'a str> {
        h.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn headers_round_reset_up() {
        let h = headers(&decision(true, 3, 1_001));
        assert_eq!(find(&h, &RATELIMIT_LIMIT), Some("5"));
        assert_eq!(find(&h, &RATELIMIT_REMAINING), Some("3"));
        assert_eq!(find(&h, &RATELIMIT_RESET), Some("2"));
        assert_eq!(find(&h, &RETRY_AFTER), None);
    }

    #[test]
    fn refused_decisions_carry_retry_after_of_at_least_one_second() {
        let h = headers(&decision(false, 0, 2_000));
        assert_eq!(find(&h, &RETRY_AFTER), Some("2"));
        let h = headers(&decision(false, 0, 0));
        assert_eq!(find(&h, &RATELIMIT_RESET), Some("0"));
        assert_eq!(find(&h, &RETRY_AFTER), Some("1"));
    }

    #[test]
    fn construction_needs_no_runtime_and_no_redis() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let limiter = RateLimiter::new(client);
        assert!(format!("{limiter:?}").contains("connected: false"));
    }
}
