//! Deleted objects (tombstones) and the kind of an object.

use serde::{Deserialize, Serialize};

use crate::entry::{Decoded, EntryError, FieldReader, RawEntry, object_guid};
use crate::guid::Guid;
use crate::sid::Sid;

/// Whether an entry is a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A user account (objectClass `user`, not `computer`).
    User,
    /// A group (objectClass `group`).
    Group,
}

impl ObjectKind {
    /// Classify by `objectClass` values; `None` for anything else (computers, contacts, …).
    pub fn from_object_classes<S: AsRef<str>>(classes: &[S]) -> Option<ObjectKind> {
        let has = |name: &str| {
            classes
                .iter()
                .any(|c| c.as_ref().eq_ignore_ascii_case(name))
        };
        if has("group") {
            Some(ObjectKind::Group)
        } else if has("user") && !has("computer") {
            Some(ObjectKind::User)
        } else {
            None
        }
    }

    /// `user` or `group`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
        }
    }
}

/// A deleted object, read from its tombstone (`isDeleted=TRUE` under Deleted Objects).
/// Tombstones keep `objectGUID`, `objectSid` and `objectClass`; most else is stripped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// `objectGUID` of the deleted object: the key it was tracked by.
    pub object_guid: Guid,
    /// `objectSid`, when the tombstone kept it.
    pub object_sid: Option<Sid>,
    /// User or group, from `objectClass`; `None` if the tombstone does not say.
    pub kind: Option<ObjectKind>,
    /// The tombstone's DN (`CN=name\0ADEL:guid,CN=Deleted Objects,…`).
    pub dn: String,
    /// `sAMAccountName`, when kept.
    pub sam_account_name: Option<String>,
    /// `uSNChanged` of the tombstone.
    pub usn_changed: Option<u64>,
}

impl Deleted {
    /// Decode a tombstone entry.
    pub fn from_entry(entry: &RawEntry) -> Result<Decoded<Deleted>, EntryError> {
        let object_guid = object_guid(entry)?;
        let mut r = FieldReader::new(entry);
        let classes = r.texts("objectClass");
        let deleted = Deleted {
            object_guid,
            object_sid: r.sid("objectSid"),
            kind: ObjectKind::from_object_classes(&classes),
            dn: entry.dn().to_owned(),
            sam_account_name: r.text("sAMAccountName"),
            usn_changed: r.number("uSNChanged"),
        };
        Ok(Decoded {
            record: deleted,
            warnings: r.warnings,
        })
    }
}
