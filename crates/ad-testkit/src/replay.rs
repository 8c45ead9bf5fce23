//! Record once, replay many times: the LDAP response stream of a directory, served from a
//! file by a server that only copies bytes. This is how a client's own cost per entry is
//! measured without the cost of a server computing the entries (the in-process directory
//! generates every entry on the fly and costs more CPU than the client it serves).
//!
//! # Recording
//!
//! A [`Recorder`] is a loopback proxy in front of a real server (a [`crate::TestServer`]).
//! It frames both directions as BER `LDAPMessage`s. Each client request is keyed by its bytes
//! *after* the message ID (protocol op and controls: filter, attributes, paging cookie, …);
//! the server messages that carry the request's message ID (entries, references, the final
//! result) are appended to the recording, exactly as the server sent them, once the final
//! message arrived. Requests without an answer (unbind, abandon) and unsolicited messages
//! (notice of disconnection) are not recorded.
//!
//! # Replaying
//!
//! A [`ReplayServer`] listens on 127.0.0.1, reads only the index of the recording into memory
//! (keys and file offsets), and answers each request with the recorded bytes of the request
//! with the same key, read from the file. Nothing is decoded or encoded:
//!
//! - **Message IDs**: when the client's message ID is the recorded one (ldap3 numbers the
//!   requests of each connection from 1, so a client sending the same requests gets the same
//!   IDs), the recorded bytes are written as they are. Otherwise each message's envelope (the
//!   `SEQUENCE` header and the `INTEGER` message ID) is written anew with the client's ID and
//!   the rest of the message copied.
//! - **Paging cookies** are not patched at all: the client sends back the cookie of the
//!   recorded page it was given, so the request for the next page is byte for byte the one
//!   that was recorded, and is found under its key.
//! - A request recorded several times (the rootDSE, read on each connection) is answered with
//!   its recorded answers in turn, the last one repeated.
//! - A request that is not in the recording is answered with `unwillingToPerform` (53) and
//!   counted ([`ReplayServer::misses`]): the client changed what it asks, record again.
//!
//! The file format is this module's own: a magic line, then one record per request
//! (key length u32 LE, key, recorded message ID i32 LE, answer length u64 LE, answer bytes).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{Result, TestkitError};

const MAGIC: &[u8] = b"ad-testkit LDAP replay v1\n";

/// Largest message framed (a page of entries is one message per entry; requests are small).
const MAX_MESSAGE: usize = 64 << 20;

/// Protocol ops of requests that get no answer: unbind, abandon.
const UNBIND_REQUEST: u8 = 0x42;
const ABANDON_REQUEST: u8 = 0x50;

/// Protocol ops of the non-final answers to a search: entry, reference, intermediate.
const NON_FINAL: [u8; 3] = [0x64, 0x73, 0x79];

fn recording_error(path: &Path, reason: impl Into<String>) -> TestkitError {
    TestkitError::Recording {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// `(header length, content length)` of the BER element at the start of `buf`, once its
/// header is complete. `Some(Err)` when it cannot be an LDAPMessage.
fn message_header(buf: &[u8]) -> Option<std::result::Result<(usize, usize), ()>> {
    if *buf.first()? != 0x30 {
        return Some(Err(()));
    }
    let first = *buf.get(1)?;
    if first < 0x80 {
        return Some(Ok((2, usize::from(first))));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return Some(Err(()));
    }
    let bytes = buf.get(2..2 + n)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if len > MAX_MESSAGE {
        return Some(Err(()));
    }
    Some(Ok((2 + n, len)))
}

/// The message ID and the bytes after it (protocol op and controls) of a whole message.
fn split_message(message: &[u8]) -> Option<(i32, &[u8])> {
    let (header, _) = message_header(message)?.ok()?;
    crate::codec::split_id(message.get(header..)?)
}

fn ber_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(bytes.get(skip..).unwrap_or_default());
}

/// A whole LDAPMessage: `SEQUENCE { INTEGER id, rest }`.
fn envelope(id: i32, rest: &[u8], out: &mut Vec<u8>) {
    let be = id.to_be_bytes();
    // Minimal two's complement: drop leading bytes that only repeat the sign.
    let mut skip = 0;
    while skip < 3 {
        let (Some(b), Some(next)) = (be.get(skip), be.get(skip + 1)) else {
            break;
        };
        if (*b == 0 && next & 0x80 == 0) || (*b == 0xff && next & 0x80 != 0) {
            skip += 1;
        } else {
            break;
        }
    }
    let id_bytes = be.get(skip..).unwrap_or_default();
    out.push(0x30);
    ber_length(2 + id_bytes.len() + rest.len(), out);
    out.push(0x02);
    out.push(id_bytes.len() as u8);
    out.extend_from_slice(id_bytes);
    out.extend_from_slice(rest);
}

/// Take the complete messages at the start of `buf` (drained from it), calling `each` with
/// every one. Returns false when the stream is not LDAP.
fn drain_messages(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) -> bool {
    let mut at = 0;
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        match message_header(rest) {
            None => break,
            Some(Err(())) => return false,
            Some(Ok((header, len))) => {
                let Some(message) = rest.get(..header + len) else {
                    break;
                };
                each(message);
                at += header + len;
            }
        }
    }
    buf.drain(..at);
    true
}

// ---------------------------------------------------------------------------------------
// Recording

#[derive(Debug)]
struct Sink {
    out: BufWriter<File>,
    requests: u64,
    bytes: u64,
    error: Option<String>,
}

impl Sink {
    fn write(&mut self, key: &[u8], id: i32, answer: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            let key_len = u32::try_from(key.len()).map_err(std::io::Error::other)?;
            self.out.write_all(&key_len.to_le_bytes())?;
            self.out.write_all(key)?;
            self.out.write_all(&id.to_le_bytes())?;
            self.out.write_all(&(answer.len() as u64).to_le_bytes())?;
            self.out.write_all(answer)
        })();
        match result {
            Ok(()) => {
                self.requests += 1;
                self.bytes += answer.len() as u64;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingStats {
    /// Requests recorded (with their answers).
    pub requests: u64,
    /// Bytes of answers recorded.
    pub bytes: u64,
}

/// A recording proxy: relays a client to `upstream` and writes every answered request with
/// its answer to a file. Stop it with [`Recorder::finish`].
#[derive(Debug)]
pub struct Recorder {
    addr: SocketAddr,
    path: PathBuf,
    sink: Arc<Mutex<Sink>>,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Recorder {
    /// Listen on 127.0.0.1 (a free port), relay to `upstream`, record into `path` (created
    /// or truncated). Must be called inside a Tokio runtime.
    pub async fn start(upstream: SocketAddr, path: &Path) -> Result<Recorder> {
        let file = File::create(path)
            .map_err(|e| recording_error(path, format!("it cannot be created: {e}")))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC)
            .map_err(|e| recording_error(path, format!("it cannot be written: {e}")))?;
        let sink = Arc::new(Mutex::new(Sink {
            out,
            requests: 0,
            bytes: 0,
            error: None,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let sink = Arc::clone(&sink);
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let task = tokio::spawn(record_connection(client, upstream, Arc::clone(&sink)));
                    connections
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(task);
                }
            })
        };
        Ok(Recorder {
            addr,
            path: path.to_owned(),
            sink,
            accept,
            connections,
        })
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// Stop relaying and write the recording to disk. Requests still waiting for their final
    /// answer are not recorded.
    pub fn finish(self) -> Result<RecordingStats> {
        self.accept.abort();
        for task in self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = sink.error.take() {
            return Err(recording_error(
                &self.path,
                format!("writing it failed: {error}"),
            ));
        }
        sink.out
            .flush()
            .and_then(|()| sink.out.get_ref().sync_all())
            .map_err(|e| recording_error(&self.path, format!("writing it failed: {e}")))?;
        Ok(RecordingStats {
            requests: sink.requests,
            bytes: sink.bytes,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Requests of one connection waiting for their final answer: message ID → (key, answer so
/// far).
type Waiting = Arc<Mutex<HashMap<i32, (Vec<u8>, Vec<u8>)>>>;

async fn record_connection(client: TcpStream, upstream: SocketAddr, sink: Arc<Mutex<Sink>>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
    let up = {
        let waiting = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 << 10];
            loop {
                let n = match client_read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                // Registered before the server can see the request, so its answer finds it.
                let ldap = drain_messages(&mut buf, |message| {
                    if let Some((id, rest)) = split_message(message)
                        && !matches!(rest.first(), Some(&UNBIND_REQUEST | &ABANDON_REQUEST))
                    {
                        waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id, (rest.to_vec(), Vec::new()));
                    }
                });
                if server_write
                    .write_all(chunk.get(..n).unwrap_or_default())
                    .await
                    .is_err()
                    || !ldap
                {
                    break;
                }
            }
            let _ = server_write.shutdown().await;
        })
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let n = match server_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let ldap = drain_messages(&mut buf, |message| {
            let Some((id, rest)) = split_message(message) else {
                return;
            };
            let mut waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let Some((_, answer)) = waiting.get_mut(&id) else {
                return; // unsolicited (notice of disconnection)
            };
            answer.extend_from_slice(message);
            if rest.first().is_some_and(|op| NON_FINAL.contains(op)) {
                return;
            }
            if let Some((key, answer)) = waiting.remove(&id) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .write(&key, id, &answer);
            }
        });
        if client_write
            .write_all(chunk.get(..n).unwrap_or_default())
            .await
            .is_err()
            || !ldap
        {
            break;
        }
    }
    let _ = client_write.shutdown().await;
    up.abort();
}

// ---------------------------------------------------------------------------------------
// Replaying

#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: u64,
    len: usize,
    id: i32,
}

#[derive(Debug)]
struct Answers {
    slots: Vec<Slot>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Index {
    path: PathBuf,
    answers: HashMap<Vec<u8>, Answers>,
    misses: AtomicU64,
}

impl Index {
    fn load(path: &Path) -> Result<Index> {
        let file = File::open(path)
            .map_err(|e| recording_error(path, format!("it cannot be opened: {e}")))?;
        let size = file
            .metadata()
            .map_err(|e| recording_error(path, format!("it cannot be read: {e}")))?
            .len();
        let mut input = BufReader::with_capacity(1 << 16, file);
        let truncated = |e: std::io::Error| recording_error(path, format!("it is truncated ({e})"));
        let mut magic = vec![0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(truncated)?;
        if magic != MAGIC {
            return Err(recording_error(
                path,
                "it is not an ad-testkit replay recording",
            ));
        }
        let mut answers: HashMap<Vec<u8>, Answers> = HashMap::new();
        let mut at = MAGIC.len() as u64;
        while at < size {
            let mut u32_bytes = [0u8; 4];
            input.read_exact(&mut u32_bytes).map_err(truncated)?;
            let key_len = u32::from_le_bytes(u32_bytes) as usize;
            if key_len > MAX_MESSAGE {
                return Err(recording_error(path, "a request in it is too large"));
            }
            let mut key = vec![0u8; key_len];
            input.read_exact(&mut key).map_err(truncated)?;
            input.read_exact(&mut u32_bytes).map_err(truncated)?;
            let id = i32::from_le_bytes(u32_bytes);
            let mut u64_bytes = [0u8; 8];
            input.read_exact(&mut u64_bytes).map_err(truncated)?;
            let len = u64::from_le_bytes(u64_bytes);
            let offset = at + 4 + key_len as u64 + 4 + 8;
            if offset.saturating_add(len) > size {
                return Err(recording_error(path, "it is truncated"));
            }
            let len = usize::try_from(len)
                .map_err(|_| recording_error(path, "an answer in it is too large"))?;
            input
                .seek_relative(i64::try_from(len).unwrap_or(i64::MAX))
                .map_err(truncated)?;
            at = offset + len as u64;
            answers
                .entry(key)
                .or_insert_with(|| Answers {
                    slots: Vec::new(),
                    next: AtomicU64::new(0),
                })
                .slots
                .push(Slot { offset, len, id });
        }
        Ok(Index {
            path: path.to_owned(),
            answers,
            misses: AtomicU64::new(0),
        })
    }

    /// The next recorded answer to this request.
    fn answer(&self, key: &[u8]) -> Option<Slot> {
        let answers = self.answers.get(key)?;
        let n = answers.next.fetch_add(1, Ordering::Relaxed);
        let i = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(answers.slots.len().saturating_sub(1));
        answers.slots.get(i).copied()
    }
}

/// Serves a recording made by a [`Recorder`] on 127.0.0.1. Stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    index: Arc<Index>,
    task: JoinHandle<()>,
}

impl ReplayServer {
    /// Load the index of the recording at `path` and listen on 127.0.0.1 (a free port). Must
    /// be called inside a Tokio runtime.
    pub async fn start(path: &Path) -> Result<ReplayServer> {
        let index = Arc::new(Index::load(path)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = {
            let index = Arc::clone(&index);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(client, Arc::clone(&index)));
                }
            })
        };
        Ok(ReplayServer { addr, index, task })
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Distinct requests in the recording.
    pub fn requests(&self) -> usize {
        self.index.answers.len()
    }

    /// Requests received that are not in the recording (answered with unwillingToPerform).
    pub fn misses(&self) -> u64 {
        self.index.misses.load(Ordering::Relaxed)
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to a request that is not in the recording: the op's result with
/// unwillingToPerform (53).
fn miss_answer(id: i32, request_op: u8, out: &mut Vec<u8>) {
    let op = match request_op {
        0x63 => 0x65,       // search → searchResDone
        0x77 => 0x78,       // extended
        0x4a => 0x6b,       // delete (primitive request)
        other => other + 1, // bind, modify, add, modDN, compare
    };
    let text = b"this request is not in the replay recording; record it again";
    let mut result = vec![0x0a, 0x01, 53, 0x04, 0x00, 0x04];
    ber_length(text.len(), &mut result);
    result.extend_from_slice(text);
    let mut rest = vec![op];
    ber_length(result.len(), &mut rest);
    rest.extend_from_slice(&result);
    envelope(id, &rest, out);
}

async fn serve_connection(client: TcpStream, index: Arc<Index>) {
    let _ = client.set_nodelay(true);
    let Ok(mut file) = File::open(&index.path) else {
        return;
    };
    let (mut read, mut write) = client.into_split();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut answer = Vec::new();
    let mut patched = Vec::new();
    loop {
        let n = match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut requests = Vec::new();
        let ldap = drain_messages(&mut buf, |message| {
            if let Some((id, rest)) = split_message(message) {
                requests.push((id, rest.to_vec()));
            }
        });
        for (id, key) in requests {
            let op = key.first().copied().unwrap_or(0);
            if op == UNBIND_REQUEST {
                let _ = write.shutdown().await;
                return;
            }
            if op == ABANDON_REQUEST {
                continue;
            }
            let out: &[u8] = match index.answer(&key) {
                Some(slot) => {
                    answer.resize(slot.len, 0);
                    let read_ok = file
                        .seek(SeekFrom::Start(slot.offset))
                        .and_then(|_| file.read_exact(&mut answer));
                    if read_ok.is_err() {
                        return;
                    }
                    if slot.id == id {
                        &answer
                    } else {
                        patched.clear();
                        let mut recorded = answer.clone();
                        drain_messages(&mut recorded, |message| {
                            if let Some((_, rest)) = split_message(message) {
                                envelope(id, rest, &mut patched);
                            }
                        });
                        &patched
                    }
                }
                None => {
                    index.misses.fetch_add(1, Ordering::Relaxed);
                    patched.clear();
                    miss_answer(id, op, &mut patched);
                    &patched
                }
            };
            if write.write_all(out).await.is_err() {
                return;
            }
        }
        if !ldap {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        for id in [0, 1, 127, 128, 255, 256, 65_535, 1 << 24, i32::MAX, -1] {
            let mut out = Vec::new();
            envelope(id, &[0x65, 0x00], &mut out);
            let (back, rest) = split_message(&out).unwrap();
            assert_eq!((back, rest), (id, &[0x65, 0x00][..]), "{id}");
        }
        let mut out = Vec::new();
        envelope(2, &vec![7u8; 300], &mut out);
        assert_eq!(&out[..4], &[0x30, 0x82, 0x01, 0x2f]);
    }

    #[test]
    fn misses_are_ldap_results() {
        let mut out = Vec::new();
        miss_answer(9, 0x63, &mut out);
        let (id, rest) = split_message(&out).unwrap();
        assert_eq!(id, 9);
        assert_eq!(rest[0], 0x65);
        assert_eq!(&rest[2..5], &[0x0a, 0x01, 53]);
    }

    #[test]
    fn framing_keeps_partial_messages() {
        let mut a = Vec::new();
        envelope(1, &[0x42, 0x00], &mut a);
        let mut buf = a.clone();
        buf.extend_from_slice(&a[..3]);
        let mut seen = 0;
        assert!(drain_messages(&mut buf, |_| seen += 1));
        assert_eq!((seen, buf.len()), (1, 3));
        assert!(!drain_messages(&mut vec![0x16, 0x03], |_| {}));
    }
}
