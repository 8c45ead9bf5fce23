use std::time::{Duration, Instant};

use ad_testkit::{
    BASE_DN, Company, CompanyOptions, DropAfter, FailureCode, FaultOptions, Malformation,
    PageFault, PageFaultKind, SearchFailure, ServerOptions, TestServer,
};
use ldap3::{Scope, SearchEntry};

use crate::{PERSONS, connect, dns, first_bytes, paged};

#[tokio::test]
async fn drop_after_n_entries_closes_the_connection_then_recovers() {
    let directory = Company::generate(CompanyOptions {
        users: 600,
        ..CompanyOptions::default()
    });
    let options = ServerOptions {
        faults: FaultOptions {
            drop_after: Some(DropAfter {
                entries: 150,
                first_connections: 1,
            }),
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(directory, options).unwrap();

    let mut first = connect(&server).await;
    let outcome = paged(&mut first, BASE_DN, PERSONS, vec!["cn"], 100).await;
    match outcome {
        Err(_) => {}
        Ok((entries, res)) => {
            assert!(res.rc != 0, "a dropped read must not look complete");
            assert!(entries.len() <= 150);
        }
    }
    assert_eq!(server.stats().dropped_connections, 1);
    assert_eq!(server.stats().entries_sent, 150);

    // The second connection is not affected.
    let mut second = connect(&server).await;
    let (entries, res) = paged(&mut second, BASE_DN, PERSONS, vec!["cn"], 100)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), 606);
    assert_eq!(dns(&entries).len(), 606);
    assert_eq!(server.stats().connections, 2);
}

#[tokio::test]
async fn malformed_values_reach_the_client() {
    let company = Company::build(CompanyOptions {
        users: 20,
        ..CompanyOptions::default()
    });
    let victim = company.manifest.users[5].clone();
    let options = ServerOptions {
        faults: FaultOptions {
            malformed: vec![
                Malformation::truncated_sid().for_dn(victim.clone()),
                Malformation::non_numeric_user_account_control().for_dn(victim.clone()),
            ],
            ..FaultOptions::default()
        },
        ..ServerOptions::default()
    };
    let server = TestServer::start(company.directory, options).unwrap();
    let mut ldap = connect(&server).await;
    let (entries, _) = paged(
        &mut ldap,
        BASE_DN,
        PERSONS,
        vec!["objectSid", "userAccountControl"],
        100,
    )
    .await
    .unwrap();
    for e in &entries {
        let sid = first_bytes(e, "objectSid").unwrap();
        let uac = &e.attrs["userAccountControl"][0];
        if e.dn == victim {
            assert_eq!(sid.len(), 7);
            assert_eq!(uac, "not-a-number");
        } else {
            assert!(sid.len() >= 12);
            assert!(uac.parse::<i64>().is_ok());
        }
    }
    // The directory itself is intact.
    let stored = server.directory().get(&victim).unwrap();
    assert_eq!(stored.get("objectSid").unwrap()[0].len(), 28);
}

#[tokio::test]
async fn delays_and_failing_searches() {
    let directory = Company::generate(CompanyOptions {
        users: 20,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    server.set_faults(FaultOptions {
        entry_delay: Duration::from_millis(5),
        page_delay: Duration::from_millis(50),
        ..FaultOptions::default()
    });
    let mut ldap = connect(&server).await;
    let started = Instant::now();
    let (entries, _) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 26);
    // 3 pages x 50 ms + 26 entries x 5 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );

    server.set_faults(FaultOptions {
        search_failure: Some(SearchFailure {
            code: FailureCode::Busy,
            first_searches: 2,
        }),
        ..FaultOptions::default()
    });
    for _ in 0..2 {
        let ldap3::SearchResult(_, res) = ldap
            .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
            .await
            .unwrap();
        assert_eq!(res.rc, 51);
    }
    // rootDSE reads are not failed.
    let ldap3::SearchResult(rs, _) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["dnsHostName"])
        .await
        .unwrap();
    assert_eq!(
        SearchEntry::construct(rs.into_iter().next().unwrap())
            .attrs
            .len(),
        1
    );
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let directory = Company::generate(CompanyOptions {
        users: 10,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    for garbage in [
        b"\x30\x84\xff\xff\xff\xff\x02\x01".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A SEQUENCE holding an unknown application tag.
        vec![0x30, 0x05, 0x02, 0x01, 0x01, 0x7f, 0x00],
    ] {
        let mut raw = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        raw.write_all(&garbage).await.unwrap();
        let mut buf = Vec::new();
        // The server answers with a notice of disconnection (or nothing) and closes.
        let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection left open after {garbage:?}");
    }
    // Still serving.
    let mut ldap = connect(&server).await;
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
    // A binary (non-UTF-8) assertion value cannot be decoded by ldap3_proto: that request is
    // refused with unwillingToPerform and the connection stays usable.
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            BASE_DN,
            Scope::Subtree,
            "(objectGUID=\\ff\\fe\\00\\01)",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 53, "{res:?}");
    assert!(rs.is_empty());
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
}

#[tokio::test]
async fn page_faults_end_a_paged_search_part_way() {
    let company = Company::build(CompanyOptions {
        users: 60,
        ..CompanyOptions::default()
    });
    let large_group = company.manifest.large_group.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let (all, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 10)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert!(all.len() > 30, "{}", all.len());

    // Page 2 without the paged-results control: the client cannot ask for page 3.
    server.set_faults(FaultOptions {
        page_fault: Some(PageFault {
            kind: PageFaultKind::OmitPagedControl,
            first_pages: 1,
            filter_contains: Some("objectcategory=PERSON".into()),
        }),
        ..FaultOptions::default()
    });
    // Not the filter named: untouched (and the fault is not used up).
    let (groups, res) = paged(&mut ldap, BASE_DN, "(objectClass=group)", vec!["1.1"], 5)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert!(groups.len() > 10);
    let (entries, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 10)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), 20);
    assert!(res.ctrls.is_empty(), "{:?}", res.ctrls);
    // Only the first faulted page: the next read is complete.
    let (entries, _) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), all.len());

    // sizeLimitExceeded after 3 entries of page 2: 13 entries, then result 4.
    server.set_faults(FaultOptions {
        page_fault: Some(PageFault {
            kind: PageFaultKind::EndWith {
                code: FailureCode::SizeLimitExceeded,
                entries: 3,
            },
            first_pages: 1,
            filter_contains: None,
        }),
        ..FaultOptions::default()
    });
    let (entries, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 10)
        .await
        .unwrap();
    assert_eq!(res.rc, 4);
    assert_eq!(entries.len(), 13);
    assert_eq!(server.stats().size_limit_exceeded, 1);

    // Reads of a range fail; a plain read of the group still works.
    server.set_faults(FaultOptions {
        range_failure: Some(FailureCode::AdminLimitExceeded),
        ..FaultOptions::default()
    });
    let ldap3::SearchResult(rs, res) = ldap
        .search(&large_group, Scope::Base, "(objectClass=*)", vec!["member"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            &large_group,
            Scope::Base,
            "(objectClass=*)",
            vec!["member;range=0-*"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 11);
    assert!(rs.is_empty());
}
