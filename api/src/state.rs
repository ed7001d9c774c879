//! What handlers share.

use std::sync::Arc;

use domain::db::PgPool;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub redis: redis::Client,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool) -> anyhow::Result<AppState> {
        let redis = redis::Client::open(config.redis_url.as_str())?;
        Ok(AppState {
            config: Arc::new(config),
            pool,
            redis,
            metrics: crate::telemetry::metrics_handle(),
        })
    }

    pub async fn conn(&self) -> Result<domain::db::PooledConn, crate::error::ApiError> {
        Ok(self.pool.get().await?)
    }
}
