//! End-to-end tests against a real 3-node cluster of custos processes on loopback.

use custos_client::{ClientError, CreateVolume};
use custos_cluster_tests::TestCluster;
use custos_model::Code;
use std::time::{Duration, Instant};

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.to_string(),
        size: 1 << 30,
        ha_level: 1,
        ..Default::default()
    }
}

fn code(e: &ClientError) -> Option<Code> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_on_one_node_is_visible_on_every_other() {
    let cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    let id = cluster
        .client(2, Some(&user))
        .create_volume(&vol("from-node-2"))
        .await
        .unwrap();
    // Linearizable by default: node 3 sees it at once, with no retry.
    let v = cluster
        .client(3, Some(&user))
        .inspect_volume(&id)
        .await
        .unwrap();
    assert_eq!(v.name, "from-node-2");
    assert_eq!(v.ownership.as_ref().map(|o| o.owner.as_str()), Some("user"));
    let listed = cluster
        .client(1, Some(&user))
        .enumerate_volumes()
        .await
        .unwrap();
    assert!(listed.contains(&id), "{listed:?} lacks {id}");
    // Idempotent by name, through yet another node.
    let again = cluster
        .client(1, Some(&user))
        .create_volume(&vol("from-node-2"))
        .await
        .unwrap();
    assert_eq!(again, id);
    // A different shape under the same name is refused.
    let mut bigger = vol("from-node-2");
    bigger.size *= 2;
    let err = cluster
        .client(3, Some(&user))
        .create_volume(&bigger)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::AlreadyExists), "{err}");
    // Delete through node 3, gone on node 2.
    cluster
        .client(3, Some(&user))
        .delete_volume(&id)
        .await
        .unwrap();
    let err = cluster
        .client(2, Some(&user))
        .inspect_volume(&id)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::NotFound), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_ownership_are_enforced_end_to_end() {
    let cluster = TestCluster::start(3).unwrap();
    let (user, view, admin) = (
        cluster.token("user"),
        cluster.token("view"),
        cluster.token("admin"),
    );

    let err = cluster
        .client(1, Some(&view))
        .create_volume(&vol("viewer-vol"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied), "{err}");
    assert!(
        err.to_string()
            .contains("Access denied to roles: [system.view]"),
        "{err}"
    );

    let owned = cluster
        .client(2, Some(&user))
        .create_volume(&vol("users-vol"))
        .await
        .unwrap();
    // The viewer can read nothing it does not own: Inspect is refused, Enumerate hides it.
    let err = cluster
        .client(3, Some(&view))
        .inspect_volume(&owned)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied), "{err}");
    assert!(!cluster
        .client(3, Some(&view))
        .enumerate_volumes()
        .await
        .unwrap()
        .contains(&owned));
    // The viewer cannot delete it either (role check first), the admin can read it.
    let err = cluster
        .client(1, Some(&view))
        .delete_volume(&owned)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied), "{err}");
    assert_eq!(
        cluster
            .client(1, Some(&admin))
            .inspect_volume(&owned)
            .await
            .unwrap()
            .name,
        "users-vol"
    );

    // No token: a guest. Its volume has no owner and is public.
    let public = cluster
        .client(3, None)
        .create_volume(&vol("guest-vol"))
        .await
        .unwrap();
    let v = cluster
        .client(1, Some(&view))
        .inspect_volume(&public)
        .await
        .unwrap();
    assert!(v.ownership.is_none());
    // A guest cannot read the user's volume.
    let err = cluster
        .client(2, None)
        .inspect_volume(&owned)
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied), "{err}");

    // A forged token (wrong key) is refused; an unknown scheme is unauthenticated.
    let forged = format!("{}x", user);
    let err = cluster
        .client(1, Some(&forged))
        .enumerate_volumes()
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(Code::PermissionDenied), "{err}");
    assert!(
        err.to_string().contains("Unable to authenticate token"),
        "{err}"
    );
}

/// Retries a create through any node until it is acknowledged or 20 s pass.
async fn create_with_retry(cluster: &TestCluster, token: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cluster
            .any_client(Some(token))
            .create_volume(&vol(name))
            .await
        {
            Ok(id) => return id,
            Err(e) if code(&e) == Some(Code::Unavailable) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("create {name}: {e}"),
        }
    }
}

/// Pre-Vote: a follower that lost contact with its leader and comes back (here: paused, then
/// resumed right after the leader is killed) asks whether it *would* win before it raises the
/// term. The other follower still holds the dead leader's lease and refuses; without Pre-Vote
/// the returning member would have raised the term and voted for itself, so the next leader
/// could be elected no sooner than the term after. With it, the next leader's term is the old
/// one plus one, and writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_member_does_not_raise_the_term_after_its_leader_dies() {
    let mut cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    create_with_retry(&cluster, &user, "first").await;
    let leader = cluster.leader(1).await.unwrap();
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    // The lower id asks first after a leader dies (`election.rs`): pause that one.
    let (returning, other) = (followers[0], followers[1]);
    let paused = cluster.pause(returning);
    for i in 0..5 {
        cluster
            .client(leader, Some(&user))
            .create_volume(&vol(&format!("while-paused-{i}")))
            .await
            .unwrap();
    }
    // Longer than the lease: on resuming, the member has not heard from a leader for long.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let term = cluster.status(other).await.term;
    cluster.kill9(leader);
    drop(paused);
    create_with_retry(&cluster, &user, "after").await;
    let new_leader = cluster.leader(other).await.unwrap();
    assert_ne!(new_leader, leader);
    let after = cluster.status(new_leader).await.term;
    assert_eq!(
        after,
        term + 1,
        "member {new_leader} leads at term {after}, not the dead leader's {term} + 1: an \
         election was wasted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_leader() {
    let mut cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push((
            format!("before-{i}"),
            create_with_retry(&cluster, &user, &format!("before-{i}")).await,
        ));
    }
    let leader = cluster.leader(1).await.unwrap();
    cluster.kill9(leader);
    for i in 0..10 {
        acked.push((
            format!("during-{i}"),
            create_with_retry(&cluster, &user, &format!("during-{i}")).await,
        ));
    }
    let survivor = (1..=3).find(|n| *n != leader).unwrap();
    let new_leader = cluster.leader(survivor).await.unwrap();
    assert_ne!(new_leader, leader, "a new leader must have been elected");
    // A survivor asked for votes as soon as the dead leader's lease ran out (`election.rs`),
    // not after a further random election timeout.
    let prompt: u64 = (1..=3)
        .filter(|n| *n != leader)
        .map(|n| cluster.metric(n, "custos_raft_prompt_elections_total"))
        .sum();
    assert!(prompt >= 1, "no prompt election after the leader died");

    cluster.restart(leader).unwrap();
    // Every acknowledged volume is on every node, the restarted one included.
    for node in 1..=3 {
        let client = cluster.client(node, Some(&user));
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, id) in &acked {
            loop {
                match client.inspect_volume(id).await {
                    Ok(v) => {
                        assert_eq!(&v.name, name);
                        break;
                    }
                    Err(e) if code(&e) == Some(Code::Unavailable) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("node {node} lost {name} ({id}): {e}"),
                }
            }
        }
        let listed = client.enumerate_volumes().await.unwrap();
        assert_eq!(listed.len(), acked.len(), "node {node}: {listed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_data_or_logs() {
    let mut cluster = TestCluster::start(3).unwrap();
    let tokens: Vec<String> = cluster.info.tokens.values().cloned().collect();
    for (i, who) in ["admin", "user"].iter().enumerate() {
        cluster
            .any_client(Some(&cluster.token(who)))
            .create_volume(&vol(&format!("scan-{i}")))
            .await
            .unwrap();
    }
    let _ = cluster
        .any_client(Some("not.a.token"))
        .enumerate_volumes()
        .await;
    // Force the state onto disk: a killed and restarted node replays from its files.
    cluster.kill9(2);
    cluster.restart(2).unwrap();
    cluster
        .client(2, Some(&cluster.token("user")))
        .enumerate_volumes()
        .await
        .ok();
    let mut scanned = 0;
    for file in cluster.files() {
        if file.ends_with("cluster.json") {
            continue; // the dev tool's own hand-out of tokens to people
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        scanned += 1;
        for t in &tokens {
            // The signature part is the secret-derived piece; look for it and for the whole token.
            let sig = t.rsplit('.').next().unwrap();
            let hit = bytes.windows(sig.len()).any(|w| w == sig.as_bytes());
            assert!(!hit, "a token appears in {}", file.display());
        }
    }
    assert!(scanned > 5, "only {scanned} files scanned");
}

/// Read-your-writes across members under load: concurrent writers each read their write back
/// through another member at once (linearizable reads share leadership confirmations on the
/// leader; none may return a state older than the acknowledged write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_visible_at_once_on_every_other_member_under_load() {
    let cluster = std::sync::Arc::new(TestCluster::start(3).unwrap());
    let token = cluster.token("user");
    let mut tasks = Vec::new();
    for w in 0..6u64 {
        let (cluster, token) = (cluster.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let writer = cluster.client(1 + w % 3, Some(&token));
            let reader = cluster.client(1 + (w + 1) % 3, Some(&token));
            for i in 0..25 {
                let id = writer
                    .create_volume(&custos_client::CreateVolume {
                        name: format!("ryw-{w}-{i}"),
                        size: 1 << 20,
                        ha_level: 1,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                let v = reader.inspect_volume(&id).await.unwrap_or_else(|e| {
                    panic!("writer {w}: volume {id} acknowledged but not readable: {e}")
                });
                assert_eq!(v.name, format!("ryw-{w}-{i}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Concurrent linearizable reads on a follower share `ReadIndex` RPCs to the leader, and each
/// still sees every write acknowledged before it started, wherever that write was taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_on_a_follower_share_read_index_rounds() {
    let cluster = TestCluster::start(3).unwrap();
    let user = cluster.token("user");
    let leader = cluster.leader(1).await.unwrap();
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let mut tasks = Vec::new();
    for r in 0..24 {
        let writer = cluster.client(leader, Some(&user));
        let reader = cluster.client(follower, Some(&user));
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let name = format!("shared-{r}-{i}");
                let id = writer.create_volume(&vol(&name)).await.unwrap();
                let v = reader
                    .inspect_volume(&id)
                    .await
                    .unwrap_or_else(|e| panic!("{name} acknowledged, not read on a follower: {e}"));
                assert_eq!(v.name, name);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let reads = cluster.metric(follower, "custos_read_index_reads_total{role=\"follower\"}");
    let rounds = cluster.metric(
        follower,
        "custos_read_index_rounds_total{role=\"follower\"}",
    );
    assert!(
        reads >= 120 && rounds < reads,
        "{reads} linearizable reads on the follower took {rounds} ReadIndex RPCs"
    );
}
