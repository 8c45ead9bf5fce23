//! ad-sync integration tests: the deterministic simulation and engine scenarios.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod engine;
mod failover;
mod platform;
mod scope;
mod sim;
