//! Identity flows against the real PostgreSQL, without HTTP: password
//! rehash, refresh-token races, TOTP replay across sessions, the e-mail
//! change, and the audit chain under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::identity::audit::{self, AuditEntry};
use domain::identity::crypto::SecretBox;
use domain::identity::jurisdictions::Restrictions;
use domain::identity::password::PasswordHasher;
use domain::identity::service::{
    ClientInfo, Identity, IdentityConfig, IdentityError, LoginOutcome,
};
use domain::identity::tokens::{self, Audience, KeyRing};
use domain::identity::{store, totp};
use domain::schema::{emails, users};
use testkit::TestDb;

const PW: &str = "a long enough passphrase 2026";

fn identity(t_cost: u32) -> Identity {
    let pem = tokens::generate_private_pem().unwrap();
    Identity {
        hasher: PasswordHasher::new(19_456, t_cost, 1, 4).unwrap(),
        keys: Arc::new(KeyRing::from_pems(&[pem]).unwrap()),
        secrets: SecretBox::generate().0,
        config: IdentityConfig {
            app_url: "https://app.example".into(),
            restrictions: Restrictions::default_list(),
            demo_admin_skips_step_up: false,
        },
    }
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: "203.0.113.7".into(),
        device: "test".into(),
    }
}

/// A verified customer with password `PW`.
async fn customer(id: &Identity, conn: &mut diesel_async::AsyncPgConnection) -> store::User {
    let email = format!("c-{}@example.com", uuid::Uuid::new_v4().simple());
    let user = id
        .register(conn, &email, PW, "DE", &client())
        .await
        .unwrap();
    store::mark_email_verified(conn, user.id).await.unwrap();
    store::user_by_id(conn, user.id).await.unwrap().unwrap()
}

fn tokens_of(outcome: LoginOutcome) -> domain::identity::service::TokenPair {
    match outcome {
        LoginOutcome::Tokens(t) => t,
        LoginOutcome::MfaRequired { .. } => panic!("unexpected 2FA step"),
    }
}

#[tokio::test]
async fn login_rehashes_when_the_parameters_are_raised() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let old = identity(2);
    let user = customer(&old, &mut conn).await;
    assert!(user.password_hash.contains("t=2"), "{}", user.password_hash);

    let mut stronger = identity(3);
    stronger.keys = old.keys.clone();
    stronger
        .login(
            &mut conn,
            Audience::Customer,
            &user.email,
            PW,
            None,
            &client(),
        )
        .await
        .unwrap();
    let after = store::user_by_id(&mut conn, user.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        after.password_hash.contains("t=3"),
        "not rehashed: {}",
        after.password_hash
    );
    assert_eq!(
        after.password_changed_at, user.password_changed_at,
        "a rehash is not a password change"
    );
    // The new hash still verifies.
    tokens_of(
        stronger
            .login(
                &mut conn,
                Audience::Customer,
                &user.email,
                PW,
                None,
                &client(),
            )
            .await
            .unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_give_exactly_one_pair() {
    let db = TestDb::with_pool_size(24).await.unwrap();
    let id = Arc::new(identity(2));
    let mut conn = db.conn().await.unwrap();
    let user = customer(&id, &mut conn).await;
    for round in 0..3 {
        let pair = tokens_of(
            id.login(
                &mut conn,
                Audience::Customer,
                &user.email,
                PW,
                None,
                &client(),
            )
            .await
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (id, pool, rt) = (id.clone(), db.pool(), pair.refresh_token.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = pool.get().await.unwrap();
                id.refresh(&mut c, Audience::Customer, &rt, &client()).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(IdentityError::RefreshTokenReused) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_totp_code_is_accepted_once_across_sessions_and_concurrently() {
    let db = TestDb::with_pool_size(24).await.unwrap();
    let id = Arc::new(identity(2));
    let mut conn = db.conn().await.unwrap();
    let user = customer(&id, &mut conn).await;
    // Enrol through the service: two sessions of the same user.
    let pair = tokens_of(
        id.login(
            &mut conn,
            Audience::Customer,
            &user.email,
            PW,
            None,
            &client(),
        )
        .await
        .unwrap(),
    );
    let who = id
        .authenticate(&mut conn, &pair.access_token, Audience::Customer)
        .await
        .unwrap();
    let enrolment = id.totp_enrol(&mut conn, &who).await.unwrap();
    let secret = totp_rs::Secret::try_from_base32(&enrolment.secret)
        .unwrap()
        .as_bytes()
        .to_vec();
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    id.totp_confirm(
        &mut conn,
        &who,
        &totp::current_code(&secret, now),
        &client(),
    )
    .await
    .unwrap();

    // The stored secret is encrypted, not the raw bytes.
    let sealed = store::user_by_id(&mut conn, user.id)
        .await
        .unwrap()
        .unwrap()
        .totp_secret_enc
        .unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));

    // The next step's code, tried by 12 logins at once: one wins.
    let code = totp::current_code(&secret, now + 30);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (id, pool, email, code) = (id.clone(), db.pool(), user.email.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            id.login(
                &mut c,
                Audience::Customer,
                &email,
                PW,
                Some(&code),
                &client(),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(LoginOutcome::Tokens(_)) => ok += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(IdentityError::InvalidSecondFactor) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
    // And the step before it is refused now too (codes only move forward).
    let older = totp::current_code(&secret, now);
    let again = id
        .login(
            &mut conn,
            Audience::Customer,
            &user.email,
            PW,
            Some(&older),
            &client(),
        )
        .await;
    assert!(
        matches!(again, Err(IdentityError::InvalidSecondFactor)),
        "{again:?}"
    );
}

fn token_in(body: &str) -> String {
    let start = body.find("token=").unwrap() + "token=".len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[tokio::test]
async fn an_email_change_needs_the_new_address_and_locks_withdrawals() {
    let db = TestDb::new().await.unwrap();
    let id = identity(2);
    let mut conn = db.conn().await.unwrap();
    let user = customer(&id, &mut conn).await;
    let other = customer(&id, &mut conn).await;
    let pair = tokens_of(
        id.login(
            &mut conn,
            Audience::Customer,
            &user.email,
            PW,
            None,
            &client(),
        )
        .await
        .unwrap(),
    );
    let who = id
        .authenticate(&mut conn, &pair.access_token, Audience::Customer)
        .await
        .unwrap();

    let wrong = id
        .request_email_change(
            &mut conn,
            &who,
            "new@example.com",
            "wrong password!!",
            &client(),
        )
        .await;
    assert!(
        matches!(
            wrong,
            Err(IdentityError::Validation {
                field: "password",
                ..
            })
        ),
        "{wrong:?}"
    );
    let taken = id
        .request_email_change(&mut conn, &who, &other.email, PW, &client())
        .await;
    assert!(matches!(taken, Err(IdentityError::EmailTaken)), "{taken:?}");

    let new_email = format!("n-{}@example.com", uuid::Uuid::new_v4().simple());
    id.request_email_change(&mut conn, &who, &new_email, PW, &client())
        .await
        .unwrap();
    let body: String = emails::table
        .filter(emails::to_address.eq(&new_email))
        .select(emails::text_body)
        .first(&mut conn)
        .await
        .unwrap();
    let notices: i64 = emails::table
        .filter(emails::to_address.eq(&user.email))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(notices >= 1, "the old address is told");
    assert!(
        store::withdrawals_locked_until(&mut conn, user.id)
            .await
            .unwrap()
            .is_none(),
        "not yet"
    );

    let token = token_in(&body);
    id.confirm_email_change(&mut conn, &token, &client())
        .await
        .unwrap();
    let after = store::user_by_id(&mut conn, user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.email, new_email);
    let until = store::withdrawals_locked_until(&mut conn, user.id)
        .await
        .unwrap()
        .unwrap();
    let hours = (until - Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "locked for {hours} h");
    let again = id.confirm_email_change(&mut conn, &token, &client()).await;
    assert!(
        matches!(again, Err(IdentityError::InvalidEmailToken)),
        "{again:?}"
    );
    // The old address no longer logs in; the new one does.
    assert!(
        id.login(
            &mut conn,
            Audience::Customer,
            &user.email,
            PW,
            None,
            &client()
        )
        .await
        .is_err()
    );
    tokens_of(
        id.login(
            &mut conn,
            Audience::Customer,
            &new_email,
            PW,
            None,
            &client(),
        )
        .await
        .unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_chain_holds_under_concurrent_appends() {
    let db = TestDb::with_pool_size(16).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let pool = db.pool();
        tasks.push(tokio::spawn(async move {
            let mut c = pool.get().await.unwrap();
            audit::append(
                &mut c,
                &AuditEntry::new(format!("user:{i}"), "test.event", "target").ip("198.51.100.1"),
            )
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut conn = db.conn().await.unwrap();
    assert!(audit::broken_links(&mut conn).await.unwrap().is_empty());
    for sql in [
        "UPDATE audit_log SET actor = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = diesel::sql_query(sql).execute(&mut conn).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Tampering behind the trigger's back is found.
    diesel::sql_query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(
        "UPDATE audit_log SET ip = '0.0.0.0' WHERE id = (SELECT id FROM audit_log ORDER BY id OFFSET 10 LIMIT 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let broken = audit::broken_links(&mut conn).await.unwrap();
    assert_eq!(broken.len(), 1, "{broken:?}");
}

#[tokio::test]
async fn users_table_refuses_unnormalised_emails() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let err = diesel::insert_into(users::table)
        .values((
            users::id.eq(uuid::Uuid::new_v4()),
            users::email.eq("Upper@Example.com"),
            users::password_hash.eq("x"),
            users::country.eq("DE"),
        ))
        .execute(&mut conn)
        .await;
    assert!(err.is_err());
}
