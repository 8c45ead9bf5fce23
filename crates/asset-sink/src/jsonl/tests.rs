use std::io::Write;

use ad_model::{Group, User};

use super::*;
use crate::change::{Batch, Change, Deletion};
use crate::sink::Sink;
use crate::testing;

fn read_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn lines_carry_op_kind_sync_and_canonical_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/changes.jsonl");
    let sink = JsonlSink::new(JsonlConfig {
        path: path.display().to_string(),
        ..JsonlConfig::default()
    })
    .unwrap();
    assert!(sink.check().await.unwrap().ok());
    let batch = testing::batch();
    let ack = sink.send(&batch).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.requests, ack.not_representable_count()),
        (14, 1, 0)
    );
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 14);
    // Records are ad-model's canonical JSON: they read back into the same values.
    let user: User = serde_json::from_value(lines[0]["record"].clone()).unwrap();
    assert_eq!(user, testing::normal());
    let group: Group = serde_json::from_value(lines[8]["record"].clone()).unwrap();
    assert_eq!(group, testing::global_security_group());
    let deleted: Deletion = serde_json::from_value(lines[13]["record"].clone()).unwrap();
    assert_eq!(deleted, testing::deletions()[1]);
    let envelope = |line: &serde_json::Value| {
        let mut line = line.clone();
        line.as_object_mut().unwrap().remove("record");
        line
    };
    insta::assert_json_snapshot!(
        "jsonl_envelopes",
        [
            envelope(&lines[0]),
            envelope(&lines[8]),
            envelope(&lines[12])
        ]
    );
    insta::assert_json_snapshot!("jsonl_delete_record", lines[12]["record"]);
    // Appends.
    sink.send(&batch).await.unwrap();
    assert_eq!(read_lines(&path).len(), 28);
}

#[tokio::test]
async fn rotates_by_size_without_splitting_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.jsonl");
    let batch = Batch {
        id: 1,
        sync: testing::sync(),
        changes: vec![Change::UpsertUser(testing::normal())],
    };
    let one = encode(&batch).unwrap().len() as u64;
    let sink = JsonlSink::new(JsonlConfig {
        path: path.display().to_string(),
        rotate_bytes: one * 2 + 1,
        batch_size: 10,
    })
    .unwrap();
    for _ in 0..5 {
        sink.send(&batch).await.unwrap();
    }
    // 2 + 2 + 1 lines.
    assert_eq!(read_lines(&dir.path().join("changes.jsonl.1")).len(), 2);
    assert_eq!(read_lines(&dir.path().join("changes.jsonl.2")).len(), 2);
    assert_eq!(read_lines(&path).len(), 1);
    // A new sink continues the numbering.
    let again = JsonlSink::new(JsonlConfig {
        path: path.display().to_string(),
        rotate_bytes: one,
        batch_size: 10,
    })
    .unwrap();
    again.send(&batch).await.unwrap();
    assert!(dir.path().join("changes.jsonl.3").exists());
}

#[tokio::test]
async fn a_partial_last_line_is_terminated_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changes.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"{\"op\":\"upsert\",\"trunc").unwrap();
    drop(file);
    let sink = JsonlSink::new(JsonlConfig {
        path: path.display().to_string(),
        ..JsonlConfig::default()
    })
    .unwrap();
    let batch = Batch {
        id: 1,
        sync: testing::sync(),
        changes: vec![Change::UpsertUser(testing::normal())],
    };
    sink.send(&batch).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(serde_json::from_str::<serde_json::Value>(lines[1]).is_ok());
}

#[tokio::test]
async fn unwritable_outbox_is_an_actionable_error() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let sink = JsonlSink::new(JsonlConfig {
        path: blocker.join("changes.jsonl").display().to_string(),
        ..JsonlConfig::default()
    })
    .unwrap();
    let err = sink.send(&testing::batch()).await.unwrap_err();
    assert!(err.to_string().contains("outbox"), "{err}");
    assert!(!sink.check().await.unwrap().ok());
}

#[tokio::test]
async fn stdout_target() {
    let sink = JsonlSink::new(JsonlConfig {
        path: "-".into(),
        ..JsonlConfig::default()
    })
    .unwrap();
    assert!(sink.path().is_none());
    let batch = Batch {
        id: 1,
        sync: testing::sync(),
        changes: vec![Change::Delete(testing::deletions()[0].clone())],
    };
    assert_eq!(sink.send(&batch).await.unwrap().accepted, 1);
}

#[test]
fn config_defaults() {
    let config: JsonlConfig = toml::from_str("").unwrap();
    assert_eq!(config, JsonlConfig::default());
    assert_eq!(config.path, DEFAULT_PATH);
    assert!(toml::from_str::<JsonlConfig>("file = \"x\"").is_err());
    assert!(
        JsonlSink::new(JsonlConfig {
            path: String::new(),
            ..JsonlConfig::default()
        })
        .is_err()
    );
}
