//! One HTTP client builder for every HTTP sink: timeouts, proxy, User-Agent, TLS (rustls with
//! the `ring` provider; the system's trust store or exactly the CAs of `ca_file`, set up by
//! the shared `tls-trust` crate), and a concurrency limit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::error::SinkError;
use crate::http::retries::RetryPolicy;

/// Transport settings shared by the HTTP sinks (`[sekoia.http]`, `[qualys.http]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whole-request timeout (connect, send, wait, read the answer), in seconds. Default 30.
    pub timeout_secs: f64,
    /// TCP + TLS connect timeout, in seconds. Default 10.
    pub connect_timeout_secs: f64,
    /// Most requests in flight at once for this sink (across concurrent batches). Default 4.
    pub max_concurrency: usize,
    /// Longest total time one request is retried (waits included) before its batch fails
    /// and is left for the next run, in seconds. Default 300.
    pub max_retry_secs: f64,
    /// Upper bound of the first backoff, in milliseconds; doubles per retry. Default 500.
    pub initial_backoff_ms: u64,
    /// Upper bound of any backoff, in seconds. Default 60.
    pub max_backoff_secs: f64,
    /// A CA file (PEM, one or more certificates, or a DER `.cer`) whose certificates
    /// **replace** the system's trusted roots, as for the directory's `ca_file`: a
    /// TLS-inspecting proxy's CA, or a private platform's CA (to trust the system roots as
    /// well, put them in the same file). Default: the system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For lab use only: anyone on the path can read the
    /// credentials. Logs a warning every time a client is built.
    pub insecure_skip_tls_verify: bool,
    /// An HTTP(S) proxy for every request of this sink. No proxy when absent; the
    /// `HTTP(S)_PROXY` environment variables are **not** read.
    pub proxy: Option<ProxyConfig>,
    /// Accept a plain `http://` URL for this sink although its requests carry credentials
    /// (API key, password, token). Off by default: plain HTTP is refused unless the host is
    /// a loopback address (the credentials then never leave the machine). For lab use only:
    /// logs a warning every time a client is built.
    pub insecure_allow_http: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout_secs: 30.0,
            connect_timeout_secs: 10.0,
            max_concurrency: 4,
            max_retry_secs: 300.0,
            initial_backoff_ms: 500,
            max_backoff_secs: 60.0,
            ca_file: None,
            insecure_skip_tls_verify: false,
            proxy: None,
            insecure_allow_http: false,
        }
    }
}

/// An HTTP proxy (`[*.http.proxy]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Proxy URL, e.g. `http://proxy.corp.example:8080`. Put credentials in `username` /
    /// `password`, not in the URL.
    pub url: String,
    /// Proxy user (Basic proxy authentication), if the proxy requires one.
    #[serde(default)]
    pub username: Option<String>,
    /// Proxy password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Hosts that bypass the proxy, comma-separated (`localhost,.corp.example,10.0.0.0/8`).
    #[serde(default)]
    pub no_proxy: Option<String>,
}

/// A built client: reqwest, the retry policy, the concurrency limit and the secrets to
/// scrub from any message quoted in an error.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    pub(crate) sink: &'static str,
    pub(crate) client: reqwest::Client,
    pub(crate) policy: RetryPolicy,
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) secrets: Arc<Vec<SecretString>>,
    /// Retries made by this client and its clones (for [`Sink::retries`](crate::Sink::retries)).
    pub(crate) retries: Arc<std::sync::atomic::AtomicU64>,
}

fn duration(sink: &'static str, key: &'static str, secs: f64) -> Result<Duration, SinkError> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(SinkError::Config {
            sink,
            key,
            problem: format!("must be a positive number of seconds, got {secs}"),
        }),
    }
}

impl HttpConfig {
    /// The retry policy these settings describe.
    pub fn retry_policy(&self, sink: &'static str) -> Result<RetryPolicy, SinkError> {
        Ok(RetryPolicy {
            initial_backoff: Duration::from_millis(self.initial_backoff_ms.max(1)),
            max_backoff: duration(sink, "http.max_backoff_secs", self.max_backoff_secs)?,
            max_retry_time: duration(sink, "http.max_retry_secs", self.max_retry_secs)?,
        })
    }
}

/// How long a sink's `check()` may retry: a connection test should answer quickly.
pub(crate) const CHECK_RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

impl HttpClient {
    /// The same client with its total retry time capped at `budget`.
    pub(crate) fn with_retry_budget(&self, budget: std::time::Duration) -> HttpClient {
        let mut quick = self.clone();
        quick.policy.max_retry_time = quick.policy.max_retry_time.min(budget);
        quick
    }

    /// Build the client for `sink`. `secrets` are the sink's own secrets (API key, password,
    /// client secret), scrubbed from any platform message quoted in an error.
    pub(crate) fn new(
        sink: &'static str,
        config: &HttpConfig,
        user_agent: &str,
        mut secrets: Vec<SecretString>,
    ) -> Result<HttpClient, SinkError> {
        let timeout = duration(sink, "http.timeout_secs", config.timeout_secs)?;
        let connect_timeout = duration(
            sink,
            "http.connect_timeout_secs",
            config.connect_timeout_secs,
        )?;
        let policy = config.retry_policy(sink)?;
        if config.max_concurrency == 0 {
            return Err(SinkError::Config {
                sink,
                key: "http.max_concurrency",
                problem: "must be at least 1".into(),
            });
        }
        let tls = tls_config(sink, config)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(user_agent)
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .pool_max_idle_per_host(config.max_concurrency)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(proxy) = &config.proxy {
            builder = builder.proxy(build_proxy(sink, proxy)?);
            if let Some(password) = &proxy.password {
                secrets.push(password.clone());
            }
        }
        let client = builder.build().map_err(|e| SinkError::Tls {
            sink,
            detail: format!("the HTTP client could not be built: {}", describe_error(&e)),
        })?;
        Ok(HttpClient {
            sink,
            client,
            policy,
            semaphore: Arc::new(Semaphore::new(config.max_concurrency)),
            secrets: Arc::new(secrets),
            retries: Arc::default(),
        })
    }

    /// Retries made so far by this client and its clones.
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Replace every occurrence of a secret in `text` by `[redacted]`.
    pub(crate) fn scrub(&self, text: String) -> String {
        scrub(text, &self.secrets)
    }
}

pub(crate) fn scrub(mut text: String, secrets: &[SecretString]) -> String {
    for secret in secrets {
        let secret = secret.expose_secret();
        if !secret.is_empty() && text.contains(secret) {
            text = text.replace(secret, "[redacted]");
        }
    }
    text
}

/// Refuse a plain-HTTP `url` (named by `key`): the sinks' requests carry credentials. A
/// loopback host is accepted (nothing leaves the machine), and so is any host when
/// `http.insecure_allow_http` is set, with a warning.
pub(crate) fn require_tls(
    sink: &'static str,
    key: &'static str,
    url: &reqwest::Url,
    http: &HttpConfig,
) -> Result<(), SinkError> {
    if url.scheme() != "http" {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    if http.insecure_allow_http {
        tracing::warn!(
            sink,
            key,
            "INSECURE: {key} is a plain http:// URL and http.insecure_allow_http is set: the credentials cross the network unencrypted"
        );
        return Ok(());
    }
    Err(SinkError::Config {
        sink,
        key,
        problem: format!(
            "is a plain http:// URL ({}), which would send the credentials unencrypted; use https://, or for a lab set http.insecure_allow_http = true",
            url.host_str().unwrap_or_default()
        ),
    })
}

fn build_proxy(sink: &'static str, config: &ProxyConfig) -> Result<reqwest::Proxy, SinkError> {
    let bad = |problem: String| SinkError::Config {
        sink,
        key: "http.proxy.url",
        problem,
    };
    let url = reqwest::Url::parse(&config.url)
        .map_err(|e| bad(format!("is not a URL ({e}); expected http://host:port")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not contain credentials: set http.proxy.username and http.proxy.password".into(),
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "has scheme {:?}; expected http or https",
            url.scheme()
        )));
    }
    let mut proxy = reqwest::Proxy::all(url).map_err(|e| bad(describe_error(&e)))?;
    if let Some(user) = &config.username {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose_secret())
            .unwrap_or("");
        proxy = proxy.basic_auth(user, password);
    }
    if let Some(no_proxy) = &config.no_proxy {
        proxy = proxy.no_proxy(reqwest::NoProxy::from_string(no_proxy));
    }
    Ok(proxy)
}

/// The rustls configuration: `ring` provider, the system roots or exactly the CAs of
/// `ca_file` (PEM or DER; the same meaning as the directory's `ca_file`, see `tls-trust`),
/// ALPN h2 and http/1.1.
fn tls_config(sink: &'static str, config: &HttpConfig) -> Result<rustls::ClientConfig, SinkError> {
    if config.insecure_skip_tls_verify {
        tracing::warn!(
            sink,
            "TLS CERTIFICATE VERIFICATION IS OFF (insecure_skip_tls_verify = true): anyone on \
             the network path can impersonate the platform and read the credentials; use \
             http.ca_file instead"
        );
    }
    let trust = tls_trust::Trust {
        ca_file: config.ca_file.clone(),
        insecure_skip_verify: config.insecure_skip_tls_verify,
    };
    let mut tls = tls_trust::client_config(&trust).map_err(|e| SinkError::Tls {
        sink,
        detail: match e {
            tls_trust::TrustError::CaFile { .. } => format!("http.ca_file: {e}"),
            tls_trust::TrustError::Internal(_) => e.to_string(),
        },
    })?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// A reqwest error as text, without its URL, with its causes.
pub(crate) fn describe_error(error: &reqwest::Error) -> String {
    // reqwest's own Display includes the URL; describe the kind, then the causes.
    let mut text = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_builder() {
        "invalid request"
    } else if error.is_redirect() {
        "redirect refused"
    } else if error.is_body() || error.is_decode() {
        "could not read the response body"
    } else if error.is_request() {
        "error sending request"
    } else {
        "HTTP error"
    }
    .to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        let part = err.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_units() {
        let config: HttpConfig =
            toml::from_str("timeout_secs = 0.25\nmax_concurrency = 2").unwrap();
        assert_eq!(config.timeout_secs, 0.25);
        assert_eq!(config.connect_timeout_secs, 10.0);
        let config: HttpConfig = toml::from_str("timeout_secs = 5").unwrap();
        assert_eq!(config.timeout_secs, 5.0);
        assert!(toml::from_str::<HttpConfig>("timeout = 5").is_err());
        let bad = HttpConfig {
            timeout_secs: -1.0,
            ..HttpConfig::default()
        };
        let err = HttpClient::new("test", &bad, "ua", vec![]).unwrap_err();
        assert!(err.to_string().contains("http.timeout_secs"), "{err}");
    }

    /// `http.ca_file` takes DER as well as PEM (the same loader as the directory's), and a
    /// file that holds no certificate is refused with a sentence naming the key and file.
    #[test]
    fn ca_file_takes_der_and_pem_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cert = tls_trust::system_roots_der()
            .into_iter()
            .next()
            .expect("a system root certificate (install ca-certificates)");
        let der = dir.path().join("ca.cer");
        std::fs::write(&der, &cert).unwrap();
        let with = |path: &std::path::Path| HttpConfig {
            ca_file: Some(path.to_owned()),
            ..HttpConfig::default()
        };
        assert!(HttpClient::new("test", &with(&der), "ua", vec![]).is_ok());
        let garbage = dir.path().join("ca.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = HttpClient::new("test", &with(&garbage), "ua", vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http.ca_file")
                && err.contains("ca.pem")
                && err.contains("no CERTIFICATE"),
            "{err}"
        );
    }

    #[test]
    fn proxy_url_with_credentials_is_refused() {
        let config = HttpConfig {
            proxy: Some(ProxyConfig {
                url: "http://user:hunter2@proxy.example:8080".into(),
                username: None,
                password: None,
                no_proxy: None,
            }),
            ..HttpConfig::default()
        };
        let err = HttpClient::new("test", &config, "ua", vec![]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("http.proxy.username"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn ca_file_errors_are_actionable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let config = HttpConfig {
            ca_file: Some(missing.clone()),
            ..HttpConfig::default()
        };
        let err = HttpClient::new("test", &config, "ua", vec![]).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let config = HttpConfig {
            ca_file: Some(empty),
            ..HttpConfig::default()
        };
        // Without a PEM header the bytes are taken as DER, and refused as such.
        let err = HttpClient::new("test", &config, "ua", vec![]).unwrap_err();
        assert!(err.to_string().contains("not an X.509"), "{err}");
    }

    #[test]
    fn plain_http_carries_no_credentials_off_the_machine() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let strict = HttpConfig::default();
        let err = require_tls(
            "sekoia",
            "base_url",
            &url("http://api.example.test"),
            &strict,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`base_url` is a plain http:// URL (api.example.test)")
                && err.contains("insecure_allow_http"),
            "{err}"
        );
        for local in [
            "http://127.0.0.1:8080",
            "http://[::1]:80",
            "http://localhost/",
        ] {
            require_tls("sekoia", "base_url", &url(local), &strict).unwrap();
        }
        require_tls(
            "qualys",
            "gateway_url",
            &url("https://gw.example.test"),
            &strict,
        )
        .unwrap();
        let lab = HttpConfig {
            insecure_allow_http: true,
            ..HttpConfig::default()
        };
        require_tls("sekoia", "base_url", &url("http://api.example.test"), &lab).unwrap();
    }

    #[test]
    fn insecure_mode_builds() {
        let config = HttpConfig {
            insecure_skip_tls_verify: true,
            ..HttpConfig::default()
        };
        assert!(HttpClient::new("test", &config, "ua", vec![]).is_ok());
    }

    #[test]
    fn scrub_replaces_secrets() {
        let secrets = vec![SecretString::from("s3cr3t"), SecretString::from("")];
        assert_eq!(
            scrub("bad key s3cr3t!".into(), &secrets),
            "bad key [redacted]!"
        );
    }
}
