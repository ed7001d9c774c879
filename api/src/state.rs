//! What handlers share.

use std::sync::Arc;

use domain::db::PgPool;
use domain::identity::service::Identity;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub redis: redis::Client,
    pub metrics: PrometheusHandle,
    pub identity: Arc<Identity>,
    pub limiter: Arc<crate::ratelimit::RateLimiter>,
    /// Account xpubs that deposit addresses are derived from.
    pub deposit_keys: Arc<domain::custody::deposit::DepositKeys>,
}

impl AppState {
    /// State with keys generated in memory when none are configured (tests, one-off tools).
    pub fn new(config: Config, pool: PgPool) -> anyhow::Result<AppState> {
        let identity = crate::identity::build(&config, false)?;
        Self::with_identity(config, pool, identity)
    }

    pub fn with_identity(
        config: Config,
        pool: PgPool,
        identity: Identity,
    ) -> anyhow::Result<AppState> {
        let redis = redis::Client::open(config.redis_url.as_str())?;
        let limiter = crate::ratelimit::RateLimiter::new(redis.clone());
        let deposit_keys = domain::custody::deposit::DepositKeys::parse(
            config.deposit_xpubs.as_deref().unwrap_or_default(),
            config.chain_network,
        )
        .map_err(|e| anyhow::anyhow!("HASHGRID_DEPOSIT_XPUBS: {e}"))?;
        Ok(AppState {
            config: Arc::new(config),
            pool,
            redis,
            metrics: crate::telemetry::metrics_handle(),
            identity: Arc::new(identity),
            limiter: Arc::new(limiter),
            deposit_keys: Arc::new(deposit_keys),
        })
    }

    pub async fn conn(&self) -> Result<domain::db::PooledConn, crate::error::ApiError> {
        Ok(self.pool.get().await?)
    }
}
