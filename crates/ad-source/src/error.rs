//! Errors of the source: each one a sentence naming the host or attribute and what to do.

use std::path::PathBuf;

use crate::bind_error::BindFailure;
use crate::kerberos::KerberosFailure;

/// What went wrong while connecting to or reading the directory.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The configuration cannot work.
    #[error("invalid source configuration: {message}")]
    Config {
        /// The sentence.
        message: String,
    },
    /// The host name does not resolve.
    #[error(
        "the DC host name {host} does not resolve ({detail}); check the spelling and that this machine uses the domain's DNS servers"
    )]
    Dns {
        /// The host.
        host: String,
        /// The resolver's message.
        detail: String,
    },
    /// Nothing listens on the port, or a firewall rejects it.
    #[error(
        "connection to {host}:{port} was refused; check that the DC serves {what} on port {port} and no firewall blocks it"
    )]
    ConnectionRefused {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// `LDAPS` or `LDAP`.
        what: &'static str,
    },
    /// No answer within the connect timeout.
    #[error(
        "no answer from {host}:{port} within {secs} s; check routing and firewalls (connect_timeout_secs raises the limit)"
    )]
    ConnectTimeout {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// The timeout.
        secs: u64,
    },
    /// The TLS handshake failed; `reason` says why in words.
    #[error("TLS with {host}:{port} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What to do.
        reason: String,
    },
    /// The CA file could not be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The bind was refused.
    #[error("{0}")]
    Bind(BindFailure),
    /// Kerberos failed: the keytab, the ticket, the KDC, the SPN or the GSSAPI bind.
    #[error("{0}")]
    Kerberos(KerberosFailure),
    /// The connection broke or another transport error happened.
    #[error(
        "connection to {host} failed during {operation}: {detail}; the DC may have restarted or a network device closed the connection"
    )]
    Network {
        /// The host.
        host: String,
        /// What was being done.
        operation: String,
        /// The transport's message.
        detail: String,
    },
    /// The server did not answer in time.
    #[error(
        "{host} did not answer {operation} within {secs} s; the DC may be overloaded (operation_timeout_secs raises the limit)"
    )]
    OperationTimeout {
        /// The host.
        host: String,
        /// What was being done.
        operation: String,
        /// The timeout.
        secs: u64,
    },
    /// A search ended with an error result.
    #[error("search of {base} with {filter} on {host} failed: {reason}")]
    Search {
        /// The host.
        host: String,
        /// The base DN.
        base: String,
        /// The filter.
        filter: String,
        /// LDAP result code.
        result_code: u32,
        /// Explanation and advice.
        reason: String,
    },
    /// The rootDSE or the DC's server objects lack something the sync depends on.
    #[error("{host}: {message}")]
    RootDse {
        /// The host.
        host: String,
        /// The sentence, naming the attribute.
        message: String,
    },
    /// After a reconnect the URL led to another DC (or a restored one): USNs are per DC.
    #[error(
        "after reconnecting, {url} is served by {found} instead of {expected}; uSNChanged values are per domain controller, so this run stops; point url at one DC (not the domain name) and run again"
    )]
    DcChanged {
        /// The configured URL.
        url: String,
        /// DC and invocationId before.
        expected: String,
        /// DC and invocationId now.
        found: String,
    },
    /// Reconnecting failed too many times.
    #[error(
        "gave up on {host} after {attempts} reconnect attempts in {elapsed_secs} s during {operation}; last error: {last}; if the DC needs longer to come back (a reboot), raise max_reconnect_secs"
    )]
    ReconnectsExhausted {
        /// The host.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// Seconds from the first failure to giving up.
        elapsed_secs: u64,
        /// What was being done.
        operation: String,
        /// The last error, as a sentence.
        last: String,
    },
    /// The consumer dropped the event stream before the run ended.
    #[error(
        "the consumer stopped reading events; the run was abandoned and its checkpoint must not be saved"
    )]
    Cancelled,
    /// The server sent something the LDAP library could not parse (it panicked on it; the
    /// panic was contained in its own task).
    #[error(
        "{host} answered {during} with an LDAP message that cannot be parsed; the server is broken or not a domain controller, or something between us (a proxy, a TLS inspector) rewrites the traffic: check the URL and the path to the DC"
    )]
    Malformed {
        /// The DC.
        host: String,
        /// The step (`the connection, bind or rootDSE read`, …).
        during: &'static str,
    },
    /// DNS discovery of the domain's DCs failed.
    #[error(
        "no domain controller could be found in DNS: the SRV lookup of {name} failed ({detail}); check domain (and site), that this machine asks the domain's DNS servers (or set dns_server), or list the DCs in url instead"
    )]
    Discovery {
        /// The SRV name asked for.
        name: String,
        /// The resolver's message.
        detail: String,
    },
    /// Every DC was tried and none could be used.
    #[error(
        "no domain controller could be used; each was tried in order: {tried}. Nothing was read, so nothing was sent or deleted and the checkpoint did not move"
    )]
    NoDcAvailable {
        /// Each DC with the reason it was passed over.
        tried: String,
    },
    /// A bug or an impossible state.
    #[error("internal error in the AD source: {0}")]
    Internal(String),
}

impl SourceError {
    /// Whether retrying the operation on a new connection can help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Network { .. }
                | SourceError::OperationTimeout { .. }
                | SourceError::ConnectTimeout { .. }
                | SourceError::ConnectionRefused { .. }
                | SourceError::NoDcAvailable { .. }
        ) || matches!(self, SourceError::Search { result_code, .. } if matches!(result_code, 51 | 52 | 80 | 81))
    }
}

/// Advice for a search result code.
pub(crate) fn search_reason(rc: u32, text: &str) -> String {
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let advice = match rc {
        4 => "sizeLimitExceeded: the server ignored paging; lower page_size",
        11 => {
            "adminLimitExceeded: a server limit (MaxPageSize, MaxResultSetSize) was hit; lower page_size"
        }
        32 => "noSuchObject: the base DN does not exist; check base_dn",
        34 => "invalidDNSyntax: the base DN is not a DN; check base_dn",
        50 => {
            "insufficientAccessRights: the account may not read here; grant it \"Read all user information\" or Read Property on users and groups"
        }
        51 => "busy: the DC is busy; it will be retried",
        52 => "unavailable: the DC is shutting down or not ready",
        53 => "unwillingToPerform: the DC refused the search (filter or control not supported?)",
        12 => "unavailableCriticalExtension: the DC does not support a required control",
        3 => "timeLimitExceeded: the DC's MaxQueryDuration was hit; narrow the base DN or filter",
        _ => "",
    };
    match (advice.is_empty(), text.is_empty()) {
        (true, true) => format!("LDAP result {rc}"),
        (true, false) => format!("LDAP result {rc}: {text}"),
        (false, true) => format!("result {rc} {advice}"),
        (false, false) => format!("result {rc} {advice} (server said: {text})"),
    }
}
