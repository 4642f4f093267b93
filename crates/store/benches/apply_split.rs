//! How long an apply holds the state write lock now, against how long it held it before: the
//! in-memory `State::apply` of a command (all that runs under the lock since issue #20) and the
//! whole `StateMachineStore::apply` of the same command (in-memory apply plus the `sm` tree
//! writes, all of which ran under the lock before), one `CreateVolume` per call on a store of
//! `APPLY_BENCH_VOLUMES` (10000) volumes, `APPLY_BENCH_OPS` (5000) calls.
//!
//! Run as `cargo bench -p custos-store --bench apply_split`; prints one line,
//! `APPLY_BENCH {json}`, with p50/p99/max of each in microseconds.

use custos_model::{Acls, Command, Identity, NodeId, Op, RequestId, VolumeId};
use custos_store::Entry;
use openraft::EntryPayload;
use std::time::Instant;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn create(index: u64, n: u64) -> Entry {
    Entry {
        log_id: custos_store::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            request_id: RequestId(format!("create-{n}")),
            identity: Identity::internal_admin("bench"),
            time_ms: 1_700_000_000_000 + index,
            origin: NodeId(1),
            op: Op::CreateVolume {
                id: VolumeId(format!("vol-{n:07}")),
                name: format!("name-{n}"),
                spec: custos_model::VolumeSpec {
                    size: 1 << 30,
                    ..Default::default()
                },
                labels: [("team".to_string(), format!("t{}", n % 50))].into(),
                acls: Acls::default(),
            },
        }),
    }
}

fn summary(mut us: Vec<f64>) -> String {
    us.sort_by(f64::total_cmp);
    let at = |p: f64| us[((us.len() - 1) as f64 * p / 100.0).round() as usize];
    format!(
        "{{\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_us\":{:.1}}}",
        at(50.0),
        at(99.0),
        us[us.len() - 1]
    )
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_log, sm) = custos_store::open(dir.path()).await.unwrap();
        let volumes = knob("APPLY_BENCH_VOLUMES", 10_000);
        let ops = knob("APPLY_BENCH_OPS", 5_000);
        let mut index = 0;
        for chunk in (0..volumes).collect::<Vec<_>>().chunks(100) {
            let entries: Vec<_> = chunk
                .iter()
                .map(|&n| {
                    index += 1;
                    create(index, n)
                })
                .collect();
            sm.apply_entries(entries).unwrap();
        }
        // The same commands on a copy of the state, in memory only.
        let mut state = sm.state().read().unwrap().clone();
        let (mut in_memory, mut whole) = (Vec::new(), Vec::new());
        for n in volumes..volumes + ops {
            index += 1;
            let entry = create(index, n);
            let EntryPayload::Normal(cmd) = &entry.payload else {
                unreachable!()
            };
            let t0 = Instant::now();
            let applied = state.apply(cmd);
            in_memory.push(t0.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(applied);
            let t0 = Instant::now();
            sm.apply_entries([entry]).unwrap();
            whole.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        assert_eq!(&state, &*sm.state().read().unwrap());
        println!(
            "APPLY_BENCH {{\"volumes\":{volumes},\"ops\":{ops},\"in_memory\":{},\"whole_apply\":{}}}",
            summary(in_memory),
            summary(whole)
        );
    });
}
