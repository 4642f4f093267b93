//! Crash test: a child process appends, applies and is SIGKILLed; every acknowledged entry
//! must be on disk, and the state machine must be a consistent prefix that openraft's start-up
//! re-apply brings up to the saved commit index.

mod common;

use common::*;
use custos_model::State;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, RaftLogReader, StorageHelper, Vote};
use std::io::Write;
use std::process::{Command, Stdio};

const CHILD_DIR: &str = "CUSTOS_STORE_CRASH_CHILD_DIR";
const BATCH: u64 = 10;

/// The child's work; a no-op unless the parent test started this binary for it.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (mut log, sm) = open(std::path::Path::new(&dir)).await;
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        append(&mut log, vec![membership(0, 0, &[1])]).await;
        sm.apply_entries([membership(0, 0, &[1])]).unwrap();
        let mut next = 1;
        for round in 0..30 {
            let entries: Vec<_> = (next..next + BATCH)
                .map(|n| normal(1, n, create_volume(n)))
                .collect();
            append(&mut log, entries.clone()).await;
            let last = next + BATCH - 1;
            let mut out = std::io::stdout().lock();
            writeln!(out, "ACKED {last}").unwrap();
            out.flush().unwrap();
            drop(out);
            // Commit and apply without any flush; the last round is killed right after.
            log.save_committed(Some(log_id(1, last))).await.unwrap();
            sm.apply_entries(entries).unwrap();
            next = last + 1;
            if round == 29 {
                // SIGKILL: no destructor runs, so nothing unflushed reaches the disk.
                let _ = Command::new("kill")
                    .args(["-KILL", &std::process::id().to_string()])
                    .status();
                std::thread::sleep(std::time::Duration::from_secs(5));
                std::process::abort(); // no `kill` binary: SIGABRT skips destructors too
            }
        }
    });
    unreachable!("the child kills itself");
}

#[tokio::test]
async fn acknowledged_entries_survive_sigkill_and_state_recovers() {
    let exe = std::env::current_exe().unwrap();
    for trial in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "child must have been killed");
        let acked: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("ACKED ").map(|n| n.parse::<u64>().unwrap()))
            .max()
            .expect("child acknowledged something");
        assert_eq!(acked, 300, "trial {trial}");

        let (mut log, mut sm) = open(dir.path()).await;
        let entries = all_entries(&mut log).await;
        assert!(
            entries.len() as u64 > acked,
            "trial {trial}: acked {acked}, have {}",
            entries.len()
        );
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.log_id.index, i as u64);
        }
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 1))
        );

        // Whatever survived of the state machine is exactly the log replayed up to `_applied`.
        let replay = |upto: u64| {
            let mut state = State::new();
            for e in &entries[..=upto as usize] {
                if let EntryPayload::Normal(cmd) = &e.payload {
                    state.apply(cmd);
                }
            }
            state
        };
        let applied = sm.applied_state().await.unwrap().0.expect("applied").index;
        assert_eq!(
            *sm.state().read().unwrap(),
            replay(applied),
            "trial {trial}"
        );
        let committed = log
            .read_committed()
            .await
            .unwrap()
            .expect("committed")
            .index;
        assert!(
            committed >= applied,
            "trial {trial}: committed {committed} < applied {applied}"
        );

        StorageHelper::new(&mut log, &mut sm)
            .get_initial_state()
            .await
            .unwrap();
        assert_eq!(
            sm.applied_state().await.unwrap().0.map(|l| l.index),
            Some(committed)
        );
        assert_eq!(
            *sm.state().read().unwrap(),
            replay(committed),
            "trial {trial}"
        );
        eprintln!("trial {trial}: acked {acked}, applied on disk {applied}, committed {committed}");
    }
}
