//! The `sm` tree writes of one apply call, made atomic across a crash by a redo record instead
//! of a `sled::Batch`.
//!
//! Why not a batch: sled 0.34 makes a batch atomic by rolling its IO buffer before and after
//! reserving a batch manifest (`PageCache::pin_log`), so every `apply_batch` seals and writes
//! two extra buffers, each a `pwrite` plus a waited `sync_file_range`. Measured on a 3-member
//! cluster under one sequential writer (release, this machine), dropping the two batches of
//! each write (log append and apply) took 343–350 → 457–479 writes/s, 3.9–4.4 → 3.0–3.2 ms
//! server CPU per write and p99 7–9 → 3.7–3.9 ms (BENCHMARKS.md, "sled batches").
//!
//! How atomicity is kept: the writes are recorded first as one value under [`REDO_KEY`] (a
//! single `insert` is one log message, recovered whole or not at all), then made one `insert`
//! or `remove` at a time, in order. sled recovers a prefix of its single write log, so after a
//! crash either the redo record is missing (and so is every write after it) or it is there and
//! [`replay`] at open redoes all of its writes (idempotent: each sets a key to a value or
//! removes it). The record carries the applied id it brings the tree to; a record whose id
//! the tree has already reached is not replayed. Large applies (over [`REDO_MAX_BYTES`]: many
//! commands in one call, whose batch cost is amortized anyway) use a `sled::Batch`, which also
//! removes the redo record so a stale one can never be replayed over newer state.

use crate::codec::{decode, encode};
use crate::db::{APPLIED_KEY, REDO_KEY};
use crate::LogId;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Above this many bytes of keys and values, an apply uses a `sled::Batch`: far below sled's
/// limit for values kept inline in its log (a quarter of its 512 KiB segment), so a redo
/// record is never a separate blob file.
pub(crate) const REDO_MAX_BYTES: usize = 32 * 1024;

/// One write: a key and its new value, or `None` to remove it.
type Write = (Vec<u8>, Option<Vec<u8>>);

/// The redo record: the applied id the writes bring the tree to, and the writes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Redo {
    applied: Option<LogId>,
    writes: Vec<Write>,
}

/// The writes of one apply call, collected in order, one per key: a later write of a key
/// replaces the earlier one in place (the commands of a batched apply each rewrite the audit
/// head, say), so the tree gets each key's last value once.
#[derive(Debug, Default)]
pub(crate) struct SmWrites {
    writes: Vec<Write>,
    /// Where each key's write is in `writes`.
    at: HashMap<Vec<u8>, usize>,
    bytes: usize,
}

impl SmWrites {
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) {
        self.put(key.as_ref(), Some(value.into()));
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.put(key.as_ref(), None);
    }

    fn put(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        let value_len = value.as_ref().map_or(0, Vec::len);
        match self.at.get(key) {
            Some(&i) => {
                let old = self.writes[i].1.as_ref().map_or(0, Vec::len);
                self.bytes = self.bytes - old + value_len;
                self.writes[i].1 = value;
            }
            None => {
                self.bytes += key.len() + value_len;
                self.at.insert(key.to_vec(), self.writes.len());
                self.writes.push((key.to_vec(), value));
            }
        }
    }

    /// Writes everything to `sm` so that a crash keeps all of it or (after [`replay`]) none of
    /// it. `applied` is the applied id the writes store under [`APPLIED_KEY`].
    pub(crate) fn commit(self, sm: &sled::Tree, applied: Option<LogId>) -> Result<(), StoreError> {
        if self.bytes > REDO_MAX_BYTES {
            let mut batch = sled::Batch::default();
            for (key, value) in self.writes {
                match value {
                    Some(v) => batch.insert(key, v),
                    None => batch.remove(key),
                }
            }
            batch.remove(REDO_KEY);
            sm.apply_batch(batch)?;
            return Ok(());
        }
        let redo = Redo {
            applied,
            writes: self.writes,
        };
        sm.insert(REDO_KEY, encode("redo record", &redo)?)?;
        write_all(sm, redo.writes)
    }
}

fn write_all(sm: &sled::Tree, writes: Vec<Write>) -> Result<(), StoreError> {
    for (key, value) in writes {
        match value {
            Some(v) => sm.insert(key, v)?,
            None => sm.remove(key)?,
        };
    }
    Ok(())
}

/// At open: redoes the writes of an apply that a crash cut short. Returns whether it did.
pub(crate) fn replay(sm: &sled::Tree) -> Result<bool, StoreError> {
    let Some(bytes) = sm.get(REDO_KEY)? else {
        return Ok(false);
    };
    let redo: Redo = decode("redo record", &bytes)?;
    let stored: Option<LogId> = match sm.get(APPLIED_KEY)? {
        Some(v) => decode("applied log id", &v)?,
        None => None,
    };
    if stored >= redo.applied {
        return Ok(false);
    }
    tracing::warn!(
        from = ?stored,
        to = ?redo.applied,
        writes = redo.writes.len(),
        "finishing a state-machine apply interrupted by a crash"
    );
    write_all(sm, redo.writes)?;
    sm.flush()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_id(index: u64) -> Option<LogId> {
        Some(crate::log_id(1, 1, index))
    }

    fn tree() -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sm = db.open_tree("sm").unwrap();
        (db, sm)
    }

    fn writes(applied: Option<LogId>, n: usize, value_len: usize) -> SmWrites {
        let mut w = SmWrites::default();
        for i in 0..n {
            w.insert(format!("k{i}"), vec![i as u8; value_len]);
        }
        w.remove("gone");
        w.insert(APPLIED_KEY, encode("applied log id", &applied).unwrap());
        w
    }

    fn applied(sm: &sled::Tree) -> Option<LogId> {
        decode("applied log id", &sm.get(APPLIED_KEY).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn a_small_commit_keeps_its_redo_record_and_a_replay_of_it_changes_nothing() {
        let (_db, sm) = tree();
        sm.insert("gone", &b"x"[..]).unwrap();
        writes(log_id(3), 4, 10).commit(&sm, log_id(3)).unwrap();
        assert!(sm.get(REDO_KEY).unwrap().is_some());
        assert_eq!(sm.get("k2").unwrap().unwrap().as_ref(), &[2u8; 10][..]);
        assert!(sm.get("gone").unwrap().is_none());
        assert_eq!(applied(&sm), log_id(3));
        // Already applied: nothing to replay.
        assert!(!replay(&sm).unwrap());
    }

    #[test]
    fn a_torn_commit_is_finished_by_replay() {
        let (_db, sm) = tree();
        writes(log_id(1), 2, 10).commit(&sm, log_id(1)).unwrap();
        sm.insert("gone", &b"x"[..]).unwrap();
        // A crash after the redo record and the first write of the next apply.
        let next = writes(log_id(2), 3, 20);
        let redo = Redo {
            applied: log_id(2),
            writes: next.writes.clone(),
        };
        sm.insert(REDO_KEY, encode("redo record", &redo).unwrap())
            .unwrap();
        let (k, v) = &next.writes[0];
        sm.insert(k, v.clone().unwrap()).unwrap();
        assert_eq!(applied(&sm), log_id(1));

        assert!(replay(&sm).unwrap());
        assert_eq!(applied(&sm), log_id(2));
        for i in 0..3u8 {
            assert_eq!(
                sm.get(format!("k{i}")).unwrap().unwrap().as_ref(),
                &[i; 20][..]
            );
        }
        assert!(sm.get("gone").unwrap().is_none());
        assert!(!replay(&sm).unwrap(), "a second replay finds nothing to do");
    }

    #[test]
    fn a_key_written_twice_is_written_once_with_its_last_value() {
        let (_db, sm) = tree();
        sm.insert("gone", &b"x"[..]).unwrap();
        let mut w = SmWrites::default();
        w.insert("head", &b"1"[..]);
        w.insert("a", &b"a"[..]);
        w.insert("head", &b"22"[..]);
        w.remove("gone");
        w.insert("gone", &b"back"[..]);
        w.insert("b", &b"b"[..]);
        w.remove("b");
        assert_eq!(w.writes.len(), 4, "{:?}", w.writes);
        assert_eq!(
            w.bytes,
            "head22".len() + "aa".len() + "goneback".len() + "b".len()
        );
        w.commit(&sm, log_id(1)).unwrap();
        assert_eq!(sm.get("head").unwrap().unwrap().as_ref(), b"22");
        assert_eq!(sm.get("gone").unwrap().unwrap().as_ref(), b"back");
        assert!(sm.get("b").unwrap().is_none());
        let redo: Redo = decode("redo record", &sm.get(REDO_KEY).unwrap().unwrap()).unwrap();
        assert_eq!(redo.writes.len(), 4);
    }

    #[test]
    fn a_large_commit_is_one_batch_and_drops_a_stale_redo_record() {
        let (_db, sm) = tree();
        writes(log_id(1), 2, 10).commit(&sm, log_id(1)).unwrap();
        assert!(sm.get(REDO_KEY).unwrap().is_some());
        let big = writes(log_id(2), 8, REDO_MAX_BYTES / 4);
        assert!(big.bytes > REDO_MAX_BYTES);
        big.commit(&sm, log_id(2)).unwrap();
        assert!(sm.get(REDO_KEY).unwrap().is_none());
        assert_eq!(applied(&sm), log_id(2));
        assert_eq!(sm.get("k7").unwrap().unwrap().len(), REDO_MAX_BYTES / 4);
        assert!(!replay(&sm).unwrap());
    }
}
