//! The outbox writer.
//!
//! Line format (one change per line, UTF-8, `\n`-terminated):
//!
//! ```json
//! {"op":"upsert","kind":"user","batch_id":7,
//!  "sync":{"cycle_id":"…","at":"2026-11-22T12:00:00Z","mode":"delta"},
//!  "record":{ …ad-model's canonical User JSON… }}
//! ```
//!
//! `op` is `upsert` or `delete`; `kind` is `user` or `group`; `record` is the canonical
//! `User` / `Group` JSON of `ad-model`, or for a delete the [`Deletion`] (`object_guid`,
//! `object_sid`, `kind`, `dn`, `sam_account_name`). A group line carries the group only, not
//! the `affected_users` of the change (their own changes have lines of their own).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ad_model::{Group, User};
use async_trait::async_trait;
use serde::Serialize;

use crate::change::{Ack, Batch, Change, Deletion};
use crate::error::SinkError;
use crate::jsonl::config::JsonlConfig;
use crate::sink::{Capabilities, CheckItem, CheckReport, Sink};

const SINK: &str = "jsonl";

#[derive(Debug, Clone)]
enum Target {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Default)]
struct State {
    file: Option<File>,
    size: u64,
    /// The file may end in a partial line (failed write, crash): start with a newline.
    needs_newline: bool,
}

/// Appends changes to a JSONL file (or standard output).
#[derive(Debug)]
pub struct JsonlSink {
    target: Target,
    rotate_bytes: u64,
    batch_size: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Record<'a> {
    User(&'a User),
    Group(&'a Group),
    Delete(&'a Deletion),
}

/// The outbox lines of a batch, each `\n`-terminated: what [`Sink::send`] appends.
///
/// Each line is `{"op":…,"kind":…,"batch_id":…,"sync":{…},"record":{…}}`; the `sync`
/// object is the same for the whole batch and serialized once.
pub fn encode(batch: &Batch) -> Result<Vec<u8>, SinkError> {
    let ser = |source| SinkError::Serialize {
        what: "an outbox line",
        source,
    };
    let sync = serde_json::to_vec(&batch.sync).map_err(ser)?;
    let mut out = Vec::with_capacity(batch.changes.len() * 2200);
    for change in &batch.changes {
        let (op, record) = match change {
            Change::UpsertUser(user) => ("upsert", Record::User(user)),
            Change::UpsertGroup { group, .. } => ("upsert", Record::Group(group)),
            Change::Delete(d) => ("delete", Record::Delete(d)),
        };
        out.extend_from_slice(br#"{"op":""#);
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(br#"","kind":""#);
        out.extend_from_slice(change.kind().as_str().as_bytes());
        out.extend_from_slice(br#"","batch_id":"#);
        out.extend_from_slice(batch.id.to_string().as_bytes());
        out.extend_from_slice(br#","sync":"#);
        out.extend_from_slice(&sync);
        out.extend_from_slice(br#","record":"#);
        serde_json::to_writer(&mut out, &record).map_err(ser)?;
        out.extend_from_slice(b"}\n");
    }
    Ok(out)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// `changes.jsonl` → the next free `changes.jsonl.<n>`.
fn next_rotation(path: &Path) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.");
    let mut highest = 0u64;
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if let Some(n) = file
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            highest = highest.max(n);
        }
    }
    Ok(dir.join(format!("{name}.{}", highest + 1)))
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

fn open(path: &Path, state: &mut State) -> Result<(), SinkError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create the directory of", path))?;
    }
    // The outbox carries every user's name, mail, groups and status: a new file is readable
    // by this user only (0600 whatever the umask). An existing file keeps the mode its owner
    // gave it (a log shipper in the group, say).
    let new = !path.exists();
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io("open", path))?;
    #[cfg(unix)]
    if new {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("restrict the permissions of", path))?;
    }
    #[cfg(not(unix))]
    let _ = new;
    let size = file.metadata().map_err(io("read the size of", path))?.len();
    let mut needs_newline = false;
    if size > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1)).map_err(io("read", path))?;
        file.read_exact(&mut last).map_err(io("read", path))?;
        needs_newline = last[0] != b'\n';
    }
    *state = State {
        file: Some(file),
        size,
        needs_newline,
    };
    Ok(())
}

fn append_to_file(
    path: &Path,
    rotate_bytes: u64,
    state: &mut State,
    data: &[u8],
) -> Result<(), SinkError> {
    if state.file.is_none() {
        open(path, state)?;
    }
    let len = data.len() as u64;
    if rotate_bytes > 0 && state.size > 0 && state.size + len > rotate_bytes {
        let rotated = next_rotation(path).map_err(io("list the directory of", path))?;
        state.file = None;
        std::fs::rename(path, &rotated).map_err(io("rotate", path))?;
        sync_dir(path);
        tracing::info!(sink = SINK, from = %path.display(), to = %rotated.display(), "outbox rotated");
        open(path, state)?;
    }
    let needs_newline = state.needs_newline;
    let file = state.file.as_mut().ok_or_else(|| SinkError::Io {
        op: "open",
        path: path.to_owned(),
        source: std::io::Error::other("the outbox file is not open"),
    })?;
    let result = (|| {
        if needs_newline {
            file.write_all(b"\n")?;
        }
        file.write_all(data)?;
        file.sync_data()
    })();
    match result {
        Ok(()) => {
            state.size += len + u64::from(needs_newline);
            state.needs_newline = false;
            Ok(())
        }
        Err(source) => {
            // Whatever reached the file may end mid-line; reopen (and re-check) next time.
            state.file = None;
            Err(SinkError::Io {
                op: "append to",
                path: path.to_owned(),
                source,
            })
        }
    }
}

impl JsonlSink {
    /// Build the sink. The file is opened on the first batch.
    pub fn new(config: JsonlConfig) -> Result<JsonlSink, SinkError> {
        if config.path.trim().is_empty() {
            return Err(SinkError::Config {
                sink: SINK,
                key: "path",
                problem: "is empty; give a file path or - for standard output".into(),
            });
        }
        if config.batch_size == 0 {
            return Err(SinkError::Config {
                sink: SINK,
                key: "batch_size",
                problem: "must be at least 1".into(),
            });
        }
        let target = if config.path == "-" {
            Target::Stdout
        } else {
            Target::File(PathBuf::from(&config.path))
        };
        Ok(JsonlSink {
            target,
            rotate_bytes: config.rotate_bytes,
            batch_size: config.batch_size,
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// The file written, `None` for standard output.
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::Stdout => None,
            Target::File(p) => Some(p),
        }
    }

    async fn write(&self, data: Vec<u8>) -> Result<(), SinkError> {
        let target = self.target.clone();
        let state = Arc::clone(&self.state);
        let rotate_bytes = self.rotate_bytes;
        let join = tokio::task::spawn_blocking(move || {
            let mut state = state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match &target {
                Target::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&data)
                        .and_then(|()| out.flush())
                        .map_err(io("write to", Path::new("<stdout>")))
                }
                Target::File(path) => append_to_file(path, rotate_bytes, &mut state, &data),
            }
        })
        .await;
        join.map_err(|e| SinkError::Io {
            op: "append to",
            path: self
                .path()
                .map(Path::to_owned)
                .unwrap_or_else(|| "<stdout>".into()),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

#[async_trait]
impl Sink for JsonlSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            standalone_groups: true,
            deletes: true,
            needs_affected_users: false,
        }
    }

    fn max_batch_size(&self) -> usize {
        self.batch_size
    }

    /// Opens (creating if needed) the outbox file for appending.
    async fn check(&self) -> Result<CheckReport, SinkError> {
        let (target, item) = match &self.target {
            Target::Stdout => (
                "-".to_owned(),
                CheckItem {
                    name: "outbox writable",
                    ok: true,
                    detail: "writing to standard output".into(),
                },
            ),
            Target::File(path) => {
                let mut probe = State::default();
                let item = match open(path, &mut probe) {
                    Ok(()) => CheckItem {
                        name: "outbox writable",
                        ok: true,
                        detail: format!(
                            "{} is open for appending ({} bytes)",
                            path.display(),
                            probe.size
                        ),
                    },
                    Err(e) => CheckItem {
                        name: "outbox writable",
                        ok: false,
                        detail: e.to_string(),
                    },
                };
                (path.display().to_string(), item)
            }
        };
        Ok(CheckReport {
            sink: SINK,
            target,
            items: vec![item],
        })
    }

    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError> {
        let data = encode(batch)?;
        if !data.is_empty() {
            self.write(data).await?;
        }
        Ok(Ack {
            batch_id: batch.id,
            accepted: batch.changes.len(),
            not_representable: Vec::new(),
            items_sent: batch.changes.len(),
            requests: usize::from(!batch.changes.is_empty()),
            task_ids: Vec::new(),
        })
    }
}
