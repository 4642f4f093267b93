//! The order of an apply as the writer sees it: answered once the outcome is decided in memory,
//! before the `sm` tree is written (ARCHITECTURE.md, "Readers never wait for storage").

mod common;

use common::*;
use custos_model::{Outcome, VolumeId};
use openraft::storage::RaftStateMachine;

#[tokio::test]
async fn the_writer_is_answered_before_the_tree_is_written_and_the_tree_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    sm.apply_entries([normal(1, 1, create_volume(1))]).unwrap();
    let audit = sm.audit_log();
    let stored = audit.head().last_seq();
    assert!(
        audit.get(stored).unwrap().is_some(),
        "the first write's record"
    );

    let mut answered = None;
    sm.apply_entries_answering([normal(1, 2, create_volume(2))], |outcomes| {
        // The outcome is decided and the state shows the effect...
        let state = sm.state();
        assert!(state
            .read()
            .unwrap()
            .volume(&VolumeId("vol-0002".into()))
            .is_some());
        // ...while the tree has not been written: neither the new audit record nor the
        // stored head nor the applied id.
        assert_eq!(audit.head().last_seq(), stored);
        assert!(audit.get(stored + 1).unwrap().is_none());
        answered = Some(outcomes);
    })
    .unwrap();
    let outcomes = answered.expect("answered");
    assert!(
        matches!(outcomes.as_slice(), [Outcome::Applied(_)]),
        "{outcomes:?}"
    );
    // When the call returns the tree holds everything: the record, the head, the applied id.
    assert_eq!(audit.head().last_seq(), stored + 1);
    assert!(audit.get(stored + 1).unwrap().is_some());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 2)));
}
