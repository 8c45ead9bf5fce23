//! Typed Active Directory users and groups (work in progress: being written now).
#![forbid(unsafe_code)]
