//! `demo`: the whole job on an embedded directory — no AD, no SaaS account.
//!
//! An in-process AD-like LDAP server (`ad-testkit`) serves a synthetic company on
//! 127.0.0.1; the real pipeline runs a full sync into a JSONL outbox, the demo then changes
//! the directory like an administrator would (edit, disable, add, delete, group change), and
//! a delta sync sends exactly those changes.

use std::path::PathBuf;

use ad_source::{Source, SourceConfig};
use ad_testkit::{
    Company, CompanyOptions, Entry, Modification, SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN,
    ServerOptions, TestServer,
};
use anyhow::Context;
use asset_sink::jsonl::{JsonlConfig, JsonlSink};
use secrecy::SecretString;

use ad_sync::{CycleReport, CycleRequest, Engine, EngineOptions, Store};
use std::sync::Arc;

use crate::progress::Progress;

/// Run the demo in `dir` (default: a new folder under `./ad-connector-demo`). With
/// `scale`, serve that many generated users instead of the company and print throughput.
pub async fn run(dir: Option<PathBuf>, users: usize, scale: Option<u64>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| {
        PathBuf::from("ad-connector-demo")
            .join(chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string())
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let outbox = dir.join("outbox").join("changes.jsonl");
    let state_dir = dir.join("state");

    if let Some(count) = scale {
        return run_at_scale(&dir, &outbox, &state_dir, count).await;
    }
    println!("ad-connector demo");
    println!(
        "  1. starting an in-process directory: a synthetic company of {users} users (every account state, nested groups, a group over 1,500 members)"
    );
    let company = Company::build(CompanyOptions {
        users,
        ..CompanyOptions::default()
    });
    let manifest = company.manifest.clone();
    let server = TestServer::start(company.directory, ServerOptions::default())
        .context("cannot start the in-process directory")?;
    println!(
        "     serving {} as dc1.corp.example.test (loopback only)",
        server.url()
    );

    let source = in_process_source(&server)?;
    let sink = JsonlSink::new(JsonlConfig {
        path: outbox.to_string_lossy().into_owned(),
        ..JsonlConfig::default()
    })?;
    let mut engine = Engine::new(
        source,
        Arc::new(sink),
        Store::open(&state_dir)?,
        EngineOptions::default(),
    );
    let shutdown = crate::daemon::shutdown_token();

    println!("  2. full sync (first run: no checkpoint yet)");
    let progress = Progress::new(true);
    let full = engine
        .run_cycle(CycleRequest::default(), &progress, &shutdown)
        .await;
    progress.finish();
    let full = full?;
    print_report(&full);

    println!("  3. changing the directory like an administrator would:");
    let directory = server.directory();
    let mut changed = Vec::new();
    if let Some(dn) = manifest.users.first() {
        directory.modify(dn, [Modification::replace("title", ["Chief Demo Officer"])])?;
        changed.push(format!("     - retitled      {dn}"));
    }
    if let Some(dn) = manifest.users.get(1) {
        directory.modify(dn, [Modification::replace("userAccountControl", ["514"])])?;
        changed.push(format!("     - disabled      {dn}"));
    }
    if let Some(dn) = manifest.users.get(2) {
        directory.modify(dn, [Modification::replace("mobile", ["+1 555 0100"])])?;
        changed.push(format!("     - new mobile    {dn}"));
    }
    if let Some(dn) = manifest.users.last() {
        directory.delete(dn)?;
        changed.push(format!("     - deleted       {dn}"));
    }
    let parent = manifest
        .users
        .first()
        .and_then(|dn| dn.split_once(',').map(|(_, parent)| parent.to_owned()))
        .unwrap_or_else(|| manifest.base_dn.clone());
    let new_dn = format!("CN=Ada Newhire,{parent}");
    directory.add(
        Entry::new(new_dn.clone())
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user"],
            )
            .with(
                "objectCategory",
                ["CN=Person,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=test"],
            )
            .with("cn", ["Ada Newhire"])
            .with("sAMAccountName", ["ada.newhire"])
            .with("userPrincipalName", ["ada.newhire@corp.example.test"])
            .with("givenName", ["Ada"])
            .with("sn", ["Newhire"])
            .with("displayName", ["Ada Newhire"])
            .with("userAccountControl", ["512"])
            .with("pwdLastSet", ["0"])
            .with("primaryGroupID", ["513"]),
    )?;
    changed.push(format!("     - created       {new_dn}"));
    directory.modify(
        &manifest.universal_group,
        [Modification::add("member", [new_dn.as_str()])],
    )?;
    changed.push(format!("     - added to      {}", manifest.universal_group));
    for line in &changed {
        println!("{line}");
    }

    println!("  4. delta sync (uSNChanged since the checkpoint, tombstones for deletions)");
    let progress = Progress::new(true);
    let delta = engine
        .run_cycle(CycleRequest::default(), &progress, &shutdown)
        .await;
    progress.finish();
    let delta = delta?;
    print_report(&delta);

    let lines = std::fs::read_to_string(&outbox)
        .map(|text| text.lines().count())
        .unwrap_or(0);
    println!();
    println!("Done. What was delivered:");
    println!(
        "  outbox: {} ({lines} lines: one JSON change per line)",
        outbox.display()
    );
    println!(
        "  state:  {} (checkpoint and what the sink acknowledged)",
        state_dir.display()
    );
    println!(
        "Look at the last lines:  tail -n {} {}",
        delta.upserts + delta.deletes,
        outbox.display()
    );
    println!(
        "Next: write ad-connector.toml for your domain (docs/configuration.md) and run `ad-connector test`."
    );
    server.shutdown();
    Ok(())
}

/// A source reading the in-process directory, on the directory's clock. Plain LDAP is
/// acceptable only because that directory is in this process, on loopback.
fn in_process_source(server: &TestServer) -> anyhow::Result<Source> {
    let mut config = SourceConfig::new(
        server.url(),
        SERVICE_ACCOUNT_UPN,
        SecretString::from(SERVICE_ACCOUNT_PASSWORD),
    );
    config.starttls = false;
    config.allow_plain_ldap = true;
    let directory = server.directory().clone();
    Ok(Source::new(config)?.with_clock(Arc::new(move || directory.now())))
}

fn print_report(report: &CycleReport) {
    if let Some(reason) = &report.full_reason {
        println!("     full because {reason}");
    }
    println!("     {}", report.summary());
}

/// The pipeline at scale: `count` generated users, a full sync, 10 changes, a delta.
/// Prints one table (entries/s, seconds, peak RSS): the connector's benchmark.
async fn run_at_scale(
    dir: &std::path::Path,
    outbox: &std::path::Path,
    state_dir: &std::path::Path,
    count: u64,
) -> anyhow::Result<()> {
    use ad_testkit::{Directory, GeneratedOptions};
    use std::io::BufRead;

    let directory = Directory::generated(GeneratedOptions {
        users: count,
        ..GeneratedOptions::default()
    });
    let server = TestServer::start(directory, ServerOptions::default())
        .context("cannot start the in-process directory")?;
    let source = in_process_source(&server)?;
    let sink = JsonlSink::new(JsonlConfig {
        path: outbox.to_string_lossy().into_owned(),
        rotate_bytes: 0,
        ..JsonlConfig::default()
    })?;
    let mut engine = Engine::new(
        source,
        Arc::new(sink),
        Store::open(state_dir)?,
        EngineOptions::default(),
    );
    let shutdown = crate::daemon::shutdown_token();
    let progress = Progress::new(true);
    let full = engine
        .run_cycle(CycleRequest::default(), &progress, &shutdown)
        .await;
    progress.finish();
    let full = full?;
    let rss_full = peak_rss_mib();

    // Ten users changed, as an administrator would.
    let file = std::fs::File::open(outbox)?;
    let mut dns = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let value: serde_json::Value = serde_json::from_str(&line?)?;
        if value["kind"] == "user"
            && let Some(dn) = value["record"]["dn"].as_str()
        {
            dns.push(dn.to_owned());
        }
        if dns.len() == 10 {
            break;
        }
    }
    for dn in &dns {
        server
            .directory()
            .modify(dn, [Modification::replace("title", ["Benchmarked"])])?;
    }
    let progress = Progress::new(false);
    let delta = engine
        .run_cycle(CycleRequest::default(), &progress, &shutdown)
        .await?;
    let rss_end = peak_rss_mib();

    let entries = full.users + full.groups;
    println!("| cycle | entries read | sent | seconds | entries/s | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| full, {count} generated users → JSONL | {entries} | {} | {:.2} | {:.0} | {} |",
        full.upserts,
        full.duration_secs,
        entries as f64 / full.duration_secs.max(1e-9),
        rss_full
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "| delta after {} changes | {} | {} | {:.2} | – | {} |",
        dns.len(),
        delta.users + delta.groups,
        delta.upserts,
        delta.duration_secs,
        rss_end
            .map(|m| format!("{m:.1}"))
            .unwrap_or_else(|| "n/a".into())
    );
    println!(
        "delta / full time: {:.2}%   (the in-process directory, which serves from this process, is included in RSS and CPU)",
        100.0 * delta.duration_secs / full.duration_secs.max(1e-9)
    );
    println!("outbox: {}  state: {}", outbox.display(), dir.display());
    server.shutdown();
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in MiB, where /proc exists.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
