//! `userAccountControl` and `msDS-User-Account-Control-Computed` bit flags.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

bitflags::bitflags! {
    /// The `userAccountControl` bits (MS-ADTS 2.2.16), every documented one.
    ///
    /// AD does **not** keep `LOCKOUT` and `PASSWORD_EXPIRED` current in `userAccountControl`;
    /// they are reliable only in the constructed `msDS-User-Account-Control-Computed`, which
    /// uses the same bit values. Unknown bits are kept (`from_bits_retain`).
    #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct UserAccountControl: u32 {
        /// The logon script is executed.
        const SCRIPT = 0x0000_0001;
        /// The account is disabled.
        const ACCOUNTDISABLE = 0x0000_0002;
        /// A home directory is required.
        const HOMEDIR_REQUIRED = 0x0000_0008;
        /// Locked out (only current in the computed attribute).
        const LOCKOUT = 0x0000_0010;
        /// No password is required.
        const PASSWD_NOTREQD = 0x0000_0020;
        /// The user cannot change the password (not enforced through this bit on read).
        const PASSWD_CANT_CHANGE = 0x0000_0040;
        /// The password may be stored with reversible encryption.
        const ENCRYPTED_TEXT_PWD_ALLOWED = 0x0000_0080;
        /// An account for a user whose primary account is in another domain.
        const TEMP_DUPLICATE_ACCOUNT = 0x0000_0100;
        /// A default account type representing a typical user.
        const NORMAL_ACCOUNT = 0x0000_0200;
        /// A trust account for a domain that trusts other domains.
        const INTERDOMAIN_TRUST_ACCOUNT = 0x0000_0800;
        /// A computer account for a workstation or member server.
        const WORKSTATION_TRUST_ACCOUNT = 0x0000_1000;
        /// A computer account for a domain controller.
        const SERVER_TRUST_ACCOUNT = 0x0000_2000;
        /// The password never expires.
        const DONT_EXPIRE_PASSWORD = 0x0001_0000;
        /// An MNS logon account.
        const MNS_LOGON_ACCOUNT = 0x0002_0000;
        /// Interactive logon requires a smart card.
        const SMARTCARD_REQUIRED = 0x0004_0000;
        /// Trusted for Kerberos unconstrained delegation.
        const TRUSTED_FOR_DELEGATION = 0x0008_0000;
        /// Sensitive and cannot be delegated.
        const NOT_DELEGATED = 0x0010_0000;
        /// Only DES encryption types for Kerberos keys.
        const USE_DES_KEY_ONLY = 0x0020_0000;
        /// Kerberos pre-authentication is not required (AS-REP roastable).
        const DONT_REQ_PREAUTH = 0x0040_0000;
        /// The password has expired (only current in the computed attribute).
        const PASSWORD_EXPIRED = 0x0080_0000;
        /// Trusted to authenticate for delegation (protocol transition).
        const TRUSTED_TO_AUTH_FOR_DELEGATION = 0x0100_0000;
        /// The account is a read-only domain controller.
        const PARTIAL_SECRETS_ACCOUNT = 0x0400_0000;
    }
}

/// Why a bit-field attribute could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a 32-bit integer (signed or unsigned decimal), got {shape}")]
pub struct BitsError {
    /// What the text looked like.
    pub shape: String,
}

/// Parse a 32-bit attribute that AD writes as signed decimal (`groupType` -2147483646) but
/// that tools sometimes write unsigned (2147483650). Both give the same bits.
pub(crate) fn parse_bits(text: &str) -> Result<u32, BitsError> {
    let err = || BitsError {
        shape: crate::entry::text_shape(text),
    };
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let value: i64 = text.parse().map_err(|_| err())?;
    if let Ok(signed) = i32::try_from(value) {
        Ok(signed as u32)
    } else {
        u32::try_from(value).map_err(|_| err())
    }
}

impl UserAccountControl {
    /// Decode the attribute's text value.
    pub fn parse(text: &str) -> Result<Self, BitsError> {
        parse_bits(text).map(Self::from_bits_retain)
    }

    /// Names of the set bits that have a name, in bit order.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter_names().map(|(name, _)| name).collect()
    }

    /// A computer (workstation or server) or domain-trust account rather than a person.
    pub fn is_machine_account(&self) -> bool {
        self.intersects(
            Self::WORKSTATION_TRUST_ACCOUNT
                | Self::SERVER_TRUST_ACCOUNT
                | Self::INTERDOMAIN_TRUST_ACCOUNT,
        )
    }
}

impl std::fmt::Debug for UserAccountControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UserAccountControl({:#x}: {})",
            self.bits(),
            self.names().join(" | ")
        )
    }
}

#[derive(Serialize, Deserialize)]
struct BitsJson {
    value: u32,
    #[serde(default)]
    flags: Vec<String>,
}

/// JSON form: `{"value": 66048, "flags": ["NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"]}`.
/// Deserialization reads `value`; `flags` is informative.
impl Serialize for UserAccountControl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BitsJson {
            value: self.bits(),
            flags: self.names().into_iter().map(str::to_owned).collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for UserAccountControl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BitsJson::deserialize(deserializer).map(|json| Self::from_bits_retain(json.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_values() {
        let normal = UserAccountControl::parse("512").unwrap();
        assert_eq!(normal, UserAccountControl::NORMAL_ACCOUNT);
        let disabled = UserAccountControl::parse("514").unwrap();
        assert!(disabled.contains(UserAccountControl::ACCOUNTDISABLE));
        let never = UserAccountControl::parse("66048").unwrap();
        assert_eq!(never.names(), ["NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"]);
        assert!(
            UserAccountControl::parse("4096")
                .unwrap()
                .is_machine_account()
        );
        assert_eq!(
            serde_json::to_value(never).unwrap(),
            serde_json::json!({"value": 66048, "flags": ["NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"]})
        );
    }

    #[test]
    fn signed_and_unsigned_forms_agree() {
        assert_eq!(parse_bits("-2147483646"), Ok(0x8000_0002));
        assert_eq!(parse_bits("2147483650"), Ok(0x8000_0002));
        assert_eq!(parse_bits("4294967295"), Ok(u32::MAX));
        assert_eq!(parse_bits("-1"), Ok(u32::MAX));
    }

    #[test]
    fn garbage_is_an_error() {
        for text in [
            "",
            "-",
            "abc",
            "5 12",
            "4294967296",
            "-2147483649",
            "0x200",
            "+512",
            "１",
        ] {
            assert!(UserAccountControl::parse(text).is_err(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn every_i32_decodes_and_round_trips(value in any::<i32>()) {
            let uac = UserAccountControl::parse(&value.to_string()).unwrap();
            prop_assert_eq!(uac.bits(), value as u32);
            let json = serde_json::to_string(&uac).unwrap();
            let back: UserAccountControl = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, uac);
            // Named flags are exactly the documented bits that are set.
            let named = uac.names().len() as u32;
            prop_assert_eq!(named, (uac.bits() & UserAccountControl::all().bits()).count_ones());
        }
    }
}
