//! Directory work that AD writes to no object the delta reads (issue 22), one engine test
//! each: an OU renamed or moved, an object leaving an OU-scoped `base_dn`, a group outside
//! the scope, a deleted group, `base_dn` in another spelling, a host clock ahead of the DC's.
//! Each ends with the platform equal to the directory after one delta.

use std::sync::Arc;

use ad_model::Guid;
use ad_source::{Source, SourceConfig};
use ad_sync::{CycleReport, CycleRequest, DeleteGuard, Engine, EngineOptions, Store};
use ad_testkit::{Entry, Modification, SERVICE_ACCOUNT_PASSWORD, SERVICE_ACCOUNT_UPN};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::engine::Lab;

const NO_GUARD: DeleteGuard = DeleteGuard {
    max_delete_fraction: 1.0,
    max_deletes: None,
};

fn delta() -> CycleRequest {
    CycleRequest::default()
}

fn full() -> CycleRequest {
    CycleRequest {
        force_full: true,
        confirm_deletes: None,
    }
}

/// The parent DN of `dn`.
fn parent(dn: &str) -> String {
    dn.split_once(',').map(|(_, p)| p.to_owned()).unwrap()
}

impl Lab {
    async fn run(&self, base: Option<&str>, request: CycleRequest) -> CycleReport {
        self.cycle_with(base, request, NO_GUARD).await.unwrap()
    }

    /// The platform's record of `guid` as JSON (panics when it holds none).
    fn held(&self, guid: &Guid) -> serde_json::Value {
        self.platform
            .record(guid)
            .unwrap_or_else(|| panic!("the platform holds no record of {guid}"))
    }

    fn privileged(&self, guid: &Guid) -> bool {
        !self.held(guid)["privileges"].as_array().unwrap().is_empty()
    }

    /// The users the directory holds below `base` whose record the platform holds with
    /// another DN or not at all.
    fn stale_below(&self, base: &str) -> Vec<String> {
        let directory = self.server.directory();
        directory
            .find("(objectCategory=person)")
            .unwrap()
            .into_iter()
            .filter(|e| ad_model::dn::is_within(e.dn(), base))
            .filter(|e| {
                let guid = Guid::from_bytes(&e.get("objectGUID").unwrap()[0]).unwrap();
                self.platform.record(&guid).map(|r| r["dn"].clone())
                    != Some(serde_json::Value::String(e.dn().to_owned()))
            })
            .map(|e| e.dn().to_owned())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_ou_reaches_the_platform_by_the_next_delta() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    lab.run(None, full()).await;
    let user = lab.manifest.users[0].clone();
    let guid = lab.guid(&user);
    let ou = parent(&user);
    let renamed = ou.replacen("OU=", "OU=Renamed ", 1);
    directory.rename(&ou, &renamed).unwrap();

    let report = lab.run(None, delta()).await;
    let reason = report.full_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("renamed or moved") && reason.contains(&renamed),
        "{}\n{reason}",
        report.summary()
    );
    assert!(
        lab.stale_below(&renamed).is_empty(),
        "{:?}",
        lab.stale_below(&renamed)
    );
    let new_dn = user.replacen(&ou, &renamed, 1);
    assert_eq!(lab.held(&guid)["dn"], new_dn.as_str());

    // A later membership change of a user under it reaches the platform too.
    let group = lab.held(&guid)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["primary"] == false)
        .map(|g| g["dn"].as_str().unwrap().to_owned())
        .expect("the user is in a group besides its primary one");
    directory
        .modify(&group, [Modification::delete("member", [new_dn.as_str()])])
        .unwrap();
    let report = lab.run(None, delta()).await;
    assert_eq!(report.mode, "delta", "{}", report.summary());
    assert!(
        !lab.held(&guid)["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["dn"].as_str().unwrap().eq_ignore_ascii_case(&group)),
        "{}",
        lab.held(&guid)["groups"]
    );
    // Nothing left to do.
    let idle = lab.run(None, delta()).await;
    assert_eq!(idle.upserts + idle.deletes, 0, "{}", idle.summary());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ou_moved_into_an_ou_scoped_base_dn_brings_its_users() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let base = lab.manifest.base_dn.clone();
    let people = format!("OU=People,{base}");
    let outside = format!("OU=Contractors,{base}");
    directory
        .add(Entry::new(outside.clone()).with("objectClass", ["top", "organizationalUnit"]))
        .unwrap();
    let user = lab.manifest.users[1].clone();
    let moved = format!("CN=Contractor One,{outside}");
    directory.rename(&user, &moved).unwrap();
    let guid = lab.guid(&moved);
    lab.run(Some(&people), full()).await;
    assert!(!lab.platform.objects().contains_key(&guid));

    let inside = format!("OU=Contractors,{people}");
    directory.rename(&outside, &inside).unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert!(
        report
            .full_reason
            .as_deref()
            .is_some_and(|r| r.contains(&inside)),
        "{}",
        report.summary()
    );
    assert_eq!(
        lab.held(&guid)["dn"],
        format!("CN=Contractor One,{inside}").as_str()
    );
    assert!(lab.stale_below(&people).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_moved_out_of_an_ou_scoped_base_dn_is_deleted_by_the_next_delta() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let base = lab.manifest.base_dn.clone();
    let people = format!("OU=People,{base}");
    let disabled = format!("OU=Disabled,{base}");
    directory
        .add(Entry::new(disabled.clone()).with("objectClass", ["top", "organizationalUnit"]))
        .unwrap();
    lab.run(Some(&people), full()).await;
    let user = lab.manifest.users[2].clone();
    let guid = lab.guid(&user);
    assert!(lab.platform.record(&guid).is_some());

    // The usual offboarding: disable, then move out of the scope.
    directory
        .modify(
            &user,
            [Modification::replace("userAccountControl", ["514"])],
        )
        .unwrap();
    let rdn = user.split_once(',').unwrap().0;
    directory
        .rename(&user, &format!("{rdn},{disabled}"))
        .unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert_eq!(report.mode, "delta");
    assert_eq!(report.left_scope, 1, "{}", report.summary());
    assert!(
        report.summary().contains("moved out of the scope"),
        "{}",
        report.summary()
    );
    assert!(
        !lab.platform.objects().contains_key(&guid),
        "the user left the scope and must be gone from the platform"
    );
    let idle = lab.run(Some(&people), delta()).await;
    assert_eq!(idle.upserts + idle.deletes, 0, "{}", idle.summary());
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_admins_outside_an_ou_scoped_base_dn_is_seen_by_the_next_delta() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let people = format!("OU=People,{}", lab.manifest.base_dn);
    lab.run(Some(&people), full()).await;
    let user = lab.manifest.users[3].clone();
    let guid = lab.guid(&user);
    assert!(!lab.privileged(&guid));
    let admins = lab.manifest.domain_admins.clone();

    directory
        .modify(&admins, [Modification::add("member", [user.as_str()])])
        .unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert_eq!(report.mode, "delta");
    assert!(lab.privileged(&guid), "{}", report.summary());

    directory
        .modify(&admins, [Modification::delete("member", [user.as_str()])])
        .unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert!(!lab.privileged(&guid), "{}", report.summary());
    let idle = lab.run(Some(&people), delta()).await;
    assert_eq!(idle.upserts + idle.deletes, 0, "{}", idle.summary());

    // Through a group outside the scope too: the user is in Helpdesk (CN=Users), which is
    // nested into Domain Admins and out again. Only Domain Admins changes each time.
    let helpdesk = format!("CN=Helpdesk,CN=Users,{}", lab.manifest.base_dn);
    directory
        .add(
            Entry::new(helpdesk.clone())
                .with("objectClass", ["top", "group"])
                .with("sAMAccountName", ["helpdesk"])
                .with("groupType", ["-2147483646"])
                .with("member", [user.as_str()]),
        )
        .unwrap();
    lab.run(Some(&people), delta()).await;
    assert!(!lab.privileged(&guid));
    directory
        .modify(&admins, [Modification::add("member", [helpdesk.as_str()])])
        .unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert!(lab.privileged(&guid), "{}", report.summary());
    directory
        .modify(
            &admins,
            [Modification::delete("member", [helpdesk.as_str()])],
        )
        .unwrap();
    let report = lab.run(Some(&people), delta()).await;
    assert!(!lab.privileged(&guid), "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_members_of_a_deleted_group_lose_it_and_the_privilege_through_it() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    let group = lab.manifest.department_groups[0].clone();
    let members: Vec<String> = directory.get(&group).unwrap().strs("member");
    let user = members
        .iter()
        .find(|m| lab.manifest.users.contains(m))
        .cloned()
        .expect("the department group has a user");
    let guid = lab.guid(&user);
    directory
        .modify(
            &lab.manifest.domain_admins,
            [Modification::add("member", [group.as_str()])],
        )
        .unwrap();
    lab.run(None, full()).await;
    assert!(lab.privileged(&guid));

    directory.delete(&group).unwrap();
    let report = lab.run(None, delta()).await;
    assert_eq!(report.mode, "delta");
    assert!(!lab.privileged(&guid), "{}", report.summary());
    assert!(
        !lab.held(&guid)["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["dn"].as_str().unwrap().eq_ignore_ascii_case(&group)),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn base_dn_in_another_spelling_still_deletes_and_re_reads() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    // `OU=People,DC=corp,...` as `ou=people, dc=CORP, dc=example, dc=test`.
    let spelled = format!("OU=People,{}", lab.manifest.base_dn)
        .split(',')
        .map(|rdn| {
            let (a, v) = rdn.split_once('=').unwrap();
            format!("{}={}", a.to_ascii_lowercase(), v.to_ascii_uppercase())
        })
        .collect::<Vec<_>>()
        .join(", ");
    lab.run(Some(&spelled), full()).await;
    let user = lab.manifest.users[4].clone();
    let guid = lab.guid(&user);
    directory.delete(&user).unwrap();
    let report = lab.run(Some(&spelled), delta()).await;
    assert_eq!(report.deletes, 1, "{}", report.summary());
    assert!(!lab.platform.objects().contains_key(&guid));
    // A re-read (a group changed: its members are read again by DN) still happens.
    let other = lab.manifest.users[5].clone();
    let other_guid = lab.guid(&other);
    let group = lab.manifest.department_groups[1].clone();
    directory
        .modify(&group, [Modification::add("member", [other.as_str()])])
        .unwrap();
    lab.run(Some(&spelled), delta()).await;
    assert!(
        lab.held(&other_guid)["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["dn"].as_str().unwrap().eq_ignore_ascii_case(&group)),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_clock_ahead_of_the_dcs_loses_no_lockout_end() {
    let lab = Lab::new();
    let directory = lab.server.directory().clone();
    directory
        .set_password_policy(
            Some(chrono::Duration::days(42)),
            Some(chrono::Duration::minutes(30)),
        )
        .unwrap();
    // The host runs 10 minutes ahead of the DC.
    let source = || {
        let mut config = SourceConfig::new(
            lab.server.url(),
            SERVICE_ACCOUNT_UPN,
            SecretString::from(SERVICE_ACCOUNT_PASSWORD),
        );
        config.starttls = false;
        config.allow_plain_ldap = true;
        let directory = directory.clone();
        Source::new(config).unwrap().with_clock(Arc::new(move || {
            directory.now() + chrono::Duration::minutes(10)
        }))
    };
    let cycle = |request: CycleRequest| {
        let source = source();
        let platform = lab.platform.clone();
        let state = lab.state.path().to_owned();
        async move {
            let mut engine = Engine::new(
                source,
                Arc::new(platform),
                Store::open(&state).unwrap(),
                EngineOptions {
                    delete_guard: NO_GUARD,
                    ..EngineOptions::default()
                },
            );
            engine
                .run_cycle(request, &ad_sync::NoObserver, &CancellationToken::new())
                .await
                .unwrap()
        }
    };
    cycle(full()).await;
    let user = lab.manifest.users[6].clone();
    let guid = lab.guid(&user);
    directory
        .modify(
            &user,
            [Modification::replace(
                "lockoutTime",
                [ad_testkit::encoding::filetime(directory.now()).to_string()],
            )],
        )
        .unwrap();
    cycle(delta()).await;
    assert_eq!(lab.held(&guid)["account"]["locked_out"], true);
    // 25 minutes later by the DC (35 by the host): the lockout ends at 30 by the DC.
    directory.advance_clock(chrono::Duration::minutes(25));
    cycle(delta()).await;
    assert_eq!(lab.held(&guid)["account"]["locked_out"], true);
    // 35 by the DC: unlocked, and the platform must say so.
    directory.advance_clock(chrono::Duration::minutes(10));
    let report = cycle(delta()).await;
    assert_eq!(
        lab.held(&guid)["account"]["locked_out"],
        false,
        "{}",
        report.summary()
    );
}
