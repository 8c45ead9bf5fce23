use std::time::Instant;

use ad_testkit::{
    BASE_DN, Directory, GeneratedOptions, Modification, ServerOptions, TestServer,
    generated_container,
};

use crate::{connect, dns, paged};

#[tokio::test]
async fn generated_directory_pages_through_50k_users() {
    const USERS: u64 = 50_000;
    let directory = Directory::generated(GeneratedOptions {
        users: USERS,
        ..GeneratedOptions::default()
    });
    let container = generated_container(BASE_DN);
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let started = Instant::now();
    let (entries, res) = paged(
        &mut ldap,
        &container,
        "(&(objectCategory=person)(objectClass=user))",
        vec!["sAMAccountName", "uSNChanged"],
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(entries.len(), 50_000);
    assert_eq!(dns(&entries).len(), 50_000);
    assert_eq!(entries[123].attrs["sAMAccountName"], vec!["u0000123"]);
    eprintln!("50k generated entries read in {:?}", started.elapsed());

    // Delta on top of the generated base: modified users, and nothing else, come back.
    let directory = server.directory().clone();
    let h0 = directory.highest_committed_usn();
    let changed: Vec<String> = [7usize, 20_000, 49_999]
        .iter()
        .map(|&i| entries[i].dn.clone())
        .collect();
    for dn in &changed {
        directory
            .modify(dn, [Modification::replace("department", ["Moved"])])
            .unwrap();
    }
    let (delta, res) = paged(
        &mut ldap,
        BASE_DN,
        &format!("(&(objectCategory=person)(uSNChanged>={}))", h0 + 1),
        vec!["department"],
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(res.rc, 0);
    assert_eq!(dns(&delta), crate::lower(&changed));
    assert!(delta.iter().all(|e| e.attrs["department"] == vec!["Moved"]));
}

/// The full million: `cargo test -p ad-testkit --release --test it -- --ignored million`.
#[tokio::test]
#[ignore = "slow: a full paged read of 1,000,000 generated users"]
async fn generated_directory_serves_a_million_users() {
    const USERS: u64 = 1_000_000;
    let directory = Directory::generated(GeneratedOptions {
        users: USERS,
        ..GeneratedOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default()).unwrap();
    let mut ldap = connect(&server).await;
    let started = Instant::now();
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
        Box::new(ldap3::adapters::EntriesOnly::new()),
        Box::new(ldap3::adapters::PagedResults::new(1_000)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            BASE_DN,
            ldap3::Scope::Subtree,
            "(&(objectCategory=person)(objectClass=user))",
            vec!["*"],
        )
        .await
        .unwrap();
    let mut count = 0u64;
    while let Some(e) = stream.next().await.unwrap() {
        let _ = ldap3::SearchEntry::construct(e);
        count += 1;
    }
    assert_eq!(stream.finish().await.rc, 0);
    // Generated users plus the skeleton's 6 persons.
    assert_eq!(count, USERS + 6);
    eprintln!("1M full entries read in {:?}", started.elapsed());
}
