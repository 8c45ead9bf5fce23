//! Throughput of the sinks: mapping + serialization per core, and end-to-end delivery to a
//! loopback HTTP server.
//!
//! ```text
//! cargo run --release -p asset-sink --example bench [-- USERS]
//! ```
//!
//! Part 1 encodes USERS users (default 100 000) single-threaded for each sink, exactly as
//! `send` would (`encode` builds the request bodies / outbox lines). Part 2 sends them in
//! batches of 1000 to a minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, reads each body
//! whole, answers 200), four batches in flight, and to a JSONL file with an fsync per batch.
//! The server runs on the same machine: its cost (reading ~1 KB per user off the socket) is
//! reported next to ours.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asset_sink::jsonl::{JsonlConfig, JsonlSink};
use asset_sink::qualys::{QualysAuth, QualysConfig, QualysSink};
use asset_sink::sekoia::{SekoiaConfig, SekoiaSink};
use asset_sink::{Batch, Change, Sink, testing};
use futures::StreamExt;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use uuid::Uuid;

const BATCH: usize = 1000;

#[derive(Default)]
struct ServerStats {
    requests: AtomicU64,
    bytes: AtomicU64,
    /// Time spent between the first byte of a request and the answer written.
    busy_nanos: AtomicU64,
}

async fn serve(stats: Arc<ServerStats>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let stats = Arc::clone(&stats);
            tokio::spawn(async move {
                let mut reader = BufReader::with_capacity(256 * 1024, stream);
                let mut body = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let started = Instant::now();
                    let is_auth = line.contains("/auth ");
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    body.resize(length, 0);
                    reader.read_exact(&mut body).await.unwrap();
                    let answer: &[u8] = if is_auth {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nbench-jwt"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                    };
                    reader.get_mut().write_all(answer).await.unwrap();
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(length as u64, Ordering::Relaxed);
                    stats
                        .busy_nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    url
}

fn batches(users: &[ad_model::User]) -> Vec<Batch> {
    users
        .chunks(BATCH)
        .enumerate()
        .map(|(i, chunk)| Batch {
            id: i as u64,
            sync: testing::sync(),
            changes: chunk.iter().cloned().map(Change::UpsertUser).collect(),
        })
        .collect()
}

fn rate(count: usize, elapsed: Duration) -> String {
    format!("{:>9.0}", count as f64 / elapsed.as_secs_f64())
}

fn row(name: &str, users: usize, elapsed: Duration, bytes: u64, note: &str) {
    println!(
        "| {name:<38} | {:>7} | {:>8.1} | {} | {:>7.1} | {note}",
        users,
        elapsed.as_secs_f64() * 1000.0,
        rate(users, elapsed),
        bytes as f64 / users as f64,
    );
}

fn sekoia(url: &str) -> SekoiaSink {
    let mut config = SekoiaConfig::new(Uuid::from_u128(7), SecretString::from("bench-key"));
    config.base_url = url.to_owned();
    SekoiaSink::new(config).unwrap()
}

fn qualys(url: &str) -> QualysSink {
    let config = QualysConfig::new(
        url,
        Uuid::from_u128(1),
        Uuid::from_u128(2),
        Uuid::from_u128(3),
        QualysAuth::Basic {
            username: "bench".into(),
            password: SecretString::from("bench"),
            token_lifetime_secs: 14400,
        },
    );
    QualysSink::new(config).unwrap()
}

async fn deliver(sink: &dyn Sink, batches: &[Batch]) -> Duration {
    let started = Instant::now();
    let acks: Vec<_> = futures::stream::iter(batches.iter().map(|b| sink.send(b)))
        .buffer_unordered(4)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for ack in acks {
        ack.unwrap();
    }
    elapsed
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("USERS must be a number"))
        .unwrap_or(100_000);
    let users = testing::many_users(count);
    let batches = batches(&users);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = JsonlSink::new(JsonlConfig {
        path: dir.path().join("changes.jsonl").display().to_string(),
        ..JsonlConfig::default()
    })
    .unwrap();

    println!("{count} users, batches of {BATCH}\n");
    println!(
        "| {:<38} | {:>7} | {:>8} | {:>9} | {:>7} | note",
        "stage", "users", "ms", "users/s", "B/user"
    );
    println!(
        "|{}|---------|----------|-----------|---------|-----",
        "-".repeat(40)
    );

    // Part 1: mapping + serialization, one thread.
    let sekoia_sink = sekoia("http://127.0.0.1:9");
    let qualys_sink = qualys("http://127.0.0.1:9");
    for _ in 0..2 {
        // warm-up
        sekoia_sink.encode(&batches[0]).unwrap();
        qualys_sink.encode(&batches[0]).unwrap();
    }
    let time = |f: &dyn Fn(&Batch) -> u64| {
        let started = Instant::now();
        let bytes: u64 = batches.iter().map(f).sum();
        (started.elapsed(), bytes)
    };
    let (t, b) = time(&|batch| {
        sekoia_sink
            .encode(batch)
            .unwrap()
            .iter()
            .map(|v| v.len() as u64)
            .sum()
    });
    row(
        "sekoia map+serialize (1 thread)",
        count,
        t,
        b,
        "OCSF 5003 request bodies",
    );
    let (t, b) = time(&|batch| {
        qualys_sink
            .encode(batch)
            .unwrap()
            .iter()
            .map(|v| v.len() as u64)
            .sum()
    });
    row(
        "qualys map+serialize (1 thread)",
        count,
        t,
        b,
        "assetData request bodies",
    );
    let (t, b) = time(&|batch| asset_sink::jsonl::encode(batch).unwrap().len() as u64);
    row(
        "jsonl serialize (1 thread)",
        count,
        t,
        b,
        "canonical User JSON lines",
    );

    // Part 2: end to end.
    runtime.block_on(async {
        for (name, which) in [("sekoia", 0), ("qualys", 1)] {
            let stats = Arc::new(ServerStats::default());
            let url = serve(Arc::clone(&stats)).await;
            let sink: Box<dyn Sink> = if which == 0 {
                Box::new(sekoia(&url))
            } else {
                Box::new(qualys(&url))
            };
            // Warm the connection pool and the token.
            sink.send(&batches[0]).await.unwrap();
            let before = stats.busy_nanos.load(Ordering::Relaxed);
            let bytes_before = stats.bytes.load(Ordering::Relaxed);
            let elapsed = deliver(sink.as_ref(), &batches).await;
            let busy = Duration::from_nanos(stats.busy_nanos.load(Ordering::Relaxed) - before);
            let bytes = stats.bytes.load(Ordering::Relaxed) - bytes_before;
            row(
                &format!("{name} → loopback HTTP (4 in flight)"),
                count,
                elapsed,
                bytes,
                &format!(
                    "server busy {:.0} ms reading bodies ({} requests)",
                    busy.as_secs_f64() * 1000.0,
                    stats.requests.load(Ordering::Relaxed)
                ),
            );
        }
        let elapsed = deliver(&jsonl, &batches).await;
        // Rotation (100 MiB) may have split the output: count every file.
        let size: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        row("jsonl → file (fsync per batch)", count, elapsed, size, "");
    });
}
