//! Snapshot build and install at 100,000 volumes and 1,000,000 audit records: time, size and
//! peak memory of each phase (`scripts/bench.sh snapshot` runs it for two revisions and
//! reports the ratios).
//!
//! Run as `cargo bench -p custos-store --bench snapshot_1m`. The driver builds the state in a
//! temporary store (100 `CreateVolume` entries per `apply`, then `RecordDenials` commands of
//! 1,000 denials each, as `audit_list.rs` does), then runs each phase in a child process of its
//! own so that one phase's peak resident memory (VmHWM, reset after the store is opened) does
//! not hide another's:
//! - `build`: `build_snapshot` on the populated store;
//! - `install`: an empty store receives the snapshot data in 3 MiB chunks through
//!   `begin_receiving_snapshot` (as openraft's chunked transport writes them) and installs it.
//!
//! The result is one line, `SNAPSHOT_BENCH {json}`, on stdout (and in `$SNAPSHOT_BENCH_OUT`
//! when set). Knobs: `SNAPSHOT_BENCH_VOLUMES` (100000), `SNAPSHOT_BENCH_DENIALS` (1000000).
//! The source only uses what both the in-memory and the file-based snapshot data offer (tokio's
//! async read, write and seek), so the same file measures either implementation.

use custos_model::audit::{AuditActor, Denial};
use custos_model::{Acls, Command, Identity, NodeId, Op, RequestId, VolumeId};
use custos_store::{Entry, SnapshotMeta};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const PER_BATCH: u64 = 1_000;
const VOLUMES_PER_APPLY: u64 = 100;
/// openraft's default `snapshot_max_chunk_size`.
const CHUNK: usize = 3 << 20;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn entry(index: u64, op: Op, request: String) -> Entry {
    Entry {
        log_id: custos_store::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command {
            request_id: RequestId(request),
            identity: Identity::internal_admin("bench"),
            time_ms: 1_700_000_000_000 + index,
            origin: NodeId(1),
            op,
        }),
    }
}

fn create_volume(index: u64, n: u64) -> Entry {
    entry(
        index,
        Op::CreateVolume {
            id: VolumeId(format!("vol-{n:06}")),
            name: format!("name-{n}"),
            spec: custos_model::VolumeSpec {
                size: 1 << 30,
                ..Default::default()
            },
            labels: [("team".to_string(), format!("t{}", n % 50))].into(),
            acls: Acls::default(),
        },
        format!("create-{n}"),
    )
}

fn denials(index: u64, b: u64) -> Entry {
    let denials = (0..PER_BATCH)
        .map(|i| {
            let n = b * PER_BATCH + i;
            Denial {
                message: "Access denied".into(),
                actor: AuditActor {
                    username: format!("user-{}", n % 1000),
                    roles: vec!["system.view".into()],
                    ..AuditActor::default()
                },
                method: "volume.create".into(),
                objects: vec![format!("vol-{n}")],
                code: "PermissionDenied".into(),
                request_id: format!("r{n}"),
                fingerprint: "0123456789ab".into(),
                count: 1,
            }
        })
        .collect();
    entry(index, Op::RecordDenials { denials }, format!("batch-{b}"))
}

/// Resident memory figures of this process, in KiB: (VmRSS, VmHWM).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5) and returns the current RSS.
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    memory().0
}

fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.bin")
}

fn data_path(dir: &Path) -> PathBuf {
    dir.join("snapshot.bin")
}

/// Child `populate <store>`: builds the state.
async fn populate(store: &Path) -> String {
    let (_log, sm) = custos_store::open(store).await.unwrap();
    let volumes = knob("SNAPSHOT_BENCH_VOLUMES", 100_000);
    let batches = knob("SNAPSHOT_BENCH_DENIALS", 1_000_000) / PER_BATCH;
    let start = Instant::now();
    let mut index = 0;
    let mut n = 0;
    while n < volumes {
        let entries: Vec<_> = (n..(n + VOLUMES_PER_APPLY).min(volumes))
            .map(|v| {
                index += 1;
                create_volume(index, v)
            })
            .collect();
        n += entries.len() as u64;
        sm.apply_entries(entries).unwrap();
    }
    for b in 0..batches {
        index += 1;
        sm.apply_entries([denials(index, b)]).unwrap();
    }
    let head = sm.audit_log().head();
    format!(
        "\"populate_s\":{:.3},\"populate_peak_kib\":{},\"volumes\":{volumes},\
         \"audit_records\":{}",
        start.elapsed().as_secs_f64(),
        memory().1,
        head.last_seq()
    )
}

/// Child `build <store> <transfer dir>`: builds a snapshot, then (unmeasured) writes its data
/// and meta to the transfer dir for `install`.
async fn build(store: &Path, transfer: &Path) -> String {
    let (_log, mut sm) = custos_store::open(store).await.unwrap();
    let before = reset_peak();
    let start = Instant::now();
    let mut snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (_, peak) = memory();

    let size = snap.snapshot.seek(std::io::SeekFrom::End(0)).await.unwrap();
    snap.snapshot
        .seek(std::io::SeekFrom::Start(0))
        .await
        .unwrap();
    let mut out = std::fs::File::create(data_path(transfer)).unwrap();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = AsyncReadExt::read(&mut snap.snapshot, &mut buf)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut out, &buf[..n]).unwrap();
    }
    out.sync_all().unwrap();
    let meta = bincode::serde::encode_to_vec(&snap.meta, bincode::config::standard()).unwrap();
    std::fs::write(meta_path(transfer), meta).unwrap();
    format!(
        "\"build_s\":{secs:.3},\"build_rss_before_kib\":{before},\"build_peak_kib\":{peak},\
         \"snapshot_bytes\":{size}"
    )
}

/// Child `install <empty store> <transfer dir>`: receives the snapshot in chunks and installs it.
async fn install(store: &Path, transfer: &Path) -> String {
    let (_log, mut sm) = custos_store::open(store).await.unwrap();
    let meta: SnapshotMeta = bincode::serde::decode_from_slice(
        &std::fs::read(meta_path(transfer)).unwrap(),
        bincode::config::standard(),
    )
    .unwrap()
    .0;
    let mut input = std::fs::File::open(data_path(transfer)).unwrap();
    let before = reset_peak();
    let start = Instant::now();
    let mut receiving = sm.receiving_file().await.unwrap();
    let mut buf = vec![0; CHUNK];
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        // A chunk arrives as its own message: a fresh buffer each time, as the network gives.
        let chunk = buf[..n].to_vec();
        AsyncWriteExt::write_all(&mut receiving, &chunk)
            .await
            .unwrap();
    }
    AsyncWriteExt::shutdown(&mut receiving).await.unwrap();
    sm.install_snapshot(&meta, receiving).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (_, peak) = memory();
    let head = sm.audit_log().head();
    format!(
        "\"install_s\":{secs:.3},\"install_rss_before_kib\":{before},\
         \"install_peak_kib\":{peak},\"installed_audit_records\":{}",
        head.last_seq()
    )
}

fn child(args: &[&str]) -> String {
    let out = Process::new(std::env::current_exe().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("PHASE "))
        .unwrap_or_else(|| panic!("{args:?} printed no result: {stdout}"))
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    match args.as_slice() {
        ["populate", store] => println!("PHASE {}", rt.block_on(populate(Path::new(store)))),
        ["build", store, transfer] => println!(
            "PHASE {}",
            rt.block_on(build(Path::new(store), Path::new(transfer)))
        ),
        ["install", store, transfer] => println!(
            "PHASE {}",
            rt.block_on(install(Path::new(store), Path::new(transfer)))
        ),
        // `cargo bench` passes `--bench` (and maybe a filter): the driver.
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let (source, target) = (dir.path().join("source"), dir.path().join("target"));
            let dir_arg = |p: &Path| p.to_str().unwrap().to_string();
            let t = dir_arg(dir.path());
            let populated = child(&["populate", &dir_arg(&source)]);
            eprintln!("populated: {populated}");
            let built = child(&["build", &dir_arg(&source), &t]);
            eprintln!("built: {built}");
            let installed = child(&["install", &dir_arg(&target), &t]);
            eprintln!("installed: {installed}");
            let line = format!("{{{populated},{built},{installed}}}");
            println!("SNAPSHOT_BENCH {line}");
            if let Ok(path) = std::env::var("SNAPSHOT_BENCH_OUT") {
                std::fs::write(path, format!("{line}\n")).unwrap();
            }
        }
    }
}
