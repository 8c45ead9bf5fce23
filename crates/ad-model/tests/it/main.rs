//! Integration tests of `ad-model`: realistic entries decoded end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod decode;
mod fixtures;
mod robustness;
