//! Issue 22 on the real Samba AD DC lab, through the real binary: ordinary directory work
//! that falls outside the engine's model of a directory (renamed and moved OUs, an OU-scoped
//! `base_dn`, groups outside it, deleted groups, a sink that re-sends users inside group
//! changes, another spelling of `base_dn`, a host clock ahead of the DC's, failover to a
//! lagging DC). One test per class; each asserts what a security engineer expects — after
//! the next clean delta the platform equals the directory — and says, when it does not,
//! which class failed and what the platform showed.
//!
//! Each test works in OUs of its own (removed when it ends, passed or failed) and undoes
//! whatever it did outside them (a Domain Admins membership, a PSO, a DC's replication
//! option) in a guard's `Drop`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wiremock::MockServer;

use crate::samba_lab::{
    Cleanup, Forwarder, Lab, accept_all, comparable, jsonl_sink, lab, ldif_on, platform_state,
    replicate, run_async, sekoia_sink, unique, user_ldif,
};
use crate::support::{bin, outbox_lines, run, text};

/// The account the connector binds as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Account {
    /// The lab's least-privilege service account (`svc-sync`).
    Svc,
    /// The lab's administrator: reads tombstones (CN=Deleted Objects) and PSOs, which the
    /// service account cannot on Samba (as on a default AD).
    Admin,
}

/// A config file in `dir`: `urls` (one or a failover list), `base_dn`, bound as `account`.
fn config_at(
    lab: &Lab,
    dir: &Path,
    urls: &[&str],
    base_dn: &str,
    account: Account,
    sink: &str,
) -> PathBuf {
    let (bind, password) = match account {
        Account::Svc => (&lab.svc_bind, &lab.svc_password),
        Account::Admin => (&lab.admin_bind, &lab.admin_password),
    };
    let password_file = dir.join("bind-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let config = dir.join("ad-connector.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[source]\nurl = [{urls}]\nbind = {bind:?}\npassword_file = {pw:?}\nca_file = {ca:?}\nbase_dn = {base_dn:?}\nconnect_timeout_secs = 3\n\n{sink}\n",
            state = dir.join("state"),
            urls = urls.join(", "),
            pw = password_file,
            ca = lab.ca_pem,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    config
}

/// `sync` (or `sync --full`) must complete; its output.
fn sync(config: &Path, args: &[&str], what: &str) -> String {
    let output = run(config, args);
    let log = text(&output);
    assert!(output.status.success(), "{what}: {log}");
    println!("===== {what}\n{log}");
    log
}

/// An LDAP tool as the lab administrator on `url`, without panicking (for `Drop`).
fn try_ldif(lab: &Lab, url: &str, tool: &str, ldif: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args([
            "-x",
            "-H",
            url,
            "-D",
            &lab.admin_bind,
            "-w",
            &lab.admin_password,
        ])
        .env("LDAPTLS_CACERT", &lab.ca_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ldif.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// One attribute's values of one entry, read as the administrator on `url`.
fn read_attr(lab: &Lab, url: &str, dn: &str, attribute: &str) -> Vec<String> {
    let output = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            url,
            "-D",
            &lab.admin_bind,
            "-w",
            &lab.admin_password,
            "-s",
            "base",
            "-b",
            dn,
            attribute,
        ])
        .env("LDAPTLS_CACERT", &lab.ca_pem)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ldapsearch {dn} {attribute}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case(attribute)
                .then(|| value.to_owned())
        })
        .collect()
}

fn domain_admins(lab: &Lab) -> String {
    format!("CN=Domain Admins,CN=Users,{}", lab.base_dn)
}

/// Removes `member` from `group` when dropped: the test's changes to groups outside its OU
/// are undone even when it fails.
struct Unlink<'a> {
    lab: &'a Lab,
    group: String,
    member: String,
}

impl<'a> Unlink<'a> {
    /// Adds `member` to `group` now.
    fn add(lab: &'a Lab, group: &str, member: &str) -> Unlink<'a> {
        lab.ldif(
            "ldapmodify",
            &format!("dn: {group}\nchangetype: modify\nadd: member\nmember: {member}\n\n"),
        );
        Unlink {
            lab,
            group: group.to_owned(),
            member: member.to_owned(),
        }
    }

    fn remove(&self) {
        self.lab.ldif("ldapmodify", &self.ldif());
    }

    fn ldif(&self) -> String {
        format!(
            "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n\n",
            self.group, self.member
        )
    }
}

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        // Already removed (or the member is gone): nothing to undo.
        let _ = try_ldif(self.lab, &self.lab.ldaps_url, "ldapmodify", &self.ldif());
    }
}

/// The assertions of one class, all checked, reported together at the end.
struct Findings {
    class: &'static str,
    failed: Vec<String>,
}

impl Findings {
    fn new(class: &'static str) -> Findings {
        Findings {
            class,
            failed: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let message = format!("[{}] {}", self.class, what());
            eprintln!("FINDING {message}");
            self.failed.push(message);
        }
    }

    fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} of the expectations failed:\n{}",
            self.failed.len(),
            self.failed.join("\n")
        );
    }
}

/// The record of `dn` (case-insensitive) in a full sync's outbox lines: its objectGUID.
fn guid_of(lines: &[Value], dn: &str) -> String {
    lines
        .iter()
        .find(|l| {
            l["record"]["dn"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(dn))
        })
        .and_then(|l| l["record"]["object_guid"].as_str())
        .unwrap_or_else(|| panic!("{dn} is not in the outbox: {lines:#?}"))
        .to_owned()
}

/// What the platform shows of a user, in one line.
fn show(record: Option<&Value>) -> String {
    let Some(r) = record else {
        return "nothing (not on the platform)".to_owned();
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|g| g["name"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let privileges: Vec<String> = r["privileges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| format!("{} via {:?}", p["group"]["name"], names(&p["via"])))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "dn={} title={} status={} locked_out={} groups={:?} privileges={:?}",
        r["dn"],
        r["title"],
        r["account"]["status"],
        r["account"]["locked_out"],
        names(&r["groups"]),
        privileges
    )
}

fn has_group(record: Option<&Value>, sid: &str) -> bool {
    record.is_some_and(|r| {
        r["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["sid"] == sid))
    })
}

fn privileged_by(record: Option<&Value>, sid: &str) -> bool {
    record.is_some_and(|r| {
        r["privileges"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["group"]["sid"] == sid))
    })
}

fn domain_admins_sid() -> String {
    let domain = std::env::var("ADLAB_DOMAIN_SID")
        .unwrap_or_else(|_| panic!("ADLAB_DOMAIN_SID is not set: eval \"$(scripts/lab-dc env)\""));
    format!("{domain}-512")
}

/// Class 1. An OU renamed (its children's uSNChanged untouched: measured on Samba 4.17),
/// then a membership change of one of its users; and an OU moved into `base_dn` from
/// outside. The next delta must show the new DNs and the moved-in user, and the delta after
/// the membership change must deliver it.
#[test]
fn samba_lab_ou_renamed_or_moved_into_base_dn_reaches_the_platform_by_the_next_delta() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("ren", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let sub = format!("OU=Dept,{ou}");
    let mut ldif = format!("dn: {sub}\nobjectClass: organizationalUnit\n\n");
    for i in 0..3 {
        ldif.push_str(&user_ldif(&sub, "rend", i));
    }
    ldif.push_str(&format!(
        "dn: CN=GG-rend,{sub}\nobjectClass: group\nsAMAccountName: gg-rend-{}\nmember: CN=rend User 0,{sub}\nmember: CN=rend User 1,{sub}\n\n",
        unique()
    ));
    lab.ldif("ldapadd", &ldif);
    // A sibling OU outside base_dn, with one user, moved under base_dn later.
    let outside_name = format!("E2E-renout-{}", unique());
    let outside = format!("OU={outside_name},{}", lab.base_dn);
    let _cleanup_outside = Cleanup(&lab, outside.clone());
    lab.ldif(
        "ldapadd",
        &format!(
            "dn: {outside}\nobjectClass: organizationalUnit\n\n{}",
            user_ldif(&outside, "renout", 0)
        ),
    );

    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Svc,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    sync(&config, &["sync"], "full sync");
    let full = outbox_lines(&outbox);
    let renamed = format!("OU=Dept-renamed,{ou}");
    let objects: Vec<(String, String)> = [
        "CN=rend User 0",
        "CN=rend User 1",
        "CN=rend User 2",
        "CN=GG-rend",
    ]
    .iter()
    .map(|rdn| {
        (
            guid_of(&full, &format!("{rdn},{sub}")),
            format!("{rdn},{renamed}"),
        )
    })
    .collect();
    let group_sid = full
        .iter()
        .find(|l| l["record"]["object_guid"] == objects[3].0.as_str())
        .map(|l| l["record"]["object_sid"].as_str().unwrap().to_owned())
        .unwrap();

    // Rename OU=Dept; move the outside OU under base_dn.
    lab.ldif(
        "ldapmodify",
        &format!(
            "dn: {sub}\nchangetype: modrdn\nnewrdn: OU=Dept-renamed\ndeleteoldrdn: 1\n\ndn: {outside}\nchangetype: modrdn\nnewrdn: OU={outside_name}\ndeleteoldrdn: 1\nnewsuperior: {ou}\n\n"
        ),
    );
    let log = sync(&config, &["sync"], "delta after the rename and the move");
    let lines = outbox_lines(&outbox);
    let held = platform_state(&lines);
    let mut findings = Findings::new("class 1: OU renamed / moved into base_dn");
    for (guid, dn) in &objects {
        let record = held.get(guid);
        findings.check(
            record.is_some_and(|r| r["dn"].as_str().is_some_and(|d| d.eq_ignore_ascii_case(dn))),
            || {
                format!(
                    "after the delta that followed the rename of OU=Dept, the platform shows {} instead of dn={dn:?}",
                    show(record)
                )
            },
        );
    }
    let moved_in = format!("CN=renout User 0,OU={outside_name},{ou}");
    let sent_moved_in = lines[full.len()..].iter().any(|l| {
        l["op"] == "upsert"
            && l["record"]["dn"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(&moved_in))
    });
    findings.check(sent_moved_in, || {
        format!(
            "the user of the OU moved into base_dn ({moved_in}) was not upserted by the next delta; it sent {} lines: {:?}\n{log}",
            lines.len() - full.len(),
            lines[full.len()..]
                .iter()
                .map(|l| format!("{} {}", l["op"], l["record"]["dn"]))
                .collect::<Vec<_>>()
        )
    });

    // A later membership change for a user under the renamed OU.
    lab.ldif(
        "ldapmodify",
        &format!(
            "dn: CN=GG-rend,{renamed}\nchangetype: modify\ndelete: member\nmember: CN=rend User 0,{renamed}\n\n"
        ),
    );
    let log = sync(
        &config,
        &["sync"],
        "delta after removing rend User 0 from GG-rend",
    );
    let held = platform_state(&outbox_lines(&outbox));
    let user0 = held.get(&objects[0].0);
    findings.check(!has_group(user0, &group_sid), || {
        format!(
            "rend User 0 was removed from GG-rend (under the renamed OU), but after the next delta the platform shows {}\n{log}",
            show(user0)
        )
    });
    findings.finish();
}

/// Class 2. The usual offboarding with an OU-scoped `base_dn`: disable the user and move it
/// to an OU outside `base_dn`. The next delta must delete it on the platform.
#[test]
fn samba_lab_user_moved_out_of_an_ou_scoped_base_dn_is_deleted_by_the_next_delta() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("left", 4);
    let _cleanup = Cleanup(&lab, ou.clone());
    let outside = format!("OU=E2E-leftout-{},{}", unique(), lab.base_dn);
    let _cleanup_outside = Cleanup(&lab, outside.clone());
    lab.ldif(
        "ldapadd",
        &format!("dn: {outside}\nobjectClass: organizationalUnit\n\n"),
    );
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Svc,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    sync(&config, &["sync"], "full sync");
    let full = outbox_lines(&outbox);
    let leaver = format!("CN=left User 3,{ou}");
    let guid = guid_of(&full, &leaver);

    lab.ldif(
        "ldapmodify",
        &format!(
            "dn: {leaver}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n\ndn: {leaver}\nchangetype: modrdn\nnewrdn: CN=left User 3\ndeleteoldrdn: 1\nnewsuperior: {outside}\n\n"
        ),
    );
    let log = sync(&config, &["sync"], "delta after disable + move out");
    let lines = outbox_lines(&outbox);
    let held = platform_state(&lines);
    let mut findings = Findings::new("class 2: object left an OU-scoped base_dn");
    let deleted = lines[full.len()..]
        .iter()
        .any(|l| l["op"] == "delete" && l["record"]["object_guid"] == guid.as_str());
    findings.check(deleted && !held.contains_key(&guid), || {
        format!(
            "{leaver} was disabled and moved to {outside} (outside base_dn), but the next delta sent no delete; the platform shows {}\n{log}",
            show(held.get(&guid))
        )
    });
    findings.finish();
}

/// Class 3. `base_dn` on an OU; a user of that OU added to Domain Admins (CN=Users, outside
/// the OU). The next delta must send the user with the privilege.
#[test]
fn samba_lab_user_added_to_domain_admins_outside_an_ou_scoped_base_dn_is_sent_privileged() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("da", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Svc,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    sync(&config, &["sync"], "full sync");
    let user = format!("CN=da User 0,{ou}");
    let guid = guid_of(&outbox_lines(&outbox), &user);

    let membership = Unlink::add(&lab, &domain_admins(&lab), &user);
    let log = sync(
        &config,
        &["sync"],
        "delta after adding the user to Domain Admins",
    );
    let held = platform_state(&outbox_lines(&outbox));
    let record = held.get(&guid);
    let sid = domain_admins_sid();
    let mut findings = Findings::new("class 3: group outside an OU-scoped base_dn");
    findings.check(
        privileged_by(record, &sid) && has_group(record, &sid),
        || {
            format!(
                "{user} was added to Domain Admins, but after the next delta the platform shows {}\n{log}",
                show(record)
            )
        },
    );
    drop(membership);
    findings.finish();
}

/// Class 4. A group nested in Domain Admins is deleted: its member must no longer be
/// privileged through it, nor list it, after the next delta. (Measured on Samba 4.17:
/// deleting the group changes neither Domain Admins' nor the member's uSNChanged.)
#[test]
fn samba_lab_deleted_group_nested_in_domain_admins_no_longer_privileges_its_members() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("gdel", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let group = format!("CN=Tier0-gdel,{ou}");
    let user = format!("CN=gdel User 0,{ou}");
    lab.ldif(
        "ldapadd",
        &format!(
            "dn: {group}\nobjectClass: group\nsAMAccountName: tier0-gdel-{}\nmember: {user}\n\n",
            unique()
        ),
    );
    let _nesting = Unlink::add(&lab, &domain_admins(&lab), &group);
    // Bound as the administrator: on Samba (as on a default AD) the service account cannot
    // read CN=Deleted Objects (samba_lab_test_full_then_exact_delta), so a delta bound as it
    // could not see the group's tombstone at all; as the administrator it can, and this
    // test is about what the engine does with it.
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Admin,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    sync(&config, &["sync"], "full sync");
    let full = outbox_lines(&outbox);
    let guid = guid_of(&full, &user);
    let group_guid = guid_of(&full, &group);
    let group_sid = full
        .iter()
        .find(|l| l["record"]["object_guid"] == group_guid.as_str())
        .map(|l| l["record"]["object_sid"].as_str().unwrap().to_owned())
        .unwrap();
    let sid = domain_admins_sid();
    let held = platform_state(&full);
    assert!(
        privileged_by(held.get(&guid), &sid),
        "set-up: the full sync must send {user} privileged through {group}: {}",
        show(held.get(&guid))
    );

    lab.ldif("ldapdelete", &format!("{group}\n"));
    let log = sync(&config, &["sync"], "delta after deleting the group");
    let lines = outbox_lines(&outbox);
    let held = platform_state(&lines);
    let record = held.get(&guid);
    let mut findings = Findings::new("class 4: group deleted");
    findings.check(
        !privileged_by(record, &sid) && !has_group(record, &group_sid),
        || {
            format!(
                "{group} (nested in Domain Admins) was deleted, but after the next delta the platform shows {} (group deleted on the platform: {})\n{log}",
                show(record),
                !held.contains_key(&group_guid)
            )
        },
    );
    findings.finish();
}

/// The OCSF items a mock Sekoia accepted for the user named `sam` (`user.name`).
fn sekoia_items_for(requests: &[wiremock::Request], sam: &str) -> Vec<Value> {
    requests
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .flat_map(|b| b["items"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["user"]["name"] == sam)
        .collect()
}

fn ocsf_show(items: &[Value]) -> String {
    if items.is_empty() {
        return "nothing".to_owned();
    }
    items
        .iter()
        .map(|i| {
            let groups: Vec<&str> = i["user"]["groups"]
                .as_array()
                .map(|g| g.iter().filter_map(|g| g["name"].as_str()).collect())
                .unwrap_or_default();
            format!("type={} groups={groups:?}", i["user"]["type"])
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `sync` against the whole domain: other tests' OUs come and go meanwhile, so the delete
/// guard may hold some deletes back (exit 4); anything else is a failure.
async fn domain_sync(config: &Path, args: &'static [&'static str], what: &str) -> String {
    let output = run_async(config, args).await;
    let log = text(&output);
    assert!(matches!(output.status.code(), Some(0 | 4)), "{what}: {log}");
    log
}

/// Class 5. With the Sekoia sink (users re-sent inside group changes) and the whole domain
/// in scope: full sync (user in Domain Admins) → removed from Domain Admins → delta (the user
/// is re-sent as a group change's affected user) → re-added → `sync --full` must send the
/// user again as an Admin.
#[tokio::test(flavor = "multi_thread")]
async fn samba_lab_sekoia_full_sync_resends_a_user_whose_privilege_came_back() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("sek", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let user = format!("CN=sek User 0,{ou}");
    let sam = format!("{}sek0", unique());
    let membership = Unlink::add(&lab, &domain_admins(&lab), &user);
    let server = MockServer::start().await;
    accept_all(&server).await;
    // The whole domain: Domain Admins must be in scope for its member changes to reach the
    // sink as a group change with affected users.
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &lab.base_dn,
        Account::Svc,
        &sekoia_sink(&server, 30),
    );
    let log = domain_sync(&config, &["sync"], "full sync").await;
    let first = sekoia_items_for(&server.received_requests().await.unwrap(), &sam);
    assert!(
        first.iter().any(|i| i["user"]["type"] == "Admin"),
        "set-up: the full sync must send {sam} as an Admin: {}\n{log}",
        ocsf_show(&first)
    );

    membership.remove();
    accept_all(&server).await;
    let log = domain_sync(
        &config,
        &["sync"],
        "delta after removing it from Domain Admins",
    )
    .await;
    let removed = sekoia_items_for(&server.received_requests().await.unwrap(), &sam);
    println!(
        "===== delta after the removal sent for {sam}: {}",
        ocsf_show(&removed)
    );
    let mut findings = Findings::new("class 5: Sekoia, users re-sent inside group changes");
    findings.check(
        !removed.is_empty() && removed.iter().all(|i| i["user"]["type"] != "Admin"),
        || {
            format!(
                "{sam} was removed from Domain Admins; the next delta sent: {}\n{log}",
                ocsf_show(&removed)
            )
        },
    );

    let membership = Unlink::add(&lab, &domain_admins(&lab), &user);
    accept_all(&server).await;
    let log = domain_sync(&config, &["sync", "--full"], "full sync after re-adding it").await;
    let again = sekoia_items_for(&server.received_requests().await.unwrap(), &sam);
    findings.check(
        again.iter().any(|i| i["user"]["type"] == "Admin"),
        || {
            format!(
                "{sam} was added back to Domain Admins, but `sync --full` sent for it: {} (the platform still shows the delta's non-Admin user)\n{log}",
                ocsf_show(&again)
            )
        },
    );
    drop(membership);
    findings.finish();
}

/// Class 6. `base_dn` in another valid spelling (spaces after the commas, another case):
/// a deleted user must be deleted on the platform by the next delta (bound as the
/// administrator, who can read tombstones), or at the latest by the next full sync.
#[test]
fn samba_lab_base_dn_spelled_with_spaces_still_deletes_a_deleted_user() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    // 12 users and a group: one delete is 1/13 of the objects, below the delete guard's 10%.
    let ou = lab.scratch_ou("spc", 12);
    let _cleanup = Cleanup(&lab, ou.clone());
    // `OU=E2E-spc-…, DC=corp, dc=Example, DC=test`: the same DN for AD.
    let spelled = ou
        .split(',')
        .collect::<Vec<_>>()
        .join(", ")
        .replace("DC=example", "dc=Example");
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &spelled,
        Account::Admin,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    let log = sync(&config, &["sync"], "full sync");
    let full = outbox_lines(&outbox);
    assert_eq!(
        full.iter().filter(|l| l["kind"] == "user").count(),
        12,
        "set-up: the full sync with base_dn {spelled:?} reads the OU's 12 users\n{log}"
    );
    let victim = format!("CN=spc User 5,{ou}");
    let guid = guid_of(&full, &victim);

    lab.ldif("ldapdelete", &format!("{victim}\n"));
    let log = sync(&config, &["sync"], "delta after the delete");
    let lines = outbox_lines(&outbox);
    let deleted_by = |lines: &[Value]| {
        lines
            .iter()
            .any(|l| l["op"] == "delete" && l["record"]["object_guid"] == guid.as_str())
    };
    let mut findings = Findings::new("class 6: base_dn spelled with spaces");
    findings.check(deleted_by(&lines[full.len()..]), || {
        format!(
            "with base_dn = {spelled:?}, {victim} was deleted but the next delta sent no delete (platform: {})\n{log}",
            show(platform_state(&lines).get(&guid))
        )
    });
    let before = lines.len();
    let output = run(&config, &["sync", "--full"]);
    let log = text(&output);
    println!("===== full sync after the delete\n{log}");
    let lines = outbox_lines(&outbox);
    findings.check(
        output.status.success() && deleted_by(&lines[full.len()..]),
        || {
            format!(
                "with base_dn = {spelled:?}, {victim} is still on the platform after the next full sync too ({} lines sent: {:?})\n{log}",
                lines.len() - before,
                lines[before..]
                    .iter()
                    .map(|l| format!("{} {}", l["op"], l["record"]["dn"]))
                    .collect::<Vec<_>>()
            )
        },
    );
    findings.finish();
}

/// libfaketime, which `.ci/run` installs (Debian package `faketime`).
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("libfaketime.so.1 not found under /usr/lib/*/faketime: apt-get install faketime (.ci/run does)")
        })
}

/// The binary with its clock `skew_secs` ahead of this machine's (the DCs'), monotonic time
/// left alone.
fn run_skewed(config: &Path, args: &[&str], skew_secs: u64) -> Output {
    bin()
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("+{skew_secs}"))
        .env("DONT_FAKE_MONOTONIC", "1")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sleep until this machine's (the DC's) clock reads `at` (Unix seconds). The lockout's end
/// is an instant on the DC's clock: there is nothing to wait on but time.
fn sleep_until(at: f64) {
    let now = unix_now();
    if at > now {
        std::thread::sleep(Duration::from_secs_f64(at - now));
    }
}

/// Deletes a PSO when dropped.
struct Pso<'a>(&'a Lab, String);

impl Drop for Pso<'_> {
    fn drop(&mut self) {
        let _ = try_ldif(
            self.0,
            &self.0.ldaps_url,
            "ldapdelete",
            &format!("{}\n", self.1),
        );
    }
}

/// Lockout duration of the test's PSO, and how far the connector's clock runs ahead.
const LOCKOUT_SECS: f64 = 40.0;
const SKEW_SECS: u64 = 20;

/// Class 7. The connector's clock runs `SKEW_SECS` ahead of the DC's (libfaketime). A user
/// locked out under a PSO of its own (threshold 2, duration `LOCKOUT_SECS`: no domain-wide
/// policy touched; Samba 4.17 ends the lockout in msDS-User-Account-Control-Computed after
/// the PSO's duration, measured) must reach the platform as unlocked by a delta after the
/// lockout ended. The delta that ran when the end was inside the skew (past on the host's
/// clock, not yet on the DC's) saw it still locked.
#[test]
fn samba_lab_lockout_ending_inside_the_clock_skew_reaches_the_platform_unlocked() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("skew", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let user = format!("CN=skew User 0,{ou}");
    let password = format!("Sk3w-{}-Pw!", unique());
    let utf16: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    lab.ldif(
        "ldapmodify",
        &format!(
            "dn: {user}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\nreplace: userAccountControl\nuserAccountControl: 512\n\n",
            base64(&utf16)
        ),
    );
    let ticks = |secs: f64| format!("-{}", (secs * 1e7) as i64);
    let pso = format!(
        "CN=PSO-E2E-skew-{},CN=Password Settings Container,CN=System,{}",
        unique(),
        lab.base_dn
    );
    lab.ldif(
        "ldapadd",
        &format!(
            "dn: {pso}\nobjectClass: msDS-PasswordSettings\nmsDS-PasswordSettingsPrecedence: 5\nmsDS-PasswordReversibleEncryptionEnabled: FALSE\nmsDS-PasswordHistoryLength: 0\nmsDS-MinimumPasswordLength: 7\nmsDS-PasswordComplexityEnabled: TRUE\nmsDS-MinimumPasswordAge: 0\nmsDS-MaximumPasswordAge: {}\nmsDS-LockoutThreshold: 2\nmsDS-LockoutObservationWindow: {}\nmsDS-LockoutDuration: {}\nmsDS-PSOAppliesTo: {user}\n\n",
            ticks(365.0 * 86400.0),
            ticks(LOCKOUT_SECS),
            ticks(LOCKOUT_SECS)
        ),
    );
    let _pso = Pso(&lab, pso);
    // Two failed binds lock the user out.
    for _ in 0..3 {
        let _ = Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                &lab.ldaps_url,
                "-D",
                &user,
                "-w",
                "wrong-password",
            ])
            .args(["-s", "base", "-b", "", "dnsHostName"])
            .env("LDAPTLS_CACERT", &lab.ca_pem)
            .output()
            .unwrap();
    }
    let computed = |lab: &Lab| -> i64 {
        read_attr(
            lab,
            &lab.ldaps_url,
            &user,
            "msDS-User-Account-Control-Computed",
        )
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
    };
    assert_ne!(computed(&lab) & 0x10, 0, "set-up: {user} is not locked out");
    let lockout_time: i64 = read_attr(&lab, &lab.ldaps_url, &user, "lockoutTime")[0]
        .parse()
        .unwrap();
    // FILETIME → Unix seconds: when the lockout ends, on the DC's clock.
    let ends = lockout_time as f64 / 1e7 - 11_644_473_600.0 + LOCKOUT_SECS;

    // Bound as the administrator: the lockout duration is the PSO's, which only Domain
    // Admins can read (the service account's boundary search would not know it at all).
    let config = config_at(
        &lab,
        dir.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Admin,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    let skewed = |what: &str| -> String {
        let output = run_skewed(&config, &["sync"], SKEW_SECS);
        let log = text(&output);
        assert!(output.status.success(), "{what}: {log}");
        println!("===== {what} (clock +{SKEW_SECS} s)\n{log}");
        log
    };
    skewed("full sync");
    assert!(
        unix_now() + (SKEW_SECS as f64) < ends,
        "set-up too slow: the full sync must start before the lockout's end is inside the skew"
    );
    let guid = guid_of(&outbox_lines(&outbox), &user);
    let locked = |held: &BTreeMap<String, Value>| {
        held.get(&guid).map(|r| r["account"]["locked_out"].clone())
    };
    assert_eq!(
        locked(&platform_state(&outbox_lines(&outbox))),
        Some(Value::Bool(true)),
        "set-up: the full sync sends the user locked out"
    );

    // 10 s before the end: on the connector's clock the end has passed (+20 s), so this
    // delta's window holds it, but the DC still says locked.
    sleep_until(ends - 10.0);
    assert!(
        unix_now() < ends - 2.0,
        "set-up too slow: this delta must run before the lockout ends on the DC's clock"
    );
    skewed("delta while the end is inside the skew");
    // After the end on the DC's clock too.
    sleep_until(ends + 3.0);
    assert_eq!(computed(&lab) & 0x10, 0, "the DC says {user} is unlocked");
    let log1 = skewed("delta after the lockout ended");
    let log2 = skewed("another delta");
    let held = platform_state(&outbox_lines(&outbox));
    let mut findings = Findings::new("class 7: host clock ahead of the DC's");
    findings.check(locked(&held) == Some(Value::Bool(false)), || {
        format!(
            "the lockout of {user} ended (the DC says unlocked), but after two more deltas the platform shows {}\n{log1}\n{log2}",
            show(held.get(&guid))
        )
    });
    findings.finish();
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Holds dc2's inbound replication (NTDS Settings `options` |= DISABLE_INBOUND_REPL, 0x2:
/// honoured by Samba 4.17, which then refuses even `samba-tool drs replicate`, so another
/// test's `replicate()` fails while it is held); dropping it restores the option and
/// replicates.
struct HoldInbound<'a> {
    lab: &'a Lab,
    url: String,
    dsa: String,
    options: i64,
}

impl<'a> HoldInbound<'a> {
    fn start(lab: &'a Lab, url: &str) -> HoldInbound<'a> {
        let dsa = read_attr(lab, url, "", "dsServiceName")
            .pop()
            .expect("dc2's rootDSE names its NTDS Settings");
        let options = read_attr(lab, url, &dsa, "options")
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let hold = HoldInbound {
            lab,
            url: url.to_owned(),
            dsa,
            options: options & !2,
        };
        ldif_on(lab, url, "ldapmodify", &hold.ldif(hold.options | 2));
        hold
    }

    fn ldif(&self, options: i64) -> String {
        format!(
            "dn: {}\nchangetype: modify\nreplace: options\noptions: {options}\n\n",
            self.dsa
        )
    }

    fn release(&self) {
        if let Err(e) = try_ldif(self.lab, &self.url, "ldapmodify", &self.ldif(self.options)) {
            eprintln!("could not restore the options of {}: {e}", self.dsa);
        }
    }
}

impl Drop for HoldInbound<'_> {
    fn drop(&mut self) {
        self.release();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab-dc");
        let _ = Command::new(script).arg("replicate").output();
    }
}

/// Class 8. Failover to a lagging DC, then failback: a title changed on dc1 and sent; dc2
/// does not have it yet (its inbound replication held); dc1 unreachable → a full sync on
/// dc2 re-sends the old title; dc1 back → the delta must leave the platform with the new
/// title. Then, once dc2 replicated, a clean cycle must leave the platform equal to the
/// directory.
#[test]
fn samba_lab_failback_after_a_full_sync_on_a_lagging_dc_restores_the_new_value() {
    let lab = lab();
    let dc2_url = std::env::var("ADLAB_DC2_LDAPS_URL").unwrap_or_else(|_| {
        panic!("ADLAB_DC2_LDAPS_URL is not set: the lab has no second DC (scripts/lab-dc start)")
    });
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("lag", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    let user = format!("CN=lag User 0,{ou}");
    let title = |t: &str| {
        lab.ldif(
            "ldapmodify",
            &format!("dn: {user}\nchangetype: modify\nreplace: title\ntitle: {t}\n\n"),
        );
    };
    title("Old title");
    replicate();

    let mut dc1 = Forwarder::start(
        "127.0.0.2:0".parse().unwrap(),
        "127.0.0.2:636".parse().unwrap(),
    );
    let dc1_url = format!("ldaps://dc1.corp.example.test:{}", dc1.addr.port());
    // As the administrator, like samba_lab_failover_between_two_real_dcs_keeps_a_checkpoint_per_dc.
    let config = config_at(
        &lab,
        dir.path(),
        &[&dc1_url, &dc2_url],
        &ou,
        Account::Admin,
        &jsonl_sink(dir.path()),
    );
    let outbox = dir.path().join("outbox.jsonl");
    let log = sync(&config, &["sync"], "full on dc1");
    assert!(log.contains("reads from dc1.corp.example.test"), "{log}");
    let guid = guid_of(&outbox_lines(&outbox), &user);
    let shown = |what: &str| -> Value {
        platform_state(&outbox_lines(&outbox))
            .get(&guid)
            .map(|r| r["title"].clone())
            .unwrap_or_else(|| panic!("{what}: {user} not on the platform"))
    };

    let hold = HoldInbound::start(&lab, &dc2_url);
    title("New title");
    let log = sync(&config, &["sync"], "delta on dc1");
    assert_eq!(shown("delta on dc1"), "New title", "{log}");
    assert_eq!(
        read_attr(&lab, &dc2_url, &user, "title"),
        ["Old title"],
        "set-up: dc2 must lag"
    );

    dc1.stop();
    let log = sync(&config, &["sync"], "failover to the lagging dc2");
    assert!(log.contains("reads from dc2.corp.example.test"), "{log}");
    println!(
        "===== the platform after the failover shows title {}",
        shown("failover")
    );

    let mut dc1 = Forwarder::start(dc1.addr, "127.0.0.2:636".parse().unwrap());
    let log = sync(&config, &["sync"], "failback to dc1");
    assert!(log.contains("reads from dc1.corp.example.test"), "{log}");
    let mut findings = Findings::new("class 8: failover to a lagging DC, then failback");
    let after = shown("failback");
    findings.check(after == "New title", || {
        format!(
            "dc1 holds title \"New title\" for {user}; after the failover full sync on the lagging dc2 and the failback delta on dc1 the platform shows title {after}\n{log}"
        )
    });

    // dc2 catches up; a clean cycle on dc1 must leave the platform equal to the directory.
    drop(hold);
    assert_eq!(read_attr(&lab, &dc2_url, &user, "title"), ["New title"]);
    let log = sync(&config, &["sync"], "clean cycle on dc1 after replication");
    let held = comparable(platform_state(&outbox_lines(&outbox)));
    let reference = tempfile::tempdir().unwrap();
    let reference_config = config_at(
        &lab,
        reference.path(),
        &[&lab.ldaps_url],
        &ou,
        Account::Admin,
        &jsonl_sink(reference.path()),
    );
    sync(&reference_config, &["sync"], "reference full sync of dc1");
    let directory = comparable(platform_state(&outbox_lines(
        &reference.path().join("outbox.jsonl"),
    )));
    let differing: Vec<String> = directory
        .iter()
        .filter(|(guid, record)| held.get(*guid) != Some(*record))
        .map(|(guid, record)| {
            format!(
                "{}: directory title {}, platform {}",
                record["dn"],
                record["title"],
                held.get(guid)
                    .map_or("nothing".to_owned(), |r| r["title"].to_string())
            )
        })
        .collect();
    findings.check(differing.is_empty() && held.len() == directory.len(), || {
        format!(
            "after replication and a clean cycle on dc1 the platform differs from the directory: {differing:?}\n{log}"
        )
    });
    dc1.stop();
    findings.finish();
}
