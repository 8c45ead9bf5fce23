//! The JSONL outbox: every change as one line of canonical JSON, appended and `fsync`ed
//! before the batch is acknowledged. The embedded default sink: it needs no account.

mod config;
mod outbox;

pub use config::{DEFAULT_PATH, DEFAULT_ROTATE_BYTES, JsonlConfig};
pub use outbox::{JsonlSink, encode};
#[cfg(test)]
mod tests;
