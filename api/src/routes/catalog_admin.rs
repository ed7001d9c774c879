//! Catalog management in the back office (`/admin/v1`): algorithms,
//! facilities, pools and products, and a product's state. Reads need
//! `catalog_read`, writes `catalog_write` (see `auth::ADMIN_ROUTES`); every
//! write is appended to the audit log, with the row before and after, in the
//! same transaction. The rules live in `domain::catalog::admin`.
//!
//! Handlers take [`StaffAnd`], which authorizes the caller before it reads
//! the path, query or body: a caller without the permission learns nothing
//! about what a valid request looks like (403 comes before 422 or 415).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, patch, post, web};
use diesel_async::AsyncConnection;
use domain::catalog::admin::{
    self, CatalogError, FacilityPatch, NewAlgorithm, NewFacility, NewPool, NewProduct, ProductPatch,
};
use domain::catalog::model::{Algorithm, Facility, Pool, Product, ProductState};
use domain::identity::audit::{self, AuditEntry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Staff, client_ip};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

/// A staff member allowed to call the route ([`Staff`]) and then `T`,
/// extracted only once the caller is authorized.
pub struct StaffAnd<T>(pub Staff, pub T);

impl<T> FromRequest for StaffAnd<T>
where
    T: FromRequest + 'static,
    T::Future: 'static,
    T::Error: Into<actix_web::Error>,
{
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let staff = Staff::from_request(&req, &mut Payload::None).await?;
            let rest = T::from_request(&req, &mut payload)
                .await
                .map_err(Into::into)?;
            Ok(StaffAnd(staff, rest))
        })
    }
}

/// The one mapping of catalog errors to problems.
pub fn catalog_error(e: CatalogError) -> ApiError {
    match &e {
        CatalogError::Invalid {
            field,
            code,
            message,
        } => ApiError::validation(vec![FieldError::new(field.clone(), *code, message.clone())]),
        CatalogError::NotFound(what) => ApiError::not_found(what.as_str()),
        CatalogError::Duplicate(_) | CatalogError::InvalidTransition { .. } => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        CatalogError::Corrupt(_) | CatalogError::Database(_) => ApiError::internal(e),
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

fn list<T>(items: Vec<T>) -> List<T> {
    List {
        items,
        next_cursor: None,
    }
}

// ---------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------

/// Every algorithm, by code. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "Every algorithm", body = List<Algorithm>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/algorithms")]
pub async fn list_algorithms(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let items = admin::list_algorithms(&mut conn)
        .await
        .map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(list(items)))
}

/// Add an algorithm. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewAlgorithm, responses(
    (status = 201, description = "Created", body = Algorithm),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 409, description = "`algorithm_exists`", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[post("/admin/v1/algorithms")]
pub async fn create_algorithm(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<Json<NewAlgorithm>>,
) -> Reply {
    let StaffAnd(staff, Json(body)) = auth;
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let created = conn
        .transaction(async |c| {
            let a = admin::create_algorithm(c, &body)
                .await
                .map_err(catalog_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.algorithm.create",
                    format!("algorithm:{}", a.code),
                )
                .ip(ip)
                .after(to_json(&a)?),
            )
            .await?;
            Ok::<_, ApiError>(a)
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

// ---------------------------------------------------------------------------
// Facilities
// ---------------------------------------------------------------------------

/// Every facility, by name. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "Every facility", body = List<Facility>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/facilities")]
pub async fn list_facilities(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let items = admin::list_facilities(&mut conn)
        .await
        .map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(list(items)))
}

/// Add a facility. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewFacility, responses(
    (status = 201, description = "Created", body = Facility),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 409, description = "`facility_exists`: the name is taken", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[post("/admin/v1/facilities")]
pub async fn create_facility(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<Json<NewFacility>>,
) -> Reply {
    let StaffAnd(staff, Json(body)) = auth;
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let created = conn
        .transaction(async |c| {
            let f = admin::create_facility(c, &body)
                .await
                .map_err(catalog_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.facility.create",
                    format!("facility:{}", f.id),
                )
                .ip(ip)
                .after(to_json(&f)?),
            )
            .await?;
            Ok::<_, ApiError>(f)
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// One facility. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Facility id")), responses(
    (status = 200, description = "The facility", body = Facility),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[get("/admin/v1/facilities/{id}")]
pub async fn get_facility(state: web::Data<AppState>, auth: StaffAnd<web::Path<Uuid>>) -> Reply {
    let id = auth.1.into_inner();
    let mut conn = state.conn().await?;
    let f = admin::facility(&mut conn, id)
        .await
        .map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(f))
}

/// Change some of a facility's fields (not its algorithm). Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Facility id")), request_body = FacilityPatch, responses(
    (status = 200, description = "The facility as it is now", body = Facility),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
    (status = 409, description = "`facility_exists`: the name is taken", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[patch("/admin/v1/facilities/{id}")]
pub async fn update_facility(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<(web::Path<Uuid>, Json<FacilityPatch>)>,
) -> Reply {
    let StaffAnd(staff, (id, Json(body))) = auth;
    let id = id.into_inner();
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let after = conn
        .transaction(async |c| {
            let change = admin::update_facility(c, id, &body)
                .await
                .map_err(catalog_error)?;
            if change.changed {
                audit::append(
                    c,
                    &AuditEntry::new(
                        staff.actor(),
                        "admin.facility.update",
                        format!("facility:{id}"),
                    )
                    .ip(ip)
                    .before(to_json(&change.before)?)
                    .after(to_json(&change.after)?),
                )
                .await?;
            }
            Ok::<_, ApiError>(change.after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(after))
}

// ---------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------

/// Every pool, by name. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "Every pool", body = List<Pool>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/pools")]
pub async fn list_pools(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let items = admin::list_pools(&mut conn).await.map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(list(items)))
}

/// Add a pool at a facility. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewPool, responses(
    (status = 201, description = "Created", body = Pool),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 409, description = "`pool_exists`: the name is taken", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[post("/admin/v1/pools")]
pub async fn create_pool(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<Json<NewPool>>,
) -> Reply {
    let StaffAnd(staff, Json(body)) = auth;
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let created = conn
        .transaction(async |c| {
            let p = admin::create_pool(c, &body).await.map_err(catalog_error)?;
            audit::append(
                c,
                &AuditEntry::new(staff.actor(), "admin.pool.create", format!("pool:{}", p.id))
                    .ip(ip)
                    .after(to_json(&p)?),
            )
            .await?;
            Ok::<_, ApiError>(p)
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

// ---------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Only products in this state; every state when absent.
    #[param(inline)]
    pub state: Option<ProductState>,
}

/// Every product in any state, oldest first. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(ProductQuery), responses(
    (status = 200, description = "The products", body = List<Product>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "An unknown state", body = crate::error::Problem),
))]
#[get("/admin/v1/products")]
pub async fn list_products(
    state: web::Data<AppState>,
    auth: StaffAnd<web::Query<ProductQuery>>,
) -> Reply {
    let q = auth.1;
    let mut conn = state.conn().await?;
    let items = admin::list_products(&mut conn, q.state)
        .await
        .map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(list(items)))
}

/// Add a product, as a draft. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewProduct, responses(
    (status = 201, description = "Created as a draft", body = Product),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[post("/admin/v1/products")]
pub async fn create_product(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<Json<NewProduct>>,
) -> Reply {
    let StaffAnd(staff, Json(body)) = auth;
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let created = conn
        .transaction(async |c| {
            let p = admin::create_product(c, &body)
                .await
                .map_err(catalog_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.product.create",
                    format!("product:{}", p.id),
                )
                .ip(ip)
                .after(to_json(&p)?),
            )
            .await?;
            Ok::<_, ApiError>(p)
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}

/// One product. Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Product id")), responses(
    (status = 200, description = "The product", body = Product),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[get("/admin/v1/products/{id}")]
pub async fn get_product(state: web::Data<AppState>, auth: StaffAnd<web::Path<Uuid>>) -> Reply {
    let id = auth.1.into_inner();
    let mut conn = state.conn().await?;
    let p = admin::product(&mut conn, id).await.map_err(catalog_error)?;
    Ok(HttpResponse::Ok().json(p))
}

/// Change some of a product's fields. A change bumps `version`; contracts
/// already sold keep the terms they were sold with. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Product id")), request_body = ProductPatch, responses(
    (status = 200, description = "The product as it is now", body = Product),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
    (status = 422, description = "An invalid field, named in `errors`", body = crate::error::Problem),
))]
#[patch("/admin/v1/products/{id}")]
pub async fn update_product(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<(web::Path<Uuid>, Json<ProductPatch>)>,
) -> Reply {
    let StaffAnd(staff, (id, Json(body))) = auth;
    let id = id.into_inner();
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let after = conn
        .transaction(async |c| {
            let change = admin::update_product(c, id, &body)
                .await
                .map_err(catalog_error)?;
            if change.changed {
                audit::append(
                    c,
                    &AuditEntry::new(
                        staff.actor(),
                        "admin.product.update",
                        format!("product:{id}"),
                    )
                    .ip(ip)
                    .before(to_json(&change.before)?)
                    .after(to_json(&change.after)?),
                )
                .await?;
            }
            Ok::<_, ApiError>(change.after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(after))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateChange {
    /// draft → on_sale ↔ paused; any but retired → retired.
    pub state: ProductState,
}

/// Put a product on sale, pause it or retire it. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Product id")), request_body = StateChange, responses(
    (status = 200, description = "The product in its new state", body = Product),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
    (status = 409, description = "`invalid_transition`: the product cannot move from its state to this one", body = crate::error::Problem),
    (status = 422, description = "An unknown state", body = crate::error::Problem),
))]
#[post("/admin/v1/products/{id}/state")]
pub async fn set_product_state(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<(web::Path<Uuid>, Json<StateChange>)>,
) -> Reply {
    let StaffAnd(staff, (id, Json(body))) = auth;
    let id = id.into_inner();
    let next = body.state;
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let after = conn
        .transaction(async |c| {
            let change = admin::set_state(c, id, next).await.map_err(catalog_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.product.state",
                    format!("product:{id}"),
                )
                .ip(ip)
                .before(serde_json::json!({ "state": change.before.state }))
                .after(serde_json::json!({ "state": change.after.state })),
            )
            .await?;
            Ok::<_, ApiError>(change.after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(after))
}
