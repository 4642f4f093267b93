//! The replicated state machine on sled: openraft's `RaftStateMachine` around
//! `custos_model::State`, plus snapshots.
//!
//! The `State` lives in memory behind [`SharedState`] for the server to read; the `sm` tree
//! holds its records plus `_applied` (last applied log id) and `_membership`.
//!
//! **Apply is atomic but not flushed.** Each `apply` call writes the changes of all its
//! entries together with the new applied log id (and the membership when it changed) on the
//! one `sm` tree so that a crash keeps all of it or none of it (a redo record written first and
//! replayed at open, or one `sled::Batch` for large calls: `src/sm_writes.rs`), and the records
//! on disk always match the applied id stored beside them. Nothing is flushed. That is
//! safe because:
//! - every applied entry is in the Raft log, which is flushed before it is acknowledged, and
//!   sled recovers a prefix of its single write log (one page cache and log per `Db`), so a
//!   surviving applied id never refers to an entry that did not survive;
//! - `save_committed` stores the commit index, and openraft re-applies
//!   `(applied, committed]` from the log at start (`StorageHelper::get_initial_state`), so an
//!   applied id that lost its newest batches is caught up before the node serves; commit is
//!   saved before the entries are applied, so a recovered `committed` is never behind a
//!   recovered `_applied`;
//! - logs are purged only up to a snapshot, and storing a snapshot flushes the whole `Db`,
//!   which makes every earlier apply batch durable first; so the applied id on disk never falls
//!   behind the purge pointer (`open` checks this and refuses a store where it does).
//!
//! **Readers never wait for storage.** An apply call holds `apply_lock` throughout and the
//! state write lock only for step 1, `State::apply` of its entries in memory; step 2, encoding
//! and writing the changes with the applied id, runs with the state unlocked. So a reader can
//! see a committed entry's effect before it is in the tree (as it could before see it in the
//! tree before it was flushed: in both cases a crash replays it from the log). What reads the
//! tree starts from what the tree holds: audit readers from the stored head (set after step
//! 2), snapshots and backups from a view taken under `apply_lock`. ARCHITECTURE.md,
//! "Invariants", has the whole argument.
//!
//! **Snapshots** are files (`raft-snapshot/<n>.snap`, framed record by record with a count and
//! a checksum: `src/snapfile.rs`); the `snapshot` tree holds the current one's meta and file
//! name (`current_meta` + `current_file`, written in one batch and flushed after the file is
//! fsynced and renamed into place). Neither building, sending nor installing a snapshot holds
//! the audit trail in memory: a build streams the records from a consistent view into the
//! file, the server's peer network sends the file in chunks and the receiver writes them to an
//! unlinked file of its own ([`StateMachineStore::receiving_file`]), and an install reads the
//! frames back.
//!
//! Installing one is crash-safe: (0) the received data is checked whole (every frame decodes,
//! the count and checksum match) while it is copied into a snapshot file of this node, so bad
//! data is refused before anything changes, (1) the new meta and file name and an `installing`
//! marker are written and flushed, (2) the `sm` tree is cleared and rewritten from the file in
//! bounded batches (not atomic as a whole: the marker says so) and the in-memory state swapped
//! under the state write lock, (3) the marker is removed and the database flushed. `open`
//! finishes an install that a crash interrupted by redoing (2) from the stored snapshot file.
//! Audit readers that go to the tree directly (`AuditLog::get`, a page scan already under way)
//! can see the trail half rewritten during (2); the head they start from is read under the
//! state read lock, which (2) holds for writing, so a read that starts during an install waits
//! for it.

use crate::audit::{index_key, is_audit_key, AuditLog};
use crate::codec::{decode, encode};
use crate::db::{
    Trees, APPLIED_KEY, CURRENT_FILE_KEY, CURRENT_META_KEY, INSTALLING_KEY, MEMBERSHIP_KEY,
    REDO_KEY, SM_META_PREFIX,
};
use crate::sm_writes::{self, SmWrites};
use crate::snapfile::{self, SnapshotFileError};
use crate::{io_err, LogId, Snapshot, SnapshotMeta, StoreError, StoredMembership, TypeConfig};
use custos_model::{Applied, Change, Outcome, Record, RecordKey, Reply, State};
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The applied state, shared with the server for reads. Writers: this crate only.
pub type SharedState = Arc<RwLock<State>>;

/// The state machine store of one node.
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

/// Builds snapshots on openraft's snapshot task, concurrently with apply.
pub struct SnapshotBuilder {
    inner: Arc<Inner>,
}

struct Inner {
    trees: Trees,
    state: SharedState,
    /// Held by `apply` from its in-memory apply until its writes are in the `sm` tree, and by
    /// an install while it replaces the state. Whoever holds it sees the in-memory state, the
    /// tree and `meta` agree: the consistent view of snapshots and backups is taken under it.
    /// Readers of the state never take it. Lock order: `apply_lock`, `state`, `meta`.
    apply_lock: Mutex<()>,
    /// The applied id and membership of what the `sm` tree holds; updated under `apply_lock`
    /// after the tree is written.
    meta: Mutex<SmMeta>,
    /// The audit head of what the `sm` tree holds (the in-memory state's head can be ahead of
    /// it while an apply writes): what audit readers, which read the tree, start from.
    stored_head: Arc<Mutex<custos_model::AuditHead>>,
    /// Serializes writes of the current snapshot (build and install run on different tasks)
    /// and the deletion of replaced snapshot files against opening the current one.
    snapshot_lock: tokio::sync::Mutex<()>,
    /// The last audit sequence number, announced after every apply batch and install.
    audit_appended: tokio::sync::watch::Sender<u64>,
    /// Snapshot installs since open, counted under the state write lock: an audit check that
    /// began before one does not move the (cleared) verified checkpoint.
    installs: Arc<AtomicU64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SmMeta {
    applied: Option<LogId>,
    membership: StoredMembership,
}

fn sm_err(verb: &str, e: impl std::fmt::Display) -> std::io::Error {
    io_err(&format!("{verb} state machine"), e)
}

fn snap_err(meta: Option<&SnapshotMeta>, verb: &str, e: impl std::fmt::Display) -> std::io::Error {
    match meta {
        Some(meta) => io_err(&format!("{verb} snapshot {}", snapshot_label(meta)), e),
        None => io_err(&format!("{verb} snapshot"), e),
    }
}

/// A snapshot's name in logs and in the install marker: the log id it covers (two snapshots
/// at one log id hold the same state).
pub(crate) fn snapshot_label(meta: &SnapshotMeta) -> String {
    match &meta.last_log_id {
        Some(id) => format!(
            "{}-{}-{}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => "empty".to_string(),
    }
}

/// How many records an install writes to the `sm` tree per batch. sled's memory grows with the
/// size of a batch, and not only while it is applied: installing 310,000 records peaked at
/// 1.5 GiB RSS in batches of 10,000, 251 MiB in batches of 1,000 and 180 MiB in batches of 100
/// (`benches/snapshot_1m.rs` at 10,000 volumes and 300,000 denials), at about the same speed.
const INSTALL_BATCH: usize = 256;

/// Makes the snapshot file at `path` the whole content of the `sm` tree: clears the tree, then
/// writes its records (audit records with their index entries) in batches of
/// [`INSTALL_BATCH`], then the applied id and membership. Not atomic: the caller holds the
/// `installing` marker until it returns. Returns the state's records (all but the audit
/// trail), for the in-memory `State`.
fn rewrite_sm_tree(sm: &sled::Tree, path: &Path, meta: &SmMeta) -> Result<Vec<Record>, StoreError> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in sm.iter().keys().take(INSTALL_BATCH) {
            batch.remove(key?);
            n += 1;
        }
        if n == 0 {
            break;
        }
        sm.apply_batch(batch)?;
    }
    let mut reader = snapfile::Reader::open(path)?;
    let mut state_records = Vec::new();
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    loop {
        let index = reader.count();
        let Some(bytes) = reader.next_encoded()? else {
            break;
        };
        let record: Record = decode("snapshot record", bytes)
            .map_err(|source| SnapshotFileError::Record { index, source })?;
        batch.insert(record.key().encode(), bytes);
        match &record {
            Record::Audit(r) => {
                if let Some(key) = index_key(&r.actor.username, r.seq) {
                    batch.insert(key, &[][..]);
                }
            }
            _ => state_records.push(record),
        }
        in_batch += 1;
        if in_batch == INSTALL_BATCH {
            sm.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    batch.insert(APPLIED_KEY, encode("applied log id", &meta.applied)?);
    batch.insert(MEMBERSHIP_KEY, encode("membership", &meta.membership)?);
    sm.apply_batch(batch)?;
    Ok(state_records)
}

/// A stored snapshot: its meta and the path of its file.
type StoredSnapshot = (SnapshotMeta, PathBuf);

/// The current snapshot's meta and file, if any.
fn read_current_snapshot(trees: &Trees) -> Result<Option<StoredSnapshot>, StoreError> {
    let (Some(meta), Some(file)) = (
        trees.snapshot.get(CURRENT_META_KEY)?,
        trees.snapshot.get(CURRENT_FILE_KEY)?,
    ) else {
        return Ok(None);
    };
    let name: String = decode("snapshot file", &file)?;
    Ok(Some((
        decode("snapshot meta", &meta)?,
        snapfile::dir_of(&trees.dir).join(name),
    )))
}

/// Removes every file in the snapshot directory but `keep` (leftovers of a crash, replaced
/// snapshots whose removal a crash cut short).
fn remove_other_snapshot_files(trees: &Trees, keep: Option<&Path>) -> Result<(), StoreError> {
    let dir = snapfile::dir_of(&trees.dir);
    let io = |source| SnapshotFileError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if Some(path.as_path()) != keep {
            tracing::debug!(file = %path.display(), "removing a stale snapshot file");
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    Ok(())
}

/// Removes a snapshot file that is no longer current (no error if it is already gone).
fn remove_snapshot_file(path: &Path) -> Result<(), SnapshotFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SnapshotFileError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Checks the snapshot in `input` whole while copying it into a new file of the snapshot
/// directory (fsynced and renamed into place); returns the new file's name. On error nothing is left
/// behind.
fn adopt_snapshot(trees: &Trees, input: std::fs::File) -> Result<String, StoreError> {
    let dir = snapfile::dir_of(&trees.dir);
    let name = format!("{}.snap", trees.db.generate_id()?);
    let tmp = dir.join(format!("{name}.tmp"));
    let copy = || -> Result<(), StoreError> {
        let mut reader = snapfile::Reader::rewind(input)?;
        let mut writer = snapfile::Writer::create(&tmp)?;
        loop {
            let index = reader.count();
            let Some(bytes) = reader.next_encoded()? else {
                break;
            };
            decode::<Record>("snapshot record", bytes)
                .map_err(|source| SnapshotFileError::Record { index, source })?;
            writer.encoded(bytes)?;
        }
        writer.finish()?;
        Ok(())
    };
    if let Err(e) = copy() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let target = dir.join(&name);
    std::fs::rename(&tmp, &target).map_err(|source| SnapshotFileError::Io {
        path: tmp.display().to_string(),
        source,
    })?;
    snapfile::sync_dir(&dir)?;
    Ok(name)
}

impl StateMachineStore {
    /// Loads the state machine from its trees (blocking): finishes an interrupted snapshot
    /// install, then rebuilds `State` and the applied id and membership.
    pub(crate) fn load(trees: Trees) -> Result<StateMachineStore, StoreError> {
        if let Some(marker) = trees.snapshot.get(INSTALLING_KEY)? {
            let id: String = decode("install marker", &marker)?;
            let Some((meta, path)) = read_current_snapshot(&trees)? else {
                return Err(StoreError::Inconsistent(format!(
                    "snapshot {id} was being installed but no snapshot is stored"
                )));
            };
            if snapshot_label(&meta) != id {
                return Err(StoreError::Inconsistent(format!(
                    "snapshot {id} was being installed but the stored snapshot is {}",
                    snapshot_label(&meta)
                )));
            }
            tracing::warn!(snapshot_id = %id, "finishing a snapshot install interrupted by a crash");
            Self::install_blocking(&trees, &meta, &path)?;
        }
        sm_writes::replay(&trees.sm)?;

        let (records, meta) = Self::read_sm_tree(&trees.sm)?;
        let current = read_current_snapshot(&trees)?;
        remove_other_snapshot_files(&trees, current.as_ref().map(|(_, p)| p.as_path()))?;
        let (records, meta) = match current {
            // Cannot happen if sled keeps its prefix guarantee (see the module docs); if it
            // does, the stored snapshot is the newest consistent state there is.
            Some((snap, path)) if snap.last_log_id > meta.applied => {
                tracing::warn!(
                    snapshot = ?snap.last_log_id,
                    applied = ?meta.applied,
                    "state machine on disk is behind the stored snapshot: restoring the snapshot"
                );
                Self::install_blocking(&trees, &snap, &path)?;
                Self::read_sm_tree(&trees.sm)?
            }
            _ => (records, meta),
        };

        let state = State::from_records(records);
        let head = state.audit_head();
        let (audit_appended, _) = tokio::sync::watch::channel(head.last_seq());
        Ok(StateMachineStore {
            inner: Arc::new(Inner {
                trees,
                state: Arc::new(RwLock::new(state)),
                apply_lock: Mutex::new(()),
                meta: Mutex::new(meta),
                stored_head: Arc::new(Mutex::new(head)),
                snapshot_lock: tokio::sync::Mutex::new(()),
                audit_appended,
                installs: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// The audit trail's reader.
    pub(crate) fn snapshot_view(&self) -> SnapshotView {
        SnapshotView {
            inner: self.inner.clone(),
        }
    }

    pub fn audit_log(&self) -> AuditLog {
        AuditLog {
            sm: self.inner.trees.sm.clone(),
            state: self.inner.state.clone(),
            stored_head: self.inner.stored_head.clone(),
            appended: self.inner.audit_appended.subscribe(),
            checkpoint: self.inner.trees.audit.clone(),
            installs: self.inner.installs.clone(),
        }
    }

    /// Rewrites the `sm` tree from a snapshot file, clears the marker and flushes (at open).
    fn install_blocking(trees: &Trees, meta: &SnapshotMeta, path: &Path) -> Result<(), StoreError> {
        let sm_meta = SmMeta {
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        trees.audit.remove(crate::audit::CHECKPOINT_KEY)?;
        rewrite_sm_tree(&trees.sm, path, &sm_meta)?;
        trees.snapshot.remove(INSTALLING_KEY)?;
        trees.db.flush()?;
        Ok(())
    }

    /// The state's records (not the audit trail, which stays on disk) and the metadata.
    fn read_sm_tree(sm: &sled::Tree) -> Result<(Vec<Record>, SmMeta), StoreError> {
        let mut records = Vec::new();
        let mut meta = SmMeta::default();
        // Everything but the audit records (`a/...`) and their index (`i/...`): the key
        // ranges before, between and after them.
        let ranges = [
            sm.range(..&b"a/"[..]),
            sm.range(&b"a0"[..]..&b"i/"[..]),
            sm.range(&b"i0"[..]..),
        ];
        for kv in ranges.into_iter().flatten() {
            let (key, value) = kv?;
            debug_assert!(!is_audit_key(&key));
            if key.first() == Some(&SM_META_PREFIX) {
                match key.as_ref() {
                    APPLIED_KEY => meta.applied = decode("applied log id", &value)?,
                    MEMBERSHIP_KEY => meta.membership = decode("membership", &value)?,
                    REDO_KEY => {} // replayed (if needed) before the tree is read
                    other => {
                        return Err(StoreError::Inconsistent(format!(
                            "unknown state-machine metadata key {:?}",
                            String::from_utf8_lossy(other)
                        )))
                    }
                }
                continue;
            }
            let record: Record = decode("record", &value)?;
            if record.key().encode() != key.as_ref() {
                return Err(StoreError::Inconsistent(format!(
                    "record stored under key {:?} belongs under {:?}",
                    String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&record.key().encode())
                )));
            }
            records.push(record);
        }
        Ok((records, meta))
    }

    /// The applied state, for the server's reads. Read it with `state().read()`.
    pub fn state(&self) -> SharedState {
        self.inner.state.clone()
    }

    pub(crate) fn applied_blocking(&self) -> Option<LogId> {
        self.inner
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .applied
    }

    async fn flush(&self) -> Result<(), sled::Error> {
        self.inner.trees.db.flush_async().await.map(|_| ())
    }

    /// The directory of this store's snapshot files.
    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        snapfile::dir_of(&self.inner.trees.dir)
    }

    /// Install step 1: make the snapshot file `name` (in the snapshot directory) current, with
    /// an `installing` marker, durably; then remove the file it replaces. The caller holds
    /// `snapshot_lock`.
    async fn stage_snapshot(&self, meta: &SnapshotMeta, name: &str) -> Result<(), std::io::Error> {
        let previous = read_current_snapshot(&self.inner.trees)
            .map_err(|e| snap_err(Some(meta), "read", &e))?;
        let meta_bytes =
            encode("snapshot meta", meta).map_err(|e| snap_err(Some(meta), "write", &e))?;
        let marker = encode("install marker", &snapshot_label(meta))
            .map_err(|e| snap_err(Some(meta), "write", &e))?;
        let file = encode("snapshot file", &name.to_string())
            .map_err(|e| snap_err(Some(meta), "write", &e))?;
        let mut batch = sled::Batch::default();
        batch.insert(CURRENT_META_KEY, meta_bytes);
        batch.insert(CURRENT_FILE_KEY, file);
        batch.insert(INSTALLING_KEY, marker);
        self.inner
            .trees
            .snapshot
            .apply_batch(batch)
            .map_err(|e| snap_err(Some(meta), "write", &e))?;
        self.flush()
            .await
            .map_err(|e| snap_err(Some(meta), "write", &e))?;
        if let Some((_, old)) = previous {
            if old != self.snapshot_dir().join(name) {
                remove_snapshot_file(&old).map_err(|e| snap_err(Some(meta), "delete", &e))?;
            }
        }
        Ok(())
    }

    /// Install step 2: make the snapshot file at `path` the whole state, on disk (batches,
    /// under the `installing` marker) and in memory, holding `apply_lock` and the state write
    /// lock throughout (an install is rare; readers wait for it, so no reader sees the tree
    /// half rewritten under a head it started from before).
    async fn replace_state(&self, path: PathBuf, meta: SmMeta) -> Result<(), std::io::Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _apply = inner
                .apply_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut state = inner.state.write().unwrap_or_else(PoisonError::into_inner);
            let mut current = inner.meta.lock().unwrap_or_else(PoisonError::into_inner);
            // The trail is replaced: what this node verified of the old one says nothing of it.
            inner.installs.fetch_add(1, Ordering::SeqCst);
            inner
                .trees
                .audit
                .remove(crate::audit::CHECKPOINT_KEY)
                .map_err(|e| sm_err("write", &e))?;
            let records =
                rewrite_sm_tree(&inner.trees.sm, &path, &meta).map_err(|e| sm_err("write", &e))?;
            *state = State::from_records(records);
            *current = meta;
            let head = state.audit_head();
            *inner
                .stored_head
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = head;
            inner.audit_appended.send_replace(head.last_seq());
            Ok(())
        })
        .await
        .map_err(|e| sm_err("write", &e))?
    }

    /// Applies a batch of committed entries: in memory under the state write lock, then their
    /// changes and the new applied id written to the `sm` tree as one batch. Returns each
    /// entry's outcome, in order. openraft's `apply` calls it; tests and benchmarks call it
    /// directly (blocking: sled writes).
    pub fn apply_entries(
        &self,
        entries: impl IntoIterator<Item = crate::Entry>,
    ) -> Result<Vec<Outcome>, std::io::Error> {
        let mut answered = Vec::new();
        self.apply_entries_answering(entries, |outcomes| answered = outcomes)?;
        Ok(answered)
    }

    /// [`StateMachineStore::apply_entries`], handing the outcomes to `answer` as soon as they
    /// are decided in memory, before the `sm` tree is written. The entries are committed (a
    /// quorum holds them in its log), so the outcome is final whatever happens to this node's
    /// writes: a crash replays the same entries to the same outcomes, and a storage error stops
    /// the node. Nothing reads the tree on the strength of an answer: linearizable reads wait
    /// for openraft's applied index, which moves only when this call has returned, and the
    /// in-memory state the others read is already updated.
    pub fn apply_entries_answering(
        &self,
        entries: impl IntoIterator<Item = crate::Entry>,
        answer: impl FnOnce(Vec<Outcome>),
    ) -> Result<(), std::io::Error> {
        let inner = &self.inner;
        let _apply = inner
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stored = inner
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut next = stored.clone();
        let mut membership_changed = false;
        let mut outcomes = Vec::new();
        // Step 1, in memory under the state write lock: the commands' outcomes and changes.
        // Nothing but `State::apply` runs under it, so readers wait for no storage.
        let mut changed: Vec<(LogId, Vec<Change>)> = Vec::new();
        let head = {
            let mut state = inner.state.write().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                let log_id = entry.log_id;
                next.applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => outcomes.push(Outcome::Applied(Reply::Empty)),
                    EntryPayload::Normal(cmd) => {
                        tracing::debug!(index = log_id.index, request_id = %cmd.request_id, "apply");
                        let Applied { outcome, changes } = state.apply(&cmd);
                        changed.push((log_id, changes));
                        outcomes.push(outcome);
                    }
                    EntryPayload::Membership(membership) => {
                        next.membership = StoredMembership::new(Some(log_id), membership);
                        membership_changed = true;
                        outcomes.push(Outcome::Applied(Reply::Empty));
                    }
                }
            }
            state.audit_head()
        };
        answer(outcomes);
        if next.applied == stored.applied {
            return Ok(()); // nothing to apply
        }

        // Step 2, with the state unlocked (still under `apply_lock`): the changes and the new
        // applied id written to the `sm` tree, atomically across a crash.
        let mut batch = SmWrites::default();
        // Audit records put earlier in this batch (not yet readable from the tree): their
        // usernames, to remove their index entries if a truncation in the same batch drops them.
        let mut pending_audit: HashMap<u64, String> = HashMap::new();
        for (log_id, changes) in changed {
            for change in changes {
                match change {
                    Change::Put(record) => {
                        let bytes = encode("record", &record).map_err(|e| {
                            io_err(&format!("encode a record of entry {log_id}"), &e)
                        })?;
                        if let Record::Audit(r) = &record {
                            if let Some(key) = index_key(&r.actor.username, r.seq) {
                                batch.insert(key, &[][..]);
                            }
                            pending_audit.insert(r.seq, r.actor.username.clone());
                        }
                        batch.insert(record.key().encode(), bytes);
                    }
                    Change::Delete(key) => {
                        if let RecordKey::Audit(seq) = key {
                            let username = match pending_audit.remove(&seq) {
                                Some(u) => Some(u),
                                None => {
                                    inner.audit_username(seq).map_err(|e| sm_err("read", &e))?
                                }
                            };
                            if let Some(index) = username.and_then(|u| index_key(&u, seq)) {
                                batch.remove(index);
                            }
                        }
                        batch.remove(key.encode())
                    }
                }
            }
        }
        let applied_bytes =
            encode("applied log id", &next.applied).map_err(|e| sm_err("write", &e))?;
        batch.insert(APPLIED_KEY, applied_bytes);
        if membership_changed {
            let bytes = encode("membership", &next.membership).map_err(|e| sm_err("write", &e))?;
            batch.insert(MEMBERSHIP_KEY, bytes);
        }
        // The changes and the applied id land together or not at all (`src/sm_writes.rs`). A
        // failure here stops Raft (a storage error): the in-memory state then stays ahead of
        // the tree, with committed entries only, which the log replays at the next start.
        batch
            .commit(&inner.trees.sm, next.applied)
            .map_err(|e| sm_err("write", &e))?;
        *inner.meta.lock().unwrap_or_else(PoisonError::into_inner) = next;
        *inner
            .stored_head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = head;
        inner.audit_appended.send_replace(head.last_seq());
        Ok(())
    }

    /// An unlinked file in the snapshot directory for a snapshot being received (see
    /// [`SnapshotInbox::receiving_file`]).
    pub async fn receiving_file(&self) -> Result<tokio::fs::File, std::io::Error> {
        self.inbox().receiving_file().await
    }

    /// Where the peer service puts snapshots it receives, usable while Raft owns the store.
    pub fn inbox(&self) -> SnapshotInbox {
        SnapshotInbox {
            inner: self.inner.clone(),
        }
    }

    /// Install step 3: the state is replaced; drop the marker.
    async fn finish_install(&self, meta: &SnapshotMeta) -> Result<(), std::io::Error> {
        self.inner
            .trees
            .snapshot
            .remove(INSTALLING_KEY)
            .map_err(|e| snap_err(Some(meta), "delete", &e))?;
        self.flush()
            .await
            .map_err(|e| snap_err(Some(meta), "write", &e))
    }
}

impl Inner {
    /// The state's records (without the audit trail), applied id, membership and audit head,
    /// taken together under `apply_lock`: no apply is between its in-memory change and its
    /// writes, so the tree holds every audit record below the head.
    fn state_records(&self) -> (Vec<Record>, SmMeta, custos_model::AuditHead) {
        let _apply = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.state_records_locked()
    }

    /// [`Inner::state_records`] for a caller that holds `apply_lock`.
    fn state_records_locked(&self) -> (Vec<Record>, SmMeta, custos_model::AuditHead) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let meta = self
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (state.records().collect(), meta, state.audit_head())
    }

    fn current_head(&self) -> custos_model::AuditHead {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .audit_head()
    }

    /// The username of a stored audit record (to find its index entry).
    fn audit_username(&self, seq: u64) -> Result<Option<String>, StoreError> {
        match self.trees.sm.get(RecordKey::Audit(seq).encode())? {
            Some(v) => Ok(Some(crate::audit::decode_record(&v)?.actor.username)),
            None => Ok(None),
        }
    }
}

impl Inner {
    /// Writes a snapshot file of a consistent view at `path`: the state's records with the
    /// applied id and membership they reflect, then the audit records of their head streamed
    /// from the tree (records below `next_seq` never change once written; only a truncation
    /// removes some, and if one ran meanwhile the file is written again under `apply_lock`).
    /// Returns the meta of the view, the file's size and its record count.
    fn write_snapshot(&self, path: &Path) -> Result<(SmMeta, u64, u64), StoreError> {
        let write = |records: &[Record],
                     head: custos_model::AuditHead|
         -> Result<snapfile::Writer, StoreError> {
            let mut w = snapfile::Writer::create(path)?;
            for record in records {
                w.record(record)?;
            }
            if head.first_seq < head.next_seq {
                let start = RecordKey::Audit(head.first_seq).encode();
                let end = RecordKey::Audit(head.next_seq).encode();
                for kv in self.trees.sm.range(start..end) {
                    w.encoded(&kv?.1)?;
                }
            }
            Ok(w)
        };
        let (records, sm_meta, head) = self.state_records();
        let w = write(&records, head)?;
        if self.current_head().first_seq == head.first_seq {
            let count = w.count();
            return Ok((sm_meta, w.finish()?, count));
        }
        drop(w);
        let apply = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (records, sm_meta, head) = self.state_records_locked();
        let w = write(&records, head)?;
        drop(apply);
        let count = w.count();
        Ok((sm_meta, w.finish()?, count))
    }
}

/// Receives snapshot files for this store while Raft owns it.
#[derive(Clone)]
pub struct SnapshotInbox {
    inner: Arc<Inner>,
}

impl SnapshotInbox {
    /// An unlinked file in the snapshot directory for a snapshot being received: the peer
    /// service writes the chunks it receives into it, and it disappears with its last handle.
    pub async fn receiving_file(&self) -> Result<tokio::fs::File, std::io::Error> {
        let counter = self
            .inner
            .trees
            .db
            .generate_id()
            .map_err(|e| snap_err(None, "write", &e))?;
        let path = snapfile::dir_of(&self.inner.trees.dir).join(format!("{counter}.recv"));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(None, "write", &e))?;
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| snap_err(None, "write", &e))?;
        Ok(file)
    }
}

/// Reads the state machine's content while Raft runs it (backups).
#[derive(Clone)]
pub(crate) struct SnapshotView {
    inner: Arc<Inner>,
}

/// A snapshot file of a consistent view, open and unlinked: the file, the applied id and
/// membership it reflects, its record count and its size.
pub(crate) type UnlinkedSnapshot = (std::fs::File, Option<LogId>, StoredMembership, u64, u64);

impl SnapshotView {
    /// Writes a snapshot file of a consistent view (blocking; the audit trail streamed from
    /// the tree, as `build_snapshot` does) into the snapshot directory as `<n>.<kind>`, then
    /// opens and unlinks it: it goes away with its handle, and `open` removes a leftover.
    pub(crate) fn write_unlinked(&self, kind: &str) -> Result<UnlinkedSnapshot, StoreError> {
        let trees = &self.inner.trees;
        let path = snapfile::dir_of(&trees.dir).join(format!("{}.{kind}", trees.db.generate_id()?));
        let opened = self
            .inner
            .write_snapshot(&path)
            .and_then(|(meta, size, count)| {
                let file = std::fs::File::open(&path).map_err(|source| SnapshotFileError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                Ok((file, meta.applied, meta.membership, count, size))
            });
        let removed = remove_snapshot_file(&path);
        let opened = opened?;
        removed?;
        Ok(opened)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let inner = self.inner.clone();
        let (sm_meta, counter, path, size) = tokio::task::spawn_blocking(move || {
            let counter = inner.trees.db.generate_id()?;
            let dir = snapfile::dir_of(&inner.trees.dir);
            let path = dir.join(format!("{counter}.snap"));
            let tmp = dir.join(format!("{counter}.snap.tmp"));
            let written = inner.write_snapshot(&tmp).and_then(|(sm_meta, size, _)| {
                std::fs::rename(&tmp, &path).map_err(|source| SnapshotFileError::Io {
                    path: tmp.display().to_string(),
                    source,
                })?;
                snapfile::sync_dir(&dir)?;
                Ok((sm_meta, size))
            });
            match written {
                Ok((sm_meta, size)) => Ok((sm_meta, counter, path, size)),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| snap_err(None, "write", &e))?
        .map_err(|e| snap_err(None, "write", &e))?;

        let meta = SnapshotMeta {
            last_log_id: sm_meta.applied,
            last_membership: sm_meta.membership,
        };
        tracing::debug!(snapshot = %snapshot_label(&meta), bytes = size, "snapshot built");

        let meta_bytes =
            encode("snapshot meta", &meta).map_err(|e| snap_err(Some(&meta), "write", &e))?;
        let name = format!("{counter}.snap");
        let file_bytes =
            encode("snapshot file", &name).map_err(|e| snap_err(Some(&meta), "write", &e))?;
        let trees = &self.inner.trees;
        let _s = self.inner.snapshot_lock.lock().await;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(Some(&meta), "read", &e))?;
        // An install that ran meanwhile may have stored a newer snapshot: keep that one.
        let current =
            read_current_snapshot(trees).map_err(|e| snap_err(Some(&meta), "read", &e))?;
        match current {
            Some((cur, _)) if cur.last_log_id > meta.last_log_id => {
                // Only the handle keeps the file now.
                remove_snapshot_file(&path).map_err(|e| snap_err(Some(&meta), "delete", &e))?;
            }
            current => {
                let mut batch = sled::Batch::default();
                batch.insert(CURRENT_META_KEY, meta_bytes);
                batch.insert(CURRENT_FILE_KEY, file_bytes);
                trees
                    .snapshot
                    .apply_batch(batch)
                    .map_err(|e| snap_err(Some(&meta), "write", &e))?;
                trees
                    .db
                    .flush_async()
                    .await
                    .map_err(|e| snap_err(Some(&meta), "write", &e))?;
                if let Some((_, old)) = current {
                    remove_snapshot_file(&old).map_err(|e| snap_err(Some(&meta), "delete", &e))?;
                }
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        let meta = self
            .inner
            .meta
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok((meta.applied, meta.membership))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), std::io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + OptionalSend,
    {
        // The whole call is applied and written as one batch: take every entry openraft hands
        // over, then answer each as soon as its outcome is decided, before the batch is
        // written to the tree (`apply_entries_answering`).
        let mut batch_entries = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            batch_entries.push(entry);
            responders.push(responder);
        }
        self.apply_entries_answering(batch_entries, |outcomes| {
            for (responder, outcome) in responders.into_iter().zip(outcomes) {
                if let Some(responder) = responder {
                    responder.send(outcome);
                }
            }
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            inner: self.inner.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), std::io::Error> {
        tracing::info!(snapshot = %snapshot_label(meta), "install snapshot");
        let input = snapshot.into_std().await;
        // Step 0: refuse bad data before anything is written (the copy is this node's own).
        let inner = self.inner.clone();
        let name = tokio::task::spawn_blocking(move || adopt_snapshot(&inner.trees, input))
            .await
            .map_err(|e| snap_err(Some(meta), "read", &e))?
            .map_err(|e| snap_err(Some(meta), "read", &e))?;
        let sm_meta = SmMeta {
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let _s = self.inner.snapshot_lock.lock().await;
        self.stage_snapshot(meta, &name).await?;
        self.replace_state(self.snapshot_dir().join(&name), sm_meta)
            .await?;
        self.finish_install(meta).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let _s = self.inner.snapshot_lock.lock().await;
        let Some((meta, path)) =
            read_current_snapshot(&self.inner.trees).map_err(|e| snap_err(None, "read", &e))?
        else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| snap_err(Some(&meta), "read", &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;
    use custos_model::{Acls, Command, Identity, NodeId as ModelNodeId, Op, RequestId, VolumeId};

    fn create(n: u64) -> Entry {
        let mut identity = Identity::guest();
        identity.username = "bob".into();
        identity.guest = false;
        identity.roles = vec!["system.admin".into()];
        let cmd = Command {
            request_id: RequestId(format!("r{n}")),
            identity,
            time_ms: n,
            origin: ModelNodeId(1),
            op: Op::CreateVolume {
                id: VolumeId(format!("v{n}")),
                name: format!("name{n}"),
                spec: custos_model::VolumeSpec {
                    size: 1,
                    ..Default::default()
                },
                labels: Default::default(),
                acls: Acls::default(),
            },
        };
        Entry {
            log_id: crate::log_id(1, 1, n),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn records(sm: &StateMachineStore) -> Vec<Record> {
        sm.state().read().unwrap().records().collect()
    }

    /// A snapshot of volumes 1..=5 at log id (1, 5), from a store of its own.
    async fn snapshot_of_five() -> (SnapshotMeta, Vec<u8>, Vec<Record>) {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open(dir.path()).await.unwrap();
        sm.apply_entries((1..=5).map(create)).unwrap();
        let mut snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let mut data = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut snap.snapshot, &mut data)
            .await
            .unwrap();
        (snap.meta, data, records(&sm))
    }

    /// Stores `data` as a snapshot file of `sm` and stages it (install step 1).
    async fn stage(sm: &StateMachineStore, meta: &SnapshotMeta, data: &[u8]) {
        std::fs::write(sm.snapshot_dir().join("77.snap"), data).unwrap();
        sm.stage_snapshot(meta, "77.snap").await.unwrap();
    }

    /// A store with volumes 100..=102 applied up to (1, 3).
    async fn other_store(dir: &std::path::Path) -> (crate::LogStore, StateMachineStore) {
        let (log, sm) = crate::open(dir).await.unwrap();
        let mut entries: Vec<_> = (100..=102).map(create).collect();
        for (i, e) in entries.iter_mut().enumerate() {
            e.log_id.index = i as u64 + 1;
        }
        sm.apply_entries(entries).unwrap();
        (log, sm)
    }

    /// Readers of the audit trail start from the stored head, never from the in-memory head
    /// an apply moves before its records are in the tree: while entries are applied one by one,
    /// a concurrent reader always finds the last record of the head it reads, and the chain
    /// verifies to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audit_readers_never_see_a_head_ahead_of_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, sm) = crate::open(dir.path()).await.unwrap();
        let log = sm.audit_log();
        let state = sm.state();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let done = done.clone();
            std::thread::spawn(move || {
                let (mut reads, mut ahead) = (0u64, 0u64);
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let head = log.head();
                    if head.last_seq() > 0 {
                        assert!(
                            log.get(head.last_seq()).unwrap().is_some(),
                            "record {} of the head is not in the tree",
                            head.last_seq()
                        );
                    }
                    let v = log.verify(None).unwrap();
                    assert_eq!(v.error, None, "at {:?}", v.head);
                    // The in-memory state may run ahead of the stored head, never behind.
                    let mem = state.read().unwrap().audit_head();
                    assert!(mem.next_seq >= head.next_seq);
                    ahead += u64::from(mem.next_seq > head.next_seq);
                    reads += 1;
                }
                (reads, ahead)
            })
        };
        for n in 1..=300 {
            sm.apply_entries([create(n)]).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (reads, _ahead) = reader.join().unwrap();
        assert!(reads > 0);
        assert_eq!(
            sm.audit_log().head(),
            sm.state().read().unwrap().audit_head()
        );
        assert!(
            sm.audit_log().head().last_seq() >= 300,
            "every create is audited"
        );
    }

    #[tokio::test]
    async fn open_finishes_an_install_interrupted_after_staging() {
        let (meta, data, expected) = snapshot_of_five().await;
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = other_store(dir.path()).await;
        // Step 1 of install only, then "crash".
        stage(&sm, &meta, &data).await;
        assert!(sm
            .inner
            .trees
            .snapshot
            .get(INSTALLING_KEY)
            .unwrap()
            .is_some());
        assert_ne!(records(&sm), expected);
        drop((log, sm));

        let (_log, mut sm) = crate::open(dir.path()).await.unwrap();
        assert_eq!(records(&sm), expected);
        assert_eq!(
            sm.applied_state().await.unwrap(),
            (meta.last_log_id, meta.last_membership.clone())
        );
        assert!(sm
            .inner
            .trees
            .snapshot
            .get(INSTALLING_KEY)
            .unwrap()
            .is_none());
        assert_eq!(sm.get_current_snapshot().await.unwrap().unwrap().meta, meta);
        // The tree itself was rewritten: no record of the old state is left on disk.
        let (mut on_disk, _) = StateMachineStore::read_sm_tree(&sm.inner.trees.sm).unwrap();
        let mut expected = expected;
        on_disk.sort_by_key(|r| r.key().encode());
        expected.sort_by_key(|r| r.key().encode());
        assert_eq!(on_disk, expected);
    }

    #[tokio::test]
    async fn open_restores_a_stored_snapshot_newer_than_the_state_machine() {
        let (meta, data, expected) = snapshot_of_five().await;
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = other_store(dir.path()).await;
        stage(&sm, &meta, &data).await;
        sm.inner.trees.snapshot.remove(INSTALLING_KEY).unwrap();
        drop((log, sm));

        let (_log, mut sm) = crate::open(dir.path()).await.unwrap();
        assert_eq!(records(&sm), expected);
        assert_eq!(sm.applied_state().await.unwrap().0, meta.last_log_id);
    }

    #[tokio::test]
    async fn a_marker_without_its_snapshot_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = other_store(dir.path()).await;
        sm.inner
            .trees
            .snapshot
            .insert(
                INSTALLING_KEY,
                encode("install marker", &"1-9-0".to_string()).unwrap(),
            )
            .unwrap();
        drop((log, sm));
        let err = crate::open(dir.path()).await.err().expect("must refuse");
        assert!(matches!(err, StoreError::Inconsistent(_)), "{err}");
    }
}
