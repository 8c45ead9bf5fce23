//! Progress on a terminal: a spinner with entries read and entries/s. Hidden when stderr is
//! not a TTY (logs are the record there).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress indicator for one cycle.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner on stderr if it is a terminal and `enabled`, else nothing.
    pub fn new(enabled: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = if enabled && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{spinner} {msg} {pos} entries read ({per_sec})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_message("syncing:");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// One entry read.
    pub fn tick(&self) {
        self.bar.inc(1);
    }

    /// Remove the indicator.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl ad_sync::Observer for Progress {
    fn object_read(&self, _kind: ad_model::ObjectKind) {
        self.tick();
    }
}
