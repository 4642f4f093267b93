//! Snapshot tests: build, transfer into a fresh store, and survival across restarts.

mod common;

use common::*;
use custos_model::Record;
use openraft::storage::RaftStateMachine;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

async fn populated(
    dir: &std::path::Path,
) -> (custos_store::LogStore, custos_store::StateMachineStore) {
    let (mut log, sm) = open(dir).await;
    let mut entries = vec![blank(1, 1), membership(1, 2, &[1, 2])];
    for n in 3..=40 {
        entries.push(normal(1, n, create_volume(n)));
    }
    entries.push(normal(1, 41, delete_volume(41, 7)));
    entries.push(normal(1, 42, create_role(42)));
    append(&mut log, entries.clone()).await;
    sm.apply_entries(entries).unwrap();
    (log, sm)
}

fn records(sm: &custos_store::StateMachineStore) -> Vec<Record> {
    sm.state().read().unwrap().records().collect()
}

async fn bytes(s: &mut custos_store::Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    s.snapshot.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    s.snapshot.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn built_snapshot_installs_into_a_fresh_store() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = populated(leader_dir.path()).await;
    let mut snap = build_snapshot(&mut leader).await;
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 42)));
    assert_eq!(snap.meta.last_membership.log_id(), &Some(log_id(1, 2)));

    // Applying after the build does not change the built snapshot.
    leader
        .apply_entries([normal(2, 43, create_volume(43))])
        .unwrap();
    let mut current = leader.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(bytes(&mut current).await, bytes(&mut snap).await);

    let follower_dir = tempfile::tempdir().unwrap();
    let (_flog, mut follower) = open(follower_dir.path()).await;
    // The follower has some state of its own that the snapshot must replace.
    follower
        .apply_entries([normal(1, 1, create_volume(999))])
        .unwrap();
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
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
    let mut follower_current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(follower_current.meta, snap.meta);

    // A rebuilt snapshot of the follower has the same content.
    let mut rebuilt = build_snapshot(&mut follower).await;
    assert_eq!(
        bytes(&mut rebuilt).await,
        bytes(&mut follower_current).await
    );
    assert_eq!(rebuilt.meta.last_log_id, snap.meta.last_log_id);
}

#[tokio::test]
async fn current_snapshot_and_installed_state_survive_restart() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader_log, mut leader) = populated(leader_dir.path()).await;
    let snap = build_snapshot(&mut leader).await;
    let expected = records(&leader);

    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
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
    let snap = build_snapshot(&mut sm).await;
    let before = records(&sm);
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9, 99));
    let mut receiving = sm.receiving_file().await.unwrap();
    receiving.write_all(&[1, 0xff, 0xff, 0xff]).await.unwrap();
    let err = sm.install_snapshot(&meta, receiving).await.unwrap_err();
    assert!(err.to_string().contains("snapshot"), "{err}");
    assert_eq!(records(&sm), before);
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}

/// `RecordDenials` of `count` denials by `user-0` … `user-9`.
fn denials(n: u64, count: u64) -> custos_model::Command {
    use custos_model::audit::{AuditActor, Denial};
    let denials = (0..count)
        .map(|i| Denial {
            message: "Access denied".into(),
            actor: AuditActor {
                username: format!("user-{}", i % 10),
                ..AuditActor::default()
            },
            method: "volume.create".into(),
            objects: vec![format!("vol-{n}-{i}")],
            code: "PermissionDenied".into(),
            request_id: format!("r{n}-{i}"),
            fingerprint: "0123456789ab".into(),
            count: 1,
        })
        .collect();
    command(n, custos_model::Op::RecordDenials { denials })
}

/// `populated`, plus 25,000 audit records: more frames than one install batch holds.
async fn with_a_trail(
    dir: &std::path::Path,
) -> (custos_store::LogStore, custos_store::StateMachineStore) {
    let (log, sm) = populated(dir).await;
    for n in 43..=47 {
        sm.apply_entries([normal(1, n, denials(n, 5_000))]).unwrap();
    }
    (log, sm)
}

fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("raft-snapshot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_snapshot_received_in_many_small_chunks_installs() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = with_a_trail(leader_dir.path()).await;
    let head = leader.audit_log().head();
    assert!(head.last_seq() > 25_000, "{head:?}");
    let mut snap = build_snapshot(&mut leader).await;
    let data = bytes(&mut snap).await;

    let dir = tempfile::tempdir().unwrap();
    let (_flog, mut follower) = open(dir.path()).await;
    follower
        .apply_entries([normal(1, 1, create_volume(999))])
        .unwrap();
    // As openraft's chunked transport writes them: each chunk at its offset; every tenth one
    // is sent twice (a retry after a lost reply seeks back and writes it again).
    let mut receiving = follower.receiving_file().await.unwrap();
    let chunk = 4093;
    for (i, part) in data.chunks(chunk).enumerate() {
        let sends = if i % 10 == 0 { 2 } else { 1 };
        for _ in 0..sends {
            receiving
                .seek(std::io::SeekFrom::Start((i * chunk) as u64))
                .await
                .unwrap();
            receiving.write_all(part).await.unwrap();
        }
    }
    receiving.shutdown().await.unwrap();
    follower
        .install_snapshot(&snap.meta, receiving)
        .await
        .unwrap();

    assert_eq!(records(&follower), records(&leader));
    let audit = follower.audit_log();
    assert_eq!(audit.head(), head);
    let v = audit.verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, head.last_seq()));
    // The username index was rebuilt from the frames: user-3 has a tenth of the denials.
    let user3 = custos_model::audit::AuditQuery {
        username: Some("user-3".into()),
        ..Default::default()
    };
    let page = audit.list(&user3, None, 1000, false).unwrap();
    assert_eq!(page.records.len(), 1000);
    assert!(page.records.iter().all(|r| r.actor.username == "user-3"));
    let mut current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);
    assert_eq!(bytes(&mut current).await, data);
    // Only the current snapshot's file is left (the received one was never linked).
    assert_eq!(snapshot_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn a_truncated_or_corrupted_snapshot_is_refused_and_nothing_changes() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = with_a_trail(leader_dir.path()).await;
    let mut snap = build_snapshot(&mut leader).await;
    let data = bytes(&mut snap).await;

    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = populated(dir.path()).await;
    sm.apply_entries([normal(1, 43, create_volume(43))])
        .unwrap();
    let mut own = build_snapshot(&mut sm).await;
    let own_bytes = bytes(&mut own).await;
    let before = records(&sm);
    let head = sm.audit_log().head();
    let files = snapshot_files(dir.path());

    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9, 99));
    let mid = data.len() / 2;
    let mut flipped = data.clone();
    flipped[mid] ^= 0x10;
    let mut extended = data.clone();
    extended.push(0);
    let cases: [(&str, &[u8]); 6] = [
        ("empty", &[]),
        ("cut to half", &data[..mid]),
        ("last byte missing", &data[..data.len() - 1]),
        ("a byte flipped", &flipped),
        ("a byte added", &extended),
        ("a layout-2 value", &[4, 0]),
    ];
    for (what, damaged) in cases {
        let mut receiving = sm.receiving_file().await.unwrap();
        receiving.write_all(damaged).await.unwrap();
        receiving.shutdown().await.unwrap();
        let err = sm.install_snapshot(&meta, receiving).await.unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{what}: {err}");
        assert_eq!(records(&sm), before, "{what}");
        assert_eq!(sm.audit_log().head(), head, "{what}");
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 43)));
        let mut current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, own.meta, "{what}");
        assert_eq!(bytes(&mut current).await, own_bytes, "{what}");
        assert_eq!(
            snapshot_files(dir.path()),
            files,
            "{what}: files left behind"
        );
    }
    // Nothing half-applied survives a restart either: no install marker, the same state.
    close(log, sm);
    let (_log, mut sm) = open(dir.path()).await;
    assert_eq!(records(&sm), before);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 43)));
}
