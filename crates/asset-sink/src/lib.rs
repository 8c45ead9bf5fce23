//! Deliver Active Directory users and groups to security platforms.
//!
//! Three sinks implement one [`Sink`] trait: [`sekoia::SekoiaSink`] (Sekoia.io asset
//! connector API, OCSF User Inventory Info), [`qualys::QualysSink`] (Qualys ETM identity
//! inventory, at the target paths of Qualys' published transformation maps) and
//! [`jsonl::JsonlSink`] (a local append-only outbox, the default: it needs no account).
//!
//! # The design choice: acknowledge only what the platform accepted
//!
//! A connector that syncs deltas keeps a checkpoint ("everything up to USN n is delivered").
//! The costly failure is not a crash but a checkpoint that moves past data the platform never
//! took: those users are then missing until the next full sync, and nobody is told. Sekoia's
//! own SDK does exactly that: it drops a batch on any non-200 and may still advance.
//!
//! So here a [`Sink::send`] returns an [`Ack`] **only after the platform accepted every
//! request of the batch** (HTTP 200 for Sekoia, 2xx for Qualys, `fsync` for the outbox).
//! Anything else is a [`SinkError`], and the caller keeps its checkpoint and sends the batch
//! again later; upserts are idempotent, so re-sending is safe. What a platform *cannot*
//! represent (Sekoia has no delete operation) is neither an error nor silently dropped: it is
//! counted, with a reason, in [`Ack::not_representable`].
//!
//! The second half of the choice: **retry policy is written once** ([`http`]). Exponential
//! backoff with full jitter, `Retry-After` in seconds or as an HTTP date (clamped to an
//! hour), a bounded total retry time, per-request timeouts, a concurrency limit, and one
//! token refresh on 401 all live in one request loop. Each sink only *classifies* a response
//! into [`http::Retryable`] (accepted, retry, retry after, refresh auth, fatal). A 4xx other
//! than 408/429 is never retried: it becomes an error naming the status, the platform's
//! message and the batch.
//!
//! # Wiring
//!
//! ```no_run
//! use asset_sink::{Batch, Change, Sink, SyncInfo, SyncMode};
//! use asset_sink::jsonl::{JsonlConfig, JsonlSink};
//!
//! # async fn run(users: Vec<ad_model::User>) -> Result<(), asset_sink::SinkError> {
//! let sink: Box<dyn Sink> = Box::new(JsonlSink::new(JsonlConfig::default())?);
//! assert!(sink.check().await?.ok());
//! let sync = SyncInfo { cycle_id: uuid::Uuid::nil(), at: chrono::Utc::now(), mode: SyncMode::Delta };
//! for (id, chunk) in users.chunks(sink.max_batch_size()).enumerate() {
//!     let batch = Batch {
//!         id: id as u64,
//!         sync,
//!         changes: chunk.iter().cloned().map(Change::UpsertUser).collect(),
//!     };
//!     let ack = sink.send(&batch).await?; // only now may the checkpoint move
//!     assert_eq!(ack.accepted, chunk.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Secrets (API keys, passwords, client secrets, tokens) are [`secrecy::SecretString`]s:
//! they never reach logs, error messages or `Debug` output, and platform messages quoted in
//! errors are scrubbed of them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod change;
mod error;
pub mod http;
pub mod jsonl;
pub mod qualys;
pub mod sekoia;
mod sink;
#[cfg(test)]
mod test_support;
#[doc(hidden)]
pub mod testing;

pub use change::{Ack, Batch, Change, Deletion, NotRepresentable, SyncInfo, SyncMode};
pub use error::{Result, SinkError};
pub use sink::{Capabilities, CheckItem, CheckReport, Sink};
