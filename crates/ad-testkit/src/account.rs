//! Bind accounts and AD's bind failure diagnostics.

/// sAMAccountName of the default bind account (present in generated directories).
pub const SERVICE_ACCOUNT_NAME: &str = "svc-connector";
/// DN of the default bind account.
pub const SERVICE_ACCOUNT_DN: &str =
    "CN=svc-connector,OU=Service Accounts,DC=corp,DC=example,DC=test";
/// UPN of the default bind account.
pub const SERVICE_ACCOUNT_UPN: &str = "svc-connector@corp.example.test";
/// Password of the default bind account.
pub const SERVICE_ACCOUNT_PASSWORD: &str = "Connector-Passw0rd!";

/// Why AD refuses a bind whose password is right: the `data` code of the diagnostic
/// (`80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data <code>, v4563`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    /// `525`: user not found.
    NoSuchUser,
    /// `530`: not permitted to log on at this time.
    InvalidLogonHours,
    /// `531`: not permitted to log on at this workstation.
    InvalidWorkstation,
    /// `532`: password expired.
    PasswordExpired,
    /// `533`: account disabled.
    AccountDisabled,
    /// `701`: account expired.
    AccountExpired,
    /// `773`: user must reset password.
    MustResetPassword,
    /// `775`: account locked out.
    AccountLocked,
}

impl BindFailure {
    /// The hexadecimal `data` code AD reports.
    pub fn data_code(self) -> &'static str {
        match self {
            Self::NoSuchUser => "525",
            Self::InvalidLogonHours => "530",
            Self::InvalidWorkstation => "531",
            Self::PasswordExpired => "532",
            Self::AccountDisabled => "533",
            Self::AccountExpired => "701",
            Self::MustResetPassword => "773",
            Self::AccountLocked => "775",
        }
    }
}

/// The diagnostic message of an invalidCredentials (49) bind answer with `data` code `code`.
pub fn invalid_credentials_message(code: &str) -> String {
    format!(
        "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
    )
}

/// An account that may simple-bind. It is matched by DN (case-insensitive), by
/// userPrincipalName, or as `NETBIOS\sAMAccountName`.
#[derive(Clone, PartialEq, Eq)]
pub struct BindAccount {
    /// The account's DN.
    pub dn: String,
    /// Its userPrincipalName, when binds by UPN should work.
    pub user_principal_name: Option<String>,
    /// Its sAMAccountName, when `DOMAIN\name` binds should work.
    pub sam_account_name: Option<String>,
    /// The password.
    pub password: String,
    /// With the right password, fail anyway with this reason (e.g. disabled, locked).
    pub failure: Option<BindFailure>,
}

impl std::fmt::Debug for BindAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindAccount")
            .field("dn", &self.dn)
            .field("user_principal_name", &self.user_principal_name)
            .field("sam_account_name", &self.sam_account_name)
            .field("password", &"<redacted>")
            .field("failure", &self.failure)
            .finish()
    }
}

impl BindAccount {
    /// An account bindable by DN only.
    pub fn new(dn: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            user_principal_name: None,
            sam_account_name: None,
            password: password.into(),
            failure: None,
        }
    }

    /// Also bindable as this UPN.
    #[must_use]
    pub fn with_upn(mut self, upn: impl Into<String>) -> Self {
        self.user_principal_name = Some(upn.into());
        self
    }

    /// Also bindable as `NETBIOS\sam`.
    #[must_use]
    pub fn with_sam(mut self, sam: impl Into<String>) -> Self {
        self.sam_account_name = Some(sam.into());
        self
    }

    /// Fails with this reason even when the password is right.
    #[must_use]
    pub fn with_failure(mut self, failure: BindFailure) -> Self {
        self.failure = Some(failure);
        self
    }

    /// `svc-connector` with [`SERVICE_ACCOUNT_PASSWORD`], bindable by DN, UPN and `CORP\svc-connector`.
    pub fn service_account() -> Self {
        Self::new(SERVICE_ACCOUNT_DN, SERVICE_ACCOUNT_PASSWORD)
            .with_upn(SERVICE_ACCOUNT_UPN)
            .with_sam(SERVICE_ACCOUNT_NAME)
    }

    /// Whether a bind name designates this account.
    pub(crate) fn is_named(&self, name: &str, netbios: &str) -> bool {
        let name = name.trim();
        if crate::dn::normalize(name) == crate::dn::normalize(&self.dn) && name.contains('=') {
            return true;
        }
        if self
            .user_principal_name
            .as_deref()
            .is_some_and(|upn| upn.eq_ignore_ascii_case(name))
        {
            return true;
        }
        if let (Some(sam), Some((domain, user))) =
            (self.sam_account_name.as_deref(), name.split_once('\\'))
        {
            return domain.eq_ignore_ascii_case(netbios) && user.eq_ignore_ascii_case(sam);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let a = BindAccount::service_account();
        assert!(a.is_named(&SERVICE_ACCOUNT_DN.to_lowercase(), "CORP"));
        assert!(a.is_named("SVC-CONNECTOR@corp.example.test", "CORP"));
        assert!(a.is_named("corp\\svc-connector", "CORP"));
        assert!(!a.is_named("OTHER\\svc-connector", "CORP"));
        assert!(!a.is_named("svc-connector", "CORP"));
        assert!(!format!("{a:?}").contains(SERVICE_ACCOUNT_PASSWORD));
        assert_eq!(
            invalid_credentials_message(BindFailure::AccountLocked.data_code()),
            "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563"
        );
    }
}
