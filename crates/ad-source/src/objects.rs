//! Re-reading objects by DN: skipped entries, quarantined objects, members of changed groups.

use std::collections::HashSet;

use ad_model::{Decoded, Group, Guid, User};

use crate::checkpoint::Checkpoint;
use crate::error::SourceError;
use crate::membership::GroupIndex;
use crate::paging::{Item, PagedReader, SearchSpec};
use crate::session::{Counters, Session};
use crate::sync::{
    Emitter, Source, SourceEvent, emit_group, emit_user, next_complete, read_group_index, skip,
    within,
};

/// Which kinds [`read_objects_in`] looks for at each DN.
#[derive(Debug, Clone, Copy)]
struct Kinds {
    users: bool,
    groups: bool,
}

impl Source {
    /// Read the objects at these DNs again, as a delta would return them: for each DN within
    /// `base_dn`, a base search with the user filter and one with the group filter.
    ///
    /// A user comes back as [`SourceEvent::User`] with resolved groups (primary group
    /// included), a group as [`SourceEvent::Group`] with its complete (ranged) `member` and
    /// resolved parent groups, an entry that cannot be read as [`SourceEvent::Skipped`] (with
    /// its GUID when readable). A DN that no longer exists (noSuchObject), lies outside
    /// `base_dn` or matches neither filter yields nothing; a search that could not read
    /// everything adds a [`SourceEvent::Warning`]. This is how a consumer retries skipped
    /// and quarantined objects.
    ///
    /// Connection, bind and reconnect failures are errors; the group index (every group in
    /// scope, three attributes each) is read once per call.
    pub async fn read_objects(&self, dns: &[String]) -> Result<Vec<SourceEvent>, SourceError> {
        self.read(
            dns,
            Kinds {
                users: true,
                groups: true,
            },
        )
        .await
    }

    /// Read the users at these DNs (base searches with the user filter), with resolved
    /// groups and primary group, as a delta would return them.
    ///
    /// This is how a consumer re-reads the members added to or removed from a changed group:
    /// AD does not bump a user's `uSNChanged` when only its group membership changes, so a
    /// delta reports the group alone. DNs that no longer exist, are outside `base_dn`, do
    /// not match the user filter or cannot be read are left out ([`Source::read_objects`]
    /// reports the unreadable ones).
    pub async fn read_users(&self, dns: &[String]) -> Result<Vec<Decoded<User>>, SourceError> {
        let events = self
            .read(
                dns,
                Kinds {
                    users: true,
                    groups: false,
                },
            )
            .await?;
        Ok(events
            .into_iter()
            .filter_map(|e| match e {
                SourceEvent::User(user) => Some(user),
                _ => None,
            })
            .collect())
    }

    /// The groups in scope whose `uSNChanged` is above `since.usn` on the DC `since` names:
    /// (DN, `uSNChanged`) each. One paged search on the indexed `uSNChanged`, DNs only.
    ///
    /// This is how a consumer finds the groups that changed *while it was reading*: a group
    /// read before a member was added to it, and the member read after, disagree; the group
    /// must be read again for the two to agree.
    ///
    /// USNs are per DC and per database: when the connection lands on another DC, or the
    /// same DC restored from a backup, the answer would compare unrelated numbers, so it is
    /// an error ([`SourceError::DcChanged`]).
    pub async fn groups_changed_since(
        &self,
        since: &Checkpoint,
    ) -> Result<ChangedGroups, SourceError> {
        let since = since.clone();
        self.with_session(
            "the search for changed groups",
            move |mut session| async move {
                let result = groups_changed_in(&mut session, &since).await;
                (session, result)
            },
        )
        .await
    }

    /// Which of these objects are deleted on this DC: those among `guids` whose tombstone
    /// (`isDeleted: TRUE`, Show Deleted control) it holds. One paged search of the domain's
    /// tombstones of users and groups, objectGUID only.
    ///
    /// This is the proof a full sync on another DC than the last cycle's needs before it
    /// deletes an object it did not read: an object that DC does not hold at all may simply
    /// not have replicated to it yet. A GUID not in the answer is not proven deleted
    /// (including when the search could not read every tombstone).
    pub async fn tombstones_among(
        &self,
        guids: &HashSet<Guid>,
    ) -> Result<HashSet<Guid>, SourceError> {
        if guids.is_empty() {
            return Ok(HashSet::new());
        }
        let guids = guids.clone();
        self.with_session("the search for tombstones", move |mut session| async move {
            let result = tombstones_in(&mut session, &guids).await;
            (session, result)
        })
        .await
    }

    /// Where this DC holds these objects (users and groups, alive) now: objectGUID → DN,
    /// anywhere in the domain, in scope or not. One attribute-only search of the domain's
    /// users and groups: for the rare reads that must find objects whatever DN another DC
    /// showed for them (after cycles on another DC).
    pub async fn locate(
        &self,
        guids: &HashSet<Guid>,
    ) -> Result<std::collections::HashMap<Guid, String>, SourceError> {
        if guids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let guids = guids.clone();
        self.with_session(
            "the search for objects by objectGUID",
            move |mut session| async move {
                let result = locate_in(&mut session, &guids).await;
                (session, result)
            },
        )
        .await
    }

    async fn read(&self, dns: &[String], kinds: Kinds) -> Result<Vec<SourceEvent>, SourceError> {
        if dns.is_empty() {
            return Ok(Vec::new());
        }
        let (dns, source) = (dns.to_vec(), self.clone());
        self.with_session("a re-read of objects", move |mut session| async move {
            let result = read_objects_in(&mut session, &dns, kinds, &source).await;
            (session, result)
        })
        .await
    }
}

async fn read_objects_in(
    session: &mut Session,
    dns: &[String],
    kinds: Kinds,
    source: &Source,
) -> Result<Vec<SourceEvent>, SourceError> {
    let base = session.base_dn();
    let mut index = read_group_index(session, &base).await?;
    let now = session.now_or(source.now());
    let mut out = Emitter::Collect(Vec::new());
    for dn in dns {
        if !within(dn, &base) {
            tracing::debug!(%dn, %base, "not re-read: outside base_dn");
            continue;
        }
        let mut readable = true;
        if kinds.users {
            let spec = base_spec(dn, &session.config.user_filter, User::ATTRIBUTES, "a user");
            readable = read_one_dn(session, &mut index, spec, Some(now), &mut out).await?;
        }
        if kinds.groups && readable {
            let spec = base_spec(
                dn,
                &session.config.group_filter,
                Group::ATTRIBUTES,
                "a group",
            );
            read_one_dn(session, &mut index, spec, None, &mut out).await?;
        }
    }
    for message in truncation(&session.counters).incomplete_reasons() {
        out.send(SourceEvent::Warning { message }).await?;
    }
    Ok(out.into_events())
}

async fn locate_in(
    session: &mut Session,
    wanted: &HashSet<Guid>,
) -> Result<std::collections::HashMap<Guid, String>, SourceError> {
    let spec = SearchSpec {
        base: session.domain_dn().to_owned(),
        scope: ldap3::Scope::Subtree,
        filter: format!(
            "(|{}{})",
            session.config.user_filter, session.config.group_filter
        ),
        attrs: vec!["objectGUID".to_owned()],
        show_deleted: false,
        what: "objects by objectGUID",
    };
    let mut found = std::collections::HashMap::new();
    let mut reader = PagedReader::new(session, spec);
    while let Some(item) = reader.next(session).await? {
        if let Item::Entry(entry) = item
            && let Some(guid) = entry
                .first("objectGUID")
                .and_then(|bytes| Guid::from_bytes(bytes).ok())
            && wanted.contains(&guid)
        {
            found.insert(guid, entry.dn().to_owned());
        }
    }
    Ok(found)
}

async fn tombstones_in(
    session: &mut Session,
    guids: &HashSet<Guid>,
) -> Result<HashSet<Guid>, SourceError> {
    let spec = SearchSpec {
        base: session.domain_dn().to_owned(),
        scope: ldap3::Scope::Subtree,
        filter: "(&(isDeleted=TRUE)(|(objectClass=user)(objectClass=group)))".to_owned(),
        attrs: vec!["objectGUID".to_owned()],
        show_deleted: true,
        what: "the tombstones of objects not read",
    };
    let mut found = HashSet::new();
    let mut reader = PagedReader::new(session, spec);
    while let Some(item) = reader.next(session).await? {
        if let Item::Entry(entry) = item
            && let Some(guid) = entry
                .first("objectGUID")
                .and_then(|bytes| Guid::from_bytes(bytes).ok())
            && guids.contains(&guid)
        {
            found.insert(guid);
        }
    }
    Ok(found)
}

/// The answer of [`Source::groups_changed_since`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedGroups {
    /// (DN, `uSNChanged`) of each group changed since the given USN.
    pub groups: Vec<(String, u64)>,
    /// Why the list may miss groups (a page without the paged-results control, a size or
    /// time limit); empty when it is complete.
    pub incomplete: Vec<String>,
}

async fn groups_changed_in(
    session: &mut Session,
    since: &Checkpoint,
) -> Result<ChangedGroups, SourceError> {
    if !session.pin.0.eq_ignore_ascii_case(&since.dc_host) || session.pin.1 != since.invocation_id {
        return Err(SourceError::DcChanged {
            url: session.config.current_url().to_owned(),
            expected: format!("{} (invocationId {})", since.dc_host, since.invocation_id),
            found: format!("{} (invocationId {})", session.pin.0, session.pin.1),
        });
    }
    let above = since.usn.saturating_add(1);
    let spec = SearchSpec {
        base: session.base_dn(),
        scope: session.config.scope.to_ldap(),
        filter: format!("(&{}(uSNChanged>={above}))", session.config.group_filter),
        attrs: vec!["uSNChanged".to_owned()],
        show_deleted: false,
        what: "the groups changed during the read",
    };
    let mut changed = ChangedGroups::default();
    let mut reader = PagedReader::new(session, spec);
    while let Some(item) = reader.next(session).await? {
        if let Item::Entry(entry) = item {
            let usn = entry
                .first("uSNChanged")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            match usn {
                Some(usn) => changed.groups.push((entry.dn().to_owned(), usn)),
                // Unreadable: report it as changed at the highest USN, so it is re-read.
                None => changed.groups.push((entry.dn().to_owned(), u64::MAX)),
            }
        }
    }
    changed.incomplete = truncation(&session.counters).incomplete_reasons();
    Ok(changed)
}

/// Only the counters that mean entries may be missing.
pub(crate) fn truncation(counters: &Counters) -> Counters {
    Counters {
        pages_without_paged_control: counters.pages_without_paged_control,
        limit_exceeded: counters.limit_exceeded,
        ..Counters::default()
    }
}

fn base_spec(dn: &str, filter: &str, attrs: &[&str], what: &'static str) -> SearchSpec {
    SearchSpec {
        base: dn.to_owned(),
        scope: ldap3::Scope::Base,
        filter: filter.to_owned(),
        attrs: attrs.iter().map(|s| (*s).to_owned()).collect(),
        show_deleted: false,
        what,
    }
}

/// One base search: a user (decoded at `user_now`) or a group (`user_now` is `None`).
/// `Ok(false)`: the DN itself cannot be searched (reported as skipped).
async fn read_one_dn(
    session: &mut Session,
    index: &mut GroupIndex,
    spec: SearchSpec,
    user_now: Option<chrono::DateTime<chrono::Utc>>,
    out: &mut Emitter<'_>,
) -> Result<bool, SourceError> {
    let dn = spec.base.clone();
    let mut reader = PagedReader::new(session, spec);
    loop {
        match next_complete(session, &mut reader, out).await {
            Ok(Some(entry)) => match user_now {
                Some(now) => emit_user(session, index, &entry, now, out).await?,
                None => emit_group(session, index, &entry, out).await?,
            },
            Ok(None) => return Ok(true),
            // Gone (deleted, or renamed away): nothing to report.
            Err(SourceError::Search {
                result_code: 32, ..
            }) => return Ok(true),
            // This DN cannot be read (invalid DN, no access, …); the others may be.
            Err(e @ SourceError::Search { .. }) => {
                skip(session, out, &dn, None, e.to_string()).await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
    }
}
