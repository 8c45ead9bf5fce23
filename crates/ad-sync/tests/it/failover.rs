//! Several DCs: failover, a checkpoint per DC, return to the preferred DC, a restored DC,
//! DNS SRV discovery and one name with several addresses — with two in-process DCs that
//! hold the same objects under their own USNs and invocationIds (`Directory::replica`).
//! The same walk against two real Samba DCs is in `samba_lab_failover.rs`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ad_model::Guid;
use ad_source::{DiscoveredScheme, Source, SourceConfig};
use ad_sync::{CycleReport, CycleRequest, DeleteGuard, Engine, EngineOptions, Store};
use ad_testkit::{
    Company, CompanyOptions, Directory, DnsServer, DnsZone, Entry, Modification,
    SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN, ServerOptions, SrvEntry, TestServer,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::platform::Platform;

const DC1: &str = "dc1.corp.example.test";
const DC2: &str = "dc2.corp.example.test";

/// One DC: its directory (its own copy), where it listens, and the server while it runs.
struct Dc {
    directory: Directory,
    options: ServerOptions,
    addr: SocketAddr,
    server: Option<TestServer>,
}

impl Dc {
    fn start(directory: Directory, host: &str, addr: SocketAddr) -> Dc {
        let options = ServerOptions::for_host(host);
        let server = TestServer::start_at(directory.clone(), options.clone(), addr).unwrap();
        Dc {
            addr: server.addr(),
            directory,
            options,
            server: Some(server),
        }
    }

    fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }

    /// Back on the same address (a DC after its reboot).
    fn restart(&mut self) {
        self.stop();
        let mut tries = 0;
        loop {
            match TestServer::start_at(self.directory.clone(), self.options.clone(), self.addr) {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("restarting the DC on {}: {e}", self.addr),
            }
        }
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().unwrap()
    }

    fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }
}

struct TwoDcs {
    dc1: Dc,
    dc2: Dc,
    platform: Platform,
    state: tempfile::TempDir,
}

fn guid_of(entry: &Entry) -> Guid {
    Guid::from_bytes(&entry.get("objectGUID").unwrap()[0]).unwrap()
}

impl TwoDcs {
    fn new() -> TwoDcs {
        Self::on(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        )
    }

    fn on(addr1: SocketAddr, addr2: SocketAddr) -> TwoDcs {
        let company = Company::build(CompanyOptions {
            users: 30,
            ..CompanyOptions::default()
        });
        // dc2 numbers the same objects a million USNs higher: a checkpoint of one DC used
        // on the other would read nothing, or everything.
        let replica = company.directory.replica(1_000_000);
        let dc1 = Dc::start(company.directory.clone(), DC1, addr1);
        let dc2 = Dc::start(replica, DC2, addr2);
        let platform = Platform::new(company.directory);
        platform.arm(
            HashMap::new(),
            Arc::new(tokio::sync::Notify::new()),
            None,
            1,
        );
        TwoDcs {
            dc1,
            dc2,
            platform,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, urls: Vec<String>) -> SourceConfig {
        let mut config = SourceConfig::new(
            String::new(),
            SERVICE_ACCOUNT_UPN,
            SecretString::from(SERVICE_ACCOUNT_PASSWORD),
        );
        config.url = urls.into();
        config.starttls = false;
        config.allow_plain_ldap = true;
        config.page_size = 10;
        config.connect_timeout_secs = 2;
        config.max_reconnect_secs = 1;
        config.reconnect_backoff_ms = 10;
        config
    }

    async fn cycle_on(&self, config: SourceConfig, force_full: bool) -> CycleReport {
        let directory = self.dc1.directory.clone();
        let source = Source::new(config)
            .unwrap()
            .with_clock(Arc::new(move || directory.now()));
        let mut engine = Engine::new(
            source,
            Arc::new(self.platform.clone()),
            Store::open(self.state.path()).unwrap(),
            EngineOptions {
                batch_size: 7,
                delete_guard: DeleteGuard {
                    max_delete_fraction: 1.0,
                    max_deletes: None,
                },
                ..EngineOptions::default()
            },
        );
        engine
            .run_cycle(
                CycleRequest {
                    force_full,
                    confirm_deletes: None,
                },
                &ad_sync::NoObserver,
                &CancellationToken::new(),
            )
            .await
            .unwrap()
    }

    async fn cycle(&self) -> CycleReport {
        self.cycle_on(self.config(vec![self.dc1.url(), self.dc2.url()]), false)
            .await
    }

    /// A change made on both DCs (replicated): each gives it its own next USN.
    fn replicated(&self, dn: &str, description: &str) {
        for dc in [&self.dc1, &self.dc2] {
            dc.directory
                .modify(dn, [Modification::replace("description", [description])])
                .unwrap();
        }
    }

    fn users(&self) -> Vec<Entry> {
        self.dc1
            .directory
            .find("(&(objectCategory=person)(objectClass=user))")
            .unwrap()
    }

    fn store(&self) -> Store {
        Store::open_read_only(self.state.path()).unwrap().unwrap()
    }

    /// The platform holds exactly the objects live on `directory` (nothing lost, nothing
    /// falsely deleted, nothing gone shown as live).
    fn assert_platform_matches(&self, directory: &Directory) {
        let live: HashSet<Guid> = directory
            .find("(|(&(objectCategory=person)(objectClass=user))(objectCategory=group))")
            .unwrap()
            .iter()
            .map(guid_of)
            .collect();
        let held: HashSet<Guid> = self.platform.objects().keys().copied().collect();
        assert_eq!(
            held.difference(&live).count(),
            0,
            "gone objects shown as live"
        );
        assert_eq!(
            live.difference(&held).count(),
            0,
            "live objects missing on the platform"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_reads_a_delta_from_each_dcs_own_checkpoint_and_returns_to_the_first() {
    let mut lab = TwoDcs::new();
    let users = lab.users();
    let dn = |i: usize| users[i].dn().to_owned();

    // 1. dc1 (first in the list): a full sync, its mark stored.
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC1)));
    assert!(r.passed_over.is_empty());
    lab.assert_platform_matches(&lab.dc1.directory);

    // 2. A replicated change; delta on dc1.
    lab.replicated(&dn(0), "changed while dc1 served");
    let r = lab.cycle().await;
    assert_eq!(
        (r.mode, r.dc.as_deref(), r.upserts),
        ("delta", Some(DC1), 1)
    );

    // 3. dc1 goes down. dc2 was never read: a full sync there, nothing deleted.
    lab.dc1.stop();
    lab.replicated(&dn(1), "changed while dc1 was down");
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC2)), "{r:?}");
    assert!(
        r.full_reason.as_deref().unwrap_or_default().contains(DC2),
        "{:?}",
        r.full_reason
    );
    assert_eq!(r.passed_over.len(), 1, "{:?}", r.passed_over);
    assert!(r.passed_over[0].contains("refused"), "{:?}", r.passed_over);
    assert!(
        r.summary().contains("after passing over"),
        "{}",
        r.summary()
    );
    assert_eq!((r.upserts, r.deletes), (1, 0), "{}", r.summary());
    lab.assert_platform_matches(&lab.dc2.directory);

    // 4. Still on dc2: a delta from dc2's own mark (a USN a million above dc1's).
    lab.replicated(&dn(2), "changed on dc2");
    let r = lab.cycle().await;
    assert_eq!(
        (r.mode, r.dc.as_deref(), r.upserts),
        ("delta", Some(DC2), 1)
    );
    let marks = lab.store().dc_marks().unwrap();
    assert_eq!(marks.len(), 2, "{marks:?}");
    let dc2_usn = marks
        .iter()
        .find(|m| m.position.dc_host == DC2)
        .unwrap()
        .position
        .usn;
    assert!(dc2_usn > 1_000_000, "dc2's own USN: {dc2_usn}");

    // 5. dc1 comes back, having missed nothing (replication): the next cycle returns to
    // it with a delta from dc1's own mark, which reads the two changes made meanwhile, and
    // re-reads on dc1 what the cycles on dc2 sent since dc1's mark (a lagging dc2 would
    // have sent older values, which dc1's delta would otherwise never correct).
    lab.replicated(&dn(3), "changed before dc1 came back");
    lab.dc1.restart();
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("delta", Some(DC1)), "{r:?}");
    assert_eq!(
        (r.users, r.upserts),
        (5, 1),
        "dn 1 and 2 read again (unchanged), dn 3 sent, the 2 objects dc2's cycles sent re-read: {}",
        r.summary()
    );
    lab.assert_platform_matches(&lab.dc1.directory);

    // 6. A deletion replicated while dc1 is down again arrives from dc2 as a tombstone.
    lab.dc1.stop();
    for dc in [&lab.dc1, &lab.dc2] {
        dc.directory.delete(&dn(4)).unwrap();
    }
    let r = lab.cycle().await;
    assert_eq!(
        (r.mode, r.dc.as_deref(), r.deletes),
        ("delta", Some(DC2), 1)
    );
    lab.assert_platform_matches(&lab.dc2.directory);
    assert!(lab.platform.false_deletes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_on_a_lagging_dc_deletes_only_what_it_proves_gone() {
    let mut lab = TwoDcs::new();
    let users = lab.users();
    lab.cycle().await;

    // On dc1: a user created (not yet on dc2), and a user deleted (replicated to dc2).
    let template = &users[5];
    let new_dn = template.dn().replace("CN=", "CN=New ");
    let mut created = Entry::new(new_dn.clone());
    for attr in ["objectClass", "objectCategory", "userAccountControl"] {
        created.set(attr, template.get(attr).unwrap().to_vec());
    }
    created.set("sAMAccountName", ["new.hire"]);
    lab.dc1.directory.add(created).unwrap();
    for dc in [&lab.dc1, &lab.dc2] {
        dc.directory.delete(users[6].dn()).unwrap();
    }
    let r = lab.cycle().await;
    // The new user, and the groups that listed the deleted one.
    assert_eq!((r.mode, r.deletes), ("delta", 1), "{}", r.summary());
    assert!(r.upserts >= 1, "{}", r.summary());

    // dc1 fails; dc2 (never read, so a full sync) lacks the new user. It proves the
    // deleted one gone by its tombstone, but must not delete the new hire it never saw.
    lab.dc1.stop();
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC2)));
    assert_eq!((r.deletes, r.deletes_unproven), (0, 1), "{}", r.summary());
    assert!(
        r.summary().contains("not replicated yet"),
        "{}",
        r.summary()
    );
    let new_guid = guid_of(&lab.dc1.directory.get(&new_dn).unwrap());
    assert!(
        lab.platform.objects().contains_key(&new_guid),
        "a live account must not be shown as gone"
    );

    // The user replicates; the next cycle (a delta on dc2) reads it, and nothing is lost.
    let entry = lab.dc1.directory.get(&new_dn).unwrap();
    lab.dc2.directory.add(entry).unwrap();
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("delta", Some(DC2)));
    lab.assert_platform_matches(&lab.dc2.directory);
    assert!(lab.platform.false_deletes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_dc_is_read_in_full_again() {
    let mut lab = TwoDcs::new();
    lab.cycle().await;
    lab.dc1.stop();
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC2)));
    // dc2 is restored from a backup (new invocationId): its mark is worthless.
    lab.dc2.server().simulate_restore();
    let r = lab.cycle().await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC2)), "{r:?}");
    assert!(
        r.full_reason
            .as_deref()
            .unwrap_or_default()
            .contains("invocationId"),
        "{:?}",
        r.full_reason
    );
    lab.assert_platform_matches(&lab.dc2.directory);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dc_down_fails_the_cycle_naming_each_and_moves_nothing() {
    let mut lab = TwoDcs::new();
    lab.cycle().await;
    let before = lab.store().checkpoint().unwrap();
    lab.dc1.stop();
    lab.dc2.stop();
    let config = lab.config(vec![lab.dc1.url(), lab.dc2.url()]);
    let directory = lab.dc1.directory.clone();
    let source = Source::new(config)
        .unwrap()
        .with_clock(Arc::new(move || directory.now()));
    let mut engine = Engine::new(
        source,
        Arc::new(lab.platform.clone()),
        Store::open(lab.state.path()).unwrap(),
        EngineOptions::default(),
    );
    let err = engine
        .run_cycle(
            CycleRequest::default(),
            &ad_sync::NoObserver,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no domain controller could be used"), "{err}");
    assert!(
        err.contains(&lab.dc1.url()) && err.contains(&lab.dc2.url()),
        "{err}"
    );
    drop(engine);
    assert_eq!(lab.store().checkpoint().unwrap(), before);
}

/// DNS SRV discovery: `_ldap._tcp.dc._msdcs.<domain>` lists one name with two addresses
/// (two DCs behind one round-robin name) and a lower-priority DC; the cycle pins one
/// address, fails over to the other address of the same name, and prefers the highest
/// priority again when it is back.
#[tokio::test(flavor = "multi_thread")]
async fn dns_discovery_pins_one_address_per_cycle_and_fails_over_by_priority() {
    // Two DCs on the same port of two loopback addresses, one name for both.
    let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut lab = TwoDcs::on(
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 5], port)),
    );
    let zone = DnsZone {
        srv: vec![(
            "_ldap._tcp.dc._msdcs.corp.example.test".to_owned(),
            vec![SrvEntry {
                priority: 0,
                weight: 100,
                port,
                target: "dc.corp.example.test".to_owned(),
            }],
        )],
        a: vec![(
            "dc.corp.example.test".to_owned(),
            vec![Ipv4Addr::new(127, 0, 0, 5), Ipv4Addr::new(127, 0, 0, 1)],
        )],
    };
    let dns = DnsServer::start(zone).unwrap();
    let mut config = lab.config(Vec::new());
    config.domain = Some("corp.example.test".to_owned());
    config.discovered_scheme = DiscoveredScheme::Ldap;
    config.dns_server = Some(dns.addr());

    let source = Source::new(config.clone()).unwrap();
    let candidates = source.candidates().await.unwrap();
    assert_eq!(candidates.len(), 1);
    assert_eq!(
        candidates[0].url,
        format!("ldap://dc.corp.example.test:{port}")
    );
    assert!(candidates[0].origin.contains("priority 0 weight 100"));
    // `test` probes the discovered DC at the address DNS gave, on the SRV record's port.
    let probes = ad_source::probe::probe_dcs(&config).await.unwrap();
    assert_eq!(probes.len(), 1);
    assert!(
        probes[0].report.ok(),
        "{:?}",
        probes[0].report.first_failure()
    );

    // The lowest address first, every cycle: dc1 on 127.0.0.1.
    let r = lab.cycle_on(config.clone(), false).await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC1)));
    let r = lab.cycle_on(config.clone(), false).await;
    assert_eq!((r.mode, r.dc.as_deref()), ("delta", Some(DC1)));

    // 127.0.0.1 down: the other address of the same name.
    lab.dc1.stop();
    let r = lab.cycle_on(config.clone(), false).await;
    assert_eq!((r.mode, r.dc.as_deref()), ("full", Some(DC2)));
    assert!(
        r.passed_over[0].contains("127.0.0.1"),
        "{:?}",
        r.passed_over
    );
    lab.dc1.restart();
    let r = lab.cycle_on(config.clone(), false).await;
    assert_eq!((r.mode, r.dc.as_deref()), ("delta", Some(DC1)));
    assert!(dns.queries() >= 4);

    // A name that is not in DNS: a sentence naming the SRV name.
    let mut wrong = config;
    wrong.domain = Some("other.example.test".to_owned());
    let err = Source::new(wrong)
        .unwrap()
        .candidates()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("_ldap._tcp.dc._msdcs.other.example.test"),
        "{err}"
    );
}
