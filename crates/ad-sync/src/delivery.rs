//! Delivery: batches sent in tasks of their own, settled in order, poison records isolated.
//!
//! Each batch's request runs to completion in its own Tokio task, whatever the reader is
//! doing: a slow stretch of reading can no longer leave an accepted request unpolled until
//! its timeout fires. The reader applies back-pressure by waiting for the *oldest* batch when
//! `concurrency` batches are in flight. Acknowledgements are handed back in the order the
//! batches were sent, so the store records them in order.
//!
//! A batch the platform refuses for what is *in* it (a non-retryable 4xx other than
//! 401/403/404/405/410) is split in halves and each half sent again, down to single records,
//! so one record the platform will never accept is quarantined instead of blocking the
//! cycle and every cycle after it. A refusal of the endpoint itself (wrong URL, method,
//! credentials) still fails the cycle, and so does (in the engine) a platform that refused
//! every one of the first records it was sent.

use std::collections::VecDeque;
use std::sync::Arc;

use asset_sink::{Ack, Batch, Change, Sink, SinkError, SyncInfo};
use tokio::task::JoinHandle;

use crate::observer::Delivered;
use crate::report::CycleError;
use crate::store::{SentObject, Store};
use ad_model::{Guid, ObjectKind};
use chrono::Utc;

/// What to record once a change is acknowledged.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// An upsert: the object's new hash and members.
    Upsert(SentObject),
    /// A delete of this object.
    Delete(Guid),
}

/// A change with what to record when it is acknowledged.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) change: Change,
    pub(crate) record: Record,
    /// The records of the users a group change carries inside it (`affected_users`, for
    /// sinks that need them): the platform holds them once it accepts the change, so they
    /// are marked in doubt and recorded with it — one record of what the platform has,
    /// whichever way an object reached it.
    pub(crate) carried: Vec<SentObject>,
}

/// A record the platform refused on its own.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) change: Change,
    pub(crate) record: Record,
    pub(crate) reason: String,
}

/// What a settled batch did.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Records of accepted changes, to store.
    pub(crate) accepted: Vec<Record>,
    /// Records the platform refused, to quarantine.
    pub(crate) refused: Vec<Refused>,
    /// The platform's acknowledgements (one per request that succeeded).
    pub(crate) acks: Vec<Ack>,
    /// What it delivered, for observers.
    pub(crate) delivered: Delivered,
}

/// Aborts the task when dropped: an abandoned cycle leaves no request behind.
#[derive(Debug)]
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Batches in flight, oldest first.
#[derive(Debug)]
pub(crate) struct Delivery {
    sink: Arc<dyn Sink>,
    sync: SyncInfo,
    batch_size: usize,
    concurrency: usize,
    next_id: u64,
    current: Vec<Pending>,
    in_flight: VecDeque<AbortOnDrop<Result<Settled, SinkError>>>,
}

impl Delivery {
    pub(crate) fn new(
        sink: Arc<dyn Sink>,
        sync: SyncInfo,
        batch_size: usize,
        concurrency: usize,
    ) -> Delivery {
        let batch_size = batch_size.clamp(1, sink.max_batch_size().max(1));
        Delivery {
            sink,
            sync,
            batch_size,
            concurrency: concurrency.max(1),
            next_id: 0,
            current: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// Add a change. Returns the settled batches that had to be waited for (back-pressure).
    /// `store` and `cycle`: where a batch's objects are marked in doubt before it is sent.
    pub(crate) async fn push(
        &mut self,
        pending: Pending,
        store: &mut Store,
        cycle: i64,
    ) -> Result<Vec<Settled>, CycleError> {
        self.current.push(pending);
        let mut settled = Vec::new();
        if self.current.len() >= self.batch_size {
            self.dispatch(store, cycle)?;
            while self.in_flight.len() >= self.concurrency {
                if let Some(done) = self.settle_oldest().await? {
                    settled.push(done);
                }
            }
        }
        Ok(settled)
    }

    /// Send the partial batch and wait for every batch in flight, oldest first.
    pub(crate) async fn drain(
        &mut self,
        store: &mut Store,
        cycle: i64,
    ) -> Result<Vec<Settled>, CycleError> {
        self.dispatch(store, cycle)?;
        let mut settled = Vec::new();
        while let Some(done) = self.settle_oldest().await? {
            settled.push(done);
        }
        Ok(settled)
    }

    fn dispatch(&mut self, store: &mut Store, cycle: i64) -> Result<(), CycleError> {
        if self.current.is_empty() {
            return Ok(());
        }
        let objects: Vec<&SentObject> = self
            .current
            .iter()
            .flat_map(|p| {
                let own = match &p.record {
                    Record::Upsert(object) => Some(object),
                    Record::Delete(_) => None,
                };
                own.into_iter().chain(p.carried.iter())
            })
            .collect();
        store.mark_in_doubt(cycle, &objects, Utc::now())?;
        let deletes: Vec<Guid> = self
            .current
            .iter()
            .filter_map(|p| match &p.record {
                Record::Delete(guid) => Some(*guid),
                Record::Upsert(_) => None,
            })
            .collect();
        if !deletes.is_empty() {
            store.mark_deletes_in_doubt(&deletes)?;
        }
        let pending = std::mem::take(&mut self.current);
        self.next_id += 1;
        let id = self.next_id;
        let sink = Arc::clone(&self.sink);
        let sync = self.sync;
        self.in_flight
            .push_back(AbortOnDrop(tokio::spawn(async move {
                send_isolating(sink.as_ref(), sync, id, pending).await
            })));
        Ok(())
    }

    async fn settle_oldest(&mut self) -> Result<Option<Settled>, CycleError> {
        let Some(mut task) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        match (&mut task.0).await {
            Ok(result) => Ok(Some(result?)),
            Err(join) => Err(CycleError::Sink(SinkError::Transport {
                sink: self.sink.name(),
                host: String::new(),
                detail: format!(
                    "the delivery task ended abnormally ({join}); nothing of its batch is recorded"
                ),
            })),
        }
    }
}

/// True when a rejection is about the endpoint, not the records: bisecting cannot help.
fn endpoint_refused(error: &SinkError) -> bool {
    matches!(
        error,
        SinkError::Rejected {
            status: 404 | 405 | 410,
            ..
        }
    )
}

/// Send `pending` as batch `id`; on a record-level rejection, bisect down to the records the
/// platform refuses. Fails when the endpoint itself refused or on any other error. (A
/// platform that refuses *everything* is caught by the cycle, which sees all its batches.)
async fn send_isolating(
    sink: &dyn Sink,
    sync: SyncInfo,
    id: u64,
    pending: Vec<Pending>,
) -> Result<Settled, SinkError> {
    let started = std::time::Instant::now();
    let mut settled = Settled::default();
    // Work list of sub-batches, in order.
    let mut work: VecDeque<Vec<Pending>> = VecDeque::from([pending]);
    while let Some(part) = work.pop_front() {
        // The changes move into the batch and back out of it (no copy of every record).
        let (changes, records): (Vec<Change>, Vec<(Record, Vec<SentObject>)>) = part
            .into_iter()
            .map(|p| (p.change, (p.record, p.carried)))
            .unzip();
        let batch = Batch { id, sync, changes };
        let result = sink.send(&batch).await;
        let part: Vec<Pending> = batch
            .changes
            .into_iter()
            .zip(records)
            .map(|(change, (record, carried))| Pending {
                change,
                record,
                carried,
            })
            .collect();
        match result {
            Ok(ack) => {
                settled.acks.push(ack);
                for p in &part {
                    let d = &mut settled.delivered;
                    let counter = match (&p.change, p.change.kind()) {
                        (Change::Delete(_), ObjectKind::User) => &mut d.users_deleted,
                        (Change::Delete(_), ObjectKind::Group) => &mut d.groups_deleted,
                        (_, ObjectKind::User) => &mut d.users_upserted,
                        (_, ObjectKind::Group) => &mut d.groups_upserted,
                    };
                    *counter += 1;
                }
                for p in part {
                    settled.accepted.push(p.record);
                    settled
                        .accepted
                        .extend(p.carried.into_iter().map(Record::Upsert));
                }
            }
            Err(error @ SinkError::Rejected { .. }) if !endpoint_refused(&error) => {
                if part.len() == 1 {
                    settled.delivered.refused += 1;
                    let reason = error.to_string();
                    // The users it carried stay in doubt: the next cycle re-reads them.
                    settled.refused.extend(part.into_iter().map(|p| Refused {
                        change: p.change,
                        record: p.record,
                        reason: reason.clone(),
                    }));
                } else {
                    let mut left = part;
                    let right = left.split_off(left.len() / 2);
                    work.push_front(right);
                    work.push_front(left);
                }
            }
            Err(error) => return Err(error),
        }
    }
    settled.delivered.duration = started.elapsed();
    Ok(settled)
}
