//! The binary without a directory: help, configuration errors, the demo.

use crate::support::{bin, outbox_lines, run, text};

#[test]
fn help_teaches_the_commands() {
    let output = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["test", "sync", "run", "preview", "status", "config"] {
        assert!(help.contains(command), "{help}");
    }
    if cfg!(feature = "demo") {
        assert!(help.contains("demo"), "{help}");
    }
    assert!(help.contains("Exit codes"), "{help}");
}

#[test]
fn bad_config_names_the_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[source]\nurl = \"ldaps://dc1.example.test\"\nbind = \"svc\"\npassword = \"pw\"\npage_sise = 10\n",
    )
    .unwrap();
    let output = run(&config, &["sync"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("page_sise") && stderr.contains("did you mean `page_size`?"),
        "{}",
        text(&output)
    );

    std::fs::write(&config, "[schedule]\ncron = \"every ten minutes\"\n").unwrap();
    let output = run(&config, &["status"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("schedule.cron = \"every ten minutes\"")
    );

    std::fs::write(&config, "state_dir = \"x\"\n").unwrap();
    let output = run(&config, &["sync"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("[source] is missing"),
        "{}",
        text(&output)
    );
}

/// A setting the source or the sink refuses is a configuration error too: exit 2 from every
/// command, with the key named.
#[test]
fn source_and_sink_settings_refused_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let source = "[source]\nurl = \"ftp://dc1.example.test\"\nbind = \"svc\"\npassword = \"pw\"\n";
    std::fs::write(&config, source).unwrap();
    for command in [&["sync"][..], &["config", "check"]] {
        let output = run(&config, command);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command:?}: {}",
            text(&output)
        );
    }
    std::fs::write(
        &config,
        "state_dir = \"s\"\n[source]\nurl = \"ldaps://dc1.example.test\"\nbind = \"svc\"\npassword = \"pw\"\n[sink]\nkind = \"sekoia\"\n[sink.sekoia]\nbase_url = \"http://api.example.test\"\nconnector_uuid = \"00000000-0000-4000-8000-000000000000\"\napi_key = \"k\"\n",
    )
    .unwrap();
    for command in [&["sync"][..], &["config", "check"], &["test"]] {
        let output = run(&config, command);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command:?}: {}",
            text(&output)
        );
        assert!(
            text(&output).contains("`base_url` is a plain http:// URL"),
            "{command:?}: {}",
            text(&output)
        );
    }
}

#[test]
fn config_check_and_show_need_no_network_and_redact_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "state_dir = \"s\"\n\n[source]\nurl = \"ldaps://dc1.example.test\"\nbind = \"svc\"\npassword = \"Hunter2-bind\"\n",
    )
    .unwrap();
    let output = run(&config, &["config", "check"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("configuration OK"),
        "{}",
        text(&output)
    );
    let output = bin()
        .args(["--config"])
        .arg(&config)
        .args(["config", "show"])
        .env("ADC_SOURCE__BIND", "12345")
        .output()
        .unwrap();
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(0), "{shown}");
    assert!(!shown.contains("Hunter2"), "{shown}");
    assert!(shown.contains("\"<redacted>\""), "{shown}");
    assert!(
        shown.contains(&format!("{}:4", config.display())),
        "the url's line: {shown}"
    );
    assert!(
        shown.contains("source.bind")
            && shown.contains("\"12345\"   # environment ADC_SOURCE__BIND"),
        "{shown}"
    );
    // A TOML error names the place, not the text (an unquoted password).
    std::fs::write(&config, "[source]\npassword = Hunter2-bind\n").unwrap();
    let output = run(&config, &["config", "check"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(!text(&output).contains("Hunter2"), "{}", text(&output));
    assert!(text(&output).contains("line 2"), "{}", text(&output));
}

/// A `sync` that fails fast (nothing listens on 127.0.0.1:1), with its stderr piped.
fn failing_sync(extra_env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[source]\nurl = \"ldap://127.0.0.1:1\"\nstarttls = false\nallow_plain_ldap = true\nbind = \"svc\"\npassword = \"pw\"\nmax_reconnect_secs = 0\nreconnect_backoff_ms = 1\nconnect_timeout_secs = 2\n[sink.jsonl]\npath = {:?}\n",
            dir.path().join("state"),
            dir.path().join("outbox.jsonl")
        ),
    )
    .unwrap();
    let mut command = bin();
    command
        .env_remove("NO_COLOR")
        .arg("--config")
        .arg(&config)
        .args(args)
        .arg("sync");
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.output().unwrap()
}

#[test]
fn piped_logs_carry_no_colour_and_json_covers_every_line() {
    let output = failing_sync(&[], &[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cycle started"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in piped logs: {stderr:?}"
    );
    // The final error says its cause once (it used to repeat it as a "caused by").
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert_eq!(error.matches("was refused").count(), 1, "{stderr}");

    let output = failing_sync(&[], &["--log-format", "json"]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{stderr}"));
        assert!(value["level"].is_string(), "{line}");
    }
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert_eq!(last["fields"]["exit_code"], 5, "{stderr}");
}

#[test]
fn journald_gets_priorities() {
    let output = failing_sync(&[("JOURNAL_STREAM", "8:12345")], &[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("cycle started")),
        "{stderr}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("<3>error: ")),
        "{stderr}"
    );
    for line in &lines {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without a priority: {line:?}\n{stderr}"
        );
    }
}

#[cfg(feature = "demo")]
#[test]
fn demo_full_then_delta_into_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let output = bin()
        .args(["demo", "--users", "400", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("full sync"), "{stdout}");
    assert!(stdout.contains("delta sync"), "{stdout}");
    let lines = outbox_lines(&dir.path().join("outbox/changes.jsonl"));
    let delta: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["sync"]["mode"] == "delta")
        .collect();
    // 3 users edited, 1 created, 1 deleted, 1 group membership changed: nothing else.
    let upsert_users = delta
        .iter()
        .filter(|l| l["op"] == "upsert" && l["kind"] == "user")
        .count();
    let upsert_groups = delta
        .iter()
        .filter(|l| l["op"] == "upsert" && l["kind"] == "group")
        .count();
    let deletes = delta.iter().filter(|l| l["op"] == "delete").count();
    // Groups: the one the new user joined, and those that listed the deleted user (their
    // member lists changed, though AD does not bump their uSNChanged for it).
    let deleted_dn = delta
        .iter()
        .find(|l| l["op"] == "delete")
        .and_then(|l| l["record"]["dn"].as_str())
        .unwrap_or_default()
        .to_owned();
    let listing = lines
        .iter()
        .filter(|l| l["sync"]["mode"] == "full" && l["kind"] == "group")
        .filter(|l| {
            l["record"]["members"]
                .as_array()
                .is_some_and(|m| m.iter().any(|dn| dn.as_str() == Some(deleted_dn.as_str())))
        })
        .count();
    assert!(
        listing > 0,
        "the deleted user was in no group: {deleted_dn}"
    );
    assert_eq!(
        (upsert_users, upsert_groups, deletes),
        (4, 1 + listing, 1),
        "{delta:#?}"
    );
    let full = lines.len() - delta.len();
    assert!(
        full > 400,
        "the full sync sent every user and group: {full}"
    );
    // Canonical records: the deleted one is keyed by GUID, users carry SIDs.
    let deleted = delta.iter().find(|l| l["op"] == "delete").unwrap();
    assert!(deleted["record"]["object_guid"].is_string(), "{deleted}");

    // A second demo run in the same directory is refused? No: it reuses state and outbox,
    // and the status command reads that state.
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!("state_dir = {:?}\n", dir.path().join("state")),
    )
    .unwrap();
    let status = run(&config, &["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["state"], "Processed");
    assert_eq!(value["cycles"].as_array().unwrap().len(), 2);
    assert!(value["checkpoint"]["usn"].as_u64().unwrap() > 0);
}
