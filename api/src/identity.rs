//! Builds the identity service from configuration: signing keys, the
//! secrets key, the password hasher. In dev, missing keys are generated and
//! kept under `HASHGRID_STATE_DIR/keys` so tokens survive a restart; prod
//! refuses to start without real keys (see `Config`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use domain::identity::crypto::SecretBox;
use domain::identity::jurisdictions::Restrictions;
use domain::identity::password::PasswordHasher;
use domain::identity::service::{Identity, IdentityConfig};
use domain::identity::tokens::{self, KeyRing};

use crate::config::{Config, Env};

fn read_or_create(
    path: &Path,
    create: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let value = create()?;
    std::fs::write(path, &value).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a development key; never use it in production");
    Ok(value)
}

/// The key ring and secrets key, from files in prod, generated in dev.
pub fn load_keys(config: &Config, persist: bool) -> anyhow::Result<(KeyRing, SecretBox)> {
    let pems: Vec<String> = if config.jwt_key_files.is_empty() {
        anyhow::ensure!(
            config.env == Env::Dev,
            "HASHGRID_JWT_KEYS is required in prod"
        );
        let pem = if persist {
            read_or_create(
                &Path::new(&config.state_dir).join("keys/jwt-dev.pem"),
                || Ok(tokens::generate_private_pem()?),
            )?
        } else {
            tokens::generate_private_pem()?
        };
        vec![pem]
    } else {
        config
            .jwt_key_files
            .iter()
            .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading JWT key {f}")))
            .collect::<anyhow::Result<_>>()?
    };
    let ring = KeyRing::from_pems(&pems)?;
    let secrets = match &config.secrets_key {
        Some(k) => SecretBox::from_base64(k).context("HASHGRID_SECRETS_KEY")?,
        None => {
            anyhow::ensure!(
                config.env == Env::Dev,
                "HASHGRID_SECRETS_KEY is required in prod"
            );
            let b64 = if persist {
                read_or_create(
                    &Path::new(&config.state_dir).join("keys/secrets-dev.key"),
                    || Ok(SecretBox::generate().1),
                )?
            } else {
                SecretBox::generate().1
            };
            SecretBox::from_base64(b64.trim()).context("dev secrets key")?
        }
    };
    Ok((ring, secrets))
}

pub fn build(config: &Config, persist_dev_keys: bool) -> anyhow::Result<Identity> {
    let (ring, secrets) = load_keys(config, persist_dev_keys)?;
    let hasher = PasswordHasher::new(
        config.argon2_m_kib,
        config.argon2_t,
        config.argon2_p,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    )?;
    let restrictions = match &config.restricted_countries {
        Some(list) => Restrictions::parse(list).map_err(anyhow::Error::msg)?,
        None => Restrictions::default_list(),
    };
    Ok(Identity {
        hasher,
        keys: Arc::new(ring),
        secrets,
        config: IdentityConfig {
            app_url: config.app_url.clone(),
            restrictions,
            demo_admin_skips_step_up: config.env == Env::Dev && config.demo,
        },
    })
}
