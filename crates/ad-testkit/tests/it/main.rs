//! End-to-end tests: the real `ldap3` async client against `TestServer` over loopback TCP.
// clippy.toml allows these inside #[test] functions; the shared helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bind;
mod changes;
mod faults;
mod generated;
mod paging;
mod ranges;
mod replay;
mod rootdse;

use std::collections::HashSet;

use ad_testkit::{SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD, TestServer};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapResult, Scope, SearchEntry};

pub const PERSONS: &str = "(&(objectCategory=person)(objectClass=user))";

/// A connection, not bound.
pub async fn connect_anonymous(server: &TestServer) -> Ldap {
    anonymous_at(&server.url()).await
}

/// A connection to `url`, not bound.
pub async fn anonymous_at(url: &str) -> Ldap {
    let (conn, ldap) = LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(conn);
    ldap
}

/// A connection bound as the default service account.
pub async fn connect(server: &TestServer) -> Ldap {
    bound_at(&server.url()).await
}

/// A connection to `url` (a test server, recorder or replay server) bound as the default
/// service account.
pub async fn bound_at(url: &str) -> Ldap {
    let mut ldap = anonymous_at(url).await;
    ldap.simple_bind(SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

pub fn show_deleted() -> RawControl {
    RawControl {
        ctype: "1.2.840.113556.1.4.417".to_string(),
        crit: true,
        val: None,
    }
}

/// A paged subtree search (EntriesOnly first, as AD's referrals require).
pub async fn paged(
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attrs: Vec<&str>,
    page: i32,
) -> ldap3::result::Result<(Vec<SearchEntry>, LdapResult)> {
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(page)),
    ];
    let mut stream = ldap
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
        .await?;
    let mut entries = Vec::new();
    while let Some(e) = stream.next().await? {
        entries.push(SearchEntry::construct(e));
    }
    let res = stream.finish().await;
    Ok((entries, res))
}

pub fn dns(entries: &[SearchEntry]) -> HashSet<String> {
    entries.iter().map(|e| e.dn.to_lowercase()).collect()
}

pub fn lower(list: &[String]) -> HashSet<String> {
    list.iter().map(|d| d.to_lowercase()).collect()
}

/// First value of an attribute, from either map (binary values can land in `bin_attrs`).
pub fn first_bytes(e: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    e.attrs
        .get(attr)
        .and_then(|v| v.first())
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| e.bin_attrs.get(attr).and_then(|v| v.first()).cloned())
}
