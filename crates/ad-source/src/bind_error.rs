//! Why a bind failed, as a sentence an administrator can act on.
//!
//! AD answers a failed simple bind with result 49 (invalidCredentials) and a diagnostic such
//! as `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563`.
//! The hex after `data` is the Windows error that says *why*; Samba sends the same format.

use serde::Serialize;

/// What kind of bind failure this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindFailureKind {
    /// `data 52e`: wrong password (or unknown user on some DCs).
    BadCredentials,
    /// `data 525`: no such user.
    NoSuchUser,
    /// `data 530`: not permitted to log on at this time.
    LogonHours,
    /// `data 531`: not permitted to log on from this workstation.
    Workstation,
    /// `data 532`: password expired.
    PasswordExpired,
    /// `data 533`: account disabled.
    AccountDisabled,
    /// `data 701`: account expired.
    AccountExpired,
    /// `data 773`: the user must reset the password.
    MustResetPassword,
    /// `data 775`: account locked out.
    AccountLocked,
    /// Result 49 without a known data code.
    InvalidCredentials,
    /// Result 8 strongerAuthRequired (or 13 confidentialityRequired): signing / TLS required.
    StrongerAuthRequired,
    /// Result 48 / 53: anonymous or unauthenticated bind refused, or empty password.
    Refused,
    /// Any other result code.
    Other,
}

/// A failed bind: the kind, the raw code, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindFailure {
    /// The kind of failure.
    pub kind: BindFailureKind,
    /// The LDAP result code (49, 8, …).
    pub result_code: u32,
    /// AD's `data` code (`52e`), when the diagnostic carried one.
    pub data_code: Option<String>,
    /// What happened and what to do, naming the account and the DC.
    pub sentence: String,
}

impl std::fmt::Display for BindFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sentence)
    }
}

/// Extract AD's `data XXX` code from a bind diagnostic (lowercase hex), if present.
pub fn data_code(diagnostic: &str) -> Option<String> {
    let lower = diagnostic.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some((_, after)) = rest.split_once("data ") {
        let code: String = after
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        if !code.is_empty() {
            return Some(code);
        }
        rest = after;
    }
    None
}

/// Turn a bind result into a sentence. `account` is the bind name as configured, `host` the DC.
pub fn explain(result_code: u32, diagnostic: &str, account: &str, host: &str) -> BindFailure {
    let code = data_code(diagnostic);
    let (kind, sentence) = match (result_code, code.as_deref()) {
        (49, Some("52e")) => (
            BindFailureKind::BadCredentials,
            format!(
                "The domain controller {host} rejected the password for {account} (AD data 52e: invalid credentials). Check the password, and that the account name is right: a UPN (user@domain), DOMAIN\\user or the full DN."
            ),
        ),
        (49, Some("525")) => (
            BindFailureKind::NoSuchUser,
            format!(
                "The domain controller {host} does not know the account {account} (AD data 525: user not found). Check the spelling, the domain suffix of the UPN, or use the account's full DN."
            ),
        ),
        (49, Some("530")) => (
            BindFailureKind::LogonHours,
            format!(
                "The account {account} may not log on at this time of day (AD data 530: logon hours restriction on {host}). Remove the logon-hours restriction from the service account."
            ),
        ),
        (49, Some("531")) => (
            BindFailureKind::Workstation,
            format!(
                "The account {account} may not log on from this machine (AD data 531: \"Log On To\" workstation restriction on {host}). Allow this host in the account's logon workstations, or clear the restriction."
            ),
        ),
        (49, Some("532")) => (
            BindFailureKind::PasswordExpired,
            format!(
                "The password of {account} has expired (AD data 532 on {host}). Set a new password, and consider \"Password never expires\" for this service account."
            ),
        ),
        (49, Some("533")) => (
            BindFailureKind::AccountDisabled,
            format!(
                "The account {account} is disabled (AD data 533 on {host}). Enable it in Active Directory Users and Computers."
            ),
        ),
        (49, Some("701")) => (
            BindFailureKind::AccountExpired,
            format!(
                "The account {account} has expired (AD data 701: accountExpires is in the past on {host}). Extend or clear the account's expiry date."
            ),
        ),
        (49, Some("773")) => (
            BindFailureKind::MustResetPassword,
            format!(
                "The account {account} must change its password before it can log on (AD data 773 on {host}: \"User must change password at next logon\"). Set a password and clear that option."
            ),
        ),
        (49, Some("775")) => (
            BindFailureKind::AccountLocked,
            format!(
                "The account {account} is locked out after too many bad passwords (AD data 775 on {host}). Unlock it, then check nothing else keeps using an old password."
            ),
        ),
        (49, other) => (
            BindFailureKind::InvalidCredentials,
            format!(
                "The domain controller {host} rejected the credentials of {account} (result 49 invalidCredentials{}). Check the account name and password.",
                other.map(|c| format!(", data {c}")).unwrap_or_default()
            ),
        ),
        (8 | 13, _) => (
            BindFailureKind::StrongerAuthRequired,
            format!(
                "The domain controller {host} refuses a simple bind on an unencrypted connection (result {result_code}: {}). Use LDAPS (ldaps://{host}) or StartTLS.",
                if result_code == 8 {
                    "strongerAuthRequired, LDAP signing is required"
                } else {
                    "confidentialityRequired"
                }
            ),
        ),
        (48 | 53, _) => (
            BindFailureKind::Refused,
            format!(
                "The domain controller {host} refused the bind of {account} (result {result_code}{}). An empty password is an anonymous bind, which AD refuses for reading; give the account's password.",
                diagnostic_suffix(diagnostic)
            ),
        ),
        (rc, _) => (
            BindFailureKind::Other,
            format!(
                "The bind of {account} to {host} failed with LDAP result {rc}{}.",
                diagnostic_suffix(diagnostic)
            ),
        ),
    };
    BindFailure {
        kind,
        result_code,
        data_code: code,
        sentence,
    }
}

fn diagnostic_suffix(diagnostic: &str) -> String {
    let trimmed = diagnostic.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

/// How the configured bind name is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindNameForm {
    /// `user@domain`.
    Upn,
    /// `DOMAIN\user`.
    DownLevel,
    /// `CN=…,DC=…`.
    Dn,
    /// Anything else (AD may still accept a bare sAMAccountName).
    Other,
}

/// Classify a bind name; all three forms are passed to AD unchanged.
pub fn bind_name_form(bind: &str) -> BindNameForm {
    let b = bind.trim();
    if b.contains('\\') && !b.contains('=') {
        BindNameForm::DownLevel
    } else if b.contains('=') {
        BindNameForm::Dn
    } else if b.contains('@') {
        BindNameForm::Upn
    } else {
        BindNameForm::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verbatim diagnostics: Windows Server 2019 and Samba 4.17.
    const WINDOWS_52E: &str =
        "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e, v4563\0";
    const SAMBA_775: &str =
        "80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 775, v1db1";

    #[test]
    fn extracts_data_codes() {
        assert_eq!(data_code(WINDOWS_52E).as_deref(), Some("52e"));
        assert_eq!(data_code(SAMBA_775).as_deref(), Some("775"));
        assert_eq!(data_code("no data here"), None);
        assert_eq!(data_code("metadata xyz, data 701,"), Some("701".to_owned()));
    }

    #[test]
    fn every_code_has_its_sentence() {
        let cases = [
            (
                "52e",
                BindFailureKind::BadCredentials,
                "rejected the password",
            ),
            (
                "525",
                BindFailureKind::NoSuchUser,
                "does not know the account",
            ),
            ("530", BindFailureKind::LogonHours, "time of day"),
            ("531", BindFailureKind::Workstation, "from this machine"),
            ("532", BindFailureKind::PasswordExpired, "password of"),
            ("533", BindFailureKind::AccountDisabled, "is disabled"),
            ("701", BindFailureKind::AccountExpired, "has expired"),
            (
                "773",
                BindFailureKind::MustResetPassword,
                "must change its password",
            ),
            ("775", BindFailureKind::AccountLocked, "locked out"),
        ];
        for (code, kind, words) in cases {
            let diag = format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
            );
            let f = explain(49, &diag, "svc@corp", "dc1");
            assert_eq!(f.kind, kind, "{code}");
            assert!(f.sentence.contains(words), "{code}: {}", f.sentence);
            assert!(
                f.sentence.contains("svc@corp") || code == "52e",
                "{}",
                f.sentence
            );
            assert!(f.sentence.contains("dc1"), "{}", f.sentence);
            assert_eq!(f.data_code.as_deref(), Some(code));
        }
    }

    #[test]
    fn stronger_auth_says_use_tls() {
        let f = explain(8, "BindSimple: Transport encryption required.", "a", "dc1");
        assert_eq!(f.kind, BindFailureKind::StrongerAuthRequired);
        assert!(f.sentence.contains("Use LDAPS"), "{}", f.sentence);
        assert!(f.sentence.contains("StartTLS"), "{}", f.sentence);
    }

    #[test]
    fn unknown_results_keep_the_diagnostic() {
        let f = explain(49, "weird", "a", "dc1");
        assert_eq!(f.kind, BindFailureKind::InvalidCredentials);
        let f = explain(80, "something odd\0", "a", "dc1");
        assert_eq!(f.kind, BindFailureKind::Other);
        assert!(f.sentence.ends_with("something odd."), "{}", f.sentence);
    }

    #[test]
    fn name_forms() {
        assert_eq!(bind_name_form("svc@corp.example.com"), BindNameForm::Upn);
        assert_eq!(bind_name_form("CORP\\svc"), BindNameForm::DownLevel);
        assert_eq!(bind_name_form("CN=svc,OU=x,DC=corp"), BindNameForm::Dn);
        assert_eq!(bind_name_form("CN=a\\,b,DC=corp"), BindNameForm::Dn);
        assert_eq!(bind_name_form("svc"), BindNameForm::Other);
    }
}
