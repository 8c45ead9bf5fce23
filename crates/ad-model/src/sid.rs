//! Security identifiers (`objectSid`, `sIDHistory`, `tokenGroups`).
//!
//! Wire layout (MS-DTYP 2.4.2.2): byte 0 revision (always 1), byte 1 the number of
//! sub-authorities (0..=15), bytes 2..8 the identifier authority as a 48-bit big-endian
//! integer, then that many 32-bit **little-endian** sub-authorities. Text form is
//! `S-1-<authority>-<sub>-<sub>…`; an authority of 2^32 or more is written in hex
//! (`0x…`) as Windows does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest number of sub-authorities a SID can carry (MS-DTYP).
pub const MAX_SUB_AUTHORITIES: usize = 15;

/// A Windows security identifier such as `S-1-5-21-3623811015-3361044348-30300820-1013`.
///
/// `Sid` is `Copy` (it stores its sub-authorities inline), orders and hashes by value, and
/// serializes as its text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    revision: u8,
    authority: u64,
    count: u8,
    sub_authorities: [u32; MAX_SUB_AUTHORITIES],
}

/// Why bytes or text could not be read as a SID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidError {
    /// The binary value is shorter than the 8-byte header.
    #[error("a binary SID needs at least 8 bytes, this one has {len}")]
    TooShort {
        /// Length of the value.
        len: usize,
    },
    /// Revision byte other than 1.
    #[error("SID revision must be 1, found {revision}")]
    BadRevision {
        /// The revision found.
        revision: u8,
    },
    /// More than 15 sub-authorities announced or written.
    #[error("a SID has at most 15 sub-authorities, this one declares {count}")]
    TooManySubAuthorities {
        /// The count found.
        count: usize,
    },
    /// Length does not match 8 + 4 × sub-authority count.
    #[error("a SID with {count} sub-authorities is {expected} bytes long, this one has {len}")]
    LengthMismatch {
        /// Declared sub-authority count.
        count: u8,
        /// Length implied by the count.
        expected: usize,
        /// Actual length.
        len: usize,
    },
    /// Text that is not `S-1-<authority>(-<sub>)*`.
    #[error(
        "{text:?} is not a SID; expected text like S-1-5-21-1004336348-1177238915-682003330-512"
    )]
    BadText {
        /// The text given (SIDs are not secret).
        text: String,
    },
}

impl Sid {
    /// Build a SID from its identifier authority (48 bits) and sub-authorities.
    pub fn new(authority: u64, sub_authorities: &[u32]) -> Result<Self, SidError> {
        if sub_authorities.len() > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities {
                count: sub_authorities.len(),
            });
        }
        if authority >= 1 << 48 {
            return Err(SidError::BadText {
                text: format!("S-1-{authority}"),
            });
        }
        let mut subs = [0u32; MAX_SUB_AUTHORITIES];
        subs[..sub_authorities.len()].copy_from_slice(sub_authorities);
        Ok(Sid {
            revision: 1,
            authority,
            count: sub_authorities.len() as u8,
            sub_authorities: subs,
        })
    }

    /// Parse the binary form found in `objectSid`. The length must be exact.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SidError> {
        if bytes.len() < 8 {
            return Err(SidError::TooShort { len: bytes.len() });
        }
        let revision = bytes[0];
        if revision != 1 {
            return Err(SidError::BadRevision { revision });
        }
        let count = bytes[1];
        if usize::from(count) > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities {
                count: usize::from(count),
            });
        }
        let expected = 8 + 4 * usize::from(count);
        if bytes.len() != expected {
            return Err(SidError::LengthMismatch {
                count,
                expected,
                len: bytes.len(),
            });
        }
        let authority = bytes[2..8]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut subs = [0u32; MAX_SUB_AUTHORITIES];
        for (slot, chunk) in subs.iter_mut().zip(bytes[8..].chunks_exact(4)) {
            *slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(Sid {
            revision,
            authority,
            count,
            sub_authorities: subs,
        })
    }

    /// The binary form, as AD stores it in `objectSid`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 4 * usize::from(self.count));
        out.push(self.revision);
        out.push(self.count);
        out.extend_from_slice(&self.authority.to_be_bytes()[2..8]);
        for sub in self.sub_authorities() {
            out.extend_from_slice(&sub.to_le_bytes());
        }
        out
    }

    /// The 48-bit identifier authority (5 for NT AUTHORITY).
    pub fn authority(&self) -> u64 {
        self.authority
    }

    /// The sub-authorities, in order.
    pub fn sub_authorities(&self) -> &[u32] {
        &self.sub_authorities[..usize::from(self.count)]
    }

    /// The relative identifier: the last sub-authority, if there is any.
    pub fn rid(&self) -> Option<u32> {
        self.sub_authorities().last().copied()
    }

    /// For a domain account SID (`S-1-5-21-a-b-c-RID`), the domain SID `S-1-5-21-a-b-c`.
    ///
    /// Returns `None` for SIDs that are not domain-relative (BUILTIN, well-known, …).
    pub fn domain_sid(&self) -> Option<Sid> {
        let subs = self.sub_authorities();
        if self.authority == 5 && subs.len() == 5 && subs[0] == 21 {
            Sid::new(5, &subs[..4]).ok()
        } else {
            None
        }
    }

    /// Whether this is a domain SID itself (`S-1-5-21-a-b-c`).
    pub fn is_domain(&self) -> bool {
        let subs = self.sub_authorities();
        self.authority == 5 && subs.len() == 4 && subs[0] == 21
    }

    /// Append a RID to a domain SID: `S-1-5-21-a-b-c` + 513 → `S-1-5-21-a-b-c-513`.
    /// This is how `primaryGroupID` becomes the primary group's SID.
    pub fn with_rid(&self, rid: u32) -> Result<Sid, SidError> {
        let mut subs = self.sub_authorities().to_vec();
        subs.push(rid);
        Sid::new(self.authority, &subs)
    }

    /// The well-known name of this SID, if it is one of the common built-in or
    /// domain-relative principals (`S-1-5-32-544` → `BUILTIN\Administrators`,
    /// `<domain>-512` → `Domain Admins`).
    pub fn well_known_name(&self) -> Option<&'static str> {
        let subs = self.sub_authorities();
        match (self.authority, subs) {
            (0, [0]) => Some("Nobody"),
            (1, [0]) => Some("Everyone"),
            (3, [0]) => Some("Creator Owner"),
            (3, [1]) => Some("Creator Group"),
            (5, [1]) => Some("Dialup"),
            (5, [2]) => Some("Network"),
            (5, [3]) => Some("Batch"),
            (5, [4]) => Some("Interactive"),
            (5, [6]) => Some("Service"),
            (5, [7]) => Some("Anonymous Logon"),
            (5, [9]) => Some("Enterprise Domain Controllers"),
            (5, [10]) => Some("Principal Self"),
            (5, [11]) => Some("Authenticated Users"),
            (5, [18]) => Some("Local System"),
            (5, [19]) => Some("Local Service"),
            (5, [20]) => Some("Network Service"),
            (5, [32]) => Some("BUILTIN"),
            (5, [32, rid]) => builtin_name(*rid),
            (5, [21, _, _, _, rid]) => domain_rid_name(*rid),
            _ => None,
        }
    }

    /// Whether membership in this group makes an account an administrator of the domain or
    /// forest: BUILTIN\Administrators, Domain Admins, Enterprise Admins, Schema Admins.
    pub fn is_admin_group(&self) -> bool {
        let subs = self.sub_authorities();
        matches!(
            (self.authority, subs),
            (5, [32, 544]) | (5, [21, _, _, _, 512 | 518 | 519])
        )
    }
}

impl Sid {
    /// Whether membership in this group is privileged in the domain: the groups AD protects
    /// with AdminSDHolder (the ones that set `adminCount`): BUILTIN\\Administrators, Account
    /// Operators, Server Operators, Print Operators, Backup Operators, Replicator; Domain
    /// Admins, Domain Controllers, Schema Admins, Enterprise Admins, Read-only Domain
    /// Controllers, Key Admins, Enterprise Key Admins.
    pub fn is_privileged_group(&self) -> bool {
        let subs = self.sub_authorities();
        matches!(
            (self.authority, subs),
            (5, [32, 544 | 548 | 549 | 550 | 551 | 552])
                | (5, [21, _, _, _, 512 | 516 | 518 | 519 | 521 | 526 | 527])
        )
    }
}

fn builtin_name(rid: u32) -> Option<&'static str> {
    Some(match rid {
        544 => "BUILTIN\\Administrators",
        545 => "BUILTIN\\Users",
        546 => "BUILTIN\\Guests",
        547 => "BUILTIN\\Power Users",
        548 => "BUILTIN\\Account Operators",
        549 => "BUILTIN\\Server Operators",
        550 => "BUILTIN\\Print Operators",
        551 => "BUILTIN\\Backup Operators",
        552 => "BUILTIN\\Replicator",
        554 => "BUILTIN\\Pre-Windows 2000 Compatible Access",
        555 => "BUILTIN\\Remote Desktop Users",
        556 => "BUILTIN\\Network Configuration Operators",
        558 => "BUILTIN\\Performance Monitor Users",
        559 => "BUILTIN\\Performance Log Users",
        560 => "BUILTIN\\Windows Authorization Access Group",
        562 => "BUILTIN\\Distributed COM Users",
        568 => "BUILTIN\\IIS_IUSRS",
        569 => "BUILTIN\\Cryptographic Operators",
        573 => "BUILTIN\\Event Log Readers",
        574 => "BUILTIN\\Certificate Service DCOM Access",
        575 => "BUILTIN\\RDS Remote Access Servers",
        578 => "BUILTIN\\Hyper-V Administrators",
        579 => "BUILTIN\\Access Control Assistance Operators",
        580 => "BUILTIN\\Remote Management Users",
        _ => return None,
    })
}

fn domain_rid_name(rid: u32) -> Option<&'static str> {
    Some(match rid {
        500 => "Administrator",
        501 => "Guest",
        502 => "krbtgt",
        512 => "Domain Admins",
        513 => "Domain Users",
        514 => "Domain Guests",
        515 => "Domain Computers",
        516 => "Domain Controllers",
        517 => "Cert Publishers",
        518 => "Schema Admins",
        519 => "Enterprise Admins",
        520 => "Group Policy Creator Owners",
        521 => "Read-only Domain Controllers",
        522 => "Cloneable Domain Controllers",
        525 => "Protected Users",
        526 => "Key Admins",
        527 => "Enterprise Key Admins",
        553 => "RAS and IAS Servers",
        571 => "Allowed RODC Password Replication Group",
        572 => "Denied RODC Password Replication Group",
        _ => return None,
    })
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}-", self.revision)?;
        if self.authority >= 1 << 32 {
            write!(f, "0x{:012X}", self.authority)?;
        } else {
            write!(f, "{}", self.authority)?;
        }
        for sub in self.sub_authorities() {
            write!(f, "-{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({self})")
    }
}

impl FromStr for Sid {
    type Err = SidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SidError::BadText {
            text: text.to_owned(),
        };
        let rest = text
            .strip_prefix("S-1-")
            .or_else(|| text.strip_prefix("s-1-"))
            .ok_or_else(bad)?;
        let mut parts = rest.split('-');
        let authority_text = parts.next().ok_or_else(bad)?;
        let authority = if let Some(hex) = authority_text
            .strip_prefix("0x")
            .or_else(|| authority_text.strip_prefix("0X"))
        {
            parse_digits(hex, 16).ok_or_else(bad)?
        } else {
            parse_digits(authority_text, 10).ok_or_else(bad)?
        };
        if authority >= 1 << 48 {
            return Err(bad());
        }
        let mut subs = Vec::with_capacity(MAX_SUB_AUTHORITIES);
        for part in parts {
            let value = parse_digits(part, 10).ok_or_else(bad)?;
            let value = u32::try_from(value).map_err(|_| bad())?;
            subs.push(value);
        }
        if subs.len() > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities { count: subs.len() });
        }
        Sid::new(authority, &subs)
    }
}

/// Strict digits-only parse (no sign, no whitespace, 1..=16 digits).
fn parse_digits(text: &str, radix: u32) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(text, radix).ok()
}

impl TryFrom<&[u8]> for Sid {
    type Error = SidError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Sid::from_bytes(bytes)
    }
}

impl Serialize for Sid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ADMINISTRATORS: [u8; 16] = [
        0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x20, 0x00, 0x00, 0x00, 0x20, 0x02, 0x00,
        0x00,
    ];

    #[test]
    fn builtin_administrators_known_vector() {
        let sid = Sid::from_bytes(&ADMINISTRATORS).unwrap();
        assert_eq!(sid.to_string(), "S-1-5-32-544");
        assert_eq!(sid.to_bytes(), ADMINISTRATORS);
        assert_eq!(sid.rid(), Some(544));
        assert_eq!(sid.well_known_name(), Some("BUILTIN\\Administrators"));
        assert!(sid.is_admin_group());
        assert_eq!(sid.domain_sid(), None);
        assert_eq!("S-1-5-32-544".parse::<Sid>().unwrap(), sid);
    }

    #[test]
    fn domain_sid_and_rid() {
        // MS-DTYP 2.4.2.3 example of a domain account SID.
        let sid: Sid = "S-1-5-21-3623811015-3361044348-30300820-1013"
            .parse()
            .unwrap();
        assert_eq!(sid.rid(), Some(1013));
        let domain = sid.domain_sid().unwrap();
        assert_eq!(
            domain.to_string(),
            "S-1-5-21-3623811015-3361044348-30300820"
        );
        assert!(domain.is_domain());
        let users = domain.with_rid(513).unwrap();
        assert_eq!(users.well_known_name(), Some("Domain Users"));
        assert!(!users.is_admin_group());
        assert!(domain.with_rid(512).unwrap().is_admin_group());
        assert!(domain.with_rid(519).unwrap().is_admin_group());
        assert_eq!(
            sid.to_bytes(),
            [
                1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 0xC7, 0xF7, 0xFE, 0xD7, 0x7C, 0x77, 0x55,
                0xC8, 0x94, 0x5A, 0xCE, 0x01, 0xF5, 0x03, 0, 0
            ]
        );
    }

    #[test]
    fn large_authority_prints_in_hex() {
        let sid = Sid::new(0x0000_1234_5678_9ABC, &[1]).unwrap();
        assert_eq!(sid.to_string(), "S-1-0x123456789ABC-1");
        assert_eq!(sid.to_string().parse::<Sid>().unwrap(), sid);
    }

    #[test]
    fn malformed_binary_is_an_error() {
        assert_eq!(Sid::from_bytes(&[]), Err(SidError::TooShort { len: 0 }));
        assert_eq!(
            Sid::from_bytes(&ADMINISTRATORS[..15]),
            Err(SidError::LengthMismatch {
                count: 2,
                expected: 16,
                len: 15
            })
        );
        let mut long = ADMINISTRATORS.to_vec();
        long.push(0);
        assert!(matches!(
            Sid::from_bytes(&long),
            Err(SidError::LengthMismatch { len: 17, .. })
        ));
        let mut rev = ADMINISTRATORS;
        rev[0] = 2;
        assert_eq!(
            Sid::from_bytes(&rev),
            Err(SidError::BadRevision { revision: 2 })
        );
        let mut count = vec![1u8, 16, 0, 0, 0, 0, 0, 5];
        count.extend(std::iter::repeat_n(0, 64));
        assert_eq!(
            Sid::from_bytes(&count),
            Err(SidError::TooManySubAuthorities { count: 16 })
        );
    }

    #[test]
    fn malformed_text_is_an_error() {
        for text in [
            "",
            "S-1",
            "S-1-",
            "S-2-5-32-544",
            "S-1-5--544",
            "S-1-5-32-4294967296",
            "S-1-5-32-+5",
            "S-1-5-32-544 ",
            "S-1-281474976710656-1",
            "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
        ] {
            assert!(text.parse::<Sid>().is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn serde_is_text() {
        let sid: Sid = "S-1-5-32-544".parse().unwrap();
        assert_eq!(serde_json::to_string(&sid).unwrap(), "\"S-1-5-32-544\"");
        assert_eq!(
            serde_json::from_str::<Sid>("\"S-1-5-32-544\"").unwrap(),
            sid
        );
        assert!(serde_json::from_str::<Sid>("\"S-1-x\"").is_err());
    }

    proptest! {
        #[test]
        fn bytes_text_round_trip(authority in 0u64..(1 << 48), subs in proptest::collection::vec(any::<u32>(), 0..=15)) {
            let sid = Sid::new(authority, &subs).unwrap();
            let bytes = sid.to_bytes();
            prop_assert_eq!(bytes.len(), 8 + 4 * subs.len());
            let back = Sid::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, sid);
            let text = sid.to_string();
            prop_assert_eq!(text.parse::<Sid>().unwrap(), sid);
            prop_assert_eq!(back.sub_authorities(), &subs[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(sid) = Sid::from_bytes(&bytes) {
                prop_assert_eq!(sid.to_bytes(), bytes);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,60}") {
            if let Ok(sid) = text.parse::<Sid>() {
                prop_assert_eq!(sid.to_string().parse::<Sid>().unwrap(), sid);
            }
        }
    }
}
