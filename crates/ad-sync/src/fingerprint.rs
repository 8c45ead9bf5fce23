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

use ad_model::{Group, GroupRef, User};
use sha2::{Digest, Sha256};

/// Hash of a user's content.
pub fn user(user: &User) -> String {
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
    digest(&copy)
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

fn digest<T: serde::Serialize>(value: &T) -> String {
    let mut hasher = Sha256::new();
    // Serializing a plain record to a hasher cannot fail: no maps with non-string keys.
    if serde_json::to_writer(&mut HashWriter(&mut hasher), value).is_err() {
        return String::new();
    }
    hex::encode(&hasher.finalize()[..16])
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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

    #[test]
    fn the_order_of_values_is_not_content() {
        let mut u = user_with("mail", "a@x");
        u.member_of = vec!["CN=g1,DC=x".into(), "CN=g2,DC=x".into()];
        let before = user(&u);
        u.member_of.reverse();
        assert_eq!(before, user(&u));
    }
}
