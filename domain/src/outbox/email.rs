//! Outgoing e-mail: the templates, their rendering, and the `emails` outbox.
//!
//! A change that causes an e-mail (a sign-up, a password reset, …) renders it
//! with [`render`] and [`queue`]s it on its own connection, inside its own
//! transaction: the `emails` row and the `send_email` job that delivers it
//! commit or roll back together with the change. The worker
//! (`workers::mailer`) [`load`]s the row, sends it and [`mark_sent`]s it.
//!
//! Templates live in `domain/templates/email/<name>.txt` and `<name>.html`
//! and are compiled in. Placeholders are `{{name}}` (`[a-z0-9_]`); every
//! placeholder must be given a value — rendering fails rather than leave a
//! `{{x}}` in a mail — and values are HTML-escaped in the HTML part. A value
//! called `link` (or `…_link`) must be an `http(s)://` URL, so that no
//! `javascript:` or other scheme ever ends up in an `href`.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::outbox::jobs::{self, JobError, NewJob};
use crate::schema::emails;

/// The job kind that delivers one queued e-mail (payload `{"email_id": …}`).
pub const SEND_EMAIL_JOB: &str = "send_email";
/// How often delivery is tried before the job is left failed.
pub const SEND_EMAIL_MAX_ATTEMPTS: i32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("e-mail template {template}: no value for {}", .names.join(", "))]
    MissingVariables {
        template: &'static str,
        names: Vec<String>,
    },
    #[error("e-mail template {template} is malformed: {detail}")]
    MalformedTemplate {
        template: &'static str,
        detail: String,
    },
    #[error("the e-mail's {0} must not contain line breaks or control characters")]
    HeaderInjection(&'static str),
    #[error("e-mail variable {0} must be an http:// or https:// URL")]
    UnsafeLink(String),
    #[error("e-mail {0} does not exist")]
    NotFound(Uuid),
    #[error("job queue: {0}")]
    Job(#[from] JobError),
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
}

/// The mails Hashgrid sends, each a subject and a text and an HTML template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EmailTemplate {
    /// Variables: `link`, `expires_in`.
    VerifyEmail,
    /// Variables: `link`, `expires_in`.
    PasswordReset,
    /// Variables: `changed_at`, `ip`.
    PasswordChanged,
    /// Sent to the new address. Variables: `link`, `new_email`, `expires_in`.
    EmailChangeConfirm,
    /// Variables: `event` (also in the subject), `occurred_at`, `ip`.
    SecurityAlert,
    /// The stop rule paused a contract. Variables: `contract` (also in the
    /// subject), `days`, `rule`, `suspended_at`.
    ContractSuspended,
    /// A paused contract runs again. Variables: `contract` (also in the
    /// subject), `resumed_at`, `extended_hours`.
    ContractResumed,
    /// Confirms an address added to the withdrawal allow-list. Variables:
    /// `network`, `address`, `label`, `link`, `expires_in`.
    WithdrawalAddressConfirm,
    /// Confirms a withdrawal the customer asked for. Variables: `amount`,
    /// `asset`, `network`, `address`, `fee`, `link`, `expires_in`.
    WithdrawalConfirm,
}

impl EmailTemplate {
    pub const ALL: [EmailTemplate; 9] = [
        EmailTemplate::VerifyEmail,
        EmailTemplate::PasswordReset,
        EmailTemplate::PasswordChanged,
        EmailTemplate::EmailChangeConfirm,
        EmailTemplate::SecurityAlert,
        EmailTemplate::ContractSuspended,
        EmailTemplate::ContractResumed,
        EmailTemplate::WithdrawalAddressConfirm,
        EmailTemplate::WithdrawalConfirm,
    ];

    /// The name stored in `emails.template` (and the templates' file name).
    pub fn name(self) -> &'static str {
        match self {
            EmailTemplate::VerifyEmail => "verify_email",
            EmailTemplate::PasswordReset => "password_reset",
            EmailTemplate::PasswordChanged => "password_changed",
            EmailTemplate::EmailChangeConfirm => "email_change_confirm",
            EmailTemplate::SecurityAlert => "security_alert",
            EmailTemplate::ContractSuspended => "contract_suspended",
            EmailTemplate::ContractResumed => "contract_resumed",
            EmailTemplate::WithdrawalAddressConfirm => "withdrawal_address_confirm",
            EmailTemplate::WithdrawalConfirm => "withdrawal_confirm",
        }
    }

    pub fn from_name(name: &str) -> Option<EmailTemplate> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The subject, itself a template (rendered without escaping).
    pub fn subject_template(self) -> &'static str {
        match self {
            EmailTemplate::VerifyEmail => "Confirm your Hashgrid e-mail address",
            EmailTemplate::PasswordReset => "Reset your Hashgrid password",
            EmailTemplate::PasswordChanged => "Your Hashgrid password was changed",
            EmailTemplate::EmailChangeConfirm => "Confirm your new Hashgrid e-mail address",
            EmailTemplate::SecurityAlert => "Hashgrid security alert: {{event}}",
            EmailTemplate::ContractSuspended => "Your Hashgrid contract {{contract}} is paused",
            EmailTemplate::ContractResumed => "Your Hashgrid contract {{contract}} is mining again",
            EmailTemplate::WithdrawalAddressConfirm => {
                "Confirm your new Hashgrid withdrawal address"
            }
            EmailTemplate::WithdrawalConfirm => "Confirm your withdrawal of {{amount}} {{asset}}",
        }
    }

    pub fn text_template(self) -> &'static str {
        match self {
            EmailTemplate::VerifyEmail => include_str!("../../templates/email/verify_email.txt"),
            EmailTemplate::PasswordReset => {
                include_str!("../../templates/email/password_reset.txt")
            }
            EmailTemplate::PasswordChanged => {
                include_str!("../../templates/email/password_changed.txt")
            }
            EmailTemplate::EmailChangeConfirm => {
                include_str!("../../templates/email/email_change_confirm.txt")
            }
            EmailTemplate::SecurityAlert => {
                include_str!("../../templates/email/security_alert.txt")
            }
            EmailTemplate::ContractSuspended => {
                include_str!("../../templates/email/contract_suspended.txt")
            }
            EmailTemplate::ContractResumed => {
                include_str!("../../templates/email/contract_resumed.txt")
            }
            EmailTemplate::WithdrawalAddressConfirm => {
                include_str!("../../templates/email/withdrawal_address_confirm.txt")
            }
            EmailTemplate::WithdrawalConfirm => {
                include_str!("../../templates/email/withdrawal_confirm.txt")
            }
        }
    }

    pub fn html_template(self) -> &'static str {
        match self {
            EmailTemplate::VerifyEmail => include_str!("../../templates/email/verify_email.html"),
            EmailTemplate::PasswordReset => {
                include_str!("../../templates/email/password_reset.html")
            }
            EmailTemplate::PasswordChanged => {
                include_str!("../../templates/email/password_changed.html")
            }
            EmailTemplate::EmailChangeConfirm => {
                include_str!("../../templates/email/email_change_confirm.html")
            }
            EmailTemplate::SecurityAlert => {
                include_str!("../../templates/email/security_alert.html")
            }
            EmailTemplate::ContractSuspended => {
                include_str!("../../templates/email/contract_suspended.html")
            }
            EmailTemplate::ContractResumed => {
                include_str!("../../templates/email/contract_resumed.html")
            }
            EmailTemplate::WithdrawalAddressConfirm => {
                include_str!("../../templates/email/withdrawal_address_confirm.html")
            }
            EmailTemplate::WithdrawalConfirm => {
                include_str!("../../templates/email/withdrawal_confirm.html")
            }
        }
    }

    /// The placeholders of the subject and both bodies, sorted, each once.
    pub fn variables(self) -> Result<Vec<&'static str>, EmailError> {
        let mut names = Vec::new();
        for source in [
            self.subject_template(),
            self.text_template(),
            self.html_template(),
        ] {
            for piece in parse(self.name(), source)? {
                if let Piece::Var(name) = piece {
                    names.push(name);
                }
            }
        }
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }
}

impl fmt::Display for EmailTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rendered e-mail, ready to be [`queue`]d.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub to: String,
    pub template: EmailTemplate,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

// The bodies carry single-use tokens: keep them out of logs.
impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("to", &self.to)
            .field("template", &self.template)
            .field("subject", &self.subject)
            .field(
                "text_body",
                &format_args!("<{} bytes>", self.text_body.len()),
            )
            .field(
                "html_body",
                &format_args!("<{} bytes>", self.html_body.len()),
            )
            .finish()
    }
}

/// A row of the `emails` outbox.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = emails, check_for_backend(diesel::pg::Pg))]
pub struct StoredEmail {
    pub id: Uuid,
    pub to_address: String,
    /// An [`EmailTemplate::name`].
    pub template: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for StoredEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEmail")
            .field("id", &self.id)
            .field("to_address", &self.to_address)
            .field("template", &self.template)
            .field("subject", &self.subject)
            .field(
                "text_body",
                &format_args!("<{} bytes>", self.text_body.len()),
            )
            .field(
                "html_body",
                &format_args!("<{} bytes>", self.html_body.len()),
            )
            .field("sent_at", &self.sent_at)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Refuses a header value (recipient, subject) with a line break or any
/// other control character: it could add headers to the message.
pub fn check_header(field: &'static str, value: &str) -> Result<(), EmailError> {
    if value
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(EmailError::HeaderInjection(field));
    }
    Ok(())
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_html_into(&mut out, value);
    out
}

fn escape_html_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Splits a template into literal text and `{{name}}` placeholders.
fn parse<'a>(template: &'static str, source: &'a str) -> Result<Vec<Piece<'a>>, EmailError> {
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| EmailError::MalformedTemplate {
                template,
                detail: "a {{ without its }}".to_owned(),
            })?;
        let name = after[..end].trim();
        if !valid_name(name) {
            return Err(EmailError::MalformedTemplate {
                template,
                detail: format!("bad placeholder {{{{{name}}}}}"),
            });
        }
        pieces.push(Piece::Var(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Html,
}

fn fill(
    template: &'static str,
    source: &str,
    vars: &BTreeMap<&str, &str>,
    escape: Escape,
) -> Result<String, EmailError> {
    let mut out = String::with_capacity(source.len() + 512);
    for piece in parse(template, source)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(name) => {
                let value = vars.get(name).ok_or_else(|| EmailError::MissingVariables {
                    template,
                    names: vec![name.to_owned()],
                })?;
                match escape {
                    Escape::None => out.push_str(value),
                    Escape::Html => escape_html_into(&mut out, value),
                }
            }
        }
    }
    Ok(out)
}

fn is_link_variable(name: &str) -> bool {
    name == "link" || name.ends_with("_link")
}

fn safe_link(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Renders `template` for `to` with `vars` (later duplicates win). Fails
/// when a placeholder has no value, when a link is not an http(s) URL, and
/// when the recipient or the rendered subject holds a line break.
pub fn render(
    template: EmailTemplate,
    to: &str,
    vars: &[(&str, &str)],
) -> Result<OutgoingEmail, EmailError> {
    let vars: BTreeMap<&str, &str> = vars.iter().copied().collect();
    let missing: Vec<String> = template
        .variables()?
        .into_iter()
        .filter(|name| !vars.contains_key(name))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(EmailError::MissingVariables {
            template: template.name(),
            names: missing,
        });
    }
    for (name, value) in &vars {
        if is_link_variable(name) && !safe_link(value) {
            return Err(EmailError::UnsafeLink((*name).to_owned()));
        }
    }
    check_header("recipient", to)?;
    let name = template.name();
    let subject = fill(name, template.subject_template(), &vars, Escape::None)?;
    check_header("subject", &subject)?;
    Ok(OutgoingEmail {
        to: to.to_owned(),
        template,
        subject,
        text_body: fill(name, template.text_template(), &vars, Escape::None)?,
        html_body: fill(name, template.html_template(), &vars, Escape::Html)?,
    })
}

/// Stores `email` in the outbox and enqueues the `send_email` job that
/// delivers it, on `conn`: inside the caller's transaction when there is
/// one (then both commit or roll back with the caller's change), else in a
/// transaction of their own. Returns the e-mail's id.
pub async fn queue(
    conn: &mut AsyncPgConnection,
    email: &OutgoingEmail,
) -> Result<Uuid, EmailError> {
    check_header("recipient", &email.to)?;
    check_header("subject", &email.subject)?;
    let id = Uuid::now_v7();
    let job = NewJob::new(SEND_EMAIL_JOB, serde_json::json!({ "email_id": id }))
        .unique(format!("email:{id}"))
        .max_attempts(SEND_EMAIL_MAX_ATTEMPTS);
    // Nested in the caller's transaction this is a savepoint.
    conn.transaction(async |c| {
        diesel::insert_into(emails::table)
            .values((
                emails::id.eq(id),
                emails::to_address.eq(&email.to),
                emails::template.eq(email.template.name()),
                emails::subject.eq(&email.subject),
                emails::text_body.eq(&email.text_body),
                emails::html_body.eq(&email.html_body),
            ))
            .execute(c)
            .await?;
        jobs::enqueue(c, &job).await?;
        Ok::<_, EmailError>(())
    })
    .await?;
    Ok(id)
}

/// The outbox row of e-mail `id`.
pub async fn load(conn: &mut AsyncPgConnection, id: Uuid) -> Result<StoredEmail, EmailError> {
    emails::table
        .find(id)
        .select(StoredEmail::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or(EmailError::NotFound(id))
}

/// Records that e-mail `id` was handed to the mail server; `false` when it
/// was marked sent already (the first time is kept).
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool, EmailError> {
    let n = diesel::update(emails::table.find(id).filter(emails::sent_at.is_null()))
        .set(emails::sent_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("link", "https://app.example/x?token=abc"),
            ("expires_in", "24 hours"),
            ("changed_at", "2026-11-25 10:00 UTC"),
            ("ip", "203.0.113.7"),
            ("new_email", "new@example.com"),
            ("event", "Two-factor authentication was turned off"),
            ("occurred_at", "2026-11-25 10:00 UTC"),
            ("contract", "S21 Hydro 30 days (0192f3a4)"),
            ("days", "3"),
            ("rule", "paused and extended"),
            ("suspended_at", "2026-11-25 00:00 UTC"),
            ("resumed_at", "2026-11-27 00:00 UTC"),
            ("extended_hours", "48"),
            ("network", "Bitcoin"),
            ("address", "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"),
            ("label", "my <cold> wallet"),
            ("amount", "0.05"),
            ("asset", "BTC"),
            ("fee", "0.0002"),
        ]
    }

    #[test]
    fn every_template_parses_and_renders_completely() {
        for t in EmailTemplate::ALL {
            assert_eq!(EmailTemplate::from_name(t.name()), Some(t));
            let vars = t.variables().unwrap();
            assert!(!vars.is_empty(), "{t} has no variables");
            let mail = render(t, "someone@example.com", &all_vars()).unwrap();
            for part in [&mail.subject, &mail.text_body, &mail.html_body] {
                assert!(!part.contains("{{") && !part.contains("}}"), "{t}: {part}");
            }
            assert!(mail.text_body.contains("Hashgrid"), "{t}");
            assert!(mail.html_body.contains("Hashgrid"), "{t}");
            // Account mails tell what to do if someone else made the change;
            // contract notices are about the platform's own action.
            let contract_notice = matches!(
                t,
                EmailTemplate::ContractSuspended | EmailTemplate::ContractResumed
            );
            assert_eq!(
                mail.text_body.contains("If this wasn't you"),
                !contract_notice,
                "{t}"
            );
            if contract_notice {
                assert!(mail.subject.contains("S21 Hydro 30 days"), "{t}");
                assert!(mail.html_body.contains("S21 Hydro 30 days"), "{t}");
            }
            if vars.contains(&"link") {
                assert!(mail.text_body.contains("token=abc"), "{t}");
                assert!(
                    mail.html_body.contains("href=\"https://app.example/"),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn escaping_and_parsing() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert!(matches!(
            parse("t", "hello {{name"),
            Err(EmailError::MalformedTemplate { .. })
        ));
        assert!(matches!(
            parse("t", "hello {{Na me}}"),
            Err(EmailError::MalformedTemplate { .. })
        ));
        let vars = BTreeMap::from([("name", "{{other}}")]);
        assert_eq!(
            fill("t", "a {{ name }} b", &vars, Escape::None).unwrap(),
            "a {{other}} b",
            "values are not substituted again"
        );
    }

    #[test]
    fn links_must_be_http() {
        let mut vars = all_vars();
        vars[0] = ("link", "javascript:alert(1)");
        assert!(matches!(
            render(EmailTemplate::VerifyEmail, "a@example.com", &vars),
            Err(EmailError::UnsafeLink(name)) if name == "link"
        ));
    }
}
