//! Cron schedules, in two dialects.
//!
//! - `cron` (the default): 5 fields (`*/10 * * * *`) or 6 with seconds first
//!   (`0 0/10 * * * *`); days of the week 0–7 with 0 and 7 both Sunday.
//! - `quartz`, as the Qualys execution engine's env file writes them: 6 fields with seconds
//!   first, or 7 with a year; days of the week 1–7 with **1 = Sunday** (`0 0 12 ? * 1` is
//!   Sundays at noon); `?` means "any".
//!
//! In both, names (`MON-FRI`, `JAN`) work, and `a/b` steps (start at `a`, every `b`) are
//! rewritten to the range form `a-<max>/b`. The "last" (`L`), "nearest weekday" (`W`) and
//! "n-th weekday" (`#`) forms are refused with a sentence: a sync schedule does not need
//! them, and their meaning differs between cron implementations.

use chrono::{DateTime, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// How an expression numbers the days of the week.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CronDialect {
    /// Vixie cron: 0 or 7 = Sunday, 1 = Monday.
    #[default]
    Cron,
    /// Quartz: 1 = Sunday, 2 = Monday, … 7 = Saturday.
    Quartz,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
}

/// Why a cron expression was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{key} = {expression:?} is not a usable cron expression ({reason}); use 5 fields (\"*/10 * * * *\", every 10 minutes) or 6 with seconds first (\"0 0/10 * * * *\")"
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
    /// Parse `expression` in `dialect`, naming `key` in errors.
    pub fn parse(
        key: &str,
        expression: &str,
        dialect: CronDialect,
    ) -> Result<Schedule, ScheduleError> {
        let err = |reason: String| ScheduleError {
            key: key.to_owned(),
            expression: expression.to_owned(),
            reason,
        };
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let maxima: &[u32] = match (fields.len(), dialect) {
            (5, CronDialect::Cron) => &[59, 23, 31, 12, 7],
            (6, _) => &[59, 59, 23, 31, 12, 7],
            (7, CronDialect::Quartz) => &[59, 59, 23, 31, 12, 7, 2099],
            (n, CronDialect::Cron) => return Err(err(format!("it has {n} fields"))),
            (n, CronDialect::Quartz) => {
                return Err(err(format!(
                    "it has {n} fields; a Quartz expression has 6 (seconds first) or 7 (with a year)"
                )));
            }
        };
        if let Some(form) = fields.iter().find_map(|field| unsupported(field)) {
            return Err(err(format!(
                "{form} is not supported; list the days or times instead (e.g. MON-FRI, 1-5)"
            )));
        }
        let normalized: Vec<String> = fields
            .iter()
            .zip(maxima)
            .map(|(field, max)| quartz_step(field, *max))
            .collect();
        let normalized = normalized.join(" ");
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(match dialect {
                CronDialect::Cron => Year::Disallowed,
                CronDialect::Quartz => Year::Optional,
            })
            .alternative_weekdays(dialect == CronDialect::Quartz)
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

    /// The first fire time strictly after `after`, on a whole second.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|next| next.with_nanosecond(0).unwrap_or(next))
    }
}

/// The unsupported form a field uses, named for the error: `L` (last), `W` (nearest weekday)
/// or `#` (n-th weekday of the month).
fn unsupported(field: &str) -> Option<&'static str> {
    let upper = field.to_ascii_uppercase();
    if upper.contains('#') {
        return Some("'#' (n-th weekday of the month)");
    }
    upper.split([',', '-', '/']).find_map(|token| {
        let digits = token.trim_end_matches(['L', 'W']);
        let suffix = token.get(digits.len()..).unwrap_or_default();
        if suffix.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(if suffix.contains('W') {
            "'W' (nearest weekday)"
        } else {
            "'L' (last day)"
        })
    })
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
    use chrono::{Datelike, TimeZone};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, m, s).unwrap()
    }

    fn cron(expression: &str) -> Schedule {
        Schedule::parse("schedule.cron", expression, CronDialect::Cron).unwrap()
    }

    fn quartz(expression: &str) -> Result<Schedule, ScheduleError> {
        Schedule::parse("service.cron-expression", expression, CronDialect::Quartz)
    }

    #[test]
    fn qualys_forms() {
        let five = cron("*/10 * * * *");
        assert_eq!(five.next_after(at(10, 3, 0)), Some(at(10, 10, 0)));
        let six = quartz("0 0/10 * * * *").unwrap();
        assert_eq!(six.next_after(at(10, 3, 0)), Some(at(10, 10, 0)));
        assert_eq!(six.next_after(at(10, 10, 0)), Some(at(10, 20, 0)));
        let offset = cron("5/15 * * * *");
        assert_eq!(offset.next_after(at(10, 6, 0)), Some(at(10, 20, 0)));
    }

    #[test]
    fn quartz_days_of_week_start_on_sunday() {
        // 2026-11-22 is a Sunday.
        let sunday_noon = quartz("0 0 12 ? * 1").unwrap();
        assert_eq!(sunday_noon.next_after(at(10, 0, 0)), Some(at(12, 0, 0)));
        let next = sunday_noon.next_after(at(12, 0, 0)).unwrap();
        assert_eq!(next.weekday(), chrono::Weekday::Sun);
        // The same number in the cron dialect is Monday.
        let monday = cron("0 12 * * 1").next_after(at(10, 0, 0)).unwrap();
        assert_eq!(monday.weekday(), chrono::Weekday::Mon);
        let weekdays = quartz("0 30 6 ? * MON-FRI").unwrap();
        assert_eq!(
            weekdays.next_after(at(10, 0, 0)).unwrap().weekday(),
            chrono::Weekday::Mon
        );
        assert!(quartz("0 0 12 ? * 1 2030").is_ok());
        for refused in [
            "0 0 12 L * ?",
            "0 0 12 ? * 6#3",
            "0 0 12 15W * ?",
            "0 0 12 ? * 5L",
        ] {
            let err = quartz(refused).unwrap_err().to_string();
            assert!(err.contains("is not supported"), "{refused}: {err}");
        }
    }

    #[test]
    fn next_runs_are_on_whole_seconds() {
        let every_ten = cron("*/10 * * * *");
        let after = at(10, 3, 0) + chrono::Duration::nanoseconds(123_456_789);
        let next = every_ten.next_after(after).unwrap();
        assert_eq!(next, at(10, 10, 0));
        assert_eq!(next.nanosecond(), 0);
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
            let err = Schedule::parse("schedule.cron", bad, CronDialect::Cron).unwrap_err();
            assert!(err.to_string().starts_with("schedule.cron = "), "{err}");
        }
    }
}
