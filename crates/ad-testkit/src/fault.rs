//! Injected faults: what a flaky network, a slow DC or a corrupt attribute looks like to the
//! client. Faults change only what the server sends; the directory itself stays intact.

use std::time::Duration;

/// Close connections after they carried a number of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropAfter {
    /// Entries (search result entries, across all searches of the connection) sent before the
    /// server closes the TCP connection without a SearchResultDone.
    pub entries: u64,
    /// Apply to the first this-many connections accepted (1-based count since start), so a
    /// client that reconnects eventually succeeds. `u64::MAX`: every connection.
    pub first_connections: u64,
}

/// Replace the values of one attribute with malformed bytes in what the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformation {
    /// The attribute (case-insensitive), e.g. `objectSid`.
    pub attribute: String,
    /// The bytes sent instead of every value.
    pub value: Vec<u8>,
    /// Only for the entry with this DN (case-insensitive); `None`: every entry that has the
    /// attribute.
    pub dn: Option<String>,
}

impl Malformation {
    /// Any attribute, any bytes, every entry.
    pub fn new(attribute: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            attribute: attribute.into(),
            value: value.into(),
            dn: None,
        }
    }

    /// A 7-byte objectSid (a truncated header: revision 1, 5 sub-authorities, then nothing).
    pub fn truncated_sid() -> Self {
        Self::new("objectSid", vec![1u8, 5, 0, 0, 0, 0, 0])
    }

    /// A 15-byte objectGUID.
    pub fn short_guid() -> Self {
        Self::new("objectGUID", vec![0xab; 15])
    }

    /// A non-numeric userAccountControl.
    pub fn non_numeric_user_account_control() -> Self {
        Self::new("userAccountControl", b"not-a-number".to_vec())
    }

    /// A FILETIME attribute that is not a number (e.g. `lastLogonTimestamp`).
    pub fn garbage_filetime(attribute: &str) -> Self {
        Self::new(attribute, b"yesterday".to_vec())
    }

    /// Invalid UTF-8 in a text attribute (e.g. `displayName`).
    pub fn invalid_utf8(attribute: &str) -> Self {
        Self::new(attribute, vec![0xff, 0xfe, b'x'])
    }

    /// Restricts the malformation to one entry.
    #[must_use]
    pub fn for_dn(mut self, dn: impl Into<String>) -> Self {
        self.dn = Some(dn.into());
        self
    }
}

/// A result code a failing search answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    /// 51 busy.
    Busy,
    /// 52 unavailable.
    Unavailable,
    /// 53 unwillingToPerform.
    UnwillingToPerform,
    /// 3 timeLimitExceeded.
    TimeLimitExceeded,
    /// 11 adminLimitExceeded.
    AdminLimitExceeded,
    /// 1 operationsError.
    OperationsError,
    /// 4 sizeLimitExceeded.
    SizeLimitExceeded,
}

/// Fail searches with an error result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchFailure {
    /// The result code.
    pub code: FailureCode,
    /// How many searches (counted server-wide since start, rootDSE reads excluded) fail
    /// before searches succeed again.
    pub first_searches: u64,
}

/// What a faulty page of a paged search looks like (see [`PageFault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFaultKind {
    /// The page's entries, then success **without** the paged-results response control, as a
    /// server that ignores paging would answer: the client gets no cookie and cannot ask for
    /// the rest.
    OmitPagedControl,
    /// At most `entries` of the page's entries, then the search ends with `code` (and no
    /// paged-results control), as when a DC hits MaxResultSetSize or MaxQueryDuration part-way.
    EndWith {
        /// The result code the search ends with.
        code: FailureCode,
        /// Entries of the page sent before the error.
        entries: usize,
    },
}

/// Break paged searches part-way: the fault hits pages that **continue** a search (requests
/// carrying a paging cookie), never a first page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageFault {
    /// What the server does on such a page.
    pub kind: PageFaultKind,
    /// How many continuation pages (counted server-wide since start or the last
    /// [`crate::TestServer::set_faults`]) get the fault; later ones are answered normally.
    pub first_pages: u64,
    /// Only searches whose filter, rendered as RFC 4515 text, contains this text
    /// (case-insensitive), e.g. `objectCategory=person`; `None`: every paged search.
    pub filter_contains: Option<String>,
}

/// All fault options; the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultOptions {
    /// Close the connection after N entries, for the first K connections.
    pub drop_after: Option<DropAfter>,
    /// After a [`DropAfter`] drop, close every new connection at once, before reading
    /// anything, for this long: a DC rebooting (default zero: back at once).
    pub down_after_drop: Duration,
    /// Sleep before each entry sent (default zero).
    pub entry_delay: Duration,
    /// Sleep before each page (each search request answered, paged or not; default zero).
    pub page_delay: Duration,
    /// Malformed values sent instead of the stored ones.
    pub malformed: Vec<Malformation>,
    /// Fail the first searches with an error.
    pub search_failure: Option<SearchFailure>,
    /// End paged searches part-way (no paged-results control, or a limit error).
    pub page_fault: Option<PageFault>,
    /// Answer every read of a ranged attribute (`member;range=1500-*`, the follow-up reads
    /// of MaxValRange retrieval) with this error, so the entry cannot be read completely.
    pub range_failure: Option<FailureCode>,
    /// Announce ranged attributes as `member;range=0-18446744073709551615`: a bound past
    /// which no next index exists (a broken or hostile server).
    pub absurd_range: bool,
}
