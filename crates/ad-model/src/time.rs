//! Timestamps: Windows FILETIME integers and LDAP GeneralizedTime strings.
//!
//! FILETIME attributes (`lastLogon`, `lastLogonTimestamp`, `pwdLastSet`, `accountExpires`,
//! `badPasswordTime`, `lockoutTime`) are decimal strings counting 100-nanosecond intervals
//! since 1601-01-01T00:00:00Z. AD writes `0` and `9223372036854775807` (`i64::MAX`) for
//! "never" / "not set": those decode to `None`, never to a date (rendering 0 as a date is
//! how one well-known connector reports users who never logged on as active in 1601 or 2185).
//!
//! `whenCreated` / `whenChanged` are GeneralizedTime (`20240131154502.0Z`, RFC 4517 3.3.13).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// 100-ns ticks between 1601-01-01 and the Unix epoch.
const EPOCH_DIFF_SECS: i64 = 11_644_473_600;
const TICKS_PER_SEC: i64 = 10_000_000;

/// The FILETIME value AD uses for "never expires" (also used by `accountExpires`).
pub const FILETIME_NEVER: i64 = i64::MAX;

/// Why a timestamp attribute could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not a decimal integer at all.
    #[error("a FILETIME is a decimal count of 100-ns intervals since 1601, got {shape}")]
    NotAnInteger {
        /// What the text looked like (length and kind, not the value).
        shape: String,
    },
    /// Negative: no AD timestamp attribute holds one when read.
    #[error("a FILETIME cannot be negative, got {ticks}")]
    Negative {
        /// The value read.
        ticks: i64,
    },
    /// A date that cannot be written as a FILETIME (before 1601 or past the i64 range).
    #[error("{date} cannot be written as a FILETIME (representable: 1601-01-01 to 30828-09-14)")]
    OutOfRange {
        /// The date.
        date: String,
    },
    /// Text that is not GeneralizedTime.
    #[error("expected GeneralizedTime like 20240131154502.0Z, got {text:?}")]
    BadGeneralizedTime {
        /// The text given (timestamps are not secret).
        text: String,
    },
}

/// What `pwdLastSet` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "at")]
pub enum PwdLastSet {
    /// `pwdLastSet = 0`: the user must change the password at next logon. This is not a date.
    MustChange,
    /// The password was last set at this instant.
    SetAt(DateTime<Utc>),
}

/// Decode FILETIME ticks. `0` and `i64::MAX` mean "never" and give `None`.
pub fn filetime_from_ticks(ticks: i64) -> Result<Option<DateTime<Utc>>, TimeError> {
    if ticks == 0 || ticks == FILETIME_NEVER {
        return Ok(None);
    }
    if ticks < 0 {
        return Err(TimeError::Negative { ticks });
    }
    let secs = ticks.div_euclid(TICKS_PER_SEC) - EPOCH_DIFF_SECS;
    let nanos = (ticks.rem_euclid(TICKS_PER_SEC) * 100) as u32;
    DateTime::from_timestamp(secs, nanos)
        .map(Some)
        .ok_or_else(|| TimeError::OutOfRange {
            date: format!("{ticks} ticks"),
        })
}

/// Decode a FILETIME attribute value (decimal text). `"0"` and `"9223372036854775807"`
/// give `None`.
pub fn decode_filetime(text: &str) -> Result<Option<DateTime<Utc>>, TimeError> {
    filetime_from_ticks(parse_ticks(text)?)
}

/// Decode `pwdLastSet`: `0` is [`PwdLastSet::MustChange`], anything else a date.
/// `i64::MAX` never occurs for this attribute and is reported as out of range.
pub fn decode_pwd_last_set(text: &str) -> Result<PwdLastSet, TimeError> {
    let ticks = parse_ticks(text)?;
    if ticks == 0 {
        return Ok(PwdLastSet::MustChange);
    }
    match filetime_from_ticks(ticks)? {
        Some(at) => Ok(PwdLastSet::SetAt(at)),
        None => Err(TimeError::OutOfRange {
            date: "9223372036854775807 ticks (\"never\" is not a valid pwdLastSet)".into(),
        }),
    }
}

/// Encode an instant as FILETIME ticks (for filters and test directories).
pub fn to_filetime(at: DateTime<Utc>) -> Result<i64, TimeError> {
    let out_of_range = || TimeError::OutOfRange {
        date: at.to_rfc3339(),
    };
    let secs = at
        .timestamp()
        .checked_add(EPOCH_DIFF_SECS)
        .ok_or_else(out_of_range)?;
    if secs < 0 {
        return Err(out_of_range());
    }
    let ticks = secs
        .checked_mul(TICKS_PER_SEC)
        .and_then(|t| t.checked_add(i64::from(at.timestamp_subsec_nanos() / 100)))
        .ok_or_else(out_of_range)?;
    Ok(ticks)
}

fn parse_ticks(text: &str) -> Result<i64, TimeError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::NotAnInteger {
            shape: crate::entry::text_shape(text),
        });
    }
    text.parse::<i64>().map_err(|_| TimeError::NotAnInteger {
        shape: format!(
            "an integer outside the 64-bit range ({} digits)",
            digits.len()
        ),
    })
}

/// Decode GeneralizedTime (`YYYYMMDDHH[MM[SS]][.fraction](Z|±hhmm)`), as AD writes
/// `whenCreated`. AD's "never" (`16010101000000.0Z`, the FILETIME epoch) gives `None`.
pub fn decode_generalized_time(text: &str) -> Result<Option<DateTime<Utc>>, TimeError> {
    let bad = || TimeError::BadGeneralizedTime {
        text: text.chars().take(64).collect(),
    };
    let bytes = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, TimeError> {
        let part = bytes.get(range).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part
            .iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')))
    };
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(8..10)?;
    let mut pos = 10;
    let mut minute = 0;
    let mut second = 0;
    if bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        minute = num(pos..pos + 2)?;
        pos += 2;
        if bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            second = num(pos..pos + 2)?;
            pos += 2;
        }
    }
    // Fraction: of the last unit given (RFC 4517). We keep nanosecond precision for seconds;
    // fractions of hours/minutes are converted.
    let mut fraction_nanos: i64 = 0;
    if matches!(bytes.get(pos), Some(b'.' | b',')) {
        // The fraction is of the last unit written: hour (pos 10), minute (12) or second (14).
        let unit_secs: i64 = match pos {
            10 => 3600,
            12 => 60,
            _ => 1,
        };
        pos += 1;
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return Err(bad());
        }
        // Nanosecond precision: digits past the ninth are dropped.
        let digits = text.get(start..pos.min(start + 9)).ok_or_else(bad)?;
        let mut value: i64 = digits.parse().map_err(|_| bad())?;
        for _ in digits.len()..9 {
            value *= 10;
        }
        fraction_nanos = value * unit_secs;
    }
    let offset_secs: i64 = match bytes.get(pos) {
        Some(b'Z') if pos + 1 == bytes.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 5 == bytes.len() || pos + 3 == bytes.len() => {
            let h = i64::from(num(pos + 1..pos + 3)?);
            let m = if pos + 5 == bytes.len() {
                i64::from(num(pos + 3..pos + 5)?)
            } else {
                0
            };
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let total = h * 3600 + m * 60;
            if *sign == b'+' { total } else { -total }
        }
        _ => return Err(bad()),
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).map_err(|_| bad())?, month, day)
        .ok_or_else(bad)?;
    // Leap seconds (60) are accepted by the grammar; chrono folds them into the next second.
    let (sec, leap) = if second == 60 { (59, 1) } else { (second, 0) };
    let naive = date.and_hms_opt(hour, minute, sec).ok_or_else(bad)?;
    let at = naive.and_utc()
        + TimeDelta::seconds(leap - offset_secs)
        + TimeDelta::nanoseconds(fraction_nanos);
    if to_filetime(at) == Ok(0) {
        return Ok(None);
    }
    Ok(Some(at))
}

/// Encode an instant as AD writes GeneralizedTime: `YYYYMMDDHHMMSS.0Z`.
pub fn to_generalized_time(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M%S.0Z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn sentinels_are_never() {
        assert_eq!(decode_filetime("0"), Ok(None));
        assert_eq!(decode_filetime("9223372036854775807"), Ok(None));
        assert_eq!(decode_pwd_last_set("0"), Ok(PwdLastSet::MustChange));
        assert!(decode_pwd_last_set("9223372036854775807").is_err());
        assert_eq!(decode_generalized_time("16010101000000.0Z"), Ok(None));
    }

    #[test]
    fn known_vectors() {
        // 2012-06-25 15:45:58.1234567 UTC (checked with Python's datetime from 1601-01-01).
        let at = decode_filetime("129851127581234567").unwrap().unwrap();
        assert_eq!(at.to_rfc3339(), "2012-06-25T15:45:58.123456700+00:00");
        assert_eq!(to_filetime(at), Ok(129_851_127_581_234_567));
        // Unix epoch.
        let epoch = decode_filetime("116444736000000000").unwrap().unwrap();
        assert_eq!(epoch, Utc.timestamp_opt(0, 0).unwrap());
        // 1 tick after 1601: a real date, not "never".
        let first = decode_filetime("1").unwrap().unwrap();
        assert_eq!(first.to_rfc3339(), "1601-01-01T00:00:00.000000100+00:00");
        // The largest date before the sentinel.
        let last = decode_filetime("9223372036854775806").unwrap().unwrap();
        assert_eq!(last.format("%Y-%m-%d").to_string(), "+30828-09-14");
        // Dates past year 9999 survive the canonical JSON form.
        let json = serde_json::to_string(&last).unwrap();
        assert_eq!(serde_json::from_str::<DateTime<Utc>>(&json).unwrap(), last);
    }

    #[test]
    fn malformed_filetimes_are_errors() {
        assert_eq!(
            decode_filetime("-1"),
            Err(TimeError::Negative { ticks: -1 })
        );
        assert!(matches!(
            decode_filetime("-9223372036854775808"),
            Err(TimeError::Negative { .. })
        ));
        for text in [
            "",
            "abc",
            "12 3",
            "1e9",
            "+5",
            "99999999999999999999",
            "0x10",
            "-",
        ] {
            assert!(
                matches!(decode_filetime(text), Err(TimeError::NotAnInteger { .. })),
                "{text:?}"
            );
        }
        assert!(to_filetime(Utc.with_ymd_and_hms(1600, 12, 31, 23, 59, 59).unwrap()).is_err());
    }

    #[test]
    fn generalized_time_forms() {
        let at = Utc.with_ymd_and_hms(2024, 1, 31, 15, 45, 2).unwrap();
        assert_eq!(decode_generalized_time("20240131154502.0Z"), Ok(Some(at)));
        assert_eq!(decode_generalized_time("20240131154502Z"), Ok(Some(at)));
        assert_eq!(decode_generalized_time("20240131164502+0100"), Ok(Some(at)));
        assert_eq!(decode_generalized_time("20240131144502-01"), Ok(Some(at)));
        assert_eq!(
            decode_generalized_time("202401311545Z"),
            Ok(Some(Utc.with_ymd_and_hms(2024, 1, 31, 15, 45, 0).unwrap()))
        );
        assert_eq!(
            decode_generalized_time("2024013115Z"),
            Ok(Some(Utc.with_ymd_and_hms(2024, 1, 31, 15, 0, 0).unwrap()))
        );
        assert_eq!(
            decode_generalized_time("20240131154502.25Z")
                .unwrap()
                .unwrap()
                .timestamp_subsec_millis(),
            250
        );
        assert_eq!(to_generalized_time(at), "20240131154502.0Z");
    }

    #[test]
    fn garbage_generalized_time_is_an_error() {
        for text in [
            "",
            "2024",
            "20241301000000.0Z",
            "20240230000000.0Z",
            "20240131250000.0Z",
            "20240131154502.0",
            "20240131154502.Z",
            "20240131154502.0Zjunk",
            "2024013115450x.0Z",
            "20240131154502+2500",
            "yesterday",
            "２０２４0131154502.0Z",
        ] {
            assert!(
                matches!(
                    decode_generalized_time(text),
                    Err(TimeError::BadGeneralizedTime { .. })
                ),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn filetime_round_trips_over_the_whole_range(ticks in 1i64..i64::MAX) {
            let at = filetime_from_ticks(ticks).unwrap().unwrap();
            prop_assert_eq!(to_filetime(at).unwrap(), ticks);
            prop_assert_eq!(decode_filetime(&ticks.to_string()).unwrap(), Some(at));
        }

        #[test]
        fn negative_filetimes_are_rejected(ticks in i64::MIN..0) {
            prop_assert_eq!(filetime_from_ticks(ticks), Err(TimeError::Negative { ticks }));
        }

        #[test]
        fn generalized_time_round_trips(secs in -11_644_473_599i64..253_402_300_799) {
            let at = Utc.timestamp_opt(secs, 0).unwrap();
            prop_assert_eq!(decode_generalized_time(&to_generalized_time(at)).unwrap(), Some(at));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = decode_filetime(&text);
            let _ = decode_pwd_last_set(&text);
            let _ = decode_generalized_time(&text);
        }
    }
}
