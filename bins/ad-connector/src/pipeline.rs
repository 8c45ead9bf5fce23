//! One sync cycle: read → decode (ad-source) → compare with state → batch → send → record.
//!
//! Memory is flat in the size of the directory: the source streams events through a bounded
//! channel, only changed objects are kept (in the current batch), and at most
//! `concurrency` batches are in flight. Acknowledgements are recorded in batch order; the
//! checkpoint goes into the same transaction as the last one.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ad_model::{Group, Guid, ObjectKind, User};
use ad_source::{Checkpoint, DeltaOutcome, Source, SourceEvent, SyncRun};
use asset_sink::{Ack, Batch, Change, Deletion, Sink, SyncInfo, SyncMode};
use chrono::{DateTime, Utc};
use futures::stream::{FuturesOrdered, StreamExt};
use serde::Serialize;

use crate::fingerprint;
use crate::progress::Progress;
use crate::state::{SentObject, State, StateError, StoredCheckpoint};

/// How a cycle runs.
#[derive(Debug, Clone)]
pub struct CycleOptions {
    /// Force a full sync.
    pub force_full: bool,
    /// Run a full sync when the last one is older than this.
    pub full_sync_interval: Duration,
    /// Changes per batch (capped by the sink's maximum).
    pub batch_size: usize,
    /// Batches in flight at once.
    pub concurrency: usize,
}

/// What a cycle did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// `full` or `delta`.
    pub mode: &'static str,
    /// Why it was full, when it was.
    pub full_reason: Option<String>,
    /// Users read.
    pub users: u64,
    /// Groups read.
    pub groups: u64,
    /// Upserts delivered.
    pub upserts: u64,
    /// Deletes delivered.
    pub deletes: u64,
    /// Objects read but unchanged since last sent.
    pub unchanged: u64,
    /// Entries skipped, with reasons.
    pub skipped: Vec<String>,
    /// Attribute decode warnings (entries kept).
    pub decode_warnings: u64,
    /// Warnings from the source.
    pub source_warnings: Vec<String>,
    /// Changes the platform cannot represent (counted, not dropped silently).
    pub not_representable: u64,
    /// Batches sent.
    pub batches: u64,
    /// Wall time.
    pub duration_secs: f64,
    /// The checkpoint stored.
    pub checkpoint: Option<StoredCheckpoint>,
}

impl CycleReport {
    /// The one-line summary printed and journaled after every cycle.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} sync: {} users, {} groups read; {} upserts, {} deletes sent, {} unchanged; {} skipped; {:.1}s",
            self.mode,
            self.users,
            self.groups,
            self.upserts,
            self.deletes,
            self.unchanged,
            self.skipped.len(),
            self.duration_secs
        );
        if self.not_representable > 0 {
            line.push_str(&format!(
                "; {} changes not representable by the sink",
                self.not_representable
            ));
        }
        if self.decode_warnings > 0 {
            line.push_str(&format!("; {} attribute warnings", self.decode_warnings));
        }
        if !self.skipped.is_empty() {
            let first: Vec<&str> = self.skipped.iter().take(3).map(String::as_str).collect();
            line.push_str(&format!(" (skipped: {})", first.join("; ")));
        }
        line
    }
}

/// Why a cycle failed. Nothing unacknowledged was recorded; the checkpoint did not move.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Reading the directory failed.
    #[error("reading the directory failed: {0}")]
    Source(#[from] ad_source::SourceError),
    /// The sink refused or could not be reached.
    #[error(
        "delivery failed, the checkpoint was not advanced and the changes will be sent again next cycle: {0}"
    )]
    Sink(#[from] asset_sink::SinkError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Shutdown was requested.
    #[error("stopped on request before the cycle finished; the checkpoint was not advanced")]
    Interrupted,
}

/// A pending change and what to record once it is acknowledged.
struct Pending {
    change: Change,
    record: Record,
}

enum Record {
    Upsert(SentObject),
    Delete(Guid),
}

struct Batcher<'a> {
    sink: &'a dyn Sink,
    sync: SyncInfo,
    cycle: i64,
    batch_size: usize,
    concurrency: usize,
    next_id: u64,
    current: Vec<Pending>,
    in_flight: FuturesOrdered<BatchFuture<'a>>,
    report: CycleReport,
}

type BatchFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (Vec<Record>, Result<Ack, asset_sink::SinkError>)>
            + Send
            + 'a,
    >,
>;

impl<'a> Batcher<'a> {
    async fn push(&mut self, state: &mut State, pending: Pending) -> Result<(), CycleError> {
        self.current.push(pending);
        if self.current.len() >= self.batch_size {
            self.dispatch();
            while self.in_flight.len() >= self.concurrency {
                self.settle_one(state, None).await?;
            }
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.current);
        let (changes, records): (Vec<Change>, Vec<Record>) =
            pending.into_iter().map(|p| (p.change, p.record)).unzip();
        self.next_id += 1;
        let batch = Batch {
            id: self.next_id,
            sync: self.sync,
            changes,
        };
        let sink = self.sink;
        self.in_flight.push_back(Box::pin(async move {
            let result = sink.send(&batch).await;
            (records, result)
        }));
    }

    /// Wait for the oldest batch in flight and record it (with `checkpoint` if given and
    /// nothing else is in flight).
    async fn settle_one(
        &mut self,
        state: &mut State,
        checkpoint: Option<&StoredCheckpoint>,
    ) -> Result<(), CycleError> {
        let Some((records, result)) = self.in_flight.next().await else {
            return Ok(());
        };
        let ack = result?;
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
        let mut sent = Vec::new();
        let mut deleted = Vec::new();
        for record in records {
            match record {
                Record::Upsert(object) => sent.push(object),
                Record::Delete(guid) => deleted.push(guid),
            }
        }
        self.report.upserts += sent.len() as u64;
        self.report.deletes += deleted.len() as u64;
        let checkpoint = if self.in_flight.is_empty() {
            checkpoint
        } else {
            None
        };
        state.commit_batch(self.cycle, &sent, &deleted, checkpoint, Utc::now())?;
        tracing::debug!(
            batch = ack.batch_id,
            accepted = ack.accepted,
            "batch acknowledged and recorded"
        );
        Ok(())
    }

    /// Send what is left, wait for everything, and record the checkpoint with the last ack.
    async fn finish(
        &mut self,
        state: &mut State,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), CycleError> {
        self.dispatch();
        if self.in_flight.is_empty() {
            state.commit_batch(self.cycle, &[], &[], Some(checkpoint), Utc::now())?;
            return Ok(());
        }
        while !self.in_flight.is_empty() {
            self.settle_one(state, Some(checkpoint)).await?;
        }
        Ok(())
    }
}

/// Run one cycle. `shutdown` resolves when the operator asked to stop: the cycle is then
/// abandoned safely (acknowledged batches stay recorded, the checkpoint does not move).
pub async fn run_cycle(
    source: &Source,
    sink: &dyn Sink,
    state: &mut State,
    options: &CycleOptions,
    progress: &Progress,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<CycleReport, CycleError> {
    let started = Instant::now();
    let now = Utc::now();
    let stored = state.checkpoint()?;
    let (run, mode, full_reason) = open_run(source, stored.as_ref(), options, now).await?;
    let cycle = state.begin_cycle(
        if mode == SyncMode::Full {
            "full"
        } else {
            "delta"
        },
        now,
    )?;
    let result = tokio::select! {
        result = drive(source, run, mode, cycle, sink, state, options, progress, stored.as_ref(), now) => result,
        () = shutdown.cancelled() => Err(CycleError::Interrupted),
    };
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(mut report) => {
            report.duration_secs = elapsed;
            report.full_reason = full_reason;
            state.end_cycle(cycle, true, &report.summary(), Utc::now())?;
            Ok(report)
        }
        Err(error) => {
            let message = error.to_string();
            state.end_cycle(cycle, false, &message, Utc::now())?;
            Err(error)
        }
    }
}

async fn open_run(
    source: &Source,
    stored: Option<&StoredCheckpoint>,
    options: &CycleOptions,
    now: DateTime<Utc>,
) -> Result<(SyncRun, SyncMode, Option<String>), CycleError> {
    let reason = match stored {
        _ if options.force_full => Some("a full sync was requested".to_owned()),
        None => Some("there is no checkpoint yet (first run)".to_owned()),
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
            Some(_) => None,
        },
    };
    if let (None, Some(cp)) = (&reason, stored) {
        let checkpoint = Checkpoint {
            dc_host: cp.dc_host.clone(),
            invocation_id: cp.invocation_id,
            usn: cp.usn,
        };
        match source.changes_since(&checkpoint).await? {
            DeltaOutcome::Changes(run) => return Ok((run, SyncMode::Delta, None)),
            DeltaOutcome::FullSyncRequired { reason } => {
                tracing::warn!("{reason}");
                let run = source.full_snapshot().await?;
                return Ok((run, SyncMode::Full, Some(reason)));
            }
        }
    }
    let run = source.full_snapshot().await?;
    Ok((run, SyncMode::Full, reason))
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    source: &Source,
    mut run: SyncRun,
    mode: SyncMode,
    cycle: i64,
    sink: &dyn Sink,
    state: &mut State,
    options: &CycleOptions,
    progress: &Progress,
    stored: Option<&StoredCheckpoint>,
    now: DateTime<Utc>,
) -> Result<CycleReport, CycleError> {
    let capabilities = sink.capabilities();
    let mut batcher = Batcher {
        sink,
        sync: SyncInfo {
            cycle_id: uuid::Uuid::new_v4(),
            at: now,
            mode,
        },
        cycle,
        batch_size: options.batch_size.clamp(1, sink.max_batch_size().max(1)),
        concurrency: options.concurrency.max(1),
        next_id: 0,
        current: Vec::new(),
        in_flight: FuturesOrdered::new(),
        report: CycleReport {
            mode: if mode == SyncMode::Full {
                "full"
            } else {
                "delta"
            },
            ..CycleReport::default()
        },
    };
    // Unchanged objects seen by a full sync, marked in chunks.
    let mut seen: Vec<Guid> = Vec::new();
    // Changed groups held until the users are read, when the sink needs affected users.
    let mut held_groups: Vec<(Group, String, BTreeSet<String>)> = Vec::new();
    let mut user_dns_sent: BTreeSet<String> = BTreeSet::new();

    while let Some(event) = run.next_event().await {
        match event {
            SourceEvent::User(decoded) => {
                batcher.report.users += 1;
                progress.tick();
                note_warnings(&mut batcher.report, &decoded.record.dn, &decoded.warnings);
                let user = decoded.record;
                let hash = fingerprint::user(&user);
                if state.stored_hash(&user.object_guid)?.as_deref() == Some(hash.as_str()) {
                    batcher.report.unchanged += 1;
                    seen.push(user.object_guid);
                } else {
                    if capabilities.needs_affected_users {
                        user_dns_sent.insert(user.dn.to_ascii_lowercase());
                    }
                    let record = Record::Upsert(SentObject {
                        guid: user.object_guid,
                        kind: ObjectKind::User,
                        sid: user.object_sid,
                        dn: user.dn.clone(),
                        hash,
                        members: None,
                    });
                    batcher
                        .push(
                            state,
                            Pending {
                                change: Change::UpsertUser(user),
                                record,
                            },
                        )
                        .await?;
                }
            }
            SourceEvent::Group(decoded) => {
                batcher.report.groups += 1;
                progress.tick();
                note_warnings(&mut batcher.report, &decoded.record.dn, &decoded.warnings);
                let group = decoded.record;
                let hash = fingerprint::group(&group);
                if state.stored_hash(&group.object_guid)?.as_deref() == Some(hash.as_str()) {
                    batcher.report.unchanged += 1;
                    seen.push(group.object_guid);
                } else if capabilities.needs_affected_users && mode == SyncMode::Delta {
                    // Members added or removed since the group was last sent, or all of them
                    // if it was renamed (its name is inside every member's record).
                    let previous = state.group_members(&group.object_guid)?;
                    let renamed = state
                        .object(&group.object_guid)?
                        .is_some_and(|row| !row.dn.eq_ignore_ascii_case(&group.dn));
                    let before: BTreeSet<String> =
                        previous.iter().map(|dn| dn.to_ascii_lowercase()).collect();
                    let after: BTreeSet<String> = group
                        .members
                        .iter()
                        .map(|dn| dn.to_ascii_lowercase())
                        .collect();
                    let affected: BTreeSet<String> = if renamed {
                        before.union(&after).cloned().collect()
                    } else {
                        before.symmetric_difference(&after).cloned().collect()
                    };
                    held_groups.push((group, hash, affected));
                } else {
                    let record = group_record(&group, hash);
                    batcher
                        .push(
                            state,
                            Pending {
                                change: Change::UpsertGroup {
                                    group,
                                    affected_users: Vec::new(),
                                },
                                record,
                            },
                        )
                        .await?;
                }
            }
            SourceEvent::Deleted(deleted) => {
                // Only what was sent can be deleted; a tombstone of an object never sent (out
                // of scope, or created and deleted between two cycles) is not news.
                if let Some(row) = state.object(&deleted.object_guid)? {
                    let deletion = Deletion {
                        object_guid: deleted.object_guid,
                        object_sid: deleted.object_sid.or(row.sid),
                        kind: row.kind,
                        dn: Some(row.dn.clone()),
                        sam_account_name: deleted.sam_account_name.clone(),
                    };
                    batcher
                        .push(
                            state,
                            Pending {
                                change: Change::Delete(deletion),
                                record: Record::Delete(deleted.object_guid),
                            },
                        )
                        .await?;
                }
            }
            SourceEvent::Skipped { dn, reason } => {
                tracing::warn!(dn = %dn, "entry skipped: {reason}");
                if mode == SyncMode::Full {
                    // Keep it from looking deleted: it is still there, just unreadable.
                    state.mark_seen_dn(cycle, &dn)?;
                }
                batcher.report.skipped.push(format!("{dn}: {reason}"));
            }
            SourceEvent::Warning { message } => {
                tracing::warn!("{message}");
                batcher.report.source_warnings.push(message);
            }
        }
        if seen.len() >= 5000 {
            state.mark_seen(cycle, &std::mem::take(&mut seen))?;
        }
    }
    let summary = run.finish().await?;
    state.mark_seen(cycle, &seen)?;

    if !held_groups.is_empty() {
        let wanted: Vec<String> = held_groups
            .iter()
            .flat_map(|(_, _, affected)| affected.iter())
            .filter(|dn| !user_dns_sent.contains(*dn))
            .cloned()
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let fetched = if wanted.is_empty() {
            Vec::new()
        } else {
            source.read_users(&wanted).await?
        };
        let by_dn: HashMap<String, User> = fetched
            .into_iter()
            .map(|decoded| (decoded.record.dn.to_ascii_lowercase(), decoded.record))
            .collect();
        for (group, hash, affected) in held_groups {
            let affected_users: Vec<User> = affected
                .iter()
                .filter_map(|dn| by_dn.get(dn).cloned())
                .collect();
            let record = group_record(&group, hash);
            batcher
                .push(
                    state,
                    Pending {
                        change: Change::UpsertGroup {
                            group,
                            affected_users,
                        },
                        record,
                    },
                )
                .await?;
        }
    }

    if mode == SyncMode::Full {
        for row in state.unseen(cycle)? {
            let deletion = Deletion {
                object_guid: row.guid,
                object_sid: row.sid,
                kind: row.kind,
                dn: Some(row.dn.clone()),
                sam_account_name: None,
            };
            batcher
                .push(
                    state,
                    Pending {
                        change: Change::Delete(deletion),
                        record: Record::Delete(row.guid),
                    },
                )
                .await?;
        }
    }

    let checkpoint = StoredCheckpoint {
        dc_host: summary.checkpoint.dc_host.clone(),
        invocation_id: summary.checkpoint.invocation_id,
        usn: summary.checkpoint.usn,
        last_full_sync: if mode == SyncMode::Full {
            Some(Utc::now())
        } else {
            stored.and_then(|cp| cp.last_full_sync)
        },
    };
    batcher.finish(state, &checkpoint).await?;
    let mut report = batcher.report;
    report.checkpoint = Some(checkpoint);
    Ok(report)
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
