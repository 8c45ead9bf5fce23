//! The [`Sink`] trait.

use async_trait::async_trait;
use serde::Serialize;

use crate::change::{Ack, Batch};
use crate::error::SinkError;

/// What a sink can represent. The caller uses it to decide what to put in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Groups are assets of their own (Qualys, outbox). When false, a group change is
    /// delivered by re-sending [`Change::UpsertGroup`](crate::Change)'s `affected_users`.
    pub standalone_groups: bool,
    /// Deletes are delivered. When false they are counted as not representable in the
    /// [`Ack`].
    pub deletes: bool,
    /// Group changes must carry the users whose group list changed (`affected_users`).
    pub needs_affected_users: bool,
}

/// One thing the test-connection command checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    /// What was checked (`endpoint reachable`, `credentials accepted`, ...).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, in a sentence (host, status, path). Never a secret.
    pub detail: String,
}

/// The result of [`Sink::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The sink's name.
    pub sink: &'static str,
    /// Where it delivers (URL without credentials, or file path).
    pub target: String,
    /// Each check, in the order run. A failed check stops the ones that depend on it.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// True if every check passed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }
}

/// A destination for directory changes.
///
/// Implementations deliver a [`Batch`] and return an [`Ack`] only once the destination
/// accepted all of it; any error means "not acknowledged, send again later". Sinks are
/// `Send + Sync` and may be called concurrently; HTTP sinks bound their in-flight requests
/// with their configured concurrency limit.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Short name: `sekoia`, `qualys`, `jsonl`.
    fn name(&self) -> &'static str;

    /// What this sink can represent.
    fn capabilities(&self) -> Capabilities;

    /// The number of changes per batch this sink is tuned for.
    fn max_batch_size(&self) -> usize;

    /// The test-connection command: credentials valid, endpoint reachable (or outbox
    /// writable). Sends no asset. Failures of the checks themselves are in the report;
    /// `Err` only when the check could not be run at all.
    async fn check(&self) -> Result<CheckReport, SinkError>;

    /// Deliver a batch. See the trait docs for the acknowledgement contract.
    async fn send(&self, batch: &Batch) -> Result<Ack, SinkError>;

    /// Requests sent again after a transient failure (timeout, 429, 5xx, connection
    /// trouble) since this sink was built, for metrics. Sinks that never retry say 0.
    fn retries(&self) -> u64 {
        0
    }
}
