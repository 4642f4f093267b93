//! Authorization is decided at the log index: once a role change that revokes a permission is
//! committed, no mutation that needed it is applied, even from writers on other nodes.

use custos_client::model::{AccessType, Acls, Code, Ownership, Role, Rule, VolumeUpdate};
use custos_client::CreateVolume;
use custos_cluster_tests::TestCluster;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn role(apis: &[&str]) -> Role {
    Role {
        name: "creator".into(),
        rules: vec![Rule {
            services: vec!["volume".into()],
            apis: apis.iter().map(|s| s.to_string()).collect(),
        }],
    }
}

struct Attempt {
    invoked: Instant,
    result: Result<String, Code>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_role_revocation_stops_every_later_write() {
    let cluster = Arc::new(TestCluster::start(3).unwrap());
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    admin
        .create_role(&role(&["create", "enumerate", "inspect*"]))
        .await
        .unwrap();
    let erin = cluster.mint_token("erin", &["creator"], &[]);

    // Two writers, on the two followers-or-leader other than node 1, creating as fast as they can.
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for node in [2u64, 3] {
        let (cluster, erin) = (cluster.clone(), erin.clone());
        writers.push(tokio::spawn(async move {
            let client = cluster.client(node, Some(&erin));
            let mut attempts = Vec::new();
            for i in 0..2000 {
                if Instant::now() > stop_at {
                    break;
                }
                let invoked = Instant::now();
                let opts = CreateVolume {
                    name: format!("n{node}-{i}"),
                    size: 1 << 20,
                    ha_level: 1,
                    ..Default::default()
                };
                let result = client
                    .create_volume(&opts)
                    .await
                    .map_err(|e| e.code().unwrap_or(Code::Unavailable));
                attempts.push(Attempt { invoked, result });
            }
            attempts
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Revoke create through node 1; once this returns, the change is committed.
    admin
        .update_role(&role(&["!create", "enumerate", "inspect*"]))
        .await
        .unwrap();
    let revoked = Instant::now();

    let mut attempts = Vec::new();
    for w in writers {
        attempts.extend(w.await.unwrap());
    }
    let before = attempts
        .iter()
        .filter(|a| a.invoked < revoked && a.result.is_ok())
        .count();
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.invoked > revoked).collect();
    assert!(before > 0, "no create succeeded before the revocation");
    assert!(
        after.len() > 5,
        "too few creates after the revocation ({})",
        after.len()
    );
    for a in &after {
        assert_eq!(
            a.result,
            Err(Code::PermissionDenied),
            "a create invoked after the revocation committed"
        );
    }
    // What the cluster holds is exactly what was acknowledged: nothing refused is visible.
    let acked: std::collections::BTreeSet<String> = attempts
        .iter()
        .filter_map(|a| a.result.as_ref().ok().cloned())
        .collect();
    for node in 1..=3 {
        let held: std::collections::BTreeSet<String> = cluster
            .client(node, Some(&cluster.token("admin")))
            .enumerate_volumes()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(held, acked, "node {node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_acl_revocation_stops_every_later_write() {
    let cluster = Arc::new(TestCluster::start(3).unwrap());
    let alice = cluster.mint_token("alice", &["system.user"], &[]);
    let bob = cluster.mint_token("bob", &["system.user"], &[]);
    let owner = cluster.client(1, Some(&alice));
    let opts = CreateVolume {
        name: "shared-doc".into(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    };
    let vid = owner.create_volume(&opts).await.unwrap();
    let grant = |level: Option<AccessType>| VolumeUpdate {
        ownership: Some(Ownership {
            owner: String::new(),
            acls: Acls {
                collaborators: level.map(|l| ("bob".to_string(), l)).into_iter().collect(),
                ..Acls::default()
            },
        }),
        ..VolumeUpdate::default()
    };
    owner
        .update_volume(&vid, &Default::default(), &grant(Some(AccessType::Write)))
        .await
        .unwrap();

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for node in [2u64, 3] {
        let (cluster, bob, vid) = (cluster.clone(), bob.clone(), vid.clone());
        writers.push(tokio::spawn(async move {
            let client = cluster.client(node, Some(&bob));
            let mut attempts = Vec::new();
            for i in 0..2000 {
                if Instant::now() > stop_at {
                    break;
                }
                let invoked = Instant::now();
                let labels = [(format!("n{node}"), i.to_string())].into_iter().collect();
                let result = client
                    .update_volume(&vid, &labels, &VolumeUpdate::default())
                    .await
                    .map(|()| String::new())
                    .map_err(|e| e.code().unwrap_or(Code::Unavailable));
                attempts.push(Attempt { invoked, result });
            }
            attempts
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    owner
        .update_volume(&vid, &Default::default(), &grant(None))
        .await
        .unwrap();
    let revoked = Instant::now();
    let mut attempts = Vec::new();
    for w in writers {
        attempts.extend(w.await.unwrap());
    }
    assert!(
        attempts
            .iter()
            .any(|a| a.invoked < revoked && a.result.is_ok()),
        "bob never wrote before"
    );
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.invoked > revoked).collect();
    assert!(
        after.len() > 5,
        "too few writes after the revocation ({})",
        after.len()
    );
    for a in after {
        assert_eq!(
            a.result,
            Err(Code::PermissionDenied),
            "bob wrote after his access was revoked"
        );
    }
}
