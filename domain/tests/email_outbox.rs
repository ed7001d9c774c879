//! The e-mail outbox against the real PostgreSQL: rendering, and queueing
//! in the caller's transaction (the e-mail and its job commit or roll back
//! with the change that caused them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::outbox::email::{self, EmailError, EmailTemplate};
use domain::outbox::jobs::JobRow;
use domain::schema::{emails, jobs};
use testkit::TestDb;

fn verify_vars(link: &str) -> Vec<(&str, &str)> {
    vec![("link", link), ("expires_in", "24 hours")]
}

#[test]
fn render_fills_variables_and_escapes_html() {
    let mail = email::render(
        EmailTemplate::VerifyEmail,
        "alice@example.com",
        &verify_vars("https://app.example/verify-email?token=abc_DEF-123&lang=en"),
    )
    .unwrap();
    assert_eq!(mail.to, "alice@example.com");
    assert_eq!(mail.template, EmailTemplate::VerifyEmail);
    assert_eq!(mail.subject, "Confirm your Hashgrid e-mail address");
    // Text as given; HTML escaped (& in an href is &amp;).
    assert!(
        mail.text_body
            .contains("https://app.example/verify-email?token=abc_DEF-123&lang=en")
    );
    assert!(mail.text_body.contains("24 hours"));
    assert!(
        mail.html_body
            .contains("href=\"https://app.example/verify-email?token=abc_DEF-123&amp;lang=en\"")
    );
    for part in [&mail.subject, &mail.text_body, &mail.html_body] {
        assert!(!part.contains("{{"));
    }

    // Values with markup are escaped in HTML and left alone in text.
    let evil = "<script>alert('x')</script> & \"friends\"";
    let mail = email::render(
        EmailTemplate::SecurityAlert,
        "bob@example.com",
        &[
            ("event", evil),
            ("occurred_at", "today"),
            ("ip", "203.0.113.9"),
        ],
    )
    .unwrap();
    assert!(mail.text_body.contains(evil));
    assert!(mail.subject.ends_with(evil), "subjects are not HTML");
    assert!(!mail.html_body.contains("<script>"));
    assert!(
        mail.html_body
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;friends&quot;")
    );
}

#[test]
fn a_missing_variable_is_an_error() {
    let err = email::render(
        EmailTemplate::EmailChangeConfirm,
        "carol@example.com",
        &[("link", "https://app.example/confirm-email?token=t")],
    )
    .unwrap_err();
    match err {
        EmailError::MissingVariables { template, names } => {
            assert_eq!(template, "email_change_confirm");
            assert_eq!(names, vec!["expires_in", "new_email"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        email::render(EmailTemplate::PasswordReset, "carol@example.com", &[]),
        Err(EmailError::MissingVariables { .. })
    ));
}

#[test]
fn header_injection_is_refused() {
    let vars = verify_vars("https://app.example/verify-email?token=t");
    for to in [
        "victim@example.com\r\nBcc: everyone@example.com",
        "victim@example.com\nBcc: x@example.com",
        "victim@example.com\r",
    ] {
        assert!(
            matches!(
                email::render(EmailTemplate::VerifyEmail, to, &vars),
                Err(EmailError::HeaderInjection(_))
            ),
            "{to:?}"
        );
    }
    // Through a variable that ends up in the subject.
    assert!(matches!(
        email::render(
            EmailTemplate::SecurityAlert,
            "a@example.com",
            &[
                ("event", "x\r\nBcc: all@example.com"),
                ("occurred_at", "now"),
                ("ip", "::1")
            ],
        ),
        Err(EmailError::HeaderInjection("subject"))
    ));
}

#[tokio::test]
async fn queue_refuses_header_injection_in_a_hand_made_email() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let mut mail = email::render(
        EmailTemplate::VerifyEmail,
        "a@example.com",
        &verify_vars("https://app.example/verify-email?token=t"),
    )
    .unwrap();
    mail.subject = "Hello\r\nBcc: everyone@example.com".to_owned();
    assert!(matches!(
        email::queue(&mut conn, &mail).await,
        Err(EmailError::HeaderInjection("subject"))
    ));
    mail.subject = "Hello".to_owned();
    mail.to = "a@example.com\nBcc: b@example.com".to_owned();
    assert!(matches!(
        email::queue(&mut conn, &mail).await,
        Err(EmailError::HeaderInjection("recipient"))
    ));
    let n: i64 = emails::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_rolled_back_change_leaves_neither_email_nor_job() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let mail = email::render(
        EmailTemplate::PasswordReset,
        "dave@example.com",
        &verify_vars("https://app.example/reset-password?token=r1"),
    )
    .unwrap();

    let result = conn
        .transaction(async |c| {
            let id = email::queue(c, &mail).await?;
            // Visible inside the transaction…
            email::load(c, id).await?;
            Err::<(), EmailError>(EmailError::NotFound(id))
        })
        .await;
    assert!(matches!(result, Err(EmailError::NotFound(_))));

    // …and gone with it.
    let n_emails: i64 = emails::table.count().get_result(&mut conn).await.unwrap();
    let n_jobs: i64 = jobs::table
        .filter(jobs::kind.eq("send_email"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((n_emails, n_jobs), (0, 0));
}

#[tokio::test]
async fn a_committed_change_leaves_the_email_and_its_job() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let mail = email::render(
        EmailTemplate::VerifyEmail,
        "erin@example.com",
        &verify_vars("https://app.example/verify-email?token=v1"),
    )
    .unwrap();

    let id = conn
        .transaction(async |c| email::queue(c, &mail).await)
        .await
        .unwrap();

    let stored = email::load(&mut conn, id).await.unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.to_address, "erin@example.com");
    assert_eq!(stored.template, "verify_email");
    assert_eq!(stored.subject, mail.subject);
    assert_eq!(stored.text_body, mail.text_body);
    assert_eq!(stored.html_body, mail.html_body);
    assert_eq!(stored.sent_at, None);

    let job: JobRow = jobs::table
        .filter(jobs::kind.eq("send_email"))
        .select(JobRow::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(job.payload, serde_json::json!({ "email_id": id }));
    assert_eq!(
        job.unique_key.as_deref(),
        Some(format!("email:{id}").as_str())
    );
    assert_eq!(job.max_attempts, 8);
    assert_eq!(job.state, "queued");

    // Also without a transaction of the caller's: both rows, atomically.
    let second = email::queue(&mut conn, &mail).await.unwrap();
    assert_ne!(second, id);
    let n_jobs: i64 = jobs::table
        .filter(jobs::kind.eq("send_email"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n_jobs, 2);

    // mark_sent changes sent_at once.
    assert!(email::mark_sent(&mut conn, id).await.unwrap());
    let first_sent = email::load(&mut conn, id).await.unwrap().sent_at.unwrap();
    assert!(!email::mark_sent(&mut conn, id).await.unwrap());
    assert_eq!(
        email::load(&mut conn, id).await.unwrap().sent_at,
        Some(first_sent)
    );
    assert!(matches!(
        email::load(&mut conn, uuid::Uuid::new_v4()).await,
        Err(EmailError::NotFound(_))
    ));
}
