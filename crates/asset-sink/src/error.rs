//! The one error type of every sink.
//!
//! Each variant reads as a sentence an operator can act on: what failed, against which host,
//! status or key, and what to do. No variant carries a secret: messages quoted from a
//! platform are truncated and scrubbed of the sink's own secrets before they get here (see
//! [`crate::http`]), and transport errors are rendered without their URL.

use std::path::PathBuf;

/// Why a batch was not delivered, a check failed, or a sink could not be built.
///
/// A `send` that returns an error delivered **nothing it can vouch for**: the caller must not
/// advance its checkpoint past the batch, and may send it again (every sink's upserts are
/// idempotent).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A configuration value is missing or invalid.
    #[error("{sink} sink configuration: `{key}` {problem}")]
    Config {
        /// Which sink (`sekoia`, `qualys`, `jsonl`).
        sink: &'static str,
        /// The configuration key, as written in the config file.
        key: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },

    /// The TLS setup could not be built (CA file unreadable, no certificate in it, ...).
    #[error("TLS setup for the {sink} sink failed: {detail}")]
    Tls {
        /// Which sink.
        sink: &'static str,
        /// What failed and what to do.
        detail: String,
    },

    /// The platform refused the batch with a status that retrying cannot fix (4xx other than
    /// 401, 408 and 429). The batch is not acknowledged.
    #[error(
        "{sink} at {host} rejected {what} with HTTP {status}: {message}; this is not retried: \
         fix what the message names (data, connector UUID, permissions) and run again"
    )]
    Rejected {
        /// Which sink.
        sink: &'static str,
        /// The host that answered.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The platform's own message (truncated, secrets scrubbed).
        message: String,
        /// What was sent: `batch 42 (request 2 of 3, 1000 items)`.
        what: String,
    },

    /// The platform kept answering 401 even with a freshly obtained token, or (for static API
    /// keys) answered 401 or 403 at all.
    #[error("{sink} at {host} refused our credentials (HTTP {status}): {message}; check {hint}")]
    Unauthorized {
        /// Which sink.
        sink: &'static str,
        /// The host that answered.
        host: String,
        /// 401 or 403.
        status: u16,
        /// The platform's message (truncated, secrets scrubbed).
        message: String,
        /// Which setting to check (`sekoia.api_key`, `qualys.auth.username/password`, ...).
        hint: &'static str,
    },

    /// A token could not be obtained from the authentication endpoint.
    #[error("{sink}: could not obtain an access token from {host}{path}: {detail}; check {hint}")]
    Auth {
        /// Which sink.
        sink: &'static str,
        /// Host of the token endpoint.
        host: String,
        /// Path of the token endpoint.
        path: String,
        /// What went wrong (status and the endpoint's message, or the transport error).
        detail: String,
        /// Which settings to check.
        hint: &'static str,
    },

    /// Retries (429, 5xx, timeouts, connection errors) went on until the retry budget ran out.
    #[error(
        "{sink} at {host}: gave up on {what} after {attempts} attempts over {elapsed_secs} s; \
         last error: {last}; the batch is not acknowledged and will be sent again on the next \
         run (raise `max_retry_secs` if the platform is known to be slow)"
    )]
    RetriesExhausted {
        /// Which sink.
        sink: &'static str,
        /// The host.
        host: String,
        /// What was sent.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// Seconds spent.
        elapsed_secs: u64,
        /// The last status or transport error.
        last: String,
    },

    /// A transport error that retrying cannot fix (invalid request, redirect loop, ...).
    #[error("{sink}: request to {host} failed: {detail}")]
    Transport {
        /// Which sink.
        sink: &'static str,
        /// The host.
        host: String,
        /// The error, without URL.
        detail: String,
    },

    /// The platform answered success with a body we could not read.
    #[error("{sink} at {host} answered HTTP {status} with a body we could not read: {detail}")]
    BadResponse {
        /// Which sink.
        sink: &'static str,
        /// The host.
        host: String,
        /// The status.
        status: u16,
        /// What was wrong.
        detail: String,
    },

    /// Writing the outbox failed (disk full, permissions, ...). Nothing of the batch is
    /// acknowledged; a partial line may remain at the end of the file and is followed by a
    /// newline on the next write.
    #[error("outbox: could not {op} {path}: {source}; check free space and permissions")]
    Io {
        /// What was being done (`append to`, `fsync`, `rotate`, ...).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A record could not be serialized (never expected: our types always serialize).
    #[error("could not serialize {what}: {source}")]
    Serialize {
        /// What.
        what: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

impl SinkError {
    /// True when sending the same batch again later may succeed (retry budget exhausted,
    /// transport trouble, I/O, token endpoint trouble); false for rejections, refused
    /// credentials and configuration errors, which need a person to fix something first.
    /// `Auth` counts as transient because a token endpoint outage heals; its message says
    /// when the cause is a wrong password instead.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SinkError::RetriesExhausted { .. }
                | SinkError::Transport { .. }
                | SinkError::Io { .. }
                | SinkError::Auth { .. }
        )
    }
}

/// Result with [`SinkError`].
pub type Result<T, E = SinkError> = std::result::Result<T, E>;
