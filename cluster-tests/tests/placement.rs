//! Replica placement across zones, and re-placement of the replicas of a node that stays down.

use custos_client::{CreateVolume, NodeInfo};
use custos_cluster_tests::TestCluster;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn zones(nodes: &[NodeInfo]) -> BTreeMap<u64, String> {
    nodes
        .iter()
        .map(|n| {
            (
                n.id.parse().unwrap(),
                n.labels
                    .get("topology.kubernetes.io/zone")
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_over_zones_and_move_off_a_dead_node() {
    // 4 nodes in 3 zones: zone-1 holds nodes 1 and 4.
    let mut cluster =
        TestCluster::start_with(4, &["--zones", "3", "--replace-after-secs", "5"]).unwrap();
    let user = cluster.token("user");
    let nodes = cluster.any_client(Some(&user)).nodes().await.unwrap();
    assert_eq!(nodes.len(), 4, "every member registered itself: {nodes:?}");
    assert!(
        nodes.iter().all(|n| n.up && n.capacity_bytes == 1 << 40),
        "{nodes:?}"
    );
    let zone_of = zones(&nodes);

    let mut ids = Vec::new();
    for i in 0..8 {
        let opts = CreateVolume {
            name: format!("p{i}"),
            size: 1 << 30,
            ha_level: 2,
            ..Default::default()
        };
        ids.push(
            cluster
                .client(1 + i % 4, Some(&user))
                .create_volume(&opts)
                .await
                .unwrap(),
        );
    }
    let client = cluster.any_client(Some(&user));
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for id in &ids {
        let v = client.inspect_volume(id).await.unwrap();
        assert_eq!(v.replicas.len(), 2, "{v:?}");
        let (a, b) = (v.replicas[0].0, v.replicas[1].0);
        assert_ne!(zone_of[&a], zone_of[&b], "two replicas of {id} in one zone");
        for r in &v.replicas {
            *per_node.entry(r.0).or_default() += 1;
        }
    }

    // Kill the busiest node that does not lead; its replicas must move once it stays down.
    let leader = cluster.leader(1).await.unwrap();
    let victim = per_node
        .iter()
        .filter(|(n, _)| **n != leader)
        .max_by_key(|(_, c)| **c)
        .map(|(n, _)| *n)
        .unwrap();
    cluster.kill9(victim);
    let survivor = (1..=4).find(|n| *n != victim).unwrap();
    let mut saw_degraded = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let nodes = cluster.client(survivor, Some(&user)).nodes().await.unwrap();
        let down = nodes
            .iter()
            .find(|n| n.id == victim.to_string())
            .map(|n| !n.up);
        let mut on_victim = 0;
        for id in &ids {
            let v = cluster
                .client(survivor, Some(&user))
                .inspect_volume(id)
                .await
                .unwrap();
            assert_eq!(
                v.replicas.len(),
                2,
                "a volume lost a replica instead of moving it: {v:?}"
            );
            on_victim += v.replicas.iter().filter(|r| r.0 == victim).count();
            if v.replicas.iter().any(|r| r.0 == victim) {
                saw_degraded |= cluster
                    .client(survivor, Some(&user))
                    .volume_degraded(id)
                    .await
                    .unwrap();
            }
        }
        if down == Some(true) && on_victim == 0 {
            assert!(
                saw_degraded,
                "volumes with a replica on the dead node never reported degraded"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {victim}: down={down:?}, replicas still there: {on_victim}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // After the move, replicas are still on distinct live nodes in distinct zones where possible.
    let mut moved = 0;
    for id in &ids {
        let v = client.inspect_volume(id).await.unwrap();
        assert_ne!(v.replicas[0], v.replicas[1]);
        assert!(v.replicas.iter().all(|r| r.0 != victim));
    }
    // Each move is audited: one record per moved replica, naming the volume, from and to.
    let admin = cluster.client(survivor, Some(&cluster.token("admin")));
    let query = custos_client::model::AuditQuery {
        method: Some("clusteradmin.replacereplicas".into()),
        ..Default::default()
    };
    let records = admin
        .audit_list(&query, None, 1000, false)
        .await
        .unwrap()
        .records;
    for r in &records {
        if r.code == "OK" {
            assert_eq!(r.objects[1], victim.to_string(), "{r:?}");
            assert_eq!(
                r.message,
                format!(
                    "Volume {} replica moved from node {victim} to node {}",
                    r.objects[0], r.objects[2]
                )
            );
            moved += 1;
        }
    }
    assert_eq!(
        moved, per_node[&victim],
        "one audit record per moved replica: {records:#?}"
    );
}
