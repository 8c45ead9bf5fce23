//! Account status: one answer from `userAccountControl`, the computed flags, `accountExpires`,
//! `lockoutTime` and `pwdLastSet`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::PwdLastSet;
use crate::uac::UserAccountControl;

/// The single status an inventory shows for an account.
///
/// Several conditions can hold at once; the status is the first that holds in this
/// **precedence** (strongest reason a logon fails first):
///
/// 1. `disabled` — `ACCOUNTDISABLE`: an administrator turned the account off.
/// 2. `expired` — `accountExpires` is in the past.
/// 3. `locked_out` — `LOCKOUT` in `msDS-User-Account-Control-Computed` (see [`AccountState`]).
/// 4. `password_expired` — `PASSWORD_EXPIRED` in the computed flags, not caused by (5).
/// 5. `must_change_password` — `pwdLastSet = 0` without `DONT_EXPIRE_PASSWORD`.
/// 6. `active` — none of the above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Usable.
    Active,
    /// Disabled by an administrator.
    Disabled,
    /// Past its `accountExpires`.
    Expired,
    /// Locked out after bad password attempts.
    LockedOut,
    /// The password has expired.
    PasswordExpired,
    /// The user must set a new password at next logon.
    MustChangePassword,
}

impl AccountStatus {
    /// The snake_case name used in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
            AccountStatus::Expired => "expired",
            AccountStatus::LockedOut => "locked_out",
            AccountStatus::PasswordExpired => "password_expired",
            AccountStatus::MustChangePassword => "must_change_password",
        }
    }
}

/// Every condition, and the [`AccountStatus`] chosen from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// The status by precedence.
    pub status: AccountStatus,
    /// `ACCOUNTDISABLE` is set.
    pub disabled: bool,
    /// `accountExpires` is set and not in the future.
    pub expired: bool,
    /// Locked out. From `msDS-User-Account-Control-Computed` when it was read (exact: it
    /// accounts for the lockout duration); without it, `lockoutTime` being set (conservative:
    /// may still say locked after the lockout duration elapsed).
    pub locked_out: bool,
    /// `PASSWORD_EXPIRED` in the computed flags (or in `userAccountControl`), excluding the
    /// must-change case.
    pub password_expired: bool,
    /// `pwdLastSet = 0` and the password is allowed to expire.
    pub must_change_password: bool,
    /// `DONT_EXPIRE_PASSWORD` is set.
    pub password_never_expires: bool,
    /// `PASSWD_NOTREQD` is set: the account may have an empty password.
    pub password_not_required: bool,
}

/// The inputs of [`AccountState::evaluate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountInputs {
    /// `userAccountControl`.
    pub uac: UserAccountControl,
    /// `msDS-User-Account-Control-Computed`, when read.
    pub computed: Option<UserAccountControl>,
    /// `accountExpires` (`None` = never).
    pub account_expires: Option<DateTime<Utc>>,
    /// `lockoutTime` (`None` = 0 / absent).
    pub lockout_time: Option<DateTime<Utc>>,
    /// `pwdLastSet`.
    pub pwd_last_set: Option<PwdLastSet>,
}

impl AccountState {
    /// Evaluate at instant `now` (expiry depends on it).
    pub fn evaluate(inputs: &AccountInputs, now: DateTime<Utc>) -> Self {
        let uac = inputs.uac;
        let disabled = uac.contains(UserAccountControl::ACCOUNTDISABLE);
        let expired = inputs.account_expires.is_some_and(|at| at <= now);
        let locked_out = match inputs.computed {
            Some(computed) => computed.contains(UserAccountControl::LOCKOUT),
            None => uac.contains(UserAccountControl::LOCKOUT) || inputs.lockout_time.is_some(),
        };
        let password_never_expires = uac.contains(UserAccountControl::DONT_EXPIRE_PASSWORD);
        let must_change_password =
            inputs.pwd_last_set == Some(PwdLastSet::MustChange) && !password_never_expires;
        let expired_bit = inputs
            .computed
            .unwrap_or(uac)
            .contains(UserAccountControl::PASSWORD_EXPIRED);
        let password_expired = expired_bit && !must_change_password;
        let status = if disabled {
            AccountStatus::Disabled
        } else if expired {
            AccountStatus::Expired
        } else if locked_out {
            AccountStatus::LockedOut
        } else if password_expired {
            AccountStatus::PasswordExpired
        } else if must_change_password {
            AccountStatus::MustChangePassword
        } else {
            AccountStatus::Active
        };
        AccountState {
            status,
            disabled,
            expired,
            locked_out,
            password_expired,
            must_change_password,
            password_never_expires,
            password_not_required: uac.contains(UserAccountControl::PASSWD_NOTREQD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn status(inputs: AccountInputs) -> AccountStatus {
        AccountState::evaluate(&inputs, now()).status
    }

    const NORMAL: UserAccountControl = UserAccountControl::NORMAL_ACCOUNT;

    #[test]
    fn each_condition_alone() {
        let base = AccountInputs {
            uac: NORMAL,
            computed: Some(UserAccountControl::empty()),
            ..Default::default()
        };
        assert_eq!(status(base), AccountStatus::Active);
        assert_eq!(
            status(AccountInputs {
                uac: NORMAL | UserAccountControl::ACCOUNTDISABLE,
                ..base
            }),
            AccountStatus::Disabled
        );
        let past = now() - chrono::TimeDelta::days(1);
        let future = now() + chrono::TimeDelta::days(1);
        assert_eq!(
            status(AccountInputs {
                account_expires: Some(past),
                ..base
            }),
            AccountStatus::Expired
        );
        assert_eq!(
            status(AccountInputs {
                account_expires: Some(future),
                ..base
            }),
            AccountStatus::Active
        );
        assert_eq!(
            status(AccountInputs {
                computed: Some(UserAccountControl::LOCKOUT),
                ..base
            }),
            AccountStatus::LockedOut
        );
        assert_eq!(
            status(AccountInputs {
                computed: Some(UserAccountControl::PASSWORD_EXPIRED),
                ..base
            }),
            AccountStatus::PasswordExpired
        );
        assert_eq!(
            status(AccountInputs {
                pwd_last_set: Some(PwdLastSet::MustChange),
                ..base
            }),
            AccountStatus::MustChangePassword
        );
    }

    #[test]
    fn stale_uac_lockout_bit_is_ignored_when_computed_was_read() {
        // lockoutTime still set after the lockout duration: the computed flag says unlocked.
        let inputs = AccountInputs {
            uac: NORMAL | UserAccountControl::LOCKOUT,
            computed: Some(UserAccountControl::empty()),
            lockout_time: Some(now()),
            ..Default::default()
        };
        assert_eq!(status(inputs), AccountStatus::Active);
        // Without the computed attribute, lockoutTime is taken as locked (conservative).
        assert_eq!(
            status(AccountInputs {
                computed: None,
                ..inputs
            }),
            AccountStatus::LockedOut
        );
    }

    #[test]
    fn must_change_is_not_reported_as_password_expired() {
        // AD sets PASSWORD_EXPIRED in the computed flags when pwdLastSet = 0.
        let inputs = AccountInputs {
            uac: NORMAL,
            computed: Some(UserAccountControl::PASSWORD_EXPIRED),
            pwd_last_set: Some(PwdLastSet::MustChange),
            ..Default::default()
        };
        let state = AccountState::evaluate(&inputs, now());
        assert_eq!(state.status, AccountStatus::MustChangePassword);
        assert!(!state.password_expired);
        // DONT_EXPIRE_PASSWORD overrides pwdLastSet = 0 (as ADUC warns).
        let never = AccountInputs {
            uac: NORMAL | UserAccountControl::DONT_EXPIRE_PASSWORD,
            computed: Some(UserAccountControl::empty()),
            ..inputs
        };
        assert_eq!(status(never), AccountStatus::Active);
    }

    #[test]
    fn precedence_is_documented_order() {
        let all = AccountInputs {
            uac: NORMAL | UserAccountControl::ACCOUNTDISABLE,
            computed: Some(UserAccountControl::LOCKOUT | UserAccountControl::PASSWORD_EXPIRED),
            account_expires: Some(now()),
            lockout_time: Some(now()),
            pwd_last_set: None,
        };
        assert_eq!(status(all), AccountStatus::Disabled);
        let all = AccountInputs { uac: NORMAL, ..all };
        assert_eq!(status(all), AccountStatus::Expired);
        let all = AccountInputs {
            account_expires: None,
            ..all
        };
        assert_eq!(status(all), AccountStatus::LockedOut);
        let all = AccountInputs {
            computed: Some(UserAccountControl::PASSWORD_EXPIRED),
            ..all
        };
        assert_eq!(status(all), AccountStatus::PasswordExpired);
    }
}
