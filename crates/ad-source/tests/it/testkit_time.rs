//! Time-driven status changes against the in-process directory, whose clock is advanced.

use std::collections::BTreeSet;
use std::sync::Arc;

use ad_model::AccountStatus;
use ad_source::{Source, TimeBoundary};
use ad_testkit::{BASE_DN, Directory, Entry, Modification, ServerOptions, TestServer, encoding};
use chrono::{DateTime, TimeDelta, Utc};

use crate::testkit::{config, new_user};

struct Setup {
    directory: Directory,
    _server: TestServer,
    source: Source,
    /// The directory's "now" when the users were written.
    t0: DateTime<Utc>,
    /// `accountExpires` of `expiring`, to the 100 ns.
    expires_at: DateTime<Utc>,
}

fn ft(at: DateTime<Utc>) -> String {
    encoding::filetime(at).to_string()
}

/// Users around a 4-hour window starting now: one account expiry (+2 h), one lockout end
/// (+20 min with a 30-minute lockout duration), one password expiry by age (+3 h of a
/// 30-day maxPwdAge), and users that must not come back.
fn setup(lockout_duration: Option<TimeDelta>) -> Setup {
    let directory = Directory::new(BASE_DN).unwrap();
    directory
        .set_password_policy(Some(TimeDelta::days(30)), lockout_duration)
        .unwrap();
    let ou = format!("OU=People,{BASE_DN}");
    directory
        .add(Entry::new(ou.clone()).with("objectClass", ["top", "organizationalUnit"]))
        .unwrap();
    let t0 = directory.now();
    let recent = ft(t0 - TimeDelta::days(1));
    let aging = ft(t0 - TimeDelta::days(30) + TimeDelta::hours(3));
    let expires = encoding::filetime(t0 + TimeDelta::hours(2));
    let users: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "expiring",
            vec![
                ("accountExpires", expires.to_string()),
                ("pwdLastSet", recent.clone()),
            ],
        ),
        (
            "unlocking",
            vec![
                ("lockoutTime", ft(t0 - TimeDelta::minutes(10))),
                ("pwdLastSet", recent.clone()),
            ],
        ),
        ("pwdaging", vec![("pwdLastSet", aging.clone())]),
        (
            "pwdnever",
            vec![
                ("pwdLastSet", aging.clone()),
                ("userAccountControl", "66048".into()),
            ],
        ),
        ("steady", vec![("pwdLastSet", recent.clone())]),
        ("mustchange", vec![("pwdLastSet", "0".into())]),
        (
            "laterexpiry",
            vec![
                ("accountExpires", ft(t0 + TimeDelta::days(10))),
                ("pwdLastSet", recent.clone()),
            ],
        ),
        (
            "oldlock",
            vec![
                ("lockoutTime", ft(t0 - TimeDelta::hours(2))),
                ("pwdLastSet", recent.clone()),
            ],
        ),
    ];
    for (sam, attrs) in users {
        let mut entry = new_user(&format!("CN={sam},{ou}"), sam);
        for (name, value) in attrs {
            entry.set(name, [value]);
        }
        directory.add(entry).unwrap();
    }
    let server = TestServer::start(directory.clone(), ServerOptions::default()).unwrap();
    let clock = directory.clone();
    let source = Source::new(config(&server))
        .unwrap()
        .with_clock(Arc::new(move || clock.now()));
    Setup {
        directory,
        _server: server,
        source,
        t0,
        expires_at: encoding::filetime_to_time(expires).unwrap(),
    }
}

fn names(tb: &TimeBoundary) -> BTreeSet<String> {
    tb.users
        .iter()
        .filter_map(|u| u.record.sam_account_name.clone())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn testkit_time_boundary_returns_exactly_the_users_that_crossed() {
    let s = setup(Some(TimeDelta::minutes(30)));
    let from = s.source.now();
    assert!(from - s.t0 < TimeDelta::minutes(1));
    s.directory.advance_clock(TimeDelta::hours(4));
    let to = s.source.now();
    let tb = s.source.time_boundary_users(from, to).await.unwrap();
    assert_eq!(names(&tb), set(&["expiring", "unlocking", "pwdaging"]));
    assert!(tb.notes.is_empty(), "{:?}", tb.notes);
    for u in &tb.users {
        let record = &u.record;
        // Decoded at the source's (advanced) clock, with the DC's computed flags.
        let expected = match record.sam_account_name.as_deref() {
            Some("expiring") => AccountStatus::Expired,
            Some("unlocking") => AccountStatus::Active,
            Some("pwdaging") => AccountStatus::PasswordExpired,
            other => panic!("{other:?}"),
        };
        assert_eq!(record.account.status, expected, "{:?}", record.dn);
        assert!(
            record.groups.iter().any(|g| g.primary && g.sid.is_some()),
            "{:?}",
            record.groups
        );
    }

    // Split windows: each crossing falls in exactly one.
    let mid = from + TimeDelta::hours(1);
    let first = s.source.time_boundary_users(from, mid).await.unwrap();
    assert_eq!(names(&first), set(&["unlocking"]));
    let second = s.source.time_boundary_users(mid, to).await.unwrap();
    assert_eq!(names(&second), set(&["expiring", "pwdaging"]));

    // (from, to]: the lower bound is exclusive, the upper inclusive.
    let at = s.expires_at;
    let ending = s
        .source
        .time_boundary_users(at - TimeDelta::seconds(1), at)
        .await
        .unwrap();
    assert_eq!(names(&ending), set(&["expiring"]));
    let after = s
        .source
        .time_boundary_users(at, at + TimeDelta::minutes(5))
        .await
        .unwrap();
    assert!(names(&after).is_empty(), "{:?}", names(&after));

    // An empty or reversed window asks nothing.
    for (a, b) in [(to, to), (to, from)] {
        let none = s.source.time_boundary_users(a, b).await.unwrap();
        assert!(none.users.is_empty() && none.notes.is_empty());
    }
}

#[tokio::test]
async fn testkit_time_boundary_lockout_until_unlocked_and_unreadable_psos() {
    // lockoutDuration "never": a lockout does not end by time.
    let s = setup(None);
    let from = s.source.now();
    s.directory.advance_clock(TimeDelta::hours(4));
    let to = s.source.now();
    let tb = s.source.time_boundary_users(from, to).await.unwrap();
    assert_eq!(names(&tb), set(&["expiring", "pwdaging"]));
    assert!(tb.notes.is_empty(), "{:?}", tb.notes);

    // A PSO applies to someone, but the account sees no PSO: PSO-governed expiry is left
    // to the next full sync, and the note says so.
    s.directory
        .modify(
            &format!("CN=steady,OU=People,{BASE_DN}"),
            [Modification::replace(
                "msDS-PSOApplied",
                [format!(
                    "CN=Strict,CN=Password Settings Container,CN=System,{BASE_DN}"
                )],
            )],
        )
        .unwrap();
    let tb = s.source.time_boundary_users(from, to).await.unwrap();
    assert_eq!(names(&tb), set(&["expiring", "pwdaging"]));
    assert_eq!(tb.notes.len(), 1, "{:?}", tb.notes);
    assert!(
        tb.notes[0].contains("PSO") && tb.notes[0].contains("detected only by the next full sync"),
        "{}",
        tb.notes[0]
    );
}
