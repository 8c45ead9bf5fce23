//! Running the binary.

use std::path::Path;
use std::process::{Command, Output};

/// The binary, with no `ADC_` variable inherited from the developer's shell.
pub fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ad-connector"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ADC_") {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
    command
}

/// Run with a config file and arguments; returns the output.
pub fn run(config: &Path, args: &[&str]) -> Output {
    bin()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

pub fn text(output: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Parse a JSONL outbox.
pub fn outbox_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
