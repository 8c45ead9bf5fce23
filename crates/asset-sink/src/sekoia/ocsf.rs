//! AD user → OCSF *User Inventory Info* (class 5003), as Sekoia.io's asset connector API
//! takes it. See `docs/mapping.md` for the field-by-field table.
//!
//! The mapping borrows from the [`User`] and serializes straight into the request body: no
//! intermediate `serde_json::Value`. Absent values are omitted, never `null`.

use std::borrow::Cow;

use ad_model::{GroupRef, User};
use chrono::{DateTime, Utc};
use serde::Serialize;

use ad_model::dn;

/// OCSF schema version we write (`metadata.version`), as Sekoia's own connectors do.
pub const OCSF_VERSION: &str = "1.6.0";

/// OCSF `user.type_id` / `user.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    /// 1 `User`: a person.
    User,
    /// 2 `Admin`: member of a privileged group ([`ad_model::Sid::is_privileged_group`]: the
    /// AdminSDHolder-protected groups) directly, by primary group or through nested groups
    /// (by SID), or the built-in Administrator (RID 500).
    Admin,
    /// 3 `System`: computer / trust accounts, the built-in Guest, krbtgt (and RODC
    /// `krbtgt_*`), DefaultAccount and WDAGUtilityAccount (RIDs 501–504).
    System,
    /// 4 `Service`: accounts with service principal names, (group) managed service accounts.
    Service,
}

impl UserType {
    /// Classify by real signals, in this order: Admin, System by well-known RID or krbtgt
    /// name, Service, System by machine account, else User. Privilege wins: a service
    /// account in Domain Admins is an Admin.
    pub fn of(user: &User) -> UserType {
        let rid = user
            .object_sid
            .and_then(|sid| sid.domain_sid().and(sid.rid()));
        let krbtgt = user
            .sam_account_name
            .as_deref()
            .and_then(|n| n.get(..6))
            .is_some_and(|head| head.eq_ignore_ascii_case("krbtgt"));
        if user.is_privileged() || rid == Some(500) {
            UserType::Admin
        } else if matches!(rid, Some(501..=504)) || krbtgt {
            UserType::System
        } else if user.is_service_account() {
            UserType::Service
        } else if user.is_machine_account() {
            UserType::System
        } else {
            UserType::User
        }
    }

    /// `(type_id, type)`.
    pub fn ocsf(self) -> (u8, &'static str) {
        match self {
            UserType::User => (1, "User"),
            UserType::Admin => (2, "Admin"),
            UserType::System => (3, "System"),
            UserType::Service => (4, "Service"),
        }
    }
}

/// One OCSF User Inventory Info event.
#[derive(Debug, Serialize)]
pub struct UserInventoryInfo<'a> {
    activity_id: u8,
    activity_name: &'static str,
    category_name: &'static str,
    category_uid: u8,
    class_name: &'static str,
    class_uid: u32,
    type_name: &'static str,
    type_uid: u32,
    severity: &'static str,
    severity_id: u8,
    time: i64,
    metadata: Metadata,
    user: OcsfUser<'a>,
    enrichments: [Enrichment; 1],
}

#[derive(Debug, Serialize)]
struct Metadata {
    product: Product,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Debug, Serialize)]
struct OcsfUser<'a> {
    name: Cow<'a, str>,
    uid: String,
    uid_alt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_addr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    type_id: u8,
    #[serde(rename = "type")]
    type_name: &'static str,
    account: Account<'a>,
    groups: Vec<OcsfGroup<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<Org<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ldap_person: Option<LdapPerson<'a>>,
}

#[derive(Debug, Serialize)]
struct Account<'a> {
    name: Cow<'a, str>,
    uid: Cow<'a, str>,
    type_id: u8,
    #[serde(rename = "type")]
    type_name: &'static str,
}

#[derive(Debug, Serialize)]
struct OcsfGroup<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
}

/// OCSF `organization`. Its `name` is required (the Sekoia SDK's `Organization.name: str`):
/// it is the user's `company`, and the object is sent only when there is one.
#[derive(Debug, Serialize)]
struct Org<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ou_name: Option<Cow<'a, str>>,
}

/// OCSF `ldap_person`: the directory's person attributes. Every field is optional; the
/// object is sent when at least one is present.
#[derive(Debug, Serialize)]
struct LdapPerson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    job_title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    employee_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    given_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    surname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    office_location: Option<&'a str>,
}

impl LdapPerson<'_> {
    fn is_empty(&self) -> bool {
        self.job_title.is_none()
            && self.department.is_none()
            && self.employee_uid.is_none()
            && self.given_name.is_none()
            && self.surname.is_none()
            && self.office_location.is_none()
    }
}

#[derive(Debug, Serialize)]
struct Enrichment {
    name: &'static str,
    value: &'static str,
    data: LoginData,
}

#[derive(Debug, Serialize)]
struct LoginData {
    is_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_logon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bad_password_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    number_of_logons: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_time_password_change: Option<i64>,
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn group_name(group: &GroupRef) -> Cow<'_, str> {
    if let Some(name) = nonempty(&group.name) {
        return Cow::Borrowed(name);
    }
    if let Some(name) = group.sid.and_then(|s| s.well_known_name()) {
        return Cow::Borrowed(name);
    }
    dn::rdn_value(&group.dn)
        .and_then(trimmed)
        .unwrap_or(Cow::Borrowed(group.dn.as_str()))
}

/// A value from a DN, without surrounding whitespace; `None` when nothing is left.
fn trimmed(value: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == value.len() {
        Some(value)
    } else {
        Some(Cow::Owned(trimmed.to_owned()))
    }
}

/// Map a user. `sync_time` becomes the event's `time`.
pub fn user_inventory_info(user: &User, sync_time: DateTime<Utc>) -> UserInventoryInfo<'_> {
    let guid = user.object_guid.to_string();
    let sid = user.object_sid.map(|s| s.to_string());
    let sam = nonempty(&user.sam_account_name);
    let upn = nonempty(&user.user_principal_name);
    let display_name = nonempty(&user.display_name);
    let name: Cow<'_, str> = match sam.or(upn).or(nonempty(&user.name)) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(guid.clone()),
    };
    let full_name = display_name.map(Cow::Borrowed).or_else(|| {
        match (nonempty(&user.given_name), nonempty(&user.surname)) {
            (Some(g), Some(s)) => Some(Cow::Owned(format!("{g} {s}"))),
            (Some(one), None) | (None, Some(one)) => Some(Cow::Borrowed(one)),
            (None, None) => None,
        }
    });
    let (type_id, type_name) = UserType::of(user).ocsf();
    let account = Account {
        name: name.clone(),
        uid: match (upn, &sid) {
            (Some(upn), _) => Cow::Borrowed(upn),
            (None, Some(sid)) => Cow::Owned(sid.clone()),
            (None, None) => Cow::Owned(guid.clone()),
        },
        type_id: 1,
        type_name: "LDAP Account",
    };
    let groups = user
        .groups
        .iter()
        .map(|g| OcsfGroup {
            name: group_name(g),
            uid: g.sid.map(|s| s.to_string()),
        })
        .collect();
    // An organisation needs a name: the company. The OU alone is not one (an OU is a
    // container in the directory, not an organisation), so without a company no `org` is
    // sent rather than one the platform refuses.
    let org = nonempty(&user.company).map(|name| Org {
        name,
        ou_name: dn::first_ou(&user.dn).and_then(trimmed),
    });
    let ldap_person = LdapPerson {
        job_title: nonempty(&user.title),
        department: nonempty(&user.department),
        employee_uid: nonempty(&user.employee_id).or(nonempty(&user.employee_number)),
        given_name: nonempty(&user.given_name),
        surname: nonempty(&user.surname),
        office_location: nonempty(&user.office),
    };
    let ldap_person = (!ldap_person.is_empty()).then_some(ldap_person);
    UserInventoryInfo {
        activity_id: 2,
        activity_name: "Collect",
        category_name: "Discovery",
        category_uid: 5,
        class_name: "User Inventory Info",
        class_uid: 5003,
        type_name: "User Inventory Info: Collect",
        type_uid: 500302,
        severity: "Informational",
        severity_id: 1,
        time: sync_time.timestamp(),
        metadata: Metadata {
            product: Product {
                name: "Microsoft Active Directory",
                vendor_name: "Microsoft",
                version: env!("CARGO_PKG_VERSION"),
            },
            version: OCSF_VERSION,
        },
        user: OcsfUser {
            name,
            uid: sid.unwrap_or_else(|| guid.clone()),
            uid_alt: guid,
            full_name,
            display_name,
            email_addr: nonempty(&user.mail),
            domain: dn::dns_domain(&user.dn),
            type_id,
            type_name,
            account,
            groups,
            org,
            ldap_person,
        },
        enrichments: [Enrichment {
            name: "login",
            value: "infos",
            data: LoginData {
                is_enabled: !user.account.disabled,
                last_logon: user.last_logon_timestamp.map(|t| t.timestamp().to_string()),
                bad_password_count: user.bad_pwd_count,
                number_of_logons: user.logon_count,
                last_time_password_change: user.password_last_set().map(|t| t.timestamp()),
            },
        }],
    }
}
