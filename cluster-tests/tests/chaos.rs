//! A CI-sized chaos run (issue #9): 3 real nodes, concurrent clients under different tokens,
//! every available fault kind from a seeded schedule, then the linearizability (with the
//! tenant roles' permissions in the state), audit, stale-permission, convergence, panic and
//! resource checks. `CUSTOS_CHAOS_SEED` replays a seed; `CUSTOS_CHAOS_SECONDS` changes the
//! length. The report is written to
//! `target/chaos/ci-<seed>/` (report.json, summary.txt, history.jsonl).

use custos_cluster_tests::chaos::{self, ChaosConfig};
use std::path::PathBuf;
use std::time::Duration;

/// The seed CI runs unless told otherwise (a fixed one: CI replays the same schedule).
const CI_SEED: u64 = 0x0C05_7005;

fn out_dir(seed: u64) -> PathBuf {
    let root = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root")
                .join("target")
        });
    root.join("chaos").join(format!("ci-{seed}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_sized_chaos_run_passes_every_check() {
    let seed = std::env::var("CUSTOS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_SEED);
    let seconds = std::env::var("CUSTOS_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(75);
    let mut cfg = ChaosConfig::new(3, Duration::from_secs(seconds), seed);
    cfg.out_dir = Some(out_dir(seed));
    let report = chaos::run(cfg)
        .await
        .expect("the chaos run could not start");
    println!("{}", report.summary());
    // The run must have exercised what it claims.
    assert!(
        report.operations > 500,
        "too few operations: {}",
        report.operations
    );
    assert!(
        report.faults_by_kind.len() >= 5,
        "too few fault kinds: {:?}",
        report.faults_by_kind
    );
    // CI's seed draws membership faults too (a replaced member under load, a wiped one).
    if seed == CI_SEED {
        for kind in ["membership_change", "wipe_rejoin"] {
            assert!(
                report.faults_by_kind.contains_key(kind),
                "{kind} not drawn: {:?}",
                report.faults_by_kind
            );
        }
    }
    assert!(report.acknowledged_mutations > 100);
    assert!(
        report.audit.role_changes > 3,
        "the stale-permission check saw too few role changes"
    );
    assert!(
        report.passed,
        "chaos run failed (seed {seed}):\n{}",
        report.summary()
    );
    // The role decided reads too: some of u1's and u2's reads were refused by it, some not.
    let reads = &report.outcomes["read_volume"];
    assert!(
        reads.refused_by_role > 0 && reads.ok > 0,
        "reads: {} ok, {} refused by the role check",
        reads.ok,
        reads.refused_by_role
    );
    // Role changes happened while a member was paused.
    if report
        .faults_by_kind
        .keys()
        .any(|k| k.starts_with("pause_"))
    {
        assert!(
            report.pause_role_changes > 0,
            "no role change during a pause"
        );
    }
    the_checker_rejects_the_history_tampered(&out_dir(seed).join("history.jsonl"));
}

/// The checker is not vacuous on a real history: the run's history passes, and the same
/// history with one read's answer changed, or with an acknowledged write turned into a
/// refusal whose effect was later seen, fails.
fn the_checker_rejects_the_history_tampered(path: &std::path::Path) {
    use custos_cluster_tests::history;
    use custos_cluster_tests::spec::{Input, Observed, Outcome};
    let records = history::read_jsonl(path).expect("the run's history");
    let budget = Duration::from_secs(60);
    assert!(history::check(&records, budget, 2).iter().all(|t| t.ok()));

    // 1. A final read's label replaced by one no operation ever wrote.
    let mut bad = records.clone();
    let read = bad
        .iter_mut()
        .rev()
        .find_map(|r| match &mut r.outcome {
            Outcome::Ok {
                observed: Observed::Volumes { volumes },
            } if volumes.first().is_some_and(|v| v.label.is_some()) => Some(r),
            _ => None,
        })
        .expect("a read that saw a labelled volume");
    let tenant = read.tenant.clone();
    if let Outcome::Ok {
        observed: Observed::Volumes { volumes },
    } = &mut read.outcome
    {
        volumes[0].label = Some("never-written".into());
    }
    let verdicts = history::check(&bad, budget, 2);
    let t = verdicts.iter().find(|v| v.tenant == tenant).unwrap();
    assert_eq!(t.verdict, "not linearizable", "{t:?}");

    // 2. An acknowledged label write whose value a later read saw, recorded as refused.
    let mut bad = records.clone();
    let seen: Vec<String> = bad
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ok {
                observed: Observed::Volumes { volumes },
            } => volumes.first().and_then(|v| v.label.clone()),
            _ => None,
        })
        .collect();
    let write = bad
        .iter_mut()
        .find(|r| {
            matches!(&r.input, Input::SetLabel { label, .. } if seen.contains(label))
                && matches!(r.outcome, Outcome::Ok { .. })
        })
        .expect("an acknowledged label write that was read back");
    let tenant = write.tenant.clone();
    write.outcome = Outcome::Refused {
        code: "PermissionDenied".into(),
        message: "Access denied to volume".into(),
        role: false,
    };
    let verdicts = history::check(&bad, budget, 2);
    let t = verdicts.iter().find(|v| v.tenant == tenant).unwrap();
    assert_eq!(t.verdict, "not linearizable", "{t:?}");
}
