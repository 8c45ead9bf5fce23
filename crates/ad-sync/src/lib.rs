//! The sync engine between an Active Directory [`Source`](ad_source::Source) and an asset
//! [`Sink`](asset_sink::Sink): what to send, what to delete, and when the checkpoint moves.
//!
//! # The main design choice: acknowledged state, decided late
//!
//! A security inventory must never show a live account as gone, or a gone account as live.
//! The engine therefore keeps, in one SQLite [`Store`], what the *platform* has acknowledged
//! (one content hash per object) — not what the directory said — and decides everything that
//! can destroy information as late as possible:
//!
//! - **Upserts** go out as soon as an object is read and its hash differs from the
//!   acknowledged one. Each batch runs to completion in a task of its own
//!   ([`delivery`](crate#delivery)); the reader feels back-pressure from a bounded number of
//!   batches in flight, never from an unpolled request.
//! - **Deletes** are decided only after every upsert of the cycle was acknowledged: tombstones
//!   in a delta, and in a full sync the tracked objects the read did not return. An object
//!   read in a cycle is never deleted by it; a read that may be incomplete (truncated pages,
//!   size/time/admin limits, referrals, restarted searches, unreadable entries that match
//!   nothing tracked) deletes nothing; and more deletions than the [`DeleteGuard`] allows are
//!   withheld until an operator confirms the count.
//! - **The checkpoint** moves only after every batch was acknowledged and recorded, in the
//!   transaction that also records what the cycle left behind: entries it could not read
//!   and records the platform refused (both retried by every later cycle), deletes withheld.
//!   A read that may have missed entries keeps the old checkpoint.
//! - **Time** changes an account's status without a directory write (account expiry, end
//!   of a lockout, password age). Each delta asks the source for the accounts whose
//!   boundaries fell between the previous cycle's start and this one's.
//!
//! A record the platform refuses (a 4xx about the record, not the endpoint) is isolated by
//! bisecting its batch and quarantined; the rest is delivered. A refusal of every record, or
//! of the endpoint or the credentials, fails the cycle instead.
//!
//! # Delivery
//!
//! See [`Engine`] for the invariants, and `tests/it/sim.rs` for the deterministic simulation
//! that checks them over random histories of directory changes, platform faults and crashes.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(source: ad_source::Source, sink: std::sync::Arc<dyn asset_sink::Sink>) -> Result<(), Box<dyn std::error::Error>> {
//! use ad_sync::{CycleRequest, Engine, EngineOptions, NoObserver, Store};
//!
//! let store = Store::open(std::path::Path::new("/var/lib/ad-connector"))?;
//! let mut engine = Engine::new(source, sink, store, EngineOptions::default());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let report = engine.run_cycle(CycleRequest::default(), &NoObserver, &shutdown).await?;
//! println!("{}", report.summary());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod delivery;
mod engine;
pub mod fingerprint;
mod guard;
mod observer;
mod report;
mod store;

pub use engine::{CycleRequest, Engine, EngineOptions};
pub use guard::DeleteGuard;
pub use observer::{Delivered, NoObserver, Observer};
pub use report::{CycleError, CycleReport};
pub use store::{
    ConnectorState, CycleOutcome, CycleRecord, DcMark, Leftovers, ObjectRow, QuarantineRow,
    SentObject, SentState, SkippedRow, Store, StoreError, StoredCheckpoint, WithheldRow,
};
