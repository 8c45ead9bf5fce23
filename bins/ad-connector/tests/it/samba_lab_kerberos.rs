//! `ad-connector test` with `[source.kerberos]` against the Samba AD DC lab: the Kerberos
//! steps of the connection test, through the real binary. The binary gets the lab's
//! krb5.conf through `KRB5_CONFIG` in its environment (as a service would, from its unit).

use crate::support::{bin, text};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the Samba lab tests need the lab. Run scripts/lab-dc start and eval \"$(scripts/lab-dc env)\", or use scripts/test"
        )
    })
}

#[test]
fn samba_lab_kerberos_test_command_shows_the_kerberos_steps() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ad-connector.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[source]\nurl = {url:?}\nca_file = {ca:?}\nbase_dn = {base:?}\n\n[source.kerberos]\nkeytab_file = {keytab:?}\nprincipal = {principal:?}\n\n[sink]\nkind = \"jsonl\"\n[sink.jsonl]\npath = {outbox:?}\n",
            state = dir.path().join("state"),
            url = var("ADLAB_LDAPS_URL"),
            ca = var("ADLAB_CA_FILE"),
            base = var("ADLAB_USERS_BASE_DN"),
            keytab = var("ADLAB_SVC_KEYTAB"),
            principal = var("ADLAB_SVC_PRINCIPAL"),
            outbox = dir.path().join("outbox.jsonl"),
        ),
    )
    .unwrap();
    let output = bin()
        .env("KRB5_CONFIG", var("ADLAB_KRB5_CONFIG"))
        .arg("--config")
        .arg(&config)
        .arg("test")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{out}");
    assert!(output.status.success(), "{}", text(&output));
    let principal = var("ADLAB_SVC_PRINCIPAL");
    for (step, words) in [
        (
            "kerberos_ticket",
            format!("ticket obtained for {principal} from keytab"),
        ),
        (
            "service_ticket",
            format!(
                "service ticket obtained for ldap/{}@{}",
                var("ADLAB_HOST"),
                var("ADLAB_REALM")
            ),
        ),
        ("bind", format!("bound as {principal} with Kerberos")),
        (
            "protection",
            "channel binding (tls-server-end-point) in use".to_owned(),
        ),
        (
            "identity_attributes",
            "objectSid and objectGUID are visible".to_owned(),
        ),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains("PASS") && l.contains(step) && l.contains(&words)),
            "no PASS line for {step} with {words:?}:\n{out}"
        );
    }
}
