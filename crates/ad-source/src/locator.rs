//! Choosing the domain controller of a cycle: the configured list or DNS SRV discovery,
//! every address of a name, in order of preference, and the first one that answers is
//! pinned for the whole cycle.
//!
//! USNs are per DC, so everything one cycle reads must come from one DC: [`Source::pin`]
//! returns a copy of the source bound to one URL **and one address**, whose every
//! connection (reconnects included) goes to that address while the certificate is still
//! checked against the DC's name. Which DC served is told by its rootDSE (`dnsHostName`,
//! `invocationId`), read while pinning.
//!
//! Failover happens only where it is safe: a DC that cannot be reached, times out, fails the
//! TLS handshake or answers busy is passed over (nothing was sent to it); a DC that refuses
//! the **bind** is not, because every DC of the domain would refuse the same credentials and
//! each attempt counts towards the account's lockout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use serde::Serialize;

use crate::config::{SourceConfig, discovered_url};
use crate::error::SourceError;
use crate::root_dse::RootDse;
use crate::session::Session;
use crate::sync::Source;

/// A DC to try, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcCandidate {
    /// The URL to connect to (host name kept for the certificate check).
    pub url: String,
    /// Where it came from: `url` or the SRV record it was found in.
    pub origin: String,
    /// The addresses the name resolved to, when the locator resolved it (discovered DCs).
    #[serde(skip)]
    pub(crate) addrs: Vec<IpAddr>,
}

/// A DC that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedOver {
    /// The URL and address tried (`ldaps://dc1.corp.example.com:636 (10.0.0.5)`).
    pub dc: String,
    /// Why it was passed over, as a sentence.
    pub reason: String,
}

/// The DC a cycle reads from.
#[derive(Debug, Clone)]
pub struct PinnedDc {
    /// A source whose every connection goes to this DC's address.
    pub source: Source,
    /// Its rootDSE, read while pinning (`dnsHostName`, `invocationId`, USN).
    pub root: RootDse,
    /// The URL it was reached by.
    pub url: String,
    /// The address it was reached at.
    pub addr: SocketAddr,
    /// DCs tried before it, in order, with the reason each was passed over.
    pub passed_over: Vec<PassedOver>,
}

impl Source {
    /// The DCs to try, in order: the configured `url` list, or the DCs of `domain` found in
    /// DNS (SRV records by priority, then weight).
    pub async fn candidates(&self) -> Result<Vec<DcCandidate>, SourceError> {
        candidates(self.config()).await
    }

    /// Connect to the first DC that answers (binding and reading its rootDSE), and return a
    /// source pinned to it for one cycle. A single configured URL with a single address
    /// fails with that DC's own error; with several, the error lists every DC and why it was
    /// passed over. A refused bind is returned at once (see the module documentation).
    pub async fn pin(&self) -> Result<PinnedDc, SourceError> {
        let config = self.config();
        if config.pinned_addr.is_some() {
            // Already pinned: read the rootDSE of the same DC again.
            let session = Session::reuse_or_open(self.config_arc(), self.parked()).await?;
            let root = session.root.clone();
            self.parked().put(session).await;
            return Ok(PinnedDc {
                source: self.clone(),
                root,
                url: config.current_url().to_owned(),
                addr: config.pinned_addr.unwrap_or_else(unspecified),
                passed_over: Vec::new(),
            });
        }
        let candidates = candidates(config).await?;
        let mut passed_over = Vec::new();
        let mut only_error = None;
        let mut tries = 0usize;
        for candidate in &candidates {
            let addrs = match addresses(config, candidate).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    tries += 1;
                    passed_over.push(PassedOver {
                        dc: candidate.url.clone(),
                        reason: e.to_string(),
                    });
                    only_error = Some(e);
                    continue;
                }
            };
            for addr in addrs {
                tries += 1;
                let source = self.with_config(one_dc(config, &candidate.url, Some(addr)));
                match Session::open(source.config_arc()).await {
                    Ok(session) => {
                        let root = session.root.clone();
                        // The cycle's first read continues on this connection.
                        source.parked().put(session).await;
                        for passed in &passed_over {
                            tracing::warn!(
                                dc = %passed.dc, reason = %passed.reason,
                                "passed over a domain controller that could not be used"
                            );
                        }
                        tracing::info!(
                            dc = %root.dns_host_name, url = %candidate.url, %addr,
                            "this cycle reads from {}", root.dns_host_name
                        );
                        return Ok(PinnedDc {
                            source,
                            root,
                            url: candidate.url.clone(),
                            addr,
                            passed_over,
                        });
                    }
                    Err(e) if !fails_over(&e) => return Err(e),
                    Err(e) => {
                        passed_over.push(PassedOver {
                            dc: format!("{} ({addr})", candidate.url),
                            reason: e.to_string(),
                        });
                        only_error = Some(e);
                    }
                }
            }
        }
        match only_error {
            Some(e) if tries == 1 => Err(e),
            _ => Err(SourceError::NoDcAvailable {
                tried: passed_over
                    .iter()
                    .map(|p| format!("{}: {}", p.dc, p.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
}

/// Whether an error on one DC is a reason to try the next: it could not be reached or
/// served, and no credentials were refused. Kerberos failures (keytab, principal, KDC,
/// clock) are the same whichever DC is asked.
fn fails_over(error: &SourceError) -> bool {
    !matches!(
        error,
        SourceError::Bind(_)
            | SourceError::Config { .. }
            | SourceError::Cancelled
            | SourceError::Kerberos(_)
    )
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

pub(crate) async fn candidates(config: &SourceConfig) -> Result<Vec<DcCandidate>, SourceError> {
    config.validate()?;
    let Some(domain) = &config.domain else {
        return Ok(config
            .url
            .iter()
            .map(|url| DcCandidate {
                url: url.to_owned(),
                origin: "url".to_owned(),
                addrs: Vec::new(),
            })
            .collect());
    };
    let domain = domain.trim().trim_end_matches('.');
    let name = match &config.site {
        Some(site) => format!("_ldap._tcp.{}._sites.dc._msdcs.{domain}.", site.trim()),
        None => format!("_ldap._tcp.dc._msdcs.{domain}."),
    };
    let resolver = resolver(config)?;
    let timeout = config.connect_timeout();
    let lookup = tokio::time::timeout(timeout, resolver.srv_lookup(name.as_str()))
        .await
        .map_err(|_| SourceError::Discovery {
            name: name.clone(),
            detail: format!("no answer within {} s", timeout.as_secs()),
        })?
        .map_err(|e| SourceError::Discovery {
            name: name.clone(),
            detail: e.to_string(),
        })?;
    let mut records: Vec<SrvRecord> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            hickory_resolver::proto::rr::RData::SRV(srv) => Some(SrvRecord {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv.target.to_ascii().trim_end_matches('.').to_owned(),
            }),
            _ => None,
        })
        // "." as the target: the service is decidedly not available (RFC 2782).
        .filter(|r| !r.target.is_empty())
        .collect();
    if records.is_empty() {
        return Err(SourceError::Discovery {
            name,
            detail: "the answer holds no usable SRV record".to_owned(),
        });
    }
    order_srv(&mut records, &stable_seed(config));
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let addrs = resolve_target(&resolver, &record.target, timeout).await;
        out.push(DcCandidate {
            url: discovered_url(config, &record.target, record.port),
            origin: format!(
                "SRV {} priority {} weight {} port {}",
                name.trim_end_matches('.'),
                record.priority,
                record.weight,
                record.port
            ),
            addrs,
        });
    }
    Ok(out)
}

fn resolver(config: &SourceConfig) -> Result<Resolver<TokioRuntimeProvider>, SourceError> {
    let fail = |detail: String| SourceError::Discovery {
        name: config.domain.clone().unwrap_or_default(),
        detail,
    };
    let mut builder = match config.dns_server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut ns.connections {
                connection.port = server.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| {
            fail(format!(
                "the system's resolver configuration could not be read ({e}); set dns_server"
            ))
        })?,
    };
    builder.options_mut().timeout = config.connect_timeout();
    builder.options_mut().attempts = 2;
    builder
        .build()
        .map_err(|e| fail(format!("the DNS resolver could not be set up ({e})")))
}

/// The addresses of a discovered DC, from the same DNS server; empty when they do not
/// resolve there (the system resolver is asked when connecting).
async fn resolve_target(
    resolver: &Resolver<TokioRuntimeProvider>,
    target: &str,
    timeout: Duration,
) -> Vec<IpAddr> {
    let fqdn = format!("{target}.");
    match tokio::time::timeout(timeout, resolver.lookup_ip(fqdn.as_str())).await {
        Ok(Ok(ips)) => {
            let mut ips: Vec<IpAddr> = ips.iter().collect();
            ips.sort();
            ips.dedup();
            ips
        }
        _ => Vec::new(),
    }
}

/// Every address of a candidate (with the port of its URL), sorted so that a cycle prefers
/// the same one each time.
pub(crate) async fn addresses(
    config: &SourceConfig,
    candidate: &DcCandidate,
) -> Result<Vec<SocketAddr>, SourceError> {
    let endpoint = config.endpoint_of(&candidate.url)?;
    if !candidate.addrs.is_empty() {
        return Ok(candidate
            .addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, endpoint.port))
            .collect());
    }
    let mut addrs = crate::connection::resolve(&endpoint, config.connect_timeout()).await?;
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The configuration of one DC: its URL, and the address to connect to when pinned.
pub(crate) fn one_dc(config: &SourceConfig, url: &str, addr: Option<SocketAddr>) -> SourceConfig {
    let mut one = config.clone();
    one.url = url.to_owned().into();
    one.domain = None;
    one.site = None;
    one.pinned_addr = addr;
    one
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvRecord {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// What the weighted order is seeded with: the same configuration prefers the same DC every
/// cycle (a delta needs a DC it has read before), while connectors configured differently
/// spread over the DCs of one priority as the weights say.
fn stable_seed(config: &SourceConfig) -> String {
    format!(
        "{}|{}|{}",
        config.bind.trim().to_ascii_lowercase(),
        config.domain.as_deref().unwrap_or_default(),
        config.site.as_deref().unwrap_or_default()
    )
}

/// RFC 2782 order: lowest priority first; within a priority, a weighted random order —
/// here drawn from a hash of `seed` and the target rather than a fresh random number, so it
/// is the same every cycle (weighted sampling without replacement, Efraimidis–Spirakis:
/// sort by `u^(1/w)` descending, `u` uniform in (0,1)). Weight 0 records come last.
fn order_srv(records: &mut [SrvRecord], seed: &str) {
    let key = |r: &SrvRecord| -> f64 {
        if r.weight == 0 {
            return -1.0;
        }
        let u = unit_hash(seed, &r.target, r.port);
        u.powf(1.0 / f64::from(r.weight))
    };
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| key(b).total_cmp(&key(a)))
            .then_with(|| a.target.cmp(&b.target))
    });
}

/// A number in (0, 1) from FNV-1a of the seed, the target and the port. Written here
/// because it must be stable across releases and platforms, which std's `DefaultHasher`
/// does not promise.
fn unit_hash(seed: &str, target: &str, port: u16) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed
        .bytes()
        .chain([0])
        .chain(target.to_ascii_lowercase().bytes())
        .chain(port.to_be_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // 53 bits of the hash, strictly inside (0, 1).
    #[allow(clippy::cast_precision_loss)]
    let top = (hash >> 11) as f64;
    (top + 0.5) / 9_007_199_254_740_992.0
}

impl Source {
    /// The same source (and clock) with another configuration.
    pub(crate) fn with_config(&self, config: SourceConfig) -> Source {
        Source::from_parts(Arc::new(config), self.clock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 389,
            target: target.to_owned(),
        }
    }

    #[test]
    fn priority_first_then_weight_stable_per_seed() {
        let mut records = vec![
            rec(10, 100, "far.corp"),
            rec(0, 0, "zero.corp"),
            rec(0, 50, "a.corp"),
            rec(0, 50, "b.corp"),
        ];
        order_srv(&mut records, "svc|corp|");
        assert_eq!(records[3].target, "far.corp", "higher priority value last");
        assert_eq!(
            records[2].target, "zero.corp",
            "weight 0 last within its priority"
        );
        let first = records[0].target.clone();
        for _ in 0..5 {
            let mut again = records.clone();
            again.reverse();
            order_srv(&mut again, "svc|corp|");
            assert_eq!(again[0].target, first, "the same seed prefers the same DC");
        }
    }

    #[test]
    fn weights_spread_seeds_in_proportion() {
        // Over many seeds, a weight-300 DC is chosen first about three times as often as a
        // weight-100 one.
        let mut heavy = 0;
        for i in 0..4000 {
            let mut records = vec![rec(0, 100, "light.corp"), rec(0, 300, "heavy.corp")];
            order_srv(&mut records, &format!("seed-{i}"));
            if records[0].target == "heavy.corp" {
                heavy += 1;
            }
        }
        assert!((2800..3200).contains(&heavy), "heavy first {heavy} of 4000");
    }

    #[test]
    fn bind_failures_do_not_fail_over_unreachable_dcs_do() {
        assert!(fails_over(&SourceError::ConnectionRefused {
            host: "dc1".into(),
            port: 636,
            what: "LDAPS"
        }));
        assert!(!fails_over(&SourceError::Config {
            message: "x".into()
        }));
    }
}
