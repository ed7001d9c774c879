//! The job runner: claims jobs, runs their handlers with a renewed lease,
//! records success or failure with backoff, and ticks the schedules. Any
//! number of runners (in one process or many) can share one database.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::db::PgPool;
use domain::outbox::jobs::{self, JobRow};
use domain::outbox::schedule::Schedule;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// What a handler gets: the job and a pool to work with.
#[derive(Clone)]
pub struct JobContext {
    pub pool: PgPool,
    pub job: JobRow,
    pub worker_id: Uuid,
}

type Handler = Arc<dyn Fn(JobContext) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Job kinds and their handlers.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Handler>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.handlers
            .insert(kind.to_owned(), Arc::new(move |ctx| handler(ctx).boxed()));
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    fn get(&self, kind: &str) -> Option<Handler> {
        self.handlers.get(kind).cloned()
    }
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once by this runner.
    pub concurrency: usize,
    /// How long to sleep when there is nothing to do.
    pub poll: Duration,
    /// How long a claim lasts without a heartbeat; renewed every third of it.
    pub lease: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long running jobs get to finish on shutdown.
    pub grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 4,
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(3600),
            grace: Duration::from_secs(25),
        }
    }
}

pub struct Runner {
    pool: PgPool,
    registry: Arc<Registry>,
    config: RunnerConfig,
    schedules: Vec<Schedule>,
    worker_id: Uuid,
}

impl Runner {
    pub fn new(pool: PgPool, registry: Registry, config: RunnerConfig) -> Self {
        Runner {
            pool,
            registry: Arc::new(registry),
            config,
            schedules: Vec::new(),
            worker_id: Uuid::new_v4(),
        }
    }

    pub fn with_schedules(mut self, schedules: Vec<Schedule>) -> Self {
        self.schedules = schedules;
        self
    }

    pub fn worker_id(&self) -> Uuid {
        self.worker_id
    }

    /// Runs until `shutdown` is cancelled, then lets running jobs finish
    /// within the grace period. A job still running after it keeps its
    /// lease until it expires, and another worker resumes it.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let kinds = self.registry.kinds();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut last_tick = None;
        tracing::info!(worker = %self.worker_id, ?kinds, "runner started");
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            if last_tick.is_none_or(|t: tokio::time::Instant| t.elapsed() >= Duration::from_secs(1))
            {
                last_tick = Some(tokio::time::Instant::now());
                if let Err(e) = self.tick_schedules().await {
                    tracing::warn!(error = %e, "scheduling failed; retrying");
                }
            }
            let free = self.config.concurrency.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                match self.claim(&kinds, free).await {
                    Ok(batch) => {
                        claimed = batch.len();
                        for job in batch {
                            running.spawn(execute(
                                self.pool.clone(),
                                self.registry.clone(),
                                self.config.clone(),
                                self.worker_id,
                                job,
                            ));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed; retrying"),
                }
            }
            if claimed == 0 || running.len() >= self.config.concurrency {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                }
            }
        }
        tracing::info!(worker = %self.worker_id, running = running.len(), "runner stopping");
        let drained = tokio::time::timeout(self.config.grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("jobs still running after the grace period; their leases will expire");
            running.abort_all();
        }
        Ok(())
    }

    async fn claim(&self, kinds: &[String], n: usize) -> anyhow::Result<Vec<JobRow>> {
        let mut conn = self.pool.get().await?;
        let limit = i64::try_from(n).unwrap_or(1);
        Ok(jobs::claim(&mut conn, self.worker_id, kinds, limit, self.config.lease).await?)
    }

    async fn tick_schedules(&self) -> anyhow::Result<()> {
        if self.schedules.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let now = Utc::now();
        for schedule in &self.schedules {
            if let Some(id) = schedule.tick(&mut conn, now).await? {
                tracing::info!(kind = %schedule.kind, job = id, "scheduled");
            }
        }
        Ok(())
    }

    /// Runs one job of `kind` now, in the foreground, and returns it as it ended.
    pub async fn run_once(&self, kind: &str, payload: serde_json::Value) -> anyhow::Result<JobRow> {
        if self.registry.get(kind).is_none() {
            anyhow::bail!(
                "no job kind {kind:?}; known kinds: {}",
                self.registry.kinds().join(", ")
            );
        }
        let mut conn = self.pool.get().await?;
        let id = jobs::enqueue(&mut conn, &jobs::NewJob::new(kind, payload).max_attempts(1))
            .await?
            .ok_or_else(|| anyhow::anyhow!("job was not enqueued"))?;
        let job = jobs::claim_by_id(&mut conn, id, self.worker_id, self.config.lease)
            .await?
            .ok_or_else(|| anyhow::anyhow!("job {id} was taken by another worker"))?;
        drop(conn);
        execute(
            self.pool.clone(),
            self.registry.clone(),
            self.config.clone(),
            self.worker_id,
            job,
        )
        .await;
        let mut conn = self.pool.get().await?;
        Ok(jobs::get(&mut conn, id).await?)
    }
}

/// Runs one claimed job: heartbeats while it runs, stops if the lease is
/// lost, then records the outcome (fenced by the worker id).
async fn execute(
    pool: PgPool,
    registry: Arc<Registry>,
    config: RunnerConfig,
    worker_id: Uuid,
    job: JobRow,
) {
    let span = tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempts);
    execute_in_span(pool, registry, config, worker_id, job)
        .instrument(span)
        .await;
}

async fn execute_in_span(
    pool: PgPool,
    registry: Arc<Registry>,
    config: RunnerConfig,
    worker_id: Uuid,
    job: JobRow,
) {
    let Some(handler) = registry.get(&job.kind) else {
        record_failure(
            &pool,
            &config,
            worker_id,
            &job,
            "no handler for this job kind",
            false,
        )
        .await;
        return;
    };
    let ctx = JobContext {
        pool: pool.clone(),
        job: job.clone(),
        worker_id,
    };
    let lost = CancellationToken::new();
    // Aborted when this task ends or is aborted itself: a dead job must not
    // keep its lease alive.
    let heartbeat = AbortOnDrop({
        let (pool, lost, lease) = (pool.clone(), lost.clone(), config.lease);
        let id = job.id;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let renewed = match pool.get().await {
                    Ok(mut conn) => jobs::heartbeat(&mut conn, id, worker_id, lease).await,
                    Err(e) => Err(jobs::JobError::Database(
                        diesel::result::Error::QueryBuilderError(e.to_string().into()),
                    )),
                };
                match renewed {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = id, "lease lost; stopping the job");
                        lost.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(job = id, error = %e, "heartbeat failed; retrying"),
                }
            }
        })
    });
    let outcome = tokio::select! {
        r = AssertUnwindSafe(handler(ctx)).catch_unwind() => Some(r),
        _ = lost.cancelled() => None,
    };
    drop(heartbeat);
    match outcome {
        None => {}
        Some(Ok(Ok(()))) => match pool.get().await {
            Ok(mut conn) => match jobs::complete(&mut conn, job.id, worker_id).await {
                Ok(true) => tracing::info!(job = job.id, kind = %job.kind, "job succeeded"),
                Ok(false) => tracing::warn!(job = job.id, "job finished after its lease was lost"),
                Err(e) => tracing::error!(job = job.id, error = %e, "recording success failed"),
            },
            Err(e) => tracing::error!(job = job.id, error = %e, "recording success failed"),
        },
        Some(Ok(Err(e))) => {
            record_failure(&pool, &config, worker_id, &job, &format!("{e:#}"), true).await;
        }
        Some(Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            record_failure(
                &pool,
                &config,
                worker_id,
                &job,
                &format!("panicked: {msg}"),
                true,
            )
            .await;
        }
    }
}

async fn record_failure(
    pool: &PgPool,
    config: &RunnerConfig,
    worker_id: Uuid,
    job: &JobRow,
    error: &str,
    retry: bool,
) {
    let retry_at = (retry && !job.is_last_attempt()).then(|| {
        let delay = jobs::backoff(
            job.attempts,
            config.backoff_base,
            config.backoff_cap,
            &mut rand::rng(),
        );
        Utc::now()
            + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::hours(1))
    });
    match retry_at {
        Some(at) => {
            tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, error, retry_at = %at, "job failed; will retry")
        }
        None => {
            tracing::error!(job = job.id, kind = %job.kind, attempt = job.attempts, error, "job failed for good")
        }
    }
    match pool.get().await {
        Ok(mut conn) => {
            if let Err(e) = jobs::fail(&mut conn, job.id, worker_id, error, retry_at).await {
                tracing::error!(job = job.id, error = %e, "recording failure failed");
            }
        }
        Err(e) => tracing::error!(job = job.id, error = %e, "recording failure failed"),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
