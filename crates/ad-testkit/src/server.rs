//! The LDAP server: real LDAPv3 on a loopback TCP socket, answering like a Windows DC.
//!
//! Each [`TestServer`] runs its own single-threaded Tokio runtime on a dedicated thread, so it
//! works the same from synchronous code, `#[tokio::test]` (any flavour) or a product binary,
//! and stopping it (explicitly or on drop) never needs an async context. Requests on one
//! connection are answered in order; connections are served concurrently.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ldap3_proto::LdapFilter;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapExtendedRequest, LdapExtendedResponse,
    LdapMsg, LdapOp, LdapResult, LdapResultCode, LdapSearchRequest, LdapSearchResultEntry,
    LdapSearchResultReference, LdapSearchScope,
};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::Framed;
use uuid::Uuid;

use crate::account::{BindAccount, invalid_credentials_message};
use crate::codec::{Inbound, RequestCodec};
use crate::directory::{Directory, ScanRequest, Scope, State};
use crate::dn;
use crate::encoding;
use crate::entry::Entry;
use crate::error::{Result, TestkitError};
use crate::fault::{FailureCode, FaultOptions, PageFaultKind};
use crate::filter::{self, Tri};
use crate::paging::{self, Cookie};
use crate::persona::Prng;
use crate::projection::{COMPUTED_UAC, Projection, Shape};
use crate::stats::{Counters, SearchLog, SearchRecord, ServerStats};

/// OID of the Simple Paged Results control (RFC 2696).
pub const OID_PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
/// OID of AD's Show Deleted control.
pub const OID_SHOW_DELETED: &str = "1.2.840.113556.1.4.417";
/// OID of the ManageDsaIT control (accepted, no effect).
pub const OID_MANAGE_DSA_IT: &str = "2.16.840.1.113730.3.4.2";
/// OID of AD's SD Flags control (accepted, no effect: no security descriptors here).
pub const OID_SD_FLAGS: &str = "1.2.840.113556.1.4.801";
/// OID of the WhoAmI extended operation (answered like AD: `u:DOMAIN\name`).
pub const OID_WHOAMI: &str = "1.3.6.1.4.1.4203.1.11.3";

const NOTICE_OF_DISCONNECTION: &str = "1.3.6.1.4.1.1466.20036";

/// Server behaviour. `ServerOptions::default()` is a Windows-like DC1.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The DC's `dnsHostName`. Default `dc1.<dns domain>` (`dc1.corp.example.test` for the
    /// company); a second server over the same directory with another host name simulates
    /// another DC.
    pub dns_host_name: Option<String>,
    /// The DC's `invocationId`. Default: derived from the host name (stable across restarts).
    pub invocation_id: Option<Uuid>,
    /// Accounts that may simple-bind. Default: [`BindAccount::service_account`].
    pub accounts: Vec<BindAccount>,
    /// Allow searches (other than the rootDSE) without a successful bind. Default false: AD
    /// answers operationsError (`000004DC ... a successful bind must be completed`).
    pub allow_anonymous_search: bool,
    /// Refuse simple binds with strongerAuthRequired (8), like a DC requiring LDAP signing on
    /// a plain connection (this server has no TLS). Anonymous binds still work. Default false.
    pub require_strong_auth: bool,
    /// MaxPageSize: page sizes are capped to it, and an unpaged search matching more entries
    /// returns this many then sizeLimitExceeded (4). Default 1000.
    pub max_page_size: usize,
    /// MaxValRange: larger multi-valued attributes come back as `name;range=0-(N-1)`. Default 1500.
    pub max_val_range: usize,
    /// With MaxValRange, also send the plain attribute with zero values (some tools show AD
    /// that way). Default false: only `member;range=0-1499` is sent.
    pub empty_plain_ranged_attribute: bool,
    /// Send continuation references (Configuration, DomainDnsZones, ForestDnsZones) at the end
    /// of subtree searches based at the naming-context root, like AD. Default true.
    pub continuation_references: bool,
    /// Injected faults. Default none. Can be changed while running: [`TestServer::set_faults`].
    pub faults: FaultOptions,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            dns_host_name: None,
            invocation_id: None,
            accounts: vec![BindAccount::service_account()],
            allow_anonymous_search: false,
            require_strong_auth: false,
            max_page_size: 1_000,
            max_val_range: 1_500,
            empty_plain_ranged_attribute: false,
            continuation_references: true,
            faults: FaultOptions::default(),
        }
    }
}

impl ServerOptions {
    /// Default options for another DC host name (e.g. `dc2.corp.example.test`).
    pub fn for_host(dns_host_name: impl Into<String>) -> Self {
        Self {
            dns_host_name: Some(dns_host_name.into()),
            ..Self::default()
        }
    }
}

/// The DC identity a server presents.
#[derive(Debug)]
struct Identity {
    dns_host_name: String,
    server_dn: String,
    ds_service_name: String,
    dsa_guid: Uuid,
    invocation_id: RwLock<Uuid>,
}

#[derive(Debug)]
struct Shared {
    directory: Directory,
    options: ServerOptions,
    faults: RwLock<FaultOptions>,
    identity: Identity,
    counters: Counters,
    log: SearchLog,
    next_connection: AtomicU64,
    failing_searches: AtomicU64,
    faulted_pages: AtomicU64,
    /// Until when new connections are closed at once (`down_after_drop`).
    down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The counters of a [`TestServer`], readable without borrowing it.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    /// Counters since start or the last [`TestServer::reset_stats`].
    pub fn stats(&self) -> ServerStats {
        self.0.counters.snapshot()
    }
}

/// A running in-process LDAP server on `127.0.0.1:<ephemeral port>`. Stops on drop.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` (loopback only) and starts serving `directory`.
    pub fn start(directory: Directory, options: ServerOptions) -> Result<TestServer> {
        Self::start_at(
            directory,
            options,
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        )
    }

    /// Binds `addr`, which must be a loopback address (`127.0.0.0/8`, `::1`; port 0 for
    /// any), and starts serving `directory`. With the port of a stopped server, this is
    /// that DC coming back; with another loopback address and the same port, a second
    /// address of one DC name (DNS round robin).
    pub fn start_at(
        directory: Directory,
        options: ServerOptions,
        addr: SocketAddr,
    ) -> Result<TestServer> {
        if !addr.ip().is_loopback() {
            return Err(TestkitError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the test server only listens on loopback addresses, not {addr}"),
            )));
        }
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let dns_domain = directory.dns_domain();
        let base = directory.base_dn();
        let host = options
            .dns_host_name
            .clone()
            .unwrap_or_else(|| format!("dc1.{dns_domain}"))
            .to_lowercase();
        let short = host.split('.').next().unwrap_or("DC1").to_ascii_uppercase();
        let server_dn = format!(
            "CN={short},CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,{base}"
        );
        let mut seed = Prng::new(host.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }));
        let dsa_guid = seed.uuid();
        let default_invocation = seed.uuid();
        let identity = Identity {
            ds_service_name: format!("CN=NTDS Settings,{server_dn}"),
            server_dn,
            dns_host_name: host,
            dsa_guid,
            invocation_id: RwLock::new(options.invocation_id.unwrap_or(default_invocation)),
        };
        let shared = Arc::new(Shared {
            directory,
            faults: RwLock::new(options.faults.clone()),
            options,
            identity,
            counters: Counters::default(),
            log: SearchLog::default(),
            next_connection: AtomicU64::new(0),
            failing_searches: AtomicU64::new(0),
            faulted_pages: AtomicU64::new(0),
            down_until: std::sync::Mutex::new(None),
        });
        let (tx, rx) = watch::channel(false);
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("ad-testkit-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, for_thread, rx));
            })?;
        Ok(TestServer {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// `ldap://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ldap://{}:{}", self.addr.ip(), self.addr.port())
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory being served (a shared handle: mutations show up immediately).
    pub fn directory(&self) -> &Directory {
        &self.shared.directory
    }

    /// The `dnsHostName` this server reports.
    pub fn dns_host_name(&self) -> &str {
        &self.shared.identity.dns_host_name
    }

    /// The `dsServiceName` this server reports (its NTDS Settings object).
    pub fn ds_service_name(&self) -> &str {
        &self.shared.identity.ds_service_name
    }

    /// The current `invocationId`.
    pub fn invocation_id(&self) -> Uuid {
        *self
            .shared
            .identity
            .invocation_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the `invocationId` (what a DC restored from backup does).
    pub fn set_invocation_id(&self, id: Uuid) {
        *self
            .shared
            .identity
            .invocation_id
            .write()
            .unwrap_or_else(PoisonError::into_inner) = id;
    }

    /// Simulates a restore from backup: a new random `invocationId`, returned.
    pub fn simulate_restore(&self) -> Uuid {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        self.set_invocation_id(id);
        id
    }

    /// Replaces the fault options (applies to searches that start afterwards).
    pub fn set_faults(&self, faults: FaultOptions) {
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = faults;
        self.shared.failing_searches.store(0, Ordering::Relaxed);
        self.shared.faulted_pages.store(0, Ordering::Relaxed);
    }

    /// Counters since start or the last [`TestServer::reset_stats`].
    pub fn stats(&self) -> ServerStats {
        self.shared.counters.snapshot()
    }

    /// A handle on the counters that can be cloned into other tasks (each
    /// [`StatsHandle::stats`] is a snapshot, as [`TestServer::stats`]).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.shared))
    }

    /// Zeroes the counters and clears the search log.
    pub fn reset_stats(&self) {
        self.shared.counters.reset();
        self.shared.log.clear();
    }

    /// The search requests received (at most the last 10,000).
    pub fn search_log(&self) -> Vec<SearchRecord> {
        self.shared.log.snapshot()
    }

    /// Stops accepting, closes every connection and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "ad-testkit: cannot register the listener");
            return;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
                    Counters::bump(&shared.counters.connections);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared), id));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ad-testkit: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    // Returning drops the runtime on the server thread, which cancels every connection task.
}

/// What a handler wants next.
enum Flow {
    Continue,
    Close,
}

struct Connection {
    id: u64,
    framed: Framed<TcpStream, RequestCodec>,
    bound: Option<BindAccount>,
    entries_sent: u64,
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, id: u64) {
    let down = shared
        .down_until
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_some_and(|until| std::time::Instant::now() < until);
    if down {
        Counters::bump(&shared.counters.closed_while_down);
        drop(stream);
        return;
    }
    let mut conn = Connection {
        id,
        framed: Framed::new(stream, RequestCodec::new()),
        bound: None,
        entries_sent: 0,
    };
    while let Some(next) = conn.framed.next().await {
        let flow = match next {
            Ok(Inbound::Message(msg)) => handle(&mut conn, &shared, *msg).await,
            Ok(Inbound::Undecodable { msgid, op_tag }) => {
                tracing::debug!(
                    connection = id,
                    msgid,
                    op_tag,
                    "ad-testkit: undecodable request"
                );
                refuse_undecodable(&mut conn, msgid, op_tag).await
            }
            Err(e) => {
                tracing::debug!(error = %e, connection = id, "ad-testkit: unreadable stream");
                let _ = conn.framed.send(notice_of_disconnection()).await;
                Ok(Flow::Close)
            }
        };
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) | Err(_) => break,
        }
    }
}

fn notice_of_disconnection() -> LdapMsg {
    LdapMsg::new(
        0,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(LdapResultCode::ProtocolError, "", "undecodable request"),
            name: Some(NOTICE_OF_DISCONNECTION.to_string()),
            value: None,
        }),
    )
}

/// Answers a well-framed request that ldap3_proto cannot decode (typically a filter with a
/// binary, non-UTF-8 assertion value such as `(objectGUID=\a4\f2...)`): the matching response
/// with unwillingToPerform, keeping the connection. Unknown operations end the connection.
async fn refuse_undecodable(
    conn: &mut Connection,
    msgid: i32,
    op_tag: u8,
) -> std::io::Result<Flow> {
    const MESSAGE: &str =
        "ad-testkit: request could not be decoded (binary assertion values are not supported)";
    let res = result(LdapResultCode::UnwillingToPerform, "", MESSAGE);
    let op = match op_tag {
        0x60 => LdapOp::BindResponse(LdapBindResponse {
            res: result(LdapResultCode::ProtocolError, "", MESSAGE),
            saslcreds: None,
        }),
        0x63 => LdapOp::SearchResultDone(res),
        0x66 => LdapOp::ModifyResponse(res),
        0x68 => LdapOp::AddResponse(res),
        0x4a => LdapOp::DelResponse(res),
        0x6c => LdapOp::ModifyDNResponse(res),
        0x6e => LdapOp::CompareResult(res),
        0x77 => LdapOp::ExtendedResponse(LdapExtendedResponse {
            res,
            name: None,
            value: None,
        }),
        // Unbind / abandon need no answer.
        0x42 => return Ok(Flow::Close),
        0x50 => return Ok(Flow::Continue),
        _ => {
            conn.framed.send(notice_of_disconnection()).await?;
            return Ok(Flow::Close);
        }
    };
    conn.framed.send(LdapMsg::new(msgid, op)).await?;
    Ok(Flow::Continue)
}

fn result(code: LdapResultCode, matched: &str, message: &str) -> LdapResult {
    LdapResult {
        code,
        matcheddn: matched.to_string(),
        message: message.to_string(),
        referral: Vec::new(),
    }
}

const UNWILLING: &str = "ad-testkit: operation not supported (read-only directory over LDAP)";

async fn handle(conn: &mut Connection, shared: &Shared, msg: LdapMsg) -> std::io::Result<Flow> {
    let msgid = msg.msgid;
    let reply = |op: LdapOp| LdapMsg::new(msgid, op);
    let unwilling = || result(LdapResultCode::UnwillingToPerform, "", UNWILLING);
    match msg.op {
        LdapOp::BindRequest(req) => {
            let res = bind(conn, shared, &req);
            conn.framed.send(reply(LdapOp::BindResponse(res))).await?;
        }
        LdapOp::UnbindRequest => return Ok(Flow::Close),
        LdapOp::SearchRequest(req) => return search(conn, shared, msgid, req, msg.ctrl).await,
        LdapOp::AbandonRequest(_) => {}
        LdapOp::ExtendedRequest(req) => {
            let res = extended(conn, shared, &req);
            conn.framed
                .send(reply(LdapOp::ExtendedResponse(res)))
                .await?;
        }
        LdapOp::ModifyRequest(_) => {
            conn.framed
                .send(reply(LdapOp::ModifyResponse(unwilling())))
                .await?;
        }
        LdapOp::AddRequest(_) => {
            conn.framed
                .send(reply(LdapOp::AddResponse(unwilling())))
                .await?;
        }
        LdapOp::DelRequest(_) => {
            conn.framed
                .send(reply(LdapOp::DelResponse(unwilling())))
                .await?;
        }
        LdapOp::ModifyDNRequest(_) => {
            conn.framed
                .send(reply(LdapOp::ModifyDNResponse(unwilling())))
                .await?;
        }
        LdapOp::CompareRequest(_) => {
            conn.framed
                .send(reply(LdapOp::CompareResult(unwilling())))
                .await?;
        }
        // Responses and intermediate messages are not requests: ignore them.
        _ => {}
    }
    Ok(Flow::Continue)
}

fn bind(conn: &mut Connection, shared: &Shared, req: &LdapBindRequest) -> LdapBindResponse {
    Counters::bump(&shared.counters.binds);
    conn.bound = None;
    let answer = |code: LdapResultCode, message: &str| {
        if code != LdapResultCode::Success {
            Counters::bump(&shared.counters.bind_failures);
        }
        LdapBindResponse {
            res: result(code, "", message),
            saslcreds: None,
        }
    };
    if req.version != 3 && req.version != 2 {
        return answer(LdapResultCode::ProtocolError, "unsupported LDAP version");
    }
    let password = match &req.cred {
        LdapBindCred::Simple(p) => p,
        _ => {
            return answer(
                LdapResultCode::AuthMethodNotSupported,
                "ad-testkit: only simple binds are supported",
            );
        }
    };
    // Anonymous, and "unauthenticated" (name without password): AD answers success and the
    // connection stays anonymous.
    if password.is_empty() {
        return answer(LdapResultCode::Success, "");
    }
    if shared.options.require_strong_auth {
        return answer(
            LdapResultCode::StrongerAuthRequired,
            "00002028: LdapErr: DSID-0C090259, comment: The server requires binds to turn on integrity checking if SSL\\TLS are not already active on the connection, data 0, v4563",
        );
    }
    let netbios = shared.directory.netbios_domain();
    let account = shared
        .options
        .accounts
        .iter()
        .find(|a| a.is_named(&req.dn, &netbios));
    match account {
        Some(a) if a.password == *password => match a.failure {
            Some(f) => answer(
                LdapResultCode::InvalidCredentials,
                &invalid_credentials_message(f.data_code()),
            ),
            None => {
                conn.bound = Some(a.clone());
                answer(LdapResultCode::Success, "")
            }
        },
        _ => answer(
            LdapResultCode::InvalidCredentials,
            &invalid_credentials_message("52e"),
        ),
    }
}

fn extended(conn: &Connection, shared: &Shared, req: &LdapExtendedRequest) -> LdapExtendedResponse {
    if req.name == OID_WHOAMI {
        let authz = match &conn.bound {
            None => String::new(),
            Some(a) => match &a.sam_account_name {
                Some(sam) => format!("u:{}\\{sam}", shared.directory.netbios_domain()),
                None => format!("dn:{}", a.dn),
            },
        };
        return LdapExtendedResponse {
            res: result(LdapResultCode::Success, "", ""),
            name: None,
            value: Some(authz.into_bytes()),
        };
    }
    LdapExtendedResponse {
        res: result(LdapResultCode::UnwillingToPerform, "", UNWILLING),
        name: None,
        value: None,
    }
}

fn scope_of(scope: &LdapSearchScope) -> (Scope, &'static str) {
    match scope {
        LdapSearchScope::Base => (Scope::Base, "base"),
        LdapSearchScope::OneLevel => (Scope::OneLevel, "one"),
        LdapSearchScope::Subtree => (Scope::Subtree, "sub"),
        LdapSearchScope::Children => (Scope::Children, "children"),
    }
}

fn failure_code(code: FailureCode) -> (LdapResultCode, &'static str) {
    match code {
        FailureCode::Busy => (LdapResultCode::Busy, "ad-testkit: injected busy"),
        FailureCode::Unavailable => (
            LdapResultCode::Unavailable,
            "ad-testkit: injected unavailable",
        ),
        FailureCode::UnwillingToPerform => (
            LdapResultCode::UnwillingToPerform,
            "ad-testkit: injected unwillingToPerform",
        ),
        FailureCode::TimeLimitExceeded => (
            LdapResultCode::TimeLimitExceeded,
            "ad-testkit: injected timeLimitExceeded",
        ),
        FailureCode::AdminLimitExceeded => (
            LdapResultCode::AdminLimitExceeded,
            "ad-testkit: injected adminLimitExceeded",
        ),
        FailureCode::OperationsError => (
            LdapResultCode::OperationsError,
            "ad-testkit: injected operationsError",
        ),
        FailureCode::SizeLimitExceeded => (
            LdapResultCode::SizeLimitExceeded,
            "ad-testkit: injected sizeLimitExceeded",
        ),
    }
}

/// What the search controls asked for.
struct Controls {
    paged: Option<(i64, Vec<u8>)>,
    show_deleted: bool,
    unsupported_critical: Option<String>,
}

fn read_controls(ctrls: Vec<LdapControl>) -> Controls {
    let mut out = Controls {
        paged: None,
        show_deleted: false,
        unsupported_critical: None,
    };
    for c in ctrls {
        match c {
            LdapControl::SimplePagedResults { size, cookie } => out.paged = Some((size, cookie)),
            LdapControl::ShowDeleted { .. } => out.show_deleted = true,
            LdapControl::Unknown {
                oid,
                criticality: true,
                ..
            } => out.unsupported_critical = Some(oid),
            LdapControl::SyncRequest {
                criticality: true, ..
            } => out.unsupported_critical = Some("1.3.6.1.4.1.4203.1.9.1.1".into()),
            // DirSync is always critical in practice; not implemented here.
            LdapControl::AdDirsync { .. } => {
                out.unsupported_critical = Some("1.2.840.113556.1.4.841".into());
            }
            LdapControl::ExtendedDn {
                criticality: true, ..
            } => out.unsupported_critical = Some("1.2.840.113556.1.4.529".into()),
            LdapControl::PasswordPolicyRequest { criticality: true } => {
                out.unsupported_critical = Some("1.3.6.1.4.1.42.2.27.8.5.1".into());
            }
            _ => {}
        }
    }
    out
}

/// The rootDSE as this DC presents it.
fn root_dse(shared: &Shared, state: &State) -> Entry {
    let base = &state.base_dn;
    let id = &shared.identity;
    let config = format!("CN=Configuration,{base}");
    let short = id.dns_host_name.split('.').next().unwrap_or("dc1");
    Entry::new("")
        .with("currentTime", [encoding::generalized_time(state.now())])
        .with(
            "subschemaSubentry",
            [format!("CN=Aggregate,CN=Schema,{config}")],
        )
        .with("dsServiceName", [id.ds_service_name.clone()])
        .with(
            "namingContexts",
            [
                base.clone(),
                config.clone(),
                format!("CN=Schema,{config}"),
                format!("DC=DomainDnsZones,{base}"),
                format!("DC=ForestDnsZones,{base}"),
            ],
        )
        .with("defaultNamingContext", [base.clone()])
        .with("rootDomainNamingContext", [base.clone()])
        .with("configurationNamingContext", [config.clone()])
        .with("schemaNamingContext", [format!("CN=Schema,{config}")])
        .with("serverName", [id.server_dn.clone()])
        .with(
            "supportedControl",
            [
                OID_PAGED_RESULTS,
                OID_SHOW_DELETED,
                OID_MANAGE_DSA_IT,
                OID_SD_FLAGS,
            ],
        )
        .with("supportedLDAPVersion", ["3", "2"])
        .with("supportedLDAPPolicies", ["MaxPageSize", "MaxValRange"])
        .with("supportedExtension", [OID_WHOAMI])
        .with(
            "supportedSASLMechanisms",
            ["GSSAPI", "GSS-SPNEGO", "EXTERNAL", "DIGEST-MD5"],
        )
        .with("highestCommittedUSN", [state.usn().to_string()])
        .with("dnsHostName", [id.dns_host_name.clone()])
        .with(
            "ldapServiceName",
            [format!(
                "{}:{}$@{}",
                state.dns_domain,
                short,
                state.dns_domain.to_uppercase()
            )],
        )
        .with("isSynchronized", ["TRUE"])
        .with("isGlobalCatalogReady", ["TRUE"])
        .with("domainFunctionality", ["7"])
        .with("forestFunctionality", ["7"])
        .with("domainControllerFunctionality", ["7"])
}

/// The configuration-NC objects of this DC (server and NTDS Settings), for base searches.
fn config_object(shared: &Shared, state: &State, norm: &str) -> Option<Entry> {
    let id = &shared.identity;
    let base = &state.base_dn;
    if norm == dn::normalize(&id.ds_service_name) {
        let invocation = *id
            .invocation_id
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        return Some(
            Entry::new(id.ds_service_name.clone())
                .with("objectClass", ["top", "applicationSettings", "nTDSDSA"])
                .with("cn", ["NTDS Settings"])
                .with("name", ["NTDS Settings"])
                .with("objectGUID", [encoding::guid_bytes(&id.dsa_guid).to_vec()])
                .with("invocationId", [encoding::guid_bytes(&invocation).to_vec()])
                .with("options", ["1"])
                .with(
                    "objectCategory",
                    [format!("CN=NTDS-DSA,CN=Schema,CN=Configuration,{base}")],
                ),
        );
    }
    if norm == dn::normalize(&id.server_dn) {
        let short = id
            .dns_host_name
            .split('.')
            .next()
            .unwrap_or("dc1")
            .to_ascii_uppercase();
        return Some(
            Entry::new(id.server_dn.clone())
                .with("objectClass", ["top", "server"])
                .with("cn", [short.clone()])
                .with("name", [short.clone()])
                .with("dNSHostName", [id.dns_host_name.clone()])
                .with(
                    "serverReference",
                    [format!("CN={short},OU=Domain Controllers,{base}")],
                )
                .with(
                    "objectCategory",
                    [format!("CN=Server,CN=Schema,CN=Configuration,{base}")],
                ),
        );
    }
    None
}

/// The closest existing ancestor of a DN, for noSuchObject's matchedDN.
fn best_match(state: &State, base: &str) -> String {
    let rdns = dn::parse(base).unwrap_or_default();
    for skip in 1..rdns.len() {
        let candidate = dn::render(rdns.get(skip..).unwrap_or_default());
        if state.locate(&candidate).is_some() {
            return candidate;
        }
    }
    String::new()
}

fn is_object_class_presence(filter: &LdapFilter) -> bool {
    matches!(filter, LdapFilter::Present(a) if a.eq_ignore_ascii_case("objectClass"))
}

/// Prepared answer of one search request (computed under the directory lock).
struct Answer {
    entries: Vec<LdapSearchResultEntry>,
    references: Vec<String>,
    done: LdapResult,
    cookie: Option<Vec<u8>>,
}

async fn search(
    conn: &mut Connection,
    shared: &Shared,
    msgid: i32,
    req: LdapSearchRequest,
    ctrls: Vec<LdapControl>,
) -> std::io::Result<Flow> {
    Counters::bump(&shared.counters.searches);
    let controls = read_controls(ctrls);
    let (scope, scope_name) = scope_of(&req.scope);
    let rendered = filter::render_filter(&req.filter);
    shared.log.push(SearchRecord {
        connection: conn.id,
        base: req.base.clone(),
        scope: scope_name,
        filter: rendered.clone(),
        attributes: req.attrs.clone(),
        page_size: controls.paged.as_ref().map(|(s, _)| *s),
        has_cookie: controls.paged.as_ref().is_some_and(|(_, c)| !c.is_empty()),
        show_deleted: controls.show_deleted,
        bound_as: conn.bound.as_ref().map(|a| a.dn.clone()),
    });
    let faults = shared
        .faults
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let started = std::time::Instant::now();
    let mut answer = prepare(conn, shared, &req, scope, &controls, &faults);
    tracing::debug!(
        connection = conn.id,
        base = %req.base,
        filter = %rendered,
        entries = answer.entries.len(),
        millis = started.elapsed().as_millis(),
        "ad-testkit: search answered"
    );
    let mut paged = controls.paged.is_some();
    let continues = controls.paged.as_ref().is_some_and(|(_, c)| !c.is_empty());
    if let Some(fault) = &faults.page_fault
        && continues
        && answer.done.code == LdapResultCode::Success
        && fault.filter_contains.as_ref().is_none_or(|wanted| {
            rendered
                .to_lowercase()
                .contains(wanted.to_lowercase().as_str())
        })
        && shared.faulted_pages.fetch_add(1, Ordering::Relaxed) < fault.first_pages
    {
        // No paged-results response control either way: the client cannot continue.
        paged = false;
        answer.cookie = None;
        if let PageFaultKind::EndWith { code, entries } = fault.kind {
            answer.entries.truncate(entries);
            answer.references.clear();
            let (code, message) = failure_code(code);
            answer.done = result(code, "", message);
        }
    }
    if !faults.page_delay.is_zero() {
        tokio::time::sleep(faults.page_delay).await;
    }
    let drop_at = faults
        .drop_after
        .filter(|d| conn.id <= d.first_connections)
        .map(|d| d.entries);
    for entry in answer.entries {
        if !faults.entry_delay.is_zero() {
            conn.framed.flush().await?;
            tokio::time::sleep(faults.entry_delay).await;
        }
        conn.framed
            .feed(LdapMsg::new(msgid, LdapOp::SearchResultEntry(entry)))
            .await?;
        conn.entries_sent += 1;
        Counters::bump(&shared.counters.entries_sent);
        if drop_at.is_some_and(|n| conn.entries_sent >= n) {
            conn.framed.flush().await?;
            Counters::bump(&shared.counters.dropped_connections);
            if !faults.down_after_drop.is_zero() {
                *shared
                    .down_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(std::time::Instant::now() + faults.down_after_drop);
            }
            return Ok(Flow::Close);
        }
    }
    for uri in answer.references {
        conn.framed
            .feed(LdapMsg::new(
                msgid,
                LdapOp::SearchResultReference(LdapSearchResultReference { uris: vec![uri] }),
            ))
            .await?;
        Counters::bump(&shared.counters.references_sent);
    }
    if answer.done.code == LdapResultCode::SizeLimitExceeded {
        Counters::bump(&shared.counters.size_limit_exceeded);
    }
    let ctrl = if paged && answer.done.code == LdapResultCode::Success {
        vec![LdapControl::SimplePagedResults {
            size: 0,
            cookie: answer.cookie.unwrap_or_default(),
        }]
    } else {
        Vec::new()
    };
    conn.framed
        .feed(LdapMsg::new_with_ctrls(
            msgid,
            LdapOp::SearchResultDone(answer.done),
            ctrl,
        ))
        .await?;
    conn.framed.flush().await?;
    Ok(Flow::Continue)
}

fn prepare(
    conn: &Connection,
    shared: &Shared,
    req: &LdapSearchRequest,
    scope: Scope,
    controls: &Controls,
    faults: &FaultOptions,
) -> Answer {
    let opts = &shared.options;
    let fail = |code: LdapResultCode, matched: &str, message: &str| Answer {
        entries: Vec::new(),
        references: Vec::new(),
        done: result(code, matched, message),
        cookie: None,
    };
    if let Some(oid) = &controls.unsupported_critical {
        return fail(
            LdapResultCode::UnavailableCriticalExtension,
            "",
            &format!("ad-testkit: critical control {oid} is not supported"),
        );
    }
    let projection = Projection::parse(&req.attrs);
    let shape = Shape {
        max_val_range: opts.max_val_range,
        empty_plain_ranged: opts.empty_plain_ranged_attribute,
        malformed: &faults.malformed,
        absurd_range: faults.absurd_range,
    };
    let state = shared.directory.read();
    let is_root_dse = req.base.trim().is_empty();
    if is_root_dse {
        let mut entries = Vec::new();
        if scope == Scope::Base {
            let dse = root_dse(shared, &state);
            if is_object_class_presence(&req.filter)
                || filter::evaluate(&req.filter, &dse, &*state) == Tri::True
            {
                entries.push(LdapSearchResultEntry {
                    dn: String::new(),
                    attributes: projection.apply(&dse, None, &shape),
                });
            }
        }
        return Answer {
            entries,
            references: Vec::new(),
            done: result(LdapResultCode::Success, "", ""),
            cookie: None,
        };
    }
    if conn.bound.is_none() && !opts.allow_anonymous_search {
        return fail(
            LdapResultCode::OperationsError,
            "",
            "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this operation a successful bind must be completed on the connection., data 0, v4563",
        );
    }
    if let Some(failure) = faults.search_failure {
        let n = shared.failing_searches.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= failure.first_searches {
            let (code, message) = failure_code(failure.code);
            return fail(code, "", message);
        }
    }
    if let Some(code) = faults.range_failure
        && projection.requests_range()
    {
        let (code, message) = failure_code(code);
        return fail(code, "", message);
    }
    let base_norm = dn::normalize(&req.base);
    if scope == Scope::Base
        && let Some(obj) = config_object(shared, &state, &base_norm)
    {
        let mut entries = Vec::new();
        if filter::evaluate(&req.filter, &obj, &*state) == Tri::True {
            entries.push(LdapSearchResultEntry {
                dn: obj.dn().to_string(),
                attributes: projection.apply(&obj, None, &shape),
            });
        }
        return Answer {
            entries,
            references: Vec::new(),
            done: result(LdapResultCode::Success, "", ""),
            cookie: None,
        };
    }
    let fingerprint = paging::fingerprint(req, controls.show_deleted);
    let max_page = opts.max_page_size.max(1);
    let (start, limit) = match &controls.paged {
        Some((size, cookie)) => {
            let start = if cookie.is_empty() {
                0
            } else {
                match Cookie::decode(cookie) {
                    Some(c) if c.connection == conn.id && c.fingerprint == fingerprint => {
                        c.position
                    }
                    _ => {
                        return fail(
                            LdapResultCode::UnwillingToPerform,
                            "",
                            "ad-testkit: paged results cookie is not valid for this connection and search",
                        );
                    }
                }
            };
            if *size <= 0 {
                // RFC 2696: size 0 abandons the paged search.
                return Answer {
                    entries: Vec::new(),
                    references: Vec::new(),
                    done: result(LdapResultCode::Success, "", ""),
                    cookie: None,
                };
            }
            let size = usize::try_from(*size).unwrap_or(max_page);
            (start, size.min(max_page))
        }
        None => {
            let client_limit = usize::try_from(req.sizelimit).unwrap_or(0);
            let limit = if client_limit > 0 {
                client_limit.min(max_page)
            } else {
                max_page
            };
            (0, limit)
        }
    };
    let scanned = state.scan(&ScanRequest {
        base: &req.base,
        scope,
        filter: &req.filter,
        show_deleted: controls.show_deleted,
        start,
        limit,
    });
    let scanned = match scanned {
        Ok(s) => s,
        Err(TestkitError::NoSuchObject(_)) => {
            let matched = best_match(&state, &req.base);
            return fail(
                LdapResultCode::NoSuchObject,
                &matched,
                &format!(
                    "0000208D: NameErr: DSID-0310028C, problem 2001 (NO_OBJECT), data 0, best match of:\n\t'{matched}'\n"
                ),
            );
        }
        Err(e) => {
            return fail(LdapResultCode::OperationsError, "", &e.to_string());
        }
    };
    let wants_computed = projection.names(COMPUTED_UAC);
    let entries = scanned
        .entries
        .iter()
        .map(|e| {
            let computed = if wants_computed {
                state.computed_uac(e)
            } else {
                None
            };
            LdapSearchResultEntry {
                dn: e.dn().to_string(),
                attributes: projection.apply(e, computed, &shape),
            }
        })
        .collect();
    let complete = scanned.next.is_none();
    let references = if complete
        && opts.continuation_references
        && scope == Scope::Subtree
        && base_norm == state.base_norm
    {
        let dns = &state.dns_domain;
        let base = &state.base_dn;
        vec![
            format!("ldap://ForestDnsZones.{dns}/DC=ForestDnsZones,{base}"),
            format!("ldap://DomainDnsZones.{dns}/DC=DomainDnsZones,{base}"),
            format!("ldap://{dns}/CN=Configuration,{base}"),
        ]
    } else {
        Vec::new()
    };
    let paged = controls.paged.is_some();
    let done = if !paged && !complete {
        result(LdapResultCode::SizeLimitExceeded, "", "")
    } else {
        result(LdapResultCode::Success, "", "")
    };
    let cookie = scanned.next.map(|position| {
        Cookie {
            connection: conn.id,
            position,
            fingerprint,
        }
        .encode()
    });
    Answer {
        entries,
        references,
        done,
        cookie,
    }
}
