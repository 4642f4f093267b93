//! Audit `List` on a trail of 1,000,000 records: the first page of a user's records (through
//! the username index), against the same page found by scanning (a method filter, and a rare
//! object id that only a bounded scan can look for).
//!
//! The trail is built once per run in a temporary store: 1,000 `RecordDenials` commands of
//! 1,000 denials each, spread over 1,000 usernames (`user-0` … `user-999`). Target: the first
//! page by user in under 100 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use custos_model::audit::{AuditActor, AuditQuery, Denial};
use custos_model::{Command, Identity, NodeId, Op, RequestId};
use custos_store::Entry;
use openraft::EntryPayload;
use std::time::Instant;

const BATCHES: u64 = 1_000;
const PER_BATCH: u64 = 1_000;
const USERS: u64 = 1_000;

fn batch(b: u64) -> Entry {
    let denials = (0..PER_BATCH)
        .map(|i| {
            let n = b * PER_BATCH + i;
            Denial {
                message: "Access denied".into(),
                actor: AuditActor {
                    username: format!("user-{}", n % USERS),
                    roles: vec!["system.view".into()],
                    ..AuditActor::default()
                },
                method: if n.is_multiple_of(10) {
                    "volume.delete".into()
                } else {
                    "volume.create".into()
                },
                objects: vec![format!("vol-{n}")],
                code: "PermissionDenied".into(),
                request_id: format!("r{n}"),
                fingerprint: "0123456789ab".into(),
                count: 1,
            }
        })
        .collect();
    Entry {
        log_id: custos_store::log_id(1, 1, b + 1),
        payload: EntryPayload::Normal(Command {
            request_id: RequestId(format!("batch-{b}")),
            identity: Identity::internal_admin("bench"),
            time_ms: 1_700_000_000_000 + b,
            origin: NodeId(1),
            op: Op::RecordDenials { denials },
        }),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_log, sm) = rt.block_on(custos_store::open(dir.path())).unwrap();
    let start = Instant::now();
    for b in 0..BATCHES {
        sm.apply_entries([batch(b)]).unwrap();
    }
    let audit = sm.audit_log();
    assert_eq!(audit.head().last_seq(), BATCHES * PER_BATCH);
    eprintln!(
        "built a trail of {} records in {:.1?}",
        BATCHES * PER_BATCH,
        start.elapsed()
    );

    let mut g = c.benchmark_group("audit_list_1m");
    g.sample_size(20);
    let by_user = AuditQuery {
        username: Some("user-777".into()),
        ..AuditQuery::default()
    };
    g.bench_function("first_page_by_user", |b| {
        b.iter(|| {
            let page = audit.list(&by_user, None, 100, false).unwrap();
            assert_eq!(page.records.len(), 100);
        })
    });
    g.bench_function("first_page_by_user_newest_first", |b| {
        b.iter(|| {
            let page = audit.list(&by_user, None, 100, true).unwrap();
            assert_eq!(page.records.len(), 100);
        })
    });
    let by_method = AuditQuery {
        method: Some("volume.delete".into()),
        ..AuditQuery::default()
    };
    g.bench_function("first_page_by_method_scan", |b| {
        b.iter(|| {
            let page = audit.list(&by_method, None, 100, false).unwrap();
            assert_eq!(page.records.len(), 100);
        })
    });
    // A user's 100 records found by scanning instead of the index: the peer of the indexed
    // query (same result, no index).
    let by_user_scan = AuditQuery {
        object: None,
        ..AuditQuery::default()
    };
    g.bench_function("first_page_by_user_scan", |b| {
        b.iter(|| {
            let mut found = 0;
            let mut cursor = None;
            while found < 100 {
                let page = audit.list(&by_user_scan, cursor, 1000, false).unwrap();
                found += page
                    .records
                    .iter()
                    .filter(|r| r.actor.username == "user-777")
                    .count();
                cursor = page.next;
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
