//! Configuration layers, lowest first: a TOML file, a Qualys env file, `ADC_…` environment
//! variables. They are merged key by key into one TOML table before it is deserialized
//! (strictly: unknown keys are errors, with a "did you mean"), and every key remembers where
//! its value came from ([`Origin`]) for `config show`.
//!
//! Environment variables: `ADC_` + the key path in upper case, levels joined by `__`:
//! `ADC_SOURCE__URL`, `ADC_SINK__SEKOIA__API_KEY`, `ADC_STATE_DIR`. A value gets the type the
//! key has in the documented example (`docs/ad-connector.example.toml`): `ADC_SOURCE__BIND=12345`
//! stays text, `ADC_SOURCE__PAGE_SIZE=500` is a number.
//!
//! Secrets (`password`, `api_key`, `client_secret`) may instead be given as `<key>_file`:
//! the file's content (trailing newline removed) is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

/// Keys whose values are secrets: never typed, never logged, may come from `<key>_file`.
pub const SECRET_KEYS: &[&str] = &["password", "api_key", "client_secret"];

/// The documented example: every key, with its type.
const EXAMPLE: &str = include_str!("../../../docs/ad-connector.example.toml");

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the TOML file.
    File {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// A key of the Qualys env file.
    EnvFile {
        /// The file.
        path: PathBuf,
        /// The env file's key.
        key: String,
        /// The line, from 1.
        line: usize,
    },
    /// `--env-file` itself (it selects the Qualys sink).
    EnvFileGiven {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable.
    Env {
        /// Its name.
        var: String,
    },
    /// The content of a secret file named by another setting.
    SecretFile {
        /// The file read.
        path: PathBuf,
        /// Where the `<key>_file` setting came from.
        named_by: Box<Origin>,
    },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::EnvFile { path, key, line } => {
                write!(f, "env file {}:{line} ({key})", path.display())
            }
            Origin::EnvFileGiven { path } => write!(f, "--env-file {}", path.display()),
            Origin::Env { var } => write!(f, "environment {var}"),
            Origin::SecretFile { path, named_by } => {
                write!(f, "file {} (named by {named_by})", path.display())
            }
        }
    }
}

/// The merged table and the origin of every value in it (dotted key paths).
#[derive(Debug, Clone, Default)]
pub struct Layered {
    /// The merged settings.
    pub table: Table,
    /// Dotted key path (`source.url`) → where its value came from.
    pub origins: BTreeMap<String, Origin>,
}

impl Layered {
    /// Set `path` to `value`, from `origin`.
    pub fn set(&mut self, path: &[&str], value: Value, origin: Origin) -> Result<(), LayerError> {
        set(&mut self.table, path, value)?;
        self.origins.insert(path.join("."), origin);
        Ok(())
    }

    /// Remove the table or value at `path` and the origins below it.
    pub fn remove(&mut self, path: &[&str]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut current = &mut self.table;
        for segment in parents {
            match current.get_mut(*segment) {
                Some(Value::Table(t)) => current = t,
                _ => return,
            }
        }
        current.remove(*last);
        let prefix = path.join(".");
        self.origins
            .retain(|key, _| key != &prefix && !key.starts_with(&format!("{prefix}.")));
    }
}

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
    /// The file is not TOML. The message never quotes the file's text (it could be a
    /// password written without quotes).
    #[error("configuration file {path} is not valid TOML: line {line}, column {column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The column, from 1.
        column: usize,
        /// The parser's message, without the quoted text.
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
    /// An environment variable's value does not fit its key's type.
    #[error("{var} = {value:?}: {key} takes {expected}")]
    EnvType {
        /// The variable.
        var: String,
        /// Its value (never a secret: secrets are text and always fit).
        value: String,
        /// The key path.
        key: String,
        /// What it takes.
        expected: &'static str,
    },
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

/// Read a TOML file into `layered` (the first layer), with the line of every value.
pub fn read_file(path: &Path, layered: &mut Layered) -> Result<(), LayerError> {
    let text = std::fs::read_to_string(path).map_err(|source| LayerError::Read {
        path: path.to_owned(),
        source,
    })?;
    let syntax = |e: toml::de::Error| {
        let (line, column) = line_column(&text, e.span().map_or(0, |s| s.start));
        LayerError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    };
    // Parsed once: the spanned document gives each key's line, then becomes the table.
    let spanned = toml::de::DeTable::parse(&text).map_err(syntax)?;
    let mut lines = Vec::new();
    key_lines(spanned.get_ref(), "", &mut lines);
    layered.table = Table::deserialize(toml::de::Deserializer::from(spanned)).map_err(syntax)?;
    for (key, offset) in lines {
        let (line, _) = line_column(&text, offset);
        layered.origins.insert(
            key,
            Origin::File {
                path: path.to_owned(),
                line,
            },
        );
    }
    Ok(())
}

/// Every non-table value's dotted key and the byte offset of its key.
fn key_lines(table: &toml::de::DeTable<'_>, prefix: &str, out: &mut Vec<(String, usize)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => key_lines(inner, &path, out),
            _ => out.push((path, key.span().start)),
        }
    }
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

/// Overlay `ADC_…` variables from `vars` onto `layered`.
pub fn apply_env<I>(layered: &mut Layered, vars: I) -> Result<(), LayerError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let example: Table = EXAMPLE.parse().unwrap_or_default();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with("ADC_"))
        .collect();
    // Deterministic when two variables name the same key in different cases.
    vars.sort();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("ADC_") else {
            continue;
        };
        // Variables of the binary itself (and of its build), not configuration keys.
        if matches!(
            rest,
            "CONFIG" | "ENV_FILE" | "LOG" | "LOG_FORMAT" | "GIT_COMMIT"
        ) {
            continue;
        }
        let lowered = rest.to_ascii_lowercase();
        let segments: Vec<&str> = lowered.split("__").collect();
        let value = typed(&example, &name, &segments, &value)?;
        layered.set(&segments, value, Origin::Env { var: name.clone() })?;
    }
    Ok(())
}

/// The TOML value for an environment variable's text: the type its key has in the
/// documented example; for a key the example does not show, `true`/`false` and plain
/// numbers are typed and everything else is text. Secrets are always text.
pub fn typed(example: &Table, var: &str, path: &[&str], text: &str) -> Result<Value, LayerError> {
    let last = path.last().copied().unwrap_or_default();
    if SECRET_KEYS.contains(&last) {
        return Ok(Value::String(text.to_owned()));
    }
    let wrong = |expected| LayerError::EnvType {
        var: var.to_owned(),
        value: text.to_owned(),
        key: path.join("."),
        expected,
    };
    let mut shown: Option<&Value> = None;
    let mut table = Some(example);
    for segment in path {
        shown = table.and_then(|t| t.get(*segment));
        table = shown.and_then(Value::as_table);
    }
    Ok(match shown {
        Some(Value::String(_)) => Value::String(text.to_owned()),
        Some(Value::Integer(_)) => Value::Integer(
            text.parse()
                .map_err(|_| wrong("a whole number (e.g. 500)"))?,
        ),
        Some(Value::Float(_)) => {
            Value::Float(text.parse().map_err(|_| wrong("a number (e.g. 0.10)"))?)
        }
        Some(Value::Boolean(_)) => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(wrong("true or false")),
        },
        _ => match text {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => match text.parse::<i64>() {
                Ok(n) if !(text.starts_with('+') || text.len() > 1 && text.starts_with('0')) => {
                    Value::Integer(n)
                }
                _ => Value::String(text.to_owned()),
            },
        },
    })
}

/// Replace every `<secret>_file = "path"` with `<secret> = "<content>"`, at any depth.
/// Relative paths are resolved against `base`. Warns about secret files other users can read.
pub fn resolve_secret_files(layered: &mut Layered, base: &Path) -> Result<(), LayerError> {
    let found: Vec<(String, Option<String>)> = leaves(&layered.table)
        .into_iter()
        .filter(|(_, key, _)| {
            key.strip_suffix("_file")
                .is_some_and(|s| SECRET_KEYS.contains(&s))
        })
        .map(|(path, _, value)| (path, value.as_str().map(str::to_owned)))
        .collect();
    for (key, file) in found {
        let Some(file) = file else {
            return Err(LayerError::Shape {
                key,
                message: "must be a file path (text)".into(),
            });
        };
        let segments: Vec<&str> = key.split('.').collect();
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let file = base.join(file);
        let content = std::fs::read_to_string(&file).map_err(|source| LayerError::SecretFile {
            key: key.clone(),
            path: file.clone(),
            source,
        })?;
        if world_readable(&file) {
            tracing::warn!(
                file = %file.display(),
                "{key} names a file every user on this machine can read; run chmod 600 on it"
            );
        }
        let content = content.trim_end_matches(['\r', '\n']).to_owned();
        let named_by = layered.origins.remove(&key);
        layered.remove(&segments);
        let secret = last.trim_end_matches("_file");
        let mut target: Vec<&str> = parents.to_vec();
        target.push(secret);
        let origin = Origin::SecretFile {
            path: file,
            named_by: Box::new(named_by.unwrap_or(Origin::Env { var: key.clone() })),
        };
        layered.set(&target, Value::String(content), origin)?;
    }
    Ok(())
}

/// Every value of `table` that is not a table, with its dotted path and last key, in order.
pub fn leaves(table: &Table) -> Vec<(String, &str, &Value)> {
    fn walk<'a>(table: &'a Table, prefix: &str, out: &mut Vec<(String, &'a str, &'a Value)>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::Table(inner) => walk(inner, &path, out),
                other => out.push((path, key.as_str(), other)),
            }
        }
    }
    let mut out = Vec::new();
    walk(table, "", &mut out);
    out
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
    leaves(table)
        .iter()
        .any(|(_, key, value)| value.is_str() && SECRET_KEYS.contains(key))
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_overrides_nest_and_take_the_documented_type() {
        let mut layered = Layered {
            table: "state_dir = \"/a\"\n[source]\nurl = \"ldaps://x\"\n"
                .parse()
                .unwrap(),
            ..Layered::default()
        };
        apply_env(
            &mut layered,
            env(&[
                ("ADC_SOURCE__URL", "ldaps://y"),
                ("ADC_SOURCE__PAGE_SIZE", "500"),
                ("ADC_SOURCE__PASSWORD", "12345"),
                ("ADC_SOURCE__BIND", "12345"),
                ("ADC_SINK__SEKOIA__HTTP__INSECURE_SKIP_TLS_VERIFY", "FALSE"),
                ("ADC_PIPELINE__MAX_DELETE_FRACTION", "1"),
                ("ADC_LOG", "debug"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        let table = &layered.table;
        assert_eq!(table["source"]["url"].as_str(), Some("ldaps://y"));
        assert_eq!(table["source"]["page_size"].as_integer(), Some(500));
        assert_eq!(table["source"]["password"].as_str(), Some("12345"));
        // Strings stay strings, whatever they look like.
        assert_eq!(table["source"]["bind"].as_str(), Some("12345"));
        assert_eq!(
            table["sink"]["sekoia"]["http"]["insecure_skip_tls_verify"].as_bool(),
            Some(false)
        );
        assert_eq!(
            table["pipeline"]["max_delete_fraction"].as_float(),
            Some(1.0)
        );
        assert!(!table.contains_key("log"));
        assert_eq!(
            layered.origins["source.bind"].to_string(),
            "environment ADC_SOURCE__BIND"
        );
        let err = apply_env(
            &mut Layered::default(),
            env(&[("ADC_SOURCE__PAGE_SIZE", "lots")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ADC_SOURCE__PAGE_SIZE = \"lots\": source.page_size takes a whole number (e.g. 500)"
        );
    }

    #[test]
    fn file_values_know_their_line_and_syntax_errors_quote_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "state_dir = \"/a\"\n\n[source]\nurl = \"ldaps://x\"\n",
        )
        .unwrap();
        let mut layered = Layered::default();
        read_file(&path, &mut layered).unwrap();
        assert_eq!(
            layered.origins["source.url"],
            Origin::File {
                path: path.clone(),
                line: 4
            }
        );
        // An unquoted password: the error names the place, never the text.
        std::fs::write(&path, "[source]\npassword = Hunter2Secret!\n").unwrap();
        let err = read_file(&path, &mut Layered::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2, column"), "{err}");
        assert!(!err.contains("Hunter2"), "{err}");
    }

    #[test]
    fn secret_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let mut layered = Layered {
            table: "[source]\npassword_file = \"pw\"\n".parse().unwrap(),
            ..Layered::default()
        };
        resolve_secret_files(&mut layered, dir.path()).unwrap();
        assert_eq!(layered.table["source"]["password"].as_str(), Some("s3cret"));
        assert!(layered.table["source"].get("password_file").is_none());
        assert!(has_inline_secret(&layered.table));
        assert!(
            layered.origins["source.password"]
                .to_string()
                .starts_with("file ")
        );
        let mut missing = Layered {
            table: "[source]\npassword_file = \"nope\"\n".parse().unwrap(),
            ..Layered::default()
        };
        let err = resolve_secret_files(&mut missing, dir.path()).unwrap_err();
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
