//! The mailer end to end: e-mails queued in the outbox are delivered by the
//! job runner to a real SMTP server (the testkit sink) once, retried when
//! the server is down, and written as .eml files without SMTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use domain::outbox::email::{self, EmailTemplate};
use domain::outbox::jobs::JobRow;
use lettre::message::Mailbox;
use testkit::TestDb;
use testkit::smtp::{ReceivedMessage, SmtpSink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workers::mailer::{self, Mailer, SendOutcome, Transport};
use workers::runner::{Registry, Runner, RunnerConfig};

fn fast(backoff: Duration) -> RunnerConfig {
    RunnerConfig {
        concurrency: 4,
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(5),
        backoff_base: backoff,
        backoff_cap: backoff,
        grace: Duration::from_secs(5),
    }
}

fn sender() -> Mailbox {
    "Hashgrid <no-reply@hashgrid.test>".parse().unwrap()
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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Renders and queues an e-mail whose link carries `token`.
async fn queue(db: &TestDb, template: EmailTemplate, to: &str, token: &str) -> Uuid {
    let link = format!("https://app.example/{}?token={token}", template.name());
    let mail = email::render(
        template,
        to,
        &[("link", link.as_str()), ("expires_in", "1 hour")],
    )
    .unwrap();
    let mut conn = db.conn().await.unwrap();
    email::queue(&mut conn, &mail).await.unwrap()
}

async fn send_email_job(db: &TestDb) -> JobRow {
    use diesel::{ExpressionMethods, QueryDsl, SelectableHelper};
    use domain::schema::jobs;
    let mut conn = db.conn().await.unwrap();
    jobs::table
        .filter(jobs::kind.eq("send_email"))
        .select(JobRow::as_select())
        .first(&mut conn)
        .await
        .unwrap()
}

fn is_multipart_alternative(m: &ReceivedMessage) -> bool {
    let lower = m.data.to_ascii_lowercase();
    m.header("Content-Type")
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/alternative"))
        && lower.contains("content-type: text/plain")
        && lower.contains("content-type: text/html")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_mail_is_delivered_once_through_smtp() {
    let db = TestDb::new().await.unwrap();
    let sink = SmtpSink::start().await.unwrap();
    let mailer = Arc::new(Mailer::new(Transport::smtp(&sink.url()).unwrap(), sender()));
    let alice = queue(
        &db,
        EmailTemplate::VerifyEmail,
        "alice@example.com",
        "verifyAlice_123",
    )
    .await;
    let bob = queue(
        &db,
        EmailTemplate::PasswordReset,
        "bob@example.com",
        "resetBob-456",
    )
    .await;

    let registry = mailer::register(Registry::new(), mailer.clone());
    let shutdown = CancellationToken::new();
    let runner = Runner::new(db.pool(), registry.clone(), fast(Duration::from_millis(50)));
    let task = tokio::spawn(runner.run(shutdown.clone()));
    let mut received = sink.wait_for(2, Duration::from_secs(30)).await.unwrap();
    wait_until(
        &db,
        "SELECT count(*) AS n FROM emails WHERE sent_at IS NOT NULL",
        2,
        Duration::from_secs(10),
    )
    .await;
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'send_email' AND state = 'succeeded'",
        2,
        Duration::from_secs(10),
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    received.sort_by(|a, b| a.to.cmp(&b.to));
    let [a, b] = &received[..] else {
        panic!("expected 2 messages, got {}", received.len())
    };
    assert_eq!(a.from, "no-reply@hashgrid.test");
    assert_eq!(a.to, vec!["alice@example.com"]);
    assert_eq!(
        a.subject().as_deref(),
        Some("Confirm your Hashgrid e-mail address")
    );
    assert_eq!(a.find_token().as_deref(), Some("verifyAlice_123"));
    assert_eq!(
        a.header("Message-ID"),
        Some(format!("<{alice}@hashgrid.test>"))
    );
    assert_eq!(b.to, vec!["bob@example.com"]);
    assert_eq!(b.subject().as_deref(), Some("Reset your Hashgrid password"));
    assert_eq!(b.find_token().as_deref(), Some("resetBob-456"));
    assert_eq!(
        b.header("Message-ID"),
        Some(format!("<{bob}@hashgrid.test>"))
    );
    for m in [a, b] {
        assert!(is_multipart_alternative(m), "{}", m.data);
        assert!(m.body_contains("If this wasn't you"));
        assert!(m.body_contains("<a href=\"https://app.example/"));
        assert_eq!(
            m.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
    }

    // Running the job again for an e-mail already sent sends nothing.
    let runner = Runner::new(db.pool(), registry, fast(Duration::from_millis(50)));
    let again = runner
        .run_once("send_email", serde_json::json!({ "email_id": alice }))
        .await
        .unwrap();
    assert_eq!(again.state, "succeeded", "{:?}", again.last_error);
    assert_eq!(
        mailer.send_queued(&db.pool(), bob).await.unwrap(),
        SendOutcome::AlreadySent
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_delivery_is_retried_until_the_server_answers() {
    let db = TestDb::new().await.unwrap();
    let id = queue(
        &db,
        EmailTemplate::PasswordReset,
        "carol@example.com",
        "resetCarol789",
    )
    .await;

    // Nothing listens on this port.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = Arc::new(Mailer::new(
        Transport::smtp(&format!("smtp://127.0.0.1:{closed}")).unwrap(),
        sender(),
    ));
    // A long backoff: the retry must not come while this runner is up.
    let shutdown = CancellationToken::new();
    let runner = Runner::new(
        db.pool(),
        mailer::register(Registry::new(), down),
        fast(Duration::from_secs(3600)),
    );
    let task = tokio::spawn(runner.run(shutdown.clone()));
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'send_email' AND state = 'queued' \
         AND attempts = 1 AND last_error IS NOT NULL",
        1,
        Duration::from_secs(30),
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let job = send_email_job(&db).await;
    assert_eq!((job.state.as_str(), job.attempts), ("queued", 1));
    let error = job.last_error.unwrap();
    assert!(error.contains("SMTP"), "{error}");
    assert!(job.run_at > chrono::Utc::now() + chrono::Duration::minutes(20));
    {
        let mut conn = db.conn().await.unwrap();
        assert_eq!(email::load(&mut conn, id).await.unwrap().sent_at, None);
        // The backoff has passed.
        diesel::sql_query("UPDATE jobs SET run_at = now() WHERE kind = 'send_email'")
            .execute(&mut conn)
            .await
            .unwrap();
    }

    let sink = SmtpSink::start().await.unwrap();
    let up = Arc::new(Mailer::new(Transport::smtp(&sink.url()).unwrap(), sender()));
    let shutdown = CancellationToken::new();
    let runner = Runner::new(
        db.pool(),
        mailer::register(Registry::new(), up),
        fast(Duration::from_secs(3600)),
    );
    let task = tokio::spawn(runner.run(shutdown.clone()));
    let received = sink.wait_for(1, Duration::from_secs(30)).await.unwrap();
    wait_until(
        &db,
        "SELECT count(*) AS n FROM jobs WHERE kind = 'send_email' AND state = 'succeeded' \
         AND attempts = 2",
        1,
        Duration::from_secs(10),
    )
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec!["carol@example.com"]);
    assert_eq!(received[0].find_token().as_deref(), Some("resetCarol789"));
    let mut conn = db.conn().await.unwrap();
    assert!(email::load(&mut conn, id).await.unwrap().sent_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_mail_is_written_to_a_folder() {
    let db = TestDb::new().await.unwrap();
    let dir = std::env::temp_dir().join(format!("hashgrid-mail-{}", Uuid::new_v4().simple()));
    let folder = Arc::new(Mailer::new(Transport::folder(&dir), sender()));
    let id = queue(
        &db,
        EmailTemplate::VerifyEmail,
        "dan@example.com",
        "folderToken_42",
    )
    .await;

    let runner = Runner::new(
        db.pool(),
        mailer::register(Registry::new(), folder),
        fast(Duration::from_millis(50)),
    );
    let done = runner
        .run_once("send_email", serde_json::json!({ "email_id": id }))
        .await
        .unwrap();
    assert_eq!(done.state, "succeeded", "{:?}", done.last_error);

    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("-{id}.eml")), "{name}");
    let data = std::fs::read_to_string(&files[0]).unwrap();
    let message = ReceivedMessage {
        from: String::new(),
        to: Vec::new(),
        data,
    };
    assert_eq!(
        message.subject().as_deref(),
        Some("Confirm your Hashgrid e-mail address")
    );
    assert_eq!(message.header("To").as_deref(), Some("dan@example.com"));
    assert_eq!(message.find_token().as_deref(), Some("folderToken_42"));
    assert!(is_multipart_alternative(&message));
    let mut conn = db.conn().await.unwrap();
    assert!(email::load(&mut conn, id).await.unwrap().sent_at.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
