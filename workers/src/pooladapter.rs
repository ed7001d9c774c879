//! What the pools earned, fetched from their APIs and imported.
//!
//! Job `import_pool_earnings` (daily at 01:00 UTC): for every pool with an
//! `external_account`, asks the pool API configured by
//! `HASHGRID_POOL_API_URL` for the day's earnings and imports each coin with
//! [`domain::settlement::earnings::import`]. A coin already imported is
//! skipped (not an error), so a rerun only fills the gaps. The payload may
//! name the day, `{"date": "YYYY-MM-DD"}`; otherwise it is the day before
//! the one the job was scheduled for (or before today, UTC). Without the
//! variable the job logs and does nothing (earnings can still be imported
//! through `POST /admin/v1/pool-earnings`). The job fails, and so is
//! retried, when a pool could not be fetched or an earning was refused;
//! what could be imported stays imported.
//!
//! The pool API's format ([`HttpPoolAdapter`]):
//! `GET {base_url}/v1/accounts/{account}/earnings?day=YYYY-MM-DD` answers
//!
//! ```json
//! {"account": "acct-1", "day": "2026-11-24",
//!  "earnings": [{"coin": "BTC", "amount": "0.01234567", "delivered_hashrate": "100.5",
//!                "difficulty": "86390000000000", "payout_txids": ["…"]}]}
//! ```
//!
//! Decimals are strings (a JSON number, an unknown or missing field, another
//! account or day, and a coin listed twice make the whole answer an error).
//! Requests time out after 5 s; an answer other than 2xx (redirects
//! included) is an error.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::catalog::admin::parse_decimal;
use domain::catalog::model::Pool;
use domain::db::PgPool;
use domain::outbox::schedule::{Every, Schedule};
use domain::schema::pools;
use domain::settlement::earnings::{self, EarningError, NewEarning, PoolEarning};
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::runner::{JobContext, Registry};

/// The job that imports the pools' earnings.
pub const IMPORT_POOL_EARNINGS_JOB: &str = "import_pool_earnings";
/// The variable naming the pool API's base URL.
pub const POOL_API_URL_ENV: &str = "HASHGRID_POOL_API_URL";
/// How long one request to the pool API may take, connecting included.
pub const ADAPTER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from a pool API.
const MAX_BODY_BYTES: usize = 4 << 20;

/// One coin a pool paid for a day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterEarning {
    pub coin: String,
    /// Whole coins.
    pub amount: Decimal,
    pub delivered_hashrate: Decimal,
    pub difficulty: Decimal,
    pub payout_txids: Vec<String>,
}

/// A source of pool earnings.
pub trait PoolAdapter: Send + Sync {
    /// The source recorded with its imports, e.g. `http:pool.example`.
    fn name(&self) -> &str;
    /// What `pool_external_account` earned on `day`, one entry per coin.
    fn fetch_day(
        &self,
        pool_external_account: &str,
        day: NaiveDate,
    ) -> BoxFuture<'_, anyhow::Result<Vec<AdapterEarning>>>;
}

/// An adapter speaking the JSON format of the module documentation.
#[derive(Debug, Clone)]
pub struct HttpPoolAdapter {
    base_url: reqwest::Url,
    client: reqwest::Client,
    name: String,
}

impl HttpPoolAdapter {
    /// An adapter for `base_url` (`http://host:port` or `https://host/prefix`)
    /// with the [`ADAPTER_TIMEOUT`].
    pub fn new(base_url: &str) -> anyhow::Result<HttpPoolAdapter> {
        Self::with_timeout(base_url, ADAPTER_TIMEOUT)
    }

    /// Like [`Self::new`] with another timeout (tests).
    pub fn with_timeout(base_url: &str, timeout: Duration) -> anyhow::Result<HttpPoolAdapter> {
        let url = reqwest::Url::parse(base_url)
            .with_context(|| format!("pool API URL {base_url:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("pool API URL {base_url:?} must be http:// or https://");
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            anyhow::bail!(
                "pool API URL {base_url:?} must be a base URL without credentials, query or fragment"
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("pool API URL {base_url:?} has no host"))?
            .to_owned();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hashgrid-workers/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the pool API's HTTP client")?;
        Ok(HttpPoolAdapter {
            name: format!("http:{host}"),
            base_url: url,
            client,
        })
    }

    /// The request URL of `account` and `day` (the account is escaped).
    pub fn day_url(&self, account: &str, day: NaiveDate) -> anyhow::Result<reqwest::Url> {
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("pool API URL cannot have a path"))?
            .pop_if_empty()
            .extend(["v1", "accounts", account, "earnings"]);
        url.query_pairs_mut()
            .append_pair("day", &day.format("%Y-%m-%d").to_string());
        Ok(url)
    }

    async fn get(&self, account: &str, day: NaiveDate) -> anyhow::Result<Vec<AdapterEarning>> {
        if account.trim().is_empty() {
            anyhow::bail!("an empty pool account");
        }
        let url = self.day_url(account, day)?;
        let mut res = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("pool API {} did not answer", self.name))?;
        let status = res.status();
        if !status.is_success() {
            anyhow::bail!("pool API {} answered {status}", self.name);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .with_context(|| format!("reading the answer of pool API {}", self.name))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                anyhow::bail!(
                    "pool API {} answered more than {MAX_BODY_BYTES} bytes",
                    self.name
                );
            }
            body.extend_from_slice(&chunk);
        }
        parse_earnings(&body, account, day).with_context(|| {
            format!(
                "pool API {} answered malformed earnings for {account} on {day}",
                self.name
            )
        })
    }
}

impl PoolAdapter for HttpPoolAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch_day(
        &self,
        pool_external_account: &str,
        day: NaiveDate,
    ) -> BoxFuture<'_, anyhow::Result<Vec<AdapterEarning>>> {
        let account = pool_external_account.to_owned();
        Box::pin(async move { self.get(&account, day).await })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBody {
    account: String,
    day: String,
    earnings: Vec<WireEarning>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEarning {
    coin: String,
    /// Strings: serde refuses JSON numbers here.
    amount: String,
    delivered_hashrate: String,
    difficulty: String,
    payout_txids: Vec<String>,
}

fn valid_coin(c: &str) -> bool {
    (2..=10).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Parses a pool API's answer about `account` on `day` strictly (see the
/// module documentation): one bad entry makes the whole answer an error.
pub fn parse_earnings(
    body: &[u8],
    account: &str,
    day: NaiveDate,
) -> anyhow::Result<Vec<AdapterEarning>> {
    let wire: WireBody = serde_json::from_slice(body).context("not the expected JSON")?;
    if wire.account != account {
        anyhow::bail!("about account {:?}, not {account:?}", wire.account);
    }
    let wire_day = NaiveDate::parse_from_str(&wire.day, "%Y-%m-%d")
        .with_context(|| format!("day {:?} is not YYYY-MM-DD", wire.day))?;
    if wire_day != day || wire.day.len() != 10 {
        anyhow::bail!("about day {:?}, not {day}", wire.day);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(wire.earnings.len());
    for (i, e) in wire.earnings.into_iter().enumerate() {
        if !valid_coin(&e.coin) {
            anyhow::bail!("earnings[{i}].coin {:?} is not a coin code", e.coin);
        }
        if !seen.insert(e.coin.clone()) {
            anyhow::bail!("earnings[{i}]: {} is listed twice", e.coin);
        }
        let decimal = |field: &str, s: &str| {
            parse_decimal(s).ok_or_else(|| {
                anyhow::anyhow!("earnings[{i}].{field} {s:?} is not a plain decimal string")
            })
        };
        out.push(AdapterEarning {
            amount: decimal("amount", &e.amount)?,
            delivered_hashrate: decimal("delivered_hashrate", &e.delivered_hashrate)?,
            difficulty: decimal("difficulty", &e.difficulty)?,
            coin: e.coin,
            payout_txids: e.payout_txids,
        });
    }
    Ok(out)
}

/// What one import run did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The imports stored.
    pub imported: Vec<PoolEarning>,
    /// Pool and coin already imported for the day: left as they are.
    pub skipped: Vec<(Uuid, String)>,
    /// Pool (and coin, when the fetch worked) that failed, with the reason.
    pub failed: Vec<(Uuid, Option<String>, String)>,
}

/// Fetches `day` from `adapter` for every pool with an external account and
/// imports each coin; already imported coins are skipped. A failure of one
/// pool or coin does not stop the others; it is in the report.
pub async fn import_day(
    db: &PgPool,
    adapter: &dyn PoolAdapter,
    day: NaiveDate,
) -> anyhow::Result<ImportReport> {
    let mut conn = db.get().await?;
    let targets: Vec<Pool> = pools::table
        .filter(pools::external_account.ne(""))
        .select(Pool::as_select())
        .order((pools::name, pools::id))
        .load(&mut conn)
        .await
        .context("loading the pools")?;
    let mut report = ImportReport::default();
    for pool in &targets {
        let fetched = match adapter.fetch_day(&pool.external_account, day).await {
            Ok(fetched) => fetched,
            Err(e) => {
                tracing::warn!(pool = %pool.id, adapter = adapter.name(), %day, error = format!("{e:#}"), "pool earnings not fetched");
                report.failed.push((pool.id, None, format!("{e:#}")));
                continue;
            }
        };
        for earning in fetched {
            let new = NewEarning {
                pool_id: pool.id,
                day,
                coin: earning.coin.clone(),
                amount: earning.amount,
                delivered_hashrate: earning.delivered_hashrate,
                difficulty: earning.difficulty,
                pool_tx_ids: earning.payout_txids,
                source: adapter.name().to_owned(),
                corrects: None,
            };
            match earnings::import(&mut conn, &new).await {
                Ok(row) => report.imported.push(row),
                Err(EarningError::Duplicate { .. }) => {
                    tracing::debug!(pool = %pool.id, coin = %earning.coin, %day, "already imported");
                    report.skipped.push((pool.id, earning.coin));
                }
                Err(EarningError::Database(e)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(pool = %pool.id, coin = %earning.coin, %day, error = %e, "pool earning refused");
                    report
                        .failed
                        .push((pool.id, Some(earning.coin), e.to_string()));
                }
            }
        }
    }
    tracing::info!(
        adapter = adapter.name(),
        %day,
        imported = report.imported.len(),
        skipped = report.skipped.len(),
        failed = report.failed.len(),
        "pool earnings imported"
    );
    Ok(report)
}

#[derive(Debug, Default, Deserialize)]
struct ImportPayload {
    date: Option<NaiveDate>,
    scheduled_for: Option<DateTime<Utc>>,
}

/// The day an `import_pool_earnings` job is about: its `date`, else the day
/// before the one it was scheduled for, else yesterday (UTC).
pub fn import_day_of(payload: &serde_json::Value, now: DateTime<Utc>) -> anyhow::Result<NaiveDate> {
    let p: ImportPayload = if payload.is_null() {
        ImportPayload::default()
    } else {
        serde_json::from_value(payload.clone()).with_context(|| {
            format!(
                "{IMPORT_POOL_EARNINGS_JOB} payload must be {{\"date\": \"YYYY-MM-DD\"}} or empty"
            )
        })?
    };
    if let Some(date) = p.date {
        return Ok(date);
    }
    let base = p.scheduled_for.unwrap_or(now).date_naive();
    base.checked_sub_days(Days::new(1))
        .ok_or_else(|| anyhow::anyhow!("no day before {base}"))
}

/// The `import_pool_earnings` job with `adapter`; without one it logs and
/// does nothing.
pub async fn import_pool_earnings(
    ctx: &JobContext,
    adapter: Option<&dyn PoolAdapter>,
) -> anyhow::Result<()> {
    static TOLD: AtomicBool = AtomicBool::new(false);
    let Some(adapter) = adapter else {
        if TOLD.swap(true, Ordering::Relaxed) {
            tracing::debug!("{POOL_API_URL_ENV} is not set: no pool earnings imported");
        } else {
            tracing::warn!(
                "{POOL_API_URL_ENV} is not set: pool earnings are not imported (post them with POST /admin/v1/pool-earnings)"
            );
        }
        return Ok(());
    };
    let day = import_day_of(&ctx.job.payload, Utc::now())?;
    let report = import_day(&ctx.pool, adapter, day).await?;
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} pool earning(s) of {day} not imported: {:?}",
            report.failed.len(),
            report.failed
        );
    }
    Ok(())
}

static PROCESS_ADAPTER: OnceLock<Option<Arc<dyn PoolAdapter>>> = OnceLock::new();

/// The process's adapter from `HASHGRID_POOL_API_URL` (empty counts as
/// unset), built on first use. A bad URL fails every job until fixed.
pub fn process_adapter() -> anyhow::Result<Option<Arc<dyn PoolAdapter>>> {
    if let Some(adapter) = PROCESS_ADAPTER.get() {
        return Ok(adapter.clone());
    }
    let adapter: Option<Arc<dyn PoolAdapter>> = match std::env::var(POOL_API_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            let adapter = HttpPoolAdapter::new(url.trim())
                .with_context(|| format!("{POOL_API_URL_ENV} is not usable"))?;
            tracing::info!(adapter = adapter.name(), "pool API configured");
            Some(Arc::new(adapter))
        }
        _ => None,
    };
    Ok(PROCESS_ADAPTER.get_or_init(|| adapter).clone())
}

/// The `import_pool_earnings` job with the process's adapter.
pub async fn import_pool_earnings_job(ctx: JobContext) -> anyhow::Result<()> {
    let adapter = process_adapter()?;
    import_pool_earnings(&ctx, adapter.as_deref()).await
}

/// Registers `import_pool_earnings` with `adapter` (none: it does nothing).
pub fn register(registry: Registry, adapter: Option<Arc<dyn PoolAdapter>>) -> Registry {
    registry.register(IMPORT_POOL_EARNINGS_JOB, move |ctx: JobContext| {
        let adapter = adapter.clone();
        async move { import_pool_earnings(&ctx, adapter.as_deref()).await }
    })
}

/// Daily at 01:00 UTC, after the pools close the day.
pub fn schedule() -> Schedule {
    Schedule::new(
        IMPORT_POOL_EARNINGS_JOB,
        Every::DailyAt(NaiveTime::from_hms_opt(1, 0, 0).unwrap_or(NaiveTime::MIN)),
    )
}
