//! `[jsonl]` configuration.

use serde::Deserialize;

/// Default outbox path.
pub const DEFAULT_PATH: &str = "./outbox/changes.jsonl";
/// Default rotation size: 100 MiB.
pub const DEFAULT_ROTATE_BYTES: u64 = 100 * 1024 * 1024;

/// Settings of the JSONL outbox.
///
/// ```toml
/// [jsonl]
/// path = "/var/lib/ad-connector/outbox/changes.jsonl"   # or "-" for standard output
/// rotate_bytes = 104857600
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    /// The file lines are appended to, created with its directory if missing; `-` writes to
    /// standard output (flushed before each acknowledgement). Default
    /// `./outbox/changes.jsonl`.
    pub path: String,
    /// When appending a batch would take the file past this many bytes, the file is first
    /// renamed to `<path>.<n>` (n = 1 + the highest existing n, so a rotated file never
    /// changes name again) and a new file started. A batch is never split across files.
    /// 0 disables rotation. Default 104857600 (100 MiB). Ignored for `-`.
    pub rotate_bytes: u64,
    /// Changes per batch the caller should send. Default 1000.
    pub batch_size: usize,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            path: DEFAULT_PATH.to_owned(),
            rotate_bytes: DEFAULT_ROTATE_BYTES,
            batch_size: 1000,
        }
    }
}
