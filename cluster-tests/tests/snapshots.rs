//! Snapshots and log purges over many cycles: with a snapshot every 20 entries and 2,000 writes
//! (100 snapshot/purge cycles) the members' data directories stay bounded when the state does,
//! and a member that was down the whole time catches up by snapshot install.

use custos_client::model::VolumeUpdate;
use custos_client::CreateVolume;
use custos_cluster_tests::TestCluster;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

const WRITES: usize = 2_000;
const SNAPSHOT_EVERY: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_snapshot_cycles_keep_disk_bounded_and_a_late_member_installs_one() {
    let mut cluster = TestCluster::start_with(
        3,
        &[
            "--snapshot-every",
            &SNAPSHOT_EVERY.to_string(),
            "--keep-log-entries",
            "5",
            // The trail is part of the state: keep it bounded too, so the state is.
            "--audit-max-records",
            "1000",
        ],
    )
    .unwrap();
    let admin = cluster.token("admin");
    let leader = cluster.leader(1).await.unwrap();
    let late = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill9(late);
    let up: Vec<u64> = (1..=3).filter(|id| *id != late).collect();
    let client = cluster
        .any_client(Some(&admin))
        .with_timeout(Duration::from_secs(10));

    let mut ids = vec![];
    for i in 0..10 {
        let opts = CreateVolume {
            name: format!("v{i}"),
            size: 1 << 30,
            ha_level: 1,
            labels: BTreeMap::new(),
            shared: false,
            encrypted: false,
        };
        ids.push(client.create_volume(&opts).await.unwrap());
    }

    // The same ten volumes updated over and over: the state stays the same size while the log
    // goes through 100 snapshot/purge cycles. Eight writers at a time.
    let mut samples: Vec<(usize, u64)> = vec![];
    let started = Instant::now();
    for round in 0..WRITES / 200 {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let (client, ids) = (client.clone(), ids.clone());
            tasks.spawn(async move {
                for k in 0..25 {
                    let n = round * 200 + w * 25 + k;
                    let labels = BTreeMap::from([("gen".to_string(), n.to_string())]);
                    client
                        .update_volume(&ids[n % ids.len()], &labels, &VolumeUpdate::default())
                        .await
                        .unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let bytes: u64 = up
            .iter()
            .map(|id| disk_usage(&cluster.node(*id).data_dir.join("db")))
            .max()
            .unwrap();
        samples.push(((round + 1) * 200, bytes));
    }
    let took = started.elapsed();
    eprintln!("{WRITES} updates in {took:?}; largest data dir after each 200: {samples:?}");

    // Bounded: after the first 20 cycles the data dir stops growing (sled reuses the space of
    // purged entries and replaced snapshots); allow sled's segment granularity as slack.
    let early = samples[1..4].iter().map(|s| s.1).max().unwrap();
    let late_max = samples[5..].iter().map(|s| s.1).max().unwrap();
    assert!(
        late_max <= early * 2 + (8 << 20),
        "disk grew across snapshot cycles: {early} bytes after 400-800 writes, {late_max} later"
    );

    // The member that missed everything comes back: its log is far behind the purged point,
    // so it gets the snapshot.
    cluster.restart(late).unwrap();
    let mine = cluster.client(late, Some(&admin));
    let want = client.inspect_volume(&ids[0]).await.unwrap().labels;
    let deadline = Instant::now() + Duration::from_secs(60);
    // A linearizable read through the late member answers once it has applied everything.
    while mine.inspect_volume(&ids[0]).await.map(|v| v.labels).ok() != Some(want.clone()) {
        assert!(Instant::now() < deadline, "node {late} never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(&cluster.node(late).log).unwrap_or_default();
    assert!(
        log.contains("install snapshot"),
        "node {late} caught up without a snapshot install"
    );
}
