//! Kerberos over plain `ldap://` (port 389) with SASL **sealing**: the GSSAPI bind is done
//! here on the raw TCP connection, and every byte after it crosses the network wrapped
//! (encrypted and integrity-protected) with the Kerberos session key (RFC 4752, RFC 4422 §3.7).
//!
//! Why not ldap3's own GSSAPI security layer: ldap3 0.12.1 unwraps one SASL buffer at a time
//! and keeps only the first LDAP message of a buffer when more bytes are already queued, and
//! cannot join a message split across two buffers (`LdapCodec::decode`, protocol.rs). A DC
//! packs several search replies into one buffer, so a sealed search hangs. The layer is
//! therefore written here, below ldap3: ldap3 talks plain LDAP over one end of a local
//! socket pair, and a pump wraps what it writes into SASL buffers for the DC and unwraps the
//! DC's buffers back into the plain byte stream — the security layer is a byte stream, so
//! buffer boundaries need not match LDAP messages. No other crate offers this layer.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cross_krb5::{ClientCtx, K5Ctx, Step};
use ldap3::asn1::{
    ASNTag, Integer, OctetString, PL, Sequence, StructureTag, Tag, TagClass, parse_tag, write,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::SourceError;
use crate::kerberos::{Context, Credentials, Stage, explain, explain_bind_result};

/// saslBindInProgress.
const BIND_IN_PROGRESS: u32 = 14;
/// RFC 4752 security layers.
const LAYER_PRIVACY: u8 = 4;
/// The largest wrapped buffer we accept from the DC (what we announce: OpenLDAP's value).
const RECV_MAX: u32 = 0x009F_FFB8;
/// Plain bytes per buffer we send at most (less when the DC announces a smaller limit).
const SEND_CHUNK: usize = 32 * 1024;

/// A sealed session: the local end ldap3 talks plain LDAP on.
pub(crate) struct Sealed {
    /// Hand this to ldap3 (`StdStream::Unix`, URL `ldapi://`).
    pub(crate) local: std::os::unix::net::UnixStream,
}

/// Bind with Kerberos on `tcp` negotiating SASL privacy, then start the pump. `host` is the
/// DC's name (the SPN is `ldap/<host>@REALM`).
pub(crate) async fn open(
    mut tcp: TcpStream,
    host: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Sealed, SourceError> {
    let spn = creds.spn(host);
    let cx = Context {
        principal: &creds.principal,
        source: &creds.source,
        host,
        spn: &spn,
    };
    let gss = |status: String| SourceError::Kerberos(explain(Stage::ServiceTicket, &status, &cx));
    let network = |what: &str, e: std::io::Error| network(host, what, e);
    let deadline = tokio::time::Instant::now() + timeout;

    // 1. The first GSSAPI token (asks the KDC for the service ticket: blocking).
    let cred = cross_krb5::Cred::from(creds.cred.clone());
    let target = spn.clone();
    let (pending, token) = tokio::task::spawn_blocking(move || {
        ClientCtx::new_with_cred(cred, &target, None)
            .map(|(pending, token)| (pending, token.to_vec()))
            .map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| SourceError::Internal(format!("the Kerberos task ended abnormally: {e}")))?
    .map_err(gss)?;

    let mut exchange = Exchange {
        tcp: &mut tcp,
        buf: Vec::new(),
        next_id: 1,
        deadline,
        host,
        timeout,
    };

    // 2. Token → server token; the context completes with it.
    let answer = exchange.round(Some(token)).await?;
    let server_token = in_progress(&answer, creds, host)?;
    let mut ctx = match pending
        .step(&server_token)
        .map_err(|e| gss(format!("{e:#}")))?
    {
        Step::Finished((ctx, None)) => ctx,
        _ => {
            return Err(gss(
                "the GSSAPI exchange needs more steps than Kerberos should".to_owned(),
            ));
        }
    };
    // 3. Empty token → the server's wrapped security-layer offer.
    let answer = exchange.round(None).await?;
    let offer = in_progress(&answer, creds, host)?;
    let offer = ctx.unwrap(&offer).map_err(|e| gss(format!("{e:#}")))?;
    let (layers, server_max) = match offer.get(..4) {
        Some(&[layers, a, b, c]) => (layers, u32::from_be_bytes([0, a, b, c]) as usize),
        _ => {
            return Err(gss(
                "the DC's security-layer offer is not 4 bytes (RFC 4752)".to_owned(),
            ));
        }
    };
    // What we send in one buffer, wrapped: within the DC's limit (0: none), with room for
    // the wrapping (a few dozen bytes).
    let chunk = match server_max {
        0 => SEND_CHUNK,
        max => SEND_CHUNK.min(max.saturating_sub(1024).max(512)),
    };
    if layers & LAYER_PRIVACY == 0 {
        return Err(gss(format!(
            "the DC does not offer SASL confidentiality (sealing) on plain LDAP (layers {layers:#x}); use ldaps:// or StartTLS"
        )));
    }
    // 4. Choose privacy and our receive limit; the bind completes.
    let choice = (RECV_MAX | (u32::from(LAYER_PRIVACY) << 24)).to_be_bytes();
    let choice = ctx.wrap(true, &choice).map_err(|e| gss(format!("{e:#}")))?;
    let answer = exchange.round(Some(choice.to_vec())).await?;
    if answer.rc != 0 {
        return Err(SourceError::Kerberos(explain_bind_result(
            answer.rc,
            &answer.text,
            &creds.principal,
            host,
        )));
    }
    let leftover = std::mem::take(&mut exchange.buf);

    // 5. The pump.
    let (local, remote) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| network("setting up the sealed session", e))?;
    remote
        .set_nonblocking(true)
        .map_err(|e| network("setting up the sealed session", e))?;
    let remote = tokio::net::UnixStream::from_std(remote)
        .map_err(|e| network("setting up the sealed session", e))?;
    let ctx = Arc::new(Mutex::new(ctx));
    let (tcp_read, tcp_write) = tcp.into_split();
    let (local_read, local_write) = remote.into_split();
    let name = host.to_owned();
    tokio::spawn(outbound(
        local_read,
        tcp_write,
        Arc::clone(&ctx),
        name.clone(),
        chunk,
    ));
    tokio::spawn(inbound(tcp_read, leftover, local_write, ctx, name));
    Ok(Sealed { local })
}

/// What a bind response said.
struct BindAnswer {
    rc: u32,
    text: String,
    server_creds: Option<Vec<u8>>,
}

fn in_progress(
    answer: &BindAnswer,
    creds: &Credentials,
    host: &str,
) -> Result<Vec<u8>, SourceError> {
    if answer.rc != BIND_IN_PROGRESS {
        return Err(SourceError::Kerberos(explain_bind_result(
            answer.rc,
            &answer.text,
            &creds.principal,
            host,
        )));
    }
    answer
        .server_creds
        .clone()
        .ok_or_else(|| SourceError::Malformed {
            host: host.to_owned(),
            during: "the Kerberos bind",
        })
}

fn network(host: &str, what: &str, e: std::io::Error) -> SourceError {
    SourceError::Network {
        host: host.to_owned(),
        operation: what.to_owned(),
        detail: e.to_string(),
    }
}

/// The bind exchange on the raw connection (before any security layer).
struct Exchange<'a> {
    tcp: &'a mut TcpStream,
    buf: Vec<u8>,
    next_id: i32,
    deadline: tokio::time::Instant,
    host: &'a str,
    timeout: Duration,
}

impl Exchange<'_> {
    /// One bind request and its response, within the bind's time.
    async fn round(&mut self, creds: Option<Vec<u8>>) -> Result<BindAnswer, SourceError> {
        let id = self.next_id;
        self.next_id += 1;
        let (deadline, host, timeout) = (self.deadline, self.host, self.timeout);
        match tokio::time::timeout_at(deadline, self.bind(id, creds.as_deref())).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(network(host, "the Kerberos bind", e)),
            Err(_) => Err(SourceError::OperationTimeout {
                host: host.to_owned(),
                operation: "the Kerberos bind".to_owned(),
                secs: timeout.as_secs(),
            }),
        }
    }

    async fn bind(&mut self, id: i32, creds: Option<&[u8]>) -> std::io::Result<BindAnswer> {
        let mut out = bytes::BytesMut::new();
        write::encode_into(&mut out, sasl_bind(id, creds))?;
        self.tcp.write_all(&out).await?;
        loop {
            if let Some((message, used)) = parse_message(&self.buf)? {
                self.buf.drain(..used);
                return bind_answer(message);
            }
            let mut chunk = [0u8; 4096];
            let n = self.tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// One complete BER element at the start of `buf`, and its length; `None` when more bytes
/// are needed.
fn parse_message(buf: &[u8]) -> std::io::Result<Option<(StructureTag, usize)>> {
    if buf.is_empty() {
        return Ok(None);
    }
    match parse_tag(buf) {
        Ok((rest, tag)) => Ok(Some((tag, buf.len() - rest.len()))),
        Err(e) if e.is_incomplete() => Ok(None),
        Err(_) => Err(invalid("the DC's bind response is not valid BER")),
    }
}

fn bind_answer(message: StructureTag) -> std::io::Result<BindAnswer> {
    let PL::C(parts) = message.payload else {
        return Err(invalid("the bind response is not a SEQUENCE"));
    };
    let response = parts
        .into_iter()
        .find(|t| t.class == TagClass::Application)
        .ok_or_else(|| invalid("the answer to the bind is not a bind response"))?;
    if response.id != 1 {
        return Err(invalid("the answer to the bind is not a bind response"));
    }
    let PL::C(fields) = response.payload else {
        return Err(invalid("the bind response is empty"));
    };
    let primitive = |tag: &StructureTag| match &tag.payload {
        PL::P(bytes) => Some(bytes.clone()),
        PL::C(_) => None,
    };
    let rc = fields
        .first()
        .and_then(primitive)
        .map(|b| b.iter().fold(0u32, |n, byte| (n << 8) | u32::from(*byte)))
        .ok_or_else(|| invalid("the bind response has no result code"))?;
    let text = fields
        .get(2)
        .and_then(primitive)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let server_creds = fields
        .iter()
        .find(|t| t.class == TagClass::Context && t.id == 7)
        .and_then(primitive);
    Ok(BindAnswer {
        rc,
        text,
        server_creds,
    })
}

/// `LDAPMessage { id, BindRequest { 3, "", sasl { "GSSAPI", creds } } }`.
fn sasl_bind(id: i32, creds: Option<&[u8]>) -> StructureTag {
    let mut sasl = vec![Tag::OctetString(OctetString {
        inner: b"GSSAPI".to_vec(),
        ..Default::default()
    })];
    if let Some(creds) = creds {
        sasl.push(Tag::OctetString(OctetString {
            inner: creds.to_vec(),
            ..Default::default()
        }));
    }
    Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: i64::from(id),
                ..Default::default()
            }),
            Tag::Sequence(Sequence {
                id: 0,
                class: TagClass::Application,
                inner: vec![
                    Tag::Integer(Integer {
                        inner: 3,
                        ..Default::default()
                    }),
                    Tag::OctetString(OctetString::default()),
                    Tag::Sequence(Sequence {
                        id: 3,
                        class: TagClass::Context,
                        inner: sasl,
                    }),
                ],
            }),
        ],
        ..Default::default()
    })
    .into_structure()
}

type Ctx = Arc<Mutex<ClientCtx>>;

/// ldap3 → DC: plain bytes, wrapped in SASL buffers (4-byte length + token).
async fn outbound(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    ctx: Ctx,
    host: String,
    chunk_size: usize,
) {
    let mut chunk = vec![0u8; chunk_size];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let wrapped = {
            let mut ctx = ctx.lock().unwrap_or_else(PoisonError::into_inner);
            ctx.wrap(true, chunk.get(..n).unwrap_or_default())
                .map(|token| token.to_vec())
        };
        let token = match wrapped {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(%host, "sealing a request for {host} failed ({e:#}); the connection is closed");
                break;
            }
        };
        let Ok(len) = u32::try_from(token.len()) else {
            break;
        };
        if to.write_all(&len.to_be_bytes()).await.is_err() || to.write_all(&token).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// DC → ldap3: SASL buffers unwrapped into the plain byte stream.
async fn inbound(
    mut from: tokio::net::tcp::OwnedReadHalf,
    leftover: Vec<u8>,
    mut to: tokio::net::unix::OwnedWriteHalf,
    ctx: Ctx,
    host: String,
) {
    let mut pending = leftover;
    loop {
        // A whole buffer: 4-byte length, then that many bytes.
        let need = pending
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(|len: [u8; 4]| u32::from_be_bytes(len));
        if let Some(len) = need {
            if len > RECV_MAX {
                tracing::warn!(%host, len, "{host} sent a sealed buffer larger than announced; the connection is closed");
                break;
            }
            let total = 4 + len as usize;
            if pending.len() >= total {
                let unwrapped = {
                    let mut ctx = ctx.lock().unwrap_or_else(PoisonError::into_inner);
                    ctx.unwrap(pending.get(4..total).unwrap_or_default())
                        .map(|plain| plain.to_vec())
                };
                pending.drain(..total);
                match unwrapped {
                    Ok(plain) => {
                        if to.write_all(&plain).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(%host, "a sealed reply from {host} did not verify ({e:#}); the connection is closed");
                        break;
                    }
                }
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_request_and_response_round_trip_as_ber() {
        let mut out = bytes::BytesMut::new();
        write::encode_into(&mut out, sasl_bind(7, Some(b"tok"))).unwrap();
        // SEQUENCE { INTEGER 7, [APPLICATION 0] { INTEGER 3, OCTET STRING "", [3] { "GSSAPI", "tok" } } }
        assert_eq!(
            out.as_ref(),
            b"\x30\x19\x02\x01\x07\x60\x14\x02\x01\x03\x04\x00\xa3\x0d\x04\x06GSSAPI\x04\x03tok"
        );
        // A bind response: saslBindInProgress with server credentials, split in two reads.
        let response = b"\x30\x12\x02\x01\x07\x61\x0d\x0a\x01\x0e\x04\x00\x04\x00\x87\x04srvc";
        assert!(parse_message(&response[..9]).unwrap().is_none());
        let (message, used) = parse_message(response).unwrap().unwrap();
        assert_eq!(used, response.len());
        let answer = bind_answer(message).unwrap();
        assert_eq!(answer.rc, 14);
        assert_eq!(answer.server_creds.as_deref(), Some(&b"srvc"[..]));
    }
}
