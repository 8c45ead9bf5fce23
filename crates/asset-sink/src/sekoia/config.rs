//! `[sekoia]` configuration.

use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::HttpConfig;

/// The default Sekoia.io API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.sekoia.io";
/// The default number of users per request (what Sekoia's own AD connector sends).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// Settings of the Sekoia.io sink.
///
/// ```toml
/// [sekoia]
/// connector_uuid = "0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10"
/// api_key = "…"                 # better: from the environment or a secrets file
/// # base_url = "https://api.sekoia.io"
/// # batch_size = 1000
/// # [sekoia.http]
/// # timeout_secs = 30
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SekoiaConfig {
    /// API base URL. Default `https://api.sekoia.io`; a trailing `/` is ignored. Use the
    /// regional URL of your Sekoia.io tenant if it has one.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The asset connector's UUID, shown in the Sekoia UI under *Assets → Asset connectors*.
    pub connector_uuid: Uuid,
    /// A Sekoia.io API key allowed to push assets. Never logged.
    pub api_key: SecretString,
    /// Users per request, 1..=10000. Default 1000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Transport settings (timeouts, retries, proxy, TLS).
    #[serde(default)]
    pub http: HttpConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl SekoiaConfig {
    /// A configuration with the defaults and the two required values.
    pub fn new(connector_uuid: Uuid, api_key: SecretString) -> SekoiaConfig {
        SekoiaConfig {
            base_url: default_base_url(),
            connector_uuid,
            api_key,
            batch_size: DEFAULT_BATCH_SIZE,
            http: HttpConfig::default(),
        }
    }
}
