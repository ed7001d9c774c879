//! Reference prices from an external feed, and the daily fixing.
//!
//! Jobs:
//! - `fetch_prices` (every 60 s): asks the feed configured by
//!   `HASHGRID_PRICE_FEED_URL` for [`COINS`] and appends every quote to
//!   `prices` with the feed's name as source (`http:<host>`). Without the
//!   variable the job logs and does nothing (prices can still be typed in
//!   through `POST /admin/v1/prices`).
//! - `price_fixing` (daily at 00:05 UTC): fixes the day's prices at 00:00 UTC
//!   ([`domain::catalog::prices::fix_day`]). The payload may name the day,
//!   `{"date": "YYYY-MM-DD"}` (`workers run-once price_fixing --date D`);
//!   otherwise it is the day the job was scheduled for, or today.
//!
//! The feed's format ([`HttpPriceFeed`]): `GET {base_url}/v1/prices?coins=BTC,ETH`
//! answers
//!
//! ```json
//! {"prices": [{"coin": "BTC", "usd": "97000.12", "time": "2026-11-25T10:00:00Z"}]}
//! ```
//!
//! `usd` is a decimal string (a JSON number, a negative or zero price, more
//! than 12 decimal places, and any unknown or missing field make the whole
//! answer an error), `time` is RFC 3339. Requests time out after 5 s; an
//! answer other than 2xx (redirects included) is an error.
//!
//! TLS: `https://` feeds go through rustls with the *ring* provider and the
//! Mozilla roots (reqwest's `rustls-tls-webpki-roots`), never aws-lc-sys.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use domain::catalog::prices::{self, Fixing, PriceError, PriceRow};
use domain::db::PgPool;
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::runner::{JobContext, Registry};

/// The job that fetches prices.
pub const FETCH_PRICES_JOB: &str = "fetch_prices";
/// The job that makes the daily fixings.
pub const PRICE_FIXING_JOB: &str = "price_fixing";
/// The variable naming the feed's base URL.
pub const FEED_URL_ENV: &str = "HASHGRID_PRICE_FEED_URL";
/// The coins fetched: the ledger assets, and LTC (mined, not held).
pub const COINS: [&str; 7] = ["BTC", "ETH", "DOGE", "BNB", "USDT", "USDC", "LTC"];
/// How long one request to the feed may take, connecting included.
pub const FEED_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a feed.
const MAX_BODY_BYTES: usize = 1 << 20;

/// One price from a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub coin: String,
    /// USD per whole coin.
    pub usd: Decimal,
    pub observed_at: DateTime<Utc>,
}

/// A source of prices.
pub trait PriceFeed: Send + Sync {
    /// The source recorded with its prices, e.g. `http:prices.example`.
    fn name(&self) -> &str;
    /// The current prices of `coins`; coins the feed does not know are left out.
    fn fetch(&self, coins: &[String]) -> BoxFuture<'_, anyhow::Result<Vec<Quote>>>;
}

/// A feed speaking the JSON format of the module documentation over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpPriceFeed {
    base_url: String,
    client: reqwest::Client,
    name: String,
}

impl HttpPriceFeed {
    /// A feed at `base_url` (`http://host:port` or `https://host/prefix`)
    /// with the [`FEED_TIMEOUT`].
    pub fn new(base_url: &str) -> anyhow::Result<HttpPriceFeed> {
        Self::with_timeout(base_url, FEED_TIMEOUT)
    }

    /// Like [`Self::new`] with another timeout (tests).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> anyhow::Result<HttpPriceFeed> {
        let url = reqwest::Url::parse(base_url)
            .with_context(|| format!("price feed URL {base_url:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("price feed URL {base_url:?} must be http:// or https://");
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            anyhow::bail!(
                "price feed URL {base_url:?} must be a base URL without credentials, query or fragment"
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("price feed URL {base_url:?} has no host"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hashgrid-workers/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the price feed's HTTP client")?;
        Ok(HttpPriceFeed {
            name: format!("http:{host}"),
            base_url: url.as_str().trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn get(&self, coins: &[String]) -> anyhow::Result<Vec<Quote>> {
        if coins.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = coins.iter().find(|c| !prices::valid_coin(c)) {
            anyhow::bail!("{bad:?} is not a coin code");
        }
        // Coin codes are [A-Z0-9]: nothing to escape.
        let url = format!("{}/v1/prices?coins={}", self.base_url, coins.join(","));
        let mut res = self
            .client
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("price feed {} did not answer", self.name))?;
        let status = res.status();
        if !status.is_success() {
            anyhow::bail!("price feed {} answered {status}", self.name);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .with_context(|| format!("reading the answer of price feed {}", self.name))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                anyhow::bail!(
                    "price feed {} answered more than {MAX_BODY_BYTES} bytes",
                    self.name
                );
            }
            body.extend_from_slice(&chunk);
        }
        let quotes = parse_prices(&body)
            .with_context(|| format!("price feed {} answered malformed prices", self.name))?;
        let wanted: HashSet<&str> = coins.iter().map(String::as_str).collect();
        Ok(quotes
            .into_iter()
            .filter(|q| {
                let keep = wanted.contains(q.coin.as_str());
                if !keep {
                    tracing::debug!(coin = %q.coin, "price feed sent a coin that was not asked for");
                }
                keep
            })
            .collect())
    }
}

impl PriceFeed for HttpPriceFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch(&self, coins: &[String]) -> BoxFuture<'_, anyhow::Result<Vec<Quote>>> {
        let coins = coins.to_vec();
        Box::pin(async move { self.get(&coins).await })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBody {
    prices: Vec<WireQuote>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireQuote {
    coin: String,
    /// A string: serde refuses a JSON number here.
    usd: String,
    time: DateTime<Utc>,
}

/// Parses a feed's answer strictly (see the module documentation). One bad
/// entry makes the whole answer an error: a feed that sends one malformed
/// price cannot be trusted with the others.
pub fn parse_prices(body: &[u8]) -> anyhow::Result<Vec<Quote>> {
    let wire: WireBody = serde_json::from_slice(body).context("not the expected JSON")?;
    let mut seen = HashSet::new();
    let mut quotes = Vec::with_capacity(wire.prices.len());
    for (i, q) in wire.prices.into_iter().enumerate() {
        if !prices::valid_coin(&q.coin) {
            anyhow::bail!("prices[{i}].coin {:?} is not a coin code", q.coin);
        }
        if !seen.insert(q.coin.clone()) {
            anyhow::bail!("prices[{i}]: {} is listed twice", q.coin);
        }
        let usd = prices::parse_usd(&q.usd).map_err(|e| match e {
            PriceError::Invalid { message, .. } => {
                anyhow::anyhow!("prices[{i}].usd {:?}: {message}", q.usd)
            }
            other => anyhow::anyhow!("prices[{i}].usd {:?}: {other}", q.usd),
        })?;
        quotes.push(Quote {
            coin: q.coin,
            usd,
            observed_at: q.time,
        });
    }
    Ok(quotes)
}

/// What one fetch did.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {
    /// The prices stored.
    pub stored: Vec<PriceRow>,
    /// Quotes refused (dated in the future…), with the reason.
    pub refused: Vec<(String, String)>,
    /// Coins asked for that the feed did not price.
    pub missing: Vec<String>,
}

/// Fetches `coins` from `feed` and appends the quotes to `prices` with the
/// feed's name as source. A quote the domain refuses is logged and skipped;
/// the fetch fails when the feed fails or nothing at all could be stored.
pub async fn fetch_and_store(
    pool: &PgPool,
    feed: &dyn PriceFeed,
    coins: &[String],
) -> anyhow::Result<FetchReport> {
    let quotes = feed.fetch(coins).await?;
    let mut conn = pool.get().await?;
    let mut report = FetchReport::default();
    for quote in &quotes {
        match prices::post_price(
            &mut conn,
            &quote.coin,
            quote.usd,
            feed.name(),
            quote.observed_at,
        )
        .await
        {
            Ok(row) => report.stored.push(row),
            Err(e @ PriceError::Invalid { .. }) => {
                tracing::warn!(feed = feed.name(), coin = %quote.coin, error = %e, "price refused");
                report.refused.push((quote.coin.clone(), e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    report.missing = coins
        .iter()
        .filter(|c| !quotes.iter().any(|q| &q.coin == *c))
        .cloned()
        .collect();
    if !report.missing.is_empty() {
        tracing::warn!(feed = feed.name(), missing = ?report.missing, "price feed left coins out");
    }
    if report.stored.is_empty() && !coins.is_empty() {
        anyhow::bail!(
            "price feed {} gave no usable price (refused: {:?}, missing: {:?})",
            feed.name(),
            report.refused,
            report.missing
        );
    }
    tracing::info!(
        feed = feed.name(),
        stored = report.stored.len(),
        "prices fetched"
    );
    Ok(report)
}

/// [`COINS`] as owned strings.
pub fn coins() -> Vec<String> {
    COINS.iter().map(|c| (*c).to_owned()).collect()
}

/// The `fetch_prices` job with `feed`; without one it logs and does nothing.
pub async fn fetch_prices(ctx: &JobContext, feed: Option<&dyn PriceFeed>) -> anyhow::Result<()> {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let Some(feed) = feed else {
        if TOLD.swap(true, Ordering::Relaxed) {
            tracing::debug!("{FEED_URL_ENV} is not set: no prices fetched");
        } else {
            tracing::warn!(
                "{FEED_URL_ENV} is not set: prices are not fetched (post them with POST /admin/v1/prices)"
            );
        }
        return Ok(());
    };
    fetch_and_store(&ctx.pool, feed, &coins()).await?;
    Ok(())
}

static PROCESS_FEED: OnceLock<Option<Arc<dyn PriceFeed>>> = OnceLock::new();

/// The process's feed from `HASHGRID_PRICE_FEED_URL` (empty counts as
/// unset), built on first use. A bad URL fails every `fetch_prices` job
/// (visibly) until fixed.
pub fn process_feed() -> anyhow::Result<Option<Arc<dyn PriceFeed>>> {
    if let Some(feed) = PROCESS_FEED.get() {
        return Ok(feed.clone());
    }
    let feed: Option<Arc<dyn PriceFeed>> = match std::env::var(FEED_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            let feed = HttpPriceFeed::new(url.trim())
                .with_context(|| format!("{FEED_URL_ENV} is not usable"))?;
            tracing::info!(feed = feed.name(), "price feed configured");
            Some(Arc::new(feed))
        }
        _ => None,
    };
    Ok(PROCESS_FEED.get_or_init(|| feed).clone())
}

/// The `fetch_prices` job with the process's feed ([`process_feed`]).
pub async fn fetch_prices_job(ctx: JobContext) -> anyhow::Result<()> {
    let feed = process_feed()?;
    fetch_prices(&ctx, feed.as_deref()).await
}

#[derive(Debug, Default, Deserialize)]
struct FixingPayload {
    date: Option<NaiveDate>,
    scheduled_for: Option<DateTime<Utc>>,
}

/// The day a `price_fixing` job is about: its `date`, else the day it was
/// scheduled for, else today (UTC).
pub fn fixing_day(payload: &serde_json::Value, now: DateTime<Utc>) -> anyhow::Result<NaiveDate> {
    let p: FixingPayload = if payload.is_null() {
        FixingPayload::default()
    } else {
        serde_json::from_value(payload.clone())
            .context("price_fixing payload must be {\"date\": \"YYYY-MM-DD\"} or empty")?
    };
    Ok(p.date
        .or_else(|| p.scheduled_for.map(|t| t.date_naive()))
        .unwrap_or_else(|| now.date_naive()))
}

/// Fixes `day` and reports it; fails when no coin could be fixed (there
/// was no price in the 24 h before midnight).
pub async fn fix(pool: &PgPool, day: NaiveDate) -> anyhow::Result<Vec<Fixing>> {
    let mut conn = pool.get().await?;
    let fixings = prices::fix_day(&mut conn, day)
        .await
        .with_context(|| format!("fixing the prices of {day}"))?;
    let unfixed: Vec<&str> = COINS
        .iter()
        .copied()
        .filter(|c| !fixings.iter().any(|f| f.asset == *c))
        .collect();
    if fixings.is_empty() {
        anyhow::bail!("no price was observed in the 24 h before {day} 00:00 UTC: nothing to fix");
    }
    if !unfixed.is_empty() {
        tracing::warn!(%day, ?unfixed, "coins without a price in the 24 h before midnight");
    }
    tracing::info!(%day, fixed = fixings.len(), "prices fixed");
    Ok(fixings)
}

/// The `price_fixing` job.
pub async fn price_fixing_job(ctx: JobContext) -> anyhow::Result<()> {
    let day = fixing_day(&ctx.job.payload, Utc::now())?;
    fix(&ctx.pool, day).await?;
    Ok(())
}

/// Registers `fetch_prices` (with `feed`; none means it does nothing) and
/// `price_fixing` on `registry`.
pub fn register(registry: Registry, feed: Option<Arc<dyn PriceFeed>>) -> Registry {
    registry
        .register(FETCH_PRICES_JOB, move |ctx: JobContext| {
            let feed = feed.clone();
            async move { fetch_prices(&ctx, feed.as_deref()).await }
        })
        .register(PRICE_FIXING_JOB, price_fixing_job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let quotes = parse_prices(
            br#"{"prices": [{"coin": "BTC", "usd": "97000.12", "time": "2026-11-25T10:00:00Z"},
                            {"coin": "LTC", "usd": "91.5", "time": "2026-11-25T11:00:00+01:00"}]}"#,
        )
        .unwrap();
        assert_eq!(quotes.len(), 2);
        assert_eq!(quotes[0].coin, "BTC");
        assert_eq!(quotes[0].usd, Decimal::new(9_700_012, 2));
        assert_eq!(quotes[0].observed_at, quotes[1].observed_at);
    }

    #[test]
    fn refuses_anything_else() {
        for body in [
            r#"{"prices": [{"coin": "BTC", "usd": 97000.12, "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "-1", "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "0", "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "1e3", "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "1", "time": "2026-11-25T10:00:00Z", "x": 1}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "1"}]}"#,
            r#"{"prices": [{"coin": "btc", "usd": "1", "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "1", "time": "yesterday"}]}"#,
            r#"{"prices": [{"coin": "BTC", "usd": "1", "time": "2026-11-25T10:00:00Z"},
                           {"coin": "BTC", "usd": "2", "time": "2026-11-25T10:00:00Z"}]}"#,
            r#"{"prices": [], "extra": true}"#,
            r#"{"data": []}"#,
            r#"[]"#,
            "garbage",
            "",
        ] {
            assert!(parse_prices(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn fixing_day_from_payload() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = |v: serde_json::Value| fixing_day(&v, now).unwrap().to_string();
        assert_eq!(day(serde_json::json!({"date": "2026-11-20"})), "2026-11-20");
        assert_eq!(
            day(serde_json::json!({"scheduled_for": "2026-11-24T00:05:00Z"})),
            "2026-11-24"
        );
        assert_eq!(day(serde_json::json!({})), "2026-11-25");
        assert_eq!(day(serde_json::Value::Null), "2026-11-25");
        assert!(fixing_day(&serde_json::json!({"date": "25/11/2026"}), now).is_err());
    }

    #[test]
    fn feed_urls() {
        let feed = HttpPriceFeed::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(feed.name(), "http:127.0.0.1");
        assert_eq!(feed.base_url(), "http://127.0.0.1:8080");
        let feed = HttpPriceFeed::new("https://prices.example/api").unwrap();
        assert_eq!(feed.name(), "http:prices.example");
        assert_eq!(feed.base_url(), "https://prices.example/api");
        for bad in [
            "prices.example",
            "ftp://prices.example",
            "http://u:p@prices.example",
            "http://prices.example/?k=1",
        ] {
            assert!(HttpPriceFeed::new(bad).is_err(), "{bad}");
        }
    }
}
