//! The audit trail on disk: written with each apply, queried by user and page, verified, kept
//! across restarts, snapshots and installs, truncated with its index.

mod common;

use common::*;
use custos_model::audit::{AuditActor, AuditQuery, AuditRecord, Denial};
use custos_model::{Command, Identity, NodeId, Op, RequestId};
use custos_store::StateMachineStore;
use openraft::storage::RaftStateMachine;

fn user(name: &str) -> Identity {
    let mut who = admin();
    who.username = name.into();
    who.roles = vec!["system.user".into()];
    who
}

/// `n` commands alternating between alice (admin) and bob (a user creating volumes); every
/// third bob command is a refused role create.
fn mixed(n: u64) -> Vec<Command> {
    (1..=n)
        .map(|i| {
            let mut cmd = match i % 3 {
                0 => create_role(i),
                _ => create_volume(i),
            };
            if i % 2 == 0 {
                cmd.identity = user("bob");
            }
            cmd
        })
        .collect()
}

async fn apply_all(sm: &mut StateMachineStore, cmds: Vec<Command>, first_index: u64) {
    let entries: Vec<_> = cmds
        .into_iter()
        .enumerate()
        .map(|(i, c)| normal(1, first_index + i as u64, c))
        .collect();
    sm.apply_entries(entries).unwrap();
}

#[tokio::test]
async fn every_command_leaves_one_chained_record_queryable_by_user() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(60), 1).await;
    let audit = sm.audit_log();
    let head = audit.head();
    assert_eq!(head.last_seq(), 60);

    let v = audit.verify(None).unwrap();
    assert_eq!(v.error, None);
    assert_eq!(v.checked, 60);
    assert_eq!(v.at, Some((60, head.last_hash)));

    // By user, through the index: bob's 30 commands, in order, paged by 7.
    let query = AuditQuery {
        username: Some("bob".into()),
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = audit.list(&query, cursor, 7, false).unwrap();
        assert!(page.records.iter().all(|r| r.actor.username == "bob"));
        seen.extend(page.records.iter().map(|r| r.seq));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let expected: Vec<u64> = (1..=60).filter(|i| i % 2 == 0).collect();
    assert_eq!(seen, expected);

    // Newest first, with a code filter: bob's refused role creates (role.create by system.user).
    let query = AuditQuery {
        username: Some("bob".into()),
        code: Some("permissiondenied".into()),
        ..AuditQuery::default()
    };
    let page = audit.list(&query, None, 3, true).unwrap();
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![60, 54, 48]);
    assert!(page.records.iter().all(|r| r.message == "Access denied"));
    let next = audit.list(&query, page.next, 100, true).unwrap();
    assert_eq!(next.records.len(), 7); // 42, 36, ..., 6
    assert_eq!(next.next, None);

    // By outcome: refusals only are those same ten; allowed only are the other fifty.
    let refused = AuditQuery {
        authorized: Some(false),
        ..AuditQuery::default()
    };
    let page = audit.list(&refused, None, 100, true).unwrap();
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=10).rev().map(|i| i * 6).collect::<Vec<_>>());
    assert!(page.records.iter().all(|r| !r.authorized));
    let allowed = AuditQuery {
        authorized: Some(true),
        ..AuditQuery::default()
    };
    let page = audit.list(&allowed, None, 100, false).unwrap();
    assert_eq!(page.records.len(), 50);
    assert!(page.records.iter().all(|r| r.authorized && r.code == "OK"));

    // Without a user: a sequence range and an object filter.
    let query = AuditQuery {
        from_seq: Some(10),
        to_seq: Some(14),
        ..AuditQuery::default()
    };
    let page = audit.list(&query, None, 100, false).unwrap();
    assert_eq!(
        page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let query = AuditQuery {
        object: Some("vol-0005".into()),
        ..AuditQuery::default()
    };
    let page = audit.list(&query, None, 100, false).unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].message, "Volume vol-0005 created");
}

#[tokio::test]
async fn the_trail_survives_restart_snapshot_and_install() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(30), 1).await;
    let head = sm.audit_log().head();
    let snap = build_snapshot(&mut sm).await;
    close(log, sm);

    let (_log, sm) = open(dir.path()).await;
    let audit = sm.audit_log();
    assert_eq!(audit.head(), head);
    assert_eq!(audit.verify(None).unwrap().error, None);

    // Installed into a store with a different history: the trail (and its index) is replaced.
    let other = tempfile::tempdir().unwrap();
    let (_olog, mut osm) = open(other.path()).await;
    let mut different = mixed(5);
    for c in &mut different {
        c.identity = user("carol");
    }
    apply_all(&mut osm, different, 1).await;
    assert_eq!(osm.audit_log().verify(None).unwrap().error, None);
    assert!(osm.audit_log().checkpoint().unwrap().is_some());
    osm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    let oaudit = osm.audit_log();
    assert_eq!(oaudit.head(), head);
    // What this store verified of its own trail says nothing of the installed one.
    assert_eq!(oaudit.checkpoint().unwrap(), None);
    let v = oaudit.verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, 30));
    let carol = AuditQuery {
        username: Some("carol".into()),
        ..AuditQuery::default()
    };
    assert!(oaudit
        .list(&carol, None, 10, false)
        .unwrap()
        .records
        .is_empty());
    let bob = AuditQuery {
        username: Some("bob".into()),
        ..AuditQuery::default()
    };
    assert_eq!(
        oaudit.list(&bob, None, 100, false).unwrap().records.len(),
        15
    );
}

#[tokio::test]
async fn truncation_removes_records_and_their_index_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    let mut truncate = command(100, Op::TruncateAudit { through: 12 });
    truncate.identity = admin();
    apply_all(&mut sm, vec![truncate], 21).await;
    let audit = sm.audit_log();
    let head = audit.head();
    assert_eq!((head.first_seq, head.last_seq()), (13, 21));
    assert!(audit.get(12).unwrap().is_none());
    assert_eq!(
        audit.get(21).unwrap().unwrap().message,
        "Audit records 1 to 12 truncated"
    );
    let v = audit.verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, 9));
    let bob = AuditQuery {
        username: Some("bob".into()),
        ..AuditQuery::default()
    };
    let seqs: Vec<u64> = audit
        .list(&bob, None, 100, false)
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![14, 16, 18, 20]);
}

#[tokio::test]
async fn coalesced_denials_become_one_record_each_with_their_count() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    let denial = |message: &str, count| Denial {
        message: message.into(),
        actor: AuditActor::default(),
        method: "Authentication".into(),
        objects: Vec::new(),
        code: "Unauthenticated".into(),
        request_id: "first".into(),
        fingerprint: "abcdef012345".into(),
        count,
    };
    let cmd = Command {
        request_id: RequestId("batch-1".into()),
        identity: Identity::internal_admin("node-1"),
        time_ms: 5,
        origin: NodeId(1),
        op: Op::RecordDenials {
            denials: vec![denial("Unable to authenticate token", 9000), denial("x", 1)],
        },
    };
    apply_all(&mut sm, vec![cmd.clone()], 1).await;
    // The same batch again (a retried proposal) adds nothing.
    apply_all(&mut sm, vec![cmd], 2).await;
    let audit = sm.audit_log();
    assert_eq!(audit.head().last_seq(), 2);
    let r = audit.get(1).unwrap().unwrap();
    assert_eq!((r.count, r.edge, r.origin), (9000, true, NodeId(1)));
}

#[tokio::test]
async fn a_tampered_record_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(10), 1).await;
    close(log, sm);
    {
        // Rewrite record 4 with another message but its old hash, as an intruder with disk
        // access might.
        let (log, sm) = open(dir.path()).await;
        let mut r = sm.audit_log().get(4).unwrap().unwrap();
        r.message = "Volume nothing-to-see created".into();
        close(log, sm);
        let db = raw_sled(dir.path());
        let tree = db.open_tree("sm").unwrap();
        // The store's value format byte (`codec::VALUE_FORMAT`), then the bincode record.
        let mut bytes = vec![6u8];
        bytes.extend(
            bincode::serde::encode_to_vec(
                custos_model::Record::Audit(r),
                bincode::config::standard(),
            )
            .unwrap(),
        );
        tree.insert(custos_model::RecordKey::Audit(4).encode(), bytes)
            .unwrap();
        db.flush().unwrap();
    }
    let (_log, sm) = open(dir.path()).await;
    let v = sm.audit_log().verify(None).unwrap();
    assert_eq!(
        v.error.as_deref(),
        Some("record 4: its hash does not match its content")
    );
}

/// Rewrites the stored record `seq` with `edit` applied (its hash recomputed when `rehash`), as
/// an intruder with disk access might; the store must be closed. Returns the hash it stored.
fn tamper(
    dir: &std::path::Path,
    seq: u64,
    rehash: bool,
    edit: impl FnOnce(&mut AuditRecord),
) -> custos_model::AuditHash {
    let db = raw_sled(dir);
    let tree = db.open_tree("sm").unwrap();
    let key = custos_model::RecordKey::Audit(seq).encode();
    let old = tree.get(&key).unwrap().unwrap();
    let (record, _): (custos_model::Record, usize) =
        bincode::serde::decode_from_slice(&old[1..], bincode::config::standard()).unwrap();
    let custos_model::Record::Audit(mut r) = record else {
        panic!("record {seq} is not an audit record")
    };
    edit(&mut r);
    if rehash {
        r.hash = r.compute_hash();
    }
    let hash = r.hash;
    // The store's value format byte (`codec::VALUE_FORMAT`), then the bincode record.
    let mut bytes = vec![old[0]];
    bytes.extend(
        bincode::serde::encode_to_vec(custos_model::Record::Audit(r), bincode::config::standard())
            .unwrap(),
    );
    tree.insert(key, bytes).unwrap();
    db.flush().unwrap();
    hash
}

#[tokio::test]
async fn verify_reads_only_what_follows_its_checkpoint_and_full_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(40), 1).await;
    let audit = sm.audit_log();
    assert_eq!(audit.checkpoint().unwrap(), None);
    let first = audit.verify(None).unwrap();
    assert_eq!(
        (first.error, first.checked, first.checkpoint),
        (None, 40, None)
    );
    let at40 = audit.head().last_hash;
    assert_eq!(audit.checkpoint().unwrap(), Some((40, at40)));

    // Ten more: the next check reads the checkpoint's record and the ten after it.
    apply_all(&mut sm, mixed(50).split_off(40), 41).await;
    let v = audit.verify(None).unwrap();
    assert_eq!(
        (v.error, v.checked, v.checkpoint),
        (None, 11, Some((40, at40)))
    );
    assert_eq!(v.at, Some((50, audit.head().last_hash)));
    // Nothing new: one record.
    assert_eq!(audit.verify(None).unwrap().checked, 1);
    // A record before the checkpoint is reported tied to it: 45..=50 read.
    let v = audit.verify(Some(45)).unwrap();
    assert_eq!((v.error, v.checked), (None, 6));
    assert_eq!(v.at.map(|(s, _)| s), Some(45));
    assert_eq!(
        v.at.map(|(_, h)| h),
        Some(audit.get(45).unwrap().unwrap().hash)
    );
    // Full: every record, and the checkpoint survives a restart.
    let full = audit.verify_full(None).unwrap();
    assert_eq!((full.error, full.checked, full.full), (None, 50, true));
    drop(audit);
    close(log, sm);
    let (_log, sm) = open(dir.path()).await;
    assert_eq!(sm.audit_log().verify(None).unwrap().checked, 1);
}

#[tokio::test]
async fn a_tampered_record_after_the_checkpoint_is_found_before_it_only_by_full() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    assert_eq!(sm.audit_log().verify(None).unwrap().error, None);
    apply_all(&mut sm, mixed(30).split_off(20), 21).await;
    close(log, sm);

    // Record 25 (after the checkpoint at 20) rewritten with its hash recomputed: the link from
    // record 26 breaks, and an incremental check finds it.
    tamper(dir.path(), 25, true, |r| {
        r.message = "Volume x created".into()
    });
    let (log, sm) = open(dir.path()).await;
    let v = sm.audit_log().verify(None).unwrap();
    assert_eq!(
        v.error.as_deref(),
        Some("record 26: prev_hash does not match record 25's hash")
    );
    // A failed check leaves the checkpoint where it was.
    assert_eq!(sm.audit_log().checkpoint().unwrap().map(|c| c.0), Some(20));
    close(log, sm);

    // Record 7 (before the checkpoint), changed without fixing its hash: an incremental check
    // does not read it; a full one does.
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    assert_eq!(sm.audit_log().verify(None).unwrap().error, None);
    close(log, sm);
    tamper(dir.path(), 7, false, |r| {
        r.message = "nothing to see".into()
    });
    let (_log, sm) = open(dir.path()).await;
    let audit = sm.audit_log();
    let v = audit.verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, 1));
    assert_eq!(
        audit.verify_full(None).unwrap().error.as_deref(),
        Some("record 7: its hash does not match its content")
    );
}

#[tokio::test]
async fn a_rewritten_suffix_or_a_shortened_trail_contradicts_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    assert_eq!(sm.audit_log().verify(None).unwrap().error, None);
    close(log, sm);
    // Record 20, the checkpoint's, rewritten with a consistent hash (and it is the head, so an
    // intruder would rewrite the head too): the checkpoint no longer matches.
    tamper(dir.path(), 20, true, |r| r.reason = "edited".into());
    let (_log, sm) = open(dir.path()).await;
    let audit = sm.audit_log();
    for v in [
        audit.verify(None).unwrap(),
        audit.verify_full(None).unwrap(),
    ] {
        let error = v.error.unwrap();
        assert!(
            error.starts_with("record 20: its hash is not the one this node verified earlier"),
            "{error}"
        );
    }
    drop(audit);
    drop(sm);
    drop(_log);

    // The last record dropped and the head moved back to record 19: a consistent, shorter
    // trail, but the checkpoint says this node saw record 20.
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    assert_eq!(sm.audit_log().verify(None).unwrap().error, None);
    let mut head = sm.audit_log().head();
    head.next_seq = 20;
    head.last_hash = sm.audit_log().get(19).unwrap().unwrap().hash;
    close(log, sm);
    {
        let db = raw_sled(dir.path());
        let tree = db.open_tree("sm").unwrap();
        tree.remove(custos_model::RecordKey::Audit(20).encode())
            .unwrap();
        let mut bytes = vec![6u8];
        bytes.extend(
            bincode::serde::encode_to_vec(
                custos_model::Record::AuditHead(head),
                bincode::config::standard(),
            )
            .unwrap(),
        );
        tree.insert(custos_model::RecordKey::AuditHead.encode(), bytes)
            .unwrap();
        db.flush().unwrap();
    }
    let (_log, sm) = open(dir.path()).await;
    assert_eq!(sm.audit_log().head().last_seq(), 19);
    assert_eq!(
        sm.audit_log().verify_full(None).unwrap().error.as_deref(),
        Some(
            "this node verified the chain through record 20 but the trail ends at record 19: \
             records were removed from its end"
        )
    );
}

#[tokio::test]
async fn after_truncation_the_checkpoint_anchors_the_first_kept_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    let audit = sm.audit_log();
    let v = audit.verify(Some(12)).unwrap();
    assert_eq!((v.error, v.checked), (None, 12));
    assert_eq!(audit.checkpoint().unwrap().map(|c| c.0), Some(12));
    let mut truncate = command(100, Op::TruncateAudit { through: 12 });
    truncate.identity = admin();
    apply_all(&mut sm, vec![truncate], 21).await;
    assert_eq!(audit.head().first_seq, 13);
    // The checkpoint's record is gone; the first kept must name its hash.
    let v = audit.verify(None).unwrap();
    assert_eq!((v.error, v.checked), (None, 9));
    let full = audit.verify_full(None).unwrap();
    assert_eq!((full.error, full.checked), (None, 9));
    close(log, sm);

    // The same truncation, and record 13's prev_hash forged (hash recomputed): a check that
    // takes the first kept record's prev_hash as given cannot tell; the checkpoint can.
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    assert_eq!(sm.audit_log().verify(Some(12)).unwrap().error, None);
    let mut truncate = command(100, Op::TruncateAudit { through: 12 });
    truncate.identity = admin();
    apply_all(&mut sm, vec![truncate], 21).await;
    close(log, sm);
    let mut prev = tamper(dir.path(), 13, true, |r| {
        r.prev_hash = custos_model::AuditHash([9; 32]);
        r.message = "forged".into();
    });
    // The records after it rewritten to name the forged one, so the suffix is consistent.
    for seq in 14..=21 {
        prev = tamper(dir.path(), seq, true, |r| r.prev_hash = prev);
    }
    let (_log, sm) = open(dir.path()).await;
    let audit = sm.audit_log();
    for v in [
        audit.verify(None).unwrap(),
        audit.verify_full(None).unwrap(),
    ] {
        assert_eq!(
            v.error.as_deref(),
            Some("record 13: prev_hash does not match record 12's hash")
        );
    }
}

#[tokio::test]
async fn a_stale_checkpoint_means_a_check_of_every_kept_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await;
    apply_all(&mut sm, mixed(20), 1).await;
    let audit = sm.audit_log();
    assert_eq!(audit.verify(Some(5)).unwrap().error, None);
    let mut truncate = command(100, Op::TruncateAudit { through: 12 });
    truncate.identity = admin();
    apply_all(&mut sm, vec![truncate], 21).await;
    // Records 6..=12 went unchecked and are gone: the check starts at the first kept.
    let v = audit.verify(None).unwrap();
    assert_eq!(
        (v.error, v.checked, v.checkpoint.map(|c| c.0)),
        (None, 9, Some(5))
    );
    assert_eq!(audit.checkpoint().unwrap().map(|c| c.0), Some(21));
}
