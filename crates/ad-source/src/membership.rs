//! Group membership, both ways.
//!
//! **User → groups.** `memberOf` gives group DNs and never the primary group. The
//! [`GroupIndex`] maps group DN → (DN, SID, name) and RID → group, built from one cheap read of
//! every group in scope (three attributes each) before any user is read. A user's `groups`
//! is its `memberOf` resolved through the index plus its primary group
//! (domain SID + `primaryGroupID`, `primary: true`). Groups the index does not hold (outside
//! `base_dn`, such as `CN=Domain Users,CN=Users` or `Domain Admins`) are looked up once each
//! and cached, found or not, so the extra reads are bounded by the number of distinct groups.
//!
//! Memory: one small record per group in scope plus each distinct out-of-scope group that
//! is referenced — a few hundred bytes per group, independent of the number of users.
//!
//! **Group → members.** Every group event carries its full `member` list (DNs, ranged
//! retrieval reassembled). The primary-group direction is not in `member`; [`MembersIndex`]
//! rebuilds group → members (DN, SID, objectGUID, primary flag) from user events for a
//! consumer that wants it in memory (its size grows with memberships).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ad_model::{Group, GroupRef, Guid, Privilege, RawEntry, Sid, User};

use crate::error::SourceError;
use crate::session::Session;

/// What the index keeps per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's DN.
    pub dn: String,
    /// `objectSid`.
    pub sid: Option<Sid>,
    /// `name` (or `cn`).
    pub name: Option<String>,
    /// `memberOf`: the groups this group is nested in.
    pub member_of: Vec<String>,
}

impl GroupInfo {
    /// From an entry holding (some of) `objectSid`, `name`, `cn`.
    pub fn from_entry(entry: &RawEntry) -> GroupInfo {
        let text = |n: &str| {
            entry
                .first(n)
                .and_then(|v| std::str::from_utf8(v).ok())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        GroupInfo {
            dn: entry.dn().to_owned(),
            sid: entry
                .first("objectSid")
                .and_then(|v| Sid::from_bytes(v).ok()),
            name: text("name").or_else(|| text("cn")),
            member_of: entry
                .values("memberOf")
                .iter()
                .filter_map(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
                .collect(),
        }
    }

    fn to_ref(&self, primary: bool) -> GroupRef {
        GroupRef {
            dn: self.dn.clone(),
            sid: self.sid,
            name: self.name.clone(),
            primary,
        }
    }
}

/// The attributes the index needs per group.
pub const INDEX_ATTRIBUTES: &[&str] = &["objectGUID", "objectSid", "name", "cn", "memberOf"];

/// Most groups one user's nesting closure may hold: a guard against a broken directory
/// (AD itself has no such limit, but real nesting reaches tens of groups, not thousands).
pub const MAX_CLOSURE: usize = 10_000;

/// Group DN → group, and RID → group for the domain.
#[derive(Debug, Default, Clone)]
pub struct GroupIndex {
    by_dn: HashMap<String, Arc<GroupInfo>>,
    by_rid: HashMap<u32, Arc<GroupInfo>>,
    /// The groups read from the scope (not looked up from outside it), keys.
    in_scope: Vec<String>,
    missing_dn: HashSet<String>,
    missing_rid: HashSet<u32>,
    domain_sid: Option<Sid>,
}

fn dn_key(dn: &str) -> String {
    dn.trim().to_lowercase()
}

/// The value of the first RDN (`CN=GG Sales\, EMEA,OU=…` → `GG Sales, EMEA`), escapes and
/// hex pairs decoded.
pub fn rdn_value(dn: &str) -> Option<String> {
    ad_model::dn::rdn_value(dn).map(std::borrow::Cow::into_owned)
}

impl GroupIndex {
    /// An empty index for a domain.
    pub fn new(domain_sid: Option<Sid>) -> Self {
        GroupIndex {
            domain_sid,
            ..GroupIndex::default()
        }
    }

    /// Add (or replace) a group.
    pub fn insert(&mut self, info: GroupInfo) {
        let info = Arc::new(info);
        if let (Some(sid), Some(domain)) = (info.sid, self.domain_sid)
            && sid.domain_sid() == Some(domain)
            && let Some(rid) = sid.rid()
        {
            self.by_rid.insert(rid, info.clone());
        }
        self.by_dn.insert(dn_key(&info.dn), info);
    }

    /// Take in what a copy of this index learned on another connection of the same run (groups
    /// looked up outside the scope, lookups that failed).
    pub(crate) fn absorb(&mut self, other: GroupIndex) {
        for (key, info) in other.by_dn {
            self.by_dn.entry(key).or_insert(info);
        }
        for (rid, info) in other.by_rid {
            self.by_rid.entry(rid).or_insert(info);
        }
        self.missing_dn.extend(other.missing_dn);
        self.missing_rid.extend(other.missing_rid);
        if self.domain_sid.is_none() {
            self.domain_sid = other.domain_sid;
        }
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.by_dn.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.by_dn.is_empty()
    }

    /// The group with this DN (case-insensitive).
    pub fn get(&self, dn: &str) -> Option<&GroupInfo> {
        self.by_dn.get(&dn_key(dn)).map(Arc::as_ref)
    }

    /// The domain group with this RID.
    pub fn get_rid(&self, rid: u32) -> Option<&GroupInfo> {
        self.by_rid.get(&rid).map(Arc::as_ref)
    }

    /// Resolve with what the index holds: `memberOf` DNs in order, then the primary group.
    /// Unknown DNs get the RDN as name and no SID; an unknown primary group gets its SID
    /// and well-known name and an empty DN.
    pub fn resolve(&self, member_of: &[String], primary: Option<(u32, Sid)>) -> Vec<GroupRef> {
        let mut out = Vec::with_capacity(member_of.len() + 1);
        for dn in member_of {
            match self.get(dn) {
                Some(info) => out.push(info.to_ref(false)),
                None => out.push(GroupRef {
                    dn: dn.clone(),
                    sid: None,
                    name: rdn_value(dn),
                    primary: false,
                }),
            }
        }
        if let Some((rid, sid)) = primary {
            match self.get_rid(rid).filter(|g| g.sid == Some(sid)) {
                Some(info) => out.push(info.to_ref(true)),
                None => out.push(GroupRef {
                    dn: String::new(),
                    sid: Some(sid),
                    name: sid.well_known_name().map(str::to_owned),
                    primary: true,
                }),
            }
        }
        out
    }

    /// Note a group read from the scope (see [`GroupIndex::nesting`]).
    pub(crate) fn insert_in_scope(&mut self, info: GroupInfo) {
        self.in_scope.push(dn_key(&info.dn));
        self.insert(info);
    }

    /// For every group read from the scope: the DNs (lower case, sorted) of all the groups it
    /// is nested in, at any depth, inside the scope or not. A change here changes the
    /// transitive groups (and maybe the privilege) of every member below that group, while
    /// AD writes nothing to the group or its members: a consumer compares this between runs
    /// to find them. Looks up the groups outside the index on the way (once each).
    pub(crate) async fn nesting(
        &mut self,
        session: &mut Session,
    ) -> Result<BTreeMap<String, Vec<String>>, SourceError> {
        let parents: Vec<String> = self
            .in_scope
            .iter()
            .filter_map(|key| self.by_dn.get(key))
            .flat_map(|info| info.member_of.iter().cloned())
            .collect();
        self.fill_closure(session, &parents).await?;
        let mut out = BTreeMap::new();
        for key in &self.in_scope {
            let Some(info) = self.by_dn.get(key) else {
                continue;
            };
            let mut seen: BTreeSet<String> = BTreeSet::new();
            let mut queue: Vec<String> = info.member_of.clone();
            while let Some(parent) = queue.pop() {
                if seen.len() >= MAX_CLOSURE || !seen.insert(dn_key(&parent)) {
                    continue;
                }
                if let Some(up) = self.get(&parent) {
                    queue.extend(up.member_of.iter().cloned());
                }
            }
            seen.remove(key);
            out.insert(key.clone(), seen.into_iter().collect());
        }
        Ok(out)
    }

    /// Every group reachable from `member_of` and the primary group through the groups'
    /// own `memberOf` (nesting), nearest first, each once (a cycle in the nesting is walked
    /// once), and the privileged groups among them with the chain that leads to each. Reads
    /// the index only: the source fills it first (`fill_closure`) so it holds every group on
    /// the way.
    pub fn transitive(
        &self,
        member_of: &[String],
        primary: Option<(u32, Sid)>,
    ) -> (Vec<GroupRef>, Vec<Privilege>) {
        let key_of = |g: &GroupRef| {
            if g.dn.is_empty() {
                g.sid.map(|s| format!("sid:{s}")).unwrap_or_default()
            } else {
                dn_key(&g.dn)
            }
        };
        // Breadth first: (group, index of the group it was reached from).
        let mut order: Vec<(GroupRef, Option<usize>)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for group in self.resolve(member_of, primary) {
            if seen.insert(key_of(&group)) {
                order.push((group, None));
            }
        }
        let mut next = 0;
        while next < order.len() && order.len() < MAX_CLOSURE {
            let parents = self
                .get(&order[next].0.dn)
                .map(|info| info.member_of.clone())
                .unwrap_or_default();
            for parent in parents {
                if !seen.insert(dn_key(&parent)) {
                    continue;
                }
                let group = match self.get(&parent) {
                    Some(info) => info.to_ref(false),
                    None => GroupRef {
                        name: rdn_value(&parent),
                        dn: parent,
                        sid: None,
                        primary: false,
                    },
                };
                order.push((group, Some(next)));
            }
            next += 1;
        }
        let privileges = order
            .iter()
            .filter(|(group, _)| group.sid.is_some_and(|s| s.is_privileged_group()))
            .map(|(group, from)| {
                let mut via = Vec::new();
                let mut at = *from;
                while let Some(i) = at {
                    via.push(order[i].0.clone());
                    at = order[i].1;
                }
                via.reverse();
                Privilege {
                    group: group.clone(),
                    via,
                }
            })
            .collect();
        (
            order.into_iter().map(|(group, _)| group).collect(),
            privileges,
        )
    }

    /// Look up the groups on the way from `start` up the nesting (`memberOf` of groups)
    /// that the index does not hold yet, until every reachable group is known (or known
    /// unreadable), at most [`MAX_CLOSURE`] of them.
    pub(crate) async fn fill_closure(
        &mut self,
        session: &mut Session,
        start: &[String],
    ) -> Result<(), SourceError> {
        let mut frontier: Vec<String> = start.to_vec();
        let mut seen: HashSet<String> = HashSet::new();
        while !frontier.is_empty() && seen.len() < MAX_CLOSURE {
            self.fill_missing(session, &frontier, None).await?;
            let mut up = Vec::new();
            for dn in frontier.drain(..) {
                if !seen.insert(dn_key(&dn)) {
                    continue;
                }
                if let Some(info) = self.get(&dn) {
                    up.extend(
                        info.member_of
                            .iter()
                            .filter(|p| !seen.contains(&dn_key(p)))
                            .cloned(),
                    );
                }
            }
            frontier = up;
        }
        Ok(())
    }

    /// Look up, once each, the groups `memberOf` and the primary group name that the index
    /// does not hold yet; failures are remembered so they are not retried per user.
    pub(crate) async fn fill_missing(
        &mut self,
        session: &mut Session,
        member_of: &[String],
        primary: Option<(u32, Sid)>,
    ) -> Result<(), SourceError> {
        for dn in member_of {
            let key = dn_key(dn);
            if self.by_dn.contains_key(&key) || self.missing_dn.contains(&key) {
                continue;
            }
            session.counters.group_lookups += 1;
            match session
                .read_one_retrying(dn, ldap3::Scope::Base, "(objectClass=*)", INDEX_ATTRIBUTES)
                .await
            {
                Ok(Some(entry)) => self.insert(GroupInfo::from_entry(&entry)),
                Ok(None) => {
                    self.missing_dn.insert(key);
                }
                // A lookup cut by the network is not "unreadable": resolving without it would
                // deliver a degraded record and move on. The read fails and is retried.
                Err(e)
                    if e.is_transient()
                        || matches!(
                            e,
                            SourceError::ReconnectsExhausted { .. } | SourceError::DcChanged { .. }
                        ) =>
                {
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(group = %dn, error = %e, "group outside the index not readable");
                    self.missing_dn.insert(key);
                }
            }
        }
        if let Some((rid, sid)) = primary {
            if self.domain_sid.is_none() {
                self.domain_sid = sid.domain_sid();
                // Groups indexed before the domain was known get their RIDs now.
                let known: Vec<Arc<GroupInfo>> = self.by_dn.values().cloned().collect();
                for info in known {
                    if let (Some(group_sid), Some(domain)) = (info.sid, self.domain_sid)
                        && group_sid.domain_sid() == Some(domain)
                        && let Some(group_rid) = group_sid.rid()
                    {
                        self.by_rid.entry(group_rid).or_insert(info);
                    }
                }
            }
            if self.get_rid(rid).is_none() && !self.missing_rid.contains(&rid) {
                session.counters.group_lookups += 1;
                let filter = format!("(objectSid={})", escape_bytes(&sid.to_bytes()));
                let base = session.domain_dn().to_owned();
                match session
                    .read_one_retrying(&base, ldap3::Scope::Subtree, &filter, INDEX_ATTRIBUTES)
                    .await
                {
                    Ok(Some(entry)) => self.insert(GroupInfo::from_entry(&entry)),
                    Ok(None) => {
                        self.missing_rid.insert(rid);
                    }
                    Err(e)
                        if e.is_transient()
                            || matches!(
                                e,
                                SourceError::ReconnectsExhausted { .. }
                                    | SourceError::DcChanged { .. }
                            ) =>
                    {
                        return Err(e);
                    }
                    Err(e) => {
                        tracing::debug!(%sid, error = %e, "primary group not readable");
                        self.missing_rid.insert(rid);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Escape bytes for an LDAP filter value (`\01\05…`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        out.push_str(&format!("\\{b:02x}"));
    }
    out
}

/// One member of a group, as rebuilt by [`MembersIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's DN.
    pub dn: String,
    /// The member's `objectSid`.
    pub sid: Option<Sid>,
    /// The member's `objectGUID`.
    pub object_guid: Guid,
    /// Member through `primaryGroupID` (not listed in the group's `member`).
    pub primary: bool,
}

/// Group → members, rebuilt from user (and nested group) events, keyed by group DN and by
/// group SID. Memory grows with the number of memberships; use it when a sink needs the
/// group view with SIDs and primary members.
#[derive(Debug, Default, Clone)]
pub struct MembersIndex {
    by_dn: HashMap<String, Vec<Member>>,
    sid_to_dn: HashMap<Sid, String>,
}

impl MembersIndex {
    /// An empty index.
    pub fn new() -> Self {
        MembersIndex::default()
    }

    fn add(&mut self, member: Member, groups: &[GroupRef]) {
        for g in groups {
            let key = if g.dn.is_empty() {
                match g.sid {
                    Some(sid) => format!("<SID={sid}>"),
                    None => continue,
                }
            } else {
                dn_key(&g.dn)
            };
            if let Some(sid) = g.sid {
                self.sid_to_dn.insert(sid, key.clone());
            }
            let mut m = member.clone();
            m.primary = g.primary;
            self.by_dn.entry(key).or_default().push(m);
        }
    }

    /// Record a user's resolved groups.
    pub fn add_user(&mut self, user: &User) {
        let member = Member {
            dn: user.dn.clone(),
            sid: user.object_sid,
            object_guid: user.object_guid,
            primary: false,
        };
        self.add(member, &user.groups);
    }

    /// Record a group's resolved parent groups (nesting).
    pub fn add_group(&mut self, group: &Group) {
        let member = Member {
            dn: group.dn.clone(),
            sid: group.object_sid,
            object_guid: group.object_guid,
            primary: false,
        };
        self.add(member, &group.groups);
    }

    /// Members of the group with this DN.
    pub fn members(&self, group_dn: &str) -> &[Member] {
        self.by_dn
            .get(&dn_key(group_dn))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Members of the group with this SID.
    pub fn members_by_sid(&self, group_sid: &Sid) -> &[Member] {
        self.sid_to_dn
            .get(group_sid)
            .and_then(|k| self.by_dn.get(k))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> Sid {
        s.parse().unwrap()
    }

    #[test]
    fn resolves_member_of_and_primary() {
        let domain = sid("S-1-5-21-1-2-3");
        let mut index = GroupIndex::new(Some(domain));
        index.insert(GroupInfo {
            dn: "CN=GG-Sales,OU=Groups,DC=x".into(),
            sid: Some(sid("S-1-5-21-1-2-3-1105")),
            name: Some("GG-Sales".into()),
            member_of: Vec::new(),
        });
        index.insert(GroupInfo {
            dn: "CN=GG-Primary,OU=Groups,DC=x".into(),
            sid: Some(sid("S-1-5-21-1-2-3-3128")),
            name: Some("GG-Primary".into()),
            member_of: Vec::new(),
        });
        let refs = index.resolve(
            &[
                "cn=gg-sales,ou=groups,dc=x".into(),
                "CN=Outside\\, Group,CN=Users,DC=x".into(),
            ],
            Some((3128, sid("S-1-5-21-1-2-3-3128"))),
        );
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[0].name.as_deref(), Some("GG-Sales"));
        assert_eq!(refs[0].sid, Some(sid("S-1-5-21-1-2-3-1105")));
        assert!(!refs[0].primary);
        assert_eq!(refs[1].name.as_deref(), Some("Outside, Group"));
        assert_eq!(refs[1].sid, None);
        assert!(refs[2].primary);
        assert_eq!(refs[2].dn, "CN=GG-Primary,OU=Groups,DC=x");

        // Unknown primary group: SID and well-known name.
        let refs = index.resolve(&[], Some((513, sid("S-1-5-21-1-2-3-513"))));
        assert_eq!(refs[0].name.as_deref(), Some("Domain Users"));
        assert_eq!(refs[0].sid, Some(sid("S-1-5-21-1-2-3-513")));
        assert!(refs[0].primary);
    }

    fn group(dn: &str, sid_text: &str, parents: &[&str]) -> GroupInfo {
        GroupInfo {
            dn: dn.into(),
            sid: Some(sid(sid_text)),
            name: rdn_value(dn),
            member_of: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn nesting_is_followed_to_privilege_and_cycles_end() {
        let domain = sid("S-1-5-21-1-2-3");
        let mut index = GroupIndex::new(Some(domain));
        let da = "CN=Domain Admins,CN=Users,DC=x";
        let backup = "CN=Backup Operators,CN=Builtin,DC=x";
        index.insert(group(da, "S-1-5-21-1-2-3-512", &[]));
        index.insert(group(backup, "S-1-5-32-551", &[]));
        // Helpdesk ∈ Tier0 ∈ Domain Admins; Tier0 and Loop nest in each other (a cycle).
        index.insert(group(
            "CN=Tier0,DC=x",
            "S-1-5-21-1-2-3-1200",
            &[da, "CN=Loop,DC=x"],
        ));
        index.insert(group(
            "CN=Loop,DC=x",
            "S-1-5-21-1-2-3-1201",
            &["cn=tier0,dc=x"],
        ));
        index.insert(group(
            "CN=Helpdesk,DC=x",
            "S-1-5-21-1-2-3-1202",
            &["CN=Tier0,DC=x"],
        ));
        // The primary group is nested in Backup Operators.
        index.insert(group("CN=Staff,DC=x", "S-1-5-21-1-2-3-1300", &[backup]));

        let (all, privileges) = index.transitive(
            &["CN=Helpdesk,DC=x".into()],
            Some((1300, sid("S-1-5-21-1-2-3-1300"))),
        );
        let names: Vec<String> = all.iter().map(GroupRef::display_name).collect();
        assert_eq!(
            names,
            [
                "Helpdesk",
                "Staff",
                "Tier0",
                "Backup Operators",
                "Domain Admins",
                "Loop"
            ]
        );
        let paths: Vec<String> = privileges.iter().map(Privilege::path).collect();
        assert_eq!(
            paths,
            [
                "Backup Operators ← Staff",
                "Domain Admins ← Tier0 ← Helpdesk"
            ]
        );
        assert!(all[1].primary);

        // A direct member: no chain.
        let (_, privileges) = index.transitive(&[da.into()], None);
        assert_eq!(privileges.len(), 1);
        assert!(privileges[0].via.is_empty());
        // Nothing privileged.
        let (all, privileges) = index.transitive(&["CN=Loop,DC=x".into()], None);
        assert_eq!(
            all.len(),
            3,
            "Loop, Tier0 (cycle back to Loop ends), Domain Admins"
        );
        assert_eq!(privileges.len(), 1, "Loop ∈ Tier0 ∈ Domain Admins");
    }

    #[test]
    fn members_both_ways() {
        let group = GroupRef {
            dn: "CN=G,DC=x".into(),
            sid: Some(sid("S-1-5-21-1-2-3-1200")),
            name: Some("G".into()),
            primary: true,
        };
        let mut m = MembersIndex::new();
        m.add(
            Member {
                dn: "CN=u,DC=x".into(),
                sid: Some(sid("S-1-5-21-1-2-3-1300")),
                object_guid: Guid::from_bytes(&[7u8; 16]).unwrap(),
                primary: false,
            },
            &[group],
        );
        assert_eq!(m.members("cn=g,dc=x").len(), 1);
        assert!(m.members_by_sid(&sid("S-1-5-21-1-2-3-1200"))[0].primary);
    }

    #[test]
    fn escapes_bytes() {
        assert_eq!(escape_bytes(&[1, 0xab, 0]), "\\01\\ab\\00");
    }
}
