//! A full read on several connections at once: the groups, and the users cut into slices of
//! `uSNCreated`.
//!
//! Why `uSNCreated`: it is the USN the DC gave the object when it was created (or first
//! replicated in) and it never changes afterwards, so every object falls in exactly one slice
//! however it is modified, renamed or moved during the read — no object is read twice and none
//! falls between two slices, which a mutable key (an OU, a name range, `uSNChanged`) cannot
//! promise. It is indexed on AD (`searchFlags: fATTINDEX`), so a slice costs the DC what its
//! entries cost, not a scan. The slices cover `0..=highestCommittedUSN` in equal widths and the
//! last one is open-ended, so objects created while the read runs are read as a single search
//! would read them. One more search reads the users whose `uSNCreated` the account cannot see
//! (`(!(uSNCreated=*))`: an account granted property sets instead of "Read all properties" may
//! not read it, and a filter treats an unreadable attribute as absent, so no slice matches
//! them); the slices and that search together cover every user one search would return. There
//! are more slices than connections ([`SLICES_PER_CONNECTION`]) and each
//! connection takes the next slice when it finishes one, so a directory whose objects bunch in
//! a few USN ranges still keeps every connection busy.
//!
//! Every connection is opened to the pinned DC and must show the same DC identity (DNS name
//! and invocationId) as the run's own; one that cannot be opened or leads elsewhere is left out
//! with a warning and the read goes on with fewer. Any failed slice fails the run, like a
//! failed page of a single search: the engine then sends no deletion and keeps its checkpoint.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::MAX_READ_CONNECTIONS;
use crate::error::SourceError;
use crate::membership::GroupIndex;
use crate::session::Session;
use crate::sync::{Emitter, SourceEvent, read_groups, read_users};

/// Slices per connection: enough that uneven slices even out, few enough that the searches'
/// own cost stays small.
pub const SLICES_PER_CONNECTION: usize = 8;

/// A range of `uSNCreated`, both ends included; `to: None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsnSlice {
    /// Lowest uSNCreated in the slice.
    pub from: u64,
    /// Highest uSNCreated in the slice, or none for the last one.
    pub to: Option<u64>,
}

impl UsnSlice {
    /// `filter` restricted to this slice.
    pub fn filter(&self, filter: &str) -> String {
        match self.to {
            Some(to) => format!("(&{filter}(uSNCreated>={})(uSNCreated<={to}))", self.from),
            None => format!("(&{filter}(uSNCreated>={}))", self.from),
        }
    }
}

/// `filter` restricted to entries whose `uSNCreated` the account cannot see: the complement
/// of every slice together (a presence test is false for an attribute that is absent or not
/// readable, never undefined, so its negation is true for them).
pub fn without_usn_filter(filter: &str) -> String {
    format!("(&{filter}(!(uSNCreated=*)))")
}

/// `count` slices (at least one) covering every uSNCreated: equal widths over
/// `0..=ceiling`, the last one open-ended.
pub fn usn_slices(ceiling: u64, count: usize) -> Vec<UsnSlice> {
    let count = u64::try_from(count.max(1)).unwrap_or(u64::MAX);
    let width = (ceiling / count).max(1);
    let mut slices = Vec::new();
    let mut from = 0u64;
    for i in 0..count {
        if i + 1 == count {
            slices.push(UsnSlice { from, to: None });
            break;
        }
        let to = from.saturating_add(width - 1);
        slices.push(UsnSlice { from, to: Some(to) });
        from = to + 1;
        if from > ceiling {
            slices.push(UsnSlice { from, to: None });
            break;
        }
    }
    slices
}

/// One piece of work of a full read.
#[derive(Debug, Clone, Copy)]
enum Job {
    Groups,
    Users(UsnSlice),
    UsersWithoutUsn,
}

/// Read the groups and the users of a full snapshot on up to `config.read_connections`
/// connections (the run's own `session` and more opened to the same DC). Events go to `tx` as
/// each connection reads them; `index` gains what any connection looked up outside the scope,
/// and `session`'s counters the others' counts.
pub(crate) async fn read_full(
    session: &mut Session,
    index: &mut GroupIndex,
    now: DateTime<Utc>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let wanted = session
        .config
        .read_connections
        .clamp(1, MAX_READ_CONNECTIONS) as usize;
    // Opened together, so the run's own connection waits for the slowest, not for the sum.
    let opened = futures::future::join_all((1..wanted).map(|_| open_helper(session))).await;
    let mut helpers = Vec::with_capacity(opened.len());
    let mut refused = Vec::new();
    for attempt in opened {
        match attempt {
            Ok(helper) => helpers.push(helper),
            Err(reason) => refused.push(reason),
        }
    }
    if let Some(reason) = refused.first() {
        let message = format!(
            "reading with {} connection(s) instead of {wanted}: {reason}",
            helpers.len() + 1
        );
        tracing::warn!("{message}");
        if let Err(e) = Emitter::Channel(tx)
            .send(SourceEvent::Warning { message })
            .await
        {
            for helper in helpers {
                helper.conn.clone().close().await;
            }
            return Err(e);
        }
    }
    let slices = usn_slices(
        session.root.highest_committed_usn,
        wanted * SLICES_PER_CONNECTION,
    );
    // The users without a readable uSNCreated (an account allowed to read property sets but
    // not this attribute: a filter treats it as absent, so no slice can match them) are one
    // job of their own; with them, the jobs cover every user a single search returns.
    let jobs: VecDeque<Job> = [Job::Groups, Job::UsersWithoutUsn]
        .into_iter()
        .chain(slices.into_iter().map(Job::Users))
        .collect();
    let jobs = Arc::new(Mutex::new(jobs));
    let base = session.base_dn();
    let mut indices: Vec<GroupIndex> = helpers.iter().map(|_| index.clone()).collect();
    let result = {
        let mut workers = Vec::with_capacity(helpers.len() + 1);
        workers.push(work(session, index, &jobs, &base, now, tx));
        for (helper, helper_index) in helpers.iter_mut().zip(indices.iter_mut()) {
            workers.push(work(helper, helper_index, &jobs, &base, now, tx));
        }
        futures::future::try_join_all(workers).await
    };
    for (helper, helper_index) in helpers.into_iter().zip(indices) {
        index.absorb(helper_index);
        session.counters.absorb(&helper.counters);
        helper.conn.clone().close().await;
    }
    result.map(|_| ())
}

/// A further connection to the DC `session` is on, or why not.
async fn open_helper(session: &Session) -> Result<Session, String> {
    let helper = Session::open(session.config.clone())
        .await
        .map_err(|e| format!("a further connection could not be opened ({e})"))?;
    if !helper.pin.0.eq_ignore_ascii_case(&session.pin.0) || helper.pin.1 != session.pin.1 {
        let other = helper.pin.0.clone();
        helper.conn.clone().close().await;
        return Err(format!(
            "a further connection reached {other}, not {} (the read stays on one DC)",
            session.pin.0
        ));
    }
    Ok(helper)
}

/// One connection's loop: take the next job until none is left.
async fn work(
    session: &mut Session,
    index: &mut GroupIndex,
    jobs: &Mutex<VecDeque<Job>>,
    base: &str,
    now: DateTime<Utc>,
    tx: &mpsc::Sender<SourceEvent>,
) -> Result<(), SourceError> {
    let mut out = Emitter::Channel(tx);
    loop {
        let job = jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        match job {
            None => return Ok(()),
            Some(Job::Groups) => {
                let filter = session.config.group_filter.clone();
                read_groups(session, index, base, filter, &mut out).await?;
            }
            Some(Job::Users(slice)) => {
                let filter = slice.filter(&session.config.user_filter);
                read_users(session, index, base, filter, now, &mut out).await?;
            }
            Some(Job::UsersWithoutUsn) => {
                let filter = without_usn_filter(&session.config.user_filter);
                read_users(session, index, base, filter, now, &mut out).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_every_usn_once(ceiling: u64, count: usize) {
        let slices = usn_slices(ceiling, count);
        assert!(!slices.is_empty());
        assert!(
            slices.len() <= count.max(1),
            "{ceiling} {count}: {slices:?}"
        );
        assert_eq!(slices[0].from, 0);
        assert_eq!(slices.last().unwrap().to, None);
        for pair in slices.windows(2) {
            assert_eq!(pair[0].to.map(|t| t + 1), Some(pair[1].from), "{slices:?}");
        }
        for probe in [0, 1, ceiling / 3, ceiling, ceiling + 1, u64::MAX] {
            let holding = slices
                .iter()
                .filter(|s| s.from <= probe && s.to.is_none_or(|t| probe <= t))
                .count();
            assert_eq!(holding, 1, "usn {probe} in {holding} slices: {slices:?}");
        }
    }

    #[test]
    fn slices_hold_every_usn_exactly_once() {
        for ceiling in [0, 1, 2, 7, 15, 16, 17, 1_000, 123_457, u64::MAX / 2] {
            for count in [0, 1, 2, 3, 8, 16, 32, 64] {
                covers_every_usn_once(ceiling, count);
            }
        }
    }

    #[test]
    fn a_slice_narrows_the_filter() {
        let s = UsnSlice {
            from: 10,
            to: Some(19),
        };
        assert_eq!(
            s.filter("(objectClass=user)"),
            "(&(objectClass=user)(uSNCreated>=10)(uSNCreated<=19))"
        );
        let last = UsnSlice { from: 20, to: None };
        assert_eq!(
            last.filter("(objectClass=user)"),
            "(&(objectClass=user)(uSNCreated>=20))"
        );
    }
}
