//! The `Group` record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entry::{Decoded, EntryError, FieldReader, RawEntry, object_guid};
use crate::group_type::GroupType;
use crate::guid::Guid;
use crate::sid::Sid;
use crate::user::GroupRef;

/// An Active Directory group, decoded. Absent attributes are `null` / `[]` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// `distinguishedName`.
    pub dn: String,
    /// `objectGUID`: the stable key.
    pub object_guid: Guid,
    /// `objectSid`.
    pub object_sid: Option<Sid>,
    /// `sIDHistory`.
    pub sid_history: Vec<Sid>,
    /// `sAMAccountName`.
    pub sam_account_name: Option<String>,
    /// `name` (the RDN value; falls back to `cn`).
    pub name: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `description` (first value).
    pub description: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `groupType`: kind, scope and visibility.
    pub group_type: Option<GroupType>,
    /// `managedBy` (DN).
    pub managed_by: Option<String>,
    /// `member` (DNs), all values: the source reassembles ranged retrieval.
    pub members: Vec<String>,
    /// `memberOf` (DNs of groups this group is nested in).
    pub member_of: Vec<String>,
    /// `whenCreated`.
    pub when_created: Option<DateTime<Utc>>,
    /// `whenChanged`.
    pub when_changed: Option<DateTime<Utc>>,
    /// `uSNCreated`.
    pub usn_created: Option<u64>,
    /// `uSNChanged`.
    pub usn_changed: Option<u64>,
    /// `adminCount`.
    pub admin_count: Option<u32>,
    /// `objectClass` values.
    pub object_class: Vec<String>,
    /// Resolved parent groups (from `memberOf`), filled in by the source.
    #[serde(default)]
    pub groups: Vec<GroupRef>,
}

impl Group {
    /// Decode a group entry. A missing or malformed `objectGUID` is an error; any other
    /// attribute that does not decode is left empty and reported.
    ///
    /// `member` values are read from `member` and from any `member;range=…` attribute
    /// present (the source is responsible for fetching every range).
    pub fn from_entry(entry: &RawEntry) -> Result<Decoded<Group>, EntryError> {
        let object_guid = object_guid(entry)?;
        let mut r = FieldReader::new(entry);
        let mut members = r.texts("member");
        let ranged: Vec<String> = entry
            .attribute_names()
            .filter(|name| name.starts_with("member;range="))
            .map(str::to_owned)
            .collect();
        for name in ranged {
            members.extend(r.texts(&name));
        }
        let name = r.text("name").or_else(|| r.text("cn"));
        let group = Group {
            dn: entry.dn().to_owned(),
            object_guid,
            object_sid: r.sid("objectSid"),
            sid_history: r.sids("sIDHistory"),
            sam_account_name: r.text("sAMAccountName"),
            name,
            display_name: r.text("displayName"),
            description: r.texts("description").into_iter().next(),
            mail: r.text("mail"),
            group_type: r.parsed("groupType", GroupType::parse),
            managed_by: r.text("managedBy"),
            members,
            member_of: r.texts("memberOf"),
            when_created: r.generalized_time("whenCreated"),
            when_changed: r.generalized_time("whenChanged"),
            usn_created: r.number("uSNCreated"),
            usn_changed: r.number("uSNChanged"),
            admin_count: r.number("adminCount"),
            object_class: r.texts("objectClass"),
            groups: Vec::new(),
        };
        Ok(Decoded {
            record: group,
            warnings: r.warnings,
        })
    }

    /// The RID of the group's SID (compare with users' `primaryGroupID`).
    pub fn rid(&self) -> Option<u32> {
        self.object_sid.and_then(|sid| sid.rid())
    }

    /// This group as a [`GroupRef`] for membership lists.
    pub fn as_ref(&self, primary: bool) -> GroupRef {
        GroupRef {
            dn: self.dn.clone(),
            sid: self.object_sid,
            name: self.name.clone(),
            primary,
        }
    }

    /// The attributes a source should request for groups.
    pub const ATTRIBUTES: &'static [&'static str] = &[
        "objectGUID",
        "objectSid",
        "sIDHistory",
        "sAMAccountName",
        "name",
        "cn",
        "displayName",
        "description",
        "mail",
        "groupType",
        "managedBy",
        "member",
        "memberOf",
        "whenCreated",
        "whenChanged",
        "uSNCreated",
        "uSNChanged",
        "adminCount",
        "objectClass",
    ];
}
