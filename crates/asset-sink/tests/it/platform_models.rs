//! Our payloads, checked by the platforms' own models: every Sekoia item with the Sekoia
//! SDK's `UserOCSFModel` (pydantic, plus "no key the model does not declare"), every Qualys
//! body with `docs/schemas/qualys-etm-identity.schema.json`. `scripts/platform-models` creates
//! the Python venv with the pinned SDK on first use (PyPI must be reachable).

use std::path::{Path, PathBuf};
use std::process::Command;

use asset_sink::qualys::{QualysAuth, QualysConfig, QualysSink};
use asset_sink::sekoia::{SekoiaConfig, SekoiaSink};
use asset_sink::{Batch, Change, testing};
use secrecy::SecretString;
use uuid::Uuid;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `scripts/platform-models validate <kind> <files>`; panics with its report on refusal.
pub fn validate(kind: &str, files: &[PathBuf]) {
    let output = Command::new(root().join("scripts/platform-models"))
        .arg("validate")
        .arg(kind)
        .args(files)
        .output()
        .expect("scripts/platform-models runs (needs bash and python3)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the {kind} model refused our payloads:\n{report}"
    );
    eprintln!("{}", report.trim_end());
}

fn snapshots(dir: &str) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert!(!files.is_empty(), "no snapshot in {dir}");
    files
}

fn sekoia() -> SekoiaSink {
    SekoiaSink::new(SekoiaConfig::new(
        Uuid::from_u128(0x0b7a_6a54_3c5e_4d7f_9a51_8a0e_8a3c_2f10),
        SecretString::from("unused"),
    ))
    .unwrap()
}

fn qualys() -> QualysSink {
    QualysSink::new(QualysConfig::new(
        "https://gateway.qg1.apps.qualys.example",
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        Uuid::from_u128(3),
        QualysAuth::Basic {
            username: "unused".into(),
            password: SecretString::from("unused"),
            token_lifetime_secs: 3600,
        },
    ))
    .unwrap()
}

/// The fixtures, 300 users with hostile Unicode in every text attribute, the fixture groups
/// and deletes, in batches of 100.
fn batches() -> Vec<Batch> {
    let mut changes: Vec<Change> = testing::batch().changes;
    changes.extend(
        crate::unicode::hostile_users(300)
            .into_iter()
            .map(Change::UpsertUser),
    );
    changes
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| Batch {
            id: i as u64 + 1,
            sync: testing::sync(),
            changes: chunk.to_vec(),
        })
        .collect()
}

fn write_bodies(dir: &Path, name: &str, bodies: Vec<Vec<u8>>) -> PathBuf {
    let path = dir.join(name);
    let mut text = Vec::new();
    for body in bodies {
        text.extend_from_slice(&body);
        text.push(b'\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn sekoia_snapshots_and_generated_payloads_pass_the_sekoia_sdk_model() {
    let dir = tempfile::tempdir().unwrap();
    let sink = sekoia();
    let bodies = batches()
        .iter()
        .flat_map(|b| sink.encode(b).unwrap())
        .collect();
    let mut files = snapshots("crates/asset-sink/src/sekoia/snapshots");
    files.push(write_bodies(dir.path(), "sekoia.jsonl", bodies));
    validate("sekoia", &files);
}

#[test]
fn qualys_snapshots_and_generated_payloads_pass_the_qualys_schema() {
    let dir = tempfile::tempdir().unwrap();
    let sink = qualys();
    let bodies = batches()
        .iter()
        .flat_map(|b| sink.encode(b).unwrap())
        .collect();
    let mut files = snapshots("crates/asset-sink/src/qualys/snapshots");
    files.push(write_bodies(dir.path(), "qualys.jsonl", bodies));
    validate("qualys", &files);
}

#[test]
fn the_validators_refuse_what_the_platforms_would_refuse() {
    // An `org` without a name (what we used to send for a user with an OU and no company)
    // and a key the SDK does not declare; a Qualys user without status and an unknown key.
    let dir = tempfile::tempdir().unwrap();
    let sink = sekoia();
    let body = sink.encode(&testing::batch()).unwrap().remove(0);
    let mut body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    body["items"][0]["user"]["org"] = serde_json::json!({"ou_name": "Finance"});
    let bad = dir.path().join("bad-sekoia.json");
    std::fs::write(&bad, body.to_string()).unwrap();
    let output = Command::new(root().join("scripts/platform-models"))
        .args(["validate", "sekoia"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("org.name"), "{text}");

    body["items"][0]["user"]["org"] = serde_json::json!({"name": "Example"});
    body["items"][1]["user"]["nickname"] = serde_json::json!("x");
    std::fs::write(&bad, body.to_string()).unwrap();
    let output = Command::new(root().join("scripts/platform-models"))
        .args(["validate", "sekoia"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("item.user.nickname: not in the model"),
        "{text}"
    );

    let body = qualys().encode(&testing::batch()).unwrap().remove(0);
    let mut body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let class = &mut body["assetData"][0]["asset"]["assetDetail"]["userAssetClass"];
    class.as_object_mut().unwrap().remove("status");
    class["nickname"] = serde_json::json!("x");
    std::fs::write(&bad, body.to_string()).unwrap();
    let output = Command::new(root().join("scripts/platform-models"))
        .args(["validate", "qualys"])
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("assetData/0"), "{text}");
}
