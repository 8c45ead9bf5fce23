//! End to end against the real Samba AD DC lab (`scripts/lab-dc`), through the real binary.
//!
//! Each test works in an OU of its own under the lab's OU=Corp, so tests (and the
//! `ad-source` tests running at the same time) never see each other's changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{bin, outbox_lines, run, text};

pub(crate) struct Lab {
    pub(crate) ldaps_url: String,
    pub(crate) ca_der: String,
    pub(crate) ca_pem: String,
    pub(crate) base_dn: String,
    pub(crate) admin_bind: String,
    pub(crate) admin_password: String,
    pub(crate) svc_bind: String,
    pub(crate) svc_password: String,
}

pub(crate) fn lab() -> Lab {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the Samba lab tests need the lab. Run scripts/lab-dc start and eval \"$(scripts/lab-dc env)\", or use scripts/test"
            )
        })
    };
    Lab {
        ldaps_url: var("ADLAB_LDAPS_URL"),
        ca_der: var("ADLAB_CA_FILE_DER"),
        ca_pem: var("ADLAB_CA_FILE"),
        base_dn: var("ADLAB_BASE_DN"),
        admin_bind: var("ADLAB_ADMIN_BIND"),
        admin_password: var("ADLAB_ADMIN_PASSWORD"),
        svc_bind: var("ADLAB_SVC_BIND"),
        svc_password: var("ADLAB_SVC_PASSWORD"),
    }
}

impl Lab {
    /// Apply LDIF as the domain administrator over LDAPS.
    pub(crate) fn ldif(&self, tool: &str, ldif: &str) {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.ldaps_url,
                "-D",
                &self.admin_bind,
                "-w",
                &self.admin_password,
            ])
            .env("LDAPTLS_CACERT", &self.ca_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}\n{ldif}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Remove an OU and everything in it.
    pub(crate) fn remove_tree(&self, dn: &str) {
        let _ = Command::new("ldapdelete")
            .args([
                "-x",
                "-r",
                "-H",
                &self.ldaps_url,
                "-D",
                &self.admin_bind,
                "-w",
                &self.admin_password,
                dn,
            ])
            .env("LDAPTLS_CACERT", &self.ca_pem)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A fresh OU with `users` users (uid-0 … uid-N) and one group holding the first two.
    pub(crate) fn scratch_ou(&self, tag: &str, users: usize) -> String {
        // At the domain root, not under OU=Corp: other tests count OU=Corp's users.
        let ou = format!("OU=E2E-{tag}-{},{}", unique(), self.base_dn);
        let mut ldif = format!("dn: {ou}\nobjectClass: organizationalUnit\n\n");
        for i in 0..users {
            ldif.push_str(&user_ldif(&ou, tag, i));
        }
        ldif.push_str(&format!(
            "dn: CN=GG-{tag},{ou}\nobjectClass: group\nsAMAccountName: gg-{tag}-{}\nmember: CN={tag} User 0,{ou}\nmember: CN={tag} User 1,{ou}\n\n",
            unique()
        ));
        self.ldif("ldapadd", &ldif);
        ou
    }

    pub(crate) fn config(&self, dir: &Path, base_dn: &str, sink: &str) -> PathBuf {
        let password_file = dir.join("bind-password");
        std::fs::write(&password_file, format!("{}\n", self.svc_password)).unwrap();
        let config = dir.join("ad-connector.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\n\n[source]\nurl = {url:?}\nbind = {bind:?}\npassword_file = {pw:?}\nca_file = {ca:?}\nbase_dn = {base:?}\n\n{sink}\n",
                state = dir.join("state"),
                url = self.ldaps_url,
                bind = self.svc_bind,
                pw = password_file,
                ca = self.ca_der,
                base = base_dn,
            ),
        )
        .unwrap();
        config
    }
}

/// Deletes the test's OU when the test ends, passed or failed.
pub(crate) struct Cleanup<'a>(pub(crate) &'a Lab, pub(crate) String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.remove_tree(&self.1);
    }
}

pub(crate) fn user_ldif(ou: &str, tag: &str, i: usize) -> String {
    format!(
        "dn: CN={tag} User {i},{ou}\nobjectClass: user\nsAMAccountName: {}{tag}{i}\nuserPrincipalName: {tag}.{i}.{u}@corp.example.test\ngivenName: {tag}\nsn: User {i}\nmail: {tag}.{i}.{u}@example.test\n\n",
        unique(),
        u = unique()
    )
}

/// A short tag unique to this process (sAMAccountName allows 20 characters).
pub(crate) fn unique() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!(
            "{:x}",
            (nanos as u64 ^ u64::from(std::process::id())) & 0xff_ffff
        )
    })
}

pub(crate) fn jsonl_sink(dir: &Path) -> String {
    format!(
        "[sink]\nkind = \"jsonl\"\n[sink.jsonl]\npath = {:?}\n",
        dir.join("outbox.jsonl")
    )
}

#[test]
fn samba_lab_test_full_then_exact_delta() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("delta", 6);
    let _cleanup = Cleanup(&lab, ou.clone());
    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));

    let test = run(&config, &["test"]);
    assert!(test.status.success(), "{}", text(&test));
    let out = String::from_utf8_lossy(&test.stdout);
    assert!(out.contains("PASS") && !out.contains("FAIL"), "{out}");

    let full = run(&config, &["sync"]);
    assert!(full.status.success(), "{}", text(&full));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let users = lines.iter().filter(|l| l["kind"] == "user").count();
    let groups = lines.iter().filter(|l| l["kind"] == "group").count();
    assert_eq!((users, groups), (6, 1), "{}", text(&full));

    // Nothing changed: a delta sends nothing.
    let idle = run(&config, &["sync"]);
    assert!(idle.status.success(), "{}", text(&idle));
    assert_eq!(
        outbox_lines(&dir.path().join("outbox.jsonl")).len(),
        7,
        "{}",
        text(&idle)
    );

    // Modify 3 users, delete 1 (not in the group), add 1.
    let mut ldif = String::new();
    for i in 2..5 {
        ldif.push_str(&format!(
            "dn: CN=delta User {i},{ou}\nchangetype: modify\nreplace: title\ntitle: Changed {i}\n\n"
        ));
    }
    ldif.push_str(&format!("dn: CN=delta User 5,{ou}\nchangetype: delete\n\n"));
    lab.ldif("ldapmodify", &ldif);
    lab.ldif("ldapadd", &user_ldif(&ou, "delta", 6));

    let delta = run(&config, &["sync"]);
    assert!(delta.status.success(), "{}", text(&delta));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let new: Vec<&serde_json::Value> = lines[7..].iter().collect();
    let upserts: Vec<String> = new
        .iter()
        .filter(|l| l["op"] == "upsert")
        .map(|l| l["record"]["dn"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(upserts.len(), 4, "{upserts:#?}\n{}", text(&delta));
    for i in [2, 3, 4, 6] {
        assert!(
            upserts
                .iter()
                .any(|dn| dn.starts_with(&format!("CN=delta User {i},"))),
            "{upserts:#?}"
        );
    }
    // The least-privilege account cannot read tombstones on Samba (as on a default AD):
    // the delta says so plainly instead of pretending nothing was deleted...
    let stderr = String::from_utf8_lossy(&delta.stderr);
    assert!(
        stderr.contains("deletions are not reported") && stderr.contains("CN=Deleted Objects"),
        "{}",
        text(&delta)
    );
    assert_eq!(new.iter().filter(|l| l["op"] == "delete").count(), 0);

    // ...and the full sync finds the deleted user missing. One of this small scope's 8
    // objects is 12.5%, above the delete guard's 10%: the delete is withheld (exit 4), said
    // in a sentence and listed by `status`, until confirmed.
    let guarded = run(&config, &["sync", "--full"]);
    assert_eq!(guarded.status.code(), Some(4), "{}", text(&guarded));
    assert!(
        String::from_utf8_lossy(&guarded.stdout).contains("1 deletes withheld"),
        "{}",
        text(&guarded)
    );
    assert_eq!(outbox_lines(&dir.path().join("outbox.jsonl")).len(), 11);
    let status = run(&config, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let withheld = value["withheld_deletes"].as_array().unwrap();
    assert_eq!(withheld.len(), 1, "{value:#}");
    assert!(
        withheld[0]["dn"]
            .as_str()
            .unwrap()
            .starts_with("CN=delta User 5,")
    );
    // A wrong count releases nothing.
    let wrong = run(&config, &["sync", "--full", "--confirm-deletes", "2"]);
    assert_eq!(wrong.status.code(), Some(4), "{}", text(&wrong));
    assert_eq!(outbox_lines(&dir.path().join("outbox.jsonl")).len(), 11);
    // The exact count sends the delete, and nothing else.
    let full = run(&config, &["sync", "--full", "--confirm-deletes", "1"]);
    assert!(full.status.success(), "{}", text(&full));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let new: Vec<&serde_json::Value> = lines[11..].iter().collect();
    assert_eq!(new.len(), 1, "{new:#?}\n{}", text(&full));
    assert_eq!(new[0]["op"], "delete");
    assert!(
        new[0]["record"]["dn"]
            .as_str()
            .unwrap()
            .starts_with("CN=delta User 5,"),
        "{:#?}",
        new[0]
    );
    let status = run(&config, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["state"], "Processed");
    assert_eq!(value["tracked"]["users"], 6);
    assert!(value["withheld_deletes"].as_array().unwrap().is_empty());
}

/// A loopback Sekoia endpoint that records what it accepted.
pub(crate) fn sekoia_sink(server: &MockServer, retry_secs: u32) -> String {
    format!(
        "[sink]\nkind = \"sekoia\"\n[sink.sekoia]\nbase_url = {:?}\nconnector_uuid = \"0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10\"\napi_key = \"sk-e2e-SECRET-api-key\"\nbatch_size = 100\n[sink.sekoia.http]\nmax_retry_secs = {retry_secs}\ninitial_backoff_ms = 50\nmax_backoff_secs = 0.5\n[pipeline]\nbatch_size = 100\nconcurrency = 1\n",
        server.uri()
    )
}

/// Run the binary without blocking the async runtime the mock server lives on.
pub(crate) async fn run_async(
    config: &Path,
    args: &'static [&'static str],
) -> std::process::Output {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || run(&config, args))
        .await
        .unwrap()
}

/// From now on, the mock platform accepts everything at once.
pub(crate) async fn accept_all(server: &MockServer) {
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(server)
        .await;
}

fn accepted_uids(server_requests: &[wiremock::Request]) -> Vec<String> {
    let mut uids = Vec::new();
    for request in server_requests {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        for item in body["items"].as_array().unwrap() {
            uids.push(item["user"]["uid_alt"].as_str().unwrap().to_owned());
        }
    }
    uids
}

#[tokio::test(flavor = "multi_thread")]
async fn samba_lab_sink_outage_does_not_advance_the_checkpoint() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("outage", 30);
    let _cleanup = Cleanup(&lab, ou.clone());
    let server = MockServer::start().await;
    let config = lab.config(dir.path(), &ou, &sekoia_sink(&server, 2));

    // The platform is down for longer than the retry budget: the cycle fails, nothing is
    // recorded, no checkpoint.
    Mock::given(method("POST"))
        .and(path_regex("^/api/v2/asset-management/asset-connector/"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let down = run_async(&config, &["sync", "--log", "trace"]).await;
    assert_eq!(down.status.code(), Some(6), "{}", text(&down));
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(stderr.contains("503"), "{}", text(&down));
    assert!(
        !stderr.contains("sk-e2e-SECRET-api-key"),
        "the API key leaked into logs"
    );
    assert!(
        !stderr.contains(&lab.svc_password),
        "the bind password leaked into logs"
    );
    let status = run_async(&config, &["status", "--json"]).await;
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(value["checkpoint"].is_null(), "{value}");

    // Down for two more requests, then up: retried within the budget, then accepted.
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"task_id": "t-1"})),
        )
        .mount(&server)
        .await;
    let up = run_async(&config, &["sync"]).await;
    assert!(up.status.success(), "{}", text(&up));
    let requests = server.received_requests().await.unwrap();
    let accepted = accepted_uids(&requests[2..]);
    assert_eq!(
        accepted.len(),
        30,
        "every user delivered once the platform came back"
    );
    let status = run_async(&config, &["status", "--json"]).await;
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(value["checkpoint"]["usn"].as_u64().unwrap() > 0, "{value}");

    // Secrets are not in the state database.
    let db = std::fs::read(dir.path().join("state/state.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains("sk-e2e-SECRET-api-key") && !db.contains(&lab.svc_password));
}

#[tokio::test(flavor = "multi_thread")]
async fn samba_lab_kill_9_mid_sync_loses_nothing() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("kill", 600);
    let _cleanup = Cleanup(&lab, ou.clone());
    let server = MockServer::start().await;
    // Slow platform: each batch of 100 takes 700 ms, so the sync is killable mid-way.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({}))
                .set_delay(Duration::from_millis(700)),
        )
        .mount(&server)
        .await;
    let config = lab.config(dir.path(), &ou, &sekoia_sink(&server, 30));

    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("sync")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until at least 3 batches were answered, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = server.received_requests().await.unwrap().len();
        if n >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the sync did not progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first_run = accepted_uids(&server.received_requests().await.unwrap());
    assert!(first_run.len() < 600, "killed mid-way");

    // Rerun against a fast platform.
    accept_all(&server).await;
    let rerun = run_async(&config, &["sync"]).await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    let second_run = accepted_uids(&server.received_requests().await.unwrap());

    let mut all: Vec<String> = first_run.iter().chain(second_run.iter()).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 600, "nothing lost across the crash");
    // Re-sent: at most the batches in flight when killed (concurrency 1 → one batch), since
    // everything acknowledged before the kill was recorded.
    let resent = first_run
        .iter()
        .filter(|uid| second_run.contains(uid))
        .count();
    assert!(
        resent <= 100,
        "re-sent {resent} users, more than one unacknowledged batch"
    );

    // And the state says so: a delta now sends nothing.
    accept_all(&server).await;
    let idle = run_async(&config, &["sync"]).await;
    assert!(idle.status.success(), "{}", text(&idle));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        0,
        "{}",
        text(&idle)
    );
}

/// What the platform holds after applying an outbox's lines in order: objectGUID → record.
pub(crate) fn platform_state(
    lines: &[serde_json::Value],
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut held = std::collections::BTreeMap::new();
    for line in lines {
        let guid = line["record"]["object_guid"].as_str().unwrap().to_owned();
        if line["op"] == "delete" {
            held.remove(&guid);
        } else {
            held.insert(guid, line["record"].clone());
        }
    }
    held
}

/// The records as an independent first full sync of the same scope reads them now.
pub(crate) fn directory_state(
    lab: &Lab,
    ou: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let config = lab.config(dir.path(), ou, &jsonl_sink(dir.path()));
    let output = run(&config, &["sync"]);
    assert!(output.status.success(), "{}", text(&output));
    platform_state(&outbox_lines(&dir.path().join("outbox.jsonl")))
}

/// Without the fields that change on every read or that only bookkeeping carries.
pub(crate) fn comparable(
    mut records: std::collections::BTreeMap<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    for record in records.values_mut() {
        if let Some(object) = record.as_object_mut() {
            object.remove("usn_changed");
            object.remove("when_changed");
        }
    }
    records
}

/// The bug this guards against: a full sync after changes used to send the changed objects as
/// an upsert and then a delete in the same cycle.
#[test]
fn samba_lab_full_sync_after_changes_sends_no_deletes_and_matches_the_directory() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("fullre", 8);
    let _cleanup = Cleanup(&lab, ou.clone());
    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));
    let full = run(&config, &["sync"]);
    assert!(full.status.success(), "{}", text(&full));
    let before = outbox_lines(&dir.path().join("outbox.jsonl")).len();

    // Three users modified, one group's members changed (one added, one removed).
    let mut ldif = String::new();
    for i in [2, 3, 4] {
        ldif.push_str(&format!(
            "dn: CN=fullre User {i},{ou}\nchangetype: modify\nreplace: title\ntitle: Re-titled {i}\n\n"
        ));
    }
    let group = format!("CN=GG-fullre,{ou}");
    ldif.push_str(&format!(
        "dn: {group}\nchangetype: modify\nadd: member\nmember: CN=fullre User 5,{ou}\n-\ndelete: member\nmember: CN=fullre User 1,{ou}\n\n"
    ));
    lab.ldif("ldapmodify", &ldif);

    let again = run(&config, &["sync", "--full"]);
    assert!(again.status.success(), "{}", text(&again));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let new = &lines[before..];
    assert_eq!(
        new.iter().filter(|l| l["op"] == "delete").count(),
        0,
        "{new:#?}"
    );
    // The three users, the group, and the two members whose group list changed.
    assert_eq!(new.len(), 6, "{new:#?}\n{}", text(&again));
    assert_eq!(
        comparable(platform_state(&lines)),
        comparable(directory_state(&lab, &ou)),
        "the platform holds exactly what the directory holds"
    );
}

/// The bug this guards against: a narrower scope made the next full sync delete everything
/// outside it, silently.
#[test]
fn samba_lab_narrower_base_dn_withholds_the_deletes() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("narrow", 10);
    let _cleanup = Cleanup(&lab, ou.clone());
    let sub = format!("OU=Sub,{ou}");
    let mut ldif = format!("dn: {sub}\nobjectClass: organizationalUnit\n\n");
    for i in 0..2 {
        ldif.push_str(&user_ldif(&sub, "narrowsub", i));
    }
    lab.ldif("ldapadd", &ldif);

    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));
    let full = run(&config, &["sync"]);
    assert!(full.status.success(), "{}", text(&full));
    let sent = outbox_lines(&dir.path().join("outbox.jsonl")).len();
    assert_eq!(sent, 13, "12 users and the group");

    // The same state, a base DN that sees only the sub-OU.
    let narrow = lab.config(dir.path(), &sub, &jsonl_sink(dir.path()));
    let guarded = run(&narrow, &["sync"]);
    assert_eq!(guarded.status.code(), Some(4), "{}", text(&guarded));
    let stdout = String::from_utf8_lossy(&guarded.stdout);
    assert!(
        stdout.contains("11 deletes withheld") && stdout.contains("base_dn"),
        "{}",
        text(&guarded)
    );
    assert_eq!(
        outbox_lines(&dir.path().join("outbox.jsonl")).len(),
        sent,
        "nothing deleted"
    );
    let status = run(&narrow, &["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("11 deletes held back by the delete guard"),
        "{}",
        text(&status)
    );
    let json = run(&narrow, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["withheld_deletes"].as_array().unwrap().len(), 11);
}

/// The bug this guards against: an account that expired without any directory write kept
/// showing as active until the next full sync.
#[test]
fn samba_lab_account_expiring_between_two_deltas_is_sent_expired() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("expiry", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    // accountExpires (FILETIME) a few seconds from now, on the DC's clock (this machine's).
    let expires_in = Duration::from_secs(8);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + expires_in;
    let filetime = (unix.as_secs() + 11_644_473_600) * 10_000_000;
    lab.ldif(
        "ldapmodify",
        &format!(
            "dn: CN=expiry User 0,{ou}\nchangetype: modify\nreplace: accountExpires\naccountExpires: {filetime}\n\n"
        ),
    );
    let set_at = Instant::now();
    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));
    let full = run(&config, &["sync"]);
    assert!(full.status.success(), "{}", text(&full));
    let expired = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .rev()
            .find(|l| {
                l["record"]["dn"]
                    .as_str()
                    .is_some_and(|dn| dn.starts_with("CN=expiry User 0,"))
            })
            .map(|l| l["record"]["account"]["expired"].clone())
    };
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    assert_eq!(expired(&lines), Some(serde_json::json!(false)));
    let delta = run(&config, &["sync"]);
    assert!(delta.status.success(), "{}", text(&delta));
    assert_eq!(
        outbox_lines(&dir.path().join("outbox.jsonl")).len(),
        lines.len()
    );

    std::thread::sleep((expires_in + Duration::from_secs(2)).saturating_sub(set_at.elapsed()));
    let delta = run(&config, &["sync"]);
    assert!(delta.status.success(), "{}", text(&delta));
    let after = outbox_lines(&dir.path().join("outbox.jsonl"));
    assert_eq!(after.len(), lines.len() + 1, "{}", text(&delta));
    assert_eq!(
        expired(&after),
        Some(serde_json::json!(true)),
        "{}",
        text(&delta)
    );
    assert!(
        String::from_utf8_lossy(&delta.stdout).contains("re-read for expiry/lockout/password age"),
        "{}",
        text(&delta)
    );
}

/// `scripts/platform-models validate <kind> <file>`: the Sekoia SDK's model or our Qualys
/// schema; panics with the report when a record is refused.
fn validate_with_platform_models(kind: &str, file: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/platform-models");
    let output = Command::new(script)
        .args(["validate", kind])
        .arg(file)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{kind} refused:\n{report}");
    report
}

/// Every request body a mock platform received at `path_suffix`, as JSON Lines in `file`.
fn capture(
    requests: &[wiremock::Request],
    path_suffix: &str,
    file: &Path,
) -> Vec<serde_json::Value> {
    let bodies: Vec<serde_json::Value> = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(path_suffix))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let lines: Vec<String> = bodies.iter().map(|b| b.to_string()).collect();
    std::fs::write(file, lines.join("\n")).unwrap();
    bodies
}

/// Non-ASCII `sAMAccountName`, `cn` and OU name, synced end to end through each sink; and
/// every payload of a full sync of the whole lab passes the platforms' own models (the Sekoia
/// SDK's `UserOCSFModel`, our Qualys schema).
#[tokio::test(flavor = "multi_thread")]
async fn samba_lab_non_ascii_names_reach_every_sink_and_every_payload_passes_the_platform_models() {
    let lab = lab();
    let tag = unique();
    let ou_name = format!("Équipe Ünïcødé 李 {tag}");
    let ou = format!("OU={ou_name},{}", lab.base_dn);
    let _cleanup = Cleanup(&lab, ou.clone());
    let company = "Société Générale — Ünïcødé";
    // (cn, sAMAccountName): byte 6 of each name falls inside a character (the krbtgt check
    // used to slice there and crash).
    let people = [
        (format!("Thérèse Ørsted {tag}"), format!("thérèse{tag}")),
        (format!("Peter Öberg {tag}"), format!("peterö{tag}")),
        (format!("李雷 {tag}"), format!("李雷{tag}")),
        (format!("Ωmega 🎉 {tag}"), format!("ωmega{tag}")),
    ];
    let group = format!("Grüppe 🎉 {tag}");
    let mut ldif = format!("dn: {ou}\nobjectClass: organizationalUnit\n\n");
    for (cn, sam) in &people {
        ldif.push_str(&format!(
            "dn: CN={cn},{ou}\nobjectClass: user\nsAMAccountName: {sam}\ndisplayName: {cn}\ncompany: {company}\ntitle: Ingénieure en chef\n\n"
        ));
    }
    ldif.push_str(&format!(
        "dn: CN={group},{ou}\nobjectClass: group\nsAMAccountName: grüppe{tag}\nmember: CN={},{ou}\nmember: CN={},{ou}\n\n",
        people[0].0, people[2].0
    ));
    lab.ldif("ldapadd", &ldif);

    // JSONL: the canonical records carry the names exactly.
    let dir = tempfile::tempdir().unwrap();
    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));
    let output = run(&config, &["sync"]);
    assert!(output.status.success(), "{}", text(&output));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    for (cn, sam) in &people {
        let record = lines
            .iter()
            .map(|l| &l["record"])
            .find(|r| r["sam_account_name"] == sam.as_str())
            .unwrap_or_else(|| panic!("{sam} not in the outbox: {lines:#?}"));
        assert_eq!(record["name"], cn.as_str());
        assert_eq!(record["dn"], format!("CN={cn},{ou}").as_str());
    }
    assert!(
        lines.iter().any(|l| l["record"]["name"] == group.as_str()),
        "{group} not in the outbox"
    );

    // Sekoia: a full sync of the whole lab, every item through the SDK's model.
    let server = MockServer::start().await;
    accept_all(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let config = lab.config(dir.path(), &lab.base_dn, &sekoia_sink(&server, 30));
    let output = run_async(&config, &["sync"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let captured = dir.path().join("sekoia.jsonl");
    let bodies = capture(&server.received_requests().await.unwrap(), "", &captured);
    let report = validate_with_platform_models("sekoia", &captured);
    eprintln!("{report}");
    let items: Vec<&serde_json::Value> = bodies
        .iter()
        .flat_map(|b| b["items"].as_array().unwrap())
        .collect();
    assert!(items.len() > people.len(), "the whole lab: {}", items.len());
    for (cn, sam) in &people {
        let item = items
            .iter()
            .find(|i| i["user"]["name"] == sam.as_str())
            .unwrap_or_else(|| panic!("{sam} was not sent to Sekoia"));
        assert_eq!(item["user"]["display_name"], cn.as_str());
        assert_eq!(item["user"]["org"]["name"], company);
        assert_eq!(item["user"]["org"]["ou_name"], ou_name.as_str());
        assert_eq!(
            item["user"]["ldap_person"]["job_title"],
            "Ingénieure en chef"
        );
    }
    let first = items
        .iter()
        .find(|i| i["user"]["name"] == people[0].1.as_str())
        .unwrap();
    assert!(
        first["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == group.as_str()),
        "{first:#}"
    );

    // Qualys: the same full sync, every body through our schema.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/auth$"))
        .respond_with(ResponseTemplate::new(201).set_body_string("e2e-token"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("/sync$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "[sink]\nkind = \"qualys\"\n[sink.qualys]\ngateway_url = {:?}\ncustomer_uuid = \"35664649-0000-4000-8000-0e54079e1ee9\"\nconnection_uuid = \"6ec6ac85-0000-4000-8000-558f378caa2b\"\nprofile_uuid = \"a4ab0242-0000-4000-8000-f62c67093a56\"\n[sink.qualys.auth]\ntype = \"BASIC\"\nusername = \"api_user\"\npassword = \"e2e-SECRET\"\n",
        server.uri()
    );
    let config = lab.config(dir.path(), &lab.base_dn, &sink);
    let output = run_async(&config, &["sync"]).await;
    assert!(output.status.success(), "{}", text(&output));
    let captured = dir.path().join("qualys.jsonl");
    let bodies = capture(
        &server.received_requests().await.unwrap(),
        "/sync",
        &captured,
    );
    let report = validate_with_platform_models("qualys", &captured);
    eprintln!("{report}");
    let assets: Vec<&serde_json::Value> = bodies
        .iter()
        .flat_map(|b| b["assetData"].as_array().unwrap())
        .collect();
    for (cn, _) in &people {
        assert!(
            assets
                .iter()
                .any(|a| a["asset"]["assetDetail"]["userAssetClass"]["name"] == cn.as_str()),
            "{cn} was not sent to Qualys"
        );
    }
    let builtin = assets
        .iter()
        .find(|a| a["asset"]["assetHeader"]["externalAssetId"] == "S-1-5-32-544")
        .expect("BUILTIN\\Administrators was sent");
    assert_eq!(
        builtin["asset"]["assetDetail"]["groupAssetClass"]["type"],
        "SECURITY_DOMAIN_LOCAL"
    );
    assert!(
        assets
            .iter()
            .any(|a| a["asset"]["assetDetail"]["groupAssetClass"]["name"] == group.as_str()),
        "{group} was not sent to Qualys"
    );
}

/// Users of `ou` that LDAP_MATCHING_RULE_IN_CHAIN says are (transitively) in `group_dn`.
fn in_chain_members(lab: &Lab, ou: &str, group_dn: &str) -> std::collections::BTreeSet<String> {
    let output = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &lab.ldaps_url,
            "-D",
            &lab.admin_bind,
            "-w",
            &lab.admin_password,
            "-b",
            ou,
            &format!("(&(objectClass=user)(memberOf:1.2.840.113556.1.4.1941:={group_dn}))"),
            "1.1",
        ])
        .env("LDAPTLS_CACERT", &lab.ca_pem)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Privilege through nesting, end to end: a user in a group nested (two levels) in Backup
/// Operators is privileged with the chain; the connector agrees with the DC's own transitive
/// evaluation (LDAP_MATCHING_RULE_IN_CHAIN); un-nesting is sent by the next delta, although
/// AD writes nothing to the users.
#[test]
fn samba_lab_privilege_through_nested_groups_comes_and_goes_with_deltas() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("nest", 3);
    let _cleanup = Cleanup(&lab, ou.clone());
    let tier0 = format!("CN=Tier0-nest,{ou}");
    let backup = format!("CN=Backup Operators,CN=Builtin,{}", lab.base_dn);
    lab.ldif(
        "ldapadd",
        &format!(
            "dn: {tier0}\nobjectClass: group\nsAMAccountName: tier0-nest-{}\nmember: CN=GG-nest,{ou}\n\n",
            unique()
        ),
    );
    lab.ldif(
        "ldapmodify",
        &format!("dn: {backup}\nchangetype: modify\nadd: member\nmember: {tier0}\n\n"),
    );
    let config = lab.config(dir.path(), &ou, &jsonl_sink(dir.path()));
    let full = run(&config, &["sync"]);
    assert!(full.status.success(), "{}", text(&full));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let privileged =
        |lines: &[serde_json::Value]| -> std::collections::BTreeMap<String, Vec<String>> {
            let mut out = std::collections::BTreeMap::new();
            for line in lines {
                let record = &line["record"];
                if line["kind"] == "user" {
                    let paths: Vec<String> = record["privileges"]
                        .as_array()
                        .map(|p| {
                            p.iter()
                                .map(|p| {
                                    let via: Vec<&str> = p["via"]
                                        .as_array()
                                        .unwrap()
                                        .iter()
                                        .map(|g| g["name"].as_str().unwrap_or("?"))
                                        .collect();
                                    format!(
                                        "{} via {}",
                                        p["group"]["sid"].as_str().unwrap(),
                                        via.join(",")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(record["dn"].as_str().unwrap().to_ascii_lowercase(), paths);
                }
            }
            out
        };
    let first = privileged(&lines);
    let user = |i: usize| format!("CN=nest User {i},{ou}").to_ascii_lowercase();
    assert_eq!(
        first[&user(0)],
        ["S-1-5-32-551 via GG-nest,Tier0-nest"],
        "{first:#?}"
    );
    assert_eq!(first[&user(1)], ["S-1-5-32-551 via GG-nest,Tier0-nest"]);
    assert!(first[&user(2)].is_empty());
    // The DC's own transitive evaluation agrees.
    let ours: std::collections::BTreeSet<String> = first
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(dn, _)| dn.clone())
        .collect();
    assert_eq!(in_chain_members(&lab, &ou, &backup), ours);

    // Un-nest Tier0: nothing is written to the users; the delta must still send them.
    lab.ldif(
        "ldapmodify",
        &format!("dn: {backup}\nchangetype: modify\ndelete: member\nmember: {tier0}\n\n"),
    );
    let before = lines.len();
    let delta = run(&config, &["sync"]);
    assert!(delta.status.success(), "{}", text(&delta));
    let lines = outbox_lines(&dir.path().join("outbox.jsonl"));
    let after = privileged(&lines[before..]);
    assert_eq!(
        after.get(&user(0)).map(Vec::len),
        Some(0),
        "{after:#?}\n{}",
        text(&delta)
    );
    assert_eq!(after.get(&user(1)).map(Vec::len), Some(0), "{after:#?}");
    assert!(in_chain_members(&lab, &ou, &backup).is_empty());
}

/// A TCP forwarder on `listen` to `target`: stopping it makes the DC behind it unreachable
/// (connection refused) without stopping Samba, which other tests are using.
pub(crate) struct Forwarder {
    pub(crate) addr: std::net::SocketAddr,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    pub(crate) fn start(listen: std::net::SocketAddr, target: std::net::SocketAddr) -> Forwarder {
        let listener = std::net::TcpListener::bind(listen).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut tasks = tokio::task::JoinSet::new();
                loop {
                    if rx.try_recv().is_ok() {
                        break;
                    }
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
                    if let Ok(Ok((mut inbound, _))) = accepted {
                        tasks.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                }
                tasks.abort_all();
            });
        });
        Forwarder {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `scripts/lab-dc replicate`: both DCs pull from each other now.
pub(crate) fn replicate() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lab-dc");
    let output = Command::new(script).arg("replicate").output().unwrap();
    assert!(
        output.status.success(),
        "lab-dc replicate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(crate) fn ldif_on(lab: &Lab, url: &str, tool: &str, ldif: &str) {
    let other = Lab {
        ldaps_url: url.to_owned(),
        ca_der: lab.ca_der.clone(),
        ca_pem: lab.ca_pem.clone(),
        base_dn: lab.base_dn.clone(),
        admin_bind: lab.admin_bind.clone(),
        admin_password: lab.admin_password.clone(),
        svc_bind: lab.svc_bind.clone(),
        svc_password: lab.svc_password.clone(),
    };
    other.ldif(tool, ldif);
}

/// Two real DCs replicating (dc1 127.0.0.2, dc2 127.0.0.3). dc1 is reached through a
/// forwarder so it can "go down" without stopping Samba. The walk: full on dc1, delta on
/// dc1; dc1 down → full on dc2 (never read), then deltas on dc2 from dc2's own USN (a
/// creation and a deletion made on dc2); dc1 back → a delta on dc1 from dc1's own mark.
/// Nothing live is ever deleted, nothing gone stays, and the end state is the directory's.
#[test]
fn samba_lab_failover_between_two_real_dcs_keeps_a_checkpoint_per_dc() {
    let lab = lab();
    let dc2_url = std::env::var("ADLAB_DC2_LDAPS_URL").unwrap_or_else(|_| {
        panic!("ADLAB_DC2_LDAPS_URL is not set: the lab has no second DC (scripts/lab-dc start)")
    });
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("fo", 4);
    let _cleanup = Cleanup(&lab, ou.clone());
    replicate();

    let mut dc1 = Forwarder::start(
        "127.0.0.2:0".parse().unwrap(),
        "127.0.0.2:636".parse().unwrap(),
    );
    let dc1_url = format!("ldaps://dc1.corp.example.test:{}", dc1.addr.port());
    let config = dir.path().join("ad-connector.toml");
    let password_file = dir.path().join("bind-password");
    std::fs::write(&password_file, format!("{}\n", lab.admin_password)).unwrap();
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[source]\nurl = [{dc1_url:?}, {dc2_url:?}]\nbind = {bind:?}\npassword_file = {pw:?}\nca_file = {ca:?}\nbase_dn = {ou:?}\nconnect_timeout_secs = 3\n\n{sink}\n",
            state = dir.path().join("state"),
            bind = lab.admin_bind,
            pw = password_file,
            ca = lab.ca_pem,
            sink = jsonl_sink(dir.path()),
        ),
    )
    .unwrap();
    let outbox = dir.path().join("outbox.jsonl");
    let sync = |what: &str| -> String {
        let output = run(&config, &["sync"]);
        let log = text(&output);
        assert!(output.status.success(), "{what}: {log}");
        println!("===== {what}\n{log}");
        log
    };
    let user = |i: usize| format!("CN=fo User {i},{ou}");
    let title = |url: &str, i: usize, t: &str| {
        ldif_on(
            &lab,
            url,
            "ldapmodify",
            &format!(
                "dn: {}\nchangetype: modify\nreplace: title\ntitle: {t}\n\n",
                user(i)
            ),
        );
    };

    // 1–2. dc1: a full sync, then a delta.
    let log = sync("full on dc1");
    assert!(
        log.contains("this cycle reads from dc1.corp.example.test"),
        "{log}"
    );
    assert!(log.contains("full sync: 4 users, 1 groups read"), "{log}");
    title(&lab.ldaps_url, 0, "Changed on dc1");
    let log = sync("delta on dc1");
    assert!(log.contains("delta sync: 1 users"), "{log}");
    replicate();

    // 3. dc1 down: dc2 was never read, so a full sync there; nothing deleted.
    dc1.stop();
    title(&dc2_url, 1, "Changed on dc2");
    let log = sync("failover to dc2");
    assert!(log.contains("passed over"), "{log}");
    assert!(log.contains(&dc1_url), "{log}");
    assert!(
        log.contains("this cycle reads from dc2.corp.example.test"),
        "{log}"
    );
    assert!(log.contains("which no earlier cycle completed on"), "{log}");
    assert!(
        log.contains("full sync: 4 users, 1 groups read; 1 upserts, 0 deletes"),
        "{log}"
    );

    // 4. On dc2: a user created and one deleted there — a delta from dc2's own mark.
    lab_add_user_on(&lab, &dc2_url, &ou, 4);
    ldif_on(&lab, &dc2_url, "ldapdelete", &format!("{}\n", user(3)));
    let log = sync("delta on dc2");
    assert!(
        log.contains("this cycle reads from dc2.corp.example.test"),
        "{log}"
    );
    assert!(log.contains("delta sync:"), "{log}");
    assert!(log.contains("1 deletes sent"), "{log}");

    // 5. dc1 back (it replicated the changes made on dc2): a delta from dc1's own mark.
    replicate();
    let mut dc1 = Forwarder::start(dc1.addr, "127.0.0.2:636".parse().unwrap());
    title(&lab.ldaps_url, 2, "Changed on dc1 again");
    let log = sync("back on dc1");
    assert!(
        log.contains("this cycle reads from dc1.corp.example.test"),
        "{log}"
    );
    assert!(log.contains("delta sync:"), "{log}");
    assert!(log.contains("0 deletes sent"), "{log}");
    dc1.stop();

    // The platform: users 0, 1, 2, 4 and the group; user 3 deleted once; no other delete.
    let lines = outbox_lines(&outbox);
    let deletes: Vec<&str> = lines
        .iter()
        .filter(|l| l["op"] == "delete")
        .map(|l| l["record"]["dn"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert!(deletes[0].starts_with("CN=fo User 3,"), "{deletes:?}");
    let mut live = std::collections::BTreeMap::new();
    for line in &lines {
        let dn = line["record"]["dn"].as_str().unwrap_or_default().to_owned();
        if line["op"] == "delete" {
            live.remove(&dn);
        } else {
            live.insert(dn, line["record"]["title"].clone());
        }
    }
    let users: Vec<&String> = live
        .keys()
        .filter(|dn| dn.starts_with("CN=fo User"))
        .collect();
    assert_eq!(users.len(), 4, "{live:#?}");
    assert_eq!(live[&user(0)], "Changed on dc1");
    assert_eq!(live[&user(1)], "Changed on dc2");
    assert_eq!(live[&user(2)], "Changed on dc1 again");
    assert!(live.contains_key(&user(4)));

    let status = run(&config, &["status"]);
    let out = text(&status);
    assert!(out.contains("DC marks:"), "{out}");
    println!("===== status\n{out}");
}

fn lab_add_user_on(lab: &Lab, url: &str, ou: &str, i: usize) {
    ldif_on(lab, url, "ldapadd", &user_ldif(ou, "fo", i));
}

/// DNS discovery of the two real DCs from **Samba's own DNS**: both lab DCs run Samba's
/// internal DNS server, dc2 registered its records at join (`samba_dnsupdate`, as a DC does
/// on first start) with priority 10 for LDAP (dc1 keeps 0, as an administrator sets
/// `LdapSrvPriority` on a backup DC). Asked of either DC's DNS, with or without the site,
/// `test` checks both DCs in priority order over LDAPS, their certificates checked against
/// the names the SRV records give; a cycle reads from dc1.
#[test]
fn samba_lab_dns_discovery_finds_both_dcs_in_priority_order() {
    let lab = lab();
    let env = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: the lab has no DNS or no second DC (scripts/lab-dc start)")
        })
    };
    let domain = env("ADLAB_DNS_DOMAIN");
    let site = env("ADLAB_SITE");
    let dc1_dns = env("ADLAB_DNS_SERVER");
    let dc2_dns = env("ADLAB_DC2_DNS_SERVER");
    let dir = tempfile::tempdir().unwrap();
    let ou = lab.scratch_ou("dns", 2);
    let _cleanup = Cleanup(&lab, ou.clone());
    replicate(); // dc2 must hold the OU too: `test` checks it there
    let password_file = dir.path().join("bind-password");
    std::fs::write(&password_file, format!("{}\n", lab.svc_password)).unwrap();
    let write_config = |name: &str, dns: &str, site: Option<&str>| {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(
            &config,
            format!(
                "state_dir = {state:?}\n\n[source]\ndomain = {domain:?}\n{site}dns_server = {dns:?}\nbind = {bind:?}\npassword_file = {pw:?}\nca_file = {ca:?}\nbase_dn = {ou:?}\n\n{sink}\n",
                state = dir.path().join(format!("state-{name}")),
                site = site.map(|s| format!("site = {s:?}\n")).unwrap_or_default(),
                bind = lab.svc_bind,
                pw = password_file,
                ca = lab.ca_der,
                sink = jsonl_sink(&dir.path().join(name)),
            ),
        )
        .unwrap();
        config
    };
    for (name, dns, site) in [
        ("dc1-dns", dc1_dns.as_str(), None),
        ("dc2-dns", dc2_dns.as_str(), None),
        ("dc1-dns-site", dc1_dns.as_str(), Some(site.as_str())),
    ] {
        let config = write_config(name, dns, site);
        let test = run(&config, &["test"]);
        let out = text(&test);
        println!("===== test, SRV from {dns}, site {site:?}\n{out}");
        assert!(test.status.success(), "{out}");
        let first = out
            .find("DC 1 of 2 (ldaps://dc1.corp.example.test:636; SRV")
            .unwrap_or(usize::MAX);
        let second = out
            .find("DC 2 of 2 (ldaps://dc2.corp.example.test:636; SRV")
            .unwrap_or(0);
        assert!(
            first < second,
            "dc1 (priority 0) before dc2 (priority 10): {out}"
        );
        assert!(!out.contains("FAIL"), "{out}");
        if let Some(site) = site {
            let asked = format!("SRV _ldap._tcp.{site}._sites.dc._msdcs.{domain} priority 0");
            assert!(out.contains(&asked), "{asked} in: {out}");
        }

        let sync = run(&config, &["sync"]);
        let log = text(&sync);
        assert!(sync.status.success(), "{log}");
        assert!(
            log.contains("this cycle reads from dc1.corp.example.test"),
            "{log}"
        );
        assert!(log.contains("full sync: 2 users, 1 groups read"), "{log}");
    }
}
