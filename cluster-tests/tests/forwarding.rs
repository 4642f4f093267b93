//! Follower-side batching of forwarded writes (issue #23) against real processes: concurrent
//! writers through one follower all succeed, each write is applied and audited exactly once
//! (one record per request id), and the follower sends far fewer forwarding RPCs than writes.

use custos_client::model::audit::{AuditQuery, AuditRecord};
use custos_client::CreateVolume;
use custos_cluster_tests::{all_audit_records, TestCluster};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_a_follower_share_forwarding_rpcs_and_apply_once() {
    let cluster = Arc::new(TestCluster::start(3).unwrap());
    let leader = cluster.leader(1).await.unwrap();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let user = cluster.token("user");
    const WRITERS: u64 = 50;
    const EACH: u64 = 4;
    let rpcs_before = cluster.metric(follower, "custos_forward_rpcs_total");
    let commands_before = cluster.metric(follower, "custos_forward_commands_total");

    // Every writer has its own connection to the follower; they start together.
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS as usize));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = cluster
            .client(follower, Some(&user))
            .with_timeout(Duration::from_secs(20));
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut ids = Vec::new();
            for i in 0..EACH {
                let opts = CreateVolume {
                    name: format!("fw{w}-{i}"),
                    size: 1 << 20,
                    ha_level: 1,
                    ..Default::default()
                };
                let id = client
                    .create_volume(&opts)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}, write {i}: {e}"));
                ids.push(id);
            }
            ids
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(acked.len() as u64, WRITERS * EACH);
    let distinct: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(
        distinct.len(),
        acked.len(),
        "two writes got the same volume"
    );

    // Batched: the follower forwarded every write, in far fewer RPCs (one per write without
    // batching).
    let rpcs = cluster.metric(follower, "custos_forward_rpcs_total") - rpcs_before;
    let commands = cluster.metric(follower, "custos_forward_commands_total") - commands_before;
    eprintln!("node {follower} forwarded {commands} writes in {rpcs} RPCs");
    assert!(
        commands >= WRITERS * EACH,
        "only {commands} of {} writes were forwarded",
        WRITERS * EACH
    );
    assert!(
        rpcs * 3 <= commands,
        "forwarded writes were not batched: {commands} commands in {rpcs} RPCs"
    );

    // Exactly once: on every member, one OK `volume.create` record per acknowledged volume,
    // each with a request id of its own.
    let admin = cluster.token("admin");
    let query = AuditQuery {
        method: Some("volume.create".into()),
        code: Some("OK".into()),
        ..AuditQuery::default()
    };
    for node in 1..=3 {
        let client = cluster.client(node, Some(&admin));
        let deadline = Instant::now() + Duration::from_secs(10);
        let records = loop {
            let records = all_audit_records(&client, &query).await;
            if records.len() as u64 >= WRITERS * EACH || Instant::now() > deadline {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ours: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| r.objects.first().is_some_and(|o| distinct.contains(o)))
            .collect();
        assert_eq!(
            ours.len(),
            acked.len(),
            "node {node}: {} records for {} acknowledged creates",
            ours.len(),
            acked.len()
        );
        let objects: BTreeSet<&String> = ours.iter().filter_map(|r| r.objects.first()).collect();
        assert_eq!(objects, distinct, "node {node}");
        let request_ids: BTreeSet<&str> = ours.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(
            request_ids.len(),
            ours.len(),
            "node {node}: a request id twice"
        );
    }
}
