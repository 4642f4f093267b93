//! Backup and restore at 100,000 volumes and 1,000,000 audit records: time, file size and peak
//! resident memory of each, against the size of the data (`scripts/bench.sh backup`).
//!
//! Run as `cargo bench -p custos-store --bench backup_1m`. The driver builds the state in a
//! temporary store through the state machine's `apply` (no network: 100 `CreateVolume` entries
//! per call, then `RecordDenials` commands of 1,000 denials each), then runs each phase in a
//! child process of its own, so that one phase's peak resident memory (VmHWM, reset with
//! `clear_refs` after the store is opened) does not hide another's:
//! - `backup`: `BackupSource::backup` on the populated store, its chunks (1 MiB, as the server
//!   sends them) written to a file as they come;
//! - `restore`: `Backup::open` (the verifying pass) and `restore` into an empty data dir.
//!
//! The growth of the peak over the RSS before the phase is what the phase held at most; with
//! the backup in memory it would be at least the file's size. The result is one line,
//! `BACKUP_BENCH {json}`, on stdout (and in `$BACKUP_BENCH_OUT` when set). Knobs:
//! `BACKUP_BENCH_VOLUMES` (100000), `BACKUP_BENCH_DENIALS` (1000000).

use custos_model::audit::{AuditActor, Denial};
use custos_model::{Acls, Command, Identity, NodeId, Op, RequestId, VolumeId};
use custos_store::Entry;
use custos_store::Member;
use openraft::EntryPayload;
use std::io::Write;
use std::path::Path;
use std::process::Command as Process;
use std::time::Instant;

const PER_BATCH: u64 = 1_000;
const VOLUMES_PER_APPLY: u64 = 100;
/// The server's `BACKUP_CHUNK`.
const CHUNK: usize = 1 << 20;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn command(index: u64, op: Op, request: String) -> Entry {
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
    let op = Op::CreateVolume {
        id: VolumeId(format!("vol-{n:06}")),
        name: format!("name-{n}"),
        spec: custos_model::VolumeSpec {
            size: 1 << 30,
            ..Default::default()
        },
        labels: [("team".to_string(), format!("t{}", n % 50))].into(),
        acls: Acls::default(),
    };
    command(index, op, format!("create-{n}"))
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
    command(index, Op::RecordDenials { denials }, format!("batch-{b}"))
}

/// Resident memory of this process, in KiB: (VmRSS, VmHWM).
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

/// Resets VmHWM to the current RSS (Linux `clear_refs` value 5); returns the current RSS.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
    memory().0
}

/// Child `populate <store>`: builds the state.
async fn populate(store: &Path) -> String {
    let (_log, sm) = custos_store::open(store).await.unwrap();
    let volumes = knob("BACKUP_BENCH_VOLUMES", 100_000);
    let batches = knob("BACKUP_BENCH_DENIALS", 1_000_000) / PER_BATCH;
    let start = Instant::now();
    let (mut index, mut n) = (0, 0);
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
    format!(
        "\"populate_s\":{:.3},\"volumes\":{volumes},\"audit_records\":{}",
        start.elapsed().as_secs_f64(),
        sm.audit_log().head().last_seq()
    )
}

/// Child `backup <store> <file>`: takes a backup and writes it to `file` chunk by chunk.
async fn backup(store: &Path, file: &Path) -> String {
    let (_log, sm) = custos_store::open(store).await.unwrap();
    let source = sm.backup_source();
    let before = reset_peak();
    let start = Instant::now();
    let mut stream = source.backup(1).await.unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let mut written = 0u64;
    while let Some(chunk) = stream.next_chunk(CHUNK).await.unwrap() {
        out.write_all(&chunk).unwrap();
        written += chunk.len() as u64;
    }
    out.into_inner().unwrap().sync_all().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (_, peak) = memory();
    assert_eq!(written, stream.size());
    format!(
        "\"backup_s\":{secs:.3},\"backup_rss_before_kib\":{before},\"backup_peak_kib\":{peak},\
         \"backup_bytes\":{written},\"backup_records\":{}",
        stream.header().records
    )
}

/// Child `restore <empty store> <file>`: verifies the backup and restores it.
async fn restore(store: &Path, file: &Path) -> String {
    let before = reset_peak();
    let start = Instant::now();
    let backup = custos_store::Backup::open(file).await.unwrap();
    let verified = start.elapsed().as_secs_f64();
    let member = Member {
        raft_addr: "127.0.0.1:1".into(),
        sdk_addr: "127.0.0.1:2".into(),
    };
    custos_store::restore(store, &backup, 1, member)
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (_, peak) = memory();
    let (_log, sm) = custos_store::open(store).await.unwrap();
    let head = sm.audit_log().head();
    format!(
        "\"restore_s\":{secs:.3},\"restore_verify_s\":{verified:.3},\
         \"restore_rss_before_kib\":{before},\"restore_peak_kib\":{peak},\
         \"restored_audit_records\":{}",
        head.next_seq - head.first_seq
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
    let path = Path::new;
    match args.as_slice() {
        ["populate", store] => println!("PHASE {}", rt.block_on(populate(path(store)))),
        ["backup", store, file] => {
            println!("PHASE {}", rt.block_on(backup(path(store), path(file))))
        }
        ["restore", store, file] => {
            println!("PHASE {}", rt.block_on(restore(path(store), path(file))))
        }
        // `cargo bench` passes `--bench` (and maybe a filter): the driver.
        _ => {
            let dir = tempfile::tempdir().unwrap();
            let arg = |p: &Path| p.to_str().unwrap().to_string();
            let (source, target) = (
                arg(&dir.path().join("source")),
                arg(&dir.path().join("target")),
            );
            let file = arg(&dir.path().join("custos.backup"));
            let populated = child(&["populate", &source]);
            eprintln!("populated: {populated}");
            let backed_up = child(&["backup", &source, &file]);
            eprintln!("backup: {backed_up}");
            let restored = child(&["restore", &target, &file]);
            eprintln!("restore: {restored}");
            let line = format!("{{{populated},{backed_up},{restored}}}");
            println!("BACKUP_BENCH {line}");
            if let Ok(out) = std::env::var("BACKUP_BENCH_OUT") {
                std::fs::write(out, format!("{line}\n")).unwrap();
            }
        }
    }
}
