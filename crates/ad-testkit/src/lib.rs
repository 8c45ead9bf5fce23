//! An in-process, Active-Directory-like LDAP server for tests and demos.
//!
//! # Why a fake DC, and why this shape
//!
//! Samba's AD DC is the faithful directory to test against, but it cannot show what makes
//! Windows AD hard for a connector: MaxPageSize (an unpaged search over 1,000 entries ends in
//! sizeLimitExceeded), MaxValRange (a 4,000-member group comes back as
//! `member;range=0-1499`), a DC restored from backup, a second DC with its own USNs, a network
//! that drops the connection mid-read, a directory of a million users. This crate serves that
//! behaviour over **real LDAP on a loopback socket**, so the product's unmodified `ldap3`
//! client code is what gets tested, not a mock of it.
//!
//! The main design choice is that **the server is stateless between requests and the
//! directory is a shared, lockable value**:
//!
//! - A [`Directory`] is an `Arc<RwLock<..>>` handle. Tests mutate it in-process (add, modify,
//!   rename, delete → tombstone) while one or more [`TestServer`]s serve it; every change gets
//!   the next USN, so `uSNChanged`-based delta sync can be tested exactly. Two servers over one
//!   directory with different host names are two DCs; changing a server's `invocationId`
//!   simulates a restore.
//! - Paging cookies carry the *position* in a stable entry order instead of pointing at a
//!   server-side snapshot (see [`paging`](crate#paging)). That is what lets a generated
//!   directory of 1,000,000 users ([`Directory::generated`]) be read in full with one page in
//!   memory: generated users are computed from their index on demand and only materialized
//!   when mutated.
//! - Each server owns a single-threaded Tokio runtime on its own thread. Starting and stopping
//!   are synchronous, work from any test flavour, and dropping a server can never deadlock a
//!   test runtime.
//!
//! # Pieces
//!
//! - [`Directory`], [`Entry`], [`Modification`], [`Scope`]: the data model.
//! - [`TestServer`], [`ServerOptions`], [`BindAccount`], [`BindFailure`]: the server.
//! - [`FaultOptions`] and friends: dropped connections, delays, malformed values, failing
//!   searches, paged searches ending part-way ([`PageFault`]), failing ranged reads.
//! - [`Company`]: a realistic, seeded company (every account state, nested and large groups).
//! - [`GeneratedOptions`]: huge generated directories.
//! - [`Recorder`], [`ReplayServer`]: record a server's answers once, replay them from a file
//!   by copying bytes (client-only benchmarks).
//! - [`filter`]: AD-flavoured filter evaluation and an RFC 4515 parser.
//! - [`encoding`]: objectSid / objectGUID / FILETIME / GeneralizedTime encoders.
//!
//! # Example
//!
//! ```no_run
//! use ad_testkit::{Company, CompanyOptions, ServerOptions, TestServer};
//!
//! let directory = Company::generate(CompanyOptions { users: 2_500, ..Default::default() });
//! let server = TestServer::start(directory, ServerOptions::default())?;
//! println!("serving {}", server.url()); // ldap://127.0.0.1:PORT
//! # Ok::<(), ad_testkit::TestkitError>(())
//! ```
//!
//! # Paging
//!
//! RFC 2696 cookies encode (connection, position, request fingerprint). Like AD, a cookie is
//! valid only on the connection that received it and for the same request.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod account;
mod codec;
mod company;
mod directory;
mod dn;
pub mod dns;
pub mod encoding;
mod entry;
mod error;
mod fault;
pub mod filter;
mod generated;
mod hostile;
mod paging;
mod persona;
mod projection;
mod replay;
mod server;
mod stats;

pub use account::{
    BindAccount, BindFailure, SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_NAME, SERVICE_ACCOUNT_PASSWORD,
    SERVICE_ACCOUNT_UPN, invalid_credentials_message,
};
pub use company::{
    BASE_DN, Company, CompanyManifest, CompanyOptions, MAIL_DOMAIN, default_reference_time,
    group_type,
};
pub use directory::{DOMAIN_SUB_AUTHORITIES, Directory, Modification, Scope};
pub use dn::{escape_value as escape_dn_value, within as dn_within};
pub use dns::{DnsServer, DnsZone, SrvEntry};
pub use entry::{Attribute, Entry};
pub use error::{Result, TestkitError};
pub use fault::{
    DropAfter, FailureCode, FaultOptions, Malformation, PageFault, PageFaultKind, SearchFailure,
};
pub use generated::{GeneratedOptions, generated_container};
pub use hostile::{HostileProxy, Mutation, MutationPlan};
pub use replay::{Recorder, RecordingStats, ReplayServer};
pub use server::{
    OID_MANAGE_DSA_IT, OID_PAGED_RESULTS, OID_SD_FLAGS, OID_SHOW_DELETED, OID_WHOAMI,
    ServerOptions, StatsHandle, TestServer,
};
pub use stats::{SearchRecord, ServerStats};

/// The LDAP protocol crate this server speaks through (for [`filter`]'s types).
pub use ldap3_proto;
