//! Huge generated directories: N user entries computed on the fly from their index.
//!
//! Nothing is stored per generated user: an entry is a pure function of (seed, index), so a
//! full paged read of 1,000,000 users holds one page in memory at a time. Paging cookies carry
//! the position (an order key), not a snapshot.
//!
//! Mutations go to an overlay: the first change to a generated user materializes it into the
//! ordinary store (same order key, so it keeps its place in paged reads) and gives it a USN above
//! every generated one. Generated users get `uSNCreated = uSNChanged = first_usn + index`.
//!
//! Generated users live in `OU=Generated Users,<base>`, have CN `<Given> <Surname> <index>`,
//! sAMAccountName `u<index, 7 digits>`, primary group Domain Users and no other group; their
//! objectGUID ends with the index (big-endian) so lookups by GUID need no table.

use chrono::{DateTime, Duration, Utc};

use crate::company::{self, AccountState, UserSpec};
use crate::directory::Directory;
use crate::dn;
use crate::encoding;
use crate::entry::Entry;
use crate::filter::{self, Tri};
use crate::persona::{self, DEPARTMENTS, OFFICES, Prng};
use ldap3_proto::LdapFilter;

/// Attributes every generated user has, with the same values on all of them.
const CONSTANT: &[&str] = &[
    "objectClass",
    "objectCategory",
    "company",
    "sAMAccountType",
    "primaryGroupID",
    "lastLogoff",
    "codePage",
    "instanceType",
];

/// Attributes a generated user has (or may have) with values of its own, besides its
/// [`ACCOUNT`] attributes. Every attribute `company::user_entry` can write is in one of
/// [`CONSTANT`], [`ACCOUNT`] or this list (a test holds the lists to the generator); any other
/// attribute is absent from every generated user.
const PERSONAL: &[&str] = &[
    "distinguishedName",
    "cn",
    "sn",
    "givenName",
    "displayName",
    "name",
    "title",
    "department",
    "physicalDeliveryOfficeName",
    "streetAddress",
    "l",
    "st",
    "postalCode",
    "c",
    "co",
    "countryCode",
    "telephoneNumber",
    "mobile",
    "employeeID",
    "mail",
    "userPrincipalName",
    "sAMAccountName",
    "manager",
    "adminCount",
    "objectGUID",
    "objectSid",
    "whenCreated",
    "whenChanged",
];

/// Attributes of a generated user that [`GeneratedUsers::account_view`] computes without the
/// rest of the entry (with [`CONSTANT`]): what the time-boundary search filters on.
const ACCOUNT: &[&str] = &[
    "userAccountControl",
    "pwdLastSet",
    "lastLogon",
    "lastLogonTimestamp",
    "accountExpires",
    "badPwdCount",
    "badPasswordTime",
    "lockoutTime",
    "logonCount",
    "uSNCreated",
    "uSNChanged",
];

/// What generated user `index` draws from its seed, in this order.
struct Draws {
    given: &'static str,
    surname: &'static str,
    office: &'static persona::Office,
    title: &'static str,
    profile: company::Profile,
}

/// A filter's answer for all generated users at once: known, or depending on the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Known(Tri),
    PerUser,
}

/// Options of [`Directory::generated`].
#[derive(Debug, Clone)]
pub struct GeneratedOptions {
    /// Number of generated users. Default 100,000.
    pub users: u64,
    /// Seed: same seed, same users. Default 42.
    pub seed: u64,
    /// The "now" the generated data is relative to. Default
    /// [`company::default_reference_time`].
    pub reference_time: DateTime<Utc>,
}

impl Default for GeneratedOptions {
    fn default() -> Self {
        Self {
            users: 100_000,
            seed: 42,
            reference_time: company::default_reference_time(),
        }
    }
}

/// The DN of the container holding generated users.
pub fn generated_container(base_dn: &str) -> String {
    format!("OU=Generated Users,{base_dn}")
}

/// The virtual users behind a generated directory.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedUsers {
    pub(crate) count: u64,
    seed: u64,
    container_dn: String,
    container_norm: String,
    first_usn: u64,
    first_rid: u32,
    guid_prefix: [u8; 8],
    reference: DateTime<Utc>,
    base_dn: String,
    dns_domain: String,
    domain_sid: [u32; 3],
    /// The [`CONSTANT`] attributes of every generated user (an index's view of them).
    constants: Entry,
}

impl Directory {
    /// A directory with the usual skeleton (built-in accounts and groups, service accounts,
    /// `CN=Deleted Objects`) plus `options.users` generated users in `OU=Generated Users`,
    /// computed on the fly. Memory use does not grow with `users`.
    pub fn generated(options: GeneratedOptions) -> Directory {
        let directory = Directory::create(company::BASE_DN, options.reference_time, options.seed);
        {
            let mut state = directory.write();
            let now = options.reference_time;
            let mut rng = Prng::new(options.seed);
            let skeleton = company::skeleton(&mut state, &mut rng, now);
            company::well_known_groups(&mut state, &skeleton, &[], now);
            let base = state.base_dn.clone();
            let container = generated_container(&base);
            state.insert_prepared(
                crate::entry::Entry::new(container.clone())
                    .with("objectClass", ["top", "organizationalUnit"])
                    .with(
                        "objectCategory",
                        [format!(
                            "CN=Organizational-Unit,CN=Schema,CN=Configuration,{base}"
                        )],
                    )
                    .with(
                        "whenCreated",
                        [encoding::generalized_time(now - Duration::days(2_000))],
                    ),
            );
            let first_usn = state.reserve_usns(options.users);
            let first_rid = state.reserve_rids(u32::try_from(options.users).unwrap_or(u32::MAX));
            let mut prefix_rng = Prng::new(options.seed ^ 0x6e6e);
            let mut guid_prefix = [0u8; 8];
            guid_prefix.copy_from_slice(&prefix_rng.bytes16()[..8]);
            let mut generated = GeneratedUsers {
                count: options.users,
                seed: options.seed,
                container_norm: dn::normalize(&container),
                container_dn: container,
                first_usn,
                first_rid,
                guid_prefix,
                reference: now,
                base_dn: base,
                dns_domain: state.dns_domain.clone(),
                domain_sid: state.domain_sid,
                constants: Entry::new(String::new()),
            };
            generated.constants = GeneratedUsers::constants_of(&generated.entry(0));
            state.attach_generated(generated);
        }
        directory
    }
}

impl GeneratedUsers {
    pub(crate) fn container_norm(&self) -> &str {
        &self.container_norm
    }

    fn names(&self, index: u64) -> (Prng, &'static str, &'static str) {
        let mut rng = Prng::for_index(self.seed, index);
        let given = *rng.pick(persona::GIVEN_NAMES);
        let surname = *rng.pick(persona::SURNAMES);
        (rng, given, surname)
    }

    fn cn_of(index: u64, given: &str, surname: &str) -> String {
        format!("{given} {surname} {index}")
    }

    fn dn_of(&self, index: u64, given: &str, surname: &str) -> String {
        format!(
            "CN={},{}",
            dn::escape_value(&Self::cn_of(index, given, surname)),
            self.container_dn
        )
    }

    fn guid(&self, index: u64) -> [u8; 16] {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.guid_prefix);
        raw[8..].copy_from_slice(&index.to_be_bytes());
        // Version 4 and RFC 4122 variant bits, like the GUIDs AD hands out.
        raw[6] = (raw[6] & 0x0f) | 0x40;
        raw[8] = (raw[8] & 0x3f) | 0x80;
        encoding::guid_bytes(&uuid::Uuid::from_bytes(raw))
    }

    /// The [`CONSTANT`] attributes of `sample` (any generated user).
    fn constants_of(sample: &Entry) -> Entry {
        let mut constants = Entry::new(String::new());
        for name in CONSTANT {
            if let Some(values) = sample.get(name) {
                constants.set(name, values.iter().cloned());
            }
        }
        constants
    }

    /// Whether `filter` can match a generated user that has not been materialized, answered
    /// the way a DC answers from its indices: on the attributes all generated users share
    /// (`objectCategory=group`, a `msDS-PSOApplied=*` no generated user has) the whole range
    /// is ruled out at once, without computing a single entry. `true` when it depends on the
    /// user (then each one is computed and evaluated).
    pub(crate) fn may_match(&self, filter: &LdapFilter) -> bool {
        !matches!(
            self.reach(filter),
            Reach::Known(Tri::False | Tri::Undefined)
        )
    }

    fn reach(&self, filter: &LdapFilter) -> Reach {
        let fold = |items: &[LdapFilter], decisive: Tri| {
            let mut per_user = false;
            let mut undefined = false;
            for item in items {
                match self.reach(item) {
                    Reach::Known(t) if t == decisive => return Reach::Known(decisive),
                    Reach::Known(Tri::Undefined) => undefined = true,
                    Reach::Known(_) => {}
                    Reach::PerUser => per_user = true,
                }
            }
            if per_user {
                Reach::PerUser
            } else if undefined {
                Reach::Known(Tri::Undefined)
            } else if decisive == Tri::False {
                Reach::Known(Tri::True)
            } else {
                Reach::Known(Tri::False)
            }
        };
        let attr = match filter {
            LdapFilter::And(items) => return fold(items, Tri::False),
            LdapFilter::Or(items) => return fold(items, Tri::True),
            LdapFilter::Not(inner) => {
                return match self.reach(inner) {
                    Reach::Known(Tri::True) => Reach::Known(Tri::False),
                    Reach::Known(Tri::False) => Reach::Known(Tri::True),
                    other => other,
                };
            }
            assertion => match filter::assertion_attribute(assertion) {
                Some(a) => a,
                None => return Reach::PerUser,
            },
        };
        if PERSONAL
            .iter()
            .chain(ACCOUNT)
            .any(|v| v.eq_ignore_ascii_case(attr))
        {
            Reach::PerUser
        } else {
            // A shared attribute, or one no generated user has: the same answer for all.
            Reach::Known(filter::evaluate_alone(filter, &self.constants))
        }
    }

    /// The first index whose generated uSNChanged is at least `usn` (may be `count`).
    /// Another DC's numbering of the same users (see `Directory::replica`).
    pub(crate) fn shift_usns(&mut self, offset: u64) {
        self.first_usn = self.first_usn.saturating_add(offset);
    }

    pub(crate) fn index_at_usn(&self, usn: u64) -> u64 {
        usn.saturating_sub(self.first_usn).min(self.count)
    }

    pub(crate) fn index_of_guid(&self, guid: &uuid::Uuid) -> Option<u64> {
        let raw = guid.as_bytes();
        let mut tail = [0u8; 8];
        tail.copy_from_slice(raw.get(8..16)?);
        tail[0] &= 0x3f;
        let index = u64::from_be_bytes(tail);
        (index < self.count && self.guid(index) == encoding::guid_bytes(guid)).then_some(index)
    }

    /// The index of a generated user from its normalized DN.
    pub(crate) fn index_of_norm(&self, norm: &str) -> Option<u64> {
        let rdn = norm
            .strip_suffix(self.container_norm.as_str())?
            .strip_suffix(',')?;
        let value = rdn.strip_prefix("cn=")?;
        let index: u64 = value.rsplit(' ').next()?.parse().ok()?;
        if index >= self.count {
            return None;
        }
        let (_, given, surname) = self.names(index);
        (dn::normalize(&self.dn_of(index, given, surname)) == norm).then_some(index)
    }

    fn state_of(index: u64) -> AccountState {
        match index % 97 {
            3 => AccountState::Disabled,
            5 => AccountState::Locked,
            7 => AccountState::NeverLoggedOn,
            11 => AccountState::MustChangePassword,
            13 => AccountState::PasswordNeverExpires,
            17 => AccountState::AccountExpired,
            19 => AccountState::PasswordExpired,
            23 => AccountState::Stale,
            29 => AccountState::Contractor,
            _ => AccountState::Normal,
        }
    }

    /// Whether every attribute `filter` names is one [`Self::account_view`] computes.
    pub(crate) fn account_view_decides(filter: &LdapFilter) -> bool {
        let known = |a: &str| {
            ACCOUNT
                .iter()
                .chain(CONSTANT)
                .any(|k| k.eq_ignore_ascii_case(a))
        };
        match filter {
            LdapFilter::And(items) | LdapFilter::Or(items) => {
                items.iter().all(Self::account_view_decides)
            }
            LdapFilter::Not(inner) => Self::account_view_decides(inner),
            assertion => filter::assertion_attribute(assertion).is_some_and(known),
        }
    }

    /// Generated user `index` reduced to its [`ACCOUNT`] and [`CONSTANT`] attributes: a filter
    /// that names no other attribute ([`Self::account_view_decides`]) gives the same answer on
    /// it as on the whole entry, at a fraction of the cost (an unindexed search of a million
    /// users then costs about what a DC's table scan does, not a million entries built).
    pub(crate) fn account_view(&self, index: u64) -> Entry {
        let profile = self.draws(index).profile;
        let mut view = self.constants.clone();
        company::account_attributes(&profile, &mut |name, values| {
            view.set(name, values);
        });
        let usn = (self.first_usn + index).to_string();
        view.set("uSNCreated", [usn.clone()]);
        view.set("uSNChanged", [usn]);
        view
    }

    fn department(index: u64) -> &'static persona::Department {
        DEPARTMENTS
            .get(usize::try_from(index % DEPARTMENTS.len() as u64).unwrap_or(0))
            .unwrap_or(&DEPARTMENTS[0])
    }

    /// The random draws of generated user `index`, in the order they are taken from its
    /// seed (the whole entry and the account view share them).
    fn draws(&self, index: u64) -> Draws {
        let (mut rng, given, surname) = self.names(index);
        let office = rng.pick(OFFICES);
        let title = *rng.pick(Self::department(index).titles);
        let profile = company::profile(Self::state_of(index), &mut rng, self.reference);
        Draws {
            given,
            surname,
            office,
            title,
            profile,
        }
    }

    /// The entry of generated user `index` (`index < count`).
    pub(crate) fn entry(&self, index: u64) -> crate::entry::Entry {
        let Draws {
            given,
            surname,
            office,
            title,
            profile,
        } = self.draws(index);
        let department = Self::department(index);
        let rid = self
            .first_rid
            .saturating_add(u32::try_from(index).unwrap_or(u32::MAX));
        let [a, b, c] = self.domain_sid;
        let spec = UserSpec {
            dn: self.dn_of(index, given, surname),
            cn: Self::cn_of(index, given, surname),
            given: given.to_string(),
            surname: surname.to_string(),
            sam: format!("u{index:07}"),
            department,
            title: title.to_string(),
            office,
            employee_id: format!("G{index:08}"),
            phone: format!("{} {:04}", office.phone_prefix, index % 10_000),
            mobile: None,
            manager: None,
            admin: false,
            profile,
            guid: Some(self.guid(index)),
            sid: Some(encoding::sid_bytes(5, &[21, a, b, c, rid])),
            usn: Some(self.first_usn + index),
        };
        company::user_entry(&spec, &self.base_dn, &self.dns_domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Modification;
    use crate::directory::Scope;

    fn users(count: u64) -> GeneratedUsers {
        let d = Directory::generated(GeneratedOptions {
            users: count,
            ..GeneratedOptions::default()
        });
        let state = d.read();
        state.generated.clone().unwrap()
    }

    fn parse(filter: &str) -> LdapFilter {
        crate::filter::parse_filter(filter).unwrap()
    }

    #[test]
    fn the_attribute_lists_describe_every_generated_user() {
        let g = users(2_000);
        let first = g.entry(0);
        for index in 0..2_000 {
            let entry = g.entry(index);
            for attr in entry.attributes() {
                let name = attr.name.as_str();
                let constant = CONSTANT.iter().any(|c| c.eq_ignore_ascii_case(name));
                assert!(
                    constant
                        || PERSONAL
                            .iter()
                            .chain(ACCOUNT)
                            .any(|v| v.eq_ignore_ascii_case(name)),
                    "{name} of generated user {index} is in neither list"
                );
                if constant {
                    assert_eq!(
                        entry.get(name),
                        first.get(name),
                        "{name} differs at {index}"
                    );
                }
            }
            let view = g.account_view(index);
            for attr in view.attributes() {
                assert_eq!(
                    view.get(&attr.name),
                    entry.get(&attr.name),
                    "{} of the account view of {index}",
                    attr.name
                );
            }
            for name in ACCOUNT {
                assert_eq!(
                    view.get(name),
                    entry.get(name),
                    "{name} missing from view {index}"
                );
            }
        }
    }

    #[test]
    fn a_filter_no_generated_user_can_match_skips_them_all_and_only_then() {
        let g = users(1_000);
        let cases = [
            ("(objectCategory=group)", false),
            ("(objectClass=group)", false),
            ("(msDS-PSOApplied=*)", false),
            (
                "(&(objectCategory=person)(objectClass=user)(isDeleted=TRUE))",
                false,
            ),
            ("(!(objectCategory=group))", true),
            ("(objectCategory=person)", true),
            ("(&(objectCategory=person)(objectClass=user))", true),
            ("(|(objectCategory=group)(sAMAccountName=u0000001))", true),
            ("(&(objectCategory=group)(sAMAccountName=u0000001))", false),
            ("(sAMAccountName=nobody)", true),
            ("(memberOf:1.2.840.113556.1.4.1941:=CN=x,DC=y)", true),
            ("(sAMAccountType:1.2.840.113556.1.4.803:=1073741824)", false),
            ("(sAMAccountType:1.2.840.113556.1.4.803:=805306368)", true),
        ];
        for (text, expected) in cases {
            let filter = parse(text);
            assert_eq!(g.may_match(&filter), expected, "{text}");
            if !g.may_match(&filter) {
                for index in 0..1_000 {
                    assert_ne!(
                        filter::evaluate_alone(&filter, &g.entry(index)),
                        Tri::True,
                        "{text} matches generated user {index}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_account_view_answers_account_filters_like_the_whole_entry() {
        let g = users(3_000);
        let now = encoding::filetime(g.reference);
        let day = 864_000_000_000_i64;
        let filters = [
            format!(
                "(&(objectCategory=person)(objectClass=user)(|(&(accountExpires>={})(accountExpires<={now}))(&(pwdLastSet>={})(pwdLastSet<={}))(lockoutTime>=1)))",
                now - 200 * day,
                now - 45 * day,
                now - 40 * day
            ),
            "(userAccountControl:1.2.840.113556.1.4.803:=2)".to_owned(),
            format!(
                "(&(pwdLastSet<={})(!(userAccountControl:1.2.840.113556.1.4.803:=65536)))",
                now - 20 * day
            ),
            "(!(lastLogonTimestamp=*))".to_owned(),
            format!("(badPasswordTime<={})", now - 100 * day),
        ];
        assert!(!GeneratedUsers::account_view_decides(&parse(
            "(&(pwdLastSet>=1)(memberOf:1.2.840.113556.1.4.1941:=CN=x,DC=y))"
        )));
        assert!(!GeneratedUsers::account_view_decides(&parse(
            "(&(pwdLastSet>=1)(sAMAccountName=u0000001))"
        )));
        let mut matched = 0;
        for text in &filters {
            let filter = parse(text);
            assert!(GeneratedUsers::account_view_decides(&filter), "{text}");
            for index in 0..3_000 {
                let whole = filter::evaluate_alone(&filter, &g.entry(index));
                assert_eq!(
                    filter::evaluate_alone(&filter, &g.account_view(index)),
                    whole,
                    "{text} at {index}"
                );
                matched += usize::from(whole == Tri::True);
            }
        }
        assert!(
            matched > 100,
            "the filters must match some users ({matched})"
        );
    }

    #[test]
    fn generated_entries_are_addressable_and_mutable() {
        let d = Directory::generated(GeneratedOptions {
            users: 1_000,
            ..GeneratedOptions::default()
        });
        let container = generated_container(&d.base_dn());
        let all = d
            .search(&container, Scope::OneLevel, "(objectClass=user)", false)
            .unwrap();
        assert_eq!(all.len(), 1_000);
        let e = &all[500];
        assert_eq!(e.first_str("sAMAccountName").unwrap(), "u0000500");
        let again = d.get(e.dn()).unwrap();
        assert_eq!(&again, e);
        let guid = encoding::guid_from_bytes(&e.get("objectGUID").unwrap()[0]).unwrap();
        assert_eq!(d.find_by_guid(&guid).unwrap().dn(), e.dn());
        let first_usn = all[0].first_i64("uSNChanged").unwrap();
        assert_eq!(e.first_i64("uSNChanged").unwrap(), first_usn + 500);

        let before = d.highest_committed_usn();
        let usn = d
            .modify(e.dn(), [Modification::replace("title", ["Changed"])])
            .unwrap();
        assert!(usn > before);
        let changed = d.find(&format!("(uSNChanged>={})", before + 1)).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].first_str("title").unwrap(), "Changed");
        // A floor inside the generated range: the last 10 generated users plus the changed one
        // (which sits at index 500, before the floor), in index order.
        let tail = d
            .find(&format!(
                "(&(objectClass=user)(uSNChanged>={}))",
                first_usn + 990
            ))
            .unwrap();
        let names: Vec<String> = tail
            .iter()
            .filter_map(|e| e.first_str("sAMAccountName"))
            .collect();
        assert_eq!(names.len(), 11);
        assert_eq!(names[0], "u0000500");
        assert_eq!(names[1], "u0000990");
        // Keeps its place in order.
        let all2 = d
            .search(&container, Scope::OneLevel, "(objectClass=user)", false)
            .unwrap();
        assert_eq!(all2[500].dn(), e.dn());
        d.delete(all2[10].dn()).unwrap();
        let live = d
            .search(&container, Scope::OneLevel, "(objectClass=user)", false)
            .unwrap();
        assert_eq!(live.len(), 999);
        let tombs = d
            .search(
                &d.base_dn(),
                Scope::Subtree,
                "(&(isDeleted=TRUE)(objectClass=user))",
                true,
            )
            .unwrap();
        assert_eq!(tombs.len(), 1);
    }
}
