//! The engine: one [`Engine::run_cycle`] reads, compares, delivers, deletes and checkpoints.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ad_model::{Decoded, Deleted, Group, Guid, ObjectKind, User};
use ad_source::{Checkpoint, DeltaOutcome, PinnedDc, Source, SourceEvent, SyncRun, SyncSummary};
use asset_sink::{Capabilities, Change, Deletion, Sink, SyncInfo, SyncMode};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::delivery::{Delivery, Pending, Record, Settled};
use crate::fingerprint;
use crate::guard::DeleteGuard;
use crate::observer::Observer;
use crate::report::{CycleError, CycleReport};
use crate::store::{
    CycleOutcome, DcMark, Leftovers, QuarantineRow, SentObject, SkippedRow, Store,
    StoredCheckpoint, WithheldRow,
};

/// How the engine runs its cycles.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Run a full sync when the last one is older than this.
    pub full_sync_interval: Duration,
    /// Changes per batch (capped by the sink's maximum).
    pub batch_size: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
    /// When a full sync's deletions are too many to trust.
    pub delete_guard: DeleteGuard,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            full_sync_interval: Duration::from_secs(24 * 3600),
            batch_size: 1000,
            concurrency: 2,
            delete_guard: DeleteGuard::default(),
        }
    }
}

/// What one cycle is asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleRequest {
    /// Run a full sync even when a delta is possible.
    pub force_full: bool,
    /// Release the deletes of this full sync although they exceed the guard, if there are
    /// exactly this many (the operator read them in `status` and confirms them).
    pub confirm_deletes: Option<u64>,
}

/// The sync engine: a source, a sink and a store.
///
/// Invariants (tested by the deterministic simulation in `tests/it/sim.rs`):
/// - The checkpoint moves only after every batch of the cycle was acknowledged and recorded,
///   and never past an entry that was skipped or a record that was refused unless it is
///   recorded for retry.
/// - A full sync deletes only tracked objects it did not read, computed after every upsert
///   of the cycle was acknowledged; an incomplete read deletes nothing; more deletions than
///   the guard allows are withheld.
/// - Deletes are sent after the cycle's upserts are acknowledged, so a delete never overtakes
///   an upsert of the same object.
#[derive(Debug)]
pub struct Engine {
    source: Source,
    sink: Arc<dyn Sink>,
    store: Store,
    options: EngineOptions,
}

impl Engine {
    /// An engine over an open store.
    pub fn new(
        source: Source,
        sink: Arc<dyn Sink>,
        store: Store,
        options: EngineOptions,
    ) -> Engine {
        Engine {
            source,
            sink,
            store,
            options,
        }
    }

    /// The store (for status, or to mark the daemon's state).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, mutably.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    /// Run one cycle. When `shutdown` is cancelled the cycle is abandoned safely: batches
    /// already acknowledged stay recorded, requests in flight are aborted, the checkpoint
    /// does not move.
    pub async fn run_cycle(
        &mut self,
        request: CycleRequest,
        observer: &dyn Observer,
        shutdown: &CancellationToken,
    ) -> Result<CycleReport, CycleError> {
        let started = Instant::now();
        let started_at = Utc::now();
        let read_at = self.source.now();
        let stored = self.store.checkpoint()?;
        let opened = tokio::select! {
            opened = self.open_run(stored.as_ref(), request, read_at) => opened,
            () = shutdown.cancelled() => Err(CycleError::Interrupted),
        };
        let (run, mode, full_reason, pinned) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                // Journal it too: "the DC was unreachable at 03:00" is what an operator
                // looks for in `status`. The mode is the one the cycle would have run in.
                let intended = if request.force_full || stored.is_none() {
                    SyncMode::Full
                } else {
                    SyncMode::Delta
                };
                self.store.record_unstarted_cycle(
                    mode_name(intended),
                    outcome_of(&error),
                    &error.to_string(),
                    started_at,
                    Utc::now(),
                )?;
                return Err(error);
            }
        };
        if let Some(reason) = &full_reason {
            tracing::info!("a full sync, because {reason}");
        }
        // Time windows on the DC's clock (its rootDSE `currentTime`), which is the clock it
        // judges lockout and password expiry by: a host clock ahead of the DC's would
        // otherwise close a window over a lockout end the DC has not reached yet.
        let read_at = pinned.root.current_time.unwrap_or(read_at);
        let cycle_id = self.store.begin_cycle(mode_name(mode), started_at)?;
        let dc = pinned.root.dns_host_name.clone();
        self.store.note_cycle_on(cycle_id, &dc, started_at)?;
        let mark_at = self.store.dc_mark(&dc)?.map(|mark| mark.updated_at);
        let result = {
            let mut cycle = Cycle::new(self, cycle_id, mode, stored.clone(), read_at, observer);
            cycle.source = pinned.source.clone();
            cycle.mark_at = mark_at;
            cycle.report.dc = Some(pinned.root.dns_host_name.clone());
            cycle.report.passed_over = pinned
                .passed_over
                .iter()
                .map(|p| format!("{}: {}", p.dc, p.reason))
                .collect();
            tokio::select! {
                result = cycle.run(run, request) => result,
                () = shutdown.cancelled() => Err(CycleError::Interrupted),
            }
        };
        // The connection the cycle's reads shared: unbind now, not when the source drops.
        pinned.source.release().await;
        match result {
            Ok(mut report) => {
                report.duration_secs = started.elapsed().as_secs_f64();
                report.full_reason = full_reason;
                let json = serde_json::to_value(&report).ok();
                self.store.end_cycle(
                    cycle_id,
                    CycleOutcome::Ok,
                    &report.summary(),
                    json.as_ref(),
                    Utc::now(),
                )?;
                Ok(report)
            }
            Err(error) => {
                self.store.end_cycle(
                    cycle_id,
                    outcome_of(&error),
                    &error.to_string(),
                    None,
                    Utc::now(),
                )?;
                Err(error)
            }
        }
    }
}

fn outcome_of(error: &CycleError) -> CycleOutcome {
    match error {
        CycleError::Interrupted => CycleOutcome::Interrupted,
        _ => CycleOutcome::Failed,
    }
}

/// What a cycle reads, as stored with its checkpoint.
fn scope_of(source: &Source) -> String {
    let config = source.config();
    format!(
        "base_dn={:?}; scope={:?}; user_filter={}; group_filter={}",
        config.base_dn, config.scope, config.user_filter, config.group_filter
    )
}

fn mode_name(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Full => "full",
        SyncMode::Delta => "delta",
    }
}

impl Engine {
    /// Pin this cycle's DC, then open a delta from that DC's own mark or a full read.
    async fn open_run(
        &self,
        stored: Option<&StoredCheckpoint>,
        request: CycleRequest,
        now: DateTime<Utc>,
    ) -> Result<(SyncRun, SyncMode, Option<String>, PinnedDc), CycleError> {
        let pinned = self.source.pin().await?;
        let known = self.store.containers(&pinned.root.dns_host_name);
        let opened = match (self.store.dc_mark(&pinned.root.dns_host_name), known) {
            (Ok(mark), Ok(known)) => {
                open_run(
                    &pinned,
                    stored,
                    mark.as_ref(),
                    &known,
                    request,
                    &self.options,
                    now,
                )
                .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        };
        match opened {
            Ok((run, mode, reason)) => Ok((run, mode, reason, pinned)),
            Err(e) => {
                pinned.source.release().await;
                Err(e)
            }
        }
    }
}

async fn open_run(
    pinned: &PinnedDc,
    stored: Option<&StoredCheckpoint>,
    mark: Option<&DcMark>,
    known: &ad_source::Containers,
    request: CycleRequest,
    options: &EngineOptions,
    now: DateTime<Utc>,
) -> Result<(SyncRun, SyncMode, Option<String>), CycleError> {
    let source = &pinned.source;
    let dc = &pinned.root.dns_host_name;
    let reason = match stored {
        _ if request.force_full => Some("a full sync was requested".to_owned()),
        None => Some("there is no checkpoint yet (first run)".to_owned()),
        Some(cp) if cp.scope.as_ref().is_some_and(|s| *s != scope_of(source)) => Some(
            "the directory scope (base_dn, scope or a filter) changed since the last cycle, so a delta would miss objects that came into scope".to_owned(),
        ),
        Some(cp) => match cp.last_full_sync {
            None => Some("no full sync was recorded yet".to_owned()),
            Some(at)
                if now.signed_duration_since(at).to_std().unwrap_or_default()
                    >= options.full_sync_interval =>
            {
                Some(format!(
                    "the last full sync ({}) is older than the full sync interval",
                    at.to_rfc3339()
                ))
            }
            Some(_) => match mark {
                None => Some(format!(
                    "this cycle reads from {dc}, which no earlier cycle completed on (uSNChanged values are per domain controller, so a delta needs a checkpoint of this DC)"
                )),
                Some(mark)
                    if now
                        .signed_duration_since(mark.updated_at)
                        .to_std()
                        .unwrap_or_default()
                        >= options.full_sync_interval =>
                {
                    Some(format!(
                        "the last cycle on {dc} ({}) is older than the full sync interval, too old to continue from (deletions older than the tombstone lifetime would be missed)",
                        mark.updated_at.to_rfc3339()
                    ))
                }
                Some(_) => None,
            },
        },
    };
    if let (None, Some(mark)) = (&reason, mark) {
        match source
            .changes_since_with(&mark.position, Some(known))
            .await?
        {
            DeltaOutcome::Changes(run) => return Ok((run, SyncMode::Delta, None)),
            DeltaOutcome::FullSyncRequired { reason } => {
                let run = source.full_snapshot().await?;
                return Ok((run, SyncMode::Full, Some(reason)));
            }
        }
    }
    let run = source.full_snapshot().await?;
    Ok((run, SyncMode::Full, reason))
}

/// What an object read says about the groups that list it.
struct Linked<'a> {
    usn: Option<u64>,
    member_of: &'a [String],
}

/// A cycle in which this many records were refused and none accepted is a platform refusing
/// everything (wrong URL, connector, profile), not bad records: it fails instead of
/// quarantining the directory.
const REFUSED_ALL_THRESHOLD: u64 = 10;

/// Rounds of link re-reads per cycle (a group changed while it was re-read adds a round).
const LINK_ROUNDS: usize = 4;

/// Most DNs one changed group's nested members may expand to in a cycle.
const MAX_NESTED_EXPANSION: usize = 1_000_000;

/// Objects read by a full sync are marked in the store in chunks of this many.
const MARK_CHUNK: usize = 5000;

/// One cycle in progress: one method per kind of source event.
struct Cycle<'e> {
    /// The source pinned to this cycle's DC.
    source: Source,
    store: &'e mut Store,
    options: &'e EngineOptions,
    observer: &'e dyn Observer,
    capabilities: Capabilities,
    delivery: Delivery,
    id: i64,
    mode: SyncMode,
    stored: Option<StoredCheckpoint>,
    read_at: DateTime<Utc>,
    /// highestCommittedUSN when this cycle started reading: an object with a higher
    /// uSNChanged changed while the cycle was reading.
    h0: u64,
    /// The DC and USN this cycle reads from (`h0` on the run's DC).
    position: Option<Checkpoint>,
    /// Groups read in this cycle (lower-case DN) → the `uSNChanged` they were read with: one
    /// that changed after it was read is read again (see `catch_up`).
    group_usns: HashMap<String, u64>,
    report: CycleReport,
    /// Full sync: objects read and not yet marked in the store.
    unmarked: Vec<Guid>,
    /// Delta: objects read in this cycle (re-reads of leftovers skip them).
    read: HashSet<Guid>,
    /// Delta: DNs (lower case) read in this cycle.
    read_dns: HashSet<String>,
    /// Delta: changed groups held until the end of the read, with the DNs (lower case) of the
    /// members whose group list they change (AD does not touch a member's uSNChanged when
    /// only its memberships change).
    /// The hash is `None` for a group that is not sent again (unchanged).
    held_groups: Vec<(Group, Option<String>, BTreeSet<String>)>,
    /// Delta: groups (DN) to re-read because a member was renamed, moved or deleted (their
    /// member lists changed; AD does not touch their uSNChanged either).
    reread: BTreeSet<String>,
    /// Members queued for re-reading (lower-case DN) → the groups whose change queued them:
    /// a member that no longer exists under that DN makes those groups worth re-reading.
    origin: HashMap<String, Vec<String>>,
    /// Tombstones, delivered after every upsert was acknowledged.
    tombstones: Vec<Deleted>,
    /// Entries skipped in this cycle.
    skipped: Vec<SkippedRow>,
    /// Records refused in this cycle.
    quarantined: Vec<QuarantineRow>,
    /// Full sync: a skipped entry that matches no tracked object (so deletes are unsafe).
    unmatched_skips: u64,
    /// What the run read: `None` when it is the whole domain (nothing is outside it).
    scope: Option<ad_source::ScopeCheck>,
    /// Containers the run read (all of them, or the changed ones), recorded with the
    /// checkpoint.
    containers: Vec<(Guid, String)>,
    /// Delta: users and groups that changed outside the scope.
    outside: Vec<ad_source::Outside>,
    /// Users read in groups outside the scope, (canonical group DN, member DN), not yet
    /// recorded.
    outside_pairs: Vec<(String, String)>,
    /// When the last completed cycle on this cycle's DC ended (its mark).
    mark_at: Option<DateTime<Utc>>,
}

impl<'e> Cycle<'e> {
    fn new(
        engine: &'e mut Engine,
        id: i64,
        mode: SyncMode,
        stored: Option<StoredCheckpoint>,
        read_at: DateTime<Utc>,
        observer: &'e dyn Observer,
    ) -> Cycle<'e> {
        let sync = SyncInfo {
            cycle_id: uuid::Uuid::new_v4(),
            at: read_at,
            mode,
        };
        let delivery = Delivery::new(
            Arc::clone(&engine.sink),
            sync,
            engine.options.batch_size,
            engine.options.concurrency,
        );
        Cycle {
            source: engine.source.clone(),
            capabilities: engine.sink.capabilities(),
            store: &mut engine.store,
            options: &engine.options,
            observer,
            delivery,
            id,
            mode,
            stored,
            read_at,
            h0: 0,
            position: None,
            group_usns: HashMap::new(),
            report: CycleReport {
                mode: mode_name(mode),
                ..CycleReport::default()
            },
            unmarked: Vec::new(),
            read: HashSet::new(),
            read_dns: HashSet::new(),
            held_groups: Vec::new(),
            reread: BTreeSet::new(),
            origin: HashMap::new(),
            tombstones: Vec::new(),
            skipped: Vec::new(),
            quarantined: Vec::new(),
            unmatched_skips: 0,
            scope: None,
            containers: Vec::new(),
            outside: Vec::new(),
            outside_pairs: Vec::new(),
            mark_at: None,
        }
    }

    fn full(&self) -> bool {
        self.mode == SyncMode::Full
    }

    async fn run(
        mut self,
        mut run: SyncRun,
        request: CycleRequest,
    ) -> Result<CycleReport, CycleError> {
        // 1. The directory's changes (or everything). Objects an unfinished cycle left in
        // doubt are read again at the end, whatever this read returns.
        self.h0 = run.root_dse.highest_committed_usn;
        self.position = Some(Checkpoint {
            dc_host: run.root_dse.dns_host_name.clone(),
            invocation_id: run.root_dse.invocation_id,
            usn: self.h0,
        });
        self.reread.extend(self.store.in_doubt()?);
        let domain = run.root_dse.default_naming_context.clone();
        let config = self.source.config();
        let base = config
            .base_dn
            .clone()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| domain.clone());
        let scope = ad_source::ScopeCheck::new(&base, config.scope);
        self.scope = (!scope.is_whole(&domain)).then_some(scope);
        let surroundings = std::mem::take(&mut run.surroundings);
        if !surroundings.incomplete.is_empty() {
            self.hold_checkpoint(
                "the search for renamed OUs and for objects that changed outside the scope was incomplete",
            );
            for message in surroundings.incomplete {
                self.warning(message);
            }
        }
        if let Some(blind) = surroundings.blind {
            self.warning(blind);
        }
        self.containers = surroundings.containers;
        self.outside = surroundings.outside;
        while let Some(event) = run.next_event().await {
            self.event(event).await?;
        }
        let summary = run.finish().await?;
        self.note_incomplete(&summary);
        self.nesting(&summary)?;

        // 2. Delta: what changed without a directory write, and what earlier cycles left.
        if !self.full() {
            self.recorded_elsewhere().await?;
            self.outside_scope()?;
            self.time_driven().await?;
            self.leftovers().await?;
        }
        self.linked().await?;
        self.flush_marks()?;

        // 4. Every upsert acknowledged before any delete is decided or sent.
        let settled = self.delivery.drain(self.store, self.id).await?;
        self.record(settled)?;

        // 5. Deletes: tombstones (delta), or what a complete full read did not return.
        let withheld = self.deletes(request).await?;
        let settled = self.delivery.drain(self.store, self.id).await?;
        self.record(settled)?;

        // 6. The checkpoint, with what this cycle left behind.
        self.checkpoint(&summary, withheld)
    }

    async fn event(&mut self, event: SourceEvent) -> Result<(), CycleError> {
        match event {
            SourceEvent::User(decoded) => self.user(decoded).await,
            SourceEvent::Group(decoded) => self.group(decoded).await,
            SourceEvent::Deleted(deleted) => {
                self.tombstones.push(deleted);
                Ok(())
            }
            SourceEvent::Skipped { dn, guid, reason } => self.skipped(dn, guid, reason),
            SourceEvent::Warning { message } => {
                self.warning(message);
                Ok(())
            }
        }
    }

    fn warning(&mut self, message: String) {
        tracing::warn!("{message}");
        self.observer.warning(&message);
        self.report.source_warnings.push(message);
    }

    /// Note that an object was read: a full sync never deletes it, a delta does not re-read
    /// it. In a delta, an object whose DN changed changes the member lists of the groups that
    /// list its old DN: they are re-read.
    fn note_read(
        &mut self,
        guid: Guid,
        dn: &str,
        linked: Option<Linked<'_>>,
    ) -> Result<(), CycleError> {
        let stored_dn = self.store.object(&guid)?.map(|row| row.dn);
        self.note_read_as(guid, dn, linked, stored_dn.as_deref(), true)
    }

    /// [`Cycle::note_read`] with what the store has already looked up: the DN it records
    /// for the object (`None`: untracked). `mark`: false for an object about to be sent in a
    /// full sync, which `Store::mark_in_doubt` marks as read before anything is decided.
    fn note_read_as(
        &mut self,
        guid: Guid,
        dn: &str,
        linked: Option<Linked<'_>>,
        stored_dn: Option<&str>,
        mark: bool,
    ) -> Result<(), CycleError> {
        if self.full() {
            if mark {
                self.unmarked.push(guid);
                if self.unmarked.len() >= MARK_CHUNK {
                    self.flush_marks()?;
                }
            }
        } else {
            self.read.insert(guid);
            self.read_dns.insert(dn.to_ascii_lowercase());
        }
        // A full sync too: a group read before a member moved still lists the old DN.
        let mut groups = Vec::new();
        if let Some(stored_dn) = stored_dn
            && !stored_dn.eq_ignore_ascii_case(dn)
        {
            self.store.update_dn(&guid, dn)?;
            groups = self.store.rename_member(stored_dn, dn)?;
            if let Some(linked) = &linked {
                groups.extend(linked.member_of.iter().cloned());
            }
        }
        // Changed while this cycle was reading (a rename or move included): the groups that
        // list it may have been read before, with a DN it no longer has.
        if let Some(linked) = &linked {
            if linked.usn.is_some_and(|usn| usn > self.h0) {
                groups.extend(linked.member_of.iter().cloned());
            } else if !self.full() {
                // A delta reads few objects: check that every group listing it (memberOf)
                // was last sent with its current DN; one that was not is stale (an earlier
                // cycle sent it while the object had another DN).
                for group in linked.member_of {
                    if self.store.group_lists_other_dn(group, dn)? {
                        groups.push(group.clone());
                    }
                }
            }
        }
        if !groups.is_empty() {
            self.store.add_reread(&groups)?;
            self.reread.extend(groups);
        }
        Ok(())
    }

    fn flush_marks(&mut self) -> Result<(), CycleError> {
        if !self.unmarked.is_empty() {
            let guids = std::mem::take(&mut self.unmarked);
            self.store.mark_read(self.id, &guids)?;
        }
        if !self.outside_pairs.is_empty() {
            let pairs = std::mem::take(&mut self.outside_pairs);
            self.store.note_outside_members(self.id, &pairs)?;
        }
        Ok(())
    }

    /// Scope narrower than the domain: note the groups outside it that this user is in
    /// (directly or nested; the primary group aside, whose change is the user's own write),
    /// so a later change of one of them re-reads the user.
    fn note_outside_groups(&mut self, user: &User) -> Result<(), CycleError> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        for group in user.groups.iter().chain(&user.transitive_groups) {
            if !group.primary && !scope.contains(&group.dn) {
                self.outside_pairs
                    .push((group_key(group.sid.as_ref(), &group.dn), user.dn.clone()));
            }
        }
        if self.outside_pairs.len() >= MARK_CHUNK {
            self.flush_marks()?;
        }
        Ok(())
    }

    /// Delta after cycles on another DC: what they sent or deleted since this DC's mark is
    /// what *that* DC showed (a lagging DC re-sends old values and deletes what it has not
    /// seen restored), and this delta starts past those changes on this DC. Re-read it here
    /// (durably noted first): the platform then equals this DC again.
    ///
    /// They are found here by objectGUID (the other DC may have shown another DN): one still
    /// in scope is re-read at its DN here; a tracked one gone from the scope is deleted when
    /// this DC proves it (its tombstone, or the object alive outside the scope); one neither
    /// found nor proven gone is kept, as a full sync keeps it.
    async fn recorded_elsewhere(&mut self) -> Result<(), CycleError> {
        let (Some(since), Some(position)) = (self.mark_at, &self.position) else {
            return Ok(());
        };
        let Some(objects) = self
            .store
            .recorded_elsewhere_since(&position.dc_host, since)?
        else {
            return Ok(());
        };
        tracing::info!(
            objects = objects.len(),
            "cycles ran on another DC since this DC's last one: their objects are read again here"
        );
        let guids: HashSet<Guid> = objects.iter().map(|o| o.guid).collect();
        let found = self.source.locate(&guids).await?;
        let in_scope = |dn: &str| self.scope.as_ref().is_none_or(|scope| scope.contains(dn));
        let mut dns = Vec::new();
        let mut missing = HashSet::new();
        for object in &objects {
            match found.get(&object.guid) {
                Some(dn) if in_scope(dn) => dns.push(dn.clone()),
                Some(_) if object.tracked => {
                    missing.insert(object.guid);
                }
                None if object.tracked => {
                    missing.insert(object.guid);
                }
                _ => {}
            }
        }
        self.store.add_reread(&dns)?;
        self.reread.extend(dns);
        if missing.is_empty() {
            return Ok(());
        }
        let mut gone = self.source.tombstones_among(&missing).await?;
        gone.extend(
            found
                .iter()
                .filter(|(guid, dn)| missing.contains(guid) && !in_scope(dn))
                .map(|(guid, _)| *guid),
        );
        for guid in gone {
            if let Some(row) = self.store.object(&guid)? {
                self.tombstones.push(Deleted {
                    object_guid: guid,
                    object_sid: row.sid,
                    kind: Some(row.kind),
                    dn: row.dn,
                    sam_account_name: None,
                    usn_changed: None,
                });
            }
        }
        Ok(())
    }

    /// Delta, scope narrower than the domain: what changed outside it. A tracked object
    /// found there left the scope (moved out of `base_dn`): it is deleted like a tombstone
    /// (after every upsert; not if this cycle read it in scope after the search). A group
    /// outside it re-reads the users of the scope it listed and lists now (AD writes nothing
    /// to them, and no search of the scope returns the group).
    fn outside_scope(&mut self) -> Result<(), CycleError> {
        for outside in std::mem::take(&mut self.outside) {
            if self.read.contains(&outside.guid) {
                continue;
            }
            if let Some(row) = self.store.object(&outside.guid)? {
                tracing::info!(dn = %outside.dn, was = %row.dn, "moved out of the scope: deleted on the platform");
                self.report.left_scope += 1;
                self.tombstones.push(Deleted {
                    object_guid: outside.guid,
                    object_sid: row.sid,
                    kind: Some(row.kind),
                    dn: outside.dn.clone(),
                    sam_account_name: None,
                    usn_changed: None,
                });
            }
            if outside.kind == ObjectKind::Group {
                let key = group_key(outside.sid.as_ref(), &outside.dn);
                let mut affected: BTreeSet<String> =
                    self.store.outside_members(&key)?.into_iter().collect();
                affected.extend(outside.members_in_scope.iter().cloned());
                let affected: Vec<String> = affected.into_iter().collect();
                // Durable before the list is replaced: a crash cannot lose the re-reads.
                self.store.add_reread(&affected)?;
                self.reread.extend(affected);
                self.store
                    .replace_outside_members(self.id, &key, &outside.members_in_scope)?;
            }
        }
        Ok(())
    }

    async fn user(&mut self, decoded: Decoded<User>) -> Result<(), CycleError> {
        self.report.users += 1;
        self.observer.object_read(ObjectKind::User);
        note_warnings(&mut self.report, &decoded.record.dn, &decoded.warnings);
        let user = decoded.record;
        self.note_outside_groups(&user)?;
        // One look-up for both the DN check and the comparison.
        let known = self.store.sent_state(&user.object_guid)?;
        let hash = fingerprint::user(&user);
        let unchanged = known.as_ref().and_then(|k| k.hash.as_deref()) == Some(hash.as_str());
        self.note_read_as(
            user.object_guid,
            &user.dn,
            Some(Linked {
                usn: user.usn_changed,
                member_of: &user.member_of,
            }),
            known.as_ref().map(|k| k.dn.as_str()),
            unchanged,
        )?;
        if unchanged {
            self.report.unchanged += 1;
            return Ok(());
        }
        let record = Record::Upsert(user_object(&user, hash));
        self.push(Pending {
            change: Change::UpsertUser(user),
            record,
            carried: Vec::new(),
        })
        .await
    }

    async fn group(&mut self, decoded: Decoded<Group>) -> Result<(), CycleError> {
        self.group_as(decoded, true).await
    }

    /// A group; `hold`: in a delta, hold it until its affected members are re-read.
    async fn group_as(&mut self, decoded: Decoded<Group>, hold: bool) -> Result<(), CycleError> {
        self.report.groups += 1;
        self.observer.object_read(ObjectKind::Group);
        note_warnings(&mut self.report, &decoded.record.dn, &decoded.warnings);
        let group = decoded.record;
        if let Some(usn) = group.usn_changed {
            self.group_usns.insert(group.dn.to_ascii_lowercase(), usn);
        }
        // Before `note_read` records the new DN: a renamed group's name is inside every
        // member's record.
        let renamed = self
            .store
            .object(&group.object_guid)?
            .is_some_and(|row| !row.dn.eq_ignore_ascii_case(&group.dn));
        self.note_read(
            group.object_guid,
            &group.dn,
            Some(Linked {
                usn: group.usn_changed,
                member_of: &group.member_of,
            }),
        )?;
        if group.usn_changed.is_some_and(|usn| usn > self.h0) {
            // Changed while this cycle was reading: members read before the change carry
            // their old group list. Re-read those whose membership differs from what was sent.
            let previous = self.store.group_members(&group.object_guid)?;
            let affected = member_difference(&previous, &group.members, false);
            let affected: Vec<String> = self.with_nested_members(affected)?.into_iter().collect();
            self.store.add_reread(&affected)?;
            self.note_origin(&group.dn, &affected);
            self.reread.extend(affected);
        }
        let hash = fingerprint::group(&group);
        if self.store.stored_hash(&group.object_guid)?.as_deref() == Some(hash.as_str()) {
            self.report.unchanged += 1;
            if hold && !self.full() {
                // In the delta window yet already sent as it is: the previous cycle read it
                // after this change, so members it read before the change may carry their
                // old group list. Re-read them all (durably noted first).
                let members: Vec<String> = self
                    .with_nested_members(group.members.iter().cloned().collect())?
                    .into_iter()
                    .collect();
                self.store.add_reread(&members)?;
                self.held_groups
                    .push((group, None, members.into_iter().collect()));
            }
            return Ok(());
        }
        if self.full()
            && let Some(row) = self.store.object(&group.object_guid)?
            && !row.hash.is_empty()
        {
            // A full sync reads every member too, but a read that ends early or races a
            // change may not: members whose membership changed are re-read at the end.
            let previous = self.store.group_members(&group.object_guid)?;
            let affected: Vec<String> = self
                .with_nested_members(member_difference(&previous, &group.members, false))?
                .into_iter()
                .collect();
            self.store.add_reread(&affected)?;
            self.note_origin(&group.dn, &affected);
            self.reread.extend(affected);
        }
        if hold && !self.full() {
            // Members added or removed since the group was last sent, or all of them if it
            // was renamed (its name is inside every member's record).
            let previous = self.store.group_members(&group.object_guid)?;
            let mut changed = member_difference(&previous, &group.members, renamed);
            if self.scope.is_some() {
                // A group that was outside the scope (moved in, say): the users of the scope
                // that were in it, nested included, carry its old DN.
                changed.extend(
                    self.store
                        .outside_members(&group_key(group.object_sid.as_ref(), &group.dn))?,
                );
            }
            let affected = self.with_nested_members(changed)?;
            // Durable before the group's new member list can be acknowledged: a crash after
            // that must not lose the members' new group lists.
            self.store
                .add_reread(&affected.iter().cloned().collect::<Vec<_>>())?;
            self.held_groups.push((group, Some(hash), affected));
            return Ok(());
        }
        let record = group_record(&group, hash);
        self.push(Pending {
            change: Change::UpsertGroup {
                group,
                affected_users: Vec::new(),
            },
            record,
            carried: Vec::new(),
        })
        .await
    }

    /// Groups whose nesting changed since the last cycle (added to or removed from another
    /// group, anywhere — Domain Admins outside `base_dn` included): everyone below them has
    /// other transitive groups now, maybe another privilege, and AD wrote none of them.
    /// They are re-read (durably noted first), then the new nesting is saved.
    fn nesting(&mut self, summary: &SyncSummary) -> Result<(), CycleError> {
        let digests: Vec<(String, String)> = summary
            .nesting
            .iter()
            .map(|(dn, ancestors)| (dn.clone(), fingerprint::strings(ancestors)))
            .collect();
        if !self.full() {
            let stored = self.store.nesting_digests()?;
            let changed: BTreeSet<String> = digests
                .iter()
                .filter(|(dn, digest)| stored.get(dn).is_some_and(|old| old != digest))
                .map(|(dn, _)| dn.clone())
                .collect();
            if !changed.is_empty() {
                tracing::debug!(groups = changed.len(), "group nesting changed");
                let affected: Vec<String> =
                    self.with_nested_members(changed)?.into_iter().collect();
                self.store.add_reread(&affected)?;
                self.reread.extend(affected);
            }
        }
        let complete = self.full() && !summary.truncated();
        self.store.save_nesting(&digests, complete)?;
        Ok(())
    }

    /// `dns` and, for each that is a tracked group, every member below it (nested groups
    /// followed, each once): a group added to or removed from a group changes the transitive
    /// groups — and maybe the privilege — of everyone below it, and AD writes none of them.
    fn with_nested_members(&self, dns: BTreeSet<String>) -> Result<BTreeSet<String>, CycleError> {
        let mut out = BTreeSet::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue: Vec<String> = dns.into_iter().collect();
        while let Some(dn) = queue.pop() {
            if !seen.insert(dn.to_ascii_lowercase()) || seen.len() > MAX_NESTED_EXPANSION {
                continue;
            }
            if let Some(members) = self.store.group_members_by_dn(&dn)? {
                queue.extend(members);
            }
            out.insert(dn);
        }
        Ok(out)
    }

    fn skipped(
        &mut self,
        dn: String,
        guid: Option<Guid>,
        reason: String,
    ) -> Result<(), CycleError> {
        tracing::warn!(dn = %dn, "entry skipped (it will be read again next cycle): {reason}");
        if let Some(guid) = guid {
            self.note_read(guid, &dn, None)?;
        } else if self.full() && self.store.mark_read_dn(self.id, &dn)? == 0 {
            // Unreadable and unknown by DN: if it is a tracked object that moved, a delete
            // computed now would remove a live account. Deletes are withheld below.
            self.unmatched_skips += 1;
        }
        self.report.skipped.push(format!("{dn}: {reason}"));
        self.skipped.push(SkippedRow {
            dn,
            guid,
            reason,
            cycle: self.id,
        });
        Ok(())
    }

    fn note_incomplete(&mut self, summary: &SyncSummary) {
        let counters = &summary.counters;
        self.report.referrals_ignored = counters.referrals_ignored;
        let mut reasons = Vec::new();
        if counters.pages_without_paged_control > 0 {
            reasons.push(format!(
                "{} result pages came without the paged-results response control, so entries may be missing",
                counters.pages_without_paged_control
            ));
        }
        if counters.limit_exceeded > 0 {
            reasons.push(format!(
                "{} searches ended in sizeLimitExceeded, timeLimitExceeded or adminLimitExceeded, so entries may be missing",
                counters.limit_exceeded
            ));
        }
        if counters.searches_restarted > 0 {
            reasons.push(format!(
                "{} searches were restarted after a reconnect, so an object moved during the restart may have been missed",
                counters.searches_restarted
            ));
        }
        // Continuation references are not among them: they point to other naming contexts
        // or domains, whose objects this connector never reads nor tracks, so nothing
        // tracked can hide behind one. They are counted in the report.
        for reason in reasons {
            tracing::warn!("{reason}");
            self.observer.warning(&reason);
            self.report.incomplete_read.push(reason);
        }
        if summary.truncated() {
            self.hold_checkpoint("entries may be missing from this read");
        }
    }

    fn note_origin(&mut self, group_dn: &str, members: &[String]) {
        for member in members {
            self.origin
                .entry(member.to_ascii_lowercase())
                .or_default()
                .push(group_dn.to_owned());
        }
    }

    /// Keep the checkpoint (and the time window) where it was, saying why.
    fn hold_checkpoint(&mut self, why: &str) {
        if self.report.checkpoint_held.is_none() {
            self.report.checkpoint_held = Some(format!(
                "the checkpoint was kept where it was because {why}; the next cycle reads the same changes again"
            ));
        }
    }

    /// Delta: users whose expiry, lockout end or password age passed since the last cycle.
    async fn time_driven(&mut self) -> Result<(), CycleError> {
        let Some(from) = self.stored.as_ref().and_then(|cp| cp.read_at) else {
            return Ok(());
        };
        // The DC's `currentTime` has whole seconds: the window reaches one second past it,
        // so an instant the DC passed in that second is in it (and one it has not passed
        // yet is in the next window too, which starts at this read_at).
        let to = self.read_at + chrono::Duration::seconds(1);
        let found = self.source.time_boundary_users(from, to).await?;
        if found.truncated {
            self.hold_checkpoint(
                "the search for accounts whose expiry, lockout or password age passed ended early",
            );
        }
        for note in found.notes {
            self.warning(note);
        }
        for decoded in found.users {
            if self.read.contains(&decoded.record.object_guid) {
                continue;
            }
            self.report.time_driven += 1;
            self.user(decoded).await?;
        }
        Ok(())
    }

    /// Delta: re-read what earlier cycles skipped or the platform refused.
    async fn leftovers(&mut self) -> Result<(), CycleError> {
        let mut dns: Vec<String> = self.store.skipped()?.into_iter().map(|s| s.dn).collect();
        dns.extend(
            self.store
                .quarantined()?
                .into_iter()
                .filter(|q| q.change == "upsert")
                .map(|q| q.dn),
        );
        // Refused deletes: the tombstone is read again only if still in the window, so
        // retry them from the quarantine itself when the object is still gone.
        let refused_deletes: Vec<QuarantineRow> = self
            .store
            .quarantined()?
            .into_iter()
            .filter(|q| q.change == "delete")
            .collect();
        dns.sort_by_key(|dn| dn.to_ascii_lowercase());
        dns.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if !dns.is_empty() {
            for event in self.source.read_objects(&dns).await? {
                if matches!(event, SourceEvent::Warning { .. }) {
                    // read_objects warns only when a search ended early.
                    self.hold_checkpoint("a re-read of earlier leftovers ended early");
                }
                let guid = match &event {
                    SourceEvent::User(d) => Some(d.record.object_guid),
                    SourceEvent::Group(d) => Some(d.record.object_guid),
                    _ => None,
                };
                if guid.is_some_and(|g| self.read.contains(&g)) {
                    continue;
                }
                self.event(event).await?;
            }
        }
        for q in refused_deletes {
            if self.read.contains(&q.guid)
                || self.tombstones.iter().any(|t| t.object_guid == q.guid)
            {
                continue;
            }
            if self.store.object(&q.guid)?.is_some() {
                self.tombstones.push(Deleted {
                    object_guid: q.guid,
                    object_sid: None,
                    kind: Some(q.kind),
                    dn: q.dn.clone(),
                    sam_account_name: None,
                    usn_changed: None,
                });
            }
        }
        Ok(())
    }

    /// Delta: what changed through links, without a uSNChanged of its own. Members added to
    /// or removed from a changed group (all members when it was renamed) have a new group list;
    /// groups that listed a renamed, moved or deleted member have a new member list. They are
    /// re-read; sinks without group assets get the re-read users inside the group change.
    async fn linked(&mut self) -> Result<(), CycleError> {
        if !self.tombstones.is_empty() {
            // Groups read in this cycle may list a member deleted since: their batches must
            // be recorded first, or the stored member lists searched below are older than
            // what the platform is about to hold (and the group would keep the member).
            let settled = self.delivery.drain(self.store, self.id).await?;
            self.record(settled)?;
        }
        let mut listing = Vec::new();
        for deleted in &self.tombstones {
            if let Some(row) = self.store.object(&deleted.object_guid)? {
                listing.extend(self.store.groups_listing_any_parent(&row.dn)?);
                listing.extend(self.members_of_deleted(&row)?);
            } else if self.scope.is_some() {
                // An object outside the scope, reported under the DN it had: groups of the
                // scope that listed it have a new member list, and the users of the scope in
                // it (a group) lose it.
                listing.extend(self.store.groups_listing_any_parent(&deleted.dn)?);
                if deleted.kind == Some(ObjectKind::Group) {
                    listing.extend(
                        self.store.outside_members(&group_key(
                            deleted.object_sid.as_ref(),
                            &deleted.dn,
                        ))?,
                    );
                }
            }
            // The name it had when deleted (renamed since we last read it). Also when it is
            // no longer tracked: a full sync may have deleted it under an older name while
            // a group it read earlier in that cycle listed it under this one.
            if let Some(rdn) = tombstone_rdn(&deleted.dn) {
                listing.extend(self.store.groups_listing_rdn(&rdn)?);
            }
        }
        self.store.add_reread(&listing)?;
        listing.extend(self.store.rereads()?);
        self.reread.extend(listing);
        // A re-read group that changed during this cycle adds its members to re-read, and
        // so on; a few rounds settle what changes while we read.
        for _ in 0..LINK_ROUNDS {
            self.catch_up().await?;
            if self.reread.is_empty() && self.held_groups.is_empty() {
                break;
            }
            self.linked_round().await?;
        }
        Ok(())
    }

    /// The members (nested groups followed) of a tracked group about to be deleted: they
    /// lose the group, and any privilege through it, and AD writes nothing to them.
    fn members_of_deleted(
        &self,
        row: &crate::store::ObjectRow,
    ) -> Result<BTreeSet<String>, CycleError> {
        if row.kind != ObjectKind::Group {
            return Ok(BTreeSet::new());
        }
        let mut members = self.with_nested_members(BTreeSet::from([row.dn.clone()]))?;
        members.remove(&row.dn);
        Ok(members)
    }

    /// Groups that changed after this cycle read them are read again. A group read before a
    /// member was added, and the member read after, disagree: the member was sent with the
    /// group, the group's member list without the member. Nothing is wrong on the platform
    /// yet, but the stored member list is the base the next delta compares with: if the
    /// member is removed again before then, the next delta sees no difference and the member
    /// keeps the group on the platform for good. Re-reading the group here makes the stored
    /// list agree with the directory (and re-reads the members it changed).
    async fn catch_up(&mut self) -> Result<(), CycleError> {
        let Some(position) = self.position.clone() else {
            return Ok(());
        };
        if self.group_usns.is_empty() {
            return Ok(());
        }
        let changed = match self.source.groups_changed_since(&position).await {
            Ok(changed) => changed,
            Err(e @ ad_source::SourceError::DcChanged { .. }) => {
                self.hold_checkpoint("the domain controller changed during the cycle");
                self.warning(e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if !changed.incomplete.is_empty() {
            self.hold_checkpoint("the search for groups changed during the read ended early");
            for message in changed.incomplete {
                self.warning(message);
            }
        }
        let stale: Vec<String> = changed
            .groups
            .into_iter()
            .filter(|(dn, usn)| {
                self.group_usns
                    .get(&dn.to_ascii_lowercase())
                    .is_some_and(|read| usn > read)
            })
            .map(|(dn, _)| dn)
            .collect();
        if !stale.is_empty() {
            tracing::debug!(groups = stale.len(), "groups changed after they were read");
            self.store.add_reread(&stale)?;
            self.reread.extend(stale);
        }
        Ok(())
    }

    async fn linked_round(&mut self) -> Result<(), CycleError> {
        let held = std::mem::take(&mut self.held_groups);
        let mut wanted: BTreeSet<String> = held
            .iter()
            .flat_map(|(_, _, affected)| affected.iter().cloned())
            .collect();
        wanted.extend(std::mem::take(&mut self.reread));
        // Not filtered by what this cycle already read: an object read before the change
        // that makes it worth re-reading is stale. Re-reading costs a search; a re-read object
        // equal to what was sent is not sent again (compared after the drain below).
        let mut seen = HashSet::new();
        let wanted: Vec<String> = wanted
            .into_iter()
            .filter(|dn| seen.insert(dn.to_ascii_lowercase()))
            .collect();
        let events = if wanted.is_empty() {
            Vec::new()
        } else {
            // What this cycle sent so far is acknowledged first, so a re-read object whose
            // new content was already sent compares equal and is not sent twice.
            let settled = self.delivery.drain(self.store, self.id).await?;
            self.record(settled)?;
            self.source.read_objects(&wanted).await?
        };
        for (group, _, affected) in &held {
            let affected: Vec<String> = affected.iter().cloned().collect();
            self.note_origin(&group.dn, &affected);
        }
        // A member queued by a group's change that is not there under that DN any more
        // (deleted, renamed or moved since): the group lists a stale DN, re-read it.
        let returned: HashSet<String> = events
            .iter()
            .filter_map(|event| match event {
                SourceEvent::User(d) => Some(d.record.dn.to_ascii_lowercase()),
                SourceEvent::Group(d) => Some(d.record.dn.to_ascii_lowercase()),
                SourceEvent::Skipped { dn, .. } => Some(dn.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let mut vanished_in = Vec::new();
        for dn in &wanted {
            let key = dn.to_ascii_lowercase();
            if !returned.contains(&key)
                && let Some(groups) = self.origin.remove(&key)
            {
                vanished_in.extend(groups);
            }
        }
        if !vanished_in.is_empty() {
            self.store.add_reread(&vanished_in)?;
            self.reread.extend(vanished_in);
        }
        let affected_users: HashMap<String, User> = if self.capabilities.needs_affected_users {
            events
                .iter()
                .filter_map(|event| match event {
                    SourceEvent::User(d) => {
                        Some((d.record.dn.to_ascii_lowercase(), d.record.clone()))
                    }
                    _ => None,
                })
                .collect()
        } else {
            HashMap::new()
        };
        // The held groups first, acknowledged before the re-read objects are compared: a
        // group both changed and re-read is then sent once.
        let mut attached: HashSet<String> = HashSet::new();
        for (group, hash, affected) in held {
            let Some(hash) = hash else {
                continue;
            };
            // Users the platform already holds as they are now (sent alone earlier in this
            // cycle, say) are not carried again: only what changes goes out.
            let mut users: Vec<User> = Vec::new();
            for dn in &affected {
                let Some(user) = affected_users.get(&dn.to_ascii_lowercase()) else {
                    continue;
                };
                let hash = fingerprint::user(user);
                if self.store.stored_hash(&user.object_guid)?.as_deref() != Some(hash.as_str())
                    && attached.insert(dn.to_ascii_lowercase())
                {
                    users.push(user.clone());
                }
            }
            let record = group_record(&group, hash);
            // The platform holds these users as sent here once it accepts the change.
            let carried = users
                .iter()
                .map(|user| user_object(user, fingerprint::user(user)))
                .collect();
            self.push(Pending {
                change: Change::UpsertGroup {
                    group,
                    affected_users: users,
                },
                record,
                carried,
            })
            .await?;
        }
        let settled = self.delivery.drain(self.store, self.id).await?;
        self.record(settled)?;
        for event in events {
            match event {
                // Sekoia-like sinks got these inside the group changes.
                SourceEvent::User(decoded)
                    if attached.contains(&decoded.record.dn.to_ascii_lowercase()) => {}
                SourceEvent::User(decoded) => self.user(decoded).await?,
                SourceEvent::Group(decoded) => self.group_as(decoded, false).await?,
                SourceEvent::Warning { message } => {
                    // read_objects warns only when a search ended early.
                    self.hold_checkpoint("a re-read of linked objects ended early");
                    self.warning(message);
                }
                other => self.event(other).await?,
            }
        }
        Ok(())
    }

    async fn push(&mut self, pending: Pending) -> Result<(), CycleError> {
        let settled = self.delivery.push(pending, self.store, self.id).await?;
        self.record(settled)
    }

    /// Record settled batches in the order they were sent.
    fn record(&mut self, settled: Vec<Settled>) -> Result<(), CycleError> {
        for batch in settled {
            let mut sent = Vec::new();
            let mut deleted = Vec::new();
            for record in batch.accepted {
                match record {
                    Record::Upsert(object) => sent.push(object),
                    Record::Delete(guid) => deleted.push(guid),
                }
            }
            self.report.upserts += sent.len() as u64;
            self.report.deletes += deleted.len() as u64;
            let refused = self.quarantined.len() as u64 + batch.refused.len() as u64;
            if refused >= REFUSED_ALL_THRESHOLD && self.report.upserts + self.report.deletes == 0 {
                let first = self
                    .quarantined
                    .first()
                    .map(|q| q.reason.clone())
                    .or_else(|| batch.refused.first().map(|r| r.reason.clone()))
                    .unwrap_or_default();
                return Err(CycleError::EverythingRefused { refused, first });
            }
            for ack in &batch.acks {
                self.report.batches += 1;
                self.report.not_representable += ack.not_representable_count() as u64;
                for nr in &ack.not_representable {
                    tracing::warn!(
                        count = nr.count,
                        what = nr.what,
                        "{} {} change(s) not delivered: {}",
                        nr.count,
                        nr.what,
                        nr.reason
                    );
                }
            }
            self.store
                .commit_batch(self.id, &sent, &deleted, Utc::now())?;
            for ack in &batch.acks {
                self.observer.batch_recorded(ack);
            }
            self.observer.batch_delivered(&batch.delivered);
            let refused_upserts: Vec<Guid> = batch
                .refused
                .iter()
                .filter_map(|r| match &r.record {
                    Record::Upsert(o) => Some(o.guid),
                    Record::Delete(_) => None,
                })
                .collect();
            self.store.clear_in_doubt(&refused_upserts)?;
            for refused in batch.refused {
                let (kind, dn, change) = match &refused.change {
                    Change::UpsertUser(u) => (ObjectKind::User, u.dn.clone(), "upsert"),
                    Change::UpsertGroup { group, .. } => {
                        (ObjectKind::Group, group.dn.clone(), "upsert")
                    }
                    Change::Delete(d) => (d.kind, d.dn.clone().unwrap_or_default(), "delete"),
                };
                let guid = match &refused.record {
                    Record::Upsert(o) => o.guid,
                    Record::Delete(g) => *g,
                };
                if self.quarantined.iter().any(|q| q.guid == guid) {
                    continue;
                }
                tracing::error!(dn = %dn, "the platform refused this record; it is quarantined and retried next cycle: {}", refused.reason);
                self.report
                    .quarantined
                    .push(format!("{dn}: {}", refused.reason));
                self.quarantined.push(QuarantineRow {
                    guid,
                    kind,
                    dn,
                    change: change.to_owned(),
                    reason: refused.reason,
                    cycle: self.id,
                });
            }
        }
        Ok(())
    }

    /// Send the cycle's deletes (all upserts are acknowledged by now). Returns the withheld
    /// list for a full sync.
    async fn deletes(
        &mut self,
        request: CycleRequest,
    ) -> Result<Option<Vec<WithheldRow>>, CycleError> {
        let tombstones = std::mem::take(&mut self.tombstones);
        for deleted in tombstones {
            // Only what was sent can be deleted; a tombstone of an object never sent (out
            // of scope, or created and deleted between two cycles) is not news.
            let Some(row) = self.store.object(&deleted.object_guid)? else {
                continue;
            };
            self.read.insert(deleted.object_guid);
            let deletion = Deletion {
                object_guid: deleted.object_guid,
                object_sid: deleted.object_sid.or(row.sid),
                kind: row.kind,
                dn: Some(row.dn.clone()),
                sam_account_name: deleted.sam_account_name.clone(),
            };
            self.push(Pending {
                change: Change::Delete(deletion),
                record: Record::Delete(deleted.object_guid),
                carried: Vec::new(),
            })
            .await?;
        }
        if !self.full() {
            return Ok(None);
        }
        let candidates = self.store.unread(self.id)?;
        let withheld_rows = |rows: &[crate::store::ObjectRow], cycle: i64| -> Vec<WithheldRow> {
            rows.iter()
                .map(|row| WithheldRow {
                    guid: row.guid,
                    kind: row.kind,
                    sid: row.sid,
                    dn: row.dn.clone(),
                    cycle,
                })
                .collect()
        };
        if candidates.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut why_none: Vec<String> = self.report.incomplete_read.clone();
        if self.unmatched_skips > 0 {
            why_none.push(format!(
                "{} entries could not be read and match no object sent before, so any of them could be an object this sync would otherwise delete",
                self.unmatched_skips
            ));
            self.report
                .incomplete_read
                .push(why_none[why_none.len() - 1].clone());
        }
        if !why_none.is_empty() {
            let message = format!(
                "this full sync found {} tracked objects it did not read but sent no deletes because the read was incomplete ({}); they are deleted by the next complete full sync if they are really gone",
                candidates.len(),
                why_none.join("; ")
            );
            tracing::warn!("{message}");
            self.observer.warning(&message);
            // Nothing new is withheld for confirmation (an incomplete read proves nothing),
            // and what an earlier complete read withheld stays listed.
            return Ok(None);
        }
        let candidates = self.proven_gone(candidates).await?;
        if candidates.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let tracked = self.store.count(ObjectKind::User)? + self.store.count(ObjectKind::Group)?;
        let found = candidates.len() as u64;
        if let Some(reason) =
            self.options
                .delete_guard
                .check(found, tracked, request.confirm_deletes)
        {
            tracing::warn!("{reason}");
            self.observer.warning(&reason);
            self.report.withheld_deletes = found;
            self.report.withheld_reason = Some(reason);
            return Ok(Some(withheld_rows(&candidates, self.id)));
        }
        // Groups that listed an object about to be deleted have a new member list, without a
        // uSNChanged of their own: re-read them first (durably noted, in case of a crash).
        let mut listing = Vec::new();
        for row in &candidates {
            listing.extend(self.store.groups_listing_any_parent(&row.dn)?);
            listing.extend(self.members_of_deleted(row)?);
        }
        if !listing.is_empty() {
            self.store.add_reread(&listing)?;
            self.reread.extend(listing);
            self.linked().await?;
            let settled = self.delivery.drain(self.store, self.id).await?;
            self.record(settled)?;
        }
        for row in candidates {
            let deletion = Deletion {
                object_guid: row.guid,
                object_sid: row.sid,
                kind: row.kind,
                dn: Some(row.dn.clone()),
                sam_account_name: None,
            };
            self.push(Pending {
                change: Change::Delete(deletion),
                record: Record::Delete(row.guid),
                carried: Vec::new(),
            })
            .await?;
        }
        Ok(Some(Vec::new()))
    }

    /// A full sync on another DC than the last cycle's deletes only what it can prove gone
    /// on its own DC: an object that DC does not return may not have replicated to it yet
    /// (created, or moved into scope, on the other DC moments ago). Proof is the object's
    /// tombstone on this DC; the others stay tracked and a later full sync decides.
    async fn proven_gone(
        &mut self,
        candidates: Vec<crate::store::ObjectRow>,
    ) -> Result<Vec<crate::store::ObjectRow>, CycleError> {
        let (Some(stored), Some(position)) = (&self.stored, &self.position) else {
            return Ok(candidates);
        };
        let previous = stored.position.dc_host.clone();
        let this = position.dc_host.clone();
        // After a DC change every candidate needs proof; otherwise those last seen on
        // another DC (sent by a cycle there, say an object this DC has not replicated yet).
        let moved = !previous.eq_ignore_ascii_case(&this);
        let elsewhere = self.store.unread_seen_elsewhere(self.id, &this)?;
        let (needs_proof, free): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|row| moved || elsewhere.contains(&row.guid));
        if needs_proof.is_empty() {
            return Ok(free);
        }
        // Proof is the object's tombstone on this DC, or the object alive on this DC outside
        // the scope (it left it).
        let guids: HashSet<Guid> = needs_proof.iter().map(|row| row.guid).collect();
        let mut dead = self.source.tombstones_among(&guids).await?;
        if let Some(scope) = &self.scope {
            let found = self.source.locate(&guids).await?;
            dead.extend(
                found
                    .into_iter()
                    .filter(|(_, dn)| !scope.contains(dn))
                    .map(|(guid, _)| guid),
            );
        }
        let (mut proven, unproven): (Vec<_>, Vec<_>) = needs_proof
            .into_iter()
            .partition(|row| dead.contains(&row.guid));
        proven.extend(free);
        if !unproven.is_empty() {
            self.report.deletes_unproven = unproven.len() as u64;
            let message = format!(
                "{} objects last seen on another DC than {this} (the last cycle ran on {previous}) were not returned by this full sync and have no tombstone there, so they were not deleted: they may not have replicated to {this} yet (first: {}); a later full sync decides",
                unproven.len(),
                unproven
                    .iter()
                    .take(3)
                    .map(|row| row.dn.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            tracing::warn!("{message}");
            self.observer.warning(&message);
        }
        Ok(proven)
    }

    fn checkpoint(
        mut self,
        summary: &SyncSummary,
        withheld: Option<Vec<WithheldRow>>,
    ) -> Result<CycleReport, CycleError> {
        let hold = self.report.checkpoint_held.is_some();
        let checkpoint = StoredCheckpoint {
            position: summary.checkpoint.clone(),
            last_full_sync: if self.full() {
                Some(Utc::now())
            } else {
                self.stored.as_ref().and_then(|cp| cp.last_full_sync)
            },
            read_at: Some(self.read_at),
            scope: Some(scope_of(&self.source)),
        };
        // Leftovers are recorded either way: a held checkpoint re-reads everything anyway.
        let leftovers = Leftovers {
            quarantined: std::mem::take(&mut self.quarantined),
            skipped: std::mem::take(&mut self.skipped),
            withheld,
            withheld_resolved: self.read.iter().copied().collect(),
            containers: std::mem::take(&mut self.containers),
            containers_complete: self.full(),
            outside_complete: (self.full() && !summary.truncated()).then_some(self.id),
        };
        self.store.finish_cycle(
            if hold { None } else { Some(&checkpoint) },
            &leftovers,
            Utc::now(),
        )?;
        self.report.checkpoint = if hold {
            self.stored.clone()
        } else {
            Some(checkpoint)
        };
        Ok(self.report)
    }
}

/// The first RDN an object had when it was deleted, from its tombstone DN
/// (`CN=Name\0ADEL:<guid>,CN=Deleted Objects,…`): `CN=Name`.
fn tombstone_rdn(dn: &str) -> Option<String> {
    ["\\0ADEL:", "\\0aDEL:", "\nDEL:", "\0ADEL:"]
        .iter()
        .find_map(|marker| dn.split_once(marker).map(|(rdn, _)| rdn.to_owned()))
}

/// Members added or removed between two member lists (all of both when `all`), compared
/// without case and kept as written (some servers match DNs exactly).
fn member_difference(before: &[String], after: &[String], all: bool) -> BTreeSet<String> {
    let before_keys: HashSet<String> = before.iter().map(|dn| dn.to_ascii_lowercase()).collect();
    let after_keys: HashSet<String> = after.iter().map(|dn| dn.to_ascii_lowercase()).collect();
    let mut affected = BTreeSet::new();
    for dn in after {
        if all || !before_keys.contains(&dn.to_ascii_lowercase()) {
            affected.insert(dn.clone());
        }
    }
    for dn in before {
        if all || !after_keys.contains(&dn.to_ascii_lowercase()) {
            affected.insert(dn.clone());
        }
    }
    affected
}

/// The key a group outside the scope is recorded under (`outside_members`): its SID, which
/// survives renames and moves (into the scope too), or its canonical DN when unknown.
fn group_key(sid: Option<&ad_model::Sid>, dn: &str) -> String {
    match sid {
        Some(sid) => sid.to_string(),
        None => ad_model::dn::canonical(dn),
    }
}

fn user_object(user: &User, hash: String) -> SentObject {
    SentObject {
        guid: user.object_guid,
        kind: ObjectKind::User,
        sid: user.object_sid,
        dn: user.dn.clone(),
        hash,
        members: None,
    }
}

fn group_record(group: &Group, hash: String) -> Record {
    Record::Upsert(SentObject {
        guid: group.object_guid,
        kind: ObjectKind::Group,
        sid: group.object_sid,
        dn: group.dn.clone(),
        hash,
        members: Some(group.members.clone()),
    })
}

fn note_warnings(report: &mut CycleReport, dn: &str, warnings: &[ad_model::DecodeWarning]) {
    for warning in warnings {
        report.decode_warnings += 1;
        tracing::warn!(dn = %dn, attribute = %warning.attribute, "{warning}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_rdn_is_the_name_at_deletion() {
        assert_eq!(
            tombstone_rdn(
                "CN=Renamed 2\\0ADEL:0a3c8e1f-5b7d-4c2e-9f10-000000000009,CN=Deleted Objects,DC=x"
            )
            .as_deref(),
            Some("CN=Renamed 2")
        );
        assert_eq!(tombstone_rdn("CN=live,DC=x"), None);
    }

    #[test]
    fn member_difference_ignores_case_and_keeps_spelling() {
        let before = vec!["CN=a,DC=x".to_owned(), "CN=b,DC=x".to_owned()];
        let after = vec!["cn=A,dc=x".to_owned(), "CN=c,DC=x".to_owned()];
        let diff: Vec<String> = member_difference(&before, &after, false)
            .into_iter()
            .collect();
        assert_eq!(diff, ["CN=b,DC=x", "CN=c,DC=x"]);
        assert_eq!(member_difference(&before, &after, true).len(), 4);
    }
}
