//! Content hashes: what decides whether an object changed since the sink last accepted it.
//!
//! The hash covers the canonical JSON of the record minus the bookkeeping attributes that
//! change whenever *anything* on the object changes, including attributes we do not read
//! (`uSNChanged`, `uSNCreated`, `whenChanged`). Everything a sink maps from is covered,
//! including the resolved group memberships and the derived account status (an account that
//! expired since the last cycle is re-sent).
//!
//! Nor do the attributes each DC keeps for itself and never replicates (`lastLogon`,
//! `logonCount`, `badPwdCount`, `badPasswordTime`): they differ from DC to DC,
//! so counting them would re-send every user whenever a cycle reads another DC (a failover)
//! and flip the platform between two DCs' counters. They are still *sent* with every record,
//! as the DC that served the cycle has them; `lastLogonTimestamp`, the replicated last logon,
//! is content. (State written before this rule compares unequal once: each user is re-sent
//! once.)
//!
//! Multi-valued attributes are sets in AD: a DC returns their values in no promised order,
//! and the same membership can come back in another order after a member was removed and
//! added again. They are hashed sorted, so a new order alone is not a change. (State written
//! before this rule compares unequal once for objects whose values were not in order: they
//! are re-sent once, an upsert of what the platform already has.)

//!
//! The bytes hashed are those of the rules above and nothing else; how they are produced
//! is free. Users (millions per full sync) are hashed through a borrowed view of the record
//! that serializes exactly like the adjusted copy the rules describe, sorting only the lists
//! that are not in order already, into a reused buffer: no copy of the record. A test holds
//! the view to the copy.

use std::cell::RefCell;

use ad_model::{Group, GroupRef, Guid, Privilege, Sid, User};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Hash of a user's content.
pub fn user(user: &User) -> String {
    let u = user;
    digest(&UserView {
        dn: &u.dn,
        object_guid: &u.object_guid,
        object_sid: &u.object_sid,
        sid_history: Set::by_key(&u.sid_history, ToString::to_string),
        sam_account_name: &u.sam_account_name,
        user_principal_name: &u.user_principal_name,
        name: &u.name,
        display_name: &u.display_name,
        given_name: &u.given_name,
        surname: &u.surname,
        initials: &u.initials,
        description: &u.description,
        mail: &u.mail,
        title: &u.title,
        department: &u.department,
        company: &u.company,
        office: &u.office,
        manager: &u.manager,
        employee_id: &u.employee_id,
        employee_number: &u.employee_number,
        employee_type: &u.employee_type,
        street_address: &u.street_address,
        city: &u.city,
        state: &u.state,
        postal_code: &u.postal_code,
        country: &u.country,
        country_code: &u.country_code,
        telephone_number: &u.telephone_number,
        mobile: &u.mobile,
        when_created: &u.when_created,
        when_changed: None,
        usn_created: None,
        usn_changed: None,
        last_logon: None,
        last_logon_timestamp: &u.last_logon_timestamp,
        pwd_last_set: &u.pwd_last_set,
        account_expires: &u.account_expires,
        bad_pwd_count: None,
        bad_password_time: None,
        logon_count: None,
        lockout_time: &u.lockout_time,
        user_account_control: &u.user_account_control,
        user_account_control_computed: &u.user_account_control_computed,
        account: &u.account,
        member_of: Set::dns(&u.member_of, String::as_str),
        primary_group_id: &u.primary_group_id,
        primary_group_sid: &u.primary_group_sid,
        object_class: Set::ordered(&u.object_class),
        service_principal_names: Set::ordered(&u.service_principal_names),
        admin_count: &u.admin_count,
        groups: Set::dns(&u.groups, |r| &r.dn),
        transitive_groups: Set::dns(&u.transitive_groups, |r| &r.dn),
        privileges: Set::by_key(&u.privileges, |p: &Privilege| {
            serde_json::to_string(p).unwrap_or_default()
        }),
    })
}

/// Hash of a group's content.
pub fn group(group: &Group) -> String {
    let mut copy = group.clone();
    copy.usn_changed = None;
    copy.usn_created = None;
    copy.when_changed = None;
    sort_dns(&mut copy.members);
    sort_dns(&mut copy.member_of);
    copy.object_class.sort();
    copy.sid_history.sort_by_cached_key(ToString::to_string);
    sort_refs(&mut copy.groups);
    digest(&copy)
}

/// DNs compare case-insensitively, as AD compares them.
fn sort_dns(dns: &mut [String]) {
    dns.sort_by_cached_key(|dn| dn.to_lowercase());
}

fn sort_refs(refs: &mut [GroupRef]) {
    refs.sort_by_cached_key(|r| r.dn.to_lowercase());
}

/// Hash of a list of strings (a group's ancestors, for nesting changes).
pub fn strings(items: &[String]) -> String {
    digest(&items)
}

thread_local! {
    /// The JSON of the record being hashed: one buffer per thread, reused.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn digest<T: serde::Serialize>(value: &T) -> String {
    BUFFER.with(|buffer| {
        let mut buffer = match buffer.try_borrow_mut() {
            Ok(buffer) => buffer,
            // Not reentrant; cannot happen, but a fresh buffer is as good.
            Err(_) => return digest_into(value, &mut Vec::new()),
        };
        let hash = digest_into(value, &mut buffer);
        if buffer.capacity() > 1 << 20 {
            // A group of many members: do not keep its buffer.
            *buffer = Vec::new();
        }
        hash
    })
}

fn digest_into<T: serde::Serialize>(value: &T, buffer: &mut Vec<u8>) -> String {
    buffer.clear();
    // Serializing a plain record cannot fail: no maps with non-string keys.
    if serde_json::to_writer(&mut *buffer, value).is_err() {
        return String::new();
    }
    hex::encode(&Sha256::digest(buffer.as_slice())[..16])
}

/// A multi-valued attribute as the hash sees it: the values as they are when already in
/// order, else references to them in order.
enum Set<'a, T> {
    AsIs(&'a [T]),
    Sorted(Vec<&'a T>),
}

impl<'a, T> Set<'a, T> {
    /// Sorted by `key` (with `sort_by_cached_key`, as the rules' copy is).
    fn by_key<K: Ord>(items: &'a [T], key: impl Fn(&T) -> K) -> Self {
        if items.len() < 2 {
            return Set::AsIs(items);
        }
        let mut refs: Vec<&T> = items.iter().collect();
        refs.sort_by_cached_key(|item| key(item));
        Set::Sorted(refs)
    }

    /// Sorted by the lower case of a DN. Values already in that order (the usual case) are
    /// taken as they are, since a stable sort would not move them.
    fn dns(items: &'a [T], dn: impl Fn(&T) -> &str) -> Self {
        let in_order = items
            .windows(2)
            .all(|pair| lower_le(dn(&pair[0]), dn(&pair[1])));
        if in_order {
            Set::AsIs(items)
        } else {
            Set::by_key(items, |item| dn(item).to_lowercase())
        }
    }

    /// Sorted by their own order (`sort`, stable).
    fn ordered(items: &'a [T]) -> Self
    where
        T: Ord,
    {
        if items.is_sorted() {
            Set::AsIs(items)
        } else {
            let mut refs: Vec<&T> = items.iter().collect();
            refs.sort();
            Set::Sorted(refs)
        }
    }
}

/// `a.to_lowercase() <= b.to_lowercase()`, without allocating for ASCII text.
fn lower_le(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .le(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.to_lowercase() <= b.to_lowercase()
    }
}

impl<T: Serialize> Serialize for Set<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Set::AsIs(items) => serializer.collect_seq(items.iter()),
            Set::Sorted(refs) => serializer.collect_seq(refs.iter()),
        }
    }
}

/// `User` as the rules adjust it, borrowed: same fields in the same order (serde derives
/// the same JSON), bookkeeping and per-DC counters `null`, sets sorted.
#[derive(Serialize)]
struct UserView<'a> {
    dn: &'a str,
    object_guid: &'a Guid,
    object_sid: &'a Option<Sid>,
    sid_history: Set<'a, Sid>,
    sam_account_name: &'a Option<String>,
    user_principal_name: &'a Option<String>,
    name: &'a Option<String>,
    display_name: &'a Option<String>,
    given_name: &'a Option<String>,
    surname: &'a Option<String>,
    initials: &'a Option<String>,
    description: &'a Option<String>,
    mail: &'a Option<String>,
    title: &'a Option<String>,
    department: &'a Option<String>,
    company: &'a Option<String>,
    office: &'a Option<String>,
    manager: &'a Option<String>,
    employee_id: &'a Option<String>,
    employee_number: &'a Option<String>,
    employee_type: &'a Option<String>,
    street_address: &'a Option<String>,
    city: &'a Option<String>,
    state: &'a Option<String>,
    postal_code: &'a Option<String>,
    country: &'a Option<String>,
    country_code: &'a Option<String>,
    telephone_number: &'a Option<String>,
    mobile: &'a Option<String>,
    when_created: &'a Option<chrono::DateTime<chrono::Utc>>,
    when_changed: Option<()>,
    usn_created: Option<()>,
    usn_changed: Option<()>,
    last_logon: Option<()>,
    last_logon_timestamp: &'a Option<chrono::DateTime<chrono::Utc>>,
    pwd_last_set: &'a Option<ad_model::PwdLastSet>,
    account_expires: &'a Option<chrono::DateTime<chrono::Utc>>,
    bad_pwd_count: Option<()>,
    bad_password_time: Option<()>,
    logon_count: Option<()>,
    lockout_time: &'a Option<chrono::DateTime<chrono::Utc>>,
    user_account_control: &'a Option<ad_model::UserAccountControl>,
    user_account_control_computed: &'a Option<ad_model::UserAccountControl>,
    account: &'a ad_model::AccountState,
    member_of: Set<'a, String>,
    primary_group_id: &'a Option<u32>,
    primary_group_sid: &'a Option<Sid>,
    object_class: Set<'a, String>,
    service_principal_names: Set<'a, String>,
    admin_count: &'a Option<u32>,
    groups: Set<'a, GroupRef>,
    transitive_groups: Set<'a, GroupRef>,
    privileges: Set<'a, Privilege>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_model::{RawEntry, User};
    use chrono::Utc;

    fn user_with(attr: &str, value: &str) -> User {
        let entry = RawEntry::new("CN=a,DC=x")
            .with("objectGUID", [vec![7u8; 16]])
            .with("sAMAccountName", ["a"])
            .with(attr, [value]);
        User::from_entry(&entry, Utc::now()).unwrap().record
    }

    #[test]
    fn bookkeeping_attributes_do_not_count() {
        assert_eq!(
            user(&user_with("uSNChanged", "1")),
            user(&user_with("uSNChanged", "2"))
        );
        assert_eq!(
            user(&user_with("whenChanged", "20240101000000.0Z")),
            user(&user_with("whenChanged", "20250101000000.0Z"))
        );
    }

    #[test]
    fn what_each_dc_keeps_for_itself_does_not_count() {
        for (attr, a, b) in [
            ("lastLogon", "133500000000000000", "133600000000000000"),
            ("logonCount", "0", "42"),
            ("badPwdCount", "0", "2"),
            ("badPasswordTime", "0", "133600000000000000"),
        ] {
            assert_eq!(
                user(&user_with(attr, a)),
                user(&user_with(attr, b)),
                "{attr}"
            );
        }
        assert_ne!(
            user(&user_with("lastLogonTimestamp", "133500000000000000")),
            user(&user_with("lastLogonTimestamp", "133600000000000000")),
            "the replicated last logon is content"
        );
    }

    #[test]
    fn content_counts() {
        assert_ne!(
            user(&user_with("mail", "a@x")),
            user(&user_with("mail", "b@x"))
        );
        let mut u = user_with("mail", "a@x");
        let before = user(&u);
        u.groups.push(ad_model::GroupRef {
            dn: "CN=g,DC=x".into(),
            sid: None,
            name: Some("g".into()),
            primary: false,
        });
        assert_ne!(before, user(&u), "membership changes are content");
    }

    /// The rules as first written: a copy of the record, adjusted, serialized to the hasher.
    fn reference_user(user: &User) -> String {
        let mut copy = user.clone();
        copy.usn_changed = None;
        copy.usn_created = None;
        copy.when_changed = None;
        copy.last_logon = None;
        copy.logon_count = None;
        copy.bad_pwd_count = None;
        copy.bad_password_time = None;
        sort_dns(&mut copy.member_of);
        copy.object_class.sort();
        copy.service_principal_names.sort();
        copy.sid_history.sort_by_cached_key(ToString::to_string);
        sort_refs(&mut copy.groups);
        sort_refs(&mut copy.transitive_groups);
        copy.privileges
            .sort_by_cached_key(|p| serde_json::to_string(p).unwrap_or_default());
        let mut hasher = Sha256::new();
        serde_json::to_writer(&mut hasher_writer(&mut hasher), &copy).unwrap();
        hex::encode(&hasher.finalize()[..16])
    }

    struct HashWriter<'a>(&'a mut Sha256);
    fn hasher_writer(h: &mut Sha256) -> HashWriter<'_> {
        HashWriter(h)
    }
    impl std::io::Write for HashWriter<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Stored fingerprints do not change with how they are computed: the borrowed view
    /// hashes exactly what the adjusted copy did, for records in and out of order, with
    /// case differences, non-ASCII DNs (final sigma included) and equal keys.
    #[test]
    fn the_view_hashes_what_the_copy_hashed() {
        use rand::rngs::StdRng;
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let dns = [
            "CN=a,DC=x",
            "cn=A,dc=x",
            "CN=b,DC=x",
            "CN=Ωμέγα ΣΊΣ,DC=x",
            "CN=ωμέγα σίς,DC=x",
            "CN=Zeta,DC=x",
            "CN=été,DC=x",
            "CN=Été,DC=x",
            "CN=a\\,b,DC=x",
        ];
        let sid = |n: u32| -> Sid { format!("S-1-5-21-1-2-3-{n}").parse().unwrap() };
        let group_ref = |dn: &str, n: u32| GroupRef {
            dn: dn.to_owned(),
            sid: Some(sid(n)),
            name: Some(format!("g{n}")),
            primary: n.is_multiple_of(2),
        };
        let mut rng = StdRng::seed_from_u64(12);
        for round in 0..400 {
            let mut u = user_with("mail", "a@x");
            let pick = |rng: &mut StdRng| -> Vec<String> {
                let mut v: Vec<String> = dns
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .map(|s| s.to_string())
                    .collect();
                if rng.random_bool(0.5) {
                    v.shuffle(rng);
                } else {
                    v.sort_by_cached_key(|d| d.to_lowercase());
                }
                v
            };
            u.member_of = pick(&mut rng);
            u.object_class = pick(&mut rng);
            u.service_principal_names = pick(&mut rng);
            u.groups = pick(&mut rng)
                .iter()
                .enumerate()
                .map(|(i, dn)| group_ref(dn, i as u32))
                .collect();
            u.transitive_groups = pick(&mut rng)
                .iter()
                .enumerate()
                .map(|(i, dn)| group_ref(dn, 100 + i as u32))
                .collect();
            u.sid_history = (0..rng.random_range(0..4))
                .map(|_| sid(rng.random_range(1..30)))
                .collect();
            u.privileges = (0..rng.random_range(0..3))
                .map(|i| ad_model::Privilege {
                    group: group_ref(dns[rng.random_range(0..dns.len())], 512 + i),
                    via: u
                        .groups
                        .iter()
                        .take(rng.random_range(0..3))
                        .cloned()
                        .collect(),
                })
                .collect();
            u.usn_changed = Some(round);
            u.logon_count = Some(round as u32);
            assert_eq!(user(&u), reference_user(&u), "round {round}: {u:?}");
        }
    }

    #[test]
    fn the_order_of_values_is_not_content() {
        let mut u = user_with("mail", "a@x");
        u.member_of = vec!["CN=g1,DC=x".into(), "CN=g2,DC=x".into()];
        let before = user(&u);
        u.member_of.reverse();
        assert_eq!(before, user(&u));
    }
}
