//! Qualys ETM identity inventory: users and groups at the seed map's target paths.

mod auth;
mod config;
mod env_file;
pub mod mapping;
mod service;
#[cfg(test)]
mod tests;

pub use config::{
    BASIC_TOKEN_LIFETIME_SECS, DEFAULT_BATCH_SIZE, DEFAULT_ENDPOINT_PATH, DEFAULT_SOURCE,
    QualysAuth, QualysConfig,
};
pub use env_file::{EnvFile, EnvFileEntry, EnvFileLine};
pub use service::{DELETE_REASON, QualysSink};
