//! TLS to the DC: the rustls configuration from [`SourceConfig`] (CA loading, the system
//! roots and the insecure verifier live in the shared `tls-trust` crate, so `ca_file` means
//! the same here as for the platforms: it replaces the system roots), and handshake failures
//! in words.
//!
//! One crypto provider for the whole workspace: the configuration is always built with the
//! `ring` provider and handed to ldap3 explicitly, so ldap3 never builds its own and the
//! process-wide default provider is never consulted.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use tls_trust::{Trust, TrustError};

use crate::config::SourceConfig;
use crate::error::SourceError;

fn source_error(error: TrustError) -> SourceError {
    match error {
        TrustError::CaFile { path, reason } => SourceError::CaFile { path, reason },
        TrustError::Internal(detail) => SourceError::Internal(detail),
    }
}

/// Read CA certificates from a file: PEM (one or more `BEGIN CERTIFICATE` blocks) or a
/// single DER certificate (the `.cer` Windows exports and the Qualys form asks for).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SourceError> {
    tls_trust::load_ca_file(path).map_err(source_error)
}

/// The rustls configuration for a source: the configured CA file (replacing the system
/// roots), else the system roots; or no verification at all when `insecure_skip_tls_verify`
/// is set (with a warning).
pub fn client_config(config: &SourceConfig) -> Result<Arc<ClientConfig>, SourceError> {
    if config.insecure_skip_tls_verify {
        tracing::warn!(
            url = %config.url,
            "insecure_skip_tls_verify is set: the DC's certificate is NOT checked, so the bind password can be intercepted; configure ca_file instead"
        );
    }
    let trust = Trust {
        ca_file: config.ca_file.clone(),
        insecure_skip_verify: config.insecure_skip_tls_verify,
    };
    tls_trust::client_config(&trust)
        .map(Arc::new)
        .map_err(source_error)
}

/// A configuration that accepts any certificate, for the probe's look at a certificate that
/// failed verification.
pub(crate) fn insecure_config() -> ClientConfig {
    tls_trust::insecure_config()
}

/// A TLS failure in words, with what to do.
pub(crate) fn explain_tls_error(
    error: &rustls::Error,
    host: &str,
    config: &SourceConfig,
) -> String {
    use rustls::CertificateError as C;
    let trust = match &config.ca_file {
        Some(path) => format!("the configured CA file {}", path.display()),
        None => {
            "the system's trusted roots (set ca_file to the domain's CA certificate)".to_owned()
        }
    };
    match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the DC's certificate is not valid for the name {host} (certificate name mismatch); use the host name the certificate was issued for (its subjectAltName), usually the DC's FQDN, in url"
            ),
            C::UnknownIssuer => format!(
                "the DC's certificate is signed by a CA that is not trusted (unknown CA); it was checked against {trust}"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                "the DC's certificate has expired; renew it on the DC".to_owned()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the DC's certificate is not valid yet; check the clocks of the DC and of this machine".to_owned()
            }
            C::Revoked => "the DC's certificate has been revoked".to_owned(),
            C::BadSignature | C::BadEncoding => format!(
                "the DC's certificate is malformed or its signature does not verify ({cert:?})"
            ),
            other => format!(
                "the DC's certificate was rejected ({other:?}); it was checked against {trust}"
            ),
        },
        rustls::Error::AlertReceived(alert) => format!(
            "the DC aborted the handshake (alert {alert:?}); check that it has a certificate for LDAPS and supports TLS 1.2 or 1.3"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the peer did not speak TLS; is the port an LDAPS port (636) rather than plain LDAP (389)?".to_owned()
        }
        other => format!("TLS handshake error: {other}"),
    }
}

/// Find a rustls error inside an I/O error chain.
pub(crate) fn rustls_error_in(error: &std::io::Error) -> Option<&rustls::Error> {
    let inner = error.get_ref()?;
    if let Some(e) = inner.downcast_ref::<rustls::Error>() {
        return Some(e);
    }
    let mut source = inner.source();
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<rustls::Error>() {
            return Some(e);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn tls_failures_are_sentences() {
        let mut config = SourceConfig::new("ldaps://10.0.0.5", "svc@corp", SecretString::from("p"));
        let mismatch = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        let text = explain_tls_error(&mismatch, "10.0.0.5", &config);
        assert!(text.contains("not valid for the name 10.0.0.5"), "{text}");
        assert!(text.contains("subjectAltName"), "{text}");

        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let text = explain_tls_error(&unknown, "dc1", &config);
        assert!(
            text.contains("not trusted") && text.contains("set ca_file"),
            "{text}"
        );
        config.ca_file = Some("/etc/ad-connector/corp-ca.cer".into());
        let text = explain_tls_error(&unknown, "dc1", &config);
        assert!(text.contains("/etc/ad-connector/corp-ca.cer"), "{text}");

        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(explain_tls_error(&expired, "dc1", &config).contains("expired"));
    }

    #[test]
    fn builds_configs_with_ring() {
        let mut c = SourceConfig::new("ldaps://x", "b", secrecy::SecretString::from("p"));
        assert!(client_config(&c).is_ok());
        c.insecure_skip_tls_verify = true;
        assert!(client_config(&c).is_ok());
    }
}
