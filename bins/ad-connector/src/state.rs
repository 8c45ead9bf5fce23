//! Durable state: one SQLite database in the state directory, guarded by a lock file.
//!
//! What it holds: the checkpoint (DC host, invocationId, USN bound, last full sync), one
//! row per object ever acknowledged by the sink (objectGUID, kind, SID, DN, content hash,
//! when it was last sent, the last full-sync cycle that saw it, and for groups the member
//! DNs last sent), and a journal of cycles.
//!
//! The rule that makes delivery safe: **the checkpoint moves only inside the transaction that
//! records the sink's acknowledgement of the last batch of a cycle.** A crash (even
//! `kill -9`) before that commit leaves the old checkpoint, so the next cycle reads the same
//! changes again; objects whose acknowledged hash is already stored are not re-sent, so at
//! most the unacknowledged batches go out twice. SQLite runs in WAL mode with
//! `synchronous=FULL`, so a committed acknowledgement survives power loss.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ad_model::{Guid, ObjectKind, Sid};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Why the state directory or database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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

/// Where incremental sync resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    /// `dnsHostName` of the DC the USN belongs to.
    pub dc_host: String,
    /// `invocationId` of that DC's database.
    pub invocation_id: Guid,
    /// The highest committed USN read before the last successful cycle began.
    pub usn: u64,
    /// When the last successful full sync finished.
    pub last_full_sync: Option<DateTime<Utc>>,
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
}

impl ConnectorState {
    fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Registered => "Registered",
            ConnectorState::Scheduled => "Scheduled",
            ConnectorState::Processing => "Processing",
            ConnectorState::Processed => "Processed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "Registered" => ConnectorState::Registered,
            "Scheduled" => ConnectorState::Scheduled,
            "Processing" => ConnectorState::Processing,
            "Processed" => ConnectorState::Processed,
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
}

/// The state directory, open and locked (or open read-only, without the lock).
pub struct State {
    conn: Connection,
    path: PathBuf,
    _lock: Option<File>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("path", &self.path).finish()
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
CREATE TABLE IF NOT EXISTS cycles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mode TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL,
    summary TEXT
);
";

impl State {
    /// Open (creating if needed) the state in `dir`, taking its lock. Fails with
    /// [`StateError::Locked`] if another process holds it.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        let dir_err = |source| StateError::Directory {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        restrict_permissions(dir);
        let lock_path = dir.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(dir_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "holder unknown".to_owned());
                return Err(StateError::Locked {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(dir_err(e)),
        }
        lock.set_len(0).map_err(dir_err)?;
        writeln!(lock, "pid {}", std::process::id()).map_err(dir_err)?;

        let path = dir.join("state.db");
        let db = |source| StateError::Database {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(&db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(&db)?;
        conn.execute_batch(SCHEMA).map_err(&db)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('state', 'Registered'), ('schema', '1')",
            [],
        )
        .map_err(&db)?;
        Ok(State {
            conn,
            path,
            _lock: Some(lock),
        })
    }

    /// Open the state in `dir` read-only, without taking the lock: for `status` and other
    /// commands that only look. SQLite in WAL mode lets readers see the last committed
    /// transaction while a running `run`/`sync` writes, so this never blocks the daemon and
    /// the daemon never blocks it. `Ok(None)` when no state exists yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<State>, StateError> {
        let path = dir.join("state.db");
        if !path.exists() {
            return Ok(None);
        }
        let db = |source| StateError::Database {
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
        Ok(Some(State {
            conn,
            path,
            _lock: None,
        }))
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        db_err(&self.path)
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> StateError {
        StateError::Corrupt {
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
    pub fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT dc_host, invocation_id, usn, last_full_sync FROM checkpoint WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(self.db())?;
        let Some((dc_host, invocation_id, usn, last_full)) = row else {
            return Ok(None);
        };
        let invocation_id = invocation_id
            .parse()
            .map_err(|e| self.corrupt("checkpoint invocationId", e))?;
        let usn = u64::try_from(usn).map_err(|e| self.corrupt("checkpoint USN", e))?;
        let last_full_sync = last_full
            .map(|t| DateTime::parse_from_rfc3339(&t).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|e| self.corrupt("last full sync time", e))?;
        Ok(Some(StoredCheckpoint {
            dc_host,
            invocation_id,
            usn,
            last_full_sync,
        }))
    }

    /// The connector state.
    pub fn connector_state(&self) -> Result<ConnectorState, StateError> {
        let text: String = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'state'", [], |r| {
                r.get(0)
            })
            .map_err(self.db())?;
        ConnectorState::parse(&text).ok_or_else(|| self.corrupt("connector state", text))
    }

    /// Record the connector state.
    pub fn set_connector_state(&mut self, state: ConnectorState) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'state'",
                [state.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Journal the start of a cycle and return its number.
    pub fn begin_cycle(&mut self, mode: &str, now: DateTime<Utc>) -> Result<i64, StateError> {
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

    /// Journal the end of a cycle.
    pub fn end_cycle(
        &mut self,
        id: i64,
        ok: bool,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let next = if ok { "Processed" } else { "Registered" };
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(db_err(&path))?;
        let result = tx
            .execute(
                "UPDATE cycles SET finished_at = ?2, outcome = ?3, summary = ?4 WHERE id = ?1",
                params![id, now.to_rfc3339(), if ok { "ok" } else { "failed" }, summary],
            )
            .and_then(|_| {
                // A failed cycle after a good one keeps "Processed" for the data already there.
                if ok {
                    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'state'", [next])
                } else {
                    tx.execute(
                        "UPDATE meta SET value = CASE WHEN EXISTS (SELECT 1 FROM checkpoint) THEN 'Processed' ELSE ?1 END WHERE key = 'state'",
                        [next],
                    )
                }
            })
            .and_then(|_| tx.commit());
        result.map_err(db_err(&path))?;
        Ok(())
    }

    /// The last `n` cycles, newest first.
    pub fn recent_cycles(&self, n: usize) -> Result<Vec<CycleRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, mode, started_at, finished_at, outcome, summary FROM cycles ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([n as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(self.db())?;
        let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
        let mut out = Vec::new();
        for row in rows {
            let (id, mode, started, finished, outcome, summary) = row.map_err(self.db())?;
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
            });
        }
        Ok(out)
    }

    /// The stored content hash of an object, if it was ever acknowledged.
    pub fn stored_hash(&self, guid: &Guid) -> Result<Option<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM objects WHERE guid = ?1")
            .map_err(self.db())?;
        stmt.query_row([guid.to_string()], |r| r.get(0))
            .optional()
            .map_err(self.db())
    }

    /// The stored row of an object.
    pub fn object(&self, guid: &Guid) -> Result<Option<ObjectRow>, StateError> {
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
    ) -> Result<ObjectRow, StateError> {
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
    pub fn group_members(&self, guid: &Guid) -> Result<Vec<String>, StateError> {
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

    /// Mark objects as seen by full-sync cycle `cycle` (unchanged objects that were not sent).
    pub fn mark_seen(&mut self, cycle: i64, guids: &[Guid]) -> Result<(), StateError> {
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

    /// Mark an object seen by DN (an entry that could not be decoded is still there).
    pub fn mark_seen_dn(&mut self, cycle: i64, dn: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE objects SET seen_cycle = ?1 WHERE dn = ?2 COLLATE NOCASE",
                params![cycle, dn],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// Record one acknowledged batch — and, for the last batch of a cycle, the new
    /// checkpoint — in ONE transaction.
    pub fn commit_batch(
        &mut self,
        cycle: i64,
        sent: &[SentObject],
        deleted: &[Guid],
        checkpoint: Option<&StoredCheckpoint>,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let db = db_err(&path);
        let tx = self.conn.transaction().map_err(&db)?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO objects (guid, kind, sid, dn, hash, last_sent, seen_cycle, members)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (guid) DO UPDATE SET kind = ?2, sid = ?3, dn = ?4, hash = ?5,
                        last_sent = ?6, seen_cycle = ?7, members = ?8",
                )
                .map_err(&db)?;
            for object in sent {
                let members = object
                    .members
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StateError::Corrupt {
                        path: path.clone(),
                        what: "group members",
                        detail: e.to_string(),
                    })?;
                upsert
                    .execute(params![
                        object.guid.to_string(),
                        object.kind.as_str(),
                        object.sid.map(|s| s.to_string()),
                        object.dn,
                        object.hash,
                        now.to_rfc3339(),
                        cycle,
                        members,
                    ])
                    .map_err(&db)?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM objects WHERE guid = ?1")
                .map_err(&db)?;
            for guid in deleted {
                delete.execute([guid.to_string()]).map_err(&db)?;
            }
            if let Some(cp) = checkpoint {
                tx.execute(
                    "INSERT INTO checkpoint (id, dc_host, invocation_id, usn, last_full_sync, updated_at)
                     VALUES (1, ?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET dc_host = ?1, invocation_id = ?2, usn = ?3,
                        last_full_sync = ?4, updated_at = ?5",
                    params![
                        cp.dc_host,
                        cp.invocation_id.to_string(),
                        i64::try_from(cp.usn).unwrap_or(i64::MAX),
                        cp.last_full_sync.map(|t| t.to_rfc3339()),
                        now.to_rfc3339(),
                    ],
                )
                .map_err(&db)?;
            }
        }
        tx.commit().map_err(&db)
    }

    /// Objects not seen by full-sync cycle `cycle`: deleted or moved out of scope.
    pub fn unseen(&self, cycle: i64) -> Result<Vec<ObjectRow>, StateError> {
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
    pub fn count(&self, kind: ObjectKind) -> Result<u64, StateError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM objects WHERE kind = ?1",
                [kind.as_str()],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Database {
        path: path.to_owned(),
        source,
    }
}

#[cfg(unix)]
fn restrict_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The state holds DNs and SIDs (no secrets), but it is nobody else's business.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &Path) {}

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
            dc_host: "dc1.corp.example.test".into(),
            invocation_id: guid(9),
            usn,
            last_full_sync: None,
        }
    }

    #[test]
    fn batches_and_checkpoint_commit_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        assert_eq!(state.connector_state().unwrap(), ConnectorState::Registered);
        assert_eq!(state.checkpoint().unwrap(), None);
        let now = Utc::now();
        let cycle = state.begin_cycle("full", now).unwrap();
        assert_eq!(state.connector_state().unwrap(), ConnectorState::Processing);
        state
            .commit_batch(cycle, &[sent(1, "a"), sent(2, "b")], &[], None, now)
            .unwrap();
        assert_eq!(state.checkpoint().unwrap(), None, "not the last batch");
        state
            .commit_batch(cycle, &[sent(3, "c")], &[], Some(&checkpoint(42)), now)
            .unwrap();
        state.end_cycle(cycle, true, "ok", now).unwrap();
        drop(state);

        let mut state = State::open(dir.path()).unwrap();
        assert_eq!(state.checkpoint().unwrap(), Some(checkpoint(42)));
        assert_eq!(state.stored_hash(&guid(2)).unwrap().as_deref(), Some("b"));
        assert_eq!(state.connector_state().unwrap(), ConnectorState::Processed);
        assert_eq!(state.count(ObjectKind::User).unwrap(), 3);

        // Next full cycle sees 1 and 3 only: 2 is unseen (deleted or out of scope).
        let cycle = state.begin_cycle("full", now).unwrap();
        state.mark_seen(cycle, &[guid(1), guid(3)]).unwrap();
        let unseen = state.unseen(cycle).unwrap();
        assert_eq!(unseen.len(), 1);
        assert_eq!(unseen[0].guid, guid(2));
        state
            .commit_batch(cycle, &[], &[guid(2)], Some(&checkpoint(50)), now)
            .unwrap();
        assert_eq!(state.object(&guid(2)).unwrap(), None);
        assert_eq!(state.checkpoint().unwrap().unwrap().usn, 50);
        let cycles = state.recent_cycles(5).unwrap();
        assert_eq!(cycles.len(), 2);
        assert_eq!(cycles[1].outcome, "ok");
        assert_eq!(cycles[0].outcome, "running");
    }

    #[test]
    fn read_only_open_needs_no_lock_and_sees_commits() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::open_read_only(dir.path()).unwrap().is_none());
        let mut writer = State::open(dir.path()).unwrap();
        let now = Utc::now();
        let cycle = writer.begin_cycle("full", now).unwrap();
        // While the writer holds the lock (and a cycle runs), a reader opens and sees it.
        let reader = State::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(reader.connector_state().unwrap(), ConnectorState::Processing);
        assert_eq!(reader.recent_cycles(1).unwrap()[0].outcome, "running");
        // And the reader does not stop the writer from committing.
        writer
            .commit_batch(cycle, &[sent(1, "a")], &[], Some(&checkpoint(7)), now)
            .unwrap();
        writer.end_cycle(cycle, true, "ok", now).unwrap();
        assert_eq!(reader.checkpoint().unwrap().unwrap().usn, 7);
        // A second writer is still refused while the first holds the lock.
        assert!(matches!(
            State::open(dir.path()).unwrap_err(),
            StateError::Locked { .. }
        ));
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = State::open(dir.path()).unwrap();
        let err = State::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(
            err.to_string().contains("already using state directory"),
            "{err}"
        );
    }

    #[test]
    fn group_members_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        let mut group = sent(7, "g");
        group.kind = ObjectKind::Group;
        group.members = Some(vec!["CN=a,DC=x".into(), "CN=b,DC=x".into()]);
        state
            .commit_batch(1, &[group], &[], None, Utc::now())
            .unwrap();
        assert_eq!(
            state.group_members(&guid(7)).unwrap(),
            ["CN=a,DC=x", "CN=b,DC=x"]
        );
        assert_eq!(state.group_members(&guid(8)).unwrap(), Vec::<String>::new());
    }
}
