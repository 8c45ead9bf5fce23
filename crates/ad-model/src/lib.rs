//! Typed Active Directory users and groups, decoded exactly.
//!
//! This crate turns the attribute values an LDAP server returns for AD users and groups into
//! typed records, and knows nothing about LDAP itself: the input is a [`RawEntry`] (a DN and
//! attribute name → byte values, names case-insensitive), so any LDAP library, a test, or an
//! LDIF reader can feed it.
//!
//! # The design choice: decode per attribute, fail per entry only on identity
//!
//! Directories in production are messy: a migration tool writes `accountExpires` as text, an
//! old script leaves a 7-byte `objectSid`. A connector that rejects the entry loses a user; one
//! that guesses ships wrong data. Here every optional attribute is decoded on its own: if it
//! does not decode, that field is empty and a [`DecodeWarning`] names the attribute and the
//! shape of the raw value (never the value). Only a missing or malformed `objectGUID` — the
//! key an object is tracked by across renames, moves and syncs — makes the entry an
//! [`EntryError`].
//!
//! Decoders are exact about AD's conventions: `0` and `i64::MAX` FILETIMEs are "never", not
//! dates; `pwdLastSet = 0` is [`PwdLastSet::MustChange`]; lockout and password expiry come
//! from `msDS-User-Account-Control-Computed` (AD does not keep those `userAccountControl`
//! bits current); SIDs and GUIDs are validated to the byte.
//!
//! # Example
//!
//! ```
//! use ad_model::{AccountStatus, RawEntry, Sid, User};
//! use chrono::{TimeZone, Utc};
//!
//! let sid: Sid = "S-1-5-21-1004336348-1177238915-682003330-1105".parse()?;
//! let entry = RawEntry::new("CN=Ada Lovelace,OU=Users,DC=corp,DC=example,DC=test")
//!     .with("objectGUID", [vec![0xff, 0x19, 0x96, 0x6f, 0x86, 0x8b, 0x11, 0xd0,
//!                               0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff]])
//!     .with("objectSid", [sid.to_bytes()])
//!     .with("sAMAccountName", ["ada"])
//!     .with("userAccountControl", ["512"])
//!     .with("msDS-User-Account-Control-Computed", ["0"])
//!     .with("pwdLastSet", ["0"])                      // must change password
//!     .with("lastLogon", ["0"])                       // never logged on
//!     .with("accountExpires", ["9223372036854775807"]) // never expires
//!     .with("primaryGroupID", ["513"])
//!     .with("whenCreated", ["20240131154502.0Z"])
//!     .with("badPwdCount", ["not a number"]);          // a bad optional attribute
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
//! let decoded = User::from_entry(&entry, now)?;
//! let user = decoded.record;
//! assert_eq!(user.object_guid.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
//! assert_eq!(user.object_sid, Some(sid));
//! assert_eq!(user.last_logon, None);
//! assert_eq!(user.account.status, AccountStatus::MustChangePassword);
//! assert_eq!(user.primary_group_sid.unwrap().to_string(),
//!            "S-1-5-21-1004336348-1177238915-682003330-513");
//! // The bad attribute is reported, the rest of the entry survived.
//! assert_eq!(decoded.warnings.len(), 1);
//! assert_eq!(decoded.warnings[0].attribute, "badPwdCount");
//! assert_eq!(user.bad_pwd_count, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod deleted;
pub mod dn;
mod entry;
mod group;
mod group_type;
mod guid;
mod sid;
mod status;
mod time;
mod uac;
mod user;

pub use deleted::{Deleted, ObjectKind};
pub use entry::{DecodeWarning, Decoded, EntryError, RawEntry, text_shape, value_shape};
pub use group::Group;
pub use group_type::{GroupKind, GroupScope, GroupType, Visibility};
pub use guid::{Guid, GuidError};
pub use sid::{MAX_SUB_AUTHORITIES, Sid, SidError};
pub use status::{AccountInputs, AccountState, AccountStatus};
pub use time::{
    FILETIME_NEVER, PwdLastSet, TimeError, decode_filetime, decode_generalized_time,
    decode_pwd_last_set, filetime_from_ticks, to_filetime, to_generalized_time,
};
pub use uac::{BitsError, UserAccountControl};
pub use user::{GroupRef, Privilege, User};
