//! Backup files: a consistent copy of the replicated state as of one applied log id, and
//! restoring one into an empty data directory as the seed of a new cluster.
//!
//! Layout: `CUSTOSBK`, format (u32 BE), header length (u64 BE), the bincode [`BackupHeader`],
//! data length (u64 BE), the snapshot data (the same records a Raft snapshot carries: roles,
//! volumes, nodes, remembered requests, audit head and records), then the SHA-256 of every
//! byte before it. Restoring checks all of it before writing anything.

use crate::codec::{decode, encode, VALUE_FORMAT};
use crate::state_machine::StateMachineStore;
use crate::{Member, StoreError, TypeConfig};
use custos_model::Record;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CUSTOSBK";

/// The backup file format this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// What a backup says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The store's value format the records are encoded in.
    pub value_format: u8,
    /// The last log entry the state reflects.
    pub last_log_id: LogId<u64>,
    /// The membership of the cluster the backup was taken from.
    pub membership: StoredMembership<u64, Member>,
    /// Milliseconds since the Unix epoch when the backup was taken (the caller's clock).
    pub taken_ms: u64,
    /// How many records (state and audit) the data holds.
    pub records: u64,
}

/// A parsed, verified backup file.
pub struct Backup {
    pub header: BackupHeader,
    data: Vec<u8>,
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::Backup(message.into())
}

/// Builds a backup file from the state machine's current content.
pub(crate) fn write(
    last_log_id: LogId<u64>,
    membership: StoredMembership<u64, Member>,
    records: &[Record],
    taken_ms: u64,
) -> Result<Vec<u8>, StoreError> {
    let header = BackupHeader {
        value_format: VALUE_FORMAT,
        last_log_id,
        membership,
        taken_ms,
        records: records.len() as u64,
    };
    let header = encode("backup header", &header)?;
    let data = encode("backup data", &records)?;
    let mut out = Vec::with_capacity(data.len() + header.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&BACKUP_FORMAT.to_be_bytes());
    out.extend_from_slice(&(header.len() as u64).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(data.len() as u64).to_be_bytes());
    out.extend_from_slice(&data);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

impl Backup {
    /// Parses and verifies a backup file (magic, format, checksum, decodable records).
    pub fn parse(bytes: &[u8]) -> Result<Backup, StoreError> {
        if bytes.len() < MAGIC.len() + 4 + 8 + 8 + 32 || &bytes[..8] != MAGIC {
            return Err(bad("not a custos backup file"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body)[..] != *digest {
            return Err(bad(
                "the backup file is damaged (its checksum does not match): it was truncated or \
                 changed after it was written",
            ));
        }
        let format = u32::from_be_bytes(body[8..12].try_into().expect("4 bytes"));
        if format != BACKUP_FORMAT {
            return Err(bad(format!(
                "backup format {format}; this build reads format {BACKUP_FORMAT}"
            )));
        }
        let mut at = 12;
        let mut take = |what: &str| -> Result<&[u8], StoreError> {
            let len = body
                .get(at..at + 8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize)
                .ok_or_else(|| bad(format!("the backup's {what} length is missing")))?;
            let part = body
                .get(at + 8..at + 8 + len)
                .ok_or_else(|| bad(format!("the backup's {what} is cut short")))?;
            at += 8 + len;
            Ok(part)
        };
        let header: BackupHeader = decode("backup header", take("header")?)?;
        let data = take("data")?.to_vec();
        if header.value_format != VALUE_FORMAT {
            return Err(bad(format!(
                "the backup's records are in value format {}; this build reads {VALUE_FORMAT}",
                header.value_format
            )));
        }
        let records: Vec<Record> = decode("backup data", &data)?;
        if records.len() as u64 != header.records {
            return Err(bad("the backup's record count does not match its header"));
        }
        Ok(Backup { header, data })
    }

    /// The records the backup holds.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        Ok(decode("backup data", &self.data)?)
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
    /// A backup of the state as applied now (the same consistent view a snapshot takes).
    pub async fn backup(&self, taken_ms: u64) -> Result<Vec<u8>, StoreError> {
        let (records, applied, membership) = self.sm.collect()?;
        let last =
            applied.ok_or_else(|| bad("nothing has been applied yet: no state to back up"))?;
        tokio::task::spawn_blocking(move || write(last, membership, &records, taken_ms))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
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
    );
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), membership),
        snapshot_id: format!("restore-{}-{}", last.leader_id.term, last.index),
    };
    // The new cluster's nodes register afresh: the incarnations of the old cluster's data
    // directories mean nothing to it.
    let records: Vec<Record> = backup
        .records()?
        .into_iter()
        .map(|r| match r {
            Record::Node(mut n) => {
                n.incarnation = 0;
                Record::Node(n)
            }
            other => other,
        })
        .collect();
    // The records go through a snapshot file, as an install from a leader does.
    let path = sm
        .snapshot_dir()
        .join(format!("{}.restore", meta.snapshot_id));
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, StoreError> {
        crate::snapfile::write_records(&path, &records)?;
        let file =
            std::fs::File::open(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        std::fs::remove_file(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    sm.install_snapshot(&meta, Box::new(tokio::fs::File::from_std(file)))
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
    use custos_model::{Acls, Command, Identity, NodeId as ModelNodeId, Op, RequestId, VolumeId};
    use openraft::{CommittedLeaderId, Entry, EntryPayload};

    fn create(n: u64) -> Entry<TypeConfig> {
        let mut identity = Identity::internal_admin("bob");
        identity.username = "bob".into();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), n),
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

    #[tokio::test]
    async fn a_backup_restores_into_an_empty_dir_only_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open(&dir.path().join("a")).await.unwrap();
        sm.apply((1..=4).map(create)).await.unwrap();
        let expected: Vec<Record> = sm.state().read().unwrap().records().collect();
        let bytes = sm.backup_source().backup(42).await.unwrap();

        let backup = Backup::parse(&bytes).unwrap();
        assert_eq!(backup.header.last_log_id.index, 4);
        assert_eq!(backup.header.taken_ms, 42);
        // Every byte counts: a flipped bit anywhere, or a cut, is refused.
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Backup::parse(&bad).is_err(), "flip at {at} accepted");
        }
        assert!(Backup::parse(&bytes[..bytes.len() - 1]).is_err());

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
    }
}
