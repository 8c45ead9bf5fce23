//! Deterministic simulation: the real engine, the real LDAP source against the in-process
//! directory (ad-testkit), a fake platform, over seeded random histories of directory
//! changes, time passing, directory faults, platform faults and crashes.
//!
//! After every cycle it checks:
//! (a) after a clean cycle, the platform holds exactly the directory (every mapped field,
//!     through the content hash of a fresh read);
//! (b) no object alive in the directory is ever deleted on the platform;
//! (c) the checkpoint never passes a change that is not on the platform, unless it is
//!     recorded as skipped or quarantined;
//! (d) after faults and crashes, clean cycles converge to (a);
//! (e) re-sends after a crash or failure are at most one batch per in-flight slot, and none
//!     after a clean cycle.
//!
//! `SIM_SEED=<n>` replays one scenario (printed on failure); `SIM_SCENARIOS=<n>` sets how
//! many the test runs (default 2,000 split over two tests); `SIM_FIRST_SEED` where they start;
//! `SIM_CLASSES` which kinds of history of the grown world (issue 22) the seeds may draw
//! (see [`Classes`]); `SIM_HISTORY=1` prints every scenario's history, passed or not.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ad_model::{Guid, ObjectKind};
use ad_source::{Source, SourceConfig, SourceEvent};
use ad_sync::{CycleRequest, DeleteGuard, Engine, EngineOptions, Observer, Store};
use ad_testkit::{
    Company, CompanyOptions, Directory, DropAfter, Entry, FailureCode, FaultOptions, Malformation,
    Modification, PageFault, PageFaultKind, SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD,
    SERVICE_ACCOUNT_UPN, SearchFailure, ServerOptions, TestServer, dn_within,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::platform::{Fault, Platform};

/// Cycles per scenario before the convergence cycles.
const STEPS: usize = 5;

/// The kinds of history the simulation's world grew by (issue 22), each of which can be
/// turned off to bisect a failure: `SIM_CLASSES=all` (every class), `none` (the world before
/// issue 22, histories as they were; the default for now, see [`Classes::default_set`]), a
/// comma-separated list of names, or `all` minus some
/// (`all,-lag`, or just `-lag`). Names:
/// - `ou`: organizational units renamed and moved (their children keep their uSNChanged),
///   into and out of the scope;
/// - `scope`: an OU-scoped `base_dn` (OU=People) in a third of the seeds, spelled in one of
///   several valid ways; users moved out of it (OU=Disabled) and back, and added to and
///   removed from Domain Admins, which lives outside it;
/// - `groups`: groups deleted (members, nesting and privilege included), renamed, moved
///   between containers, and created;
/// - `affected`: in a third of the seeds the platform asks for affected users
///   (`needs_affected_users`, Sekoia-like) and applies the users it receives in group changes;
/// - `skew`: in half the seeds the host's clock is a few minutes ahead of or behind the DC's;
///   lockouts and expiries that end within minutes, and small clock steps;
/// - `lag`: the second DC is a replica that receives the first's changes only when it
///   replicates (at random steps); failover to it and failback;
/// - `restore`: deleted users and groups restored from the Recycle Bin with their objectGUID.
///
/// Seeds are assigned their scope, platform and skew by seed (not by the random history).
/// The regression seeds keep the world they were found in (every class off).
#[derive(Debug, Clone, Copy, Default)]
struct Classes {
    ou: bool,
    scope: bool,
    groups: bool,
    affected: bool,
    skew: bool,
    lag: bool,
    restore: bool,
}

impl Classes {
    const NAMES: [&'static str; 7] = [
        "ou", "scope", "groups", "affected", "skew", "lag", "restore",
    ];

    fn all() -> Classes {
        Classes {
            ou: true,
            scope: true,
            groups: true,
            affected: true,
            skew: true,
            lag: true,
            restore: true,
        }
    }

    fn flag(&mut self, name: &str) -> &mut bool {
        match name {
            "ou" => &mut self.ou,
            "scope" => &mut self.scope,
            "groups" => &mut self.groups,
            "affected" => &mut self.affected,
            "skew" => &mut self.skew,
            "lag" => &mut self.lag,
            "restore" => &mut self.restore,
            other => panic!(
                "SIM_CLASSES: unknown class {other:?}; the classes are {:?}, `all` and `none`",
                Classes::NAMES
            ),
        }
    }

    /// Without `SIM_CLASSES`: the world before issue 22, which CI holds. The grown world
    /// runs with `SIM_CLASSES=all,-lag` (2,000 seeds pass, except that seed 1622 — a full
    /// sync on three connections with one dropped — sometimes fails a cycle with "paged
    /// results cookie is not valid for this connection and search", depending on timing)
    /// and `SIM_CLASSES=all` (`lag` seeds 83, 135, 176 and 191 end with a stale record).
    /// Open in issue 22's note; make `all` the default once they pass.
    fn default_set() -> Classes {
        Classes::default()
    }

    fn from_env() -> Classes {
        let Ok(text) = std::env::var("SIM_CLASSES") else {
            return Classes::default_set();
        };
        let mut classes = if text.trim_start().starts_with('-') {
            Classes::all()
        } else {
            Classes::default()
        };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => classes = Classes::all(),
                "none" => classes = Classes::default(),
                _ => match word.strip_prefix('-') {
                    Some(name) => *classes.flag(name) = false,
                    None => *classes.flag(word) = true,
                },
            }
        }
        classes
    }

    fn any(&self) -> bool {
        self.ou
            || self.scope
            || self.groups
            || self.affected
            || self.skew
            || self.lag
            || self.restore
    }

    fn names(&self) -> String {
        let mut copy = *self;
        let on: Vec<&str> = Classes::NAMES
            .into_iter()
            .filter(|name| *copy.flag(name))
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

/// A well-mixed function of the seed: picks each seed's world (scope, platform, skew)
/// independently of the random history and of `seed % 3` (read connections).
fn seed_hash(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Valid spellings of the OU-scoped base DN (RFC 4514: case and spaces after the separators
/// do not matter), by seed.
const SCOPE_SPELLINGS: [&str; 4] = [
    "OU=People,DC=corp,DC=example,DC=test",
    "ou=People, dc=corp, dc=example, dc=test",
    "OU=People,   DC=corp,  DC=example,DC=test",
    "Ou=PEOPLE,Dc=Corp,dC=Example,DC=TEST",
];

/// A deleted object the Recycle Bin can give back.
#[derive(Debug, Clone)]
struct Recycled {
    guid: Guid,
    /// Where it lived (following renames of its containers since).
    dn: String,
    group: bool,
}

/// `dn` with the suffix `old` (a container, or `dn` itself) replaced by `new`.
fn rebase(dn: &str, old: &str, new: &str) -> Option<String> {
    if dn.eq_ignore_ascii_case(old) {
        return Some(new.to_owned());
    }
    let cut = dn.len().checked_sub(old.len() + 1)?;
    let (head, tail) = dn.split_at_checked(cut)?;
    let suffix = tail.strip_prefix(',')?;
    (suffix.eq_ignore_ascii_case(old) && !head.ends_with('\\')).then(|| format!("{head},{new}"))
}

/// The RDN and the parent of a DN (commas inside values are escaped: `CN=Last\, First`).
fn split_dn(dn: &str) -> (String, String) {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                if let Some((rdn, rest)) = dn.split_at_checked(i) {
                    return (rdn.to_owned(), rest.get(1..).unwrap_or_default().to_owned());
                }
            }
            _ => escaped = false,
        }
    }
    (dn.to_owned(), String::new())
}

/// A directory change applied at a chosen moment of a cycle (concurrent with reading).
type Op = Box<dyn FnOnce() + Send>;

struct SimObserver {
    reads: AtomicU64,
    crash_at: Option<u64>,
    op_at: Option<u64>,
    op: Mutex<Option<Op>>,
    fired: std::sync::atomic::AtomicBool,
    crashed: std::sync::atomic::AtomicBool,
    crash: Arc<Notify>,
}

impl Observer for SimObserver {
    fn object_read(&self, _kind: ObjectKind) {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(n) == self.op_at
            && let Some(op) = self
                .op
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        {
            op();
            self.fired.store(true, Ordering::SeqCst);
        }
        if Some(n) == self.crash_at {
            self.crashed.store(true, Ordering::SeqCst);
            self.crash.notify_one();
        }
    }
}

enum Outcome {
    Done(Box<ad_sync::CycleReport>),
    Failed(String),
    Crashed,
}

struct Sim {
    seed: u64,
    rng: StdRng,
    directory: Directory,
    dcs: Vec<TestServer>,
    dc: usize,
    platform: Platform,
    state: tempfile::TempDir,
    users: Vec<String>,
    groups: Vec<String>,
    /// Groups another group may be nested in (Domain Admins among them: privilege through
    /// nesting comes and goes).
    nest_targets: Vec<String>,
    ous: Vec<String>,
    malformed: Option<String>,
    poison: HashSet<Guid>,
    history: Vec<String>,
    batch_size: usize,
    concurrency: usize,
    /// Connections a full sync reads with: 1, 2 or 3 by seed (not drawn from the random
    /// history, so a seed's history is the same whatever the count; the regression seeds,
    /// found with one connection, keep one).
    read_connections: u32,
    /// Cycles that failed or crashed since the last one that completed: each may leave one
    /// batch per in-flight slot accepted but unrecorded, to be re-sent later.
    unclean: u64,
    /// A directory change happened during the last cycle.
    concurrent: bool,
    counter: u32,
    /// The classes of the grown world this seed draws from (all off: the old world).
    classes: Classes,
    /// A full sync left deletes to the next full sync, as the engine documents: its read was
    /// incomplete, or it ran on another DC and kept objects that DC lacks.
    deletes_deferred: bool,
    /// The `base_dn` the engine is configured with, as spelled (`None`: the domain root).
    spelled_base: Option<String>,
    /// The same scope, canonically spelled: what the oracle and (b) use.
    scope: Option<String>,
    /// How far the host's clock runs ahead of the DC's (negative: behind), in minutes.
    skew_minutes: i64,
    /// The second DC's own copy of the directory when it lags (class `lag`).
    replica: Option<Directory>,
    /// Deleted objects the Recycle Bin can give back (class `restore`).
    recycled: Vec<Recycled>,
    domain_admins: String,
    people_ou: String,
    groups_ou: String,
    users_container: String,
    disabled_ou: String,
}

/// The source a cycle reads with: `server`'s DC, the host clock `skew_minutes` off the
/// directory's, and `base_dn` (`None`: the domain root).
fn source_for(
    server: &TestServer,
    directory: &Directory,
    read_connections: u32,
    base_dn: Option<&str>,
    skew_minutes: i64,
) -> Source {
    let mut config = SourceConfig::new(
        server.url(),
        SERVICE_ACCOUNT_UPN,
        SecretString::from(SERVICE_ACCOUNT_PASSWORD),
    );
    config.starttls = false;
    config.allow_plain_ldap = true;
    config.page_size = 7;
    config.read_connections = read_connections;
    config.max_reconnects = Some(3);
    config.reconnect_backoff_ms = 1;
    config.base_dn = base_dn.map(str::to_owned);
    let directory = directory.clone();
    let skew = chrono::Duration::minutes(skew_minutes);
    Source::new(config)
        .unwrap()
        .with_clock(Arc::new(move || directory.now() + skew))
}

fn server_options(host: &str) -> ServerOptions {
    ServerOptions {
        // Small Windows-like limits so paging and ranged `member` are exercised by a small
        // directory the way 1,500-member groups exercise them on AD.
        max_page_size: 5,
        // Above objectClass's 4 values (the in-process server ranges every attribute).
        max_val_range: 5,
        ..ServerOptions::for_host(host)
    }
}

impl Sim {
    fn new(seed: u64, enabled: Classes) -> Sim {
        let classes = if REGRESSION_SEEDS.contains(&seed) {
            Classes::default()
        } else {
            enabled
        };
        let h = seed_hash(seed);
        let scoped = classes.scope && h.is_multiple_of(3);
        let affected = classes.affected && (h / 3).is_multiple_of(3);
        let skew_minutes = if classes.skew && (h / 9).is_multiple_of(2) {
            [-7, -3, 3, 7][usize::try_from((h / 18) % 4).unwrap_or(0)]
        } else {
            0
        };
        let spelling = SCOPE_SPELLINGS[usize::try_from((h / 72) % 4).unwrap_or(0)];
        let mut rng = StdRng::seed_from_u64(seed);
        let users = rng.random_range(4..10);
        let company = Company::build(CompanyOptions {
            users,
            seed,
            ..CompanyOptions::default()
        });
        let directory = company.directory.clone();
        directory
            .set_password_policy(
                Some(chrono::Duration::days(42)),
                Some(chrono::Duration::minutes(30)),
            )
            .unwrap();
        let base = directory.base_dn();
        let disabled_ou = format!("OU=Disabled,{base}");
        if classes.ou || classes.scope {
            // Where offboarded users go: outside an OU scope.
            directory
                .add(
                    Entry::new(disabled_ou.clone())
                        .with("objectClass", ["top", "organizationalUnit"])
                        .with(
                            "objectCategory",
                            [format!(
                                "CN=Organizational-Unit,CN=Schema,CN=Configuration,{base}"
                            )],
                        ),
                )
                .unwrap();
        }
        // The second DC lags: it holds the first's changes only once it replicated them.
        let replica = classes.lag.then(|| directory.replica(1_000_000));
        let dc1 =
            TestServer::start(directory.clone(), server_options("dc1.corp.example.test")).unwrap();
        let mut dcs = vec![dc1];
        if let Some(replica) = &replica {
            dcs.push(
                TestServer::start(replica.clone(), server_options("dc2.corp.example.test"))
                    .unwrap(),
            );
        }
        let manifest = company.manifest;
        let mut ous: Vec<String> = manifest
            .users
            .iter()
            .filter_map(|dn| dn.split_once(',').map(|(_, p)| p.to_owned()))
            .collect();
        ous.sort();
        ous.dedup();
        if classes.ou || classes.scope {
            ous.push(disabled_ou.clone());
        }
        let mut groups = manifest.department_groups.clone();
        groups.push(manifest.universal_group.clone());
        groups.push(manifest.large_group.clone());
        groups.push(manifest.empty_group.clone());
        let mut nest_targets = groups.clone();
        nest_targets.push(manifest.domain_admins.clone());
        let scope = scoped.then(|| format!("OU=People,{base}"));
        Sim {
            classes,
            deletes_deferred: false,
            spelled_base: scoped.then(|| spelling.to_owned()),
            scope,
            skew_minutes,
            replica,
            recycled: Vec::new(),
            domain_admins: manifest.domain_admins.clone(),
            people_ou: format!("OU=People,{base}"),
            groups_ou: format!("OU=Groups,{base}"),
            users_container: format!("CN=Users,{base}"),
            disabled_ou,
            nest_targets,
            seed,
            read_connections: if REGRESSION_SEEDS.contains(&seed) {
                1
            } else {
                1 + u32::try_from(seed % 3).unwrap_or(0)
            },
            batch_size: rng.random_range(1..6),
            concurrency: rng.random_range(1..4),
            rng,
            platform: Platform::with_world(
                directory.clone(),
                scoped.then(|| format!("OU=People,{base}")),
                affected,
            ),
            directory,
            dcs,
            dc: 0,
            // In memory where the machine has it: the simulation crashes the process's
            // cycles, not the machine, so fsync buys it nothing but time.
            state: match std::path::Path::new("/dev/shm").is_dir() {
                true => tempfile::tempdir_in("/dev/shm").unwrap(),
                false => tempfile::tempdir().unwrap(),
            },
            users: manifest.users,
            groups,
            ous,
            malformed: None,
            poison: HashSet::new(),
            history: Vec::new(),
            unclean: 0,
            concurrent: false,
            counter: 0,
        }
    }

    /// The directory's clock, and the lagging DC's (the same time on both).
    fn advance_clock(&self, by: chrono::Duration) {
        self.directory.advance_clock(by);
        if let Some(replica) = &self.replica {
            replica.advance_clock(by);
        }
    }

    /// The lagging DC takes every change of the first; a line for the history.
    fn replicate(&self) -> String {
        let replica = self.replica.as_ref().expect("a lagging replica");
        let objects = replica.replicate_from(&self.directory);
        format!("dc2 replicates from dc1: {objects} objects changed")
    }

    fn note(&mut self, line: String) {
        self.history.push(line);
    }

    fn fail(&self, invariant: &str, detail: &str) -> ! {
        panic!(
            "SIM_SEED={} violated {invariant}: {detail}\nhistory:\n  {}",
            self.seed,
            self.history.join("\n  ")
        );
    }

    fn pick_user(&mut self) -> Option<String> {
        let candidates: Vec<&String> = self
            .users
            .iter()
            .filter(|dn| !dn.eq_ignore_ascii_case(SERVICE_ACCOUNT_DN))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..candidates.len());
        Some(candidates[i].clone())
    }

    /// The fields where the platform's record differs from the directory's.
    fn difference(&self, guid: &Guid, expected: &serde_json::Value) -> String {
        let Some(held) = self.platform.record(guid) else {
            return String::new();
        };
        let mut out = String::new();
        if let (Some(a), Some(b)) = (held.as_object(), expected.as_object()) {
            for (key, value) in b {
                if a.get(key) != Some(value) && !key.starts_with("usn") && key != "when_changed" {
                    out.push_str(&format!(
                        "\n    {key}: platform {} / directory {value}",
                        a.get(key).cloned().unwrap_or_default()
                    ));
                }
            }
        }
        out
    }

    /// Every DN the sim keeps under `old` (a renamed or moved object or container) now
    /// lives under `new`.
    fn rebase_all(&mut self, old: &str, new: &str) {
        let fix = |dn: &mut String| {
            if let Some(moved) = rebase(dn, old, new) {
                *dn = moved;
            }
        };
        self.users.iter_mut().for_each(fix);
        self.groups.iter_mut().for_each(fix);
        self.nest_targets.iter_mut().for_each(fix);
        self.ous.iter_mut().for_each(fix);
        self.recycled.iter_mut().for_each(|r| fix(&mut r.dn));
        if let Some(dn) = &mut self.malformed {
            fix(dn);
        }
        fix(&mut self.domain_admins);
    }

    fn in_scope(&self, dn: &str) -> bool {
        self.scope.as_deref().is_none_or(|base| dn_within(dn, base))
    }

    /// How a move changes the scope, for the history.
    fn scope_note(&self, old: &str, new: &str) -> &'static str {
        match (self.in_scope(old), self.in_scope(new)) {
            (true, false) => " (leaves the scope)",
            (false, true) => " (enters the scope)",
            _ => "",
        }
    }

    /// Whether a user under `container` manages someone outside it: renaming or moving the
    /// container would change `manager` on that report without a uSNChanged, the known gap
    /// of docs/simulation.md (not one of the classes).
    fn manages_outside(&self, container: &str) -> bool {
        self.directory
            .find("(directReports=*)")
            .unwrap_or_default()
            .iter()
            .filter(|e| dn_within(e.dn(), container))
            .any(|e| {
                e.strs("directReports")
                    .iter()
                    .any(|r| !dn_within(r, container))
            })
    }

    fn nothing() -> (String, Op) {
        ("nothing".into(), Box::new(|| {}))
    }

    fn is_referenced(&self, dn: &str) -> bool {
        self.directory.get(dn).is_some_and(|e| {
            !e.strs("directReports").is_empty() || !e.strs("managedObjects").is_empty()
        })
    }

    fn guid_of(&self, dn: &str) -> Option<Guid> {
        let entry = self.directory.get(dn)?;
        let bytes = entry.get("objectGUID")?.first()?.clone();
        Guid::from_bytes(&bytes).ok()
    }

    /// One random directory change, as a closure (so it can also run during a cycle).
    fn random_op(&mut self) -> (String, Op) {
        let directory = self.directory.clone();
        self.counter += 1;
        let n = self.counter;
        // The grown world draws from more kinds (the old world's draw is left as it was, so
        // its seeds keep their histories); a kind of a class turned off is a retitle.
        let kind = if self.classes.any() {
            match self.rng.random_range(0..21) {
                12 | 13 if !self.classes.ou => 9,
                14..=16 if !self.classes.groups => 9,
                17 if !self.classes.restore => 9,
                18 if !self.classes.scope => 9,
                19 | 20 if !self.classes.skew => 9,
                kind => kind,
            }
        } else {
            self.rng.random_range(0..12)
        };
        let Some(user) = self.pick_user() else {
            return ("nothing".into(), Box::new(|| {}));
        };
        let group = self.groups[self.rng.random_range(0..self.groups.len())].clone();
        if kind >= 12 {
            return self.grown_op(kind, n, user, group);
        }
        match kind {
            0 => {
                let parent = self.ous[self.rng.random_range(0..self.ous.len())].clone();
                let dn = format!("CN=Sim User {n},{parent}");
                self.users.push(dn.clone());
                let now = self.directory.now();
                (
                    format!("add {dn}"),
                    Box::new(move || {
                        let _ = directory.add(
                            Entry::new(dn.clone())
                                .with("objectClass", ["top", "person", "organizationalPerson", "user"])
                                .with(
                                    "objectCategory",
                                    ["CN=Person,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=test"],
                                )
                                .with("sAMAccountName", [format!("sim.user{n}")])
                                .with("userPrincipalName", [format!("sim.user{n}@corp.example.test")])
                                .with("displayName", [format!("Sim User {n}")])
                                .with("userAccountControl", ["512"])
                                .with(
                                    "pwdLastSet",
                                    [ad_testkit::encoding::filetime(now).to_string()],
                                )
                                .with("primaryGroupID", ["513"]),
                        );
                    }),
                )
            }
            // A manager's rename, move or deletion changes `manager` on their reports without
            // a uSNChanged there: a known gap (the next full sync repairs it), see the docs.
            1..=3 if self.is_referenced(&user) => ("nothing".into(), Box::new(|| {})),
            1 => {
                self.users.retain(|u| u != &user);
                if self.classes.restore
                    && let Some(guid) = self.guid_of(&user)
                {
                    self.recycled.push(Recycled {
                        guid,
                        dn: user.clone(),
                        group: false,
                    });
                }
                (
                    format!("delete {user}"),
                    Box::new(move || {
                        let _ = directory.delete(&user);
                    }),
                )
            }
            2 => {
                let parent = self.ous[self.rng.random_range(0..self.ous.len())].clone();
                let rdn = user.split(',').next().unwrap_or_default().to_owned();
                let new_dn = format!("{rdn},{parent}");
                if new_dn.eq_ignore_ascii_case(&user) || self.directory.get(&new_dn).is_some() {
                    return ("nothing".into(), Box::new(|| {}));
                }
                self.users.retain(|u| u != &user);
                self.users.push(new_dn.clone());
                (
                    format!("move {user} -> {new_dn}{}", self.scope_note(&user, &new_dn)),
                    Box::new(move || {
                        let _ = directory.rename(&user, &new_dn);
                    }),
                )
            }
            3 => {
                let parent = user
                    .split_once(',')
                    .map(|(_, p)| p.to_owned())
                    .unwrap_or_default();
                let new_dn = format!("CN=Renamed {n},{parent}");
                self.users.retain(|u| u != &user);
                self.users.push(new_dn.clone());
                (
                    format!("rename {user} -> {new_dn}"),
                    Box::new(move || {
                        let _ = directory.rename(&user, &new_dn);
                    }),
                )
            }
            4 => (
                format!("add {user} to {group}"),
                Box::new(move || {
                    let _ =
                        directory.modify(&group, [Modification::add("member", [user.as_str()])]);
                }),
            ),
            5 => (
                format!("remove {user} from {group}"),
                Box::new(move || {
                    let _ =
                        directory.modify(&group, [Modification::delete("member", [user.as_str()])]);
                }),
            ),
            6 => {
                // Primary group: join the group and make it primary (AD requires membership).
                let rid = self
                    .directory
                    .get(&group)
                    .and_then(|g| g.get("objectSid").and_then(|v| v.first().cloned()))
                    .and_then(|b| ad_model::Sid::from_bytes(&b).ok())
                    .and_then(|s| s.rid());
                let Some(rid) = rid else {
                    return ("nothing".into(), Box::new(|| {}));
                };
                (
                    format!("primary group of {user} := {group}"),
                    Box::new(move || {
                        let _ = directory
                            .modify(&group, [Modification::add("member", [user.as_str()])]);
                        let _ = directory.modify(
                            &user,
                            [Modification::replace("primaryGroupID", [rid.to_string()])],
                        );
                    }),
                )
            }
            7 => {
                let minutes = [20, 90, 60 * 30][self.rng.random_range(0..3)];
                let at = self.directory.now() + chrono::Duration::minutes(minutes);
                (
                    format!("accountExpires of {user} := now + {minutes} min"),
                    Box::new(move || {
                        let _ = directory.modify(
                            &user,
                            [Modification::replace(
                                "accountExpires",
                                [ad_testkit::encoding::filetime(at).to_string()],
                            )],
                        );
                    }),
                )
            }
            10 | 11 => {
                // Nesting: a group into another (Domain Admins included), or out again.
                let target =
                    self.nest_targets[self.rng.random_range(0..self.nest_targets.len())].clone();
                if target.eq_ignore_ascii_case(&group) {
                    return ("nothing".into(), Box::new(|| {}));
                }
                if kind == 10 {
                    (
                        format!("nest {group} in {target}"),
                        Box::new(move || {
                            let _ = directory
                                .modify(&target, [Modification::add("member", [group.as_str()])]);
                        }),
                    )
                } else {
                    (
                        format!("unnest {group} from {target}"),
                        Box::new(move || {
                            let _ = directory.modify(
                                &target,
                                [Modification::delete("member", [group.as_str()])],
                            );
                        }),
                    )
                }
            }
            8 => {
                let at = self.directory.now();
                (
                    format!("lock out {user}"),
                    Box::new(move || {
                        let _ = directory.modify(
                            &user,
                            [Modification::replace(
                                "lockoutTime",
                                [ad_testkit::encoding::filetime(at).to_string()],
                            )],
                        );
                    }),
                )
            }
            _ => (
                format!("retitle {user}"),
                Box::new(move || {
                    let _ = directory.modify(
                        &user,
                        [Modification::replace("title", [format!("Title {n}")])],
                    );
                }),
            ),
        }
    }

    /// One change of the grown world (kinds 12 and above of [`Sim::random_op`]).
    fn grown_op(&mut self, kind: u32, n: u32, user: String, group: String) -> (String, Op) {
        let directory = self.directory.clone();
        match kind {
            // An OU renamed in place: its children's DNs change, their uSNChanged does not.
            12 => {
                let candidates: Vec<String> = self
                    .ous
                    .iter()
                    .filter(|ou| !self.manages_outside(ou))
                    .cloned()
                    .collect();
                if candidates.is_empty() {
                    return Sim::nothing();
                }
                let ou = candidates[self.rng.random_range(0..candidates.len())].clone();
                let (rdn, parent) = split_dn(&ou);
                let new_dn = format!("{rdn} R{n},{parent}");
                if self.directory.get(&new_dn).is_some() {
                    return Sim::nothing();
                }
                let children = self
                    .users
                    .iter()
                    .chain(&self.groups)
                    .filter(|dn| rebase(dn, &ou, &new_dn).is_some())
                    .count();
                self.rebase_all(&ou, &new_dn);
                (
                    format!("rename OU {ou} -> {new_dn} ({children} users/groups below)"),
                    Box::new(move || {
                        let _ = directory.rename(&ou, &new_dn);
                    }),
                )
            }
            // An OU moved under another: into or out of an OU scope, or within it.
            13 => {
                let candidates: Vec<String> = self
                    .ous
                    .iter()
                    .filter(|ou| {
                        !ou.eq_ignore_ascii_case(&self.disabled_ou) && !self.manages_outside(ou)
                    })
                    .cloned()
                    .collect();
                if candidates.is_empty() {
                    return Sim::nothing();
                }
                let ou = candidates[self.rng.random_range(0..candidates.len())].clone();
                let (rdn, parent) = split_dn(&ou);
                let mut targets = vec![self.people_ou.clone(), self.disabled_ou.clone()];
                targets.extend(self.ous.iter().cloned());
                targets.retain(|t| !dn_within(t, &ou) && !t.eq_ignore_ascii_case(&parent));
                if targets.is_empty() {
                    return Sim::nothing();
                }
                let target = targets[self.rng.random_range(0..targets.len())].clone();
                let new_dn = format!("{rdn},{target}");
                if self.directory.get(&new_dn).is_some() {
                    return Sim::nothing();
                }
                let note = self.scope_note(&ou, &new_dn);
                let children = self
                    .users
                    .iter()
                    .chain(&self.groups)
                    .filter(|dn| rebase(dn, &ou, &new_dn).is_some())
                    .count();
                self.rebase_all(&ou, &new_dn);
                (
                    format!("move OU {ou} -> {new_dn}{note} ({children} users/groups below)"),
                    Box::new(move || {
                        let _ = directory.rename(&ou, &new_dn);
                    }),
                )
            }
            // A group deleted, members, nesting (Domain Admins included) and all. AD refuses
            // to delete a group that is someone's primary group.
            14 => {
                if self.groups.len() <= 3 {
                    return Sim::nothing();
                }
                let rid = self
                    .directory
                    .get(&group)
                    .and_then(|g| g.get("objectSid").and_then(|v| v.first().cloned()))
                    .and_then(|b| ad_model::Sid::from_bytes(&b).ok())
                    .and_then(|s| s.rid());
                let Some(rid) = rid else {
                    return Sim::nothing();
                };
                let primary = self
                    .directory
                    .find(&format!("(primaryGroupID={rid})"))
                    .unwrap_or_default();
                if !primary.is_empty() {
                    return Sim::nothing();
                }
                let entry = self.directory.get(&group);
                let members = entry.as_ref().map_or(0, |e| e.strs("member").len());
                let parents = entry
                    .as_ref()
                    .map(|e| e.strs("memberOf"))
                    .unwrap_or_default();
                self.groups.retain(|g| g != &group);
                self.nest_targets.retain(|g| g != &group);
                if self.classes.restore
                    && let Some(guid) = self.guid_of(&group)
                {
                    self.recycled.push(Recycled {
                        guid,
                        dn: group.clone(),
                        group: true,
                    });
                }
                (
                    format!("delete group {group} ({members} members, member of {parents:?})"),
                    Box::new(move || {
                        let _ = directory.delete(&group);
                    }),
                )
            }
            // A group renamed in place, or moved to another container (into or out of an OU
            // scope; CN=Users is outside any).
            15 => {
                let (rdn, parent) = split_dn(&group);
                let new_dn = if self.rng.random_bool(0.5) {
                    format!("{rdn} R{n},{parent}")
                } else {
                    let mut targets = vec![
                        self.groups_ou.clone(),
                        self.users_container.clone(),
                        self.people_ou.clone(),
                    ];
                    targets.extend(self.ous.iter().cloned());
                    targets.retain(|t| !t.eq_ignore_ascii_case(&parent));
                    let target = targets[self.rng.random_range(0..targets.len())].clone();
                    format!("{rdn},{target}")
                };
                if self.directory.get(&new_dn).is_some() {
                    return Sim::nothing();
                }
                let note = self.scope_note(&group, &new_dn);
                self.rebase_all(&group, &new_dn);
                (
                    format!("rename group {group} -> {new_dn}{note}"),
                    Box::new(move || {
                        let _ = directory.rename(&group, &new_dn);
                    }),
                )
            }
            // A new group with one member, in OU=Groups or in OU=People (inside an OU scope).
            16 => {
                let parent = if self.rng.random_bool(0.5) {
                    self.groups_ou.clone()
                } else {
                    self.people_ou.clone()
                };
                let dn = format!("CN=Sim Group {n},{parent}");
                let base = self.directory.base_dn();
                self.groups.push(dn.clone());
                self.nest_targets.push(dn.clone());
                (
                    format!("add group {dn} with member {user}"),
                    Box::new(move || {
                        let _ = directory.add(
                            Entry::new(dn.clone())
                                .with("objectClass", ["top", "group"])
                                .with(
                                    "objectCategory",
                                    [format!("CN=Group,CN=Schema,CN=Configuration,{base}")],
                                )
                                .with("sAMAccountName", [format!("sim.group{n}")])
                                .with(
                                    "groupType",
                                    [ad_testkit::group_type::GLOBAL_SECURITY.to_string()],
                                )
                                .with("sAMAccountType", ["268435456"])
                                .with("member", [user.as_str()]),
                        );
                    }),
                )
            }
            // A deleted user or group back from the Recycle Bin, same objectGUID, where it was.
            17 => {
                if self.recycled.is_empty() {
                    return Sim::nothing();
                }
                let i = self.rng.random_range(0..self.recycled.len());
                let back = self.recycled[i].clone();
                let (_, parent) = split_dn(&back.dn);
                if self.directory.get(&back.dn).is_some() || self.directory.get(&parent).is_none() {
                    return Sim::nothing();
                }
                self.recycled.remove(i);
                if back.group {
                    self.groups.push(back.dn.clone());
                    self.nest_targets.push(back.dn.clone());
                } else {
                    self.users.push(back.dn.clone());
                }
                (
                    format!(
                        "restore {} ({}) from the Recycle Bin{}",
                        back.dn,
                        back.guid,
                        if self.in_scope(&back.dn) {
                            ""
                        } else {
                            " (outside the scope)"
                        }
                    ),
                    Box::new(move || {
                        let _ = directory.restore(&back.guid.as_uuid(), &back.dn);
                    }),
                )
            }
            // A user of the scope into or out of Domain Admins, which lives outside any OU
            // scope (CN=Users).
            18 => {
                let admins = self.domain_admins.clone();
                if self.rng.random_bool(0.5) {
                    (
                        format!("add {user} to {admins}"),
                        Box::new(move || {
                            let _ = directory
                                .modify(&admins, [Modification::add("member", [user.as_str()])]);
                        }),
                    )
                } else {
                    (
                        format!("remove {user} from {admins}"),
                        Box::new(move || {
                            let _ = directory
                                .modify(&admins, [Modification::delete("member", [user.as_str()])]);
                        }),
                    )
                }
            }
            // A lockout or an expiry that ends within minutes: inside a clock skew.
            19 => {
                let minutes = self
                    .rng
                    .random_range(1..=self.skew_minutes.abs().max(3) + 1);
                // The domain's lockout duration is 30 minutes.
                let at = self.directory.now() - chrono::Duration::minutes(30 - minutes);
                (
                    format!("lock out {user}: the lockout ends in {minutes} min"),
                    Box::new(move || {
                        let _ = directory.modify(
                            &user,
                            [Modification::replace(
                                "lockoutTime",
                                [ad_testkit::encoding::filetime(at).to_string()],
                            )],
                        );
                    }),
                )
            }
            _ => {
                let minutes = self
                    .rng
                    .random_range(1..=self.skew_minutes.abs().max(3) + 1);
                let at = self.directory.now() + chrono::Duration::minutes(minutes);
                (
                    format!("accountExpires of {user} := now + {minutes} min"),
                    Box::new(move || {
                        let _ = directory.modify(
                            &user,
                            [Modification::replace(
                                "accountExpires",
                                [ad_testkit::encoding::filetime(at).to_string()],
                            )],
                        );
                    }),
                )
            }
        }
    }

    /// The directory of the DC the cycles read.
    fn read_directory(&self) -> Directory {
        match (&self.replica, self.dc) {
            (Some(replica), 1) => replica.clone(),
            _ => self.directory.clone(),
        }
    }

    /// Whether the DC the cycles read holds every change made so far (always, but for a
    /// lagging second DC that has not replicated them).
    fn read_dc_replicated(&self) -> bool {
        match (&self.replica, self.dc) {
            (Some(replica), 1) => replica.is_replicated_from(&self.directory),
            _ => true,
        }
    }

    /// The directory as a fresh, fault-free read of the DC the cycles read sees it, in the
    /// configured scope (spelled canonically) and with the engine's clock: GUID → (hash,
    /// uSNChanged, DN).
    async fn expected(&self) -> HashMap<Guid, (String, u64, String, serde_json::Value)> {
        let source = source_for(
            &self.dcs[self.dc],
            &self.directory,
            1,
            self.scope.as_deref(),
            self.skew_minutes,
        );
        let mut run = source.full_snapshot().await.unwrap();
        let mut out = HashMap::new();
        while let Some(event) = run.next_event().await {
            match event {
                SourceEvent::User(d) => {
                    let u = d.record;
                    let json = serde_json::to_value(&u).unwrap();
                    out.insert(
                        u.object_guid,
                        (
                            ad_sync::fingerprint::user(&u),
                            u.usn_changed.unwrap_or(0),
                            u.dn,
                            json,
                        ),
                    );
                }
                SourceEvent::Group(d) => {
                    let g = d.record;
                    let json = serde_json::to_value(&g).unwrap();
                    out.insert(
                        g.object_guid,
                        (
                            ad_sync::fingerprint::group(&g),
                            g.usn_changed.unwrap_or(0),
                            g.dn,
                            json,
                        ),
                    );
                }
                _ => {}
            }
        }
        run.finish().await.unwrap();
        out
    }

    fn clear_directory_faults(&self) {
        for dc in &self.dcs {
            dc.set_faults(FaultOptions::default());
        }
    }

    fn set_directory_faults(&mut self) {
        let mut faults = FaultOptions::default();
        match self.rng.random_range(0..8) {
            0 => {
                faults.drop_after = Some(DropAfter {
                    entries: self.rng.random_range(1..30),
                    first_connections: 1,
                });
                self.note(format!("  dc: drop after {:?}", faults.drop_after));
            }
            1 => {
                faults.search_failure = Some(SearchFailure {
                    code: FailureCode::Busy,
                    first_searches: 1,
                });
                self.note("  dc: first search busy".into());
            }
            2 => {
                let kind = if self.rng.random_bool(0.5) {
                    PageFaultKind::OmitPagedControl
                } else {
                    PageFaultKind::EndWith {
                        code: FailureCode::SizeLimitExceeded,
                        entries: self.rng.random_range(0..3),
                    }
                };
                self.note(format!("  dc: a page of users ends early ({kind:?})"));
                faults.page_fault = Some(PageFault {
                    kind,
                    first_pages: 1,
                    filter_contains: Some("objectCategory=person".into()),
                });
            }
            _ => {}
        }
        if let Some(dn) = &self.malformed {
            faults
                .malformed
                .push(Malformation::short_guid().for_dn(dn.clone()));
        }
        self.dcs[self.dc].set_faults(faults);
    }

    async fn cycle(&mut self, step: usize, clean: bool, full: bool) -> Outcome {
        let mut faults = HashMap::new();
        let mut crash_at = None;
        let mut op: Option<(String, Op)> = None;
        let mut op_at = None;
        if !clean {
            if self.rng.random_bool(0.35) {
                let fault = [
                    Fault::ServerError,
                    Fault::TooManyRequests,
                    Fault::Timeout,
                    Fault::AcceptedThenDropped,
                    Fault::CrashBefore,
                    Fault::CrashAfter,
                ][self.rng.random_range(0..6)];
                let call = self.rng.random_range(1..4);
                self.note(format!("  platform: {fault:?} at call {call}"));
                faults.insert(call, fault);
            }
            if self.rng.random_bool(0.15) {
                let n = self.rng.random_range(1..40);
                self.note(format!("  crash after reading {n} objects"));
                crash_at = Some(n);
            }
            if self.rng.random_bool(0.25) {
                let (what, f) = self.random_op();
                let n = self.rng.random_range(1..30);
                self.note(format!("  during the cycle, after {n} reads: {what}"));
                op = Some((what, f));
                op_at = Some(n);
            }
            self.set_directory_faults();
        } else {
            self.clear_directory_faults();
            if let Some(dn) = &self.malformed {
                self.dcs[self.dc].set_faults(FaultOptions {
                    malformed: vec![Malformation::short_guid().for_dn(dn.clone())],
                    ..FaultOptions::default()
                });
            }
        }
        let crash = Arc::new(Notify::new());
        self.platform.read_from(self.read_directory());
        self.platform.arm(
            faults,
            Arc::clone(&crash),
            Some(self.dcs[self.dc].stats_handle()),
            u64::from(self.read_connections),
        );
        let observer = SimObserver {
            reads: AtomicU64::new(0),
            crash_at,
            op_at,
            op: Mutex::new(op.map(|(_, f)| f)),
            fired: std::sync::atomic::AtomicBool::new(false),
            crashed: std::sync::atomic::AtomicBool::new(false),
            crash: Arc::clone(&crash),
        };
        let force_full = full || (!clean && self.rng.random_bool(0.2));
        let source = source_for(
            &self.dcs[self.dc],
            &self.directory,
            self.read_connections,
            self.spelled_base.as_deref(),
            self.skew_minutes,
        );
        let store = Store::open(self.state.path()).unwrap();
        let mut engine = Engine::new(
            source,
            Arc::new(self.platform.clone()),
            store,
            EngineOptions {
                full_sync_interval: std::time::Duration::from_secs(365 * 24 * 3600),
                batch_size: self.batch_size,
                concurrency: self.concurrency,
                delete_guard: DeleteGuard {
                    max_delete_fraction: 1.0,
                    max_deletes: None,
                },
            },
        );
        let token = CancellationToken::new();
        let request = CycleRequest {
            force_full,
            confirm_deletes: None,
        };
        let outcome = tokio::select! {
            result = engine.run_cycle(request, &observer, &token) => match result {
                Ok(report) => Outcome::Done(Box::new(report)),
                Err(error) => Outcome::Failed(error.to_string()),
            },
            () = crash.notified() => Outcome::Crashed,
        };
        drop(engine);
        // (f) Liveness: only an injected platform fault or crash may stop a cycle. Directory
        // faults (drops, busy, truncated pages, restores), refused records and unreadable
        // entries must all be absorbed.
        if !matches!(outcome, Outcome::Done(_))
            && !self.platform.fault_fired()
            && !observer.crashed.load(Ordering::SeqCst)
        {
            let why = match &outcome {
                Outcome::Failed(e) => e.clone(),
                _ => "crashed".into(),
            };
            self.note(format!("cycle {step}: failed: {why}"));
            self.fail("(f) a cycle stops only on an injected fault", &why);
        }
        self.concurrent = observer.fired.load(Ordering::SeqCst);
        if self.concurrent {
            self.note("  (the change during the cycle happened)".into());
        }
        self.clear_directory_faults();
        let line = match &outcome {
            Outcome::Done(r) => format!(
                "cycle {step}: {} [checkpoint {:?}, directory USN {}, warnings {:?}]",
                r.summary(),
                r.checkpoint.as_ref().map(|c| c.position.usn),
                self.directory.highest_committed_usn(),
                r.source_warnings
            ),
            Outcome::Failed(e) => format!("cycle {step}: failed: {e}"),
            Outcome::Crashed => format!("cycle {step}: crashed"),
        };
        self.note(line);
        outcome
    }

    /// Check the invariants after a cycle.
    async fn check(&mut self, outcome: &Outcome, exact: bool) {
        let false_deletes = self.platform.false_deletes();
        if !false_deletes.is_empty() {
            self.fail("(b) no live object deleted", &false_deletes.join("; "));
        }
        let (duplicates, duplicate_dns) = self.platform.duplicates();
        let allowed = self.unclean * (self.batch_size * self.concurrency) as u64;
        if duplicates > allowed {
            self.fail(
                "(e) bounded re-sends",
                &format!(
                    "{duplicates} re-sent records, at most {allowed} allowed: {duplicate_dns:?}"
                ),
            );
        }
        match outcome {
            // A complete cycle re-read (and re-sent) whatever earlier ones left in doubt.
            Outcome::Done(report) if report.checkpoint_held.is_none() => self.unclean = 0,
            Outcome::Done(_) => {}
            _ => self.unclean += 1,
        }
        let Outcome::Done(report) = outcome else {
            return;
        };
        if report.mode == "full" {
            self.deletes_deferred =
                !report.incomplete_read.is_empty() || report.deletes_unproven > 0;
        }
        // A lagging DC: the platform may rightly hold newer values than it has, so (a) and
        // (c) wait for a cycle on a DC that holds every change.
        if !self.read_dc_replicated() {
            if exact {
                self.fail("model", "an exact check on a DC that lags");
            }
            return;
        }
        let store = Store::open_read_only(self.state.path()).unwrap().unwrap();
        let checkpoint = store.checkpoint().unwrap();
        let quarantined: HashSet<Guid> = store
            .quarantined()
            .unwrap()
            .into_iter()
            .map(|q| q.guid)
            .collect();
        let skipped: Vec<String> = store
            .skipped()
            .unwrap()
            .into_iter()
            .map(|s| s.dn.to_ascii_lowercase())
            .collect();
        drop(store);
        let expected = self.expected().await;
        let held = self.platform.objects();
        let malformed_guid = self.malformed.as_deref().and_then(|dn| self.guid_of(dn));
        // Groups listing the unreadable entry: its rename or move cannot be seen either.
        let listing_malformed: HashSet<String> = match &self.malformed {
            Some(bad) => self
                .directory
                .find("(objectClass=group)")
                .unwrap()
                .into_iter()
                .filter(|e| e.strs("member").iter().any(|m| m.eq_ignore_ascii_case(bad)))
                .map(|e| e.dn().to_ascii_lowercase())
                .collect(),
            None => HashSet::new(),
        };
        let excused = |guid: &Guid, dn: &str| {
            quarantined.contains(guid)
                || self.poison.contains(guid)
                || Some(*guid) == malformed_guid
                || skipped.contains(&dn.to_ascii_lowercase())
                || listing_malformed.contains(&dn.to_ascii_lowercase())
        };
        // (c) Everything changed before the checkpoint's USN is on the platform as it is now.
        // Not after a cycle during which the directory changed: a membership change carries
        // the group's new USN (above the checkpoint) but also changes its members' records,
        // whose own USNs stay below it; the next cycle delivers them (checked then).
        if let Some(cp) = &checkpoint
            && report.checkpoint_held.is_none()
            && !self.concurrent
        {
            for (guid, (hash, usn, dn, json)) in &expected {
                if *usn <= cp.position.usn
                    && !excused(guid, dn)
                    && held.get(guid).map(|(_, h)| h) != Some(hash)
                {
                    self.fail(
                        "(c) checkpoint passes only delivered changes",
                        &format!(
                            "{dn} (uSNChanged {usn} <= checkpoint {}) is {} on the platform{}",
                            cp.position.usn,
                            if held.contains_key(guid) {
                                "stale"
                            } else {
                                "missing"
                            },
                            self.difference(guid, json)
                        ),
                    );
                }
            }
            // ... and nothing deleted or out of the scope before it is still there (unless a
            // full sync left its deletes to the next full sync).
            let read = self.read_directory();
            for guid in held.keys() {
                if expected.contains_key(guid) || self.deletes_deferred {
                    continue;
                }
                // Absent from the DC read: not replicated there yet, (a) will tell.
                let Some(entry) = read.find_by_guid(&guid.as_uuid()) else {
                    continue;
                };
                let usn = entry
                    .first_i64("uSNChanged")
                    .and_then(|u| u64::try_from(u).ok())
                    .unwrap_or(u64::MAX);
                if usn <= cp.position.usn && !excused(guid, entry.dn()) {
                    self.fail(
                        "(c) checkpoint passes only delivered changes",
                        &format!(
                            "{guid} at {} (uSNChanged {usn} <= checkpoint {}) is {} but still on \
                             the platform",
                            entry.dn(),
                            cp.position.usn,
                            if entry.is_deleted() {
                                "deleted"
                            } else {
                                "out of the scope"
                            },
                        ),
                    );
                }
            }
        }
        if !exact {
            return;
        }
        // (a) The platform equals the directory.
        for (guid, (hash, _, dn, json)) in &expected {
            if excused(guid, dn) {
                continue;
            }
            match held.get(guid) {
                Some((_, h)) if h == hash => {}
                Some(_) => self.fail(
                    "(a) platform = directory",
                    &format!("{dn} is stale{}", self.difference(guid, json)),
                ),
                None => self.fail("(a) platform = directory", &format!("{dn} is missing")),
            }
        }
        for guid in held.keys() {
            if !expected.contains_key(guid)
                && Some(*guid) != malformed_guid
                && !self.deletes_deferred
            {
                self.fail(
                    "(a) platform = directory",
                    &format!("{guid} is on the platform but not in the directory"),
                );
            }
        }
    }
}

async fn scenario(seed: u64, classes: Classes) {
    let mut sim = Sim::new(seed, classes);
    sim.note(format!(
        "batch_size {} concurrency {} read_connections {}",
        sim.batch_size, sim.concurrency, sim.read_connections
    ));
    if sim.classes.any() {
        sim.note(format!(
            "world: classes {}; base_dn {}; platform {}; host clock {:+} min off the DC's; \
             second DC {}",
            sim.classes.names(),
            sim.spelled_base
                .as_deref()
                .map_or("the domain root".to_owned(), |b| format!("{b:?}")),
            if sim.platform.needs_affected_users() {
                "asks for affected users (Sekoia-like)"
            } else {
                "takes groups alone"
            },
            sim.skew_minutes,
            if sim.replica.is_some() {
                "a lagging replica"
            } else {
                "the same directory"
            },
        ));
    }
    // The first full sync, clean.
    let outcome = sim.cycle(0, true, false).await;
    sim.check(&outcome, true).await;
    for step in 1..=STEPS {
        for _ in 0..sim.rng.random_range(0..4) {
            let (what, op) = sim.random_op();
            sim.note(format!("op: {what}"));
            op();
        }
        if sim.classes.skew && sim.rng.random_bool(0.5) {
            // Small steps too: lockouts and expiries end between two cycles, inside a skew.
            let by = [
                chrono::Duration::minutes(2),
                chrono::Duration::minutes(5),
                chrono::Duration::minutes(10),
                chrono::Duration::minutes(45),
                chrono::Duration::hours(2),
                chrono::Duration::days(2),
                chrono::Duration::days(43),
            ][sim.rng.random_range(0..7)];
            sim.note(format!("clock: +{by}"));
            sim.advance_clock(by);
        } else if !sim.classes.skew && sim.rng.random_bool(0.3) {
            let by = [
                chrono::Duration::minutes(45),
                chrono::Duration::hours(2),
                chrono::Duration::days(2),
                chrono::Duration::days(43),
            ][sim.rng.random_range(0..4)];
            sim.note(format!("clock: +{by}"));
            sim.advance_clock(by);
        }
        match sim.rng.random_range(0..20) {
            0 => {
                let id = sim.dcs[sim.dc].simulate_restore();
                sim.note(format!("dc restored from backup: invocationId {id}"));
            }
            // The lagging second DC: failover to it, failback, and its replication.
            1 | 7 | 8 | 12 if sim.replica.is_some() => {
                sim.dc = 1 - sim.dc;
                let line = if sim.dc == 1 {
                    format!(
                        "failover to dc2 ({})",
                        if sim.read_dc_replicated() {
                            "it holds every change"
                        } else {
                            "it lags behind dc1"
                        }
                    )
                } else {
                    "failback to dc1".to_owned()
                };
                sim.note(line);
            }
            9..=11 if sim.replica.is_some() => {
                let line = sim.replicate();
                sim.note(line);
            }
            1 => {
                if sim.dcs.len() == 1 {
                    let dc2 = TestServer::start(
                        sim.directory.clone(),
                        server_options("dc2.corp.example.test"),
                    )
                    .unwrap();
                    sim.dcs.push(dc2);
                }
                sim.dc = 1 - sim.dc;
                sim.note(format!("switch to dc{}", sim.dc + 1));
            }
            2 => {
                // An entry becomes unreadable after it changed: its change must not be lost.
                if sim.malformed.is_none()
                    && let Some(user) = sim.pick_user()
                {
                    let _ = sim.directory.modify(
                        &user,
                        [Modification::replace("title", ["Changed while unreadable"])],
                    );
                    sim.note(format!(
                        "{user} changed, then unreadable (short objectGUID)"
                    ));
                    sim.malformed = Some(user);
                }
            }
            3 | 4 if sim.malformed.take().is_some() => {
                sim.note("unreadable entry readable again".into());
            }
            5 => {
                if let Some(user) = sim.pick_user()
                    && let Some(guid) = sim.guid_of(&user)
                {
                    let _ = sim.directory.modify(
                        &user,
                        [Modification::replace(
                            "description",
                            ["refused by the platform"],
                        )],
                    );
                    sim.poison.insert(guid);
                    sim.note(format!("platform refuses {user} ({guid}) with 400"));
                    sim.platform.set_poison(sim.poison.clone());
                }
            }
            6 if !sim.poison.is_empty() => {
                sim.poison.clear();
                sim.platform.set_poison(HashSet::new());
                sim.note("platform accepts every record again".into());
            }
            _ => {}
        }
        let outcome = sim.cycle(step, false, false).await;
        sim.check(&outcome, false).await;
    }
    // Convergence: no faults, no refusals, everything readable. A delta, then (grown world)
    // a delta, then the periodic full sync (deletes an incomplete read held back are its to
    // send), then a delta; all but the first must leave the platform equal to the directory.
    sim.poison.clear();
    sim.platform.set_poison(HashSet::new());
    sim.malformed = None;
    sim.note("faults cleared".into());
    if sim.replica.is_some() {
        let line = sim.replicate();
        sim.note(line);
    }
    // The grown world's classes must reach the platform by a clean delta, before the full
    // sync repairs what deltas missed: the second clean delta is checked exactly too.
    let mut convergence = vec![(STEPS + 1, false, false)];
    if sim.classes.any() {
        convergence.push((STEPS + 2, false, true));
    }
    let next = STEPS + convergence.len();
    convergence.extend([(next + 1, true, true), (next + 2, false, true)]);
    for (step, full, exact) in convergence {
        let outcome = sim.cycle(step, true, full).await;
        if !matches!(outcome, Outcome::Done(_)) {
            sim.fail("(d) convergence", "a clean cycle did not complete");
        }
        sim.check(&outcome, exact).await;
    }
    let store = Store::open_read_only(sim.state.path()).unwrap().unwrap();
    if !store.quarantined().unwrap().is_empty() || !store.skipped().unwrap().is_empty() {
        sim.fail(
            "(d) convergence",
            "quarantine or skipped entries left after clean cycles",
        );
    }
    if std::env::var_os("SIM_HISTORY").is_some() {
        eprintln!(
            "SIM_SEED={seed} passed\nhistory:\n  {}",
            sim.history.join("\n  ")
        );
    }
}

fn seeds(part: u64, parts: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("SIM_SEED") {
        return if part == 0 {
            vec![seed.parse().expect("SIM_SEED is a number")]
        } else {
            Vec::new()
        };
    }
    let total: u64 = std::env::var("SIM_SCENARIOS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let first: u64 = std::env::var("SIM_FIRST_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    // The default run also replays every seed a soak once failed (fixed since).
    let regressions = match std::env::var_os("SIM_FIRST_SEED") {
        None => REGRESSION_SEEDS,
        Some(_) => &[],
    };
    (first..first + total)
        .chain(regressions.iter().copied())
        .filter(|s| s % parts == part)
        .collect()
}

/// Seeds that found a bug in a soak, replayed by every default run:
/// - 41413: a member removed from a group and added again comes back in another `memberOf`
///   order; the content hash took the order for a change (now sets are hashed sorted);
/// - 41862: a user moved, then removed from a group during the next cycle; the group's
///   stored member list still named the old DN, so the re-read looked for that (stored lists
///   now follow the move);
/// - 49485: a renamed user deleted during a full sync after its group was read; the full
///   sync deleted it under its old name, and the tombstone later matched nothing tracked, so
///   the group kept the member (a tombstone's name is now looked up in any case).
const REGRESSION_SEEDS: &[u64] = &[41413, 41862, 49485];

fn run_part(part: u64) {
    // `SIM_LOG=debug` (any filter): the engine's log on stderr, to follow a replayed seed.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
    let seeds = seeds(part, 2);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let classes = Classes::from_env();
    // `SIM_KEEP_GOING=1`: run every seed and list the failing ones at the end (to survey a
    // change of the world); by default the first failure stops the test.
    let keep_going = std::env::var_os("SIM_KEEP_GOING").is_some();
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    for seed in &seeds {
        if keep_going {
            let run = std::panic::AssertUnwindSafe(|| runtime().block_on(scenario(*seed, classes)));
            if std::panic::catch_unwind(run).is_err() {
                failed.push(*seed);
            }
        } else {
            runtime().block_on(scenario(*seed, classes));
        }
    }
    assert!(
        failed.is_empty(),
        "simulation part {part}: {} of {} scenarios failed: {failed:?}",
        failed.len(),
        seeds.len()
    );
    eprintln!(
        "simulation part {part}: {} scenarios passed in {:.1}s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn simulation_part_0() {
    run_part(0);
}

#[test]
fn simulation_part_1() {
    run_part(1);
}
