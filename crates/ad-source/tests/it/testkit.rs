//! Against the in-process AD-like directory of `ad-testkit`: Windows limits (MaxPageSize,
//! MaxValRange, referrals), dropped connections, malformed values, deltas, DC changes.

use std::collections::HashSet;

use ad_model::Guid;
use ad_source::{BindFailureKind, Checkpoint, DeltaOutcome, Source, SourceConfig, SourceError};
use ad_testkit::{
    BASE_DN, BindAccount, BindFailure, Company, CompanyManifest, CompanyOptions, Directory,
    DropAfter, Entry, FailureCode, FaultOptions, GeneratedOptions, Malformation, Modification,
    SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN, SearchFailure, ServerOptions, TestServer,
};
use secrecy::SecretString;

use crate::common::{counters_consistent, drain, full, no_duplicates};

pub fn config(server: &TestServer) -> SourceConfig {
    let mut c = SourceConfig::new(
        server.url(),
        SERVICE_ACCOUNT_UPN,
        SecretString::from(SERVICE_ACCOUNT_PASSWORD),
    );
    // The test server speaks plain LDAP on 127.0.0.1 only.
    c.starttls = false;
    c.allow_plain_ldap = true;
    c.connect_timeout_secs = 5;
    c.operation_timeout_secs = 20;
    c
}

pub fn company(users: usize) -> (Directory, CompanyManifest) {
    let c = Company::build(CompanyOptions {
        users,
        ..CompanyOptions::default()
    });
    (c.directory, c.manifest)
}

pub fn truth(directory: &Directory, filter: &str) -> HashSet<String> {
    directory
        .find(filter)
        .unwrap()
        .iter()
        .map(|e| e.dn().to_lowercase())
        .collect()
}

#[tokio::test]
async fn testkit_windows_limits_pages_ranges_referrals_primary_groups() {
    let (directory, m) = company(2_500);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut cfg = config(&server);
    cfg.page_size = 5_000; // above MaxPageSize: capped
    let source = Source::new(cfg.clone()).unwrap();
    let (c, summary) = full(&source).await;
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    no_duplicates(&c);
    counters_consistent(&c, &summary.counters);

    let users: HashSet<String> = c.users.iter().map(|u| u.record.dn.to_lowercase()).collect();
    assert_eq!(users, truth(&directory, &cfg.user_filter));
    let groups: HashSet<String> = c
        .groups
        .iter()
        .map(|g| g.record.dn.to_lowercase())
        .collect();
    assert_eq!(groups, truth(&directory, &cfg.group_filter));
    assert!(summary.counters.pages >= 3, "{:?}", summary.counters);
    assert!(
        summary.counters.referrals_ignored > 0,
        "{:?}",
        summary.counters
    );

    // The large group came back ranged (MaxValRange 1500) and was completed.
    let large = c
        .groups
        .iter()
        .find(|g| g.record.dn.eq_ignore_ascii_case(&m.large_group))
        .unwrap();
    let expected = directory.get(&m.large_group).unwrap().strs("member").len();
    assert!(expected > 1_500);
    assert_eq!(large.record.members.len(), expected);
    assert!(summary.counters.range_fetches >= 1);

    // Primary group: Domain Users, by SID and DN.
    let user = c
        .users
        .iter()
        .find(|u| u.record.dn.eq_ignore_ascii_case(&m.users[0]))
        .unwrap();
    let primary = user
        .record
        .groups
        .iter()
        .find(|g| g.primary)
        .expect("primary group");
    assert!(
        primary.dn.eq_ignore_ascii_case(&m.domain_users),
        "{primary:?}"
    );
    assert!(primary.sid.unwrap().to_string().ends_with("-513"));
    // Admins are recognised through resolved SIDs.
    for admin in &m.admins {
        let a = c
            .users
            .iter()
            .find(|u| u.record.dn.eq_ignore_ascii_case(admin))
            .unwrap();
        assert!(a.record.is_privileged(), "{admin}");
    }
}

#[tokio::test]
async fn testkit_dropped_connections_resume_without_duplicates_or_losses() {
    let (directory, _) = company(2_500);
    let options = ServerOptions {
        faults: FaultOptions {
            drop_after: Some(DropAfter {
                entries: 900,
                first_connections: 4,
            }),
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory.clone(), options).unwrap();
    let cfg = config(&server);
    let (c, summary) = full(&Source::new(cfg.clone()).unwrap()).await;
    no_duplicates(&c);
    let users: HashSet<String> = c.users.iter().map(|u| u.record.dn.to_lowercase()).collect();
    assert_eq!(users, truth(&directory, &cfg.user_filter));
    assert!(summary.counters.reconnects >= 1, "{:?}", summary.counters);
    assert!(
        summary.counters.duplicates_suppressed > 0,
        "{:?}",
        summary.counters
    );
    // Restarts are counted and explained, but lose nothing.
    assert!(
        summary.counters.searches_restarted >= 1,
        "{:?}",
        summary.counters
    );
    assert!(!summary.truncated());
    assert!(
        summary
            .incomplete_reasons()
            .iter()
            .any(|r| r.contains("from the first page after a reconnect")),
        "{:?}",
        summary.incomplete_reasons()
    );
}

#[tokio::test]
async fn testkit_endless_drops_give_up_with_a_sentence() {
    let (directory, _) = company(300);
    let options = ServerOptions {
        faults: FaultOptions {
            drop_after: Some(DropAfter {
                entries: 50,
                first_connections: u64::MAX,
            }),
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory, options).unwrap();
    let mut cfg = config(&server);
    cfg.max_reconnects = Some(2);
    let run = Source::new(cfg).unwrap().full_snapshot().await.unwrap();
    let (_, end) = drain(run).await;
    let err = end.unwrap_err();
    assert!(
        matches!(err, SourceError::ReconnectsExhausted { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gave up"), "{err}");
}

/// A DC reboot mid-read: the connection drops and the DC refuses service for 3 s. With the
/// default-style time budget the read rides it out and completes; with a budget shorter
/// than the outage it gives up with a sentence that says how long it tried and what to raise.
/// (Five attempts with doubling delays used to span ~6 s in all, shorter than a reboot.)
#[tokio::test]
async fn testkit_a_dc_reboot_is_ridden_out_within_the_reconnect_time_budget() {
    let (directory, _) = company(300);
    let reboot = FaultOptions {
        drop_after: Some(DropAfter {
            entries: 80,
            first_connections: 1,
        }),
        down_after_drop: std::time::Duration::from_secs(3),
        ..FaultOptions::default()
    };
    let server = TestServer::start(
        directory.clone(),
        ServerOptions {
            faults: reboot.clone(),
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let mut cfg = config(&server);
    cfg.max_reconnect_secs = 60;
    cfg.reconnect_backoff_ms = 100;
    let (c, summary) = full(&Source::new(cfg.clone()).unwrap()).await;
    assert_eq!(c.users.len(), truth(&directory, &cfg.user_filter).len());
    let stats = server.stats();
    assert!(
        stats.closed_while_down >= 2,
        "the client kept knocking while the DC was down: {stats:?}"
    );
    assert!(summary.counters.reconnects > stats.closed_while_down);

    // A budget shorter than the outage: a sentence, not a hang.
    let server = TestServer::start(
        directory,
        ServerOptions {
            faults: reboot,
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let mut cfg = config(&server);
    cfg.max_reconnect_secs = 1;
    cfg.reconnect_backoff_ms = 100;
    let run = Source::new(cfg).unwrap().full_snapshot().await.unwrap();
    let (_, end) = drain(run).await;
    let err = end.unwrap_err();
    assert!(
        matches!(err, SourceError::ReconnectsExhausted { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("in 1 s") || text.contains("in 0 s"), "{text}");
    assert!(text.contains("raise max_reconnect_secs"), "{text}");
}

#[tokio::test]
async fn testkit_busy_dc_is_retried() {
    let (directory, _) = company(200);
    let options = ServerOptions {
        faults: FaultOptions {
            search_failure: Some(SearchFailure {
                code: FailureCode::Busy,
                first_searches: 2,
            }),
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory.clone(), options).unwrap();
    let cfg = config(&server);
    let (c, summary) = full(&Source::new(cfg.clone()).unwrap()).await;
    assert_eq!(c.users.len(), truth(&directory, &cfg.user_filter).len());
    assert!(summary.counters.reconnects >= 1);
}

#[tokio::test]
async fn testkit_malformed_entries_are_reported_and_skipped() {
    let (directory, m) = company(200);
    let bad_guid = m.users[3].clone();
    let bad_sid = m.users[4].clone();
    let options = ServerOptions {
        faults: FaultOptions {
            malformed: vec![
                Malformation::short_guid().for_dn(bad_guid.clone()),
                Malformation::truncated_sid().for_dn(bad_sid.clone()),
                Malformation::invalid_utf8("displayName").for_dn(bad_sid.clone()),
            ],
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory.clone(), options).unwrap();
    let cfg = config(&server);
    let (c, summary) = full(&Source::new(cfg.clone()).unwrap()).await;
    assert_eq!(c.skipped.len(), 1, "{:?}", c.skipped);
    assert!(c.skipped[0].dn.eq_ignore_ascii_case(&bad_guid));
    assert_eq!(c.skipped[0].guid, None);
    assert!(
        c.skipped[0].reason.contains("objectGUID"),
        "{}",
        c.skipped[0].reason
    );
    assert_eq!(c.users.len() + 1, truth(&directory, &cfg.user_filter).len());
    let partial = c
        .users
        .iter()
        .find(|u| u.record.dn.eq_ignore_ascii_case(&bad_sid))
        .unwrap();
    assert_eq!(partial.record.object_sid, None);
    assert!(partial.warnings.iter().any(|w| w.attribute == "objectSid"));
    assert!(
        partial
            .warnings
            .iter()
            .any(|w| w.attribute == "displayName")
    );
    assert_eq!(summary.counters.skipped, 1);
}

pub fn new_user(dn: &str, sam: &str) -> Entry {
    Entry::new(dn)
        .with(
            "objectClass",
            ["top", "person", "organizationalPerson", "user"],
        )
        .with(
            "objectCategory",
            [format!("CN=Person,CN=Schema,CN=Configuration,{BASE_DN}")],
        )
        .with("sAMAccountName", [sam])
        .with("userAccountControl", ["512"])
        .with("primaryGroupID", ["513"])
}

#[tokio::test]
async fn testkit_delta_yields_exactly_five_events_and_group_changes() {
    let (directory, m) = company(300);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let source = Source::new(config(&server)).unwrap();
    let (before, summary) = full(&source).await;
    let guid = |dn: &str| -> Guid {
        before
            .users
            .iter()
            .find(|u| u.record.dn.eq_ignore_ascii_case(dn))
            .unwrap()
            .record
            .object_guid
    };
    let mut changed = HashSet::new();
    for dn in &m.users[10..13] {
        directory
            .modify(dn, [Modification::replace("title", ["Promoted"])])
            .unwrap();
        changed.insert(guid(dn));
    }
    let gone = guid(&m.users[20]);
    directory.delete(&m.users[20]).unwrap();
    let added = format!("CN=New Hire,{}", parent_of(&m.users[0]));
    directory.add(new_user(&added, "nhire")).unwrap();

    let DeltaOutcome::Changes(run) = source.changes_since(&summary.checkpoint).await.unwrap()
    else {
        panic!("delta expected");
    };
    let (d, end) = drain(run).await;
    let end = end.unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.users.len(), 4);
    assert_eq!(d.deleted.len(), 1);
    assert!(
        d.groups.is_empty(),
        "{:?}",
        d.groups.iter().map(|g| &g.record.dn).collect::<Vec<_>>()
    );
    assert_eq!(d.deleted[0].object_guid, gone);
    assert!(d.deleted[0].object_sid.is_some());
    let guids: HashSet<Guid> = d.users.iter().map(|u| u.record.object_guid).collect();
    assert!(changed.is_subset(&guids));
    let new = d.users.iter().find(|u| u.record.dn == added).unwrap();
    assert!(
        new.record
            .groups
            .iter()
            .any(|g| g.primary && g.sid.is_some())
    );

    // A membership change is a change of the group only; it comes with every member, and
    // a rename/move keeps the objectGUID.
    directory
        .modify(
            &m.empty_group,
            [Modification::add("member", [m.users[30].clone()])],
        )
        .unwrap();
    let moved_guid = guid(&m.users[31]);
    let moved_to = format!("CN=Moved Person,{}", parent_of(&m.users[0]));
    directory.rename(&m.users[31], &moved_to).unwrap();
    let DeltaOutcome::Changes(run) = source.changes_since(&end.checkpoint).await.unwrap() else {
        panic!("delta expected");
    };
    let (d2, _) = drain(run).await;
    assert_eq!(d2.groups.len(), 1);
    assert_eq!(d2.groups[0].record.members, vec![m.users[30].clone()]);
    assert_eq!(d2.users.len(), 1);
    assert_eq!(d2.users[0].record.object_guid, moved_guid);
    assert_eq!(d2.users[0].record.dn, moved_to);
}

pub fn parent_of(dn: &str) -> String {
    // Split at the first unescaped comma.
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return dn.get(i + 1..).unwrap_or_default().to_owned(),
            _ => i += 1,
        }
    }
    String::new()
}

#[tokio::test]
async fn testkit_other_dc_or_restore_requires_full_sync() {
    let (directory, _) = company(50);
    let dc1 = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let dc2 = TestServer::start(
        directory.clone(),
        ServerOptions::for_host("dc2.corp.example.test"),
    )
    .unwrap();
    let root = Source::new(config(&dc1)).unwrap().root_dse().await.unwrap();
    let checkpoint = Checkpoint {
        dc_host: root.dns_host_name.clone(),
        invocation_id: root.invocation_id,
        usn: root.highest_committed_usn,
    };
    match Source::new(config(&dc2))
        .unwrap()
        .changes_since(&checkpoint)
        .await
        .unwrap()
    {
        DeltaOutcome::FullSyncRequired { reason } => {
            assert!(reason.contains("dc2.corp.example.test"), "{reason}")
        }
        DeltaOutcome::Changes(_) => panic!("another DC must force a full sync"),
    }
    dc1.simulate_restore();
    match Source::new(config(&dc1))
        .unwrap()
        .changes_since(&checkpoint)
        .await
        .unwrap()
    {
        DeltaOutcome::FullSyncRequired { reason } => {
            assert!(reason.contains("invocationId"), "{reason}")
        }
        DeltaOutcome::Changes(_) => panic!("a restore must force a full sync"),
    }
}

#[tokio::test]
async fn testkit_bind_failures_are_sentences() {
    let (directory, _) = company(20);
    let locked = BindAccount::new("CN=locked,DC=corp,DC=example,DC=test", "pw")
        .with_upn("locked@corp.example.test")
        .with_failure(BindFailure::AccountLocked);
    let options = ServerOptions {
        accounts: vec![BindAccount::service_account(), locked],
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory.clone(), options).unwrap();
    let mut cfg = config(&server);
    cfg.bind = "locked@corp.example.test".into();
    cfg.password = SecretString::from("pw");
    let err = Source::new(cfg).unwrap().root_dse().await.unwrap_err();
    match &err {
        SourceError::Bind(f) => assert_eq!(f.kind, BindFailureKind::AccountLocked),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("locked out"), "{err}");

    let strict = TestServer::start(
        directory,
        ServerOptions {
            require_strong_auth: true,
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let err = Source::new(config(&strict))
        .unwrap()
        .root_dse()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Use LDAPS"), "{err}");
}

#[tokio::test]
async fn testkit_delta_of_ten_changes_in_a_large_directory() {
    // 100k in the bench (release); 10k here keeps the debug suite fast (the test server
    // evaluates the uSNChanged filter by scanning, which dominates in debug builds).
    let users = 10_000u64;
    let directory = Directory::generated(GeneratedOptions {
        users,
        ..GeneratedOptions::default()
    });
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let source = Source::new(config(&server)).unwrap();
    let root = source.root_dse().await.unwrap();
    let checkpoint = Checkpoint {
        dc_host: root.dns_host_name.clone(),
        invocation_id: root.invocation_id,
        usn: root.highest_committed_usn,
    };
    let container = ad_testkit::generated_container(BASE_DN);
    let mut modified = Vec::new();
    for i in
        [1u64, 7, 500, 999, 2_000, 3_333, 5_001, 7_777, 8_888, 9_999].map(|i| i * users / 10_000)
    {
        let entries = directory
            .search(
                &container,
                ad_testkit::Scope::OneLevel,
                &format!("(sAMAccountName=u{i:07})"),
                false,
            )
            .unwrap_or_default();
        let dn = match entries.first() {
            Some(e) => e.dn().to_owned(),
            None => break,
        };
        directory
            .modify(&dn, [Modification::replace("title", ["Changed"])])
            .unwrap();
        modified.push(dn);
    }
    let started = std::time::Instant::now();
    let DeltaOutcome::Changes(run) = source.changes_since(&checkpoint).await.unwrap() else {
        panic!("delta expected");
    };
    let (d, end) = drain(run).await;
    end.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(d.users.len(), modified.len());
    assert!(!modified.is_empty());
    assert_eq!(modified.len(), 10);
    eprintln!(
        "delta of {} changes in {users} users: {elapsed:?}",
        modified.len()
    );
}
