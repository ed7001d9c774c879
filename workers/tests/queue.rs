//! The job queue against the real PostgreSQL: exactly-once with several
//! runners, resumption after a worker dies, retries then failure, schedules.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::outbox::jobs::{self, NewJob};
use domain::outbox::schedule::{Every, Schedule};
use testkit::TestDb;
use tokio_util::sync::CancellationToken;
use workers::runner::{JobContext, Registry, Runner, RunnerConfig};

fn fast(lease_ms: u64) -> RunnerConfig {
    RunnerConfig {
        concurrency: 4,
        poll: Duration::from_millis(20),
        lease: Duration::from_millis(lease_ms),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(40),
        grace: Duration::from_secs(5),
    }
}

async fn runs_table(db: &TestDb) {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(
        "CREATE TABLE test_runs (job_id BIGINT NOT NULL, worker TEXT NOT NULL, \
         at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn record_run(ctx: &JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    diesel::sql_query("INSERT INTO test_runs (job_id, worker) VALUES ($1, $2)")
        .bind::<BigInt, _>(ctx.job.id)
        .bind::<Text, _>(ctx.worker_id.to_string())
        .execute(&mut conn)
        .await?;
    Ok(())
}

#[derive(diesel::QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn wait_until(db: &TestDb, sql: &str, expected: i64, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = count(db, sql).await;
        if n == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {sql} = {n}, want {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runners_run_a_thousand_jobs_each_exactly_once() {
    let db = TestDb::with_pool_size(24).await.unwrap();
    runs_table(&db).await;
    {
        // Enqueued inside one transaction of the caller.
        let mut conn = db.conn().await.unwrap();
        conn.transaction(async |c| {
            for i in 0..1000 {
                jobs::enqueue(c, &NewJob::new("record", serde_json::json!({ "i": i }))).await?;
            }
            Ok::<_, jobs::JobError>(())
        })
        .await
        .unwrap();
    }
    let registry =
        Registry::new().register(
            "record",
            |ctx: JobContext| async move { record_run(&ctx).await },
        );
    let shutdown = CancellationToken::new();
    let a = Runner::new(db.pool(), registry.clone(), fast(5_000));
    let b = Runner::new(db.pool(), registry, fast(5_000));
    let ta = tokio::spawn(a.run(shutdown.clone()));
    let tb = tokio::spawn(b.run(shutdown.clone()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE state = 'succeeded'",
        1000,
        Duration::from_secs(120),
    )
    .await;
    shutdown.cancel();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();

    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM test_runs").await,
        1000
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT job_id) AS n FROM test_runs").await,
        1000
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM jobs WHERE attempts <> 1").await,
        0
    );
    let workers = count(&db, "SELECT count(DISTINCT worker) AS n FROM test_runs").await;
    println!("1000 jobs on two runners: each ran once; {workers} runners took part");
    assert_eq!(workers, 2, "both runners should have taken jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_is_never_taken_from_a_live_worker() {
    let db = TestDb::new().await.unwrap();
    runs_table(&db).await;
    let id = {
        let mut conn = db.conn().await.unwrap();
        jobs::enqueue(&mut conn, &NewJob::new("slow", serde_json::json!({})))
            .await
            .unwrap()
            .unwrap()
    };
    // The job runs for six leases; the heartbeat keeps it.
    let registry = Registry::new().register("slow", |ctx: JobContext| async move {
        record_run(&ctx).await?;
        tokio::time::sleep(Duration::from_millis(1800)).await;
        Ok(())
    });
    let shutdown = CancellationToken::new();
    let ta =
        tokio::spawn(Runner::new(db.pool(), registry.clone(), fast(300)).run(shutdown.clone()));
    let tb = tokio::spawn(Runner::new(db.pool(), registry, fast(300)).run(shutdown.clone()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE state = 'succeeded'",
        1,
        Duration::from_secs(20),
    )
    .await;
    shutdown.cancel();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert_eq!(count(&db, "SELECT count(*) AS n FROM test_runs").await, 1);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(jobs::get(&mut conn, id).await.unwrap().attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_workers_job_is_resumed_after_its_lease() {
    let db = TestDb::new().await.unwrap();
    runs_table(&db).await;
    let id = {
        let mut conn = db.conn().await.unwrap();
        jobs::enqueue(&mut conn, &NewJob::new("work", serde_json::json!({})))
            .await
            .unwrap()
            .unwrap()
    };
    // Worker A starts the job and hangs; then it dies (its task is aborted:
    // no more heartbeats, no completion).
    let hang = Registry::new().register("work", |ctx: JobContext| async move {
        record_run(&ctx).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let a = tokio::spawn(Runner::new(db.pool(), hang, fast(1_000)).run(CancellationToken::new()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM test_runs",
        1,
        Duration::from_secs(10),
    )
    .await;
    a.abort();
    let _ = a.await;
    let killed_at = tokio::time::Instant::now();

    let done = Registry::new().register(
        "work",
        |ctx: JobContext| async move { record_run(&ctx).await },
    );
    let shutdown = CancellationToken::new();
    let b = tokio::spawn(Runner::new(db.pool(), done, fast(1_000)).run(shutdown.clone()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE state = 'succeeded'",
        1,
        Duration::from_secs(10),
    )
    .await;
    shutdown.cancel();
    b.await.unwrap().unwrap();

    let mut conn = db.conn().await.unwrap();
    let job = jobs::get(&mut conn, id).await.unwrap();
    assert_eq!(job.attempts, 2);
    assert_eq!(
        count(&db, "SELECT count(DISTINCT worker) AS n FROM test_runs").await,
        2
    );
    // B could only take it once A's lease (1 s from its last heartbeat) ran out.
    let gap_ms = count(
        &db,
        "SELECT (extract(epoch FROM max(at) - min(at)) * 1000)::bigint AS n FROM test_runs",
    )
    .await;
    println!(
        "resumed after {gap_ms} ms (lease 1000 ms); waited {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(gap_ms >= 600, "resumed too early: {gap_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_retries_then_fails_with_its_error() {
    let db = TestDb::new().await.unwrap();
    runs_table(&db).await;
    let (failing, panicking) = {
        let mut conn = db.conn().await.unwrap();
        (
            jobs::enqueue(
                &mut conn,
                &NewJob::new("flaky", serde_json::json!({})).max_attempts(3),
            )
            .await
            .unwrap()
            .unwrap(),
            jobs::enqueue(
                &mut conn,
                &NewJob::new("boom", serde_json::json!({})).max_attempts(2),
            )
            .await
            .unwrap()
            .unwrap(),
        )
    };
    let registry = Registry::new()
        .register("flaky", |ctx: JobContext| async move {
            record_run(&ctx).await?;
            anyhow::bail!("pool API answered 502 on attempt {}", ctx.job.attempts)
        })
        .register("boom", |ctx: JobContext| async move {
            record_run(&ctx).await?;
            panic!("handler bug on attempt {}", ctx.job.attempts)
        });
    let shutdown = CancellationToken::new();
    let t = tokio::spawn(Runner::new(db.pool(), registry, fast(5_000)).run(shutdown.clone()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE state = 'failed'",
        2,
        Duration::from_secs(20),
    )
    .await;
    shutdown.cancel();
    t.await.unwrap().unwrap();

    let mut conn = db.conn().await.unwrap();
    let job = jobs::get(&mut conn, failing).await.unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 3));
    assert_eq!(
        job.last_error.as_deref(),
        Some("pool API answered 502 on attempt 3")
    );
    assert!(job.finished_at.is_some() && job.locked_by.is_none());
    let job = jobs::get(&mut conn, panicking).await.unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 2));
    assert!(
        job.last_error
            .unwrap()
            .contains("panicked: handler bug on attempt 2")
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM test_runs").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_enqueues_once_however_many_workers_tick() {
    let db = TestDb::with_pool_size(16).await.unwrap();
    let schedule = Schedule::new(
        "settle_pool_day",
        Every::DailyAt(chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap()),
    );
    let now = chrono::Utc::now();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (pool, schedule) = (db.pool(), schedule.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            schedule.tick(&mut conn, now).await.unwrap()
        }));
    }
    let mut enqueued = 0;
    for t in tasks {
        enqueued += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(enqueued, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM jobs WHERE kind = 'settle_pool_day'"
        )
        .await,
        1
    );

    // Runners tick their schedules too: two of them, one job per occurrence.
    let registry = Registry::new().register("tick", |_ctx: JobContext| async move { Ok(()) });
    let shutdown = CancellationToken::new();
    let every_hour = vec![Schedule::new("tick", Every::Seconds(3600))];
    let ta = tokio::spawn(
        Runner::new(db.pool(), registry.clone(), fast(5_000))
            .with_schedules(every_hour.clone())
            .run(shutdown.clone()),
    );
    let tb = tokio::spawn(
        Runner::new(db.pool(), registry, fast(5_000))
            .with_schedules(every_hour)
            .run(shutdown.clone()),
    );
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'tick' AND state = 'succeeded'",
        1,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM jobs WHERE kind = 'tick'").await,
        1
    );
}

#[tokio::test]
async fn enqueue_belongs_to_the_callers_transaction() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let result: Result<(), jobs::JobError> = conn
        .transaction(async |c| {
            jobs::enqueue(c, &NewJob::new("noop", serde_json::json!({}))).await?;
            Err(jobs::JobError::InvalidKind) // the caller's change fails: the job goes with it
        })
        .await;
    assert!(result.is_err());
    assert_eq!(count(&db, "SELECT count(*) AS n FROM jobs").await, 0);
    // A unique key enqueues once.
    let job = NewJob::new("noop", serde_json::json!({})).unique("once");
    assert!(jobs::enqueue(&mut conn, &job).await.unwrap().is_some());
    assert!(jobs::enqueue(&mut conn, &job).await.unwrap().is_none());
    assert!(matches!(
        jobs::enqueue(&mut conn, &NewJob::new("Bad Kind", serde_json::json!({}))).await,
        Err(jobs::JobError::InvalidKind)
    ));
}

#[tokio::test]
async fn run_once_runs_a_builtin_job_now() {
    let db = TestDb::new().await.unwrap();
    let runner = Runner::new(db.pool(), workers::builtin::registry(), fast(5_000));
    let job = runner
        .run_once("reconcile_ledger", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("succeeded", 1));
    assert!(
        runner
            .run_once("no_such_job", serde_json::json!({}))
            .await
            .is_err()
    );
}
