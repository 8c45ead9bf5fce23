//! Ranged attribute retrieval (AD's MaxValRange, 1500 by default).
//!
//! A group with more members than MaxValRange comes back with an empty `member` and a
//! `member;range=0-1499` attribute. The rest is read with base searches for
//! `member;range=1500-*`, `member;range=3000-*`, … until the returned name ends in `-*`.
//! Any attribute can be ranged (`memberOf` of a user in thousands of groups too), so this
//! works on every `name;range=low-high` it finds and folds the values back into `name`.

use ad_model::RawEntry;

use crate::error::SourceError;
use crate::session::Session;

/// A parsed `name;range=low-high` attribute description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The attribute (`member`).
    pub attribute: String,
    /// First value index.
    pub low: u64,
    /// Last value index, `None` for `*` (this was the last chunk).
    pub high: Option<u64>,
}

/// Parse `member;range=0-1499` / `member;range=1500-*` (case-insensitive); `None` if the
/// name carries no range option.
pub fn parse_range(name: &str) -> Option<Range> {
    let lower = name.to_ascii_lowercase();
    let (attribute, spec) = lower.split_once(";range=")?;
    // The attribute keeps its spelling: ASCII lowercasing kept every byte offset.
    let attribute = name.get(..attribute.len())?.to_owned();
    // Other options may follow (";binary"); the range is up to the next ';'.
    let spec = spec.split(';').next().unwrap_or(spec);
    let (low, high) = spec.split_once('-')?;
    let low = low.parse().ok()?;
    let high = if high == "*" {
        None
    } else {
        Some(high.parse().ok()?)
    };
    Some(Range {
        attribute,
        low,
        high,
    })
}

/// Most follow-up reads one attribute may need (1.5 billion values at 1500 per read).
const MAX_FOLLOW_UPS: usize = 1_000_000;

/// Most values one ranged attribute may accumulate. AD's own limits are far below (a group
/// of five million members is extreme); a server that keeps answering past this is broken
/// or hostile, and the entry is skipped rather than the process running out of memory.
pub const MAX_RANGED_VALUES: usize = 10_000_000;

/// Fetch every missing range of every ranged attribute of `entry` and fold the values into
/// the plain attribute. Never loses a value: a follow-up that makes no progress is an error.
pub(crate) async fn complete_ranges(
    session: &mut Session,
    entry: &mut RawEntry,
) -> Result<(), SourceError> {
    let ranged: Vec<(String, Range)> = entry
        .attribute_names()
        .filter_map(|n| parse_range(n).map(|r| (n.to_owned(), r)))
        .collect();
    for (name, range) in ranged {
        let mut values = entry.remove(&name).unwrap_or_default();
        // `None` past u64::MAX: an absurd bound from the server, not a value count.
        let mut next_low = match range.high {
            Some(high) => Some(
                high.checked_add(1)
                    .ok_or_else(|| absurd(session, entry.dn(), &name))?,
            ),
            None => None,
        };
        let mut follow_ups = 0usize;
        while let Some(low) = next_low {
            follow_ups += 1;
            let wanted = format!("{};range={low}-*", range.attribute);
            let fetched = fetch_range(session, entry.dn(), &wanted).await?;
            session.counters.range_fetches += 1;
            let read = values.len();
            let stuck = || SourceError::Search {
                host: session.conn.host().to_owned(),
                base: entry.dn().to_owned(),
                filter: "(objectClass=*)".to_owned(),
                result_code: 0,
                reason: format!(
                    "the ranged read of {wanted} made no progress; {read} values were read and the rest cannot be, so the entry is not emitted half-read"
                ),
            };
            let Some(fetched) = fetched else {
                return Err(stuck());
            };
            let mut got = None;
            for (fetched_name, fetched_values) in fetched.attributes() {
                if let Some(r) = parse_range(fetched_name)
                    && r.attribute.eq_ignore_ascii_case(&range.attribute)
                {
                    got = Some((r, fetched_values.to_vec()));
                }
            }
            match got {
                Some((r, more)) if r.low == low => {
                    values.extend(more);
                    next_low = match r.high {
                        None => None,
                        Some(h) if h >= low => match h.checked_add(1) {
                            Some(next) => Some(next),
                            None => {
                                let name = format!("{};range={}-{h}", r.attribute, r.low);
                                return Err(absurd(session, entry.dn(), &name));
                            }
                        },
                        Some(_) => return Err(stuck()),
                    };
                }
                // The server answered the whole remainder without a range option.
                None if !fetched.values(&range.attribute).is_empty() => {
                    values.extend(fetched.values(&range.attribute).iter().cloned());
                    next_low = None;
                }
                // Values were removed meanwhile and nothing is left past `low`.
                None => next_low = None,
                Some(_) => return Err(stuck()),
            }
            if follow_ups >= MAX_FOLLOW_UPS {
                return Err(stuck());
            }
            if values.len() > MAX_RANGED_VALUES {
                return Err(SourceError::Search {
                    host: session.conn.host().to_owned(),
                    base: entry.dn().to_owned(),
                    filter: "(objectClass=*)".to_owned(),
                    result_code: 0,
                    reason: format!(
                        "the ranged read of {} passed {MAX_RANGED_VALUES} values, more than any real directory holds in one attribute; the server is broken or hostile, so the entry is not emitted",
                        range.attribute
                    ),
                });
            }
        }
        let mut all = entry.remove(&range.attribute).unwrap_or_default();
        all.extend(values);
        entry.set(&range.attribute, all);
    }
    Ok(())
}

/// A range bound the next index cannot follow (`member;range=0-18446744073709551615`).
fn absurd(session: &Session, dn: &str, name: &str) -> SourceError {
    SourceError::Search {
        host: session.conn.host().to_owned(),
        base: dn.to_owned(),
        filter: "(objectClass=*)".to_owned(),
        result_code: 0,
        reason: format!(
            "the server answered {name}, a range bound past the largest index; the server is broken or hostile, so the entry is not emitted"
        ),
    }
}

async fn fetch_range(
    session: &mut Session,
    dn: &str,
    wanted: &str,
) -> Result<Option<RawEntry>, SourceError> {
    session
        .read_one_retrying(dn, ldap3::Scope::Base, "(objectClass=*)", &[wanted])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(
            parse_range("member;range=0-1499"),
            Some(Range {
                attribute: "member".into(),
                low: 0,
                high: Some(1499)
            })
        );
        assert_eq!(
            parse_range("member;Range=1500-*"),
            Some(Range {
                attribute: "member".into(),
                low: 1500,
                high: None
            })
        );
        assert_eq!(
            parse_range("memberOf;range=3000-4499").map(|r| r.attribute),
            Some("memberOf".into())
        );
        assert_eq!(parse_range("member"), None);
        assert_eq!(parse_range("member;range=x-1"), None);
        assert_eq!(parse_range("member;range=5"), None);
        assert_eq!(
            parse_range("member;range=1-2;binary").map(|r| r.high),
            Some(Some(2))
        );
    }
}
