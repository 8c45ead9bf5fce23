//! What a sink is given (a [`Batch`] of [`Change`]s) and what it gives back (an [`Ack`]).

use ad_model::{Deleted, Group, Guid, ObjectKind, Sid, User};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to deliver.
// Users are the common case and the largest variant: boxing them would cost an allocation
// per user for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A user was created or changed (or is part of a full sync).
    UpsertUser(User),
    /// A group was created or changed.
    ///
    /// `affected_users` are the **current** records of the users whose resolved group list
    /// ([`User::groups`]) this change alters: members added or removed since the last run,
    /// and every member when the group was renamed (its name appears inside each member's
    /// record). The caller supplies them when the sink's
    /// [`Capabilities::needs_affected_users`](crate::Capabilities) is true (Sekoia, which has no
    /// group assets and learns about groups only through users); other sinks ignore them, so
    /// the caller may leave the vector empty for them.
    UpsertGroup {
        /// The group.
        group: Group,
        /// Users to re-send because their group list changed (see above).
        affected_users: Vec<User>,
    },
    /// An object was deleted (read from its tombstone, or found missing by a full sync).
    Delete(Deletion),
}

impl Change {
    /// User or group.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Change::UpsertUser(_) => ObjectKind::User,
            Change::UpsertGroup { .. } => ObjectKind::Group,
            Change::Delete(d) => d.kind,
        }
    }

    /// The object's GUID.
    pub fn object_guid(&self) -> Guid {
        match self {
            Change::UpsertUser(u) => u.object_guid,
            Change::UpsertGroup { group, .. } => group.object_guid,
            Change::Delete(d) => d.object_guid,
        }
    }
}

/// A deleted user or group: the keys a platform knows it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// `objectGUID`: the key the object was tracked by.
    pub object_guid: Guid,
    /// `objectSid`: the key most platforms know it by (Sekoia `user.uid`, Qualys
    /// `externalAssetId`). `None` if neither the tombstone nor the caller's state kept it.
    pub object_sid: Option<Sid>,
    /// User or group.
    pub kind: ObjectKind,
    /// The last DN the object had, or its tombstone DN, for logs and the outbox.
    pub dn: Option<String>,
    /// `sAMAccountName`, when known, for logs and the outbox.
    pub sam_account_name: Option<String>,
}

impl Deletion {
    /// A deletion from a tombstone. `None` when the tombstone does not say whether it was a
    /// user or a group: the caller then knows the kind from its own state and uses
    /// [`Deletion::from_deleted_as`].
    pub fn from_deleted(deleted: &Deleted) -> Option<Deletion> {
        deleted
            .kind
            .map(|kind| Deletion::from_deleted_as(deleted, kind))
    }

    /// A deletion from a tombstone, of a kind the caller knows.
    pub fn from_deleted_as(deleted: &Deleted, kind: ObjectKind) -> Deletion {
        Deletion {
            object_guid: deleted.object_guid,
            object_sid: deleted.object_sid,
            kind,
            dn: Some(deleted.dn.clone()),
            sam_account_name: deleted.sam_account_name.clone(),
        }
    }
}

/// Full or delta synchronisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every object is sent.
    Full,
    /// Only what changed since the last acknowledged run.
    Delta,
}

/// The sync cycle a batch belongs to. Every batch of one run carries the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInfo {
    /// Identifies the run (one per scheduled execution).
    pub cycle_id: Uuid,
    /// When the run started reading the directory. This is the `time` of Sekoia's OCSF
    /// events and the `at` of outbox lines: passing it in (instead of sinks reading a clock)
    /// makes payloads a pure function of the batch.
    pub at: DateTime<Utc>,
    /// Full or delta.
    pub mode: SyncMode,
}

/// A batch of changes, acknowledged as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Caller-assigned id, echoed in the [`Ack`] and in error messages.
    pub id: u64,
    /// The run this batch belongs to.
    pub sync: SyncInfo,
    /// The changes, in order. Keep at most [`Sink::max_batch_size`](crate::Sink) of them;
    /// a larger batch is still delivered (split into several requests) but acknowledged only
    /// when every request succeeded.
    pub changes: Vec<Change>,
}

/// Why some changes of an accepted batch were not delivered, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRepresentable {
    /// How many changes.
    pub count: usize,
    /// Which kind of change (`delete`, `group`, ...).
    pub what: &'static str,
    /// Why the platform cannot represent them, in a sentence.
    pub reason: &'static str,
}

/// The platform accepted a batch.
///
/// Returned only after every request of the batch was accepted (HTTP 200 / 2xx) or, for the
/// outbox, after the lines were written and `fsync`ed. Changes the platform cannot represent
/// are counted in `not_representable`, never silently dropped: the caller logs them and may
/// still advance its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    /// The batch's id.
    pub batch_id: u64,
    /// Changes delivered.
    pub accepted: usize,
    /// Changes that were not delivered because the platform has no way to express them.
    pub not_representable: Vec<NotRepresentable>,
    /// Items actually sent (Sekoia: users, including re-sent members of changed groups).
    pub items_sent: usize,
    /// HTTP requests (or outbox writes) it took.
    pub requests: usize,
    /// Platform-side processing ids (Sekoia `task_id`), when the platform returns them.
    pub task_ids: Vec<String>,
}

impl Ack {
    /// Total count of changes that were not representable.
    pub fn not_representable_count(&self) -> usize {
        self.not_representable.iter().map(|n| n.count).sum()
    }
}
