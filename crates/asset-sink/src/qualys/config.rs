//! `[qualys]` configuration, and reading the Qualys on-prem execution engine's env file.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

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

    /// Read the Qualys on-prem execution engine's env file (`key=value` lines), so a user
    /// migrating from it can hand us the same file.
    ///
    /// Understood keys: `connector.api.url`, `qualys.customerUuid`, `qualys.connectionUuid`,
    /// `qualys.profileUuid`, `authentication.type` (`BASIC`|`OAUTH`; when absent, BASIC if a
    /// username is given, else OAUTH), `qualys.user.username`, `qualys.user.password`,
    /// `oauth.client.id` / `qualys.clientId`, `oauth.client.secret` / `qualys.clientSecret`,
    /// `oauth.token.url`, and the proxy keys `proxy.enabled|host|port|scheme` and
    /// `service.http.proxy.enabled|host|port|scheme`. Every other key (the cron expression,
    /// thread pool sizes, ...) is returned untouched for the caller.
    pub fn from_env_file(
        text: &str,
    ) -> Result<(QualysConfig, BTreeMap<String, String>), SinkError> {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                map.insert(key.trim().to_owned(), value.to_owned());
            }
        }
        let mut take = |keys: &[&str]| -> Option<String> {
            let mut found = None;
            for key in keys {
                if let Some(v) = map.remove(*key)
                    && found.is_none()
                    && !v.is_empty()
                {
                    found = Some(v);
                }
            }
            found
        };
        let missing = |key: &'static str| SinkError::Config {
            sink: "qualys",
            key,
            problem: "is missing from the env file".into(),
        };
        let uuid = |key: &'static str, value: Option<String>| -> Result<Uuid, SinkError> {
            let value = value.ok_or_else(|| missing(key))?;
            value.parse().map_err(|_| SinkError::Config {
                sink: "qualys",
                key,
                problem: format!("{value:?} is not a UUID"),
            })
        };
        let gateway_url =
            take(&["connector.api.url"]).ok_or_else(|| missing("connector.api.url"))?;
        let customer_uuid = uuid("qualys.customerUuid", take(&["qualys.customerUuid"]))?;
        let connection_uuid = uuid("qualys.connectionUuid", take(&["qualys.connectionUuid"]))?;
        let profile_uuid = uuid("qualys.profileUuid", take(&["qualys.profileUuid"]))?;
        let auth_type = take(&["authentication.type"]);
        let username = take(&["qualys.user.username"]);
        let password = take(&["qualys.user.password"]);
        let client_id = take(&["oauth.client.id", "qualys.clientId"]);
        let client_secret = take(&["oauth.client.secret", "qualys.clientSecret"]);
        let token_url = take(&["oauth.token.url"]);
        let oauth = match auth_type.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("OAUTH") => true,
            Some("BASIC") => false,
            Some(other) => {
                return Err(SinkError::Config {
                    sink: "qualys",
                    key: "authentication.type",
                    problem: format!("is {other:?}; expected BASIC or OAUTH"),
                });
            }
            None => username.is_none() && client_id.is_some(),
        };
        let auth = if oauth {
            QualysAuth::OAuth {
                client_id: client_id.ok_or_else(|| missing("oauth.client.id"))?,
                client_secret: SecretString::from(
                    client_secret.ok_or_else(|| missing("oauth.client.secret"))?,
                ),
                token_url: token_url.ok_or_else(|| missing("oauth.token.url"))?,
            }
        } else {
            QualysAuth::Basic {
                username: username.ok_or_else(|| missing("qualys.user.username"))?,
                password: SecretString::from(
                    password.ok_or_else(|| missing("qualys.user.password"))?,
                ),
                token_lifetime_secs: BASIC_TOKEN_LIFETIME_SECS,
            }
        };
        let mut config = QualysConfig::new(
            gateway_url,
            customer_uuid,
            connection_uuid,
            profile_uuid,
            auth,
        );
        for prefix in ["proxy", "service.http.proxy"] {
            let enabled = take(&[&format!("{prefix}.enabled")]);
            let host = take(&[&format!("{prefix}.host")]);
            let port = take(&[&format!("{prefix}.port")]);
            let scheme = take(&[&format!("{prefix}.scheme")]);
            let enabled = enabled.is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if let (true, Some(host), None) = (enabled, host, &config.http.proxy) {
                let scheme = scheme.unwrap_or_else(|| "http".into());
                let url = match port {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                config.http.proxy = Some(ProxyConfig {
                    url,
                    username: None,
                    password: None,
                    no_proxy: None,
                });
            }
        }
        Ok((config, map))
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
