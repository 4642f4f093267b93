//! The audit trail on disk: written with each apply, queried by user and page, verified, kept
//! across restarts, snapshots and installs, truncated with its index.

mod common;

use common::*;
use custos_model::audit::{AuditActor, AuditQuery, Denial};
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
    sm.apply(entries).await.unwrap();
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
    osm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    let oaudit = osm.audit_log();
    assert_eq!(oaudit.head(), head);
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
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("sm").unwrap();
        // The store's value format byte (`codec::VALUE_FORMAT`), then the bincode record.
        let mut bytes = vec![5u8];
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
