//! What a cycle did ([`CycleReport`]) and why it failed ([`CycleError`]).

use serde::Serialize;

use crate::store::{StoreError, StoredCheckpoint};

/// What a cycle did. Returned by [`Engine::run_cycle`](crate::Engine::run_cycle) and
/// journaled (as JSON) in the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CycleReport {
    /// `full` or `delta`.
    pub mode: &'static str,
    /// Why it was full, when it was.
    pub full_reason: Option<String>,
    /// Users read.
    pub users: u64,
    /// Groups read.
    pub groups: u64,
    /// Users re-read because a time-based state (expiry, lockout end, password age) crossed a
    /// boundary since the previous cycle.
    pub time_driven: u64,
    /// Upserts delivered.
    pub upserts: u64,
    /// Deletes delivered.
    pub deletes: u64,
    /// Objects read but unchanged since last sent.
    pub unchanged: u64,
    /// Entries skipped, with reasons (`DN: reason`); each is re-read by the next cycle.
    pub skipped: Vec<String>,
    /// Records the platform refused (`DN: answer`); each is retried by the next cycle.
    pub quarantined: Vec<String>,
    /// Deletes held back by the delete guard (full sync).
    pub withheld_deletes: u64,
    /// Why the withheld deletes were held back, as a sentence.
    pub withheld_reason: Option<String>,
    /// Why this full sync sent no deletes at all because its read was incomplete.
    pub incomplete_read: Vec<String>,
    /// Why the checkpoint was kept where it was, when it was.
    pub checkpoint_held: Option<String>,
    /// Continuation references (referrals to other naming contexts or domains) not followed.
    pub referrals_ignored: u64,
    /// Attribute decode warnings (entries kept).
    pub decode_warnings: u64,
    /// Warnings from the source.
    pub source_warnings: Vec<String>,
    /// Changes the platform cannot represent (counted, not dropped silently).
    pub not_representable: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Wall time.
    pub duration_secs: f64,
    /// The checkpoint stored (or kept).
    pub checkpoint: Option<StoredCheckpoint>,
    /// The DC this cycle read from (`dnsHostName`).
    pub dc: Option<String>,
    /// DCs passed over before it (`url (address): why`), in the order tried.
    pub passed_over: Vec<String>,
    /// Full sync on another DC than the last cycle's: objects it did not return that are
    /// not proven deleted on this DC (no tombstone), so not deleted (they may not have
    /// replicated to it yet).
    pub deletes_unproven: u64,
    /// Delta with a scope narrower than the domain: tracked objects found outside it now
    /// (moved out of `base_dn`), deleted on the platform like any object out of scope.
    pub left_scope: u64,
}

impl CycleReport {
    /// True when the cycle needs a person's attention although it completed: deletes were
    /// withheld, the read was incomplete, or the checkpoint was held.
    pub fn needs_attention(&self) -> bool {
        self.withheld_deletes > 0
            || !self.incomplete_read.is_empty()
            || self.checkpoint_held.is_some()
    }

    /// The one-line summary printed and journaled after every cycle.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} sync: {} users, {} groups read; {} upserts, {} deletes sent, {} unchanged; {} skipped; {:.1}s",
            self.mode,
            self.users,
            self.groups,
            self.upserts,
            self.deletes,
            self.unchanged,
            self.skipped.len(),
            self.duration_secs
        );
        if self.left_scope > 0 {
            line.push_str(&format!(
                "; {} objects moved out of the scope (base_dn) and were deleted on the platform",
                self.left_scope
            ));
        }
        if self.time_driven > 0 {
            line.push_str(&format!(
                "; {} accounts re-read for expiry/lockout/password age",
                self.time_driven
            ));
        }
        if !self.quarantined.is_empty() {
            line.push_str(&format!(
                "; {} records refused by the platform and quarantined (retried next cycle)",
                self.quarantined.len()
            ));
        }
        if self.not_representable > 0 {
            line.push_str(&format!(
                "; {} changes not representable by the sink",
                self.not_representable
            ));
        }
        if self.decode_warnings > 0 {
            line.push_str(&format!("; {} attribute warnings", self.decode_warnings));
        }
        if !self.skipped.is_empty() {
            let first: Vec<&str> = self.skipped.iter().take(3).map(String::as_str).collect();
            line.push_str(&format!(" (skipped: {})", first.join("; ")));
        }
        if let Some(reason) = &self.withheld_reason {
            line.push_str(&format!("; {reason}"));
        }
        if !self.incomplete_read.is_empty() {
            line.push_str(&format!(
                "; no deletes sent because the read was incomplete: {}",
                self.incomplete_read.join("; ")
            ));
        }
        if let Some(reason) = &self.checkpoint_held {
            line.push_str(&format!("; {reason}"));
        }
        if !self.passed_over.is_empty() {
            line.push_str(&format!(
                "; read from {} after passing over {}",
                self.dc.as_deref().unwrap_or("another DC"),
                self.passed_over.join("; ")
            ));
        }
        if self.deletes_unproven > 0 {
            line.push_str(&format!(
                "; {} objects this full sync did not read were not deleted: they are not deleted on {} (no tombstone), only missing there, perhaps not replicated yet; a later full sync decides",
                self.deletes_unproven,
                self.dc.as_deref().unwrap_or("this DC"),
            ));
        }
        line
    }
}

/// Why a cycle failed. Batches already acknowledged stay recorded; the checkpoint did not
/// move, so the next cycle reads the same changes again.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Reading the directory failed.
    #[error("reading the directory failed: {0}")]
    Source(#[from] ad_source::SourceError),
    /// The sink refused or could not be reached.
    #[error(
        "delivery failed, the checkpoint was not advanced and the changes will be sent again next cycle: {0}"
    )]
    Sink(#[from] asset_sink::SinkError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The platform refused every record it was sent, record by record.
    #[error(
        "the platform refused every one of the {refused} records sent in this cycle (the first answer: {first}); that is a wrong URL, connector or profile, not bad records: nothing was quarantined and the checkpoint was not advanced"
    )]
    EverythingRefused {
        /// How many records were refused.
        refused: u64,
        /// The platform's first answer.
        first: String,
    },
    /// Shutdown was requested.
    #[error("stopped on request before the cycle finished; the checkpoint was not advanced")]
    Interrupted,
}
