//! The Qualys on-prem execution engine's env file (`key=value` lines), read setting by
//! setting into the TOML shape of [`QualysConfig`](super::QualysConfig), so a caller can
//! merge it key by key with its own configuration (and say where each value came from).
//!
//! Understood keys: `connector.api.url`, `qualys.customerUuid`, `qualys.connectionUuid`,
//! `qualys.profileUuid`, `authentication.type` (`BASIC`|`OAUTH`; when absent, BASIC if a
//! username is given, else OAUTH if a client id is), `qualys.user.username`,
//! `qualys.user.password`, `oauth.client.id` / `qualys.clientId`, `oauth.client.secret` /
//! `qualys.clientSecret`, `oauth.token.url`, and the proxy keys
//! `proxy.enabled|host|port|scheme` and `service.http.proxy.enabled|host|port|scheme`. Every
//! other key (the cron expression, thread pool sizes, ...) is returned untouched for the
//! caller. Empty values count as absent.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::error::SinkError;

/// One setting of the env file, placed where it goes in `[sink.qualys]`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvFileEntry {
    /// The env file's key that gave the value (for "where did this come from").
    pub key: String,
    /// Its line in the file, from 1.
    pub line: usize,
    /// The path in [`QualysConfig`](super::QualysConfig)'s TOML shape, e.g.
    /// `["auth", "client_id"]`.
    pub path: Vec<&'static str>,
    /// The value, as text. Secret for `auth.password` and `auth.client_secret`: see
    /// [`EnvFileEntry::is_secret`]; `Debug` redacts it.
    pub value: String,
}

impl EnvFileEntry {
    /// Whether the value is a secret (never shown, never logged).
    pub fn is_secret(&self) -> bool {
        matches!(self.path.last(), Some(&"password" | &"client_secret"))
    }
}

impl std::fmt::Debug for EnvFileEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFileEntry")
            .field("key", &self.key)
            .field("line", &self.line)
            .field("path", &self.path)
            .field(
                "value",
                &if self.is_secret() {
                    "<redacted>"
                } else {
                    self.value.as_str()
                },
            )
            .finish()
    }
}

/// A line the Qualys sink does not use (the caller's: cron expression, thread pools, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileLine {
    /// The key.
    pub key: String,
    /// Its line in the file, from 1.
    pub line: usize,
    /// The value.
    pub value: String,
}

/// An env file, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    /// The Qualys sink's settings, in file order of their keys.
    pub entries: Vec<EnvFileEntry>,
    /// The other keys.
    pub rest: Vec<EnvFileLine>,
}

impl EnvFile {
    /// The entry placed at `path`, if the file gave one.
    pub fn get(&self, path: &[&str]) -> Option<&EnvFileEntry> {
        self.entries.iter().find(|e| e.path == path)
    }

    /// Read `text`. Fails on an unknown `authentication.type` or a UUID that is not one.
    pub fn parse(text: &str) -> Result<EnvFile, SinkError> {
        let mut map: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                map.insert(key.trim().to_owned(), (index + 1, value.to_owned()));
            }
        }
        let mut file = EnvFile::default();
        // The first of `keys` with a non-empty value; all of them are consumed.
        let mut take = |keys: &[&str]| -> Option<(String, usize, String)> {
            let mut found = None;
            for key in keys {
                if let Some((line, value)) = map.remove(*key)
                    && found.is_none()
                    && !value.is_empty()
                {
                    found = Some(((*key).to_owned(), line, value));
                }
            }
            found
        };
        let put = |file: &mut EnvFile, found: (String, usize, String), path| {
            let (key, line, value) = found;
            file.entries.push(EnvFileEntry {
                key,
                line,
                path,
                value,
            });
        };
        if let Some(found) = take(&["connector.api.url"]) {
            put(&mut file, found, vec!["gateway_url"]);
        }
        for (key, field) in [
            ("qualys.customerUuid", "customer_uuid"),
            ("qualys.connectionUuid", "connection_uuid"),
            ("qualys.profileUuid", "profile_uuid"),
        ] {
            if let Some(found) = take(&[key]) {
                if found.2.parse::<Uuid>().is_err() {
                    return Err(SinkError::Config {
                        sink: "qualys",
                        key,
                        problem: format!("{:?} is not a UUID", found.2),
                    });
                }
                put(&mut file, found, vec![field]);
            }
        }
        let auth_type = take(&["authentication.type"]);
        let username = take(&["qualys.user.username"]);
        let password = take(&["qualys.user.password"]);
        let client_id = take(&["oauth.client.id", "qualys.clientId"]);
        let client_secret = take(&["oauth.client.secret", "qualys.clientSecret"]);
        let token_url = take(&["oauth.token.url"]);
        let oauth = match &auth_type {
            Some((_, _, value)) => match value.to_ascii_uppercase().as_str() {
                "OAUTH" => Some(true),
                "BASIC" => Some(false),
                other => {
                    return Err(SinkError::Config {
                        sink: "qualys",
                        key: "authentication.type",
                        problem: format!("is {other:?}; expected BASIC or OAUTH"),
                    });
                }
            },
            None if username.is_some() => Some(false),
            None if client_id.is_some() => Some(true),
            None => None,
        };
        if let Some(oauth) = oauth {
            let decided_by = auth_type.clone().or_else(|| {
                if oauth {
                    client_id.clone()
                } else {
                    username.clone()
                }
            });
            if let Some((key, line, _)) = decided_by {
                let value = if oauth { "OAUTH" } else { "BASIC" };
                put(
                    &mut file,
                    (key, line, value.to_owned()),
                    vec!["auth", "type"],
                );
            }
            let fields = if oauth {
                [
                    (client_id, "client_id"),
                    (client_secret, "client_secret"),
                    (token_url, "token_url"),
                ]
            } else {
                [(username, "username"), (password, "password"), (None, "")]
            };
            for (found, field) in fields {
                if let Some(found) = found {
                    put(&mut file, found, vec!["auth", field]);
                }
            }
        }
        for prefix in ["proxy", "service.http.proxy"] {
            let enabled = take(&[&format!("{prefix}.enabled")]);
            let host = take(&[&format!("{prefix}.host")]);
            let port = take(&[&format!("{prefix}.port")]);
            let scheme = take(&[&format!("{prefix}.scheme")]);
            let enabled = enabled.is_some_and(|(_, _, v)| v.eq_ignore_ascii_case("true"));
            if let (true, Some((key, line, host)), None) =
                (enabled, host, file.get(&["http", "proxy", "url"]))
            {
                let scheme = scheme.map_or_else(|| "http".to_owned(), |(_, _, s)| s);
                let url = match port {
                    Some((_, _, port)) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                };
                put(&mut file, (key, line, url), vec!["http", "proxy", "url"]);
            }
        }
        file.rest = map
            .into_iter()
            .map(|(key, (line, value))| EnvFileLine { key, line, value })
            .collect();
        file.rest.sort_by_key(|l| l.line);
        Ok(file)
    }
}
