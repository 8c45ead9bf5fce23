//! The `User` record.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entry::{Decoded, EntryError, FieldReader, RawEntry, object_guid};
use crate::guid::Guid;
use crate::sid::Sid;
use crate::status::{AccountInputs, AccountState};
use crate::time::PwdLastSet;
use crate::uac::UserAccountControl;

/// A group an object belongs to, as resolved by the reader of the directory.
///
/// `memberOf` only gives DNs and never contains the primary group; the source resolves
/// both into this form so sinks can send group names and SIDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRef {
    /// The group's DN.
    pub dn: String,
    /// The group's SID, when known.
    pub sid: Option<Sid>,
    /// The group's `name` (or `cn`), when known.
    pub name: Option<String>,
    /// True for the primary group (from `primaryGroupID`, not in `memberOf`).
    pub primary: bool,
}

/// An Active Directory user account, decoded.
///
/// Every field maps to one AD attribute (named in its doc) except `account` and
/// `primary_group_sid`, which are derived, and `groups`, which the source fills in. Absent
/// attributes are `null` / `[]` in JSON; every key is always present, so the JSON form is
/// stable (see `docs/canonical-json.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// `distinguishedName` (changes on rename / move).
    pub dn: String,
    /// `objectGUID`: the stable key.
    pub object_guid: Guid,
    /// `objectSid`.
    pub object_sid: Option<Sid>,
    /// `sIDHistory`: SIDs from before a domain migration.
    pub sid_history: Vec<Sid>,
    /// `sAMAccountName` (pre-Windows 2000 logon name).
    pub sam_account_name: Option<String>,
    /// `userPrincipalName`.
    pub user_principal_name: Option<String>,
    /// `name` (the RDN value; falls back to `cn`).
    pub name: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `givenName`.
    pub given_name: Option<String>,
    /// `sn`.
    pub surname: Option<String>,
    /// `initials`.
    pub initials: Option<String>,
    /// `description` (first value).
    pub description: Option<String>,
    /// `mail`.
    pub mail: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// `department`.
    pub department: Option<String>,
    /// `company`.
    pub company: Option<String>,
    /// `physicalDeliveryOfficeName`.
    pub office: Option<String>,
    /// `manager` (DN).
    pub manager: Option<String>,
    /// `employeeID`.
    pub employee_id: Option<String>,
    /// `employeeNumber`.
    pub employee_number: Option<String>,
    /// `employeeType`.
    pub employee_type: Option<String>,
    /// `streetAddress`.
    pub street_address: Option<String>,
    /// `l` (city).
    pub city: Option<String>,
    /// `st` (state or province).
    pub state: Option<String>,
    /// `postalCode`.
    pub postal_code: Option<String>,
    /// `co` (country name).
    pub country: Option<String>,
    /// `c` (ISO 3166 two-letter country code).
    pub country_code: Option<String>,
    /// `telephoneNumber`.
    pub telephone_number: Option<String>,
    /// `mobile`.
    pub mobile: Option<String>,
    /// `whenCreated`.
    pub when_created: Option<DateTime<Utc>>,
    /// `whenChanged` (per DC; not used for change tracking).
    pub when_changed: Option<DateTime<Utc>>,
    /// `uSNCreated`.
    pub usn_created: Option<u64>,
    /// `uSNChanged` (per DC).
    pub usn_changed: Option<u64>,
    /// `lastLogon`: last logon **on the DC that was read**; not replicated.
    pub last_logon: Option<DateTime<Utc>>,
    /// `lastLogonTimestamp`: replicated to every DC, but lags up to ~14 days.
    pub last_logon_timestamp: Option<DateTime<Utc>>,
    /// `pwdLastSet`: a date, or "must change" for 0.
    pub pwd_last_set: Option<PwdLastSet>,
    /// `accountExpires` (`null` = never).
    pub account_expires: Option<DateTime<Utc>>,
    /// `badPwdCount` (per DC).
    pub bad_pwd_count: Option<u32>,
    /// `badPasswordTime` (per DC).
    pub bad_password_time: Option<DateTime<Utc>>,
    /// `logonCount` (per DC).
    pub logon_count: Option<u32>,
    /// `lockoutTime` (`null` = not locked since the last unlock).
    pub lockout_time: Option<DateTime<Utc>>,
    /// `userAccountControl`.
    pub user_account_control: Option<UserAccountControl>,
    /// `msDS-User-Account-Control-Computed` (current lockout / password expiry).
    pub user_account_control_computed: Option<UserAccountControl>,
    /// Derived account status and conditions at decode time.
    pub account: AccountState,
    /// `memberOf` (DNs; excludes the primary group).
    pub member_of: Vec<String>,
    /// `primaryGroupID` (RID; 513 = Domain Users).
    pub primary_group_id: Option<u32>,
    /// The primary group's SID: domain SID of `objectSid` + `primaryGroupID`.
    pub primary_group_sid: Option<Sid>,
    /// `objectClass` values.
    pub object_class: Vec<String>,
    /// `servicePrincipalName` (set on service accounts).
    pub service_principal_names: Vec<String>,
    /// `adminCount` (1 = protected by AdminSDHolder: is or was privileged).
    pub admin_count: Option<u32>,
    /// Resolved group memberships (including the primary group), filled in by the source.
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    /// Every group the user is in, directly or through nested groups (the primary group and
    /// the groups it is nested in included), each once, nearest first; filled in by the
    /// source. AD grants through these, not only through `groups`.
    #[serde(default)]
    pub transitive_groups: Vec<GroupRef>,
    /// The privileged groups (see [`Sid::is_privileged_group`]) the user is in, directly or
    /// through nesting, each with the chain of groups that leads there; filled in by the
    /// source. Empty for an unprivileged user.
    #[serde(default)]
    pub privileges: Vec<Privilege>,
}

/// Membership of a privileged group, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Privilege {
    /// The privileged group (Domain Admins, BUILTIN\\Backup Operators, …).
    pub group: GroupRef,
    /// The groups between the user and `group`: `via[0]` is a group the user is a direct (or
    /// primary) member of, each next one holds the previous, and the last is a member of
    /// `group`. Empty when the user is a direct member of `group`.
    pub via: Vec<GroupRef>,
}

impl Privilege {
    /// `Domain Admins ← Tier0 Ops ← Helpdesk`: the privileged group first, then the chain
    /// down to the user's own group, by name (the RDN when a group has no name).
    pub fn path(&self) -> String {
        std::iter::once(&self.group)
            .chain(self.via.iter().rev())
            .map(GroupRef::display_name)
            .collect::<Vec<_>>()
            .join(" ← ")
    }
}

impl GroupRef {
    /// The group's name, else its well-known SID name, else the value of its DN's first RDN,
    /// else its DN.
    pub fn display_name(&self) -> String {
        if let Some(name) = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            return name.to_owned();
        }
        if let Some(name) = self.sid.and_then(|s| s.well_known_name()) {
            return name.to_owned();
        }
        crate::dn::rdn_value(&self.dn)
            .map(|v| v.into_owned())
            .unwrap_or_else(|| self.dn.clone())
    }
}

impl User {
    /// Decode a user entry. `now` is the instant account expiry is judged at.
    ///
    /// A missing or malformed `objectGUID` is an error; any other attribute that does not
    /// decode is left empty and reported in [`Decoded::warnings`].
    pub fn from_entry(entry: &RawEntry, now: DateTime<Utc>) -> Result<Decoded<User>, EntryError> {
        let object_guid = object_guid(entry)?;
        let mut r = FieldReader::new(entry);
        let object_sid = r.sid("objectSid");
        let uac = r.parsed("userAccountControl", UserAccountControl::parse);
        let computed = r.parsed(
            "msDS-User-Account-Control-Computed",
            UserAccountControl::parse,
        );
        let pwd_last_set = r.pwd_last_set("pwdLastSet");
        let account_expires = r.filetime("accountExpires");
        let lockout_time = r.filetime("lockoutTime");
        let primary_group_id = r.number("primaryGroupID");
        let account = AccountState::evaluate(
            &AccountInputs {
                uac: uac.unwrap_or(UserAccountControl::empty()),
                computed,
                account_expires,
                lockout_time,
                pwd_last_set,
            },
            now,
        );
        let primary_group_sid = match (object_sid.and_then(|s| s.domain_sid()), primary_group_id) {
            (Some(domain), Some(rid)) => domain.with_rid(rid).ok(),
            _ => None,
        };
        let name = r.text("name").or_else(|| r.text("cn"));
        let user = User {
            dn: entry.dn().to_owned(),
            object_guid,
            object_sid,
            sid_history: r.sids("sIDHistory"),
            sam_account_name: r.text("sAMAccountName"),
            user_principal_name: r.text("userPrincipalName"),
            name,
            display_name: r.text("displayName"),
            given_name: r.text("givenName"),
            surname: r.text("sn"),
            initials: r.text("initials"),
            description: r.texts("description").into_iter().next(),
            mail: r.text("mail"),
            title: r.text("title"),
            department: r.text("department"),
            company: r.text("company"),
            office: r.text("physicalDeliveryOfficeName"),
            manager: r.text("manager"),
            employee_id: r.text("employeeID"),
            employee_number: r.text("employeeNumber"),
            employee_type: r.text("employeeType"),
            street_address: r.text("streetAddress"),
            city: r.text("l"),
            state: r.text("st"),
            postal_code: r.text("postalCode"),
            country: r.text("co"),
            country_code: r.text("c"),
            telephone_number: r.text("telephoneNumber"),
            mobile: r.text("mobile"),
            when_created: r.generalized_time("whenCreated"),
            when_changed: r.generalized_time("whenChanged"),
            usn_created: r.number("uSNCreated"),
            usn_changed: r.number("uSNChanged"),
            last_logon: r.filetime("lastLogon"),
            last_logon_timestamp: r.filetime("lastLogonTimestamp"),
            pwd_last_set,
            account_expires,
            bad_pwd_count: r.number("badPwdCount"),
            bad_password_time: r.filetime("badPasswordTime"),
            logon_count: r.number("logonCount"),
            lockout_time,
            user_account_control: uac,
            user_account_control_computed: computed,
            account,
            member_of: r.texts("memberOf"),
            primary_group_id,
            primary_group_sid,
            object_class: r.texts("objectClass"),
            service_principal_names: r.texts("servicePrincipalName"),
            admin_count: r.number("adminCount"),
            groups: Vec::new(),
            transitive_groups: Vec::new(),
            privileges: Vec::new(),
        };
        Ok(Decoded {
            record: user,
            warnings: r.warnings,
        })
    }

    /// When the password was last set, if it was (`None` for "must change" or unknown).
    pub fn password_last_set(&self) -> Option<DateTime<Utc>> {
        match self.pwd_last_set {
            Some(PwdLastSet::SetAt(at)) => Some(at),
            _ => None,
        }
    }

    /// Whether the account is a computer / trust account rather than a person or service.
    pub fn is_machine_account(&self) -> bool {
        self.user_account_control
            .is_some_and(|uac| uac.is_machine_account())
            || self
                .object_class
                .iter()
                .any(|c| c.eq_ignore_ascii_case("computer"))
    }

    /// Whether the account carries service principal names or is a (group) managed service
    /// account: signs of a service identity rather than a person.
    pub fn is_service_account(&self) -> bool {
        !self.service_principal_names.is_empty() && !self.is_machine_account()
            || self.object_class.iter().any(|c| {
                c.eq_ignore_ascii_case("msDS-ManagedServiceAccount")
                    || c.eq_ignore_ascii_case("msDS-GroupManagedServiceAccount")
            })
    }

    /// Whether the user is a member of a privileged group (see
    /// [`Sid::is_privileged_group`]), directly, through its primary group, or through any
    /// depth of nested groups, by SID.
    pub fn is_privileged(&self) -> bool {
        !self.privileges.is_empty()
            || self
                .groups
                .iter()
                .chain(&self.transitive_groups)
                .filter_map(|g| g.sid)
                .chain(self.primary_group_sid)
                .any(|sid| sid.is_privileged_group())
    }

    /// The attributes a source should request for users (lowercase names as AD accepts
    /// any case). Includes the constructed `msDS-User-Account-Control-Computed`, which AD
    /// returns only when asked for by name.
    pub const ATTRIBUTES: &'static [&'static str] = &[
        "objectGUID",
        "objectSid",
        "sIDHistory",
        "sAMAccountName",
        "userPrincipalName",
        "name",
        "cn",
        "displayName",
        "givenName",
        "sn",
        "initials",
        "description",
        "mail",
        "title",
        "department",
        "company",
        "physicalDeliveryOfficeName",
        "manager",
        "employeeID",
        "employeeNumber",
        "employeeType",
        "streetAddress",
        "l",
        "st",
        "postalCode",
        "co",
        "c",
        "telephoneNumber",
        "mobile",
        "whenCreated",
        "whenChanged",
        "uSNCreated",
        "uSNChanged",
        "lastLogon",
        "lastLogonTimestamp",
        "pwdLastSet",
        "accountExpires",
        "badPwdCount",
        "badPasswordTime",
        "logonCount",
        "lockoutTime",
        "userAccountControl",
        "msDS-User-Account-Control-Computed",
        "memberOf",
        "primaryGroupID",
        "objectClass",
        "servicePrincipalName",
        "adminCount",
    ];
}
