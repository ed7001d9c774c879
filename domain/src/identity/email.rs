//! E-mail addresses: parsed once into a normalised [`Email`] (trimmed,
//! lower-cased) so that uniqueness and look-ups agree.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("e-mail address is not valid")]
    Invalid,
    #[error("e-mail address is longer than 254 characters")]
    TooLong,
}

impl Email {
    /// Parses and normalises. Only ASCII addresses are accepted (internationalised
    /// addresses are rare for this product and complicate uniqueness).
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let s = input.trim().to_ascii_lowercase();
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = s.split_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = (1..=64).contains(&local.len())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.len() >= 2 && !tld.bytes().all(|b| b.is_ascii_digit()));
        if local_ok && domain_ok {
            Ok(Email(s))
        } else {
            Err(EmailError::Invalid)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or("")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(
            Email::parse("  Alice.Smith+x@Example.COM ")
                .unwrap()
                .as_str(),
            "alice.smith+x@example.com"
        );
        assert_eq!(Email::parse("a@b.io").unwrap().local_part(), "a");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "a",
            "a@",
            "@b.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            ".a@b.com",
            "a..b@c.com",
            "a@-b.com",
            "a@b.c",
            "a@b.123",
            "a\n@b.com",
            "ä@b.com",
            "a@b_c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Email::parse(&format!("{}@b.com", "a".repeat(65))),
            Err(EmailError::Invalid)
        );
        assert_eq!(
            Email::parse(&format!("a@{}.com", "b.".repeat(130))),
            Err(EmailError::TooLong)
        );
    }
}
