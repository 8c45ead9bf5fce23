//! Cron schedules, as the Qualys execution engine's env file writes them.
//!
//! Both 5-field (`*/10 * * * *`) and 6-field with seconds (`0 0/10 * * * *`) expressions are
//! accepted. Quartz-style `a/b` steps (start at `a`, every `b`) are rewritten to the
//! range form `a-<max>/b` that POSIX cron parsers understand.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
}

/// Why a cron expression was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{key} = {expression:?} is not a cron expression ({reason}); use 5 fields (\"*/10 * * * *\", every 10 minutes) or 6 with seconds first (\"0 0/10 * * * *\")"
)]
pub struct ScheduleError {
    /// The configuration key it came from.
    pub key: String,
    /// The expression.
    pub expression: String,
    /// What the parser said.
    pub reason: String,
}

impl Schedule {
    /// Parse `expression`, naming `key` in errors.
    pub fn parse(key: &str, expression: &str) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            key: key.to_owned(),
            expression: expression.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let maxima: &[u32] = match fields.len() {
            5 => &[59, 23, 31, 12, 7],
            6 => &[59, 59, 23, 31, 12, 7],
            n => return Err(err(format!("it has {n} fields"))),
        };
        let normalized: Vec<String> = fields
            .iter()
            .zip(maxima)
            .map(|(field, max)| quartz_step(field, *max))
            .collect();
        let normalized = normalized.join(" ");
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&normalized)
            .map_err(|e| err(e.to_string()))?;
        Ok(Schedule {
            expression: expression.to_owned(),
            cron,
        })
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

/// `5/10` → `5-59/10` (Quartz "from 5 every 10"); everything else unchanged.
fn quartz_step(field: &str, max: u32) -> String {
    match field.split_once('/') {
        Some((start, step)) if !start.is_empty() && start.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{start}-{max}/{step}")
        }
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    #[test]
    fn qualys_forms() {
        let five = Schedule::parse("service.cron-expression", "*/10 * * * *").unwrap();
        assert_eq!(five.next_after(at(10, 3, 0)), Some(at(10, 10, 0)));
        let six = Schedule::parse("service.cron-expression", "0 0/10 * * * *").unwrap();
        assert_eq!(six.next_after(at(10, 3, 0)), Some(at(10, 10, 0)));
        assert_eq!(six.next_after(at(10, 10, 0)), Some(at(10, 20, 0)));
        let offset = Schedule::parse("k", "5/15 * * * *").unwrap();
        assert_eq!(offset.next_after(at(10, 6, 0)), Some(at(10, 20, 0)));
    }

    #[test]
    fn bad_expressions_name_the_key() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "every ten minutes please ok",
            "* * * * * * *",
        ] {
            let err = Schedule::parse("schedule.cron", bad).unwrap_err();
            assert!(err.to_string().starts_with("schedule.cron = "), "{err}");
        }
    }
}
