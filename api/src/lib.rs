//! Hashgrid's HTTP API: routes by audience (customer `/v1`, admin
//! `/admin/v1`, partner `/partner/v1`), error mapping and the OpenAPI contract.

pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod identity;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
