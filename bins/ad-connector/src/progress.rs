//! Progress of a cycle: on a terminal a spinner with entries read and entries/s (log lines are
//! written around it, see [`crate::logging`]); elsewhere a log line about every 10 seconds, so
//! a long cycle is never silent in a journal or a pipe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged when there is no spinner.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A progress indicator for one cycle.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    read: AtomicU64,
    batches: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// A spinner on stderr if it is a terminal and `interactive`, else progress log lines.
    /// Logs "cycle started".
    pub fn new(interactive: bool) -> Progress {
        use std::io::IsTerminal;
        tracing::info!("cycle started");
        let bar = (interactive && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{spinner} {msg} {pos} entries read ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message("syncing:");
            bar.enable_steady_tick(Duration::from_millis(120));
            crate::logging::set_spinner(Some(bar.clone()));
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            started: now,
            read: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_line: Mutex::new(now),
        }
    }

    /// Remove the indicator.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            crate::logging::set_spinner(None);
            bar.finish_and_clear();
        }
    }

    /// Log a progress line if the last one is `LINE_EVERY` old (no spinner only).
    fn maybe_line(&self) {
        if self.bar.is_some() {
            return;
        }
        let now = Instant::now();
        {
            let mut last = self
                .last_line
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now.duration_since(*last) < LINE_EVERY {
                return;
            }
            *last = now;
        }
        let read = self.read.load(Ordering::Relaxed);
        let elapsed = now.duration_since(self.started).as_secs_f64().max(0.001);
        tracing::info!(
            entries_read = read,
            entries_per_sec = (read as f64 / elapsed).round() as u64,
            batches_acknowledged = self.batches.load(Ordering::Relaxed),
            elapsed_secs = elapsed.round() as u64,
            "progress: {read} entries read"
        );
    }
}

impl ad_sync::Observer for Progress {
    fn object_read(&self, _kind: ad_model::ObjectKind) {
        self.read.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        self.maybe_line();
    }

    fn batch_recorded(&self, _ack: &asset_sink::Ack) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.maybe_line();
    }
}
