//! How to reach and read the directory: the `[source]` table of the connector's TOML.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::SourceError;
use crate::kerberos::KerberosConfig;

/// The default filter for user accounts: people, not computers (which are `user` objects too).
pub const DEFAULT_USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";
/// The default filter for groups (security and distribution).
pub const DEFAULT_GROUP_FILTER: &str = "(objectCategory=group)";
/// Windows AD's default `MaxPageSize`; never ask for more unless the server says it allows it.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// Where to search below the base DN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchScope {
    /// Only the base entry itself.
    Base,
    /// Direct children of the base.
    OneLevel,
    /// The base and everything below it (the default).
    #[default]
    Subtree,
}

impl SearchScope {
    pub(crate) fn to_ldap(self) -> ldap3::Scope {
        match self {
            SearchScope::Base => ldap3::Scope::Base,
            SearchScope::OneLevel => ldap3::Scope::OneLevel,
            SearchScope::Subtree => ldap3::Scope::Subtree,
        }
    }
}

/// Connection and search settings for one Active Directory domain.
///
/// Example (TOML):
///
/// ```toml
/// url = "ldaps://dc1.corp.example.com"
/// bind = "svc-sync@corp.example.com"
/// password = "…"
/// ca_file = "/etc/ad-connector/corp-ca.cer"
/// base_dn = "OU=Corp,DC=corp,DC=example,DC=com"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The domain controller(s), in order of preference: one URL or a list.
    /// `ldaps://host[:636]` (TLS from the first byte) or `ldap://host[:389]` (upgraded with
    /// StartTLS unless `allow_plain_ldap`). Each cycle reads from the first DC that answers
    /// and keeps to it for the whole cycle; the connector keeps a checkpoint per DC, so a
    /// failover to a DC read before is a delta from that DC's own checkpoint. A name that
    /// resolves to several addresses (DNS round robin) is pinned to one address per cycle,
    /// its certificate still checked against the name. Leave out when `domain` is set.
    #[serde(default)]
    pub url: DcUrls,
    /// Find the DCs in DNS instead of listing them: the SRV records
    /// `_ldap._tcp.dc._msdcs.<domain>` (or `_ldap._tcp.<site>._sites.dc._msdcs.<domain>`
    /// with `site`), tried in the order of their priority and weight. Leave out when `url`
    /// is set.
    #[serde(default)]
    pub domain: Option<String>,
    /// With `domain`: the Active Directory site whose DCs to use (e.g. `Paris`). Default: any
    /// DC of the domain.
    #[serde(default)]
    pub site: Option<String>,
    /// With `domain`: how to talk to the discovered DCs, `ldaps` (port 636, the default) or
    /// `ldap` (the port of the SRV record, StartTLS unless `allow_plain_ldap`).
    #[serde(default)]
    pub discovered_scheme: DiscoveredScheme,
    /// With `domain`: the DNS server to ask (`address:port`), e.g. a DC's own DNS server.
    /// Default: the system's resolver configuration (`/etc/resolv.conf`).
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    /// The account to bind as: a UPN (`svc-sync@corp.example.com`), a down-level name
    /// (`CORP\svc-sync`) or a DN (`CN=svc-sync,OU=Service Accounts,DC=corp,…`).
    /// Not used with `[source.kerberos]`.
    #[serde(default)]
    pub bind: String,
    /// The account's password. Never logged. Not used with `[source.kerberos]`.
    #[serde(default = "empty_secret")]
    pub password: SecretString,
    /// Bind with Kerberos (SASL GSSAPI) instead of `bind` / `password`: a keytab and
    /// principal (the connector gets and renews its own ticket, in a private cache) or an
    /// existing credential cache. Over `ldaps://` or StartTLS the bind carries a TLS
    /// channel-binding token; over `ldap://` with `starttls = false` the session is sealed
    /// (encrypted) by Kerberos instead of TLS. Needs a build with the `kerberos` feature.
    #[serde(default)]
    pub kerberos: Option<KerberosConfig>,
    /// CA certificate(s) to verify the DC's certificate with, PEM or DER (`.cer`). When
    /// absent, the operating system's trusted roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for a first test: the password can then be
    /// intercepted. A warning is logged on every connection. Default `false`.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// For `ldap://` URLs: upgrade the connection with StartTLS before binding. Default `true`.
    #[serde(default = "default_true")]
    pub starttls: bool,
    /// Allow `ldap://` without StartTLS: the password and all data cross the network in
    /// clear, and hardened DCs refuse the bind anyway. Default `false`.
    #[serde(default)]
    pub allow_plain_ldap: bool,
    /// Where users and groups are searched. Default: the domain (`defaultNamingContext`).
    #[serde(default)]
    pub base_dn: Option<String>,
    /// How deep to search below `base_dn`: `base`, `one_level` or `subtree` (default).
    #[serde(default)]
    pub scope: SearchScope,
    /// LDAP filter selecting users. Default `(&(objectCategory=person)(objectClass=user))`.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// LDAP filter selecting groups. Default `(objectCategory=group)`.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Entries per page (RFC 2696). Default 1000; capped to the server's `MaxPageSize`.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Connections a full sync reads with at once, all to the one DC the cycle is pinned to:
    /// 1 to 8, default 1. With more, the groups and slices of the users (by `uSNCreated`,
    /// which never changes, so each object is in exactly one slice) are read concurrently:
    /// faster on a DC that serves connections in parallel (every Windows DC), at the price of
    /// that much more load on it while the full sync runs. Deltas use one connection.
    #[serde(default = "default_read_connections")]
    pub read_connections: u32,
    /// Seconds to wait for DNS, TCP, TLS and bind. Default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for any one server reply (each search page or entry). Default 120.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
    /// Seconds to keep reconnecting after the DC dropped the connection or answered busy
    /// (a reboot, a failover), counted from the first failure; the count restarts once
    /// entries flow again. Long enough for a DC reboot: default 300. 0 disables reconnecting.
    #[serde(default = "default_max_reconnect_secs")]
    pub max_reconnect_secs: u64,
    /// An optional cap on reconnect attempts per failure, within `max_reconnect_secs`.
    /// Default: none (the time budget alone decides).
    #[serde(default)]
    pub max_reconnects: Option<u32>,
    /// Delay before the first reconnect attempt, doubled for each further attempt up to 30 s,
    /// each jittered down by up to half. Default 200 ms.
    #[serde(default = "default_reconnect_backoff_ms")]
    pub reconnect_backoff_ms: u64,
    /// The address a cycle is pinned to (set by [`Source::pin`](crate::Source::pin) on its
    /// copy of the configuration; never read from the file).
    #[serde(skip)]
    pub(crate) pinned_addr: Option<SocketAddr>,
}

/// `url`: one LDAP URL or several, in order of preference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DcUrls(pub Vec<String>);

impl DcUrls {
    /// The first (preferred) URL.
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// The URLs in order of preference.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// How many URLs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No URL at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for DcUrls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        match OneOrMany::deserialize(deserializer) {
            Ok(OneOrMany::One(url)) => Ok(DcUrls(vec![url])),
            Ok(OneOrMany::Many(urls)) => Ok(DcUrls(urls)),
            Err(_) => Err(serde::de::Error::custom(
                "url must be an LDAP URL (\"ldaps://dc1.corp.example.com\") or a list of them ([\"ldaps://dc1…\", \"ldaps://dc2…\"])",
            )),
        }
    }
}

impl From<String> for DcUrls {
    fn from(url: String) -> Self {
        DcUrls(vec![url])
    }
}

impl From<&str> for DcUrls {
    fn from(url: &str) -> Self {
        DcUrls(vec![url.to_owned()])
    }
}

impl From<Vec<String>> for DcUrls {
    fn from(urls: Vec<String>) -> Self {
        DcUrls(urls)
    }
}

impl std::fmt::Display for DcUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// How discovered DCs are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveredScheme {
    /// `ldaps://<dc>:636`.
    #[default]
    Ldaps,
    /// `ldap://<dc>:<SRV port>`, with StartTLS unless `allow_plain_ldap`.
    Ldap,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}
fn default_true() -> bool {
    true
}
fn default_user_filter() -> String {
    DEFAULT_USER_FILTER.to_owned()
}
fn default_group_filter() -> String {
    DEFAULT_GROUP_FILTER.to_owned()
}
/// Most connections a full sync may read with at once (`read_connections`).
pub const MAX_READ_CONNECTIONS: u32 = 8;

fn default_read_connections() -> u32 {
    1
}

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_operation_timeout() -> u64 {
    120
}
fn default_max_reconnect_secs() -> u64 {
    300
}
fn default_reconnect_backoff_ms() -> u64 {
    200
}

/// How the connection is protected, derived from `url`, `starttls` and `allow_plain_ldap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with StartTLS before the bind.
    StartTls,
    /// `ldap://` in clear (only with `allow_plain_ldap`).
    Plain,
}

/// Host and port parsed from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address as written in the URL.
    pub host: String,
    /// TCP port (389 / 636 when not written).
    pub port: u16,
    /// How the connection is protected.
    pub transport: Transport,
}

impl SourceConfig {
    /// A configuration with every default and the three required settings.
    pub fn new(url: impl Into<String>, bind: impl Into<String>, password: SecretString) -> Self {
        SourceConfig {
            url: DcUrls::from(url.into()),
            domain: None,
            site: None,
            discovered_scheme: DiscoveredScheme::Ldaps,
            dns_server: None,
            bind: bind.into(),
            password,
            kerberos: None,
            ca_file: None,
            insecure_skip_tls_verify: false,
            starttls: true,
            allow_plain_ldap: false,
            base_dn: None,
            scope: SearchScope::Subtree,
            user_filter: default_user_filter(),
            group_filter: default_group_filter(),
            page_size: DEFAULT_PAGE_SIZE,
            read_connections: default_read_connections(),
            connect_timeout_secs: default_connect_timeout(),
            operation_timeout_secs: default_operation_timeout(),
            max_reconnect_secs: default_max_reconnect_secs(),
            max_reconnects: None,
            reconnect_backoff_ms: default_reconnect_backoff_ms(),
            pinned_addr: None,
        }
    }

    /// Check every setting: each URL (or the discovery settings), the account, the filters.
    pub fn validate(&self) -> Result<(), SourceError> {
        let config = |message: String| SourceError::Config { message };
        match (&self.domain, self.url.is_empty()) {
            (Some(_), false) => {
                return Err(config(format!(
                    "both url ({}) and domain are set; give the DCs either as url or through DNS discovery with domain, not both",
                    self.url
                )));
            }
            (None, true) => {
                return Err(config(
                    "url is missing; give the DC as url = \"ldaps://dc1.corp.example.com\", several as a list, or set domain = \"corp.example.com\" to find them in DNS".to_owned(),
                ));
            }
            (Some(domain), true) => {
                if domain.trim().is_empty() || domain.contains(['/', ':', ' ']) {
                    return Err(config(format!(
                        "domain {domain:?} is not a DNS domain name; write domain = \"corp.example.com\""
                    )));
                }
                self.endpoint_of(&discovered_url(self, domain, 389))?;
            }
            (None, false) => {
                for url in self.url.iter() {
                    self.endpoint_of(url)?;
                }
            }
        }
        if self.site.is_some() && self.domain.is_none() {
            return Err(config(
                "site is set without domain; the site only selects DCs found in DNS (set domain too, or remove site)".to_owned(),
            ));
        }
        Ok(())
    }

    /// Check the settings and work out host, port and transport of the first (or pinned)
    /// DC's URL.
    pub fn endpoint(&self) -> Result<Endpoint, SourceError> {
        match self.url.first() {
            Some(url) => self.endpoint_of(url),
            None => {
                self.validate()?;
                Err(SourceError::Config {
                    message: "no DC has been chosen yet: the DCs of the domain are found in DNS when the connector connects".to_owned(),
                })
            }
        }
    }

    /// Host, port and transport of one of the URLs, checking the other settings on the way.
    pub fn endpoint_of(&self, url_text: &str) -> Result<Endpoint, SourceError> {
        let config = |message: String| SourceError::Config { message };
        let url = url::Url::parse(url_text).map_err(|e| {
            config(format!(
                "url {url_text:?} is not an LDAP URL ({e}); write ldaps://dc1.example.com or ldap://dc1.example.com"
            ))
        })?;
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => {
                return Err(config(format!(
                    "url {url_text:?} names no host; write ldaps://dc1.example.com"
                )));
            }
        };
        let (transport, default_port) = match url.scheme() {
            "ldaps" => (Transport::Ldaps, 636),
            "ldap" if self.starttls => (Transport::StartTls, 389),
            "ldap" if self.allow_plain_ldap || self.kerberos.is_some() => (Transport::Plain, 389),
            "ldap" => {
                return Err(config(format!(
                    "url {url_text} is plain LDAP with starttls = false: the password would cross the network in clear; use ldaps://, set starttls = true, or set allow_plain_ldap = true if you really mean it"
                )));
            }
            other => {
                return Err(config(format!(
                    "url scheme {other:?} is not supported; use ldaps:// (port 636) or ldap:// with StartTLS (port 389)"
                )));
            }
        };
        if let Some(kerberos) = &self.kerberos {
            if !cfg!(feature = "kerberos") {
                return Err(config(crate::kerberos::NOT_COMPILED_IN.to_owned()));
            }
            kerberos.validate().map_err(config)?;
            let named = match url.host() {
                // ldap(s) is not a "special" URL scheme: an IPv4 address arrives as a domain.
                Some(url::Host::Domain(d)) => d.parse::<std::net::IpAddr>().is_err(),
                _ => false,
            };
            if !named {
                return Err(config(format!(
                    "url {url_text} names the DC by its IP address, but Kerberos needs the DC's DNS name (its SPN is ldap/<name>); write e.g. ldaps://dc1.corp.example.com"
                )));
            }
        } else if self.bind.trim().is_empty() {
            return Err(config(
                "bind is empty; give the service account as a UPN (svc@corp.example.com), CORP\\svc or a DN, or configure [source.kerberos]".to_owned(),
            ));
        } else if self.password.expose_secret().is_empty() {
            return Err(config(format!(
                "password is empty: {} would bind anonymously, which AD refuses for reading; give the account's password (or password_file), or configure [source.kerberos]",
                self.bind.trim()
            )));
        }
        if !(1..=MAX_READ_CONNECTIONS).contains(&self.read_connections) {
            return Err(config(format!(
                "read_connections is {}; use 1 (one connection, the default) to {} (connections to the same DC during a full sync)",
                self.read_connections, MAX_READ_CONNECTIONS
            )));
        }
        if self.page_size == 0 {
            return Err(config(
                "page_size is 0; use 1000 (the AD default MaxPageSize) or less".to_owned(),
            ));
        }
        for (name, filter) in [
            ("user_filter", &self.user_filter),
            ("group_filter", &self.group_filter),
        ] {
            if ldap3::parse_filter(filter).is_err() {
                return Err(config(format!(
                    "{name} {filter:?} is not a valid LDAP filter (RFC 4515); check the parentheses"
                )));
            }
        }
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(default_port),
            transport,
        })
    }

    /// The URL of the DC a cycle is pinned to (the first URL when not pinned).
    pub fn current_url(&self) -> &str {
        self.url.first().unwrap_or_default()
    }

    /// Who the connector authenticates as, for messages: the Kerberos principal, or `bind`.
    pub fn account(&self) -> &str {
        match &self.kerberos {
            Some(k) => k.principal().unwrap_or("the Kerberos cache's principal"),
            None => self.bind.trim(),
        }
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs.max(1))
    }
}

/// The URL of a DC found in DNS: `ldaps://<target>:636`, or `ldap://<target>:<SRV port>`.
pub(crate) fn discovered_url(config: &SourceConfig, target: &str, srv_port: u16) -> String {
    let host = target.trim_end_matches('.');
    match config.discovered_scheme {
        DiscoveredScheme::Ldaps => format!("ldaps://{host}:636"),
        DiscoveredScheme::Ldap => format!("ldap://{host}:{srv_port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SourceConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults_are_ad_correct() {
        let c = parse(
            "url = \"ldaps://dc1.corp.example.test\"\nbind = \"svc@corp\"\npassword = \"x\"\n",
        )
        .unwrap();
        assert_eq!(c.user_filter, DEFAULT_USER_FILTER);
        assert_eq!(c.group_filter, DEFAULT_GROUP_FILTER);
        assert_eq!(c.page_size, 1000);
        assert!(c.starttls);
        assert!(!c.allow_plain_ldap);
        assert!(!c.insecure_skip_tls_verify);
        assert_eq!(c.scope, SearchScope::Subtree);
        let e = c.endpoint().unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.transport),
            ("dc1.corp.example.test", 636, Transport::Ldaps)
        );
    }

    #[test]
    fn read_connections_is_one_to_eight() {
        let mut c = SourceConfig::new("ldaps://dc1.x", "b", SecretString::from("p"));
        assert_eq!(c.read_connections, 1);
        for n in 1..=8 {
            c.read_connections = n;
            c.validate().unwrap();
        }
        for n in [0, 9, 64] {
            c.read_connections = n;
            let err = c.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("read_connections is {n}")) && err.contains("1 (one"),
                "{err}"
            );
        }
        let parsed =
            parse("url = \"ldaps://x\"\nbind = \"b\"\npassword = \"p\"\nread_connections = 4\n")
                .unwrap();
        assert_eq!(parsed.read_connections, 4);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("url = \"ldaps://x\"\nbind = \"b\"\npassword = \"p\"\npagesize = 5\n")
            .unwrap_err();
        assert!(err.to_string().contains("pagesize"), "{err}");
    }

    #[test]
    fn password_is_not_in_debug() {
        let c = SourceConfig::new("ldaps://x", "b", SecretString::from("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn transports() {
        let mut c = SourceConfig::new("ldap://127.0.0.2", "b", SecretString::from("p"));
        assert_eq!(c.endpoint().unwrap().transport, Transport::StartTls);
        assert_eq!(c.endpoint().unwrap().port, 389);
        c.starttls = false;
        let err = c.endpoint().unwrap_err().to_string();
        assert!(err.contains("in clear"), "{err}");
        c.allow_plain_ldap = true;
        assert_eq!(c.endpoint().unwrap().transport, Transport::Plain);
        c.url = "http://x".into();
        assert!(
            c.endpoint()
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        c.url = "ldaps://[::1]:1636".into();
        let e = c.endpoint().unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 1636));
    }

    #[test]
    fn url_is_one_or_a_list_or_dns_discovery() {
        let one = parse("url = \"ldaps://dc1.x\"\nbind = \"b\"\npassword = \"p\"\n").unwrap();
        assert_eq!(one.url, DcUrls::from("ldaps://dc1.x"));
        let two =
            parse("url = [\"ldaps://dc1.x\", \"ldap://dc2.x\"]\nbind = \"b\"\npassword = \"p\"\n")
                .unwrap();
        assert_eq!(two.url.len(), 2);
        two.validate().unwrap();
        assert_eq!(
            two.endpoint().unwrap().host,
            "dc1.x",
            "the first is preferred"
        );

        // Every URL is checked, not only the first.
        let mut bad = two.clone();
        bad.url = DcUrls(vec!["ldaps://dc1.x".into(), "http://dc2.x".into()]);
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");

        let found = parse(
            "domain = \"corp.example.test\"\nsite = \"Paris\"\nbind = \"b\"\npassword = \"p\"\n",
        )
        .unwrap();
        found.validate().unwrap();
        assert_eq!(
            discovered_url(&found, "dc7.corp.example.test.", 389),
            "ldaps://dc7.corp.example.test:636"
        );

        let mut both = found.clone();
        both.url = DcUrls::from("ldaps://dc1.x");
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let mut neither = found.clone();
        neither.domain = None;
        neither.site = None;
        let err = neither.validate().unwrap_err().to_string();
        assert!(err.contains("url is missing"), "{err}");
        let mut site_alone = two;
        site_alone.site = Some("Paris".into());
        assert!(
            site_alone
                .validate()
                .unwrap_err()
                .to_string()
                .contains("site")
        );
        let err = parse("url = 5\nbind = \"b\"\npassword = \"p\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("or a list of them"), "{err}");
    }

    #[test]
    fn empty_password_or_kerberos() {
        let mut c = SourceConfig::new(
            "ldaps://dc1.corp.example.test",
            "svc@corp",
            SecretString::from(String::new()),
        );
        let err = c.endpoint().unwrap_err().to_string();
        assert!(err.contains("password is empty"), "{err}");
        c.kerberos = Some(KerberosConfig {
            keytab_file: Some("/etc/k.keytab".into()),
            principal: Some("svc@CORP.EXAMPLE.TEST".into()),
            ccache: None,
        });
        if cfg!(feature = "kerberos") {
            c.endpoint().unwrap();
            c.url = "ldaps://127.0.0.2".into();
            let err = c.endpoint().unwrap_err().to_string();
            assert!(err.contains("Kerberos needs the DC's DNS name"), "{err}");
        } else {
            let err = c.endpoint().unwrap_err().to_string();
            assert!(err.contains("build with --features kerberos"), "{err}");
        }
        // In TOML: no bind, no password, a [kerberos] table; never an unknown-field error.
        let c = parse(
            "url = \"ldaps://dc1.corp.example.test\"\n[kerberos]\nkeytab_file = \"/k\"\nprincipal = \"s@R\"\n",
        )
        .unwrap();
        assert!(c.kerberos.is_some());
    }

    #[test]
    fn bad_filter_is_a_sentence() {
        let mut c = SourceConfig::new("ldaps://x", "b", SecretString::from("p"));
        c.user_filter = "(&(objectClass=user)".into();
        let err = c.endpoint().unwrap_err().to_string();
        assert!(
            err.contains("user_filter") && err.contains("not a valid LDAP filter"),
            "{err}"
        );
    }
}
