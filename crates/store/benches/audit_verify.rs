//! Audit `Verify` after retention, at 10,000 and 1,000,000 kept records: what a check from the
//! node's verified checkpoint costs (the target: the same at both sizes), against a full re-hash
//! of the kept trail (its peer, which grows with the trail). Also measures a denial flood
//! against the retention bound.
//!
//! Each trail is built in a temporary store the way a cluster fills it: `RecordDenials`
//! commands of 1,000 denials through `apply`, with the leader's retention rule
//! (`audit::retention_through`, `TruncateAudit` commands of at most `AUDIT_TRUNCATE_MAX`)
//! applied after every command. The 10,000-record trail gets 20,000 denials under a bound of
//! 10,000; the 1,000,000-record trail gets 2,000,000 under the default bound of 1,000,000, so
//! its second million is a flood against a full trail: the bench checks (and prints) that the
//! trail never exceeds its bound plus the rule's 1% slack and one command, with an incremental
//! `verify` every 50 commands and a full one at the end.
//!
//! Measured on each: `verify_from` an anchor 1,000 records behind the head (the records a check
//! reads when 1,000 arrived since the last one; it leaves the stored checkpoint alone, so every
//! iteration does the same work), `verify` with nothing new (steady state), and `verify_full`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use custos_model::audit::{retention_through, AuditActor, Denial};
use custos_model::state::AUDIT_TRUNCATE_MAX;
use custos_model::{Command, Identity, NodeId, Op, RequestId};
use custos_store::Entry;
use custos_store::{AuditLog, StateMachineStore};
use openraft::EntryPayload;
use std::time::{Duration, Instant};

const PER_BATCH: u64 = 1_000;
const NEW: u64 = 1_000;

fn entry(index: u64, op: Op) -> Entry {
    Entry {
        log_id: custos_store::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            request_id: RequestId(format!("cmd-{index}")),
            identity: Identity::internal_admin("bench"),
            time_ms: 1_700_000_000_000 + index,
            origin: NodeId(1),
            op,
        }),
    }
}

fn denials(b: u64) -> Op {
    Op::RecordDenials {
        denials: (0..PER_BATCH)
            .map(|i| {
                let n = b * PER_BATCH + i;
                Denial {
                    message: "Unable to authenticate token".into(),
                    actor: AuditActor {
                        username: format!("user-{}", n % 1000),
                        ..AuditActor::default()
                    },
                    method: "Authentication".into(),
                    objects: vec![format!("vol-{n}")],
                    code: "Unauthenticated".into(),
                    request_id: format!("r{n}"),
                    fingerprint: "0123456789ab".into(),
                    count: 1,
                }
            })
            .collect(),
    }
}

/// A store filled with `batches` commands of denials under retention to `max_records`.
struct Trail {
    _dir: tempfile::TempDir,
    _sm: StateMachineStore,
    audit: AuditLog,
}

fn build(rt: &tokio::runtime::Runtime, batches: u64, max_records: u64) -> Trail {
    let dir = tempfile::tempdir().unwrap();
    let (_log, sm) = rt.block_on(custos_store::open(dir.path())).unwrap();
    let audit = sm.audit_log();
    let start = Instant::now();
    let mut index = 0;
    let bound = max_records + (max_records / 100).max(10) + PER_BATCH + 1;
    let (mut max_kept, mut checks, mut check_time, mut check_max) =
        (0, 0u32, Duration::ZERO, Duration::ZERO);
    for b in 0..batches {
        index += 1;
        sm.apply_entries([entry(index, denials(b))]).unwrap();
        while let Some(through) = retention_through(&audit.head(), max_records) {
            index += 1;
            let op = Op::TruncateAudit {
                through: through.min(audit.head().first_seq + AUDIT_TRUNCATE_MAX - 1),
            };
            sm.apply_entries([entry(index, op)]).unwrap();
        }
        let kept = audit.head().len();
        max_kept = max_kept.max(kept);
        assert!(kept <= bound, "{kept} records kept, over the bound {bound}");
        if (b + 1) % 50 == 0 {
            let t = Instant::now();
            let v = audit.verify(None).unwrap();
            let took = t.elapsed();
            assert_eq!(v.error, None);
            checks += 1;
            check_time += took;
            check_max = check_max.max(took);
        }
    }
    let head = audit.head();
    let t = Instant::now();
    let full = audit.verify_full(None).unwrap();
    assert_eq!(full.error, None);
    eprintln!(
        "{} denials under max_records = {max_records}: built in {:.1?}; records {}..={} kept ({}), \
         at most {max_kept} at any time (bound with slack {bound}); {checks} incremental checks \
         every 50 commands: mean {:.2?}, max {:.2?}; full check at the end: {} records in {:.2?}",
        batches * PER_BATCH,
        start.elapsed(),
        head.first_seq,
        head.last_seq(),
        head.len(),
        check_time / checks.max(1),
        check_max,
        full.checked,
        t.elapsed(),
    );
    Trail {
        _dir: dir,
        _sm: sm,
        audit,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let trails = [
        ("10k", build(&rt, 20, 10_000)),
        ("1m", build(&rt, 2_000, 1_000_000)),
    ];
    let mut g = c.benchmark_group("audit_verify");
    g.sample_size(10);
    for (name, trail) in &trails {
        let audit = &trail.audit;
        let head = audit.head();
        let anchor_seq = head.last_seq() - NEW;
        let anchor = (anchor_seq, audit.get(anchor_seq).unwrap().unwrap().hash);
        g.bench_with_input(BenchmarkId::new("new_1000", name), &anchor, |b, anchor| {
            b.iter(|| {
                let v = audit.verify_from(*anchor, None).unwrap();
                // The anchor's record (still kept, so checked against it) and the 1,000 after it.
                assert_eq!((v.error.as_deref(), v.checked), (None, NEW + 1));
            })
        });
        g.bench_function(BenchmarkId::new("nothing_new", name), |b| {
            b.iter(|| {
                let v = audit.verify(None).unwrap();
                assert_eq!((v.error.as_deref(), v.checked), (None, 1));
            })
        });
    }
    // The peer: a full re-hash grows with the trail (a few seconds per call at 1,000,000).
    for (name, trail) in &trails {
        let kept = trail.audit.head().len();
        g.bench_function(BenchmarkId::new("full", name), |b| {
            b.iter(|| {
                let v = trail.audit.verify_full(None).unwrap();
                assert_eq!((v.error.as_deref(), v.checked), (None, kept));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
