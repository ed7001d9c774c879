//! Delivers the e-mail outbox (`domain::outbox::email`): the `send_email`
//! job loads a queued e-mail, hands it to the mail server — or, without
//! `SMTP_URL`, writes it to a folder — and marks it sent.
//!
//! Configuration (read by [`MailerConfig::from_env`]):
//! - `SMTP_URL`: `smtp://host:port` (plain), `smtp://host?tls=required`
//!   (STARTTLS), `smtps://host` (TLS from the start); credentials as
//!   `smtps://user:password@host`. Required when `HASHGRID_ENV=prod`.
//! - `HASHGRID_MAIL_DIR`: where mail goes without `SMTP_URL` (`var/mail`).
//! - `HASHGRID_MAIL_FROM`: the sender (`Hashgrid <no-reply@hashgrid.local>`).
//!
//! Delivery is at least once, not exactly once. The mail server's
//! acceptance and the `sent_at` update are two systems with no common
//! transaction: a worker that dies (or loses the database) after the server
//! accepted a mail and before `mark_sent` committed leaves the job to be
//! retried, and the retry sends the mail again. That is acceptable for these
//! mails: each is idempotent for its reader (the same link to the same
//! single-use token, or the same notice), a duplicate is rare and harmless,
//! while losing a verification or security mail is not. Every send of one
//! e-mail carries the same `Message-ID` (`<email id@sender domain>`), which
//! lets receiving servers and clients drop the duplicate. An e-mail already
//! marked sent is never sent again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use domain::db::PgPool;
use domain::outbox::email::{self, SEND_EMAIL_JOB, StoredEmail};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use uuid::Uuid;

use crate::runner::{JobContext, Registry};

/// Where mail is written when no `SMTP_URL` is set.
pub const DEFAULT_MAIL_DIR: &str = "var/mail";
/// The sender when `HASHGRID_MAIL_FROM` is not set.
pub const DEFAULT_FROM: &str = "Hashgrid <no-reply@hashgrid.local>";
/// How long one SMTP command may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 3834: tells auto-responders (vacation replies…) not to answer.
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// Where messages go.
pub enum Transport {
    /// A pooled SMTP client.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// A folder: each message is written as `<created_at>-<id>.eml`.
    Folder(PathBuf),
}

impl Transport {
    /// An SMTP transport from a URL (see the module documentation). Must be
    /// called inside a Tokio runtime (the connection pool starts a task).
    pub fn smtp(url: &str) -> anyhow::Result<Transport> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("SMTP_URL {} is not usable", domain::db::redact(url)))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Transport::Smtp(transport))
    }

    pub fn folder(dir: impl Into<PathBuf>) -> Transport {
        Transport::Folder(dir.into())
    }
}

// By hand: the SMTP client's own Debug would print its credentials.
impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Smtp(_) => f.write_str("Smtp"),
            Transport::Folder(dir) => f.debug_tuple("Folder").field(dir).finish(),
        }
    }
}

/// The mailer's settings.
#[derive(Clone)]
pub struct MailerConfig {
    pub smtp_url: Option<String>,
    pub mail_dir: PathBuf,
    pub from: String,
    /// Refuse to fall back to the folder (production must really send).
    pub require_smtp: bool,
}

impl fmt::Debug for MailerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailerConfig")
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(domain::db::redact),
            )
            .field("mail_dir", &self.mail_dir)
            .field("from", &self.from)
            .field("require_smtp", &self.require_smtp)
            .finish()
    }
}

impl MailerConfig {
    /// From `SMTP_URL`, `HASHGRID_MAIL_DIR`, `HASHGRID_MAIL_FROM` and
    /// `HASHGRID_ENV`; empty values count as unset.
    pub fn from_env() -> MailerConfig {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`], reading the variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> MailerConfig {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        MailerConfig {
            smtp_url: get("SMTP_URL"),
            mail_dir: get("HASHGRID_MAIL_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_MAIL_DIR), PathBuf::from),
            from: get("HASHGRID_MAIL_FROM").unwrap_or_else(|| DEFAULT_FROM.to_owned()),
            require_smtp: get("HASHGRID_ENV").is_some_and(|v| v == "prod"),
        }
    }
}

/// What [`Mailer::send_queued`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// The e-mail was marked sent before: nothing was sent.
    AlreadySent,
}

/// Sends outbox e-mails through one [`Transport`] from one sender. Build it
/// once per process and share it (an `Arc`): the SMTP transport pools its
/// connections.
#[derive(Debug)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

impl Mailer {
    pub fn new(transport: Transport, from: Mailbox) -> Mailer {
        Mailer { transport, from }
    }

    /// Must be called inside a Tokio runtime when `config.smtp_url` is set.
    pub fn from_config(config: &MailerConfig) -> anyhow::Result<Mailer> {
        let from: Mailbox = config
            .from
            .parse()
            .with_context(|| format!("HASHGRID_MAIL_FROM {:?} is not a mailbox", config.from))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::smtp(url)?,
            None if config.require_smtp => {
                anyhow::bail!("HASHGRID_ENV=prod: SMTP_URL must be set to send e-mail")
            }
            None => Transport::folder(&config.mail_dir),
        };
        Ok(Mailer::new(transport, from))
    }

    pub fn from_env() -> anyhow::Result<Mailer> {
        Self::from_config(&MailerConfig::from_env())
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn from_mailbox(&self) -> &Mailbox {
        &self.from
    }

    /// The message for `email`: multipart/alternative (text, then HTML),
    /// with a `Message-ID` derived from the e-mail's id.
    pub fn message(&self, email: &StoredEmail) -> anyhow::Result<Message> {
        email::check_header("subject", &email.subject)
            .with_context(|| format!("e-mail {}", email.id))?;
        let to: Mailbox = email
            .to_address
            .parse()
            .with_context(|| format!("e-mail {}: bad recipient address", email.id))?;
        let message_id = format!("<{}@{}>", email.id, self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(message_id))
            .raw_header(HeaderValue::new(
                AUTO_SUBMITTED,
                "auto-generated".to_owned(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                email.text_body.clone(),
                email.html_body.clone(),
            ))
            .with_context(|| format!("e-mail {}: building the message", email.id))
    }

    /// Hands `email` to the transport (whether or not it was sent before).
    pub async fn deliver(&self, email: &StoredEmail) -> anyhow::Result<()> {
        let message = self.message(email)?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .with_context(|| format!("e-mail {}: SMTP delivery failed", email.id))?;
                tracing::info!(email = %email.id, to = %email.to_address, subject = %email.subject,
                    "e-mail sent");
            }
            Transport::Folder(dir) => {
                let path = write_eml(dir, email, &message).await.with_context(|| {
                    format!("e-mail {}: writing to {}", email.id, dir.display())
                })?;
                tracing::info!(email = %email.id, to = %email.to_address, subject = %email.subject,
                    path = %path.display(), "e-mail written to the mail folder");
            }
        }
        Ok(())
    }

    /// Sends outbox e-mail `id` unless it was sent already, then marks it
    /// sent. No database connection is held while the mail server talks.
    pub async fn send_queued(&self, pool: &PgPool, id: Uuid) -> anyhow::Result<SendOutcome> {
        let stored = {
            let mut conn = pool.get().await?;
            email::load(&mut conn, id).await?
        };
        if let Some(at) = stored.sent_at {
            tracing::info!(email = %id, sent_at = %at, "e-mail already sent; not sending again");
            return Ok(SendOutcome::AlreadySent);
        }
        self.deliver(&stored).await?;
        let mut conn = pool.get().await?;
        if !email::mark_sent(&mut conn, id).await? {
            tracing::warn!(email = %id, "e-mail was marked sent meanwhile: it went out twice");
        }
        Ok(SendOutcome::Sent)
    }

    /// The `send_email` job: payload `{"email_id": "<uuid>"}`. A failure
    /// (an unreachable or refusing server…) fails the job, which the queue
    /// retries with backoff.
    pub async fn run_job(&self, ctx: &JobContext) -> anyhow::Result<()> {
        #[derive(Deserialize)]
        struct Payload {
            email_id: Uuid,
        }
        let payload: Payload = serde_json::from_value(ctx.job.payload.clone())
            .context("send_email payload must be {\"email_id\": \"<uuid>\"}")?;
        self.send_queued(&ctx.pool, payload.email_id).await?;
        Ok(())
    }
}

/// Writes the message as `<created_at>-<id>.eml` in `dir`, atomically (a
/// reader never sees half a file; a retry overwrites the same file).
async fn write_eml(dir: &Path, email: &StoredEmail, message: &Message) -> anyhow::Result<PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let name = format!(
        "{}-{}.eml",
        email.created_at.format("%Y%m%dT%H%M%S%.6fZ"),
        email.id
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, message.formatted()).await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(path)
}

/// Registers the `send_email` job on `registry`, sending with `mailer`.
pub fn register(registry: Registry, mailer: Arc<Mailer>) -> Registry {
    registry.register(SEND_EMAIL_JOB, move |ctx: JobContext| {
        let mailer = Arc::clone(&mailer);
        async move { mailer.run_job(&ctx).await }
    })
}

static PROCESS_MAILER: OnceLock<Arc<Mailer>> = OnceLock::new();

/// The process's mailer, configured from the environment on first use. A
/// bad configuration fails every `send_email` job (visibly) until fixed.
pub fn process_mailer() -> anyhow::Result<Arc<Mailer>> {
    if let Some(mailer) = PROCESS_MAILER.get() {
        return Ok(Arc::clone(mailer));
    }
    let config = MailerConfig::from_env();
    let mailer = Arc::new(Mailer::from_config(&config).context("configuring the mailer")?);
    tracing::info!(transport = ?mailer.transport, from = %mailer.from, "mailer configured");
    Ok(Arc::clone(PROCESS_MAILER.get_or_init(|| mailer)))
}

/// The `send_email` job with the process's mailer ([`process_mailer`]).
pub async fn send_email_job(ctx: JobContext) -> anyhow::Result<()> {
    process_mailer()?.run_job(&ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_from_variables() {
        let none = MailerConfig::from_lookup(|_| None);
        assert_eq!(none.smtp_url, None);
        assert_eq!(none.mail_dir, PathBuf::from(DEFAULT_MAIL_DIR));
        assert_eq!(none.from, DEFAULT_FROM);
        assert!(!none.require_smtp);
        assert!(matches!(
            Mailer::from_config(&none).unwrap().transport(),
            Transport::Folder(_)
        ));

        let prod = MailerConfig::from_lookup(|name| match name {
            "HASHGRID_ENV" => Some("prod".to_owned()),
            "SMTP_URL" => Some(String::new()),
            "HASHGRID_MAIL_DIR" => Some("/tmp/mail".to_owned()),
            _ => None,
        });
        assert_eq!(prod.smtp_url, None, "empty counts as unset");
        assert_eq!(prod.mail_dir, PathBuf::from("/tmp/mail"));
        assert!(Mailer::from_config(&prod).is_err(), "prod needs SMTP");

        let bad_from = MailerConfig {
            from: "not a mailbox".to_owned(),
            ..none
        };
        assert!(Mailer::from_config(&bad_from).is_err());
    }

    #[tokio::test]
    async fn every_smtp_url_form_builds() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://smtp.example.com?tls=required",
            "smtp://smtp.example.com:587?tls=opportunistic",
            "smtps://user:p%40ss@smtp.example.com",
            "smtps://smtp.example.com:465/hashgrid.example",
        ] {
            assert!(Transport::smtp(url).is_ok(), "{url}");
        }
        for url in ["http://smtp.example.com", "smtp://", "not a url"] {
            assert!(Transport::smtp(url).is_err(), "{url}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = MailerConfig::from_lookup(|name| {
            (name == "SMTP_URL").then(|| "smtps://user:hunter2@smtp.example.com".to_owned())
        });
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
