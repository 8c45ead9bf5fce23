//! Helpers shared by the integration tests.

#![allow(dead_code)]

use ad_model::{Decoded, Deleted, Group, Guid, User};
use ad_source::{Counters, Source, SourceError, SourceEvent, SyncRun, SyncSummary};

/// A `SourceEvent::Skipped`.
#[derive(Debug, Clone)]
pub struct Skip {
    pub dn: String,
    pub guid: Option<Guid>,
    pub reason: String,
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Collected {
    pub users: Vec<Decoded<User>>,
    pub groups: Vec<Decoded<Group>>,
    pub deleted: Vec<Deleted>,
    pub skipped: Vec<Skip>,
    pub warnings: Vec<String>,
}

impl Collected {
    pub fn user(&self, sam: &str) -> &User {
        &self
            .users
            .iter()
            .find(|u| u.record.sam_account_name.as_deref() == Some(sam))
            .unwrap_or_else(|| panic!("user {sam} not read"))
            .record
    }

    pub fn group(&self, name: &str) -> &Group {
        &self
            .groups
            .iter()
            .find(|g| g.record.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("group {name} not read"))
            .record
    }
}

impl Collected {
    pub fn add(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::User(u) => self.users.push(u),
            SourceEvent::Group(g) => self.groups.push(g),
            SourceEvent::Deleted(d) => self.deleted.push(d),
            SourceEvent::Skipped { dn, guid, reason } => {
                self.skipped.push(Skip { dn, guid, reason })
            }
            SourceEvent::Warning { message } => self.warnings.push(message),
        }
    }

    pub fn of(events: Vec<SourceEvent>) -> Collected {
        let mut c = Collected::default();
        for event in events {
            c.add(event);
        }
        c
    }
}

pub async fn drain(mut run: SyncRun) -> (Collected, Result<SyncSummary, SourceError>) {
    let mut c = Collected::default();
    while let Some(event) = run.next_event().await {
        c.add(event);
    }
    (c, run.finish().await)
}

pub async fn full(source: &Source) -> (Collected, SyncSummary) {
    let run = source.full_snapshot().await.expect("full snapshot starts");
    let (c, summary) = drain(run).await;
    (c, summary.expect("full snapshot finishes"))
}

pub fn no_duplicates(c: &Collected) {
    let mut guids: Vec<_> = c.users.iter().map(|u| u.record.object_guid).collect();
    guids.extend(c.groups.iter().map(|g| g.record.object_guid));
    let n = guids.len();
    guids.sort();
    guids.dedup();
    assert_eq!(guids.len(), n, "an entry was emitted twice");
}

pub fn counters_consistent(c: &Collected, counters: &Counters) {
    assert_eq!(counters.users, c.users.len() as u64);
    assert_eq!(counters.groups, c.groups.len() as u64);
    assert_eq!(counters.deleted, c.deleted.len() as u64);
    assert_eq!(counters.skipped, c.skipped.len() as u64);
}
