//! Retry policy: written once, used by every HTTP sink.
//!
//! Each sink only *classifies* a response ([`Retryable`]); this module decides how long to
//! wait: exponential backoff with full jitter (a delay drawn uniformly from
//! `0..=min(max_backoff, initial × 2^attempt)`), or the platform's `Retry-After` (delay in
//! seconds or an HTTP date, clamped to 0..=3600 s), within a bounded total retry time.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The largest `Retry-After` honoured, in seconds; larger values are clamped to it.
pub const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// What to do with a response (or a transport error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// The platform accepted the request.
    Accepted,
    /// Transient: retry after a backoff delay.
    Retry,
    /// Transient: retry after this delay, which the platform asked for (`Retry-After`).
    RetryAfter(Duration),
    /// The credentials were refused: obtain a new token and retry once, immediately.
    RefreshAuth,
    /// Retrying cannot help.
    Fatal,
}

impl Retryable {
    /// The shared classification of an HTTP status: 2xx accepted; 408, 429 and 5xx retried
    /// (honouring `Retry-After` when present); 401 refresh-and-retry-once; any other status
    /// fatal.
    pub fn from_status(status: StatusCode, headers: &HeaderMap) -> Retryable {
        let code = status.as_u16();
        if status.is_success() {
            Retryable::Accepted
        } else if code == 401 {
            Retryable::RefreshAuth
        } else if code == 408 || code == 429 || status.is_server_error() {
            match retry_after(headers, SystemTime::now()) {
                Some(delay) => Retryable::RetryAfter(delay),
                None => Retryable::Retry,
            }
        } else {
            Retryable::Fatal
        }
    }
}

/// Backoff and budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff's upper bound.
    pub initial_backoff: Duration,
    /// Upper bound of any backoff.
    pub max_backoff: Duration,
    /// Total time a request may spend being retried (waits and attempts included) before the
    /// batch fails. A `Retry-After` longer than what remains fails the batch at once.
    pub max_retry_time: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_retry_time: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the backoff before retry number `attempt` (0-based):
    /// `min(max_backoff, initial_backoff × 2^attempt)`.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// A jittered backoff ("full jitter"): uniform in `0..=backoff_ceiling(attempt)`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.backoff_ceiling(attempt).as_millis();
        let ceiling = u64::try_from(ceiling).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ceiling))
    }

    /// The delay before the next attempt, or `None` if waiting it would exceed the budget
    /// (`elapsed` is the time spent so far).
    pub fn next_delay(
        &self,
        verdict: Retryable,
        attempt: u32,
        elapsed: Duration,
    ) -> Option<Duration> {
        let delay = match verdict {
            Retryable::RetryAfter(d) => d,
            Retryable::Retry => self.backoff(attempt),
            _ => return None,
        };
        (elapsed.saturating_add(delay) <= self.max_retry_time).then_some(delay)
    }
}

/// Parse `Retry-After` (RFC 9110 10.2.3): delay-seconds or an HTTP date (IMF-fixdate, and the
/// obsolete RFC 850 and asctime forms). Clamped to `0..=3600` s; a date in the past is 0.
/// `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

/// See [`retry_after`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let clamp = |secs: u64| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS));
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is "very long": clamp.
        return Some(clamp(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    let now: DateTime<Utc> = now.into();
    let secs = (at - now).num_seconds().max(0);
    Some(clamp(u64::try_from(secs).unwrap_or(0)))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    // RFC 850:     Sunday, 06-Nov-94 08:49:37 GMT
    // asctime:     Sun Nov  6 08:49:37 1994
    const FORMATS: [&str; 3] = [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ];
    FORMATS.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(value, format)
            .ok()
            .map(|naive| naive.and_utc())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    fn at(secs: i64) -> SystemTime {
        Utc.timestamp_opt(secs, 0).unwrap().into()
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:47 1994", now),
            Some(Duration::from_secs(10))
        );
        // In the past: retry now. Far future: clamped.
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT", now),
            Some(Duration::from_secs(3600))
        );
        for bad in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn classification_of_statuses() {
        let none = HeaderMap::new();
        let mut with = HeaderMap::new();
        with.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let c = |code: u16, h: &HeaderMap| {
            Retryable::from_status(StatusCode::from_u16(code).unwrap(), h)
        };
        assert_eq!(c(200, &none), Retryable::Accepted);
        assert_eq!(c(204, &none), Retryable::Accepted);
        assert_eq!(c(401, &none), Retryable::RefreshAuth);
        assert_eq!(c(408, &none), Retryable::Retry);
        assert_eq!(c(429, &none), Retryable::Retry);
        assert_eq!(c(429, &with), Retryable::RetryAfter(Duration::from_secs(7)));
        assert_eq!(c(503, &with), Retryable::RetryAfter(Duration::from_secs(7)));
        assert_eq!(c(500, &none), Retryable::Retry);
        for code in [400, 403, 404, 409, 413, 422] {
            assert_eq!(c(code, &with), Retryable::Fatal, "{code}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_respects_budget() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_time: Duration::from_secs(10),
        };
        assert_eq!(policy.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.backoff_ceiling(3), Duration::from_millis(800));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(2));
        assert_eq!(policy.backoff_ceiling(200), Duration::from_secs(2));
        for attempt in 0..10 {
            assert!(policy.backoff(attempt) <= policy.backoff_ceiling(attempt));
        }
        assert_eq!(
            policy.next_delay(
                Retryable::RetryAfter(Duration::from_secs(3)),
                0,
                Duration::from_secs(6)
            ),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            policy.next_delay(
                Retryable::RetryAfter(Duration::from_secs(5)),
                0,
                Duration::from_secs(6)
            ),
            None
        );
        assert_eq!(policy.next_delay(Retryable::Fatal, 0, Duration::ZERO), None);
    }
}
