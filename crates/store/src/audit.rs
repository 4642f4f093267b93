//! The audit trail on disk: record and index keys in the `sm` tree, and [`AuditLog`], the reader
//! the server queries, follows and verifies.
//!
//! Records live in the `sm` tree under `a/<seq u64 BE>` (written by apply in the same batch as
//! the state change), so the trail and the state can never disagree. A secondary index by
//! username, `i/<len u16 BE><username><seq u64 BE>` → empty, is maintained in the same batches
//! (and rebuilt on snapshot install) so that `List` filtered by user reads only that user's
//! records. Neither is loaded into memory: the in-memory `State` tracks only the head.

use crate::codec::decode;
use crate::{SharedState, StoreError};
use custos_model::audit::{AuditHead, AuditQuery, AuditRecord, ChainError, ChainVerifier};
use custos_model::{RecordKey, AUDIT_KEY_PREFIX};
use std::ops::Bound;

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
    /// The record `through` asked for (or the last), with its hash, when it exists.
    pub at: Option<(u64, custos_model::AuditHash)>,
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

    /// Checks the chain of every kept record up to `through` (the last record when `None` or
    /// beyond it) and, when checking to the end, that the trail ends at the head.
    pub fn verify(&self, through: Option<u64>) -> Result<AuditVerification, StoreError> {
        let head = self.head();
        let last = head.last_seq();
        let through = through.unwrap_or(last).min(last);
        let mut verifier = ChainVerifier::default();
        let mut error: Option<ChainError> = None;
        let start = record_key(head.first_seq);
        let end = record_key(through);
        if head.first_seq <= through {
            for kv in self
                .sm
                .range::<&[u8], _>((Bound::Included(&start[..]), Bound::Included(&end[..])))
            {
                let (_, value) = kv?;
                let r = decode_record(&value)?;
                if let Err(e) = verifier.push(&r) {
                    error = Some(e);
                    break;
                }
            }
        }
        if error.is_none() && through == last {
            error = verifier.finish(&head).err();
        }
        if error.is_none() && verifier.checked != through.saturating_sub(head.first_seq) + 1 {
            // Some record in the range is missing (the range scan skips absent keys).
            if through >= head.first_seq {
                error = Some(ChainError::HeadMismatch {
                    expected: through,
                    found: verifier.last().map_or(0, |(s, _)| s),
                });
            }
        }
        Ok(AuditVerification {
            head,
            checked: verifier.checked,
            at: verifier.last(),
            error: error.map(|e| e.to_string()),
        })
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
