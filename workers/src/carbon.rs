//! The `carbon_day` job: computes a day's energy and emissions (by default
//! yesterday's, an hour after settlement; `workers run-once carbon_day
//! --date D` for any day). Each contract-day is stored once; a re-run
//! computes only what is missing. After the last day of a month it retires
//! carbon credits against that month's market-based emissions.

use chrono::Datelike;
use domain::carbon::{daily, report};

use crate::runner::JobContext;

pub const CARBON_DAY_JOB: &str = "carbon_day";

pub async fn carbon_day_job(ctx: JobContext) -> anyhow::Result<()> {
    let day = crate::settle::day_of(&ctx.job.payload)?;
    let mut conn = ctx.pool.get().await?;
    let done = daily::compute_day(&mut conn, day).await?;
    tracing::info!(
        %day,
        facilities = done.facilities,
        contract_days = done.contract_days,
        metered = done.metered_facilities,
        already = done.already_computed,
        "carbon day computed"
    );
    if !done.errors.is_empty() {
        anyhow::bail!("carbon day {day}: {}", done.errors.join("; "));
    }
    if day
        .succ_opt()
        .is_some_and(|next| next.month() != day.month())
    {
        let (retired, short) = report::retire_month(&mut conn, day).await?;
        tracing::info!(%day, retired, short, "carbon credits retired for the month");
        if short > 0 {
            tracing::warn!(%day, short, "not enough carbon credits to cover the month");
        }
    }
    Ok(())
}
