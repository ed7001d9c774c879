//! Work waiting to be done outside the request: the job queue (and, later,
//! the e-mails and webhooks it carries).

pub mod email;
pub mod jobs;
pub mod schedule;
