#!/usr/bin/env python3
"""Put one of the bugs the simulation must catch back into a copy of the tree (argv: root,
bug 1..14): issue 8's six (1..6), then issue 22's eight classes (7..14).

Used by scripts/sim-inject; each patch is the smallest change that restores the bug."""
import sys
root, bug = sys.argv[1], int(sys.argv[2])
src = root + "/crates/ad-sync/src/"

def patch(path, old, new, count=1):
    patch_in("ad-sync", path, old, new, count)

def patch_in(crate, path, old, new, count=1):
    p = root + "/crates/" + crate + "/src/" + path
    s = open(p).read()
    n = s.count(old)
    if n != count:
        sys.exit(f"bug {bug}: expected {count} occurrence(s) in {path}, found {n}: {old[:60]!r}")
    open(p, "w").write(s.replace(old, new))

if bug == 1:
    # Seen only when acknowledged, and deletes decided before the last batches are acknowledged.
    patch("engine.rs", """        if self.full() {
            self.unmarked.push(guid);""", """        if self.full() {
            let _ = guid;""")
    patch("engine.rs", """        if self.store.stored_hash(&user.object_guid)?.as_deref() == Some(hash.as_str()) {
            self.report.unchanged += 1;""", """        if self.store.stored_hash(&user.object_guid)?.as_deref() == Some(hash.as_str()) {
            self.report.unchanged += 1;
            if self.full() { self.unmarked.push(user.object_guid); }""")
    patch("engine.rs", """        if self.store.stored_hash(&group.object_guid)?.as_deref() == Some(hash.as_str()) {
            self.report.unchanged += 1;""", """        if self.store.stored_hash(&group.object_guid)?.as_deref() == Some(hash.as_str()) {
            self.report.unchanged += 1;
            if self.full() { self.unmarked.push(group.object_guid); }""")
    patch("engine.rs", """        // 4. Every upsert acknowledged before any delete is decided or sent.
        let settled = self.delivery.drain(self.store, self.id).await?;
        self.record(settled)?;
""", "")
elif bug == 2:
    # An incomplete read deletes what it did not return.
    patch("engine.rs", "        if !why_none.is_empty() {", "        if false && !why_none.is_empty() {")
elif bug == 3:
    # A record-level rejection fails the batch (no bisection, no quarantine).
    patch("delivery.rs", "if !endpoint_refused(&error) =>", "if false && !endpoint_refused(&error) =>")
elif bug == 4:
    # Skipped entries are not remembered.
    patch("engine.rs", "        self.skipped.push(SkippedRow {", "        drop(SkippedRow {")
elif bug == 5:
    # No search for time-driven status changes.
    patch("engine.rs", """    async fn time_driven(&mut self) -> Result<(), CycleError> {
""", """    async fn time_driven(&mut self) -> Result<(), CycleError> {
        if true { return Ok(()); }
""")
elif bug == 6:
    # A sent request is polled once (written, its timeout started), then left unpolled until
    # the pipeline settles it.
    patch("delivery.rs", """    in_flight: VecDeque<AbortOnDrop<Result<Settled, SinkError>>>,
}""", """    in_flight: VecDeque<AbortOnDrop<Result<Settled, SinkError>>>,
    gates: VecDeque<Arc<tokio::sync::Notify>>,
}""")
    patch("delivery.rs", """            in_flight: VecDeque::new(),
        }""", """            in_flight: VecDeque::new(),
            gates: VecDeque::new(),
        }""")
    patch("delivery.rs", """        self.in_flight
            .push_back(AbortOnDrop(tokio::spawn(async move {
                send_isolating(sink.as_ref(), sync, id, pending).await
            })));""", """        let gate = Arc::new(tokio::sync::Notify::new());
        self.gates.push_back(Arc::clone(&gate));
        self.in_flight
            .push_back(AbortOnDrop(tokio::spawn(async move {
                let mut request = Box::pin(send_isolating(sink.as_ref(), sync, id, pending));
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(request.as_mut().poll(cx))
                })
                .await;
                if let std::task::Poll::Ready(result) = first {
                    return result;
                }
                gate.notified().await;
                request.await
            })));""")
    patch("delivery.rs", """        let Some(mut task) = self.in_flight.pop_front() else {
            return Ok(None);
        };""", """        let Some(mut task) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        if let Some(gate) = self.gates.pop_front() {
            gate.notify_one();
        }""")
# Issue 22: bugs 7..14 are its classes 1..8, each fix taken back alone.
elif bug == 7:
    # Class 1: a renamed or moved OU is not noticed (no full sync is brought forward).
    patch_in("ad-source", "sync.rs", """        (ad_model::dn::canonical(old) != ad_model::dn::canonical(dn)
            && scope.touched_by_move(old, dn))""", """        (false && ad_model::dn::canonical(old) != ad_model::dn::canonical(dn)
            && scope.touched_by_move(old, dn))""")
elif bug == 8:
    # Class 2: an object found outside the scope is not deleted.
    patch("engine.rs", """            if let Some(row) = self.store.object(&outside.guid)? {
                tracing::info!""", """            if let Some(row) = self.store.object(&outside.guid)?.filter(|_| false) {
                tracing::info!""")
elif bug == 9:
    # Class 3: a group outside the scope re-reads nobody.
    patch("engine.rs", """            if outside.kind == ObjectKind::Group {
                let key""", """            if false && outside.kind == ObjectKind::Group {
                let key""")
elif bug == 10:
    # Class 4: a deleted group's members are not re-read.
    patch("engine.rs", """        if row.kind != ObjectKind::Group {
            return Ok(BTreeSet::new());""", """        if true || row.kind != ObjectKind::Group {
            return Ok(BTreeSet::new());""")
elif bug == 11:
    # Class 5: users sent inside a group change are not recorded.
    patch("delivery.rs", """                    settled
                        .accepted
                        .extend(p.carried.into_iter().map(Record::Upsert));""", """                    drop(p.carried);""")
elif bug == 12:
    # Class 6: scope checks compare raw strings.
    patch_in("ad-source", "sync.rs", """pub(crate) fn within(dn: &str, base: &str) -> bool {
    ad_model::dn::is_within(dn, base)
}""", """pub(crate) fn within(dn: &str, base: &str) -> bool {
    let dn = dn.to_ascii_lowercase();
    let base = base.to_ascii_lowercase();
    dn == base || dn.ends_with(&format!(",{base}"))
}""")
elif bug == 13:
    # Class 7: time windows and decoding on the host's clock, not the DC's.
    patch("engine.rs", "let read_at = pinned.root.current_time.unwrap_or(read_at);", "")
    patch_in("ad-source", "session.rs", "self.root.current_time.unwrap_or(clock)", "clock")
elif bug == 14:
    # Class 8: a delta after cycles on another DC does not re-read what they sent.
    patch("engine.rs", """        let (Some(since), Some(position)) = (self.mark_at, &self.position) else {""", """        let (Some(since), Some(position), false) = (self.mark_at, &self.position, true) else {""")
else:
    sys.exit("bug is 1..14")
print(f"bug {bug} injected")
