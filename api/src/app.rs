//! The actix application: routes, extractor limits, middleware, and the server.

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpServer, web};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::extract;
use crate::routes::{admin, assets, auth, buying, me, ops, partner};
use crate::state::AppState;

/// Every documented route. The OpenAPI spec is generated from this list.
pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(ops::openapi_yaml)
        .service(me::jwks)
        .service(assets::list_assets)
        // buying and contracts
        .service(buying::list_products)
        .service(buying::get_product)
        .service(buying::create_quote)
        .service(buying::get_quote)
        .service(buying::create_order)
        .service(buying::get_order)
        .service(buying::balances)
        .service(buying::ledger_entries)
        .service(buying::list_contracts)
        .service(buying::get_contract)
        .service(buying::patch_contract)
        .service(crate::routes::settlement::contract_earnings)
        .service(crate::routes::settlement::statement)
        .service(crate::routes::carbon::statement)
        .service(crate::routes::carbon::contract_carbon)
        .service(crate::routes::settlement::list)
        .service(crate::routes::settlement::run_day)
        // custody
        .service(crate::routes::deposit_addresses::list)
        .service(crate::routes::deposit_addresses::create)
        .service(crate::routes::deposits::list)
        .service(crate::routes::withdrawal_addresses::list)
        .service(crate::routes::withdrawal_addresses::add)
        .service(crate::routes::withdrawal_addresses::confirm)
        .service(crate::routes::withdrawal_addresses::remove)
        .service(crate::routes::withdrawals::policies)
        .service(crate::routes::withdrawals::confirm)
        .service(crate::routes::withdrawals::create)
        .service(crate::routes::withdrawals::list)
        .service(crate::routes::withdrawals::get_one)
        .service(crate::routes::withdrawals::cancel)
        // customer auth and account
        .service(auth::register)
        .service(auth::verify_email)
        .service(auth::customer_login)
        .service(auth::customer_login_2fa)
        .service(auth::customer_refresh)
        .service(auth::customer_logout)
        .service(auth::customer_logout_all)
        .service(auth::password_reset)
        .service(auth::password_reset_confirm)
        .service(auth::confirm_email_change)
        .service(me::request_email_change)
        .service(me::me)
        .service(me::customer_change_password)
        .service(me::two_factor_status)
        .service(me::customer_enrol)
        .service(me::customer_confirm)
        .service(me::customer_disable)
        .service(me::sessions)
        .service(me::revoke_session)
        // staff auth and account
        .service(auth::admin_login)
        .service(auth::admin_login_2fa)
        .service(auth::admin_refresh)
        .service(auth::admin_logout)
        .service(me::staff_change_password)
        .service(me::staff_enrol)
        .service(me::staff_confirm)
        .service(me::staff_step_up)
        // back office
        .service(admin::list_users)
        .service(admin::get_user)
        .service(admin::disable_user)
        .service(admin::enable_user)
        .service(admin::create_staff)
        .service(admin::audit_log)
        .service(admin::audit_verify)
        .service(admin::list_partners)
        .service(admin::create_partner)
        .service(admin::create_partner_key)
        .service(admin::list_partner_keys)
        .service(admin::revoke_partner_key)
        .service(admin::reconciliation)
        .service(crate::routes::contracts_admin::admin_get_contract)
        .service(crate::routes::contracts_admin::admin_terminate_contract)
        .service(crate::routes::contracts_admin::record_facility_outage)
        .service(crate::routes::prices::post_price)
        .service(crate::routes::prices::latest_prices)
        .service(crate::routes::prices::price_fixings)
        .service(crate::routes::catalog_admin::list_algorithms)
        .service(crate::routes::catalog_admin::create_algorithm)
        .service(crate::routes::catalog_admin::list_facilities)
        .service(crate::routes::catalog_admin::create_facility)
        .service(crate::routes::catalog_admin::get_facility)
        .service(crate::routes::catalog_admin::update_facility)
        .service(crate::routes::catalog_admin::list_pools)
        .service(crate::routes::catalog_admin::create_pool)
        .service(crate::routes::catalog_admin::list_products)
        .service(crate::routes::catalog_admin::create_product)
        .service(crate::routes::catalog_admin::get_product)
        .service(crate::routes::catalog_admin::update_product)
        .service(crate::routes::catalog_admin::set_product_state)
        .service(crate::routes::earnings_admin::import_pool_earnings)
        .service(crate::routes::earnings_admin::list_pool_earnings)
        .service(crate::routes::withdrawals::admin_waiting)
        .service(crate::routes::withdrawals::admin_queue)
        .service(crate::routes::withdrawals::admin_get)
        .service(crate::routes::withdrawals::admin_approve)
        .service(crate::routes::withdrawals::admin_reject)
        .service(crate::routes::carbon_credits::create)
        .service(crate::routes::carbon_credits::list)
        .service(crate::routes::carbon_credits::retire)
        .service(crate::routes::carbon_credits::list_retirements)
        .service(crate::routes::carbon_certificates::create)
        .service(crate::routes::carbon_certificates::list)
        .service(crate::routes::carbon_admin::list_factors)
        .service(crate::routes::carbon_admin::add_factor)
        .service(crate::routes::carbon_admin::set_profile)
        .service(crate::routes::carbon_admin::import_readings)
        .service(crate::routes::carbon_admin::run_day)
        .service(crate::routes::carbon_admin::retire_month)
        .service(crate::routes::carbon_admin::carbon_report)
        // partners
        .service(partner::list_customers)
        .service(partner::create_customer)
        .service(partner::balances)
        .service(partner::create_quote)
        .service(partner::create_order)
        .service(partner::list_contracts);
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header(("location", "/docs/"))
        .finish()
}

/// Hooks for tests to add routes (a panicking handler, a body probe).
pub type Extra = fn(&mut web::ServiceConfig);

/// The application with its state. `extra` adds undocumented routes.
pub fn app(
    state: AppState,
    extra: Extra,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let limit = state.config.body_limit;
    let (app, spec) = App::new()
        .into_utoipa_app()
        .openapi(crate::openapi::spec())
        .configure(routes)
        .split_for_parts();
    app.app_data(web::Data::new(state))
        .app_data(web::PayloadConfig::new(limit))
        .app_data(extract::json_config(limit))
        .app_data(extract::query_config())
        .app_data(extract::path_config())
        .configure(extra)
        .route("/docs", web::get().to(docs_redirect))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec))
        .default_service(web::to(not_found))
        .wrap(from_fn(crate::middleware::observe))
}

/// Starts serving on `listener`; SIGTERM and SIGINT stop it gracefully.
pub fn serve(state: AppState, listener: TcpListener, extra: Extra) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || app(state.clone(), extra))
        .listen(listener)?
        .shutdown_timeout(30)
        .run())
}
