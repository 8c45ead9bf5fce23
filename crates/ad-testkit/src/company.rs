//! A synthetic, realistic company directory, deterministic from a seed.
//!
//! Layout under `DC=corp,DC=example,DC=test`:
//! - `CN=Users`: Administrator (RID 500), Guest (501), krbtgt (502), Domain Admins (512),
//!   Domain Users (513, no `member` values: it is everyone's primary group), Domain Guests (514),
//!   Domain Computers (515), Domain Controllers (516);
//! - `CN=Builtin`: Administrators (`S-1-5-32-544`, groupType -2147483643), Users (545);
//! - `OU=Domain Controllers` / `CN=Computers`: a DC and a workstation (computers are
//!   `objectClass=user` too: filters must use `objectCategory=person`);
//! - `OU=Service Accounts`: `svc-connector` (the default bind account), `svc-sql` (with
//!   servicePrincipalName), `svc-backup`;
//! - `OU=<Department>,OU=People`: the employees;
//! - `OU=Groups`: per-department global groups with nested `-Leads` groups, a universal group
//!   nesting them, a domain-local group, a distribution list, a large project group (every
//!   employee: more than 1,500 members once `users > 1500`) and an empty group.
//!
//! Account states: with `users >= 24` every state is present at least once (indices 10..24
//! are pinned: disabled, locked out, expired, password never expires, must change password,
//! never logged on, password expired, two Domain Admins, a unicode name, a `Last\, First` DN,
//! a contractor with a future expiry, a stale account, smartcard required); later users draw
//! states at realistic rates. The [`CompanyManifest`] lists which DNs got which state.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::account::{SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_NAME};
use crate::directory::{Directory, State};
use crate::dn;
use crate::encoding::{self, FILETIME_NEVER};
use crate::entry::{Attribute, Entry};
use crate::persona::{self, DEPARTMENTS, Department, OFFICES, Office, Prng};

/// The naming context of generated directories.
pub const BASE_DN: &str = "DC=corp,DC=example,DC=test";

/// The mail domain of generated people.
pub const MAIL_DOMAIN: &str = "example.test";

/// userAccountControl flags used by the generators.
const UF_ACCOUNTDISABLE: i64 = 0x2;
const UF_PASSWD_NOTREQD: i64 = 0x20;
const UF_NORMAL_ACCOUNT: i64 = 0x200;
const UF_WORKSTATION_TRUST_ACCOUNT: i64 = 0x1000;
const UF_SERVER_TRUST_ACCOUNT: i64 = 0x2000;
const UF_DONT_EXPIRE_PASSWD: i64 = 0x10000;
const UF_SMARTCARD_REQUIRED: i64 = 0x40000;
const UF_TRUSTED_FOR_DELEGATION: i64 = 0x80000;

/// groupType values (signed 32-bit, as AD returns them).
pub mod group_type {
    /// Global security group (0x80000002).
    pub const GLOBAL_SECURITY: i32 = -2_147_483_646;
    /// Domain-local security group (0x80000004).
    pub const DOMAIN_LOCAL_SECURITY: i32 = -2_147_483_644;
    /// Universal security group (0x80000008).
    pub const UNIVERSAL_SECURITY: i32 = -2_147_483_640;
    /// Builtin domain-local security group (0x80000005).
    pub const BUILTIN_LOCAL_SECURITY: i32 = -2_147_483_643;
    /// Universal distribution group (0x8).
    pub const UNIVERSAL_DISTRIBUTION: i32 = 8;
    /// Global distribution group (0x2).
    pub const GLOBAL_DISTRIBUTION: i32 = 2;
}

/// The reference "now" of generated data unless another is given: 2025-06-02T08:00:00Z.
pub fn default_reference_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 8, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Options of [`Company::generate`].
#[derive(Debug, Clone)]
pub struct CompanyOptions {
    /// Number of employees (built-in and service accounts come on top). Default 2,000.
    pub users: usize,
    /// Seed: same seed, same directory. Default 42.
    pub seed: u64,
    /// The "now" the data is relative to (logons, password ages, lockouts); the directory's
    /// clock starts there and runs with wall-clock time. Default [`default_reference_time`];
    /// a demo may pass `Utc::now()`.
    pub reference_time: DateTime<Utc>,
}

impl Default for CompanyOptions {
    fn default() -> Self {
        Self {
            users: 2_000,
            seed: 42,
            reference_time: default_reference_time(),
        }
    }
}

/// Which DNs of a generated company have which property.
#[derive(Debug, Clone, Default)]
pub struct CompanyManifest {
    /// The naming context.
    pub base_dn: String,
    /// Every employee, in creation order.
    pub users: Vec<String>,
    /// Administrator, Guest, krbtgt.
    pub builtin_accounts: Vec<String>,
    /// svc-connector, svc-sql, svc-backup.
    pub service_accounts: Vec<String>,
    /// The two computer accounts (a DC and a workstation).
    pub computers: Vec<String>,
    /// Every group, in creation order.
    pub groups: Vec<String>,
    /// Disabled employees (userAccountControl 0x2).
    pub disabled: Vec<String>,
    /// Locked-out employees (lockoutTime set; computed flag 0x10).
    pub locked_out: Vec<String>,
    /// Employees whose accountExpires is in the past.
    pub account_expired: Vec<String>,
    /// Employees with a future accountExpires (contractors).
    pub expires_later: Vec<String>,
    /// Employees with DONT_EXPIRE_PASSWORD (0x10000).
    pub password_never_expires: Vec<String>,
    /// Employees with pwdLastSet = 0.
    pub must_change_password: Vec<String>,
    /// Employees whose password is older than maxPwdAge (computed flag 0x800000).
    pub password_expired: Vec<String>,
    /// Employees that never logged on (lastLogon 0, no lastLogonTimestamp).
    pub never_logged_on: Vec<String>,
    /// Employees whose last logon is 200+ days old.
    pub stale: Vec<String>,
    /// Employees with SMARTCARD_REQUIRED.
    pub smartcard_required: Vec<String>,
    /// Employees in Domain Admins.
    pub admins: Vec<String>,
    /// Employees with non-ASCII names.
    pub unicode_names: Vec<String>,
    /// Employees whose CN needs escaping (`CN=Last\, First`).
    pub escaped_dns: Vec<String>,
    /// Department global groups.
    pub department_groups: Vec<String>,
    /// `-Leads` groups nested in department groups.
    pub nested_groups: Vec<String>,
    /// The large group (every employee).
    pub large_group: String,
    /// The universal security group nesting the department groups.
    pub universal_group: String,
    /// The domain-local security group.
    pub domain_local_group: String,
    /// The universal distribution group.
    pub distribution_group: String,
    /// A group without members.
    pub empty_group: String,
    /// Domain Admins (RID 512).
    pub domain_admins: String,
    /// Domain Users (RID 513).
    pub domain_users: String,
    /// BUILTIN\Administrators (S-1-5-32-544).
    pub administrators: String,
}

/// The company generator.
#[derive(Debug, Clone)]
pub struct Company {
    /// The generated directory.
    pub directory: Directory,
    /// What was generated where.
    pub manifest: CompanyManifest,
}

impl Company {
    /// Generates the directory (see the module docs for its shape).
    pub fn generate(options: CompanyOptions) -> Directory {
        Self::build(options).directory
    }

    /// Generates the directory and its manifest.
    pub fn build(options: CompanyOptions) -> Company {
        let directory = Directory::create(BASE_DN, options.reference_time, options.seed);
        let manifest = {
            let mut state = directory.write();
            populate(&mut state, &options)
        };
        Company {
            directory,
            manifest,
        }
    }
}

/// Account states the generators produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountState {
    Normal,
    Disabled,
    Locked,
    AccountExpired,
    PasswordNeverExpires,
    MustChangePassword,
    NeverLoggedOn,
    PasswordExpired,
    Contractor,
    Stale,
    SmartcardRequired,
}

/// Logon and password history of one account, as AD attributes.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) uac: i64,
    pub(crate) pwd_last_set: i64,
    pub(crate) last_logon: i64,
    pub(crate) last_logon_timestamp: Option<i64>,
    pub(crate) account_expires: i64,
    pub(crate) bad_pwd_count: u32,
    pub(crate) bad_password_time: i64,
    pub(crate) lockout_time: Option<i64>,
    pub(crate) logon_count: u32,
    pub(crate) created: DateTime<Utc>,
    pub(crate) changed: DateTime<Utc>,
}

fn days(rng: &mut Prng, from: i64, to: i64) -> Duration {
    let span = u64::try_from(to - from).unwrap_or(1).max(1);
    let d = from + i64::try_from(rng.below(span)).unwrap_or(0);
    Duration::days(d) + Duration::seconds(i64::try_from(rng.below(86_400)).unwrap_or(0))
}

pub(crate) fn profile(state: AccountState, rng: &mut Prng, now: DateTime<Utc>) -> Profile {
    let ft = encoding::filetime;
    let created = now - days(rng, 60, 2_500);
    let mut last_logon_time =
        now - Duration::minutes(i64::try_from(rng.below(72 * 60)).unwrap_or(0) + 5);
    let mut p = Profile {
        uac: UF_NORMAL_ACCOUNT,
        pwd_last_set: ft(now - days(rng, 1, 40)),
        last_logon: 0,
        last_logon_timestamp: None,
        account_expires: if rng.chance(200) { 0 } else { FILETIME_NEVER },
        bad_pwd_count: 0,
        bad_password_time: if rng.chance(500) {
            0
        } else {
            ft(now - days(rng, 1, 300))
        },
        lockout_time: if rng.chance(100) { Some(0) } else { None },
        logon_count: u32::try_from(20 + rng.below(3_000)).unwrap_or(20),
        created,
        changed: now - days(rng, 0, 30),
    };
    match state {
        AccountState::Normal => {}
        AccountState::Disabled => {
            p.uac |= UF_ACCOUNTDISABLE;
            last_logon_time = now - days(rng, 90, 400);
        }
        AccountState::Locked => {
            let at = now - Duration::minutes(5 + i64::try_from(rng.below(55)).unwrap_or(0));
            p.lockout_time = Some(ft(at));
            p.bad_pwd_count = 5;
            p.bad_password_time = ft(at);
        }
        AccountState::AccountExpired => {
            p.account_expires = ft(now - days(rng, 10, 100));
            last_logon_time = now - days(rng, 11, 120);
        }
        AccountState::PasswordNeverExpires => {
            p.uac |= UF_DONT_EXPIRE_PASSWD;
            p.pwd_last_set = ft(now - days(rng, 300, 900));
        }
        AccountState::MustChangePassword => p.pwd_last_set = 0,
        AccountState::NeverLoggedOn => {
            p.created = now - days(rng, 1, 20);
            p.pwd_last_set = ft(p.created);
            p.logon_count = 0;
            p.bad_password_time = 0;
        }
        AccountState::PasswordExpired => {
            p.pwd_last_set = ft(now - days(rng, 60, 200));
            last_logon_time = now - days(rng, 45, 100);
        }
        AccountState::Contractor => p.account_expires = ft(now + days(rng, 30, 180)),
        AccountState::Stale => last_logon_time = now - days(rng, 200, 700),
        AccountState::SmartcardRequired => p.uac |= UF_SMARTCARD_REQUIRED,
    }
    if p.created > last_logon_time {
        p.created = last_logon_time - days(rng, 30, 300);
    }
    if p.changed < p.created {
        p.changed = p.created;
    }
    if state != AccountState::NeverLoggedOn {
        p.last_logon = ft(last_logon_time);
        // Replicated value: lags the real one by up to ~14 days.
        let lag = Duration::hours(i64::try_from(rng.below(14 * 24)).unwrap_or(0));
        p.last_logon_timestamp = Some(ft(last_logon_time - lag).max(ft(p.created)));
    }
    p
}

/// Everything needed to write one person entry.
#[derive(Debug, Clone)]
pub(crate) struct UserSpec {
    pub(crate) dn: String,
    /// The RDN value (`cn`).
    pub(crate) cn: String,
    pub(crate) given: String,
    pub(crate) surname: String,
    pub(crate) sam: String,
    pub(crate) department: &'static Department,
    pub(crate) title: String,
    pub(crate) office: &'static Office,
    pub(crate) employee_id: String,
    pub(crate) phone: String,
    pub(crate) mobile: Option<String>,
    pub(crate) manager: Option<String>,
    pub(crate) admin: bool,
    pub(crate) profile: Profile,
    /// Explicit objectGUID/objectSid (generated entries); otherwise the directory assigns.
    pub(crate) guid: Option<[u8; 16]>,
    pub(crate) sid: Option<Vec<u8>>,
    pub(crate) usn: Option<u64>,
}

pub(crate) fn user_entry(spec: &UserSpec, base_dn: &str, dns_domain: &str) -> Entry {
    let p = &spec.profile;
    let display = format!("{} {}", spec.given, spec.surname);
    let mail_local = {
        let g = persona::ascii_fold(&spec.given).to_lowercase();
        let s = persona::ascii_fold(&spec.surname).to_lowercase();
        if g.is_empty() || s.is_empty() {
            spec.sam.clone()
        } else {
            format!("{g}.{s}")
        }
    };
    // Built directly (names are distinct): this runs once per generated entry served.
    let mut attrs: Vec<Attribute> = Vec::with_capacity(48);
    let mut put = |name: &str, values: Vec<Vec<u8>>| {
        attrs.push(Attribute {
            name: name.to_string(),
            values,
        });
    };
    let one = |v: &str| vec![v.as_bytes().to_vec()];
    put(
        "objectClass",
        ["top", "person", "organizationalPerson", "user"]
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect(),
    );
    put("cn", one(&spec.cn));
    put("sn", one(&spec.surname));
    put("givenName", one(&spec.given));
    put("displayName", one(&display));
    put("name", one(&spec.cn));
    put("title", one(&spec.title));
    put("department", one(spec.department.name));
    put("company", one("Example Corp"));
    put("physicalDeliveryOfficeName", one(spec.office.city));
    put("streetAddress", one(spec.office.street));
    put("l", one(spec.office.city));
    put("st", one(spec.office.state));
    put("postalCode", one(spec.office.postal_code));
    put("c", one(spec.office.country));
    put("co", one(spec.office.country_name));
    put("countryCode", one(spec.office.country_code));
    put("telephoneNumber", one(&spec.phone));
    if let Some(m) = &spec.mobile {
        put("mobile", one(m));
    }
    put("employeeID", one(&spec.employee_id));
    put("mail", one(&format!("{mail_local}@{MAIL_DOMAIN}")));
    put(
        "userPrincipalName",
        one(&format!("{}@{dns_domain}", spec.sam)),
    );
    put("sAMAccountName", one(&spec.sam));
    put("sAMAccountType", one("805306368"));
    account_attributes(p, &mut put);
    put("codePage", one("0"));
    put("instanceType", one("4"));
    put(
        "objectCategory",
        one(&format!("CN=Person,CN=Schema,CN=Configuration,{base_dn}")),
    );
    if let Some(m) = &spec.manager {
        put("manager", one(m));
    }
    if spec.admin {
        put("adminCount", one("1"));
    }
    if let Some(g) = spec.guid {
        put("objectGUID", vec![g.to_vec()]);
    }
    if let Some(s) = &spec.sid {
        put("objectSid", vec![s.clone()]);
    }
    put("whenCreated", one(&encoding::generalized_time(p.created)));
    put("whenChanged", one(&encoding::generalized_time(p.changed)));
    if let Some(usn) = spec.usn {
        put("uSNCreated", one(&usn.to_string()));
        put("uSNChanged", one(&usn.to_string()));
    }
    Entry::from_attributes(spec.dn.clone(), attrs)
}

/// The account-state attributes of a user entry (`userAccountControl` through `logonCount`,
/// in the order `user_entry` writes them); also what a generated directory evaluates an
/// unindexed filter on before it computes a whole entry.
pub(crate) fn account_attributes(p: &Profile, put: &mut dyn FnMut(&str, Vec<Vec<u8>>)) {
    let one = |v: &str| vec![v.as_bytes().to_vec()];
    put("userAccountControl", one(&p.uac.to_string()));
    put("primaryGroupID", one("513"));
    put("pwdLastSet", one(&p.pwd_last_set.to_string()));
    put("lastLogon", one(&p.last_logon.to_string()));
    if let Some(t) = p.last_logon_timestamp {
        put("lastLogonTimestamp", one(&t.to_string()));
    }
    put("lastLogoff", one("0"));
    put("accountExpires", one(&p.account_expires.to_string()));
    put("badPwdCount", one(&p.bad_pwd_count.to_string()));
    put("badPasswordTime", one(&p.bad_password_time.to_string()));
    if let Some(t) = p.lockout_time {
        put("lockoutTime", one(&t.to_string()));
    }
    put("logonCount", one(&p.logon_count.to_string()));
}

fn sam_account_type(group_type: i32) -> &'static str {
    let security = group_type < 0;
    let local = group_type & 0x4 != 0;
    match (security, local) {
        (true, false) => "268435456",
        (true, true) => "536870912",
        (false, false) => "268435457",
        (false, true) => "536870913",
    }
}

fn group_entry(
    dn_text: &str,
    sam: &str,
    group_type: i32,
    description: &str,
    members: &[String],
    created: DateTime<Utc>,
    base_dn: &str,
) -> Entry {
    let mut e = Entry::new(dn_text)
        .with("objectClass", ["top", "group"])
        .with("sAMAccountName", [sam])
        .with("groupType", [group_type.to_string()])
        .with("sAMAccountType", [sam_account_type(group_type)])
        .with("description", [description])
        .with(
            "objectCategory",
            [format!("CN=Group,CN=Schema,CN=Configuration,{base_dn}")],
        )
        .with("whenCreated", [encoding::generalized_time(created)]);
    if !members.is_empty() {
        e.set("member", members.iter().map(String::as_str));
    }
    e
}

fn container(dn_text: String, class: &str, created: DateTime<Utc>, base_dn: &str) -> Entry {
    let category = if class == "organizationalUnit" {
        "Organizational-Unit"
    } else {
        "Container"
    };
    Entry::new(dn_text)
        .with("objectClass", ["top", class])
        .with(
            "objectCategory",
            [format!(
                "CN={category},CN=Schema,CN=Configuration,{base_dn}"
            )],
        )
        .with("whenCreated", [encoding::generalized_time(created)])
}

/// Well-known DNs of the skeleton shared by the company and generated directories.
#[derive(Debug, Clone)]
pub(crate) struct Skeleton {
    pub(crate) administrator: String,
    pub(crate) builtin_accounts: Vec<String>,
    pub(crate) service_accounts: Vec<String>,
    pub(crate) computers: Vec<String>,
}

/// Containers, built-in accounts, computers and service accounts (not the groups).
pub(crate) fn skeleton(state: &mut State, rng: &mut Prng, now: DateTime<Utc>) -> Skeleton {
    let base = state.base_dn.clone();
    let dns = state.dns_domain.clone();
    let domain_birth = now - Duration::days(3_000);
    for (dn_text, class) in [
        (format!("CN=Users,{base}"), "container"),
        (format!("CN=Computers,{base}"), "container"),
        (
            format!("OU=Domain Controllers,{base}"),
            "organizationalUnit",
        ),
        (format!("CN=Builtin,{base}"), "builtinDomain"),
        (format!("OU=Service Accounts,{base}"), "organizationalUnit"),
        (format!("OU=People,{base}"), "organizationalUnit"),
        (format!("OU=Groups,{base}"), "organizationalUnit"),
    ] {
        let mut e = container(dn_text, class, domain_birth, &base);
        if class == "builtinDomain" {
            e.set("objectSid", [encoding::sid_bytes(5, &[32])]);
        }
        state.insert_prepared(e);
    }
    let ft = |t: DateTime<Utc>| encoding::filetime(t).to_string();
    let account = |name: &str, rid: u32, uac: i64, primary: u32, state: &State| {
        Entry::new(format!("CN={name},CN=Users,{base}"))
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user"],
            )
            .with("sAMAccountName", [name])
            .with("sAMAccountType", ["805306368"])
            .with("userAccountControl", [uac.to_string()])
            .with("primaryGroupID", [primary.to_string()])
            .with("objectSid", [state.sid_for_rid(rid)])
            .with(
                "objectCategory",
                [format!("CN=Person,CN=Schema,CN=Configuration,{base}")],
            )
            .with("accountExpires", [FILETIME_NEVER.to_string()])
            .with("badPwdCount", ["0"])
            .with("lastLogoff", ["0"])
            .with("codePage", ["0"])
            .with("countryCode", ["0"])
            .with("isCriticalSystemObject", ["TRUE"])
            .with("whenCreated", [encoding::generalized_time(domain_birth)])
    };
    let admin_logon = ft(now - Duration::hours(3));
    let administrator = account(
        "Administrator",
        500,
        UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD,
        513,
        state,
    )
    .with(
        "description",
        ["Built-in account for administering the computer/domain"],
    )
    .with("userPrincipalName", [format!("Administrator@{dns}")])
    .with("adminCount", ["1"])
    .with("pwdLastSet", [ft(domain_birth)])
    .with("lastLogon", [admin_logon.clone()])
    .with("lastLogonTimestamp", [admin_logon])
    .with("logonCount", ["812"]);
    let guest = account(
        "Guest",
        501,
        UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD | UF_PASSWD_NOTREQD | UF_ACCOUNTDISABLE,
        514,
        state,
    )
    .with(
        "description",
        ["Built-in account for guest access to the computer/domain"],
    )
    .with("pwdLastSet", ["0"])
    .with("lastLogon", ["0"])
    .with("logonCount", ["0"]);
    let krbtgt = account(
        "krbtgt",
        502,
        UF_NORMAL_ACCOUNT | UF_ACCOUNTDISABLE,
        513,
        state,
    )
    .with("description", ["Key Distribution Center Service Account"])
    .with("adminCount", ["1"])
    .with("servicePrincipalName", ["kadmin/changepw"])
    .with("pwdLastSet", [ft(domain_birth)])
    .with("lastLogon", ["0"])
    .with("logonCount", ["0"]);
    let mut builtin_accounts = Vec::new();
    for e in [administrator, guest, krbtgt] {
        builtin_accounts.push(e.dn().to_string());
        state.insert_prepared(e);
    }
    // Computers: objectClass includes `user`.
    let mut computers = Vec::new();
    for (dn_text, sam, uac, primary, host, os) in [
        (
            format!("CN=DC1,OU=Domain Controllers,{base}"),
            "DC1$",
            UF_SERVER_TRUST_ACCOUNT | UF_TRUSTED_FOR_DELEGATION,
            516,
            format!("dc1.{dns}"),
            "Windows Server 2022 Datacenter",
        ),
        (
            format!("CN=WS-0001,CN=Computers,{base}"),
            "WS-0001$",
            UF_WORKSTATION_TRUST_ACCOUNT,
            515,
            format!("ws-0001.{dns}"),
            "Windows 11 Enterprise",
        ),
    ] {
        let logon = ft(now - Duration::minutes(i64::try_from(rng.below(600)).unwrap_or(0)));
        let e = Entry::new(dn_text)
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user", "computer"],
            )
            .with("sAMAccountName", [sam])
            .with("sAMAccountType", ["805306369"])
            .with("userAccountControl", [uac.to_string()])
            .with("primaryGroupID", [primary.to_string()])
            .with("dNSHostName", [host])
            .with("operatingSystem", [os])
            .with(
                "objectCategory",
                [format!("CN=Computer,CN=Schema,CN=Configuration,{base}")],
            )
            .with("pwdLastSet", [ft(now - Duration::days(12))])
            .with("lastLogon", [logon.clone()])
            .with("lastLogonTimestamp", [logon])
            .with("accountExpires", [FILETIME_NEVER.to_string()])
            .with("whenCreated", [encoding::generalized_time(domain_birth)]);
        computers.push(e.dn().to_string());
        state.insert_prepared(e);
    }
    // Service accounts.
    let mut service_accounts = Vec::new();
    for (name, description, spns) in [
        (
            SERVICE_ACCOUNT_NAME,
            "Read-only account of the identity connector",
            vec![],
        ),
        (
            "svc-sql",
            "SQL Server service account",
            vec![
                format!("MSSQLSvc/sql01.{dns}:1433"),
                format!("MSSQLSvc/sql01.{dns}"),
            ],
        ),
        ("svc-backup", "Backup service account", vec![]),
    ] {
        let dn_text = if name == SERVICE_ACCOUNT_NAME {
            SERVICE_ACCOUNT_DN.replace(crate::company::BASE_DN, &base)
        } else {
            format!("CN={name},OU=Service Accounts,{base}")
        };
        let logon = ft(now - Duration::minutes(30));
        let mut e = Entry::new(dn_text)
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user"],
            )
            .with("sAMAccountName", [name])
            .with("userPrincipalName", [format!("{name}@{dns}")])
            .with("description", [description])
            .with("sAMAccountType", ["805306368"])
            .with(
                "userAccountControl",
                [(UF_NORMAL_ACCOUNT | UF_DONT_EXPIRE_PASSWD).to_string()],
            )
            .with("primaryGroupID", ["513"])
            .with(
                "objectCategory",
                [format!("CN=Person,CN=Schema,CN=Configuration,{base}")],
            )
            .with("pwdLastSet", [ft(now - Duration::days(400))])
            .with("lastLogon", [logon.clone()])
            .with("lastLogonTimestamp", [logon])
            .with("accountExpires", [FILETIME_NEVER.to_string()])
            .with("badPwdCount", ["0"])
            .with("logonCount", ["4211"])
            .with(
                "whenCreated",
                [encoding::generalized_time(
                    domain_birth + Duration::days(30),
                )],
            );
        if !spns.is_empty() {
            e.set("servicePrincipalName", spns);
        }
        service_accounts.push(e.dn().to_string());
        state.insert_prepared(e);
    }
    Skeleton {
        administrator: builtin_accounts.first().cloned().unwrap_or_default(),
        builtin_accounts,
        service_accounts,
        computers,
    }
}

/// Domain Admins, Domain Users, ... and the builtin groups. Returns
/// (Domain Admins, Domain Users, Administrators) DNs.
pub(crate) fn well_known_groups(
    state: &mut State,
    skeleton: &Skeleton,
    admins: &[String],
    now: DateTime<Utc>,
) -> (String, String, String) {
    let base = state.base_dn.clone();
    let birth = now - Duration::days(3_000);
    let users = format!("CN=Users,{base}");
    let mut domain_admin_members = vec![skeleton.administrator.clone()];
    domain_admin_members.extend(admins.iter().cloned());
    let mut created = Vec::new();
    for (name, rid, description, members) in [
        (
            "Domain Admins",
            512,
            "Designated administrators of the domain",
            domain_admin_members,
        ),
        ("Domain Users", 513, "All domain users", vec![]),
        ("Domain Guests", 514, "All domain guests", vec![]),
        (
            "Domain Computers",
            515,
            "All workstations and servers joined to the domain",
            vec![],
        ),
        (
            "Domain Controllers",
            516,
            "All domain controllers in the domain",
            vec![],
        ),
    ] {
        let dn_text = format!("CN={name},{users}");
        let e = group_entry(
            &dn_text,
            name,
            group_type::GLOBAL_SECURITY,
            description,
            &members,
            birth,
            &base,
        )
        .with("objectSid", [state.sid_for_rid(rid)])
        .with("isCriticalSystemObject", ["TRUE"]);
        let e = if rid == 512 {
            e.with("adminCount", ["1"])
        } else {
            e
        };
        state.insert_prepared(e);
        created.push(dn_text);
    }
    let domain_admins = created.first().cloned().unwrap_or_default();
    let domain_users = created.get(1).cloned().unwrap_or_default();
    let administrators = format!("CN=Administrators,CN=Builtin,{base}");
    for (dn_text, name, rid, description, members) in [
        (
            administrators.clone(),
            "Administrators",
            544,
            "Administrators have complete and unrestricted access to the computer/domain",
            vec![skeleton.administrator.clone(), domain_admins.clone()],
        ),
        (
            format!("CN=Users,CN=Builtin,{base}"),
            "Users",
            545,
            "Users are prevented from making accidental or intentional system-wide changes",
            vec![domain_users.clone()],
        ),
    ] {
        let e = group_entry(
            &dn_text,
            name,
            group_type::BUILTIN_LOCAL_SECURITY,
            description,
            &members,
            birth,
            &base,
        )
        .with("objectSid", [encoding::sid_bytes(5, &[32, rid])])
        .with("systemFlags", ["-1946157056"])
        .with("isCriticalSystemObject", ["TRUE"]);
        let e = if rid == 544 {
            e.with("adminCount", ["1"])
        } else {
            e
        };
        state.insert_prepared(e);
    }
    (domain_admins, domain_users, administrators)
}

const PINNED: &[AccountState] = &[
    AccountState::Disabled,
    AccountState::Locked,
    AccountState::AccountExpired,
    AccountState::PasswordNeverExpires,
    AccountState::MustChangePassword,
    AccountState::NeverLoggedOn,
    AccountState::PasswordExpired,
];

/// Index of the first pinned special user.
const FIRST_PINNED: usize = 10;

fn drawn_state(rng: &mut Prng) -> AccountState {
    let roll = rng.below(1_000);
    let table: &[(u64, AccountState)] = &[
        (40, AccountState::Disabled),
        (10, AccountState::Locked),
        (10, AccountState::AccountExpired),
        (50, AccountState::PasswordNeverExpires),
        (20, AccountState::MustChangePassword),
        (30, AccountState::NeverLoggedOn),
        (20, AccountState::PasswordExpired),
        (30, AccountState::Contractor),
        (40, AccountState::Stale),
        (10, AccountState::SmartcardRequired),
    ];
    let mut acc = 0;
    for (weight, state) in table {
        acc += weight;
        if roll < acc {
            return *state;
        }
    }
    AccountState::Normal
}

struct Planned {
    dn: String,
    cn: String,
    given: String,
    surname: String,
    sam: String,
    department: usize,
    state: AccountState,
    admin: bool,
    unicode: bool,
    escaped: bool,
}

fn unique(base: String, taken: &mut std::collections::HashSet<String>, max_len: usize) -> String {
    let trimmed: String = base.chars().take(max_len).collect();
    if taken.insert(trimmed.to_lowercase()) {
        return trimmed;
    }
    for n in 2.. {
        let suffix = n.to_string();
        let head: String = base
            .chars()
            .take(max_len.saturating_sub(suffix.len()))
            .collect();
        let candidate = format!("{head}{suffix}");
        if taken.insert(candidate.to_lowercase()) {
            return candidate;
        }
    }
    trimmed
}

fn populate(state: &mut State, options: &CompanyOptions) -> CompanyManifest {
    let now = options.reference_time;
    let base = state.base_dn.clone();
    let dns = state.dns_domain.clone();
    let mut rng = Prng::new(options.seed);
    let skeleton = skeleton(state, &mut rng, now);
    let mut manifest = CompanyManifest {
        base_dn: base.clone(),
        builtin_accounts: skeleton.builtin_accounts.clone(),
        service_accounts: skeleton.service_accounts.clone(),
        computers: skeleton.computers.clone(),
        ..CompanyManifest::default()
    };
    let people = format!("OU=People,{base}");
    let departments = DEPARTMENTS.len().min(options.users.max(1));
    for dept in DEPARTMENTS.iter().take(departments) {
        state.insert_prepared(container(
            format!("OU={},{people}", dept.name),
            "organizationalUnit",
            now - Duration::days(2_900),
            &base,
        ));
    }
    // Plan names first, so CNs and account names are unique.
    let mut cns = std::collections::HashSet::new();
    let mut sams = std::collections::HashSet::new();
    let mut planned: Vec<Planned> = Vec::with_capacity(options.users);
    for i in 0..options.users {
        let department = i % departments;
        let pinned = i.checked_sub(FIRST_PINNED);
        let state_kind = match pinned {
            Some(p) if p < PINNED.len() => PINNED.get(p).copied().unwrap_or(AccountState::Normal),
            Some(11) => AccountState::Contractor,
            Some(12) => AccountState::Stale,
            Some(13) => AccountState::SmartcardRequired,
            Some(p) if p > 13 => drawn_state(&mut rng),
            _ => AccountState::Normal,
        };
        let admin = matches!(pinned, Some(7) | Some(8));
        let unicode = pinned == Some(9) || (pinned.is_some_and(|p| p > 13) && rng.chance(50));
        let escaped = pinned == Some(10) || (pinned.is_some_and(|p| p > 13) && rng.chance(20));
        let (given, surname) = if unicode {
            let (g, s) = *rng.pick(persona::UNICODE_PEOPLE);
            (g.to_string(), s.to_string())
        } else {
            (
                (*rng.pick(persona::GIVEN_NAMES)).to_string(),
                (*rng.pick(persona::SURNAMES)).to_string(),
            )
        };
        let cn_base = if escaped {
            format!("{surname}, {given}")
        } else {
            format!("{given} {surname}")
        };
        let cn = unique(cn_base, &mut cns, 64);
        let folded_given = persona::ascii_fold(&given).to_lowercase();
        let folded_surname = persona::ascii_fold(&surname).to_lowercase();
        let sam_base = match (folded_given.chars().next(), folded_surname.is_empty()) {
            (Some(initial), false) => format!("{initial}{folded_surname}"),
            _ => format!("user{i}"),
        };
        let sam = unique(sam_base, &mut sams, 20);
        let dept_name = DEPARTMENTS.get(department).map_or("People", |d| d.name);
        let dn_text = format!("CN={},OU={dept_name},{people}", dn::escape_value(&cn));
        planned.push(Planned {
            dn: dn_text,
            cn,
            given,
            surname,
            sam,
            department,
            state: state_kind,
            admin,
            unicode,
            escaped,
        });
    }
    let heads: Vec<String> = planned
        .iter()
        .take(departments)
        .map(|p| p.dn.clone())
        .collect();
    for (i, plan) in planned.iter().enumerate() {
        let Some(dept) = DEPARTMENTS.get(plan.department) else {
            continue;
        };
        let office = rng.pick(OFFICES);
        let is_head = i < departments;
        let title = if is_head {
            dept.titles
                .first()
                .copied()
                .unwrap_or("Manager")
                .to_string()
        } else {
            (*rng.pick(
                dept.titles
                    .get(1..)
                    .filter(|t| !t.is_empty())
                    .unwrap_or(dept.titles),
            ))
            .to_string()
        };
        let manager = if i == 0 {
            None
        } else if is_head {
            heads.first().cloned()
        } else {
            heads.get(plan.department).cloned()
        };
        let spec = UserSpec {
            dn: plan.dn.clone(),
            cn: plan.cn.clone(),
            given: plan.given.clone(),
            surname: plan.surname.clone(),
            sam: plan.sam.clone(),
            department: dept,
            title,
            office,
            employee_id: format!("E{:06}", 100_000 + i),
            phone: format!("{} {:04}", office.phone_prefix, rng.below(10_000)),
            mobile: rng
                .chance(700)
                .then(|| format!("+1 555 01{:02} {:04}", rng.below(100), rng.below(10_000))),
            manager,
            admin: plan.admin,
            profile: profile(plan.state, &mut rng, now),
            guid: None,
            sid: None,
            usn: None,
        };
        state.insert_prepared(user_entry(&spec, &base, &dns));
        manifest.users.push(plan.dn.clone());
        let list = match plan.state {
            AccountState::Normal => None,
            AccountState::Disabled => Some(&mut manifest.disabled),
            AccountState::Locked => Some(&mut manifest.locked_out),
            AccountState::AccountExpired => Some(&mut manifest.account_expired),
            AccountState::PasswordNeverExpires => Some(&mut manifest.password_never_expires),
            AccountState::MustChangePassword => Some(&mut manifest.must_change_password),
            AccountState::NeverLoggedOn => Some(&mut manifest.never_logged_on),
            AccountState::PasswordExpired => Some(&mut manifest.password_expired),
            AccountState::Contractor => Some(&mut manifest.expires_later),
            AccountState::Stale => Some(&mut manifest.stale),
            AccountState::SmartcardRequired => Some(&mut manifest.smartcard_required),
        };
        if let Some(list) = list {
            list.push(plan.dn.clone());
        }
        if plan.admin {
            manifest.admins.push(plan.dn.clone());
        }
        if plan.unicode {
            manifest.unicode_names.push(plan.dn.clone());
        }
        if plan.escaped {
            manifest.escaped_dns.push(plan.dn.clone());
        }
    }
    let (domain_admins, domain_users, administrators) =
        well_known_groups(state, &skeleton, &manifest.admins, now);
    manifest.domain_admins = domain_admins.clone();
    manifest.domain_users = domain_users.clone();
    manifest.administrators = administrators.clone();
    manifest.groups.extend([
        domain_admins,
        domain_users,
        format!("CN=Domain Guests,CN=Users,{base}"),
        format!("CN=Domain Computers,CN=Users,{base}"),
        format!("CN=Domain Controllers,CN=Users,{base}"),
        administrators,
        format!("CN=Users,CN=Builtin,{base}"),
    ]);
    // Company groups.
    let groups_ou = format!("OU=Groups,{base}");
    let created = now - Duration::days(1_500);
    let group = |name: &str, kind: i32, description: &str, members: &[String]| {
        group_entry(
            &format!("CN={name},{groups_ou}"),
            name,
            kind,
            description,
            members,
            created,
            &base,
        )
    };
    let add_group = |state: &mut State, manifest: &mut CompanyManifest, entry: Entry| -> String {
        let dn_text = entry.dn().to_string();
        state.insert_prepared(entry);
        manifest.groups.push(dn_text.clone());
        dn_text
    };
    for (d, dept) in DEPARTMENTS.iter().enumerate().take(departments) {
        let members: Vec<String> = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.department == d)
            .map(|(_, p)| p.dn.clone())
            .collect();
        let leads: Vec<String> = members.iter().take(3).cloned().collect();
        let leads_dn = add_group(
            state,
            &mut manifest,
            group(
                &format!("GG-{}-Leads", dept.short),
                group_type::GLOBAL_SECURITY,
                &format!("{} leadership", dept.name),
                &leads,
            ),
        );
        manifest.nested_groups.push(leads_dn.clone());
        let mut all = members;
        all.push(leads_dn);
        let dept_dn = add_group(
            state,
            &mut manifest,
            group(
                &format!("GG-{}", dept.short),
                group_type::GLOBAL_SECURITY,
                &format!("All of {}", dept.name),
                &all,
            ),
        );
        manifest.department_groups.push(dept_dn);
    }
    let department_groups = manifest.department_groups.clone();
    manifest.universal_group = add_group(
        state,
        &mut manifest,
        group(
            "UG-All-Staff",
            group_type::UNIVERSAL_SECURITY,
            "Every department group",
            &department_groups,
        ),
    );
    let mut share_members: Vec<String> = department_groups
        .iter()
        .filter(|g| g.contains("GG-Finance,") || g.contains("GG-Executive,"))
        .cloned()
        .collect();
    share_members.extend(
        planned
            .iter()
            .find(|p| {
                DEPARTMENTS
                    .get(p.department)
                    .is_some_and(|d| d.name == "Legal")
            })
            .map(|p| p.dn.clone()),
    );
    manifest.domain_local_group = add_group(
        state,
        &mut manifest,
        group(
            "DL-Finance-Share-RW",
            group_type::DOMAIN_LOCAL_SECURITY,
            "Read/write on \\\\files01\\finance",
            &share_members,
        ),
    );
    let announce: Vec<String> = manifest.users.iter().take(300).cloned().collect();
    let distribution = add_group(
        state,
        &mut manifest,
        group(
            "All Company Announcements",
            group_type::UNIVERSAL_DISTRIBUTION,
            "Company-wide announcements list",
            &announce,
        ),
    );
    manifest.distribution_group = distribution;
    let everyone = manifest.users.clone();
    manifest.large_group = add_group(
        state,
        &mut manifest,
        group(
            "GG-Project-Atlas",
            group_type::GLOBAL_SECURITY,
            "Project Atlas (everyone)",
            &everyone,
        ),
    );
    manifest.empty_group = add_group(
        state,
        &mut manifest,
        group(
            "GG-Empty",
            group_type::GLOBAL_SECURITY,
            "A group nobody is in",
            &[],
        ),
    );
    manifest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_company_has_every_state_and_consistent_links() {
        let company = Company::build(CompanyOptions {
            users: 60,
            ..CompanyOptions::default()
        });
        let m = &company.manifest;
        let d = &company.directory;
        for (what, list) in [
            ("disabled", &m.disabled),
            ("locked", &m.locked_out),
            ("expired", &m.account_expired),
            ("never expires", &m.password_never_expires),
            ("must change", &m.must_change_password),
            ("never logged on", &m.never_logged_on),
            ("password expired", &m.password_expired),
            ("admins", &m.admins),
            ("unicode", &m.unicode_names),
            ("escaped", &m.escaped_dns),
            ("contractor", &m.expires_later),
            ("stale", &m.stale),
            ("smartcard", &m.smartcard_required),
        ] {
            assert!(!list.is_empty(), "no {what} user");
        }
        // memberOf mirrors member.
        for g in &m.groups {
            let group = d.get(g).unwrap();
            for member in group.strs("member") {
                let e = d.get(&member).unwrap();
                assert!(
                    e.strs("memberOf")
                        .iter()
                        .any(|v| dn::normalize(v) == dn::normalize(g)),
                    "{member} lacks memberOf {g}"
                );
            }
        }
        let du = d.get(&m.domain_users).unwrap();
        assert!(du.get("member").is_none());
        let admins = d.get(&m.domain_admins).unwrap();
        let sid = encoding::sid_to_string(&admins.get("objectSid").unwrap()[0]).unwrap();
        assert!(sid.ends_with("-512"));
        let builtin = d.get(&m.administrators).unwrap();
        assert_eq!(
            encoding::sid_to_string(&builtin.get("objectSid").unwrap()[0]).unwrap(),
            "S-1-5-32-544"
        );
        assert_eq!(builtin.first_str("groupType").unwrap(), "-2147483643");
        // Computed flags.
        let locked = d.get(&m.locked_out[0]).unwrap();
        assert_eq!(
            d.computed_user_account_control(&locked).unwrap() & 0x10,
            0x10
        );
        let expired = d.get(&m.password_expired[0]).unwrap();
        assert_eq!(
            d.computed_user_account_control(&expired).unwrap() & 0x80_0000,
            0x80_0000
        );
        let escaped = d.get(&m.escaped_dns[0]).unwrap();
        assert!(escaped.dn().contains("\\,"));
        let never = d.get(&m.never_logged_on[0]).unwrap();
        assert_eq!(never.first_str("lastLogon").unwrap(), "0");
        assert!(never.get("lastLogonTimestamp").is_none());
        // Persons only: users + builtin + service accounts (computers excluded).
        let persons = d
            .find("(&(objectCategory=person)(objectClass=user))")
            .unwrap();
        assert_eq!(persons.len(), 60 + 3 + 3);
        let with_computers = d.find("(objectClass=user)").unwrap();
        assert_eq!(with_computers.len(), 60 + 3 + 3 + 2);
    }

    #[test]
    fn same_seed_same_directory() {
        let a = Company::generate(CompanyOptions {
            users: 30,
            ..CompanyOptions::default()
        });
        let b = Company::generate(CompanyOptions {
            users: 30,
            ..CompanyOptions::default()
        });
        let ea = a.find("(objectClass=*)").unwrap();
        let eb = b.find("(objectClass=*)").unwrap();
        assert_eq!(ea, eb);
        let c = Company::generate(CompanyOptions {
            users: 30,
            seed: 7,
            ..CompanyOptions::default()
        });
        assert_ne!(ea, c.find("(objectClass=*)").unwrap());
    }

    #[test]
    fn large_group_exceeds_max_val_range() {
        let company = Company::build(CompanyOptions {
            users: 1_600,
            ..CompanyOptions::default()
        });
        let big = company
            .directory
            .get(&company.manifest.large_group)
            .unwrap();
        assert_eq!(big.get("member").unwrap().len(), 1_600);
    }
}
