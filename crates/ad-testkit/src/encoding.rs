//! Small encoders for AD's binary and textual attribute formats.
//!
//! These are deliberately private re-implementations (not the product's decoders), so a bug in
//! one side cannot hide the same bug in the other: objectSid, objectGUID (`bytes_le`),
//! FILETIME and GeneralizedTime.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use uuid::Uuid;

use crate::error::{Result, TestkitError};

/// FILETIME "never" as AD writes it in `accountExpires` and friends.
pub const FILETIME_NEVER: i64 = i64::MAX;

/// 100-ns intervals between 1601-01-01 and 1970-01-01.
const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

/// Encodes a SID from its identifier authority and sub-authorities:
/// revision 1, sub-authority count, 48-bit big-endian authority, u32 little-endian sub-authorities.
pub fn sid_bytes(authority: u64, sub_authorities: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 4 * sub_authorities.len());
    out.push(1);
    out.push(u8::try_from(sub_authorities.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&authority.to_be_bytes()[2..8]);
    for sub in sub_authorities {
        out.extend_from_slice(&sub.to_le_bytes());
    }
    out
}

/// Encodes a SID given as text (`S-1-5-21-1-2-3-1104`).
pub fn sid_from_str(sid: &str) -> Result<Vec<u8>> {
    let bad = || TestkitError::InvalidSid(sid.to_string());
    let mut parts = sid.split('-');
    if !parts.next().is_some_and(|p| p.eq_ignore_ascii_case("S")) {
        return Err(bad());
    }
    if parts.next() != Some("1") {
        return Err(bad());
    }
    let authority: u64 = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
    if authority >= 1 << 48 {
        return Err(bad());
    }
    let subs: Vec<u32> = parts
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    if subs.len() > 15 {
        return Err(bad());
    }
    Ok(sid_bytes(authority, &subs))
}

/// Decodes a binary SID to text; `None` when the bytes are not a well-formed SID.
pub fn sid_to_string(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    if revision != 1 || rest.len() != 6 + 4 * usize::from(count) {
        return None;
    }
    let mut authority = [0u8; 8];
    authority[2..8].copy_from_slice(rest.get(..6)?);
    let mut text = format!("S-1-{}", u64::from_be_bytes(authority));
    for chunk in rest.get(6..)?.chunks_exact(4) {
        let sub = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        text.push_str(&format!("-{sub}"));
    }
    Some(text)
}

/// The 16 objectGUID bytes of a UUID (first three fields little-endian).
pub fn guid_bytes(guid: &Uuid) -> [u8; 16] {
    guid.to_bytes_le()
}

/// The UUID stored in 16 objectGUID bytes.
pub fn guid_from_bytes(bytes: &[u8]) -> Option<Uuid> {
    let array: [u8; 16] = bytes.try_into().ok()?;
    Some(Uuid::from_bytes_le(array))
}

/// A time as FILETIME (100-ns intervals since 1601-01-01 UTC).
pub fn filetime(time: DateTime<Utc>) -> i64 {
    let secs = time.timestamp();
    let sub = i64::from(time.timestamp_subsec_nanos() / 100);
    secs.saturating_mul(10_000_000)
        .saturating_add(sub)
        .saturating_add(FILETIME_UNIX_EPOCH)
}

/// A FILETIME back to a time; `None` for AD's "never" values (0 and `i64::MAX`) and out-of-range values.
pub fn filetime_to_time(value: i64) -> Option<DateTime<Utc>> {
    if value <= 0 || value == FILETIME_NEVER {
        return None;
    }
    let unix_100ns = value - FILETIME_UNIX_EPOCH;
    let secs = unix_100ns.div_euclid(10_000_000);
    let nanos = u32::try_from(unix_100ns.rem_euclid(10_000_000) * 100).ok()?;
    Utc.timestamp_opt(secs, nanos).single()
}

/// A time as AD GeneralizedTime: `YYYYMMDDHHMMSS.0Z`.
pub fn generalized_time(time: DateTime<Utc>) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}.0Z",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_administrators_vector() {
        let bytes = sid_from_str("S-1-5-32-544").unwrap();
        assert_eq!(
            bytes,
            [
                0x01, 0x02, 0, 0, 0, 0, 0, 0x05, 0x20, 0, 0, 0, 0x20, 0x02, 0, 0
            ]
        );
        assert_eq!(sid_to_string(&bytes).unwrap(), "S-1-5-32-544");
        assert!(sid_to_string(&bytes[..7]).is_none());
        assert!(sid_from_str("S-1-5-x").is_err());
    }

    #[test]
    fn guid_is_bytes_le() {
        let g = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        assert_eq!(
            guid_bytes(&g),
            [
                0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(guid_from_bytes(&guid_bytes(&g)), Some(g));
    }

    #[test]
    fn filetime_round_trip() {
        let t = Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap();
        // 1_709_294_400 s after the Unix epoch, plus the 1601 offset.
        assert_eq!(filetime(t), 133_537_680_000_000_000);
        assert_eq!(filetime_to_time(filetime(t)), Some(t));
        assert_eq!(filetime_to_time(0), None);
        assert_eq!(filetime_to_time(FILETIME_NEVER), None);
        assert_eq!(generalized_time(t), "20240301120000.0Z");
    }
}
