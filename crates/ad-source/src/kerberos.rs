//! Kerberos (SASL GSSAPI) bind: the `[source.kerberos]` table, the failures as sentences, and
//! (with the `kerberos` cargo feature) getting a ticket from a keytab into a private
//! credential cache and binding with it.
//!
//! # How it works
//!
//! With `keytab_file` + `principal`, the connector never touches the user's default credential
//! cache: it asks MIT krb5 for initiator credentials from a *credential store*
//! `{client_keytab = FILE:<keytab>, ccache = MEMORY:ad-connector-…}` (`gss_acquire_cred_from`,
//! the one FFI call, in the `gss-cred-store` crate). krb5 then obtains the initial ticket from
//! the keytab and renews it by itself before it expires; each (re)connect re-acquires from the
//! same store, so a process running for months always binds with a fresh ticket. Without a
//! keytab, an existing cache is used: `ccache` if set, else the default (`KRB5CCNAME`), kept
//! fresh by something else (k5start, a cron `kinit -k`, gssproxy).
//!
//! The SPN is `ldap/<host of url>@<realm of the principal>`: the URL must name the DC by its
//! DNS name (an IP address has no SPN), and naming the realm makes the bind independent of
//! `default_realm` in krb5.conf. The krb5 configuration itself (KDCs, `dns_lookup_kdc`) comes
//! from `/etc/krb5.conf`, or the file named by `KRB5_CONFIG` in the connector's environment.
//!
//! On TLS (LDAPS, StartTLS) ldap3 sends the `tls-server-end-point` channel-binding token (RFC
//! 5929: a hash of the DC's certificate) in the GSSAPI exchange, which AD's "LDAP channel
//! binding = Always" demands; on plain `ldap://` it negotiates SASL privacy: every LDAP message
//! after the bind is encrypted with the Kerberos session key ("sealing"), which is why plain
//! LDAP is allowed without `allow_plain_ldap` when Kerberos is configured.
//!
//! GSSAPI calls block (files, DNS, the KDC): they run in `spawn_blocking`.

#![cfg_attr(not(feature = "kerberos"), allow(dead_code))]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[source.kerberos]`: bind with Kerberos (SASL GSSAPI) instead of a password.
///
/// ```toml
/// [source.kerberos]
/// keytab_file = "/etc/ad-connector/svc-sync.keytab"
/// principal = "svc-sync@CORP.EXAMPLE.COM"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosConfig {
    /// The service account's keytab (its keys, as exported by `ktpass`, `msktutil` or
    /// `samba-tool domain exportkeytab`). Must be readable only by the connector's user
    /// (mode 600): a keytab is as good as the password. The connector gets and renews its
    /// own ticket from it, in a private cache. When absent, an existing credential cache is
    /// used (see `ccache`).
    #[serde(default)]
    pub keytab_file: Option<PathBuf>,
    /// The Kerberos principal to authenticate as, with its realm in capitals:
    /// `svc-sync@CORP.EXAMPLE.COM`. Required with `keytab_file`; without it, the principal
    /// of the credential cache.
    #[serde(default)]
    pub principal: Option<String>,
    /// The credential cache (`FILE:/path`, `KEYRING:…`, `DIR:…`). With `keytab_file`: where
    /// the tickets from the keytab are kept (default: a private in-memory cache of the
    /// process). Without `keytab_file`: an existing cache holding a valid ticket, kept fresh
    /// by something else (default: `KRB5CCNAME`, else the system default cache).
    #[serde(default)]
    pub ccache: Option<String>,
}

impl KerberosConfig {
    /// Check the table; the error is a sentence naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(keytab) = &self.keytab_file {
            if keytab.as_os_str().is_empty() {
                return Err("kerberos.keytab_file is empty; give the path of the service account's keytab, or remove it to use an existing credential cache".to_owned());
            }
            if self
                .principal
                .as_deref()
                .is_none_or(|p| p.trim().is_empty())
            {
                return Err(format!(
                    "kerberos.keytab_file {} needs kerberos.principal: the principal whose keys the keytab holds, e.g. svc-sync@CORP.EXAMPLE.COM (klist -k {} lists them)",
                    keytab.display(),
                    keytab.display()
                ));
            }
        }
        if let Some(principal) = &self.principal {
            let p = principal.trim();
            match p.rsplit_once('@') {
                Some((name, realm)) if !name.is_empty() && !realm.is_empty() => {
                    if realm != realm.to_ascii_uppercase() {
                        return Err(format!(
                            "kerberos.principal {p:?}: the realm is written in capitals ({name}@{}); Active Directory realms are the DNS domain in upper case",
                            realm.to_ascii_uppercase()
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "kerberos.principal {p:?} has no realm; write it as name@REALM, e.g. svc-sync@CORP.EXAMPLE.COM"
                    ));
                }
            }
        }
        if self.ccache.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("kerberos.ccache is empty; name a credential cache (FILE:/path) or remove the setting".to_owned());
        }
        Ok(())
    }

    /// The principal as configured (trimmed), if any.
    pub fn principal(&self) -> Option<&str> {
        self.principal
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

/// What kind of Kerberos failure happened: lets callers (and tests) tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KerberosFailureKind {
    /// The build has no Kerberos support.
    NotCompiledIn,
    /// The keytab file does not exist.
    KeytabMissing,
    /// The keytab cannot be read, or is not a keytab.
    KeytabUnreadable,
    /// The keytab is readable by group or others.
    KeytabPermissions,
    /// The keytab holds no key for the principal.
    PrincipalNotInKeytab,
    /// The KDC does not know the principal.
    PrincipalUnknown,
    /// The key in the keytab is not the account's current key (password changed, wrong kvno).
    WrongKey,
    /// No KDC of the realm answered (or none is configured).
    KdcUnreachable,
    /// This machine's clock and the KDC's differ by more than the allowed skew.
    ClockSkew,
    /// The KDC has no service principal `ldap/<host>`: the URL does not name the DC as its
    /// account knows itself.
    SpnNotFound,
    /// The ticket expired (in an externally managed cache, nobody renewed it).
    TicketExpired,
    /// No ticket in the credential cache (no keytab configured).
    NoCredentials,
    /// The DC rejected the TLS channel-binding token (AD `80090346` SEC_E_BAD_BINDINGS).
    ChannelBindingRejected,
    /// The DC refused the Kerberos bind for another reason.
    BindRefused,
    /// Anything else the GSSAPI library reported.
    Other,
}

/// A Kerberos failure: its kind and the sentence (what failed, what to do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KerberosFailure {
    /// The kind.
    pub kind: KerberosFailureKind,
    /// The sentence shown to the administrator.
    pub sentence: String,
}

impl std::fmt::Display for KerberosFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sentence)
    }
}

impl KerberosFailure {
    fn new(kind: KerberosFailureKind, sentence: String) -> Self {
        KerberosFailure { kind, sentence }
    }
}

/// The sentence for a configuration with `[source.kerberos]` in a build without the feature.
pub(crate) const NOT_COMPILED_IN: &str = "[source.kerberos] is set, but this build has no Kerberos support; build with --features kerberos (cargo build -p ad-connector --features kerberos, which needs libkrb5-dev), or bind with bind and password";

/// What the failing step was doing, for the sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Getting the initial ticket (from the keytab or the cache).
    InitialTicket,
    /// Getting the service ticket for `ldap/<host>` and the GSSAPI exchange of the bind.
    ServiceTicket,
}

/// Facts for the sentences.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    /// The principal (or a description when unknown).
    pub principal: &'a str,
    /// `keytab /path` or `credential cache X`.
    pub source: &'a str,
    /// The DC host of the URL.
    pub host: &'a str,
    /// The SPN asked for.
    pub spn: &'a str,
}

/// Turn a GSSAPI / krb5 status text (MIT krb5's words, major and minor) into a sentence.
pub(crate) fn explain(stage: Stage, status: &str, cx: &Context<'_>) -> KerberosFailure {
    use KerberosFailureKind as K;
    let s = status.to_ascii_lowercase();
    let has = |needle: &str| s.contains(needle);
    let Context {
        principal,
        source,
        host,
        spn,
    } = cx;
    let status = status.trim();
    let (kind, sentence) = if has("80090346") || has("bad_bindings") || has("channel binding") {
        (
            K::ChannelBindingRejected,
            format!(
                "The domain controller {host} rejected the TLS channel-binding token of the Kerberos bind (80090346 SEC_E_BAD_BINDINGS): the certificate the connector saw is not the one {host} presented. Something between them terminates TLS (a load balancer, a TLS-inspecting proxy): connect to the DC directly ({status})."
            ),
        )
    } else if has("no key table entry found") || has("no suitable keys") {
        (
            K::PrincipalNotInKeytab,
            format!(
                "The {source} holds no key for {principal}. List what it holds with `klist -k -e`, and set kerberos.principal to that principal or export a keytab for it ({status})."
            ),
        )
    } else if has("key table file") && has("not found") {
        (
            K::KeytabMissing,
            format!(
                "The {source} does not exist; export the service account's keytab there or fix kerberos.keytab_file ({status})."
            ),
        )
    } else if has("client") && has("not found in kerberos database") {
        (
            K::PrincipalUnknown,
            format!(
                "The KDC does not know the principal {principal}: check its spelling and realm (svc-sync@CORP.EXAMPLE.COM, realm in capitals), and that the account exists and is enabled ({status})."
            ),
        )
    } else if (has("server") && has("not found in kerberos database")) || has("s_principal_unknown")
    {
        (
            K::SpnNotFound,
            format!(
                "The KDC has no service principal {spn}: the url must name the domain controller by the DNS name its computer account has an SPN for (usually its full name, e.g. dc1.corp.example.com, as in its dNSHostName), not an alias or a load-balancer name ({status})."
            ),
        )
    } else if has("clock skew") {
        (
            K::ClockSkew,
            format!(
                "The clocks of this machine and the domain controller differ by more than Kerberos allows (5 minutes by default): synchronise this machine's time with the domain (NTP/chrony against a DC) ({status})."
            ),
        )
    } else if has("preauthentication failed")
        || has("password incorrect")
        || has("integrity check failed")
        || has("key version")
        || has("kvno")
        || has("wrong key")
    {
        (
            K::WrongKey,
            format!(
                "The KDC rejected the key of {principal} from the {source}: the keytab is out of date (the account's password was changed, so its key version number (kvno) moved on) or holds a wrong key. Export a new keytab for {principal} ({status})."
            ),
        )
    } else if has("cannot contact any kdc")
        || has("cannot find kdc")
        || has("unable to reach any kdc")
        || has("cannot resolve network address for kdc")
        || has("kdc unreachable")
    {
        (
            K::KdcUnreachable,
            format!(
                "No Kerberos KDC of the realm of {principal} answered: check that krb5.conf (/etc/krb5.conf, or the file in KRB5_CONFIG) lists the realm's KDCs or has dns_lookup_kdc = true with working SRV records, and that port 88 (TCP and UDP) of the domain controllers is reachable ({status})."
            ),
        )
    } else if has("expired") {
        (
            K::TicketExpired,
            format!(
                "The Kerberos ticket of {principal} in the {source} has expired: renew it (kinit -k), or configure kerberos.keytab_file so the connector renews its own ticket ({status})."
            ),
        )
    } else if has("no credentials cache found")
        || has("no kerberos credentials available")
        || has("no credentials were supplied")
        || has("matching credential not found")
    {
        (
            K::NoCredentials,
            format!(
                "There is no Kerberos ticket for {principal} in the {source}: get one (kinit -k -t <keytab> <principal>), or configure kerberos.keytab_file and kerberos.principal so the connector gets its own ({status})."
            ),
        )
    } else {
        let step = match stage {
            Stage::InitialTicket => format!("getting a Kerberos ticket for {principal}"),
            Stage::ServiceTicket => format!("the Kerberos bind to {host} ({spn})"),
        };
        (
            K::Other,
            format!("{step} failed: {status}. Check krb5.conf, the keytab and the account."),
        )
    };
    // A private cache filled only from the keytab: "no credentials" means the keytab has no
    // key for the principal (a missing or unreadable keytab is caught before).
    if kind == K::NoCredentials && source.starts_with("keytab ") {
        return KerberosFailure::new(
            K::PrincipalNotInKeytab,
            format!(
                "The {source} holds no usable key for {principal}. List what it holds with `klist -k -e`, and set kerberos.principal to that principal or export a keytab for it ({status})."
            ),
        );
    }
    KerberosFailure::new(kind, sentence)
}

/// Refuse a keytab that is missing, unreadable, not a keytab, or readable by group/others.
pub(crate) fn check_keytab(path: &std::path::Path) -> Result<(), KerberosFailure> {
    use KerberosFailureKind as K;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KerberosFailure::new(
                K::KeytabMissing,
                format!(
                    "The keytab {shown} (kerberos.keytab_file) does not exist; export the service account's keys there (ktpass on Windows, msktutil, or samba-tool domain exportkeytab) or fix the path."
                ),
            ));
        }
        Err(e) => {
            return Err(KerberosFailure::new(
                K::KeytabUnreadable,
                format!(
                    "The keytab {shown} (kerberos.keytab_file) cannot be read ({e}); make it readable by the connector's user only: chown it to that user, chmod 600."
                ),
            ));
        }
    };
    if !meta.is_file() {
        return Err(KerberosFailure::new(
            K::KeytabUnreadable,
            format!("The keytab {shown} (kerberos.keytab_file) is not a regular file."),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KerberosFailure::new(
                K::KeytabPermissions,
                format!(
                    "The keytab {shown} is readable by other users (mode {mode:03o}); a keytab is as good as the account's password, so the connector refuses it: chmod 600 {shown} (owned by the connector's user)."
                ),
            ));
        }
    }
    let mut head = [0u8; 2];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut head)
    });
    match read {
        Ok(()) if head == [0x05, 0x02] || head == [0x05, 0x01] => Ok(()),
        Ok(()) => Err(KerberosFailure::new(
            K::KeytabUnreadable,
            format!(
                "The file {shown} (kerberos.keytab_file) is not a Kerberos keytab (it does not start with the keytab version bytes 05 02); export the keytab again."
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(KerberosFailure::new(
            K::KeytabUnreadable,
            format!(
                "The keytab {shown} (kerberos.keytab_file) is empty or truncated; export it again."
            ),
        )),
        Err(e) => Err(KerberosFailure::new(
            K::KeytabUnreadable,
            format!(
                "The keytab {shown} (kerberos.keytab_file) cannot be read ({e}); make it readable by the connector's user only: chown it to that user, chmod 600."
            ),
        )),
    }
}

/// Sentence for a non-zero result of the Kerberos bind.
pub(crate) fn explain_bind_result(
    rc: u32,
    diagnostic: &str,
    principal: &str,
    host: &str,
) -> KerberosFailure {
    let text = diagnostic.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if crate::bind_error::data_code(text).as_deref() == Some("80090346")
        || text.contains("80090346")
    {
        let cx = Context {
            principal,
            source: "",
            host,
            spn: "",
        };
        return explain(Stage::ServiceTicket, text, &cx);
    }
    KerberosFailure::new(
        KerberosFailureKind::BindRefused,
        format!(
            "The domain controller {host} refused the Kerberos bind of {principal} (LDAP result {rc}{}). Check that the account is enabled and may log on, and the DC's event log.",
            if text.is_empty() {
                String::new()
            } else {
                format!(": {text}")
            }
        ),
    )
}

#[cfg(feature = "kerberos")]
pub(crate) use gss::*;

#[cfg(feature = "kerberos")]
mod gss {
    use std::time::Duration;

    use gss_cred_store::Cred;

    use super::{Context, KerberosConfig, Stage, check_keytab, explain};
    use crate::config::{SourceConfig, Transport};
    use crate::connection::{Connection, op_error};
    use crate::error::SourceError;

    /// Initiator credentials and what they came from.
    #[derive(Clone)]
    pub(crate) struct Credentials {
        pub(crate) cred: Cred,
        /// `svc-sync@CORP.EXAMPLE.TEST`.
        pub(crate) principal: String,
        /// `keytab /etc/…` or `credential cache …` (for sentences).
        pub(crate) source: String,
        /// The credential cache used.
        pub(crate) ccache: String,
        /// Remaining lifetime of the initial ticket.
        pub(crate) lifetime: Duration,
    }

    // By hand: libgssapi's Debug of a credential asks the library (blocking, the KDC even).
    impl std::fmt::Debug for Credentials {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Credentials")
                .field("principal", &self.principal)
                .field("source", &self.source)
                .field("ccache", &self.ccache)
                .field("lifetime", &self.lifetime)
                .finish_non_exhaustive()
        }
    }

    impl Credentials {
        /// The realm of the principal.
        pub(crate) fn realm(&self) -> Option<&str> {
            self.principal.rsplit_once('@').map(|(_, r)| r)
        }

        /// `ldap/<host>@<REALM>` (and the `server_fqdn` ldap3 wants: the part after `ldap/`).
        pub(crate) fn spn(&self, host: &str) -> String {
            match self.realm() {
                Some(realm) => format!("ldap/{host}@{realm}"),
                None => format!("ldap/{host}"),
            }
        }
    }

    fn private_ccache(keytab: &std::path::Path, principal: &str) -> String {
        use std::hash::{Hash, Hasher};
        // One in-memory cache per (keytab, principal) for the life of the process: reconnects
        // find the ticket there, and krb5 renews it from the keytab in place.
        let mut h = std::hash::DefaultHasher::new();
        keytab.hash(&mut h);
        principal.hash(&mut h);
        format!("MEMORY:ad-connector-{:016x}", h.finish())
    }

    fn join_error(e: tokio::task::JoinError) -> SourceError {
        SourceError::Internal(format!("the Kerberos task ended abnormally: {e}"))
    }

    /// Get initiator credentials (the initial ticket) as configured. Blocking work runs in
    /// `spawn_blocking`.
    pub(crate) async fn acquire(k: &KerberosConfig) -> Result<Credentials, SourceError> {
        let k = k.clone();
        tokio::task::spawn_blocking(move || acquire_blocking(&k))
            .await
            .map_err(join_error)?
    }

    fn acquire_blocking(k: &KerberosConfig) -> Result<Credentials, SourceError> {
        let configured = k.principal().map(str::to_owned);
        let (store, source, ccache): (Vec<(String, String)>, String, String) = match &k.keytab_file
        {
            Some(keytab) => {
                check_keytab(keytab).map_err(SourceError::Kerberos)?;
                let absolute = std::path::absolute(keytab).unwrap_or_else(|_| keytab.clone());
                let principal = configured.clone().unwrap_or_default();
                let ccache = k
                    .ccache
                    .clone()
                    .unwrap_or_else(|| private_ccache(&absolute, &principal));
                (
                    vec![
                        (
                            "client_keytab".to_owned(),
                            format!("FILE:{}", absolute.display()),
                        ),
                        ("ccache".to_owned(), ccache.clone()),
                    ],
                    format!("keytab {}", absolute.display()),
                    ccache,
                )
            }
            None => match &k.ccache {
                Some(cc) => (
                    vec![("ccache".to_owned(), cc.clone())],
                    format!("credential cache {cc}"),
                    cc.clone(),
                ),
                None => {
                    let default = std::env::var("KRB5CCNAME")
                        .unwrap_or_else(|_| "(the default cache)".to_owned());
                    (Vec::new(), format!("credential cache {default}"), default)
                }
            },
        };
        let shown_principal = configured
            .clone()
            .unwrap_or_else(|| "the cache's principal".to_owned());
        let fail = |status: String| {
            SourceError::Kerberos(explain(
                Stage::InitialTicket,
                &status,
                &Context {
                    principal: &shown_principal,
                    source: &source,
                    host: "",
                    spn: "",
                },
            ))
        };
        let pairs: Vec<(&str, &str)> = store
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let cred = gss_cred_store::acquire_initiator_from(configured.as_deref(), &pairs)
            .map_err(|e| fail(e.to_string()))?;
        // MIT krb5 gets the initial ticket from the client keytab lazily: asking for the
        // lifetime resolves the credential now, so a bad keytab fails here, in this step.
        let lifetime = cred.lifetime().map_err(|e| fail(e.to_string()))?;
        if lifetime.is_zero() {
            return Err(fail("the ticket has expired".to_owned()));
        }
        let principal = match cred.name() {
            Ok(name) => name.to_string(),
            Err(_) => shown_principal.clone(),
        };
        Ok(Credentials {
            cred,
            principal,
            source,
            ccache,
            lifetime,
        })
    }

    /// Get the service ticket for `ldap/<host>` (into the cache), as a step of its own.
    pub(crate) async fn service_ticket(
        creds: &Credentials,
        host: &str,
    ) -> Result<String, SourceError> {
        let cred = creds.cred.clone();
        let spn = creds.spn(host);
        let target = spn.clone();
        let result = tokio::task::spawn_blocking(move || {
            cross_krb5::ClientCtx::new_with_cred(cross_krb5::Cred::from(cred), &target, None)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        })
        .await
        .map_err(join_error)?;
        result.map_err(|status| {
            SourceError::Kerberos(explain(
                Stage::ServiceTicket,
                &status,
                &Context {
                    principal: &creds.principal,
                    source: &creds.source,
                    host,
                    spn: &spn,
                },
            ))
        })?;
        Ok(spn)
    }

    /// How the bound session is protected.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Protection {
        /// TLS, with the tls-server-end-point channel-binding token (hash algorithm named).
        ChannelBinding(&'static str),
        /// TLS, but no channel-binding token could be computed (certificate signature
        /// algorithm unknown to ldap3); the OID.
        TlsWithoutChannelBinding(String),
        /// Plain LDAP sealed with the Kerberos session key (SASL privacy).
        Sealing,
    }

    /// The tls-server-end-point hash ldap3 uses for a certificate (RFC 5929 §4.1: the
    /// signature's hash, SHA-256 for MD5/SHA-1), or the signature OID when it has none.
    pub(crate) fn channel_binding_hash(der: &[u8]) -> Result<&'static str, String> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("certificate not parseable: {e}"))?;
        let oid = cert.signature_algorithm.algorithm.to_id_string();
        // The table of ldap3 0.12 (conn.rs, ENDPOINT_ALG).
        match oid.as_str() {
            "1.2.840.113549.1.1.4"
            | "1.2.840.113549.1.1.5"
            | "1.2.840.113549.1.1.11"
            | "1.2.840.10045.4.3.2" => Ok("SHA-256"),
            "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Ok("SHA-384"),
            "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Ok("SHA-512"),
            _ => Err(oid),
        }
    }

    /// Bind with Kerberos on an open connection: initial ticket, then SASL GSSAPI with the
    /// channel-binding token (TLS) or sealing (plain). The GSSAPI steps inside ldap3 block,
    /// so the whole bind runs on a blocking thread.
    pub(crate) async fn bind(
        conn: &mut Connection,
        config: &SourceConfig,
        k: &KerberosConfig,
    ) -> Result<Protection, SourceError> {
        let creds = acquire(k).await?;
        bind_with(conn, config, &creds).await
    }

    /// [`bind`] with credentials already acquired.
    pub(crate) async fn bind_with(
        conn: &mut Connection,
        config: &SourceConfig,
        creds: &Credentials,
    ) -> Result<Protection, SourceError> {
        if conn.endpoint.transport == Transport::Plain {
            // Plain ldap://: bound while opening, with the sealing layer (`sealing.rs`).
            return Ok(Protection::Sealing);
        }
        let host = conn.endpoint.host.clone();
        let spn = creds.spn(&host);
        // ldap3 builds the SPN as "ldap/" + this.
        let server = spn.strip_prefix("ldap/").unwrap_or(&host).to_owned();
        let timeout = config.connect_timeout();
        let mut ldap = conn.ldap.clone();
        ldap.with_timeout(timeout);
        let cred = cross_krb5::Cred::from(creds.cred.clone());
        let runtime = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                tokio::time::timeout(timeout, ldap.sasl_gssapi_cred_bind(cred, &server)).await
            })
        })
        .await
        .map_err(join_error)?;
        let cx = Context {
            principal: &creds.principal,
            source: &creds.source,
            host: &host,
            spn: &spn,
        };
        let result = match result {
            Err(_) => {
                return Err(SourceError::OperationTimeout {
                    host,
                    operation: "the Kerberos bind".to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            Ok(Err(ldap3::LdapError::GssapiOperationError(status))) => {
                return Err(SourceError::Kerberos(explain(
                    Stage::ServiceTicket,
                    &status,
                    &cx,
                )));
            }
            Ok(Err(e)) => return Err(op_error(e, &host, "the Kerberos bind", timeout)),
            Ok(Ok(result)) => result,
        };
        if result.rc != 0 {
            return Err(SourceError::Kerberos(super::explain_bind_result(
                result.rc,
                &result.text,
                &creds.principal,
                &host,
            )));
        }
        Ok(match conn.endpoint.transport {
            Transport::Plain => Protection::Sealing,
            Transport::Ldaps | Transport::StartTls => {
                let mut ldap = conn.ldap.clone();
                ldap.with_timeout(timeout);
                match ldap.get_peer_certificate().await {
                    Ok(Some(der)) => match channel_binding_hash(&der) {
                        Ok(hash) => Protection::ChannelBinding(hash),
                        Err(oid) => Protection::TlsWithoutChannelBinding(oid),
                    },
                    _ => Protection::TlsWithoutChannelBinding("no certificate".to_owned()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context {
            principal: "svc-sync@CORP.EXAMPLE.TEST",
            source: "keytab /lab/svc-sync.keytab",
            host: "dc1.corp.example.test",
            spn: "ldap/dc1.corp.example.test@CORP.EXAMPLE.TEST",
        }
    }

    #[test]
    fn config_needs_a_principal_with_a_realm() {
        let mut k = KerberosConfig {
            keytab_file: Some("/x.keytab".into()),
            ..KerberosConfig::default()
        };
        assert!(
            k.validate()
                .unwrap_err()
                .contains("needs kerberos.principal")
        );
        k.principal = Some("svc-sync".into());
        assert!(k.validate().unwrap_err().contains("has no realm"));
        k.principal = Some("svc-sync@corp.example.test".into());
        assert!(k.validate().unwrap_err().contains("CORP.EXAMPLE.TEST"));
        k.principal = Some("svc-sync@CORP.EXAMPLE.TEST".into());
        k.validate().unwrap();
        // Neither keytab nor principal: the default cache.
        KerberosConfig::default().validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<KerberosConfig>("keytab = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("keytab"), "{err}");
    }

    #[test]
    fn keytab_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.keytab");
        assert_eq!(
            check_keytab(&missing).unwrap_err().kind,
            KerberosFailureKind::KeytabMissing
        );
        let path = dir.path().join("k.keytab");
        std::fs::write(&path, [0x05, 0x02, 0, 0]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let f = check_keytab(&path).unwrap_err();
            assert_eq!(f.kind, KerberosFailureKind::KeytabPermissions);
            assert!(f.sentence.contains("chmod 600"), "{}", f.sentence);
            assert!(f.sentence.contains("644"), "{}", f.sentence);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        check_keytab(&path).unwrap();
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(
            check_keytab(&path).unwrap_err().kind,
            KerberosFailureKind::KeytabUnreadable
        );
    }

    #[test]
    fn no_credentials_outside_a_keytab_is_a_missing_ticket() {
        let mut c = cx();
        c.source = "credential cache FILE:/tmp/krb5cc_0";
        let f = explain(
            Stage::InitialTicket,
            "No credentials were supplied, or the credentials were unavailable or inaccessible (No credentials cache found)",
            &c,
        );
        assert_eq!(f.kind, KerberosFailureKind::NoCredentials);
        assert!(f.sentence.contains("kinit"), "{}", f.sentence);
    }

    #[test]
    fn bind_result_80090346_is_channel_binding() {
        // Windows Server with "LDAP channel binding = Always", a TLS-terminating proxy between.
        let f = explain_bind_result(
            49,
            "80090346: LdapErr: DSID-0C090635, comment: AcceptSecurityContext error, data 80090346, v4f7c\0",
            "svc@CORP",
            "dc1",
        );
        assert_eq!(f.kind, KerberosFailureKind::ChannelBindingRejected);
        assert!(f.sentence.contains("channel-binding"), "{}", f.sentence);
        let f = explain_bind_result(49, "something else", "svc@CORP", "dc1");
        assert_eq!(f.kind, KerberosFailureKind::BindRefused);
    }

    #[test]
    fn gssapi_messages_map_to_kinds() {
        use KerberosFailureKind as K;
        // Texts as MIT krb5 1.20 reports them (through libgssapi's Display / cross-krb5).
        let cases = [
            (
                "gssapi major error Unspecified GSS failure.  Minor code may provide more information gssapi minor error Cannot contact any KDC for realm 'CORP.EXAMPLE.TEST'",
                K::KdcUnreachable,
            ),
            (
                "gssapi major error Unspecified GSS failure.  Minor code may provide more information gssapi minor error Clock skew too great",
                K::ClockSkew,
            ),
            (
                "gssapi major error Unspecified GSS failure.  Minor code may provide more information gssapi minor error Server ldap/dc9.corp.example.test@CORP.EXAMPLE.TEST not found in Kerberos database",
                K::SpnNotFound,
            ),
            (
                "gssapi major error The referenced credential has expired gssapi minor error Ticket expired",
                K::TicketExpired,
            ),
            // Seen against the Samba 4.17 lab (MIT krb5 1.20 client), verbatim.
            (
                "No credentials were supplied, or the credentials were unavailable or inaccessible (Preauthentication failed)",
                K::WrongKey,
            ),
            (
                "No credentials were supplied, or the credentials were unavailable or inaccessible (Client 'ghost-22672@CORP.EXAMPLE.TEST' not found in Kerberos database)",
                K::PrincipalUnknown,
            ),
            (
                "No credentials were supplied, or the credentials were unavailable or inaccessible (No credentials cache found)",
                K::PrincipalNotInKeytab,
            ),
            (
                "Key table file '/work/main/.lab/svc-sync.keytab' not found while starting keytab scan",
                K::KeytabMissing,
            ),
        ];
        for (text, kind) in cases {
            let f = explain(Stage::ServiceTicket, text, &cx());
            assert_eq!(f.kind, kind, "{text}");
            assert!(f.sentence.len() > 60, "{}", f.sentence);
        }
    }
}
