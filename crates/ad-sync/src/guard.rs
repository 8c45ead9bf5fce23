//! The delete guard: a full sync that would delete too much sends none of it.
//!
//! Full-sync deletes are "tracked objects this complete read did not return". That is right
//! when objects were deleted or moved out of scope, and catastrophic when the scope shrank
//! by accident: a narrower `base_dn` or filter, or a service account that lost read access
//! to an OU, makes tens of thousands of live accounts look gone. Deletions above the limit
//! are withheld (recorded in the store, shown by `status`) until an operator confirms the
//! exact count.

use serde::{Deserialize, Serialize};

/// Limits on the deletions of one full sync.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteGuard {
    /// Withhold every delete when more than this fraction of the tracked objects would be
    /// deleted (0.0–1.0; 1.0 turns the fraction check off). Default 0.10.
    pub max_delete_fraction: f64,
    /// Withhold every delete when more than this many objects would be deleted. Default
    /// none (only the fraction applies).
    pub max_deletes: Option<u64>,
}

impl Default for DeleteGuard {
    fn default() -> Self {
        DeleteGuard {
            max_delete_fraction: 0.10,
            max_deletes: None,
        }
    }
}

impl DeleteGuard {
    /// `None` when `found` deletions out of `tracked` objects may go; otherwise the sentence
    /// saying why they are withheld. `confirmed` is the operator's `--confirm-deletes N`:
    /// exactly `found` releases them.
    pub fn check(&self, found: u64, tracked: u64, confirmed: Option<u64>) -> Option<String> {
        if found == 0 {
            return None;
        }
        if confirmed == Some(found) {
            tracing::warn!("{found} deletes released by --confirm-deletes {found}");
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let fraction = found as f64 / tracked.max(1) as f64;
        let over_fraction = fraction > self.max_delete_fraction;
        let over_count = self.max_deletes.is_some_and(|max| found > max);
        let mismatch = confirmed.map(|n| {
            format!(" (--confirm-deletes {n} was given, but this sync found {found}, so nothing was released)")
        });
        if !over_fraction && !over_count && mismatch.is_none() {
            return None;
        }
        let limit = match self.max_deletes {
            Some(max) => format!(
                "max_delete_fraction = {} / max_deletes = {max}",
                self.max_delete_fraction
            ),
            None => format!("max_delete_fraction = {}", self.max_delete_fraction),
        };
        Some(format!(
            "{found} deletes withheld: this full sync did not read {found} of the {tracked} objects the platform holds ({:.1}%), more than the delete guard allows ({limit}){}; this usually means base_dn or a filter was narrowed, or the service account lost read access to an OU, not that the accounts are gone. Upserts were delivered and the checkpoint moved; see them with `status`, and if they really are gone run `sync --full --confirm-deletes {found}`",
            fraction * 100.0,
            mismatch.unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let guard = DeleteGuard::default();
        assert_eq!(guard.check(0, 100, None), None);
        assert_eq!(guard.check(10, 100, None), None, "10% is allowed");
        let reason = guard.check(11, 100, None).unwrap();
        assert!(reason.contains("11 deletes withheld"), "{reason}");
        assert!(reason.contains("--confirm-deletes 11"), "{reason}");
        assert_eq!(guard.check(11, 100, Some(11)), None, "exact confirmation");
        let reason = guard.check(11, 100, Some(12)).unwrap();
        assert!(reason.contains("nothing was released"), "{reason}");
        let counted = DeleteGuard {
            max_delete_fraction: 1.0,
            max_deletes: Some(5),
        };
        assert_eq!(counted.check(5, 6, None), None);
        assert!(counted.check(6, 6, None).is_some());
    }
}
