//! The OpenAPI contract, generated from the handlers (utoipa). The committed
//! `openapi.yaml` must equal [`spec_yaml`]; a test fails when it drifts.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
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
    modifiers(&SecuritySchemes),
    tags(
        (name = "ops", description = "Health, readiness, metrics and this contract"),
        (name = "catalog", description = "What the platform sells and supports"),
        (name = "auth", description = "Customer sign-up, sign-in and tokens"),
        (name = "account", description = "The signed-in customer's account, 2FA and sessions"),
        (name = "admin-auth", description = "Staff sign-in, step-up and their own account"),
        (name = "buying", description = "Quotes and orders"),
        (name = "contracts", description = "The customer's contracts"),
        (name = "money", description = "Balances, ledger and statements"),
        (name = "carbon", description = "Energy, emissions, certificates and credits of the customer's contracts"),
        (name = "admin", description = "The back office; each route needs a role permission"),
        (name = "partner", description = "The signed partner API"),
    )
)]
struct ApiDoc;

/// The three kinds of credentials.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "customer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Customer access token (EdDSA JWT, audience `hashgrid:customer`, 10 minutes) from `POST /v1/auth/login`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Staff access token (audience `hashgrid:admin`) from `POST /admin/v1/auth/login`; sensitive actions need a step-up token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "partner",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Hashgrid-Key",
                "Partner key id. Every request is also signed: X-Hashgrid-Timestamp (Unix seconds, within 30 s), \
X-Hashgrid-Nonce (single use), X-Hashgrid-Signature = hex HMAC-SHA256(secret, timestamp \\n nonce \\n METHOD \\n path \\n sorted query \\n hex SHA-256(body)). See scripts/partner-sign.sh.",
            ))),
        );
    }
}

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
