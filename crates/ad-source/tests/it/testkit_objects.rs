//! Re-reading objects by DN, skipped entries with their GUID, and the source's clock.

use std::sync::Arc;

use ad_model::AccountStatus;
use ad_source::{Source, SourceEvent};
use ad_testkit::{FailureCode, FaultOptions, Malformation, ServerOptions, TestServer, encoding};
use chrono::TimeDelta;

use crate::common::{Collected, full};
use crate::testkit::{company, config, new_user, parent_of};

#[tokio::test]
async fn testkit_read_objects_returns_users_groups_and_skips_with_guids() {
    let (directory, m) = company(2_500);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let fixed = directory.now();
    let source = Source::new(config(&server))
        .unwrap()
        .with_clock(Arc::new(move || fixed));
    let (snapshot, _) = full(&source).await;
    let user_dn = m.admins[0].clone();
    let group_dn = m.department_groups[0].clone();
    let bad_guid_dn = m.users[5].clone();
    let snapshot_user = snapshot
        .users
        .iter()
        .find(|u| u.record.dn.eq_ignore_ascii_case(&user_dn))
        .unwrap();
    let snapshot_group = snapshot
        .groups
        .iter()
        .find(|g| g.record.dn.eq_ignore_ascii_case(&group_dn))
        .unwrap();
    let large_guid = snapshot
        .groups
        .iter()
        .find(|g| g.record.dn.eq_ignore_ascii_case(&m.large_group))
        .unwrap()
        .record
        .object_guid;

    // The large group's ranged `member` cannot be completed; one user's GUID is malformed.
    server.set_faults(FaultOptions {
        range_failure: Some(FailureCode::AdminLimitExceeded),
        malformed: vec![Malformation::short_guid().for_dn(bad_guid_dn.clone())],
        ..FaultOptions::default()
    });
    // A full snapshot reports the large group as skipped, with its GUID.
    let (c, _) = full(&source).await;
    let skipped = c
        .skipped
        .iter()
        .find(|s| s.dn.eq_ignore_ascii_case(&m.large_group))
        .unwrap_or_else(|| panic!("{:?}", c.skipped));
    assert_eq!(skipped.guid, Some(large_guid));
    assert!(skipped.reason.contains("adminLimitExceeded"), "{skipped:?}");

    let dns = vec![
        user_dn.clone(),
        group_dn.to_uppercase(),
        m.large_group.clone(),
        bad_guid_dn.clone(),
        format!("CN=Nobody Here,{}", parent_of(&user_dn)),
        "CN=Elsewhere,DC=other,DC=test".to_owned(),
        m.domain_users.clone(), // CN=Domain Users,CN=Users: another group
    ];
    let read = Collected::of(source.read_objects(&dns).await.unwrap());
    assert_eq!(read.users.len(), 1, "{:?}", read.users);
    assert_eq!(read.users[0].record, snapshot_user.record);
    assert!(read.users[0].record.groups.iter().any(|g| g.primary));
    assert_eq!(read.groups.len(), 2);
    assert_eq!(read.groups[0].record, snapshot_group.record);
    assert!(
        read.groups[1]
            .record
            .dn
            .eq_ignore_ascii_case(&m.domain_users)
    );
    assert_eq!(read.skipped.len(), 2, "{:?}", read.skipped);
    assert_eq!(read.skipped[0].guid, Some(large_guid));
    assert!(read.skipped[1].dn.eq_ignore_ascii_case(&bad_guid_dn));
    assert_eq!(read.skipped[1].guid, None);
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);

    // read_users: the users only.
    let users = source.read_users(&dns).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].record, snapshot_user.record);
    assert!(source.read_objects(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn testkit_source_clock_decides_account_expiry() {
    let (directory, m) = company(50);
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let dn = format!("CN=Temp Worker,{}", parent_of(&m.users[0]));
    let expires = directory.now() + TimeDelta::hours(1);
    directory
        .add(
            new_user(&dn, "tworker")
                .with("accountExpires", [encoding::filetime(expires).to_string()])
                .with(
                    "pwdLastSet",
                    [encoding::filetime(directory.now()).to_string()],
                ),
        )
        .unwrap();
    let clock = directory.clone();
    let source = Source::new(config(&server))
        .unwrap()
        .with_clock(Arc::new(move || clock.now()));
    assert!((source.now() - directory.now()).abs() < TimeDelta::seconds(1));
    let status = |events: Vec<SourceEvent>| {
        let c = Collected::of(events);
        assert_eq!(c.users.len(), 1);
        c.users[0].record.account.status
    };
    let events = source
        .read_objects(std::slice::from_ref(&dn))
        .await
        .unwrap();
    assert_eq!(status(events), AccountStatus::Active);
    directory.advance_clock(TimeDelta::hours(2));
    let events = source
        .read_objects(std::slice::from_ref(&dn))
        .await
        .unwrap();
    assert_eq!(status(events), AccountStatus::Expired);
    // The full snapshot decodes with the same clock.
    let (c, _) = full(&source).await;
    assert_eq!(
        c.users
            .iter()
            .find(|u| u.record.dn == dn)
            .unwrap()
            .record
            .account
            .status,
        AccountStatus::Expired
    );
}

/// A server announcing `member;range=0-18446744073709551615` (no next index exists): the
/// group is skipped with a sentence, nothing overflows, everything else is read.
#[tokio::test]
async fn testkit_absurd_range_bound_skips_the_group_with_a_sentence() {
    let (directory, m) = company(60);
    let server = TestServer::start(
        directory,
        ServerOptions {
            max_val_range: 5,
            faults: FaultOptions {
                absurd_range: true,
                ..FaultOptions::default()
            },
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let source = Source::new(config(&server)).unwrap();
    let (c, summary) = full(&source).await;
    let skipped = c
        .skipped
        .iter()
        .find(|s| s.dn.eq_ignore_ascii_case(&m.large_group))
        .unwrap_or_else(|| panic!("the large group was not skipped: {:?}", c.skipped));
    assert!(
        skipped.reason.contains("past the largest index"),
        "{skipped:?}"
    );
    assert!(!c.users.is_empty());
    assert!(summary.counters.skipped >= 1);
}
