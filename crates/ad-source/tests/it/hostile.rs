//! No panic, no hang, and an error sentence, whatever a broken or hostile server sends: each
//! session runs one operation (connection probe, full read, delta, re-read by DN) through a
//! proxy that corrupts one of the server's messages (`ad_testkit::HostileProxy`): bit flips,
//! truncation, wrong tags, absurd lengths, garbage, controls removed, absurd numbers, at
//! every protocol step (bind, StartTLS, rootDSE, paged search, ranged retrieval, tombstones).
//!
//! `HOSTILE_SESSIONS=<n>` sets how many sessions run (default 300), `HOSTILE_FIRST_SEED`
//! where the seeds start, `HOSTILE_SEED=<s>` replays one. Panics are counted everywhere
//! through a panic hook. ldap3 parses the server's messages in its connection task, which
//! `ad-source` runs apart (the panic closes that connection, the operation ends in an error
//! sentence): those are counted as contained; any other panic fails the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ad_model::Guid;
use ad_source::{Checkpoint, DeltaOutcome, Source, SourceEvent, SyncRun};
use ad_testkit::{HostileProxy, MutationPlan, ServerOptions, TestServer};

use crate::testkit::{company, config};

/// Messages a session's mutation is chosen among (a full read of the small company is about
/// this many server messages).
const MESSAGES: usize = 160;
/// Sessions in flight at once (most wait on a timeout after their corruption);
/// `HOSTILE_IN_FLIGHT` overrides.
const IN_FLIGHT: usize = 24;

static PANICS: AtomicUsize = AtomicUsize::new(0);
static CONTAINED: AtomicUsize = AtomicUsize::new(0);

/// How a session ended.
enum Outcome {
    Fine,
    Error(String),
    Panicked,
    Hung,
}

async fn drain(mut run: SyncRun) -> Result<(), String> {
    while let Some(event) = run.next_event().await {
        std::hint::black_box(&event);
        if let SourceEvent::Warning { message } = &event {
            assert!(!message.trim().is_empty());
        }
    }
    run.finish().await.map(|_| ()).map_err(|e| e.to_string())
}

/// One operation against `url`; `Err` carries the error sentence.
async fn session(
    seed: u64,
    mut cfg: ad_source::SourceConfig,
    checkpoint: Checkpoint,
    dns: Vec<String>,
) -> Result<(), String> {
    cfg.connect_timeout_secs = 1;
    cfg.operation_timeout_secs = 1;
    if seed.is_multiple_of(7) {
        // StartTLS against a server without TLS: its (corrupted) reply is parsed first.
        cfg.starttls = true;
    }
    let source = Source::new(cfg).map_err(|e| e.to_string())?;
    match seed % 4 {
        0 => {
            let report = source.probe().await;
            match report.first_failure() {
                Some(step) => Err(format!("{step:?}")),
                None => Ok(()),
            }
        }
        1 => drain(source.full_snapshot().await.map_err(|e| e.to_string())?).await,
        2 => match source
            .changes_since(&checkpoint)
            .await
            .map_err(|e| e.to_string())?
        {
            DeltaOutcome::Changes(run) => drain(run).await,
            other => Err(format!("{other:?}")),
        },
        _ => source
            .read_objects(&dns)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_server_sessions_never_panic_or_hang() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("HOSTILE_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env("HOSTILE_FIRST_SEED").unwrap_or(0);
            (first..first + env("HOSTILE_SESSIONS").unwrap_or(300)).collect()
        }
    };
    let (directory, m) = company(60);
    // Small pages and value ranges: paging cookies and ranged `member` in every full read.
    let server = TestServer::start(
        directory,
        ServerOptions {
            max_page_size: 7,
            max_val_range: 5,
            ..ServerOptions::default()
        },
    )
    .unwrap();
    let checkpoint = Checkpoint {
        dc_host: server.dns_host_name().to_owned(),
        invocation_id: Guid::from_uuid(server.invocation_id()),
        usn: 1,
    };
    let dns = vec![
        m.users[0].clone(),
        m.large_group.clone(),
        m.department_groups[0].clone(),
    ];

    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&messages);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // ldap3's parsing (codec, controls, results) runs in its connection task; a panic
        // there in one of *our* tasks shows as a session that panicked (checked below).
        let in_ldap3_driver = info
            .location()
            .is_some_and(|l| l.file().contains("/ldap3-") || l.file().contains("/ldap3_proto-"));
        if in_ldap3_driver {
            CONTAINED.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = seen.lock()
                && m.len() < 400
            {
                m.push(format!("(contained) {info}"));
            }
        } else {
            PANICS.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut m) = seen.lock() {
                m.push(info.to_string());
            }
        }
    }));

    let started = Instant::now();
    let mut hung = Vec::new();
    let mut panicked = Vec::new();
    let mut errors = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    let mut pending = seeds.clone().into_iter();
    let launch = |tasks: &mut tokio::task::JoinSet<_>, seed: u64| {
        let cfg = config(&server);
        let addr = server.addr();
        let checkpoint = checkpoint.clone();
        let dns = dns.clone();
        tasks.spawn(async move {
            let plan = MutationPlan::random(seed, MESSAGES);
            let proxy = HostileProxy::start(addr, plan)
                .await
                .expect("the proxy listens on loopback");
            let mut cfg = cfg;
            cfg.url = proxy.url().into();
            let run = tokio::spawn(session(seed, cfg, checkpoint, dns));
            let outcome = match tokio::time::timeout(Duration::from_secs(30), run).await {
                Err(_) => Outcome::Hung,
                Ok(Err(join)) if join.is_panic() => Outcome::Panicked,
                Ok(Err(_)) => Outcome::Hung,
                Ok(Ok(Err(sentence))) => Outcome::Error(sentence),
                Ok(Ok(Ok(()))) => Outcome::Fine,
            };
            drop(proxy);
            (seed, outcome)
        });
    };
    let in_flight = env("HOSTILE_IN_FLIGHT").map_or(IN_FLIGHT, |n| n.max(1) as usize);
    for seed in pending.by_ref().take(in_flight) {
        launch(&mut tasks, seed);
    }
    while let Some(done) = tasks.join_next().await {
        let Ok((seed, outcome)) = done else {
            panicked.push(u64::MAX);
            continue;
        };
        match outcome {
            Outcome::Hung => hung.push(seed),
            Outcome::Panicked => panicked.push(seed),
            Outcome::Error(sentence) => {
                errors += 1;
                assert!(
                    sentence.trim().len() > 10,
                    "HOSTILE_SEED={seed}: an error without a sentence: {sentence:?}"
                );
            }
            Outcome::Fine => {}
        }
        if let Some(seed) = pending.next() {
            launch(&mut tasks, seed);
        }
    }
    std::panic::set_hook(previous);
    let panics = PANICS.load(Ordering::SeqCst);
    eprintln!(
        "hostile server: {} sessions ({} ended in an error sentence) in {:.1} s; {panics} panics, {} contained (ldap3 panicking in its connection task or in an isolated call), {} hung",
        seeds.len(),
        errors,
        started.elapsed().as_secs_f64(),
        CONTAINED.load(Ordering::SeqCst),
        hung.len()
    );
    let messages = messages.lock().map(|m| m.clone()).unwrap_or_default();
    let messages: Vec<String> = if panicked.is_empty() {
        messages
            .into_iter()
            .filter(|m| !m.starts_with("(contained)"))
            .collect()
    } else {
        messages
    };
    assert!(
        panics == 0 && panicked.is_empty(),
        "{panics} panics; sessions that panicked (HOSTILE_SEED=…): {panicked:?}\n{}",
        messages.join("\n")
    );
    assert!(
        hung.is_empty(),
        "sessions that hung (HOSTILE_SEED=…): {hung:?}"
    );
}
