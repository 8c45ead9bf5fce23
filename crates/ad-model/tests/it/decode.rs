//! Realistic users and groups decoded; snapshots pin the canonical JSON.

use ad_model::{
    AccountStatus, Deleted, Group, GroupKind, GroupScope, ObjectKind, PwdLastSet, RawEntry, User,
    Visibility,
};

use crate::fixtures::{group_entry, guid, now, sid, user_entry};

#[test]
fn realistic_user_snapshot() {
    let decoded = User::from_entry(&user_entry(), now()).unwrap();
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    let user = &decoded.record;
    assert_eq!(user.account.status, AccountStatus::Active);
    assert_eq!(user.account_expires, None);
    assert_eq!(user.lockout_time, None);
    assert!(matches!(user.pwd_last_set, Some(PwdLastSet::SetAt(_))));
    assert_ne!(user.last_logon, user.last_logon_timestamp);
    insta::assert_json_snapshot!("user_realistic", user);
}

#[test]
fn realistic_group_snapshot() {
    let decoded = Group::from_entry(&group_entry()).unwrap();
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    let group = &decoded.record;
    let gt = group.group_type.unwrap();
    assert_eq!(
        (gt.kind(), gt.scope(), gt.visibility()),
        (GroupKind::Security, GroupScope::Global, Visibility::Private)
    );
    assert_eq!(group.rid(), Some(1201));
    insta::assert_json_snapshot!("group_realistic", group);
}

#[test]
fn canonical_json_round_trips() {
    let user = User::from_entry(&user_entry(), now()).unwrap().record;
    let json = serde_json::to_string(&user).unwrap();
    assert_eq!(serde_json::from_str::<User>(&json).unwrap(), user);
    let group = Group::from_entry(&group_entry()).unwrap().record;
    let json = serde_json::to_string(&group).unwrap();
    assert_eq!(serde_json::from_str::<Group>(&json).unwrap(), group);
}

#[test]
fn every_key_is_present_even_when_empty() {
    let minimal = RawEntry::new("CN=min,DC=x")
        .with("objectGUID", [guid("00000000-0000-0000-0000-000000000001")]);
    let user = User::from_entry(&minimal, now()).unwrap().record;
    let value = serde_json::to_value(&user).unwrap();
    let full =
        serde_json::to_value(User::from_entry(&user_entry(), now()).unwrap().record).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&value), keys(&full));
    assert_eq!(value["mail"], serde_json::Value::Null);
    assert_eq!(value["member_of"], serde_json::json!([]));
}

#[test]
fn missing_or_bad_object_guid_is_an_entry_error() {
    let mut entry = user_entry();
    entry.remove("objectGUID");
    let err = User::from_entry(&entry, now()).unwrap_err();
    assert!(err.to_string().contains("has no objectGUID"), "{err}");
    assert!(err.to_string().contains("CN=Zoë Ångström"), "{err}");
    entry.push("objectGUID", vec![0u8; 17]);
    let err = Group::from_entry(&entry).unwrap_err();
    assert!(
        err.to_string()
            .contains("exactly 16 bytes, this one has 17"),
        "{err}"
    );
}

#[test]
fn bad_optional_attributes_leave_the_field_empty_and_warn() {
    let mut entry = user_entry();
    entry.set("objectSid", vec![vec![1, 5, 0, 0, 0, 0, 0]]);
    entry.set("pwdLastSet", vec![b"-5".to_vec()]);
    entry.set("whenCreated", vec![b"yesterday".to_vec()]);
    entry.set("userAccountControl", vec![b"normal".to_vec()]);
    entry.set("mail", vec![vec![0xff, 0xfe, 0x00]]);
    entry.set("lastLogon", vec![b"1".to_vec(), b"2".to_vec()]);
    let decoded = User::from_entry(&entry, now()).unwrap();
    let user = decoded.record;
    assert_eq!(user.object_sid, None);
    assert_eq!(user.primary_group_sid, None);
    assert_eq!(user.pwd_last_set, None);
    assert_eq!(user.when_created, None);
    assert_eq!(user.user_account_control, None);
    assert_eq!(user.mail, None);
    assert!(user.last_logon.is_some(), "first of two values is used");
    // The rest survived.
    assert_eq!(user.sam_account_name.as_deref(), Some("zoe.angstrom"));
    let report: Vec<String> = decoded
        .warnings
        .iter()
        .map(|w| format!("{}: {} [{}]", w.attribute, w.problem, w.shape))
        .collect();
    insta::assert_yaml_snapshot!("user_bad_attributes_warnings", report);
    // Warnings name shapes, never values.
    for warning in &decoded.warnings {
        assert!(!warning.shape.contains("yesterday"));
    }
}

#[test]
fn account_states() {
    let cases: &[(&str, &str, &str, &str, AccountStatus)] = &[
        // uac, computed, accountExpires, pwdLastSet
        (
            "514",
            "0",
            "9223372036854775807",
            "133990000000000000",
            AccountStatus::Disabled,
        ),
        (
            "512",
            "16",
            "0",
            "133990000000000000",
            AccountStatus::LockedOut,
        ),
        (
            "512",
            "0",
            "133000000000000000",
            "133990000000000000",
            AccountStatus::Expired,
        ),
        (
            "512",
            "8388608",
            "0",
            "133990000000000000",
            AccountStatus::PasswordExpired,
        ),
        (
            "512",
            "8388608",
            "0",
            "0",
            AccountStatus::MustChangePassword,
        ),
        ("66048", "0", "0", "0", AccountStatus::Active),
    ];
    for (uac, computed, expires, pwd, expected) in cases {
        let mut entry = user_entry();
        entry.set("userAccountControl", vec![uac.as_bytes().to_vec()]);
        entry.set(
            "msDS-User-Account-Control-Computed",
            vec![computed.as_bytes().to_vec()],
        );
        entry.set("accountExpires", vec![expires.as_bytes().to_vec()]);
        entry.set("pwdLastSet", vec![pwd.as_bytes().to_vec()]);
        let user = User::from_entry(&entry, now()).unwrap().record;
        assert_eq!(
            user.account.status, *expected,
            "uac={uac} computed={computed} expires={expires} pwd={pwd}"
        );
    }
}

#[test]
fn ranged_members_are_merged() {
    let mut entry = group_entry();
    entry.set("member", vec![]);
    entry.push("member;range=0-1", b"CN=a".to_vec());
    entry.push("member;range=0-1", b"CN=b".to_vec());
    entry.push("member;range=2-*", b"CN=c".to_vec());
    let group = Group::from_entry(&entry).unwrap().record;
    assert_eq!(group.members, ["CN=a", "CN=b", "CN=c"]);
}

#[test]
fn admin_and_service_signals() {
    let mut user = User::from_entry(&user_entry(), now()).unwrap().record;
    assert!(!user.is_privileged());
    let admins = Group::from_entry(&group_entry().with("objectSid", Vec::<Vec<u8>>::new()))
        .unwrap()
        .record;
    let mut admins_ref = admins.as_ref(false);
    admins_ref.sid = Some(format!("{}-512", crate::fixtures::DOMAIN).parse().unwrap());
    user.groups.push(admins_ref);
    assert!(user.is_privileged());
    assert!(!user.is_service_account());
    user.service_principal_names
        .push("HTTP/app.corp.example.test".into());
    assert!(user.is_service_account());
    user.object_class.push("computer".into());
    assert!(user.is_machine_account());
}

#[test]
fn tombstones() {
    let entry = RawEntry::new("CN=Old User\\0ADEL:0a3c8e1f-5b7d-4c2e-9f10-2b3c4d5e6f70,CN=Deleted Objects,DC=corp,DC=example,DC=test")
        .with("objectGUID", [guid("0a3c8e1f-5b7d-4c2e-9f10-2b3c4d5e6f70")])
        .with("objectSid", [sid(1105)])
        .with("objectClass", ["top", "person", "organizationalPerson", "user"])
        .with("isDeleted", ["TRUE"])
        .with("uSNChanged", ["900000"]);
    let deleted = Deleted::from_entry(&entry).unwrap().record;
    assert_eq!(deleted.kind, Some(ObjectKind::User));
    assert_eq!(
        deleted.object_guid.to_string(),
        "0a3c8e1f-5b7d-4c2e-9f10-2b3c4d5e6f70"
    );
    assert_eq!(deleted.usn_changed, Some(900000));
    assert_eq!(
        ObjectKind::from_object_classes(&["top", "user", "computer"]),
        None
    );
    assert_eq!(
        ObjectKind::from_object_classes(&["top", "group"]),
        Some(ObjectKind::Group)
    );
}
