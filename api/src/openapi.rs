//! The OpenAPI contract, generated from the handlers (utoipa). The committed
//! `openapi.yaml` must equal [`spec_yaml`]; a test fails when it drifts.

use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hashgrid API",
        description = "Custodial cloud mining: buy hashrate, get daily payouts, withdraw, and see the carbon footprint. \
Errors are RFC 9457 problem+json documents with a stable `code`; amounts are decimal strings.",
        license(name = "Proprietary"),
    ),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this contract"),
        (name = "catalog", description = "What the platform sells and supports"),
    )
)]
struct ApiDoc;

/// The spec of every route in [`crate::app::routes`].
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, mut spec) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::app::routes)
        .split_for_parts();
    // Stable across builds: the crate version, not the build time.
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    spec
}

pub fn spec_yaml() -> anyhow::Result<String> {
    Ok(spec().to_yaml()?)
}
