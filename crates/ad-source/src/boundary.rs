//! Time-driven status changes: users whose account expired, whose lockout ended or whose
//! password expired by age within a window, although nothing was written to them.
//!
//! AD does not touch `uSNChanged` when time passes, so a delta never reports these. They are
//! found with one paged search of the user filter AND an OR of ranges on the FILETIME
//! integers (`>=` / `<=`; the window's exclusive lower bound is `from + 1` tick):
//!
//! - `accountExpires` in (from, to];
//! - `lockoutTime + lockoutDuration` in (from, to], i.e. `lockoutTime` in
//!   (from − duration, to − duration], when lockouts end by themselves;
//! - `pwdLastSet + maxPwdAge` in (from, to] for passwords allowed to expire
//!   (`pwdLastSet = 0` excluded: "must change" does not start by time).
//!
//! `lockoutDuration` and `maxPwdAge` come from the domain head (defaultNamingContext), where AD
//! stores them as negative 100-ns intervals; `0` and `-9223372036854775808` mean "never"
//! (locked until unlocked, passwords never expire) and give no clause. Fine-grained password
//! policies (PSOs) add one clause per distinct duration, and each user found is checked
//! against its own `msDS-ResultantPSO`. When PSOs exist but cannot be read (by default only
//! Domain Admins read them), a note says so: whether any exist is told by the Password
//! Settings Container's `msDS-Approx-Immed-Subordinates` (Windows) or, failing that, by a
//! search for one object with `msDS-PSOApplied` (Samba; a scan of the domain when none).

use std::collections::{BTreeSet, HashMap};

use ad_model::{Decoded, RawEntry, User, to_filetime};
use chrono::{DateTime, Utc};

use crate::error::SourceError;
use crate::objects::truncation;
use crate::paging::{Item, PagedReader, SearchSpec};
use crate::session::Session;
use crate::sync::{Emitter, Source, SourceEvent, decode_user, next_complete, read_group_index};

/// Users whose time-based account state changed in a window (see
/// [`Source::time_boundary_users`]).
#[derive(Debug, Clone, Default)]
pub struct TimeBoundary {
    /// The users, decoded at [`Source::now`], with resolved groups (primary group included),
    /// as a delta returns them.
    pub users: Vec<Decoded<User>>,
    /// Sentences about what this read could not see (unreadable password policies, a search
    /// that ended early, a user that could not be read).
    pub notes: Vec<String>,
    /// The search may have missed users (a page without the paged-results control, or a
    /// size/time/admin limit): whoever stores a time window must not move past it.
    pub truncated: bool,
}

/// `userAccountControl` DONT_EXPIRE_PASSWORD.
const DONT_EXPIRE_PASSWORD: i64 = 0x1_0000;

/// The attribute naming the PSO that applies to a user (constructed; asked for by name).
const RESULTANT_PSO: &str = "msDS-ResultantPSO";

/// Lockout and password-age durations in 100-ns ticks; `None`: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    lockout: Option<i64>,
    max_age: Option<i64>,
}

/// An interval as AD stores it (negative 100-ns ticks) → positive ticks; `None` for "never"
/// (`0`, `i64::MIN`) and for values that are not integers.
fn interval(value: Option<&[u8]>) -> Option<i64> {
    let text = std::str::from_utf8(value?).ok()?;
    match text.trim().parse::<i64>().ok()? {
        0 | i64::MIN => None,
        v => Some(v.saturating_abs()),
    }
}

fn integer(entry: &RawEntry, attribute: &str) -> Option<i64> {
    std::str::from_utf8(entry.first(attribute)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// FILETIME ticks of an instant, clamped to what a FILETIME can hold.
fn ticks(at: DateTime<Utc>) -> i64 {
    to_filetime(at).unwrap_or(if at.timestamp() < 0 { 0 } else { i64::MAX })
}

/// The window (from, to] as inclusive FILETIME ticks.
#[derive(Debug, Clone, Copy)]
struct Window {
    low: i64,
    high: i64,
}

impl Window {
    fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
        Window {
            low: ticks(from).saturating_add(1),
            high: ticks(to),
        }
    }

    fn contains(&self, at: i64) -> bool {
        (self.low..=self.high).contains(&at)
    }

    /// `(&(attr>=low-shift)(attr<=high-shift))`, never below 1 (0 is "not set"), or `None`
    /// when that range is empty.
    fn clause(&self, attribute: &str, shift: i64) -> Option<String> {
        let low = self.low.saturating_sub(shift).max(1);
        let high = self.high.saturating_sub(shift).min(i64::MAX - 1);
        (low <= high).then(|| format!("(&({attribute}>={low})({attribute}<={high}))"))
    }
}

/// The filter: the user filter AND any of the boundary ranges; `None` if no clause can match.
fn boundary_filter(user_filter: &str, window: Window, policies: &[Policy]) -> Option<String> {
    let lockouts: BTreeSet<i64> = policies.iter().filter_map(|p| p.lockout).collect();
    let ages: BTreeSet<i64> = policies.iter().filter_map(|p| p.max_age).collect();
    let mut clauses: Vec<String> = window.clause("accountExpires", 0).into_iter().collect();
    clauses.extend(
        lockouts
            .iter()
            .filter_map(|d| window.clause("lockoutTime", *d)),
    );
    clauses.extend(ages.iter().filter_map(|a| {
        window.clause("pwdLastSet", *a).map(|range| {
            format!(
                "(&{range}(!(userAccountControl:1.2.840.113556.1.4.803:={DONT_EXPIRE_PASSWORD})))"
            )
        })
    }));
    if clauses.is_empty() {
        return None;
    }
    Some(format!("(&{user_filter}(|{}))", clauses.concat()))
}

/// Whether a user entry crossed a boundary in `window` under `policy`.
fn crossed(entry: &RawEntry, policy: Policy, window: Window) -> bool {
    let expires = integer(entry, "accountExpires")
        .is_some_and(|at| at > 0 && at < i64::MAX && window.contains(at));
    let unlocked = match (integer(entry, "lockoutTime"), policy.lockout) {
        (Some(at), Some(d)) if at > 0 => window.contains(at.saturating_add(d)),
        _ => false,
    };
    let never_expires =
        integer(entry, "userAccountControl").is_some_and(|uac| uac & DONT_EXPIRE_PASSWORD != 0);
    let password = match (integer(entry, "pwdLastSet"), policy.max_age) {
        (Some(at), Some(a)) if at > 0 && !never_expires => window.contains(at.saturating_add(a)),
        _ => false,
    };
    expires || unlocked || password
}

fn dn_key(dn: &str) -> String {
    dn.trim().to_lowercase()
}

/// What is known about fine-grained password policies.
#[derive(Debug)]
enum Psos {
    /// Every PSO (DN key → policy); empty when the domain has none.
    Known(HashMap<String, Policy>),
    /// PSOs exist or may exist but cannot be read: why.
    Unreadable(String),
}

impl Source {
    /// The users whose time-based state crossed a boundary in the window (`from`, `to`]:
    /// their account expired (`accountExpires`), their lockout ended
    /// (`lockoutTime + lockoutDuration`) or their password expired by age
    /// (`pwdLastSet + maxPwdAge`). Nothing is written to such users, so no delta reports
    /// them; call this with the previous run's time as `from` and [`Source::now`] as `to`.
    ///
    /// One paged search with the user filter in `base_dn`, plus small reads of the domain's
    /// policy and its fine-grained password policies (PSOs). Users are decoded at
    /// [`Source::now`] with resolved groups, as a delta returns them. `notes` says what could
    /// not be seen, e.g. that PSOs are not readable by the account (PSO-governed expiry is
    /// then detected only by the next full sync). Empty when `to <= from`.
    pub async fn time_boundary_users(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<TimeBoundary, SourceError> {
        if to <= from {
            return Ok(TimeBoundary::default());
        }
        let clock = self.now();
        self.with_session("the time-boundary search", move |mut session| async move {
            let now = session.now_or(clock);
            let result = boundary_in(&mut session, Window::new(from, to), now).await;
            (session, result)
        })
        .await
    }
}

async fn boundary_in(
    session: &mut Session,
    window: Window,
    now: DateTime<Utc>,
) -> Result<TimeBoundary, SourceError> {
    let mut notes = Vec::new();
    let domain = domain_policy(session, &mut notes).await?;
    let mut pso_noted = false;
    let psos = match read_psos(session).await? {
        Psos::Known(map) => map,
        Psos::Unreadable(why) => {
            notes.push(pso_note(session, &why));
            pso_noted = true;
            HashMap::new()
        }
    };
    let mut policies = vec![domain];
    policies.extend(psos.values().copied());
    let base = session.base_dn();
    let Some(filter) = boundary_filter(&session.config.user_filter, window, &policies) else {
        return Ok(TimeBoundary {
            users: Vec::new(),
            notes,
            truncated: false,
        });
    };
    tracing::debug!(%filter, "time boundary search");
    let mut attrs: Vec<String> = User::ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect();
    attrs.push(RESULTANT_PSO.to_owned());
    let spec = SearchSpec {
        base: base.clone(),
        scope: session.config.scope.to_ldap(),
        filter,
        attrs,
        show_deleted: false,
        what: "users at a time boundary",
    };
    let mut index = read_group_index(session, &base).await?;
    let mut out = Emitter::Collect(Vec::new());
    let mut reader = PagedReader::new(session, spec);
    let mut users = Vec::new();
    let mut unknown_pso: Option<String> = None;
    while let Some(entry) = next_complete(session, &mut reader, &mut out).await? {
        let policy = match text(&entry, RESULTANT_PSO) {
            None => Some(domain),
            Some(pso) => match psos.get(&dn_key(&pso)) {
                Some(policy) => Some(*policy),
                None => {
                    unknown_pso.get_or_insert(pso);
                    None
                }
            },
        };
        // Under a PSO that cannot be read the boundary cannot be checked: keep the user.
        if policy.is_some_and(|p| !crossed(&entry, p, window)) {
            continue;
        }
        match decode_user(session, &mut index, &entry, now).await? {
            Ok(decoded) => users.push(decoded),
            Err(reason) => notes.push(unreadable_note(entry.dn(), &reason)),
        }
    }
    for event in out.into_events() {
        if let SourceEvent::Skipped { dn, reason, .. } = event {
            notes.push(unreadable_note(&dn, &reason));
        }
    }
    if let Some(pso) = unknown_pso
        && !pso_noted
    {
        let why = format!("a user's msDS-ResultantPSO names {pso}, which the account cannot read");
        notes.push(pso_note(session, &why));
    }
    let truncated = truncation(&session.counters).truncated();
    notes.extend(truncation(&session.counters).incomplete_reasons());
    Ok(TimeBoundary {
        users,
        notes,
        truncated,
    })
}

fn text(entry: &RawEntry, attribute: &str) -> Option<String> {
    entry
        .first(attribute)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

fn unreadable_note(dn: &str, reason: &str) -> String {
    format!("{dn} reached a time boundary but could not be read: {reason}")
}

fn pso_note(session: &Session, why: &str) -> String {
    format!(
        "fine-grained password policies (PSOs) are not readable by {account} ({why}), so password expiry and lockout ends governed by a PSO are detected only by the next full sync; grant the account Read on CN=Password Settings Container,CN=System,{domain} to detect them here",
        account = session.config.account(),
        domain = session.domain_dn(),
    )
}

/// `lockoutDuration` and `maxPwdAge` of the domain head; a note for each that cannot be read.
async fn domain_policy(
    session: &mut Session,
    notes: &mut Vec<String>,
) -> Result<Policy, SourceError> {
    let domain = session.domain_dn().to_owned();
    let head = match session
        .read_one_retrying(
            &domain,
            ldap3::Scope::Base,
            "(objectClass=*)",
            &["lockoutDuration", "maxPwdAge"],
        )
        .await
    {
        Ok(head) => head,
        Err(e @ SourceError::Search { .. }) => {
            tracing::warn!(error = %e, "the domain's password policy cannot be read");
            None
        }
        Err(e) => return Err(e),
    };
    let account = session.config.account().to_owned();
    let mut attribute = |name: &str, what: &str| -> Option<i64> {
        let value = head.as_ref().and_then(|h| h.first(name));
        if value.is_none() {
            notes.push(format!(
                "{name} of {domain} cannot be read by {account}, so {what} is detected only by the next full sync"
            ));
        }
        interval(value)
    };
    let lockout = attribute("lockoutDuration", "the end of a lockout");
    let max_age = attribute("maxPwdAge", "password expiry by age");
    Ok(Policy { lockout, max_age })
}

/// The domain's PSOs, or why they cannot be read.
async fn read_psos(session: &mut Session) -> Result<Psos, SourceError> {
    let container = format!(
        "CN=Password Settings Container,CN=System,{}",
        session.domain_dn()
    );
    let spec = SearchSpec {
        base: container.clone(),
        scope: ldap3::Scope::OneLevel,
        filter: "(objectClass=msDS-PasswordSettings)".to_owned(),
        attrs: vec![
            "msDS-LockoutDuration".to_owned(),
            "msDS-MaximumPasswordAge".to_owned(),
        ],
        show_deleted: false,
        what: "fine-grained password policies",
    };
    let mut reader = PagedReader::new(session, spec);
    let mut psos = HashMap::new();
    loop {
        match reader.next(session).await {
            Ok(Some(Item::Entry(entry))) => {
                let policy = Policy {
                    lockout: interval(entry.first("msDS-LockoutDuration")),
                    max_age: interval(entry.first("msDS-MaximumPasswordAge")),
                };
                psos.insert(dn_key(entry.dn()), policy);
            }
            Ok(Some(Item::Malformed(m))) => {
                return Ok(Psos::Unreadable(format!(
                    "{} is malformed: {}",
                    m.dn, m.reason
                )));
            }
            Ok(None) => break,
            // No container (a domain without PSO support, or one hidden from the account).
            Err(SourceError::Search {
                result_code: 32, ..
            }) => break,
            Err(e @ SourceError::Search { .. }) => return Ok(Psos::Unreadable(e.to_string())),
            Err(e) => return Err(e),
        }
    }
    if !psos.is_empty() {
        return Ok(Psos::Known(psos));
    }
    // None visible: none exist, or the account may not list them. Windows counts the
    // container's children in msDS-Approx-Immed-Subordinates whatever the account may read.
    match session
        .read_one_retrying(
            &container,
            ldap3::Scope::Base,
            "(objectClass=*)",
            &["msDS-Approx-Immed-Subordinates"],
        )
        .await
    {
        Ok(Some(entry)) => match integer(&entry, "msDS-Approx-Immed-Subordinates") {
            Some(0) => return Ok(Psos::Known(psos)),
            Some(n) => {
                return Ok(Psos::Unreadable(format!(
                    "{container} holds about {n} PSOs but none is readable"
                )));
            }
            None => {}
        },
        Ok(None) => {}
        Err(e @ SourceError::Search { .. }) => {
            tracing::debug!(error = %e, "the Password Settings Container cannot be read");
        }
        Err(e) => return Err(e),
    }
    // Otherwise (Samba, or no container visible): a PSO in use shows as msDS-PSOApplied on
    // the users and groups it applies to. Found at the first one; a full scan when none.
    let domain = session.domain_dn().to_owned();
    match session
        .read_one_retrying(
            &domain,
            ldap3::Scope::Subtree,
            "(msDS-PSOApplied=*)",
            &["1.1"],
        )
        .await
    {
        Ok(None) => Ok(Psos::Known(psos)),
        Ok(Some(applied)) => Ok(Psos::Unreadable(format!(
            "a PSO applies to {} but none is visible in the Password Settings Container",
            applied.dn()
        ))),
        Err(e @ SourceError::Search { .. }) => Ok(Psos::Unreadable(format!(
            "whether PSOs are in use cannot be checked: {e}"
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const MIN: i64 = 60 * 10_000_000;

    fn at(ticks: i64) -> DateTime<Utc> {
        ad_model::filetime_from_ticks(ticks).unwrap().unwrap()
    }

    #[test]
    fn intervals_as_ad_stores_them() {
        assert_eq!(interval(Some(b"-18000000000")), Some(30 * MIN));
        assert_eq!(interval(Some(b"0")), None);
        assert_eq!(interval(Some(b"-9223372036854775808")), None);
        assert_eq!(interval(Some(b"never")), None);
        assert_eq!(interval(None), None);
    }

    #[test]
    fn window_bounds_and_clauses() {
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let w = Window::new(from, to);
        let f = ticks(from);
        let t = ticks(to);
        assert!(!w.contains(f) && w.contains(f + 1) && w.contains(t) && !w.contains(t + 1));
        assert_eq!(
            w.clause("accountExpires", 0).unwrap(),
            format!("(&(accountExpires>={})(accountExpires<={t}))", f + 1)
        );
        assert_eq!(
            w.clause("lockoutTime", 30 * MIN).unwrap(),
            format!(
                "(&(lockoutTime>={})(lockoutTime<={}))",
                f + 1 - 30 * MIN,
                t - 30 * MIN
            )
        );
        // A shift larger than the whole FILETIME range leaves nothing to match.
        assert_eq!(w.clause("pwdLastSet", i64::MAX), None);
        // Before 1601 and far future clamp instead of failing.
        let all = Window::new(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        assert_eq!(all.low, 1);
        assert_eq!(all.high, i64::MAX);
    }

    #[test]
    fn filter_has_one_clause_per_distinct_duration() {
        let w = Window::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
        );
        let domain = Policy {
            lockout: Some(30 * MIN),
            max_age: Some(42 * 24 * 60 * MIN),
        };
        let pso = Policy {
            lockout: None,
            max_age: Some(42 * 24 * 60 * MIN),
        };
        let f = boundary_filter("(objectClass=user)", w, &[domain, pso]).unwrap();
        assert!(
            f.starts_with("(&(objectClass=user)(|(&(accountExpires>="),
            "{f}"
        );
        assert_eq!(f.matches("lockoutTime>=").count(), 1, "{f}");
        assert_eq!(f.matches("pwdLastSet>=").count(), 1, "{f}");
        assert!(f.contains("(!(userAccountControl:1.2.840.113556.1.4.803:=65536))"));
        let never = Policy {
            lockout: None,
            max_age: None,
        };
        let f = boundary_filter("(objectClass=user)", w, &[never]).unwrap();
        assert!(
            !f.contains("lockoutTime") && !f.contains("pwdLastSet"),
            "{f}"
        );
    }

    #[test]
    fn crossing_is_checked_per_policy() {
        let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let to = from + chrono::TimeDelta::hours(1);
        let w = Window::new(from, to);
        let f = ticks(from);
        let policy = Policy {
            lockout: Some(30 * MIN),
            max_age: Some(60 * MIN),
        };
        let user = |attrs: &[(&str, String)]| {
            attrs
                .iter()
                .fold(RawEntry::new("CN=u"), |e, (n, v)| e.with(n, [v.clone()]))
        };
        // Lockout ends 10 minutes into the window.
        let locked = user(&[("lockoutTime", (f - 20 * MIN).to_string())]);
        assert!(crossed(&locked, policy, w));
        assert!(!crossed(
            &locked,
            Policy {
                lockout: None,
                ..policy
            },
            w
        ));
        // Password set 90 minutes before `from` expires 30 minutes in; not with
        // DONT_EXPIRE_PASSWORD, and never for pwdLastSet = 0.
        let old = user(&[("pwdLastSet", (f - 30 * MIN).to_string())]);
        assert!(crossed(&old, policy, w));
        let never = user(&[
            ("pwdLastSet", (f - 30 * MIN).to_string()),
            ("userAccountControl", "66048".to_owned()),
        ]);
        assert!(!crossed(&never, policy, w));
        assert!(!crossed(
            &user(&[("pwdLastSet", "0".to_owned())]),
            policy,
            w
        ));
        // Expiry exactly at `from` is outside, at `to` inside.
        assert!(!crossed(
            &user(&[("accountExpires", f.to_string())]),
            policy,
            w
        ));
        assert!(crossed(
            &user(&[("accountExpires", ticks(to).to_string())]),
            policy,
            w
        ));
        assert!(!crossed(
            &user(&[("accountExpires", i64::MAX.to_string())]),
            policy,
            w
        ));
        assert_eq!(at(f), from);
    }
}
