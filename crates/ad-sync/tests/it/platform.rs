//! A fake platform: a sink that holds what a platform would hold after each batch, with
//! injected faults, and that checks on every delete that the object is really gone (deleted
//! or out of the scope on the DC the cycle reads, see [`Platform::arm`]).
//!
//! It takes groups alone (Qualys-like), or asks for affected users (Sekoia-like,
//! `needs_affected_users`): then the users a group change carries replace those users'
//! records, as Sekoia's would. It keeps the groups' records either way, so the simulation
//! compares every object.
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
use ad_testkit::{Directory, StatsHandle, dn_within};
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
    /// The DC the cycle reads (its directory), for (b).
    read: Option<Directory>,
    /// Objects not alive in the scope, by (b)'s rule, when the cycle started: the engine may
    /// have read them so, and delete them even if they came back (moved into the scope,
    /// restored) since. A delete of any other object alive when the delete arrives is a
    /// violation.
    unprotected: HashSet<Guid>,
}

/// The fake platform.
#[derive(Debug, Clone)]
pub struct Platform {
    held: Arc<Mutex<Held>>,
    directory: Directory,
    /// The configured scope, canonically spelled (`None`: the domain root).
    scope: Option<String>,
    /// Sekoia-like: group changes carry the affected users.
    affected_users: bool,
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
        Platform::with_world(directory, None, false)
    }

    /// A platform for a directory read in `scope` (canonically spelled; `None`: the domain
    /// root) that asks for affected users or not.
    pub fn with_world(
        directory: Directory,
        scope: Option<String>,
        affected_users: bool,
    ) -> Platform {
        Platform {
            held: Arc::default(),
            directory,
            scope,
            affected_users,
            crash: Arc::new(Mutex::new(Arc::new(Notify::new()))),
            clock: Arc::default(),
            connections: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The directory of the DC the next cycles read (a lagging replica, or the first DC).
    pub fn read_from(&self, read: Directory) {
        self.lock().read = Some(read);
    }

    pub fn needs_affected_users(&self) -> bool {
        self.affected_users
    }

    /// Where the object is alive and in the scope, by (b)'s rule: on the DC the cycle reads
    /// (`read`), or — when that DC does not have the object at all (a lagging DC the object
    /// has not replicated to yet) — on the first DC. Deleted or out of the scope on the DC
    /// read: not alive (the engine can only go by what that DC shows).
    fn alive(&self, read: Option<&Directory>, guid: &Guid) -> Option<String> {
        let uuid = guid.as_uuid();
        let found = match read.map(|dc| dc.find_by_guid(&uuid)) {
            Some(Some(entry)) => Some(entry),
            _ => self.directory.find_by_guid(&uuid),
        }?;
        let in_scope = self
            .scope
            .as_deref()
            .is_none_or(|base| dn_within(found.dn(), base));
        (!found.is_deleted() && in_scope).then(|| found.dn().to_owned())
    }

    /// Start a cycle with these faults (by call number, 1-based); `crash` is notified when a
    /// crash fault fires; `dc`: the DC the cycle reads from (`None`: requests never time out)
    /// on `connections` connections at most. (b) judges by the directory given to
    /// [`Platform::read_from`] (by default the platform's own).
    pub fn arm(
        &self,
        faults: HashMap<u64, Fault>,
        crash: Arc<Notify>,
        dc: Option<StatsHandle>,
        connections: u64,
    ) {
        let read = self
            .lock()
            .read
            .clone()
            .unwrap_or_else(|| self.directory.clone());
        let mut unprotected = HashSet::new();
        for dc in [&self.directory, &read] {
            let base = dc.base_dn();
            for entry in dc
                .search(&base, ad_testkit::Scope::Subtree, "(objectClass=*)", true)
                .unwrap_or_default()
            {
                let guid = entry
                    .get("objectGUID")
                    .and_then(|v| v.first())
                    .and_then(|b| Guid::from_bytes(b).ok());
                if let Some(guid) = guid
                    && self.alive(Some(&read), &guid).is_none()
                {
                    unprotected.insert(guid);
                }
            }
        }
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
        held.read = Some(read);
        held.unprotected = unprotected;
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

    /// Apply a user's record; true when the platform held it already as it is (a re-send).
    fn apply_user(held: &mut Held, user: &ad_model::User) -> bool {
        held.records.insert(
            user.object_guid,
            serde_json::to_value(user).unwrap_or_default(),
        );
        let hash = ad_sync::fingerprint::user(user);
        let previous = held
            .objects
            .insert(user.object_guid, (ObjectKind::User, hash.clone()));
        previous.is_some_and(|(_, h)| h == hash)
    }

    fn apply(&self, held: &mut Held, batch: &Batch) {
        held.applied += 1;
        for change in &batch.changes {
            match change {
                Change::UpsertUser(user) => {
                    if Platform::apply_user(held, user) {
                        held.duplicates += 1;
                        held.duplicate_dns.push(user.dn.clone());
                    }
                }
                Change::UpsertGroup {
                    group,
                    affected_users,
                } => {
                    // Sekoia learns groups through users: each one carried replaces that
                    // user's record. (Other platforms ignore them.)
                    // A change re-sent counts once, with the users it carries (invariant
                    // (e) bounds re-sent changes: a batch's worth per in-flight slot).
                    let mut resent = Vec::new();
                    if self.affected_users {
                        for user in affected_users {
                            if Platform::apply_user(held, user) {
                                resent.push(user.dn.clone());
                            }
                        }
                    }
                    held.records.insert(
                        group.object_guid,
                        serde_json::to_value(group).unwrap_or_default(),
                    );
                    let hash = ad_sync::fingerprint::group(group);
                    let previous = held
                        .objects
                        .insert(group.object_guid, (ObjectKind::Group, hash.clone()));
                    if previous.is_some_and(|(_, h)| h == hash) {
                        resent.push(group.dn.clone());
                    }
                    if !resent.is_empty() {
                        held.duplicates += 1;
                        held.duplicate_dns.extend(resent);
                    }
                }
                Change::Delete(deletion) => {
                    if !held.unprotected.contains(&deletion.object_guid)
                        && let Some(dn) = self.alive(held.read.as_ref(), &deletion.object_guid)
                    {
                        held.false_deletes.push(format!(
                            "{} deleted on the platform while alive in the directory (and in \
                             the scope) at {dn}",
                            deletion.object_guid,
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
            // Sekoia has no group assets; this platform keeps the groups' records anyway so
            // the simulation can compare them.
            standalone_groups: !self.affected_users,
            deletes: true,
            needs_affected_users: self.affected_users,
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
