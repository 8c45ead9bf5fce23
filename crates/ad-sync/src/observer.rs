//! How a cycle tells the outside world what it is doing, without knowing who listens.

use std::time::Duration;

use ad_model::ObjectKind;
use asset_sink::Ack;

/// What one settled batch delivered: the changes the platform accepted, by operation and
/// kind, the records it refused, and how long the batch took from being handed to the sink
/// to its last answer (retries and the splitting of refused batches included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// User upserts accepted.
    pub users_upserted: u64,
    /// Group upserts accepted.
    pub groups_upserted: u64,
    /// User deletes accepted.
    pub users_deleted: u64,
    /// Group deletes accepted.
    pub groups_deleted: u64,
    /// Records refused and quarantined.
    pub refused: u64,
    /// Wall time of the batch.
    pub duration: Duration,
}

/// Receives progress from a running cycle (a progress bar, a log, a test harness).
///
/// Every method has an empty default; implement what you need. Calls come from the task
/// running the cycle and must return quickly.
pub trait Observer: Send + Sync {
    /// An object was read from the directory.
    fn object_read(&self, _kind: ObjectKind) {}
    /// A batch was acknowledged by the platform and recorded.
    fn batch_recorded(&self, _ack: &Ack) {}
    /// A batch settled and was recorded: what it delivered (one call per batch, after its
    /// [`batch_recorded`](Observer::batch_recorded) calls).
    fn batch_delivered(&self, _delivered: &Delivered) {}
    /// Something the operator should know (already logged with `tracing`).
    fn warning(&self, _message: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
