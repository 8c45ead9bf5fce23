use std::collections::HashSet;

use ad_testkit::{
    BASE_DN, Company, CompanyOptions, Entry, Modification, ServerOptions, TestServer, encoding,
};
use ldap3::{Scope, SearchEntry};

use crate::{PERSONS, connect, dns, first_bytes, lower, paged, show_deleted};

async fn highest_committed_usn(ldap: &mut ldap3::Ldap) -> u64 {
    let ldap3::SearchResult(rs, _) = ldap
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["highestCommittedUSN"],
        )
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    e.attrs["highestCommittedUSN"][0].parse().unwrap()
}

#[tokio::test]
async fn usn_changed_filter_returns_exactly_the_changed_entries() {
    let company = Company::build(CompanyOptions {
        users: 300,
        ..CompanyOptions::default()
    });
    let m = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let directory = server.directory().clone();
    let mut ldap = connect(&server).await;
    let h0 = highest_committed_usn(&mut ldap).await;
    assert_eq!(h0, directory.highest_committed_usn());

    // Changes: three modifications, one add, one rename/move, one group membership change.
    for dn in &m.users[40..43] {
        directory
            .modify(dn, [Modification::replace("title", ["Promoted"])])
            .unwrap();
    }
    let new_dn = format!("CN=New Hire,OU=Sales,OU=People,{BASE_DN}");
    directory
        .add(
            Entry::new(new_dn.clone())
                .with(
                    "objectClass",
                    ["top", "person", "organizationalPerson", "user"],
                )
                .with(
                    "objectCategory",
                    [format!("CN=Person,CN=Schema,CN=Configuration,{BASE_DN}")],
                )
                .with("sAMAccountName", ["nhire"])
                .with("userAccountControl", ["512"]),
        )
        .unwrap();
    let moved_from = m.users[50].clone();
    let moved_to = format!("CN=Moved Person,OU=Legal,OU=People,{BASE_DN}");
    directory.rename(&moved_from, &moved_to).unwrap();
    let member = m.users[60].clone();
    directory
        .modify(
            &m.empty_group,
            [Modification::add("member", [member.clone()])],
        )
        .unwrap();

    let h1 = highest_committed_usn(&mut ldap).await;
    assert_eq!(h1, h0 + 6);
    let filter = format!("(&(objectCategory=person)(uSNChanged>={}))", h0 + 1);
    let (entries, res) = paged(
        &mut ldap,
        BASE_DN,
        &filter,
        vec!["uSNChanged", "title"],
        100,
    )
    .await
    .unwrap();
    assert_eq!(res.rc, 0);
    let mut expected = lower(&m.users[40..43]);
    expected.insert(new_dn.to_lowercase());
    expected.insert(moved_to.to_lowercase());
    // The member whose group changed is NOT changed itself (AD: only the group's USN moves).
    assert_eq!(dns(&entries), expected);

    let groups = format!("(&(objectClass=group)(uSNChanged>={}))", h0 + 1);
    let (entries, _) = paged(&mut ldap, BASE_DN, &groups, vec!["member"], 100)
        .await
        .unwrap();
    assert_eq!(dns(&entries), lower(std::slice::from_ref(&m.empty_group)));
    // ... but its memberOf shows the new group.
    let ldap3::SearchResult(rs, _) = ldap
        .search(&member, Scope::Base, "(objectClass=*)", vec!["memberOf"])
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert!(e.attrs["memberOf"].iter().any(|g| g == &m.empty_group));
}

#[tokio::test]
async fn tombstones_only_with_show_deleted() {
    let company = Company::build(CompanyOptions {
        users: 100,
        ..CompanyOptions::default()
    });
    let m = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let directory = server.directory().clone();
    let mut ldap = connect(&server).await;
    let victim = m.users[70].clone();
    let before = directory.get(&victim).unwrap();
    let guid_bytes = before.get("objectGUID").unwrap()[0].clone();
    let sid_bytes = before.get("objectSid").unwrap()[0].clone();
    let h0 = directory.highest_committed_usn();
    directory.delete(&victim).unwrap();

    let deleted_filter = format!(
        "(&(isDeleted=TRUE)(objectClass=user)(uSNChanged>={}))",
        h0 + 1
    );
    // Without the control: nothing, and the user is gone from normal reads.
    let (plain, res) = paged(&mut ldap, BASE_DN, &deleted_filter, vec!["*"], 100)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert!(plain.is_empty());
    let (people, _) = paged(&mut ldap, BASE_DN, PERSONS, vec!["1.1"], 500)
        .await
        .unwrap();
    assert!(!dns(&people).contains(&victim.to_lowercase()));

    // With it: the tombstone, keeping objectGUID and objectSid, without objectCategory.
    let (tombs, res) = {
        ldap.with_controls(show_deleted());
        paged(
            &mut ldap,
            BASE_DN,
            &deleted_filter,
            vec![
                "objectGUID",
                "objectSid",
                "isDeleted",
                "objectCategory",
                "lastKnownParent",
                "sAMAccountName",
            ],
            100,
        )
        .await
        .unwrap()
    };
    assert_eq!(res.rc, 0);
    assert_eq!(tombs.len(), 1);
    let t = &tombs[0];
    let guid = encoding::guid_from_bytes(&guid_bytes).unwrap();
    assert!(
        t.dn.ends_with(&format!("\\0ADEL:{guid},CN=Deleted Objects,{BASE_DN}")),
        "{}",
        t.dn
    );
    assert_eq!(first_bytes(t, "objectGUID").unwrap(), guid_bytes);
    assert_eq!(first_bytes(t, "objectSid").unwrap(), sid_bytes);
    assert_eq!(t.attrs["isDeleted"], vec!["TRUE"]);
    assert!(!t.attrs.contains_key("objectCategory"));
    assert_eq!(
        t.attrs["lastKnownParent"][0].to_lowercase(),
        victim.split_once(',').unwrap().1.to_lowercase()
    );
    let names: HashSet<&String> = t.attrs.keys().collect();
    assert!(names.contains(&"sAMAccountName".to_string()));
    assert!(server.search_log().last().unwrap().show_deleted);
}

#[tokio::test]
async fn bitwise_filters_find_disabled_users_and_security_groups() {
    let company = Company::build(CompanyOptions {
        users: 400,
        ..CompanyOptions::default()
    });
    let m = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let (entries, res) = paged(
        &mut ldap,
        BASE_DN,
        "(&(objectCategory=person)(objectClass=user)(userAccountControl:1.2.840.113556.1.4.803:=2))",
        vec!["userAccountControl"],
        200,
    )
    .await
    .unwrap();
    assert_eq!(res.rc, 0);
    let mut expected = lower(&m.disabled);
    // Guest and krbtgt are disabled too.
    expected.extend(lower(&m.builtin_accounts[1..]));
    assert_eq!(dns(&entries), expected);

    // Security groups (bit 0x80000000 of a negative groupType) versus the distribution list.
    let (security, _) = paged(
        &mut ldap,
        BASE_DN,
        "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648))",
        vec!["groupType"],
        200,
    )
    .await
    .unwrap();
    let security = dns(&security);
    assert!(security.contains(&m.domain_admins.to_lowercase()));
    assert!(security.contains(&m.administrators.to_lowercase()));
    assert!(!security.contains(&m.distribution_group.to_lowercase()));
    assert_eq!(security.len(), m.groups.len() - 1);
}

#[tokio::test]
async fn computed_account_control_only_by_name() {
    let company = Company::build(CompanyOptions {
        users: 40,
        ..CompanyOptions::default()
    });
    let m = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let locked = &m.locked_out[0];
    let ldap3::SearchResult(rs, _) = ldap
        .search(locked, Scope::Base, "(objectClass=*)", vec!["*"])
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert!(!e.attrs.contains_key("msDS-User-Account-Control-Computed"));
    assert!(e.attrs.contains_key("lockoutTime"));
    let ldap3::SearchResult(rs, _) = ldap
        .search(
            locked,
            Scope::Base,
            "(objectClass=*)",
            vec!["msDS-User-Account-Control-Computed", "userAccountControl"],
        )
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    let computed: u32 = e.attrs["msDS-User-Account-Control-Computed"][0]
        .parse()
        .unwrap();
    assert_eq!(computed & 0x10, 0x10);
    // userAccountControl itself does not carry the lockout bit.
    let uac: u32 = e.attrs["userAccountControl"][0].parse().unwrap();
    assert_eq!(uac & 0x10, 0);
    // Unicode names survive the trip.
    let uni = &m.unicode_names[0];
    let ldap3::SearchResult(rs, _) = ldap
        .search(uni, Scope::Base, "(objectClass=*)", vec!["displayName"])
        .await
        .unwrap();
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    assert!(!e.attrs["displayName"][0].is_ascii());
    assert_eq!(e.dn, *uni);
}
