//! The directory model: entries keyed by case-insensitive DN, a monotonically increasing USN,
//! AD-style tombstones, link/backlink upkeep (`member`/`memberOf`, `manager`/`directReports`),
//! and an optional generated base of virtual users (see [`crate::generated`]).
//!
//! A [`Directory`] is a cheap, clonable handle (`Arc<RwLock<..>>`): tests mutate it while one or
//! more [`crate::TestServer`]s serve it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use ldap3_proto::LdapFilter;
use uuid::Uuid;

use crate::dn::{self, Rdn};
use crate::encoding;
use crate::entry::Entry;
use crate::error::{Result, TestkitError};
use crate::filter::{self, Resolver, Tri};
use crate::generated::GeneratedUsers;
use crate::persona::Prng;

/// First order key of generated entries; stored entries created before the generated base
/// sort before them, entries added later sort after.
pub(crate) const GEN_OFFSET: u64 = 1 << 40;

/// The USN a fresh directory starts from (a newly promoted DC is around there).
const FIRST_USN: u64 = 12_000;

/// First RID handed out to principals added without an objectSid.
const FIRST_FREE_RID: u32 = 1_100;

/// The fixed domain sub-authorities: `S-1-5-21-1004336348-1177238915-682003330`.
pub const DOMAIN_SUB_AUTHORITIES: [u32; 3] = [1_004_336_348, 1_177_238_915, 682_003_330];

/// `(forward link, backlink)` pairs kept consistent by the directory.
const LINKS: &[(&str, &str)] = &[("member", "memberOf"), ("manager", "directReports")];

/// Attributes only the directory writes.
const SYSTEM_ATTRIBUTES: &[&str] = &[
    "distinguishedName",
    "name",
    "objectGUID",
    "uSNChanged",
    "uSNCreated",
    "whenChanged",
    "whenCreated",
    "isDeleted",
];

/// Search scope for in-process searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry only.
    Base,
    /// Direct children of the base.
    OneLevel,
    /// The base and everything below it.
    Subtree,
    /// Everything below the base, not the base itself.
    Children,
}

/// One change of [`Directory::modify`] (LDAP modify semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modification {
    /// Replace all values (an empty list removes the attribute).
    Replace(String, Vec<Vec<u8>>),
    /// Add values (error if one is already present).
    Add(String, Vec<Vec<u8>>),
    /// Delete the given values, or the whole attribute when the list is empty.
    Delete(String, Vec<Vec<u8>>),
}

impl Modification {
    /// `Replace` from anything byte-like.
    pub fn replace<V: Into<Vec<u8>>>(name: &str, values: impl IntoIterator<Item = V>) -> Self {
        Self::Replace(
            name.to_string(),
            values.into_iter().map(Into::into).collect(),
        )
    }

    /// `Add` from anything byte-like.
    pub fn add<V: Into<Vec<u8>>>(name: &str, values: impl IntoIterator<Item = V>) -> Self {
        Self::Add(
            name.to_string(),
            values.into_iter().map(Into::into).collect(),
        )
    }

    /// `Delete` from anything byte-like (empty: the whole attribute).
    pub fn delete<V: Into<Vec<u8>>>(name: &str, values: impl IntoIterator<Item = V>) -> Self {
        Self::Delete(
            name.to_string(),
            values.into_iter().map(Into::into).collect(),
        )
    }

    fn attribute(&self) -> &str {
        match self {
            Self::Replace(n, _) | Self::Add(n, _) | Self::Delete(n, _) => n,
        }
    }
}

/// 100-ns FILETIME ticks per second.
const TICKS_PER_SECOND: i64 = 10_000_000;

/// Domain password and lockout policy, used for `msDS-User-Account-Control-Computed`. Kept in
/// step with the `maxPwdAge` / `lockoutDuration` attributes of the domain head, which AD
/// stores as negative 100-ns intervals (`-9223372036854775808` or `0`: never).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// In 100-ns ticks; `None`: passwords never expire by age.
    pub(crate) max_password_age: Option<i64>,
    /// In 100-ns ticks; `None`: locked accounts stay locked until an administrator unlocks
    /// them.
    pub(crate) lockout_duration: Option<i64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_password_age: Some(42 * 86_400 * TICKS_PER_SECOND),
            lockout_duration: None,
        }
    }
}

impl Policy {
    /// An interval attribute as AD stores it (negative ticks) → positive ticks, `None` for
    /// "never" (`0`, `i64::MIN`) and anything unreadable.
    fn interval(value: Option<i64>) -> Option<i64> {
        match value? {
            0 | i64::MIN => None,
            v => Some(v.saturating_abs()),
        }
    }

    /// The AD form of an interval: negative ticks, `i64::MIN` for "never".
    fn stored(ticks: Option<i64>) -> String {
        ticks.map_or(i64::MIN, |t| -t.saturating_abs()).to_string()
    }

    fn from_domain_head(entry: &Entry) -> Self {
        Self {
            max_password_age: Self::interval(entry.first_i64("maxPwdAge")),
            lockout_duration: Self::interval(entry.first_i64("lockoutDuration")),
        }
    }
}

/// The directory's notion of "now": starts at an epoch and runs with wall-clock time, plus
/// any manual advance. Deterministic generators set the epoch to their reference time.
#[derive(Debug, Clone)]
struct Clock {
    epoch: DateTime<Utc>,
    started: Instant,
    offset: chrono::Duration,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default();
        self.epoch + elapsed + self.offset
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) entry: Entry,
    pub(crate) norm: String,
}

/// The state behind the lock.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) base_dn: String,
    pub(crate) base_norm: String,
    pub(crate) dns_domain: String,
    pub(crate) netbios: String,
    pub(crate) domain_sid: [u32; 3],
    next_rid: u32,
    usn: u64,
    clock: Clock,
    pub(crate) policy: Policy,
    entries: BTreeMap<u64, Stored>,
    by_dn: HashMap<String, u64>,
    next_order: u64,
    rng: Prng,
    pub(crate) generated: Option<GeneratedUsers>,
    /// Deleted objects as they were before the delete (attributes and links), by order key:
    /// the Recycle Bin [`Directory::restore`] brings them back from.
    recycle_bin: HashMap<u64, Entry>,
    /// On a replica: the `uSNChanged` each object had on the DC it replicates from when this
    /// replica last took it, by order key (see [`Directory::replicate_from`]).
    origins: HashMap<u64, u64>,
}

/// A handle on an in-memory AD-like directory. Clones share the same data.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<RwLock<State>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never block (or deadlock) for a debug print.
        let Ok(s) = self.inner.try_read() else {
            return f.write_str("Directory { <locked> }");
        };
        f.debug_struct("Directory")
            .field("base_dn", &s.base_dn)
            .field("stored_entries", &s.entries.len())
            .field(
                "generated_users",
                &s.generated.as_ref().map_or(0, |g| g.count),
            )
            .field("highest_committed_usn", &s.usn)
            .finish()
    }
}

/// The outcome of one page of a scan.
#[derive(Debug)]
pub(crate) struct ScanResult {
    pub(crate) entries: Vec<Entry>,
    /// Order key of the next matching entry, when there is one.
    pub(crate) next: Option<u64>,
}

/// What a scan looks for.
#[derive(Debug)]
pub(crate) struct ScanRequest<'a> {
    pub(crate) base: &'a str,
    pub(crate) scope: Scope,
    pub(crate) filter: &'a LdapFilter,
    pub(crate) show_deleted: bool,
    pub(crate) start: u64,
    pub(crate) limit: usize,
}

impl Directory {
    /// An empty domain: the naming-context root (`domainDNS`, domain SID) and
    /// `CN=Deleted Objects`. `base_dn` must consist of `DC=` components.
    pub fn new(base_dn: &str) -> Result<Self> {
        let rdns = dn::parse(base_dn)?;
        if rdns.is_empty() || !rdns.iter().all(|r| r.attr.eq_ignore_ascii_case("dc")) {
            return Err(TestkitError::InvalidDn {
                dn: base_dn.to_string(),
                reason: "a domain naming context is made of DC= components".into(),
            });
        }
        Ok(Self::create(&dn::render(&rdns), Utc::now(), 0))
    }

    /// Infallible constructor for known-good base DNs.
    pub(crate) fn create(base_dn: &str, epoch: DateTime<Utc>, seed: u64) -> Self {
        let dns_domain = dn::dns_domain(base_dn);
        let netbios = dns_domain
            .split('.')
            .next()
            .unwrap_or("CORP")
            .to_ascii_uppercase();
        let mut state = State {
            base_dn: base_dn.to_string(),
            base_norm: dn::normalize(base_dn),
            dns_domain,
            netbios,
            domain_sid: DOMAIN_SUB_AUTHORITIES,
            next_rid: FIRST_FREE_RID,
            usn: FIRST_USN,
            clock: Clock {
                epoch,
                started: Instant::now(),
                offset: chrono::Duration::zero(),
            },
            policy: Policy::default(),
            entries: BTreeMap::new(),
            by_dn: HashMap::new(),
            next_order: 0,
            rng: Prng::new(seed ^ 0x000d_17ec_70e1),
            generated: None,
            recycle_bin: HashMap::new(),
            origins: HashMap::new(),
        };
        state.create_skeleton();
        Self {
            inner: Arc::new(RwLock::new(state)),
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Another DC's copy of this directory, replicated up to now: the same objects (GUIDs,
    /// SIDs, DNs, values), but every `uSNCreated`/`uSNChanged` and the USN counter raised by
    /// `usn_offset`, as USNs are numbered by each DC on its own. From then on the two change
    /// independently; a test "replicates" a change by making it on both (each gives it its
    /// own next USN), or leaves it on one to show replication lag. Serve it with a
    /// [`TestServer`](crate::TestServer) whose host name and invocationId are another DC's.
    pub fn replica(&self, usn_offset: u64) -> Directory {
        let mut state = self.read().clone();
        state.usn = state.usn.saturating_add(usn_offset);
        if let Some(generated) = &mut state.generated {
            generated.shift_usns(usn_offset);
        }
        state.origins.clear();
        for (order, stored) in &mut state.entries {
            if let Some(usn) = stored.entry.first_i64("uSNChanged") {
                state
                    .origins
                    .insert(*order, u64::try_from(usn).unwrap_or(0));
            }
            for attr in ["uSNCreated", "uSNChanged"] {
                if let Some(usn) = stored.entry.first_i64(attr) {
                    let shifted = u64::try_from(usn).unwrap_or(0).saturating_add(usn_offset);
                    stored.entry.set(attr, [shifted.to_string()]);
                }
            }
        }
        Directory {
            inner: Arc::new(RwLock::new(state)),
        }
    }

    /// Inbound replication on a [`Directory::replica`] (a lagging DC catching up): every
    /// object whose `uSNChanged` on `source` moved since this replica last took it is
    /// written here under this DC's next USNs, in the order `source` made the changes, and
    /// keeps its `uSNCreated` here (an object new to this DC gets a new one). What changed on
    /// `source` without a `uSNChanged` of its own (the DN of a renamed container's children,
    /// backlinks such as `memberOf`) arrives without a USN change here too. The Recycle Bin,
    /// password policy and RID pool follow; the clock does not (advance each DC's). Stored
    /// entries only: a generated base is left as it is. Writes made on this replica directly
    /// are replaced by `source`'s objects. Returns how many objects changed here.
    pub fn replicate_from(&self, source: &Directory) -> usize {
        if Arc::ptr_eq(&self.inner, &source.inner) {
            return 0;
        }
        // A copy, so the two locks are never held together.
        let src = source.read().clone();
        let mut dst = self.write();
        let mut changed: Vec<(u64, u64)> = src
            .entries
            .iter()
            .filter_map(|(order, st)| {
                let usn = u64::try_from(st.entry.first_i64("uSNChanged")?).ok()?;
                (dst.origins.get(order) != Some(&usn)).then_some((usn, *order))
            })
            .collect();
        changed.sort_unstable();
        let changed_orders: HashSet<u64> = changed.iter().map(|(_, order)| *order).collect();
        let mut entries = BTreeMap::new();
        for (order, st) in &src.entries {
            let mut entry = st.entry.clone();
            if let Some(mine) = dst.entries.get(order) {
                let attrs: &[&str] = if changed_orders.contains(order) {
                    &["uSNCreated"]
                } else {
                    &["uSNCreated", "uSNChanged"]
                };
                for attr in attrs {
                    if let Some(values) = mine.entry.get(attr) {
                        entry.set(attr, values.to_vec());
                    }
                }
            }
            entries.insert(
                *order,
                Stored {
                    entry,
                    norm: st.norm.clone(),
                },
            );
        }
        for (origin, order) in &changed {
            let usn = dst.next_usn();
            if let Some(st) = entries.get_mut(order) {
                if !dst.entries.contains_key(order) {
                    st.entry.set("uSNCreated", [usn.to_string()]);
                }
                st.entry.set("uSNChanged", [usn.to_string()]);
            }
            dst.origins.insert(*order, *origin);
        }
        dst.by_dn = entries
            .iter()
            .map(|(order, st)| (st.norm.clone(), *order))
            .collect();
        dst.entries = entries;
        dst.next_order = dst.next_order.max(src.next_order);
        dst.next_rid = dst.next_rid.max(src.next_rid);
        dst.policy = src.policy.clone();
        dst.recycle_bin = src.recycle_bin;
        changed.len()
    }

    /// Whether this replica holds every change of `source` ([`Directory::replicate_from`]
    /// would change nothing).
    pub fn is_replicated_from(&self, source: &Directory) -> bool {
        if Arc::ptr_eq(&self.inner, &source.inner) {
            return true;
        }
        let src = source.read().clone();
        let dst = self.read();
        src.entries.iter().all(|(order, st)| {
            st.entry
                .first_i64("uSNChanged")
                .and_then(|usn| u64::try_from(usn).ok())
                .is_some_and(|usn| dst.origins.get(order) == Some(&usn))
        })
    }

    /// The naming context, e.g. `DC=corp,DC=example,DC=test`.
    pub fn base_dn(&self) -> String {
        self.read().base_dn.clone()
    }

    /// The DNS domain, e.g. `corp.example.test`.
    pub fn dns_domain(&self) -> String {
        self.read().dns_domain.clone()
    }

    /// The NetBIOS domain name used in `DOMAIN\user` binds, e.g. `CORP`.
    pub fn netbios_domain(&self) -> String {
        self.read().netbios.clone()
    }

    /// The domain SID as text, e.g. `S-1-5-21-1004336348-1177238915-682003330`.
    pub fn domain_sid(&self) -> String {
        let s = self.read();
        format!(
            "S-1-5-21-{}-{}-{}",
            s.domain_sid[0], s.domain_sid[1], s.domain_sid[2]
        )
    }

    /// The highest USN assigned so far (what the rootDSE reports as `highestCommittedUSN`).
    pub fn highest_committed_usn(&self) -> u64 {
        self.read().usn
    }

    /// The directory's current time (used for `whenChanged` and computed attributes).
    pub fn now(&self) -> DateTime<Utc> {
        self.read().clock.now()
    }

    /// Sets the domain's password and lockout policy: writes `maxPwdAge` and `lockoutDuration`
    /// on the domain head (negative 100-ns intervals; `None` is "never", stored as
    /// `-9223372036854775808`) and uses them for `msDS-User-Account-Control-Computed`.
    /// Returns the domain head's new `uSNChanged`. Modifying those attributes directly with
    /// [`Directory::modify`] has the same effect.
    pub fn set_password_policy(
        &self,
        max_password_age: Option<chrono::Duration>,
        lockout_duration: Option<chrono::Duration>,
    ) -> Result<u64> {
        let ticks = |d: chrono::Duration| {
            d.num_microseconds()
                .map_or(i64::MAX, |us| us.saturating_mul(10))
        };
        let base = self.base_dn();
        self.modify(
            &base,
            [
                Modification::replace("maxPwdAge", [Policy::stored(max_password_age.map(ticks))]),
                Modification::replace(
                    "lockoutDuration",
                    [Policy::stored(lockout_duration.map(ticks))],
                ),
            ],
        )
    }

    /// Moves the directory's clock forward (e.g. to let a lockout or a password expire).
    pub fn advance_clock(&self, by: chrono::Duration) {
        let mut s = self.write();
        s.clock.offset += by;
    }

    /// Adds an entry and returns its `uSNCreated`. The parent must exist. The directory sets
    /// `name`, the RDN attribute, `uSNCreated`/`uSNChanged`, and when absent `objectGUID`,
    /// `objectSid` (for users, groups and computers: domain SID + next RID), `instanceType`,
    /// `whenCreated`/`whenChanged` (kept when given, so generators can back-date entries).
    /// Link targets (`member`, `manager`) must exist; their backlinks are updated.
    pub fn add(&self, entry: Entry) -> Result<u64> {
        self.write().add(entry)
    }

    /// Applies modifications atomically; returns the entry's new `uSNChanged`.
    /// Backlinks (`memberOf`, `directReports`), system attributes and the RDN attribute are
    /// refused, as on AD. Changing `member` updates the members' `memberOf` without touching
    /// their `uSNChanged` (AD behaviour: only the group changes).
    pub fn modify(&self, dn: &str, changes: impl IntoIterator<Item = Modification>) -> Result<u64> {
        let changes: Vec<Modification> = changes.into_iter().collect();
        self.write().modify(dn, &changes)
    }

    /// Makes `attribute` of the live entry at `dn` invisible to every reader, as AD shows an
    /// attribute the bound account may not read: absent from the entry and absent to filters
    /// (`(attr=*)` is false). No USN changes. For tests of accounts granted property sets
    /// instead of "Read all properties" (e.g. no `uSNCreated`).
    pub fn hide_attribute(&self, dn: &str, attribute: &str) -> Result<()> {
        let mut state = self.write();
        let order = state.live_entry(dn)?;
        if let Some(stored) = state.materialize(order) {
            stored.entry.remove(attribute);
        }
        Ok(())
    }

    /// Renames and/or moves an entry (same objectGUID, new DN); returns its new `uSNChanged`.
    /// Children move along without a USN change; DN references in links follow.
    pub fn rename(&self, dn: &str, new_dn: &str) -> Result<u64> {
        self.write().rename(dn, new_dn)
    }

    /// Deletes an entry the AD way: it becomes a tombstone
    /// `CN=<name>\0ADEL:<guid>,CN=Deleted Objects,<base>` with `isDeleted: TRUE`, keeping
    /// objectGUID, objectSid, objectClass, sAMAccountName (and a few system attributes) and
    /// dropping the rest. Returns the tombstone's `uSNChanged`. Non-leaf entries are refused.
    pub fn delete(&self, dn: &str) -> Result<u64> {
        self.write().delete(dn)
    }

    /// Restores a deleted object from the Recycle Bin (AD's `Restore-ADObject`): the
    /// tombstone with this objectGUID becomes a live object at `dn` again (its parent must
    /// exist) with the attributes it had before the delete, the same objectGUID, objectSid
    /// and `uSNCreated`, and a new `uSNChanged`. Its links come back where the other end is
    /// still alive: its own `member`/`manager` values, and its place in the groups (and
    /// reports) that listed it, each of which changes (a new `uSNChanged`), as a link value
    /// coming back is a change of the object holding the forward link. Returns the restored
    /// object's `uSNChanged`.
    pub fn restore(&self, guid: &Uuid, dn: &str) -> Result<u64> {
        self.write().restore(guid, dn)
    }

    /// The entry at this DN (a live entry, or a tombstone when given its tombstone DN).
    pub fn get(&self, dn: &str) -> Option<Entry> {
        let s = self.read();
        let order = s.locate(dn)?;
        s.entry_at(order).map(Cow::into_owned)
    }

    /// The entry (live or tombstone) with this objectGUID.
    pub fn find_by_guid(&self, guid: &Uuid) -> Option<Entry> {
        let bytes = encoding::guid_bytes(guid);
        let s = self.read();
        if let Some(found) = s
            .entries
            .values()
            .find(|st| st.entry.has_value("objectGUID", &bytes))
        {
            return Some(found.entry.clone());
        }
        let generated = s.generated.as_ref()?;
        let index = generated.index_of_guid(guid)?;
        s.entry_at(GEN_OFFSET + index).map(Cow::into_owned)
    }

    /// Live entries matching an RFC 4515 filter, subtree from the naming context.
    pub fn find(&self, filter: &str) -> Result<Vec<Entry>> {
        let base = self.base_dn();
        self.search(&base, Scope::Subtree, filter, false)
    }

    /// Entries matching an RFC 4515 filter under `base`; tombstones only with `include_deleted`.
    pub fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        include_deleted: bool,
    ) -> Result<Vec<Entry>> {
        let filter = filter::parse_filter(filter)?;
        let s = self.read();
        let result = s.scan(&ScanRequest {
            base,
            scope,
            filter: &filter,
            show_deleted: include_deleted,
            start: 0,
            limit: usize::MAX,
        })?;
        Ok(result.entries)
    }

    /// Number of live (non-tombstone) entries, generated ones included.
    pub fn len(&self) -> u64 {
        let s = self.read();
        let stored_live = s
            .entries
            .values()
            .filter(|st| !st.entry.is_deleted())
            .count();
        let generated = s.generated.as_ref().map_or(0, |g| {
            let masked = s.entries.range(GEN_OFFSET..GEN_OFFSET + g.count).count();
            g.count - u64::try_from(masked).unwrap_or(0)
        });
        u64::try_from(stored_live).unwrap_or(u64::MAX) + generated
    }

    /// Whether the directory holds no live entries (never true: the root always exists).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `msDS-User-Account-Control-Computed` value AD would construct for this entry now
    /// (0x10 locked out, 0x800000 password expired); `None` for non-users.
    pub fn computed_user_account_control(&self, entry: &Entry) -> Option<u32> {
        self.read().computed_uac(entry)
    }
}

impl State {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn usn(&self) -> u64 {
        self.usn
    }

    /// Reserves `count` USNs (for a generated base) and returns the first.
    pub(crate) fn reserve_usns(&mut self, count: u64) -> u64 {
        let first = self.usn + 1;
        self.usn += count;
        first
    }

    /// Reserves `count` RIDs and returns the first.
    pub(crate) fn reserve_rids(&mut self, count: u32) -> u32 {
        let first = self.next_rid;
        self.next_rid = self.next_rid.saturating_add(count);
        first
    }

    pub(crate) fn sid_for_rid(&self, rid: u32) -> Vec<u8> {
        let [a, b, c] = self.domain_sid;
        encoding::sid_bytes(5, &[21, a, b, c, rid])
    }

    /// Attaches a generated base; stored entries added afterwards sort after it.
    pub(crate) fn attach_generated(&mut self, generated: GeneratedUsers) {
        self.next_order = self.next_order.max(GEN_OFFSET + generated.count);
        self.generated = Some(generated);
    }

    fn create_skeleton(&mut self) {
        let base = self.base_dn.clone();
        let first_dc = dn::parse(&base)
            .ok()
            .and_then(|r| r.into_iter().next())
            .map(|r| r.value)
            .unwrap_or_default();
        let now = encoding::generalized_time(self.clock.epoch);
        let root = Entry::new(base.clone())
            .with("objectClass", ["top", "domain", "domainDNS"])
            .with("dc", [first_dc])
            .with("objectSid", [self.domain_sid_bytes()])
            .with(
                "objectCategory",
                [format!("CN=Domain-DNS,CN=Schema,CN=Configuration,{base}")],
            )
            .with("maxPwdAge", [Policy::stored(self.policy.max_password_age)])
            .with(
                "lockoutDuration",
                [Policy::stored(self.policy.lockout_duration)],
            )
            .with("lockoutThreshold", ["5"])
            .with("minPwdLength", ["7"])
            .with("pwdHistoryLength", ["24"])
            .with("msDS-Behavior-Version", ["7"])
            .with("nTMixedDomain", ["0"])
            .with("whenCreated", [now.clone()])
            .with("systemFlags", ["-1946157056"])
            .with("isCriticalSystemObject", ["TRUE"]);
        self.insert_prepared(root);
        let deleted = Entry::new(format!("CN=Deleted Objects,{base}"))
            .with("objectClass", ["top", "container"])
            .with("isDeleted", ["TRUE"])
            .with("showInAdvancedViewOnly", ["TRUE"])
            .with("systemFlags", ["-1946157056"])
            .with("isCriticalSystemObject", ["TRUE"])
            .with(
                "objectCategory",
                [format!("CN=Container,CN=Schema,CN=Configuration,{base}")],
            )
            .with("whenCreated", [now]);
        self.insert_prepared(deleted);
    }

    pub(crate) fn domain_sid_bytes(&self) -> Vec<u8> {
        let [a, b, c] = self.domain_sid;
        encoding::sid_bytes(5, &[21, a, b, c])
    }

    fn gen_range(&self) -> (u64, u64) {
        match &self.generated {
            Some(g) => (GEN_OFFSET, GEN_OFFSET + g.count),
            None => (GEN_OFFSET, GEN_OFFSET),
        }
    }

    /// The order key of the live entry or tombstone at `dn`.
    pub(crate) fn locate(&self, dn: &str) -> Option<u64> {
        let norm = dn::normalize(dn);
        self.locate_norm(&norm)
    }

    fn locate_norm(&self, norm: &str) -> Option<u64> {
        if let Some(&order) = self.by_dn.get(norm) {
            return Some(order);
        }
        let generated = self.generated.as_ref()?;
        let index = generated.index_of_norm(norm)?;
        let order = GEN_OFFSET + index;
        if self.entries.contains_key(&order) {
            None
        } else {
            Some(order)
        }
    }

    pub(crate) fn entry_at(&self, order: u64) -> Option<Cow<'_, Entry>> {
        if let Some(st) = self.entries.get(&order) {
            return Some(Cow::Borrowed(&st.entry));
        }
        let (start, end) = self.gen_range();
        if (start..end).contains(&order) {
            let generated = self.generated.as_ref()?;
            return Some(Cow::Owned(generated.entry(order - start)));
        }
        None
    }

    fn live_entry(&self, dn: &str) -> Result<u64> {
        let order = self
            .locate(dn)
            .ok_or_else(|| TestkitError::NoSuchObject(dn.to_string()))?;
        match self.entry_at(order) {
            Some(e) if !e.is_deleted() => Ok(order),
            _ => Err(TestkitError::NoSuchObject(dn.to_string())),
        }
    }

    /// Turns a generated entry into a stored one (first mutation of it).
    fn materialize(&mut self, order: u64) -> Option<&mut Stored> {
        if !self.entries.contains_key(&order) {
            let (start, end) = self.gen_range();
            if !(start..end).contains(&order) {
                return None;
            }
            let entry = self.generated.as_ref()?.entry(order - start);
            let norm = dn::normalize(entry.dn());
            self.by_dn.insert(norm.clone(), order);
            self.entries.insert(order, Stored { entry, norm });
        }
        self.entries.get_mut(&order)
    }

    fn next_usn(&mut self) -> u64 {
        self.usn += 1;
        self.usn
    }

    fn stamp_change(entry: &mut Entry, usn: u64, now: DateTime<Utc>) {
        entry.set("uSNChanged", [usn.to_string()]);
        entry.set("whenChanged", [encoding::generalized_time(now)]);
    }

    /// Inserts a prepared entry without validation (generators; `add` validates first).
    pub(crate) fn insert_prepared(&mut self, mut entry: Entry) -> u64 {
        let rdns = dn::parse(entry.dn()).unwrap_or_default();
        if let Some(rdn) = rdns.first() {
            entry.set("name", [rdn.value.clone()]);
            entry.set(&rdn.attr.to_ascii_lowercase(), [rdn.value.clone()]);
        }
        if entry.get("objectGUID").is_none() {
            let guid = self.rng.uuid();
            entry.set("objectGUID", [encoding::guid_bytes(&guid).to_vec()]);
        }
        let principal = ["user", "group", "computer"]
            .iter()
            .any(|c| entry.is_class(c));
        if principal && entry.get("objectSid").is_none() {
            let rid = self.reserve_rids(1);
            entry.set("objectSid", [self.sid_for_rid(rid)]);
        }
        entry.set_default("instanceType", ["4"]);
        let now = self.now();
        entry.set_default("whenCreated", [encoding::generalized_time(now)]);
        let created = entry
            .get("whenCreated")
            .map(<[Vec<u8>]>::to_vec)
            .unwrap_or_default();
        entry.set_default("whenChanged", created);
        let usn = self.next_usn();
        entry.set("uSNCreated", [usn.to_string()]);
        entry.set("uSNChanged", [usn.to_string()]);
        let norm = dn::normalize(entry.dn());
        let order = self.next_order;
        self.next_order += 1;
        let source = entry.dn().to_string();
        let links: Vec<(String, &'static str)> = LINKS
            .iter()
            .flat_map(|(fwd, back)| {
                entry
                    .strs(fwd)
                    .into_iter()
                    .map(move |target| (target, *back))
            })
            .collect();
        self.by_dn.insert(norm.clone(), order);
        self.entries.insert(order, Stored { entry, norm });
        for (target, back) in links {
            self.add_backlink(&target, back, &source);
        }
        usn
    }

    fn add(&mut self, entry: Entry) -> Result<u64> {
        let rdns = dn::parse(entry.dn())?;
        let Some(parent) = rdns.get(1..).filter(|p| !p.is_empty()) else {
            return Err(TestkitError::InvalidDn {
                dn: entry.dn().to_string(),
                reason: "cannot add a naming context root".into(),
            });
        };
        let dn_text = dn::render(&rdns);
        if self.locate(&dn_text).is_some() {
            return Err(TestkitError::EntryAlreadyExists(dn_text));
        }
        self.live_entry(&dn::render(parent))?;
        for attr in entry.attributes() {
            if is_backlink(&attr.name) {
                return Err(TestkitError::ConstraintViolation {
                    dn: dn_text,
                    reason: format!("{} is a backlink the directory maintains", attr.name),
                });
            }
        }
        for (fwd, _) in LINKS {
            for target in entry.strs(fwd) {
                if self.live_entry(&target).is_err() {
                    return Err(TestkitError::ConstraintViolation {
                        dn: dn_text,
                        reason: format!("{fwd} value {target:?} names no entry"),
                    });
                }
            }
        }
        let mut entry = entry;
        for system in ["uSNChanged", "uSNCreated", "distinguishedName", "isDeleted"] {
            entry.remove(system);
        }
        entry.set_dn(dn_text);
        Ok(self.insert_prepared(entry))
    }

    fn add_backlink(&mut self, target: &str, back: &str, source: &str) {
        let Some(order) = self.locate(target) else {
            return;
        };
        if let Some(st) = self.materialize(order) {
            // Backlink values are always written as the source's DN string, so an exact
            // comparison finds an earlier copy (normalizing every value would make adding
            // N members O(N^2)).
            let present = st.entry.has_value(back, source.as_bytes());
            if !present {
                st.entry.push_value(back, source.as_bytes().to_vec());
            }
        }
    }

    fn remove_value_dn(&mut self, target: &str, attr: &str, value_dn: &str) {
        let Some(order) = self.locate(target) else {
            return;
        };
        let norm = dn::normalize(value_dn);
        if let Some(st) = self.entries.get_mut(&order) {
            st.entry
                .retain_values(attr, |v| dn::normalize(&String::from_utf8_lossy(v)) != norm);
        }
    }

    pub(crate) fn modify(&mut self, dn_text: &str, changes: &[Modification]) -> Result<u64> {
        let order = self.live_entry(dn_text)?;
        let current = self
            .entry_at(order)
            .map(Cow::into_owned)
            .ok_or_else(|| TestkitError::NoSuchObject(dn_text.to_string()))?;
        let rdn_attr = dn::parse(current.dn())
            .ok()
            .and_then(|r| r.into_iter().next())
            .map(|r| r.attr)
            .unwrap_or_default();
        let violation = |reason: String| TestkitError::ConstraintViolation {
            dn: current.dn().to_string(),
            reason,
        };
        let mut updated = current.clone();
        for change in changes {
            let attr = change.attribute();
            if is_backlink(attr) {
                return Err(violation(format!(
                    "{attr} is a backlink: change the forward link instead"
                )));
            }
            if SYSTEM_ATTRIBUTES
                .iter()
                .any(|s| s.eq_ignore_ascii_case(attr))
            {
                return Err(violation(format!("{attr} is maintained by the directory")));
            }
            if attr.eq_ignore_ascii_case(&rdn_attr) {
                return Err(violation(format!(
                    "{attr} is the RDN attribute: rename the entry instead"
                )));
            }
            let is_dn = LINKS.iter().any(|(f, _)| f.eq_ignore_ascii_case(attr));
            let same = |a: &[u8], b: &[u8]| {
                if is_dn {
                    dn::normalize(&String::from_utf8_lossy(a))
                        == dn::normalize(&String::from_utf8_lossy(b))
                } else {
                    a == b
                }
            };
            match change {
                Modification::Replace(name, values) => updated.set(name, values.clone()),
                Modification::Add(name, values) => {
                    for value in values {
                        let exists = updated
                            .get(name)
                            .is_some_and(|vals| vals.iter().any(|v| same(v, value)));
                        if exists {
                            return Err(TestkitError::AttributeOrValueExists {
                                dn: current.dn().to_string(),
                                attribute: name.clone(),
                            });
                        }
                        updated.push_value(name, value.clone());
                    }
                }
                Modification::Delete(name, values) => {
                    let no_such = || TestkitError::NoSuchAttribute {
                        dn: current.dn().to_string(),
                        attribute: name.clone(),
                    };
                    if values.is_empty() {
                        updated.remove(name).ok_or_else(no_such)?;
                    } else {
                        for value in values {
                            let exists = updated
                                .get(name)
                                .is_some_and(|vals| vals.iter().any(|v| same(v, value)));
                            if !exists {
                                return Err(no_such());
                            }
                            updated.retain_values(name, |v| !same(v, value));
                        }
                    }
                }
            }
        }
        // Link diffs, validated before anything is written.
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for (fwd, back) in LINKS {
            let before: Vec<String> = current.strs(fwd);
            let after: Vec<String> = updated.strs(fwd);
            let before_norm: Vec<String> = before.iter().map(|d| dn::normalize(d)).collect();
            let after_norm: Vec<String> = after.iter().map(|d| dn::normalize(d)).collect();
            let before_set: HashSet<&String> = before_norm.iter().collect();
            let after_set: HashSet<&String> = after_norm.iter().collect();
            for (target, norm) in after.iter().zip(&after_norm) {
                if !before_set.contains(norm) {
                    if self.live_entry(target).is_err() {
                        return Err(violation(format!("{fwd} value {target:?} names no entry")));
                    }
                    added.push((target.clone(), *back));
                }
            }
            for (target, norm) in before.iter().zip(&before_norm) {
                if !after_set.contains(norm) {
                    removed.push((target.clone(), *back));
                }
            }
        }
        let usn = self.next_usn();
        let now = self.now();
        Self::stamp_change(&mut updated, usn, now);
        let source = updated.dn().to_string();
        if dn::normalize(&source) == self.base_norm {
            self.policy = Policy::from_domain_head(&updated);
        }
        if let Some(st) = self.materialize(order) {
            st.entry = updated;
        }
        for (target, back) in added {
            self.add_backlink(&target, back, &source);
        }
        for (target, back) in removed {
            self.remove_value_dn(&target, back, &source);
        }
        Ok(usn)
    }

    fn has_children(&self, norm: &str) -> bool {
        if let Some(g) = &self.generated
            && g.count > 0
            && g.container_norm() == norm
        {
            return true;
        }
        self.entries
            .values()
            .any(|st| dn::parent_of_normalized(&st.norm) == norm)
    }

    fn rename(&mut self, old_dn: &str, new_dn: &str) -> Result<u64> {
        let order = self.live_entry(old_dn)?;
        let new_rdns = dn::parse(new_dn)?;
        let Some((new_rdn, new_parent)) = new_rdns.split_first() else {
            return Err(TestkitError::InvalidDn {
                dn: new_dn.to_string(),
                reason: "empty DN".into(),
            });
        };
        let new_text = dn::render(&new_rdns);
        let new_norm = dn::normalize(&new_text);
        let current_dn = self
            .entry_at(order)
            .map(|e| e.dn().to_string())
            .unwrap_or_default();
        let old_norm = dn::normalize(&current_dn);
        if old_norm == self.base_norm {
            return Err(TestkitError::ConstraintViolation {
                dn: current_dn,
                reason: "the naming context root cannot be renamed".into(),
            });
        }
        if new_norm != old_norm && self.locate_norm(&new_norm).is_some() {
            return Err(TestkitError::EntryAlreadyExists(new_text));
        }
        if dn::is_within(&new_norm, &old_norm) && new_norm != old_norm {
            return Err(TestkitError::ConstraintViolation {
                dn: current_dn,
                reason: "cannot move an entry below itself".into(),
            });
        }
        self.live_entry(&dn::render(new_parent))?;
        if let Some(g) = &self.generated
            && dn::is_within(g.container_norm(), &old_norm)
        {
            return Err(TestkitError::ConstraintViolation {
                dn: current_dn,
                reason: "the generated users' container cannot move".into(),
            });
        }
        // The entry itself.
        let usn = self.next_usn();
        let now = self.now();
        let Some(st) = self.materialize(order) else {
            return Err(TestkitError::NoSuchObject(old_dn.to_string()));
        };
        let old_rdn_attr = dn::parse(&current_dn)
            .ok()
            .and_then(|r| r.into_iter().next())
            .map(|r| r.attr)
            .unwrap_or_default();
        if !old_rdn_attr.eq_ignore_ascii_case(&new_rdn.attr) {
            st.entry.remove(&old_rdn_attr);
        }
        st.entry
            .set(&new_rdn.attr.to_ascii_lowercase(), [new_rdn.value.clone()]);
        st.entry.set("name", [new_rdn.value.clone()]);
        st.entry.set_dn(new_text.clone());
        st.norm = new_norm.clone();
        Self::stamp_change(&mut st.entry, usn, now);
        self.by_dn.remove(&old_norm);
        self.by_dn.insert(new_norm, order);
        // Descendants move without a USN change.
        let descendants: Vec<u64> = self
            .entries
            .iter()
            .filter(|(o, st)| **o != order && dn::is_within(&st.norm, &old_norm))
            .map(|(o, _)| *o)
            .collect();
        for child in descendants {
            if let Some(st) = self.entries.get_mut(&child)
                && let Some(moved) = dn::rebase(st.entry.dn(), &current_dn, &new_text)
            {
                let moved_norm = dn::normalize(&moved);
                self.by_dn.remove(&st.norm);
                self.by_dn.insert(moved_norm.clone(), child);
                st.entry.set_dn(moved);
                st.norm = moved_norm;
            }
        }
        // DN references follow (no USN change on the referencing entries, as in AD), also
        // in the Recycle Bin's copies.
        let stored = self.entries.values_mut().map(|st| &mut st.entry);
        for entry in stored.chain(self.recycle_bin.values_mut()) {
            for (fwd, back) in LINKS {
                for attr in [*fwd, *back] {
                    let Some(values) = entry.get(attr) else {
                        continue;
                    };
                    let rewritten: Vec<Vec<u8>> = values
                        .iter()
                        .map(|v| {
                            let text = String::from_utf8_lossy(v);
                            if dn::is_within(&dn::normalize(&text), &old_norm) {
                                dn::rebase(&text, &current_dn, &new_text)
                                    .map_or_else(|| v.clone(), String::into_bytes)
                            } else {
                                v.clone()
                            }
                        })
                        .collect();
                    entry.set(attr, rewritten);
                }
            }
        }
        Ok(usn)
    }

    fn delete(&mut self, dn_text: &str) -> Result<u64> {
        let order = self.live_entry(dn_text)?;
        let current = self
            .entry_at(order)
            .map(Cow::into_owned)
            .ok_or_else(|| TestkitError::NoSuchObject(dn_text.to_string()))?;
        let norm = dn::normalize(current.dn());
        if norm == self.base_norm {
            return Err(TestkitError::ConstraintViolation {
                dn: current.dn().to_string(),
                reason: "the naming context root cannot be deleted".into(),
            });
        }
        if self.has_children(&norm) {
            return Err(TestkitError::NotAllowedOnNonLeaf(current.dn().to_string()));
        }
        self.recycle_bin.insert(order, current.clone());
        // Links go away with the object.
        let source = current.dn().to_string();
        for (fwd, back) in LINKS {
            for target in current.strs(fwd) {
                self.remove_value_dn(&target, back, &source);
            }
            for referrer in current.strs(back) {
                self.remove_value_dn(&referrer, fwd, &source);
            }
        }
        let rdns = dn::parse(current.dn()).unwrap_or_default();
        let (rdn_attr, rdn_value) = rdns
            .first()
            .map(|r| (r.attr.clone(), r.value.clone()))
            .unwrap_or_else(|| ("CN".into(), "unknown".into()));
        let parent = rdns.get(1..).map(dn::render).unwrap_or_default();
        let guid = current
            .get("objectGUID")
            .and_then(|v| v.first())
            .and_then(|v| encoding::guid_from_bytes(v))
            .unwrap_or_default();
        let tomb_value = format!("{rdn_value}\nDEL:{guid}");
        let mut tomb_rdns = vec![
            Rdn {
                attr: rdn_attr.clone(),
                value: tomb_value.clone(),
            },
            Rdn {
                attr: "CN".into(),
                value: "Deleted Objects".into(),
            },
        ];
        tomb_rdns.extend(dn::parse(&self.base_dn).unwrap_or_default());
        let tomb_dn = dn::render(&tomb_rdns);
        let mut tomb = Entry::new(tomb_dn.clone());
        for keep in [
            "objectClass",
            "objectGUID",
            "objectSid",
            "sIDHistory",
            "sAMAccountName",
            "uSNCreated",
            "whenCreated",
            "instanceType",
        ] {
            if let Some(attr) = current.attribute(keep) {
                tomb.set(&attr.name, attr.values.clone());
            }
        }
        tomb.set(&rdn_attr.to_ascii_lowercase(), [tomb_value.clone()]);
        tomb.set("name", [tomb_value]);
        tomb.set("isDeleted", ["TRUE"]);
        tomb.set("isRecycled", ["TRUE"]);
        tomb.set("lastKnownParent", [parent]);
        let usn = self.next_usn();
        let now = self.now();
        Self::stamp_change(&mut tomb, usn, now);
        let tomb_norm = dn::normalize(&tomb_dn);
        if let Some(st) = self.materialize(order) {
            st.entry = tomb;
            st.norm = tomb_norm.clone();
        }
        self.by_dn.remove(&norm);
        self.by_dn.insert(tomb_norm, order);
        Ok(usn)
    }

    fn restore(&mut self, guid: &Uuid, new_dn: &str) -> Result<u64> {
        let bytes = encoding::guid_bytes(guid);
        let order = self
            .entries
            .iter()
            .find(|(_, st)| st.entry.is_deleted() && st.entry.has_value("objectGUID", &bytes))
            .map(|(order, _)| *order)
            .ok_or_else(|| TestkitError::NoSuchObject(format!("<GUID={guid}>")))?;
        let mut entry = self.recycle_bin.get(&order).cloned().ok_or_else(|| {
            TestkitError::ConstraintViolation {
                dn: format!("<GUID={guid}>"),
                reason: "not in the Recycle Bin: only a deleted object can be restored".into(),
            }
        })?;
        let rdns = dn::parse(new_dn)?;
        let Some((rdn, parent)) = rdns.split_first() else {
            return Err(TestkitError::InvalidDn {
                dn: new_dn.to_string(),
                reason: "empty DN".into(),
            });
        };
        let new_text = dn::render(&rdns);
        let new_norm = dn::normalize(&new_text);
        if self.locate_norm(&new_norm).is_some() {
            return Err(TestkitError::EntryAlreadyExists(new_text));
        }
        self.live_entry(&dn::render(parent))?;
        let old_rdn_attr = dn::parse(entry.dn())
            .ok()
            .and_then(|r| r.into_iter().next())
            .map(|r| r.attr)
            .unwrap_or_default();
        if !old_rdn_attr.eq_ignore_ascii_case(&rdn.attr) {
            entry.remove(&old_rdn_attr);
        }
        entry.set(&rdn.attr.to_ascii_lowercase(), [rdn.value.clone()]);
        entry.set("name", [rdn.value.clone()]);
        entry.set_dn(new_text.clone());
        // Links whose other end is still alive come back; the others are gone for good.
        let mut forward = Vec::new();
        let mut referrers = Vec::new();
        for (fwd, back) in LINKS {
            let targets: Vec<String> = entry
                .strs(fwd)
                .into_iter()
                .filter(|target| self.live_entry(target).is_ok())
                .collect();
            entry.set(fwd, targets.iter().map(String::as_str));
            forward.extend(targets.into_iter().map(|target| (target, *back)));
            for referrer in entry.strs(back) {
                if self.live_entry(&referrer).is_ok() {
                    referrers.push((referrer, *fwd, *back));
                }
            }
            entry.remove(back);
        }
        let usn = self.next_usn();
        let now = self.now();
        Self::stamp_change(&mut entry, usn, now);
        let Some(st) = self.entries.get_mut(&order) else {
            return Err(TestkitError::NoSuchObject(format!("<GUID={guid}>")));
        };
        let tomb_norm = std::mem::replace(&mut st.norm, new_norm.clone());
        st.entry = entry;
        self.by_dn.remove(&tomb_norm);
        self.by_dn.insert(new_norm, order);
        self.recycle_bin.remove(&order);
        for (target, back) in forward {
            self.add_backlink(&target, back, &new_text);
        }
        for (referrer, fwd, back) in referrers {
            let Some(at) = self.locate(&referrer) else {
                continue;
            };
            let changed = self.next_usn();
            if let Some(st) = self.materialize(at) {
                st.entry.push_value(fwd, new_text.clone().into_bytes());
                Self::stamp_change(&mut st.entry, changed, now);
            }
            let holder = self
                .entry_at(at)
                .map(|e| e.dn().to_string())
                .unwrap_or(referrer);
            self.add_backlink(&new_text, back, &holder);
        }
        Ok(usn)
    }

    /// `msDS-User-Account-Control-Computed` for a user entry.
    pub(crate) fn computed_uac(&self, entry: &Entry) -> Option<u32> {
        if !entry.is_class("user") || entry.is_deleted() {
            return None;
        }
        let now = encoding::filetime(self.now());
        let uac = entry.first_i64("userAccountControl").unwrap_or(0);
        let mut flags = 0u32;
        let lockout = entry.first_i64("lockoutTime").unwrap_or(0);
        if lockout > 0 {
            let locked = match self.policy.lockout_duration {
                None => true,
                Some(d) => now < lockout.saturating_add(d),
            };
            if locked {
                flags |= 0x10;
            }
        }
        let never_expires = uac & 0x10000 != 0;
        if !never_expires {
            let last_set = entry.first_i64("pwdLastSet").unwrap_or(0);
            let too_old = self
                .policy
                .max_password_age
                .is_some_and(|max_age| now.saturating_sub(last_set) > max_age);
            if last_set == 0 || too_old {
                flags |= 0x0080_0000;
            }
        }
        Some(flags)
    }

    /// One page of matching entries in a stable order, starting at order key `start`.
    pub(crate) fn scan(&self, req: &ScanRequest<'_>) -> Result<ScanResult> {
        let base_norm = dn::normalize(req.base);
        let base_order = self
            .locate_norm(&base_norm)
            .ok_or_else(|| TestkitError::NoSuchObject(req.base.to_string()))?;
        let base_entry = self
            .entry_at(base_order)
            .ok_or_else(|| TestkitError::NoSuchObject(req.base.to_string()))?;
        if base_entry.is_deleted() && !req.show_deleted {
            return Err(TestkitError::NoSuchObject(req.base.to_string()));
        }
        let mut out = Vec::new();
        let mut next = None;
        let limit = req.limit;
        let mut consider = |order: u64, entry: Cow<'_, Entry>| -> bool {
            if entry.is_deleted() && !req.show_deleted {
                return false;
            }
            if filter::evaluate(req.filter, &entry, self) != Tri::True {
                return false;
            }
            if out.len() >= limit {
                next = Some(order);
                return true;
            }
            out.push(entry.into_owned());
            false
        };
        let base_is_generated_leaf = !self.entries.contains_key(&base_order)
            && (GEN_OFFSET..GEN_OFFSET + self.generated.as_ref().map_or(0, |g| g.count))
                .contains(&base_order);
        match req.scope {
            Scope::Base => {
                if req.start <= base_order {
                    consider(base_order, base_entry);
                }
            }
            _ if base_is_generated_leaf => {
                if req.scope == Scope::Subtree && req.start <= base_order {
                    consider(base_order, base_entry);
                }
            }
            scope => {
                drop(base_entry);
                let in_scope = |norm: &str| match scope {
                    Scope::OneLevel => dn::parent_of_normalized(norm) == base_norm,
                    Scope::Subtree => dn::is_within(norm, &base_norm),
                    Scope::Children => norm != base_norm && dn::is_within(norm, &base_norm),
                    Scope::Base => norm == base_norm,
                };
                let (gen_start, gen_end) = self.gen_range();
                // Generated users not yet materialized are computed only when the filter
                // can match one of them (as a DC answers `objectCategory=group` from an index
                // without reading every user).
                let generated_in_scope = self.generated.as_ref().is_some_and(|g| {
                    g.may_match(req.filter) && in_scope(&format!("cn=x,{}", g.container_norm()))
                });
                let mut stopped = false;
                for (order, st) in self.entries.range(req.start..gen_start.max(req.start)) {
                    if in_scope(&st.norm) && consider(*order, Cow::Borrowed(&st.entry)) {
                        stopped = true;
                        break;
                    }
                }
                if !stopped && gen_end > gen_start {
                    let from = req.start.max(gen_start);
                    if generated_in_scope {
                        if let Some(g) = &self.generated {
                            // Generated users not yet materialized have uSNChanged
                            // `first_usn + index`: a `uSNChanged>=N` filter (a delta sync)
                            // skips them without generating anything.
                            let floor = usn_floor(req.filter)
                                .map_or(gen_start, |n| gen_start + g.index_at_usn(n));
                            let skip_end = floor.clamp(from, gen_end);
                            for (order, st) in self.entries.range(from..skip_end) {
                                if in_scope(&st.norm) && consider(*order, Cow::Borrowed(&st.entry))
                                {
                                    stopped = true;
                                    break;
                                }
                            }
                            let from = if stopped { gen_end } else { skip_end };
                            let by_account = GeneratedUsers::account_view_decides(req.filter);
                            for order in from..gen_end {
                                let hit = match self.entries.get(&order) {
                                    Some(st) => {
                                        in_scope(&st.norm)
                                            && consider(order, Cow::Borrowed(&st.entry))
                                    }
                                    None if by_account
                                        && filter::evaluate_alone(
                                            req.filter,
                                            &g.account_view(order - gen_start),
                                        ) != Tri::True =>
                                    {
                                        false
                                    }
                                    None => consider(order, Cow::Owned(g.entry(order - gen_start))),
                                };
                                if hit {
                                    stopped = true;
                                    break;
                                }
                            }
                        }
                    } else {
                        for (order, st) in self.entries.range(from..gen_end.max(from)) {
                            if in_scope(&st.norm) && consider(*order, Cow::Borrowed(&st.entry)) {
                                stopped = true;
                                break;
                            }
                        }
                    }
                }
                if !stopped {
                    for (order, st) in self.entries.range(req.start.max(gen_end)..) {
                        if in_scope(&st.norm) && consider(*order, Cow::Borrowed(&st.entry)) {
                            break;
                        }
                    }
                }
            }
        }
        Ok(ScanResult { entries: out, next })
    }
}

impl Resolver for State {
    fn values_of(&self, dn: &str, attr: &str) -> Option<Vec<Vec<u8>>> {
        let order = self.locate(dn)?;
        let entry = self.entry_at(order)?;
        if entry.is_deleted() {
            return None;
        }
        Some(entry.get(attr).map(<[Vec<u8>]>::to_vec).unwrap_or_default())
    }
}

/// The lowest `uSNChanged` a filter requires (`uSNChanged>=N`, alone or in a top-level AND).
fn usn_floor(filter: &LdapFilter) -> Option<u64> {
    match filter {
        LdapFilter::GreaterOrEqual(attr, value) if attr.eq_ignore_ascii_case("uSNChanged") => {
            value.trim().parse().ok()
        }
        LdapFilter::And(items) => items.iter().filter_map(usn_floor).max(),
        _ => None,
    }
}

fn is_backlink(attr: &str) -> bool {
    LINKS
        .iter()
        .any(|(_, back)| back.eq_ignore_ascii_case(attr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "DC=corp,DC=example,DC=test";

    fn dir() -> Directory {
        let d = Directory::new(BASE).unwrap();
        d.add(
            Entry::new(format!("OU=People,{BASE}"))
                .with("objectClass", ["top", "organizationalUnit"]),
        )
        .unwrap();
        for name in ["Alice", "Bob"] {
            d.add(
                Entry::new(format!("CN={name},OU=People,{BASE}"))
                    .with(
                        "objectClass",
                        ["top", "person", "organizationalPerson", "user"],
                    )
                    .with("sAMAccountName", [name.to_lowercase()]),
            )
            .unwrap();
        }
        d.add(
            Entry::new(format!("CN=Team,OU=People,{BASE}"))
                .with("objectClass", ["top", "group"])
                .with("member", [format!("CN=Alice,OU=People,{BASE}")]),
        )
        .unwrap();
        d
    }

    #[test]
    fn add_assigns_usn_guid_sid_and_backlinks() {
        let d = dir();
        let alice = d.get(&format!("cn=alice,ou=people,{BASE}")).unwrap();
        assert_eq!(alice.first_str("name").unwrap(), "Alice");
        assert_eq!(alice.get("objectGUID").unwrap()[0].len(), 16);
        let sid = encoding::sid_to_string(&alice.get("objectSid").unwrap()[0]).unwrap();
        assert!(sid.starts_with(&d.domain_sid()));
        assert_eq!(
            alice.strs("memberOf"),
            vec![format!("CN=Team,OU=People,{BASE}")]
        );
        let usn = alice.first_i64("uSNChanged").unwrap();
        assert!(usn > 12_000);
        assert!(d.highest_committed_usn() >= u64::try_from(usn).unwrap());
        assert!(matches!(
            d.add(Entry::new(format!("CN=Alice,OU=People,{BASE}"))),
            Err(TestkitError::EntryAlreadyExists(_))
        ));
        assert!(matches!(
            d.add(Entry::new(format!("CN=X,OU=Nowhere,{BASE}"))),
            Err(TestkitError::NoSuchObject(_))
        ));
    }

    #[test]
    fn membership_change_touches_only_the_group() {
        let d = dir();
        let bob_dn = format!("CN=Bob,OU=People,{BASE}");
        let bob_usn = d.get(&bob_dn).unwrap().first_i64("uSNChanged");
        let usn = d
            .modify(
                &format!("CN=Team,OU=People,{BASE}"),
                [Modification::add("member", [bob_dn.clone()])],
            )
            .unwrap();
        let bob = d.get(&bob_dn).unwrap();
        assert_eq!(bob.first_i64("uSNChanged"), bob_usn);
        assert_eq!(bob.strs("memberOf").len(), 1);
        let team = d.get(&format!("CN=Team,OU=People,{BASE}")).unwrap();
        assert_eq!(
            team.first_i64("uSNChanged"),
            Some(i64::try_from(usn).unwrap())
        );
        assert!(
            d.modify(&bob_dn, [Modification::replace("memberOf", ["x"])])
                .is_err()
        );
        assert!(
            d.modify(&bob_dn, [Modification::replace("cn", ["Robert"])])
                .is_err()
        );
    }

    #[test]
    fn rename_keeps_guid_and_updates_links() {
        let d = dir();
        let old = format!("CN=Alice,OU=People,{BASE}");
        let guid = d.get(&old).unwrap().get("objectGUID").unwrap()[0].clone();
        d.add(Entry::new(format!("OU=Moved,{BASE}")).with("objectClass", ["organizationalUnit"]))
            .unwrap();
        let new = format!("CN=Alice Smith,OU=Moved,{BASE}");
        d.rename(&old, &new).unwrap();
        assert!(d.get(&old).is_none());
        let e = d.get(&new).unwrap();
        assert_eq!(e.get("objectGUID").unwrap()[0], guid);
        assert_eq!(e.first_str("cn").unwrap(), "Alice Smith");
        let team = d.get(&format!("CN=Team,OU=People,{BASE}")).unwrap();
        assert_eq!(team.strs("member"), vec![new.clone()]);
        // Moving an OU moves its children.
        d.rename(
            &format!("OU=Moved,{BASE}"),
            &format!("OU=Moved2,OU=People,{BASE}"),
        )
        .unwrap();
        assert!(
            d.get(&format!("CN=Alice Smith,OU=Moved2,OU=People,{BASE}"))
                .is_some()
        );
    }

    #[test]
    fn delete_makes_a_tombstone() {
        let d = dir();
        let alice = format!("CN=Alice,OU=People,{BASE}");
        let before = d.get(&alice).unwrap();
        let guid = encoding::guid_from_bytes(&before.get("objectGUID").unwrap()[0]).unwrap();
        let usn = d.delete(&alice).unwrap();
        assert!(d.get(&alice).is_none());
        let tomb = d.find_by_guid(&guid).unwrap();
        assert!(tomb.is_deleted());
        assert_eq!(
            tomb.dn(),
            format!("CN=Alice\\0ADEL:{guid},CN=Deleted Objects,{BASE}")
        );
        assert!(tomb.get("objectCategory").is_none());
        assert_eq!(tomb.get("objectSid"), before.get("objectSid"));
        assert_eq!(
            tomb.first_i64("uSNChanged"),
            Some(i64::try_from(usn).unwrap())
        );
        let team = d.get(&format!("CN=Team,OU=People,{BASE}")).unwrap();
        assert!(team.get("member").is_none());
        assert!(d.find("(isDeleted=TRUE)").unwrap().is_empty());
        let with_deleted = d
            .search(
                BASE,
                Scope::Subtree,
                "(&(isDeleted=TRUE)(objectClass=user))",
                true,
            )
            .unwrap();
        assert_eq!(with_deleted.len(), 1);
        assert!(matches!(
            d.delete(&format!("OU=People,{BASE}")),
            Err(TestkitError::NotAllowedOnNonLeaf(_))
        ));
    }

    #[test]
    fn in_chain_rule_follows_nesting() {
        let d = dir();
        d.add(
            Entry::new(format!("CN=Outer,{BASE}"))
                .with("objectClass", ["group"])
                .with("member", [format!("CN=Team,OU=People,{BASE}")]),
        )
        .unwrap();
        let hits = d
            .find(&format!(
                "(memberOf:1.2.840.113556.1.4.1941:=CN=Outer,{BASE})"
            ))
            .unwrap();
        let names: Vec<String> = hits.iter().filter_map(|e| e.first_str("name")).collect();
        assert_eq!(names, vec!["Alice".to_string(), "Team".to_string()]);
    }

    #[test]
    fn scopes() {
        let d = dir();
        let one = d
            .search(
                &format!("OU=People,{BASE}"),
                Scope::OneLevel,
                "(objectClass=*)",
                false,
            )
            .unwrap();
        assert_eq!(one.len(), 3);
        let base = d
            .search(
                &format!("OU=People,{BASE}"),
                Scope::Base,
                "(objectClass=*)",
                false,
            )
            .unwrap();
        assert_eq!(base.len(), 1);
        let sub = d.find("(objectClass=*)").unwrap();
        assert_eq!(sub.len(), 5); // root, OU, 2 users, group (Deleted Objects hidden)
        assert!(
            d.search(
                "OU=Nope,DC=corp,DC=example,DC=test",
                Scope::Subtree,
                "(a=*)",
                false
            )
            .is_err()
        );
    }

    #[test]
    fn computed_flags() {
        let d = dir();
        let mut e = Entry::new("CN=x")
            .with("objectClass", ["user"])
            .with("userAccountControl", ["512"])
            .with("pwdLastSet", [encoding::filetime(d.now()).to_string()]);
        assert_eq!(d.computed_user_account_control(&e), Some(0));
        e.set("lockoutTime", ["133537680000000000"]);
        assert_eq!(d.computed_user_account_control(&e), Some(0x10));
        e.set("pwdLastSet", ["0"]);
        assert_eq!(d.computed_user_account_control(&e), Some(0x80_0010));
        e.set("userAccountControl", ["66048"]);
        assert_eq!(d.computed_user_account_control(&e), Some(0x10));
    }

    #[test]
    fn computed_flags_follow_the_policy_and_the_advanced_clock() {
        let d = dir();
        let now = d.now();
        let mut e = Entry::new("CN=x")
            .with("objectClass", ["user"])
            .with("userAccountControl", ["512"])
            .with(
                "pwdLastSet",
                [encoding::filetime(now - chrono::Duration::days(41)).to_string()],
            )
            .with(
                "lockoutTime",
                [encoding::filetime(now - chrono::Duration::minutes(10)).to_string()],
            );
        // Default: 42-day passwords, lockouts until unlocked.
        assert_eq!(d.computed_user_account_control(&e), Some(0x10));
        d.set_password_policy(
            Some(chrono::Duration::days(42)),
            Some(chrono::Duration::minutes(30)),
        )
        .unwrap();
        let head = d.get(BASE).unwrap();
        assert_eq!(head.first_i64("lockoutDuration"), Some(-18_000_000_000));
        assert_eq!(d.computed_user_account_control(&e), Some(0x10));
        d.advance_clock(chrono::Duration::minutes(21));
        assert_eq!(d.computed_user_account_control(&e), Some(0));
        d.advance_clock(chrono::Duration::days(1));
        assert_eq!(d.computed_user_account_control(&e), Some(0x80_0000));
        // maxPwdAge "never" (written directly, as an administrator would).
        d.modify(
            BASE,
            [Modification::replace("maxPwdAge", [i64::MIN.to_string()])],
        )
        .unwrap();
        assert_eq!(d.computed_user_account_control(&e), Some(0));
        e.set("pwdLastSet", ["0"]);
        assert_eq!(d.computed_user_account_control(&e), Some(0x80_0000));
    }
}
