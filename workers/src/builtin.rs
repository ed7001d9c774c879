//! The job kinds this binary runs, and their schedules.

use std::time::Duration;

use chrono::NaiveTime;
use domain::ledger;
use domain::outbox::jobs;
use domain::outbox::schedule::{Every, Schedule};

use crate::runner::{JobContext, Registry};

/// Checks invariants 1-3 over the whole ledger; fails (visibly, in the jobs
/// table and the logs) when anything does not reconcile.
pub async fn reconcile_ledger(ctx: JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let problems = ledger::reconcile(&mut conn).await?;
    if problems.is_empty() {
        tracing::info!("ledger reconciles");
        return Ok(());
    }
    for p in &problems {
        tracing::error!(problem = %p.problem, asset = %p.asset, account = ?p.account_id,
            expected = %p.expected, actual = %p.actual, "ledger does not reconcile");
    }
    anyhow::bail!("ledger does not reconcile: {} problem(s)", problems.len())
}

/// Deletes finished jobs older than 14 days.
pub async fn prune_jobs(ctx: JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let n = jobs::prune_finished(&mut conn, Duration::from_secs(14 * 86_400)).await?;
    tracing::info!(deleted = n, "pruned finished jobs");
    Ok(())
}

/// Does nothing: proves the queue end to end (`workers run-once noop`).
pub async fn noop(_ctx: JobContext) -> anyhow::Result<()> {
    Ok(())
}

pub fn registry() -> Registry {
    Registry::new()
        .register("noop", noop)
        .register("reconcile_ledger", reconcile_ledger)
        .register("prune_jobs", prune_jobs)
        .register("send_email", crate::mailer::send_email_job)
        .register(
            crate::lifecycle::CONTRACT_LIFECYCLE_JOB,
            crate::lifecycle::contract_lifecycle_job,
        )
        .register(
            crate::pricefeed::FETCH_PRICES_JOB,
            crate::pricefeed::fetch_prices_job,
        )
        .register(
            crate::pricefeed::PRICE_FIXING_JOB,
            crate::pricefeed::price_fixing_job,
        )
        .register(
            crate::pooladapter::IMPORT_POOL_EARNINGS_JOB,
            crate::pooladapter::import_pool_earnings_job,
        )
        .register(crate::settle::SETTLE_JOB, crate::settle::settle_job)
        .register(crate::carbon::CARBON_DAY_JOB, crate::carbon::carbon_day_job)
        .register(
            crate::custody::withdraw::SEND_WITHDRAWALS_JOB,
            crate::custody::withdraw::send_withdrawals_job,
        )
        .register(
            crate::custody::deposits::SCAN_DEPOSITS_JOB,
            crate::custody::deposits::scan_deposits_job,
        )
        .register(
            crate::custody::withdraw::EXPIRE_WITHDRAWALS_JOB,
            crate::custody::withdraw::expire_withdrawals_job,
        )
}

/// How often custody talks to the chain nodes (`HASHGRID_CUSTODY_TICK_SECS`, default 10).
fn custody_tick() -> u32 {
    std::env::var("HASHGRID_CUSTODY_TICK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(10)
}

/// The UTC hour of the daily settlement (`HASHGRID_SETTLE_HOUR`, default 2).
fn settle_hour() -> u32 {
    std::env::var("HASHGRID_SETTLE_HOUR")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|h| *h < 24)
        .unwrap_or(2)
}

pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule::new("reconcile_ledger", Every::Seconds(3600)),
        crate::lifecycle::schedule(),
        Schedule::new(
            "prune_jobs",
            Every::DailyAt(NaiveTime::from_hms_opt(3, 0, 0).unwrap_or(NaiveTime::MIN)),
        ),
        Schedule::new(crate::pricefeed::FETCH_PRICES_JOB, Every::Seconds(60)),
        Schedule::new(
            crate::pricefeed::PRICE_FIXING_JOB,
            Every::DailyAt(NaiveTime::from_hms_opt(0, 5, 0).unwrap_or(NaiveTime::MIN)),
        ),
        crate::pooladapter::schedule(),
        Schedule::new(
            crate::custody::withdraw::SEND_WITHDRAWALS_JOB,
            Every::Seconds(custody_tick()),
        ),
        Schedule::new(
            crate::custody::deposits::SCAN_DEPOSITS_JOB,
            Every::Seconds(custody_tick()),
        ),
        Schedule::new(
            crate::custody::withdraw::EXPIRE_WITHDRAWALS_JOB,
            Every::Seconds(60),
        ),
        // Yesterday's energy and emissions, an hour after settlement.
        Schedule::new(
            crate::carbon::CARBON_DAY_JOB,
            Every::DailyAt(
                NaiveTime::from_hms_opt((settle_hour() + 1) % 24, 30, 0).unwrap_or(NaiveTime::MIN),
            ),
        ),
        // Yesterday's imports that nothing settled yet (normally each import enqueues its own).
        Schedule::new(
            crate::settle::SETTLE_JOB,
            Every::DailyAt(NaiveTime::from_hms_opt(settle_hour(), 30, 0).unwrap_or(NaiveTime::MIN)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_custody_and_carbon_job_is_registered_and_scheduled() {
        let kinds = registry().kinds();
        let scheduled: Vec<String> = schedules().into_iter().map(|s| s.kind).collect();
        for job in [
            crate::custody::withdraw::SEND_WITHDRAWALS_JOB,
            crate::custody::withdraw::EXPIRE_WITHDRAWALS_JOB,
            crate::custody::deposits::SCAN_DEPOSITS_JOB,
            crate::carbon::CARBON_DAY_JOB,
        ] {
            assert!(kinds.contains(&job.to_owned()), "{job} registered");
            assert!(scheduled.contains(&job.to_owned()), "{job} scheduled");
        }
    }
}
