//! The sync engine: full snapshots and deltas as a bounded stream of events.

use std::sync::Arc;

use ad_model::{Decoded, Deleted, Group, Guid, ObjectKind, RawEntry, User};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checkpoint::Checkpoint;
use crate::config::SourceConfig;
use crate::error::SourceError;
use crate::membership::{GroupIndex, GroupInfo, INDEX_ATTRIBUTES};
use crate::paging::{Item, PagedReader, SearchSpec, show_deleted_control};
use crate::range::complete_ranges;
use crate::root_dse::{RootDse, SHOW_DELETED_OID};
use crate::session::{Counters, Session};

/// Events in flight between the reader and the consumer. Small: memory stays flat.
pub const EVENT_BUFFER: usize = 256;

/// Where a [`Source`] gets "now" from: the instant account status (expiry) is judged at when
/// users are decoded. [`Source::new`] uses [`Utc::now`]; tests pass a controllable one with
/// [`Source::with_clock`] (e.g. `Arc::new(move || directory.now())`).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One thing the source found.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum SourceEvent {
    /// A user (full snapshot: every user in scope; delta: created, changed, renamed or moved
    /// into scope). `record.groups` holds the resolved memberships incl. the primary group.
    User(Decoded<User>),
    /// A group, with its complete `members` and resolved parent `groups`.
    Group(Decoded<Group>),
    /// A deleted user or group (delta only), keyed by `object_guid`.
    Deleted(Deleted),
    /// An entry that could not be read; the run continued without it.
    Skipped {
        /// The entry's DN (as far as it could be read).
        dn: String,
        /// The entry's `objectGUID`, when it could be read (the entry was skipped for another
        /// attribute or an incomplete ranged read); `None` when the GUID itself is missing or
        /// malformed.
        guid: Option<Guid>,
        /// Why, as a sentence.
        reason: String,
    },
    /// Something the operator should know; the run continued.
    Warning {
        /// The sentence.
        message: String,
    },
}

/// Whether a run is a full snapshot or a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Every user and group in scope.
    Full,
    /// Changes since a checkpoint.
    Delta,
}

/// How a finished run ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncSummary {
    /// Full or delta.
    pub kind: RunKind,
    /// Store this (after delivering every event) and pass it to the next
    /// [`Source::changes_since`].
    pub checkpoint: Checkpoint,
    /// What happened.
    pub counters: Counters,
    /// Every group in scope → the DNs (lower case, sorted) of all groups it is nested in, at
    /// any depth. Compare it with the previous run's: a group whose list changed changed the
    /// transitive groups of every member below it, and no delta reports those members.
    pub nesting: std::collections::BTreeMap<String, Vec<String>>,
}

impl SyncSummary {
    /// Whether entries may be missing from this run: a page came back without the
    /// paged-results response control, or a search ended with sizeLimitExceeded /
    /// timeLimitExceeded / adminLimitExceeded. A consumer should not conclude from a
    /// truncated full snapshot that an object it did not see was deleted.
    pub fn truncated(&self) -> bool {
        self.counters.truncated()
    }

    /// One plain sentence per nonzero counter among `pages_without_paged_control`,
    /// `limit_exceeded`, `searches_restarted` and `referrals_ignored`, e.g. "3 searches ended
    /// with sizeLimitExceeded/timeLimitExceeded/adminLimitExceeded: entries may be missing".
    pub fn incomplete_reasons(&self) -> Vec<String> {
        self.counters.incomplete_reasons()
    }
}

/// A running sync: read events with [`SyncRun::next_event`] until `None`, then call
/// [`SyncRun::finish`] for the checkpoint. If `finish` returns an error, the events read are
/// incomplete and the checkpoint must not advance.
#[derive(Debug)]
pub struct SyncRun {
    events: mpsc::Receiver<SourceEvent>,
    task: JoinHandle<Result<SyncSummary, SourceError>>,
    /// The rootDSE read at the start of the run.
    pub root_dse: RootDse,
    /// Containers, and what changed outside the scope, read after H0 and before the run
    /// (see [`crate::surroundings`]).
    pub surroundings: crate::surroundings::Surroundings,
}

impl SyncRun {
    /// The next event, or `None` when the reader is done (successfully or not).
    pub async fn next_event(&mut self) -> Option<SourceEvent> {
        self.events.recv().await
    }

    /// Wait for the reader and return the summary. Events not read yet are dropped, and a
    /// reader still producing is cancelled (an error).
    pub async fn finish(self) -> Result<SyncSummary, SourceError> {
        drop(self.events);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(SourceError::Internal(format!(
                "the reader task failed: {e}"
            ))),
        }
    }
}

/// The result of [`Source::changes_since`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per delta; boxing buys nothing
pub enum DeltaOutcome {
    /// The checkpoint is valid on this DC: here are the changes.
    Changes(SyncRun),
    /// The checkpoint cannot be continued; run [`Source::full_snapshot`].
    FullSyncRequired {
        /// Why, as a sentence.
        reason: String,
    },
}

/// The directory reader.
#[derive(Clone)]
pub struct Source {
    config: Arc<SourceConfig>,
    clock: Clock,
    /// The session kept between the reads of a cycle (see [`Source::pin`]).
    parked: crate::session::Parked,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Check the configuration (URL, transport, filters) and keep it. The clock is
    /// [`Utc::now`].
    pub fn new(config: SourceConfig) -> Result<Source, SourceError> {
        config.validate()?;
        Ok(Source {
            config: Arc::new(config),
            clock: Arc::new(Utc::now),
            parked: Default::default(),
        })
    }

    pub(crate) fn from_parts(config: Arc<SourceConfig>, clock: Clock) -> Source {
        Source {
            config,
            clock,
            parked: Default::default(),
        }
    }

    /// The slot of the session kept for the next read.
    pub(crate) fn parked(&self) -> &crate::session::Parked {
        &self.parked
    }

    /// Close the connection this source kept open for its next read, if any (it unbinds).
    /// A cycle calls this when it is done; a source dropped without it closes the
    /// connection without an unbind.
    pub async fn release(&self) {
        self.parked.close().await;
    }

    /// Run `work` on the kept session or a new one, in a task of its own (see
    /// [`isolated`](crate::session::isolated)); a successful read keeps its session for the
    /// next read, a failed one closes it.
    pub(crate) async fn with_session<T, Fut>(
        &self,
        during: &'static str,
        work: impl FnOnce(Session) -> Fut,
    ) -> Result<T, SourceError>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = (Session, Result<T, SourceError>)> + Send + 'static,
    {
        let session = Session::reuse_or_open(self.config.clone(), &self.parked).await?;
        let host = session.conn.host().to_owned();
        let parked = self.parked.clone();
        let work = work(session);
        crate::session::isolated(host, during, async move {
            let (session, result) = work.await;
            parked.settle(session, result.is_ok()).await;
            result
        })
        .await
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// The same source judging time-dependent account state (expiry) by `clock` instead of
    /// the system clock.
    pub fn with_clock(self, clock: Clock) -> Source {
        Source { clock, ..self }
    }

    /// "Now" by this source's clock: the instant users are decoded at.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The configuration, shared (for sessions).
    pub(crate) fn config_arc(&self) -> Arc<SourceConfig> {
        self.config.clone()
    }

    /// Connect, bind and read the rootDSE (invocationId, domain SID, MaxPageSize included).
    pub async fn root_dse(&self) -> Result<RootDse, SourceError> {
        let session = Session::open(self.config.clone()).await?;
        let root = session.root.clone();
        session.conn.close().await;
        Ok(root)
    }

    /// Read every group, then every user, in scope (with `read_connections` > 1, groups and
    /// slices of the users on several connections, their events interleaved). The
    /// checkpoint's USN is the DC's
    /// `highestCommittedUSN` read before anything else (H0). Connection, TLS and bind errors
    /// are returned here; errors during the read end the event stream and come from
    /// [`SyncRun::finish`].
    ///
    /// Before the users and groups, and after H0, it reads every container of the domain
    /// ([`SyncRun::surroundings`]): a consumer that keeps them can tell, at the next delta,
    /// an OU renamed or moved since this read.
    pub async fn full_snapshot(&self) -> Result<SyncRun, SourceError> {
        let session = Session::reuse_or_open(self.config.clone(), &self.parked).await?;
        let (session, surroundings) = crate::surroundings::read_isolated(session, None).await?;
        let now = session.now_or(self.now());
        Ok(spawn_run(
            session,
            RunKind::Full,
            None,
            now,
            self.parked.clone(),
            surroundings,
        ))
    }

    /// Read what changed since `checkpoint` on the same DC: changed groups (with full member
    /// lists), changed users, and deletions (tombstones). Returns
    /// [`DeltaOutcome::FullSyncRequired`] if the URL now leads to another DC or the DC's
    /// database was restored (invocationId changed), or its USN went backwards.
    pub async fn changes_since(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<DeltaOutcome, SourceError> {
        self.changes_since_with(checkpoint, None).await
    }

    /// [`Source::changes_since`], told the containers a consumer recorded (from
    /// [`SyncRun::surroundings`] of earlier runs): a container among them that was renamed or
    /// moved since, into, out of or inside the scope, changed the DNs (or the scope) of
    /// objects AD did not write to, so no delta can see them and
    /// [`DeltaOutcome::FullSyncRequired`] says which. An empty map (state that never recorded
    /// containers) requires a full snapshot too, which records them.
    pub async fn changes_since_with(
        &self,
        checkpoint: &Checkpoint,
        known: Option<&crate::surroundings::Containers>,
    ) -> Result<DeltaOutcome, SourceError> {
        let session = Session::reuse_or_open(self.config.clone(), &self.parked).await?;
        if let Some(reason) = full_sync_reason(&session.root, checkpoint) {
            // The full read that follows can use this connection.
            self.parked.put(session).await;
            return Ok(DeltaOutcome::FullSyncRequired { reason });
        }
        // After H0 (read when the session was taken): a move after this search has a
        // uSNChanged above the new checkpoint, so the next delta sees it.
        let (session, surroundings) =
            crate::surroundings::read_isolated(session, Some(checkpoint.usn)).await?;
        if let Some(known) = known {
            let scope = crate::surroundings::ScopeCheck::new(&session.base_dn(), self.config.scope);
            let reason = if known.is_empty() {
                Some("no container (OU) of the domain was recorded yet (state written by an earlier version), so a renamed or moved OU could not be told; a full sync records them".to_owned())
            } else {
                moved_container(known, &surroundings.containers, &scope)
            };
            if let Some(reason) = reason {
                self.parked.put(session).await;
                return Ok(DeltaOutcome::FullSyncRequired { reason });
            }
        }
        let now = session.now_or(self.now());
        Ok(DeltaOutcome::Changes(spawn_run(
            session,
            RunKind::Delta,
            Some(checkpoint.usn),
            now,
            self.parked.clone(),
            surroundings,
        )))
    }
}

/// The first container of `changed` whose DN differs from the one `known` recorded, in a way
/// that touches `scope`, as a sentence.
fn moved_container(
    known: &crate::surroundings::Containers,
    changed: &[(Guid, String)],
    scope: &crate::surroundings::ScopeCheck,
) -> Option<String> {
    changed.iter().find_map(|(guid, dn)| {
        let old = known.get(guid)?;
        (ad_model::dn::canonical(old) != ad_model::dn::canonical(dn)
            && scope.touched_by_move(old, dn))
        .then(|| {
            format!(
                "{old} was renamed or moved to {dn} since the last cycle; AD does not write to the objects below a container that moves, so no delta can see their new names (or that they came into or left the scope): a full sync reads them"
            )
        })
    })
}

/// Why a checkpoint cannot be continued on the DC described by `root`, if it cannot.
pub fn full_sync_reason(root: &RootDse, checkpoint: &Checkpoint) -> Option<String> {
    if !root.dns_host_name.eq_ignore_ascii_case(&checkpoint.dc_host) {
        return Some(format!(
            "the checkpoint was taken on {} but the configured URL now reaches {}; uSNChanged values are per domain controller, so a full sync is required (point url at one DC to avoid this)",
            checkpoint.dc_host, root.dns_host_name
        ));
    }
    if root.invocation_id != checkpoint.invocation_id {
        return Some(format!(
            "the database of {} has a new invocationId ({} instead of {}): the DC was restored from backup or rebuilt, so changes since the checkpoint cannot be trusted and a full sync is required",
            root.dns_host_name, root.invocation_id, checkpoint.invocation_id
        ));
    }
    if root.highest_committed_usn < checkpoint.usn {
        return Some(format!(
            "the highestCommittedUSN of {} ({}) is below the checkpoint's USN ({}): the DC's database went back in time, so a full sync is required",
            root.dns_host_name, root.highest_committed_usn, checkpoint.usn
        ));
    }
    None
}

/// Start the read in a task of its own. A run that completes gives its session back to
/// `parked` (the cycle's next reads use it); one that fails closes it.
fn spawn_run(
    session: Session,
    kind: RunKind,
    since: Option<u64>,
    now: DateTime<Utc>,
    parked: crate::session::Parked,
    surroundings: crate::surroundings::Surroundings,
) -> SyncRun {
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    let root_dse = session.root.clone();
    let task = tokio::spawn(async move {
        let mut session = session;
        let result = run(&mut session, kind, since, now, &tx).await;
        parked.settle(session, result.is_ok()).await;
        result
    });
    SyncRun {
        events: rx,
        task,
        root_dse,
        surroundings,
    }
}

/// Where events go: the bounded channel of a [`SyncRun`], or a list returned at the end.
pub(crate) enum Emitter<'a> {
    /// Stream to the consumer (back-pressure: waits while the channel is full).
    Channel(&'a mpsc::Sender<SourceEvent>),
    /// Collect (for reads that return a list).
    Collect(Vec<SourceEvent>),
}

impl Emitter<'_> {
    pub(crate) async fn send(&mut self, event: SourceEvent) -> Result<(), SourceError> {
        match self {
            Emitter::Channel(tx) => tx.send(event).await.map_err(|_| SourceError::Cancelled),
            Emitter::Collect(events) => {
                events.push(event);
                Ok(())
            }
        }
    }

    /// The collected events (none for a channel: they went to the consumer).
    pub(crate) fn into_events(self) -> Vec<SourceEvent> {
        match self {
            Emitter::Channel(_) => Vec::new(),
            Emitter::Collect(events) => events,
        }
    }
}

async fn run(
    session: &mut Session,
    kind: RunKind,
    since: Option<u64>,
    now: DateTime<Utc>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Result<SyncSummary, SourceError> {
    let mut out = Emitter::Channel(tx);
    let out = &mut out;
    let checkpoint = Checkpoint {
        dc_host: session.root.dns_host_name.clone(),
        invocation_id: session.root.invocation_id,
        usn: session.root.highest_committed_usn,
    };
    let base = session.base_dn();
    let changed = |filter: &str| match since {
        Some(usn) => format!("(&{filter}(uSNChanged>={}))", usn.saturating_add(1)),
        None => filter.to_owned(),
    };

    // 1. The group index (every group in scope, three attributes each).
    let mut index = read_group_index(session, &base).await?;

    // 2-3. Groups (all, or changed) with complete member lists, then users (all, or
    // changed) with resolved groups and primary group; a full read on several connections
    // reads the groups and slices of the users at once.
    if since.is_none() && session.config.read_connections > 1 {
        crate::partition::read_full(session, &mut index, now, tx).await?;
    } else {
        let groups = changed(&session.config.group_filter);
        read_groups(session, &mut index, &base, groups, out).await?;
        let users = changed(&session.config.user_filter);
        read_users(session, &mut index, &base, users, now, out).await?;
    }

    // 4. Deletions (delta only).
    if let Some(usn) = since {
        read_tombstones(session, usn, &base, out).await?;
    }

    // 5. Nesting, as it stands at the end of the run.
    let nesting = index.nesting(session).await?;

    Ok(SyncSummary {
        kind,
        checkpoint,
        counters: session.counters,
        nesting,
    })
}

/// Read the groups `filter` selects below `base` (complete member lists) and emit them.
pub(crate) async fn read_groups(
    session: &mut Session,
    index: &mut GroupIndex,
    base: &str,
    filter: String,
    out: &mut Emitter<'_>,
) -> Result<(), SourceError> {
    let spec = SearchSpec {
        base: base.to_owned(),
        scope: session.config.scope.to_ldap(),
        filter,
        attrs: Group::ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect(),
        show_deleted: false,
        what: "groups",
    };
    let mut reader = PagedReader::new(session, spec);
    while let Some(entry) = next_complete(session, &mut reader, out).await? {
        emit_group(session, index, &entry, out).await?;
    }
    Ok(())
}

/// Read the users `filter` selects below `base` (groups resolved, decoded at `now`) and emit
/// them.
pub(crate) async fn read_users(
    session: &mut Session,
    index: &mut GroupIndex,
    base: &str,
    filter: String,
    now: DateTime<Utc>,
    out: &mut Emitter<'_>,
) -> Result<(), SourceError> {
    let spec = SearchSpec {
        base: base.to_owned(),
        scope: session.config.scope.to_ldap(),
        filter,
        attrs: User::ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect(),
        show_deleted: false,
        what: "users",
    };
    let mut reader = PagedReader::new(session, spec);
    while let Some(entry) = next_complete(session, &mut reader, out).await? {
        emit_user(session, index, &entry, now, out).await?;
    }
    Ok(())
}

/// Decode a group entry, resolve its parent groups and emit it (or skip it).
pub(crate) async fn emit_group(
    session: &mut Session,
    index: &mut GroupIndex,
    entry: &RawEntry,
    out: &mut Emitter<'_>,
) -> Result<(), SourceError> {
    match Group::from_entry(entry) {
        Ok(mut decoded) => {
            index
                .fill_missing(session, &decoded.record.member_of, None)
                .await?;
            decoded.record.groups = index.resolve(&decoded.record.member_of, None);
            session.counters.groups += 1;
            session.counters.decode_warnings += decoded.warnings.len() as u64;
            out.send(SourceEvent::Group(decoded)).await
        }
        Err(e) => skip(session, out, entry.dn(), entry_guid(entry), e.to_string()).await,
    }
}

/// Decode a user entry at `now`, resolve its groups (primary group included) and emit it (or
/// skip it).
pub(crate) async fn emit_user(
    session: &mut Session,
    index: &mut GroupIndex,
    entry: &RawEntry,
    now: DateTime<Utc>,
    out: &mut Emitter<'_>,
) -> Result<(), SourceError> {
    match decode_user(session, index, entry, now).await? {
        Ok(decoded) => {
            session.counters.users += 1;
            session.counters.decode_warnings += decoded.warnings.len() as u64;
            out.send(SourceEvent::User(decoded)).await
        }
        Err(reason) => skip(session, out, entry.dn(), entry_guid(entry), reason).await,
    }
}

/// Decode a user entry at `now` with resolved groups; `Ok(Err(reason))` if it cannot be.
pub(crate) async fn decode_user(
    session: &mut Session,
    index: &mut GroupIndex,
    entry: &RawEntry,
    now: DateTime<Utc>,
) -> Result<Result<Decoded<User>, String>, SourceError> {
    match User::from_entry(entry, now) {
        Ok(mut decoded) => {
            resolve_user_groups(session, index, &mut decoded.record).await?;
            Ok(Ok(decoded))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// The entry's `objectGUID`, when it is well-formed.
pub(crate) fn entry_guid(entry: &RawEntry) -> Option<Guid> {
    entry
        .first("objectGUID")
        .and_then(|v| Guid::from_bytes(v).ok())
}

/// Read the group index: every group in scope, three attributes each.
pub(crate) async fn read_group_index(
    session: &mut Session,
    base: &str,
) -> Result<GroupIndex, SourceError> {
    let mut index = GroupIndex::new(session.root.domain_sid);
    let spec = SearchSpec {
        base: base.to_owned(),
        scope: session.config.scope.to_ldap(),
        filter: session.config.group_filter.clone(),
        attrs: INDEX_ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect(),
        show_deleted: false,
        what: "the group index",
    };
    let mut reader = PagedReader::new(session, spec);
    while let Some(item) = reader.next(session).await? {
        if let Item::Entry(entry) = item {
            index.insert_in_scope(GroupInfo::from_entry(&entry));
        }
    }
    Ok(index)
}

/// Fill `user.groups`: resolved `memberOf` plus the primary group.
pub(crate) async fn resolve_user_groups(
    session: &mut Session,
    index: &mut GroupIndex,
    user: &mut User,
) -> Result<(), SourceError> {
    let primary = match (user.primary_group_id, user.primary_group_sid) {
        (Some(rid), Some(sid)) => Some((rid, sid)),
        _ => None,
    };
    index
        .fill_missing(session, &user.member_of, primary)
        .await?;
    user.groups = index.resolve(&user.member_of, primary);
    // Nesting: the groups these groups are in, and so on; privilege comes through them too.
    let direct: Vec<String> = user
        .groups
        .iter()
        .filter(|g| !g.dn.is_empty())
        .map(|g| g.dn.clone())
        .collect();
    index.fill_closure(session, &direct).await?;
    let (transitive, privileges) = index.transitive(&user.member_of, primary);
    user.transitive_groups = transitive;
    user.privileges = privileges;
    Ok(())
}

/// The next entry of `reader` with its ranged attributes complete. Entries that cannot be
/// read, or whose ranges cannot be completed, are reported as skipped and passed over.
pub(crate) async fn next_complete(
    session: &mut Session,
    reader: &mut PagedReader,
    out: &mut Emitter<'_>,
) -> Result<Option<RawEntry>, SourceError> {
    while let Some(item) = reader.next(session).await? {
        let Some(mut entry) = readable(session, item, out).await? else {
            continue;
        };
        if let Err(reason) = ranges(session, &mut entry).await? {
            let guid = entry_guid(&entry);
            skip(session, out, entry.dn(), guid, reason).await?;
            continue;
        }
        return Ok(Some(entry));
    }
    Ok(None)
}

async fn readable(
    session: &mut Session,
    item: Item,
    out: &mut Emitter<'_>,
) -> Result<Option<RawEntry>, SourceError> {
    match item {
        Item::Entry(entry) => Ok(Some(entry)),
        Item::Malformed(m) => {
            skip(session, out, &m.dn, m.guid, m.reason).await?;
            Ok(None)
        }
    }
}

/// Complete ranged attributes. `Ok(Err(reason))`: this entry cannot be read completely.
async fn ranges(
    session: &mut Session,
    entry: &mut RawEntry,
) -> Result<Result<(), String>, SourceError> {
    match complete_ranges(session, entry).await {
        Ok(()) => Ok(Ok(())),
        Err(e)
            if e.is_transient()
                || matches!(
                    e,
                    SourceError::ReconnectsExhausted { .. } | SourceError::DcChanged { .. }
                ) =>
        {
            Err(e)
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

pub(crate) async fn skip(
    session: &mut Session,
    out: &mut Emitter<'_>,
    dn: &str,
    guid: Option<Guid>,
    reason: String,
) -> Result<(), SourceError> {
    tracing::warn!(%dn, guid = ?guid, %reason, "entry skipped");
    session.counters.skipped += 1;
    out.send(SourceEvent::Skipped {
        dn: dn.to_owned(),
        guid,
        reason,
    })
    .await
}

/// Attributes read from tombstones.
const TOMBSTONE_ATTRIBUTES: &[&str] = &[
    "objectGUID",
    "objectSid",
    "objectClass",
    "sAMAccountName",
    "uSNChanged",
    "isDeleted",
    "lastKnownParent",
];

/// Whether `dn` is `base` or below it, whatever the spelling of either
/// (`DC=lab, DC=example` is `dc=lab,dc=example`): compared by canonical components.
pub(crate) fn within(dn: &str, base: &str) -> bool {
    ad_model::dn::is_within(dn, base)
}

async fn read_tombstones(
    session: &mut Session,
    usn: u64,
    base: &str,
    out: &mut Emitter<'_>,
) -> Result<(), SourceError> {
    let domain = session.domain_dn().to_owned();
    let host = session.conn.host().to_owned();
    let account = session.config.account().to_owned();
    let no_rights = |detail: &str| {
        format!(
            "deletions are not reported: {account} cannot read CN=Deleted Objects,{domain} on {host} ({detail}); grant it List Contents and Read Property on that container (dsacls \"CN=Deleted Objects,{domain}\" /takeownership, then /G \"<account>:LCRP\"), or rely on periodic full syncs to find deleted users"
        )
    };
    if !session.root.supported_controls.is_empty() && !session.root.supports(SHOW_DELETED_OID) {
        return out
            .send(SourceEvent::Warning {
                message: no_rights("the DC does not announce the Show Deleted control"),
            })
            .await;
    }
    // Is the Deleted Objects container visible at all? Without rights AD returns nothing
    // (not an error), which would look like "no deletions".
    let container = format!("CN=Deleted Objects,{domain}");
    if !deleted_objects_visible(session, &container, ldap3::Scope::Base, out, &no_rights).await? {
        return Ok(());
    }
    let spec = SearchSpec {
        base: domain.clone(),
        scope: ldap3::Scope::Subtree,
        filter: format!(
            "(&(isDeleted=TRUE)(uSNChanged>={})(|(objectClass=user)(objectClass=group)))",
            usn.saturating_add(1)
        ),
        attrs: TOMBSTONE_ATTRIBUTES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        show_deleted: true,
        what: "deleted objects",
    };
    let scoped = ad_model::dn::canonical(base) != ad_model::dn::canonical(&domain);
    let mut reader = PagedReader::new(session, spec);
    let result: Result<(), SourceError> = async {
        while let Some(item) = reader.next(session).await? {
            let Some(entry) = readable(session, item, out).await? else {
                continue;
            };
            let mut outside_dn = None;
            if scoped {
                let parent = entry
                    .first("lastKnownParent")
                    .and_then(|v| std::str::from_utf8(v).ok());
                // A parent that is itself deleted (tree delete) says nothing about scope:
                // report the deletion rather than risk missing it.
                if let Some(parent) = parent.filter(|p| !p.to_ascii_uppercase().contains("ADEL:"))
                    && !within(parent, base)
                {
                    // An object outside the scope is not ours, but groups of the scope may
                    // list it, and users of the scope may be in it (a group): reported
                    // under the DN it had, for the consumer to re-read them.
                    let dn = entry.dn();
                    let rdn = ["\\0ADEL:", "\\0aDEL:", "\nDEL:"]
                        .iter()
                        .find_map(|marker| dn.split_once(marker).map(|(rdn, _)| rdn))
                        .unwrap_or(dn);
                    outside_dn = Some(format!("{rdn},{parent}"));
                }
            }
            if let Some(dn) = outside_dn {
                if let Ok(mut decoded) = Deleted::from_entry(&entry) {
                    decoded.record.dn = dn;
                    out.send(SourceEvent::Deleted(decoded.record)).await?;
                }
                continue;
            }
            match Deleted::from_entry(&entry) {
                // Computers and other `user`-derived classes have no kind: not ours.
                Ok(decoded) if decoded.record.kind.is_none() => {}
                Ok(decoded) => {
                    debug_assert!(matches!(
                        decoded.record.kind,
                        Some(ObjectKind::User | ObjectKind::Group)
                    ));
                    session.counters.deleted += 1;
                    out.send(SourceEvent::Deleted(decoded.record)).await?;
                }
                Err(e) => skip(session, out, entry.dn(), entry_guid(&entry), e.to_string()).await?,
            }
        }
        Ok(())
    }
    .await;
    match result {
        // Nothing deleted, or nothing visible? Tombstones readable at all tell them apart.
        Ok(()) if session.counters.deleted == 0 => {
            deleted_objects_visible(session, &container, ldap3::Scope::OneLevel, out, &no_rights)
                .await
                .map(|_| ())
        }
        Ok(()) => Ok(()),
        Err(SourceError::Search {
            result_code: 50 | 32 | 12 | 53,
            reason,
            ..
        }) => {
            out.send(SourceEvent::Warning {
                message: no_rights(&reason),
            })
            .await
        }
        Err(e) => Err(e),
    }
}

/// Whether the account sees the Deleted Objects container (`Base`) or at least one tombstone
/// in it (`OneLevel`); emits the warning when it does not.
async fn deleted_objects_visible(
    session: &mut Session,
    container: &str,
    scope: ldap3::Scope,
    out: &mut Emitter<'_>,
    no_rights: &(dyn Fn(&str) -> String + Sync),
) -> Result<bool, SourceError> {
    let host = session.conn.host().to_owned();
    let mut ldap = session.conn.op();
    ldap.with_controls(vec![show_deleted_control()]);
    if !matches!(scope, ldap3::Scope::Base) {
        ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(1));
    }
    let filter = if matches!(scope, ldap3::Scope::Base) {
        "(objectClass=*)"
    } else {
        "(isDeleted=TRUE)"
    };
    let detail = match ldap
        .search(container, scope, filter, vec!["objectGUID"])
        .await
    {
        Ok(result) if matches!(result.1.rc, 0 | 4) && !result.0.is_empty() => return Ok(true),
        Ok(result) if matches!(result.1.rc, 0 | 4) => {
            if matches!(scope, ldap3::Scope::Base) {
                "the container is not visible to the account".to_owned()
            } else {
                "no tombstone at all is visible to the account, so either nothing was deleted within the tombstone lifetime or it lacks List Contents on the container".to_owned()
            }
        }
        Ok(result) => crate::error::search_reason(result.1.rc, &result.1.text),
        Err(e) => {
            return Err(crate::connection::op_error(
                e,
                &host,
                "the Deleted Objects check",
                session.conn.op_timeout,
            ));
        }
    };
    out.send(SourceEvent::Warning {
        message: no_rights(&detail),
    })
    .await?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(host: &str, inv: &str, usn: u64) -> RootDse {
        RootDse {
            dns_host_name: host.into(),
            default_naming_context: "DC=x".into(),
            configuration_naming_context: None,
            highest_committed_usn: usn,
            ds_service_name: "CN=NTDS Settings,CN=dc1".into(),
            invocation_id: inv.parse().unwrap(),
            supported_controls: vec![],
            domain_sid: None,
            max_page_size: None,
            current_time: None,
        }
    }

    const INV: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    const INV2: &str = "11111111-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn full_sync_reasons() {
        let cp = Checkpoint {
            dc_host: "dc1.corp".into(),
            invocation_id: INV.parse().unwrap(),
            usn: 100,
        };
        assert_eq!(full_sync_reason(&root("DC1.corp", INV, 150), &cp), None);
        let r = full_sync_reason(&root("dc2.corp", INV, 150), &cp).unwrap();
        assert!(
            r.contains("dc2.corp") && r.contains("full sync is required"),
            "{r}"
        );
        let r = full_sync_reason(&root("dc1.corp", INV2, 150), &cp).unwrap();
        assert!(r.contains("invocationId") && r.contains("restored"), "{r}");
        let r = full_sync_reason(&root("dc1.corp", INV, 99), &cp).unwrap();
        assert!(r.contains("back in time"), "{r}");
    }

    #[test]
    fn scope_check() {
        assert!(within("OU=Users,OU=Corp,DC=x", "ou=corp,dc=x"));
        assert!(within("OU=Corp,DC=x", "OU=Corp,DC=x"));
        assert!(!within("CN=Users,DC=x", "OU=Corp,DC=x"));
        assert!(!within("OU=NotCorp,DC=x", "OU=Corp,DC=x"));
        // Another valid spelling of the base (AD accepts spaces after the commas).
        assert!(within("CN=u,OU=Corp,DC=x,DC=y", "OU=Corp, DC=x, dc=Y"));
    }
}
