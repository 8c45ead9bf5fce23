//! Sekoia.io: OCSF User Inventory Info pushed to the asset connector API.

mod config;
pub mod ocsf;
mod service;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_BASE_URL, DEFAULT_BATCH_SIZE, SekoiaConfig};
pub use service::{DELETE_REASON, SekoiaSink, request_body};
