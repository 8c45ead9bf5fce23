//! A full read on several connections (`read_connections`): exactly the entries of a read on
//! one, each once, even while the directory changes under it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ad_model::Guid;
use ad_source::{Source, SourceError};
use ad_testkit::{
    FailureCode, FaultOptions, Modification, PageFault, PageFaultKind, ServerOptions, TestServer,
};

use crate::common::{Collected, counters_consistent, drain, full, no_duplicates};
use crate::testkit::{company, config, new_user, parent_of};

/// Every record read, by GUID, as JSON (users and groups).
fn records(c: &Collected) -> BTreeMap<Guid, String> {
    let mut out = BTreeMap::new();
    for u in &c.users {
        out.insert(
            u.record.object_guid,
            serde_json::to_string(&u.record).unwrap(),
        );
    }
    for g in &c.groups {
        out.insert(
            g.record.object_guid,
            serde_json::to_string(&g.record).unwrap(),
        );
    }
    out
}

#[tokio::test]
async fn testkit_a_full_read_on_several_connections_returns_exactly_the_same_entries() {
    let (directory, _) = company(2_500);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut cfg = config(&server);
    let (one, one_summary) = full(&Source::new(cfg.clone()).unwrap()).await;
    assert!(one.skipped.is_empty(), "{:?}", one.skipped);
    let expected = records(&one);
    assert!(expected.len() > 2_500, "{}", expected.len());
    for connections in [2u32, 3, 4] {
        cfg.read_connections = connections;
        let before = server.stats().connections;
        let searches_before = server.search_log().len();
        let (c, summary) = full(&Source::new(cfg.clone()).unwrap()).await;
        no_duplicates(&c);
        counters_consistent(&c, &summary.counters);
        assert!(c.skipped.is_empty(), "{:?}", c.skipped);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            records(&c),
            expected,
            "{connections} connections read other records than one"
        );
        assert_eq!(summary.nesting, one_summary.nesting);
        assert_eq!(summary.checkpoint.usn, one_summary.checkpoint.usn);
        assert!(!summary.counters.truncated());
        assert_eq!(
            server.stats().connections - before,
            u64::from(connections),
            "{connections} connections wanted"
        );
        // The users were read in slices of uSNCreated, each on one of the connections.
        let log = server.search_log();
        let slices: Vec<_> = log[searches_before..]
            .iter()
            .filter(|s| s.filter.contains("uSNCreated>=") && !s.has_cookie)
            .collect();
        assert_eq!(
            slices.len(),
            connections as usize * ad_source::partition::SLICES_PER_CONNECTION
        );
        let used: HashSet<u64> = slices.iter().map(|s| s.connection).collect();
        assert!(used.len() > 1, "one connection read every slice");
    }
}

#[tokio::test]
async fn testkit_a_parallel_read_sees_each_object_once_while_the_directory_changes() {
    let (directory, _) = company(1_500);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut cfg = config(&server);
    cfg.read_connections = 3;
    cfg.page_size = 100;
    let users_before: Vec<String> = directory
        .find(&cfg.user_filter)
        .unwrap()
        .iter()
        .map(|e| e.dn().to_owned())
        .collect();
    // Slow pages, so the changes land while the slices are being read.
    server.set_faults(FaultOptions {
        page_delay: Duration::from_millis(15),
        ..FaultOptions::default()
    });
    let source = Source::new(cfg.clone()).unwrap();
    let run = source.full_snapshot().await.unwrap();
    let changer = {
        let directory = directory.clone();
        let users = users_before.clone();
        tokio::spawn(async move {
            let mut created = Vec::new();
            for (i, dn) in users.iter().enumerate().step_by(37) {
                tokio::time::sleep(Duration::from_millis(3)).await;
                // A rename moves the user in the tree and gives it a new uSNChanged; its
                // uSNCreated, and so its slice, stay.
                let new_dn = format!("CN=Renamed {i},{}", parent_of(dn));
                directory.rename(dn, &new_dn).unwrap();
                directory
                    .modify(&new_dn, [Modification::replace("title", ["Moved"])])
                    .unwrap();
                let added = format!("CN=Added {i},{}", parent_of(dn));
                directory
                    .add(new_user(&added, &format!("added{i}")))
                    .unwrap();
                created.push(added);
            }
            created
        })
    };
    let (c, result) = drain(run).await;
    let summary = result.unwrap();
    let created = changer.await.unwrap();
    no_duplicates(&c);
    counters_consistent(&c, &summary.counters);
    // Every user that existed before the read and still exists was read (renamed or not).
    let read: HashSet<Guid> = c.users.iter().map(|u| u.record.object_guid).collect();
    let now_live = directory.find(&cfg.user_filter).unwrap();
    let created: HashSet<String> = created.iter().map(|d| d.to_lowercase()).collect();
    let mut expected = 0;
    for entry in &now_live {
        if created.contains(&entry.dn().to_lowercase()) {
            continue;
        }
        let guid = Guid::from_bytes(&entry.get("objectGUID").unwrap()[0]).unwrap();
        assert!(read.contains(&guid), "{} was not read", entry.dn());
        expected += 1;
    }
    assert_eq!(expected, users_before.len());
    let renamed_read = c
        .users
        .iter()
        .filter(|u| u.record.dn.starts_with("CN=Renamed"))
        .count();
    assert!(
        renamed_read > 0,
        "no change landed before its user was read"
    );
}

#[tokio::test]
async fn testkit_users_whose_usn_created_is_unreadable_are_read_too() {
    // An account granted property sets, not "Read all properties", may not read uSNCreated:
    // no slice can match such a user, and a single search still returns it.
    let (directory, _) = company(600);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut cfg = config(&server);
    let users = directory.find(&cfg.user_filter).unwrap();
    let hidden: Vec<String> = users
        .iter()
        .step_by(50)
        .map(|e| e.dn().to_owned())
        .collect();
    for dn in &hidden {
        directory.hide_attribute(dn, "uSNCreated").unwrap();
        assert!(directory.get(dn).unwrap().get("uSNCreated").is_none());
    }
    let (one, _) = full(&Source::new(cfg.clone()).unwrap()).await;
    cfg.read_connections = 3;
    let (three, summary) = full(&Source::new(cfg).unwrap()).await;
    no_duplicates(&three);
    counters_consistent(&three, &summary.counters);
    assert_eq!(three.users.len(), users.len());
    assert_eq!(records(&three), records(&one));
    let read: HashSet<String> = three.users.iter().map(|u| u.record.dn.clone()).collect();
    for dn in &hidden {
        assert!(
            read.contains(dn),
            "{dn} (no readable uSNCreated) was not read"
        );
    }
}

/// The first `pages` continuation pages of the user slices end with `code` after `entries`.
fn on_slices(pages: u64, code: FailureCode, entries: usize) -> FaultOptions {
    FaultOptions {
        page_fault: Some(PageFault {
            filter_contains: Some("uSNCreated".to_owned()),
            first_pages: pages,
            kind: PageFaultKind::EndWith { code, entries },
        }),
        ..FaultOptions::default()
    }
}

#[tokio::test]
async fn testkit_a_slice_cut_short_makes_the_parallel_read_incomplete() {
    let (directory, _) = company(1_200);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut cfg = config(&server);
    cfg.read_connections = 2;
    cfg.page_size = 20;
    let all = directory.find(&cfg.user_filter).unwrap().len();
    // Every continuation page of the user slices ends with sizeLimitExceeded: each of those
    // slices is incomplete, and so is the whole read, whichever connection read them.
    server.set_faults(on_slices(u64::MAX, FailureCode::SizeLimitExceeded, 3));
    let run = Source::new(cfg).unwrap().full_snapshot().await.unwrap();
    let (c, result) = drain(run).await;
    let summary = result.unwrap();
    no_duplicates(&c);
    counters_consistent(&c, &summary.counters);
    assert!(c.users.len() < all, "{} of {all}", c.users.len());
    let cut = server.stats().size_limit_exceeded;
    assert!(cut > 1, "{cut} slices cut");
    assert_eq!(
        summary.counters.limit_exceeded, cut,
        "every connection's cut slices count: {:?}",
        summary.counters
    );
    assert!(
        summary.truncated(),
        "a slice that ended early must not pass for a complete read"
    );

    // A slice that fails outright fails the run.
    server.set_faults(on_slices(1, FailureCode::OperationsError, 0));
    let mut cfg = config(&server);
    cfg.read_connections = 2;
    cfg.page_size = 20;
    let run = Source::new(cfg).unwrap().full_snapshot().await.unwrap();
    let (_, result) = drain(run).await;
    let error: SourceError = result.expect_err("a failed slice must fail the run");
    assert!(error.to_string().contains("uSNCreated"), "{error}");
}
