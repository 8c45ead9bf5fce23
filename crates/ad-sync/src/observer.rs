//! How a cycle tells the outside world what it is doing, without knowing who listens.

use ad_model::ObjectKind;
use asset_sink::Ack;

/// Receives progress from a running cycle (a progress bar, a log, a test harness).
///
/// Every method has an empty default; implement what you need. Calls come from the task
/// running the cycle and must return quickly.
pub trait Observer: Send + Sync {
    /// An object was read from the directory.
    fn object_read(&self, _kind: ObjectKind) {}
    /// A batch was acknowledged by the platform and recorded.
    fn batch_recorded(&self, _ack: &Ack) {}
    /// Something the operator should know (already logged with `tracing`).
    fn warning(&self, _message: &str) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
