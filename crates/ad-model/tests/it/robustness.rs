//! Arbitrary bytes through the raw-entry → record path never panic. This proptest suite is
//! the fuzzer that runs in CI: cargo-fuzz needs a nightly toolchain, which these machines
//! cannot install.

use ad_model::{Deleted, Group, RawEntry, User};
use proptest::prelude::*;

use crate::fixtures::{group_entry, now, user_entry};

const ATTRIBUTES: &[&str] = &[
    "objectGUID",
    "objectSid",
    "sIDHistory",
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "pwdLastSet",
    "lastLogon",
    "lastLogonTimestamp",
    "accountExpires",
    "badPasswordTime",
    "lockoutTime",
    "whenCreated",
    "whenChanged",
    "uSNChanged",
    "badPwdCount",
    "logonCount",
    "primaryGroupID",
    "groupType",
    "member",
    "member;range=0-1499",
    "memberOf",
    "objectClass",
    "name",
    "mail",
    "adminCount",
];

fn arbitrary_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "-?[0-9]{0,22}".prop_map(String::into_bytes),
        "[0-9]{14}\\.[0-9]Z".prop_map(String::into_bytes),
        "\\PC{0,20}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_attributes_never_panic(
        attrs in proptest::collection::vec(
            (proptest::sample::select(ATTRIBUTES), proptest::collection::vec(arbitrary_value(), 0..4)),
            0..12,
        )
    ) {
        let mut entry = RawEntry::new("CN=fuzz");
        for (name, values) in &attrs {
            for value in values {
                entry.push(name, value.clone());
            }
        }
        let user = User::from_entry(&entry, now());
        let group = Group::from_entry(&entry);
        let _ = Deleted::from_entry(&entry);
        // A valid 16-byte objectGUID is exactly what decides success.
        let guid_ok = entry.values("objectguid").first().is_some_and(|v| v.len() == 16);
        prop_assert_eq!(user.is_ok(), guid_ok);
        prop_assert_eq!(group.is_ok(), guid_ok);
        if let Ok(decoded) = user {
            // What was decoded serializes and comes back identical.
            let json = serde_json::to_string(&decoded.record).unwrap();
            prop_assert_eq!(serde_json::from_str::<User>(&json).unwrap(), decoded.record);
        }
    }

    #[test]
    fn corrupting_one_attribute_keeps_the_rest(index in 0usize..ATTRIBUTES.len(), value in arbitrary_value()) {
        let name = ATTRIBUTES[index];
        prop_assume!(name != "objectGUID");
        let mut entry = user_entry();
        entry.set(name, vec![value]);
        let decoded = User::from_entry(&entry, now()).unwrap();
        prop_assert_eq!(decoded.record.sam_account_name.as_deref(), Some("zoe.angstrom"));
        prop_assert!(decoded.warnings.len() <= 1);
        let mut group = group_entry();
        group.set(name, vec![b"\xff\xfe".to_vec()]);
        let decoded = Group::from_entry(&group).unwrap();
        prop_assert_eq!(decoded.record.sam_account_name.as_deref(), Some("GG-Backend"));
    }
}
