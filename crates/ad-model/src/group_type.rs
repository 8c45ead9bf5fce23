//! `groupType`: kind (security / distribution), scope, the flag bits, and the visibility
//! picker — exactly as MS-ADTS 2.2.12 defines them. The scope is always one of the three
//! scope bits; "created by the system" (0x1) and the Authorization Manager bits are flags
//! beside it, never a scope: `BUILTIN\Administrators` (0x80000005) is a *domain-local*
//! security group that the system created.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::uac::{BitsError, parse_bits};

/// The `groupType` attribute (MS-ADTS 2.2.12), kept as its raw 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupType(u32);

/// Security groups can be used in ACLs; distribution groups are mailing lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// `GROUP_TYPE_SECURITY_ENABLED` (0x80000000) is set.
    Security,
    /// The security bit is clear.
    Distribution,
}

/// Group scope: exactly one of the three scope bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupScope {
    /// 0x2: members from its own domain, usable across the forest.
    Global,
    /// 0x4: members from anywhere, usable in its own domain.
    DomainLocal,
    /// 0x8: members from anywhere in the forest, usable anywhere.
    Universal,
    /// Zero or several scope bits: AD never writes this; reported rather than guessed.
    Unknown,
}

/// The Qualys group map's `visibility`, a "function picker based on groupType lookup".
///
/// AD has no visibility attribute, so this is our documented lookup:
///
/// | groupType                       | visibility |
/// |---------------------------------|------------|
/// | system-created (0x1, builtin)   | `System`   |
/// | distribution (security bit off) | `Public`   |
/// | security (0x80000000)           | `Private`  |
///
/// Distribution groups are address lists published in the global address list (anyone may
/// see and mail them); security groups grant access and are not published; builtin groups
/// belong to the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Visibility {
    /// Distribution group.
    Public,
    /// Security group.
    Private,
    /// System-created (builtin) group.
    System,
}

impl GroupType {
    /// System-created group bit.
    pub const SYSTEM: u32 = 0x0000_0001;
    /// Global scope bit.
    pub const GLOBAL: u32 = 0x0000_0002;
    /// Domain-local scope bit.
    pub const DOMAIN_LOCAL: u32 = 0x0000_0004;
    /// Universal scope bit.
    pub const UNIVERSAL: u32 = 0x0000_0008;
    /// Authorization Manager basic application group.
    pub const APP_BASIC: u32 = 0x0000_0010;
    /// Authorization Manager LDAP query group.
    pub const APP_QUERY: u32 = 0x0000_0020;
    /// Security-enabled bit.
    pub const SECURITY_ENABLED: u32 = 0x8000_0000;

    /// From the raw bits.
    pub fn from_bits(bits: u32) -> Self {
        GroupType(bits)
    }

    /// Decode the attribute's text (AD writes it signed: `-2147483646`).
    pub fn parse(text: &str) -> Result<Self, BitsError> {
        parse_bits(text).map(GroupType)
    }

    /// The raw bits.
    pub fn bits(&self) -> u32 {
        self.0
    }

    /// The value as AD writes it (signed 32-bit).
    pub fn as_i32(&self) -> i32 {
        self.0 as i32
    }

    /// Security or distribution.
    pub fn kind(&self) -> GroupKind {
        if self.0 & Self::SECURITY_ENABLED != 0 {
            GroupKind::Security
        } else {
            GroupKind::Distribution
        }
    }

    /// The scope, from the scope bits alone (the flag bits do not change it).
    pub fn scope(&self) -> GroupScope {
        match self.0 & (Self::GLOBAL | Self::DOMAIN_LOCAL | Self::UNIVERSAL) {
            Self::GLOBAL => GroupScope::Global,
            Self::DOMAIN_LOCAL => GroupScope::DomainLocal,
            Self::UNIVERSAL => GroupScope::Universal,
            _ => GroupScope::Unknown,
        }
    }

    /// `GROUP_TYPE_BUILTIN_LOCAL_GROUP` (0x1): created by the system (the groups of
    /// `CN=Builtin`: Administrators, Account Operators, …).
    pub fn system_created(&self) -> bool {
        self.0 & Self::SYSTEM != 0
    }

    /// `GROUP_TYPE_APP_BASIC` (0x10): an Authorization Manager basic application group.
    pub fn app_basic(&self) -> bool {
        self.0 & Self::APP_BASIC != 0
    }

    /// `GROUP_TYPE_APP_QUERY` (0x20): an Authorization Manager LDAP query group.
    pub fn app_query(&self) -> bool {
        self.0 & Self::APP_QUERY != 0
    }

    /// The visibility picker (see [`Visibility`] for the table).
    pub fn visibility(&self) -> Visibility {
        if self.0 & Self::SYSTEM != 0 {
            Visibility::System
        } else {
            match self.kind() {
                GroupKind::Distribution => Visibility::Public,
                GroupKind::Security => Visibility::Private,
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct GroupTypeJson {
    value: i32,
    #[serde(default = "unknown_kind")]
    kind: GroupKind,
    #[serde(default = "unknown_scope")]
    scope: GroupScope,
    #[serde(default)]
    system_created: bool,
    #[serde(default)]
    app_basic: bool,
    #[serde(default)]
    app_query: bool,
    #[serde(default = "unknown_visibility")]
    visibility: Visibility,
}

fn unknown_kind() -> GroupKind {
    GroupKind::Distribution
}
fn unknown_scope() -> GroupScope {
    GroupScope::Unknown
}
fn unknown_visibility() -> Visibility {
    Visibility::Public
}

/// JSON form: `{"value": -2147483646, "kind": "security", "scope": "global",
/// "system_created": false, "app_basic": false, "app_query": false, "visibility": "Private"}`.
/// Deserialization reads `value`; the rest is derived.
impl Serialize for GroupType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GroupTypeJson {
            value: self.as_i32(),
            kind: self.kind(),
            scope: self.scope(),
            system_created: self.system_created(),
            app_basic: self.app_basic(),
            app_query: self.app_query(),
            visibility: self.visibility(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GroupType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        GroupTypeJson::deserialize(deserializer).map(|json| GroupType(json.value as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn documented_values() {
        let cases = [
            (
                "-2147483646",
                GroupKind::Security,
                GroupScope::Global,
                Visibility::Private,
            ),
            (
                "-2147483644",
                GroupKind::Security,
                GroupScope::DomainLocal,
                Visibility::Private,
            ),
            (
                "-2147483640",
                GroupKind::Security,
                GroupScope::Universal,
                Visibility::Private,
            ),
            (
                "-2147483643",
                GroupKind::Security,
                GroupScope::DomainLocal,
                Visibility::System,
            ),
            (
                "2",
                GroupKind::Distribution,
                GroupScope::Global,
                Visibility::Public,
            ),
            (
                "4",
                GroupKind::Distribution,
                GroupScope::DomainLocal,
                Visibility::Public,
            ),
            (
                "8",
                GroupKind::Distribution,
                GroupScope::Universal,
                Visibility::Public,
            ),
            (
                "0",
                GroupKind::Distribution,
                GroupScope::Unknown,
                Visibility::Public,
            ),
            (
                "-2147483642",
                GroupKind::Security,
                GroupScope::Unknown,
                Visibility::Private,
            ),
        ];
        for (text, kind, scope, visibility) in cases {
            let gt = GroupType::parse(text).unwrap();
            assert_eq!(
                (gt.kind(), gt.scope(), gt.visibility()),
                (kind, scope, visibility),
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_value(GroupType::parse("-2147483646").unwrap()).unwrap(),
            serde_json::json!({"value": -2147483646, "kind": "security", "scope": "global",
                "system_created": false, "app_basic": false, "app_query": false,
                "visibility": "Private"})
        );
    }

    #[test]
    fn builtin_groups_keep_their_scope_and_say_the_system_created_them() {
        // BUILTIN\Administrators, Guests, Account Operators…: 0x80000005.
        let builtin = GroupType::parse("-2147483643").unwrap();
        assert_eq!(builtin.scope(), GroupScope::DomainLocal);
        assert!(builtin.system_created());
        assert!(!builtin.app_basic() && !builtin.app_query());
        // An Authorization Manager query group (0x80000024): domain local, app_query.
        let query = GroupType::from_bits(0x8000_0024);
        assert_eq!(query.scope(), GroupScope::DomainLocal);
        assert!(query.app_query() && !query.app_basic() && !query.system_created());
        let basic = GroupType::from_bits(0x8000_0014);
        assert!(basic.app_basic() && !basic.app_query());
        let json = serde_json::to_value(builtin).unwrap();
        assert_eq!(json["scope"], "domain_local");
        assert_eq!(json["system_created"], true);
    }

    #[test]
    fn garbage_is_an_error() {
        for text in ["", "global", "-", "2.0", "99999999999"] {
            assert!(GroupType::parse(text).is_err(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn every_i32_decodes_consistently(value in any::<i32>()) {
            let gt = GroupType::parse(&value.to_string()).unwrap();
            prop_assert_eq!(gt.as_i32(), value);
            prop_assert_eq!(gt.kind() == GroupKind::Security, value < 0);
            let json = serde_json::to_string(&gt).unwrap();
            prop_assert_eq!(serde_json::from_str::<GroupType>(&json).unwrap(), gt);
            let scope_bits = value as u32 & 0xE;
            prop_assert_eq!(gt.scope() == GroupScope::Unknown, scope_bits.count_ones() != 1);
            prop_assert_eq!(gt.system_created(), value & 1 != 0);
        }
    }
}
