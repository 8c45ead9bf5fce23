//! Realistic raw entries, as a Windows DC returns them.

use ad_model::{Guid, RawEntry, Sid};
use chrono::{DateTime, TimeZone, Utc};

pub const DOMAIN: &str = "S-1-5-21-1004336348-1177238915-682003330";

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

pub fn sid(rid: u32) -> Vec<u8> {
    format!("{DOMAIN}-{rid}").parse::<Sid>().unwrap().to_bytes()
}

pub fn guid(text: &str) -> Vec<u8> {
    text.parse::<Guid>().unwrap().to_bytes().to_vec()
}

/// A typical enabled employee: every attribute an inventory reads.
pub fn user_entry() -> RawEntry {
    RawEntry::new("CN=Zoë Ångström,OU=Engineering,OU=Users,OU=Corp,DC=corp,DC=example,DC=test")
        .with(
            "objectClass",
            ["top", "person", "organizationalPerson", "user"],
        )
        .with("objectGUID", [guid("0a3c8e1f-5b7d-4c2e-9f10-2b3c4d5e6f70")])
        .with("objectSid", [sid(1105)])
        .with(
            "sIDHistory",
            ["S-1-5-21-1-2-3-4242".parse::<Sid>().unwrap().to_bytes()],
        )
        .with("sAMAccountName", ["zoe.angstrom"])
        .with("userPrincipalName", ["zoe.angstrom@corp.example.test"])
        .with("name", ["Zoë Ångström"])
        .with("cn", ["Zoë Ångström"])
        .with("displayName", ["Zoë Ångström"])
        .with("givenName", ["Zoë"])
        .with("sn", ["Ångström"])
        .with("initials", ["ZA"])
        .with("description", ["Backend engineer"])
        .with("mail", ["zoe.angstrom@example.test"])
        .with("title", ["Senior Engineer"])
        .with("department", ["Engineering"])
        .with("company", ["Example Corp"])
        .with("physicalDeliveryOfficeName", ["Stockholm 3F"])
        .with(
            "manager",
            ["CN=Grace Hopper,OU=Engineering,OU=Users,OU=Corp,DC=corp,DC=example,DC=test"],
        )
        .with("employeeID", ["E-10442"])
        .with("employeeNumber", ["10442"])
        .with("employeeType", ["Employee"])
        .with("streetAddress", ["Drottninggatan 1"])
        .with("l", ["Stockholm"])
        .with("st", ["Stockholms län"])
        .with("postalCode", ["111 51"])
        .with("co", ["Sweden"])
        .with("c", ["SE"])
        .with("telephoneNumber", ["+46 8 123 456"])
        .with("mobile", ["+46 70 123 45 67"])
        .with("whenCreated", ["20230315081500.0Z"])
        .with("whenChanged", ["20261120171205.0Z"])
        .with("uSNCreated", ["20511"])
        .with("uSNChanged", ["884213"])
        .with("lastLogon", ["134080416000000000"])
        .with("lastLogonTimestamp", ["134075232000000000"])
        .with("pwdLastSet", ["133990000000000000"])
        .with("accountExpires", ["9223372036854775807"])
        .with("badPwdCount", ["1"])
        .with("badPasswordTime", ["134080400000000000"])
        .with("logonCount", ["1289"])
        .with("lockoutTime", ["0"])
        .with("userAccountControl", ["512"])
        .with("msDS-User-Account-Control-Computed", ["0"])
        .with(
            "memberOf",
            [
                "CN=GG-Backend,OU=Groups,OU=Corp,DC=corp,DC=example,DC=test",
                "CN=GG-AllStaff,OU=Groups,OU=Corp,DC=corp,DC=example,DC=test",
            ],
        )
        .with("primaryGroupID", ["513"])
}

/// A global security group with nested members.
pub fn group_entry() -> RawEntry {
    RawEntry::new("CN=GG-Backend,OU=Groups,OU=Corp,DC=corp,DC=example,DC=test")
        .with("objectClass", ["top", "group"])
        .with("objectGUID", [guid("5d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6")])
        .with("objectSid", [sid(1201)])
        .with("sAMAccountName", ["GG-Backend"])
        .with("name", ["GG-Backend"])
        .with("cn", ["GG-Backend"])
        .with("displayName", ["Backend engineers"])
        .with("description", ["Everyone who ships the API"])
        .with("mail", ["backend@example.test"])
        .with("groupType", ["-2147483646"])
        .with(
            "managedBy",
            ["CN=Grace Hopper,OU=Engineering,OU=Users,OU=Corp,DC=corp,DC=example,DC=test"],
        )
        .with(
            "member",
            [
                "CN=Zoë Ångström,OU=Engineering,OU=Users,OU=Corp,DC=corp,DC=example,DC=test",
                "CN=GG-Backend-Oncall,OU=Groups,OU=Corp,DC=corp,DC=example,DC=test",
            ],
        )
        .with(
            "memberOf",
            ["CN=GG-Engineering,OU=Groups,OU=Corp,DC=corp,DC=example,DC=test"],
        )
        .with("whenCreated", ["20230101090000.0Z"])
        .with("whenChanged", ["20261101100000.0Z"])
        .with("uSNCreated", ["12001"])
        .with("uSNChanged", ["880001"])
}
