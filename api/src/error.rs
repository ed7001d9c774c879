//! The API's one error type and its single mapping to RFC 9457
//! `application/problem+json`. Every client error carries a stable `code`;
//! a 5xx is logged with its cause and answered without internals.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use domain::ledger::LedgerError;
use domain::money::AmountError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `amount` or `items[0].asset`.
    pub field: String,
    /// Stable machine-readable reason, e.g. `required`, `invalid`, `too_many_decimals`.
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }

    /// An invalid amount in `field`.
    pub fn amount(field: impl Into<String>, err: &AmountError) -> Self {
        FieldError::new(field, err.code(), err.to_string())
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type: `/problems/<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    /// Stable machine-readable code; clients branch on this.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The invalid fields, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A problem the client can act on (4xx) or a known unavailability (503).
    #[error("{code}: {detail}")]
    Client {
        status: StatusCode,
        code: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// A handler panicked (logged where it was caught).
    #[error("handler panicked in request {request_id}")]
    Panic { request_id: String },
    /// A bug or an outage: logged in full, answered as a bare 500.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        ApiError::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail,
            errors,
        }
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, code, message)])
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(err.into())
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } => code,
            ApiError::Internal(_) | ApiError::Panic { .. } => "internal_error",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let (detail, errors) = match self {
            ApiError::Client { detail, errors, .. } => (Some(detail.clone()), errors.clone()),
            ApiError::Internal(_) => (
                Some("the server failed to handle the request; it has been logged".to_owned()),
                Vec::new(),
            ),
            ApiError::Panic { request_id } => (
                Some(format!(
                    "the server failed to handle the request; it has been logged as request {request_id}"
                )),
                Vec::new(),
            ),
        };
        Problem {
            type_uri: format!("/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: self.code().to_owned(),
            detail,
            errors,
        }
    }
}

/// Builds a problem+json response; the one place such bodies are written.
pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
    res.body(body)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::Internal(_) | ApiError::Panic { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(
                error = format!("{e:#}"),
                "request failed with an internal error"
            );
        }
        let mut res = problem_response(&self.problem());
        if let ApiError::Panic { request_id } = self
            && let Ok(v) = HeaderValue::from_str(request_id)
        {
            res.headers_mut()
                .insert(header::HeaderName::from_static("x-request-id"), v);
        }
        res
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        use LedgerError as L;
        let status = match &e {
            L::InsufficientFunds { .. } | L::CreditLimitExceeded { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            L::ReferenceConflict(_) | L::HoldAlreadyResolved(_) => StatusCode::CONFLICT,
            L::UnknownAccount(_) | L::UnknownTransfer(_) => StatusCode::NOT_FOUND,
            L::EmptyBatch
            | L::DuplicateReferenceInBatch(_)
            | L::InvalidReference
            | L::SameAccount
            | L::NonPositiveAmount
            | L::AssetMismatch { .. }
            | L::NotPending(_)
            | L::PostExceedsPending { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            L::Corrupt(_) | L::Database(_) => return ApiError::internal(e),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<domain::settlement::engine::SettlementError> for ApiError {
    /// One mapping for every route that settles or imports: a missing import
    /// is 404, a state that forbids it now 409, inputs that cannot be
    /// allocated 422 (an unknown coin names the field `coin`).
    fn from(e: domain::settlement::engine::SettlementError) -> Self {
        use domain::settlement::engine::SettlementError as S;
        match &e {
            S::UnknownEarning => ApiError::not_found("pool earnings import"),
            S::FixingMissing(..) | S::Superseded | S::CorrectionOfSettledDay => {
                ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
            }
            S::UnknownCoin(_) => ApiError::field("coin", e.code(), e.to_string()),
            S::Allocation(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
            }
            S::Ledger(_) | S::Database(_) | S::Interrupted => {
                ApiError::internal(anyhow::anyhow!("{e}"))
            }
        }
    }
}

impl From<domain::identity::service::IdentityError> for ApiError {
    fn from(e: domain::identity::service::IdentityError) -> Self {
        use domain::identity::service::IdentityError as I;
        let status = match &e {
            I::Validation {
                field,
                code,
                message,
            } => {
                return ApiError::validation(vec![FieldError::new(*field, *code, message.clone())]);
            }
            I::JurisdictionRestricted(_) => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            I::EmailTaken | I::TotpNotEnabled | I::TotpAlreadyEnabled | I::TotpNotEnrolled => {
                StatusCode::CONFLICT
            }
            I::InvalidCredentials
            | I::Token(_)
            | I::SessionEnded
            | I::InvalidRefreshToken
            | I::RefreshTokenReused
            | I::InvalidSecondFactor => StatusCode::UNAUTHORIZED,
            I::EmailNotVerified | I::AccountDisabled | I::StepUpRequired => StatusCode::FORBIDDEN,
            I::InvalidEmailToken => StatusCode::BAD_REQUEST,
            I::NotFound => StatusCode::NOT_FOUND,
            I::Internal(_) => return ApiError::internal(anyhow::anyhow!("{e}")),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<domain::contracts::orders::OrderError> for ApiError {
    fn from(e: domain::contracts::orders::OrderError) -> Self {
        use domain::contracts::orders::OrderError as O;
        let status = match &e {
            O::Invalid {
                field,
                code,
                message,
            } => {
                return ApiError::validation(vec![FieldError::new(*field, *code, message.clone())]);
            }
            O::UnknownProduct | O::UnknownQuote => StatusCode::NOT_FOUND,
            O::ProductUnavailable | O::SoldOut | O::QuoteExpired | O::QuoteUsed => {
                StatusCode::CONFLICT
            }
            O::JurisdictionRestricted(_) => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            O::InsufficientFunds(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // A stale or missing reference price: we cannot quote now.
            O::Price(..) => StatusCode::SERVICE_UNAVAILABLE,
            O::Internal(_) => return ApiError::internal(anyhow::anyhow!("{e}")),
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<domain::db::DbSetupError> for ApiError {
    fn from(e: domain::db::DbSetupError) -> Self {
        ApiError::internal(e)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<domain::outbox::jobs::JobError> for ApiError {
    fn from(e: domain::outbox::jobs::JobError) -> Self {
        ApiError::internal(e)
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        // Pool exhaustion is an outage, not a client error: say so with a 503.
        tracing::error!(error = %e, "database pool unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; retry later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal(anyhow::anyhow!("password=hunter2 in connection string"));
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert_eq!(p.code, "internal_error");
        assert!(!serde_json::to_string(&p).unwrap().contains("hunter2"));
    }

    #[test]
    fn validation_lists_fields() {
        let p = ApiError::validation(vec![FieldError::new("amount", "invalid", "bad")]).problem();
        assert_eq!(
            (p.status, p.code.as_str(), p.type_uri.as_str()),
            (422, "validation_failed", "/problems/validation_failed")
        );
        assert_eq!(p.errors[0].field, "amount");
    }

    #[test]
    fn ledger_errors_map_to_stable_codes() {
        let e: ApiError = LedgerError::InsufficientFunds {
            account_id: 1,
            asset: domain::money::Asset::BTC,
        }
        .into();
        assert_eq!(
            (e.status_code().as_u16(), e.code()),
            (422, "insufficient_funds")
        );
    }
}
