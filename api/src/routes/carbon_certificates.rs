//! Energy attribute certificates in the back office
//! (`/admin/v1/carbon/certificates`): register a block of RECs, GOs, I-RECs
//! or LGCs (`carbon_write`), and list the blocks with what is allocated and
//! what remains (`reports_read`). The rules live in
//! `domain::carbon::certificates`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use domain::carbon::certificates::{self, CertificateBalance, CertificateError, NewCertificate};
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Staff, client_ip};
use crate::error::ApiError;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn certificate_error(e: CertificateError) -> ApiError {
    use CertificateError as C;
    match &e {
        C::Invalid {
            field,
            code,
            message,
        } => ApiError::field(field, code, message.clone()),
        C::Overlap { .. } => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
        C::UnknownFacility => ApiError::not_found("facility"),
        C::NegativeKwh => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()),
        C::Database(_) => ApiError::internal(e),
    }
}

/// Register a block of energy attribute certificates (1 MWh each). The
/// serials share a prefix and end in the certificate number; `mwh` must
/// equal their count. Certificates serve consumption in their own country
/// only. Permission `carbon_write`.
#[utoipa::path(tag = "admin", operation_id = "create_energy_certificates", security(("admin" = [])), request_body = NewCertificate, responses(
    (status = 201, description = "Registered", body = CertificateBalance),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 409, description = "`certificate_overlap`: some of these certificates are already registered", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`: e.g. `mwh` (`range_count_mismatch`), `production_end` (`before_start`), `country` (`invalid`, `scheme_market_mismatch`)", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/certificates")]
pub async fn create(
    staff: Staff,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Reply {
    let parsed: NewCertificate = crate::extract::parse_json(&body)?;
    let mut conn = state.conn().await?;
    let row = certificates::create(&mut conn, &staff.actor(), &client_ip(&req), &parsed)
        .await
        .map_err(certificate_error)?;
    Ok(HttpResponse::Created().json(CertificateBalance::new(row, Decimal::ZERO)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One market (ISO 3166-1 alpha-2).
    pub country: Option<String>,
    /// At most this many (1-500, default 100), newest first.
    pub limit: Option<i64>,
}

/// Registered certificate blocks, newest first, with the MWh allocated to
/// facility-days and the MWh remaining. Permission `reports_read`.
#[utoipa::path(tag = "admin", operation_id = "list_energy_certificates", security(("admin" = [])), params(ListQuery), responses(
    (status = 200, description = "Certificate blocks", body = List<CertificateBalance>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "`country` is not an ISO 3166-1 alpha-2 code", body = crate::error::Problem),
))]
#[get("/admin/v1/carbon/certificates")]
pub async fn list(_staff: Staff, state: web::Data<AppState>, q: web::Query<ListQuery>) -> Reply {
    let country = match q.country.as_deref() {
        None => None,
        Some(c) => Some(
            domain::identity::jurisdictions::Country::parse(c)
                .ok_or_else(|| {
                    ApiError::field(
                        "country",
                        "invalid",
                        "an ISO 3166-1 alpha-2 country code, e.g. \"IS\"",
                    )
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let mut conn = state.conn().await?;
    let items = certificates::list(&mut conn, country.as_deref(), limit)
        .await
        .map_err(certificate_error)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}
