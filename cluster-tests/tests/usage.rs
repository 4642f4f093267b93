//! Usage figures come from what storage nodes report through the admin API, replicated like any
//! mutation; without reports they are zeros, never invented.

use custos_client::model::{Code, VolumeUsage};
use custos_client::CreateVolume;
use custos_cluster_tests::TestCluster;
use std::collections::BTreeMap;

fn usage(bytes: u64, reads: u64) -> VolumeUsage {
    VolumeUsage {
        bytes_used: bytes,
        reads,
        writes: reads / 2,
        read_bytes: reads * 4096,
        write_bytes: 0,
        reported_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_usage_is_served_from_every_member() {
    let cluster = TestCluster::start(3).unwrap();
    let (user, admin) = (cluster.token("user"), cluster.token("admin"));
    let opts = CreateVolume {
        name: "used".into(),
        size: 1 << 30,
        ha_level: 2,
        ..Default::default()
    };
    let id = cluster
        .client(1, Some(&user))
        .create_volume(&opts)
        .await
        .unwrap();

    // Before any report: zeros.
    assert_eq!(
        cluster
            .client(2, Some(&user))
            .volume_usage(&id)
            .await
            .unwrap(),
        VolumeUsage::default()
    );

    // Only administrators (storage nodes' credentials) may report.
    let report: BTreeMap<String, VolumeUsage> =
        [(id.clone(), usage(100 << 20, 10))].into_iter().collect();
    let err = cluster
        .client(1, Some(&user))
        .report_usage(1, &report)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");

    // Two replicas report through different members; unknown ids are named, not stored.
    let mut with_unknown = report.clone();
    with_unknown.insert("no-such-volume".into(), usage(1, 1));
    let ignored = cluster
        .client(3, Some(&admin))
        .report_usage(1, &with_unknown)
        .await
        .unwrap();
    assert_eq!(ignored, vec!["no-such-volume".to_string()]);
    let second: BTreeMap<String, VolumeUsage> =
        [(id.clone(), usage(120 << 20, 6))].into_iter().collect();
    cluster
        .client(2, Some(&admin))
        .report_usage(2, &second)
        .await
        .unwrap();

    // Linearizable reads: every member serves the aggregate at once (bytes: max; counters: sum).
    for node in 1..=3 {
        let got = cluster
            .client(node, Some(&user))
            .volume_usage(&id)
            .await
            .unwrap();
        assert_eq!(got.bytes_used, 120 << 20, "node {node}");
        assert_eq!(got.reads, 16, "node {node}");
    }
    // A report replaces the node's previous one.
    cluster
        .client(1, Some(&admin))
        .report_usage(2, &BTreeMap::new())
        .await
        .unwrap();
    let got = cluster
        .client(3, Some(&user))
        .volume_usage(&id)
        .await
        .unwrap();
    assert_eq!((got.bytes_used, got.reads), (100 << 20, 10));
    // A stranger cannot read it.
    let stranger = cluster.mint_token("stranger", &["system.user"], &[]);
    let err = cluster
        .client(1, Some(&stranger))
        .volume_usage(&id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
}
