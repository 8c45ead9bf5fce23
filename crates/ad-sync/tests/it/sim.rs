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
//! many the test runs (default 2,000 split over two tests); `SIM_FIRST_SEED` where they start.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ad_model::{Guid, ObjectKind};
use ad_source::{Source, SourceConfig, SourceEvent};
use ad_sync::{CycleRequest, DeleteGuard, Engine, EngineOptions, Observer, Store};
use ad_testkit::{
    Company, CompanyOptions, Directory, DropAfter, Entry, FailureCode, FaultOptions, Malformation,
    Modification, PageFault, PageFaultKind, SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD,
    SERVICE_ACCOUNT_UPN, SearchFailure, ServerOptions, TestServer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::platform::{Fault, Platform};

/// Cycles per scenario before the convergence cycles.
const STEPS: usize = 5;

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
}

fn source_for(server: &TestServer, directory: &Directory, read_connections: u32) -> Source {
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
    let directory = directory.clone();
    Source::new(config)
        .unwrap()
        .with_clock(Arc::new(move || directory.now()))
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
    fn new(seed: u64) -> Sim {
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
        let dc1 =
            TestServer::start(directory.clone(), server_options("dc1.corp.example.test")).unwrap();
        let manifest = company.manifest;
        let mut ous: Vec<String> = manifest
            .users
            .iter()
            .filter_map(|dn| dn.split_once(',').map(|(_, p)| p.to_owned()))
            .collect();
        ous.sort();
        ous.dedup();
        let mut groups = manifest.department_groups.clone();
        groups.push(manifest.universal_group.clone());
        groups.push(manifest.large_group.clone());
        groups.push(manifest.empty_group.clone());
        let mut nest_targets = groups.clone();
        nest_targets.push(manifest.domain_admins.clone());
        Sim {
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
            platform: Platform::new(directory.clone()),
            directory,
            dcs: vec![dc1],
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
        let kind = self.rng.random_range(0..12);
        let Some(user) = self.pick_user() else {
            return ("nothing".into(), Box::new(|| {}));
        };
        let group = self.groups[self.rng.random_range(0..self.groups.len())].clone();
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
                    format!("move {user} -> {new_dn}"),
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

    /// The directory as a fresh, fault-free read sees it: GUID → (hash, uSNChanged, DN).
    async fn expected(&self) -> HashMap<Guid, (String, u64, String, serde_json::Value)> {
        let source = source_for(&self.dcs[0], &self.directory, 1);
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
        let source = source_for(&self.dcs[self.dc], &self.directory, self.read_connections);
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
            if !expected.contains_key(guid) && Some(*guid) != malformed_guid {
                self.fail(
                    "(a) platform = directory",
                    &format!("{guid} is on the platform but not in the directory"),
                );
            }
        }
    }
}

async fn scenario(seed: u64) {
    let mut sim = Sim::new(seed);
    sim.note(format!(
        "batch_size {} concurrency {} read_connections {}",
        sim.batch_size, sim.concurrency, sim.read_connections
    ));
    // The first full sync, clean.
    let outcome = sim.cycle(0, true, false).await;
    sim.check(&outcome, true).await;
    for step in 1..=STEPS {
        for _ in 0..sim.rng.random_range(0..4) {
            let (what, op) = sim.random_op();
            sim.note(format!("op: {what}"));
            op();
        }
        if sim.rng.random_bool(0.3) {
            let by = [
                chrono::Duration::minutes(45),
                chrono::Duration::hours(2),
                chrono::Duration::days(2),
                chrono::Duration::days(43),
            ][sim.rng.random_range(0..4)];
            sim.note(format!("clock: +{by}"));
            sim.directory.advance_clock(by);
        }
        match sim.rng.random_range(0..20) {
            0 => {
                let id = sim.dcs[sim.dc].simulate_restore();
                sim.note(format!("dc restored from backup: invocationId {id}"));
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
    // Convergence: no faults, no refusals, everything readable. A delta, then the periodic
    // full sync (deletes an incomplete read held back are its to send), then a delta; the
    // last two must leave the platform equal to the directory.
    sim.poison.clear();
    sim.platform.set_poison(HashSet::new());
    sim.malformed = None;
    sim.note("faults cleared".into());
    for (step, full, exact) in [
        (STEPS + 1, false, false),
        (STEPS + 2, true, true),
        (STEPS + 3, false, true),
    ] {
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    for seed in &seeds {
        runtime.block_on(scenario(*seed));
    }
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
