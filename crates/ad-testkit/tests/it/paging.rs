use ad_testkit::{BASE_DN, Company, CompanyOptions, ServerOptions, TestServer};
use ldap3::{Scope, SearchEntry};

use crate::{PERSONS, connect, dns, paged};

#[tokio::test]
async fn paging_returns_every_entry_exactly_once() {
    let company = Company::build(CompanyOptions {
        users: 2_500,
        ..CompanyOptions::default()
    });
    let expected = company.manifest.users.len()
        + company.manifest.builtin_accounts.len()
        + company.manifest.service_accounts.len();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;

    let (entries, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["sAMAccountName"], 500)
        .await
        .unwrap();
    assert_eq!(res.rc, 0, "{res:?}");
    assert_eq!(entries.len(), expected);
    assert_eq!(dns(&entries).len(), expected, "an entry came twice");
    let log = server.search_log();
    let pages: Vec<_> = log.iter().filter(|r| r.page_size == Some(500)).collect();
    assert_eq!(pages.len(), expected.div_ceil(500));
    assert!(!pages[0].has_cookie);
    assert!(pages[1..].iter().all(|r| r.has_cookie));

    // A page size above MaxPageSize is capped to 1000.
    server.reset_stats();
    let (entries, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 5_000)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), expected);
    assert!(
        entries
            .iter()
            .all(|e| e.attrs.is_empty() && e.bin_attrs.is_empty())
    );
    assert_eq!(
        server.stats().searches,
        u64::try_from(expected.div_ceil(1_000)).unwrap()
    );
}

#[tokio::test]
async fn unpaged_search_over_max_page_size_is_size_limit_exceeded() {
    let directory = Company::generate(CompanyOptions {
        users: 1_200,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let ldap3::SearchResult(entries, res) = ldap
        .search(BASE_DN, Scope::Subtree, PERSONS, vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 4, "{res:?}");
    assert_eq!(entries.len(), 1_000);
    assert!(res.clone().success().is_err());
    assert_eq!(server.stats().size_limit_exceeded, 1);

    // Under the limit: fine, and the referrals come at the end.
    let ldap3::SearchResult(entries, res) = ldap
        .search(
            BASE_DN,
            Scope::Subtree,
            "(&(objectCategory=person)(sAMAccountName=svc-*))",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    // ldap3's `search` collects referrals in the result.
    assert_eq!(entries.len(), 3);
    assert_eq!(res.refs.len(), 3);
}

#[tokio::test]
async fn continuation_references_only_at_the_naming_context_root() {
    let directory = Company::generate(CompanyOptions {
        users: 30,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let mut stream = ldap
        .streaming_search(
            BASE_DN,
            Scope::Subtree,
            "(sAMAccountName=Administrator)",
            vec!["cn"],
        )
        .await
        .unwrap();
    let mut refs = Vec::new();
    let mut entries = 0;
    while let Some(re) = stream.next().await.unwrap() {
        if re.is_ref() {
            refs.extend(ldap3::parse_refs(re.0));
        } else {
            entries += 1;
            let _ = SearchEntry::construct(re);
        }
    }
    assert_eq!(stream.finish().await.rc, 0);
    assert_eq!(entries, 1);
    refs.sort();
    assert_eq!(
        refs,
        vec![
            "ldap://DomainDnsZones.corp.example.test/DC=DomainDnsZones,DC=corp,DC=example,DC=test",
            "ldap://ForestDnsZones.corp.example.test/DC=ForestDnsZones,DC=corp,DC=example,DC=test",
            "ldap://corp.example.test/CN=Configuration,DC=corp,DC=example,DC=test",
        ]
    );
    assert_eq!(server.stats().references_sent, 3);

    // Below the root: none. Paged with EntriesOnly: entries only, no panic.
    let ldap3::SearchResult(below, _) = ldap
        .search(
            &format!("OU=People,{BASE_DN}"),
            Scope::Subtree,
            "(objectClass=user)",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert!(below.iter().all(|e| !e.is_ref()));
    let (all, res) = paged(&mut ldap, BASE_DN, "(objectClass=*)", vec!["cn"], 10)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert!(all.len() > 30);
}

#[tokio::test]
async fn cookies_are_bound_to_their_connection() {
    let directory = Company::generate(CompanyOptions {
        users: 50,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let mut first = connect(&server).await;
    let page = ldap3::controls::PagedResults {
        size: 10,
        cookie: Vec::new(),
    };
    let ldap3::SearchResult(entries, res) = first
        .with_controls(page)
        .search(BASE_DN, Scope::Subtree, crate::PERSONS, vec!["cn"])
        .await
        .unwrap();
    assert_eq!(entries.len(), 10);
    let cookie = res
        .ctrls
        .iter()
        .find_map(|c| match c {
            ldap3::controls::Control(Some(ldap3::controls::ControlType::PagedResults), raw) => {
                Some(raw.parse::<ldap3::controls::PagedResults>().cookie)
            }
            _ => None,
        })
        .unwrap();
    assert!(!cookie.is_empty());
    let mut second = connect(&server).await;
    let ldap3::SearchResult(_, res) = second
        .with_controls(ldap3::controls::PagedResults {
            size: 10,
            cookie: cookie.clone(),
        })
        .search(BASE_DN, Scope::Subtree, crate::PERSONS, vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 53);
    // On its own connection it continues.
    let ldap3::SearchResult(entries, res) = first
        .with_controls(ldap3::controls::PagedResults { size: 10, cookie })
        .search(BASE_DN, Scope::Subtree, crate::PERSONS, vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), 10);
}
