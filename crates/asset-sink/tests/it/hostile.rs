//! A hostile platform: every sink against a loopback HTTP server that answers with random
//! statuses, `Retry-After` garbage, lying `Content-Length`s, bodies that are huge, truncated
//! or not JSON, and token responses with absurd `expires_in`. No panic, no hang, bounded
//! memory (bodies are read up to `http::MAX_RESPONSE_BYTES`), and an error sentence whenever
//! the batch is not acknowledged.
//!
//! `HOSTILE_HTTP_SESSIONS=<n>` (default 300), `HOSTILE_HTTP_SEED=<s>` replays one.

use std::time::Duration;

use asset_sink::qualys::{QualysAuth, QualysSink};
use asset_sink::sekoia::{SekoiaConfig, SekoiaSink};
use asset_sink::{Sink, testing};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use uuid::Uuid;

/// One answer, raw bytes, from `rng`.
fn answer(rng: &mut StdRng) -> Vec<u8> {
    let status = [
        "200 OK",
        "201 Created",
        "202 Accepted",
        "204 No Content",
        "301 Moved",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "408 Timeout",
        "413 Too Large",
        "429 Too Many",
        "500 Error",
        "502 Bad Gateway",
        "503 Unavailable",
        "999 Odd",
        "20 Short",
        "abc Garbage",
    ][rng.random_range(0..18)];
    let retry_after = [
        None,
        Some(""),
        Some("abc"),
        Some("-1"),
        Some("99999999999999999999999999"),
        Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some("Fri, 31 Dec 9999 23:59:59 GMT"),
        Some("1e9"),
        Some("0"),
        Some("1"),
    ][rng.random_range(0..10)];
    let big = "x".repeat(3 << 20);
    let body: Vec<u8> = match rng.random_range(0..9) {
        0 => Vec::new(),
        1 => b"{}".to_vec(),
        2 => b"{\"access_token\":\"tok\",\"expires_in\":18446744073709551615}".to_vec(),
        3 => b"{\"access_token\":\"tok\",\"expires_in\":-5}".to_vec(),
        4 => b"{\"access_token\":\"tok\",\"expires_in\":\"soon\"}".to_vec(),
        5 => b"eyJhbGciOiJIUzI1NiJ9.e30.sig".to_vec(),
        6 => big.into_bytes(),
        7 => (0..rng.random_range(1..512))
            .map(|_| rng.random())
            .collect(),
        _ => b"{\"errors\":[{\"message\":\"\xff\xfe broken \\u00e9\"".to_vec(),
    };
    let length = match rng.random_range(0..4) {
        0 => Some(body.len()),
        1 => Some(body.len() / 2),
        2 => Some(body.len() + 100),
        _ => None,
    };
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    if let Some(v) = retry_after {
        out.push_str(&format!("Retry-After: {v}\r\n"));
    }
    if let Some(n) = length {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    if rng.random_bool(0.5) {
        out.push_str("Content-Type: application/json\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// A server answering each request from `seed`'s sequence; returns its base URL.
async fn hostile_server(seed: u64) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = answer(&mut rng);
            let close_early = rng.random_bool(0.05);
            tokio::spawn(async move {
                // Read the request head and whatever body arrives quickly.
                let mut buf = vec![0u8; 64 << 10];
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
                if !close_early {
                    let _ = stream.write_all(&reply).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, task)
}

fn http() -> asset_sink::http::HttpConfig {
    asset_sink::http::HttpConfig {
        timeout_secs: 2.0,
        max_retry_secs: 0.3,
        initial_backoff_ms: 5,
        max_backoff_secs: 0.05,
        ..asset_sink::http::HttpConfig::default()
    }
}

async fn session(seed: u64) -> Result<(), String> {
    let (url, server) = hostile_server(seed).await;
    let batch = testing::batch();
    let sink: Box<dyn Sink> = match seed % 3 {
        0 => {
            let mut config = SekoiaConfig::new(Uuid::from_u128(7), SecretString::from("k"));
            config.base_url = format!("{url}/");
            config.http = http();
            Box::new(SekoiaSink::new(config).map_err(|e| e.to_string())?)
        }
        kind => {
            let auth = if kind == 1 {
                QualysAuth::Basic {
                    username: "u".into(),
                    password: SecretString::from("p"),
                    token_lifetime_secs: 3600,
                }
            } else {
                QualysAuth::OAuth {
                    client_id: "c".into(),
                    client_secret: SecretString::from("s"),
                    token_url: format!("{url}/oauth/token"),
                }
            };
            let mut config = asset_sink::qualys::QualysConfig::new(
                &url,
                Uuid::from_u128(1),
                Uuid::from_u128(2),
                Uuid::from_u128(3),
                auth,
            );
            config.http = http();
            Box::new(QualysSink::new(config).map_err(|e| e.to_string())?)
        }
    };
    let result = sink.send(&batch).await;
    let check = sink.check().await;
    server.abort();
    if let Err(e) = &check {
        let sentence = e.to_string();
        if sentence.trim().len() < 10 {
            return Err(format!("check error without a sentence: {sentence:?}"));
        }
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let sentence = e.to_string();
            if sentence.trim().len() < 10 || sentence.len() > 4096 {
                Err(format!("send error not a sentence: {sentence:?}"))
            } else {
                Ok(())
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_platform_answers_never_panic_hang_or_bloat() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("HOSTILE_HTTP_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("HOSTILE_HTTP_SESSIONS").unwrap_or(300)).collect(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for seed in &seeds {
        let seed = *seed;
        tasks.spawn(async move {
            let run = tokio::spawn(session(seed));
            (
                seed,
                tokio::time::timeout(Duration::from_secs(60), run).await,
            )
        });
        while tasks.len() >= 16 {
            check(tasks.join_next().await);
        }
    }
    while let Some(done) = tasks.join_next().await {
        check(Some(done));
    }
    eprintln!(
        "hostile platform: {} sessions, no panic, no hang",
        seeds.len()
    );
}

type Done = Result<
    (
        u64,
        Result<Result<Result<(), String>, tokio::task::JoinError>, tokio::time::error::Elapsed>,
    ),
    tokio::task::JoinError,
>;

fn check(done: Option<Done>) {
    let Some(Ok((seed, outcome))) = done else {
        panic!("a session task failed: {done:?}");
    };
    match outcome {
        Err(_) => panic!("HOSTILE_HTTP_SEED={seed} hung"),
        Ok(Err(join)) => panic!("HOSTILE_HTTP_SEED={seed} panicked: {join}"),
        Ok(Ok(Err(problem))) => panic!("HOSTILE_HTTP_SEED={seed}: {problem}"),
        Ok(Ok(Ok(()))) => {}
    }
}
