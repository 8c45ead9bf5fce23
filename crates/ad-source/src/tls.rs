//! TLS: CA files in PEM or DER, the rustls client configuration (ring provider only), and
//! handshake failures in words.
//!
//! One crypto provider for the whole workspace: the configuration is always built with
//! [`rustls::crypto::ring::default_provider`] and handed to ldap3 explicitly, so ldap3 never
//! builds its own and the process-wide default provider is never consulted.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::SourceConfig;
use crate::error::SourceError;

/// Read CA certificates from a file: PEM (one or more `BEGIN CERTIFICATE` blocks) or a
/// single DER certificate (the `.cer` Windows exports and the Qualys form asks for).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SourceError> {
    let err = |reason: String| SourceError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        err(format!(
            "cannot be read ({e}); check the path and that the connector may read it"
        ))
    })?;
    parse_ca_bytes(&bytes).map_err(err)
}

/// Parse PEM or DER certificate bytes (see [`load_ca_file`]).
pub fn parse_ca_bytes(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let is_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    let certs: Vec<CertificateDer<'static>> = if is_pem {
        let mut reader = bytes;
        rustls_pemfile::certs(&mut reader)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("is PEM but could not be read ({e})"))?
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err(
            "contains no CERTIFICATE block; export the CA certificate (not a key or a request) as PEM or DER"
                .to_owned(),
        );
    }
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "holds something that is not an X.509 CA certificate ({e}); export the CA certificate as Base-64 (PEM) or DER .cer"
            )
        })?;
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for a source: the configured CA file, else the system roots;
/// or no verification at all when `insecure_skip_tls_verify` is set (with a warning).
pub fn client_config(config: &SourceConfig) -> Result<Arc<ClientConfig>, SourceError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Internal(format!("rustls protocol versions: {e}")))?;
    if config.insecure_skip_tls_verify {
        tracing::warn!(
            url = %config.url,
            "insecure_skip_tls_verify is set: the DC's certificate is NOT checked, so the bind password can be intercepted; configure ca_file instead"
        );
        return Ok(Arc::new(insecure_config()));
    }
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in load_ca_file(path)? {
                roots.add(cert).map_err(|e| SourceError::CaFile {
                    path: path.clone(),
                    reason: format!("is not a usable CA certificate ({e})"),
                })?;
            }
        }
        None => roots = system_roots().clone(),
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// The system's trusted roots, read once per process: parsing the system store costs
/// milliseconds, and a sync opens several connections (reconnects, re-reads). A root added
/// to the system store is seen after a restart.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // Unusable system certificates are skipped, as every TLS client does.
            let _ = roots.add(cert);
        }
        roots
    })
}

/// A configuration that accepts any certificate (for `insecure_skip_tls_verify` and for the
/// probe's look at a certificate that failed verification).
pub(crate) fn insecure_config() -> ClientConfig {
    let provider = provider();
    let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
    match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(builder) => builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
        // The ring provider supports the default versions; keep a usable value regardless.
        Err(_) => ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

    // A tiny self-signed CA (EC P-256), PEM and the same certificate in DER.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUBYJ8Hy6g0bqnCG7o7tOFY0dvKM0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVGVzdCBDQSAxMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw
MDAwMFowFDESMBAGA1UEAwwJVGVzdCBDQSAxMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEuQ0k0bnZ3x8oJ2s3uS1V1JtYRrvNtmwdzRVk1Kq0G6m2Ue8oqD4+Zg7v
Yl7e7t6cYyPp2XrPpQ0oK0c2a3c1o6NTMFEwHQYDVR0OBBYEFK3n6c3y3b9y2kqZ
-----END CERTIFICATE-----
";

    #[test]
    fn garbage_is_refused_with_a_sentence() {
        let err = parse_ca_bytes(b"hello").unwrap_err();
        assert!(err.contains("not an X.509"), "{err}");
        let err = parse_ca_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        // A truncated PEM certificate is PEM but not a certificate.
        assert!(parse_ca_bytes(PEM.as_bytes()).is_err());
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_ca_file(Path::new("/nonexistent/ca.cer"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/ca.cer") && err.contains("cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn builds_configs_with_ring() {
        let mut c = SourceConfig::new("ldaps://x", "b", secrecy::SecretString::from("p"));
        assert!(client_config(&c).is_ok());
        c.insecure_skip_tls_verify = true;
        assert!(client_config(&c).is_ok());
    }
}
