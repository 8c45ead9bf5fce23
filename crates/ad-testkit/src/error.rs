//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when building, mutating or serving a test directory.
///
/// The variants mirror the LDAP result codes a real directory would answer with, so a test
/// that mutates the directory in-process sees the same failure it would see over the wire.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// A distinguished name could not be parsed.
    #[error("invalid distinguished name {dn:?}: {reason}")]
    InvalidDn {
        /// The offending DN as given.
        dn: String,
        /// Why it was rejected.
        reason: String,
    },
    /// No live entry has this DN (or its parent does not exist on add).
    #[error("no such object: {0}")]
    NoSuchObject(String),
    /// An entry with this DN already exists.
    #[error("entry already exists: {0}")]
    EntryAlreadyExists(String),
    /// The entry has children; AD refuses to delete or tombstone a non-leaf without tree delete.
    #[error("operation not allowed on non-leaf entry: {0}")]
    NotAllowedOnNonLeaf(String),
    /// The change would break a directory rule (backlink written directly, RDN attribute
    /// modified, link target missing, ...).
    #[error("constraint violation on {dn}: {reason}")]
    ConstraintViolation {
        /// The entry being changed.
        dn: String,
        /// The rule that was broken.
        reason: String,
    },
    /// A value to add is already present.
    #[error("attribute {attribute} of {dn} already has that value")]
    AttributeOrValueExists {
        /// The entry being changed.
        dn: String,
        /// The attribute.
        attribute: String,
    },
    /// A value or attribute to delete is not present.
    #[error("attribute {attribute} of {dn} has no such value")]
    NoSuchAttribute {
        /// The entry being changed.
        dn: String,
        /// The attribute.
        attribute: String,
    },
    /// An LDAP filter string could not be parsed.
    #[error("invalid LDAP filter {filter:?}: {reason}")]
    InvalidFilter {
        /// The filter as given.
        filter: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A SID string could not be parsed.
    #[error("invalid SID {0:?}")]
    InvalidSid(String),
    /// A replay recording (see [`crate::Recorder`]) could not be written or read.
    #[error("the replay recording {path} cannot be used: {reason}; delete it and record it again")]
    Recording {
        /// The recording file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket or runtime could not be set up.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = TestkitError> = std::result::Result<T, E>;
