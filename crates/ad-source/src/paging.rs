//! Streaming paged search (RFC 2696) that survives dropped connections.
//!
//! Each page is one search request carrying the paged-results control and the previous
//! page's cookie; entries are handed to the caller one at a time as they arrive, so memory is
//! bounded by one page of ldap3's receive buffer, not by the directory.
//!
//! The paging loop is ours rather than ldap3's `PagedResults` adapter for two reasons: the
//! adapter parses the response cookie with a parser that panics on malformed BER (we parse
//! it with [`crate::ber::paged_cookie`]), and it hides the page boundary we need to count
//! pages. Continuation references are counted and dropped here, which is what ldap3's
//! `EntriesOnly` adapter would do.
//!
//! # Reconnects without duplicates
//!
//! A paging cookie is only valid on the connection that received it (AD, Samba, the
//! testkit), so after a drop the search restarts from the first page on a new connection to
//! the same DC. Entries already handed out are recognised by a 64-bit fingerprint of their
//! `objectGUID` and not emitted again; entries not seen before are emitted, whatever order the
//! server uses the second time. The fingerprints cost 8 bytes per entry of the running
//! search (8 MB per million entries) and are only kept when `max_reconnect_secs > 0`. A restart
//! that throws away part of a read is counted (`searches_restarted`).
//!
//! # Incomplete reads are counted, never silent
//!
//! - A page answered **without the paged-results response control** gives no cookie to
//!   continue with: the search ends there (`pages_without_paged_control`); entries may be
//!   missing.
//! - A search that ends with **sizeLimitExceeded (4), timeLimitExceeded (3) or
//!   adminLimitExceeded (11)** keeps the entries returned until then and ends
//!   (`limit_exceeded`), rather than failing the whole run; entries may be missing.
//! - Any other error result fails the read ([`SourceError::Search`]).
//!
//! Each occurrence is logged with `tracing::warn`; [`crate::Counters::truncated`] says
//! whether entries may be missing.

use std::hash::{DefaultHasher, Hash, Hasher};

use ad_model::RawEntry;
use ldap3::controls::RawControl;

use crate::backoff::Backoff;
use crate::ber::{self, MalformedEntry};
use crate::connection::op_error;
use crate::error::{SourceError, search_reason};
use crate::root_dse::{PAGED_RESULTS_OID, SHOW_DELETED_OID};
use crate::session::Session;

/// What one paged search looks for.
#[derive(Debug, Clone)]
pub(crate) struct SearchSpec {
    pub(crate) base: String,
    pub(crate) scope: ldap3::Scope,
    pub(crate) filter: String,
    pub(crate) attrs: Vec<String>,
    /// Add the Show Deleted control (tombstones).
    pub(crate) show_deleted: bool,
    /// What is being read, for messages ("users").
    pub(crate) what: &'static str,
}

/// One search result.
#[derive(Debug)]
pub(crate) enum Item {
    /// A well-formed entry.
    Entry(RawEntry),
    /// An entry whose BER could not be read.
    Malformed(MalformedEntry),
}

/// The paged-results request control.
pub(crate) fn paged_control(size: u32, cookie: &[u8]) -> RawControl {
    let size = i32::try_from(size).unwrap_or(i32::MAX);
    let mut control: RawControl = ldap3::controls::PagedResults {
        size,
        cookie: cookie.to_vec(),
    }
    .into();
    control.ctype = PAGED_RESULTS_OID.to_owned();
    control
}

/// The Show Deleted control: critical, no value.
pub(crate) fn show_deleted_control() -> RawControl {
    RawControl {
        ctype: SHOW_DELETED_OID.to_owned(),
        crit: true,
        val: None,
    }
}

/// A 64-bit fingerprint: from `objectGUID` (random, so folding is enough), else the DN.
pub(crate) fn fingerprint(item: &Item) -> u64 {
    let (guid, dn) = match item {
        Item::Entry(entry) => (entry.first("objectGUID"), entry.dn()),
        Item::Malformed(m) => (None, m.dn.as_str()),
    };
    match guid {
        Some(g) if g.len() == 16 => {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&g[..8]);
            b.copy_from_slice(&g[8..]);
            u64::from_le_bytes(a) ^ u64::from_le_bytes(b).rotate_left(29)
        }
        _ => {
            let mut h = DefaultHasher::new();
            dn.to_ascii_lowercase().hash(&mut h);
            h.finish()
        }
    }
}

#[derive(Debug, Default)]
struct Dedupe {
    enabled: bool,
    seen: Vec<u64>,
    sorted: usize,
}

impl Dedupe {
    fn is_replay(&self, fp: u64) -> bool {
        self.sorted > 0 && self.seen[..self.sorted].binary_search(&fp).is_ok()
    }
    fn record(&mut self, fp: u64) {
        if self.enabled {
            self.seen.push(fp);
        }
    }
    fn restart(&mut self) {
        self.seen.sort_unstable();
        self.seen.dedup();
        self.sorted = self.seen.len();
    }
}

/// A paged search read one entry at a time: `while let Some(item) = reader.next(session)`.
///
/// Transient failures (dropped connection, timeout, busy DC) reconnect the session (bounded
/// by `max_reconnect_secs` without a new entry, with backoff) and restart
/// the search from its first page; entries already returned are not returned again.
#[derive(Debug)]
pub(crate) struct PagedReader {
    spec: SearchSpec,
    operation: String,
    stream: Option<ldap3::SearchStream<'static, String, Vec<String>>>,
    cookie: Vec<u8>,
    done: bool,
    dedupe: Dedupe,
    /// The current streak of reconnects (reset when an entry arrives).
    backoff: Backoff,
    /// Something of this search was read since it (re)started: a restart now loses work.
    progressed: bool,
    /// The session's reconnect count when `cookie` was received: a cookie is valid only on
    /// the connection that gave it, and another read on the same session (a group look-up
    /// between two pages) may have replaced that connection.
    cookie_connection: u64,
}

impl PagedReader {
    pub(crate) fn new(session: &Session, spec: SearchSpec) -> Self {
        let operation = format!("the read of {} under {}", spec.what, spec.base);
        PagedReader {
            spec,
            operation,
            stream: None,
            cookie: Vec::new(),
            done: false,
            dedupe: Dedupe {
                enabled: session.config.max_reconnect_secs > 0,
                ..Dedupe::default()
            },
            backoff: Backoff::new(),
            progressed: false,
            cookie_connection: 0,
        }
    }

    /// The next entry, `None` at the end.
    pub(crate) async fn next(
        &mut self,
        session: &mut Session,
    ) -> Result<Option<Item>, SourceError> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.step(session).await {
                Ok(Some(item)) => {
                    let fp = fingerprint(&item);
                    if self.dedupe.is_replay(fp) {
                        session.counters.duplicates_suppressed += 1;
                        continue;
                    }
                    self.dedupe.record(fp);
                    self.backoff.reset();
                    self.progressed = true;
                    return Ok(Some(item));
                }
                Ok(None) => continue,
                Err(e) if e.is_transient() => {
                    if let Some(mut stream) = self.stream.take() {
                        let _ = stream.finish().await;
                    }
                    session
                        .reconnect(&self.operation, e, &mut self.backoff)
                        .await?;
                    self.cookie.clear();
                    self.dedupe.restart();
                    if self.progressed {
                        session.counters.searches_restarted += 1;
                        tracing::warn!(
                            host = %session.conn.host(), base = %self.spec.base,
                            filter = %self.spec.filter,
                            "{} restarts from its first page after a reconnect; entries already returned are not returned again",
                            self.operation
                        );
                    }
                    self.progressed = false;
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    /// One item, or `None` after a page ended (the next call starts the next page).
    async fn step(&mut self, session: &mut Session) -> Result<Option<Item>, SourceError> {
        let host = session.conn.host().to_owned();
        let timeout = session.conn.op_timeout;
        if self.stream.is_none() {
            if !self.cookie.is_empty() && self.cookie_connection != session.counters.reconnects {
                // The connection this cookie belongs to was replaced under this search (by
                // another read's reconnect): start again from the first page, as after a
                // reconnect of its own.
                self.cookie.clear();
                self.dedupe.restart();
                session.counters.searches_restarted += 1;
                tracing::warn!(
                    host = %session.conn.host(), base = %self.spec.base,
                    filter = %self.spec.filter,
                    "{} restarts from its first page: its connection was replaced by another read's reconnect",
                    self.operation
                );
                self.progressed = false;
            }
            let mut controls = vec![paged_control(session.page_size, &self.cookie)];
            if self.spec.show_deleted {
                controls.push(show_deleted_control());
            }
            let mut ldap = session.conn.op();
            ldap.with_controls(controls);
            let stream = ldap
                .streaming_search(
                    &self.spec.base,
                    self.spec.scope,
                    &self.spec.filter,
                    self.spec.attrs.clone(),
                )
                .await
                .map_err(|e| op_error(e, &host, &self.operation, timeout))?;
            session.counters.pages += 1;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        loop {
            match stream.next().await {
                Ok(Some(next)) => {
                    if next.is_ref() {
                        session.counters.referrals_ignored += 1;
                        continue;
                    }
                    if next.is_intermediate() {
                        continue;
                    }
                    return Ok(Some(match ber::entry_from_tag(next.0) {
                        Ok(entry) => Item::Entry(entry),
                        Err(malformed) => Item::Malformed(malformed),
                    }));
                }
                Ok(None) => break,
                Err(e) => return Err(op_error(e, &host, &self.operation, timeout)),
            }
        }
        let result = stream.finish().await;
        self.stream = None;
        if matches!(result.rc, 3 | 4 | 11) {
            // A server limit: keep what was returned, end this search, count it.
            session.counters.limit_exceeded += 1;
            self.done = true;
            tracing::warn!(
                %host, base = %self.spec.base, filter = %self.spec.filter,
                result_code = result.rc,
                "{} ended early ({}); the entries returned so far are kept and entries may be missing",
                self.operation,
                search_reason(result.rc, &result.text)
            );
            return Ok(None);
        }
        if result.rc != 0 {
            return Err(SourceError::Search {
                host,
                base: self.spec.base.clone(),
                filter: self.spec.filter.clone(),
                result_code: result.rc,
                reason: search_reason(result.rc, &result.text),
            });
        }
        let cookie = result
            .ctrls
            .iter()
            .find(|c| c.1.ctype == PAGED_RESULTS_OID)
            .and_then(|c| c.1.val.as_deref())
            .map(ber::paged_cookie);
        match cookie {
            // No paged-results response: no cookie to continue with, so the search ends here.
            // A server ignoring paging may have sent everything, or only what it wanted to.
            None => {
                session.counters.pages_without_paged_control += 1;
                self.done = true;
                tracing::warn!(
                    %host, base = %self.spec.base, filter = %self.spec.filter,
                    "{} got a page without the paged-results response control; the search ends here and entries may be missing",
                    self.operation
                );
            }
            Some(None) => {
                return Err(SourceError::Search {
                    host,
                    base: self.spec.base.clone(),
                    filter: self.spec.filter.clone(),
                    result_code: 2,
                    reason: "the server's paged-results response control is malformed; the read cannot continue past this page".to_owned(),
                });
            }
            Some(Some(c)) if c.is_empty() => self.done = true,
            Some(Some(c)) => {
                self.cookie = c;
                self.cookie_connection = session.counters.reconnects;
                self.progressed = true;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_only_after_restart() {
        let mut d = Dedupe {
            enabled: true,
            ..Dedupe::default()
        };
        d.record(5);
        d.record(3);
        assert!(!d.is_replay(5));
        d.restart();
        assert!(d.is_replay(5) && d.is_replay(3) && !d.is_replay(4));
        d.record(4);
        d.restart();
        assert!(d.is_replay(4));
    }

    #[test]
    fn fingerprints_use_the_guid() {
        let a = Item::Entry(RawEntry::new("CN=a").with("objectGUID", [vec![1u8; 16]]));
        let b = Item::Entry(RawEntry::new("CN=renamed").with("objectGUID", [vec![1u8; 16]]));
        let c = Item::Entry(RawEntry::new("CN=a"));
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }

    #[test]
    fn controls_have_the_right_oids() {
        let c = show_deleted_control();
        assert_eq!(c.ctype, "1.2.840.113556.1.4.417");
        assert!(c.crit && c.val.is_none());
        let p = paged_control(1000, b"");
        assert_eq!(p.ctype, "1.2.840.113556.1.4.319");
        // SEQUENCE { INTEGER 1000, OCTET STRING "" }
        assert_eq!(
            p.val.as_deref(),
            Some(&[0x30, 0x06, 0x02, 0x02, 0x03, 0xe8, 0x04, 0x00][..])
        );
    }
}
