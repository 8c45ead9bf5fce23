//! `[qualys]` configuration, and reading the Qualys on-prem execution engine's env file.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::env_file::EnvFile;
use crate::error::SinkError;
use crate::http::{HttpConfig, ProxyConfig};

/// Default push path: the closest public Qualys push API (CSAM third-party asset sync).
/// Qualys publishes no path for ETM identity pushes; override with `endpoint_path`.
pub const DEFAULT_ENDPOINT_PATH: &str = "/rest/2.0/am/connector/asset/data/sync";
/// Default `connectorMetaData.source` (the seed's inventory filter value).
pub const DEFAULT_SOURCE: &str = "Microsoft Active Directory";
/// Default assets per request.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Lifetime of a gateway JWT (`POST /auth`), per Qualys' documentation: 4 hours.
pub const BASIC_TOKEN_LIFETIME_SECS: u64 = 4 * 3600;

/// Settings of the Qualys ETM sink.
///
/// ```toml
/// [qualys]
/// gateway_url = "https://gateway.qg1.apps.qualys.com"     # connector.api.url
/// customer_uuid = "35664649-0000-4000-8000-0e54079e1ee9"   # qualys.customerUuid
/// connection_uuid = "6ec6ac85-0000-4000-8000-558f378caa2b" # qualys.connectionUuid
/// profile_uuid = "a4ab0242-0000-4000-8000-f62c67a56093"    # qualys.profileUuid
/// [qualys.auth]
/// type = "BASIC"              # or "OAUTH" with client_id, client_secret, token_url
/// username = "api_user"
/// password = "…"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualysConfig {
    /// The Qualys API gateway of your platform (env `connector.api.url`), e.g.
    /// `https://gateway.qg1.apps.qualys.com`. BASIC auth posts to `{gateway_url}/auth`; assets
    /// go to `{gateway_url}{endpoint_path}`.
    pub gateway_url: String,
    /// Your Qualys customer UUID (env `qualys.customerUuid`).
    pub customer_uuid: Uuid,
    /// The connector's connection UUID (env `qualys.connectionUuid`); sent as
    /// `connectorMetaData.connectorUuid`.
    pub connection_uuid: Uuid,
    /// The connector profile's UUID (env `qualys.profileUuid`).
    pub profile_uuid: Uuid,
    /// How to obtain the bearer token.
    pub auth: QualysAuth,
    /// Push path below `gateway_url`. Default [`DEFAULT_ENDPOINT_PATH`].
    #[serde(default = "default_endpoint_path")]
    pub endpoint_path: String,
    /// `connectorMetaData.source`. Default `Microsoft Active Directory`.
    #[serde(default = "default_source")]
    pub source: String,
    /// Send deletes as `"operation": "DELETE"` entries in `assetData` (default true). When
    /// false, deletes are counted as not representable in the acknowledgement.
    #[serde(default = "yes")]
    pub send_deletes: bool,
    /// Assets per request, 1..=10000. Default 1000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Obtain a new token this many seconds before the current one expires. Default 300.
    #[serde(default = "default_margin")]
    pub token_refresh_margin_secs: u64,
    /// Transport settings (timeouts, retries, proxy, TLS).
    #[serde(default)]
    pub http: HttpConfig,
}

/// How the Qualys sink authenticates (env `authentication.type`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum QualysAuth {
    /// `POST {gateway_url}/auth` with a Qualys user's name and password; the JWT answered is
    /// cached and renewed before it expires and once on a 401.
    #[serde(rename = "BASIC", alias = "basic")]
    Basic {
        /// Qualys user name (env `qualys.user.username`).
        username: String,
        /// Its password (env `qualys.user.password`). Never logged.
        password: SecretString,
        /// How long a JWT is valid, in seconds. Default 14400 (4 hours, as documented).
        #[serde(default = "default_lifetime")]
        token_lifetime_secs: u64,
    },
    /// OAuth 2.0 client credentials.
    #[serde(rename = "OAUTH", alias = "oauth")]
    OAuth {
        /// Client id (env `oauth.client.id`).
        client_id: String,
        /// Client secret (env `oauth.client.secret`). Never logged.
        client_secret: SecretString,
        /// Token endpoint (env `oauth.token.url`); answers `access_token` and `expires_in`.
        token_url: String,
    },
}

fn default_endpoint_path() -> String {
    DEFAULT_ENDPOINT_PATH.to_owned()
}
fn default_source() -> String {
    DEFAULT_SOURCE.to_owned()
}
fn yes() -> bool {
    true
}
fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_margin() -> u64 {
    300
}
fn default_lifetime() -> u64 {
    BASIC_TOKEN_LIFETIME_SECS
}

impl QualysConfig {
    /// A configuration with the defaults and the required values.
    pub fn new(
        gateway_url: impl Into<String>,
        customer_uuid: Uuid,
        connection_uuid: Uuid,
        profile_uuid: Uuid,
        auth: QualysAuth,
    ) -> QualysConfig {
        QualysConfig {
            gateway_url: gateway_url.into(),
            customer_uuid,
            connection_uuid,
            profile_uuid,
            auth,
            endpoint_path: default_endpoint_path(),
            source: default_source(),
            send_deletes: true,
            batch_size: DEFAULT_BATCH_SIZE,
            token_refresh_margin_secs: default_margin(),
            http: HttpConfig::default(),
        }
    }

    /// Read the Qualys on-prem execution engine's env file (see [`EnvFile`] for the keys),
    /// so a user migrating from it can hand us the same file. Returns the keys it does not
    /// use (the cron expression, thread pool sizes, ...) for the caller.
    pub fn from_env_file(
        text: &str,
    ) -> Result<(QualysConfig, BTreeMap<String, String>), SinkError> {
        let file = EnvFile::parse(text)?;
        let missing = |key: &'static str| SinkError::Config {
            sink: "qualys",
            key,
            problem: "is missing from the env file".into(),
        };
        let get = |path: &[&str], key: &'static str| -> Result<String, SinkError> {
            file.get(path)
                .map(|e| e.value.clone())
                .ok_or_else(|| missing(key))
        };
        let uuid = |path: &[&str], key: &'static str| -> Result<Uuid, SinkError> {
            get(path, key)?.parse().map_err(|_| missing(key))
        };
        let gateway_url = get(&["gateway_url"], "connector.api.url")?;
        let customer_uuid = uuid(&["customer_uuid"], "qualys.customerUuid")?;
        let connection_uuid = uuid(&["connection_uuid"], "qualys.connectionUuid")?;
        let profile_uuid = uuid(&["profile_uuid"], "qualys.profileUuid")?;
        let auth = match file.get(&["auth", "type"]).map(|e| e.value.as_str()) {
            Some("OAUTH") => QualysAuth::OAuth {
                client_id: get(&["auth", "client_id"], "oauth.client.id")?,
                client_secret: SecretString::from(get(
                    &["auth", "client_secret"],
                    "oauth.client.secret",
                )?),
                token_url: get(&["auth", "token_url"], "oauth.token.url")?,
            },
            _ => QualysAuth::Basic {
                username: get(&["auth", "username"], "qualys.user.username")?,
                password: SecretString::from(get(&["auth", "password"], "qualys.user.password")?),
                token_lifetime_secs: BASIC_TOKEN_LIFETIME_SECS,
            },
        };
        let mut config = QualysConfig::new(
            gateway_url,
            customer_uuid,
            connection_uuid,
            profile_uuid,
            auth,
        );
        if let Some(proxy) = file.get(&["http", "proxy", "url"]) {
            config.http.proxy = Some(ProxyConfig {
                url: proxy.value.clone(),
                username: None,
                password: None,
                no_proxy: None,
            });
        }
        let rest = file.rest.into_iter().map(|l| (l.key, l.value)).collect();
        Ok((config, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_the_seed_sample_env_file() {
        let text = "\
connector.api.url=https://gateway.qg1.apps.qualys.com
qualys.customerUuid=35664649-0000-4000-8000-0e54079e1ee9
qualys.connectionUuid=6ec6ac85-0000-4000-8000-558f378caa2b
qualys.profileUuid=a4ab0242-0000-4000-8000-f62c67a56093
qualys.user.username=quays_rb
qualys.user.password=Qualys@890
qualys.OAuthClientLevel=
qualys.clientId=b49fe503-0000-4000-8000-9dd35bfed24f
qualys.clientSecret=BQLcmgxp8y2HXlXeJGCIGkyaBNmBV8rm
service.cron-expression=0 0/10 * * * *
service.http.proxy.enabled=true
service.http.proxy.host=10.0.0.221
service.http.proxy.scheme=http
service.http.proxy.port=8080
service.child-thread-pool=25
";
        let (config, rest) = QualysConfig::from_env_file(text).unwrap();
        assert_eq!(config.gateway_url, "https://gateway.qg1.apps.qualys.com");
        match &config.auth {
            QualysAuth::Basic {
                username, password, ..
            } => {
                assert_eq!(username, "quays_rb");
                assert_eq!(password.expose_secret(), "Qualys@890");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            config.http.proxy.as_ref().unwrap().url,
            "http://10.0.0.221:8080"
        );
        assert_eq!(
            rest.get("service.cron-expression").unwrap(),
            "0 0/10 * * * *"
        );
        assert!(rest.contains_key("service.child-thread-pool"));
        assert!(!format!("{config:?}").contains("Qualys@890"));
    }

    #[test]
    fn oauth_env_and_errors() {
        let base = "\
connector.api.url=https://gw
qualys.customerUuid=35664649-0000-4000-8000-0e54079e1ee9
qualys.connectionUuid=6ec6ac85-0000-4000-8000-558f378caa2b
qualys.profileUuid=a4ab0242-0000-4000-8000-f62c67a56093
";
        let text = format!(
            "{base}authentication.type=OAUTH\noauth.client.id=id\noauth.client.secret=sec\noauth.token.url=https://idp/token\n"
        );
        let (config, _) = QualysConfig::from_env_file(&text).unwrap();
        assert!(matches!(config.auth, QualysAuth::OAuth { .. }));
        let err =
            QualysConfig::from_env_file(&format!("{base}authentication.type=OAUTH\n")).unwrap_err();
        assert!(err.to_string().contains("oauth.client.id"), "{err}");
        let err = QualysConfig::from_env_file("connector.api.url=x\nqualys.customerUuid=nope\n")
            .unwrap_err();
        assert!(err.to_string().contains("qualys.customerUuid"), "{err}");
    }

    #[test]
    fn toml_config() {
        let config: QualysConfig = toml::from_str(
            r#"
gateway_url = "https://gw"
customer_uuid = "35664649-0000-4000-8000-0e54079e1ee9"
connection_uuid = "6ec6ac85-0000-4000-8000-558f378caa2b"
profile_uuid = "a4ab0242-0000-4000-8000-f62c67a56093"
[auth]
type = "OAUTH"
client_id = "id"
client_secret = "sec"
token_url = "https://idp/token"
"#,
        )
        .unwrap();
        assert_eq!(config.endpoint_path, DEFAULT_ENDPOINT_PATH);
        assert!(config.send_deletes);
        let bad = toml::from_str::<QualysConfig>(
            r#"
gateway_url = "https://gw"
customer_uuid = "35664649-0000-4000-8000-0e54079e1ee9"
connection_uuid = "6ec6ac85-0000-4000-8000-558f378caa2b"
profile_uuid = "a4ab0242-0000-4000-8000-f62c67a56093"
[auth]
type = "BASIC"
username = "u"
password = "p"
pasword = "typo"
"#,
        );
        assert!(bad.is_err());
    }
}
