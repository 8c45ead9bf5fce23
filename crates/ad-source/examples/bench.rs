//! Throughput and memory of full reads (not a test): `cargo run --release -p ad-source --example bench`.
//!
//! Each case runs in a child process so its peak RSS (`VmHWM`) is its own:
//! (a) the Samba lab directory (needs `eval "$(scripts/lab-dc env)"`), side by side with
//! `ldapsearch -E pr=1000/noprompt` reading the same entries and attributes;
//! (b) 100k and 1M generated users from `ad-testkit` (server in-process, on its own thread;
//! the client runs on a current-thread runtime, i.e. one core), plus a delta after 10 changes
//! in 100k users; (c) `boundary`: in 100k generated users, a delta of 10 changes next to
//! `time_boundary_users` over a one-hour and a one-day window (the directory's clock
//! advanced).
//! `boundary-1m`: the same in 1M generated users. `privilege` (needs the lab): how nested
//! privilege is found — our `memberOf` closure vs. LDAP_MATCHING_RULE_IN_CHAIN vs.
//! `tokenGroups` — with times and whether they agree.
//! Arguments: `bench [samba|100k|1m|boundary|boundary-1m|privilege|all]` (default all).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ad_model::{Group, User};
use ad_source::{Checkpoint, DeltaOutcome, Source, SourceConfig, SourceEvent, SyncRun};
use secrecy::SecretString;

fn vm_hwm_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// CPU seconds per thread name (from /proc/self/task), summed by name.
fn thread_cpu() -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15 (1-based).
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        match out.iter_mut().find(|(n, _)| *n == comm) {
            Some(slot) => slot.1 += ticks / 100.0,
            None => out.push((comm, ticks / 100.0)),
        }
    }
    out
}

fn cpu_note() -> String {
    thread_cpu()
        .iter()
        .filter(|(_, s)| *s >= 0.05)
        .map(|(n, s)| format!("{n} {s:.1} s CPU"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn drain(mut run: SyncRun) -> (u64, Checkpoint) {
    let mut n = 0u64;
    while let Some(event) = run.next_event().await {
        match event {
            SourceEvent::User(u) => {
                n += 1;
                std::hint::black_box(&u);
            }
            SourceEvent::Group(g) => {
                n += 1;
                std::hint::black_box(&g);
            }
            SourceEvent::Deleted(_) => n += 1,
            SourceEvent::Skipped { .. } | SourceEvent::Warning { .. } => {}
        }
    }
    let summary = run.finish().await.unwrap_or_else(|e| {
        eprintln!("run failed: {e}");
        std::process::exit(2)
    });
    (n, summary.checkpoint)
}

fn fail(message: &str) -> ! {
    eprintln!("bench: {message}");
    std::process::exit(2)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Child: one case; prints `RESULT name|entries|seconds|rss_kib|note`.
fn child(case: &str) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2)
        }
    };
    rt.block_on(async {
        match case {
            "samba" => {
                let (Some(url), Some(bind), Some(pw), Some(ca), Some(base)) = (
                    env("ADLAB_LDAPS_URL"),
                    env("ADLAB_ADMIN_BIND"),
                    env("ADLAB_ADMIN_PASSWORD"),
                    env("ADLAB_CA_FILE"),
                    env("ADLAB_BASE_DN"),
                ) else {
                    println!("RESULT ad-source, Samba lab|0|0|0|lab env missing: eval \"$(scripts/lab-dc env)\"");
                    return;
                };
                let mut config = SourceConfig::new(url, bind, SecretString::from(pw));
                config.ca_file = Some(ca.into());
                config.base_dn = Some(base);
                let source = Source::new(config).unwrap_or_else(|e| fail(&e.to_string()));
                let start = Instant::now();
                let run = source.full_snapshot().await.unwrap_or_else(|e| fail(&e.to_string()));
                let (n, _) = drain(run).await;
                let secs = start.elapsed().as_secs_f64();
                println!(
                    "RESULT ad-source, Samba lab (LDAPS)|{n}|{secs:.3}|{}|users+groups, incl. group-index pass",
                    vm_hwm_kib(None).unwrap_or(0)
                );
            }
            "100k" | "1m" => {
                let users: u64 = if case == "100k" { 100_000 } else { 1_000_000 };
                let directory = ad_testkit::Directory::generated(ad_testkit::GeneratedOptions {
                    users,
                    ..Default::default()
                });
                let server = ad_testkit::TestServer::start(directory.clone(), ad_testkit::ServerOptions::default())
                    .unwrap_or_else(|e| fail(&e.to_string()));
                let mut config = SourceConfig::new(
                    server.url(),
                    ad_testkit::SERVICE_ACCOUNT_UPN,
                    SecretString::from(ad_testkit::SERVICE_ACCOUNT_PASSWORD),
                );
                config.starttls = false;
                config.allow_plain_ldap = true;
                let source = Source::new(config).unwrap_or_else(|e| fail(&e.to_string()));
                let base_rss = vm_hwm_kib(None).unwrap_or(0);
                let start = Instant::now();
                let run = source.full_snapshot().await.unwrap_or_else(|e| fail(&e.to_string()));
                let (n, checkpoint) = drain(run).await;
                let full = start.elapsed().as_secs_f64();
                println!(
                    "RESULT ad-source, testkit {case}|{n}|{full:.3}|{}|server in-process (VmHWM before the read {base_rss} KiB); threads: {}",
                    vm_hwm_kib(None).unwrap_or(0),
                    cpu_note()
                );
                if users == 100_000 {
                    let container = ad_testkit::generated_container(ad_testkit::BASE_DN);
                    for i in 0..10u64 {
                        let sam = format!("(sAMAccountName=u{:07})", i * 9_973);
                        if let Some(e) = directory
                            .search(&container, ad_testkit::Scope::OneLevel, &sam, false)
                            .ok()
                            .and_then(|v| v.into_iter().next())
                        {
                            let _ = directory.modify(
                                e.dn(),
                                [ad_testkit::Modification::replace("title", ["Changed"])],
                            );
                        }
                    }
                    let start = Instant::now();
                    let outcome = source.changes_since(&checkpoint).await.unwrap_or_else(|e| fail(&e.to_string()));
                    let DeltaOutcome::Changes(run) = outcome else {
                        fail("full sync required?")
                    };
                    let (d, _) = drain(run).await;
                    let delta = start.elapsed().as_secs_f64();
                    println!(
                        "RESULT ad-source delta, 10 changes in testkit 100k|{d}|{delta:.3}|{}|{:.2}% of the full read's time",
                        vm_hwm_kib(None).unwrap_or(0),
                        100.0 * delta / full
                    );
                }
                server.shutdown();
            }
            "boundary" => boundary(100_000).await,
            "boundary-1m" => boundary(1_000_000).await,
            "privilege" => privilege().await,
            other => {
                eprintln!("unknown case {other}");
                std::process::exit(2)
            }
        }
    });
}

/// Delta of 10 changes vs. the time-boundary search, both in `users` generated users.
async fn boundary(users: u64) {
    let label = if users >= 1_000_000 { "1M" } else { "100k" };
    let directory = ad_testkit::Directory::generated(ad_testkit::GeneratedOptions {
        users,
        ..Default::default()
    });
    let server =
        ad_testkit::TestServer::start(directory.clone(), ad_testkit::ServerOptions::default())
            .unwrap_or_else(|e| fail(&e.to_string()));
    let mut config = SourceConfig::new(
        server.url(),
        ad_testkit::SERVICE_ACCOUNT_UPN,
        SecretString::from(ad_testkit::SERVICE_ACCOUNT_PASSWORD),
    );
    config.starttls = false;
    config.allow_plain_ldap = true;
    let clock = directory.clone();
    let source = Source::new(config)
        .unwrap_or_else(|e| fail(&e.to_string()))
        .with_clock(std::sync::Arc::new(move || clock.now()));
    let root = source
        .root_dse()
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let checkpoint = Checkpoint {
        dc_host: root.dns_host_name,
        invocation_id: root.invocation_id,
        usn: root.highest_committed_usn,
    };
    let container = ad_testkit::generated_container(ad_testkit::BASE_DN);
    for i in 0..10u64 {
        let sam = format!("(sAMAccountName=u{:07})", i * 9_973);
        if let Some(e) = directory
            .search(&container, ad_testkit::Scope::OneLevel, &sam, false)
            .ok()
            .and_then(|v| v.into_iter().next())
        {
            let _ = directory.modify(
                e.dn(),
                [ad_testkit::Modification::replace("title", ["Changed"])],
            );
        }
    }
    let start = Instant::now();
    let outcome = source
        .changes_since(&checkpoint)
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let DeltaOutcome::Changes(run) = outcome else {
        fail("full sync required?")
    };
    let (d, _) = drain(run).await;
    let delta = start.elapsed().as_secs_f64();
    println!(
        "RESULT delta, 10 changes in testkit {label}|{d}|{delta:.3}|{}|group index + changed groups + changed users + tombstones",
        vm_hwm_kib(None).unwrap_or(0)
    );
    // Generated passwords were set 1 to 40 days before the reference time (maxPwdAge 42
    // days): two days on, about 1/40 of them expire per day.
    directory.advance_clock(chrono::TimeDelta::days(2));
    let from = source.now();
    for (window_label, window) in [
        ("1-hour", chrono::TimeDelta::hours(1)),
        ("1-day", chrono::TimeDelta::days(1)),
    ] {
        let to = from + window;
        if to > source.now() {
            directory.advance_clock(to - source.now());
        }
        let start = Instant::now();
        let found = source
            .time_boundary_users(from, to)
            .await
            .unwrap_or_else(|e| fail(&e.to_string()));
        let secs = start.elapsed().as_secs_f64();
        println!(
            "RESULT time_boundary_users, {window_label} window in testkit {label}|{}|{secs:.3}|{}|{:.1}x the delta's time; {} notes",
            found.users.len(),
            vm_hwm_kib(None).unwrap_or(0),
            secs / delta.max(f64::EPSILON),
            found.notes.len()
        );
    }
    // Part of each time_boundary_users call here: the testkit has no Password Settings
    // Container, so PSO use is probed with a subtree search that finds nothing (a full scan).
    let start = Instant::now();
    let probed = pso_probe(&server.url()).await;
    println!(
        "RESULT of which: the PSO-in-use probe (msDS-PSOApplied=*)|{probed}|{:.3}|{}|unpaged, size limit 1, no match",
        start.elapsed().as_secs_f64(),
        vm_hwm_kib(None).unwrap_or(0)
    );
    server.shutdown();
}

/// Nested privilege on the Samba lab, three ways: what the connector does (the closure of
/// the groups' `memberOf`, computed during the full read it does anyway),
/// LDAP_MATCHING_RULE_IN_CHAIN (one search per privileged group), and `tokenGroups` (one
/// base search per user: the attribute is constructed and only returned on base scope).
/// Each prints its time and how many users it finds privileged; they must agree.
async fn privilege() {
    let (Some(url), Some(bind), Some(pw), Some(ca), Some(base)) = (
        env("ADLAB_LDAPS_URL"),
        env("ADLAB_SVC_BIND"),
        env("ADLAB_SVC_PASSWORD"),
        env("ADLAB_CA_FILE"),
        env("ADLAB_BASE_DN"),
    ) else {
        println!(
            "RESULT privilege, Samba lab|0|0|0|lab env missing: eval \"$(scripts/lab-dc env)\""
        );
        return;
    };
    let mut config = SourceConfig::new(url.clone(), bind.clone(), SecretString::from(pw.clone()));
    config.ca_file = Some(ca.into());
    config.base_dn = Some(base.clone());
    let source = Source::new(config.clone()).unwrap_or_else(|e| fail(&e.to_string()));

    // 1. Ours: the full read, closure included.
    let start = Instant::now();
    let mut run = source
        .full_snapshot()
        .await
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut users = 0u64;
    let mut ours = std::collections::BTreeSet::new();
    while let Some(event) = run.next_event().await {
        if let SourceEvent::User(u) = event {
            users += 1;
            if !u.record.privileges.is_empty() {
                ours.insert(u.record.dn.to_ascii_lowercase());
            }
        }
    }
    let summary = run.finish().await.unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "RESULT privilege: ours (memberOf closure in the full read)|{}|{:.3}|{}|{users} users read, {} privileged; {} extra group lookups; no extra search",
        ours.len(),
        start.elapsed().as_secs_f64(),
        vm_hwm_kib(None).unwrap_or(0),
        ours.len(),
        summary.counters.group_lookups,
    );

    let tls = ad_source::tls::client_config(&config).unwrap_or_else(|e| fail(&e.to_string()));
    let settings = ldap3::LdapConnSettings::new().set_config(tls);
    let Ok((conn, mut ldap)) = ldap3::LdapConnAsync::with_settings(settings, &url).await else {
        fail("cannot connect to the lab")
    };
    ldap3::drive!(conn);
    if ldap
        .simple_bind(&bind, &pw)
        .await
        .and_then(|r| r.success())
        .is_err()
    {
        fail("bind to the lab failed");
    }
    // Paged subtree search: (DN, attributes).
    async fn paged(
        ldap: &mut ldap3::Ldap,
        base: &str,
        scope: ldap3::Scope,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Vec<ldap3::SearchEntry> {
        let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
            Box::new(ldap3::adapters::EntriesOnly::new()),
            Box::new(ldap3::adapters::PagedResults::new(1000)),
        ];
        let mut out = Vec::new();
        let Ok(mut stream) = ldap
            .streaming_search_with(adapters, base, scope, filter, attrs)
            .await
        else {
            fail("search failed")
        };
        while let Ok(Some(entry)) = stream.next().await {
            out.push(ldap3::SearchEntry::construct(entry));
        }
        let _ = stream.finish().await;
        out
    }
    let groups = paged(
        &mut ldap,
        &base,
        ldap3::Scope::Subtree,
        "(objectClass=group)",
        vec!["objectSid"],
    )
    .await;
    let privileged_groups: Vec<String> = groups
        .iter()
        .filter(|g| {
            g.bin_attrs
                .get("objectSid")
                .and_then(|v| v.first())
                .and_then(|b| ad_model::Sid::from_bytes(b).ok())
                .is_some_and(|s| s.is_privileged_group())
        })
        .map(|g| g.dn.clone())
        .collect();

    // 2. LDAP_MATCHING_RULE_IN_CHAIN, one search per privileged group.
    let start = Instant::now();
    let mut in_chain = std::collections::BTreeSet::new();
    for group in &privileged_groups {
        let filter = format!(
            "(&{}(memberOf:1.2.840.113556.1.4.1941:={}))",
            ad_source::config::DEFAULT_USER_FILTER,
            ldap3::ldap_escape(group)
        );
        for e in paged(
            &mut ldap,
            &base,
            ldap3::Scope::Subtree,
            &filter,
            vec!["1.1"],
        )
        .await
        {
            in_chain.insert(e.dn.to_ascii_lowercase());
        }
    }
    // The primary group is not in memberOf: users whose primary group is privileged.
    let chain_secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT privilege: LDAP_MATCHING_RULE_IN_CHAIN|{}|{chain_secs:.3}|{}|{} searches (one per privileged group); {} agree with ours{}",
        in_chain.len(),
        vm_hwm_kib(None).unwrap_or(0),
        privileged_groups.len(),
        in_chain.intersection(&ours).count(),
        if in_chain.is_subset(&ours) {
            ""
        } else {
            "; IN-CHAIN FINDS USERS OURS DOES NOT"
        },
    );

    // 3. tokenGroups: one base search per user.
    let start = Instant::now();
    let user_dns = paged(
        &mut ldap,
        &base,
        ldap3::Scope::Subtree,
        ad_source::config::DEFAULT_USER_FILTER,
        vec!["1.1"],
    )
    .await;
    let mut token = std::collections::BTreeSet::new();
    for user in &user_dns {
        let Ok(result) = ldap
            .search(
                &user.dn,
                ldap3::Scope::Base,
                "(objectClass=*)",
                vec!["tokenGroups"],
            )
            .await
        else {
            continue;
        };
        let Ok((entries, _)) = result.success() else {
            continue;
        };
        for e in entries {
            let e = ldap3::SearchEntry::construct(e);
            let privileged = e.bin_attrs.get("tokenGroups").is_some_and(|v| {
                v.iter()
                    .filter_map(|b| ad_model::Sid::from_bytes(b).ok())
                    .any(|s| s.is_privileged_group())
            });
            if privileged {
                token.insert(e.dn.to_ascii_lowercase());
            }
        }
    }
    println!(
        "RESULT privilege: tokenGroups|{}|{:.3}|{}|{} base searches (one per user); {} agree with ours{}",
        token.len(),
        start.elapsed().as_secs_f64(),
        vm_hwm_kib(None).unwrap_or(0),
        user_dns.len(),
        token.intersection(&ours).count(),
        if token.is_subset(&ours) {
            ""
        } else {
            "; TOKENGROUPS FINDS USERS OURS DOES NOT"
        },
    );
    let _ = ldap.unbind().await;
}

async fn pso_probe(url: &str) -> u64 {
    let Ok((conn, mut ldap)) = ldap3::LdapConnAsync::new(url).await else {
        fail("cannot connect for the probe")
    };
    ldap3::drive!(conn);
    let bound = ldap
        .simple_bind(
            ad_testkit::SERVICE_ACCOUNT_UPN,
            ad_testkit::SERVICE_ACCOUNT_PASSWORD,
        )
        .await;
    if bound.is_err() {
        fail("bind for the probe failed");
    }
    let found = ldap
        .with_search_options(ldap3::SearchOptions::new().sizelimit(1))
        .search(
            ad_testkit::BASE_DN,
            ldap3::Scope::Subtree,
            "(msDS-PSOApplied=*)",
            vec!["1.1"],
        )
        .await
        .map(|r| r.0.len() as u64)
        .unwrap_or(0);
    let _ = ldap.unbind().await;
    found
}

fn ldapsearch_row() {
    let (Some(url), Some(bind), Some(pw), Some(ca), Some(base)) = (
        env("ADLAB_LDAPS_URL"),
        env("ADLAB_ADMIN_BIND"),
        env("ADLAB_ADMIN_PASSWORD"),
        env("ADLAB_CA_FILE"),
        env("ADLAB_BASE_DN"),
    ) else {
        return;
    };
    let mut entries = 0u64;
    let mut peak = 0u64;
    let start = Instant::now();
    for (filter, attrs) in [
        (ad_source::config::DEFAULT_GROUP_FILTER, Group::ATTRIBUTES),
        (ad_source::config::DEFAULT_USER_FILTER, User::ATTRIBUTES),
    ] {
        let mut cmd = Command::new("ldapsearch");
        cmd.env("LDAPTLS_CACERT", &ca)
            .args([
                "-x",
                "-LLL",
                "-H",
                &url,
                "-D",
                &bind,
                "-w",
                &pw,
                "-b",
                &base,
                "-E",
                "pr=1000/noprompt",
                filter,
            ])
            .args(attrs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else {
            println!("RESULT ldapsearch (Samba lab)|0|0|0|ldapsearch not installed");
            return;
        };
        let pid = child.id();
        let stdout = child.stdout.take();
        let counter = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut n = 0u64;
            if let Some(out) = stdout {
                for line in std::io::BufReader::new(out)
                    .split(b'\n')
                    .map_while(Result::ok)
                {
                    if line.starts_with(b"dn:") {
                        n += 1;
                    }
                }
            }
            n
        });
        loop {
            if let Some(hwm) = vm_hwm_kib(Some(pid)) {
                peak = peak.max(hwm);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        entries += counter.join().unwrap_or(0);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT ldapsearch -E pr=1000/noprompt (Samba lab)|{entries}|{secs:.3}|{peak}|same filters and attributes, output to a pipe"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => return child(args.get(2).map(String::as_str).unwrap_or("")),
        Some("child-ldapsearch") => return ldapsearch_row(),
        _ => {}
    }
    let which = args.get(1).cloned().unwrap_or_else(|| "all".to_owned());
    let cases: Vec<&str> = match which.as_str() {
        "all" => vec!["samba", "100k", "1m", "boundary"],
        "boundary-1m" => vec!["boundary-1m"],
        "privilege" => vec!["privilege"],
        "samba" => vec!["samba"],
        "100k" => vec!["100k"],
        "1m" => vec!["1m"],
        "boundary" => vec!["boundary"],
        _ => {
            eprintln!("usage: bench [samba|100k|1m|boundary|boundary-1m|privilege|all]");
            std::process::exit(2)
        }
    };
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let mut rows = Vec::new();
    for case in cases {
        let mut runs: Vec<Vec<&str>> = Vec::new();
        if case == "samba" {
            // ldapsearch and ad-source over the same entries, one after the other, same run.
            runs.push(vec!["child-ldapsearch"]);
        }
        runs.push(vec!["child", case]);
        for run in runs {
            let out = Command::new(&exe)
                .args(&run)
                .stderr(Stdio::inherit())
                .output()
                .unwrap_or_else(|e| fail(&e.to_string()));
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(rest) = line.strip_prefix("RESULT ") {
                    rows.push(rest.to_owned());
                }
            }
        }
    }
    println!();
    println!("| case | entries | seconds | entries/s | peak RSS (MiB) | note |");
    println!("|---|---:|---:|---:|---:|---|");
    for row in rows {
        let f: Vec<&str> = row.splitn(5, '|').collect();
        let [name, n, secs, rss, note] = f[..] else {
            continue;
        };
        let n: f64 = n.parse().unwrap_or(0.0);
        let s: f64 = secs.parse().unwrap_or(0.0);
        let rate = if s > 0.0 {
            format!("{:.0}", n / s)
        } else {
            "-".into()
        };
        let rss = rss
            .parse::<f64>()
            .map(|k| format!("{:.1}", k / 1024.0))
            .unwrap_or_else(|_| "-".into());
        println!("| {name} | {n:.0} | {s:.2} | {rate} | {rss} | {note} |");
    }
}
