//! A fake platform: a sink that holds what a platform would hold after each batch, with
//! injected faults, and that checks on every delete that the object is really gone.
//!
//! A request takes a few polls on the wire, and the HTTP client carrying it has a total
//! timeout. Wall time would make the simulation depend on the machine, so the timeout runs
//! on the clock that matters: LDAP round trips the DC answered while the request was on the
//! wire (reading is what the engine does meanwhile, and each round trip takes real time on
//! a real network). A request that needs more than [`TIMEOUT_ROUND_TRIPS`] of them came back
//! too late: the platform applied the batch, the client reports a timeout, and the cycle
//! fails without an injected fault, which the harness reports as a liveness violation (f).
//! A request driven by a task of its own completes while the reader waits for its first
//! page; one left unpolled until the engine settles it waits for as much reading as the
//! engine does meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ad_model::{Guid, ObjectKind};
use ad_testkit::{Directory, StatsHandle};
use asset_sink::{Ack, Batch, Capabilities, Change, CheckReport, Sink, SinkError};
use async_trait::async_trait;
use tokio::sync::Notify;

/// Polls a request needs after its first one until the platform's answer is read (the
/// first poll writes it).
const TRANSIT_POLLS: usize = 3;

/// The client's total timeout, in LDAP round trips the DC answered on each connection the
/// cycle reads with while the request was on the wire. A request in a task of its own is
/// polled again in the runtime's next pass, and a pass sees at most one round trip per
/// connection: it completes within a few (at most 4 in 1,000 scenarios, 28,000 requests).
const TIMEOUT_ROUND_TRIPS: u64 = 10;

/// What the platform does on one `send` call (counted from the start of a cycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 5xx until the retry budget ran out: nothing applied, error.
    ServerError,
    /// 429 with Retry-After: the sink waited and then succeeded.
    TooManyRequests,
    /// The request timed out: nothing applied, error after a while.
    Timeout,
    /// The platform accepted the batch, then the connection dropped before the answer.
    AcceptedThenDropped,
    /// The process dies while this request is on the wire (before the platform applied it).
    CrashBefore,
    /// The process dies right after the platform applied this request.
    CrashAfter,
}

#[derive(Debug, Default)]
struct Held {
    /// objectGUID → (kind, content hash) as the platform holds it.
    objects: HashMap<Guid, (ObjectKind, String)>,
    /// objectGUID → the record as last upserted (JSON), to explain a mismatch.
    records: HashMap<Guid, serde_json::Value>,
    /// Every request refused with this status.
    refuse_all: Option<u16>,
    /// Records refused with HTTP 400.
    poison: HashSet<Guid>,
    /// Faults by call number in the current cycle.
    faults: HashMap<u64, Fault>,
    calls: u64,
    /// Upserts whose content the platform already held (re-sends).
    duplicates: u64,
    duplicate_dns: Vec<String>,
    /// Invariant (b) violations: deletes of objects alive in the directory.
    false_deletes: Vec<String>,
    /// Whether any batch was applied in this cycle.
    applied: u64,
    /// Whether an injected fault fired in this cycle.
    fired: bool,
}

/// The fake platform.
#[derive(Debug, Clone)]
pub struct Platform {
    held: Arc<Mutex<Held>>,
    directory: Directory,
    /// Notified when a crash fault fires; the harness drops the cycle.
    crash: Arc<Mutex<Arc<Notify>>>,
    /// The DC the cycle reads from: its round trips are the clock of requests' timeouts.
    clock: Arc<Mutex<Option<StatsHandle>>>,
    /// Connections the cycle reads with at once: the DC answers that many round trips in
    /// the time one connection takes for one.
    connections: Arc<std::sync::atomic::AtomicU64>,
}

impl Platform {
    pub fn new(directory: Directory) -> Platform {
        Platform {
            held: Arc::default(),
            directory,
            crash: Arc::new(Mutex::new(Arc::new(Notify::new()))),
            clock: Arc::default(),
            connections: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start a cycle with these faults (by call number, 1-based); `crash` is notified when a
    /// crash fault fires; `dc`: the DC the cycle reads from (`None`: requests never time out)
    /// on `connections` connections at most.
    pub fn arm(
        &self,
        faults: HashMap<u64, Fault>,
        crash: Arc<Notify>,
        dc: Option<StatsHandle>,
        connections: u64,
    ) {
        self.connections
            .store(connections.max(1), std::sync::atomic::Ordering::Relaxed);
        *self.crash.lock().unwrap_or_else(PoisonError::into_inner) = crash;
        *self.clock.lock().unwrap_or_else(PoisonError::into_inner) = dc;
        let mut held = self.lock();
        held.faults = faults;
        held.calls = 0;
        held.duplicates = 0;
        held.fired = false;
        held.duplicate_dns.clear();
        held.applied = 0;
    }

    pub fn set_poison(&self, poison: HashSet<Guid>) {
        self.lock().poison = poison;
    }

    /// Refuse every request with this HTTP status (401/403: credentials; others: rejected);
    /// `None`: answer normally.
    pub fn refuse_all(&self, status: Option<u16>) {
        self.lock().refuse_all = status;
    }

    pub fn objects(&self) -> HashMap<Guid, (ObjectKind, String)> {
        self.lock().objects.clone()
    }

    /// Whether a fault that fails or crashes the cycle fired since [`Platform::arm`].
    pub fn fault_fired(&self) -> bool {
        self.lock().fired
    }

    pub fn record(&self, guid: &Guid) -> Option<serde_json::Value> {
        self.lock().records.get(guid).cloned()
    }

    pub fn duplicates(&self) -> (u64, Vec<String>) {
        let held = self.lock();
        (held.duplicates, held.duplicate_dns.clone())
    }

    pub fn false_deletes(&self) -> Vec<String> {
        self.lock().false_deletes.clone()
    }

    fn apply(&self, held: &mut Held, batch: &Batch) {
        held.applied += 1;
        for change in &batch.changes {
            match change {
                Change::UpsertUser(user) => {
                    held.records.insert(
                        user.object_guid,
                        serde_json::to_value(user).unwrap_or_default(),
                    );
                    let hash = ad_sync::fingerprint::user(user);
                    let previous = held
                        .objects
                        .insert(user.object_guid, (ObjectKind::User, hash.clone()));
                    if previous.is_some_and(|(_, h)| h == hash) {
                        held.duplicates += 1;
                        held.duplicate_dns.push(user.dn.clone());
                    }
                }
                Change::UpsertGroup { group, .. } => {
                    held.records.insert(
                        group.object_guid,
                        serde_json::to_value(group).unwrap_or_default(),
                    );
                    let hash = ad_sync::fingerprint::group(group);
                    let previous = held
                        .objects
                        .insert(group.object_guid, (ObjectKind::Group, hash.clone()));
                    if previous.is_some_and(|(_, h)| h == hash) {
                        held.duplicates += 1;
                        held.duplicate_dns.push(group.dn.clone());
                    }
                }
                Change::Delete(deletion) => {
                    let uuid = deletion.object_guid.as_uuid();
                    if let Some(entry) = self.directory.find_by_guid(&uuid)
                        && !entry.is_deleted()
                    {
                        held.false_deletes.push(format!(
                            "{} deleted on the platform while alive in the directory at {}",
                            deletion.object_guid,
                            entry.dn()
                        ));
                    }
                    held.objects.remove(&deletion.object_guid);
                }
            }
        }
    }
}

fn server_error(what: &str) -> SinkError {
    SinkError::RetriesExhausted {
        sink: "sim",
        host: "platform.sim".into(),
        what: what.into(),
        attempts: 5,
        elapsed_secs: 1,
        last: "HTTP 503".into(),
    }
}

#[async_trait]
impl Sink for Platform {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            standalone_groups: true,
            deletes: true,
            needs_affected_users: false,
        }
    }

    fn max_batch_size(&self) -> usize {
        1000
    }

    async fn check(&self) -> Result<CheckReport, SinkError> {
        Ok(CheckReport {
            sink: "sim",
            target: "platform.sim".into(),
            items: Vec::new(),
        })
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let fault = {
            let mut held = self.lock();
            held.calls += 1;
            let call = held.calls;
            let fault = held.faults.get(&call).copied();
            held.fired |= fault.is_some_and(|f| f != Fault::TooManyRequests);
            fault
        };
        // Written at the first poll; the client's timeout runs from here.
        let clock = self
            .clock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let round_trips = move || clock.as_ref().map_or(0, |dc| dc.stats().searches);
        let mut sent_at = round_trips();
        // Yield like a network round trip would, so batches interleave with reading.
        tokio::task::yield_now().await;
        let what = format!("batch {}", batch.id);
        match fault {
            Some(Fault::ServerError) => return Err(server_error(&what)),
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                return Err(server_error(&what));
            }
            Some(Fault::TooManyRequests) => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                // The sink's retry after Retry-After is a new request with a new timeout.
                sent_at = round_trips();
            }
            Some(Fault::CrashBefore) => {
                self.crash
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .notify_one();
                std::future::pending::<()>().await;
            }
            _ => {}
        }
        for _ in 0..TRANSIT_POLLS {
            tokio::task::yield_now().await;
        }
        let waited = round_trips().saturating_sub(sent_at);
        {
            let mut held = self.lock();
            match held.refuse_all {
                Some(status @ (401 | 403)) => {
                    return Err(SinkError::Unauthorized {
                        sink: "sim",
                        host: "platform.sim".into(),
                        status,
                        message: "invalid API key".into(),
                        hint: "sim.api_key",
                    });
                }
                Some(status) => {
                    return Err(SinkError::Rejected {
                        sink: "sim",
                        host: "platform.sim".into(),
                        status,
                        message: "refused".into(),
                        what,
                    });
                }
                None => {}
            }
            let refused = batch
                .changes
                .iter()
                .filter(|c| held.poison.contains(&c.object_guid()))
                .count();
            if refused > 0 {
                return Err(SinkError::Rejected {
                    sink: "sim",
                    host: "platform.sim".into(),
                    status: 400,
                    message: format!("{refused} records failed validation"),
                    what,
                });
            }
            self.apply(&mut held, batch);
        }
        let connections = self.connections.load(std::sync::atomic::Ordering::Relaxed);
        if waited > TIMEOUT_ROUND_TRIPS * connections {
            return Err(SinkError::Transport {
                sink: "sim",
                host: "platform.sim".into(),
                detail: format!(
                    "the platform accepted {what}, but its answer was read after the client's \
                     timeout: the DC answered {waited} LDAP requests while it was on the wire \
                     (at most {TIMEOUT_ROUND_TRIPS} per connection, {connections} connection(s))"
                ),
            });
        }
        match fault {
            Some(Fault::AcceptedThenDropped) => Err(SinkError::Transport {
                sink: "sim",
                host: "platform.sim".into(),
                detail: "connection reset after the request was sent".into(),
            }),
            Some(Fault::CrashAfter) => {
                self.crash
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .notify_one();
                std::future::pending::<()>().await;
                unreachable_ack(batch)
            }
            _ => Ok(ack(batch)),
        }
    }
}

fn ack(batch: &Batch) -> Ack {
    Ack {
        batch_id: batch.id,
        accepted: batch.changes.len(),
        not_representable: Vec::new(),
        items_sent: batch.changes.len(),
        requests: 1,
        task_ids: Vec::new(),
    }
}

fn unreachable_ack(batch: &Batch) -> Result<Ack, SinkError> {
    Ok(ack(batch))
}
