//! The job queue's storage. Jobs are enqueued in the caller's transaction,
//! claimed with `FOR UPDATE SKIP LOCKED` and held by a lease that the worker
//! renews while it runs; a job whose worker died is claimed again once its
//! lease has run out, and never while it is renewed. Completion is fenced by
//! the worker id, so a worker that lost its lease cannot finish a job that
//! another worker now holds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use crate::schema::jobs;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job kind must be 1 to 64 characters of [a-z0-9_]")]
    InvalidKind,
    #[error("job {0} does not exist")]
    NotFound(i64),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            _ => JobState::Queued,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    /// At most one job ever carries this key.
    pub unique_key: Option<String>,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        NewJob {
            kind: kind.into(),
            payload,
            unique_key: None,
            run_at: None,
            max_attempts: 5,
        }
    }

    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn at(mut self, run_at: DateTime<Utc>) -> Self {
        self.run_at = Some(run_at);
        self
    }

    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, Serialize)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub unique_key: Option<String>,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<Uuid>,
    pub lease_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    pub fn state(&self) -> JobState {
        JobState::parse(&self.state)
    }

    /// Whether this is the job's last allowed attempt.
    pub fn is_last_attempt(&self) -> bool {
        self.attempts >= self.max_attempts
    }
}

fn valid_kind(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Enqueues a job on `conn` (inside the caller's transaction if there is one).
/// Returns `None` when a job with the same unique key exists already.
pub async fn enqueue(conn: &mut AsyncPgConnection, job: &NewJob) -> Result<Option<i64>, JobError> {
    if !valid_kind(&job.kind) {
        return Err(JobError::InvalidKind);
    }
    let run_at = job.run_at.unwrap_or_else(Utc::now);
    let id = diesel::insert_into(jobs::table)
        .values((
            jobs::kind.eq(&job.kind),
            jobs::payload.eq(&job.payload),
            jobs::unique_key.eq(&job.unique_key),
            jobs::run_at.eq(run_at),
            jobs::max_attempts.eq(job.max_attempts.max(1)),
        ))
        .on_conflict(jobs::unique_key)
        .do_nothing()
        .returning(jobs::id)
        .get_result::<i64>(conn)
        .await
        .optional()?;
    Ok(id)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Claims up to `limit` runnable jobs (of `kinds`, or of any kind when empty)
/// for `worker` with a lease of `lease`. Jobs whose lease ran out on their
/// last attempt are marked failed instead of being run again.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker: Uuid,
    kinds: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<JobRow>, JobError> {
    diesel::sql_query(
        "UPDATE jobs SET state = 'failed', locked_by = NULL, lease_until = NULL, \
                finished_at = now(), \
                last_error = coalesce(last_error || '; ', '') || 'worker lost during the last attempt' \
         WHERE state = 'running' AND lease_until < now() AND attempts >= max_attempts",
    )
    .execute(conn)
    .await?;
    let rows = diesel::sql_query(
        "UPDATE jobs SET state = 'running', locked_by = $1, \
                lease_until = now() + $2 * interval '1 millisecond', attempts = attempts + 1 \
         WHERE id IN ( \
             SELECT id FROM jobs \
             WHERE ((state = 'queued' AND run_at <= now()) \
                    OR (state = 'running' AND lease_until < now())) \
               AND (cardinality($3::text[]) = 0 OR kind = ANY($3)) \
             ORDER BY run_at, id \
             LIMIT $4 \
             FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind::<diesel::sql_types::Uuid, _>(worker)
    .bind::<BigInt, _>(millis(lease))
    .bind::<Array<Text>, _>(kinds)
    .bind::<BigInt, _>(limit)
    .load::<JobRow>(conn)
    .await?;
    Ok(rows)
}

/// Claims one queued job by id (for running it in the foreground).
pub async fn claim_by_id(
    conn: &mut AsyncPgConnection,
    id: i64,
    worker: Uuid,
    lease: Duration,
) -> Result<Option<JobRow>, JobError> {
    Ok(diesel::sql_query(
        "UPDATE jobs SET state = 'running', locked_by = $2, \
                lease_until = now() + $3 * interval '1 millisecond', attempts = attempts + 1 \
         WHERE id = $1 AND state = 'queued' RETURNING *",
    )
    .bind::<BigInt, _>(id)
    .bind::<diesel::sql_types::Uuid, _>(worker)
    .bind::<BigInt, _>(millis(lease))
    .get_result::<JobRow>(conn)
    .await
    .optional()?)
}

/// Renews the lease; `false` means the worker lost the job and must stop.
pub async fn heartbeat(
    conn: &mut AsyncPgConnection,
    id: i64,
    worker: Uuid,
    lease: Duration,
) -> Result<bool, JobError> {
    let n = diesel::sql_query(
        "UPDATE jobs SET lease_until = now() + $3 * interval '1 millisecond' \
         WHERE id = $1 AND locked_by = $2 AND state = 'running'",
    )
    .bind::<BigInt, _>(id)
    .bind::<diesel::sql_types::Uuid, _>(worker)
    .bind::<BigInt, _>(millis(lease))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Marks the job done; `false` when `worker` no longer holds it.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: i64,
    worker: Uuid,
) -> Result<bool, JobError> {
    let n = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::locked_by.eq(worker))
            .filter(jobs::state.eq("running")),
    )
    .set((
        jobs::state.eq("succeeded"),
        jobs::locked_by.eq(None::<Uuid>),
        jobs::lease_until.eq(None::<DateTime<Utc>>),
        jobs::finished_at.eq(Utc::now()),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Records a failed attempt: the job runs again at `retry_at`, or, after its
/// last attempt (or when `retry_at` is `None`), it is kept as failed with
/// its error. `false` when `worker` no longer holds it.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    id: i64,
    worker: Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<bool, JobError> {
    let error: String = error.chars().take(4000).collect();
    let n = diesel::sql_query(
        "UPDATE jobs SET \
            state = CASE WHEN attempts >= max_attempts OR $4::timestamptz IS NULL \
                         THEN 'failed' ELSE 'queued' END, \
            run_at = coalesce($4::timestamptz, run_at), \
            finished_at = CASE WHEN attempts >= max_attempts OR $4::timestamptz IS NULL \
                               THEN now() END, \
            locked_by = NULL, lease_until = NULL, last_error = $3 \
         WHERE id = $1 AND locked_by = $2 AND state = 'running'",
    )
    .bind::<BigInt, _>(id)
    .bind::<diesel::sql_types::Uuid, _>(worker)
    .bind::<Text, _>(&error)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, _>(retry_at)
    .execute(conn)
    .await?;
    Ok(n == 1)
}

pub async fn get(conn: &mut AsyncPgConnection, id: i64) -> Result<JobRow, JobError> {
    jobs::table
        .find(id)
        .select(JobRow::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(JobError::NotFound(id))
}

/// Jobs per state, for metrics and the back office.
pub async fn count_by_state(conn: &mut AsyncPgConnection) -> Result<Vec<(String, i64)>, JobError> {
    Ok(jobs::table
        .group_by(jobs::state)
        .select((jobs::state, diesel::dsl::count_star()))
        .load(conn)
        .await?)
}

/// Deletes finished jobs older than `age`; returns how many.
pub async fn prune_finished(
    conn: &mut AsyncPgConnection,
    age: Duration,
) -> Result<usize, JobError> {
    let n = diesel::sql_query(
        "DELETE FROM jobs WHERE state IN ('succeeded', 'failed') \
           AND finished_at < now() - $1 * interval '1 second'",
    )
    .bind::<Integer, _>(i32::try_from(age.as_secs()).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(n)
}

/// Capped exponential backoff with full jitter: a delay drawn uniformly from
/// [base·2^(attempt−1) / 2, base·2^(attempt−1)], never more than `cap`.
pub fn backoff(attempt: i32, base: Duration, cap: Duration, rng: &mut impl Rng) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let ceiling = base.saturating_mul(2u32.saturating_pow(exp)).min(cap);
    let floor = ceiling / 2;
    let span = ceiling.saturating_sub(floor);
    floor + span.mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for attempt in 1..40 {
            let d = backoff(attempt, base, cap, &mut rng);
            let ceiling = (base * 2u32.pow(u32::try_from(attempt - 1).unwrap().min(30))).min(cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
            assert!(
                d >= ceiling / 2,
                "attempt {attempt}: {d:?} < half of {ceiling:?}"
            );
        }
        assert!(backoff(100, base, cap, &mut rng) <= cap);
    }

    #[test]
    fn job_kinds_are_checked() {
        assert!(valid_kind("settle_pool_day"));
        assert!(!valid_kind(""));
        assert!(!valid_kind("Settle"));
        assert!(!valid_kind(&"a".repeat(65)));
    }
}
