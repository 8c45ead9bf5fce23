//! The engine's promises one at a time, against the in-process directory and the fake
//! platform: incomplete reads, the delete guard, quarantine, refusals that must fail the
//! cycle, skipped entries, time-driven changes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ad_model::Guid;
use ad_source::{Source, SourceConfig};
use ad_sync::{CycleError, CycleReport, CycleRequest, DeleteGuard, Engine, EngineOptions, Store};
use ad_testkit::{
    Company, CompanyManifest, CompanyOptions, FailureCode, FaultOptions, Malformation,
    Modification, PageFault, PageFaultKind, SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN,
    ServerOptions, TestServer,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::platform::Platform;

pub(crate) struct Lab {
    pub(crate) server: TestServer,
    pub(crate) manifest: CompanyManifest,
    pub(crate) platform: Platform,
    pub(crate) state: tempfile::TempDir,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let company = Company::build(CompanyOptions {
            users: 30,
            ..CompanyOptions::default()
        });
        let server =
            TestServer::start(company.directory.clone(), ServerOptions::default()).unwrap();
        let platform = Platform::new(company.directory);
        platform.arm(
            HashMap::new(),
            Arc::new(tokio::sync::Notify::new()),
            None,
            1,
        );
        Lab {
            server,
            manifest: company.manifest,
            platform,
            state: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn source(&self, base_dn: Option<&str>) -> Source {
        let mut config = SourceConfig::new(
            self.server.url(),
            SERVICE_ACCOUNT_UPN,
            SecretString::from(SERVICE_ACCOUNT_PASSWORD),
        );
        config.starttls = false;
        config.allow_plain_ldap = true;
        config.base_dn = base_dn.map(str::to_owned);
        config.page_size = 10;
        let directory = self.server.directory().clone();
        Source::new(config)
            .unwrap()
            .with_clock(Arc::new(move || directory.now()))
    }

    pub(crate) async fn cycle_with(
        &self,
        base_dn: Option<&str>,
        request: CycleRequest,
        guard: DeleteGuard,
    ) -> Result<CycleReport, CycleError> {
        let mut engine = Engine::new(
            self.source(base_dn),
            Arc::new(self.platform.clone()),
            Store::open(self.state.path()).unwrap(),
            EngineOptions {
                batch_size: 7,
                delete_guard: guard,
                ..EngineOptions::default()
            },
        );
        engine
            .run_cycle(request, &ad_sync::NoObserver, &CancellationToken::new())
            .await
    }

    pub(crate) async fn cycle(&self, force_full: bool) -> Result<CycleReport, CycleError> {
        self.cycle_with(
            None,
            CycleRequest {
                force_full,
                confirm_deletes: None,
            },
            DeleteGuard {
                max_delete_fraction: 1.0,
                max_deletes: None,
            },
        )
        .await
    }

    pub(crate) fn store(&self) -> Store {
        Store::open_read_only(self.state.path()).unwrap().unwrap()
    }

    pub(crate) fn guid(&self, dn: &str) -> Guid {
        let entry = self.server.directory().get(dn).unwrap();
        Guid::from_bytes(&entry.get("objectGUID").unwrap()[0]).unwrap()
    }
}

fn user_faults(kind: PageFaultKind) -> FaultOptions {
    FaultOptions {
        page_fault: Some(PageFault {
            kind,
            first_pages: 1,
            filter_contains: Some("objectCategory=person".into()),
        }),
        ..FaultOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_full_read_deletes_nothing_and_keeps_the_checkpoint() {
    let lab = Lab::new();
    let first = lab.cycle(true).await.unwrap();
    assert_eq!(first.deletes, 0);
    let checkpoint = lab.store().checkpoint().unwrap().unwrap();
    let gone = lab.manifest.users[3].clone();
    let gone_guid = lab.guid(&gone);
    lab.server.directory().delete(&gone).unwrap();

    for kind in [
        PageFaultKind::OmitPagedControl,
        PageFaultKind::EndWith {
            code: FailureCode::SizeLimitExceeded,
            entries: 2,
        },
    ] {
        lab.server.set_faults(user_faults(kind));
        let report = lab.cycle(true).await.unwrap();
        assert_eq!(report.deletes, 0, "{}", report.summary());
        assert!(!report.incomplete_read.is_empty(), "{}", report.summary());
        assert!(
            report
                .summary()
                .contains("no deletes sent because the read was incomplete")
        );
        assert!(report.checkpoint_held.is_some());
        assert!(report.needs_attention());
        assert_eq!(
            lab.store().checkpoint().unwrap().unwrap().position,
            checkpoint.position,
            "the checkpoint stays where it was"
        );
        assert!(lab.platform.objects().contains_key(&gone_guid));
    }
    // Complete again: the deletion goes out.
    lab.server.set_faults(FaultOptions::default());
    let report = lab.cycle(true).await.unwrap();
    assert_eq!(report.deletes, 1, "{}", report.summary());
    assert!(!report.needs_attention());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrower_scope_withholds_the_deletes_until_confirmed() {
    let lab = Lab::new();
    lab.cycle(true).await.unwrap();
    let tracked = lab.platform.objects().len();
    // The operator narrows base_dn to one OU: everything else looks gone.
    let ou = lab.manifest.users[0]
        .split_once(',')
        .map(|(_, parent)| parent.to_owned())
        .unwrap();
    let guard = DeleteGuard::default();
    let request = CycleRequest {
        force_full: true,
        confirm_deletes: None,
    };
    let report = lab.cycle_with(Some(&ou), request, guard).await.unwrap();
    assert_eq!(report.deletes, 0);
    assert!(report.withheld_deletes > 0);
    let reason = report.withheld_reason.clone().unwrap();
    assert!(reason.contains("deletes withheld"), "{reason}");
    assert!(reason.contains("base_dn"), "{reason}");
    assert!(reason.contains("--confirm-deletes"), "{reason}");
    assert!(report.needs_attention());
    assert_eq!(lab.platform.objects().len(), tracked, "nothing deleted");
    let withheld = lab.store().withheld().unwrap();
    assert_eq!(withheld.len() as u64, report.withheld_deletes);
    // The checkpoint moved (the upserts are delivered); a wrong count releases nothing.
    let wrong = CycleRequest {
        force_full: true,
        confirm_deletes: Some(report.withheld_deletes + 1),
    };
    let again = lab.cycle_with(Some(&ou), wrong, guard).await.unwrap();
    assert_eq!(again.deletes, 0);
    assert!(
        again
            .withheld_reason
            .unwrap()
            .contains("nothing was released")
    );
    // The exact count releases them.
    let confirm = CycleRequest {
        force_full: true,
        confirm_deletes: Some(report.withheld_deletes),
    };
    let released = lab.cycle_with(Some(&ou), confirm, guard).await.unwrap();
    assert_eq!(released.deletes, report.withheld_deletes);
    assert!(lab.store().withheld().unwrap().is_empty());
    // Back at the root, a full sync brings them back.
    let restored = lab.cycle(true).await.unwrap();
    assert_eq!(
        lab.platform.objects().len(),
        tracked,
        "{}",
        restored.summary()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_record_is_quarantined_the_rest_delivered_and_retried_later() {
    let lab = Lab::new();
    let poisoned = lab.guid(&lab.manifest.users[5]);
    lab.platform.set_poison(HashSet::from([poisoned]));
    let report = lab.cycle(true).await.unwrap();
    assert_eq!(report.quarantined.len(), 1, "{}", report.summary());
    assert!(
        report.quarantined[0].contains("HTTP 400"),
        "{:?}",
        report.quarantined
    );
    assert!(!lab.platform.objects().contains_key(&poisoned));
    let quarantine = lab.store().quarantined().unwrap();
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0].guid, poisoned);
    let checkpoint = lab.store().checkpoint().unwrap();
    assert!(checkpoint.is_some(), "the checkpoint moved");

    // Still refused: still quarantined, nothing else re-sent.
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.quarantined.len(), 1, "{}", report.summary());
    assert_eq!(report.upserts, 0);
    // Fixed on the platform side: the next delta delivers it.
    lab.platform.set_poison(HashSet::new());
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.upserts, 1, "{}", report.summary());
    assert!(lab.platform.objects().contains_key(&poisoned));
    assert!(lab.store().quarantined().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn refusing_every_record_or_the_credentials_fails_the_cycle() {
    let lab = Lab::new();
    for status in [400, 401, 403, 404] {
        lab.platform.refuse_all(Some(status));
        let error = lab.cycle(true).await.unwrap_err();
        assert!(
            matches!(
                error,
                CycleError::Sink(_) | CycleError::EverythingRefused { .. }
            ),
            "{status}: {error}"
        );
        assert!(error.to_string().contains("checkpoint was not advanced"));
        assert!(lab.store().quarantined().unwrap().is_empty(), "{status}");
        assert!(lab.store().checkpoint().unwrap().is_none(), "{status}");
    }
    lab.platform.refuse_all(None);
    lab.cycle(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_entry_is_remembered_and_delivered_once_readable() {
    let lab = Lab::new();
    lab.cycle(true).await.unwrap();
    let dn = lab.manifest.users[7].clone();
    let guid = lab.guid(&dn);
    lab.server
        .directory()
        .modify(
            &dn,
            [Modification::replace("title", ["Changed while unreadable"])],
        )
        .unwrap();
    lab.server.set_faults(FaultOptions {
        malformed: vec![Malformation::short_guid().for_dn(dn.clone())],
        ..FaultOptions::default()
    });
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.skipped.len(), 1, "{}", report.summary());
    let skipped = lab.store().skipped().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].dn.eq_ignore_ascii_case(&dn));
    // A full sync while it is unreadable does not delete it.
    let full = lab.cycle(true).await.unwrap();
    assert_eq!(full.deletes, 0, "{}", full.summary());
    assert!(lab.platform.objects().contains_key(&guid));
    // Readable again, unchanged since: the next delta still delivers its change.
    lab.server.set_faults(FaultOptions::default());
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.upserts, 1, "{}", report.summary());
    assert_eq!(
        lab.platform.record(&guid).unwrap()["title"],
        "Changed while unreadable"
    );
    assert!(lab.store().skipped().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_that_expires_between_two_deltas_is_sent_expired() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let dn = lab.manifest.users[9].clone();
    let guid = lab.guid(&dn);
    let at = directory.now() + chrono::Duration::minutes(30);
    directory
        .modify(
            &dn,
            [Modification::replace(
                "accountExpires",
                [ad_testkit::encoding::filetime(at).to_string()],
            )],
        )
        .unwrap();
    lab.cycle(true).await.unwrap();
    assert_eq!(
        lab.platform.record(&guid).unwrap()["account"]["expired"],
        false
    );
    lab.cycle(false).await.unwrap();
    directory.advance_clock(chrono::Duration::hours(1));
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.time_driven, 1, "{}", report.summary());
    assert_eq!(report.upserts, 1, "{}", report.summary());
    assert_eq!(
        lab.platform.record(&guid).unwrap()["account"]["expired"],
        true
    );
    // The next delta has nothing more to say.
    let report = lab.cycle(false).await.unwrap();
    assert_eq!(report.upserts, 0, "{}", report.summary());
}

/// A sink whose first request waits for a signal and notes how far the reader had got when
/// the request could finish.
#[derive(Debug)]
struct GatedSink {
    release: Arc<tokio::sync::Notify>,
    reads: Arc<std::sync::atomic::AtomicU64>,
    finished_at_read: std::sync::Mutex<Option<u64>>,
    first: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl asset_sink::Sink for GatedSink {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn capabilities(&self) -> asset_sink::Capabilities {
        asset_sink::Capabilities {
            standalone_groups: true,
            deletes: true,
            needs_affected_users: false,
        }
    }
    fn max_batch_size(&self) -> usize {
        1000
    }
    async fn check(&self) -> Result<asset_sink::CheckReport, asset_sink::SinkError> {
        unreachable!("not called")
    }
    async fn send(
        &self,
        batch: &asset_sink::Batch,
    ) -> Result<asset_sink::Ack, asset_sink::SinkError> {
        use std::sync::atomic::Ordering;
        if !self.first.swap(true, Ordering::SeqCst) {
            // Like a request whose response arrives while the reader is busy: it must be
            // driven to completion then, not when the engine next looks at it.
            self.release.notified().await;
            *self.finished_at_read.lock().unwrap() = Some(self.reads.load(Ordering::SeqCst));
        }
        Ok(asset_sink::Ack {
            batch_id: batch.id,
            accepted: batch.changes.len(),
            not_representable: Vec::new(),
            items_sent: batch.changes.len(),
            requests: 1,
            task_ids: Vec::new(),
        })
    }
}

struct CountingObserver {
    reads: Arc<std::sync::atomic::AtomicU64>,
    release_at: u64,
    release: Arc<tokio::sync::Notify>,
}

impl ad_sync::Observer for CountingObserver {
    fn object_read(&self, _kind: ad_model::ObjectKind) {
        use std::sync::atomic::Ordering;
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.release_at {
            self.release.notify_one();
        }
    }
}

/// The bug this guards against: sent batches were only polled when the engine settled them,
/// so a long stretch of reading left an accepted request unpolled until its timeout fired.
#[test]
fn a_sent_batch_completes_while_the_reader_is_busy() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let directory = ad_testkit::Directory::generated(ad_testkit::GeneratedOptions {
            users: 3000,
            ..ad_testkit::GeneratedOptions::default()
        });
        let server = TestServer::start(directory, ServerOptions::default()).unwrap();
        let mut config = SourceConfig::new(
            server.url(),
            SERVICE_ACCOUNT_UPN,
            SecretString::from(SERVICE_ACCOUNT_PASSWORD),
        );
        config.starttls = false;
        config.allow_plain_ldap = true;
        let release = Arc::new(tokio::sync::Notify::new());
        let reads = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sink = Arc::new(GatedSink {
            release: Arc::clone(&release),
            reads: Arc::clone(&reads),
            finished_at_read: std::sync::Mutex::new(None),
            first: std::sync::atomic::AtomicBool::new(false),
        });
        let state = tempfile::tempdir().unwrap();
        let mut engine = Engine::new(
            Source::new(config).unwrap(),
            Arc::clone(&sink) as Arc<dyn asset_sink::Sink>,
            Store::open(state.path()).unwrap(),
            EngineOptions {
                batch_size: 1000,
                concurrency: 64,
                ..EngineOptions::default()
            },
        );
        // The first batch goes out after 1,000 objects; its answer "arrives" at read 1,100.
        let observer = CountingObserver {
            reads: Arc::clone(&reads),
            release_at: 1100,
            release,
        };
        let report = engine
            .run_cycle(CycleRequest::default(), &observer, &CancellationToken::new())
            .await
            .unwrap();
        assert!(report.users >= 3000, "{}", report.summary());
        let finished = sink.finished_at_read.lock().unwrap().unwrap();
        // Driven by its own task, it finishes within a scheduling slice of the signal
        // (Tokio's budget is 128 operations), long before the read ends at 3,000+.
        assert!(
            finished < 1100 + 500,
            "the request finished only at read {finished}: it was not polled while the reader worked"
        );
    });
}

/// A cycle costs the DC one connection, TLS handshake and bind: the session that pinned the
/// DC serves the run, and the run's session serves the reads after it (changed groups,
/// re-reads of members), each starting with a fresh rootDSE read. Before, a delta cycle
/// connected and bound three times or more.
#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_connects_and_binds_once() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let before = lab.server.stats();
    lab.cycle(true).await.unwrap();
    let after_full = lab.server.stats();
    assert_eq!(after_full.connections - before.connections, 1, "full cycle");
    assert_eq!(after_full.binds - before.binds, 1, "full cycle");

    // A changed user and a changed group: the delta reads both, then re-checks groups.
    let user = lab.manifest.users[3].clone();
    directory
        .modify(&user, [Modification::replace("title", ["Changed"])])
        .unwrap();
    let group = lab.manifest.department_groups[0].clone();
    directory
        .modify(
            &group,
            [Modification::add("member", [lab.manifest.users[4].clone()])],
        )
        .unwrap();
    let report = lab.cycle(false).await.unwrap();
    assert!(report.upserts >= 2, "{}", report.summary());
    let after_delta = lab.server.stats();
    assert_eq!(
        after_delta.connections - after_full.connections,
        1,
        "delta cycle: {}",
        report.summary()
    );
    assert_eq!(after_delta.binds - after_full.binds, 1, "delta cycle");
    assert!(
        after_delta.searches - after_full.searches >= 3,
        "rootDSE, then the delta's searches on the same connection"
    );
}
