//! `ad-connector test` with `[source.kerberos]` against the Samba AD DC lab: the Kerberos
//! steps of the connection test, through the real binary. The binary gets the lab's
//! krb5.conf through `KRB5_CONFIG` in its environment (as a service would, from its unit).

use std::path::{Path, PathBuf};
use std::process::Output;

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
    let url = format!("url = {:?}\n", var("ADLAB_LDAPS_URL"));
    let config = kerberos_config(dir.path(), &url, &keytab_lines());
    let (output, out) = connection_test(&config, &[]);
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

/// A config reading the lab with Kerberos: `source` is the `[source]` lines (url, and
/// domain discovery if any), `kerberos` the `[source.kerberos]` lines.
fn kerberos_config(dir: &Path, source: &str, kerberos: &str) -> PathBuf {
    let config = dir.join("ad-connector.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[source]\n{source}ca_file = {ca:?}\nbase_dn = {base:?}\n\n[source.kerberos]\n{kerberos}\n[sink]\nkind = \"jsonl\"\n[sink.jsonl]\npath = {outbox:?}\n",
            state = dir.join("state"),
            ca = var("ADLAB_CA_FILE"),
            base = var("ADLAB_USERS_BASE_DN"),
            outbox = dir.join("outbox.jsonl"),
        ),
    )
    .unwrap();
    config
}

fn keytab_lines() -> String {
    format!(
        "keytab_file = {:?}\nprincipal = {:?}\n",
        var("ADLAB_SVC_KEYTAB"),
        var("ADLAB_SVC_PRINCIPAL")
    )
}

/// The line of `step` in `test`'s output.
fn step_line<'a>(out: &'a str, step: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(step))
        .unwrap_or_else(|| panic!("no {step} line:\n{out}"))
}

/// libfaketime, which `.ci/run` installs (Debian package `faketime`).
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("libfaketime.so.1 not found under /usr/lib/*/faketime: apt-get install faketime (.ci/run does)")
    })
}

/// `ad-connector test` with the lab's krb5.conf and `env`; its output, and its stdout
/// (printed).
fn connection_test(config: &Path, env: &[(&str, &std::ffi::OsStr)]) -> (Output, String) {
    let mut command = bin();
    command.env("KRB5_CONFIG", var("ADLAB_KRB5_CONFIG"));
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .arg("--config")
        .arg(config)
        .arg("test")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{out}");
    (output, out)
}

/// `ad-connector test` in a process whose clock runs two hours ahead of the DC's
/// (libfaketime; monotonic time left alone, so timeouts behave).
fn test_two_hours_ahead(config: &Path) -> (Output, String) {
    let preload = libfaketime();
    connection_test(
        config,
        &[
            ("LD_PRELOAD", preload.as_os_str()),
            ("FAKETIME", "+2h".as_ref()),
            ("DONT_FAKE_MONOTONIC", "1".as_ref()),
        ],
    )
}

/// Clock skew, seen live. With a ticket some other process obtained (`kinit` at the right
/// time, into a cache the connector reads), a connector whose clock is two hours ahead is
/// refused the service ticket: the `service_ticket` step says to synchronise the clock.
/// With its own keytab it is not: MIT Kerberos learns the KDC's time from the first
/// answer (`kdc_timesync`, on by default) and corrects its requests, so the connector works
/// and the remaining ticket lifetime it shows is two hours shorter.
#[test]
fn samba_lab_kerberos_clock_skew_is_a_sentence_and_a_keytab_recovers_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let ccache = format!("FILE:{}", dir.path().join("ccache").display());
    let kinit = std::process::Command::new("kinit")
        .env("KRB5_CONFIG", var("ADLAB_KRB5_CONFIG"))
        .env("KRB5CCNAME", &ccache)
        .args([
            "-k",
            "-t",
            &var("ADLAB_SVC_KEYTAB"),
            &var("ADLAB_SVC_PRINCIPAL"),
        ])
        .output()
        .unwrap();
    assert!(kinit.status.success(), "kinit: {}", text(&kinit));

    let url = format!("url = {:?}\n", var("ADLAB_LDAPS_URL"));
    let with_cache = kerberos_config(dir.path(), &url, &format!("ccache = {ccache:?}\n"));
    println!("===== ccache, clock two hours ahead");
    let (output, out) = test_two_hours_ahead(&with_cache);
    assert!(!output.status.success(), "{out}");
    let line = step_line(&out, "service_ticket");
    assert!(line.contains("FAIL"), "{out}");
    assert!(
        line.contains("The clocks of this machine and the domain controller differ by more than Kerberos allows")
            && line.contains("synchronise this machine's time"),
        "{line}"
    );
    assert!(step_line(&out, "bind").contains("skip"), "{out}");

    let with_keytab = kerberos_config(dir.path(), &url, &keytab_lines());
    println!("===== keytab, clock two hours ahead");
    let (output, out) = test_two_hours_ahead(&with_keytab);
    assert!(output.status.success(), "{}", text(&output));
    assert!(step_line(&out, "bind").contains("PASS"), "{out}");
}

/// SPN not found, seen live: the DC reached by a name its computer account has no SPN for
/// (a load-balancer or alias name; here `ldap-vip.corp.example.test`, published with
/// dc1's address by a loopback DNS server the config's discovery asks). Plain LDAP, sealed
/// (`starttls = false`), so the name is not first refused by the certificate check (over
/// TLS the `tls` step names the mismatch; seen): the KDC has no
/// `ldap/ldap-vip.corp.example.test`, and `service_ticket` says to name the DC by its own
/// DNS name.
#[test]
fn samba_lab_kerberos_alias_name_without_spn_is_a_sentence() {
    use ad_testkit::{DnsServer, DnsZone, SrvEntry};
    let domain = var("ADLAB_DNS_DOMAIN");
    let alias = format!("ldap-vip.{domain}");
    let dns = DnsServer::start(DnsZone {
        srv: vec![(
            format!("_ldap._tcp.dc._msdcs.{domain}"),
            vec![SrvEntry {
                priority: 0,
                weight: 100,
                port: 389,
                target: alias.clone(),
            }],
        )],
        a: vec![(alias.clone(), vec![var("ADLAB_IP").parse().unwrap()])],
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "domain = {domain:?}\ndns_server = \"{}\"\ndiscovered_scheme = \"ldap\"\nstarttls = false\n",
        dns.addr()
    );
    let config = kerberos_config(dir.path(), &source, &keytab_lines());
    let (output, out) = connection_test(&config, &[]);
    assert!(!output.status.success(), "{out}");
    assert!(step_line(&out, "kerberos_ticket").contains("PASS"), "{out}");
    let line = step_line(&out, "service_ticket");
    assert!(line.contains("FAIL"), "{out}");
    assert!(
        line.contains(&format!("The KDC has no service principal ldap/{alias}@"))
            && line.contains("not an alias or a load-balancer name"),
        "{line}"
    );
}
