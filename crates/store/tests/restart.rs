//! Restart tests: everything the store acknowledged is there, identical, after a reopen.

mod common;

use common::*;
use custos_model::{Outcome, Record, Reply, VolumeId};
use custos_store::StoreError;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, StorageHelper, Vote};

#[tokio::test]
async fn log_vote_applied_and_state_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open(dir.path()).await;

    let mut entries = vec![blank(1, 1), membership(1, 2, &[1, 2, 3])];
    for n in 3..=12 {
        entries.push(normal(1, n, create_volume(n)));
    }
    entries.push(normal(1, 13, delete_volume(13, 5)));
    entries.push(normal(1, 14, create_role(14)));
    // A refused command (duplicate name, different shape) is applied too, and remembered.
    let mut dup = create_volume(3);
    dup.request_id = custos_model::RequestId("req-dup".into());
    if let custos_model::Op::CreateVolume { spec, .. } = &mut dup.op {
        spec.size += 1;
    }
    entries.push(normal(2, 15, dup));
    append(&mut log, entries.clone()).await;
    log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
    log.save_committed(Some(log_id(2, 15))).await.unwrap();

    let outcomes = sm.apply_entries(entries.clone()).unwrap();
    assert_eq!(outcomes.len(), entries.len());
    assert_eq!(outcomes[0], Outcome::Applied(Reply::Empty));
    assert_eq!(outcomes[1], Outcome::Applied(Reply::Empty));
    assert_eq!(
        outcomes[2],
        Outcome::Applied(Reply::VolumeCreated {
            id: VolumeId("vol-0003".into())
        })
    );
    assert!(
        matches!(outcomes[14], Outcome::Refused(_)),
        "{:?}",
        outcomes[14]
    );

    let state_before = sm.state().read().unwrap().clone();
    assert_eq!(state_before.volume_count(), 9);
    let records_before: Vec<Record> = state_before.records().collect();
    let log_state_before = log.get_log_state().await.unwrap();
    let applied_before = sm.applied_state().await.unwrap();
    let entries_before = all_entries(&mut log).await;
    close(log, sm);

    let (mut log, mut sm) = open(dir.path()).await;
    assert_eq!(log.get_log_state().await.unwrap(), log_state_before);
    assert_eq!(all_entries(&mut log).await, entries_before);
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 15)));
    let applied_after = sm.applied_state().await.unwrap();
    assert_eq!(applied_after, applied_before);
    assert_eq!(applied_after.0, Some(log_id(2, 15)));
    assert_eq!(applied_after.1.log_id(), &Some(log_id(1, 2)));
    let state_after = sm.state().read().unwrap().clone();
    assert_eq!(state_after, state_before);
    assert_eq!(state_after.records().collect::<Vec<_>>(), records_before);
    assert!(state_after.volume(&VolumeId("vol-0005".into())).is_none());
    assert!(state_after.role("custom.role14").is_some());

    // The remembered request ids survive too: a retried command gets its first outcome.
    let again = sm.apply_entries([normal(2, 16, create_volume(4))]).unwrap();
    assert_eq!(again, vec![outcomes[3].clone()]);
}

#[tokio::test]
async fn committed_but_unapplied_entries_are_reapplied_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    // Index 0 is the membership entry `Raft::initialize` writes.
    let mut entries = vec![membership(0, 0, &[1])];
    entries.extend((1..=6).map(|n| normal(1, n, create_volume(n))));
    append(&mut log, entries.clone()).await;
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    sm.apply_entries(entries[..3].to_vec()).unwrap();
    log.save_committed(Some(log_id(1, 5))).await.unwrap();
    close(log, sm);

    let (mut log, mut sm) = open(dir.path()).await;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 2)));
    assert_eq!(sm.state().read().unwrap().volume_count(), 2);
    // What openraft does when a Raft starts on this store.
    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 5)));
    assert_eq!(sm.state().read().unwrap().volume_count(), 5);
}

#[tokio::test]
async fn purge_pointer_and_truncation_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    let entries: Vec<_> = (1..=20)
        .map(|n| normal(1 + n / 10, n, create_volume(n)))
        .collect();
    append(&mut log, entries.clone()).await;
    sm.apply_entries(entries[..12].to_vec()).unwrap();
    log.purge(log_id(1, 8)).await.unwrap();
    log.truncate_after(Some(log_id(2, 16))).await.unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 8)));
    assert_eq!(state.last_log_id, Some(log_id(2, 16)));
    close(log, sm);

    let (mut log, sm) = open(dir.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 8)));
    assert_eq!(state.last_log_id, Some(log_id(2, 16)));
    let ids = log_ids(&mut log).await;
    assert_eq!(ids.first(), Some(&log_id(1, 9)));
    assert_eq!(ids.len(), 8);

    // Purging everything leaves the pointer as the last log id, also after a restart.
    let sm = sm;
    sm.apply_entries(entries[12..16].to_vec()).unwrap();
    log.purge(log_id(2, 16)).await.unwrap();
    close(log, sm);
    let (mut log, _sm) = open(dir.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 16)));
    assert_eq!(state.last_log_id, Some(log_id(2, 16)));
    assert!(log_ids(&mut log).await.is_empty());
}

#[tokio::test]
async fn unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sm) = open(dir.path()).await;
    close(log, sm);
    {
        let db = raw_sled(dir.path());
        db.insert(b"_format", &7u32.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    let err = custos_store::open(dir.path())
        .await
        .err()
        .expect("must refuse");
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 7,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("format version 7"), "{err}");
}

#[tokio::test]
async fn unknown_value_version_is_an_error_not_a_misread() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await;
    append(&mut log, vec![blank(1, 1)]).await;
    close(log, sm);
    {
        let db = raw_sled(dir.path());
        let tree = db.open_tree("raft_meta").unwrap();
        tree.insert(b"vote", &[9u8, 1, 2, 3][..]).unwrap();
        db.flush().unwrap();
    }
    let (mut log, _sm) = open(dir.path()).await;
    let err = log.read_vote().await.unwrap_err();
    assert!(
        err.to_string().contains("unknown format version 9"),
        "{err}"
    );
    assert!(err.to_string().to_lowercase().contains("vote"), "{err}");
}

/// A layout-2 data dir (snapshot data as one `current_data` value in the `snapshot` tree) whose
/// snapshot install a crash interrupted: open migrates the value into a snapshot file, then
/// finishes the install from it.
#[tokio::test]
async fn a_layout_2_dir_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open(dir.path()).await;
    let mut entries = vec![blank(1, 1), membership(1, 2, &[1])];
    for n in 3..=8 {
        entries.push(normal(1, n, create_volume(n)));
    }
    append(&mut log, entries.clone()).await;
    sm.apply_entries(entries).unwrap();
    let snap = build_snapshot(&mut sm).await;
    // What a layout-2 snapshot held: every record, the audit trail included.
    let mut expected: Vec<Record> = sm.state().read().unwrap().records().collect();
    let head = sm.audit_log().head();
    assert!(head.first_seq < head.next_seq);
    let mut legacy = expected.clone();
    for seq in head.first_seq..head.next_seq {
        legacy.push(Record::Audit(sm.audit_log().get(seq).unwrap().unwrap()));
    }
    // The state moves on after the snapshot; the interrupted install must bring it back.
    sm.apply_entries([
        normal(1, 9, create_volume(9)),
        normal(1, 10, delete_volume(10, 3)),
    ])
    .unwrap();
    assert_ne!(
        sm.state().read().unwrap().records().collect::<Vec<_>>(),
        expected
    );
    close(log, sm);
    {
        let db = raw_sled(dir.path());
        db.insert(b"_format", &2u32.to_be_bytes()[..]).unwrap();
        let tree = db.open_tree("snapshot").unwrap();
        tree.remove("current_file").unwrap();
        let mut value = vec![6u8]; // `codec::VALUE_FORMAT`, then bincode
        value.extend(bincode::serde::encode_to_vec(&legacy, bincode::config::standard()).unwrap());
        tree.insert("current_data", value).unwrap();
        // The install marker names the snapshot by the log id it covers.
        let last = snap
            .meta
            .last_log_id
            .expect("a built snapshot covers entries");
        let label = format!(
            "{}-{}-{}",
            last.leader_id.term, last.leader_id.node_id, last.index
        );
        let mut marker = vec![6u8];
        marker.extend(bincode::serde::encode_to_vec(&label, bincode::config::standard()).unwrap());
        tree.insert("installing", marker).unwrap();
        db.flush().unwrap();
    }
    for entry in std::fs::read_dir(dir.path().join("raft-snapshot")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }

    let (log2, mut sm) = open(dir.path()).await;
    expected.sort_by_key(|r| r.key().encode());
    let mut got: Vec<Record> = sm.state().read().unwrap().records().collect();
    got.sort_by_key(|r| r.key().encode());
    assert_eq!(got, expected);
    assert_eq!(sm.audit_log().head(), head);
    let v = sm.audit_log().verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, head.last_seq()));
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
    close(log2, sm);
    let db = raw_sled(dir.path());
    assert_eq!(
        db.get(b"_format").unwrap().unwrap().as_ref(),
        &3u32.to_be_bytes()[..]
    );
    let tree = db.open_tree("snapshot").unwrap();
    assert!(tree.get("current_data").unwrap().is_none());
    assert!(tree.get("installing").unwrap().is_none());
}

/// A data dir written by custos on openraft 0.9.25 (`tests/fixtures/openraft-0.9-data`: a
/// one-member `custos dev` cluster that created three volumes, then stopped) opens under
/// openraft 0.10 as it is: the vote, log ids, membership and applied state all decode, and
/// the state holds what was written. (Both versions serialize log ids, votes, entries and
/// memberships alike under the default leader id; this test fails if that ever changes.)
#[tokio::test]
async fn a_data_dir_written_under_openraft_0_9_opens() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openraft-0.9-data");
    let dir = tempfile::tempdir().unwrap();
    for name in ["conf", "db"] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    let (mut log, mut sm) = open(dir.path()).await;
    let vote = log.read_vote().await.unwrap().expect("a vote");
    assert!(vote.committed, "{vote:?}");
    assert_eq!(vote.leader_id.node_id, 1);
    let entries = all_entries(&mut log).await;
    assert!(entries.len() >= 4, "{} entries", entries.len());
    let last = entries.last().unwrap().log_id;
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(last));
    assert_eq!(
        membership.membership().voter_ids().collect::<Vec<_>>(),
        vec![1]
    );
    let state = sm.state();
    let state = state.read().unwrap();
    assert_eq!(state.volume_count(), 3);
    for name in ["fx-vol-1", "fx-vol-2", "fx-vol-3"] {
        assert!(state.volume_by_name(name).is_some(), "{name} is missing");
    }
}
