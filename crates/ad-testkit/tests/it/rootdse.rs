use ad_testkit::{
    BASE_DN, Company, CompanyOptions, Modification, ServerOptions, TestServer, encoding,
};
use ldap3::{Ldap, Scope, SearchEntry};

use crate::{connect, first_bytes};

async fn root_dse(ldap: &mut Ldap) -> SearchEntry {
    let ldap3::SearchResult(rs, res) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["*"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    SearchEntry::construct(rs.into_iter().next().unwrap())
}

async fn invocation_id(ldap: &mut Ldap, ds_service_name: &str) -> uuid::Uuid {
    let ldap3::SearchResult(rs, res) = ldap
        .search(
            ds_service_name,
            Scope::Base,
            "(objectClass=*)",
            vec!["invocationId"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    let e = SearchEntry::construct(rs.into_iter().next().unwrap());
    let bytes = first_bytes(&e, "invocationId").unwrap();
    assert_eq!(bytes.len(), 16);
    encoding::guid_from_bytes(&bytes).unwrap()
}

#[tokio::test]
async fn root_dse_identity_restore_and_second_dc() {
    let company = Company::build(CompanyOptions {
        users: 20,
        ..CompanyOptions::default()
    });
    let directory = company.directory.clone();
    let dc1 = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let mut ldap = connect(&dc1).await;
    let dse = root_dse(&mut ldap).await;
    assert_eq!(dse.attrs["dnsHostName"], vec!["dc1.corp.example.test"]);
    assert_eq!(dse.attrs["defaultNamingContext"], vec![BASE_DN]);
    assert!(dse.attrs["supportedControl"].contains(&"1.2.840.113556.1.4.319".to_string()));
    assert!(dse.attrs["supportedControl"].contains(&"1.2.840.113556.1.4.417".to_string()));
    assert!(dse.attrs["supportedLDAPVersion"].contains(&"3".to_string()));
    assert!(!dse.attrs.contains_key("distinguishedName"));
    let usn: u64 = dse.attrs["highestCommittedUSN"][0].parse().unwrap();
    assert_eq!(usn, directory.highest_committed_usn());
    let service = dse.attrs["dsServiceName"][0].clone();
    assert_eq!(service, dc1.ds_service_name());
    assert!(service.starts_with("CN=NTDS Settings,CN=DC1,CN=Servers,"));
    let id = invocation_id(&mut ldap, &service).await;
    assert_eq!(id, dc1.invocation_id());

    // highestCommittedUSN moves with changes.
    directory
        .modify(
            &company.manifest.users[3],
            [Modification::replace("title", ["CTO"])],
        )
        .unwrap();
    let dse = root_dse(&mut ldap).await;
    let usn2: u64 = dse.attrs["highestCommittedUSN"][0].parse().unwrap();
    assert_eq!(usn2, usn + 1);

    // A restore changes the invocationId; restarting does not.
    let restored = dc1.simulate_restore();
    assert_ne!(restored, id);
    assert_eq!(invocation_id(&mut ldap, &service).await, restored);
    let again = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    assert_eq!(again.invocation_id(), id);
    again.shutdown();

    // Another DC over the same data.
    let dc2 = TestServer::start(
        directory.clone(),
        ServerOptions::for_host("dc2.corp.example.test"),
    )
    .unwrap();
    let mut ldap2 = connect(&dc2).await;
    let dse2 = root_dse(&mut ldap2).await;
    assert_eq!(dse2.attrs["dnsHostName"], vec!["dc2.corp.example.test"]);
    let service2 = dse2.attrs["dsServiceName"][0].clone();
    assert_ne!(service2, service);
    assert_ne!(invocation_id(&mut ldap2, &service2).await, restored);
    let title = ldap2
        .search(
            &company.manifest.users[3],
            Scope::Base,
            "(objectClass=*)",
            vec!["title"],
        )
        .await
        .unwrap()
        .success()
        .unwrap()
        .0;
    let e = SearchEntry::construct(title.into_iter().next().unwrap());
    assert_eq!(e.attrs["title"], vec!["CTO"]);

    // Shutdown closes client connections.
    dc1.shutdown();
    let after = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["dnsHostName"])
        .await;
    assert!(after.is_err() || after.unwrap().1.rc != 0);
}
