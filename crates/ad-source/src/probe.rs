//! "Test connection": every step from DNS to reading a user's objectSid, each with a verdict
//! and a sentence, so an administrator sees exactly where it breaks.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ldap3::Ldap;
use serde::Serialize;

use crate::config::{SourceConfig, Transport};
use crate::connection::{self, Connection};
use crate::error::SourceError;
use crate::root_dse::{self, read_base, read_one};
use crate::session::effective_page_size;
use crate::tls;

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStepKind {
    /// The configuration itself (URL, transport, filters).
    Config,
    /// Name resolution of the DC.
    Dns,
    /// A TCP connection to the port.
    Tcp,
    /// The TLS handshake (LDAPS or StartTLS) and the certificate.
    Tls,
    /// Kerberos: the initial ticket, from the keytab or the credential cache.
    KerberosTicket,
    /// Kerberos: the service ticket for `ldap/<DC>`.
    ServiceTicket,
    /// The bind (simple, or Kerberos SASL GSSAPI).
    Bind,
    /// Kerberos: how the bound session is protected (TLS with channel binding, or SASL
    /// sealing on plain LDAP).
    Protection,
    /// The rootDSE, invocationId and domain SID.
    RootDse,
    /// The base DN can be read.
    BaseDn,
    /// A user can be read with the user filter.
    SampleUser,
    /// A group can be read with the group filter.
    SampleGroup,
    /// objectSid and objectGUID are visible ("Read all user information").
    IdentityAttributes,
}

/// A step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// Worked.
    Pass,
    /// Worked, with something to look at.
    Warn,
    /// Failed; later steps are skipped.
    Fail,
    /// Not run (an earlier step failed, or it does not apply).
    Skipped,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeStep {
    /// Which step.
    pub step: ProbeStepKind,
    /// The verdict.
    pub outcome: ProbeOutcome,
    /// What was found or what went wrong, and what to do.
    pub message: String,
    /// Time the step took.
    pub elapsed_ms: u64,
}

/// The certificate the DC presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// DNS names and IP addresses in subjectAltName.
    pub subject_alt_names: Vec<String>,
    /// Start of validity.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity.
    pub not_after: Option<DateTime<Utc>>,
}

/// All steps of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// The steps in order (all of them, skipped ones included).
    pub steps: Vec<ProbeStep>,
    /// The certificate, when a TLS handshake got that far.
    pub certificate: Option<CertificateInfo>,
}

impl ProbeReport {
    /// True when no step failed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != ProbeOutcome::Fail)
    }

    /// The first failed step.
    pub fn first_failure(&self) -> Option<&ProbeStep> {
        self.steps.iter().find(|s| s.outcome == ProbeOutcome::Fail)
    }

    /// The step of a kind.
    pub fn step(&self, kind: ProbeStepKind) -> Option<&ProbeStep> {
        self.steps.iter().find(|s| s.step == kind)
    }
}

const ORDER: [ProbeStepKind; 13] = [
    ProbeStepKind::Config,
    ProbeStepKind::Dns,
    ProbeStepKind::Tcp,
    ProbeStepKind::Tls,
    ProbeStepKind::KerberosTicket,
    ProbeStepKind::ServiceTicket,
    ProbeStepKind::Bind,
    ProbeStepKind::Protection,
    ProbeStepKind::RootDse,
    ProbeStepKind::BaseDn,
    ProbeStepKind::SampleUser,
    ProbeStepKind::SampleGroup,
    ProbeStepKind::IdentityAttributes,
];

struct Recorder {
    steps: Vec<ProbeStep>,
    started: Instant,
    /// Whether the Kerberos steps apply (`[source.kerberos]` is set).
    kerberos: bool,
}

fn is_kerberos_step(kind: ProbeStepKind) -> bool {
    matches!(
        kind,
        ProbeStepKind::KerberosTicket | ProbeStepKind::ServiceTicket | ProbeStepKind::Protection
    )
}

impl Recorder {
    fn record(&mut self, step: ProbeStepKind, outcome: ProbeOutcome, message: impl Into<String>) {
        self.steps.push(ProbeStep {
            step,
            outcome,
            message: message.into(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
        });
        self.started = Instant::now();
    }

    fn fail(&mut self, step: ProbeStepKind, message: impl Into<String>) {
        self.record(step, ProbeOutcome::Fail, message);
    }

    fn finish(mut self, certificate: Option<CertificateInfo>) -> ProbeReport {
        for kind in ORDER {
            if is_kerberos_step(kind) && !self.kerberos {
                continue;
            }
            if !self.steps.iter().any(|s| s.step == kind) {
                self.steps.push(ProbeStep {
                    step: kind,
                    outcome: ProbeOutcome::Skipped,
                    message: "not run because an earlier step failed".to_owned(),
                    elapsed_ms: 0,
                });
            }
        }
        ProbeReport {
            steps: self.steps,
            certificate,
        }
    }
}

/// Parse a DER certificate for display.
pub fn describe_certificate(der: &[u8]) -> Option<CertificateInfo> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*ip)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Some(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        subject_alt_names: sans,
        not_before: DateTime::from_timestamp(validity.not_before.timestamp(), 0),
        not_after: DateTime::from_timestamp(validity.not_after.timestamp(), 0),
    })
}

fn certificate_sentence(info: &CertificateInfo, now: DateTime<Utc>) -> (ProbeOutcome, String) {
    let sans = if info.subject_alt_names.is_empty() {
        "no subjectAltName".to_owned()
    } else {
        info.subject_alt_names.join(", ")
    };
    let mut outcome = ProbeOutcome::Pass;
    let expiry = match info.not_after {
        Some(at) => {
            let days = (at - now).num_days();
            if days < 30 {
                outcome = ProbeOutcome::Warn;
                format!(
                    "expires {} (in {days} days: renew it soon)",
                    at.format("%Y-%m-%d")
                )
            } else {
                format!("valid until {}", at.format("%Y-%m-%d"))
            }
        }
        None => "validity unknown".to_owned(),
    };
    (
        outcome,
        format!(
            "certificate of {} ({sans}), issued by {}, {expiry}",
            info.subject, info.issuer
        ),
    )
}

async fn peer_certificate(ldap: &mut Ldap) -> Option<CertificateInfo> {
    let der = ldap.get_peer_certificate().await.ok().flatten()?;
    describe_certificate(&der)
}

/// The probe of one DC of a configuration with several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcProbe {
    /// The DC's URL.
    pub url: String,
    /// Where it came from (`url`, or the SRV record).
    pub origin: String,
    /// Its steps.
    pub report: ProbeReport,
}

/// Probe every DC of the configuration, in the order cycles try them: each URL of the
/// list, or each DC found in DNS (at the address that DNS server gave). Fails only when the
/// DCs cannot be listed (DNS discovery failed).
pub async fn probe_dcs(config: &SourceConfig) -> Result<Vec<DcProbe>, SourceError> {
    let candidates = crate::locator::candidates(config).await?;
    let mut out = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        // A DC found in DNS is probed at the address that DNS server gave (with its URL's
        // port); a listed one through the system resolver, as a step of its own.
        let addr = if candidate.addrs.is_empty() {
            None
        } else {
            crate::locator::addresses(config, &candidate)
                .await
                .ok()
                .and_then(|addrs| addrs.first().copied())
        };
        let report = probe(&crate::locator::one_dc(config, &candidate.url, addr)).await;
        out.push(DcProbe {
            url: candidate.url,
            origin: candidate.origin,
            report,
        });
    }
    Ok(out)
}

/// Run every step against the configured DC (the first URL); never fails, the report says.
pub async fn probe(config: &SourceConfig) -> ProbeReport {
    // In a task of its own: ldap3 parses some replies (bind, StartTLS, results) in the
    // caller's task and panics on malformed ones; the panic becomes a failed step.
    let owned = config.clone();
    match tokio::spawn(async move { probe_here(&owned).await }).await {
        Ok(report) => report,
        Err(e) => {
            let host = config.endpoint().map(|e| e.host).unwrap_or_default();
            let message = if e.is_panic() {
                SourceError::Malformed {
                    host,
                    during: "the connection test",
                }
                .to_string()
            } else {
                SourceError::Cancelled.to_string()
            };
            ProbeReport {
                steps: vec![ProbeStep {
                    step: ProbeStepKind::Tcp,
                    outcome: ProbeOutcome::Fail,
                    message,
                    elapsed_ms: 0,
                }],
                certificate: None,
            }
        }
    }
}

async fn probe_here(config: &SourceConfig) -> ProbeReport {
    let mut r = Recorder {
        steps: Vec::new(),
        started: Instant::now(),
        kerberos: config.kerberos.is_some(),
    };
    let mut certificate = None;
    let endpoint = match config.endpoint() {
        Ok(e) => e,
        Err(e) => {
            r.fail(ProbeStepKind::Config, e.to_string());
            return r.finish(None);
        }
    };
    let transport = match endpoint.transport {
        Transport::Ldaps => "LDAPS",
        Transport::StartTls => "LDAP with StartTLS",
        Transport::Plain => "plain LDAP (unencrypted)",
    };
    let sealed = endpoint.transport == Transport::Plain && config.kerberos.is_some();
    let transport = if sealed {
        "plain LDAP sealed by Kerberos (SASL privacy)"
    } else {
        transport
    };
    let who = match &config.kerberos {
        Some(k) => format!(
            "{} with Kerberos ({})",
            config.account(),
            match (&k.keytab_file, &k.ccache) {
                (Some(keytab), _) => format!("keytab {}", keytab.display()),
                (None, Some(cc)) => format!("credential cache {cc}"),
                (None, None) => "the default credential cache".to_owned(),
            }
        ),
        None => format!(
            "{} ({:?} form)",
            config.bind.trim(),
            crate::bind_error::bind_name_form(&config.bind)
        ),
    };
    r.record(
        ProbeStepKind::Config,
        if (endpoint.transport == Transport::Plain && !sealed) || config.insecure_skip_tls_verify {
            ProbeOutcome::Warn
        } else {
            ProbeOutcome::Pass
        },
        format!(
            "{transport} to {}:{} as {who}{}",
            endpoint.host,
            endpoint.port,
            if config.insecure_skip_tls_verify {
                "; insecure_skip_tls_verify is set: the certificate is not checked"
            } else {
                ""
            }
        ),
    );

    // DNS (a DC found by discovery comes with the address its DNS server gave)
    let addrs = match config.pinned_addr {
        Some(addr) => vec![addr],
        None => match connection::resolve(&endpoint, config.connect_timeout()).await {
            Ok(a) => a,
            Err(e) => {
                r.fail(ProbeStepKind::Dns, e.to_string());
                return r.finish(None);
            }
        },
    };
    let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    r.record(
        ProbeStepKind::Dns,
        ProbeOutcome::Pass,
        format!("{} resolves to {}", endpoint.host, listed.join(", ")),
    );

    // TCP
    let mut reached = None;
    let mut last_error = String::new();
    for addr in &addrs {
        match tokio::time::timeout(
            config.connect_timeout(),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(_stream)) => {
                reached = Some(*addr);
                break;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last_error = SourceError::ConnectionRefused {
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    what: if endpoint.transport == Transport::Ldaps {
                        "LDAPS"
                    } else {
                        "LDAP"
                    },
                }
                .to_string();
            }
            Ok(Err(e)) => last_error = format!("TCP connection to {addr} failed: {e}"),
            Err(_) => {
                last_error = SourceError::ConnectTimeout {
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    secs: config.connect_timeout().as_secs(),
                }
                .to_string()
            }
        }
    }
    match reached {
        Some(addr) => r.record(
            ProbeStepKind::Tcp,
            ProbeOutcome::Pass,
            format!("port {} on {addr} accepts connections", endpoint.port),
        ),
        None => {
            r.fail(ProbeStepKind::Tcp, last_error);
            return r.finish(None);
        }
    }

    // Sealed plain LDAP: the Kerberos bind happens while the connection opens, so get the
    // tickets first, each at its own step (an SPN the KDC lacks is a service-ticket failure,
    // not a bind or TLS one).
    #[cfg(feature = "kerberos")]
    let mut tickets = None;
    if sealed {
        r.record(
            ProbeStepKind::Tls,
            ProbeOutcome::Pass,
            "no TLS: the session is to be sealed (encrypted) by Kerberos after the bind (SASL GSSAPI privacy)",
        );
        #[cfg(feature = "kerberos")]
        if let Some(kerberos) = &config.kerberos {
            match kerberos_tickets(&mut r, kerberos, &endpoint.host).await {
                Some(creds) => tickets = Some(creds),
                None => return r.finish(None),
            }
        }
    }

    // TLS
    let tls_config = match tls::client_config(config) {
        Ok(c) => c,
        Err(e) => {
            r.fail(ProbeStepKind::Tls, e.to_string());
            return r.finish(None);
        }
    };
    let mut ldap = match connection::open_with(config, tls_config).await {
        Ok((ldap, _)) => ldap,
        Err(e) => {
            // Look at the certificate anyway, to say what the server presented.
            if endpoint.transport != Transport::Plain {
                let insecure = std::sync::Arc::new(tls::insecure_config());
                if let Ok((mut peek, _)) = connection::open_with(config, insecure).await {
                    certificate = peer_certificate(&mut peek).await;
                    let _ = peek.unbind().await;
                }
            }
            let mut message = e.to_string();
            if let Some(info) = &certificate {
                message.push_str(&format!(
                    "; the server presented: {}",
                    certificate_sentence(info, Utc::now()).1
                ));
            }
            // On plain LDAP with Kerberos the bind happens while opening (sealing), after
            // the ticket steps passed: its failure belongs to the bind, not to TLS.
            let step = match &e {
                SourceError::Kerberos(_) if sealed => ProbeStepKind::Bind,
                SourceError::Kerberos(_) => ProbeStepKind::KerberosTicket,
                _ => ProbeStepKind::Tls,
            };
            r.fail(step, message);
            return r.finish(certificate);
        }
    };
    if sealed {
        // recorded above, before the tickets
    } else if endpoint.transport == Transport::Plain {
        r.record(
            ProbeStepKind::Tls,
            ProbeOutcome::Warn,
            "no TLS: allow_plain_ldap is set, so the password and data cross the network in clear",
        );
    } else {
        certificate = peer_certificate(&mut ldap).await;
        match &certificate {
            Some(info) => {
                let (mut outcome, sentence) = certificate_sentence(info, Utc::now());
                if config.insecure_skip_tls_verify {
                    outcome = ProbeOutcome::Warn;
                }
                r.record(
                    ProbeStepKind::Tls,
                    outcome,
                    format!("{transport} handshake verified: {sentence}"),
                );
            }
            None => r.record(
                ProbeStepKind::Tls,
                ProbeOutcome::Pass,
                format!("{transport} handshake verified"),
            ),
        }
    }

    // Bind
    let mut conn = Connection {
        ldap,
        endpoint: endpoint.clone(),
        op_timeout: config.operation_timeout(),
    };
    #[cfg(feature = "kerberos")]
    if let Some(kerberos) = &config.kerberos {
        let creds = match tickets {
            Some(creds) => creds,
            None => match kerberos_tickets(&mut r, kerberos, &endpoint.host).await {
                Some(creds) => creds,
                None => return r.finish(certificate),
            },
        };
        if !kerberos_bind(&mut r, &mut conn, config, &creds).await {
            return r.finish(certificate);
        }
    }
    if config.kerberos.is_none() {
        if let Err(e) = connection::bind(&mut conn, config).await {
            r.fail(ProbeStepKind::Bind, e.to_string());
            return r.finish(certificate);
        }
        r.record(
            ProbeStepKind::Bind,
            ProbeOutcome::Pass,
            format!("bound as {}", config.bind.trim()),
        );
    }

    // rootDSE
    let root = match root_dse::read(&conn).await {
        Ok(root) => root,
        Err(e) => {
            r.fail(ProbeStepKind::RootDse, e.to_string());
            return r.finish(certificate);
        }
    };
    r.record(
        ProbeStepKind::RootDse,
        ProbeOutcome::Pass,
        format!(
            "DC {} of {}, highestCommittedUSN {}, invocationId {}, domain SID {}, page size {}",
            root.dns_host_name,
            root.default_naming_context,
            root.highest_committed_usn,
            root.invocation_id,
            root.domain_sid
                .map(|s| s.to_string())
                .unwrap_or_else(|| "not readable".to_owned()),
            effective_page_size(config.page_size, root.max_page_size)
        ),
    );

    // Base DN
    let base = config
        .base_dn
        .clone()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| root.default_naming_context.clone());
    match read_base(&conn, &base, "(objectClass=*)", &["objectClass"]).await {
        Ok(Some(_)) => r.record(
            ProbeStepKind::BaseDn,
            ProbeOutcome::Pass,
            format!("{base} is readable"),
        ),
        Ok(None) => {
            r.fail(
                ProbeStepKind::BaseDn,
                format!(
                    "{base} does not exist or is not visible to {}; check base_dn",
                    config.bind.trim()
                ),
            );
            return r.finish(certificate);
        }
        Err(e) => {
            r.fail(ProbeStepKind::BaseDn, e.to_string());
            return r.finish(certificate);
        }
    }

    // Samples
    let attrs = ["objectGUID", "objectSid", "sAMAccountName", "name"];
    let scope = config.scope.to_ldap();
    let user = read_one(&conn, &base, scope, &config.user_filter, &attrs).await;
    let group = read_one(&conn, &base, scope, &config.group_filter, &attrs).await;
    for (kind, what, filter, found) in [
        (
            ProbeStepKind::SampleUser,
            "user",
            &config.user_filter,
            &user,
        ),
        (
            ProbeStepKind::SampleGroup,
            "group",
            &config.group_filter,
            &group,
        ),
    ] {
        match found {
            Ok(Some(entry)) => r.record(kind, ProbeOutcome::Pass, format!("read {what} {}", entry.dn())),
            Ok(None) => r.record(
                kind,
                ProbeOutcome::Warn,
                format!("no {what} matches {filter} under {base}; check base_dn, scope and the filter, and that the account may list them"),
            ),
            Err(e) => r.fail(kind, e.to_string()),
        }
    }

    // Identity attributes
    let samples: Vec<&ad_model::RawEntry> = [&user, &group]
        .into_iter()
        .filter_map(|x| x.as_ref().ok().and_then(|o| o.as_ref()))
        .collect();
    if samples.is_empty() {
        r.record(
            ProbeStepKind::IdentityAttributes,
            ProbeOutcome::Skipped,
            "no user or group was read, so objectSid/objectGUID visibility is unknown",
        );
    } else {
        let missing: Vec<String> = samples
            .iter()
            .flat_map(|e| {
                let mut m = Vec::new();
                if e.first("objectGUID").map(<[u8]>::len) != Some(16) {
                    m.push(format!("objectGUID of {}", e.dn()));
                }
                if e.first("objectSid").is_none() {
                    m.push(format!("objectSid of {}", e.dn()));
                }
                m
            })
            .collect();
        if missing.is_empty() {
            r.record(
                ProbeStepKind::IdentityAttributes,
                ProbeOutcome::Pass,
                "objectSid and objectGUID are visible: the account can read user information",
            );
        } else {
            r.fail(
                ProbeStepKind::IdentityAttributes,
                format!(
                    "{} not visible; grant the account \"Read all user information\" (or Read Property on users and groups)",
                    missing.join(", ")
                ),
            );
        }
    }
    conn.close().await;
    let _ = Duration::ZERO;
    r.finish(certificate)
}

/// The Kerberos steps: initial ticket, service ticket, bind, protection. False when one failed.
/// The `kerberos_ticket` and `service_ticket` steps: the initial ticket (keytab or cache)
/// and a service ticket for `ldap/<host>`; `None` once one failed (recorded).
#[cfg(feature = "kerberos")]
async fn kerberos_tickets(
    r: &mut Recorder,
    kerberos: &crate::kerberos::KerberosConfig,
    host: &str,
) -> Option<crate::kerberos::Credentials> {
    use crate::kerberos;
    let creds = match kerberos::acquire(kerberos).await {
        Ok(c) => c,
        Err(e) => {
            r.fail(ProbeStepKind::KerberosTicket, e.to_string());
            return None;
        }
    };
    let minutes = creds.lifetime.as_secs() / 60;
    let private = kerberos.keytab_file.is_some() && kerberos.ccache.is_none();
    r.record(
        ProbeStepKind::KerberosTicket,
        ProbeOutcome::Pass,
        format!(
            "ticket obtained for {} from {}{} (valid for {} h {:02} min)",
            creds.principal,
            creds.source,
            if private {
                " into a private in-memory credential cache".to_owned()
            } else {
                String::new()
            },
            minutes / 60,
            minutes % 60
        ),
    );
    match kerberos::service_ticket(&creds, host).await {
        Ok(spn) => r.record(
            ProbeStepKind::ServiceTicket,
            ProbeOutcome::Pass,
            format!("service ticket obtained for {spn}"),
        ),
        Err(e) => {
            r.fail(ProbeStepKind::ServiceTicket, e.to_string());
            return None;
        }
    }
    Some(creds)
}

/// The `bind` and `protection` steps of a Kerberos bind with `creds`.
#[cfg(feature = "kerberos")]
async fn kerberos_bind(
    r: &mut Recorder,
    conn: &mut Connection,
    config: &SourceConfig,
    creds: &crate::kerberos::Credentials,
) -> bool {
    use crate::kerberos::{self, Protection};
    let protection = match kerberos::bind_with(conn, config, creds).await {
        Ok(p) => p,
        Err(e) => {
            r.fail(ProbeStepKind::Bind, e.to_string());
            return false;
        }
    };
    r.record(
        ProbeStepKind::Bind,
        ProbeOutcome::Pass,
        format!("bound as {} with Kerberos (SASL GSSAPI)", creds.principal),
    );
    match protection {
        Protection::ChannelBinding(hash) => r.record(
            ProbeStepKind::Protection,
            ProbeOutcome::Pass,
            format!(
                "channel binding (tls-server-end-point) in use: the bind carried the {hash} hash of the DC's certificate, as AD's \"LDAP channel binding = Always\" requires"
            ),
        ),
        Protection::TlsWithoutChannelBinding(why) => r.record(
            ProbeStepKind::Protection,
            ProbeOutcome::Warn,
            format!(
                "TLS protects the session, but no channel-binding token was sent (certificate signature algorithm {why} has no tls-server-end-point hash in the LDAP library): a DC enforcing LDAP channel binding will refuse the bind"
            ),
        ),
        Protection::Sealing => r.record(
            ProbeStepKind::Protection,
            ProbeOutcome::Pass,
            "SASL sealing in use: every LDAP message after the bind is encrypted and integrity-protected with the Kerberos session key",
        ),
    }
    true
}
