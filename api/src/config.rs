//! Configuration from the environment (see `.env.example`).

use std::net::SocketAddr;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/hashgrid";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_BIND_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Dev,
    Prod,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub env: Env,
    pub database_url: String,
    pub redis_url: String,
    pub bind_addr: SocketAddr,
    pub smtp_url: Option<String>,
    pub demo: bool,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    pub db_pool_size: usize,
    /// PEM files of Ed25519 keys (`HASHGRID_JWT_KEYS`, comma-separated):
    /// the first signs, the others only verify (rotation).
    pub jwt_key_files: Vec<String>,
    /// Base64 of the 32-byte key that encrypts TOTP and partner secrets.
    pub secrets_key: Option<String>,
    /// Where dev keys and dev mail are kept.
    pub state_dir: String,
    /// Base URL of the customer app, for links in e-mails.
    pub app_url: String,
    /// Which chains' addresses customers may use: `mainnet` (default),
    /// `testnet` or `regtest` (`HASHGRID_CHAIN_NETWORK`).
    pub chain_network: domain::custody::address::NetworkKind,
    /// `network=xpub` pairs, comma-separated (`HASHGRID_DEPOSIT_XPUBS`): the
    /// account public keys deposit addresses are derived from. Never a private key.
    pub deposit_xpubs: Option<String>,
    pub restricted_countries: Option<String>,
    pub demo_password: Option<String>,
    pub argon2_m_kib: u32,
    pub argon2_t: u32,
    pub argon2_p: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// Quotes refuse reference prices older than this (`price_stale`).
    pub price_max_age_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("HASHGRID_ENV=prod refuses to start: {0}")]
    UnsafeForProd(String),
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = match get("HASHGRID_ENV").as_deref() {
            None | Some("dev") => Env::Dev,
            Some("prod") => Env::Prod,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "HASHGRID_ENV",
                    why: format!("{other:?}: expected dev or prod"),
                });
            }
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match get(name).as_deref() {
                None | Some("0") | Some("false") => Ok(false),
                Some("1") | Some("true") => Ok(true),
                Some(v) => Err(ConfigError::Invalid {
                    name,
                    why: format!("{v:?}: expected 1 or 0"),
                }),
            }
        };
        let number = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    why: format!("{v:?} is not a number"),
                })
            })
        };
        let bind = get("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
        let config = Config {
            env,
            database_url: get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            redis_url: get("REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            bind_addr: bind.parse().map_err(|e| ConfigError::Invalid {
                name: "BIND_ADDR",
                why: format!("{bind:?}: {e}"),
            })?,
            smtp_url: get("SMTP_URL"),
            demo: flag("HASHGRID_DEMO")?,
            body_limit: number("HASHGRID_BODY_LIMIT", 64 * 1024)?,
            db_pool_size: number("HASHGRID_DB_POOL_SIZE", 16)?,
            jwt_key_files: get("HASHGRID_JWT_KEYS")
                .map(|v| {
                    v.split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            secrets_key: get("HASHGRID_SECRETS_KEY"),
            state_dir: get("HASHGRID_STATE_DIR").unwrap_or_else(|| "var".to_owned()),
            app_url: get("HASHGRID_APP_URL").unwrap_or_else(|| "http://localhost:3000".to_owned()),
            deposit_xpubs: get("HASHGRID_DEPOSIT_XPUBS"),
            chain_network: match get("HASHGRID_CHAIN_NETWORK").as_deref() {
                None | Some("mainnet") => domain::custody::address::NetworkKind::Mainnet,
                Some("testnet") => domain::custody::address::NetworkKind::Testnet,
                Some("regtest") => domain::custody::address::NetworkKind::Regtest,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "HASHGRID_CHAIN_NETWORK",
                        why: format!("{other:?} is not mainnet, testnet or regtest"),
                    });
                }
            },
            restricted_countries: get("HASHGRID_RESTRICTED_COUNTRIES"),
            demo_password: get("HASHGRID_DEMO_PASSWORD"),
            argon2_m_kib: u32::try_from(number("HASHGRID_ARGON2_M_KIB", 19_456)?)
                .unwrap_or(u32::MAX),
            argon2_t: u32::try_from(number("HASHGRID_ARGON2_T", 2)?).unwrap_or(u32::MAX),
            argon2_p: u32::try_from(number("HASHGRID_ARGON2_P", 1)?).unwrap_or(u32::MAX),
            trust_proxy: flag("HASHGRID_TRUST_PROXY")?,
            price_max_age_secs: i64::try_from(number("HASHGRID_PRICE_MAX_AGE_SECS", 300)?)
                .unwrap_or(i64::MAX),
        };
        if let Some(list) = &config.restricted_countries {
            domain::identity::jurisdictions::Restrictions::parse(list).map_err(|why| {
                ConfigError::Invalid {
                    name: "HASHGRID_RESTRICTED_COUNTRIES",
                    why,
                }
            })?;
        }
        if env == Env::Prod {
            let mut problems = Vec::new();
            if get("DATABASE_URL").is_none() {
                problems.push("DATABASE_URL must be set");
            }
            if get("REDIS_URL").is_none() {
                problems.push("REDIS_URL must be set");
            }
            if config.smtp_url.is_none() {
                problems.push("SMTP_URL must be set");
            }
            if config.demo {
                problems.push("HASHGRID_DEMO must be off");
            }
            if config.jwt_key_files.is_empty() {
                problems.push(
                    "HASHGRID_JWT_KEYS must name the signing key files (dev keys are refused)",
                );
            }
            if config.secrets_key.is_none() {
                problems.push("HASHGRID_SECRETS_KEY must be set (dev keys are refused)");
            }
            if !problems.is_empty() {
                return Err(ConfigError::UnsafeForProd(problems.join("; ")));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn dev_has_working_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.env, Env::Dev);
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.bind_addr.to_string(), DEFAULT_BIND_ADDR);
        assert!(!c.demo);
    }

    #[test]
    fn prod_refuses_defaults_and_demo() {
        let err = cfg(&[("HASHGRID_ENV", "prod"), ("HASHGRID_DEMO", "1")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("DATABASE_URL") && msg.contains("HASHGRID_DEMO"),
            "{msg}"
        );
        assert!(
            cfg(&[
                ("HASHGRID_ENV", "prod"),
                ("DATABASE_URL", "postgres://db/h"),
                ("REDIS_URL", "redis://r"),
                ("SMTP_URL", "smtp://m:25"),
                ("HASHGRID_JWT_KEYS", "/etc/hashgrid/jwt.pem"),
                (
                    "HASHGRID_SECRETS_KEY",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                ),
            ])
            .is_ok()
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            cfg(&[("BIND_ADDR", "nowhere")])
                .unwrap_err()
                .to_string()
                .contains("BIND_ADDR")
        );
        assert!(
            cfg(&[("HASHGRID_ENV", "staging")])
                .unwrap_err()
                .to_string()
                .contains("HASHGRID_ENV")
        );
        assert!(
            cfg(&[("HASHGRID_DEMO", "yes")])
                .unwrap_err()
                .to_string()
                .contains("HASHGRID_DEMO")
        );
    }
}
