//! AD users and groups → Qualys ETM identity assets, at exactly the target paths of the
//! seed's transformation maps (`asset.assetHeader.externalAssetId`, …). See
//! `docs/mapping.md` for the tables.
//!
//! # The function pickers
//!
//! Qualys publishes no schema for these values; the strings are **our convention**, upper
//! snake case like the rest of the payload's enumerations.
//!
//! `userAssetClass.status`, from [`ad_model::AccountStatus`] (the first condition that holds,
//! in this order):
//!
//! | condition (AD)                                                   | `status`               |
//! |------------------------------------------------------------------|------------------------|
//! | `ACCOUNTDISABLE` in `userAccountControl`                         | `DISABLED`             |
//! | `accountExpires` in the past                                     | `EXPIRED`              |
//! | `LOCKOUT` in `msDS-User-Account-Control-Computed`                | `LOCKED_OUT`           |
//! | `PASSWORD_EXPIRED` in the computed flags (not the must-change case) | `PASSWORD_EXPIRED`  |
//! | `pwdLastSet = 0` without `DONT_EXPIRE_PASSWORD`                  | `MUST_CHANGE_PASSWORD` |
//! | none of the above                                                | `ACTIVE`               |
//!
//! `groupAssetClass.type`, from `groupType`: `<KIND>_<SCOPE>` with KIND `SECURITY` (bit
//! 0x80000000 set) or `DISTRIBUTION`, and SCOPE `GLOBAL` (0x2), `DOMAIN_LOCAL` (0x4),
//! `UNIVERSAL` (0x8) or `UNKNOWN` (no or several scope bits). A builtin group
//! (`BUILTIN\Administrators`, 0x80000005) is `SECURITY_DOMAIN_LOCAL`: "created by the
//! system" (0x1) is a flag, not a scope; it shows in `visibility` (`SYSTEM`). Absent when
//! the group has no readable `groupType`.
//!
//! `groupAssetClass.visibility` ("function picker based on groupType lookup"), from
//! [`ad_model::GroupType::visibility`]: `SYSTEM` for builtin (system-created) groups,
//! `PUBLIC` for distribution groups (published in the address book), `PRIVATE` for security
//! groups.

use std::borrow::Cow;

use ad_model::{
    AccountStatus, Group, GroupKind, GroupScope, GroupType, ObjectKind, User, Visibility,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::change::Deletion;

/// The `status` picker (see the module docs).
pub fn status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "ACTIVE",
        AccountStatus::Disabled => "DISABLED",
        AccountStatus::Expired => "EXPIRED",
        AccountStatus::LockedOut => "LOCKED_OUT",
        AccountStatus::PasswordExpired => "PASSWORD_EXPIRED",
        AccountStatus::MustChangePassword => "MUST_CHANGE_PASSWORD",
    }
}

/// The group `type` (see the module docs).
pub fn group_type(group_type: GroupType) -> String {
    let kind = match group_type.kind() {
        GroupKind::Security => "SECURITY",
        GroupKind::Distribution => "DISTRIBUTION",
    };
    let scope = match group_type.scope() {
        GroupScope::Global => "GLOBAL",
        GroupScope::DomainLocal => "DOMAIN_LOCAL",
        GroupScope::Universal => "UNIVERSAL",
        GroupScope::Unknown => "UNKNOWN",
    };
    format!("{kind}_{scope}")
}

/// The `visibility` picker (see the module docs).
pub fn visibility(group_type: GroupType) -> &'static str {
    match group_type.visibility() {
        Visibility::Public => "PUBLIC",
        Visibility::Private => "PRIVATE",
        Visibility::System => "SYSTEM",
    }
}

/// ISO-8601 UTC, second precision: `2026-11-20T17:12:05Z`.
fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// One entry of `assetData`.
#[derive(Debug, Serialize)]
pub struct AssetEntry<'a> {
    asset: Asset<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Asset<'a> {
    asset_header: AssetHeader,
    asset_detail: AssetDetail<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AssetHeader {
    external_asset_id: String,
    vendor_asset_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AssetDetail<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_asset_class: Option<UserAssetClass<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_asset_class: Option<GroupAssetClass<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserAssetClass<'a> {
    id: String,
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_successful_login_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_last_changed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_expiration_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_password_attempt_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failed_password_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_address: Option<Address<'a>>,
    status: &'static str,
    /// Our extension (not in the seed's map): member of a privileged group, directly or
    /// through nesting. Always sent, so losing a privilege is sent too.
    privileged: bool,
    /// Our extension: how, one path per privileged group (`Domain Admins ← Tier0 ← Helpdesk`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    privilege_paths: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Address<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    street_address: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupAssetClass<'a> {
    id: String,
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    group_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility: Option<&'static str>,
}

/// A user asset. `externalAssetId` and `id` are the SID (the GUID if the user has none),
/// `vendorAssetId` the GUID.
pub fn user_asset(user: &User) -> AssetEntry<'_> {
    let guid = user.object_guid.to_string();
    let sid = user
        .object_sid
        .map_or_else(|| guid.clone(), |s| s.to_string());
    let name: Cow<'_, str> = match nonempty(&user.name).or(nonempty(&user.sam_account_name)) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(guid.clone()),
    };
    // lastLogon is per DC; lastLogonTimestamp is replicated but lags: the later of the two.
    let last_logon = match (user.last_logon, user.last_logon_timestamp) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let address = Address {
        city: nonempty(&user.city),
        country: nonempty(&user.country).or(nonempty(&user.country_code)),
        street_address: nonempty(&user.street_address),
        state: nonempty(&user.state),
    };
    let has_address = address.city.is_some()
        || address.country.is_some()
        || address.street_address.is_some()
        || address.state.is_some();
    AssetEntry {
        asset: Asset {
            asset_header: AssetHeader {
                external_asset_id: sid.clone(),
                vendor_asset_id: guid,
            },
            asset_detail: AssetDetail {
                name: name.clone(),
                user_asset_class: Some(UserAssetClass {
                    id: sid,
                    name,
                    email: nonempty(&user.mail),
                    first_name: nonempty(&user.given_name),
                    last_name: nonempty(&user.surname),
                    display_name: nonempty(&user.display_name),
                    phone: nonempty(&user.mobile),
                    job_title: nonempty(&user.title),
                    activation_date: user.when_created.map(iso),
                    last_successful_login_at: last_logon.map(iso),
                    password_last_changed_at: user.password_last_set().map(iso),
                    account_expiration_at: user.account_expires.map(iso),
                    failed_password_attempt_count: user.bad_pwd_count,
                    last_failed_password_attempt_at: user.bad_password_time.map(iso),
                    current_address: has_address.then_some(address),
                    status: status(user.account.status),
                    privileged: user.is_privileged(),
                    privilege_paths: user.privileges.iter().map(|p| p.path()).collect(),
                }),
                group_asset_class: None,
            },
        },
    }
}

/// A group asset. `externalAssetId` and `id` are the SID (the GUID if the group has none),
/// `vendorAssetId` the GUID.
pub fn group_asset(group: &Group) -> AssetEntry<'_> {
    let guid = group.object_guid.to_string();
    let sid = group
        .object_sid
        .map_or_else(|| guid.clone(), |s| s.to_string());
    let name: Cow<'_, str> = match nonempty(&group.name).or(nonempty(&group.sam_account_name)) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(guid.clone()),
    };
    AssetEntry {
        asset: Asset {
            asset_header: AssetHeader {
                external_asset_id: sid.clone(),
                vendor_asset_id: guid,
            },
            asset_detail: AssetDetail {
                name: name.clone(),
                user_asset_class: None,
                group_asset_class: Some(GroupAssetClass {
                    id: sid,
                    name,
                    display_name: nonempty(&group.display_name),
                    description: nonempty(&group.description),
                    group_type: group.group_type.map(group_type),
                    visibility: group.group_type.map(visibility),
                }),
            },
        },
    }
}

/// A delete entry of `assetData`.
#[derive(Debug, Serialize)]
pub struct DeleteEntry {
    operation: &'static str,
    asset: DeleteAsset,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteAsset {
    asset_header: AssetHeader,
    asset_detail: DeleteDetail,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_asset_class: Option<IdOnly>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_asset_class: Option<IdOnly>,
}

#[derive(Debug, Serialize)]
struct IdOnly {
    id: String,
}

/// A delete entry: `{"operation": "DELETE", "asset": {"assetHeader": {…}, "assetDetail":
/// {"userAssetClass"|"groupAssetClass": {"id": SID}}}}`. The `operation` marker is our
/// assumption (Qualys publishes no schema); upserts carry no marker.
pub fn delete_entry(deletion: &Deletion) -> DeleteEntry {
    let guid = deletion.object_guid.to_string();
    let sid = deletion
        .object_sid
        .map_or_else(|| guid.clone(), |s| s.to_string());
    let id = Some(IdOnly { id: sid.clone() });
    let (user_asset_class, group_asset_class) = match deletion.kind {
        ObjectKind::User => (id, None),
        ObjectKind::Group => (None, id),
    };
    DeleteEntry {
        operation: "DELETE",
        asset: DeleteAsset {
            asset_header: AssetHeader {
                external_asset_id: sid,
                vendor_asset_id: guid,
            },
            asset_detail: DeleteDetail {
                user_asset_class,
                group_asset_class,
            },
        },
    }
}

/// `connectorMetaData` of the envelope.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorMetaData<'a> {
    /// Per request; derived from (cycle, batch, request) so a retried request keeps it.
    pub request_id: Uuid,
    /// The connection UUID.
    pub connector_uuid: Uuid,
    /// The customer UUID.
    pub customer_uuid: Uuid,
    /// The profile UUID.
    pub profile_uuid: Uuid,
    /// `Microsoft Active Directory` by default.
    pub source: &'a str,
}
