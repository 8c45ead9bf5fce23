//! A realistic set of users, groups and deletes, decoded by `ad-model` from raw entries as a
//! Windows DC returns them. Used by this crate's snapshot tests and bench; other crates may
//! use it in their tests. Not part of the stable API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use ad_model::{Group, GroupRef, Guid, ObjectKind, Privilege, RawEntry, Sid, User, to_filetime};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::change::{Batch, Change, Deletion, SyncInfo, SyncMode};

/// The test domain's SID.
pub const DOMAIN: &str = "S-1-5-21-1004336348-1177238915-682003330";
/// The test domain's DN suffix.
pub const BASE: &str = "DC=corp,DC=example,DC=test";

/// The instant the fixtures are decoded and synced at: 2026-11-22T12:00:00Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

/// The sync info of the fixtures' batches.
pub fn sync() -> SyncInfo {
    SyncInfo {
        cycle_id: Uuid::from_u128(0x6d1f_0c2a_9b3e_4f5a_8c7d_1e2f_3a4b_5c6d),
        at: now(),
        mode: SyncMode::Delta,
    }
}

pub fn sid(rid: u32) -> Sid {
    format!("{DOMAIN}-{rid}").parse().unwrap()
}

pub fn guid(n: u32) -> Guid {
    Guid::from_uuid(Uuid::from_u128(
        0x0a3c_8e1f_5b7d_4c2e_9f10_0000_0000_0000 | u128::from(n),
    ))
}

fn ft(y: i32, mo: u32, d: u32, h: u32) -> String {
    to_filetime(Utc.with_ymd_and_hms(y, mo, d, h, 15, 30).unwrap())
        .unwrap()
        .to_string()
}

fn gref(name: &str, rid_or_sid: Result<u32, &str>, ou: &str, primary: bool) -> GroupRef {
    let sid = match rid_or_sid {
        Ok(rid) => sid(rid),
        Err(text) => text.parse().unwrap(),
    };
    GroupRef {
        dn: format!("CN={name},{ou}"),
        sid: Some(sid),
        name: Some(name.to_owned()),
        primary,
    }
}

fn domain_users() -> GroupRef {
    gref("Domain Users", Ok(513), &format!("CN=Users,{BASE}"), true)
}

fn groups_ou() -> String {
    format!("OU=Groups,OU=Corp,{BASE}")
}

/// A user entry with the attributes every fixture user has.
fn base_user(n: u32, rid: u32, cn: &str, ou: &str, sam: &str) -> RawEntry {
    RawEntry::new(format!("CN={},{ou},{BASE}", cn.replace(',', "\\,")))
        .with(
            "objectClass",
            ["top", "person", "organizationalPerson", "user"],
        )
        .with("objectGUID", [guid(n).to_bytes().to_vec()])
        .with("objectSid", [sid(rid).to_bytes()])
        .with("sAMAccountName", [sam])
        .with("userPrincipalName", [format!("{sam}@corp.example.test")])
        .with("name", [cn])
        .with("whenCreated", ["20230315081500.0Z"])
        .with("whenChanged", ["20261120171205.0Z"])
        .with("accountExpires", ["9223372036854775807"])
        .with("primaryGroupID", ["513"])
}

fn decode(entry: RawEntry, groups: Vec<GroupRef>) -> User {
    let decoded = User::from_entry(&entry, now()).unwrap();
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    let mut user = decoded.record;
    // No nesting unless a fixture adds it: the transitive groups are the direct ones.
    user.transitive_groups = groups.clone();
    user.privileges = groups
        .iter()
        .filter(|g| g.sid.is_some_and(|s| s.is_privileged_group()))
        .map(|g| Privilege {
            group: g.clone(),
            via: Vec::new(),
        })
        .collect();
    user.groups = groups;
    user
}

/// A typical enabled employee with a unicode name, full address and three groups.
pub fn normal() -> User {
    let entry = base_user(
        1,
        1105,
        "Zoë Ångström",
        "OU=Engineering,OU=Users,OU=Corp",
        "zoe.angstrom",
    )
    .with("displayName", ["Zoë Ångström"])
    .with("givenName", ["Zoë"])
    .with("sn", ["Ångström"])
    .with("mail", ["zoe.angstrom@example.test"])
    .with("title", ["Senior Engineer"])
    .with("department", ["Engineering"])
    .with("company", ["Example Corp"])
    .with("streetAddress", ["Drottninggatan 1"])
    .with("l", ["Stockholm"])
    .with("st", ["Stockholms län"])
    .with("co", ["Sweden"])
    .with("c", ["SE"])
    .with("mobile", ["+46 70 123 45 67"])
    .with("telephoneNumber", ["+46 8 123 456"])
    .with("lastLogon", [ft(2026, 11, 21, 8)])
    .with("lastLogonTimestamp", [ft(2026, 11, 15, 9)])
    .with("pwdLastSet", [ft(2026, 8, 1, 10)])
    .with("badPwdCount", ["1"])
    .with("badPasswordTime", [ft(2026, 11, 20, 7)])
    .with("logonCount", ["1289"])
    .with("userAccountControl", ["512"])
    .with("msDS-User-Account-Control-Computed", ["0"])
    .with(
        "memberOf",
        [
            format!("CN=GG-Backend,{}", groups_ou()),
            format!("CN=GG-AllStaff,{}", groups_ou()),
        ],
    );
    decode(
        entry,
        vec![
            gref("GG-Backend", Ok(1201), &groups_ou(), false),
            gref("GG-AllStaff", Ok(1202), &groups_ou(), false),
            domain_users(),
        ],
    )
}

/// Disabled by an administrator (userAccountControl 514); country code only (no `co`).
pub fn disabled() -> User {
    let entry = base_user(
        2,
        1106,
        "Robert Smith",
        "OU=Leavers,OU=Users,OU=Corp",
        "robert.smith",
    )
    .with("displayName", ["Robert Smith"])
    .with("givenName", ["Robert"])
    .with("sn", ["Smith"])
    .with("mail", ["robert.smith@example.test"])
    .with("c", ["FR"])
    .with("lastLogon", [ft(2025, 6, 10, 14)])
    .with("lastLogonTimestamp", [ft(2025, 6, 10, 14)])
    .with("pwdLastSet", [ft(2025, 1, 1, 12)])
    .with("badPwdCount", ["0"])
    .with("logonCount", ["89"])
    .with("userAccountControl", ["514"])
    .with("msDS-User-Account-Control-Computed", ["0"]);
    decode(entry, vec![domain_users()])
}

/// Locked out after bad passwords.
pub fn locked() -> User {
    let entry = base_user(
        3,
        1107,
        "Mary Jones",
        "OU=Finance,OU=Users,OU=Corp",
        "mary.jones",
    )
    .with("displayName", ["Mary Jones"])
    .with("givenName", ["Mary"])
    .with("sn", ["Jones"])
    .with("mail", ["mary.jones@example.test"])
    .with("title", ["Financial Analyst"])
    .with("l", ["New York"])
    .with("st", ["NY"])
    .with("co", ["United States"])
    .with("lastLogon", [ft(2026, 11, 21, 16)])
    .with("lastLogonTimestamp", [ft(2026, 11, 19, 8)])
    .with("pwdLastSet", [ft(2026, 10, 1, 9)])
    .with("badPwdCount", ["5"])
    .with("badPasswordTime", [ft(2026, 11, 22, 11)])
    .with("lockoutTime", [ft(2026, 11, 22, 11)])
    .with("logonCount", ["156"])
    .with("userAccountControl", ["512"])
    .with("msDS-User-Account-Control-Computed", ["16"]);
    decode(
        entry,
        vec![
            gref("GG-Finance", Ok(1203), &groups_ou(), false),
            domain_users(),
        ],
    )
}

/// Created, never logged on, must change the password at first logon; CJK name.
pub fn never_logged_on() -> User {
    let entry = base_user(
        4,
        1108,
        "李小龍",
        "OU=New Hires,OU=Users,OU=Corp",
        "li.xiaolong",
    )
    .with("displayName", ["李小龍 (Li Xiaolong)"])
    .with("givenName", ["小龍"])
    .with("sn", ["李"])
    .with("lastLogon", ["0"])
    .with("pwdLastSet", ["0"])
    .with("badPwdCount", ["0"])
    .with("badPasswordTime", ["0"])
    .with("logonCount", ["0"])
    .with("userAccountControl", ["512"])
    .with("msDS-User-Account-Control-Computed", ["8388608"]);
    decode(entry, vec![domain_users()])
}

/// A domain administrator (member of Domain Admins by SID, adminCount 1). Its DN has no
/// "admin" in it: the type comes from the SID.
pub fn admin() -> User {
    let entry = base_user(5, 1109, "Grace Hopper (T0)", "OU=Tier0,OU=Corp", "gh-t0")
        .with("displayName", ["Grace Hopper (tier 0)"])
        .with("givenName", ["Grace"])
        .with("sn", ["Hopper"])
        .with("lastLogon", [ft(2026, 11, 22, 9)])
        .with("lastLogonTimestamp", [ft(2026, 11, 18, 9)])
        .with("pwdLastSet", [ft(2026, 9, 30, 18)])
        .with("badPwdCount", ["0"])
        .with("logonCount", ["4021"])
        .with("adminCount", ["1"])
        .with("userAccountControl", ["512"])
        .with("msDS-User-Account-Control-Computed", ["0"]);
    decode(
        entry,
        vec![
            gref("Domain Admins", Ok(512), &format!("CN=Users,{BASE}"), false),
            gref(
                "Administrators",
                Err("S-1-5-32-544"),
                &format!("CN=Builtin,{BASE}"),
                false,
            ),
            domain_users(),
        ],
    )
}

/// A service account: SPN, password never expires, account expiry set in the future.
pub fn service_account() -> User {
    let mut entry = base_user(
        6,
        1110,
        "svc-sql01",
        "OU=Service Accounts,OU=Corp",
        "svc-sql01",
    )
    .with("description", ["SQL Server service"])
    .with(
        "servicePrincipalName",
        ["MSSQLSvc/sql01.corp.example.test:1433"],
    )
    .with("lastLogon", [ft(2026, 11, 22, 3)])
    .with("lastLogonTimestamp", [ft(2026, 11, 12, 3)])
    .with("pwdLastSet", [ft(2024, 2, 29, 12)])
    .with("badPwdCount", ["0"])
    .with("logonCount", ["77012"])
    .with("userAccountControl", ["66048"])
    .with("msDS-User-Account-Control-Computed", ["0"]);
    entry.set("accountExpires", vec![ft(2027, 6, 30, 0).into_bytes()]);
    let mut user = decode(
        entry,
        vec![
            gref("SQL Services", Ok(1210), &groups_ou(), false),
            domain_users(),
        ],
    );
    // SQL Services is nested in BUILTIN\Server Operators: privileged through nesting.
    let server_operators = gref(
        "Server Operators",
        Err("S-1-5-32-549"),
        &format!("CN=Builtin,{BASE}"),
        false,
    );
    user.transitive_groups.push(server_operators.clone());
    user.privileges.push(Privilege {
        group: server_operators,
        via: vec![user.groups[0].clone()],
    });
    user
}

/// A user with no group at all (no `primaryGroupID` resolved, no `memberOf`), no mail and no
/// address; its account expired last week.
pub fn no_groups() -> User {
    let mut entry = base_user(7, 1111, "Contractor 42", "OU=External,OU=Corp", "ext042")
        .with("lastLogonTimestamp", [ft(2026, 10, 1, 8)])
        .with("pwdLastSet", [ft(2026, 3, 1, 8)])
        .with("userAccountControl", ["512"])
        .with("msDS-User-Account-Control-Computed", ["0"]);
    entry.set("accountExpires", vec![ft(2026, 11, 15, 0).into_bytes()]);
    entry.remove("primaryGroupID");
    decode(entry, vec![])
}

/// krbtgt: a system account (RID 502), disabled, with an SPN.
pub fn krbtgt() -> User {
    let mut entry = base_user(8, 502, "krbtgt", "CN=Users", "krbtgt")
        .with("description", ["Key Distribution Center Service Account"])
        .with("servicePrincipalName", ["kadmin/changepw"])
        .with("pwdLastSet", [ft(2023, 3, 15, 8)])
        .with("userAccountControl", ["514"])
        .with("msDS-User-Account-Control-Computed", ["0"]);
    entry.remove("userPrincipalName");
    decode(entry, vec![domain_users()])
}

/// Every fixture user.
pub fn users() -> Vec<User> {
    vec![
        normal(),
        disabled(),
        locked(),
        never_logged_on(),
        admin(),
        service_account(),
        no_groups(),
        krbtgt(),
    ]
}

fn decode_group(entry: RawEntry, parents: Vec<GroupRef>) -> Group {
    let decoded = Group::from_entry(&entry).unwrap();
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    let mut group = decoded.record;
    group.groups = parents;
    group
}

/// A global security group, nested in another.
pub fn global_security_group() -> Group {
    let entry = RawEntry::new(format!("CN=GG-Backend,{}", groups_ou()))
        .with("objectClass", ["top", "group"])
        .with("objectGUID", [guid(101).to_bytes().to_vec()])
        .with("objectSid", [sid(1201).to_bytes()])
        .with("sAMAccountName", ["GG-Backend"])
        .with("name", ["GG-Backend"])
        .with("displayName", ["Backend engineers"])
        .with("description", ["Everyone who ships the API"])
        .with("groupType", ["-2147483646"])
        .with(
            "member",
            [format!(
                "CN=Zoë Ångström,OU=Engineering,OU=Users,OU=Corp,{BASE}"
            )],
        )
        .with("memberOf", [format!("CN=DL-FileShare-RW,{}", groups_ou())])
        .with("whenCreated", ["20230101090000.0Z"]);
    decode_group(
        entry,
        vec![gref("DL-FileShare-RW", Ok(1301), &groups_ou(), false)],
    )
}

/// A domain-local security group whose members are global groups (nested scope).
pub fn domain_local_group() -> Group {
    let entry = RawEntry::new(format!("CN=DL-FileShare-RW,{}", groups_ou()))
        .with("objectClass", ["top", "group"])
        .with("objectGUID", [guid(102).to_bytes().to_vec()])
        .with("objectSid", [sid(1301).to_bytes()])
        .with("sAMAccountName", ["DL-FileShare-RW"])
        .with("name", ["DL-FileShare-RW"])
        .with("description", ["Read/write on \\\\files01\\projects"])
        .with("groupType", ["-2147483644"])
        .with(
            "member",
            [
                format!("CN=GG-Backend,{}", groups_ou()),
                format!("CN=GG-Finance,{}", groups_ou()),
            ],
        )
        .with("whenCreated", ["20230101090000.0Z"]);
    decode_group(entry, vec![])
}

/// A universal distribution list with a unicode name.
pub fn distribution_group() -> Group {
    let entry = RawEntry::new(format!("CN=Ünïcødé Announcements,{}", groups_ou()))
        .with("objectClass", ["top", "group"])
        .with("objectGUID", [guid(103).to_bytes().to_vec()])
        .with("objectSid", [sid(1401).to_bytes()])
        .with("sAMAccountName", ["announcements"])
        .with("name", ["Ünïcødé Announcements"])
        .with("displayName", ["📣 Announcements"])
        .with("mail", ["announce@example.test"])
        .with("groupType", ["8"])
        .with("whenCreated", ["20240601090000.0Z"]);
    decode_group(entry, vec![])
}

/// BUILTIN\Administrators (system-created, domain-local security).
pub fn builtin_administrators() -> Group {
    let entry = RawEntry::new(format!("CN=Administrators,CN=Builtin,{BASE}"))
        .with("objectClass", ["top", "group"])
        .with("objectGUID", [guid(104).to_bytes().to_vec()])
        .with(
            "objectSid",
            ["S-1-5-32-544".parse::<Sid>().unwrap().to_bytes()],
        )
        .with("sAMAccountName", ["Administrators"])
        .with("name", ["Administrators"])
        .with(
            "description",
            ["Administrators have complete and unrestricted access to the computer/domain"],
        )
        .with("groupType", ["-2147483643"])
        .with("adminCount", ["1"])
        .with("whenCreated", ["20230101080000.0Z"]);
    decode_group(entry, vec![])
}

/// Every fixture group.
pub fn groups() -> Vec<Group> {
    vec![
        global_security_group(),
        domain_local_group(),
        distribution_group(),
        builtin_administrators(),
    ]
}

/// A deleted user and a deleted group.
pub fn deletions() -> Vec<Deletion> {
    vec![
        Deletion {
            object_guid: guid(9),
            object_sid: Some(sid(1190)),
            kind: ObjectKind::User,
            dn: Some(format!(
                "CN=Old Account\\0ADEL:0a3c8e1f-5b7d-4c2e-9f10-000000000009,CN=Deleted Objects,{BASE}"
            )),
            sam_account_name: Some("old.account".into()),
        },
        Deletion {
            object_guid: guid(109),
            object_sid: Some(sid(1290)),
            kind: ObjectKind::Group,
            dn: None,
            sam_account_name: None,
        },
    ]
}

/// A batch of every fixture change: users, groups (the global group carrying its member as
/// affected user), deletes.
pub fn batch() -> Batch {
    let mut changes: Vec<Change> = users().into_iter().map(Change::UpsertUser).collect();
    for group in groups() {
        let affected_users = if group.object_guid == guid(101) {
            vec![normal()]
        } else {
            vec![]
        };
        changes.push(Change::UpsertGroup {
            group,
            affected_users,
        });
    }
    changes.extend(deletions().into_iter().map(Change::Delete));
    Batch {
        id: 7,
        sync: sync(),
        changes,
    }
}

/// `count` distinct users cloned from the fixtures (new GUID and SID each), for the bench.
pub fn many_users(count: usize) -> Vec<User> {
    let templates = users();
    (0..count)
        .map(|i| {
            let mut user = templates[i % templates.len()].clone();
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            user.object_guid = Guid::from_uuid(Uuid::from_u128(
                0xbe4c_0000_0000_0000_0000_0000_0000_0000 | u128::from(n),
            ));
            user.object_sid = Some(sid(100_000 + n));
            user.sam_account_name = Some(format!("user{i:06}"));
            user
        })
        .collect()
}
