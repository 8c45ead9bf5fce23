//! `[telemetry]`: Prometheus metrics (`GET /metrics`) and a health check (`GET /healthz`)
//! for `run`.
//!
//! [`Telemetry`] holds the metric families (prometheus-client) and what the health check
//! needs. It is an [`Observer`], so the engine feeds it while a cycle runs (entries read,
//! changes delivered, batch latency); after each cycle the daemon refreshes the rest from the
//! state store ([`Telemetry::cycle_ended`]), so the journaled cycle record stays the one
//! source of truth for outcomes and the gauges survive a restart. The HTTP side is hyper's
//! HTTP/1 server on one listener; any other path is 404, any other method 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ad_model::ObjectKind;
use ad_sync::{Delivered, Observer, Store};
use asset_sink::Sink;
use chrono::{DateTime, Utc};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::schedule::Schedule;

/// `mode` and `outcome` of a journaled cycle.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CycleLabels {
    mode: String,
    outcome: String,
}

/// `kind`: user or group.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// `op` (upsert, delete) and `kind` of delivered changes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    op: &'static str,
    kind: &'static str,
}

/// When the health check turns red.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthRule {
    /// Longest time allowed since the last success (or since start, before the first one).
    pub max_age: Duration,
}

impl HealthRule {
    /// `periods` times the longest gap between two of the next scheduled runs (a schedule
    /// that skips weekends is judged by its Friday-to-Monday gap).
    pub fn for_schedule(schedule: &Schedule, periods: f64, now: DateTime<Utc>) -> HealthRule {
        let mut longest = Duration::ZERO;
        let mut at = schedule.next_after(now);
        for _ in 0..32 {
            let Some(this) = at else { break };
            let next = schedule.next_after(this);
            if let Some(next) = next {
                longest = longest.max((next - this).to_std().unwrap_or_default());
            }
            at = next;
        }
        // A schedule with one run left (or none): judge by a day.
        if longest.is_zero() {
            longest = Duration::from_secs(86_400);
        }
        HealthRule {
            max_age: longest.mul_f64(periods),
        }
    }
}

/// The health check's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Health {
    /// True when the last success is recent enough.
    pub healthy: bool,
    /// When the last cycle succeeded, if ever.
    pub last_success: Option<DateTime<Utc>>,
    /// Seconds allowed since the last success (or since start).
    pub max_age_secs: u64,
    /// Why, as a sentence.
    pub reason: String,
}

/// The verdict: healthy while the last success (or, before any, the start) is at most
/// `rule.max_age` old.
pub fn health(
    rule: HealthRule,
    last_success: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Health {
    let max_age_secs = rule.max_age.as_secs();
    let since = last_success.unwrap_or(started);
    let age = (now - since).to_std().unwrap_or_default();
    let healthy = age <= rule.max_age;
    let reason = match (healthy, last_success) {
        (true, Some(_)) => format!(
            "the last successful cycle ended {} s ago (allowed {max_age_secs} s)",
            age.as_secs()
        ),
        (true, None) => format!(
            "no successful cycle yet; started {} s ago (allowed {max_age_secs} s)",
            age.as_secs()
        ),
        (false, Some(_)) => format!(
            "the last successful cycle ended {} s ago, more than the {max_age_secs} s allowed; `ad-connector status` shows why the cycles since failed",
            age.as_secs()
        ),
        (false, None) => format!(
            "no cycle has succeeded in the {} s since start (allowed {max_age_secs} s); `ad-connector status` shows why",
            age.as_secs()
        ),
    };
    Health {
        healthy,
        last_success,
        max_age_secs,
        reason,
    }
}

/// Metrics and health of a running daemon.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    cycles: Family<CycleLabels, Counter>,
    /// `entries_read{kind="user"}` and `{kind="group"}`, looked up once: `object_read` runs
    /// for every entry, so it bumps a counter instead of locking the family's map.
    users_read: Counter,
    groups_read: Counter,
    changes_sent: Family<ChangeLabels, Counter>,
    refused: Counter,
    batch_seconds: Histogram,
    retries: Counter,
    cycle_running: Gauge,
    quarantined: Gauge,
    withheld_deletes: Gauge,
    skipped: Gauge,
    last_success_seconds: Gauge<f64, AtomicU64>,
    checkpoint_usn: Gauge,
    sink: Arc<dyn Sink>,
    rule: HealthRule,
    started: DateTime<Utc>,
    last_success: Mutex<Option<DateTime<Utc>>>,
    /// The newest journaled cycle already counted in `cycles`.
    counted_cycle: Mutex<i64>,
}

impl Telemetry {
    /// Metrics for a daemon delivering to `sink`, healthy by `rule`.
    pub fn new(sink: Arc<dyn Sink>, rule: HealthRule) -> Telemetry {
        let mut registry = Registry::with_prefix("adc");
        let cycles = Family::<CycleLabels, Counter>::default();
        registry.register(
            "cycles",
            "Cycles journaled since start, by mode (full, delta) and outcome (ok, failed, interrupted)",
            cycles.clone(),
        );
        let entries_read = Family::<KindLabels, Counter>::default();
        registry.register(
            "entries_read",
            "Users and groups read from the directory",
            entries_read.clone(),
        );
        let changes_sent = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "changes_sent",
            "Changes the platform accepted, by op (upsert, delete) and kind (user, group)",
            changes_sent.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "records_refused",
            "Records the platform refused on their own and were quarantined (retried next cycle)",
            refused.clone(),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register_with_unit(
            "batch_duration",
            "Time from handing a batch to the sink to its last answer, retries included",
            prometheus_client::registry::Unit::Seconds,
            batch_seconds.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "sink_retries",
            "Requests the sink sent again after a transient failure (timeout, 429, 5xx, connection)",
            retries.clone(),
        );
        let cycle_running = Gauge::default();
        registry.register(
            "cycle_running",
            "1 while a cycle runs, else 0",
            cycle_running.clone(),
        );
        let quarantined = Gauge::default();
        registry.register(
            "quarantined",
            "Records currently quarantined after the platform refused them",
            quarantined.clone(),
        );
        let withheld_deletes = Gauge::default();
        registry.register(
            "withheld_deletes",
            "Deletes held back by the delete guard, waiting for `sync --full --confirm-deletes N`",
            withheld_deletes.clone(),
        );
        let skipped = Gauge::default();
        registry.register(
            "skipped",
            "Entries that could not be read and are re-read every cycle",
            skipped.clone(),
        );
        let last_success_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time when the last successful cycle ended (0: never)",
            last_success_seconds.clone(),
        );
        let checkpoint_usn = Gauge::default();
        registry.register(
            "checkpoint_usn",
            "The uSNChanged the next delta starts after (0: no checkpoint)",
            checkpoint_usn.clone(),
        );
        let users_read = entries_read
            .get_or_create(&KindLabels { kind: "user" })
            .clone();
        let groups_read = entries_read
            .get_or_create(&KindLabels { kind: "group" })
            .clone();
        Telemetry {
            registry,
            cycles,
            users_read,
            groups_read,
            changes_sent,
            refused,
            batch_seconds,
            retries,
            cycle_running,
            quarantined,
            withheld_deletes,
            skipped,
            last_success_seconds,
            checkpoint_usn,
            sink,
            rule,
            started: Utc::now(),
            last_success: Mutex::new(None),
            counted_cycle: Mutex::new(i64::MAX),
        }
    }

    /// A cycle starts.
    pub fn cycle_started(&self) {
        self.cycle_running.set(1);
    }

    /// A cycle ended (or the daemon started): read outcomes and gauges from the store.
    /// Cycles journaled before the daemon started are not counted, only their gauges used.
    pub fn cycle_ended(&self, store: &Store) -> Result<(), ad_sync::StoreError> {
        self.cycle_running.set(0);
        let newest = store.recent_cycles(20)?;
        {
            let mut counted = self
                .counted_cycle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *counted == i64::MAX {
                // First call (at start): everything journaled so far is history.
                *counted = newest.first().map_or(0, |c| c.id);
            }
            let from = *counted;
            for cycle in newest.iter().rev().filter(|c| c.id > from) {
                if cycle.outcome == "running" {
                    break;
                }
                self.cycles
                    .get_or_create(&CycleLabels {
                        mode: cycle.mode.clone(),
                        outcome: cycle.outcome.clone(),
                    })
                    .inc();
                *counted = cycle.id;
            }
        }
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.quarantined.set(gauge(store.quarantined()?.len()));
        self.withheld_deletes.set(gauge(store.withheld()?.len()));
        self.skipped.set(gauge(store.skipped()?.len()));
        self.checkpoint_usn.set(
            store
                .checkpoint()?
                .map_or(0, |cp| i64::try_from(cp.position.usn).unwrap_or(i64::MAX)),
        );
        let last = store.last_success()?;
        self.last_success_seconds
            .set(last.map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0));
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = last;
        Ok(())
    }

    /// The health verdict now.
    pub fn health(&self) -> Health {
        let last = *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        health(self.rule, last, self.started, Utc::now())
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        // The sink counts its own retries; bring the counter up to date (it only grows).
        let seen = self.retries.get();
        let now = self.sink.retries();
        if now > seen {
            self.retries.inc_by(now - seen);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl Observer for Telemetry {
    fn object_read(&self, kind: ObjectKind) {
        match kind {
            ObjectKind::User => self.users_read.inc(),
            ObjectKind::Group => self.groups_read.inc(),
        };
    }

    fn batch_delivered(&self, delivered: &Delivered) {
        for (op, kind, n) in [
            ("upsert", "user", delivered.users_upserted),
            ("upsert", "group", delivered.groups_upserted),
            ("delete", "user", delivered.users_deleted),
            ("delete", "group", delivered.groups_deleted),
        ] {
            if n > 0 {
                self.changes_sent
                    .get_or_create(&ChangeLabels { op, kind })
                    .inc_by(n);
            }
        }
        if delivered.refused > 0 {
            self.refused.inc_by(delivered.refused);
        }
        self.batch_seconds.observe(delivered.duration.as_secs_f64());
    }
}

/// Why the telemetry listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} for telemetry (/metrics, /healthz): {source}; choose a free address in telemetry.listen, or remove it"
)]
pub struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Bind `addr`; the address actually bound (port 0 picks one) is logged.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    tracing::info!(addr = %bound, "telemetry listening: /metrics and /healthz");
    Ok(listener)
}

/// Serve `/metrics` and `/healthz` until `shutdown`.
pub async fn serve(listener: TcpListener, telemetry: Arc<Telemetry>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "telemetry: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let telemetry = Arc::clone(&telemetry);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let telemetry = Arc::clone(&telemetry);
                async move { Ok::<_, Infallible>(answer(&telemetry, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "telemetry: connection ended with an error");
            }
        });
    }
}

fn answer<B>(telemetry: &Telemetry, request: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET is served\n".into(),
        );
    }
    match request.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            telemetry.encode(),
        ),
        "/healthz" => {
            let health = telemetry.health();
            let status = if health.healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_string(&health).unwrap_or_default() + "\n";
            reply(status, "application/json", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics or /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::CronDialect;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_health_rule_uses_the_longest_gap_of_the_schedule() {
        let every_ten = Schedule::parse("c", "*/10 * * * *", CronDialect::Cron).unwrap();
        let rule = HealthRule::for_schedule(&every_ten, 3.0, at("2026-12-03T10:00:00Z"));
        assert_eq!(rule.max_age, Duration::from_secs(1800));
        // Weekdays at noon: the Friday-to-Monday gap (3 days) decides, not one day.
        let weekdays = Schedule::parse("c", "0 12 * * MON-FRI", CronDialect::Cron).unwrap();
        let rule = HealthRule::for_schedule(&weekdays, 1.0, at("2026-12-03T10:00:00Z"));
        assert_eq!(rule.max_age, Duration::from_secs(3 * 86_400));
    }

    #[test]
    fn healthy_until_the_last_success_is_too_old() {
        let rule = HealthRule {
            max_age: Duration::from_secs(1800),
        };
        let started = at("2026-12-03T10:00:00Z");
        let ok = at("2026-12-03T10:05:00Z");
        let fresh = health(rule, Some(ok), started, at("2026-12-03T10:35:00Z"));
        assert!(fresh.healthy, "{fresh:?}");
        let stale = health(rule, Some(ok), started, at("2026-12-03T10:35:01Z"));
        assert!(!stale.healthy, "{stale:?}");
        assert!(stale.reason.contains("1801 s ago"), "{}", stale.reason);
        // Never succeeded: judged from the start.
        assert!(health(rule, None, started, at("2026-12-03T10:30:00Z")).healthy);
        let never = health(rule, None, started, at("2026-12-03T10:30:01Z"));
        assert!(!never.healthy);
        assert!(
            never.reason.contains("no cycle has succeeded"),
            "{}",
            never.reason
        );
    }
}
