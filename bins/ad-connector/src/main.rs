//! `ad-connector`: Active Directory users and groups to Sekoia.io, Qualys ETM or a JSONL
//! outbox, with delta sync and durable state.
//!
//! This binary is glue: `ad-source` reads, `asset-sink` delivers, `ad-sync` runs the cycles
//! between them and remembers; here are the CLI, the configuration, the daemon loop and the
//! output. `anyhow` is used here only; errors map to exit codes (see [`ExitCode`]).
#![forbid(unsafe_code)]

mod config;
mod daemon;
#[cfg(feature = "demo")]
mod demo;
mod env_file;
mod layers;
mod logging;
mod preview;
mod progress;
mod schedule;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a full sync allocates and frees a few hundred
/// small blocks per entry (ldap3's BER tree, decoded records, JSON), across threads; glibc's
/// malloc was about a third of the client's CPU (issue 12; the replay bench measures it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand, ValueEnum};

use ad_sync::{CycleError, CycleReport, CycleRequest, DeleteGuard, Engine, EngineOptions, Store};

use crate::config::{Config, ConfigError, SinkKind};

/// `--version`: the package version and the git commit it was built from (build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ADC_GIT_COMMIT"), ")");

/// Exit codes (also in `--help`).
const EXIT_FAILURE: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_CHECK_FAILED: u8 = 3;
const EXIT_ATTENTION: u8 = 4;
const EXIT_DIRECTORY: u8 = 5;
const EXIT_PLATFORM: u8 = 6;
const EXIT_INTERRUPTED: u8 = 130;

/// Pull users and groups from on-premises Active Directory and deliver them to Sekoia.io,
/// Qualys ETM or a local JSONL outbox — only what changed since the last run.
///
/// Start with `ad-connector demo` (no directory or account needed). Then write a config
/// file (docs/configuration.md), check it with `ad-connector test`, sync once with
/// `ad-connector sync`, and schedule with `ad-connector run`.
///
/// Exit codes (the same for every command): 0 success; 1 any other failure (e.g. the state
/// directory); 2 configuration error (nothing was contacted); 3 `test` found a failing step;
/// 4 the sync completed but needs attention (deletes withheld by the delete guard, or an
/// incomplete read that sent no deletes or kept the checkpoint); 5 the directory could not
/// be read (unreachable, TLS, bind refused, search failed); 6 the platform did not accept the
/// changes (unreachable, credentials refused, retries exhausted, every record refused);
/// 130 stopped by a signal. After 1, 5 and 6 nothing is lost: the next cycle sends it again.
#[derive(Debug, Parser)]
#[command(name = "ad-connector", version = VERSION, about, long_about)]
struct Cli {
    /// Configuration file (TOML). Default ./ad-connector.toml if present; every key can also
    /// be set with ADC_SECTION__KEY environment variables (e.g. ADC_SOURCE__URL).
    #[arg(long, short, global = true, env = "ADC_CONFIG")]
    config: Option<PathBuf>,
    /// A Qualys on-prem execution engine env file (connector.api.url, qualys.*,
    /// authentication.type, oauth.*, service.cron-expression, proxy.*, thread-pool.size):
    /// selects the Qualys sink with those settings.
    #[arg(long, global = true, env = "ADC_ENV_FILE")]
    env_file: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ADC_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log filter (error, warn, info, debug, trace, or per-module directives).
    #[arg(long, global = true, default_value = "info", env = "ADC_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every step from DNS to reading objectSid, and the sink's credentials.
    /// Prints a table (or JSON); exits 3 if any step failed.
    Test {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one cycle: a delta if a valid checkpoint exists, else a full sync.
    /// Exits 4 when deletes were withheld or the read was incomplete.
    Sync {
        /// Force a full sync (also sends deletes for objects gone or out of scope).
        #[arg(long)]
        full: bool,
        /// With --full: release the deletes the delete guard would withhold, if this full
        /// sync finds exactly N of them (see them first with `status`).
        #[arg(long, value_name = "N", requires = "full")]
        confirm_deletes: Option<u64>,
    },
    /// Run as a daemon: cycles on the cron schedule, a full sync every
    /// full_sync_interval_hours; SIGTERM / Ctrl-C stops it safely.
    Run,
    /// Print the payload the sink would receive for a few users and groups; sends nothing.
    Preview {
        /// Which sink's payload (default: the configured sink).
        #[arg(long, value_enum)]
        sink: Option<SinkKind>,
        /// How many users (and as many groups) to show.
        #[arg(long, short = 'n', default_value_t = 3)]
        limit: usize,
    },
    /// Check or show the configuration, without any network access.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Show the connector state, checkpoint and last cycles.
    Status {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write shell completions to stdout (the Debian package installs them).
    #[command(hide = true)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man page (roff) to stdout (the Debian package installs it).
    #[command(hide = true)]
    Man,
    /// Try it without a directory or account: an in-process directory of a synthetic
    /// company, a full sync, a few changes, a delta sync, all into a local JSONL outbox.
    #[cfg(feature = "demo")]
    Demo {
        /// Where to write the outbox and state (default: a new folder under ./ad-connector-demo).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Users in the synthetic company.
        #[arg(long, default_value_t = 3000)]
        users: usize,
        /// Benchmark mode: serve this many generated users instead of the company, run a
        /// full sync and a delta after 10 changes, and print entries/s and peak memory.
        #[arg(long, value_name = "USERS")]
        scale: Option<u64>,
    },
}

/// Shells `completions` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Parse and validate every layer (file, env file, ADC_ variables, secret files), build
    /// the source and sink settings, print the warnings; no network. Exits 2 on an error.
    Check,
    /// Print the effective settings, each with where it came from (file and line, env file
    /// key, environment variable, secret file); secrets redacted. Keys not shown take their
    /// defaults (docs/configuration.md).
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_logs = matches!(cli.log_format, LogFormat::Json);
    logging::init(json_logs, &cli.log);
    // A panic goes to the log as an error line (JSON under --log-format json), not as a raw
    // backtrace on stderr. ldap3 panics on some malformed server messages inside tasks that
    // ad-source isolates: the operation then fails with a sentence of its own.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal panic: {info}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            let code = exit_code(&error);
            if json_logs {
                // Under --log-format json every line is JSON, the last one too.
                tracing::error!(exit_code = code, "{}", sentence(&error));
            } else if logging::under_journald() {
                eprintln!("<3>error: {}", sentence(&error));
            } else {
                eprintln!("error: {}", sentence(&error));
            }
            ExitCode::from(code)
        }
    }
}

/// The error and its causes as one line, each said once. Our error sentences already carry
/// their cause ("reading the directory failed: connection to … was refused"), which is also
/// their `source()`: anyhow's `{:#}` would print it twice. A cause is added only when the
/// text so far does not already contain it.
fn sentence(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn exit_code(error: &anyhow::Error) -> u8 {
    use ad_source::SourceError;
    use asset_sink::SinkError;
    if error.downcast_ref::<ConfigError>().is_some() {
        return EXIT_CONFIG;
    }
    // The directory's or the platform's error, given directly or inside a cycle's.
    let cycle = error.downcast_ref::<CycleError>();
    let source = error.downcast_ref::<SourceError>().or(match cycle {
        Some(CycleError::Source(e)) => Some(e),
        _ => None,
    });
    let sink = error.downcast_ref::<SinkError>().or(match cycle {
        Some(CycleError::Sink(e)) => Some(e),
        _ => None,
    });
    match (cycle, source, sink) {
        (_, Some(SourceError::Config { .. }), _) | (_, _, Some(SinkError::Config { .. })) => {
            EXIT_CONFIG
        }
        (Some(CycleError::Interrupted), _, _) => EXIT_INTERRUPTED,
        (_, Some(_), _) => EXIT_DIRECTORY,
        (Some(CycleError::EverythingRefused { .. }), _, _) | (_, _, Some(_)) => EXIT_PLATFORM,
        _ => EXIT_FAILURE,
    }
}

fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    Ok(load_layered(cli)?.0)
}

fn load_layered(cli: &Cli) -> Result<(Config, layers::Layered), ConfigError> {
    let (path, required) = match &cli.config {
        Some(path) => (Some(path.clone()), true),
        None => (Some(PathBuf::from("ad-connector.toml")), false),
    };
    Config::load_layered(
        path.as_deref(),
        required,
        std::env::vars(),
        cli.env_file.as_deref(),
    )
}

/// `config check`: everything that can be checked without the network.
fn config_check(cli: &Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(cli)?;
    match &config.source {
        Some(source) => {
            ad_source::Source::new(source.clone())?;
            match &source.domain {
                Some(domain) => println!(
                    "source:   the DCs of {domain}{} found in DNS (bind {})",
                    source
                        .site
                        .as_deref()
                        .map(|s| format!(" in site {s}"))
                        .unwrap_or_default(),
                    source.bind
                ),
                None => println!("source:   {} (bind {})", source.url, source.bind),
            }
        }
        None => println!(
            "source:   none ([source] is needed by test, sync, run and preview; demo needs none)"
        ),
    }
    let sink = config.build_sink()?;
    println!("sink:     {}", sink.name());
    let schedule = config.schedule.parsed()?;
    let next = schedule
        .next_after(chrono::Utc::now())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into());
    println!(
        "schedule: {} ({:?} dialect), next run {next}",
        schedule.expression(),
        config.schedule.dialect
    );
    println!("state:    {}", config.state_dir.display());
    println!("configuration OK (nothing was contacted; `ad-connector test` checks the network)");
    Ok(ExitCode::SUCCESS)
}

/// `config show`: the merged settings and where each came from, secrets redacted.
fn config_show(cli: &Cli) -> anyhow::Result<ExitCode> {
    let (_, layered) = load_layered(cli)?;
    let lines: Vec<(String, String)> = layers::leaves(&layered.table)
        .into_iter()
        .map(|(path, key, value)| {
            let shown = if layers::SECRET_KEYS.contains(&key) {
                "\"<redacted>\"".to_owned()
            } else {
                value.to_string()
            };
            (path, shown)
        })
        .collect();
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        let origin = layered
            .origins
            .get(&key)
            .map_or_else(|| "?".to_owned(), ToString::to_string);
        println!("{key:<width$} = {value}   # {origin}");
    }
    println!("# every other key takes its default (docs/configuration.md)");
    Ok(ExitCode::SUCCESS)
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "ad-connector", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "demo")]
        Command::Demo { dir, users, scale } => {
            demo::run(dir.clone(), *users, *scale).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { json } => {
            let config = load_config(&cli)?;
            test_connection(&config, *json).await
        }
        Command::Sync {
            full,
            confirm_deletes,
        } => {
            let config = load_config(&cli)?;
            let mut engine = engine(&config)?;
            let progress = progress::Progress::new(true);
            let shutdown = daemon::shutdown_token();
            let request = CycleRequest {
                force_full: *full,
                confirm_deletes: *confirm_deletes,
            };
            let result = engine.run_cycle(request, &progress, &shutdown).await;
            progress.finish();
            let report = result?;
            println!("{}", report.summary());
            Ok(report_exit_code(&report))
        }
        Command::Run => {
            let config = load_config(&cli)?;
            // `run` ends only when a signal stopped it (after the cycle in progress ended
            // or was abandoned safely).
            daemon::run(&config).await?;
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        Command::Preview { sink, limit } => {
            let config = load_config(&cli)?;
            let kind = sink.unwrap_or(config.sink.kind);
            preview::run(&config, kind, *limit).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action } => match action {
            ConfigAction::Check => config_check(&cli),
            ConfigAction::Show => config_show(&cli),
        },
        Command::Status { json } => {
            let config = load_config(&cli)?;
            status(&config, *json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The engine options from the configuration.
pub fn engine_options(config: &Config) -> EngineOptions {
    EngineOptions {
        full_sync_interval: config.full_sync_interval(),
        batch_size: config.pipeline.batch_size.unwrap_or(usize::MAX),
        concurrency: config.pipeline.concurrency,
        delete_guard: DeleteGuard {
            max_delete_fraction: config.pipeline.max_delete_fraction,
            max_deletes: config.pipeline.max_deletes,
        },
    }
}

/// The configured source, sink and state, as an engine (takes the state's lock).
pub fn engine(config: &Config) -> anyhow::Result<Engine> {
    let source = ad_source::Source::new(config.source()?.clone())?;
    let sink = config.build_sink()?;
    let store = Store::open(&config.state_dir)?;
    Ok(Engine::new(source, sink, store, engine_options(config)))
}

/// 0, or 4 when a completed cycle needs a person's attention.
fn report_exit_code(report: &CycleReport) -> ExitCode {
    if report.needs_attention() {
        ExitCode::from(EXIT_ATTENTION)
    } else {
        ExitCode::SUCCESS
    }
}

async fn test_connection(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    // Settings first: a refused setting is a configuration error, before any network.
    let sink = config.build_sink()?;
    let source = config.source()?;
    // One DC: its steps, as always. Several (a url list, DNS discovery): each DC's steps,
    // in the order cycles try them.
    let several = source.domain.is_some() || source.url.len() > 1;
    let dcs = if several {
        match ad_source::probe::probe_dcs(source).await {
            Ok(dcs) => Ok(dcs),
            Err(e) => Err(e.to_string()),
        }
    } else {
        Ok(vec![ad_source::probe::DcProbe {
            url: source.current_url().to_owned(),
            origin: "url".to_owned(),
            report: ad_source::probe::probe(source).await,
        }])
    };
    let directory_ok = dcs
        .as_ref()
        .is_ok_and(|dcs| dcs.iter().all(|dc| dc.report.ok()));
    let check = sink.check().await;
    let sink_ok = check.as_ref().is_ok_and(|c| c.ok());
    if json {
        let directory = match (&dcs, several) {
            (Ok(dcs), false) => serde_json::to_value(&dcs[0].report)?,
            (Ok(dcs), true) => serde_json::to_value(dcs)?,
            (Err(e), _) => serde_json::json!({"error": e}),
        };
        let value = serde_json::json!({
            "ok": directory_ok && sink_ok,
            "directory": directory,
            "sink": match &check {
                Ok(report) => serde_json::to_value(report)?,
                Err(error) => serde_json::json!({"error": error.to_string()}),
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &dcs {
            Err(e) => {
                println!(
                    "Directory (domain {})",
                    source.domain.as_deref().unwrap_or_default()
                );
                println!("  FAIL  {:<20} {e}", "discovery");
            }
            Ok(dcs) => {
                for (i, dc) in dcs.iter().enumerate() {
                    if several {
                        println!(
                            "Directory, DC {} of {} ({}; {})",
                            i + 1,
                            dcs.len(),
                            dc.url,
                            dc.origin
                        );
                    } else {
                        println!("Directory ({})", dc.url);
                    }
                    for step in &dc.report.steps {
                        let verdict = match step.outcome {
                            ad_source::ProbeOutcome::Pass => "PASS",
                            ad_source::ProbeOutcome::Warn => "WARN",
                            ad_source::ProbeOutcome::Fail => "FAIL",
                            ad_source::ProbeOutcome::Skipped => "skip",
                        };
                        let name = serde_json::to_value(step.step)?;
                        println!(
                            "  {verdict}  {:<20} {}",
                            name.as_str().unwrap_or_default(),
                            step.message
                        );
                    }
                }
            }
        }
        match &check {
            Ok(report) => {
                println!("Sink ({}: {})", report.sink, report.target);
                for item in &report.items {
                    println!(
                        "  {}  {:<20} {}",
                        if item.ok { "PASS" } else { "FAIL" },
                        item.name,
                        item.detail
                    );
                }
            }
            Err(error) => {
                println!("Sink ({})", sink.name());
                println!("  FAIL  {:<20} {error}", "check");
            }
        }
    }
    Ok(if directory_ok && sink_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    // Read-only and without the lock: `status` must work while `run` holds it, and must
    // never keep `run` from starting.
    let holder = Store::lock_holder(&config.state_dir)?;
    let Some(state) = Store::open_read_only(&config.state_dir)? else {
        if json {
            let value = serde_json::json!({
                "state": null,
                "daemon": daemon_json(holder.as_deref(), None, None),
                "checkpoint": null,
                "last_success": null,
                "tracked": {"users": 0, "groups": 0},
                "cycles": [],
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            println!(
                "State:      none yet in {} (no cycle has run; the first one is a full sync)",
                config.state_dir.display()
            );
        }
        return Ok(());
    };
    let connector = state.connector_state()?;
    let next_run = state.next_run()?;
    let last_success = state.last_success()?;
    let checkpoint = state.checkpoint()?;
    let marks = state.dc_marks()?;
    let cycles = state.recent_cycles(10)?;
    let users = state.count(ad_model::ObjectKind::User)?;
    let groups = state.count(ad_model::ObjectKind::Group)?;
    let withheld = state.withheld()?;
    let quarantined = state.quarantined()?;
    let skipped = state.skipped()?;
    if json {
        let value = serde_json::json!({
            "state": connector,
            "daemon": daemon_json(holder.as_deref(), Some(connector), next_run),
            "checkpoint": checkpoint,
            "dc_marks": marks,
            "last_success": last_success,
            "tracked": {"users": users, "groups": groups},
            "withheld_deletes": withheld,
            "quarantined": quarantined,
            "skipped": skipped,
            "cycles": cycles,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("State:      {connector:?}  ({})", state.path().display());
    println!(
        "Process:    {}",
        daemon_sentence(holder.as_deref(), connector, next_run)
    );
    println!(
        "Last success: {}",
        last_success.map_or_else(
            || "never".to_owned(),
            |t| format!(
                "{} ({} ago)",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                age(chrono::Utc::now() - t)
            )
        )
    );
    match checkpoint {
        Some(cp) => println!(
            "Checkpoint: {} invocationId {} USN {} (last full sync {})",
            cp.position.dc_host,
            cp.position.invocation_id,
            cp.position.usn,
            cp.last_full_sync
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into())
        ),
        None => println!("Checkpoint: none yet (the next cycle is a full sync)"),
    }
    if marks.len() > 1 {
        println!("DC marks:   a delta on a DC resumes from its own USN:");
        for mark in &marks {
            println!(
                "  {} invocationId {} USN {} (last cycle there {})",
                mark.position.dc_host,
                mark.position.invocation_id,
                mark.position.usn,
                mark.updated_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
    }
    println!("Tracked:    {users} users, {groups} groups acknowledged by the sink");
    if !withheld.is_empty() {
        println!(
            "Withheld:   {} deletes held back by the delete guard (release: sync --full --confirm-deletes {}):",
            withheld.len(),
            withheld.len()
        );
        for row in withheld.iter().take(20) {
            println!("  {} {}", row.kind.as_str(), row.dn);
        }
        if withheld.len() > 20 {
            println!(
                "  … and {} more (status --json lists all)",
                withheld.len() - 20
            );
        }
    }
    if !quarantined.is_empty() {
        println!(
            "Refused:    {} records the platform refused (retried every cycle):",
            quarantined.len()
        );
        for row in &quarantined {
            println!(
                "  {} {} {}: {}",
                row.change,
                row.kind.as_str(),
                row.dn,
                row.reason
            );
        }
    }
    if !skipped.is_empty() {
        println!(
            "Skipped:    {} entries that could not be read (re-read every cycle):",
            skipped.len()
        );
        for row in &skipped {
            println!("  {}: {}", row.dn, row.reason);
        }
    }
    println!("Cycles (newest first):");
    for cycle in cycles {
        println!(
            "  #{:<5} {:<5} {} {:<7} {}",
            cycle.id,
            cycle.mode,
            cycle.started_at.format("%Y-%m-%d %H:%M:%S"),
            cycle.outcome,
            cycle.summary.unwrap_or_default()
        );
    }
    Ok(())
}

/// What `status --json` says about the process using the state.
fn daemon_json(
    holder: Option<&str>,
    state: Option<ad_sync::ConnectorState>,
    next_run: Option<chrono::DateTime<chrono::Utc>>,
) -> serde_json::Value {
    serde_json::json!({
        "running": holder.is_some(),
        "holder": holder,
        "next_run": if holder.is_some() { next_run } else { None },
        "ended_uncleanly": holder.is_none() && matches!(
            state,
            Some(ad_sync::ConnectorState::Scheduled | ad_sync::ConnectorState::Processing)
        ),
    })
}

/// What `status` says about the process using the state, as a sentence.
fn daemon_sentence(
    holder: Option<&str>,
    state: ad_sync::ConnectorState,
    next_run: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    use ad_sync::ConnectorState::{Processing, Scheduled, Stopped};
    match (holder, state) {
        (Some(holder), Processing) => format!("running ({holder}), a cycle is in progress"),
        (Some(holder), Scheduled) => match next_run {
            Some(next) => format!(
                "running ({holder}), next cycle at {} (in {})",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                age(next - chrono::Utc::now())
            ),
            None => format!("running ({holder}), waiting for its next cycle"),
        },
        (Some(holder), _) => format!("running ({holder})"),
        (None, Stopped) => "not running (the daemon was stopped)".to_owned(),
        (None, Scheduled | Processing) => "not running: the last process ended without stopping cleanly (killed, crashed or the machine restarted); nothing acknowledged is lost, the next cycle resumes from the checkpoint".to_owned(),
        (None, _) => "not running".to_owned(),
    }
}

/// A duration for people: `3h 12m`, `45s`.
fn age(duration: chrono::TimeDelta) -> String {
    let secs = duration.num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}
