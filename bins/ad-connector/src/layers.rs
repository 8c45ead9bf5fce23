//! Configuration layers: a TOML file, then a Qualys env file, then `ADC_…` environment
//! variables, merged into one TOML table before it is deserialized (strictly: unknown keys
//! are errors, with a "did you mean").
//!
//! Environment variables: `ADC_` + the key path in upper case, levels joined by `__`:
//! `ADC_SOURCE__URL`, `ADC_SINK__SEKOIA__API_KEY`, `ADC_STATE_DIR`. `true`/`false` become
//! booleans and digits integers, except for secret keys, which stay text.
//!
//! Secrets (`password`, `api_key`, `client_secret`) may instead be given as `<key>_file`:
//! the file's content (trailing newline removed) is used.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// Keys whose values are secrets: never typed, never logged, may come from `<key>_file`.
pub const SECRET_KEYS: &[&str] = &["password", "api_key", "client_secret"];

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        message: String,
    },
    /// A `<secret>_file` could not be read.
    #[error("{key} names {path}, which cannot be read: {source}")]
    SecretFile {
        /// The key path.
        key: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key path collides with a non-table value.
    #[error("{key}: {message}")]
    Shape {
        /// The key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Read a TOML file into a table.
pub fn read_file(path: &Path) -> Result<Table, LayerError> {
    let text = std::fs::read_to_string(path).map_err(|source| LayerError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| LayerError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Set `path` (dotted segments) in `table` to `value`, creating tables on the way.
pub fn set(table: &mut Table, path: &[&str], value: Value) -> Result<(), LayerError> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = current
            .entry((*segment).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            _ => {
                return Err(LayerError::Shape {
                    key: path[..=i].join("."),
                    message: "is a value, but a table is needed here".into(),
                });
            }
        };
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

/// Overlay `ADC_…` variables from `vars` onto `table`.
pub fn apply_env<I>(table: &mut Table, vars: I) -> Result<(), LayerError>
where
    I: IntoIterator<Item = (String, String)>,
{
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("ADC_") else {
            continue;
        };
        // Variables of the binary itself, not configuration keys.
        if matches!(rest, "CONFIG" | "ENV_FILE" | "LOG" | "LOG_FORMAT") {
            continue;
        }
        let lowered = rest.to_ascii_lowercase();
        let segments: Vec<&str> = lowered.split("__").collect();
        let last = segments.last().copied().unwrap_or_default();
        set(table, &segments, typed(last, &value))?;
    }
    Ok(())
}

/// Infer a TOML value for a text from the environment.
pub fn typed(key: &str, value: &str) -> Value {
    if SECRET_KEYS.contains(&key) {
        return Value::String(value.to_owned());
    }
    match value {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => match value.parse::<i64>() {
            Ok(n) if !(value.starts_with('+') || value.len() > 1 && value.starts_with('0')) => {
                Value::Integer(n)
            }
            _ => Value::String(value.to_owned()),
        },
    }
}

/// Replace every `<secret>_file = "path"` with `<secret> = "<content>"`, at any depth.
/// Relative paths are resolved against `base`.
pub fn resolve_secret_files(
    table: &mut Table,
    base: &Path,
    prefix: &str,
) -> Result<(), LayerError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let path_key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let Some(Value::Table(inner)) = table.get_mut(&key) {
            resolve_secret_files(inner, base, &path_key)?;
            continue;
        }
        let Some(secret) = key.strip_suffix("_file") else {
            continue;
        };
        if !SECRET_KEYS.contains(&secret) {
            continue;
        }
        let Some(Value::String(file)) = table.remove(&key) else {
            return Err(LayerError::Shape {
                key: path_key,
                message: "must be a file path (text)".into(),
            });
        };
        let file = base.join(file);
        let content = std::fs::read_to_string(&file).map_err(|source| LayerError::SecretFile {
            key: path_key.clone(),
            path: file.clone(),
            source,
        })?;
        let content = content.trim_end_matches(['\r', '\n']).to_owned();
        table.insert(secret.to_owned(), Value::String(content));
    }
    Ok(())
}

/// Whether a file is readable by users other than its owner and group (Unix).
pub fn world_readable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Whether any secret is written inline in `table` (for the world-readable warning).
pub fn has_inline_secret(table: &Table) -> bool {
    table.iter().any(|(key, value)| match value {
        Value::Table(inner) => has_inline_secret(inner),
        Value::String(_) => SECRET_KEYS.contains(&key.as_str()),
        _ => false,
    })
}

/// Add "did you mean `x`?" to serde's "unknown field `y`, expected one of `a`, `b`".
pub fn suggest(message: &str) -> String {
    let Some((_, rest)) = message.split_once("unknown field `") else {
        return message.to_owned();
    };
    let Some((unknown, tail)) = rest.split_once('`') else {
        return message.to_owned();
    };
    let candidates: Vec<&str> = tail
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| !c.is_empty())
        .collect();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(unknown, c), *c))
        .min();
    // A close spelling, or a known key the unknown one starts with (`cron_expression`).
    let prefix = candidates
        .iter()
        .filter(|c| c.len() >= 3 && unknown.starts_with(**c))
        .max_by_key(|c| c.len());
    let best = match (best, prefix) {
        (Some((distance, candidate)), _) if distance <= unknown.len().max(3) / 2 + 1 => {
            Some(candidate)
        }
        (_, Some(candidate)) => Some(*candidate),
        _ => None,
    };
    match best {
        Some(candidate) => {
            format!("{} — did you mean `{candidate}`?", message.trim_end())
        }
        None => message.to_owned(),
    }
}

/// Levenshtein distance, for suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest_and_type() {
        let mut table: Table = "state_dir = \"/a\"\n[source]\nurl = \"ldaps://x\"\n"
            .parse()
            .unwrap();
        apply_env(
            &mut table,
            [
                ("ADC_SOURCE__URL".to_owned(), "ldaps://y".to_owned()),
                ("ADC_SOURCE__PAGE_SIZE".to_owned(), "500".to_owned()),
                ("ADC_SOURCE__PASSWORD".to_owned(), "12345".to_owned()),
                (
                    "ADC_SINK__SEKOIA__INSECURE_SKIP_TLS_VERIFY".to_owned(),
                    "false".to_owned(),
                ),
                ("ADC_LOG".to_owned(), "debug".to_owned()),
                ("OTHER".to_owned(), "x".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(table["source"]["url"].as_str(), Some("ldaps://y"));
        assert_eq!(table["source"]["page_size"].as_integer(), Some(500));
        assert_eq!(table["source"]["password"].as_str(), Some("12345"));
        assert_eq!(
            table["sink"]["sekoia"]["insecure_skip_tls_verify"].as_bool(),
            Some(false)
        );
        assert!(!table.contains_key("log"));
    }

    #[test]
    fn secret_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let mut table: Table = "[source]\npassword_file = \"pw\"\n".parse().unwrap();
        resolve_secret_files(&mut table, dir.path(), "").unwrap();
        assert_eq!(table["source"]["password"].as_str(), Some("s3cret"));
        assert!(has_inline_secret(&table));
        let mut missing: Table = "[source]\npassword_file = \"nope\"\n".parse().unwrap();
        let err = resolve_secret_files(&mut missing, dir.path(), "").unwrap_err();
        assert!(
            err.to_string().starts_with("source.password_file names"),
            "{err}"
        );
    }

    #[test]
    fn did_you_mean() {
        let message = "unknown field `page_sise`, expected one of `url`, `bind`, `page_size`";
        assert!(suggest(message).ends_with("did you mean `page_size`?"));
        let far = "unknown field `zzzzzzzz`, expected one of `url`, `bind`";
        assert_eq!(suggest(far), far);
    }
}
