//! The rootDSE and the facts about the DC a sync depends on: its name, its database identity
//! (`invocationId` of the NTDS Settings object named by `dsServiceName`), its current USN,
//! the domain SID and the server's page-size limit.

use ad_model::{Guid, RawEntry, Sid};
use serde::Serialize;

use crate::ber;
use crate::connection::{Connection, op_error};
use crate::error::{SourceError, search_reason};

/// Paged results control (RFC 2696).
pub const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";
/// Show Deleted control (tombstones).
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// What the rootDSE and the DC's server objects say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootDse {
    /// `dnsHostName`: the DC's FQDN (the checkpoint pins it).
    pub dns_host_name: String,
    /// `defaultNamingContext`: the domain's DN.
    pub default_naming_context: String,
    /// `configurationNamingContext`, when present.
    pub configuration_naming_context: Option<String>,
    /// `highestCommittedUSN` at the time of reading.
    pub highest_committed_usn: u64,
    /// `dsServiceName`: the DN of the DC's NTDS Settings object.
    pub ds_service_name: String,
    /// `invocationId` of that object: changes when the DC's database is restored.
    pub invocation_id: Guid,
    /// `supportedControl` OIDs.
    pub supported_controls: Vec<String>,
    /// The domain's SID (`objectSid` of the domain head), when readable.
    pub domain_sid: Option<Sid>,
    /// `MaxPageSize` from the default query policy, when readable.
    pub max_page_size: Option<u32>,
    /// `currentTime`: the DC's clock when the rootDSE was read. The DC judges lockout and
    /// password expiry (`msDS-User-Account-Control-Computed`) by its own clock, so time
    /// windows are taken on it too: a host clock ahead of or behind the DC's cannot hide a
    /// change. `None` when the DC does not return it (then the host's clock is used).
    pub current_time: Option<chrono::DateTime<chrono::Utc>>,
}

impl RootDse {
    /// Whether the DC announced a control.
    pub fn supports(&self, oid: &str) -> bool {
        self.supported_controls.iter().any(|c| c == oid)
    }
}

/// AD's USNs are signed 64-bit (LONGLONG): a larger one is not an AD USN, and a checkpoint at
/// it would make every later delta search for changes past anything the DC can write.
fn check_usn(host: &str, usn: u64) -> Result<(), SourceError> {
    if i64::try_from(usn).is_ok() {
        return Ok(());
    }
    Err(SourceError::RootDse {
        host: host.to_owned(),
        message: format!(
            "highestCommittedUSN {usn} is larger than any Active Directory USN can be (2^63 - 1); the server is broken or not an AD domain controller"
        ),
    })
}

/// A base-scope read of one entry (no paging), panic-free.
pub(crate) async fn read_base(
    conn: &Connection,
    dn: &str,
    filter: &str,
    attrs: &[&str],
) -> Result<Option<RawEntry>, SourceError> {
    read_one(conn, dn, ldap3::Scope::Base, filter, attrs).await
}

/// The first entry a small unpaged search finds (a size limit of 1 is set), panic-free.
pub(crate) async fn read_one(
    conn: &Connection,
    dn: &str,
    scope: ldap3::Scope,
    filter: &str,
    attrs: &[&str],
) -> Result<Option<RawEntry>, SourceError> {
    let mut ldap = conn.op();
    if !matches!(scope, ldap3::Scope::Base) {
        ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(1));
    }
    let operation = if dn.is_empty() {
        "the rootDSE read".to_owned()
    } else {
        format!("the read of {dn}")
    };
    let mut stream = ldap
        .streaming_search(dn, scope, filter, attrs.to_vec())
        .await
        .map_err(|e| op_error(e, conn.host(), &operation, conn.op_timeout))?;
    let mut found = None;
    loop {
        match stream.next().await {
            Ok(Some(item)) if item.is_ref() || item.is_intermediate() => continue,
            Ok(Some(item)) => {
                if found.is_none() {
                    found = ber::entry_from_tag(item.0).ok();
                }
            }
            Ok(None) => break,
            Err(e) => return Err(op_error(e, conn.host(), &operation, conn.op_timeout)),
        }
    }
    let result = stream.finish().await;
    match result.rc {
        0 | 4 => Ok(found),
        32 => Ok(None),
        rc => Err(SourceError::Search {
            host: conn.host().to_owned(),
            base: dn.to_owned(),
            filter: filter.to_owned(),
            result_code: rc,
            reason: search_reason(rc, &result.text),
        }),
    }
}

fn text(entry: &RawEntry, name: &str) -> Option<String> {
    entry
        .first(name)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// Read the rootDSE, the invocationId, the domain SID and MaxPageSize.
pub(crate) async fn read(conn: &Connection) -> Result<RootDse, SourceError> {
    let host = conn.host().to_owned();
    let missing = |attribute: &str| SourceError::RootDse {
        host: host.clone(),
        message: format!(
            "the rootDSE has no {attribute}; is this an Active Directory domain controller (not a global catalog port or another LDAP server)?"
        ),
    };
    let root = read_base(
        conn,
        "",
        "(objectClass=*)",
        &[
            "dnsHostName",
            "defaultNamingContext",
            "configurationNamingContext",
            "highestCommittedUSN",
            "dsServiceName",
            "supportedControl",
            "currentTime",
        ],
    )
    .await?
    .ok_or_else(|| missing("entry at all"))?;
    let dns_host_name = text(&root, "dnsHostName").ok_or_else(|| missing("dnsHostName"))?;
    let default_naming_context =
        text(&root, "defaultNamingContext").ok_or_else(|| missing("defaultNamingContext"))?;
    let highest_committed_usn = text(&root, "highestCommittedUSN")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| missing("numeric highestCommittedUSN"))?;
    check_usn(&host, highest_committed_usn)?;
    let ds_service_name = text(&root, "dsServiceName").ok_or_else(|| missing("dsServiceName"))?;
    let supported_controls = root
        .values("supportedControl")
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok().map(str::to_owned))
        .collect();
    let ntds = read_base(conn, &ds_service_name, "(objectClass=*)", &["invocationId"])
        .await?
        .ok_or_else(|| SourceError::RootDse {
            host: host.clone(),
            message: format!(
                "the DC's NTDS Settings object {ds_service_name} (dsServiceName) cannot be read; the account needs read access to it to track changes"
            ),
        })?;
    let invocation_id = ntds
        .first("invocationId")
        .and_then(|v| Guid::from_bytes(v).ok())
        .ok_or_else(|| SourceError::RootDse {
            host: host.clone(),
            message: format!(
                "{ds_service_name} has no readable 16-byte invocationId; it identifies the DC's database and is required for delta sync"
            ),
        })?;
    // Without the domain SID primary groups cannot be resolved from the index: a read cut
    // by the network fails (and is retried) rather than degrade every user's groups.
    let domain_sid = match read_base(
        conn,
        &default_naming_context,
        "(objectClass=*)",
        &["objectSid"],
    )
    .await
    {
        Ok(entry) => entry,
        Err(e) if e.is_transient() => return Err(e),
        Err(_) => None,
    }
    .and_then(|e| e.first("objectSid").and_then(|v| Sid::from_bytes(v).ok()));
    let configuration_naming_context = text(&root, "configurationNamingContext");
    let max_page_size = match &configuration_naming_context {
        Some(config_nc) => read_max_page_size(conn, config_nc).await,
        None => None,
    };
    let current_time = text(&root, "currentTime")
        .and_then(|v| ad_model::decode_generalized_time(v.trim()).ok().flatten());
    Ok(RootDse {
        current_time,
        dns_host_name,
        default_naming_context,
        configuration_naming_context,
        highest_committed_usn,
        ds_service_name,
        invocation_id,
        supported_controls,
        domain_sid,
        max_page_size,
    })
}

async fn read_max_page_size(conn: &Connection, config_nc: &str) -> Option<u32> {
    let dn = format!(
        "CN=Default Query Policy,CN=Query-Policies,CN=Directory Service,CN=Windows NT,CN=Services,{config_nc}"
    );
    let entry = read_base(conn, &dn, "(objectClass=*)", &["lDAPAdminLimits"])
        .await
        .ok()
        .flatten()?;
    parse_max_page_size(entry.values("lDAPAdminLimits"))
}

/// Find `MaxPageSize=N` among `lDAPAdminLimits` values.
pub(crate) fn parse_max_page_size(values: &[Vec<u8>]) -> Option<u32> {
    values.iter().find_map(|v| {
        let text = std::str::from_utf8(v).ok()?;
        let (key, value) = text.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("MaxPageSize") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usns_at_the_boundary() {
        assert!(check_usn("dc1", 0).is_ok());
        assert!(check_usn("dc1", i64::MAX as u64).is_ok());
        let refused = check_usn("dc1", i64::MAX as u64 + 1)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("9223372036854775808"), "{refused}");
        assert!(check_usn("dc1", u64::MAX).is_err());
    }

    #[test]
    fn max_page_size_from_admin_limits() {
        let values = vec![b"MaxPoolThreads=4".to_vec(), b"MaxPageSize=1000".to_vec()];
        assert_eq!(parse_max_page_size(&values), Some(1000));
        assert_eq!(parse_max_page_size(&[b"MaxPageSize=x".to_vec()]), None);
        assert_eq!(parse_max_page_size(&[]), None);
    }
}
