//! Where a sync stopped: which DC, which database of it, and which USN.

use ad_model::Guid;
use serde::{Deserialize, Serialize};

/// The state a delta sync starts from (Microsoft's uSNChanged algorithm).
///
/// `usn` is the DC's `highestCommittedUSN` read **before** the run that produced this
/// checkpoint started (H0 for a full snapshot, H1 for a delta), never the highest
/// `uSNChanged` seen: a change committed while the run was reading is then read again next
/// time rather than lost. Store it atomically with what was delivered, and only after the run
/// finished successfully.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// `dnsHostName` of the DC that was read (USNs are per DC).
    pub dc_host: String,
    /// `invocationId` of that DC's database: a restore from backup changes it.
    pub invocation_id: Guid,
    /// `highestCommittedUSN` when the run started.
    pub usn: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let cp = Checkpoint {
            dc_host: "dc1.corp.example.test".into(),
            invocation_id: "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap(),
            usn: 6127,
        };
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(
            json,
            r#"{"dc_host":"dc1.corp.example.test","invocation_id":"6f9619ff-8b86-d011-b42d-00c04fc964ff","usn":6127}"#
        );
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
    }
}
