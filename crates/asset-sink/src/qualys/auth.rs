//! Qualys bearer tokens: BASIC (gateway `POST /auth` → raw JWT) and OAUTH (client
//! credentials → `access_token`), cached, renewed before expiry and once on a 401.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::error::SinkError;
use crate::http::{Authorizer, Exchange, HttpClient, NoAuth, Prepared, Retryable, host_of};

const SINK: &str = "qualys";

/// Where and how tokens are obtained.
#[derive(Debug)]
pub(crate) enum TokenSource {
    /// `POST {gateway}/auth`, form `username`, `password`, `token=true`.
    Basic {
        url: Url,
        username: String,
        password: SecretString,
        lifetime: Duration,
    },
    /// OAuth 2.0 client credentials.
    OAuth {
        url: Url,
        client_id: String,
        client_secret: SecretString,
    },
}

#[derive(Debug)]
struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
}

/// Caches the token; concurrent requests share one fetch.
#[derive(Debug)]
pub(crate) struct TokenAuth {
    source: TokenSource,
    margin: Duration,
    cached: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct OAuthToken {
    access_token: SecretString,
    /// Seconds; some identity providers send it as a string (`"3599"`).
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// A token is used for at most this long, whatever the server says (a lifetime near
/// `u64::MAX` seconds used to overflow `Instant + Duration`).
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Lifetime assumed when the token response gives none (or an unreadable one).
const DEFAULT_OAUTH_LIFETIME: Duration = Duration::from_secs(3600);

/// `expires_in` as a lifetime: a non-negative number or numeric string of seconds, capped
/// at [`MAX_TOKEN_LIFETIME`]; anything else is the default hour.
fn oauth_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs = match expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0)
                .map(|f| f.min(u64::MAX as f64) as u64)
        }),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    secs.map_or(DEFAULT_OAUTH_LIFETIME, Duration::from_secs)
        .min(MAX_TOKEN_LIFETIME)
}

impl TokenAuth {
    pub(crate) fn new(source: TokenSource, margin: Duration) -> TokenAuth {
        TokenAuth {
            source,
            margin,
            cached: Mutex::new(None),
        }
    }

    fn url(&self) -> &Url {
        match &self.source {
            TokenSource::Basic { url, .. } | TokenSource::OAuth { url, .. } => url,
        }
    }

    /// Fetch a new token (no cache).
    async fn fetch(&self, client: &HttpClient) -> Result<Cached, SinkError> {
        let url = self.url().clone();
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            match &self.source {
                TokenSource::Basic {
                    username, password, ..
                } => {
                    form.append_pair("username", username)
                        .append_pair("password", password.expose_secret())
                        .append_pair("token", "true");
                }
                TokenSource::OAuth {
                    client_id,
                    client_secret,
                    ..
                } => {
                    form.append_pair("grant_type", "client_credentials")
                        .append_pair("client_id", client_id)
                        .append_pair("client_secret", client_secret.expose_secret());
                }
            }
            form.finish()
        };
        let request = Prepared {
            method: Method::POST,
            url: url.clone(),
            body: Some((Bytes::from(form), "application/x-www-form-urlencoded")),
            what: "the token request".into(),
        };
        let classify = |ex: &Exchange| Retryable::from_status(ex.status, &ex.headers);
        let auth_error = |detail: String| SinkError::Auth {
            sink: SINK,
            host: host_of(&url),
            path: url.path().to_owned(),
            detail,
            hint: self.hint(),
        };
        let exchange = client
            .execute(&request, &NoAuth, &classify)
            .await
            .map_err(|e| match e {
                SinkError::Rejected {
                    status, message, ..
                }
                | SinkError::Unauthorized {
                    status, message, ..
                } => auth_error(format!("HTTP {status}: {message}")),
                SinkError::RetriesExhausted { attempts, last, .. } => auth_error(format!(
                    "gave up after {attempts} attempts; last error: {last}"
                )),
                SinkError::Transport { detail, .. } => auth_error(detail),
                other => other,
            })?;
        let (token, lifetime) = match &self.source {
            TokenSource::Basic { lifetime, .. } => {
                let text = std::str::from_utf8(&exchange.body).unwrap_or("").trim();
                if text.is_empty() || text.contains(char::is_whitespace) || text.starts_with('{') {
                    return Err(auth_error(format!(
                        "HTTP {} but the body is not a token (expected the raw JWT)",
                        exchange.status.as_u16()
                    )));
                }
                (
                    SecretString::from(text.to_owned()),
                    (*lifetime).min(MAX_TOKEN_LIFETIME),
                )
            }
            TokenSource::OAuth { .. } => {
                let parsed: OAuthToken = serde_json::from_slice(&exchange.body).map_err(|_| {
                    auth_error(format!(
                        "HTTP {} but the body is not an OAuth token response (no access_token)",
                        exchange.status.as_u16()
                    ))
                })?;
                let lifetime = oauth_lifetime(parsed.expires_in.as_ref());
                (parsed.access_token, lifetime)
            }
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                auth_error("the token holds characters not allowed in an HTTP header".into())
            })?;
        header.set_sensitive(true);
        // Renew `margin` before expiry, but never sooner than half the lifetime.
        let refresh_in = lifetime.saturating_sub(self.margin).max(lifetime / 2);
        tracing::debug!(
            sink = SINK,
            host = %host_of(&url),
            valid_secs = lifetime.as_secs(),
            refresh_in_secs = refresh_in.as_secs(),
            "obtained an access token"
        );
        let now = Instant::now();
        Ok(Cached {
            header,
            refresh_at: now.checked_add(refresh_in).unwrap_or(now),
        })
    }
}

#[async_trait]
impl Authorizer for TokenAuth {
    async fn authorization(
        &self,
        client: &HttpClient,
        refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, SinkError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let refused_this = refused.is_some_and(|r| r == c.header);
            if !refused_this && Instant::now() < c.refresh_at {
                return Ok(Some(c.header.clone()));
            }
        }
        *cached = None;
        let fresh = self.fetch(client).await?;
        let header = fresh.header.clone();
        *cached = Some(fresh);
        Ok(Some(header))
    }

    fn refreshable(&self) -> bool {
        true
    }

    fn hint(&self) -> &'static str {
        match self.source {
            TokenSource::Basic { .. } => {
                "qualys.auth.username and qualys.auth.password (the user needs API access) and \
                 qualys.gateway_url (your platform's gateway)"
            }
            TokenSource::OAuth { .. } => {
                "qualys.auth.client_id, qualys.auth.client_secret and qualys.auth.token_url"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_lifetimes_at_the_boundaries() {
        let life = |v: serde_json::Value| oauth_lifetime(Some(&v));
        assert_eq!(life(json!(3599)), Duration::from_secs(3599));
        assert_eq!(life(json!("3599")), Duration::from_secs(3599));
        assert_eq!(life(json!(0)), Duration::ZERO);
        assert_eq!(life(json!(u64::MAX)), MAX_TOKEN_LIFETIME);
        assert_eq!(life(json!(1e300)), MAX_TOKEN_LIFETIME);
        assert_eq!(life(json!(-5)), DEFAULT_OAUTH_LIFETIME);
        assert_eq!(life(json!("soon")), DEFAULT_OAUTH_LIFETIME);
        assert_eq!(life(json!(null)), DEFAULT_OAUTH_LIFETIME);
        assert_eq!(oauth_lifetime(None), DEFAULT_OAUTH_LIFETIME);
    }
}
