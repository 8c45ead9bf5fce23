//! Kerberos (SASL GSSAPI) bind against the real Samba AD DC of `scripts/lab-dc`, with the
//! keytab the lab exports for svc-sync (`ADLAB_SVC_KEYTAB`). Needs `--features
//! samba-lab,kerberos`, the ADLAB_* env and `KRB5_CONFIG=$ADLAB_KRB5_CONFIG` (the GSSAPI
//! library reads its configuration from the environment; `scripts/test` exports it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ad_source::{
    KerberosConfig, KerberosFailureKind, ProbeOutcome, ProbeReport, ProbeStepKind, Source,
    SourceConfig, SourceError,
};
use secrecy::SecretString;

use crate::common::{full, no_duplicates};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/lab-dc start and eval \"$(scripts/lab-dc env)\" before cargo test --features samba-lab,kerberos (or use scripts/test)"
        )
    })
}

/// The GSSAPI library must find the lab's realm: KRB5_CONFIG names the lab's krb5.conf.
fn krb5_config_is_the_labs() {
    let want = env("ADLAB_KRB5_CONFIG");
    let have = std::env::var("KRB5_CONFIG").unwrap_or_default();
    assert_eq!(
        have, want,
        "KRB5_CONFIG must be the lab's krb5.conf: export KRB5_CONFIG=\"$ADLAB_KRB5_CONFIG\" (scripts/test does)"
    );
}

fn kerberos(keytab: &Path, principal: &str) -> KerberosConfig {
    KerberosConfig {
        keytab_file: Some(keytab.to_path_buf()),
        principal: Some(principal.to_owned()),
        ccache: None,
    }
}

/// svc-sync with its keytab, no bind name, no password.
fn krb_config(url: String, keytab: &Path) -> SourceConfig {
    krb5_config_is_the_labs();
    let mut c = SourceConfig::new(url, "", SecretString::from(String::new()));
    c.ca_file = Some(env("ADLAB_CA_FILE").into());
    c.base_dn = Some(env("ADLAB_USERS_BASE_DN"));
    c.connect_timeout_secs = 20;
    c.operation_timeout_secs = 60;
    c.kerberos = Some(kerberos(keytab, &env("ADLAB_SVC_PRINCIPAL")));
    c
}

fn svc_keytab() -> PathBuf {
    env("ADLAB_SVC_KEYTAB").into()
}

fn show(report: &ProbeReport) -> String {
    report
        .steps
        .iter()
        .map(|s| format!("{:?} {:?} {}\n", s.step, s.outcome, s.message))
        .collect()
}

fn passed(report: &ProbeReport, kind: ProbeStepKind) -> String {
    let step = report
        .step(kind)
        .unwrap_or_else(|| panic!("{kind:?} missing:\n{}", show(report)));
    assert_eq!(step.outcome, ProbeOutcome::Pass, "{}", show(report));
    step.message.clone()
}

async fn reads_every_user(config: SourceConfig) {
    let source = Source::new(config).unwrap();
    let (c, summary) = full(&source).await;
    let expected: usize = env("ADLAB_TOTAL_USERS").parse().unwrap();
    assert_eq!(
        c.users.len(),
        expected,
        "users read as svc-sync over Kerberos"
    );
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert!(c.users.iter().all(|u| u.record.object_sid.is_some()));
    no_duplicates(&c);
    assert!(summary.counters.users > 0);
}

async fn kerberos_failure(config: SourceConfig) -> (KerberosFailureKind, String) {
    let err = Source::new(config).unwrap().root_dse().await.unwrap_err();
    match &err {
        SourceError::Kerberos(f) => {
            eprintln!("{:?}: {err}", f.kind);
            (f.kind, err.to_string())
        }
        other => panic!("expected a Kerberos failure, got {other:?}: {other}"),
    }
}

#[tokio::test]
async fn samba_lab_kerberos_keytab_bind_over_ldaps_with_channel_binding() {
    let config = krb_config(env("ADLAB_LDAPS_URL"), &svc_keytab());
    let report = ad_source::probe::probe(&config).await;
    assert!(report.ok(), "{}", show(&report));
    let ticket = passed(&report, ProbeStepKind::KerberosTicket);
    assert!(
        ticket.contains(&env("ADLAB_SVC_PRINCIPAL")) && ticket.contains("private"),
        "{ticket}"
    );
    let service = passed(&report, ProbeStepKind::ServiceTicket);
    assert!(
        service.contains(&format!(
            "ldap/{}@{}",
            env("ADLAB_HOST"),
            env("ADLAB_REALM")
        )),
        "{service}"
    );
    passed(&report, ProbeStepKind::Bind);
    let protection = passed(&report, ProbeStepKind::Protection);
    assert!(
        protection.contains("channel binding (tls-server-end-point) in use"),
        "{protection}"
    );
    reads_every_user(config).await;
}

/// Plain `ldap://` (port 389, no TLS) with Kerberos: the bind negotiates SASL privacy and
/// everything after it is sealed with the session key (`sealing.rs`). The DC requires strong
/// authentication on plain LDAP (a simple bind there is refused:
/// `samba_lab_plain_ldap_simple_bind_refused`). The connection goes through a recording
/// forwarder on 127.0.0.2: every user is read, and no account name crosses the wire in
/// clear.
#[tokio::test]
async fn samba_lab_kerberos_plain_ldap_is_sealed_and_reads_every_user() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind((env("ADLAB_IP").as_str(), 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let wire = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let seen = wire.clone();
    let dc = format!("{}:389", env("ADLAB_IP"));
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let (dc, seen) = (dc.clone(), seen.clone());
            tokio::spawn(async move {
                let outbound = tokio::net::TcpStream::connect(&dc).await.unwrap();
                let (mut ir, mut iw) = inbound.into_split();
                let (mut or, mut ow) = outbound.into_split();
                let seen_up = seen.clone();
                let up = async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = ir.read(&mut buf).await {
                        if n == 0 || ow.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        seen_up.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = or.read(&mut buf).await {
                        if n == 0 || iw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                };
                tokio::join!(up, down);
            });
        }
    });

    let mut config = krb_config(
        format!("ldap://{}:{port}", env("ADLAB_HOST")),
        &svc_keytab(),
    );
    config.starttls = false;
    let report = ad_source::probe::probe(&config).await;
    assert!(report.ok(), "{}", show(&report));
    let protection = passed(&report, ProbeStepKind::Protection);
    assert!(protection.contains("seal"), "{protection}");
    reads_every_user(config).await;

    let wire = wire.lock().unwrap().clone();
    assert!(
        wire.len() > 100_000,
        "the read crossed the forwarder: {} bytes",
        wire.len()
    );
    for clear in [
        &b"sAMAccountName"[..],
        b"objectClass",
        b"OU=Corp",
        b"GG-AllStaff",
    ] {
        assert!(
            !wire.windows(clear.len()).any(|w| w == clear),
            "{} crossed the network in clear",
            String::from_utf8_lossy(clear)
        );
    }
}

#[tokio::test]
async fn samba_lab_kerberos_keytab_bind_over_starttls_with_channel_binding() {
    let config = krb_config(env("ADLAB_LDAP_URL"), &svc_keytab());
    let report = ad_source::probe::probe(&config).await;
    assert!(report.ok(), "{}", show(&report));
    let protection = passed(&report, ProbeStepKind::Protection);
    assert!(
        protection.contains("channel binding (tls-server-end-point) in use"),
        "{protection}"
    );
    reads_every_user(config).await;
}

#[tokio::test]
async fn samba_lab_kerberos_ip_address_url_is_a_config_sentence() {
    let config = krb_config(format!("ldaps://{}:636", env("ADLAB_IP")), &svc_keytab());
    let err = Source::new(config).unwrap_err().to_string();
    assert!(err.contains("Kerberos needs the DC's DNS name"), "{err}");
}

#[tokio::test]
async fn samba_lab_kerberos_missing_keytab() {
    let dir = tempfile::tempdir().unwrap();
    let config = krb_config(env("ADLAB_LDAPS_URL"), &dir.path().join("none.keytab"));
    let (kind, sentence) = kerberos_failure(config).await;
    assert_eq!(kind, KerberosFailureKind::KeytabMissing, "{sentence}");
    assert!(sentence.contains("does not exist"), "{sentence}");
}

#[tokio::test]
async fn samba_lab_kerberos_keytab_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("svc.keytab");
    std::fs::copy(svc_keytab(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = krb_config(env("ADLAB_LDAPS_URL"), &copy);
    let (kind, sentence) = kerberos_failure(config.clone()).await;
    assert_eq!(kind, KerberosFailureKind::KeytabPermissions, "{sentence}");
    assert!(sentence.contains("chmod 600"), "{sentence}");
    // The probe says it at the ticket step.
    let report = ad_source::probe::probe(&config).await;
    let failure = report.first_failure().unwrap();
    assert_eq!(
        failure.step,
        ProbeStepKind::KerberosTicket,
        "{}",
        show(&report)
    );
}

#[tokio::test]
async fn samba_lab_kerberos_principal_not_in_keytab() {
    let mut config = krb_config(env("ADLAB_LDAPS_URL"), &svc_keytab());
    config.kerberos = Some(kerberos(
        &svc_keytab(),
        &format!("nobody@{}", env("ADLAB_REALM")),
    ));
    let (kind, sentence) = kerberos_failure(config).await;
    assert_eq!(
        kind,
        KerberosFailureKind::PrincipalNotInKeytab,
        "{sentence}"
    );
}

/// A keytab made with ktutil from a password (not the account's): a wrong key, kvno 99.
fn ktutil_keytab(dir: &Path, principal: &str) -> PathBuf {
    let path = dir.join(format!("{}.keytab", principal.replace('@', "_")));
    let script = format!(
        "addent -password -p {principal} -k 99 -e aes256-cts-hmac-sha1-96\nnot-the-password-{}\nwkt {}\nquit\n",
        std::process::id(),
        path.display()
    );
    let mut child = Command::new("ktutil")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ktutil (krb5-user) runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        path.exists(),
        "ktutil wrote no keytab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn samba_lab_kerberos_wrong_key_in_keytab() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = ktutil_keytab(dir.path(), &env("ADLAB_SVC_PRINCIPAL"));
    let config = krb_config(env("ADLAB_LDAPS_URL"), &keytab);
    let (kind, sentence) = kerberos_failure(config).await;
    assert_eq!(kind, KerberosFailureKind::WrongKey, "{sentence}");
    assert!(sentence.contains("Export a new keytab"), "{sentence}");
}

#[tokio::test]
async fn samba_lab_kerberos_principal_unknown_to_the_kdc() {
    let dir = tempfile::tempdir().unwrap();
    let ghost = format!("ghost-{}@{}", std::process::id(), env("ADLAB_REALM"));
    let keytab = ktutil_keytab(dir.path(), &ghost);
    let mut config = krb_config(env("ADLAB_LDAPS_URL"), &keytab);
    config.kerberos = Some(kerberos(&keytab, &ghost));
    let (kind, sentence) = kerberos_failure(config).await;
    assert_eq!(kind, KerberosFailureKind::PrincipalUnknown, "{sentence}");
}
