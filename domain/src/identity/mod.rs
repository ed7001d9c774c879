//! Identity and access: customers, back-office staff and partners; their
//! passwords, tokens, sessions, 2FA, roles, API keys and the audit log.

pub mod audit;
pub mod crypto;
pub mod email;
pub mod jurisdictions;
pub mod partner_sig;
pub mod partners;
pub mod password;
pub mod roles;
pub mod service;
pub mod store;
pub mod tokens;
pub mod totp;
