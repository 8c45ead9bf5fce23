//! Counters and a search log that tests read to check what a client actually did.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many search records the log keeps (oldest dropped first).
const LOG_CAPACITY: usize = 10_000;

/// A snapshot of the server's counters since start (or the last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Bind requests answered.
    pub binds: u64,
    /// Bind requests refused (any non-success).
    pub bind_failures: u64,
    /// Search requests received (each page of a paged search counts; rootDSE reads too).
    pub searches: u64,
    /// Search result entries sent.
    pub entries_sent: u64,
    /// Continuation references sent.
    pub references_sent: u64,
    /// Searches answered with sizeLimitExceeded.
    pub size_limit_exceeded: u64,
    /// Connections closed by the drop-after-N fault.
    pub dropped_connections: u64,
    /// Connections closed at once because the server was "down" after a drop.
    pub closed_while_down: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) binds: AtomicU64,
    pub(crate) bind_failures: AtomicU64,
    pub(crate) searches: AtomicU64,
    pub(crate) entries_sent: AtomicU64,
    pub(crate) references_sent: AtomicU64,
    pub(crate) size_limit_exceeded: AtomicU64,
    pub(crate) dropped_connections: AtomicU64,
    pub(crate) closed_while_down: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            connections: get(&self.connections),
            binds: get(&self.binds),
            bind_failures: get(&self.bind_failures),
            searches: get(&self.searches),
            entries_sent: get(&self.entries_sent),
            references_sent: get(&self.references_sent),
            size_limit_exceeded: get(&self.size_limit_exceeded),
            dropped_connections: get(&self.dropped_connections),
            closed_while_down: get(&self.closed_while_down),
        }
    }

    pub(crate) fn reset(&self) {
        for c in [
            &self.connections,
            &self.binds,
            &self.bind_failures,
            &self.searches,
            &self.entries_sent,
            &self.references_sent,
            &self.size_limit_exceeded,
            &self.dropped_connections,
            &self.closed_while_down,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// One search request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRecord {
    /// Connection number (1-based, in accept order).
    pub connection: u64,
    /// Base DN as sent.
    pub base: String,
    /// `base`, `one`, `sub` or `children`.
    pub scope: &'static str,
    /// The filter, rendered as RFC 4515 text.
    pub filter: String,
    /// Requested attributes as sent.
    pub attributes: Vec<String>,
    /// Page size of the Simple Paged Results control, when present.
    pub page_size: Option<i64>,
    /// Whether a non-empty paging cookie came with it.
    pub has_cookie: bool,
    /// Whether the Show Deleted control came with it.
    pub show_deleted: bool,
    /// The DN the connection was bound as (`None`: anonymous).
    pub bound_as: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct SearchLog {
    records: Mutex<VecDeque<SearchRecord>>,
}

impl SearchLog {
    pub(crate) fn push(&self, record: SearchRecord) {
        let mut log = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(record);
    }

    pub(crate) fn snapshot(&self) -> Vec<SearchRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
