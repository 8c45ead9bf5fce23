//! One TLS trust setup for both sides of the connector: the domain controller (`ad-source`)
//! and the platforms (`asset-sink`).
//!
//! The main design choice is that **`ca_file` means the same thing everywhere: it replaces
//! the system's trusted roots**. With `ca_file` set, exactly the certificates in that file
//! are trusted, nothing else (as `curl --cacert` does); without it, the system's roots are
//! (read once per process, via `rustls-native-certs`). A DC signed by the corporate CA is then
//! trusted only through that CA, and a TLS-inspecting proxy's CA is all the platforms' side
//! needs. To trust the system roots *and* a private CA, put both in one bundle file.
//!
//! A CA file may be PEM (one or more `BEGIN CERTIFICATE` blocks: a chain or a bundle) or a
//! single DER certificate (the `.cer` Windows exports and the Qualys form asks for); anything
//! else is refused with a sentence naming the file.
//!
//! Every configuration is built with the `ring` provider and handed to the client
//! explicitly, so no process-wide default provider is ever consulted. Turning verification off
//! ([`Trust::insecure_skip_verify`]) is explicit; the caller logs the loud warning, in its
//! own words, since only it knows what is exposed (a bind password, an API key).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a trust setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA file is unreadable or holds no usable CA certificate.
    #[error("CA file {path} {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what to do, as the end of a sentence.
        reason: String,
    },
    /// rustls refused the protocol versions (never expected with the ring provider).
    #[error("the TLS library could not be set up: {0}")]
    Internal(String),
}

/// What to trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// A CA file (PEM or DER) whose certificates replace the system roots; `None`: the
    /// system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (still checking handshake signatures). Lab use only.
    pub insecure_skip_verify: bool,
}

/// The crypto provider of the whole workspace: ring, never aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `trust` (no ALPN: the caller adds its own).
pub fn client_config(trust: &Trust) -> Result<ClientConfig, TrustError> {
    if trust.insecure_skip_verify {
        return Ok(insecure_config());
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Internal(format!("rustls protocol versions: {e}")))?;
    Ok(builder
        .with_root_certificates(roots(trust.ca_file.as_deref())?)
        .with_no_client_auth())
}

/// The roots for `ca_file` (its certificates only), or the system's when `None`.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TrustError> {
    let Some(path) = ca_file else {
        let roots = system_roots().clone();
        if roots.is_empty() {
            tracing::warn!(
                "the system trust store is empty (install ca-certificates) and no ca_file is set: every TLS connection will fail verification"
            );
        }
        return Ok(roots);
    };
    let mut roots = RootCertStore::empty();
    for cert in load_ca_file(path)? {
        roots.add(cert).map_err(|e| TrustError::CaFile {
            path: path.to_owned(),
            reason: format!("holds a certificate that is not usable as a CA ({e})"),
        })?;
    }
    Ok(roots)
}

/// Read CA certificates from a file: PEM (one or more `BEGIN CERTIFICATE` blocks) or a
/// single DER certificate.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let bytes = std::fs::read(path).map_err(|e| TrustError::CaFile {
        path: path.to_owned(),
        reason: format!("cannot be read ({e}); check the path and that the connector may read it"),
    })?;
    parse_ca_bytes(&bytes).map_err(|reason| TrustError::CaFile {
        path: path.to_owned(),
        reason,
    })
}

/// Parse PEM or DER certificate bytes (see [`load_ca_file`]); the error is the end of a
/// sentence that starts with the file's name.
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

/// The system's trusted roots, read once per process: parsing the system store costs
/// milliseconds and a sync opens several connections. A root added to the system store is
/// seen after a restart.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::debug!(%error, "skipped part of the system trust store");
        }
        let mut roots = RootCertStore::empty();
        // Unusable system certificates are skipped, as every TLS client does.
        let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "system trust store loaded");
        roots
    })
}

/// The DER bytes of the system's trusted roots that parse as CA certificates (for tests that
/// need a real CA certificate without generating one).
pub fn system_roots_der() -> Vec<Vec<u8>> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .filter(|c| parse_ca_bytes(c.as_ref()).is_ok())
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// A configuration that accepts any certificate, still checking handshake signatures: for
/// `insecure_skip_tls_verify`, and for a probe's look at a certificate that failed
/// verification.
pub fn insecure_config() -> ClientConfig {
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

/// Accepts any certificate; verifies handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

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

#[cfg(test)]
mod tests {
    use super::*;

    // A truncated PEM certificate: PEM, but not a certificate.
    const TRUNCATED_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUBYJ8Hy6g0bqnCG7o7tOFY0dvKM0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJVGVzdCBDQSAxMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw
-----END CERTIFICATE-----
";

    #[test]
    fn garbage_is_refused_with_a_sentence() {
        let err = parse_ca_bytes(b"hello").unwrap_err();
        assert!(err.contains("not an X.509"), "{err}");
        let err = parse_ca_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(err.contains("no CERTIFICATE"), "{err}");
        assert!(parse_ca_bytes(TRUNCATED_PEM.as_bytes()).is_err());
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

    /// The same CA as PEM and as DER loads to the same certificate, and a CA file replaces
    /// the system roots: its store holds exactly its certificates. (The CA is one of this
    /// machine's system roots, so the test needs ca-certificates, which CI installs.)
    #[test]
    fn pem_and_der_load_alike_and_replace_the_system_roots() {
        use base64::Engine;
        let cert = rustls_native_certs::load_native_certs()
            .certs
            .into_iter()
            .find(|c| parse_ca_bytes(c.as_ref()).is_ok())
            .expect("a system root certificate (install ca-certificates)");
        let dir = tempfile::tempdir().unwrap();
        let der_path = dir.path().join("ca.cer");
        std::fs::write(&der_path, cert.as_ref()).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(
            &pem_path,
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            ),
        )
        .unwrap();
        let from_der = load_ca_file(&der_path).unwrap();
        let from_pem = load_ca_file(&pem_path).unwrap();
        assert_eq!(from_der, from_pem);
        assert!(
            system_roots().len() > 1,
            "this machine has several system roots"
        );
        for path in [&der_path, &pem_path] {
            assert_eq!(
                roots(Some(path)).unwrap().len(),
                1,
                "the CA file replaces the system roots"
            );
        }
    }

    #[test]
    fn builds_verified_and_insecure_configs_with_ring() {
        assert!(client_config(&Trust::default()).is_ok());
        assert!(
            client_config(&Trust {
                ca_file: None,
                insecure_skip_verify: true
            })
            .is_ok()
        );
        let err = client_config(&Trust {
            ca_file: Some("/nonexistent/ca.pem".into()),
            insecure_skip_verify: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
