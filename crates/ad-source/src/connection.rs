//! Opening a connection: DNS, TCP, TLS (LDAPS or StartTLS), bind, with timeouts, and every
//! failure turned into a sentence.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, StdStream};
use secrecy::ExposeSecret;

use crate::bind_error;
use crate::config::{Endpoint, SourceConfig, Transport};
use crate::error::SourceError;
use crate::tls;

/// A bound connection to one DC.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) ldap: Ldap,
    pub(crate) endpoint: Endpoint,
    pub(crate) op_timeout: Duration,
}

impl Connection {
    /// The handle for one operation, with the per-operation timeout applied.
    pub(crate) fn op(&self) -> Ldap {
        let mut ldap = self.ldap.clone();
        ldap.with_timeout(self.op_timeout);
        ldap
    }

    pub(crate) fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// Close politely (best effort).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ldap.unbind()).await;
    }
}

/// Resolve the host (a separate step so a DNS failure is reported as one).
pub(crate) async fn resolve(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Vec<std::net::SocketAddr>, SourceError> {
    let target = (endpoint.host.as_str(), endpoint.port);
    match tokio::time::timeout(timeout, tokio::net::lookup_host(target)).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(SourceError::Dns {
                    host: endpoint.host.clone(),
                    detail: "no addresses".to_owned(),
                })
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(SourceError::Dns {
            host: endpoint.host.clone(),
            detail: e.to_string(),
        }),
        Err(_) => Err(SourceError::Dns {
            host: endpoint.host.clone(),
            detail: format!("no answer within {} s", timeout.as_secs()),
        }),
    }
}

/// Open a TLS-protected (or, when allowed, plain) connection without binding.
pub(crate) async fn open_with(
    config: &SourceConfig,
    tls_config: Arc<rustls::ClientConfig>,
) -> Result<(Ldap, Endpoint), SourceError> {
    let endpoint = config.endpoint()?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(config.connect_timeout())
        .set_config(tls_config)
        .set_starttls(endpoint.transport == Transport::StartTls);
    #[cfg(feature = "kerberos")]
    if let (Some(kerberos), Transport::Plain) = (&config.kerberos, endpoint.transport) {
        // Kerberos on plain LDAP: bound and sealed here, below ldap3 (see `sealing.rs`).
        let creds = crate::kerberos::acquire(kerberos).await?;
        let timeout = config.connect_timeout();
        let tcp = match config.pinned_addr {
            Some(addr) => connect_to(addr, timeout).await,
            None => {
                let addrs = resolve(&endpoint, timeout).await?;
                connect_any(&addrs, timeout).await
            }
        }
        .map_err(|e| open_error(e, &endpoint, config))?;
        let tcp = tokio::net::TcpStream::from_std(tcp)
            .map_err(|source| open_error(LdapError::Io { source }, &endpoint, config))?;
        let sealed = crate::sealing::open(tcp, &endpoint.host, &creds, timeout).await?;
        let settings = settings.set_std_stream(StdStream::Unix(sealed.local));
        let (conn, ldap) = LdapConnAsync::with_settings(settings, "ldapi://")
            .await
            .map_err(|e| open_error(e, &endpoint, config))?;
        drive(conn, endpoint.host.clone());
        return Ok((ldap, endpoint));
    }
    match config.pinned_addr {
        // A cycle pinned to one address of the name (round robin, several DCs): connect
        // there, and let ldap3 check the certificate against the name in the URL.
        Some(addr) => {
            let stream = connect_to(addr, config.connect_timeout())
                .await
                .map_err(|e| open_error(e, &endpoint, config))?;
            settings = settings.set_std_stream(StdStream::Tcp(stream));
        }
        None => {
            resolve(&endpoint, config.connect_timeout()).await?;
        }
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, config.current_url())
        .await
        .map_err(|e| open_error(e, &endpoint, config))?;
    drive(conn, endpoint.host.clone());
    Ok((ldap, endpoint))
}

/// Run the connection's task. ldap3 parses the server's messages in this task and panics on
/// some malformed ones (an unknown protocol-op tag, an LDAPResult without its result code).
/// The panic stays in this task: the connection closes, the operation waiting on it ends in
/// an error, and the reason is logged here in a sentence.
fn drive(conn: LdapConnAsync, host: String) {
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "LDAP connection ended");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = driver.await
            && e.is_panic()
        {
            tracing::warn!(
                %host,
                "{host} sent an LDAP message the LDAP library could not parse; the connection was closed and the operation on it fails (a broken or hostile server, or something between us rewriting the traffic)"
            );
        }
    });
}

/// A TCP connection to one address, within the connect timeout.
async fn connect_to(addr: SocketAddr, timeout: Duration) -> Result<std::net::TcpStream, LdapError> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream.into_std()?),
        Ok(Err(source)) => Err(LdapError::Io { source }),
        Err(_) => Err(LdapError::Io {
            source: std::io::Error::from(std::io::ErrorKind::TimedOut),
        }),
    }
}

/// A TCP connection to the first of `addrs` that answers.
#[cfg(feature = "kerberos")]
async fn connect_any(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<std::net::TcpStream, LdapError> {
    let mut last = LdapError::Io {
        source: std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
    };
    for addr in addrs {
        match connect_to(*addr, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connect and bind.
pub(crate) async fn connect(config: &SourceConfig) -> Result<Connection, SourceError> {
    let tls_config = tls::client_config(config)?;
    let (ldap, endpoint) = open_with(config, tls_config).await?;
    let mut conn = Connection {
        ldap,
        endpoint,
        op_timeout: config.operation_timeout(),
    };
    bind(&mut conn, config).await?;
    Ok(conn)
}

/// Simple bind with the configured name and password (or the Kerberos bind when
/// `[source.kerberos]` is set).
pub(crate) async fn bind(conn: &mut Connection, config: &SourceConfig) -> Result<(), SourceError> {
    #[cfg(feature = "kerberos")]
    if let Some(kerberos) = &config.kerberos {
        let protection = crate::kerberos::bind(conn, config, kerberos).await?;
        tracing::debug!(host = %conn.endpoint.host, ?protection, "Kerberos bind");
        return Ok(());
    }
    let host = conn.endpoint.host.clone();
    let mut ldap = conn.ldap.clone();
    ldap.with_timeout(config.connect_timeout());
    let result = ldap
        .simple_bind(config.bind.trim(), config.password.expose_secret())
        .await
        .map_err(|e| op_error(e, &host, "the bind", config.connect_timeout()))?;
    if result.rc == 0 {
        Ok(())
    } else {
        Err(SourceError::Bind(bind_error::explain(
            result.rc,
            &result.text,
            config.bind.trim(),
            &host,
        )))
    }
}

fn what(endpoint: &Endpoint) -> &'static str {
    match endpoint.transport {
        Transport::Ldaps => "LDAPS",
        Transport::StartTls | Transport::Plain => "LDAP",
    }
}

/// Classify an error from opening the connection.
pub(crate) fn open_error(
    error: LdapError,
    endpoint: &Endpoint,
    config: &SourceConfig,
) -> SourceError {
    let host = endpoint.host.clone();
    let port = endpoint.port;
    let tls_err = |reason: String| SourceError::Tls {
        host: host.clone(),
        port,
        reason,
    };
    match error {
        LdapError::Io { source } => {
            if let Some(rustls_error) = tls::rustls_error_in(&source) {
                return tls_err(tls::explain_tls_error(rustls_error, &host, config));
            }
            match source.kind() {
                std::io::ErrorKind::ConnectionRefused => SourceError::ConnectionRefused {
                    host,
                    port,
                    what: what(endpoint),
                },
                std::io::ErrorKind::TimedOut => SourceError::ConnectTimeout {
                    host,
                    port,
                    secs: config.connect_timeout().as_secs(),
                },
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    if endpoint.transport != Transport::Plain =>
                {
                    tls_err(format!(
                        "the server closed the connection during the TLS handshake ({source}); check that port {port} serves {}",
                        what(endpoint)
                    ))
                }
                _ => SourceError::Network {
                    host,
                    operation: "connecting".to_owned(),
                    detail: source.to_string(),
                },
            }
        }
        LdapError::Timeout { .. } => SourceError::ConnectTimeout {
            host,
            port,
            secs: config.connect_timeout().as_secs(),
        },
        LdapError::Rustls { source } => tls_err(tls::explain_tls_error(&source, &host, config)),
        LdapError::DNSName { .. } => SourceError::Config {
            message: format!("{host} cannot be used as a TLS server name"),
        },
        LdapError::LdapResult { result } => tls_err(format!(
            "the DC refused StartTLS (result {}: {}); it may have no certificate for LDAP; try ldaps://",
            result.rc,
            result.text.trim_matches('\0')
        )),
        LdapError::UrlParsing { source } => SourceError::Config {
            message: format!(
                "url {:?} is not an LDAP URL ({source})",
                config.current_url()
            ),
        },
        other => SourceError::Network {
            host,
            operation: "connecting".to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Classify an error from an operation on an open connection.
pub(crate) fn op_error(
    error: LdapError,
    host: &str,
    operation: &str,
    timeout: Duration,
) -> SourceError {
    match error {
        LdapError::Timeout { .. } => SourceError::OperationTimeout {
            host: host.to_owned(),
            operation: operation.to_owned(),
            secs: timeout.as_secs(),
        },
        LdapError::FilterParsing => SourceError::Config {
            message: format!("the filter of {operation} is not a valid LDAP filter"),
        },
        other => SourceError::Network {
            host: host.to_owned(),
            operation: operation.to_owned(),
            detail: other.to_string(),
        },
    }
}
