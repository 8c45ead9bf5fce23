//! The connector's configuration: `ad-connector.toml`, overridable by `ADC_…` environment
//! variables and by a Qualys execution-engine env file (`--env-file`).
//!
//! Every key is documented in `docs/configuration.md`; `docs/ad-connector.example.toml` is
//! a complete example.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ad_source::SourceConfig;
use asset_sink::Sink;
use asset_sink::jsonl::{JsonlConfig, JsonlSink};
use asset_sink::qualys::{QualysConfig, QualysSink};
use asset_sink::sekoia::{SekoiaConfig, SekoiaSink};
use serde::Deserialize;

use crate::layers::{self, Layered};
use crate::schedule::{CronDialect, Schedule, ScheduleError};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory holding the state database (checkpoint, what was sent) and its lock.
    /// Default `./state`. Relative paths are relative to the working directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The Active Directory domain controller to read (`[source]`). Required by `test`,
    /// `sync`, `run` and `preview`.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// Where changes are delivered (`[sink]`).
    #[serde(default)]
    pub sink: SinkSection,
    /// When `run` syncs (`[schedule]`).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Batching and concurrency (`[pipeline]`).
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Metrics and health endpoints of `run` (`[telemetry]`).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address where `run` serves Prometheus metrics (`GET /metrics`) and a health check
    /// (`GET /healthz`), e.g. `"127.0.0.1:9464"`. Default: none (no listener). Port 0 picks a
    /// free port, logged at start. The endpoints carry counts and times, no names or secrets.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// `/healthz` answers 503 once the last successful cycle is older than this many schedule
    /// periods (the longest gap between two scheduled runs). Default 3.
    #[serde(default = "default_unhealthy_after_periods")]
    pub unhealthy_after_periods: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: None,
            unhealthy_after_periods: default_unhealthy_after_periods(),
        }
    }
}

fn default_unhealthy_after_periods() -> f64 {
    3.0
}

/// Which sink, and its settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// `jsonl` (default: a local outbox, no account needed), `sekoia` or `qualys`.
    #[serde(default)]
    pub kind: SinkKind,
    /// `[sink.jsonl]`: the outbox file.
    #[serde(default)]
    pub jsonl: Option<JsonlConfig>,
    /// `[sink.sekoia]`: the Sekoia.io asset connector.
    #[serde(default)]
    pub sekoia: Option<SekoiaConfig>,
    /// `[sink.qualys]`: the Qualys ETM connector.
    #[serde(default)]
    pub qualys: Option<QualysConfig>,
}

/// The sink kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Local JSONL outbox.
    #[default]
    Jsonl,
    /// Sekoia.io.
    Sekoia,
    /// Qualys ETM.
    Qualys,
}

/// `[schedule]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression for `run`: 5 fields (`*/10 * * * *`) or 6 with seconds first
    /// (`0 0/10 * * * *`), in UTC. Default every 10 minutes.
    #[serde(default = "default_cron")]
    pub cron: String,
    /// How `cron` numbers the days of the week: `cron` (0 or 7 = Sunday; the default) or
    /// `quartz` (1 = Sunday … 7 = Saturday, `?` for "any", an optional 7th field for the
    /// year). A Qualys env file's `service.cron-expression` is Quartz and sets it.
    #[serde(default)]
    pub dialect: CronDialect,
    /// A full sync (which also catches deletions past the tombstone lifetime and objects
    /// moved out of scope) runs when the last one is older than this. Default 24.
    #[serde(default = "default_full_hours")]
    pub full_sync_interval_hours: u64,
    /// Run one cycle immediately when `run` starts, before the first scheduled time.
    /// Default true.
    #[serde(default = "default_true")]
    pub run_at_start: bool,
}

/// `[pipeline]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Changes per batch. Default: the sink's own batch size (1000 for every sink).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Batches sent concurrently (Qualys env `thread-pool.size`). Default 2.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Delete guard: a full sync that would delete more than this fraction of the tracked
    /// objects sends none of its deletes and records them for `status` (0.0–1.0; 1.0 turns
    /// the check off). Default 0.10.
    #[serde(default = "default_max_delete_fraction")]
    pub max_delete_fraction: f64,
    /// Delete guard: a full sync that would delete more than this many objects sends none of
    /// its deletes. Default: no count limit (only the fraction applies).
    #[serde(default)]
    pub max_deletes: Option<u64>,
}

fn default_max_delete_fraction() -> f64 {
    ad_sync::DeleteGuard::default().max_delete_fraction
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: default_cron(),
            dialect: CronDialect::Cron,
            full_sync_interval_hours: default_full_hours(),
            run_at_start: true,
        }
    }
}

impl ScheduleConfig {
    /// The parsed schedule.
    pub fn parsed(&self) -> Result<Schedule, ScheduleError> {
        Schedule::parse("schedule.cron", &self.cron, self.dialect)
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            batch_size: None,
            concurrency: default_concurrency(),
            max_delete_fraction: default_max_delete_fraction(),
            max_deletes: None,
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./state")
}
fn default_cron() -> String {
    "*/10 * * * *".to_owned()
}
fn default_full_hours() -> u64 {
    24
}
fn default_true() -> bool {
    true
}
fn default_concurrency() -> usize {
    2
}

/// Why the configuration is unusable: each names the key, the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Assembling the layers failed.
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    /// A key is unknown or has the wrong type.
    #[error("configuration: {0}")]
    Invalid(String),
    /// A required section is missing.
    #[error("configuration: {what} is missing; {fix}")]
    Missing {
        /// What.
        what: &'static str,
        /// How to add it.
        fix: &'static str,
    },
    /// The Qualys env file is wrong.
    #[error("env file {path}: {message}")]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Load `file` (if given and present), then the Qualys env file, then `ADC_…`
    /// variables from `env` (each layer overrides the one before, key by key).
    /// `file_required` makes a missing file an error.
    pub fn load<I>(
        file: Option<&Path>,
        file_required: bool,
        env: I,
        env_file: Option<&Path>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Ok(Config::load_layered(file, file_required, env, env_file)?.0)
    }

    /// [`Config::load`], also returning the merged settings with their origins.
    pub fn load_layered<I>(
        file: Option<&Path>,
        file_required: bool,
        env: I,
        env_file: Option<&Path>,
    ) -> Result<(Config, Layered), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut layered = Layered::default();
        let mut base = PathBuf::from(".");
        if let Some(path) = file
            && (path.exists() || file_required)
        {
            layers::read_file(path, &mut layered)?;
            if layers::has_inline_secret(&layered.table) && layers::world_readable(path) {
                tracing::warn!(
                    file = %path.display(),
                    "the configuration file holds a secret and is readable by every user on this machine; run chmod 600 on it or move the secret to a *_file or ADC_ environment variable"
                );
            }
            base = path.parent().map(Path::to_path_buf).unwrap_or(base);
        }
        if let Some(path) = env_file {
            crate::env_file::apply(path, &mut layered)?;
        }
        layers::apply_env(&mut layered, env)?;
        layers::resolve_secret_files(&mut layered, &base)?;
        let config: Config = Config::deserialize(toml::Value::Table(layered.table.clone()))
            .map_err(|e| ConfigError::Invalid(layers::suggest(&e.to_string())))?;
        config.validate()?;
        Ok((config, layered))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.schedule
            .parsed()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.pipeline.concurrency == 0 || self.pipeline.concurrency > 64 {
            return Err(ConfigError::Invalid(format!(
                "pipeline.concurrency = {} is out of range; use 1 to 64 (default 2)",
                self.pipeline.concurrency
            )));
        }
        if !(0.0..=1.0).contains(&self.pipeline.max_delete_fraction) {
            return Err(ConfigError::Invalid(format!(
                "pipeline.max_delete_fraction = {} is out of range; use 0.0 to 1.0 (default 0.10; 1.0 turns the fraction check off)",
                self.pipeline.max_delete_fraction
            )));
        }
        if self.pipeline.batch_size == Some(0) {
            return Err(ConfigError::Invalid(
                "pipeline.batch_size = 0; use at least 1 (default: the sink's, 1000)".into(),
            ));
        }
        if !(self.telemetry.unhealthy_after_periods >= 1.0
            && self.telemetry.unhealthy_after_periods.is_finite())
        {
            return Err(ConfigError::Invalid(format!(
                "telemetry.unhealthy_after_periods = {} is out of range; use 1 or more (default 3): below one period every wait between two cycles would look unhealthy",
                self.telemetry.unhealthy_after_periods
            )));
        }
        if self.schedule.full_sync_interval_hours == 0 {
            return Err(ConfigError::Invalid(
                "schedule.full_sync_interval_hours = 0; use at least 1 (default 24)".into(),
            ));
        }
        Ok(())
    }

    /// The source settings, or an error saying how to add them.
    pub fn source(&self) -> Result<&SourceConfig, ConfigError> {
        self.source.as_ref().ok_or(ConfigError::Missing {
            what: "[source]",
            fix: "add a [source] table with url, bind and password (see docs/configuration.md), or run `ad-connector demo` to try the connector without a directory",
        })
    }

    /// The full sync interval.
    pub fn full_sync_interval(&self) -> Duration {
        Duration::from_secs(self.schedule.full_sync_interval_hours.saturating_mul(3600))
    }

    /// Build the configured sink.
    pub fn build_sink(&self) -> anyhow::Result<Arc<dyn Sink>> {
        Ok(match self.sink.kind {
            SinkKind::Jsonl => {
                Arc::new(JsonlSink::new(self.sink.jsonl.clone().unwrap_or_default())?)
            }
            SinkKind::Sekoia => {
                let config = self.sink.sekoia.clone().ok_or(ConfigError::Missing {
                    what: "[sink.sekoia]",
                    fix: "add [sink.sekoia] with connector_uuid and api_key (or api_key_file), or choose another sink.kind",
                })?;
                Arc::new(SekoiaSink::new(config)?)
            }
            SinkKind::Qualys => {
                let config = self.sink.qualys.clone().ok_or(ConfigError::Missing {
                    what: "[sink.qualys]",
                    fix: "add [sink.qualys] (see docs/configuration.md) or pass the Qualys env file with --env-file",
                })?;
                Arc::new(QualysSink::new(config)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(
            Some(&path),
            true,
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            None,
        )
    }

    const MINIMAL: &str = "[source]\nurl = \"ldaps://dc1.corp.example.test\"\nbind = \"svc@corp\"\npassword = \"pw\"\n";

    #[test]
    fn defaults() {
        let config = load(MINIMAL, &[]).unwrap();
        assert_eq!(config.sink.kind, SinkKind::Jsonl);
        assert_eq!(config.schedule.cron, "*/10 * * * *");
        assert_eq!(config.full_sync_interval(), Duration::from_secs(24 * 3600));
        assert_eq!(config.state_dir, PathBuf::from("./state"));
    }

    #[test]
    fn unknown_keys_suggest() {
        let err = load(
            &format!("{MINIMAL}[schedule]\ncron_expresion = \"* * * * *\"\n"),
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cron_expresion") && text.contains("did you mean `cron`?"),
            "{text}"
        );
        let err = load(&format!("{MINIMAL}page_sise = 3\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("page_sise"), "{err}");
    }

    #[test]
    fn env_overrides_and_validation() {
        let config = load(
            MINIMAL,
            &[
                ("ADC_SOURCE__PAGE_SIZE", "250"),
                ("ADC_SCHEDULE__CRON", "0 0/10 * * * *"),
            ],
        )
        .unwrap();
        assert_eq!(config.source().unwrap().page_size, 250);
        let err = load(MINIMAL, &[("ADC_SCHEDULE__CRON", "every minute")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("schedule.cron = \"every minute\""), "{err}");
        let err = load(MINIMAL, &[("ADC_PIPELINE__CONCURRENCY", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("pipeline.concurrency = 0"), "{err}");
    }

    /// docs/ad-connector.example.toml documents every key: it must load as it is (secret
    /// files pointed at a temporary file).
    #[test]
    fn the_documented_example_loads() {
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/ad-connector.example.toml"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let text: String = example
            .lines()
            .map(|line| match line.split_once("_file = ") {
                Some((key, _)) if !line.starts_with('#') && !key.contains("ca") => {
                    format!("{key}_file = {secret:?}")
                }
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = load(&text, &[]).unwrap();
        assert_eq!(config.sink.kind, SinkKind::Sekoia);
        let source = config.source().unwrap();
        assert_eq!(source.page_size, 1000);
        assert!(config.sink.sekoia.is_some() && config.sink.qualys.is_some());
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn qualys_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("qualys.env");
        std::fs::write(
            &env,
            "connector.api.url=https://gateway.example.test\nqualys.customerUuid=35664649-0000-4000-8000-0e54079e1ee9\nqualys.connectionUuid=6ec6ac85-0000-4000-8000-558f378caa2b\nqualys.profileUuid=a4ab0242-0000-4000-8000-f62c67a56093\nauthentication.type=BASIC\nqualys.user.username=u\nqualys.user.password=Qualys@890\nservice.cron-expression=0 0/10 * * * *\nthread-pool.size=10\n",
        )
        .unwrap();
        let config = Config::load(None, false, Vec::new(), Some(&env)).unwrap();
        assert_eq!(config.sink.kind, SinkKind::Qualys);
        assert_eq!(config.schedule.cron, "0 0/10 * * * *");
        assert_eq!(config.schedule.dialect, CronDialect::Quartz);
        assert_eq!(config.pipeline.concurrency, 10);
        assert!(!format!("{config:?}").contains("Qualys@890"));

        std::fs::write(&env, "connector.api.url=https://g\nqualys.customerUuid=35664649-0000-4000-8000-0e54079e1ee9\nqualys.connectionUuid=6ec6ac85-0000-4000-8000-558f378caa2b\nqualys.profileUuid=a4ab0242-0000-4000-8000-f62c67a56093\nqualys.user.username=u\nqualys.user.password=p\nservice.cron-expresion=* * * * *\n").unwrap();
        let err = Config::load(None, false, Vec::new(), Some(&env))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key service.cron-expresion (line 7)")
                && err.contains("did you mean service.cron-expression?"),
            "{err}"
        );
    }

    /// TOML < env file < ADC_ variables, key by key: the env file neither drops what it does
    /// not set (a TOML proxy) nor beats the environment.
    #[test]
    fn layers_merge_key_by_key_in_a_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("c.toml");
        std::fs::write(
            &toml_path,
            "[sink.qualys]\ngateway_url = \"https://toml.example.test\"\ncustomer_uuid = \"35664649-0000-4000-8000-0e54079e1ee9\"\nconnection_uuid = \"6ec6ac85-0000-4000-8000-558f378caa2b\"\nprofile_uuid = \"a4ab0242-0000-4000-8000-f62c67a56093\"\nbatch_size = 200\n[sink.qualys.auth]\ntype = \"OAUTH\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntoken_url = \"https://idp.example.test/t\"\n[sink.qualys.http.proxy]\nurl = \"http://proxy.example.test:3128\"\n",
        )
        .unwrap();
        let env_path = dir.path().join("qualys.env");
        std::fs::write(
            &env_path,
            "connector.api.url=https://envfile.example.test\nqualys.user.username=u\nqualys.user.password=p\nservice.cron-expression=0 0 12 ? * 1\n",
        )
        .unwrap();
        let (config, layered) = Config::load_layered(
            Some(&toml_path),
            true,
            vec![("ADC_PIPELINE__CONCURRENCY".to_owned(), "3".to_owned())],
            Some(&env_path),
        )
        .unwrap();
        let qualys = config.sink.qualys.unwrap();
        assert_eq!(qualys.gateway_url, "https://envfile.example.test");
        assert_eq!(qualys.batch_size, 200);
        assert_eq!(
            qualys.http.proxy.map(|p| p.url).as_deref(),
            Some("http://proxy.example.test:3128")
        );
        // Credentials are one unit: the env file's BASIC replaced the TOML's OAUTH.
        assert!(matches!(
            qualys.auth,
            asset_sink::qualys::QualysAuth::Basic { .. }
        ));
        assert_eq!(config.schedule.dialect, CronDialect::Quartz);
        assert_eq!(config.pipeline.concurrency, 3);
        assert_eq!(
            layered.origins["sink.qualys.gateway_url"].to_string(),
            format!("env file {}:1 (connector.api.url)", env_path.display())
        );
        assert_eq!(
            layered.origins["sink.qualys.batch_size"].to_string(),
            format!("{}:6", toml_path.display())
        );
        assert_eq!(
            layered.origins["pipeline.concurrency"].to_string(),
            "environment ADC_PIPELINE__CONCURRENCY"
        );
        assert!(!layered.origins.contains_key("sink.qualys.auth.client_id"));
        // The environment beats the env file.
        let config = Config::load(
            Some(&toml_path),
            true,
            vec![(
                "ADC_SINK__QUALYS__GATEWAY_URL".to_owned(),
                "https://env.example.test".to_owned(),
            )],
            Some(&env_path),
        )
        .unwrap();
        assert_eq!(
            config.sink.qualys.unwrap().gateway_url,
            "https://env.example.test"
        );
    }
}
