//! The `settle` job: settles imported pool earnings. Enqueued once per
//! import (unique key `settle:<import>`), daily for yesterday at
//! `HASHGRID_SETTLE_HOUR` UTC, and by `workers run-once settle --date D`.
//! Each import is settled once however many workers run: the settlement
//! row is unique per import and posting is idempotent by reference.

use chrono::{Duration, NaiveDate, Utc};
use domain::settlement::engine;

use crate::runner::JobContext;

pub const SETTLE_JOB: &str = "settle";

pub fn day_of(payload: &serde_json::Value) -> anyhow::Result<NaiveDate> {
    if let Some(d) = payload.get("date").and_then(|v| v.as_str()) {
        return Ok(d.parse()?);
    }
    // A scheduled run settles the day before the one it runs on.
    let at = payload
        .get("scheduled_for")
        .and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    Ok((at - Duration::days(1)).date_naive())
}

pub async fn settle_job(ctx: JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let imports = match ctx.job.payload.get("earning_id").and_then(|v| v.as_str()) {
        Some(id) => vec![id.parse()?],
        None => engine::unsettled_imports(&mut conn, day_of(&ctx.job.payload)?).await?,
    };
    for id in imports {
        let s = engine::settle(&mut conn, id)
            .await
            .map_err(|e| anyhow::anyhow!("settling {id}: {e}"))?;
        tracing::info!(settlement = %s.id, pool = %s.pool_id, day = %s.day, coin = %s.coin, contracts = s.contracts,
            net = %s.net_total, fees = %s.fees_total, house = %s.house, "settled");
    }
    Ok(())
}
