//! The Qualys ETM sink: `POST {gateway_url}{endpoint_path}` with a bearer token.

use std::time::Duration;

use ad_model::{Group, User};
use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, StatusCode, Url};

use crate::change::{Ack, Batch, Change, Deletion, NotRepresentable, SyncInfo};
use crate::error::SinkError;
use crate::http::client::CHECK_RETRY_BUDGET;
use crate::http::{Authorizer, Exchange, HttpClient, Prepared, Retryable, host_of};
use crate::qualys::auth::{TokenAuth, TokenSource};
use crate::qualys::config::{QualysAuth, QualysConfig};
use crate::qualys::mapping::{ConnectorMetaData, delete_entry, group_asset, user_asset};
use crate::sink::{Capabilities, CheckItem, CheckReport, Sink};

const SINK: &str = "qualys";

/// Why deletes are counted as not representable when `send_deletes = false`.
pub const DELETE_REASON: &str = "qualys.send_deletes is false: the configured envelope does \
     not carry deletes; remove the asset in Qualys ETM or enable send_deletes";

/// Delivers users and groups to Qualys ETM as identity assets.
#[derive(Debug)]
pub struct QualysSink {
    url: Url,
    meta: Meta,
    send_deletes: bool,
    batch_size: usize,
    http: HttpClient,
    auth: TokenAuth,
}

#[derive(Debug)]
struct Meta {
    customer_uuid: uuid::Uuid,
    connection_uuid: uuid::Uuid,
    profile_uuid: uuid::Uuid,
    source: String,
}

/// One `assetData` entry to build.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'a> {
    User(&'a User),
    Group(&'a Group),
    Delete(&'a Deletion),
}

fn parse_url(key: &'static str, text: &str) -> Result<Url, SinkError> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| SinkError::Config {
            sink: SINK,
            key,
            problem: format!("{text:?} is not an http(s) URL"),
        })
}

impl QualysSink {
    /// Build the sink. Fails on an invalid URL, path, batch size or HTTP setting.
    pub fn new(config: QualysConfig) -> Result<QualysSink, SinkError> {
        let gateway = config.gateway_url.trim_end_matches('/');
        let gateway_url = parse_url("gateway_url", gateway)?;
        crate::http::client::require_tls(SINK, "gateway_url", &gateway_url, &config.http)?;
        if !config.endpoint_path.starts_with('/') {
            return Err(SinkError::Config {
                sink: SINK,
                key: "endpoint_path",
                problem: format!("{:?} must start with /", config.endpoint_path),
            });
        }
        let url = parse_url(
            "endpoint_path",
            &format!("{gateway}{}", config.endpoint_path),
        )?;
        if !(1..=10_000).contains(&config.batch_size) {
            return Err(SinkError::Config {
                sink: SINK,
                key: "batch_size",
                problem: format!("must be between 1 and 10000, got {}", config.batch_size),
            });
        }
        let (source, secret) = match config.auth {
            QualysAuth::Basic {
                username,
                password,
                token_lifetime_secs,
            } => (
                TokenSource::Basic {
                    url: parse_url("gateway_url", &format!("{gateway}/auth"))?,
                    username,
                    password: password.clone(),
                    lifetime: Duration::from_secs(token_lifetime_secs.max(60)),
                },
                password,
            ),
            QualysAuth::OAuth {
                client_id,
                client_secret,
                token_url,
            } => (
                TokenSource::OAuth {
                    url: {
                        let url = parse_url("auth.token_url", &token_url)?;
                        crate::http::client::require_tls(
                            SINK,
                            "auth.token_url",
                            &url,
                            &config.http,
                        )?;
                        url
                    },
                    client_id,
                    client_secret: client_secret.clone(),
                },
                client_secret,
            ),
        };
        let user_agent = concat!("ad-connector/", env!("CARGO_PKG_VERSION"));
        let http = HttpClient::new(SINK, &config.http, user_agent, vec![secret])?;
        Ok(QualysSink {
            url,
            meta: Meta {
                customer_uuid: config.customer_uuid,
                connection_uuid: config.connection_uuid,
                profile_uuid: config.profile_uuid,
                source: config.source,
            },
            send_deletes: config.send_deletes,
            batch_size: config.batch_size,
            http,
            auth: TokenAuth::new(
                source,
                Duration::from_secs(config.token_refresh_margin_secs),
            ),
        })
    }

    /// The push URL.
    pub fn push_url(&self) -> &Url {
        &self.url
    }

    /// The request bodies [`Sink::send`] would post for `batch`, one per `batch_size`
    /// assets. For dry runs, benches and tests.
    pub fn encode(&self, batch: &Batch) -> Result<Vec<Vec<u8>>, SinkError> {
        let (items, _) = self.items(batch);
        items
            .chunks(self.batch_size)
            .enumerate()
            .map(|(i, chunk)| self.body(&batch.sync, batch.id, i, chunk))
            .collect()
    }

    /// The items a batch sends, and the number of deletes left out.
    pub(crate) fn items<'a>(&self, batch: &'a Batch) -> (Vec<Item<'a>>, usize) {
        let mut items = Vec::with_capacity(batch.changes.len());
        let mut skipped = 0;
        for change in &batch.changes {
            match change {
                Change::UpsertUser(user) => items.push(Item::User(user)),
                Change::UpsertGroup { group, .. } => items.push(Item::Group(group)),
                Change::Delete(d) if self.send_deletes => items.push(Item::Delete(d)),
                Change::Delete(_) => skipped += 1,
            }
        }
        (items, skipped)
    }

    /// The request body for one request of a batch.
    pub(crate) fn body(
        &self,
        sync: &SyncInfo,
        batch_id: u64,
        request: usize,
        items: &[Item<'_>],
    ) -> Result<Vec<u8>, SinkError> {
        let request_id = uuid::Uuid::new_v5(
            &self.meta.connection_uuid,
            format!("{}/{batch_id}/{request}", sync.cycle_id).as_bytes(),
        );
        let meta = ConnectorMetaData {
            request_id,
            connector_uuid: self.meta.connection_uuid,
            customer_uuid: self.meta.customer_uuid,
            profile_uuid: self.meta.profile_uuid,
            source: &self.meta.source,
        };
        let ser = |source| SinkError::Serialize {
            what: "a Qualys asset",
            source,
        };
        let mut body = Vec::with_capacity(256 + items.len() * 768);
        body.extend_from_slice(br#"{"connectorMetaData":"#);
        serde_json::to_writer(&mut body, &meta).map_err(ser)?;
        body.extend_from_slice(br#","assetData":["#);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            match item {
                Item::User(user) => serde_json::to_writer(&mut body, &user_asset(user)),
                Item::Group(group) => serde_json::to_writer(&mut body, &group_asset(group)),
                Item::Delete(d) => serde_json::to_writer(&mut body, &delete_entry(d)),
            }
            .map_err(ser)?;
        }
        body.extend_from_slice(b"]}");
        Ok(body)
    }

    async fn post(&self, body: Vec<u8>, what: String) -> Result<Exchange, SinkError> {
        let request = Prepared {
            method: Method::POST,
            url: self.url.clone(),
            body: Some((Bytes::from(body), "application/json")),
            what,
        };
        let classify = |ex: &Exchange| Retryable::from_status(ex.status, &ex.headers);
        self.http.execute(&request, &self.auth, &classify).await
    }
}

#[async_trait]
impl Sink for QualysSink {
    fn retries(&self) -> u64 {
        self.http.retries()
    }

    fn name(&self) -> &'static str {
        SINK
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            standalone_groups: true,
            deletes: self.send_deletes,
            needs_affected_users: false,
        }
    }

    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    /// Obtains a token (credentials valid), then sends a bodiless `GET` to the push URL with
    /// it: any answer other than 401/403 proves the endpoint is reachable and takes the token.
    /// No asset is sent. Retries for at most 10 s.
    async fn check(&self) -> Result<CheckReport, SinkError> {
        let quick = self.http.with_retry_budget(CHECK_RETRY_BUDGET);
        let host = host_of(&self.url);
        let item = |name, ok, detail: String| CheckItem { name, ok, detail };
        let mut items = Vec::new();
        match self.auth.authorization(&quick, None).await {
            Ok(_) => items.push(item(
                "credentials accepted",
                true,
                "a token was issued".into(),
            )),
            Err(e) => {
                items.push(item("credentials accepted", false, e.to_string()));
                return Ok(CheckReport {
                    sink: SINK,
                    target: self.url.to_string(),
                    items,
                });
            }
        }
        let request = Prepared {
            method: Method::GET,
            url: self.url.clone(),
            body: None,
            what: "the connection check (no assets)".into(),
        };
        let classify = |ex: &Exchange| match ex.status {
            StatusCode::UNAUTHORIZED => Retryable::RefreshAuth,
            s if s.is_server_error() => Retryable::from_status(s, &ex.headers),
            StatusCode::FORBIDDEN => Retryable::Fatal,
            _ => Retryable::Accepted,
        };
        match quick.execute(&request, &self.auth, &classify).await {
            Ok(ex) => items.push(item(
                "endpoint reachable",
                true,
                format!(
                    "{host}{} answered HTTP {} to a GET",
                    self.url.path(),
                    ex.status.as_u16()
                ),
            )),
            Err(SinkError::Unauthorized {
                status, message, ..
            }) => {
                items.push(item(
                    "endpoint reachable",
                    true,
                    format!("{host} answered HTTP {status}"),
                ));
                items.push(item(
                    "token accepted by the push endpoint",
                    false,
                    format!(
                        "HTTP {status}: {message}; check that the user or client may push assets"
                    ),
                ));
            }
            Err(e) => items.push(item("endpoint reachable", false, e.to_string())),
        }
        Ok(CheckReport {
            sink: SINK,
            target: self.url.to_string(),
            items,
        })
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let (items, skipped) = self.items(batch);
        let chunks: Vec<&[Item<'_>]> = items.chunks(self.batch_size).collect();
        let total = chunks.len();
        let requests = chunks.iter().enumerate().map(|(i, chunk)| async move {
            let body = self.body(&batch.sync, batch.id, i, chunk)?;
            let what = format!(
                "batch {} (request {} of {total}, {} assets)",
                batch.id,
                i + 1,
                chunk.len()
            );
            self.post(body, what).await.map(|_| ())
        });
        futures::future::try_join_all(requests).await?;
        let mut not_representable = Vec::new();
        if skipped > 0 {
            tracing::warn!(
                sink = SINK,
                batch = batch.id,
                deletes = skipped,
                "deletes not sent (send_deletes = false)"
            );
            not_representable.push(NotRepresentable {
                count: skipped,
                what: "delete",
                reason: DELETE_REASON,
            });
        }
        tracing::debug!(
            sink = SINK,
            batch = batch.id,
            assets = items.len(),
            requests = total,
            "batch accepted"
        );
        Ok(Ack {
            batch_id: batch.id,
            accepted: batch.changes.len() - skipped,
            not_representable,
            items_sent: items.len(),
            requests: total,
            task_ids: Vec::new(),
        })
    }
}
