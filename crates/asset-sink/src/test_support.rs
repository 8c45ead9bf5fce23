//! Helpers for this crate's unit tests: fast HTTP settings and a loopback proxy.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::http::HttpConfig;

/// HTTP settings for tests: short timeouts and backoffs, a 5 s retry budget.
pub(crate) fn fast_http() -> HttpConfig {
    HttpConfig {
        timeout_secs: 2.0,
        connect_timeout_secs: 1.0,
        max_retry_secs: 5.0,
        initial_backoff_ms: 10,
        max_backoff_secs: 0.05,
        ..HttpConfig::default()
    }
}

/// A tiny HTTP/1.1 forward proxy on 127.0.0.1: records each request line (absolute form, as
/// clients send to proxies) and the `Proxy-Authorization` header, then answers itself with
/// `answer(method, target)` → (status, body). Never connects anywhere.
pub(crate) struct LoopbackProxy {
    pub(crate) url: String,
    pub(crate) seen: Arc<Mutex<Vec<String>>>,
}

pub(crate) async fn loopback_proxy(answer: fn(&str, &str) -> (u16, String)) -> LoopbackProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut content_length = 0usize;
                    let mut proxy_auth = String::new();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let lower = header.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            content_length = v.trim().parse().unwrap_or(0);
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("proxy-authorization")
                        {
                            proxy_auth = value.trim().to_owned();
                        }
                    }
                    let mut body = vec![0u8; content_length];
                    reader.read_exact(&mut body).await.unwrap();
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_owned();
                    let target = parts.next().unwrap_or("").to_owned();
                    log.lock()
                        .unwrap()
                        .push(format!("{method} {target} proxy-auth={proxy_auth}"));
                    let (status, body) = answer(&method, &target);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    LoopbackProxy { url, seen }
}
