//! Integration tests: the in-process AD-like directory (`testkit`) always; the real Samba AD
//! DC of `scripts/lab-dc` (`samba_lab`) with `--features samba-lab`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod hostile;
#[cfg(feature = "samba-lab")]
mod samba_lab;
#[cfg(all(feature = "samba-lab", feature = "kerberos"))]
mod samba_lab_kerberos;
mod testkit;
mod testkit_incomplete;
mod testkit_objects;
mod testkit_parallel;
mod testkit_time;
