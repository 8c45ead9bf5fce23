//! What a delta cannot see inside its own scope: containers renamed or moved, and users
//! and groups that changed outside the scope.
//!
//! AD writes nothing to the objects below an OU that is renamed or moved: their DNs change,
//! their `uSNChanged` does not, so no `uSNChanged` search finds them. And a search below an
//! OU-scoped `base_dn` never returns what left it (the usual offboarding is "disable, move to
//! OU=Disabled") nor a group outside it (Domain Admins in `CN=Users`) that a user of the scope
//! was added to or removed from. Both are visible at the naming context's root, where every
//! change has a `uSNChanged`: one small search there per delta (objectGUID, objectClass and
//! the DN of what changed since the checkpoint), classified in scope or out of it here, in
//! the client — the reason Microsoft's DirSync only works at the root.

use std::collections::HashMap;

use ad_model::{Guid, ObjectKind, RawEntry};

use crate::config::SearchScope;
use crate::error::SourceError;
use crate::paging::{Item, PagedReader, SearchSpec};
use crate::session::Session;

/// Containers by objectGUID → DN, as a consumer last recorded them.
pub type Containers = HashMap<Guid, String>;

/// The object classes that can hold users and groups.
const CONTAINER_FILTER: &str = "(|(objectClass=organizationalUnit)(objectClass=container)(objectClass=builtinDomain)(objectClass=lostAndFound))";

/// What a run found around its scope (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// Containers (OUs, `CN=` containers, Builtin) as objectGUID and DN: every one in the
    /// domain for a full snapshot, those changed since the checkpoint for a delta.
    pub containers: Vec<(Guid, String)>,
    /// Delta with a scope narrower than the domain: users and groups changed since the
    /// checkpoint whose DN is outside the scope now.
    pub outside: Vec<Outside>,
    /// Why these lists may be incomplete (a page without the paged-results control, a
    /// limit, an unreadable entry); empty when complete.
    pub incomplete: Vec<String>,
    /// What the account cannot see at all (it reads nothing outside a narrower scope), as a
    /// sentence for the operator; the lists are complete as far as the account can see.
    pub blind: Option<String>,
}

/// A user or group that changed outside the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// objectGUID.
    pub guid: Guid,
    /// Its DN now.
    pub dn: String,
    /// objectSid, when readable (a group's key that survives renames and moves).
    pub sid: Option<ad_model::Sid>,
    /// User or group.
    pub kind: ObjectKind,
    /// For a group: the DNs of the users in scope that are its members now, directly or
    /// nested (`memberOf` in chain, as the DC answers it).
    pub members_in_scope: Vec<String>,
}

/// What a run reads: `base` with `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCheck {
    base: String,
    scope: SearchScope,
}

impl ScopeCheck {
    /// The scope `base` / `scope` (the configured `base_dn`, or the domain's DN).
    pub fn new(base: &str, scope: SearchScope) -> ScopeCheck {
        ScopeCheck {
            base: base.to_owned(),
            scope,
        }
    }

    /// Whether a search of this scope returns `dn`, whatever the spelling of either.
    pub fn contains(&self, dn: &str) -> bool {
        match self.scope {
            SearchScope::Subtree => ad_model::dn::is_within(dn, &self.base),
            SearchScope::Base => ad_model::dn::canonical(dn) == ad_model::dn::canonical(&self.base),
            SearchScope::OneLevel => parent_of(dn).is_some_and(|parent| {
                ad_model::dn::canonical(parent) == ad_model::dn::canonical(&self.base)
            }),
        }
    }

    /// Whether this scope is the whole naming context `domain`: nothing can be outside it.
    pub fn is_whole(&self, domain: &str) -> bool {
        self.scope == SearchScope::Subtree
            && ad_model::dn::canonical(&self.base) == ad_model::dn::canonical(domain)
    }

    /// Whether moving a container from `old` to `new` changes what this scope returns or
    /// the DN of anything it returns: either DN is in it, or it lies below either.
    pub fn touched_by_move(&self, old: &str, new: &str) -> bool {
        ad_model::dn::is_within(old, &self.base)
            || ad_model::dn::is_within(new, &self.base)
            || ad_model::dn::is_within(&self.base, old)
    }
}

/// The DN of the parent: everything after the first unescaped comma.
fn parent_of(dn: &str) -> Option<&str> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            return dn.get(i + 1..);
        }
    }
    None
}

/// [`read`] in a task of its own (a panic on a malformed reply becomes an error): the
/// session comes back with the answer, or is closed.
pub(crate) async fn read_isolated(
    mut session: Session,
    since: Option<u64>,
) -> Result<(Session, Surroundings), SourceError> {
    let host = session.conn.host().to_owned();
    crate::session::isolated(
        host,
        "the search for renamed OUs and for objects outside the scope",
        async move {
            match read(&mut session, since).await {
                Ok(found) => Ok((session, found)),
                Err(e) => {
                    session.conn.close().await;
                    Err(e)
                }
            }
        },
    )
    .await
}

/// Read the surroundings of a run: `since` is the checkpoint's USN for a delta, `None` for
/// a full snapshot (every container, nothing outside).
async fn read(session: &mut Session, since: Option<u64>) -> Result<Surroundings, SourceError> {
    let domain = session.domain_dn().to_owned();
    let scope = ScopeCheck::new(&session.base_dn(), session.config.scope);
    let changed = |filter: &str| match since {
        Some(usn) => format!("(&{filter}(uSNChanged>={}))", usn.saturating_add(1)),
        None => filter.to_owned(),
    };
    let mut found = Surroundings::default();
    let before = session.counters;
    let containers = SearchSpec {
        base: domain.clone(),
        scope: ldap3::Scope::Subtree,
        filter: changed(CONTAINER_FILTER),
        attrs: vec!["objectGUID".to_owned()],
        show_deleted: false,
        what: "the containers (OUs) of the domain",
    };
    for entry in entries(session, containers, &mut found.incomplete).await? {
        if let Some(guid) = guid_of(&entry) {
            found.containers.push((guid, entry.dn().to_owned()));
        }
    }
    if !scope.is_whole(&domain) {
        // AD hides what an account may not read without an error: an account that reads only
        // its OU sees no container outside it, not even the domain's Builtin container.
        let builtin = format!("CN=Builtin,{domain}");
        let visible =
            crate::root_dse::read_base(&session.conn, &builtin, "(objectClass=*)", &["objectGUID"])
                .await
                .map(|entry| entry.is_some());
        match visible {
            Ok(true) => {}
            Err(e) if e.is_transient() => return Err(e),
            // Not there, or an error such as noSuchObject: what AD answers for what an
            // account may not see.
            Ok(false) | Err(_) => {
                found.blind = Some(format!(
                    "{account} cannot read outside the scope ({builtin} is not visible to it), so a user moved out of base_dn, an OU renamed or moved above it and a change of a group outside it (Domain Admins) are seen only by a full sync; grant it read access to the domain (Authenticated Users has it by default) or shorten full_sync_interval",
                    account = session.config.account(),
                ));
            }
        }
    }
    if since.is_some() && !scope.is_whole(&domain) && found.blind.is_none() {
        let config = session.config.clone();
        let objects = SearchSpec {
            base: domain.clone(),
            scope: ldap3::Scope::Subtree,
            filter: changed(&format!("(|{}{})", config.user_filter, config.group_filter)),
            attrs: vec![
                "objectGUID".to_owned(),
                "objectClass".to_owned(),
                "objectSid".to_owned(),
            ],
            show_deleted: false,
            what: "the users and groups changed outside the scope",
        };
        for entry in entries(session, objects, &mut found.incomplete).await? {
            if scope.contains(entry.dn()) {
                continue;
            }
            let Some(guid) = guid_of(&entry) else {
                found.incomplete.push(format!(
                    "{} changed outside the scope but its objectGUID cannot be read",
                    entry.dn()
                ));
                continue;
            };
            let group = entry
                .values("objectClass")
                .iter()
                .any(|class| class.eq_ignore_ascii_case(b"group"));
            let members_in_scope = if group {
                members_in_scope(session, entry.dn(), &mut found.incomplete).await?
            } else {
                Vec::new()
            };
            found.outside.push(Outside {
                guid,
                dn: entry.dn().to_owned(),
                sid: entry
                    .first("objectSid")
                    .and_then(|bytes| ad_model::Sid::from_bytes(bytes).ok()),
                kind: if group {
                    ObjectKind::Group
                } else {
                    ObjectKind::User
                },
                members_in_scope,
            });
        }
    }
    // A page without the paged-results control or a limit shows in the run's counters too.
    let after = session.counters;
    if after.truncated() && !before.truncated() {
        found.incomplete.extend(after.incomplete_reasons());
    }
    Ok(found)
}

/// The users of the scope that are members of `group` (outside the scope) now, directly or
/// through nested groups (`LDAP_MATCHING_RULE_IN_CHAIN`): a group nested into it or out of it
/// changes only `group`, and gives or takes its privilege from everyone below.
async fn members_in_scope(
    session: &mut Session,
    group: &str,
    incomplete: &mut Vec<String>,
) -> Result<Vec<String>, SourceError> {
    let spec = SearchSpec {
        base: session.base_dn(),
        scope: session.config.scope.to_ldap(),
        filter: format!(
            "(&{}(memberOf:1.2.840.113556.1.4.1941:={}))",
            session.config.user_filter,
            ldap3::ldap_escape(group)
        ),
        attrs: vec!["objectGUID".to_owned()],
        show_deleted: false,
        what: "the members of a group outside the scope",
    };
    Ok(entries(session, spec, incomplete)
        .await?
        .into_iter()
        .map(|entry| entry.dn().to_owned())
        .collect())
}

async fn entries(
    session: &mut Session,
    spec: SearchSpec,
    incomplete: &mut Vec<String>,
) -> Result<Vec<RawEntry>, SourceError> {
    let what = spec.what;
    let mut out = Vec::new();
    let mut reader = PagedReader::new(session, spec);
    while let Some(item) = reader.next(session).await? {
        match item {
            Item::Entry(entry) => out.push(entry),
            Item::Malformed(m) => incomplete.push(format!(
                "an entry of {what} could not be read ({}: {})",
                m.dn, m.reason
            )),
        }
    }
    Ok(out)
}

fn guid_of(entry: &RawEntry) -> Option<Guid> {
    entry
        .first("objectGUID")
        .and_then(|bytes| Guid::from_bytes(bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_check_by_level_and_spelling() {
        let sub = ScopeCheck::new("OU=Corp, DC=x, DC=y", SearchScope::Subtree);
        assert!(sub.contains("CN=a,OU=Team,OU=Corp,DC=x,DC=y"));
        assert!(!sub.contains("CN=a,OU=Disabled,DC=x,DC=y"));
        assert!(!sub.is_whole("DC=x,DC=y"));
        assert!(ScopeCheck::new("dc=X, dc=Y", SearchScope::Subtree).is_whole("DC=x,DC=y"));
        let one = ScopeCheck::new("OU=Corp,DC=x,DC=y", SearchScope::OneLevel);
        assert!(one.contains("CN=a\\,b,ou=corp,dc=x,dc=y"));
        assert!(!one.contains("CN=a,OU=Team,OU=Corp,DC=x,DC=y"));
        assert!(!one.is_whole("OU=Corp,DC=x,DC=y"));
    }

    #[test]
    fn a_move_touches_the_scope_from_inside_outside_or_above() {
        let scope = ScopeCheck::new("OU=Corp,DC=x", SearchScope::Subtree);
        // Renamed inside, moved in, moved out, and the base's own parent renamed.
        assert!(scope.touched_by_move("OU=A,OU=Corp,DC=x", "OU=B,OU=Corp,DC=x"));
        assert!(scope.touched_by_move("OU=A,DC=x", "OU=A,OU=Corp,DC=x"));
        assert!(scope.touched_by_move("OU=A,OU=Corp,DC=x", "OU=A,DC=x"));
        assert!(scope.touched_by_move("OU=Corp,DC=x", "OU=Corp2,DC=x"));
        assert!(!scope.touched_by_move("OU=A,DC=x", "OU=B,DC=x"));
    }
}
