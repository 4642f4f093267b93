//! `custos-chaos`: runs one chaos run of any length against real custos processes and writes
//! its report (`report.json`, `summary.txt`, `history.jsonl`); `scripts/chaos.sh` drives it.
//! Exits 1 when a check fails, 2 on bad arguments.

use custos_cluster_tests::chaos::{self, faults::FaultKind, ChaosConfig};
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str = "usage: custos-chaos [--nodes N] [--minutes M | --seconds S] [--seed S] \
[--out DIR] [--tenants T] [--clients-per-tenant C] [--epoch-secs E] [--faults kind,kind,...] \
[--max-rss-mib M] [--max-data-mib M]";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut nodes: u16 = 5;
    let mut seconds: u64 = 300;
    let mut seed: Option<u64> = None;
    let mut out: Option<PathBuf> = None;
    let mut tenants: Option<usize> = None;
    let mut clients: Option<usize> = None;
    let mut epoch: Option<u64> = None;
    let mut faults: Option<Vec<FaultKind>> = None;
    let mut max_rss: Option<u64> = None;
    let mut max_data: Option<u64> = None;
    let bad = |msg: String| -> ! {
        eprintln!("custos-chaos: {msg}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| bad(format!("{name} needs a value")))
        };
        let num = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| bad(format!("{name}: {v:?} is not a number")))
        };
        match a.as_str() {
            "--nodes" => nodes = num("--nodes", value("--nodes")) as u16,
            "--minutes" => seconds = 60 * num("--minutes", value("--minutes")),
            "--seconds" => seconds = num("--seconds", value("--seconds")),
            "--seed" => seed = Some(num("--seed", value("--seed"))),
            "--out" => out = Some(PathBuf::from(value("--out"))),
            "--tenants" => tenants = Some(num("--tenants", value("--tenants")) as usize),
            "--clients-per-tenant" => {
                clients = Some(num("--clients-per-tenant", value("--clients-per-tenant")) as usize)
            }
            "--epoch-secs" => epoch = Some(num("--epoch-secs", value("--epoch-secs"))),
            "--max-rss-mib" => max_rss = Some(num("--max-rss-mib", value("--max-rss-mib"))),
            "--max-data-mib" => max_data = Some(num("--max-data-mib", value("--max-data-mib"))),
            "--faults" => {
                let list = value("--faults");
                faults = Some(
                    list.split(',')
                        .map(|k| {
                            FaultKind::from_name(k.trim())
                                .unwrap_or_else(|| bad(format!("unknown fault kind {k:?}")))
                        })
                        .collect(),
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                println!(
                    "fault kinds: {}",
                    FaultKind::AVAILABLE
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                return;
            }
            other => bad(format!("unknown argument {other:?}")),
        }
    }
    if !(3..=9).contains(&nodes) {
        bad(format!("--nodes must be between 3 and 9, not {nodes}"));
    }
    if seconds < 30 {
        bad("a run needs at least 30 seconds".into());
    }
    let seed = seed.unwrap_or_else(chaos::random_seed);
    let mut cfg = ChaosConfig::new(nodes, Duration::from_secs(seconds), seed);
    cfg.out_dir = Some(out.unwrap_or_else(|| PathBuf::from(format!("target/chaos/run-{seed}"))));
    if let Some(f) = faults {
        cfg.faults = f;
    }
    if let Some(t) = tenants {
        cfg.workload.tenants = t.max(1);
    }
    if let Some(c) = clients {
        cfg.workload.clients_per_tenant = c.max(1);
    }
    if let Some(e) = epoch {
        cfg.workload.epoch = Duration::from_secs(e.max(10));
    }
    if let Some(m) = max_rss {
        cfg.max_rss_mib = m;
    }
    if let Some(m) = max_data {
        cfg.max_data_mib = m;
    }
    let out_dir = cfg.out_dir.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = match rt.block_on(chaos::run(cfg)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("custos-chaos: the run could not start: {e:#}");
            std::process::exit(1);
        }
    };
    print!("{}", report.summary());
    if let Some(d) = out_dir {
        println!("report: {}", d.join("report.json").display());
    }
    std::process::exit(if report.passed { 0 } else { 1 });
}
