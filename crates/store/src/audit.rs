//! The audit trail on disk: record and index keys in the `sm` tree, and [`AuditLog`], the reader
//! the server queries, follows and verifies.
//!
//! Records live in the `sm` tree under `a/<seq u64 BE>` (written by apply in the same batch as
//! the state change), so the trail and the state can never disagree. A secondary index by
//! username, `i/<len u16 BE><username><seq u64 BE>` → empty, is maintained in the same batches
//! (and rebuilt on snapshot install) so that `List` filtered by user reads only that user's
//! records. Neither is loaded into memory: the in-memory `State` tracks only the head.
//!
//! Verification is incremental: the `audit` tree keeps this node's verified checkpoint (the
//! last record a clean check reached, and its hash), and [`AuditLog::verify`] reads only the
//! records after it, so a check costs what was appended since the last one, not the trail's
//! length. [`AuditLog::verify_full`] re-hashes every kept record. The checkpoint is local
//! (never replicated, never in a snapshot) and cleared by a snapshot install; ARCHITECTURE.md,
//! "Audit verification", says what it proves.

use crate::codec::{decode, encode};
use crate::{SharedState, StoreError};
use custos_model::audit::{AuditHead, AuditQuery, AuditRecord, ChainError, ChainVerifier};
use custos_model::{AuditHash, RecordKey, AUDIT_KEY_PREFIX};
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The key prefix of the username index.
pub(crate) const INDEX_PREFIX: &[u8] = b"i/";

/// The index prefix of one username, or `None` when the name is too long to index (such
/// records are still found by a scan).
fn user_prefix(username: &str) -> Option<Vec<u8>> {
    let len = u16::try_from(username.len()).ok()?;
    let mut key = Vec::with_capacity(INDEX_PREFIX.len() + 2 + username.len() + 8);
    key.extend_from_slice(INDEX_PREFIX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(username.as_bytes());
    Some(key)
}

/// The index key of a record, if its username can be indexed.
pub(crate) fn index_key(username: &str, seq: u64) -> Option<Vec<u8>> {
    let mut key = user_prefix(username)?;
    key.extend_from_slice(&seq.to_be_bytes());
    Some(key)
}

/// The largest number of records one `list` call examines before it returns what it found with
/// a cursor to continue from, so a query that matches little cannot hold a node for long.
pub const MAX_SCAN: usize = 200_000;

/// One page of a query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Where the next page starts (pass it as `cursor`), or `None` at the end.
    pub next: Option<u64>,
}

/// A chain check of one node's trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    pub head: AuditHead,
    /// Records checked.
    pub checked: u64,
    /// The record `through` asked for (or the last), with its hash, when it exists and the
    /// check reached it.
    pub at: Option<(u64, AuditHash)>,
    /// The verified checkpoint the check found (incremental checks start there).
    pub checkpoint: Option<(u64, AuditHash)>,
    /// Whether every kept record was re-hashed ([`AuditLog::verify_full`]).
    pub full: bool,
    /// Why the chain does not verify.
    pub error: Option<String>,
}

/// Reads the audit trail of one node. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    pub(crate) sm: sled::Tree,
    pub(crate) state: SharedState,
    /// The head of what the tree holds (the state's own head runs ahead of it while an apply
    /// writes its records).
    pub(crate) stored_head: std::sync::Arc<std::sync::Mutex<AuditHead>>,
    pub(crate) appended: tokio::sync::watch::Receiver<u64>,
    /// The `audit` tree: this node's verified checkpoint.
    pub(crate) checkpoint: sled::Tree,
    /// Snapshot installs so far (each replaces the trail and clears the checkpoint).
    pub(crate) installs: Arc<AtomicU64>,
}

fn record_key(seq: u64) -> Vec<u8> {
    RecordKey::Audit(seq).encode()
}

fn seq_of_index_key(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[tail..].try_into().ok()?))
}

impl AuditLog {
    /// Where the trail stands on this node: every record up to it is in the tree. Taken under
    /// the state read lock, so a read that starts during a snapshot install (which holds the
    /// write lock while it rewrites the tree) waits for it.
    pub fn head(&self) -> AuditHead {
        let _state = self.state.read().unwrap_or_else(|p| p.into_inner());
        *self.stored_head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes whenever records are appended (to the last sequence number).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.clone()
    }

    /// One record, if it is kept.
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        match self.sm.get(record_key(seq))? {
            Some(v) => Ok(Some(decode_record(&v)?)),
            None => Ok(None),
        }
    }

    /// Records matching `query`, up to `limit`, in sequence order (newest first when asked).
    /// `cursor` is the `next` of the previous page. Reads at most [`MAX_SCAN`] records per
    /// call; a page may then be short while `next` says where to go on.
    pub fn list(
        &self,
        query: &AuditQuery,
        cursor: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<AuditPage, StoreError> {
        let limit = limit.max(1);
        // The sequence bounds of this page: the query's range, narrowed by the cursor.
        let mut lo = query.from_seq.unwrap_or(1).max(1);
        let mut hi = query.to_seq.unwrap_or(u64::MAX);
        match (cursor, newest_first) {
            (Some(c), false) => lo = lo.max(c),
            (Some(c), true) => hi = hi.min(c),
            (None, _) => {}
        }
        let mut page = AuditPage::default();
        if lo > hi {
            return Ok(page);
        }
        let records = self.scan(query, lo, hi, newest_first);
        let mut scanned = 0usize;
        let mut last_seen = None;
        let mut more = true;
        for r in records {
            let r = r?;
            scanned += 1;
            last_seen = Some(r.seq);
            if query.matches(&r) {
                page.records.push(r);
            }
            if page.records.len() >= limit || scanned >= MAX_SCAN {
                more = false;
                break;
            }
        }
        // Stopped early: continue after the last record seen.
        if !more {
            page.next = last_seen.and_then(|s| {
                if newest_first {
                    s.checked_sub(1).filter(|n| *n >= lo)
                } else {
                    s.checked_add(1).filter(|n| *n <= hi)
                }
            });
        }
        Ok(page)
    }

    /// The records with sequence numbers in `lo..=hi`, through the username index when the
    /// query names a user.
    fn scan<'a>(
        &'a self,
        query: &AuditQuery,
        lo: u64,
        hi: u64,
        newest_first: bool,
    ) -> Box<dyn Iterator<Item = Result<AuditRecord, StoreError>> + 'a> {
        fn ordered<'a, T: 'a>(
            iter: impl DoubleEndedIterator<Item = T> + 'a,
            rev: bool,
        ) -> Box<dyn Iterator<Item = T> + 'a> {
            if rev {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            }
        }
        match query.username.as_deref().and_then(user_prefix) {
            Some(prefix) => {
                let mut start = prefix.clone();
                start.extend_from_slice(&lo.to_be_bytes());
                let mut end = prefix;
                end.extend_from_slice(&hi.to_be_bytes());
                let keys = self.sm.range(start..=end).keys();
                Box::new(ordered(keys, newest_first).filter_map(move |key| {
                    let seq = match key {
                        Ok(key) => seq_of_index_key(&key)?,
                        Err(e) => return Some(Err(e.into())),
                    };
                    // An index entry always has its record (same batch); skip defensively.
                    self.get(seq).transpose()
                }))
            }
            None => {
                let entries = self.sm.range(record_key(lo)..=record_key(hi));
                Box::new(ordered(entries, newest_first).map(|kv| decode_record(&kv?.1)))
            }
        }
    }

    /// This node's verified checkpoint: the last record a verification reached with the chain
    /// intact, and its hash. `None` before the first verification and after a snapshot install.
    pub fn checkpoint(&self) -> Result<Option<(u64, AuditHash)>, StoreError> {
        Ok(read_checkpoint(&self.checkpoint)?.map(|c| (c.seq, c.hash)))
    }

    /// Checks the chain up to `through` (the last record when `None` or beyond it) from this
    /// node's verified checkpoint: only the records after it are read, the first of them must
    /// name the checkpoint's hash as its `prev_hash` (or the checkpoint record itself, when
    /// `through` is before it, must still hash to it). Without a usable checkpoint (none yet,
    /// or retention dropped the records after it) it checks every kept record. A clean check
    /// advances the checkpoint. When checking to the end, also checks that the trail ends at
    /// the head.
    pub fn verify(&self, through: Option<u64>) -> Result<AuditVerification, StoreError> {
        self.check(through, false, None)
    }

    /// Checks the chain from a checkpoint the caller holds (`seq`, `hash`: the last record of
    /// an export, say) up to `through`, as [`verify`](Self::verify) does from the node's own;
    /// the node's checkpoint is neither used nor moved.
    pub fn verify_from(
        &self,
        anchor: (u64, AuditHash),
        through: Option<u64>,
    ) -> Result<AuditVerification, StoreError> {
        let (seq, hash) = anchor;
        self.check(through, false, Some(Checkpoint { seq, hash }))
    }

    /// Checks the chain of every kept record up to `through`, re-hashing each, whatever the
    /// checkpoint says; the checkpoint must still agree with the records (its record's hash, or
    /// the first kept record's `prev_hash` when retention dropped the checkpoint's record).
    pub fn verify_full(&self, through: Option<u64>) -> Result<AuditVerification, StoreError> {
        self.check(through, true, None)
    }

    /// `given`: a caller's checkpoint instead of the stored one, which is then left alone.
    fn check(
        &self,
        through: Option<u64>,
        full: bool,
        given: Option<Checkpoint>,
    ) -> Result<AuditVerification, StoreError> {
        let installs = self.installs.load(Ordering::SeqCst);
        let head = self.head();
        let last = head.last_seq();
        let through = through.unwrap_or(last).min(last);
        let checkpoint = match given {
            Some(c) => Some(c),
            None => read_checkpoint(&self.checkpoint)?,
        };
        let mut error: Option<String> = None;
        // Records the checkpoint names may be gone from the front (retention) but never from
        // the end: the trail only grows there.
        if let Some(c) = checkpoint.filter(|c| c.seq > last) {
            error = Some(format!(
                "this node verified the chain through record {} but the trail ends at record \
                 {last}: records were removed from its end",
                c.seq
            ));
        }
        // A checkpoint still linked to the kept records: its record is kept, or is the one
        // right before the first kept (its hash is then the first kept record's `prev_hash`).
        let linked =
            checkpoint.filter(|c| c.seq <= last && c.seq.saturating_add(1) >= head.first_seq);
        let (lo, mut verifier) = match linked {
            Some(c) if c.seq < head.first_seq => {
                (head.first_seq, ChainVerifier::anchored(c.seq, c.hash))
            }
            Some(c) if !full => (c.seq.min(through), ChainVerifier::default()),
            _ => (head.first_seq, ChainVerifier::default()),
        };
        // Incremental: through the checkpoint's record when `through` is before it, so the hash
        // reported for `through` is tied to the checkpoint.
        let hi = match linked {
            Some(c) if !full && c.seq >= head.first_seq => through.max(c.seq),
            _ => through,
        };
        let mut at = None;
        let mut chain: Option<ChainError> = None;
        if error.is_none() && lo <= hi {
            let start = record_key(lo);
            let end = record_key(hi);
            for kv in self
                .sm
                .range::<&[u8], _>((Bound::Included(&start[..]), Bound::Included(&end[..])))
            {
                let (_, value) = kv?;
                let r = decode_record(&value)?;
                if let Err(e) = verifier.push(&r) {
                    chain = Some(e);
                    break;
                }
                if let Some(c) = checkpoint.filter(|c| c.seq == r.seq && c.hash != r.hash) {
                    error = Some(format!(
                        "record {}: its hash is not the one this node verified earlier ({})",
                        r.seq, c.hash
                    ));
                    break;
                }
                if r.seq == through {
                    at = Some((r.seq, r.hash));
                }
            }
        }
        if error.is_none() && chain.is_none() && hi == last {
            chain = verifier.finish(&head).err();
        }
        let expected = (hi + 1).saturating_sub(lo.max(head.first_seq));
        if error.is_none() && chain.is_none() && verifier.checked != expected {
            // Some record in the range is missing (the range scan skips absent keys).
            chain = Some(ChainError::HeadMismatch {
                expected: hi,
                found: verifier.last().map_or(0, |(s, _)| s),
            });
        }
        let error = error.or(chain.map(|e| e.to_string()));
        if error.is_none() && given.is_none() {
            if let Some((seq, hash)) = verifier.last() {
                self.advance_checkpoint(installs, Checkpoint { seq, hash })?;
            }
        }
        Ok(AuditVerification {
            head,
            checked: verifier.checked,
            at,
            checkpoint: checkpoint.map(|c| (c.seq, c.hash)),
            full,
            error,
        })
    }

    /// Moves the checkpoint forward to `to` (never back), unless a snapshot install replaced
    /// the trail since the check that reached `to` began. Under the state read lock, which an
    /// install holds for writing while it clears the checkpoint and rewrites the trail.
    fn advance_checkpoint(&self, installs: u64, to: Checkpoint) -> Result<(), StoreError> {
        let _state = self.state.read().unwrap_or_else(|p| p.into_inner());
        if self.installs.load(Ordering::SeqCst) != installs {
            return Ok(());
        }
        let value = encode("audit checkpoint", &to)?;
        let mut failed = None;
        self.checkpoint.fetch_and_update(CHECKPOINT_KEY, |old| {
            let newer = match old.map(|v| decode::<Checkpoint>("audit checkpoint", v)) {
                Some(Ok(c)) => to.seq > c.seq,
                Some(Err(e)) => {
                    failed = Some(e);
                    false
                }
                None => true,
            };
            if newer {
                Some(value.clone())
            } else {
                old.map(<[u8]>::to_vec)
            }
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The key of the verified checkpoint in the `audit` tree.
pub(crate) const CHECKPOINT_KEY: &[u8] = b"verified";

/// A node's verified checkpoint (local, never replicated; see [`AuditLog::checkpoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    seq: u64,
    hash: AuditHash,
}

fn read_checkpoint(tree: &sled::Tree) -> Result<Option<Checkpoint>, StoreError> {
    match tree.get(CHECKPOINT_KEY)? {
        Some(v) => Ok(Some(decode("audit checkpoint", &v)?)),
        None => Ok(None),
    }
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<AuditRecord, StoreError> {
    match decode::<custos_model::Record>("audit record", bytes)? {
        custos_model::Record::Audit(r) => Ok(r),
        other => Err(StoreError::Inconsistent(format!(
            "an audit key holds a {:?} record",
            other.key()
        ))),
    }
}

/// Whether `key` is an audit record or index key (never loaded into the in-memory state).
pub(crate) fn is_audit_key(key: &[u8]) -> bool {
    key.starts_with(AUDIT_KEY_PREFIX) || key.starts_with(INDEX_PREFIX)
}
