//! How long to keep reconnecting: a budget of time, not of attempts.
//!
//! A domain controller that reboots is gone for tens of seconds to minutes (seen on the Samba
//! lab: back after 9 s; Windows DCs take longer). Five attempts with doubling delays span about
//! six seconds, so a count-based budget failed cycles that would have finished a minute later.
//! A [`Backoff`] instead allows `max_reconnect_secs` from the first failure of a streak (the
//! streak ends when entries flow again), waiting `reconnect_backoff_ms` doubling to
//! [`BACKOFF_MAX`], each delay jittered down by up to half so that connectors restarted by the
//! same outage do not knock on the DC in step. `max_reconnects`, when set, also caps the
//! attempts (tests use it to stay fast).

use std::time::{Duration, Instant};

use rand::Rng;

use crate::config::SourceConfig;

/// Longest delay between reconnect attempts.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One streak of failures: when it started and how many attempts it made.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    started: Option<Instant>,
    attempts: u32,
}

/// Why a streak gave up, for the error sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GaveUp {
    /// Attempts made.
    pub(crate) attempts: u32,
    /// Seconds since the first failure of the streak.
    pub(crate) elapsed_secs: u64,
}

impl Backoff {
    /// A fresh streak (nothing failed yet).
    pub(crate) fn new() -> Self {
        Backoff {
            started: None,
            attempts: 0,
        }
    }

    /// Progress was made: the next failure starts a new streak.
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }

    /// Attempts made in this streak.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// A failure happened: how long to wait before the next attempt, or why not to try again.
    pub(crate) fn next_delay(&mut self, config: &SourceConfig) -> Result<Duration, GaveUp> {
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        let elapsed = now.saturating_duration_since(started);
        let gave_up = GaveUp {
            attempts: self.attempts,
            elapsed_secs: elapsed.as_secs(),
        };
        let budget = Duration::from_secs(config.max_reconnect_secs);
        if budget.is_zero()
            || config
                .max_reconnects
                .is_some_and(|max| self.attempts >= max)
        {
            return Err(gave_up);
        }
        let ceiling = Duration::from_millis(config.reconnect_backoff_ms)
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(BACKOFF_MAX);
        let delay = jittered(ceiling);
        // The last attempt is made at the end of the budget, not after it.
        let left = budget.saturating_sub(elapsed);
        if left.is_zero() {
            return Err(gave_up);
        }
        self.attempts += 1;
        Ok(delay.min(left))
    }
}

/// Uniform in `ceiling/2 ..= ceiling`.
fn jittered(ceiling: Duration) -> Duration {
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(budget_secs: u64, cap: Option<u32>, backoff_ms: u64) -> SourceConfig {
        let mut config = SourceConfig::new("ldap://127.0.0.1:1", "svc", "pw".into());
        config.max_reconnect_secs = budget_secs;
        config.max_reconnects = cap;
        config.reconnect_backoff_ms = backoff_ms;
        config
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_ceiling() {
        let config = config(3600, None, 200);
        let mut backoff = Backoff::new();
        let mut ceiling = 200u64;
        for _ in 0..12 {
            let delay = backoff.next_delay(&config).unwrap().as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "{delay} ms outside {}..={ceiling}",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(BACKOFF_MAX.as_millis() as u64);
        }
        assert_eq!(backoff.attempts(), 12);
    }

    #[test]
    fn the_budget_is_time_and_the_cap_is_optional() {
        // No budget: no attempt at all.
        assert!(Backoff::new().next_delay(&config(0, None, 1)).is_err());
        // A cap of 3 attempts within a large budget.
        let capped = config(300, Some(3), 1);
        let mut backoff = Backoff::new();
        for _ in 0..3 {
            backoff.next_delay(&capped).unwrap();
        }
        assert_eq!(
            backoff.next_delay(&capped).unwrap_err().attempts,
            3,
            "the fourth attempt is refused"
        );
        // Uncapped: attempts go on as long as the budget lasts (delays are not slept here).
        let uncapped = config(300, None, 1);
        let mut backoff = Backoff::new();
        for _ in 0..1000 {
            backoff.next_delay(&uncapped).unwrap();
        }
        // A reset starts a new streak.
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
    }

    #[test]
    fn a_delay_never_runs_past_the_budget() {
        let config = config(1, None, 60_000);
        let mut backoff = Backoff::new();
        let delay = backoff.next_delay(&config).unwrap();
        assert!(delay <= Duration::from_secs(1), "{delay:?}");
    }
}
