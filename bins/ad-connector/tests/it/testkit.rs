//! The binary against the in-process directory (ad-testkit on 127.0.0.1): `test`,
//! `preview`, and `run` stopping cleanly on SIGTERM.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ad_testkit::{
    Company, CompanyOptions, SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN, ServerOptions,
    TestServer,
};

use crate::support::{bin, outbox_lines, run, text};

fn server() -> TestServer {
    let directory = Company::generate(CompanyOptions {
        users: 60,
        ..CompanyOptions::default()
    });
    TestServer::start(directory, ServerOptions::default()).unwrap()
}

/// `[sink]` settings for a Sekoia sink at `base_url` (a loopback mock).
fn sekoia_sink(base_url: &str) -> String {
    format!(
        "\n[sink]\nkind = \"sekoia\"\n[sink.sekoia]\nbase_url = {base_url:?}\nconnector_uuid = \"0b7a6a54-3c5e-4d7f-9a51-8a0e8a3c2f10\"\napi_key = \"k\"\n"
    )
}

fn config(dir: &Path, server: &TestServer, extra: &str) -> std::path::PathBuf {
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {state:?}\n\n[source]\nurl = {url:?}\nbind = {bind:?}\npassword = {pw:?}\nstarttls = false\nallow_plain_ldap = true\n\n[sink.jsonl]\npath = {outbox:?}\n{extra}",
            state = dir.join("state"),
            url = server.url(),
            bind = SERVICE_ACCOUNT_UPN,
            pw = SERVICE_ACCOUNT_PASSWORD,
            outbox = dir.join("outbox.jsonl"),
        ),
    )
    .unwrap();
    path
}

#[test]
fn test_command_passes_and_fails_with_sentences() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), &server, "");
    let output = run(&good, &["test"]);
    assert!(output.status.success(), "{}", text(&output));
    let json = run(&good, &["test", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["ok"], true, "{value}");

    // A wrong password: exit 3 and AD's data code in words; the password is not echoed.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(SERVICE_ACCOUNT_PASSWORD, "Wrong-Passw0rd-XYZ"),
    )
    .unwrap();
    let output = run(&bad, &["test"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let all = text(&output);
    assert!(all.contains("FAIL"), "{all}");
    assert!(
        !all.contains("Wrong-Passw0rd-XYZ"),
        "the password leaked: {all}"
    );
}

#[test]
fn preview_prints_the_qualys_payload_without_sending() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, "");
    let output = run(&config, &["preview", "--sink", "qualys", "-n", "2"]);
    assert!(output.status.success(), "{}", text(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let assets = value["assetData"].as_array().unwrap();
    assert_eq!(assets.len(), 4, "{value:#}");
    assert!(
        assets
            .iter()
            .any(|a| a["asset"]["assetDetail"]["userAssetClass"]["status"].is_string())
    );
    assert!(
        !dir.path().join("outbox.jsonl").exists(),
        "preview sent nothing"
    );
    assert!(!dir.path().join("state").exists(), "preview wrote no state");
}

/// `status` opens the state read-only without the lock: it works while `run` holds the lock,
/// shows the cycle in progress, and never keeps `run` from starting (it used to take the
/// same lock, so a `status` at the wrong moment made `run` exit).
#[cfg(unix)]
#[test]
fn status_works_while_run_is_active_and_shows_the_running_cycle() {
    let server = server();
    // Slow entries make every cycle last a second or more, so a running cycle is there to be
    // seen; the loop below waits for it however loaded the machine is.
    server.set_faults(ad_testkit::FaultOptions {
        entry_delay: Duration::from_millis(10),
        ..ad_testkit::FaultOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &server,
        "\n[schedule]\ncron = \"* * * * * *\"\n",
    );
    // `status` before anything ran: no state yet, still exit 0, and it creates nothing.
    let before = run(&config, &["status", "--json"]);
    assert!(before.status.success(), "{}", text(&before));
    assert!(!dir.path().join("state").join("state.db").exists());

    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut saw_running = false;
    let mut finished_ok = 0;
    let mut saw_scheduled = false;
    // Poll `status` as a monitoring job would, as fast as it can: every call must succeed,
    // and the daemon must keep running, until a running cycle and two finished ones were seen.
    while !(saw_running && saw_scheduled && finished_ok >= 2) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run exited while status was polled"
        );
        let status = run(&config, &["status", "--json"]);
        assert!(status.status.success(), "{}", text(&status));
        let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        // The lock is held all along: status says a process runs, and who.
        if value["state"].is_string() {
            assert_eq!(value["daemon"]["running"], true, "{value:#}");
            assert!(
                value["daemon"]["holder"]
                    .as_str()
                    .is_some_and(|h| h == format!("pid {}", child.id())),
                "{value:#}"
            );
        }
        if value["state"] == "Scheduled" {
            saw_scheduled = true;
            assert!(value["daemon"]["next_run"].is_string(), "{value:#}");
        }
        if let Some(cycles) = value["cycles"].as_array() {
            if cycles.iter().any(|c| c["outcome"] == "running") {
                assert_eq!(value["state"], "Processing", "{value:#}");
                saw_running = true;
            }
            finished_ok = cycles.iter().filter(|c| c["outcome"] == "ok").count();
        }
        assert!(
            Instant::now() < deadline,
            "no running cycle, no wait for the next one and two finished ones seen: {value:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!outbox_lines(&dir.path().join("outbox.jsonl")).is_empty());
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connector stopped"), "{stderr}");
    assert!(stderr.contains("full sync:"), "{stderr}");
    assert!(
        !stderr.contains("already using state directory"),
        "{stderr}"
    );
    // After the daemon stopped, status still works and shows the cycles.
    let status = run(&config, &["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(value["cycles"].as_array().unwrap().len() >= 2, "{value:#}");
    // … and says the daemon was stopped, not that it is waiting or ended uncleanly.
    assert_eq!(value["state"], "Stopped", "{value:#}");
    assert_eq!(value["daemon"]["running"], false, "{value:#}");
    assert_eq!(value["daemon"]["ended_uncleanly"], false, "{value:#}");
    assert!(value["daemon"]["next_run"].is_null(), "{value:#}");
    assert!(value["last_success"].is_string(), "{value:#}");
    let cycles = value["cycles"].as_array().unwrap();
    assert!(
        cycles
            .iter()
            .all(|c| c["outcome"] == "ok" || c["outcome"] == "interrupted"),
        "{value:#}"
    );
    let human = run(&config, &["status"]);
    assert!(
        text(&human).contains("not running (the daemon was stopped)"),
        "{}",
        text(&human)
    );
}

/// A cycle that cannot even reach the directory is journaled with its error sentence, and
/// `status` shows it as the newest cycle (it used to leave no trace at all).
#[test]
fn a_cycle_that_cannot_reach_the_directory_is_recorded_as_failed() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path(), &server, "");
    let first = run(&good, &["sync"]);
    assert!(first.status.success(), "{}", text(&first));
    // A port nobody listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace(&server.url(), &format!("ldap://{closed}"))
            .replace("[source]", "[source]\nmax_reconnect_secs = 0"),
    )
    .unwrap();
    let failed = run(&bad, &["sync"]);
    assert_eq!(failed.status.code(), Some(5), "{}", text(&failed));
    let status = run(&bad, &["status", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let newest = &value["cycles"][0];
    assert_eq!(newest["outcome"], "failed", "{value:#}");
    assert_eq!(newest["mode"], "delta", "{value:#}");
    assert!(newest["finished_at"].is_string(), "{value:#}");
    let summary = newest["summary"].as_str().unwrap_or_default();
    assert!(summary.contains(&closed.to_string()), "{value:#}");
    assert_eq!(value["cycles"][1]["outcome"], "ok", "{value:#}");
    // The data already delivered is still there: state stays Processed, last success set.
    assert_eq!(value["state"], "Processed", "{value:#}");
    assert!(value["last_success"].is_string(), "{value:#}");
    let human = run(&bad, &["status"]);
    assert!(text(&human).contains("failed"), "{}", text(&human));
}

/// Whatever the umask, what holds the directory's data is readable by this user only: the
/// state database and its WAL/SHM, the lock, the outbox (0600), and the state directory when
/// the connector creates it (0700). A directory that already exists keeps its mode.
#[cfg(unix)]
#[test]
fn state_and_outbox_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, "");
    let under_umask_0 = |args: &[&str]| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_ad-connector"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let output = under_umask_0(&["sync"]);
    assert!(output.status.success(), "{}", text(&output));
    let state = dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    for file in ["state.db", "lock"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&dir.path().join("outbox.jsonl")), 0o600);
    // The WAL and SHM exist while a process has the database open: look during a run.
    let held = ad_sync::Store::open(&state).unwrap();
    for file in ["state.db-wal", "state.db-shm"] {
        let path = state.join(file);
        assert!(path.exists(), "{file} exists while the database is open");
        assert_eq!(mode(&path), 0o600, "{file}");
    }
    drop(held);

    // An existing state directory keeps the mode its owner chose.
    let shared = dir.path().join("shared-state");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
    let store = ad_sync::Store::open(&shared).unwrap();
    drop(store);
    assert_eq!(mode(&shared), 0o750);
    assert_eq!(mode(&shared.join("state.db")), 0o600);
}

/// Sekoia has no group assets: when only a group's membership changes (AD does not touch the
/// member's uSNChanged), the delta re-reads the added member and re-sends it with its groups.
#[tokio::test(flavor = "multi_thread")]
async fn sekoia_delta_resends_users_whose_groups_changed() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let company = Company::build(CompanyOptions {
        users: 60,
        ..CompanyOptions::default()
    });
    let manifest = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default()).unwrap();
    let sekoia = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&sekoia)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &sekoia_sink(&sekoia.uri()));
    let c = config.clone();
    let full = tokio::task::spawn_blocking(move || run(&c, &["sync"]))
        .await
        .unwrap();
    assert!(full.status.success(), "{}", text(&full));

    // Pick a user that is not in the empty group yet, and add it.
    let user_dn = manifest.users[5].clone();
    server
        .directory()
        .modify(
            &manifest.empty_group,
            [ad_testkit::Modification::add("member", [user_dn.as_str()])],
        )
        .unwrap();
    sekoia.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&sekoia)
        .await;
    let c = config.clone();
    let delta = tokio::task::spawn_blocking(move || run(&c, &["sync"]))
        .await
        .unwrap();
    assert!(delta.status.success(), "{}", text(&delta));
    let requests = sekoia.received_requests().await.unwrap();
    let items: Vec<serde_json::Value> = requests
        .iter()
        .flat_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["items"].as_array().cloned().unwrap_or_default()
        })
        .collect();
    assert_eq!(
        items.len(),
        1,
        "only the affected user is re-sent: {items:#?}"
    );
    let group_name = manifest
        .empty_group
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("CN=")
        .to_owned();
    let groups = items[0]["user"]["groups"].as_array().unwrap();
    assert!(
        groups.iter().any(|g| g["name"] == group_name.as_str()),
        "{group_name} in {groups:#?}"
    );
}

/// `ad-connector test` against a server that corrupts one of its messages: an exit code
/// (0 passed, 3 failed), a sentence, never a crash (101) or a raw panic on stderr.
#[tokio::test(flavor = "multi_thread")]
async fn test_command_against_a_hostile_server_fails_with_sentences_never_a_crash() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let sessions: u64 = std::env::var("HOSTILE_PROBE_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut failed = 0;
    for seed in 0..sessions {
        let plan = ad_testkit::MutationPlan::random(seed, 24);
        let proxy = ad_testkit::HostileProxy::start(server.addr(), plan)
            .await
            .unwrap();
        let path = config(dir.path(), &server, "");
        let text_config = std::fs::read_to_string(&path)
            .unwrap()
            .replace(&server.url(), &proxy.url())
            .replace(
                "[source]\n",
                "[source]\nconnect_timeout_secs = 1\noperation_timeout_secs = 1\n",
            );
        std::fs::write(&path, text_config).unwrap();
        let output = tokio::task::spawn_blocking(move || run(&path, &["test"]))
            .await
            .unwrap();
        let all = text(&output);
        let code = output.status.code();
        assert!(
            matches!(code, Some(0) | Some(3)),
            "seed {seed} ({plan:?}): exit {code:?}\n{all}"
        );
        assert!(
            !all.contains("panicked at") || all.contains("internal panic"),
            "seed {seed}: raw panic\n{all}"
        );
        if code == Some(3) {
            failed += 1;
            assert!(
                all.contains("FAIL"),
                "seed {seed}: no failed step named\n{all}"
            );
        }
        drop(proxy);
    }
    eprintln!(
        "{sessions} corrupted sessions: {failed} failed the test with a sentence, none crashed"
    );
}

/// The exit-code table through the binary, for the platform's side: credentials refused and
/// the platform never answering are 6; the directory unreachable is 5 (tests in cli.rs).
#[tokio::test(flavor = "multi_thread")]
async fn the_platform_refusing_exits_6() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = server();
    let sekoia = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&sekoia)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, &sekoia_sink(&sekoia.uri()));
    let output = tokio::task::spawn_blocking(move || run(&config, &["sync"]))
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(6), "{}", text(&output));
    assert!(text(&output).contains("401"), "{}", text(&output));
}

/// `GET path` over a fresh loopback connection: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one sample line (`name{labels} value`) in a Prometheus exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// `[telemetry] listen`: while `run` runs, `/metrics` counts the cycles, entries and changes
/// and carries the batch latency, last success and checkpoint; `/healthz` is 200 with the
/// reason; other paths are 404. The listener is on 127.0.0.1 port 0 (the bound address is
/// logged).
#[cfg(unix)]
#[test]
fn metrics_and_health_are_served_while_run_runs() {
    use std::io::BufRead;
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &server,
        "\n[schedule]\ncron = \"*/2 * * * * *\"\n[telemetry]\nlisten = \"127.0.0.1:0\"\n",
    );
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no telemetry address logged: {log:#?}"));
        log.push(line.clone());
        if line.contains("telemetry listening")
            && let Some(addr) = line.split("addr=").nth(1)
        {
            break addr.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    // Scrape as Prometheus would until two cycles were counted.
    let deadline = Instant::now() + Duration::from_secs(180);
    let metrics = loop {
        let (status, body) = http_get(&addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        let full = sample(&body, r#"adc_cycles_total{mode="full",outcome="ok"}"#).unwrap_or(0.0);
        let delta = sample(&body, r#"adc_cycles_total{mode="delta",outcome="ok"}"#).unwrap_or(0.0);
        if full >= 1.0 && delta >= 1.0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no full and delta cycle counted: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let users = sample(&metrics, r#"adc_entries_read_total{kind="user"}"#).unwrap_or(0.0);
    assert!(users >= 60.0, "{metrics}");
    let sent = sample(
        &metrics,
        r#"adc_changes_sent_total{op="upsert",kind="user"}"#,
    );
    assert!(sent.is_some_and(|n| n >= 60.0), "{metrics}");
    assert!(
        sample(&metrics, "adc_batch_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "adc_last_success_timestamp_seconds").is_some_and(|t| t > 1.7e9),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "adc_checkpoint_usn").is_some_and(|usn| usn > 0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "adc_withheld_deletes"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "adc_sink_retries_total"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metrics.contains("# HELP adc_cycles "), "{metrics}");

    let (status, body) = http_get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(health["healthy"], true, "{health}");
    assert!(health["last_success"].is_string(), "{health}");
    // Every 2 s, 3 periods: 6 s.
    assert_eq!(health["max_age_secs"], 6, "{health}");
    assert_eq!(http_get(&addr, "/other").0, 404);

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // The listener went away with the daemon.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

/// Two DCs in `url`: `test` checks each; with the first one down, `sync` fails over to the
/// second (a full sync, dc2 never read), logs which DC served and which was passed over,
/// and `status` shows a mark per DC.
#[test]
fn a_url_list_fails_over_and_status_shows_a_mark_per_dc() {
    let directory = Company::generate(CompanyOptions {
        users: 40,
        ..CompanyOptions::default()
    });
    let replica = directory.replica(1_000_000);
    let dc1 = TestServer::start(directory, ServerOptions::default()).unwrap();
    let dc2 = TestServer::start(replica, ServerOptions::for_host("dc2.corp.example.test")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {state:?}\n\n[source]\nurl = [{url1:?}, {url2:?}]\nbind = {bind:?}\npassword = {pw:?}\nstarttls = false\nallow_plain_ldap = true\nconnect_timeout_secs = 2\n\n[sink.jsonl]\npath = {outbox:?}\n",
            state = dir.path().join("state"),
            url1 = dc1.url(),
            url2 = dc2.url(),
            bind = SERVICE_ACCOUNT_UPN,
            pw = SERVICE_ACCOUNT_PASSWORD,
            outbox = dir.path().join("outbox.jsonl"),
        ),
    )
    .unwrap();

    let output = run(&path, &["test"]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("DC 1 of 2") && out.contains("DC 2 of 2"),
        "{out}"
    );

    let output = run(&path, &["sync"]);
    assert!(output.status.success(), "{}", text(&output));
    let dc1_url = dc1.url();
    dc1.shutdown();

    let output = run(&path, &["test"]);
    let out = text(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "one DC down fails `test`: {out}"
    );
    assert!(out.contains("refused"), "{out}");

    let output = run(&path, &["sync"]);
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    println!("{log}");
    assert!(
        log.contains("this cycle reads from dc2.corp.example.test"),
        "{log}"
    );
    assert!(log.contains("passed over"), "{log}");
    assert!(log.contains(&dc1_url), "{log}");
    assert!(log.contains("which no earlier cycle completed on"), "{log}");

    let output = run(&path, &["status"]);
    let out = text(&output);
    assert!(
        out.contains("DC marks:")
            && out.contains("dc1.corp.example.test")
            && out.contains("dc2.corp.example.test"),
        "{out}"
    );
}
