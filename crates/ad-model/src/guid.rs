//! Object GUIDs (`objectGUID`, `invocationId`).
//!
//! AD stores a GUID as 16 bytes whose first three fields are little-endian (the
//! `bytes_le` layout of MS-DTYP 2.3.4.2), so the wire bytes `c7 d4 fe d7 …` are **not** the
//! text `c7d4fed7-…`. The text form is lowercase `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
//! An object's GUID never changes on rename or move: it is the key we track objects by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An Active Directory object GUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(Uuid);

/// Why bytes or text could not be read as a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuidError {
    /// The binary value is not exactly 16 bytes.
    #[error("a binary GUID is exactly 16 bytes, this one has {len}")]
    BadLength {
        /// Length of the value.
        len: usize,
    },
    /// Text in none of the accepted forms.
    #[error(
        "{text:?} is not a GUID; expected 8-4-4-4-12 hex digits, optionally in braces, or 16 LDAP-escaped bytes like \\c7\\d4…"
    )]
    BadText {
        /// The text given (GUIDs are not secret).
        text: String,
    },
}

impl Guid {
    /// Wrap a [`Uuid`] whose fields are in their natural (text) order.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Guid(uuid)
    }

    /// The value as a [`Uuid`].
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Parse the 16 wire bytes of `objectGUID` (mixed-endian `bytes_le` layout).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GuidError> {
        let array: [u8; 16] = bytes
            .try_into()
            .map_err(|_| GuidError::BadLength { len: bytes.len() })?;
        Ok(Guid(Uuid::from_bytes_le(array)))
    }

    /// The 16 wire bytes, as AD stores them.
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0.to_bytes_le()
    }

    /// The value escaped for an LDAP filter: `(objectGUID=\c7\d4…)`.
    pub fn to_ldap_filter_value(&self) -> String {
        let mut out = String::with_capacity(48);
        for byte in self.to_bytes() {
            out.push('\\');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xF));
        }
        out
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0xF)])
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.0.hyphenated())
    }
}

impl FromStr for Guid {
    type Err = GuidError;

    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (any case), the same in braces, and
    /// the LDAP filter form of the 16 wire bytes (`\c7\d4\fe…`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || GuidError::BadText {
            text: text.to_owned(),
        };
        if text.starts_with('\\') {
            let mut bytes = [0u8; 16];
            let raw = text.as_bytes();
            if raw.len() != 48 {
                return Err(bad());
            }
            for (slot, chunk) in bytes.iter_mut().zip(raw.chunks_exact(3)) {
                if chunk[0] != b'\\' {
                    return Err(bad());
                }
                let hi = char::from(chunk[1]).to_digit(16).ok_or_else(bad)?;
                let lo = char::from(chunk[2]).to_digit(16).ok_or_else(bad)?;
                *slot = (hi * 16 + lo) as u8;
            }
            return Ok(Guid(Uuid::from_bytes_le(bytes)));
        }
        let inner = match text.strip_prefix('{') {
            Some(rest) => rest.strip_suffix('}').ok_or_else(bad)?,
            None => text,
        };
        // Only the hyphenated form: `Uuid::parse_str` also takes URNs and bare hex, which
        // an operator typing a GUID does not mean.
        if inner.len() != 36 {
            return Err(bad());
        }
        Uuid::try_parse(inner).map(Guid).map_err(|_| bad())
    }
}

impl TryFrom<&[u8]> for Guid {
    type Error = GuidError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Guid::from_bytes(bytes)
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Guid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // From Microsoft's documentation of objectGUID / the `bytes_le` layout: the text
    // 6f9619ff-8b86-d011-b42d-00c04fc964ff is stored as ff 19 96 6f 86 8b 11 d0 b4 2d …
    const WIRE: [u8; 16] = [
        0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64,
        0xff,
    ];
    const TEXT: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn known_vector() {
        let guid = Guid::from_bytes(&WIRE).unwrap();
        assert_eq!(guid.to_string(), TEXT);
        assert_eq!(guid.to_bytes(), WIRE);
        assert_eq!(TEXT.parse::<Guid>().unwrap(), guid);
        assert_eq!(
            "{6F9619FF-8B86-D011-B42D-00C04FC964FF}"
                .parse::<Guid>()
                .unwrap(),
            guid
        );
        let escaped = guid.to_ldap_filter_value();
        assert_eq!(
            escaped,
            "\\ff\\19\\96\\6f\\86\\8b\\11\\d0\\b4\\2d\\00\\c0\\4f\\c9\\64\\ff"
        );
        assert_eq!(escaped.parse::<Guid>().unwrap(), guid);
        assert_eq!(serde_json::to_string(&guid).unwrap(), format!("\"{TEXT}\""));
    }

    #[test]
    fn wrong_lengths_and_text_are_errors() {
        assert_eq!(
            Guid::from_bytes(&[0u8; 17]),
            Err(GuidError::BadLength { len: 17 })
        );
        assert_eq!(
            Guid::from_bytes(&[0u8; 15]),
            Err(GuidError::BadLength { len: 15 })
        );
        assert_eq!(Guid::from_bytes(&[]), Err(GuidError::BadLength { len: 0 }));
        for text in [
            "",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "6f9619ff-8b86-d011-b42d-00c04fc964fg",
            "urn:uuid:6f9619ff-8b86-d011-b42d-00c04fc964ff",
            "\\ff\\19",
            "\\ff\\19\\96\\6f\\86\\8b\\11\\d0\\b4\\2d\\00\\c0\\4f\\c9\\64\\zz",
        ] {
            assert!(text.parse::<Guid>().is_err(), "{text:?} should not parse");
        }
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::array::uniform16(any::<u8>())) {
            let guid = Guid::from_bytes(&bytes).unwrap();
            prop_assert_eq!(guid.to_bytes(), bytes);
            prop_assert_eq!(guid.to_string().parse::<Guid>().unwrap(), guid);
            prop_assert_eq!(guid.to_ldap_filter_value().parse::<Guid>().unwrap(), guid);
            let text = guid.to_string();
            prop_assert_eq!(text.to_lowercase(), text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,60}") {
            let _ = text.parse::<Guid>();
        }
    }
}
