//! What every HTTP sink shares: the client ([`client`]), the retry policy ([`retries`]) and
//! the one request loop that applies them.
//!
//! A sink hands the crate-internal request loop a prepared request, an authorizer and a
//! classifier (`Fn(&Exchange) -> Retryable`). The loop sends, classifies, refreshes the
//! token once on 401, waits and retries on transient failures within the budget, and turns
//! everything else into a [`SinkError`] naming the host, the status, the platform's message
//! and what was being sent.

pub mod client;
pub mod retries;

use std::time::Instant;

/// The most of a response body kept. Platform answers are small (a JSON acknowledgement, an
/// error, a token); a larger one (a misrouted download, a broken or hostile server) is cut
/// here rather than held in memory. Nothing we read from a body needs more.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

pub(crate) use client::{HttpClient, describe_error};
pub use client::{HttpConfig, ProxyConfig};
pub use retries::{RetryPolicy, Retryable};

use crate::error::SinkError;

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A request ready to be sent (and re-sent). Its `Debug` omits the body, which may hold
/// credentials (token requests).
pub(crate) struct Prepared {
    pub(crate) method: Method,
    pub(crate) url: Url,
    /// Body and its content type.
    pub(crate) body: Option<(Bytes, &'static str)>,
    /// What this is, for logs and errors: `batch 42 (request 1 of 3, 1000 items)`.
    pub(crate) what: String,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("body_bytes", &self.body.as_ref().map(|(b, _)| b.len()))
            .field("what", &self.what)
            .finish()
    }
}

/// Supplies the `Authorization` header.
#[async_trait]
pub(crate) trait Authorizer: Send + Sync {
    /// The header value to send. `refused` is the value the platform just answered 401 to:
    /// a token-based authorizer fetches a new token if its cached one is that value.
    async fn authorization(
        &self,
        client: &HttpClient,
        refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, SinkError>;

    /// Whether a refused credential can be replaced (tokens yes, static API keys no).
    fn refreshable(&self) -> bool;

    /// Which settings to check when credentials are refused.
    fn hint(&self) -> &'static str;
}

/// No `Authorization` header (token endpoints, the outbox's tests).
#[derive(Debug)]
pub(crate) struct NoAuth;

#[async_trait]
impl Authorizer for NoAuth {
    async fn authorization(
        &self,
        _client: &HttpClient,
        _refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, SinkError> {
        Ok(None)
    }
    fn refreshable(&self) -> bool {
        false
    }
    fn hint(&self) -> &'static str {
        "the endpoint URL"
    }
}

/// `host[:port]` of a URL, for messages.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => "(no host)".to_owned(),
    }
}

/// The platform's message from an error body: the `message` / `error_description` / `error`
/// / `detail` field of a JSON body, else the text; whitespace collapsed, at most 300
/// characters.
pub(crate) fn platform_message(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => {
            ["message", "error_description", "error", "detail", "errors"]
                .iter()
                .find_map(|key| match map.get(*key) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Null) | None => None,
                    Some(other) => Some(other.to_string()),
                })
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "(empty body)".to_owned();
    }
    match collapsed.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", collapsed.get(..cut).unwrap_or_default()),
        None => collapsed,
    }
}

impl HttpClient {
    /// Send `request` until it is accepted, fails fatally, or the retry budget runs out.
    pub(crate) async fn execute(
        &self,
        request: &Prepared,
        auth: &dyn Authorizer,
        classify: &(dyn Fn(&Exchange) -> Retryable + Send + Sync),
    ) -> Result<Exchange, SinkError> {
        let sink = self.sink;
        let host = host_of(&request.url);
        let path = request.url.path();
        let started = Instant::now();
        let mut retries: u32 = 0;
        let mut attempts: u32 = 0;
        let mut refused: Option<HeaderValue> = None;
        let mut refreshed = false;
        loop {
            let authorization = auth.authorization(self, refused.take().as_ref()).await?;
            let permit = self
                .semaphore
                .acquire()
                .await
                .map_err(|_| SinkError::Transport {
                    sink,
                    host: host.clone(),
                    detail: "the sink is shutting down".into(),
                })?;
            attempts += 1;
            let mut builder = self
                .client
                .request(request.method.clone(), request.url.clone());
            if let Some(value) = &authorization {
                builder = builder.header(AUTHORIZATION, value.clone());
            }
            let bytes = request.body.as_ref().map_or(0, |(b, _)| b.len());
            if let Some((body, content_type)) = &request.body {
                builder = builder
                    .header(CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            tracing::debug!(sink, host = %host, path, what = %request.what, attempt = attempts, bytes, "sending");
            let sent = Instant::now();
            let result = async {
                let mut response = builder.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let mut body = bytes::BytesMut::new();
                while let Some(chunk) = response.chunk().await? {
                    let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(chunk.get(..room).unwrap_or(&chunk));
                    if body.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                let body = body.freeze();
                Ok::<_, reqwest::Error>(Exchange {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            drop(permit);
            let elapsed_ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
            let (verdict, last) = match result {
                Ok(exchange) => {
                    let status = exchange.status.as_u16();
                    tracing::debug!(sink, host = %host, path, what = %request.what, status, elapsed_ms, "answered");
                    let verdict = classify(&exchange);
                    let message = || self.scrub(platform_message(&exchange.body));
                    match verdict {
                        Retryable::Accepted => return Ok(exchange),
                        Retryable::RefreshAuth if auth.refreshable() && !refreshed => {
                            refreshed = true;
                            tracing::info!(sink, host = %host, status, "credentials refused; obtaining a new token and retrying once");
                            refused = authorization;
                            continue;
                        }
                        Retryable::RefreshAuth => {
                            return Err(SinkError::Unauthorized {
                                sink,
                                host,
                                status,
                                message: message(),
                                hint: auth.hint(),
                            });
                        }
                        Retryable::Fatal if status == 403 => {
                            return Err(SinkError::Unauthorized {
                                sink,
                                host,
                                status,
                                message: message(),
                                hint: auth.hint(),
                            });
                        }
                        Retryable::Fatal => {
                            return Err(SinkError::Rejected {
                                sink,
                                host,
                                status,
                                message: message(),
                                what: request.what.clone(),
                            });
                        }
                        Retryable::Retry | Retryable::RetryAfter(_) => {
                            (verdict, format!("HTTP {status}: {}", message()))
                        }
                    }
                }
                Err(error) => {
                    let detail = self.scrub(describe_error(&error));
                    if error.is_builder() || error.is_redirect() {
                        return Err(SinkError::Transport { sink, host, detail });
                    }
                    tracing::debug!(sink, host = %host, path, what = %request.what, elapsed_ms, error = %detail, "transport error");
                    (Retryable::Retry, detail)
                }
            };
            match self.policy.next_delay(verdict, retries, started.elapsed()) {
                Some(delay) => {
                    tracing::warn!(
                        sink,
                        host = %host,
                        what = %request.what,
                        attempt = attempts,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        retry_after = matches!(verdict, Retryable::RetryAfter(_)),
                        error = %last,
                        "retrying"
                    );
                    tokio::time::sleep(delay).await;
                    retries += 1;
                    self.retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => {
                    let last = match verdict {
                        Retryable::RetryAfter(d) => format!(
                            "{last} (the platform asked to wait {} s, more than the retry budget left)",
                            d.as_secs()
                        ),
                        _ => last,
                    };
                    return Err(SinkError::RetriesExhausted {
                        sink,
                        host,
                        what: request.what.clone(),
                        attempts,
                        elapsed_secs: started.elapsed().as_secs(),
                        last,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_messages() {
        assert_eq!(platform_message(br#"{"message": "bad  uuid"}"#), "bad uuid");
        assert_eq!(
            platform_message(br#"{"error": "invalid_client", "error_description": "nope"}"#),
            "nope"
        );
        assert_eq!(
            platform_message(br#"{"errors": [{"x": 1}]}"#),
            r#"[{"x":1}]"#
        );
        assert_eq!(
            platform_message(b"<html>\n Bad\n</html>"),
            "<html> Bad </html>"
        );
        assert_eq!(platform_message(b""), "(empty body)");
        let long = "é".repeat(500);
        let msg = platform_message(long.as_bytes());
        assert_eq!(msg.chars().count(), 301);
    }
}
