//! Durable state: one SQLite database in the state directory, guarded by a lock file.
//!
//! What it holds: the checkpoint (DC host, invocationId, USN bound, last full sync, when the
//! last cycle started reading), one row per object ever acknowledged by the sink (objectGUID,
//! kind, SID, DN, content hash, when it was last sent, the last full-sync cycle that *read*
//! it, and for groups the member DNs last sent), the objects a cycle left behind on purpose
//! (deletes withheld by the guard, records the platform refused, entries that could not be
//! read), and a journal of cycles.
//!
//! The rule that makes delivery safe: **the checkpoint moves only after every batch of the
//! cycle was acknowledged and recorded**, in the transaction that also records what the cycle
//! left behind. A crash (even `kill -9`) before that commit leaves the old checkpoint, so the
//! next cycle reads the same changes again; objects whose acknowledged hash is already stored
//! are not re-sent, so at most the unacknowledged batches go out twice. SQLite runs in WAL
//! mode with `synchronous=FULL`, so a committed acknowledgement survives power loss.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ad_model::{Guid, ObjectKind, Sid};
use ad_source::Checkpoint;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Why the state directory or database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory could not be created or the lock file opened.
    #[error(
        "cannot use state directory {dir}: {source}; check it exists and is writable by this user, or set state_dir"
    )]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "another ad-connector is already using state directory {dir} ({holder}); run one connector per state directory, or wait for it to finish"
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// SQLite failed.
    #[error(
        "state database {path} failed: {source}; if the disk is full free space, if it is corrupt move it away and run a full sync"
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A stored value could not be read back.
    #[error(
        "state database {path} holds an unreadable {what}: {detail}; move the file away and run a full sync"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Where incremental sync resumes: the source's [`Checkpoint`] plus the engine's own times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// DC, invocationId and USN bound (Microsoft's algorithm).
    #[serde(flatten)]
    pub position: Checkpoint,
    /// When the last successful full sync finished.
    pub last_full_sync: Option<DateTime<Utc>>,
    /// When the cycle that stored this checkpoint started reading (the source's clock): the
    /// lower bound of the next delta's time window for account expiry, lockout end and
    /// password age. `None` in state written by older versions (the next delta then checks
    /// no time window and the next full sync catches up).
    pub read_at: Option<DateTime<Utc>>,
    /// What was read: base DN, scope and filters as configured. A delta continues a
    /// checkpoint only with the same scope; `None` in state written by older versions.
    pub scope: Option<String>,
}

/// Where a delta on one DC resumes: the highest USN of that DC (and database) whose changes
/// are all delivered. USNs mean nothing on another DC, so every DC read from has its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcMark {
    /// DC, invocationId and USN.
    #[serde(flatten)]
    pub position: Checkpoint,
    /// When a cycle on this DC last completed.
    pub updated_at: DateTime<Utc>,
}

/// A delete the guard held back (see [`crate::DeleteGuard`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithheldRow {
    /// objectGUID.
    pub guid: Guid,
    /// User or group.
    pub kind: ObjectKind,
    /// objectSid when known.
    pub sid: Option<Sid>,
    /// DN when last sent.
    pub dn: String,
    /// The full-sync cycle that withheld it.
    pub cycle: i64,
}

/// A record the platform refused (quarantined); retried by every later cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineRow {
    /// objectGUID.
    pub guid: Guid,
    /// User, group, or the kind of a refused delete.
    pub kind: ObjectKind,
    /// DN of the object.
    pub dn: String,
    /// What was refused: `upsert` or `delete`.
    pub change: String,
    /// The platform's answer (status and message, secrets scrubbed by the sink).
    pub reason: String,
    /// The cycle that refused it last.
    pub cycle: i64,
}

/// An entry a cycle could not read; re-read by every later cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRow {
    /// The entry's DN.
    pub dn: String,
    /// objectGUID, when it could be read.
    pub guid: Option<Guid>,
    /// Why it was skipped.
    pub reason: String,
    /// The cycle that skipped it last.
    pub cycle: i64,
}

/// What a finished cycle leaves behind on purpose, recorded with its checkpoint.
#[derive(Debug, Clone, Default)]
pub struct Leftovers {
    /// Records the platform refused in this cycle (replaces the previous quarantine).
    pub quarantined: Vec<QuarantineRow>,
    /// Entries skipped in this cycle (replaces the previous list).
    pub skipped: Vec<SkippedRow>,
    /// Full sync: the deletes the guard withheld (replaces the previous list).
    /// `None` for a delta, which keeps the list except for `withheld_resolved`.
    pub withheld: Option<Vec<WithheldRow>>,
    /// Objects read or deleted by this (delta) cycle: no longer withheld deletes.
    pub withheld_resolved: Vec<Guid>,
    /// Containers read by this cycle (objectGUID, DN), recorded with the checkpoint for its
    /// DC: all of the domain's for a full sync (they replace that DC's list), the changed
    /// ones for a delta.
    pub containers: Vec<(Guid, String)>,
    /// Whether `containers` is every container (a full sync's read).
    pub containers_complete: bool,
    /// `Some(cycle)` for a complete full sync: the pairs of groups outside the scope and
    /// members that this cycle did not see again are dropped.
    pub outside_complete: Option<i64>,
}

/// An object a cycle on another DC recorded (`tracked`) or deleted since a DC's mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Elsewhere {
    pub(crate) guid: Guid,
    /// The DN it was recorded or deleted with.
    pub(crate) dn: String,
    /// Still tracked (recorded), or deleted on the platform.
    pub(crate) tracked: bool,
}

/// What the state knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// objectGUID.
    pub guid: Guid,
    /// User or group.
    pub kind: ObjectKind,
    /// objectSid when known.
    pub sid: Option<Sid>,
    /// DN when last sent.
    pub dn: String,
    /// Content hash when last sent.
    pub hash: String,
}

/// What [`Store::sent_state`] returns: what a read object is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentState {
    /// DN when last recorded.
    pub dn: String,
    /// Content hash last acknowledged; `None` while the object is in doubt (it then
    /// compares unequal to anything read).
    pub hash: Option<String>,
}

/// One acknowledged upsert, as recorded.
#[derive(Debug, Clone)]
pub struct SentObject {
    /// objectGUID.
    pub guid: Guid,
    /// User or group.
    pub kind: ObjectKind,
    /// objectSid.
    pub sid: Option<Sid>,
    /// DN.
    pub dn: String,
    /// Content hash of what was sent.
    pub hash: String,
    /// For groups, the member DNs sent (to find users affected by a later change).
    pub members: Option<Vec<String>>,
}

/// The states a connector goes through (the Qualys connector's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConnectorState {
    /// The state directory exists; no cycle has run yet.
    Registered,
    /// The daemon is waiting for its next scheduled cycle.
    Scheduled,
    /// A cycle is running.
    Processing,
    /// The last cycle finished and its changes were accepted.
    Processed,
    /// The daemon stopped on request (signal); no cycle runs until it is started again.
    Stopped,
}

impl ConnectorState {
    fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Registered => "Registered",
            ConnectorState::Scheduled => "Scheduled",
            ConnectorState::Processing => "Processing",
            ConnectorState::Processed => "Processed",
            ConnectorState::Stopped => "Stopped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Registered" => ConnectorState::Registered,
            "Scheduled" => ConnectorState::Scheduled,
            "Processing" => ConnectorState::Processing,
            "Processed" => ConnectorState::Processed,
            "Stopped" => ConnectorState::Stopped,
            _ => return None,
        })
    }
}

/// A cycle as journaled.
#[derive(Debug, Clone, Serialize)]
pub struct CycleRecord {
    /// Cycle number.
    pub id: i64,
    /// `full` or `delta`.
    pub mode: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended (`None` while running, or if the process died).
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `ok` or `failed`.
    pub outcome: String,
    /// The one-line summary or error.
    pub summary: Option<String>,
    /// The cycle's report as JSON, when it finished.
    pub report: Option<serde_json::Value>,
}

/// How a cycle ended, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleOutcome {
    /// It finished and every change was accepted (or recorded for retry).
    Ok,
    /// It failed; the error sentence is its summary.
    Failed,
    /// A stop was requested (signal) before it finished.
    Interrupted,
}

impl CycleOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CycleOutcome::Ok => "ok",
            CycleOutcome::Failed => "failed",
            CycleOutcome::Interrupted => "interrupted",
        }
    }
}

/// The state directory, open and locked (or open read-only, without the lock).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    _lock: Option<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    dc_host TEXT NOT NULL,
    invocation_id TEXT NOT NULL,
    usn INTEGER NOT NULL,
    last_full_sync TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    sid TEXT,
    dn TEXT NOT NULL,
    hash TEXT NOT NULL,
    last_sent TEXT NOT NULL,
    seen_cycle INTEGER NOT NULL DEFAULT 0,
    members TEXT
);
CREATE INDEX IF NOT EXISTS objects_seen ON objects (seen_cycle);
-- DN look-ups are of groups (member lists); an index of every user's DN would cost a random
-- B-tree insert per user in a full sync (issue 12). `open` drops the older `objects_dn`.
CREATE INDEX IF NOT EXISTS objects_group_dn ON objects (dn COLLATE NOCASE) WHERE kind = 'group';
CREATE TABLE IF NOT EXISTS cycles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mode TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS withheld_deletes (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    sid TEXT,
    dn TEXT NOT NULL,
    cycle INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    guid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    dn TEXT NOT NULL,
    change TEXT NOT NULL,
    reason TEXT NOT NULL,
    cycle INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reread (
    dn TEXT PRIMARY KEY COLLATE NOCASE
);
CREATE TABLE IF NOT EXISTS nesting (
    dn TEXT PRIMARY KEY COLLATE NOCASE,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dc_marks (
    dc_host TEXT PRIMARY KEY COLLATE NOCASE,
    invocation_id TEXT NOT NULL,
    usn INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
-- Every container (OU, CN= container, Builtin) of the domain as a DC last showed it: a delta
-- on that DC that finds one under another DN knows the objects below it moved without a
-- uSNChanged of their own. Per DC: a lagging DC shows an OU's old name until it replicates.
CREATE TABLE IF NOT EXISTS containers (
    dc_host TEXT NOT NULL COLLATE NOCASE,
    guid TEXT NOT NULL,
    dn TEXT NOT NULL,
    PRIMARY KEY (dc_host, guid)
) WITHOUT ROWID;
-- Scope narrower than the domain: the groups outside it (SID, or canonical DN) that users of the
-- scope were last read in, directly or through nesting. A change of such a group re-reads
-- these users and its members now: AD writes nothing to a member it adds or removes, and no
-- search of the scope returns the group. `cycle`: the cycle that last saw the pair.
CREATE TABLE IF NOT EXISTS outside_members (
    group_key TEXT NOT NULL,
    member_dn TEXT NOT NULL COLLATE NOCASE,
    cycle INTEGER NOT NULL,
    PRIMARY KEY (group_key, member_dn)
) WITHOUT ROWID;
-- Objects deleted on the platform, kept while a DC's mark may predate the delete: a delta
-- on a DC after cycles on another re-reads them (a restore one DC has and the other has not
-- yet must not end as a lasting delete).
CREATE TABLE IF NOT EXISTS deleted_log (
    guid TEXT PRIMARY KEY,
    dn TEXT NOT NULL,
    deleted_at TEXT NOT NULL
);
-- When a cycle last started on each DC (also one that failed after sending something).
CREATE TABLE IF NOT EXISTS dc_cycles (
    dc_host TEXT PRIMARY KEY COLLATE NOCASE,
    last_started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped (
    dn TEXT PRIMARY KEY COLLATE NOCASE,
    guid TEXT,
    reason TEXT NOT NULL,
    cycle INTEGER NOT NULL
);
";

/// Tracked groups whose last-sent member list (JSON) contains `?1`, any case.
const GROUPS_LISTING: &str = "SELECT dn FROM objects WHERE kind = 'group' AND members IS NOT NULL AND instr(lower(members), lower(?1)) > 0";

/// [`GROUPS_LISTING`] with each group's GUID and member list, to rewrite them.
const GROUPS_LISTING_MEMBERS: &str = "SELECT dn, guid, members FROM objects WHERE kind = 'group' AND members IS NOT NULL AND instr(lower(members), lower(?1)) > 0";

/// Columns added after the first release: (table, column, type). Added when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("checkpoint", "read_at", "TEXT"),
    ("checkpoint", "scope", "TEXT"),
    ("cycles", "report", "TEXT"),
    ("objects", "in_doubt", "INTEGER NOT NULL DEFAULT 0"),
    ("cycles", "dc_host", "TEXT"),
];

impl Store {
    /// Open (creating if needed) the state in `dir`, taking its lock. Fails with
    /// [`StoreError::Locked`] if another process holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::Directory {
            dir: dir.to_owned(),
            source,
        };
        if !dir.exists() {
            create_private_dir(dir).map_err(dir_err)?;
        }
        let lock_path = dir.join("lock");
        let mut lock = private_file(&lock_path).map_err(dir_err)?;
        // `status` takes a shared lock for an instant to see whether a daemon runs; a start
        // that falls into that instant waits for it instead of reporting a second connector.
        let mut tries = 0;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked {
                        dir: dir.to_owned(),
                        holder: holder_of(&lock_path),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(dir_err(e)),
            }
        }
        lock.set_len(0).map_err(dir_err)?;
        writeln!(lock, "pid {}", std::process::id()).map_err(dir_err)?;

        let path = dir.join("state.db");
        let db = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        // SQLite creates the -wal and -shm files with the database file's mode, so a
        // database made 0600 here keeps all three private whatever the umask.
        private_file(&path).map_err(dir_err)?;
        let conn = Connection::open(&path).map_err(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&db)?;
        conn.execute_batch(SCHEMA).map_err(&db)?;
        for (table, column, kind) in ADDED_COLUMNS {
            let present: bool = conn
                .query_row(
                    &format!(
                        "SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"
                    ),
                    [column],
                    |r| r.get(0),
                )
                .map_err(&db)?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))
                    .map_err(&db)?;
            }
        }
        // Up to 0.1: every object's DN was indexed (an older version opening this state
        // creates that index again, and works as before).
        conn.execute_batch("DROP INDEX IF EXISTS objects_dn")
            .map_err(&db)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('state', 'Registered'), ('schema', '2')",
            [],
        )
        .map_err(&db)?;
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'", [])
            .map_err(&db)?;
        // Files of a state made by an older version (or by hand) may be more open.
        for suffix in ["-wal", "-shm"] {
            let side = dir.join(format!("state.db{suffix}"));
            if side.exists() {
                make_private(&side).map_err(dir_err)?;
            }
        }
        Ok(Store {
            conn,
            path,
            _lock: Some(lock),
        })
    }

    /// Open the state in `dir` read-only, without taking the lock: for `status` and other
    /// commands that only look. SQLite in WAL mode lets readers see the last committed
    /// transaction while a running `run`/`sync` writes, so this never blocks the daemon and
    /// the daemon never blocks it. `Ok(None)` when no state exists yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = dir.join("state.db");
        if !path.exists() {
            return Ok(None);
        }
        let db = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&db)?;
        // A writer may hold the database for a moment while it commits: wait, do not fail.
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(&db)?;
        // A writer that is creating the database right now has not written its first rows:
        // that is "no state yet", not an error.
        let ready: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get(0),
            )
            .map_err(&db)?;
        let ready = ready
            && conn
                .query_row(
                    "SELECT COUNT(*) > 0 FROM meta WHERE key = 'state'",
                    [],
                    |r| r.get::<_, bool>(0),
                )
                .map_err(&db)?;
        if !ready {
            return Ok(None);
        }
        Ok(Some(Store {
            conn,
            path,
            _lock: None,
        }))
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        db_err(&self.path)
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored checkpoint, if a cycle ever completed.
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT dc_host, invocation_id, usn, last_full_sync, read_at, scope FROM checkpoint WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(self.db())?;
        let Some((dc_host, invocation_id, usn, last_full, read_at, scope)) = row else {
            return Ok(None);
        };
        let invocation_id = invocation_id
            .parse()
            .map_err(|e| self.corrupt("checkpoint invocationId", e))?;
        let usn = u64::try_from(usn).map_err(|e| self.corrupt("checkpoint USN", e))?;
        let time = |t: Option<String>, what| {
            t.map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
                .transpose()
                .map_err(|e| self.corrupt(what, e))
        };
        Ok(Some(StoredCheckpoint {
            position: Checkpoint {
                dc_host,
                invocation_id,
                usn,
            },
            last_full_sync: time(last_full, "last full sync time")?,
            read_at: time(read_at, "checkpoint read time")?,
            scope,
        }))
    }

    /// The high-water mark of every DC a cycle completed on, newest first.
    pub fn dc_marks(&self) -> Result<Vec<DcMark>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT dc_host, invocation_id, usn, updated_at FROM dc_marks ORDER BY updated_at DESC, dc_host",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        let mut marks = Vec::with_capacity(rows.len());
        for (dc_host, invocation_id, usn, updated_at) in rows {
            marks.push(DcMark {
                position: Checkpoint {
                    dc_host,
                    invocation_id: invocation_id
                        .parse()
                        .map_err(|e| self.corrupt("DC mark invocationId", e))?,
                    usn: u64::try_from(usn).map_err(|e| self.corrupt("DC mark USN", e))?,
                },
                updated_at: DateTime::parse_from_rfc3339(&updated_at)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| self.corrupt("DC mark time", e))?,
            });
        }
        Ok(marks)
    }

    /// The high-water mark of one DC (by `dnsHostName`, any case). State written before
    /// marks existed has only the checkpoint: it is that DC's mark.
    pub fn dc_mark(&self, dc_host: &str) -> Result<Option<DcMark>, StoreError> {
        if let Some(mark) = self
            .dc_marks()?
            .into_iter()
            .find(|m| m.position.dc_host.eq_ignore_ascii_case(dc_host))
        {
            return Ok(Some(mark));
        }
        let Some(cp) = self
            .checkpoint()?
            .filter(|cp| cp.position.dc_host.eq_ignore_ascii_case(dc_host))
        else {
            return Ok(None);
        };
        Ok(self
            .optional_time(
                "SELECT updated_at FROM checkpoint WHERE id = 1",
                "checkpoint time",
            )?
            .map(|updated_at| DcMark {
                position: cp.position,
                updated_at,
            }))
    }

    /// The connector state.
    pub fn connector_state(&self) -> Result<ConnectorState, StoreError> {
        let text: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'state'", [], |r| {
                r.get(0)
            })
            .map_err(self.db())?;
        ConnectorState::parse(&text).ok_or_else(|| self.corrupt("connector state", text))
    }

    /// Journal the start of a cycle and return its number.
    pub fn begin_cycle(&mut self, mode: &str, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(db_err(&path))?;
        tx.execute(
            "INSERT INTO cycles (mode, started_at, outcome) VALUES (?1, ?2, 'running')",
            params![mode, now.to_rfc3339()],
        )
        .and_then(|_| {
            tx.execute(
                "UPDATE meta SET value = 'Processing' WHERE key = 'state'",
                [],
            )
        })
        .map_err(db_err(&path))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(db_err(&path))?;
        Ok(id)
    }

    /// Journal the end of a cycle: its outcome, its one-line summary (or the error sentence)
    /// and its report.
    pub fn end_cycle(
        &mut self,
        id: i64,
        outcome: CycleOutcome,
        summary: &str,
        report: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let report = report.map(|r| r.to_string());
        let tx = self.conn.transaction().map_err(db_err(&path))?;
        let result = tx
            .execute(
                "UPDATE cycles SET finished_at = ?2, outcome = ?3, summary = ?4, report = ?5 WHERE id = ?1",
                params![id, now.to_rfc3339(), outcome.as_str(), summary, report],
            )
            .and_then(|_| {
                // A failed cycle after a good one keeps "Processed" for the data already there.
                if outcome == CycleOutcome::Ok {
                    tx.execute("UPDATE meta SET value = 'Processed' WHERE key = 'state'", [])
                } else {
                    tx.execute(
                        "UPDATE meta SET value = CASE WHEN EXISTS (SELECT 1 FROM checkpoint) THEN 'Processed' ELSE 'Registered' END WHERE key = 'state'",
                        [],
                    )
                }
            })
            .and_then(|_| tx.commit());
        result.map_err(db_err(&path))?;
        Ok(())
    }

    /// Journal a cycle that ended before it could start reading (the directory could not be
    /// reached, the bind was refused, a stop was requested): `mode` is the mode it would
    /// have run in, `summary` the error sentence.
    pub fn record_unstarted_cycle(
        &mut self,
        mode: &str,
        outcome: CycleOutcome,
        summary: &str,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let id = self.begin_cycle(mode, started)?;
        self.end_cycle(id, outcome, summary, None, now)?;
        Ok(id)
    }

    /// The daemon waits for its next cycle at `next`.
    pub fn set_scheduled(&mut self, next: DateTime<Utc>) -> Result<(), StoreError> {
        self.set_meta_state(ConnectorState::Scheduled, Some(next))
    }

    /// The daemon stopped on request; no cycle is scheduled.
    pub fn set_stopped(&mut self) -> Result<(), StoreError> {
        self.set_meta_state(ConnectorState::Stopped, None)
    }

    fn set_meta_state(
        &mut self,
        state: ConnectorState,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(db_err(&path))?;
        let result = tx
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'state'",
                [state.as_str()],
            )
            .and_then(|_| match next {
                Some(at) => tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_run', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [at.to_rfc3339()],
                ),
                None => tx.execute("DELETE FROM meta WHERE key = 'next_run'", []),
            })
            .and_then(|_| tx.commit());
        result.map_err(db_err(&path))
    }

    /// When the daemon's next cycle is due, if it is waiting for one.
    pub fn next_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.optional_time(
            "SELECT value FROM meta WHERE key = 'next_run'",
            "next run time",
        )
    }

    /// When the last cycle that succeeded finished.
    pub fn last_success(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.optional_time(
            "SELECT finished_at FROM cycles WHERE outcome = 'ok' ORDER BY id DESC LIMIT 1",
            "cycle end",
        )
    }

    /// The RFC 3339 time a one-row `sql` selects, if it selects a row.
    fn optional_time(
        &self,
        sql: &str,
        what: &'static str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(sql, [], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        text.map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| self.corrupt(what, e))
        })
        .transpose()
    }

    /// Whether a process (`run` or `sync`) holds the lock of the state in `dir` right now,
    /// and what its lock file says (`pid N`). `None` when nobody does: then a stored state
    /// of "Scheduled" or "Processing" means the last process ended without stopping cleanly.
    ///
    /// Looks by taking a shared lock for an instant (a process that starts in that instant
    /// waits for it, see [`Store::open`]); never creates anything.
    pub fn lock_holder(dir: &Path) -> Result<Option<String>, StoreError> {
        let lock_path = dir.join("lock");
        let file = match File::open(&lock_path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Directory {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(holder_of(&lock_path))),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Directory {
                dir: dir.to_owned(),
                source,
            }),
        }
    }

    /// The last `n` cycles, newest first.
    pub fn recent_cycles(&self, n: usize) -> Result<Vec<CycleRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, mode, started_at, finished_at, outcome, summary, report FROM cycles ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([i64::try_from(n).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .map_err(self.db())?;
        let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
        let mut out = Vec::new();
        for row in rows {
            let (id, mode, started, finished, outcome, summary, report) = row.map_err(self.db())?;
            out.push(CycleRecord {
                id,
                mode,
                started_at: parse(&started).map_err(|e| self.corrupt("cycle start", e))?,
                finished_at: finished
                    .as_deref()
                    .map(parse)
                    .transpose()
                    .map_err(|e| self.corrupt("cycle end", e))?,
                outcome,
                summary,
                report: report
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| self.corrupt("cycle report", e))?,
            });
        }
        Ok(out)
    }

    /// The stored content hash of an object, if it was ever acknowledged.
    pub fn stored_hash(&self, guid: &Guid) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM objects WHERE guid = ?1 AND in_doubt = 0")
            .map_err(self.db())?;
        stmt.query_row([guid.to_string()], |r| r.get(0))
            .optional()
            .map_err(self.db())
    }

    /// What the engine compares a read object with, in one query: the DN it was last
    /// recorded with and its acknowledged hash (`None` while it is in doubt). `None` for an
    /// object that is not tracked.
    pub fn sent_state(&self, guid: &Guid) -> Result<Option<SentState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT dn, hash, in_doubt FROM objects WHERE guid = ?1")
            .map_err(self.db())?;
        stmt.query_row([guid.to_string()], |r| {
            Ok(SentState {
                dn: r.get(0)?,
                hash: if r.get::<_, i64>(2)? == 0 {
                    Some(r.get(1)?)
                } else {
                    None
                },
            })
        })
        .optional()
        .map_err(self.db())
    }

    /// The stored row of an object.
    pub fn object(&self, guid: &Guid) -> Result<Option<ObjectRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT guid, kind, sid, dn, hash FROM objects WHERE guid = ?1")
            .map_err(self.db())?;
        let row = stmt
            .query_row([guid.to_string()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .optional()
            .map_err(self.db())?;
        row.map(|row| self.object_row(row)).transpose()
    }

    fn object_row(
        &self,
        (guid, kind, sid, dn, hash): (String, String, Option<String>, String, String),
    ) -> Result<ObjectRow, StoreError> {
        Ok(ObjectRow {
            guid: guid.parse().map_err(|e| self.corrupt("object GUID", e))?,
            kind: match kind.as_str() {
                "user" => ObjectKind::User,
                "group" => ObjectKind::Group,
                other => return Err(self.corrupt("object kind", other)),
            },
            sid: sid
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| self.corrupt("object SID", e))?,
            dn,
            hash,
        })
    }

    /// Member DNs last sent for a group.
    pub fn group_members(&self, guid: &Guid) -> Result<Vec<String>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT members FROM objects WHERE guid = ?1",
                [guid.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())?;
        match text.flatten() {
            Some(json) => serde_json::from_str(&json).map_err(|e| self.corrupt("group members", e)),
            None => Ok(Vec::new()),
        }
    }

    /// The last-sent member list of the tracked group at `dn` (any case); `None` when no
    /// tracked group has that DN.
    pub fn group_members_by_dn(&self, dn: &str) -> Result<Option<Vec<String>>, StoreError> {
        let text: Option<Option<String>> = self
            .conn
            .prepare_cached(
                "SELECT members FROM objects WHERE dn = ?1 COLLATE NOCASE AND kind = 'group'",
            )
            .map_err(self.db())?
            .query_row([dn], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        match text {
            None => Ok(None),
            Some(None) => Ok(Some(Vec::new())),
            Some(Some(json)) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| self.corrupt("group members", e)),
        }
    }

    /// Remember DNs a delta must re-read because a link changed (a member renamed, moved or
    /// deleted; a group's members changed). Written at once, before anything of the cycle is
    /// acknowledged, so a crash cannot lose them; cleared by [`Store::finish_cycle`].
    pub fn add_reread(&mut self, dns: &[String]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO reread (dn) VALUES (?1)")
                .map_err(&db)?;
            for dn in dns {
                insert.execute([dn]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Group DN (lower case) → digest of the groups it was nested in at the last cycle.
    pub fn nesting_digests(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT dn, digest FROM nesting")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.db())?;
        rows.map(|row| row.map(|(dn, digest)| (dn.to_ascii_lowercase(), digest)))
            .collect::<Result<std::collections::HashMap<_, _>, _>>()
            .map_err(self.db())
    }

    /// Record the groups' nesting digests; `complete`: these are all the groups (a complete
    /// full read), so rows of groups not among them are dropped.
    pub fn save_nesting(
        &mut self,
        digests: &[(String, String)],
        complete: bool,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        if complete {
            tx.execute("DELETE FROM nesting", []).map_err(&db)?;
        }
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO nesting (dn, digest) VALUES (?1, ?2)
                     ON CONFLICT (dn) DO UPDATE SET digest = ?2",
                )
                .map_err(&db)?;
            for (dn, digest) in digests {
                upsert.execute([dn, digest]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Record an object's new DN (a rename or move seen in the directory) without touching
    /// what the platform acknowledged: links are tracked by the directory's DN.
    pub fn update_dn(&mut self, guid: &Guid, dn: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE objects SET dn = ?2 WHERE guid = ?1",
                params![guid.to_string(), dn],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// A tracked object was found under a new DN: the stored member lists that name its old
    /// DN name the new one from now on, in one transaction. Returns the DNs of those groups
    /// (as [`Store::groups_listing`] of the old DN would): the caller re-reads and re-sends
    /// them. Those lists are what the next member comparison starts from; comparing against
    /// a DN that no longer exists would make a later removal of the object from the group
    /// re-read the old DN (nothing) instead of the object. (What the platform holds is still
    /// decided by the groups' content hashes, which this leaves alone.)
    pub fn rename_member(&mut self, old_dn: &str, new_dn: &str) -> Result<Vec<String>, StoreError> {
        let needle = serde_json::to_string(old_dn).map_err(|e| self.corrupt("member DN", e))?;
        let path = self.path.clone();
        let db = db_err(&path);
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            path: path.clone(),
            what: "group members",
            detail: e.to_string(),
        };
        let tx = self.conn.transaction().map_err(&db)?;
        let rows: Vec<(String, String, String)> = {
            let mut stmt = tx.prepare_cached(GROUPS_LISTING_MEMBERS).map_err(&db)?;
            stmt.query_map([needle], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(&db)?
                .collect::<Result<_, _>>()
                .map_err(&db)?
        };
        let mut groups = Vec::with_capacity(rows.len());
        {
            let mut update = tx
                .prepare_cached("UPDATE objects SET members = ?2 WHERE guid = ?1")
                .map_err(&db)?;
            for (dn, guid, json) in rows {
                let mut members: Vec<String> = serde_json::from_str(&json).map_err(corrupt)?;
                for member in &mut members {
                    if member.eq_ignore_ascii_case(old_dn) {
                        new_dn.clone_into(member);
                    }
                }
                let json = serde_json::to_string(&members).map_err(corrupt)?;
                update.execute(params![guid, json]).map_err(&db)?;
                groups.push(dn);
            }
        }
        tx.commit().map_err(&db)?;
        Ok(groups)
    }

    /// DNs of the objects left in doubt by cycles that did not finish: what the platform
    /// holds of them is unknown, so they are read and compared again.
    pub fn in_doubt(&self) -> Result<Vec<String>, StoreError> {
        self.dns("SELECT dn FROM objects WHERE in_doubt = 1 ORDER BY dn", [])
    }

    /// The DNs (first column) a query returns.
    fn dns(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.db())?;
        let rows = stmt
            .query_map(params, |r| r.get::<_, String>(0))
            .map_err(self.db())?;
        rows.collect::<Result<Vec<String>, _>>().map_err(self.db())
    }

    /// DNs left to re-read by a cycle that did not finish.
    pub fn rereads(&self) -> Result<Vec<String>, StoreError> {
        self.dns("SELECT dn FROM reread ORDER BY dn", [])
    }

    /// DNs of the tracked groups whose last-sent member list holds `member_dn`, or the same
    /// first RDN under another parent (the object moved since its row was written), any case:
    /// the groups whose member lists a deletion of that object changes.
    pub fn groups_listing_any_parent(&self, member_dn: &str) -> Result<Vec<String>, StoreError> {
        let mut groups = self.groups_listing(member_dn)?;
        let Some(rdn) = first_rdn(member_dn) else {
            return Ok(groups);
        };
        for dn in self.groups_listing_rdn(rdn)? {
            if !groups.iter().any(|g| g.eq_ignore_ascii_case(&dn)) {
                groups.push(dn);
            }
        }
        Ok(groups)
    }

    /// DNs of the tracked groups listing a member whose first RDN is `rdn` (`CN=Name`),
    /// under any parent, any case.
    pub fn groups_listing_rdn(&self, rdn: &str) -> Result<Vec<String>, StoreError> {
        // `"CN=Name,` as it appears at the start of a JSON array element.
        let quoted =
            serde_json::to_string(&format!("{rdn},")).map_err(|e| self.corrupt("member DN", e))?;
        let needle = quoted.trim_end_matches('"').to_owned();
        self.dns(GROUPS_LISTING, [needle])
    }

    /// Whether the tracked group `group_dn` was last sent with a member list that does not
    /// hold `member_dn` (any case). False for an untracked group.
    pub fn group_lists_other_dn(
        &self,
        group_dn: &str,
        member_dn: &str,
    ) -> Result<bool, StoreError> {
        let needle = serde_json::to_string(member_dn).map_err(|e| self.corrupt("member DN", e))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) > 0 FROM objects WHERE dn = ?1 COLLATE NOCASE AND kind = 'group' AND members IS NOT NULL AND instr(lower(members), lower(?2)) = 0",
            )
            .map_err(self.db())?;
        stmt.query_row(params![group_dn, needle], |r| r.get(0))
            .map_err(self.db())
    }

    /// DNs of the tracked groups whose last-sent member list holds `member_dn` (any case).
    pub fn groups_listing(&self, member_dn: &str) -> Result<Vec<String>, StoreError> {
        let needle = serde_json::to_string(member_dn).map_err(|e| self.corrupt("member DN", e))?;
        self.dns(GROUPS_LISTING, [needle])
    }

    /// Record that full-sync cycle `cycle` read these objects (changed or not): a cycle never
    /// deletes what it read. Called as objects are read, before anything is acknowledged.
    /// (An object the cycle sends is marked by [`Store::mark_in_doubt`] instead.)
    pub fn mark_read(&mut self, cycle: i64, guids: &[Guid]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE objects SET seen_cycle = ?1 WHERE guid = ?2")
                .map_err(&db)?;
            for guid in guids {
                stmt.execute(params![cycle, guid.to_string()])
                    .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Record that full-sync cycle `cycle` found the entry at `dn` (unreadable, but there).
    /// Returns how many tracked objects have that DN (0: it cannot be matched by DN).
    /// A scan of the objects (only group DNs are indexed): it runs only for an entry the
    /// source could not read, GUID included.
    pub fn mark_read_dn(&mut self, cycle: i64, dn: &str) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE objects SET seen_cycle = ?1 WHERE dn = ?2 COLLATE NOCASE",
                params![cycle, dn],
            )
            .map_err(self.db())
    }

    /// Mark objects "in doubt" *before* their upserts are sent, in one transaction: until
    /// the acknowledgement is recorded nobody knows which version the platform holds (it
    /// may accept a request whose answer is lost). An in-doubt object compares unequal to
    /// anything read, so the next cycle sends it again; a new object is tracked from here
    /// on, so a later tombstone or full sync still sends its delete.
    pub fn mark_in_doubt(
        &mut self,
        cycle: i64,
        objects: &[&SentObject],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let now = now.to_rfc3339();
        let tx = self.conn.transaction().map_err(&db)?;
        {
            // Also read by this cycle (`seen_cycle`): the engine does not mark an object it
            // sends separately (see `mark_read`).
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO objects (guid, kind, sid, dn, hash, last_sent, seen_cycle, members, in_doubt)
                     VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, NULL, 1)
                     ON CONFLICT (guid) DO UPDATE SET in_doubt = 1, seen_cycle = MAX(seen_cycle, ?6)",
                )
                .map_err(&db)?;
            for object in objects {
                stmt.execute(params![
                    object.guid.to_string(),
                    object.kind.as_str(),
                    object.sid.map(|s| s.to_string()),
                    object.dn,
                    now,
                    cycle,
                ])
                .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Mark tracked objects whose deletes are about to be sent "in doubt": a delete the
    /// platform applied but whose answer was lost must not leave the old hash behind, or an
    /// object restored (Recycle Bin) with that content would compare equal and never be sent
    /// again. The acknowledgement removes the row.
    pub(crate) fn mark_deletes_in_doubt(&mut self, guids: &[Guid]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE objects SET in_doubt = 1 WHERE guid = ?1")
                .map_err(&db)?;
            for guid in guids {
                stmt.execute([guid.to_string()]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// The platform refused these objects' upserts (a 4xx about the record): it did not
    /// apply them, so what it holds is what was last acknowledged. No longer in doubt.
    pub fn clear_in_doubt(&mut self, guids: &[Guid]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE objects SET in_doubt = 0 WHERE guid = ?1")
                .map_err(&db)?;
            for guid in guids {
                stmt.execute([guid.to_string()]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Record one acknowledged batch in one transaction: the upserts' new hashes (and, for
    /// groups, members) and the deletes.
    pub fn commit_batch(
        &mut self,
        cycle: i64,
        sent: &[SentObject],
        deleted: &[Guid],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let now = now.to_rfc3339();
        let tx = self.conn.transaction().map_err(&db)?;
        {
            // The common case: the row was written by `mark_in_doubt` with this DN and cycle.
            // Only unindexed columns change, so SQLite rewrites no index entry.
            let mut update = tx
                .prepare_cached(
                    "UPDATE objects SET kind = ?2, sid = ?3, hash = ?5, last_sent = ?6, members = ?8, in_doubt = 0
                     WHERE guid = ?1 AND dn = ?4 AND seen_cycle >= ?7",
                )
                .map_err(&db)?;
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO objects (guid, kind, sid, dn, hash, last_sent, seen_cycle, members, in_doubt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)
                     ON CONFLICT (guid) DO UPDATE SET kind = ?2, sid = ?3, dn = ?4, hash = ?5,
                        last_sent = ?6, seen_cycle = MAX(seen_cycle, ?7), members = ?8, in_doubt = 0",
                )
                .map_err(&db)?;
            for object in sent {
                let members = object
                    .members
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt {
                        path: path.clone(),
                        what: "group members",
                        detail: e.to_string(),
                    })?;
                let guid = object.guid.to_string();
                let sid = object.sid.map(|s| s.to_string());
                let values = params![
                    guid,
                    object.kind.as_str(),
                    sid,
                    object.dn,
                    object.hash,
                    now,
                    cycle,
                    members,
                ];
                if update.execute(values).map_err(&db)? == 0 {
                    upsert.execute(values).map_err(&db)?;
                }
            }
            let mut log = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO deleted_log (guid, dn, deleted_at)
                     SELECT guid, dn, ?2 FROM objects WHERE guid = ?1",
                )
                .map_err(&db)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM objects WHERE guid = ?1")
                .map_err(&db)?;
            for guid in deleted {
                log.execute(params![guid.to_string(), now]).map_err(&db)?;
                delete.execute([guid.to_string()]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// The end of a cycle whose every batch was acknowledged and recorded: the new
    /// checkpoint (`None`: keep the old one, the read was incomplete) and what the cycle left
    /// behind, in ONE transaction.
    pub fn finish_cycle(
        &mut self,
        checkpoint: Option<&StoredCheckpoint>,
        leftovers: &Leftovers,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        if let Some(cp) = checkpoint {
            let usn = i64::try_from(cp.position.usn).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                what: "checkpoint USN",
                detail: format!("{} does not fit the database: {e}", cp.position.usn),
            })?;
            tx.execute(
                "INSERT INTO checkpoint (id, dc_host, invocation_id, usn, last_full_sync, updated_at, read_at, scope)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET dc_host = ?1, invocation_id = ?2, usn = ?3,
                    last_full_sync = ?4, updated_at = ?5, read_at = ?6, scope = ?7",
                params![
                    cp.position.dc_host,
                    cp.position.invocation_id.to_string(),
                    usn,
                    cp.last_full_sync.map(|t| t.to_rfc3339()),
                    now.to_rfc3339(),
                    cp.read_at.map(|t| t.to_rfc3339()),
                    cp.scope,
                ],
            )
            .map_err(&db)?;
            // The same position is this DC's mark: a later failover back to it resumes here.
            tx.execute(
                "INSERT INTO dc_marks (dc_host, invocation_id, usn, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (dc_host) DO UPDATE SET invocation_id = ?2, usn = ?3, updated_at = ?4",
                params![
                    cp.position.dc_host,
                    cp.position.invocation_id.to_string(),
                    usn,
                    now.to_rfc3339(),
                ],
            )
            .map_err(&db)?;
        }
        // A cycle whose checkpoint moves read everything it had to (or re-read every
        // leftover): its lists replace the old ones. A held checkpoint means an incomplete
        // read: the old entries stay, to be retried, and the new ones are added.
        if checkpoint.is_some() {
            tx.execute("DELETE FROM reread", []).map_err(&db)?;
            tx.execute("DELETE FROM quarantine", []).map_err(&db)?;
            tx.execute("DELETE FROM skipped", []).map_err(&db)?;
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO quarantine (guid, kind, dn, change, reason, cycle) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&db)?;
            for q in &leftovers.quarantined {
                insert
                    .execute(params![
                        q.guid.to_string(),
                        q.kind.as_str(),
                        q.dn,
                        q.change,
                        q.reason,
                        q.cycle
                    ])
                    .map_err(&db)?;
            }
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO skipped (dn, guid, reason, cycle) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&db)?;
            for s in &leftovers.skipped {
                insert
                    .execute(params![
                        s.dn,
                        s.guid.map(|g| g.to_string()),
                        s.reason,
                        s.cycle
                    ])
                    .map_err(&db)?;
            }
        }
        match &leftovers.withheld {
            Some(rows) => {
                tx.execute("DELETE FROM withheld_deletes", [])
                    .map_err(&db)?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO withheld_deletes (guid, kind, sid, dn, cycle) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )
                    .map_err(&db)?;
                for w in rows {
                    insert
                        .execute(params![
                            w.guid.to_string(),
                            w.kind.as_str(),
                            w.sid.map(|s| s.to_string()),
                            w.dn,
                            w.cycle
                        ])
                        .map_err(&db)?;
                }
            }
            None => {
                let mut delete = tx
                    .prepare_cached("DELETE FROM withheld_deletes WHERE guid = ?1")
                    .map_err(&db)?;
                for guid in &leftovers.withheld_resolved {
                    delete.execute([guid.to_string()]).map_err(&db)?;
                }
            }
        }
        if let Some(cp) = checkpoint {
            let dc = &cp.position.dc_host;
            if leftovers.containers_complete {
                tx.execute("DELETE FROM containers WHERE dc_host = ?1", [dc])
                    .map_err(&db)?;
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO containers (dc_host, guid, dn) VALUES (?1, ?2, ?3)",
                )
                .map_err(&db)?;
            for (guid, dn) in &leftovers.containers {
                insert
                    .execute(params![dc, guid.to_string(), dn])
                    .map_err(&db)?;
            }
        }
        if checkpoint.is_some() {
            // No DC's mark predates these deletes any more: no delta needs them.
            tx.execute(
                "DELETE FROM deleted_log WHERE julianday(deleted_at) <
                    (SELECT MIN(julianday(updated_at)) FROM dc_marks)",
                [],
            )
            .map_err(&db)?;
        }
        if let (Some(_), Some(cycle)) = (checkpoint, leftovers.outside_complete) {
            tx.execute("DELETE FROM outside_members WHERE cycle <> ?1", [cycle])
                .map_err(&db)?;
        }
        tx.commit().map_err(&db)
    }

    /// Note that cycle `cycle` reads from `dc_host` (before it can send anything).
    pub(crate) fn note_cycle_on(
        &mut self,
        cycle: i64,
        dc_host: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "INSERT INTO dc_cycles (dc_host, last_started) VALUES (?1, ?2)
             ON CONFLICT (dc_host) DO UPDATE SET last_started = ?2",
            params![dc_host, now.to_rfc3339()],
        )
        .map_err(&db)?;
        tx.execute(
            "UPDATE cycles SET dc_host = ?2 WHERE id = ?1",
            params![cycle, dc_host],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    /// Of the objects full-sync cycle `cycle` did not read, those last seen (read by a full
    /// sync, or sent) by a cycle on another DC than `dc_host`: this DC may never have held
    /// them (not replicated yet), so their absence proves nothing. Cycles journaled before
    /// versions that noted the DC count as this DC's.
    pub(crate) fn unread_seen_elsewhere(
        &self,
        cycle: i64,
        dc_host: &str,
    ) -> Result<std::collections::HashSet<Guid>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.guid FROM objects o JOIN cycles c ON c.id = o.seen_cycle
                 WHERE o.seen_cycle <> ?1 AND c.dc_host IS NOT NULL
                   AND c.dc_host <> ?2 COLLATE NOCASE",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map(params![cycle, dc_host], |r| r.get::<_, String>(0))
            .map_err(self.db())?;
        let mut out = std::collections::HashSet::new();
        for row in rows {
            let text = row.map_err(self.db())?;
            let guid = text.parse::<Guid>().map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: "objectGUID",
                detail: e.to_string(),
            })?;
            out.insert(guid);
        }
        Ok(out)
    }

    /// When cycles on other DCs than `dc_host` ran after `since` (that DC's mark), the DNs of
    /// the objects recorded or deleted since: they hold what another DC showed, which this
    /// DC's delta (from its own mark) would never read again. `None` when no other DC ran.
    pub(crate) fn recorded_elsewhere_since(
        &self,
        dc_host: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<Vec<Elsewhere>>, StoreError> {
        let since = since.to_rfc3339();
        let elsewhere: bool = self
            .conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM dc_cycles
                 WHERE dc_host <> ?1 AND julianday(last_started) > julianday(?2)",
                params![dc_host, since],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        if !elsewhere {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT guid, dn, 1 FROM objects WHERE julianday(last_sent) > julianday(?1)
                 UNION SELECT guid, dn, 0 FROM deleted_log WHERE julianday(deleted_at) > julianday(?1)",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (guid, dn, tracked) = row.map_err(self.db())?;
            let guid = guid.parse::<Guid>().map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: "objectGUID",
                detail: e.to_string(),
            })?;
            out.push(Elsewhere { guid, dn, tracked });
        }
        Ok(Some(out))
    }

    /// The containers as the last completed cycle on `dc_host` read them: objectGUID → DN.
    pub(crate) fn containers(&self, dc_host: &str) -> Result<ad_source::Containers, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT guid, dn FROM containers WHERE dc_host = ?1")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([dc_host], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.db())?;
        let mut out = ad_source::Containers::new();
        for row in rows {
            let (guid, dn) = row.map_err(self.db())?;
            let guid = guid.parse::<Guid>().map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: "container objectGUID",
                detail: e.to_string(),
            })?;
            out.insert(guid, dn);
        }
        Ok(out)
    }

    /// Record that cycle `cycle` read these users in these groups outside the scope
    /// (`(canonical group DN, member DN)`).
    pub(crate) fn note_outside_members(
        &mut self,
        cycle: i64,
        pairs: &[(String, String)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO outside_members (group_key, member_dn, cycle) VALUES (?1, ?2, ?3)",
                )
                .map_err(&db)?;
            for (group, member) in pairs {
                insert.execute(params![group, member, cycle]).map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// The users last read in the group outside the scope with this canonical DN.
    pub(crate) fn outside_members(&self, group_key: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT member_dn FROM outside_members WHERE group_key = ?1")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([group_key], |r| r.get::<_, String>(0))
            .map_err(self.db())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.db())
    }

    /// Replace what is recorded of the group outside the scope `group_key` by its members
    /// now (after they were noted for re-reading).
    pub(crate) fn replace_outside_members(
        &mut self,
        cycle: i64,
        group_key: &str,
        members: &[String],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "DELETE FROM outside_members WHERE group_key = ?1",
            [group_key],
        )
        .map_err(&db)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO outside_members (group_key, member_dn, cycle) VALUES (?1, ?2, ?3)",
                )
                .map_err(&db)?;
            for member in members {
                insert
                    .execute(params![group_key, member, cycle])
                    .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Tracked objects not read by full-sync cycle `cycle`: deleted or out of scope.
    pub fn unread(&self, cycle: i64) -> Result<Vec<ObjectRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT guid, kind, sid, dn, hash FROM objects WHERE seen_cycle <> ?1")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([cycle], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.object_row(row.map_err(self.db())?)?);
        }
        Ok(out)
    }

    /// Number of tracked objects of a kind.
    pub fn count(&self, kind: ObjectKind) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM objects WHERE kind = ?1 AND hash <> ''",
                [kind.as_str()],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The deletes the guard withheld (released by a full sync with `confirm_deletes`).
    pub fn withheld(&self) -> Result<Vec<WithheldRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT guid, kind, sid, dn, cycle FROM withheld_deletes ORDER BY dn")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (guid, kind, sid, dn, cycle) = row.map_err(self.db())?;
            let object = self.object_row((guid, kind, sid, dn, String::new()))?;
            out.push(WithheldRow {
                guid: object.guid,
                kind: object.kind,
                sid: object.sid,
                dn: object.dn,
                cycle,
            });
        }
        Ok(out)
    }

    /// The records the platform refused, retried by every cycle.
    pub fn quarantined(&self) -> Result<Vec<QuarantineRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT guid, kind, dn, change, reason, cycle FROM quarantine ORDER BY dn")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (guid, kind, dn, change, reason, cycle) = row.map_err(self.db())?;
            let object = self.object_row((guid, kind, None, dn, String::new()))?;
            out.push(QuarantineRow {
                guid: object.guid,
                kind: object.kind,
                dn: object.dn,
                change,
                reason,
                cycle,
            });
        }
        Ok(out)
    }

    /// The entries a cycle could not read, re-read by every cycle.
    pub fn skipped(&self) -> Result<Vec<SkippedRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT dn, guid, reason, cycle FROM skipped ORDER BY dn")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (dn, guid, reason, cycle) = row.map_err(self.db())?;
            out.push(SkippedRow {
                dn,
                guid: guid
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|e| self.corrupt("skipped GUID", e))?,
                reason,
                cycle,
            });
        }
        Ok(out)
    }
}

/// The first RDN of a DN (`CN=Name` of `CN=Name,OU=x,DC=y`), honouring `\,` escapes.
fn first_rdn(dn: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => return dn.get(..i),
            _ => escaped = false,
        }
    }
    None
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        path: path.to_owned(),
        source,
    }
}

/// What the lock file says about the process holding it (`pid N`).
fn holder_of(lock_path: &Path) -> String {
    std::fs::read_to_string(lock_path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "holder unknown".to_owned())
}

/// How often a start retries a lock held for an instant by `status` (20 ms apart).
const LOCK_TRIES: u32 = 25;

/// Create `dir` (and missing parents) readable by this user only. Only directories we create
/// are made private: an existing one keeps the mode its owner chose.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700).create(dir)?;
        // The umask may have taken bits away from 0700, never added; make it exact.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Open (creating if missing) a state file readable and writable by this user only. Our own
/// files are made 0600 even when they exist: they hold DNs, SIDs and group memberships.
fn private_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    make_private(path)?;
    Ok(file)
}

#[cfg(unix)]
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(n: u8) -> Guid {
        Guid::from_bytes(&[n; 16]).unwrap()
    }

    fn sent(n: u8, hash: &str) -> SentObject {
        SentObject {
            guid: guid(n),
            kind: ObjectKind::User,
            sid: Some(
                format!("S-1-5-21-1-2-3-{}", 1000 + u32::from(n))
                    .parse()
                    .unwrap(),
            ),
            dn: format!("CN=u{n},DC=x"),
            hash: hash.into(),
            members: None,
        }
    }

    fn checkpoint(usn: u64) -> StoredCheckpoint {
        StoredCheckpoint {
            position: Checkpoint {
                dc_host: "dc1.corp.example.test".into(),
                invocation_id: guid(9),
                usn,
            },
            last_full_sync: None,
            read_at: Some(Utc::now()),
            scope: Some("base".into()),
        }
    }

    #[test]
    fn each_dc_has_its_mark_and_old_state_has_the_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store
            .finish_cycle(Some(&checkpoint(42)), &Leftovers::default(), now)
            .unwrap();
        let mut other = checkpoint(1_000_042);
        other.position.dc_host = "DC2.corp.example.test".into();
        store
            .finish_cycle(Some(&other), &Leftovers::default(), now)
            .unwrap();
        assert_eq!(store.dc_marks().unwrap().len(), 2);
        let mark = |store: &Store, host| store.dc_mark(host).unwrap().map(|m| m.position.usn);
        assert_eq!(mark(&store, "dc1.corp.example.test"), Some(42));
        assert_eq!(
            mark(&store, "dc2.CORP.example.test"),
            Some(1_000_042),
            "any case"
        );
        assert_eq!(mark(&store, "dc3.corp.example.test"), None);

        // State written before marks existed: the checkpoint is its own DC's mark.
        store.conn.execute("DELETE FROM dc_marks", []).unwrap();
        assert_eq!(mark(&store, "dc2.corp.example.test"), Some(1_000_042));
        assert_eq!(mark(&store, "dc1.corp.example.test"), None);
    }

    #[test]
    fn batches_then_checkpoint_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.connector_state().unwrap(), ConnectorState::Registered);
        assert_eq!(store.checkpoint().unwrap(), None);
        let now = Utc::now();
        let cycle = store.begin_cycle("full", now).unwrap();
        assert_eq!(store.connector_state().unwrap(), ConnectorState::Processing);
        store
            .commit_batch(cycle, &[sent(1, "a"), sent(2, "b")], &[], now)
            .unwrap();
        store
            .commit_batch(cycle, &[sent(3, "c")], &[], now)
            .unwrap();
        assert_eq!(store.checkpoint().unwrap(), None, "not finished yet");
        let cp = checkpoint(42);
        store
            .finish_cycle(Some(&cp), &Leftovers::default(), now)
            .unwrap();
        store
            .end_cycle(cycle, CycleOutcome::Ok, "ok", None, now)
            .unwrap();
        drop(store);

        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.checkpoint().unwrap(), Some(cp.clone()));
        assert_eq!(store.stored_hash(&guid(2)).unwrap().as_deref(), Some("b"));
        assert_eq!(store.connector_state().unwrap(), ConnectorState::Processed);
        assert_eq!(store.count(ObjectKind::User).unwrap(), 3);

        // Next full cycle reads 1 and 3 only: 2 is unread (deleted or out of scope).
        let cycle = store.begin_cycle("full", now).unwrap();
        store.mark_read(cycle, &[guid(1), guid(3)]).unwrap();
        assert_eq!(store.mark_read_dn(cycle, "cn=U1,DC=x").unwrap(), 1);
        assert_eq!(store.mark_read_dn(cycle, "CN=nobody,DC=x").unwrap(), 0);
        let unread = store.unread(cycle).unwrap();
        assert_eq!(unread.len(), 1);
        assert_eq!(unread[0].guid, guid(2));
        store.commit_batch(cycle, &[], &[guid(2)], now).unwrap();
        assert_eq!(store.object(&guid(2)).unwrap(), None);
        let leftovers = Leftovers {
            quarantined: vec![QuarantineRow {
                guid: guid(1),
                kind: ObjectKind::User,
                dn: "CN=u1,DC=x".into(),
                change: "upsert".into(),
                reason: "HTTP 400".into(),
                cycle,
            }],
            skipped: vec![SkippedRow {
                dn: "CN=bad,DC=x".into(),
                guid: None,
                reason: "unreadable".into(),
                cycle,
            }],
            withheld: Some(vec![WithheldRow {
                guid: guid(3),
                kind: ObjectKind::User,
                sid: None,
                dn: "CN=u3,DC=x".into(),
                cycle,
            }]),
            withheld_resolved: Vec::new(),
            ..Leftovers::default()
        };
        store
            .finish_cycle(Some(&checkpoint(50)), &leftovers, now)
            .unwrap();
        assert_eq!(store.checkpoint().unwrap().unwrap().position.usn, 50);
        assert_eq!(store.quarantined().unwrap(), leftovers.quarantined);
        assert_eq!(store.skipped().unwrap(), leftovers.skipped);
        assert_eq!(store.withheld().unwrap().len(), 1);
        // A delta that read object 3 resolves its withheld delete and keeps the checkpoint.
        let delta = Leftovers {
            withheld_resolved: vec![guid(3)],
            ..Leftovers::default()
        };
        store.finish_cycle(None, &delta, now).unwrap();
        assert!(store.withheld().unwrap().is_empty());
        assert_eq!(
            store.quarantined().unwrap().len(),
            1,
            "a held checkpoint keeps the leftovers"
        );
        store
            .finish_cycle(Some(&checkpoint(51)), &Leftovers::default(), now)
            .unwrap();
        assert!(store.quarantined().unwrap().is_empty());
        assert_eq!(store.checkpoint().unwrap().unwrap().position.usn, 51);
        let cycles = store.recent_cycles(5).unwrap();
        assert_eq!(cycles.len(), 2);
        assert_eq!(cycles[1].outcome, "ok");
        assert_eq!(cycles[0].outcome, "running");
    }

    #[test]
    fn read_only_open_needs_no_lock_and_sees_commits() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_read_only(dir.path()).unwrap().is_none());
        let mut writer = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let cycle = writer.begin_cycle("full", now).unwrap();
        // While the writer holds the lock (and a cycle runs), a reader opens and sees it.
        let reader = Store::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(
            reader.connector_state().unwrap(),
            ConnectorState::Processing
        );
        assert_eq!(reader.recent_cycles(1).unwrap()[0].outcome, "running");
        // And the reader does not stop the writer from committing.
        writer
            .commit_batch(cycle, &[sent(1, "a")], &[], now)
            .unwrap();
        writer
            .finish_cycle(Some(&checkpoint(7)), &Leftovers::default(), now)
            .unwrap();
        writer
            .end_cycle(cycle, CycleOutcome::Ok, "ok", None, now)
            .unwrap();
        assert_eq!(reader.checkpoint().unwrap().unwrap().position.usn, 7);
        // A second writer is still refused while the first holds the lock.
        assert!(matches!(
            Store::open(dir.path()).unwrap_err(),
            StoreError::Locked { .. }
        ));
    }

    #[test]
    fn first_rdn_honours_escapes() {
        assert_eq!(first_rdn("CN=a,DC=x"), Some("CN=a"));
        assert_eq!(first_rdn("CN=Smith\\, John,OU=x"), Some("CN=Smith\\, John"));
        assert_eq!(first_rdn("DC=x"), None);
    }

    #[test]
    fn groups_listing_finds_a_moved_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut group = sent(7, "g");
        group.kind = ObjectKind::Group;
        group.members = Some(vec!["CN=u1,OU=New,DC=x".into()]);
        store.commit_batch(1, &[group], &[], Utc::now()).unwrap();
        assert!(
            store
                .groups_listing("CN=u1,OU=Old,DC=x")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .groups_listing_any_parent("CN=u1,OU=Old,DC=x")
                .unwrap(),
            ["CN=u7,DC=x"]
        );
        assert!(
            store
                .groups_listing_any_parent("CN=u2,OU=Old,DC=x")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn stored_member_lists_follow_a_moved_member() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut group = sent(7, "g");
        group.kind = ObjectKind::Group;
        group.members = Some(vec!["CN=u1,OU=Old,DC=x".into(), "CN=u2,OU=Old,DC=x".into()]);
        store.commit_batch(1, &[group], &[], Utc::now()).unwrap();
        let listing = store
            .rename_member("cn=U1,ou=old,DC=x", "CN=u1,OU=New,DC=x")
            .unwrap();
        assert_eq!(listing, ["CN=u7,DC=x"]);
        assert_eq!(
            store.group_members(&guid(7)).unwrap(),
            ["CN=u1,OU=New,DC=x", "CN=u2,OU=Old,DC=x"]
        );
        assert!(
            store
                .groups_listing("CN=u1,OU=Old,DC=x")
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .rename_member("CN=nobody,DC=x", "CN=n,DC=x")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn group_members_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut group = sent(7, "g");
        group.kind = ObjectKind::Group;
        group.members = Some(vec!["CN=a,DC=x".into(), "CN=b,DC=x".into()]);
        store.commit_batch(1, &[group], &[], Utc::now()).unwrap();
        assert_eq!(
            store.group_members(&guid(7)).unwrap(),
            ["CN=a,DC=x", "CN=b,DC=x"]
        );
        assert_eq!(store.group_members(&guid(8)).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_checkpoint_from_the_first_schema_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("state.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), dc_host TEXT NOT NULL, invocation_id TEXT NOT NULL, usn INTEGER NOT NULL, last_full_sync TEXT, updated_at TEXT NOT NULL);
                 INSERT INTO checkpoint VALUES (1, 'dc1', '09090909-0909-0909-0909-090909090909', 12, NULL, '2026-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let cp = store.checkpoint().unwrap().unwrap();
        assert_eq!(cp.position.usn, 12);
        assert_eq!(cp.read_at, None);
    }
}
