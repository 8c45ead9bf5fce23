//! A DNS server on loopback for DC discovery tests: answers SRV and A queries from a fixed
//! table, over UDP, like a domain's DNS server publishing `_ldap._tcp.dc._msdcs.<domain>`.
//!
//! The wire format is hickory-proto's; this module only decides the answers.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::error::{Result, TestkitError};

/// One SRV record: `priority weight port target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvEntry {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share among records of the same priority.
    pub weight: u16,
    /// The port.
    pub port: u16,
    /// The DC's host name.
    pub target: String,
}

/// The records a [`DnsServer`] answers with.
#[derive(Debug, Clone, Default)]
pub struct DnsZone {
    /// Owner name (e.g. `_ldap._tcp.dc._msdcs.corp.example.test`) → SRV records.
    pub srv: Vec<(String, Vec<SrvEntry>)>,
    /// Host name → IPv4 addresses.
    pub a: Vec<(String, Vec<Ipv4Addr>)>,
}

/// A UDP DNS server on `127.0.0.1:<ephemeral port>`. Stops on drop.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Binds `127.0.0.1:0` and answers from `zone`: the SRV and A records asked for,
    /// NXDOMAIN for any other name.
    pub fn start(zone: DnsZone) -> Result<DnsServer> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&queries));
        let thread = std::thread::Builder::new()
            .name("ad-testkit-dns".into())
            .spawn(move || serve(&socket, &zone, &flag, &count))
            .map_err(TestkitError::Io)?;
        Ok(DnsServer {
            addr,
            stop,
            queries,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, zone: &DnsZone, stop: &AtomicBool, queries: &AtomicU64) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(request) = buf.get(..len).and_then(|b| Message::from_vec(b).ok()) else {
            continue;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        if let Ok(bytes) = answer(&request, zone).to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
}

fn same_name(a: &str, b: &Name) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.to_ascii().trim_end_matches('.'))
}

fn answer(request: &Message, zone: &DnsZone) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    let mut known = false;
    for query in &request.queries {
        response.add_query(query.clone());
        let name = query.name();
        if let Some((_, records)) = zone.srv.iter().find(|(owner, _)| same_name(owner, name)) {
            known = true;
            if query.query_type() == RecordType::SRV {
                for r in records {
                    let Ok(target) = Name::from_ascii(format!("{}.", r.target)) else {
                        continue;
                    };
                    response.add_answer(Record::from_rdata(
                        name.clone(),
                        60,
                        RData::SRV(SRV::new(r.priority, r.weight, r.port, target)),
                    ));
                }
            }
        }
        if let Some((_, ips)) = zone.a.iter().find(|(host, _)| same_name(host, name)) {
            known = true;
            if query.query_type() == RecordType::A {
                for ip in ips {
                    response.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(*ip))));
                }
            }
        }
    }
    if !known {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response
}
