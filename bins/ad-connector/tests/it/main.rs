//! End-to-end tests of the real `ad-connector` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod support;
mod testkit;

#[cfg(feature = "samba-lab")]
mod samba_lab;
#[cfg(all(feature = "samba-lab", feature = "kerberos"))]
mod samba_lab_kerberos;
#[cfg(feature = "samba-lab")]
mod samba_lab_scope;
