//! Log output on stderr: text or JSON, colour only for a person, priorities for journald,
//! and never tangled with the progress spinner.
//!
//! - Colour (ANSI) only when stderr is a terminal and `NO_COLOR` is unset: piped or
//!   redirected logs carry no escape codes.
//! - Under systemd (`JOURNAL_STREAM` set), text lines start with the sd-daemon priority
//!   prefix (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug), so `journalctl -p warning`
//!   works, and carry no timestamp (the journal adds its own).
//! - Every line goes through [`Stderr`], which hides the cycle's spinner while it writes.
//!   (tracing-indicatif does this for bars driven by spans; ours is one spinner per cycle owned
//!   by the progress observer, so a writer that suspends it is all that is needed.)

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::ProgressBar;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The spinner on screen, if any: log lines are written around it.
static SPINNER: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Show `bar` while a cycle runs (`None`: it ended).
pub fn set_spinner(bar: Option<ProgressBar>) {
    *SPINNER.lock().unwrap_or_else(PoisonError::into_inner) = bar;
}

/// stderr, written with the spinner suspended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let spinner = SPINNER
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match spinner {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

/// Whether log lines may carry colour: stderr is a terminal, `NO_COLOR` is unset and
/// journald does not read them.
pub fn ansi() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && !under_journald()
}

/// Whether systemd connected stderr to the journal.
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// The sd-daemon priority prefix of a level.
pub fn priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        Level::DEBUG | Level::TRACE => "<7>",
    }
}

/// Text lines for the journal: a priority prefix, then the usual line without a timestamp.
pub struct Journald(Format<Full, ()>);

impl Journald {
    /// The text format without timestamps or targets.
    pub fn new() -> Journald {
        Journald(Format::default().without_time().with_target(false))
    }
}

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{}", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Install the subscriber: `json` or text, with `filter` (falls back to `info`).
pub fn init(json: bool, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(ansi());
    if json {
        builder.json().init();
    } else if under_journald() {
        builder
            .fmt_fields(DefaultFields::new())
            .event_format(Journald::new())
            .init();
    } else {
        builder.with_target(false).with_timer(SystemTime).init();
    }
}
