//! Arbitrary Unicode in every text attribute, from raw entry through `ad-model` and every sink
//! mapping: no panic, valid JSON, every value preserved (modulo the documented trimming of
//! surrounding whitespace; a value that is only whitespace is absent).

use ad_model::{GroupRef, RawEntry, User};
use asset_sink::qualys::mapping::user_asset;
use asset_sink::sekoia::ocsf::user_inventory_info;
use asset_sink::{Batch, Change, testing};
use proptest::prelude::*;
use serde_json::Value;

/// Characters that break naive code: combining marks, right-to-left scripts and bidi
/// controls, emoji (4-byte UTF-8, ZWJ sequences), NUL-free C0/C1 controls, DN specials,
/// whitespace of every kind, and anything else.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>().prop_map(|c| if c == '\0' { '\u{1}' } else { c }),
        1 => (0x0300u32..=0x036f).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        1 => (0x0590u32..=0x08ff).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        1 => (0x1f300u32..=0x1faff).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        1 => (1u32..=0x1f).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        1 => (0x80u32..=0x9f).prop_map(|c| char::from_u32(c).unwrap_or('a')),
        1 => prop::sample::select(vec![
            '\u{200d}', '\u{200e}', '\u{200f}', '\u{202e}', '\u{feff}', '\u{a0}', '\u{3000}',
            ',', '+', '"', '\\', '<', '>', ';', '=', '#', ' ', '*', '(', ')', 'é', 'ß', 'İ',
        ]),
        2 => prop::char::range('a', 'z'),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 1..=256).prop_map(|c| c.into_iter().collect())
}

/// RFC 4514 escaping of an attribute value, as a DC writes DNs.
fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '#' if i == 0 => out.push_str(if c == ' ' { "\\20" } else { "\\23" }),
            ' ' if i == last => out.push_str("\\20"),
            _ => out.push(c),
        }
    }
    out
}

/// One value of each text attribute a user has.
#[derive(Debug, Clone)]
struct Texts {
    sam: String,
    cn: String,
    ou: String,
    display: String,
    description: String,
    mail: String,
    given: String,
    surname: String,
    title: String,
    department: String,
    company: String,
    office: String,
    city: String,
    state: String,
    country: String,
    street: String,
    mobile: String,
    group: String,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        (text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text(), text(), text()),
        (text(), text(), text(), text(), text(), text()),
    )
        .prop_map(
            |(
                (sam, cn, ou, display, description, mail),
                (given, surname, title, department, company, office),
                (city, state, country, street, mobile, group),
            )| Texts {
                sam,
                cn,
                ou,
                display,
                description,
                mail,
                given,
                surname,
                title,
                department,
                company,
                office,
                city,
                state,
                country,
                street,
                mobile,
                group,
            },
        )
}

fn user(t: &Texts, n: u32) -> User {
    let dn = format!(
        "CN={},OU={},{}",
        escape_rdn_value(&t.cn),
        escape_rdn_value(&t.ou),
        testing::BASE
    );
    let entry = RawEntry::new(dn)
        .with(
            "objectClass",
            ["top", "person", "organizationalPerson", "user"],
        )
        .with("objectGUID", [testing::guid(n).to_bytes().to_vec()])
        .with("objectSid", [testing::sid(10_000 + n).to_bytes()])
        .with("sAMAccountName", [t.sam.as_str()])
        .with("name", [t.cn.as_str()])
        .with("cn", [t.cn.as_str()])
        .with("displayName", [t.display.as_str()])
        .with("description", [t.description.as_str()])
        .with("mail", [t.mail.as_str()])
        .with("givenName", [t.given.as_str()])
        .with("sn", [t.surname.as_str()])
        .with("title", [t.title.as_str()])
        .with("department", [t.department.as_str()])
        .with("company", [t.company.as_str()])
        .with("physicalDeliveryOfficeName", [t.office.as_str()])
        .with("l", [t.city.as_str()])
        .with("st", [t.state.as_str()])
        .with("co", [t.country.as_str()])
        .with("streetAddress", [t.street.as_str()])
        .with("mobile", [t.mobile.as_str()])
        .with("userAccountControl", ["512"])
        .with("primaryGroupID", ["513"]);
    let mut user = User::from_entry(&entry, testing::now())
        .expect("a user with text attributes decodes")
        .record;
    user.groups = vec![GroupRef {
        dn: format!(
            "CN={},OU=Groups,{}",
            escape_rdn_value(&t.group),
            testing::BASE
        ),
        sid: Some(testing::sid(20_000 + n)),
        name: Some(t.group.clone()),
        primary: false,
    }];
    user
}

/// What a mapping shows of a value: trimmed, absent when nothing is left.
fn shown(value: &str) -> Option<&str> {
    Some(value.trim()).filter(|v| !v.is_empty())
}

fn at<'a>(value: &'a Value, path: &str) -> Option<&'a str> {
    value.pointer(path).and_then(Value::as_str)
}

fn check_user(t: &Texts, n: u32) -> Result<(), TestCaseError> {
    let user = user(t, n);
    // ad-model keeps every value exactly (no trimming at decode time).
    prop_assert_eq!(user.sam_account_name.as_deref(), Some(t.sam.as_str()));
    prop_assert_eq!(user.display_name.as_deref(), Some(t.display.as_str()));
    prop_assert_eq!(user.description.as_deref(), Some(t.description.as_str()));
    prop_assert_eq!(user.mail.as_deref(), Some(t.mail.as_str()));
    prop_assert_eq!(user.office.as_deref(), Some(t.office.as_str()));

    // Sekoia (OCSF): serialize, parse back, compare.
    let event = serde_json::to_string(&user_inventory_info(&user, testing::now()))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let event: Value =
        serde_json::from_str(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let guid = user.object_guid.to_string();
    prop_assert_eq!(
        at(&event, "/user/name"),
        Some(shown(&t.sam).unwrap_or(shown(&t.cn).unwrap_or(&guid)))
    );
    prop_assert_eq!(at(&event, "/user/display_name"), shown(&t.display));
    let full_name = match (shown(&t.display), shown(&t.given), shown(&t.surname)) {
        (Some(d), _, _) => Some(d.to_owned()),
        (None, Some(g), Some(s)) => Some(format!("{g} {s}")),
        (None, Some(one), None) | (None, None, Some(one)) => Some(one.to_owned()),
        (None, None, None) => None,
    };
    prop_assert_eq!(at(&event, "/user/full_name"), full_name.as_deref());
    prop_assert_eq!(at(&event, "/user/email_addr"), shown(&t.mail));
    prop_assert_eq!(at(&event, "/user/org/name"), shown(&t.company));
    if shown(&t.company).is_some() {
        prop_assert_eq!(at(&event, "/user/org/ou_name"), shown(&t.ou));
    }
    prop_assert_eq!(at(&event, "/user/ldap_person/job_title"), shown(&t.title));
    prop_assert_eq!(
        at(&event, "/user/ldap_person/department"),
        shown(&t.department)
    );
    prop_assert_eq!(at(&event, "/user/ldap_person/given_name"), shown(&t.given));
    prop_assert_eq!(at(&event, "/user/ldap_person/surname"), shown(&t.surname));
    prop_assert_eq!(
        at(&event, "/user/ldap_person/office_location"),
        shown(&t.office)
    );
    match shown(&t.group) {
        Some(name) => prop_assert_eq!(at(&event, "/user/groups/0/name"), Some(name)),
        // A blank name falls back to the DN's RDN value: still a name.
        None => prop_assert!(at(&event, "/user/groups/0/name").is_some()),
    }

    // Qualys.
    let asset = serde_json::to_string(&user_asset(&user))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let asset: Value =
        serde_json::from_str(&asset).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let class = "/asset/assetDetail/userAssetClass";
    prop_assert_eq!(
        at(&asset, &format!("{class}/name")),
        Some(shown(&t.cn).unwrap_or(shown(&t.sam).unwrap_or(&guid)))
    );
    for (key, value) in [
        ("email", &t.mail),
        ("firstName", &t.given),
        ("lastName", &t.surname),
        ("displayName", &t.display),
        ("phone", &t.mobile),
        ("jobTitle", &t.title),
        ("currentAddress/city", &t.city),
        ("currentAddress/state", &t.state),
        ("currentAddress/country", &t.country),
        ("currentAddress/streetAddress", &t.street),
    ] {
        prop_assert_eq!(
            at(&asset, &format!("{class}/{key}")),
            shown(value),
            "{}",
            key
        );
    }

    // JSONL: the canonical record round-trips exactly.
    let batch = Batch {
        id: 1,
        sync: testing::sync(),
        changes: vec![Change::UpsertUser(user.clone())],
    };
    let lines =
        asset_sink::jsonl::encode(&batch).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let text = String::from_utf8(lines).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(text.lines().count(), 1);
    let line: Value =
        serde_json::from_str(text.trim_end()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: User = serde_json::from_value(line["record"].clone())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back, user);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_unicode_in_any_text_attribute_survives_every_mapping(t in texts(), n in 1u32..1000) {
        check_user(&t, n)?;
    }
}

/// `count` users with hostile text, generated deterministically (the same on every run).
pub fn hostile_users(count: u32) -> Vec<User> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = texts();
    (1..=count)
        .map(|n| {
            user(
                &strategy.new_tree(&mut runner).expect("generates").current(),
                n,
            )
        })
        .collect()
}
