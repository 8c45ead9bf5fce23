use std::collections::HashSet;

use ad_testkit::{Company, CompanyOptions, ServerOptions, TestServer};
use ldap3::{Scope, SearchEntry};

use crate::connect;

#[tokio::test]
async fn ranged_member_retrieval_reassembles_a_4000_member_group() {
    let company = Company::build(CompanyOptions {
        users: 4_000,
        ..CompanyOptions::default()
    });
    let group_dn = company.manifest.large_group.clone();
    let expected: HashSet<String> = company
        .directory
        .get(&group_dn)
        .unwrap()
        .strs("member")
        .into_iter()
        .collect();
    assert_eq!(expected.len(), 4_000);
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;

    // Plain request: only the first range, and no empty plain `member`.
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            &group_dn,
            Scope::Base,
            "(objectClass=group)",
            vec!["member", "cn"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    let first = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert!(!first.attrs.contains_key("member"));
    assert_eq!(first.attrs["member;range=0-1499"].len(), 1_500);
    assert_eq!(first.attrs["cn"], vec!["GG-Project-Atlas"]);

    // Follow the ranges until one ends in `*`.
    let mut members: Vec<String> = first.attrs["member;range=0-1499"].clone();
    let mut names = vec!["member;range=0-1499".to_string()];
    loop {
        let next = format!("member;range={}-*", members.len());
        let ldap3::SearchResult(rs, res) = ldap
            .search(
                &group_dn,
                Scope::Base,
                "(objectClass=*)",
                vec![next.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(res.rc, 0);
        let e = SearchEntry::construct(rs.into_iter().next().unwrap());
        let (name, values) = e
            .attrs
            .into_iter()
            .find(|(k, _)| k.starts_with("member;range="))
            .unwrap();
        members.extend(values);
        names.push(name.clone());
        if name.ends_with("-*") {
            break;
        }
        assert!(names.len() < 10, "range loop does not end: {names:?}");
    }
    assert_eq!(
        names,
        vec![
            "member;range=0-1499",
            "member;range=1500-2999",
            "member;range=3000-*"
        ]
    );
    assert_eq!(members.len(), 4_000);
    let got: HashSet<String> = members.into_iter().collect();
    assert_eq!(got, expected);

    // An explicit bounded range.
    let ldap3::SearchResult(rs, _) = ldap
        .search(
            &group_dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["member;range=1500-1999"],
        )
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert_eq!(e.attrs["member;range=1500-1999"].len(), 500);

    // Small groups come back plain.
    let small = server
        .directory()
        .find("(sAMAccountName=GG-Finance-Leads)")
        .unwrap();
    let ldap3::SearchResult(rs, _) = ldap
        .search(
            small[0].dn(),
            Scope::Base,
            "(objectClass=*)",
            vec!["member"],
        )
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert_eq!(e.attrs["member"].len(), 3);
}

#[tokio::test]
async fn optional_empty_plain_attribute_and_custom_limits() {
    let company = Company::build(CompanyOptions {
        users: 120,
        ..CompanyOptions::default()
    });
    let group_dn = company.manifest.large_group.clone();
    let options = ServerOptions {
        max_val_range: 50,
        max_page_size: 40,
        empty_plain_ranged_attribute: true,
        ..ServerOptions::default()
    };
    let server = TestServer::start(company.directory, options).unwrap();
    let mut ldap = connect(&server).await;
    let ldap3::SearchResult(rs, _) = ldap
        .search(&group_dn, Scope::Base, "(objectClass=*)", vec!["member"])
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert_eq!(e.attrs["member"], Vec::<String>::new());
    assert_eq!(e.attrs["member;range=0-49"].len(), 50);
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            &group_dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["member;range=100-*"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert_eq!(e.attrs["member;range=100-*"].len(), 20);
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            ad_testkit::BASE_DN,
            Scope::Subtree,
            crate::PERSONS,
            vec!["1.1"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 4);
    assert_eq!(rs.len(), 40);
}
