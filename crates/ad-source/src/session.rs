//! A session: one bound connection to one pinned DC, reconnected with bounded backoff.

use std::sync::Arc;

use ad_model::Guid;
use chrono::{DateTime, Utc};

use crate::backoff::Backoff;
use crate::config::SourceConfig;
use crate::connection::{self, Connection};
use crate::error::SourceError;
use crate::root_dse::{self, RootDse};

/// Counters of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// User events emitted.
    pub users: u64,
    /// Group events emitted.
    pub groups: u64,
    /// Delete events emitted.
    pub deleted: u64,
    /// Entries skipped (malformed, undecodable): each also produced a `Skipped` event.
    pub skipped: u64,
    /// Attribute-level decode warnings (fields left empty).
    pub decode_warnings: u64,
    /// Continuation references (referrals) received and ignored: objects in the naming
    /// contexts or domains they point to were not read.
    pub referrals_ignored: u64,
    /// Result pages answered without the paged-results response control. The search cannot
    /// continue past such a page, so it ended there and **entries may be missing**.
    pub pages_without_paged_control: u64,
    /// Searches that ended with sizeLimitExceeded (4), timeLimitExceeded (3) or
    /// adminLimitExceeded (11): the entries returned until then were kept, the search ended,
    /// and **entries may be missing**.
    pub limit_exceeded: u64,
    /// Searches restarted from their first page after a reconnect, having already read part
    /// of the result (entries already returned were not returned again).
    pub searches_restarted: u64,
    /// Result pages read.
    pub pages: u64,
    /// Reconnects after a dropped connection or a busy DC.
    pub reconnects: u64,
    /// Entries received again after a restarted search and not re-emitted.
    pub duplicates_suppressed: u64,
    /// Follow-up reads for ranged attributes (`member;range=…`).
    pub range_fetches: u64,
    /// Extra reads to resolve groups outside the group index (by DN or primary group RID).
    pub group_lookups: u64,
}

impl Counters {
    /// Add another connection's counts of the same run (a read on several connections).
    pub fn absorb(&mut self, other: &Counters) {
        let Counters {
            users,
            groups,
            deleted,
            skipped,
            decode_warnings,
            referrals_ignored,
            pages_without_paged_control,
            limit_exceeded,
            searches_restarted,
            pages,
            reconnects,
            duplicates_suppressed,
            range_fetches,
            group_lookups,
        } = *other;
        self.users += users;
        self.groups += groups;
        self.deleted += deleted;
        self.skipped += skipped;
        self.decode_warnings += decode_warnings;
        self.referrals_ignored += referrals_ignored;
        self.pages_without_paged_control += pages_without_paged_control;
        self.limit_exceeded += limit_exceeded;
        self.searches_restarted += searches_restarted;
        self.pages += pages;
        self.reconnects += reconnects;
        self.duplicates_suppressed += duplicates_suppressed;
        self.range_fetches += range_fetches;
        self.group_lookups += group_lookups;
    }

    /// Whether entries may be missing from the read: a page came back without the
    /// paged-results response control, or a search ended with a limit error.
    pub fn truncated(&self) -> bool {
        self.pages_without_paged_control > 0 || self.limit_exceeded > 0
    }

    /// One plain sentence per nonzero counter among `pages_without_paged_control`,
    /// `limit_exceeded`, `searches_restarted` and `referrals_ignored`.
    pub fn incomplete_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        let n = self.pages_without_paged_control;
        if n > 0 {
            out.push(format!(
                "{n} {} answered without the paged-results response control, so the {} ended there: entries may be missing",
                plural(n, "result page was", "result pages were"),
                plural(n, "search", "searches"),
            ));
        }
        let n = self.limit_exceeded;
        if n > 0 {
            out.push(format!(
                "{n} {} with sizeLimitExceeded/timeLimitExceeded/adminLimitExceeded: entries may be missing",
                plural(n, "search ended", "searches ended"),
            ));
        }
        let n = self.searches_restarted;
        if n > 0 {
            out.push(format!(
                "{n} {} from the first page after a reconnect; entries already read were not repeated",
                plural(n, "search restarted", "searches restarted"),
            ));
        }
        let n = self.referrals_ignored;
        if n > 0 {
            out.push(format!(
                "{n} {} not followed: objects in the naming contexts or domains they point to were not read",
                plural(n, "referral was", "referrals were"),
            ));
        }
        out
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// One bound connection plus what is needed to replace it.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) config: Arc<SourceConfig>,
    pub(crate) conn: Connection,
    /// The DC identity every reconnect must find again.
    pub(crate) pin: (String, Guid),
    /// The rootDSE read at the start.
    pub(crate) root: RootDse,
    /// Page size actually used (configured, capped by the server's MaxPageSize).
    pub(crate) page_size: u32,
    pub(crate) counters: Counters,
}

impl Session {
    /// Connect, bind and read the rootDSE.
    /// Connect, bind and read the rootDSE, in a task of its own: ldap3 parses some replies
    /// (bind, StartTLS, search results) in the caller's task and panics on malformed ones; a
    /// panic there becomes [`SourceError::Malformed`] instead of unwinding into the caller.
    pub(crate) async fn open(config: Arc<SourceConfig>) -> Result<Session, SourceError> {
        let host = config.endpoint().map(|e| e.host).unwrap_or_default();
        isolated(
            host,
            "the connection, bind or rootDSE read",
            Self::open_here(config),
        )
        .await
    }

    async fn open_here(config: Arc<SourceConfig>) -> Result<Session, SourceError> {
        // A DC that is busy or drops the first connection gets the same bounded retries as a
        // drop mid-read; a refused or unreachable port, DNS, TLS and bind errors fail at once.
        let mut backoff = Backoff::new();
        let (conn, root) = loop {
            let opened = async {
                let conn = connection::connect(&config).await?;
                let root = root_dse::read(&conn).await?;
                Ok::<_, SourceError>((conn, root))
            }
            .await;
            match opened {
                Ok(pair) => break pair,
                Err(e)
                    if e.is_transient()
                        && !matches!(
                            e,
                            SourceError::ConnectionRefused { .. }
                                | SourceError::ConnectTimeout { .. }
                        ) =>
                {
                    let Ok(delay) = backoff.next_delay(&config) else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, attempt = backoff.attempts(), "retrying the first connection");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        };
        let page_size = effective_page_size(config.page_size, root.max_page_size);
        Ok(Session {
            pin: (root.dns_host_name.clone(), root.invocation_id),
            root,
            page_size,
            config,
            conn,
            counters: Counters {
                reconnects: u64::from(backoff.attempts()),
                ..Counters::default()
            },
        })
    }

    /// The domain root (defaultNamingContext).
    pub(crate) fn domain_dn(&self) -> &str {
        &self.root.default_naming_context
    }

    /// The instant account state is judged at: the DC's `currentTime` from the rootDSE read
    /// when this session was opened or taken up again, or `clock` when the DC gave none. The
    /// DC computes lockout and password expiry on its own clock; judging expiry and taking
    /// time windows on the same clock means no host/DC skew can hide a change.
    pub(crate) fn now_or(&self, clock: DateTime<Utc>) -> DateTime<Utc> {
        self.root.current_time.unwrap_or(clock)
    }

    /// Where users and groups are searched.
    pub(crate) fn base_dn(&self) -> String {
        self.config
            .base_dn
            .clone()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| self.root.default_naming_context.clone())
    }

    /// Replace the connection after `last` (a transient error), waiting and retrying within
    /// the time budget of `backoff` (one streak of failures, reset by the caller when entries
    /// flow again). Fails with [`SourceError::ReconnectsExhausted`] once the budget is spent.
    pub(crate) async fn reconnect(
        &mut self,
        operation: &str,
        last: SourceError,
        backoff: &mut Backoff,
    ) -> Result<(), SourceError> {
        let mut last = last;
        loop {
            let delay = match backoff.next_delay(&self.config) {
                Ok(delay) => delay,
                Err(gave_up) => {
                    return Err(SourceError::ReconnectsExhausted {
                        host: self.conn.host().to_owned(),
                        attempts: gave_up.attempts,
                        elapsed_secs: gave_up.elapsed_secs,
                        operation: operation.to_owned(),
                        last: last.to_string(),
                    });
                }
            };
            tracing::warn!(
                host = %self.conn.host(), attempt = backoff.attempts(),
                budget_secs = self.config.max_reconnect_secs,
                delay_ms = delay.as_millis() as u64,
                error = %last, "reconnecting during {operation}"
            );
            tokio::time::sleep(delay).await;
            self.counters.reconnects += 1;
            match self.try_reconnect().await {
                Ok(()) => return Ok(()),
                Err(e @ SourceError::DcChanged { .. }) => return Err(e),
                Err(e) if e.is_transient() => last = e,
                Err(e) => return Err(e),
            }
        }
    }

    /// [`read_one`](crate::root_dse::read_one) that reconnects on transient failures.
    pub(crate) async fn read_one_retrying(
        &mut self,
        dn: &str,
        scope: ldap3::Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Option<ad_model::RawEntry>, SourceError> {
        let mut backoff = Backoff::new();
        loop {
            match root_dse::read_one(&self.conn, dn, scope, filter, attrs).await {
                Ok(found) => return Ok(found),
                Err(e) if e.is_transient() => {
                    self.reconnect(&format!("the read of {dn}"), e, &mut backoff)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_reconnect(&mut self) -> Result<(), SourceError> {
        let conn = connection::connect(&self.config).await?;
        let root = root_dse::read(&conn).await?;
        if !root.dns_host_name.eq_ignore_ascii_case(&self.pin.0) || root.invocation_id != self.pin.1
        {
            return Err(SourceError::DcChanged {
                url: self.config.current_url().to_owned(),
                expected: format!("{} (invocationId {})", self.pin.0, self.pin.1),
                found: format!(
                    "{} (invocationId {})",
                    root.dns_host_name, root.invocation_id
                ),
            });
        }
        let old = std::mem::replace(&mut self.conn, conn);
        drop(old);
        Ok(())
    }
}

/// The session a [`Source`](crate::Source) keeps open between the reads of one cycle: the DC
/// was pinned with a connection, TLS handshake, bind and rootDSE read, and the cycle's next
/// read (the full or delta run, then the group re-checks, object re-reads and tombstone
/// lookups that follow it) takes that session instead of connecting again. A read gives
/// its session back only when it succeeded; a failed one closes it. Clones share the slot.
#[derive(Clone, Default)]
pub(crate) struct Parked(Arc<std::sync::Mutex<Option<Session>>>);

impl Parked {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        // A poisoned lock only means a panic while holding it; the Option is still sound.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self) -> Option<Session> {
        self.slot().take()
    }

    /// Keep `session` for the next read; a session kept before is closed.
    pub(crate) async fn put(&self, session: Session) {
        let replaced = self.slot().replace(session);
        if let Some(old) = replaced {
            old.conn.clone().close().await;
        }
    }

    /// After a read on `session`: keep it when the read `succeeded`, close it when it failed
    /// (the connection may be in any state).
    pub(crate) async fn settle(&self, session: Session, succeeded: bool) {
        if succeeded {
            self.put(session).await;
        } else {
            session.conn.clone().close().await;
        }
    }

    /// Close the kept session, if any (unbind).
    pub(crate) async fn close(&self) {
        let kept = self.take();
        if let Some(session) = kept {
            session.conn.clone().close().await;
        }
    }
}

impl Session {
    /// The session for the next read: the kept one when it still answers on the same DC
    /// (its rootDSE read again, so a run's highestCommittedUSN is read at the run's start,
    /// as with a new connection; counters start from zero), otherwise a new one.
    pub(crate) async fn reuse_or_open(
        config: Arc<SourceConfig>,
        parked: &Parked,
    ) -> Result<Session, SourceError> {
        if let Some(kept) = parked.take() {
            let host = kept.conn.host().to_owned();
            let refreshed = isolated(host, "the rootDSE read", async move {
                let root = root_dse::read(&kept.conn).await;
                Ok((kept, root))
            })
            .await;
            match refreshed {
                Ok((mut kept, Ok(root)))
                    if root.dns_host_name.eq_ignore_ascii_case(&kept.pin.0)
                        && root.invocation_id == kept.pin.1 =>
                {
                    kept.page_size = effective_page_size(kept.config.page_size, root.max_page_size);
                    kept.root = root;
                    kept.counters = Counters::default();
                    return Ok(kept);
                }
                Ok((kept, Ok(_))) => {
                    // Another DC or a restored database behind the same connection: start
                    // over, as a new connection would (the caller compares identities).
                    kept.conn.clone().close().await;
                }
                Ok((_, Err(e))) | Err(e) => {
                    tracing::debug!(error = %e, "the session kept from the last read no longer answers; connecting again");
                }
            }
        }
        Session::open(config).await
    }
}

/// The configured page size, never above the server's limit (AD default 1000 when unknown).
pub(crate) fn effective_page_size(configured: u32, server_max: Option<u32>) -> u32 {
    let limit = server_max
        .filter(|m| *m > 0)
        .unwrap_or(crate::config::DEFAULT_PAGE_SIZE);
    configured.clamp(1, limit)
}

/// Run `work` in its own task; a panic in it (ldap3 parsing a malformed reply) becomes
/// [`SourceError::Malformed`].
pub(crate) async fn isolated<T: Send + 'static>(
    host: String,
    during: &'static str,
    work: impl std::future::Future<Output = Result<T, SourceError>> + Send + 'static,
) -> Result<T, SourceError> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(SourceError::Malformed { host, during }),
        Err(_) => Err(SourceError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_reads_are_sentences() {
        let clean = Counters {
            users: 5,
            pages: 2,
            ..Counters::default()
        };
        assert!(!clean.truncated());
        assert!(clean.incomplete_reasons().is_empty());
        let limited = Counters {
            limit_exceeded: 3,
            ..Counters::default()
        };
        assert!(limited.truncated());
        assert_eq!(
            limited.incomplete_reasons(),
            vec![
                "3 searches ended with sizeLimitExceeded/timeLimitExceeded/adminLimitExceeded: entries may be missing"
            ]
        );
        let all = Counters {
            pages_without_paged_control: 1,
            limit_exceeded: 1,
            searches_restarted: 2,
            referrals_ignored: 3,
            ..Counters::default()
        };
        let reasons = all.incomplete_reasons();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(
            reasons[0].starts_with("1 result page was answered without"),
            "{}",
            reasons[0]
        );
        assert!(
            reasons[1].starts_with("1 search ended with"),
            "{}",
            reasons[1]
        );
        assert!(
            reasons[2].starts_with("2 searches restarted"),
            "{}",
            reasons[2]
        );
        assert!(
            reasons[3].starts_with("3 referrals were not followed"),
            "{}",
            reasons[3]
        );
        let restarted = Counters {
            searches_restarted: 1,
            referrals_ignored: 1,
            ..Counters::default()
        };
        assert!(!restarted.truncated());
        assert_eq!(restarted.incomplete_reasons().len(), 2);
    }

    #[test]
    fn page_size_is_capped() {
        assert_eq!(effective_page_size(1000, None), 1000);
        assert_eq!(effective_page_size(5000, None), 1000);
        assert_eq!(effective_page_size(5000, Some(2000)), 2000);
        assert_eq!(effective_page_size(200, Some(1000)), 200);
        assert_eq!(effective_page_size(0, Some(0)), 1);
    }
}
