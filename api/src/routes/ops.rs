//! Operations: liveness, readiness, metrics, the API contract and its docs.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
}

/// The process is up.
#[utoipa::path(tag = "ops", responses((status = 200, description = "The process is up", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health {
        status: "ok".to_owned(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`
    pub status: String,
    /// `up`, or why the dependency is down, per dependency (`postgres`, `redis`).
    pub checks: std::collections::BTreeMap<String, String>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn check_postgres(state: &AppState) -> Result<(), String> {
    let fut = async {
        let mut conn = state.pool.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn check_redis(state: &AppState) -> Result<(), String> {
    let fut = async {
        let mut conn = state
            .redis
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(format!("unexpected answer {pong:?}"))
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// PostgreSQL and Redis are reachable.
#[utoipa::path(tag = "ops", responses(
    (status = 200, description = "Ready to serve", body = Readiness),
    (status = 503, description = "A dependency is down; the body names it", body = Readiness),
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (pg, redis) = tokio::join!(check_postgres(&state), check_redis(&state));
    let mut checks = std::collections::BTreeMap::new();
    let mut down = Vec::new();
    for (name, result) in [("postgres", pg), ("redis", redis)] {
        match result {
            Ok(()) => checks.insert(name.to_owned(), "up".to_owned()),
            Err(why) => {
                tracing::warn!(dependency = name, error = %why, "readiness check failed");
                down.push(name);
                checks.insert(name.to_owned(), format!("down: {why}"))
            }
        };
    }
    let ready = down.is_empty();
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        let mut res = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE);
        res.insert_header(("content-type", crate::error::PROBLEM_JSON));
        res.json(serde_json::json!({
            "type": "/problems/not_ready",
            "title": "Service Unavailable",
            "status": 503,
            "code": "not_ready",
            "detail": format!("not ready: {} down", down.join(" and ")),
            "down": down,
            "checks": body.checks,
        }))
    }
}

/// Prometheus metrics: requests by route and status, latency, database pool use.
#[utoipa::path(tag = "ops", responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let status = state.pool.status();
    ::metrics::gauge!("db_pool_connections", "state" => "max").set(status.max_size as f64);
    ::metrics::gauge!("db_pool_connections", "state" => "open").set(status.size as f64);
    ::metrics::gauge!("db_pool_connections", "state" => "idle").set(status.available as f64);
    ::metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(status.size.saturating_sub(status.available) as f64);
    ::metrics::gauge!("db_pool_waiting").set(status.waiting as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// The OpenAPI contract of this API, generated from the code.
#[utoipa::path(tag = "ops", responses((status = 200, description = "OpenAPI 3.1 YAML", content_type = "application/yaml", body = String)))]
#[get("/openapi.yaml")]
pub async fn openapi_yaml() -> Result<HttpResponse, ApiError> {
    let yaml = crate::openapi::spec_yaml().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/yaml")
        .body(yaml))
}
