//! The Raft log and vote on sled: openraft's `RaftLogStorage`.
//!
//! Durability: openraft is told a vote or log entry is saved only after `sled::Db::flush`
//! has returned for it. sled 0.34 keeps writes in in-process buffers until a flush, so even a
//! plain process kill loses unflushed writes; the background flusher (every 500 ms) is not
//! relied on for anything that is acknowledged.
//!
//! - `save_vote`: insert, flush, return.
//! - `append`: the entries of the call are inserted one by one in index order (each readable at
//!   once), `append` returns, and the flusher thread fires the `IOFlushed` callback once a
//!   `sled::Db::flush` that began after the inserts has returned. The flusher takes every
//!   callback queued while the previous flush ran and covers them all with one flush (group
//!   commit): a sled flush makes durable every write inserted before it began, so one flush
//!   answers for all of them. openraft 0.10 submits the leader's own append and replicates at
//!   the same time; counting the leader's copy only when its callback fires is what lets the
//!   flush overlap the followers' (issue #23). Not a `sled::Batch`: a batch costs two extra
//!   buffer writes with a waited `sync_file_range` each (`src/sm_writes.rs` has the
//!   measurement), and the call need not be atomic: sled recovers a prefix of its write log,
//!   so a crash before the flush leaves a prefix of the entries, which is a valid (shorter)
//!   log, and nothing unflushed was acknowledged.
//! - `truncate_after`: one batch removing `(last_log_id, ∞)`, then a flush.
//! - `purge`: one sled transaction over `log` and `raft_meta` removes `[0, index]` and records
//!   the purge pointer together, so the pointer never claims more or less than was removed;
//!   then a flush.
//! - `save_committed`: insert without a flush. Losing the newest committed id in a crash only
//!   means less is re-applied at start until the leader re-sends its commit index; nothing is
//!   acknowledged on the strength of it.
//!
//! All writes are serialized by an async mutex, so no later vote/append/truncate/purge lands
//! before an earlier one, even through clones of the store. The vote, truncate and purge hold
//! it across their flush as well.
//!
//! **`save_vote` flushes every earlier append.** Its flush begins after the inserts of every
//! append submitted before it, so when `save_vote` returns, the whole log tail this node holds
//! is durable, whatever the flusher has answered yet. openraft 0.10 (upstream issue #2118)
//! marks log IO still in flight as flushed when a node becomes leader; a node becomes leader
//! only after saving its own vote (candidate) and its committed vote (leader), each of which
//! flushes first, so no node leads on an unflushed tail. ARCHITECTURE.md, invariant "No leader
//! on an unflushed tail"; `cluster-tests/tests/chaos.rs` kills leaders right after elections.

use crate::codec::{decode, encode};
use crate::db::{Trees, COMMITTED_KEY, INCARNATION_KEY, LAST_PURGED_KEY, VOTE_KEY};
use crate::{io_err, Entry, LogId, StoreError, TypeConfig, Vote};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};

/// The Raft log store of one node. Cheap to clone; clones share the database and the write
/// lock, and serve as log readers for replication.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    trees: Trees,
    /// Serializes every write (and the vote's, truncate's and purge's flush).
    write: tokio::sync::Mutex<()>,
    /// Callbacks of appends whose entries are inserted and not yet known flushed, in order;
    /// the flusher thread takes them. Lock order: `write`, then the queue's.
    flushes: Arc<FlushQueue>,
}

impl Drop for Inner {
    /// The last clone of the store is gone: the flusher thread answers what is left and ends.
    fn drop(&mut self) {
        self.flushes.close();
    }
}

/// What the flusher thread owes openraft, and how it is woken.
#[derive(Default)]
struct FlushQueue {
    owed: Mutex<Owed>,
    wake: Condvar,
}

#[derive(Default)]
struct Owed {
    callbacks: Vec<IOFlushed<TypeConfig>>,
    closed: bool,
}

impl FlushQueue {
    fn push(&self, callback: IOFlushed<TypeConfig>) {
        self.lock().callbacks.push(callback);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every callback queued since the last call, waiting for one; `None` once the store is
    /// closed and nothing is owed.
    fn take(&self) -> Option<Vec<IOFlushed<TypeConfig>>> {
        let mut owed = self.lock();
        while owed.callbacks.is_empty() && !owed.closed {
            owed = self.wake.wait(owed).unwrap_or_else(PoisonError::into_inner);
        }
        (!owed.callbacks.is_empty()).then(|| std::mem::take(&mut owed.callbacks))
    }
}

/// The flusher thread: one `sled` flush, called on this thread, for every callback queued while
/// the previous flush ran (group commit). A thread of its own, not a task: the flush blocks for
/// the disk, and `flush_async` would hop to sled's thread pool and back for each group. It
/// holds the database only while it flushes, so a dropped store closes it.
fn flusher(queue: Arc<FlushQueue>, store: Weak<Inner>) {
    while let Some(group) = queue.take() {
        let result = match store.upgrade() {
            Some(inner) => inner.trees.db.flush().map(|_| ()),
            None => Err(sled::Error::Unsupported(
                "the log store closed before its appends were flushed".into(),
            )),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "flushing the Raft log failed: the node stops");
        }
        for callback in group {
            callback.io_completed(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(logs_err("flush log", e)),
            });
        }
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn logs_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    io_err(what, e)
}

fn vote_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    io_err(what, e)
}

impl LogStore {
    pub(crate) fn new(trees: Trees) -> Result<LogStore, StoreError> {
        let flushes = Arc::new(FlushQueue::default());
        let inner = Arc::new(Inner {
            trees,
            write: tokio::sync::Mutex::new(()),
            flushes: flushes.clone(),
        });
        let store = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("custos-log-flush".into())
            .spawn(move || flusher(flushes, store))
            .map_err(|e| StoreError::Task(format!("cannot start the log flusher thread: {e}")))?;
        Ok(LogStore { inner })
    }

    fn read_last_purged(&self) -> Result<Option<LogId>, std::io::Error> {
        match self.inner.trees.raft_meta.get(LAST_PURGED_KEY) {
            Ok(Some(v)) => decode("last purged log id", &v)
                .map(Some)
                .map_err(|e| logs_err("read log", &e)),
            Ok(None) => Ok(None),
            Err(e) => Err(logs_err("read log", &e)),
        }
    }

    /// This data directory's incarnation: drawn once (`fresh`) when the store is first used,
    /// then kept. A wiped and re-created data directory gets a new one.
    pub fn incarnation(&self, fresh: u64) -> Result<u64, StoreError> {
        let meta = &self.inner.trees.raft_meta;
        let fresh = fresh.max(1);
        let encoded = encode("incarnation", &fresh)?;
        match meta.compare_and_swap(INCARNATION_KEY, None as Option<&[u8]>, Some(encoded))? {
            Ok(()) => {
                meta.flush()?;
                Ok(fresh)
            }
            Err(current) => match current.current {
                Some(bytes) => Ok(decode("incarnation", &bytes)?),
                None => Err(StoreError::Inconsistent("incarnation vanished".into())),
            },
        }
    }

    pub(crate) fn last_purged_blocking(&self) -> Result<Option<LogId>, StoreError> {
        match self.inner.trees.raft_meta.get(LAST_PURGED_KEY)? {
            Some(v) => Ok(Some(decode("last purged log id", &v)?)),
            None => Ok(None),
        }
    }

    fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, std::io::Error> {
        decode("log entry", bytes).map_err(|e| io_err(&format!("read log entry {index}"), e))
    }

    fn key_index(key: &[u8]) -> Result<u64, std::io::Error> {
        <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("log key of {} bytes, expected 8", key.len()),
                );
                logs_err("read log", &e)
            })
    }

    /// Flushes the whole database (every tree shares sled's one page cache and log).
    async fn flush(&self) -> Result<(), sled::Error> {
        self.inner.trees.db.flush_async().await.map(|_| ())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        // Exclusive end; `None` is unbounded.
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        let iter = match end {
            Some(end) if start >= end => return Ok(Vec::new()),
            Some(end) => self.inner.trees.log.range(index_key(start)..index_key(end)),
            None => self.inner.trees.log.range(index_key(start)..),
        };
        let mut entries = Vec::new();
        for kv in iter {
            let (key, value) = kv.map_err(|e| logs_err("read log", &e))?;
            let index = Self::key_index(&key)?;
            entries.push(Self::decode_entry(index, &value)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        match self.inner.trees.raft_meta.get(VOTE_KEY) {
            Ok(Some(v)) => decode("vote", &v)
                .map(Some)
                .map_err(|e| vote_err("read vote", &e)),
            Ok(None) => Ok(None),
            Err(e) => Err(vote_err("read vote", &e)),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged_log_id = self.read_last_purged()?;
        let last = self
            .inner
            .trees
            .log
            .last()
            .map_err(|e| logs_err("read log", &e))?;
        let last_log_id = match last {
            Some((key, value)) => {
                let index = Self::key_index(&key)?;
                Some(Self::decode_entry(index, &value)?.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        let _w = self.inner.write.lock().await;
        let bytes = encode("vote", vote).map_err(|e| vote_err("write vote", &e))?;
        self.inner
            .trees
            .raft_meta
            .insert(VOTE_KEY, bytes)
            .map_err(|e| vote_err("write vote", &e))?;
        self.flush().await.map_err(|e| vote_err("write vote", &e))?;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        let _w = self.inner.write.lock().await;
        let bytes =
            encode("committed log id", &committed).map_err(|e| logs_err("write log", &e))?;
        // No flush: see the module docs.
        self.inner
            .trees
            .raft_meta
            .insert(COMMITTED_KEY, bytes)
            .map_err(|e| logs_err("write log", &e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        match self.inner.trees.raft_meta.get(COMMITTED_KEY) {
            Ok(Some(v)) => decode("committed log id", &v).map_err(|e| logs_err("read log", &e)),
            Ok(None) => Ok(None),
            Err(e) => Err(logs_err("read log", &e)),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> std::io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _w = self.inner.write.lock().await;
        let mut count = 0usize;
        for entry in entries {
            let bytes = encode("log entry", &entry)
                .map_err(|e| io_err(&format!("encode log entry {}", entry.log_id), e))?;
            self.inner
                .trees
                .log
                .insert(&index_key(entry.log_id.index)[..], bytes)
                .map_err(|e| logs_err("write log", &e))?;
            count += 1;
        }
        tracing::trace!(count, "log entries appended; their flush is owed");
        // Queued while the write lock is held, so callbacks reach the flusher in log order.
        self.inner.flushes.push(callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> std::io::Result<()> {
        let _w = self.inner.write.lock().await;
        let from = last_log_id.as_ref().map_or(0, |l| l.index + 1);
        tracing::debug!(from, "truncate log");
        let mut batch = sled::Batch::default();
        for key in self.inner.trees.log.range(index_key(from)..).keys() {
            batch.remove(key.map_err(|e| logs_err("read log", &e))?);
        }
        self.inner
            .trees
            .log
            .apply_batch(batch)
            .map_err(|e| logs_err("delete log", &e))?;
        self.flush().await.map_err(|e| logs_err("delete log", &e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        let _w = self.inner.write.lock().await;
        tracing::info!(
            index = log_id.index,
            "purging the Raft log up to a snapshot"
        );
        let mut batch = sled::Batch::default();
        for key in self
            .inner
            .trees
            .log
            .range(..=index_key(log_id.index))
            .keys()
        {
            batch.remove(key.map_err(|e| logs_err("read log", &e))?);
        }
        let pointer =
            encode("last purged log id", &log_id).map_err(|e| logs_err("write log", &e))?;
        let trees = &self.inner.trees;
        // The removals and the pointer commit together: a crash leaves either both or neither.
        (&trees.log, &trees.raft_meta)
            .transaction(|(log, meta)| {
                log.apply_batch(&batch)?;
                meta.insert(LAST_PURGED_KEY, pointer.clone())?;
                Ok::<(), ConflictableTransactionError<sled::Error>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) | TransactionError::Storage(e) => {
                    logs_err("delete log", &e)
                }
            })?;
        self.flush().await.map_err(|e| logs_err("delete log", &e))?;
        Ok(())
    }
}
