//! Backup files: a consistent copy of the replicated state as of one applied log id, and
//! restoring one into an empty data directory as the seed of a new cluster.
//!
//! Layout (format 2): `CUSTOSBK`, format (u32 BE), header length (u64 BE), the bincode
//! [`BackupHeader`], data length (u64 BE), the data, then the SHA-256 of every byte before it.
//! The data is a snapshot file (`src/snapfile.rs`: the records framed one by one, with their
//! count and a checksum of its own), the same records a Raft snapshot carries: roles, volumes,
//! nodes, remembered requests, audit head and records. Format 1 held the data as one bincode
//! vector, which had to be built and parsed whole in memory.
//!
//! Neither side holds the backup in memory. Taking one writes a snapshot file of a consistent
//! view (as `build_snapshot` does: the audit trail streamed from the tree), unlinks it and then
//! hands it out in chunks ([`BackupStream`]). Restoring reads the file twice, record by record:
//! once to check all of it (both checksums, the counts, every record decodes) before anything is
//! written, then to copy the records into a snapshot file of the new store, which is installed
//! as a leader's snapshot is.

use crate::codec::{decode, encode, VALUE_FORMAT};
use crate::snapfile::{self, SnapshotFileError};
use crate::state_machine::StateMachineStore;
use crate::{LogId, Member, SnapshotMeta, StoreError, StoredMembership, TypeConfig, Vote};
use custos_model::Record;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Membership, RaftLogReader};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

const MAGIC: &[u8; 8] = b"CUSTOSBK";

/// The backup file format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 2;

/// The largest header a reader accepts (a header is a membership and a few numbers).
const MAX_HEADER: u64 = 1 << 20;

/// How many bytes a restore reads from the file at a time.
const READ_BUFFER: usize = 1 << 20;

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The store's value format the records are encoded in.
    pub value_format: u8,
    /// The last log entry the state reflects.
    pub last_log_id: LogId,
    /// The membership of the cluster the backup was taken from.
    pub membership: StoredMembership,
    /// Milliseconds since the Unix epoch when the backup was taken (the caller's clock).
    pub taken_ms: u64,
    /// How many records (state and audit) the data holds.
    pub records: u64,
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Backup(message.into())
}

fn damaged() -> StoreError {
    bad(
        "the backup file is damaged (its checksum does not match): it was truncated or \
         changed after it was written",
    )
}

/// The bytes before the data: magic, format, header and the data length.
fn prefix(header: &BackupHeader, data_len: u64) -> Result<Vec<u8>, StoreError> {
    let header = encode("backup header", header)?;
    let mut out = Vec::with_capacity(header.len() + 28);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&BACKUP_FORMAT.to_be_bytes());
    out.extend_from_slice(&(header.len() as u64).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&data_len.to_be_bytes());
    Ok(out)
}

/// A backup being handed out: the prefix, the data read from an unlinked snapshot file, then
/// the digest, in chunks of bounded size.
pub struct BackupStream {
    header: BackupHeader,
    size: u64,
    /// Bytes to send before reading on: the prefix, and at the end the digest.
    pending: Vec<u8>,
    pending_at: usize,
    data: tokio::fs::File,
    remaining: u64,
    hash: Sha256,
    digest_sent: bool,
}

impl BackupStream {
    /// What the backup says about itself.
    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// The size of the whole backup file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The next piece of the file (at most `max` bytes, at least 1), or `None` after the last.
    pub async fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, StoreError> {
        let max = max.max(1);
        if self.pending_at == self.pending.len() && self.remaining == 0 && !self.digest_sent {
            // Everything before the digest is out: the digest is what remains to send.
            self.digest_sent = true;
            self.pending = std::mem::take(&mut self.hash).finalize().to_vec();
            self.pending_at = 0;
        }
        if self.pending_at < self.pending.len() {
            let end = self.pending.len().min(self.pending_at + max);
            let chunk = self.pending[self.pending_at..end].to_vec();
            self.pending_at = end;
            if !self.digest_sent {
                self.hash.update(&chunk);
            }
            return Ok(Some(chunk));
        }
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = self.remaining.min(max as u64) as usize;
        let mut chunk = vec![0; want];
        let mut filled = 0;
        while filled < want {
            let n = self
                .data
                .read(&mut chunk[filled..])
                .await
                .map_err(|e| bad(format!("reading the backup's data: {e}")))?;
            if n == 0 {
                return Err(bad("the backup's data file ended early"));
            }
            filled += n;
        }
        self.remaining -= want as u64;
        self.hash.update(&chunk);
        Ok(Some(chunk))
    }
}

/// Counts what passes through a reader into a SHA-256.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads the backup file at `path` record by record, checking all of it, and hands every
/// record to `visit`. Returns the header once the whole file has verified; an error from
/// `visit`, or any damage, stops it.
fn read_backup(
    path: &Path,
    mut visit: impl FnMut(Record) -> Result<(), StoreError>,
) -> Result<BackupHeader, StoreError> {
    let file = std::fs::File::open(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let mut input = Hashing {
        inner: BufReader::with_capacity(READ_BUFFER, file),
        hash: Sha256::new(),
    };
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("not a custos backup file (cut short)"),
        _ => bad(format!("{}: {e}", path.display())),
    };
    let mut magic = [0; 8];
    input.read_exact(&mut magic).map_err(io)?;
    if &magic != MAGIC {
        return Err(bad("not a custos backup file"));
    }
    let mut word = [0; 4];
    input.read_exact(&mut word).map_err(io)?;
    let format = u32::from_be_bytes(word);
    if format != BACKUP_FORMAT {
        return Err(bad(format!(
            "backup format {format}; this build reads format {BACKUP_FORMAT}"
        )));
    }
    let mut len = [0; 8];
    input.read_exact(&mut len).map_err(io)?;
    let header_len = u64::from_be_bytes(len);
    if header_len > MAX_HEADER {
        return Err(damaged());
    }
    let mut header = vec![0; header_len as usize];
    input.read_exact(&mut header).map_err(|_| damaged())?;
    let header: BackupHeader = decode("backup header", &header).map_err(|_| damaged())?;
    if header.value_format != VALUE_FORMAT {
        return Err(bad(format!(
            "the backup's records are in value format {}; this build reads {VALUE_FORMAT}",
            header.value_format
        )));
    }
    input.read_exact(&mut len).map_err(|_| damaged())?;
    let data_len = u64::from_be_bytes(len);

    let mut data = snapfile::Reader::new((&mut input).take(data_len)).map_err(|e| match e {
        SnapshotFileError::Io { .. } => bad(e.to_string()),
        _ => damaged(),
    })?;
    loop {
        let index = data.count();
        let record: Record = match data.next_encoded() {
            Ok(Some(bytes)) => decode("backup record", bytes)
                .map_err(|source| SnapshotFileError::Record { index, source })?,
            Ok(None) => break,
            Err(SnapshotFileError::Io { path, source }) => {
                return Err(bad(format!("{path}: {source}")))
            }
            Err(_) => return Err(damaged()),
        };
        visit(record)?;
    }
    if data.count() != header.records {
        return Err(bad("the backup's record count does not match its header"));
    }
    drop(data);
    let Hashing { inner, hash } = input;
    let mut inner = inner;
    let mut digest = [0; 32];
    inner.read_exact(&mut digest).map_err(|_| damaged())?;
    if hash.finalize()[..] != digest {
        return Err(damaged());
    }
    let mut extra = [0; 1];
    if inner.read(&mut extra).map_err(io)? != 0 {
        return Err(damaged());
    }
    Ok(header)
}

/// A backup file, verified whole.
pub struct Backup {
    pub header: BackupHeader,
    path: PathBuf,
}

impl Backup {
    /// Opens and verifies the backup file at `path` (magic, format, both checksums, counts,
    /// decodable records), reading it record by record.
    pub async fn open(path: &Path) -> Result<Backup, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let header = read_backup(&path, |_| Ok(()))?;
            Ok(Backup { header, path })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl StateMachineStore {
    /// A handle that writes backups of this state machine while Raft runs it.
    pub fn backup_source(&self) -> BackupSource {
        BackupSource {
            sm: self.snapshot_view(),
        }
    }
}

/// Writes backup files of a running state machine.
pub struct BackupSource {
    sm: crate::state_machine::SnapshotView,
}

impl BackupSource {
    /// A backup of the state as applied now (the same consistent view a snapshot takes),
    /// ready to be read in chunks.
    pub async fn backup(&self, taken_ms: u64) -> Result<BackupStream, StoreError> {
        let sm = self.sm.clone();
        let (header, file, data_len) = tokio::task::spawn_blocking(move || {
            let (file, applied, membership, records, data_len) = sm.write_unlinked("backup")?;
            let last_log_id =
                applied.ok_or_else(|| bad("nothing has been applied yet: no state to back up"))?;
            let header = BackupHeader {
                value_format: VALUE_FORMAT,
                last_log_id,
                membership,
                taken_ms,
                records,
            };
            Ok::<_, StoreError>((header, file, data_len))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let prefix = prefix(&header, data_len)?;
        Ok(BackupStream {
            size: prefix.len() as u64 + data_len + 32,
            header,
            pending: prefix,
            pending_at: 0,
            data: tokio::fs::File::from_std(file),
            remaining: data_len,
            hash: Sha256::new(),
            digest_sent: false,
        })
    }
}

/// Seeds the empty data directory `dir` with `backup`, as the only voter `node` (at
/// `member`'s addresses) of a new cluster that continues the backed-up log: the state is
/// installed as a snapshot at the backup's log id, the log is purged up to it, and the vote
/// carries its term, so the node elects itself and others join it.
pub async fn restore(
    dir: &Path,
    backup: &Backup,
    node: u64,
    member: Member,
) -> Result<(), StoreError> {
    let (mut log, mut sm) = crate::open(dir).await?;
    if log
        .get_log_state()
        .await
        .map_err(|e| bad(e.to_string()))?
        .last_log_id
        .is_some()
        || log
            .read_vote()
            .await
            .map_err(|e| bad(e.to_string()))?
            .is_some()
        || sm.applied_blocking().is_some()
    {
        return Err(bad(format!(
            "{} already holds Raft state: restore into an empty data directory",
            dir.display()
        )));
    }
    let last = backup.header.last_log_id;
    let membership = Membership::new(
        vec![BTreeSet::from([node])],
        BTreeMap::from([(node, member)]),
    )
    .map_err(|e| bad(format!("the restored membership: {e}")))?;
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
    };
    // The records go through a snapshot file, as an install from a leader does, copied one by
    // one from the backup (checked again on the way: the file may have changed since `open`).
    // The new cluster's nodes register afresh: the incarnations of the old cluster's data
    // directories mean nothing to it.
    let path = sm.snapshot_dir().join(format!(
        "{}.restore",
        crate::state_machine::snapshot_label(&meta)
    ));
    let source = backup.path.clone();
    let expected = backup.header.clone();
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StoreError> {
        let copy = || -> Result<(), StoreError> {
            let mut w = snapfile::Writer::create(&path)?;
            let header = read_backup(&source, |record| {
                let record = match record {
                    Record::Node(mut n) => {
                        n.incarnation = 0;
                        Record::Node(n)
                    }
                    other => other,
                };
                Ok(w.record(&record)?)
            })?;
            if header != expected {
                return Err(bad("the backup file changed while it was being restored"));
            }
            w.finish()?;
            Ok(())
        };
        let file = copy().and_then(|()| {
            std::fs::File::open(&path).map_err(|e| bad(format!("{}: {e}", path.display())))
        });
        // Unlinked either way: an open handle keeps a good copy readable.
        let removed = std::fs::remove_file(&path);
        let file = file?;
        removed.map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    sm.install_snapshot(&meta, tokio::fs::File::from_std(file))
        .await
        .map_err(|e| bad(format!("installing the backup: {e}")))?;
    log.purge(last)
        .await
        .map_err(|e| bad(format!("setting the log start: {e}")))?;
    RaftLogStorage::<TypeConfig>::save_vote(&mut log, &Vote::new(last.leader_id.term, node))
        .await
        .map_err(|e| bad(format!("saving the vote: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;
    use custos_model::{Acls, Command, Identity, NodeId as ModelNodeId, Op, RequestId, VolumeId};
    use openraft::EntryPayload;

    fn create(n: u64) -> Entry {
        let mut identity = Identity::internal_admin("bob");
        identity.username = "bob".into();
        Entry {
            log_id: crate::log_id(3, 1, n),
            payload: EntryPayload::Normal(Command {
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
            }),
        }
    }

    fn member() -> Member {
        Member {
            raft_addr: "127.0.0.1:1".into(),
            sdk_addr: "127.0.0.1:2".into(),
        }
    }

    /// Writes the backup `stream` hands out to `path`, in chunks of at most `chunk` bytes.
    async fn save(mut stream: BackupStream, path: &Path, chunk: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        while let Some(c) = stream.next_chunk(chunk).await.unwrap() {
            assert!(
                !c.is_empty() && c.len() <= chunk,
                "a chunk of {} bytes",
                c.len()
            );
            bytes.extend_from_slice(&c);
        }
        assert_eq!(bytes.len() as u64, stream.size());
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    #[tokio::test]
    async fn a_backup_restores_into_an_empty_dir_only_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, sm) = crate::open(&dir.path().join("a")).await.unwrap();
        sm.apply_entries((1..=4).map(create)).unwrap();
        let expected: Vec<Record> = sm.state().read().unwrap().records().collect();
        let file = dir.path().join("backup");
        let stream = sm.backup_source().backup(42).await.unwrap();
        let head = sm.audit_log().head();
        assert_eq!(
            stream.header().records,
            expected.len() as u64 + head.next_seq - head.first_seq,
            "the state's records and the audit trail"
        );
        let bytes = save(stream, &file, 100).await;
        // The unlinked data file is gone from the snapshot directory.
        assert_eq!(std::fs::read_dir(sm.snapshot_dir()).unwrap().count(), 0);

        let backup = Backup::open(&file).await.unwrap();
        assert_eq!(backup.header.last_log_id.index, 4);
        assert_eq!(backup.header.taken_ms, 42);
        // Every byte counts: a flipped bit anywhere, a cut or an extra byte is refused.
        let damaged = dir.path().join("damaged");
        for at in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            std::fs::write(&damaged, &bad).unwrap();
            assert!(
                Backup::open(&damaged).await.is_err(),
                "flip at {at} accepted"
            );
        }
        for cut in [0, 11, 30, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&damaged, &bytes[..cut]).unwrap();
            assert!(
                Backup::open(&damaged).await.is_err(),
                "cut at {cut} accepted"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        std::fs::write(&damaged, &long).unwrap();
        assert!(
            Backup::open(&damaged).await.is_err(),
            "a trailing byte accepted"
        );
        let mut old = bytes.clone();
        old[8..12].copy_from_slice(&1u32.to_be_bytes());
        std::fs::write(&damaged, &old).unwrap();
        let err = Backup::open(&damaged).await.err().unwrap().to_string();
        assert!(err.contains("backup format 1"), "{err}");

        let target = dir.path().join("b");
        restore(&target, &backup, 7, member()).await.unwrap();
        let (mut log, mut restored) = crate::open(&target).await.unwrap();
        let got: Vec<Record> = restored.state().read().unwrap().records().collect();
        assert_eq!(got, expected);
        let (applied, membership) = restored.applied_state().await.unwrap();
        assert_eq!(applied, Some(backup.header.last_log_id));
        assert_eq!(
            membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![7]
        );
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(backup.header.last_log_id));
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new(3, 7)),
            "the vote carries the backup's term, so new entries follow it"
        );
        drop((log, restored));
        let again = restore(&target, &backup, 7, member()).await;
        assert!(
            matches!(&again, Err(StoreError::Backup(m)) if m.contains("already holds Raft state")),
            "{:?}",
            again.err()
        );

        // A file damaged after it was opened is refused by the restore's own pass, and the new
        // store is left without state.
        let mut bad = bytes.clone();
        let at = bytes.len() / 2;
        bad[at] ^= 1;
        std::fs::write(&file, &bad).unwrap();
        let fresh = dir.path().join("c");
        assert!(restore(&fresh, &backup, 7, member()).await.is_err());
        let (_log, mut sm) = crate::open(&fresh).await.unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, None);
    }
}
