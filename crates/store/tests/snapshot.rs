//! Snapshot tests: build, transfer into a fresh store, and survival across restarts.

mod common;

use common::*;
use custos_model::Record;
use custos_store::TypeConfig;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::RaftSnapshotBuilder;

async fn populated(
    dir: &std::path::Path,
) -> (custos_store::LogStore, custos_store::StateMachineStore) {
    let (mut log, mut sm) = open(dir).await;
    let mut entries = vec![blank(1, 1), membership(1, 2, &[1, 2])];
    for n in 3..=40 {
        entries.push(normal(1, n, create_volume(n)));
    }
    entries.push(normal(1, 41, delete_volume(41, 7)));
    entries.push(normal(1, 42, create_role(42)));
    append(&mut log, entries.clone()).await;
    sm.apply(entries).await.unwrap();
    (log, sm)
}

fn records(sm: &custos_store::StateMachineStore) -> Vec<Record> {
    sm.state().read().unwrap().records().collect()
}

fn bytes(s: &Snapshot<TypeConfig>) -> Vec<u8> {
    s.snapshot.get_ref().clone()
}

#[tokio::test]
async fn built_snapshot_installs_into_a_fresh_store() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = populated(leader_dir.path()).await;
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 42)));
    assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(1, 2)));
    assert!(
        snap.meta.snapshot_id.starts_with("1-42-"),
        "{}",
        snap.meta.snapshot_id
    );

    // Applying after the build does not change the built snapshot.
    leader
        .apply([normal(2, 43, create_volume(43))])
        .await
        .unwrap();
    let current = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(bytes(&current), bytes(&snap));

    let follower_dir = tempfile::tempdir().unwrap();
    let (_flog, mut follower) = open(follower_dir.path()).await;
    // The follower has some state of its own that the snapshot must replace.
    follower
        .apply([normal(1, 1, create_volume(999))])
        .await
        .unwrap();
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    *receiving = *snap.snapshot;
    follower
        .install_snapshot(&snap.meta, receiving)
        .await
        .unwrap();

    let expected: Vec<Record> = {
        let leader_dir2 = tempfile::tempdir().unwrap();
        let (_l, sm) = populated(leader_dir2.path()).await;
        records(&sm)
    };
    assert_eq!(records(&follower), expected);
    assert!(records(&follower)
        .iter()
        .all(|r| !matches!(r, Record::Volume(v) if v.id.0 == "vol-0999")));
    let (applied, membership) = follower.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 42)));
    assert_eq!(membership, snap.meta.last_membership);
    let follower_current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(follower_current.meta, snap.meta);

    // A rebuilt snapshot of the follower has the same content.
    let rebuilt = follower
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(bytes(&rebuilt), bytes(&follower_current));
    assert_eq!(rebuilt.meta.last_log_id, snap.meta.last_log_id);
}

#[tokio::test]
async fn current_snapshot_and_installed_state_survive_restart() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader_log, mut leader) = populated(leader_dir.path()).await;
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let expected = records(&leader);

    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    let mut receiving = sm.begin_receiving_snapshot().await.unwrap();
    *receiving = *snap.snapshot;
    sm.install_snapshot(&snap.meta, receiving).await.unwrap();
    close(log, sm);

    let (_log, mut sm) = open(dir.path()).await;
    assert_eq!(records(&sm), expected);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 42)));
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot after restart");
    assert_eq!(current.meta, snap.meta);

    // The leader's own built snapshot survives its restart as well.
    let leader_meta = leader.get_current_snapshot().await.unwrap().unwrap().meta;
    close(leader_log, leader);
    let (_l, mut leader) = open(leader_dir.path()).await;
    assert_eq!(
        leader.get_current_snapshot().await.unwrap().unwrap().meta,
        leader_meta
    );
}

#[tokio::test]
async fn corrupt_snapshot_data_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = populated(dir.path()).await;
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let before = records(&sm);
    let mut meta = snap.meta.clone();
    meta.snapshot_id = "9-99-1".into();
    meta.last_log_id = Some(log_id(9, 99));
    let mut receiving = sm.begin_receiving_snapshot().await.unwrap();
    receiving
        .get_mut()
        .extend_from_slice(&[1, 0xff, 0xff, 0xff]);
    let err = sm.install_snapshot(&meta, receiving).await.unwrap_err();
    assert!(err.to_string().contains("Snapshot"), "{err}");
    assert_eq!(records(&sm), before);
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}
