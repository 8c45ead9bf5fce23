//! Record a server's answers once, replay them by copying bytes: the same entries come back,
//! whatever message IDs the replaying client uses, and a request that was not recorded is
//! refused with a result, not a hang.

use ad_testkit::{
    BASE_DN, Company, CompanyOptions, Recorder, ReplayServer, SERVICE_ACCOUNT_DN,
    SERVICE_ACCOUNT_PASSWORD, ServerOptions, TestServer,
};
use ldap3::Scope;

use super::{PERSONS, bound_at, dns, paged};

#[tokio::test]
async fn a_replayed_paged_read_returns_the_recorded_entries() {
    let directory = Company::generate(CompanyOptions {
        users: 250,
        ..CompanyOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rec");

    let recorder = Recorder::start(server.addr(), &file).await.unwrap();
    let mut ldap = bound_at(&recorder.url()).await;
    let (recorded, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["cn", "objectGUID"], 100)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert!(recorded.len() > 250, "{}", recorded.len());
    ldap.unbind().await.unwrap();
    let stats = recorder.finish().unwrap();
    // The bind and one request per page.
    assert!(stats.requests >= 4, "{stats:?}");
    server.shutdown();

    let replay = ReplayServer::start(&file).await.unwrap();
    // Same requests, same message IDs: the recorded bytes as they are.
    let mut ldap = bound_at(&replay.url()).await;
    let (again, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["cn", "objectGUID"], 100)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(dns(&again), dns(&recorded));
    assert_eq!(again.len(), recorded.len());

    // Other message IDs (two requests more before the read): envelopes written anew.
    let mut ldap = bound_at(&replay.url()).await;
    ldap.simple_bind(SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.simple_bind(SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    let (shifted, res) = paged(&mut ldap, BASE_DN, PERSONS, vec!["cn", "objectGUID"], 100)
        .await
        .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(dns(&shifted), dns(&recorded));
    assert_eq!(replay.misses(), 0);

    // A request that was never recorded.
    let result = ldap
        .search(BASE_DN, Scope::Subtree, "(cn=nobody)", vec!["cn"])
        .await
        .unwrap();
    assert!(result.0.is_empty());
    assert_eq!(result.1.rc, 53);
    assert_eq!(replay.misses(), 1);
}
