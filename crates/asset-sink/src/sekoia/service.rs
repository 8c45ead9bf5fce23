//! The Sekoia.io sink: `POST {base}/api/v2/asset-management/asset-connector/{uuid}`.

use std::collections::HashMap;

use ad_model::{Guid, User};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::ExposeSecret;

use crate::change::{Ack, Batch, Change, NotRepresentable};
use crate::error::SinkError;
use crate::http::client::CHECK_RETRY_BUDGET;
use crate::http::{Authorizer, Exchange, HttpClient, Prepared, Retryable, host_of};
use crate::sekoia::config::SekoiaConfig;
use crate::sekoia::ocsf::user_inventory_info;
use crate::sink::{Capabilities, CheckItem, CheckReport, Sink};

const SINK: &str = "sekoia";

/// Why deletes are counted as not representable.
pub const DELETE_REASON: &str = "Sekoia.io's asset connector API has no delete operation; \
     the asset stays in Sekoia.io until it is removed there";

/// Delivers users to Sekoia.io as OCSF User Inventory Info events.
///
/// Groups are not assets in Sekoia.io: a group change re-sends its `affected_users`. Deletes
/// cannot be expressed and are counted in [`Ack::not_representable`].
#[derive(Debug)]
pub struct SekoiaSink {
    url: Url,
    batch_size: usize,
    http: HttpClient,
    auth: ApiKey,
}

#[derive(Debug)]
struct ApiKey(HeaderValue);

#[async_trait]
impl Authorizer for ApiKey {
    async fn authorization(
        &self,
        _client: &HttpClient,
        _refused: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>, SinkError> {
        Ok(Some(self.0.clone()))
    }
    fn refreshable(&self) -> bool {
        false
    }
    fn hint(&self) -> &'static str {
        "sekoia.api_key (an API key of the Sekoia.io community that owns the asset connector) \
         and sekoia.connector_uuid"
    }
}

impl SekoiaSink {
    /// Build the sink. Fails on an invalid base URL, batch size, API key or HTTP setting.
    pub fn new(config: SekoiaConfig) -> Result<SekoiaSink, SinkError> {
        let base = config.base_url.trim_end_matches('/');
        let url = Url::parse(&format!(
            "{base}/api/v2/asset-management/asset-connector/{}",
            config.connector_uuid
        ))
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| SinkError::Config {
            sink: SINK,
            key: "base_url",
            problem: format!(
                "{:?} is not an http(s) URL; expected e.g. https://api.sekoia.io",
                config.base_url
            ),
        })?;
        crate::http::client::require_tls(SINK, "base_url", &url, &config.http)?;
        if !(1..=10_000).contains(&config.batch_size) {
            return Err(SinkError::Config {
                sink: SINK,
                key: "batch_size",
                problem: format!("must be between 1 and 10000, got {}", config.batch_size),
            });
        }
        let key = config.api_key.expose_secret().trim();
        let mut header = HeaderValue::from_str(&format!("Bearer {key}"))
            .ok()
            .filter(|_| !key.is_empty())
            .ok_or_else(|| SinkError::Config {
                sink: SINK,
                key: "api_key",
                problem: "is empty or holds characters not allowed in an HTTP header".into(),
            })?;
        header.set_sensitive(true);
        let user_agent = format!("sekoiaio-asset-connector-{}", config.connector_uuid);
        let http = HttpClient::new(
            SINK,
            &config.http,
            &user_agent,
            vec![config.api_key.clone()],
        )?;
        Ok(SekoiaSink {
            url,
            batch_size: config.batch_size,
            http,
            auth: ApiKey(header),
        })
    }

    /// The push URL.
    pub fn push_url(&self) -> &Url {
        &self.url
    }

    /// The request bodies [`Sink::send`] would post for `batch`, one per `batch_size`
    /// users. For dry runs, benches and tests.
    pub fn encode(&self, batch: &Batch) -> Result<Vec<Vec<u8>>, SinkError> {
        users_of(batch)
            .chunks(self.batch_size)
            .map(|chunk| request_body(chunk, batch.sync.at))
            .collect()
    }

    async fn post(
        &self,
        body: Bytes,
        what: String,
        http: &HttpClient,
    ) -> Result<Exchange, SinkError> {
        let request = Prepared {
            method: Method::POST,
            url: self.url.clone(),
            body: Some((body, "application/json")),
            what,
        };
        http.execute(&request, &self.auth, &classify).await
    }
}

/// Only 200 means accepted (sekoia.md); other statuses as the shared policy says.
fn classify(exchange: &Exchange) -> Retryable {
    match exchange.status.as_u16() {
        200 => Retryable::Accepted,
        201..=299 => Retryable::Fatal,
        _ => Retryable::from_status(exchange.status, &exchange.headers),
    }
}

/// The users a batch sends: upserted users and the affected users of group changes,
/// deduplicated by GUID (the last record of a user wins; first-seen order kept).
pub(crate) fn users_of<'a>(batch: &'a Batch) -> Vec<&'a User> {
    let mut order: Vec<&'a User> = Vec::new();
    let mut index: HashMap<Guid, usize> = HashMap::new();
    let mut add = |user: &'a User| match index.get(&user.object_guid) {
        Some(&at) => order[at] = user,
        None => {
            index.insert(user.object_guid, order.len());
            order.push(user);
        }
    };
    for change in &batch.changes {
        match change {
            Change::UpsertUser(user) => add(user),
            Change::UpsertGroup { affected_users, .. } => affected_users.iter().for_each(&mut add),
            Change::Delete(_) => {}
        }
    }
    order
}

/// The request body for `users`: `{"version":1,"items":[…]}`.
pub fn request_body(users: &[&User], sync_time: DateTime<Utc>) -> Result<Vec<u8>, SinkError> {
    let mut body = Vec::with_capacity(64 + users.len() * 1024);
    body.extend_from_slice(br#"{"version":1,"items":["#);
    for (i, user) in users.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &user_inventory_info(user, sync_time)).map_err(
            |source| SinkError::Serialize {
                what: "an OCSF user",
                source,
            },
        )?;
    }
    body.extend_from_slice(b"]}");
    Ok(body)
}

fn task_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("task_id")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Sink for SekoiaSink {
    fn retries(&self) -> u64 {
        self.http.retries()
    }

    fn name(&self) -> &'static str {
        SINK
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            standalone_groups: false,
            deletes: false,
            needs_affected_users: true,
        }
    }

    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    /// Posts an empty item list: proves the host answers, the API key is accepted and the
    /// connector UUID exists, without sending an asset. Retries for at most 10 s.
    async fn check(&self) -> Result<CheckReport, SinkError> {
        let quick = self.http.with_retry_budget(CHECK_RETRY_BUDGET);
        let host = host_of(&self.url);
        let body = Bytes::from_static(br#"{"version":1,"items":[]}"#);
        let result = self
            .post(body, "the connection check (no items)".into(), &quick)
            .await;
        let item = |name, ok, detail: String| CheckItem { name, ok, detail };
        let items = match result {
            Ok(exchange) => vec![
                item(
                    "endpoint reachable",
                    true,
                    format!("{host} answered HTTP {}", exchange.status.as_u16()),
                ),
                item(
                    "credentials accepted",
                    true,
                    "the API key was accepted for this asset connector".into(),
                ),
            ],
            Err(SinkError::Unauthorized {
                status, message, ..
            }) => vec![
                item(
                    "endpoint reachable",
                    true,
                    format!("{host} answered HTTP {status}"),
                ),
                item(
                    "credentials accepted",
                    false,
                    format!("HTTP {status}: {message}; check sekoia.api_key"),
                ),
            ],
            Err(SinkError::Rejected {
                status, message, ..
            }) => vec![
                item(
                    "endpoint reachable",
                    true,
                    format!("{host} answered HTTP {status}"),
                ),
                item(
                    "credentials accepted",
                    false,
                    format!(
                        "HTTP {status}: {message}; check sekoia.connector_uuid and sekoia.base_url"
                    ),
                ),
            ],
            Err(other) => vec![item("endpoint reachable", false, other.to_string())],
        };
        Ok(CheckReport {
            sink: SINK,
            target: self.url.to_string(),
            items,
        })
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let deletes = batch
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Delete(_)))
            .count();
        let users = users_of(batch);
        let chunks: Vec<&[&User]> = users.chunks(self.batch_size).collect();
        let total = chunks.len();
        let requests = chunks.iter().enumerate().map(|(i, chunk)| async move {
            let body = request_body(chunk, batch.sync.at)?;
            let what = format!(
                "batch {} (request {} of {total}, {} users)",
                batch.id,
                i + 1,
                chunk.len()
            );
            let exchange = self.post(Bytes::from(body), what, &self.http).await?;
            Ok::<_, SinkError>(task_id(&exchange.body))
        });
        let task_ids: Vec<String> = futures::future::try_join_all(requests)
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut not_representable = Vec::new();
        if deletes > 0 {
            tracing::warn!(
                sink = SINK,
                batch = batch.id,
                deletes,
                "deletes cannot be sent to Sekoia.io (no delete operation); counted as not representable"
            );
            not_representable.push(NotRepresentable {
                count: deletes,
                what: "delete",
                reason: DELETE_REASON,
            });
        }
        tracing::debug!(
            sink = SINK,
            batch = batch.id,
            users = users.len(),
            requests = total,
            "batch accepted"
        );
        Ok(Ack {
            batch_id: batch.id,
            accepted: batch.changes.len() - deletes,
            not_representable,
            items_sent: users.len(),
            requests: total,
            task_ids,
        })
    }
}
