//! Against the real Samba AD DC of `scripts/lab-dc` (127.0.0.2). Needs the ADLAB_* env:
//! `scripts/lab-dc start && eval "$(scripts/lab-dc env)"`. Without it every test FAILS.

use std::collections::HashSet;
use std::process::Command;

use ad_model::Guid;
use ad_source::{
    BindFailureKind, Checkpoint, DeltaOutcome, ProbeOutcome, ProbeStepKind, Source, SourceConfig,
    SourceError,
};
use ldap3::{LdapConnAsync, LdapConnSettings, Mod};
use secrecy::SecretString;

use crate::common::{Collected, counters_consistent, drain, full, no_duplicates};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run scripts/lab-dc start and eval \"$(scripts/lab-dc env)\" before cargo test --features samba-lab"
        )
    })
}

fn admin_config(base: Option<String>) -> SourceConfig {
    let mut c = SourceConfig::new(
        env("ADLAB_LDAPS_URL"),
        env("ADLAB_ADMIN_BIND"),
        SecretString::from(env("ADLAB_ADMIN_PASSWORD")),
    );
    c.ca_file = Some(env("ADLAB_CA_FILE").into());
    c.base_dn = base;
    c.connect_timeout_secs = 10;
    c.operation_timeout_secs = 60;
    c
}

fn svc_config() -> SourceConfig {
    let mut c = SourceConfig::new(
        env("ADLAB_LDAP_URL"), // StartTLS
        env("ADLAB_SVC_BIND"),
        SecretString::from(env("ADLAB_SVC_PASSWORD")),
    );
    c.ca_file = Some(env("ADLAB_CA_FILE_DER").into()); // DER .cer
    c.base_dn = Some(env("ADLAB_USERS_BASE_DN"));
    c
}

/// `ldapsearch -E pr=1000/noprompt`, counting `dn:` lines.
fn ldapsearch_count(base: &str, filter: &str) -> usize {
    let out = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", env("ADLAB_CA_FILE"))
        .args([
            "-x",
            "-H",
            &env("ADLAB_LDAPS_URL"),
            "-D",
            &env("ADLAB_ADMIN_BIND"),
            "-w",
            &env("ADLAB_ADMIN_PASSWORD"),
            "-b",
            base,
            "-E",
            "pr=1000/noprompt",
            filter,
            "1.1",
        ])
        .output()
        .expect("ldapsearch (ldap-utils) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().filter(|l| l.starts_with("dn:")).count()
}

#[tokio::test]
async fn samba_lab_full_snapshot_matches_ldapsearch_and_resolves_groups() {
    let base = env("ADLAB_USERS_BASE_DN");
    let mut config = admin_config(Some(base.clone()));
    config.page_size = 500; // several pages
    let source = Source::new(config.clone()).unwrap();
    let (c, summary) = full(&source).await;
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    no_duplicates(&c);
    counters_consistent(&c, &summary.counters);
    let users = ldapsearch_count(&base, &config.user_filter);
    let groups = ldapsearch_count(&base, &config.group_filter);
    assert!(users >= 1600, "ldapsearch found {users} users");
    assert_eq!(c.users.len(), users, "users: ad-source vs ldapsearch");
    assert_eq!(c.groups.len(), groups, "groups: ad-source vs ldapsearch");
    assert!(summary.counters.pages >= 5, "{:?}", summary.counters);

    // The >1,500-member group is read completely.
    let big_dn = env("ADLAB_BIG_GROUP_DN");
    let big = c
        .groups
        .iter()
        .find(|g| g.record.dn.eq_ignore_ascii_case(&big_dn))
        .expect("big group read");
    let expected: usize = env("ADLAB_BIG_GROUP_MEMBERS").parse().unwrap();
    assert!(expected > 1500);
    assert_eq!(big.record.members.len(), expected);
    let distinct: HashSet<_> = big
        .record
        .members
        .iter()
        .map(|m| m.to_lowercase())
        .collect();
    assert_eq!(distinct.len(), expected);

    // Primary group: resolved from primaryGroupID, flagged primary.
    let primary_dn = env("ADLAB_PRIMARY_GROUP_DN");
    let pu = c
        .users
        .iter()
        .find(|u| {
            u.record
                .dn
                .eq_ignore_ascii_case(&env("ADLAB_PRIMARY_USER_DN"))
        })
        .expect("primary.user read");
    let primary: Vec<_> = pu.record.groups.iter().filter(|g| g.primary).collect();
    assert_eq!(primary.len(), 1, "{:?}", pu.record.groups);
    assert!(
        primary[0].dn.eq_ignore_ascii_case(&primary_dn),
        "{:?}",
        primary[0]
    );
    assert_eq!(primary[0].name.as_deref(), Some("GG-Primary"));
    assert_eq!(
        primary[0].sid.map(|s| s.to_string()),
        Some(format!(
            "{}-{}",
            env("ADLAB_DOMAIN_SID"),
            env("ADLAB_PRIMARY_GROUP_RID")
        ))
    );
    // Everyone else: Domain Users (outside the base DN, looked up once), primary.
    let alice = c.user("admin.alice");
    let du = alice
        .groups
        .iter()
        .find(|g| g.primary)
        .expect("primary group");
    assert_eq!(du.name.as_deref(), Some("Domain Users"), "{du:?}");
    assert!(du.dn.starts_with("CN=Domain Users,"), "{du:?}");
    // Domain Admins is outside the base DN too, and resolved with its SID.
    assert!(alice.is_privileged(), "{:?}", alice.groups);
    // memberOf in the base resolved with name and SID.
    let allstaff = alice
        .groups
        .iter()
        .find(|g| g.dn.eq_ignore_ascii_case(&big_dn))
        .expect("admin.alice in GG-AllStaff");
    assert_eq!(allstaff.name.as_deref(), Some("GG-AllStaff"));
    assert!(allstaff.sid.is_some());

    // Nested groups carry their parents.
    let backend = c.group("GG-Backend");
    assert!(
        backend
            .groups
            .iter()
            .any(|g| g.name.as_deref() == Some("GG-Engineering"))
    );

    // Checkpoint pins this DC.
    assert!(
        summary
            .checkpoint
            .dc_host
            .eq_ignore_ascii_case(&env("ADLAB_HOST"))
    );
    assert!(summary.checkpoint.usn > 0);
    assert_eq!(summary.counters.reconnects, 0);
    // Samba answers every page with the paged-results control and no limit: complete.
    assert!(!summary.truncated(), "{:?}", summary.incomplete_reasons());

    // Re-reading by DN gives the same records (same clock instant for the account state).
    let at = source.now();
    let fixed = source.clone().with_clock(std::sync::Arc::new(move || at));
    let dns = vec![
        big_dn.clone(),
        env("ADLAB_PRIMARY_USER_DN"),
        format!("CN=No Such User,{base}"),
    ];
    let again = Collected::of(fixed.read_objects(&dns).await.unwrap());
    assert!(
        again.skipped.is_empty() && again.warnings.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.groups.len(), 1);
    assert_eq!(again.groups[0].record, big.record);
    assert_eq!(again.users.len(), 1);
    assert_eq!(again.users[0].record.groups, pu.record.groups);
    assert_eq!(again.users[0].record.object_guid, pu.record.object_guid);
}

#[tokio::test]
async fn samba_lab_least_privilege_account_over_starttls_with_der_ca() {
    let source = Source::new(svc_config()).unwrap();
    let report = source.probe().await;
    for step in &report.steps {
        assert!(
            matches!(step.outcome, ProbeOutcome::Pass),
            "{:?}: {:?} {}",
            step.step,
            step.outcome,
            step.message
        );
    }
    let cert = report.certificate.as_ref().expect("certificate described");
    assert!(
        cert.subject_alt_names
            .iter()
            .any(|s| s.contains(&env("ADLAB_HOST"))),
        "{cert:?}"
    );
    let tls = report.step(ProbeStepKind::Tls).unwrap();
    assert!(tls.message.contains("valid until"), "{}", tls.message);

    let (c, summary) = full(&source).await;
    let expected: usize = env("ADLAB_TOTAL_USERS").parse().unwrap();
    assert_eq!(c.users.len(), expected);
    assert!(c.skipped.is_empty(), "{:?}", c.skipped);
    assert!(c.users.iter().all(|u| u.record.object_sid.is_some()));
    assert!(summary.counters.users > 0);
}

/// What identifies an entry of a read and its links: DN, and the members (groups) or the
/// groups (users), case-folded and sorted.
fn shape(c: &Collected) -> std::collections::BTreeMap<Guid, (String, Vec<String>)> {
    let sorted = |items: Vec<String>| {
        let mut items: Vec<String> = items.iter().map(|i| i.to_lowercase()).collect();
        items.sort();
        items
    };
    let mut out = std::collections::BTreeMap::new();
    for u in &c.users {
        let groups = u.record.groups.iter().map(|g| g.dn.clone()).collect();
        out.insert(
            u.record.object_guid,
            (u.record.dn.to_lowercase(), sorted(groups)),
        );
    }
    for g in &c.groups {
        out.insert(
            g.record.object_guid,
            (g.record.dn.to_lowercase(), sorted(g.record.members.clone())),
        );
    }
    out
}

#[tokio::test]
async fn samba_lab_full_read_on_three_connections_matches_one() {
    // OU=Corp: the seeded objects, which no test changes (they write to OUs of their own).
    let base = env("ADLAB_USERS_BASE_DN");
    let mut config = svc_config();
    config.page_size = 400; // several pages per slice
    let (one, one_summary) = full(&Source::new(config.clone()).unwrap()).await;
    config.read_connections = 3;
    let (three, summary) = full(&Source::new(config).unwrap()).await;
    assert!(three.skipped.is_empty(), "{:?}", three.skipped);
    assert!(three.warnings.is_empty(), "{:?}", three.warnings);
    no_duplicates(&three);
    counters_consistent(&three, &summary.counters);
    assert!(!summary.truncated());
    assert!(
        summary.counters.pages > one_summary.counters.pages,
        "the slices are searches of their own: {:?}",
        summary.counters
    );
    assert_eq!(
        three.users.len(),
        ldapsearch_count(&base, "(&(objectCategory=person)(objectClass=user))")
    );
    assert_eq!(
        shape(&three),
        shape(&one),
        "three connections read other entries, names or links than one"
    );
    assert_eq!(summary.nesting, one_summary.nesting);
}

#[tokio::test]
async fn samba_lab_root_dse() {
    let source = Source::new(admin_config(None)).unwrap();
    let root = source.root_dse().await.unwrap();
    assert!(root.dns_host_name.eq_ignore_ascii_case(&env("ADLAB_HOST")));
    assert!(
        root.default_naming_context
            .eq_ignore_ascii_case(&env("ADLAB_BASE_DN"))
    );
    assert!(root.highest_committed_usn > 0);
    assert_ne!(
        root.invocation_id.to_string(),
        "00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        root.domain_sid.map(|s| s.to_string()),
        Some(env("ADLAB_DOMAIN_SID"))
    );
    assert!(root.supports("1.2.840.113556.1.4.319"));
    assert!(root.supports("1.2.840.113556.1.4.417"));
}

#[tokio::test]
async fn samba_lab_bad_password_is_a_sentence() {
    let mut config = admin_config(None);
    config.password = SecretString::from("definitely-wrong");
    let err = Source::new(config)
        .unwrap()
        .full_snapshot()
        .await
        .unwrap_err();
    let SourceError::Bind(failure) = &err else {
        panic!("expected a bind failure, got {err}");
    };
    assert_eq!(failure.kind, BindFailureKind::BadCredentials, "{err}");
    assert_eq!(failure.data_code.as_deref(), Some("52e"));
    assert!(err.to_string().contains("rejected the password"), "{err}");
}

#[tokio::test]
async fn samba_lab_special_accounts_bind_failures() {
    let base = env("ADLAB_USERS_BASE_DN");
    for (user, kind) in [
        ("disabled.user", BindFailureKind::AccountDisabled),
        ("expired.user", BindFailureKind::AccountExpired),
        ("mustchange.user", BindFailureKind::MustResetPassword),
    ] {
        let mut config = admin_config(Some(base.clone()));
        config.bind = format!("{user}@{}", env("ADLAB_REALM").to_lowercase());
        config.password = SecretString::from(env("ADLAB_USER_PASSWORD"));
        let err = Source::new(config).unwrap().root_dse().await.unwrap_err();
        match &err {
            SourceError::Bind(f) => assert_eq!(f.kind, kind, "{user}: {err}"),
            other => panic!("{user}: expected a bind failure, got {other}"),
        }
    }
}

#[tokio::test]
async fn samba_lab_bind_name_forms() {
    // UPN is the default config; DN and DOMAIN\user must work too.
    let mut dn = admin_config(None);
    dn.bind = env("ADLAB_SVC_DN");
    dn.password = SecretString::from(env("ADLAB_SVC_PASSWORD"));
    Source::new(dn).unwrap().root_dse().await.expect("DN bind");
    let mut down_level = admin_config(None);
    let netbios = env("ADLAB_REALM").split('.').next().unwrap().to_owned();
    down_level.bind = format!("{netbios}\\svc-sync");
    down_level.password = SecretString::from(env("ADLAB_SVC_PASSWORD"));
    Source::new(down_level)
        .unwrap()
        .root_dse()
        .await
        .expect("DOMAIN\\user bind");
}

#[tokio::test]
async fn samba_lab_wrong_ca_is_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let ca = dir.path().join("other-ca.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Some Other CA",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut config = admin_config(None);
    config.ca_file = Some(ca.clone());
    let source = Source::new(config).unwrap();
    let err = source.root_dse().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SourceError::Tls { .. }), "{text}");
    assert!(
        text.contains("unknown CA") && text.contains("other-ca.pem"),
        "{text}"
    );
    // The probe says what the server presented.
    let report = source.probe().await;
    let fail = report.first_failure().unwrap();
    assert_eq!(fail.step, ProbeStepKind::Tls);
    assert!(
        fail.message.contains("the server presented"),
        "{}",
        fail.message
    );
    assert!(!report.ok());
}

#[tokio::test]
async fn samba_lab_plain_ldap_simple_bind_refused() {
    let mut config = admin_config(None);
    config.url = env("ADLAB_LDAP_URL").into();
    config.starttls = false;
    // Without the explicit opt-in the configuration itself is refused.
    let err = Source::new(config.clone()).unwrap_err().to_string();
    assert!(err.contains("in clear"), "{err}");
    config.allow_plain_ldap = true;
    let err = Source::new(config).unwrap().root_dse().await.unwrap_err();
    let SourceError::Bind(f) = &err else {
        panic!("expected a bind failure, got {err}");
    };
    assert_eq!(f.kind, BindFailureKind::StrongerAuthRequired);
    assert!(err.to_string().contains("Use LDAPS"), "{err}");
}

#[tokio::test]
async fn samba_lab_connection_refused_and_dns_failure() {
    let mut config = admin_config(None);
    config.url = "ldaps://127.0.0.2:1".into();
    config.insecure_skip_tls_verify = true;
    let err = Source::new(config).unwrap().root_dse().await.unwrap_err();
    assert!(
        matches!(err, SourceError::ConnectionRefused { .. }),
        "{err}"
    );
    let mut config = admin_config(None);
    config.url = "ldaps://no-such-dc.invalid".into();
    let err = Source::new(config).unwrap().root_dse().await.unwrap_err();
    assert!(matches!(err, SourceError::Dns { .. }), "{err}");
    assert!(err.to_string().contains("does not resolve"), "{err}");
}

/// An admin connection for changing test objects.
async fn admin_ldap() -> ldap3::Ldap {
    let config = admin_config(None);
    let tls = ad_source::tls::client_config(&config).unwrap();
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new().set_config(tls),
        config.current_url(),
    )
    .await
    .unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(&env("ADLAB_ADMIN_BIND"), &env("ADLAB_ADMIN_PASSWORD"))
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

async fn add_user(ldap: &mut ldap3::Ldap, ou: &str, name: &str) -> String {
    let dn = format!("CN={name},{ou}");
    ldap.add(
        &dn,
        vec![
            (
                "objectClass",
                HashSet::from(["top", "person", "organizationalPerson", "user"]),
            ),
            ("sAMAccountName", HashSet::from([name])),
            ("description", HashSet::from(["source test"])),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    dn
}

struct TestOu {
    dn: String,
}

impl TestOu {
    /// A fresh OU at the domain root (outside OU=Corp, so the lab's seeded counts that other
    /// tests compare against never include our temporary users). Leftovers of an earlier,
    /// panicked run are removed first.
    async fn create(ldap: &mut ldap3::Ldap) -> TestOu {
        for base in [env("ADLAB_BASE_DN"), env("ADLAB_USERS_BASE_DN")] {
            let (entries, _) = ldap
                .search(
                    &base,
                    ldap3::Scope::OneLevel,
                    "(ou=SourceTests-*)",
                    vec!["1.1"],
                )
                .await
                .unwrap()
                .success()
                .unwrap();
            for e in entries {
                let dn = ldap3::SearchEntry::construct(e).dn;
                TestOu { dn }.remove(ldap).await;
            }
        }
        let suffix: u32 = rand::random();
        let dn = format!("OU=SourceTests-{suffix:08x},{}", env("ADLAB_BASE_DN"));
        ldap.add(
            &dn,
            vec![("objectClass", HashSet::from(["top", "organizationalUnit"]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        TestOu { dn }
    }

    async fn remove(self, ldap: &mut ldap3::Ldap) {
        // Tree delete control (1.2.840.113556.1.4.805).
        let _ = ldap
            .with_controls(ldap3::controls::RawControl {
                ctype: "1.2.840.113556.1.4.805".into(),
                crit: true,
                val: None,
            })
            .delete(&self.dn)
            .await;
    }
}

#[tokio::test]
async fn samba_lab_delta_yields_exactly_the_five_changes_then_renames_keep_the_guid() {
    let mut ldap = admin_ldap().await;
    let ou = TestOu::create(&mut ldap).await;
    let result = async {
        let tag = ou
            .dn
            .get(15..23)
            .expect("the test OU name holds an 8-character tag");
        let mut dns = Vec::new();
        for i in 0..4 {
            dns.push(add_user(&mut ldap, &ou.dn, &format!("srctest{i}-{tag}")).await);
        }
        let source = Source::new(admin_config(Some(ou.dn.clone()))).unwrap();
        let (before, summary) = full(&source).await;
        assert_eq!(before.users.len(), 4);
        let guid_of = |dn: &str| {
            before
                .users
                .iter()
                .find(|u| u.record.dn.eq_ignore_ascii_case(dn))
                .map(|u| u.record.object_guid)
                .unwrap()
        };
        let deleted_guid = guid_of(&dns[3]);
        let mut changed: HashSet<Guid> = HashSet::new();
        for dn in &dns[..3] {
            ldap.modify(
                dn,
                vec![Mod::Replace("description", HashSet::from(["changed"]))],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
            changed.insert(guid_of(dn));
        }
        ldap.delete(&dns[3]).await.unwrap().success().unwrap();
        let added = add_user(&mut ldap, &ou.dn, &format!("srctest-new-{tag}")).await;

        let DeltaOutcome::Changes(run) = source.changes_since(&summary.checkpoint).await.unwrap()
        else {
            panic!("same DC: delta expected");
        };
        let (delta, end) = drain(run).await;
        let end = end.unwrap();
        assert!(delta.warnings.is_empty(), "{:?}", delta.warnings);
        assert_eq!(
            delta.users.len(),
            4,
            "3 modified + 1 added: {:?}",
            delta.users.iter().map(|u| &u.record.dn).collect::<Vec<_>>()
        );
        assert_eq!(delta.deleted.len(), 1);
        assert!(delta.groups.is_empty());
        assert_eq!(delta.deleted[0].object_guid, deleted_guid);
        assert!(delta.deleted[0].object_sid.is_some());
        let delta_guids: HashSet<Guid> = delta.users.iter().map(|u| u.record.object_guid).collect();
        assert!(changed.is_subset(&delta_guids));
        assert!(
            delta
                .users
                .iter()
                .any(|u| u.record.dn.eq_ignore_ascii_case(&added))
        );
        for u in delta
            .users
            .iter()
            .filter(|u| changed.contains(&u.record.object_guid))
        {
            assert_eq!(u.record.description.as_deref(), Some("changed"));
        }
        assert!(end.checkpoint.usn > summary.checkpoint.usn);

        // Nothing changed since: an empty delta.
        let DeltaOutcome::Changes(run) = source.changes_since(&end.checkpoint).await.unwrap()
        else {
            panic!("delta expected");
        };
        let (empty, end2) = drain(run).await;
        assert!(
            empty.users.is_empty() && empty.deleted.is_empty(),
            "{:?}",
            empty.users.len()
        );
        let end2 = end2.unwrap();

        // A rename is the same object.
        let renamed_guid = guid_of(&dns[0]);
        ldap.modifydn(&dns[0], &format!("CN=srctest0-renamed-{tag}"), true, None)
            .await
            .unwrap()
            .success()
            .unwrap();
        let DeltaOutcome::Changes(run) = source.changes_since(&end2.checkpoint).await.unwrap()
        else {
            panic!("delta expected");
        };
        let (rename, _) = drain(run).await;
        assert_eq!(rename.users.len(), 1);
        assert_eq!(rename.users[0].record.object_guid, renamed_guid);
        assert!(
            rename.users[0]
                .record
                .dn
                .starts_with("CN=srctest0-renamed-")
        );

        // The least-privilege account gets the same changes; deletions need rights on
        // Deleted Objects: either they are reported or a warning says why not.
        let mut svc = svc_config();
        svc.base_dn = Some(ou.dn.clone());
        let svc_source = Source::new(svc).unwrap();
        let DeltaOutcome::Changes(run) =
            svc_source.changes_since(&summary.checkpoint).await.unwrap()
        else {
            panic!("delta expected");
        };
        let (svc_delta, svc_end) = drain(run).await;
        svc_end.unwrap();
        assert_eq!(svc_delta.users.len(), 4);
        assert!(
            svc_delta.deleted.len() == 1
                || svc_delta
                    .warnings
                    .iter()
                    .any(|w| w.contains("deletions are not reported")),
            "{:?} {:?}",
            svc_delta.deleted,
            svc_delta.warnings
        );
    }
    .await;
    ou.remove(&mut ldap).await;
    result
}

#[tokio::test]
async fn samba_lab_other_dc_or_restored_dc_requires_full_sync() {
    let source = Source::new(admin_config(Some(env("ADLAB_USERS_BASE_DN")))).unwrap();
    let root = source.root_dse().await.unwrap();
    let good = Checkpoint {
        dc_host: root.dns_host_name.clone(),
        invocation_id: root.invocation_id,
        usn: root.highest_committed_usn,
    };
    let other_dc = Checkpoint {
        dc_host: "dc2.corp.example.test".into(),
        ..good.clone()
    };
    match source.changes_since(&other_dc).await.unwrap() {
        DeltaOutcome::FullSyncRequired { reason } => {
            assert!(reason.contains("dc2.corp.example.test"), "{reason}")
        }
        DeltaOutcome::Changes(_) => panic!("another DC must force a full sync"),
    }
    let restored = Checkpoint {
        invocation_id: "00000000-0000-0000-0000-000000000001".parse().unwrap(),
        ..good.clone()
    };
    match source.changes_since(&restored).await.unwrap() {
        DeltaOutcome::FullSyncRequired { reason } => {
            assert!(reason.contains("invocationId"), "{reason}")
        }
        DeltaOutcome::Changes(_) => panic!("a new invocationId must force a full sync"),
    }
    assert!(matches!(
        source.changes_since(&good).await.unwrap(),
        DeltaOutcome::Changes(_)
    ));
}

fn filetime(at: chrono::DateTime<chrono::Utc>) -> i64 {
    ad_model::to_filetime(at).unwrap()
}

fn sams(tb: &ad_source::TimeBoundary) -> Vec<String> {
    tb.users
        .iter()
        .filter_map(|u| u.record.sam_account_name.clone())
        .collect()
}

#[tokio::test]
async fn samba_lab_time_boundary_finds_account_expires_in_the_window() {
    let mut ldap = admin_ldap().await;
    let ou = TestOu::create(&mut ldap).await;
    let result = async {
        let tag = ou
            .dn
            .get(15..23)
            .expect("the test OU name holds an 8-character tag");
        let expiring = add_user(&mut ldap, &ou.dn, &format!("srcexp-{tag}")).await;
        add_user(&mut ldap, &ou.dn, &format!("srckeep-{tag}")).await;
        // Ten days ahead, to the second: the window is a FILETIME range, whatever "now" is.
        let at = chrono::DateTime::from_timestamp(
            (chrono::Utc::now() + chrono::TimeDelta::days(10)).timestamp(),
            0,
        )
        .unwrap();
        let value = filetime(at).to_string();
        ldap.modify(
            &expiring,
            vec![Mod::Replace(
                "accountExpires",
                HashSet::from([value.as_str()]),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let source = Source::new(admin_config(Some(ou.dn.clone()))).unwrap();
        let hour = chrono::TimeDelta::hours(1);
        let tb = source
            .time_boundary_users(at - hour, at + hour)
            .await
            .unwrap();
        assert_eq!(sams(&tb), vec![format!("srcexp-{tag}")]);
        let user = &tb.users[0].record;
        assert_eq!(user.account_expires, Some(at));
        assert!(!user.account.expired, "decoded now, ten days before");
        // The administrator reads the lab's PSO: nothing left to a full sync.
        assert!(tb.notes.is_empty(), "{:?}", tb.notes);
        // (from, to]: from is exclusive, to inclusive.
        let tb = source.time_boundary_users(at, at + hour).await.unwrap();
        assert!(tb.users.is_empty(), "{:?}", sams(&tb));
        let tb = source.time_boundary_users(at - hour, at).await.unwrap();
        assert_eq!(sams(&tb).len(), 1);
        let tb = source
            .time_boundary_users(at - hour - hour, at - hour)
            .await
            .unwrap();
        assert!(tb.users.is_empty(), "{:?}", sams(&tb));
    }
    .await;
    ou.remove(&mut ldap).await;
    result
}

#[tokio::test]
async fn samba_lab_time_boundary_pso_lockout_end_needs_rights_on_psos() {
    // locked.user is locked under the PSO ADLAB-Lockout (~1000 days); the domain's own
    // lockoutDuration is 30 minutes. Ask for the window around the PSO lockout's end.
    let mut ldap = admin_ldap().await;
    let (users, _) = ldap
        .search(
            &env("ADLAB_USERS_BASE_DN"),
            ldap3::Scope::Subtree,
            "(sAMAccountName=locked.user)",
            vec!["lockoutTime", "msDS-ResultantPSO"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let user = ldap3::SearchEntry::construct(users.into_iter().next().unwrap());
    let lockout_time: i64 = user.attrs["lockoutTime"][0].parse().unwrap();
    let pso = user.attrs["msDS-ResultantPSO"][0].clone();
    let (psos, _) = ldap
        .search(
            &pso,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["msDS-LockoutDuration"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let duration: i64 = ldap3::SearchEntry::construct(psos.into_iter().next().unwrap()).attrs
        ["msDS-LockoutDuration"][0]
        .parse()
        .unwrap();
    let ends = ad_model::filetime_from_ticks(lockout_time - duration)
        .unwrap()
        .unwrap();
    let hour = chrono::TimeDelta::hours(1);

    let admin = Source::new(admin_config(Some(env("ADLAB_USERS_BASE_DN")))).unwrap();
    let tb = admin
        .time_boundary_users(ends - hour, ends + hour)
        .await
        .unwrap();
    assert_eq!(sams(&tb), vec!["locked.user".to_owned()]);
    assert!(tb.notes.is_empty(), "{:?}", tb.notes);

    // The least-privilege account cannot read PSOs: it cannot see this lockout end, and the
    // note says so.
    let svc = Source::new(svc_config()).unwrap();
    let tb = svc
        .time_boundary_users(ends - hour, ends + hour)
        .await
        .unwrap();
    assert!(tb.users.is_empty(), "{:?}", sams(&tb));
    assert_eq!(tb.notes.len(), 1, "{:?}", tb.notes);
    assert!(
        tb.notes[0].contains("PSOs") && tb.notes[0].contains("next full sync"),
        "{}",
        tb.notes[0]
    );
}
