//! Read Active Directory users and groups over LDAPS / StartTLS, in full or as true deltas.
//!
//! # The design choice: stream everything, track changes the way Microsoft documents
//!
//! A directory can hold a million users; a connector that collects them before sending
//! anything needs memory in proportion and fails late. Here every read is a **paged search
//! whose entries are handed on as they arrive** ([`SyncRun::next_event`], a bounded channel of
//! [`EVENT_BUFFER`] events): memory is one page plus the events in flight, whatever the size of
//! the directory. The only per-directory state kept is the group index (DN → name/SID for
//! every group, a few hundred bytes per group, see [`membership`]) — needed to resolve each
//! user's `memberOf` and primary group before the user is emitted — and, while a search runs
//! with reconnects enabled, 8 bytes per entry to suppress duplicates if it must restart.
//!
//! Deltas follow **Microsoft's uSNChanged algorithm** ("Polling for changes using uSNChanged"):
//! read the DC's `highestCommittedUSN` *before* reading (H0 for the full snapshot), store it
//! with the DC's `dnsHostName` and its database `invocationId` as the [`Checkpoint`]; next
//! time, on the same DC, read H1 first, then every user and group with `uSNChanged >= H0+1`,
//! and tombstones (Show Deleted control) for deletions; store H1. USNs are per DC, so a
//! checkpoint taken on another DC or before a restore (new invocationId) yields
//! [`DeltaOutcome::FullSyncRequired`] with the reason — never a silently wrong delta.
//!
//! Objects are keyed by **objectGUID**: it survives renames and moves (the DN does not) and
//! cross-domain moves (the SID does not), and it is what tombstones keep. A renamed or moved
//! user arrives as a [`SourceEvent::User`] with its old GUID and new DN; a deleted one as a
//! [`SourceEvent::Deleted`] with that GUID (and its SID when the tombstone kept it).
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), ad_source::SourceError> {
//! use ad_source::{DeltaOutcome, Source, SourceConfig, SourceEvent};
//! let config: SourceConfig = toml::from_str(r#"
//!     url = "ldaps://dc1.corp.example.com"
//!     bind = "svc-sync@corp.example.com"
//!     password = "…"
//!     ca_file = "/etc/ad-connector/corp-ca.cer"
//! "#).map_err(|e| ad_source::SourceError::Config { message: e.to_string() })?;
//! let source = Source::new(config)?;
//! let mut run = source.full_snapshot().await?;
//! while let Some(event) = run.next_event().await {
//!     match event {
//!         SourceEvent::User(user) => { /* send user.record */ }
//!         SourceEvent::Group(group) => { /* … */ }
//!         SourceEvent::Deleted(gone) => { /* delete by gone.object_guid */ }
//!         SourceEvent::Skipped { dn, reason, .. } => eprintln!("skipped {dn}: {reason}"),
//!         SourceEvent::Warning { message } => eprintln!("{message}"),
//!     }
//! }
//! let checkpoint = run.finish().await?.checkpoint; // store only after success
//! match source.changes_since(&checkpoint).await? {
//!     DeltaOutcome::Changes(run) => { /* same loop */ }
//!     DeltaOutcome::FullSyncRequired { reason } => { /* full_snapshot() again */ }
//! }
//! # Ok(()) }
//! ```
//!
//! Reads are never silently incomplete: a page without the paged-results control or a search
//! ending in sizeLimitExceeded / timeLimitExceeded / adminLimitExceeded keeps what was read,
//! ends that search and is counted ([`Counters`], [`SyncSummary::truncated`],
//! [`SyncSummary::incomplete_reasons`]); other errors fail the run.
//!
//! Beyond full and delta runs: [`Source::read_objects`] re-reads objects by DN (to retry
//! skipped or quarantined ones), and [`Source::time_boundary_users`] finds the users whose
//! account expired, lockout ended or password expired by age in a time window — changes AD
//! never writes, so no delta reports them. "Now" comes from the source's [`Clock`]
//! ([`Source::with_clock`]).
//!
//! Transport: `ldaps://` or `ldap://` + StartTLS, certificates verified against `ca_file`
//! (PEM or DER) or the system roots, with rustls and the *ring* provider only. Plain LDAP
//! needs `allow_plain_ldap = true`, or Kerberos ([`kerberos`], cargo feature `kerberos`), which
//! seals it. Failures are sentences ([`SourceError`],
//! [`bind_error`]); [`probe`] checks a configuration step by step.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod ber;
pub mod bind_error;
mod boundary;
pub mod checkpoint;
pub mod config;
mod connection;
pub mod error;
pub mod kerberos;
pub mod locator;
pub mod membership;
mod objects;
mod paging;
pub mod partition;
pub mod probe;
pub mod range;
pub mod root_dse;
#[cfg(feature = "kerberos")]
mod sealing;
mod session;
pub mod surroundings;
pub mod sync;
pub mod tls;

pub use bind_error::{BindFailure, BindFailureKind};
pub use boundary::TimeBoundary;
pub use checkpoint::Checkpoint;
pub use config::{DcUrls, DiscoveredScheme, SearchScope, SourceConfig, Transport};
pub use error::SourceError;
pub use kerberos::{KerberosConfig, KerberosFailure, KerberosFailureKind};
pub use locator::{DcCandidate, PassedOver, PinnedDc};
pub use membership::{GroupIndex, MembersIndex};
pub use objects::ChangedGroups;
pub use probe::{ProbeOutcome, ProbeReport, ProbeStep, ProbeStepKind};
pub use root_dse::RootDse;
pub use session::Counters;
pub use surroundings::{Containers, Outside, ScopeCheck, Surroundings};
pub use sync::{
    Clock, DeltaOutcome, EVENT_BUFFER, RunKind, Source, SourceEvent, SyncRun, SyncSummary,
};

impl Source {
    /// Check every step from DNS to reading objectSid; never fails, the report says.
    pub async fn probe(&self) -> ProbeReport {
        probe::probe(self.config()).await
    }
}
