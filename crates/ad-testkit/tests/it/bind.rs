use ad_testkit::{
    BASE_DN, BindAccount, BindFailure, Company, CompanyOptions, Directory, SERVICE_ACCOUNT_DN,
    SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN, ServerOptions, TestServer,
};
use ldap3::exop::WhoAmI;
use ldap3::{Mod, Scope};

use crate::connect_anonymous;

fn small() -> Directory {
    Company::generate(CompanyOptions {
        users: 20,
        ..CompanyOptions::default()
    })
}

#[tokio::test]
async fn bind_outcomes_match_active_directory() {
    let locked_dn = format!("CN=Locked Out,OU=Service Accounts,{BASE_DN}");
    let disabled_dn = format!("CN=Disabled,OU=Service Accounts,{BASE_DN}");
    let options = ServerOptions {
        accounts: vec![
            BindAccount::service_account(),
            BindAccount::new(locked_dn.clone(), "pw").with_failure(BindFailure::AccountLocked),
            BindAccount::new(disabled_dn.clone(), "pw").with_failure(BindFailure::AccountDisabled),
        ],
        ..ServerOptions::default()
    };
    let server = TestServer::start(small(), options).unwrap();
    let mut ldap = connect_anonymous(&server).await;

    let res = ldap.simple_bind(SERVICE_ACCOUNT_DN, "wrong").await.unwrap();
    assert_eq!(res.rc, 49);
    assert_eq!(
        res.text,
        "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563"
    );
    let res = ldap.simple_bind("CN=Nobody,DC=corp", "x").await.unwrap();
    assert_eq!(res.rc, 49);
    assert!(res.text.contains("data 52e"));
    let res = ldap.simple_bind(&locked_dn, "pw").await.unwrap();
    assert_eq!(res.rc, 49);
    assert!(res.text.contains("data 775"), "{}", res.text);
    let res = ldap.simple_bind(&disabled_dn, "pw").await.unwrap();
    assert!(res.text.contains("data 533"));
    // A locked account with a wrong password still says 52e, like AD.
    let res = ldap.simple_bind(&locked_dn, "nope").await.unwrap();
    assert!(res.text.contains("data 52e"));

    // Anonymous: rootDSE yes, the domain no.
    let ldap3::SearchResult(rs, res) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["dnsHostName"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 1);
    assert!(res.text.starts_with("000004DC"));
    assert!(rs.is_empty());
    // "Unauthenticated" bind (name, no password) succeeds but stays anonymous.
    ldap.simple_bind(SERVICE_ACCOUNT_DN, "")
        .await
        .unwrap()
        .success()
        .unwrap();
    let ldap3::SearchResult(_, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 1);

    // UPN and DOMAIN\user forms; WhoAmI like AD.
    ldap.simple_bind(SERVICE_ACCOUNT_UPN, SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.simple_bind("CORP\\svc-connector", SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    let (exop, _) = ldap.extended(WhoAmI).await.unwrap().success().unwrap();
    assert_eq!(exop.val.unwrap(), b"u:CORP\\svc-connector".to_vec());
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);

    // Writes over LDAP are refused, politely.
    let res = ldap
        .modify(
            SERVICE_ACCOUNT_DN,
            vec![Mod::Replace("title", ["x"].into_iter().collect())],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 53);
    assert_eq!(server.stats().bind_failures, 5);
}

#[tokio::test]
async fn strong_auth_required_refuses_simple_binds() {
    let options = ServerOptions {
        require_strong_auth: true,
        ..ServerOptions::default()
    };
    let server = TestServer::start(small(), options).unwrap();
    let mut ldap = connect_anonymous(&server).await;
    let res = ldap
        .simple_bind(SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap();
    assert_eq!(res.rc, 8);
    assert!(res.text.contains("integrity checking"));
    // Anonymous bind and rootDSE still work (that is how a client learns about the DC).
    ldap.simple_bind("", "").await.unwrap().success().unwrap();
    let ldap3::SearchResult(rs, _) = ldap
        .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
        .await
        .unwrap();
    assert_eq!(rs.len(), 1);
}

#[tokio::test]
async fn anonymous_search_can_be_allowed() {
    let options = ServerOptions {
        allow_anonymous_search: true,
        ..ServerOptions::default()
    };
    let server = TestServer::start(small(), options).unwrap();
    let mut ldap = connect_anonymous(&server).await;
    let ldap3::SearchResult(rs, res) = ldap
        .search(BASE_DN, Scope::Base, "(objectClass=*)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(rs.len(), 1);
    // A base that does not exist: noSuchObject with AD's text and the best match.
    let ldap3::SearchResult(_, res) = ldap
        .search(
            &format!("OU=Nope,{BASE_DN}"),
            Scope::Subtree,
            "(objectClass=*)",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert_eq!(res.rc, 32);
    assert_eq!(res.matched, BASE_DN);
    assert!(res.text.starts_with("0000208D"));
}
