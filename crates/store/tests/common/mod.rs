//! Helpers shared by the store's integration tests: commands, entries and store handling.
#![allow(dead_code)]

use custos_model::role::{Role, Rule};
use custos_model::{Acls, Command, Identity, NodeId, Op, RequestId, VolumeId, VolumeSpec};
use custos_store::{Entry, LogId, LogStore, Member, StateMachineStore, TypeConfig};
use openraft::storage::RaftLogStorageExt;
use openraft::{EntryPayload, Membership, RaftLogReader};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub fn admin() -> Identity {
    Identity {
        username: "alice".into(),
        subject: "alice".into(),
        name: "Alice".into(),
        email: "alice@example.invalid".into(),
        issuer: "test".into(),
        roles: vec!["system.admin".into()],
        groups: Vec::new(),
        guest: false,
        fingerprint: String::new(),
        token_id: String::new(),
        issued_at: 0,
    }
}

pub fn command(n: u64, op: Op) -> Command {
    Command {
        request_id: RequestId(format!("req-{n}")),
        identity: admin(),
        time_ms: 1_700_000_000_000 + n,
        origin: NodeId(1),
        op,
    }
}

pub fn create_volume(n: u64) -> Command {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), format!("app-{}", n % 3));
    command(
        n,
        Op::CreateVolume {
            id: VolumeId(format!("vol-{n:04}")),
            name: format!("volume-{n}"),
            spec: VolumeSpec {
                size: (n + 1) << 30,
                ha_level: 2,
                ..Default::default()
            },
            labels,
            acls: Acls::default(),
        },
    )
}

pub fn delete_volume(n: u64, victim: u64) -> Command {
    command(
        n,
        Op::DeleteVolume {
            id: VolumeId(format!("vol-{victim:04}")),
        },
    )
}

pub fn create_role(n: u64) -> Command {
    command(
        n,
        Op::CreateRole {
            role: Role {
                name: format!("custom.role{n}"),
                rules: vec![Rule {
                    services: vec!["volume".into()],
                    apis: vec!["inspect*".into()],
                }],
            },
        },
    )
}

pub fn log_id(term: u64, index: u64) -> LogId {
    custos_store::log_id(term, 1, index)
}

pub fn normal(term: u64, index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(cmd),
    }
}

pub fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry {
    let ids: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: BTreeMap<u64, Member> = voters
        .iter()
        .map(|&id| {
            let member = Member {
                raft_addr: format!("127.0.0.1:{}", 7000 + id),
                sdk_addr: format!("127.0.0.1:{}", 9000 + id),
            };
            (id, member)
        })
        .collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![ids], nodes).expect("membership")),
    }
}

pub async fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    custos_store::open(dir).await.expect("open store")
}

/// Builds a snapshot of `sm` now.
pub async fn build_snapshot(sm: &mut StateMachineStore) -> custos_store::Snapshot {
    use openraft::storage::RaftStateMachine;
    use openraft::RaftSnapshotBuilder;
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap()
}

pub async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    RaftLogStorageExt::<TypeConfig>::blocking_append(log, entries)
        .await
        .expect("append");
}

pub async fn all_entries(log: &mut LogStore) -> Vec<Entry> {
    log.try_get_log_entries(..).await.expect("read log")
}

pub async fn log_ids(log: &mut LogStore) -> Vec<LogId> {
    all_entries(log)
        .await
        .into_iter()
        .map(|e| e.log_id)
        .collect()
}

/// Drops both halves; the sled database closes when the last handle goes.
pub fn close(log: LogStore, sm: StateMachineStore) {
    drop(log);
    drop(sm);
}

/// Opens the store's sled database directly, waiting out the lock a just-dropped store's
/// background IO may still hold.
pub fn raw_sled(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
