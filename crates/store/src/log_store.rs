//! The Raft log and vote on sled: openraft's `RaftLogStorage` (storage-v2).
//!
//! Durability: openraft is told a vote or log entry is saved only after `sled::Db::flush`
//! has returned for it. sled 0.34 keeps writes in in-process buffers until a flush, so even a
//! plain process kill loses unflushed writes; the background flusher (every 500 ms) is not
//! relied on for anything that is acknowledged.
//!
//! - `save_vote`: insert, flush, return.
//! - `append`: the entries of the call are inserted one by one in index order (each readable at
//!   once), then one flush covers the whole call, then the `LogFlushed` callback fires, then
//!   `append` returns. Not a `sled::Batch`: a batch costs two extra buffer writes with a waited
//!   `sync_file_range` each (`src/sm_writes.rs` has the measurement), and the call need not be
//!   atomic: sled recovers a prefix of its write log, so a crash before the flush leaves a
//!   prefix of the entries, which is a valid (shorter) log, and nothing unflushed was
//!   acknowledged.
//! - `truncate`: one batch removing `[index, ∞)`, then a flush.
//! - `purge`: one sled transaction over `log` and `raft_meta` removes `[0, index]` and records
//!   the purge pointer together, so the pointer never claims more or less than was removed;
//!   then a flush.
//! - `save_committed`: insert without a flush. Losing the newest committed id in a crash only
//!   means less is re-applied at start until the leader re-sends its commit index; nothing is
//!   acknowledged on the strength of it.
//!
//! All writes are serialized by an async mutex held across the write *and* its flush, so no
//! later vote/append/truncate/purge can land before an earlier one has completed, even through
//! clones of the store.

use crate::codec::{decode, encode};
use crate::db::{Trees, COMMITTED_KEY, INCARNATION_KEY, LAST_PURGED_KEY, VOTE_KEY};
use crate::{sto_err, StoreError, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

type NodeId = u64;

/// The Raft log store of one node. Cheap to clone; clones share the database and the write
/// lock, and serve as log readers for replication.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    trees: Trees,
    /// Serializes every write (and its flush).
    write: tokio::sync::Mutex<()>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn logs_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    sto_err(ErrorSubject::Logs, verb, e)
}

fn vote_err(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    sto_err(ErrorSubject::Vote, verb, e)
}

impl LogStore {
    pub(crate) fn new(trees: Trees) -> LogStore {
        LogStore {
            inner: Arc::new(Inner {
                trees,
                write: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn read_last_purged(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match self.inner.trees.raft_meta.get(LAST_PURGED_KEY) {
            Ok(Some(v)) => decode("last purged log id", &v)
                .map(Some)
                .map_err(|e| logs_err(ErrorVerb::Read, &e)),
            Ok(None) => Ok(None),
            Err(e) => Err(logs_err(ErrorVerb::Read, &e)),
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

    pub(crate) fn last_purged_blocking(&self) -> Result<Option<LogId<NodeId>>, StoreError> {
        match self.inner.trees.raft_meta.get(LAST_PURGED_KEY)? {
            Some(v) => Ok(Some(decode("last purged log id", &v)?)),
            None => Ok(None),
        }
    }

    fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError<NodeId>> {
        decode("log entry", bytes)
            .map_err(|e| sto_err(ErrorSubject::LogIndex(index), ErrorVerb::Read, &e))
    }

    fn key_index(key: &[u8]) -> Result<u64, StorageError<NodeId>> {
        <[u8; 8]>::try_from(key)
            .map(u64::from_be_bytes)
            .map_err(|_| {
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("log key of {} bytes, expected 8", key.len()),
                );
                logs_err(ErrorVerb::Read, &e)
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
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
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
            let (key, value) = kv.map_err(|e| logs_err(ErrorVerb::Read, &e))?;
            let index = Self::key_index(&key)?;
            entries.push(Self::decode_entry(index, &value)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.read_last_purged()?;
        let last = self
            .inner
            .trees
            .log
            .last()
            .map_err(|e| logs_err(ErrorVerb::Read, &e))?;
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

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let _w = self.inner.write.lock().await;
        let bytes = encode("vote", vote).map_err(|e| vote_err(ErrorVerb::Write, &e))?;
        self.inner
            .trees
            .raft_meta
            .insert(VOTE_KEY, bytes)
            .map_err(|e| vote_err(ErrorVerb::Write, &e))?;
        self.flush()
            .await
            .map_err(|e| vote_err(ErrorVerb::Write, &e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        match self.inner.trees.raft_meta.get(VOTE_KEY) {
            Ok(Some(v)) => decode("vote", &v)
                .map(Some)
                .map_err(|e| vote_err(ErrorVerb::Read, &e)),
            Ok(None) => Ok(None),
            Err(e) => Err(vote_err(ErrorVerb::Read, &e)),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let _w = self.inner.write.lock().await;
        let bytes =
            encode("committed log id", &committed).map_err(|e| logs_err(ErrorVerb::Write, &e))?;
        // No flush: see the module docs.
        self.inner
            .trees
            .raft_meta
            .insert(COMMITTED_KEY, bytes)
            .map_err(|e| logs_err(ErrorVerb::Write, &e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match self.inner.trees.raft_meta.get(COMMITTED_KEY) {
            Ok(Some(v)) => {
                decode("committed log id", &v).map_err(|e| logs_err(ErrorVerb::Read, &e))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(logs_err(ErrorVerb::Read, &e)),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _w = self.inner.write.lock().await;
        let mut count = 0usize;
        for entry in entries {
            let bytes = encode("log entry", &entry)
                .map_err(|e| sto_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, &e))?;
            self.inner
                .trees
                .log
                .insert(&index_key(entry.log_id.index)[..], bytes)
                .map_err(|e| logs_err(ErrorVerb::Write, &e))?;
            count += 1;
        }
        tracing::trace!(count, "log entries appended, flushing");
        // One flush for the whole call; the callback fires only once it has succeeded.
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(logs_err(ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let _w = self.inner.write.lock().await;
        tracing::debug!(%log_id, "truncate log");
        let mut batch = sled::Batch::default();
        for key in self.inner.trees.log.range(index_key(log_id.index)..).keys() {
            batch.remove(key.map_err(|e| logs_err(ErrorVerb::Read, &e))?);
        }
        self.inner
            .trees
            .log
            .apply_batch(batch)
            .map_err(|e| logs_err(ErrorVerb::Delete, &e))?;
        self.flush()
            .await
            .map_err(|e| logs_err(ErrorVerb::Delete, &e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let _w = self.inner.write.lock().await;
        tracing::debug!(%log_id, "purge log");
        let mut batch = sled::Batch::default();
        for key in self
            .inner
            .trees
            .log
            .range(..=index_key(log_id.index))
            .keys()
        {
            batch.remove(key.map_err(|e| logs_err(ErrorVerb::Read, &e))?);
        }
        let pointer =
            encode("last purged log id", &log_id).map_err(|e| logs_err(ErrorVerb::Write, &e))?;
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
                    logs_err(ErrorVerb::Delete, &e)
                }
            })?;
        self.flush()
            .await
            .map_err(|e| logs_err(ErrorVerb::Delete, &e))?;
        Ok(())
    }
}
