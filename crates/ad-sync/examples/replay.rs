//! Client-only benchmark of a full sync (issue 12): the connector's CPU per entry without a
//! server's. `cargo run --release -p ad-sync --example replay [-- USERS ...]` (default
//! `$BENCH_REPLAY_USERS`, else 100000; e.g. `100000 1000000`).
//!
//! 1. **Record once** (`<target dir>/replay/generated-<N>.ldapreplay`, reused by later runs;
//!    `BENCH_REPLAY_RERECORD=1` records again): a full sync of N generated users from the
//!    in-process directory (`ad-testkit`), through `ad_testkit::Recorder`, which writes every
//!    request the connector sends with the server's answer as it came off the wire.
//! 2. **Replay**: `ad_testkit::ReplayServer` serves that file on 127.0.0.1 in a child process
//!    of its own, copying recorded bytes (see its docs for message IDs and paging cookies),
//!    so none of its CPU or memory is counted.
//! 3. **Measure**: in another child process, the real pipeline — `ad-source` (ldap3
//!    connection, paging, BER decoding, `ad-model`), the `ad-sync` engine (fingerprints, the
//!    SQLite store) and the JSONL outbox (fsync per batch) — runs one full sync with an empty
//!    state, on the product binary's runtime (multi-threaded) and allocator. The child reports
//!    its own wall time, CPU time (user + sys, `/proc/self/stat`) and peak RSS (`VmHWM`).
//!
//! A replay that fails with a recording it did not make (the client now sends requests the
//! recording does not hold) records again, once. `BENCH_REPLAY_RUNS=n` measures each size n
//! times (one line each). Modes used internally:
//! `record N FILE`, `serve FILE`, `client N URL`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ad_source::{Source, SourceConfig};
use ad_sync::{CycleReport, CycleRequest, Engine, EngineOptions, NoObserver, Store};
use ad_testkit::{
    Directory, GeneratedOptions, Recorder, ReplayServer, SERVICE_ACCOUNT_PASSWORD,
    SERVICE_ACCOUNT_UPN, ServerOptions, TestServer,
};
use asset_sink::jsonl::{JsonlConfig, JsonlSink};
use secrecy::SecretString;

/// As in the product binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("record") => with_args(&args, |n, file| record(n, Path::new(file))),
        Some("serve") => match args.get(1) {
            Some(file) => serve(Path::new(file)),
            None => Err("usage: serve FILE".into()),
        },
        Some("client") => with_args(&args, client),
        _ => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("replay: {error}");
            ExitCode::FAILURE
        }
    }
}

fn with_args(args: &[String], f: impl FnOnce(u64, &str) -> Result<(), Error>) -> Result<(), Error> {
    match (args.get(1).and_then(|n| n.parse().ok()), args.get(2)) {
        (Some(n), Some(s)) => f(n, s),
        _ => Err(format!("usage: {} N ARG", args.first().map_or("", String::as_str)).into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    // As in the product binary.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// A source for `url`, judging account status at the generated directory's reference time
/// (the recording and every replay decode the same entries the same way).
fn source(url: &str) -> Result<Source, Error> {
    let mut config = SourceConfig::new(
        url,
        SERVICE_ACCOUNT_UPN,
        SecretString::from(SERVICE_ACCOUNT_PASSWORD),
    );
    config.starttls = false;
    config.allow_plain_ldap = true;
    let at = GeneratedOptions::default().reference_time;
    Ok(Source::new(config)?.with_clock(Arc::new(move || at)))
}

/// One full sync from `url` into a JSONL outbox, with an empty state under `dir`.
async fn full_sync(url: &str, dir: &Path) -> Result<CycleReport, Error> {
    let sink = JsonlSink::new(JsonlConfig {
        path: dir.join("outbox.jsonl").to_string_lossy().into_owned(),
        rotate_bytes: 0,
        ..JsonlConfig::default()
    })?;
    let mut engine = Engine::new(
        source(url)?,
        Arc::new(sink),
        Store::open(&dir.join("state"))?,
        EngineOptions::default(),
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let report = engine
        .run_cycle(CycleRequest::default(), &NoObserver, &shutdown)
        .await?;
    Ok(report)
}

fn record(users: u64, path: &Path) -> Result<(), Error> {
    let started = Instant::now();
    let directory = Directory::generated(GeneratedOptions {
        users,
        ..GeneratedOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default())?;
    let work = tempfile::tempdir()?;
    let partial = path.with_extension("partial");
    runtime()?.block_on(async {
        let recorder = Recorder::start(server.addr(), &partial).await?;
        let report = full_sync(&recorder.url(), work.path()).await?;
        let stats = recorder.finish()?;
        eprintln!(
            "replay: recorded {} entries ({} requests, {:.0} MiB of answers) in {:.0} s",
            report.users + report.groups,
            stats.requests,
            stats.bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        Ok::<(), Error>(())
    })?;
    server.shutdown();
    std::fs::rename(&partial, path)?;
    Ok(())
}

fn serve(path: &Path) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = ReplayServer::start(path).await?;
        println!("listening {}", server.url());
        // Until the parent closes our standard input.
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await;
        if server.misses() > 0 {
            eprintln!(
                "replay: {} requests were not in the recording (the client asks something else now): record again with BENCH_REPLAY_RERECORD=1",
                server.misses()
            );
        }
        Ok::<(), Error>(())
    })
}

/// This process's CPU time (user + sys), in seconds: /proc/self/stat, in USER_HZ (100).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn client(users: u64, url: &str) -> Result<(), Error> {
    let work = tempfile::tempdir()?;
    let runtime = runtime()?;
    let cpu0 = cpu_secs();
    let started = Instant::now();
    let report = runtime.block_on(full_sync(url, work.path()))?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let entries = report.users + report.groups;
    if report.upserts != entries || report.users < users {
        return Err(format!(
            "the replayed sync read {} users and {} groups and sent {}: not the recorded directory of {users} users",
            report.users, report.groups, report.upserts
        )
        .into());
    }
    println!("ROW {entries} {wall:.3} {cpu:.3} {:.1}", peak_rss_mib());
    Ok(())
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/<profile>/examples/replay
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn bench(args: &[String]) -> Result<(), Error> {
    let sizes: Vec<u64> = if args.is_empty() {
        std::env::var("BENCH_REPLAY_USERS")
            .unwrap_or_else(|_| "100000".to_owned())
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>())
            .collect::<Result<_, _>>()?
    } else {
        args.iter()
            .map(|s| s.parse::<u64>())
            .collect::<Result<_, _>>()?
    };
    let runs: usize = std::env::var("BENCH_REPLAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let exe = std::env::current_exe()?;
    let dir = target_dir().join("replay");
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for &users in &sizes {
        let file = dir.join(format!("generated-{users}.ldapreplay"));
        let mut recorded = false;
        if !file.exists() || std::env::var_os("BENCH_REPLAY_RERECORD").is_some() {
            record_with(&exe, users, &file)?;
            recorded = true;
        }
        for _ in 0..runs {
            let row = match measure(&exe, users, &file) {
                Ok(row) => row,
                // A recording made by an older client: it may ask other requests now.
                Err(error) if !recorded => {
                    eprintln!("replay: {error}; recording again");
                    record_with(&exe, users, &file)?;
                    recorded = true;
                    measure(&exe, users, &file)?
                }
                Err(error) => return Err(error),
            };
            rows.push((users, row));
        }
    }
    println!(
        "| replayed full sync → JSONL (client only) | entries | wall s | CPU s | entries/s per CPU s | peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (users, row) in rows {
        let [entries, wall, cpu, rss] = row;
        println!(
            "| {users} generated users | {entries:.0} | {wall:.2} | {cpu:.2} | {:.0} | {rss:.1} |",
            entries / cpu.max(0.01)
        );
    }
    Ok(())
}

/// Record `users` generated users into `file`, in a child process.
fn record_with(exe: &Path, users: u64, file: &Path) -> Result<(), Error> {
    eprintln!(
        "replay: recording {users} generated users into {}",
        file.display()
    );
    let status = Command::new(exe)
        .args(["record", &users.to_string()])
        .arg(file)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("recording {users} users failed").into())
    }
}

/// One replayed sync: (entries, wall s, CPU s, peak RSS MiB).
fn measure(exe: &Path, users: u64, file: &Path) -> Result<[f64; 4], Error> {
    let mut server = Command::new(exe)
        .arg("serve")
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(out) = server.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let Some(url) = line.trim().strip_prefix("listening ") else {
        let _ = server.kill();
        return Err(format!("the replay server did not start: {line:?}").into());
    };
    let output = Command::new(exe)
        .args(["client", &users.to_string(), url])
        .stderr(Stdio::inherit())
        .output();
    drop(server.stdin.take());
    let _ = server.wait();
    let output = output?;
    let text = String::from_utf8_lossy(&output.stdout);
    let row = text
        .lines()
        .find_map(|l| l.strip_prefix("ROW "))
        .ok_or_else(|| format!("the replayed sync of {users} users failed"))?;
    let values: Vec<f64> = row
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match values.as_slice() {
        [entries, wall, cpu, rss] => Ok([*entries, *wall, *cpu, *rss]),
        _ => Err(format!("unexpected client output {row:?}").into()),
    }
}
