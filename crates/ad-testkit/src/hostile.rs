//! A hostile server: a TCP proxy in front of a [`crate::TestServer`] that corrupts one LDAP
//! message the server sends, chosen by its number among all messages the proxy relays.
//!
//! It frames the server's bytes as BER `LDAPMessage`s (tag 0x30, definite length) and, at
//! message number [`MutationPlan::at`], applies one [`Mutation`]: random bit flips, a
//! truncation, a wrong protocol-op tag, an absurd length, garbage, the controls stripped (a
//! paged search without its cookie), the connection closed, the message twice. Everything
//! else passes unchanged. Bytes that are not an LDAP message (TLS after StartTLS) are relayed
//! as they are. The client side is relayed untouched.
//!
//! This is how a client proves it never panics and never hangs on what a broken or hostile
//! server sends at every protocol step: bind, StartTLS, rootDSE, paged search, ranged
//! retrieval, tombstones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::Result;

/// How to corrupt the chosen message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// Flip this many random bits anywhere in the message.
    FlipBits(u8),
    /// Send a random prefix of the message, then close.
    Truncate,
    /// Replace the protocol-op tag (bind response, search entry, …) with a random byte.
    WrongTag,
    /// Announce a length of about 2 GiB, send the message's bytes, then close.
    HugeLength,
    /// Replace the message with 1–256 random bytes.
    Garbage,
    /// Remove the controls (a paged search's cookie, …) and fix the length.
    DropControls,
    /// Close the connection instead of sending the message.
    Close,
    /// Send the message twice.
    Duplicate,
    /// Replace every decimal number in the message with one of `u64::MAX`'s digits count
    /// (same length, all nines): absurd range bounds, sizes and USNs.
    Nines,
}

impl Mutation {
    /// Every kind, for random choice.
    pub const ALL: [Mutation; 9] = [
        Mutation::FlipBits(1),
        Mutation::Truncate,
        Mutation::WrongTag,
        Mutation::HugeLength,
        Mutation::Garbage,
        Mutation::DropControls,
        Mutation::Close,
        Mutation::Duplicate,
        Mutation::Nines,
    ];
}

/// Which message to corrupt, how, and the seed of the random choices inside the mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutationPlan {
    /// The number (from 0) of the server message to corrupt, counted over every connection
    /// the proxy relays, in the order the messages arrive.
    pub at: usize,
    /// What to do to it.
    pub mutation: Mutation,
    /// Seed for the bytes, positions and lengths the mutation picks.
    pub seed: u64,
}

impl MutationPlan {
    /// A random plan from `seed`: a message among the first `messages`, any mutation.
    pub fn random(seed: u64, messages: usize) -> MutationPlan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut mutation = Mutation::ALL[rng.random_range(0..Mutation::ALL.len())];
        if let Mutation::FlipBits(_) = mutation {
            mutation = Mutation::FlipBits(rng.random_range(1..=8));
        }
        MutationPlan {
            at: rng.random_range(0..messages.max(1)),
            mutation,
            seed,
        }
    }
}

/// The running proxy; stops when dropped.
#[derive(Debug)]
pub struct HostileProxy {
    addr: SocketAddr,
    relayed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HostileProxy {
    /// Listen on 127.0.0.1 (a free port) and relay to `upstream`, corrupting per `plan`.
    /// Must be called inside a tokio runtime.
    pub async fn start(upstream: SocketAddr, plan: MutationPlan) -> Result<HostileProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let relayed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&relayed);
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                connections.push(tokio::spawn(relay(client, upstream, plan, counter)));
            }
        });
        Ok(HostileProxy {
            addr,
            relayed,
            task,
        })
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// Server messages relayed so far (the mutated one included).
    pub fn messages(&self) -> usize {
        self.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One server → client message, or the rest of the stream when it stops being LDAP.
enum Frame {
    Message { header: usize, bytes: Vec<u8> },
    NotLdap(Vec<u8>),
}

/// Largest message the proxy frames (the in-process server never sends more).
const MAX_FRAME: usize = 64 << 20;

async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Frame> {
    let tag = stream.read_u8().await.ok()?;
    if tag != 0x30 {
        return Some(Frame::NotLdap(vec![tag]));
    }
    let first = stream.read_u8().await.ok()?;
    let mut bytes = vec![tag, first];
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Some(Frame::NotLdap(bytes));
        }
        let mut len = 0usize;
        for _ in 0..n {
            let b = stream.read_u8().await.ok()?;
            bytes.push(b);
            len = (len << 8) | usize::from(b);
        }
        len
    };
    if len > MAX_FRAME {
        return Some(Frame::NotLdap(bytes));
    }
    let header = bytes.len();
    bytes.resize(header + len, 0);
    stream.read_exact(&mut bytes[header..]).await.ok()?;
    Some(Frame::Message { header, bytes })
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    plan: MutationPlan,
    counter: Arc<AtomicUsize>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    while let Some(frame) = read_frame(&mut server_read).await {
        let (header, bytes) = match frame {
            Frame::Message { header, bytes } => (header, bytes),
            Frame::NotLdap(bytes) => {
                // TLS after StartTLS, or not LDAP at all: relay the rest untouched.
                if client_write.write_all(&bytes).await.is_ok() {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                }
                break;
            }
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if n != plan.at {
            if client_write.write_all(&bytes).await.is_err() {
                break;
            }
            continue;
        }
        let (out, close) = mutate(bytes, header, plan);
        if !out.is_empty() && client_write.write_all(&out).await.is_err() {
            break;
        }
        if close {
            break;
        }
    }
    let _ = client_write.shutdown().await;
    up.abort();
}

/// The bytes to send instead of `bytes`, and whether to close the connection after them.
fn mutate(mut bytes: Vec<u8>, header: usize, plan: MutationPlan) -> (Vec<u8>, bool) {
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x5eed);
    let len = bytes.len();
    match plan.mutation {
        Mutation::FlipBits(count) => {
            for _ in 0..count {
                let at = rng.random_range(0..len);
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.random_range(0..8);
                }
            }
            (bytes, false)
        }
        Mutation::Truncate => {
            bytes.truncate(rng.random_range(1..len.max(2)));
            (bytes, true)
        }
        Mutation::WrongTag => {
            // LDAPMessage ::= SEQUENCE { messageID INTEGER, protocolOp CHOICE, controls [0] }
            let id_len = bytes.get(header + 1).map_or(0, |l| usize::from(*l));
            if let Some(tag) = bytes.get_mut(header + 2 + id_len) {
                *tag = rng.random();
            }
            (bytes, false)
        }
        Mutation::HugeLength => {
            let mut out = vec![0x30, 0x84, 0x7f, 0xff, 0xff, 0xff];
            out.extend_from_slice(bytes.get(header..).unwrap_or_default());
            (out, true)
        }
        Mutation::Garbage => {
            let n = rng.random_range(1..=256);
            ((0..n).map(|_| rng.random()).collect(), false)
        }
        Mutation::DropControls => (drop_controls(&bytes, header), false),
        Mutation::Close => (Vec::new(), true),
        Mutation::Duplicate => {
            let mut out = bytes.clone();
            out.extend_from_slice(&bytes);
            (out, false)
        }
        Mutation::Nines => {
            for b in bytes.iter_mut().skip(header) {
                if b.is_ascii_digit() {
                    *b = b'9';
                }
            }
            (bytes, false)
        }
    }
}

/// The message without its controls (`[0]` after the protocol op), lengths fixed.
fn drop_controls(bytes: &[u8], header: usize) -> Vec<u8> {
    let body = bytes.get(header..).unwrap_or_default();
    let Some(id_end) = tlv_end(body, 0) else {
        return bytes.to_vec();
    };
    let Some(op_end) = tlv_end(body, id_end) else {
        return bytes.to_vec();
    };
    let kept = body.get(..op_end).unwrap_or_default();
    let mut out = vec![0x30];
    out.extend_from_slice(&ber_length(kept.len()));
    out.extend_from_slice(kept);
    out
}

/// Where the TLV starting at `at` ends.
fn tlv_end(body: &[u8], at: usize) -> Option<usize> {
    let first = *body.get(at + 1)?;
    let (len, len_bytes) = if first < 0x80 {
        (usize::from(first), 1)
    } else {
        let n = usize::from(first & 0x7f);
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*body.get(at + 2 + i)?);
        }
        (len, 1 + n)
    };
    let end = at + 1 + len_bytes + len;
    (end <= body.len()).then_some(end)
}

fn ber_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![0x80 | (bytes.len() - skip) as u8];
    out.extend_from_slice(bytes.get(skip..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_dropped_and_lengths_fixed() {
        // messageID 2, searchResDone (0x65, 7 bytes), controls [0] (0xa0, 3 bytes).
        let message = [
            0x30, 0x11, 0x02, 0x01, 0x02, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
            0xa0, 0x03, 0x30, 0x01, 0x00,
        ];
        assert_eq!(
            drop_controls(&message, 2),
            [
                0x30, 0x0c, 0x02, 0x01, 0x02, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00
            ]
        );
        assert_eq!(ber_length(0x7f), [0x7f]);
        assert_eq!(ber_length(0x80), [0x81, 0x80]);
        assert_eq!(ber_length(0x1234), [0x82, 0x12, 0x34]);
    }

    #[test]
    fn plans_are_deterministic() {
        assert_eq!(MutationPlan::random(7, 40), MutationPlan::random(7, 40));
        assert!((0..200).all(|s| MutationPlan::random(s, 40).at < 40));
    }
}
