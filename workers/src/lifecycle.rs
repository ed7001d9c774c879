//! The `contract_lifecycle` job: every minute, activates contracts whose
//! start has come and expires those whose end has come, releasing their
//! hashrate (`domain::contracts::lifecycle::run_due`). Any number of
//! workers may run it at once: each transition happens once.

use chrono::Utc;
use domain::contracts::lifecycle;
use domain::outbox::schedule::{Every, Schedule};

use crate::runner::JobContext;

/// The job kind.
pub const CONTRACT_LIFECYCLE_JOB: &str = "contract_lifecycle";

/// How often it runs: a contract starts or ends at most this late.
pub const EVERY_SECONDS: u32 = 60;

/// Runs [`lifecycle::run_due`] at the current time. A failure fails the job
/// (the queue retries it); whatever was committed before stays done, and
/// the next run picks up the rest.
pub async fn contract_lifecycle_job(ctx: JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let report = lifecycle::run_due(&mut conn, Utc::now()).await?;
    if report.is_empty() {
        tracing::debug!("no contract due");
    } else {
        tracing::info!(
            activated = report.activated.len(),
            expired = report.expired.len(),
            "contract lifecycle"
        );
    }
    Ok(())
}

/// Its schedule, every [`EVERY_SECONDS`].
pub fn schedule() -> Schedule {
    Schedule::new(CONTRACT_LIFECYCLE_JOB, Every::Seconds(EVERY_SECONDS))
}
