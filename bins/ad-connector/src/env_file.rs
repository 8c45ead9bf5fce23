//! The Qualys on-prem execution engine's env file as a configuration layer: above the TOML
//! file, below `ADC_…` variables, merged key by key.
//!
//! Its Qualys settings go to `[sink.qualys]` (`asset_sink::qualys::EnvFile` knows where),
//! and it selects the Qualys sink. Credentials are one unit: when the file gives any
//! (`authentication.type`, a username or a client id), they replace the TOML file's
//! `[sink.qualys.auth]` as a whole. `service.cron-expression` becomes `schedule.cron` in the
//! Quartz dialect (1 = Sunday); `thread-pool.size` becomes `pipeline.concurrency`.

use std::path::Path;

use asset_sink::qualys::EnvFile;
use toml::Value;

use crate::config::ConfigError;
use crate::layers::{self, Layered, Origin};

/// Keys of the env file with no meaning for this connector (accepted, ignored).
const IGNORED_KEYS: &[&str] = &["service.child-thread-pool", "qualys.OAuthClientLevel"];

/// Every key an env file may carry, for "did you mean".
const KNOWN_KEYS: &[&str] = &[
    "connector.api.url",
    "qualys.customerUuid",
    "qualys.connectionUuid",
    "qualys.profileUuid",
    "authentication.type",
    "qualys.user.username",
    "qualys.user.password",
    "oauth.client.id",
    "oauth.client.secret",
    "oauth.token.url",
    "qualys.clientId",
    "qualys.clientSecret",
    "qualys.OAuthClientLevel",
    "service.cron-expression",
    "proxy.enabled",
    "proxy.host",
    "proxy.port",
    "proxy.scheme",
    "service.http.proxy.enabled",
    "service.http.proxy.host",
    "service.http.proxy.port",
    "service.http.proxy.scheme",
    "thread-pool.size",
    "service.child-thread-pool",
];

/// Read the env file at `path` into `layered`.
pub fn apply(path: &Path, layered: &mut Layered) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::EnvFile {
        path: path.to_owned(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| env_err(format!("cannot be read: {e}")))?;
    let file = EnvFile::parse(&text).map_err(|e| env_err(e.to_string()))?;
    if file.entries.iter().any(|e| e.is_secret()) && layers::world_readable(path) {
        tracing::warn!(
            file = %path.display(),
            "the env file holds a secret and is readable by every user on this machine; run chmod 600 on it"
        );
    }
    let origin = |key: &str, line: usize| Origin::EnvFile {
        path: path.to_owned(),
        key: key.to_owned(),
        line,
    };
    if file.entries.iter().any(|e| e.path.first() == Some(&"auth")) {
        layered.remove(&["sink", "qualys", "auth"]);
    }
    for entry in &file.entries {
        let mut target = vec!["sink", "qualys"];
        target.extend(entry.path.iter().copied());
        layered.set(
            &target,
            Value::String(entry.value.clone()),
            origin(&entry.key, entry.line),
        )?;
    }
    layered.set(
        &["sink", "kind"],
        Value::String("qualys".into()),
        Origin::EnvFileGiven {
            path: path.to_owned(),
        },
    )?;
    for line in &file.rest {
        match line.key.as_str() {
            "service.cron-expression" => {
                let here = origin(&line.key, line.line);
                layered.set(
                    &["schedule", "cron"],
                    Value::String(line.value.clone()),
                    here.clone(),
                )?;
                layered.set(
                    &["schedule", "dialect"],
                    Value::String("quartz".into()),
                    here,
                )?;
            }
            "thread-pool.size" => {
                let size: i64 = line.value.parse().map_err(|_| {
                    env_err(format!(
                        "thread-pool.size = {:?} is not a whole number; write e.g. thread-pool.size=10",
                        line.value
                    ))
                })?;
                layered.set(
                    &["pipeline", "concurrency"],
                    Value::Integer(size),
                    origin(&line.key, line.line),
                )?;
            }
            key if IGNORED_KEYS.contains(&key) => {
                tracing::debug!(
                    key,
                    "env file key has no meaning for this connector; ignored"
                );
            }
            other => {
                let hint = KNOWN_KEYS
                    .iter()
                    .map(|known| {
                        (
                            layers::edit_distance(
                                &other.to_ascii_lowercase(),
                                &known.to_ascii_lowercase(),
                            ),
                            *known,
                        )
                    })
                    .min()
                    .filter(|(d, _)| *d <= 3)
                    .map(|(_, k)| format!(" — did you mean {k}?"))
                    .unwrap_or_default();
                return Err(env_err(format!(
                    "unknown key {other} (line {}){hint}",
                    line.line
                )));
            }
        }
    }
    Ok(())
}
