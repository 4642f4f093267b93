//! Token revocation (issue #21) on a real 3-member cluster: a token revoked through one member
//! is refused by every member as soon as the revocation is acknowledged (a paused follower
//! included), by jti, by fingerprint (through the real CLI) and by subject; the entries expire;
//! and they survive a restart of every member and a snapshot install.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custos_client::{Client, ClientError, CreateVolume, RevokeRequest};
use custos_cluster_tests::{custos_bin, TestCluster};
use custos_model::Code;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a revoked token gets, on every call.
const REVOKED: &str = "Unable to authenticate token: the token has been revoked";

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.to_string(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    }
}

/// A claim of a token, read from its payload (the test's own tokens).
fn claim(token: &str, name: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let claims: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims[name].clone()
}

/// The fingerprint the audit trail shows for a token: 12 hex characters of its SHA-256.
fn fingerprint(token: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(token.as_bytes())?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..12].to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asserts the call was refused as a revoked token.
fn assert_revoked<T: std::fmt::Debug>(what: &str, r: Result<T, ClientError>) {
    match r {
        Err(ClientError::Status { code, message }) => {
            assert_eq!(code, Code::PermissionDenied, "{what}: {message}");
            assert_eq!(message, REVOKED, "{what}");
        }
        other => panic!("{what}: a revoked token was not refused: {other:?}"),
    }
}

/// `custos auth ARGS` (the real binary) against member `id` as the cluster's admin.
fn cli_auth(cluster: &TestCluster, id: u64, args: &[&str]) -> String {
    let out = std::process::Command::new(custos_bin())
        .arg("auth")
        .args(args)
        .args(["--endpoint", &cluster.node(id).sdk, "--token"])
        .arg(cluster.token("admin"))
        .output()
        .expect("custos auth");
    assert!(
        out.status.success(),
        "custos auth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_by_every_member_once_acknowledged() {
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.token("admin");
    let alice = cluster.mint_token("alice", &["system.user"], &[]);
    let alice_again = cluster.mint_token("alice", &["system.user"], &[]);
    let jti = claim(&alice, "jti")
        .as_str()
        .expect("CLI tokens carry a jti")
        .to_string();
    assert_ne!(Some(jti.as_str()), claim(&alice_again, "jti").as_str());
    let vid = cluster
        .client(1, Some(&alice))
        .create_volume(&vol("alice-doc"))
        .await
        .unwrap();
    for id in 1..=3 {
        cluster
            .client(id, Some(&alice))
            .inspect_volume(&vid)
            .await
            .unwrap_or_else(|e| panic!("member {id} before revocation: {e}"));
    }

    // A follower is paused with alice's read and write queued on its socket while the leader
    // and the other follower acknowledge the revocation.
    let leader = cluster.leader(1).await.unwrap();
    let paused = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != paused).unwrap();
    let on_paused = cluster.client(paused, Some(&alice));
    on_paused.inspect_volume(&vid).await.unwrap(); // connected before the pause
    let (read, write, reply) = {
        let _paused = cluster.pause(paused);
        let reply = cluster
            .client(leader, Some(&admin))
            .revoke(&RevokeRequest {
                jti: jti.clone(),
                ..Default::default()
            })
            .await
            .expect("revoke by jti");
        let read = tokio::spawn({
            let (c, vid) = (on_paused.clone(), vid.clone());
            async move { c.inspect_volume(&vid).await }
        });
        let write = tokio::spawn({
            let c = on_paused.clone();
            async move { c.create_volume(&vol("alice-after")).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        (read, write, reply)
    };
    assert_revoked("read queued on the paused member", read.await.unwrap());
    assert_revoked("write queued on the paused member", write.await.unwrap());
    let r = reply.revocation.expect("the entry in force");
    assert_eq!((r.kind.as_str(), r.value.as_str()), ("jti", jti.as_str()));
    // The entry is kept until the token expires (the member verified it: 1 h tokens).
    let exp = claim(&alice, "exp").as_u64().unwrap();
    assert_eq!(r.expires_at, exp, "{r:?}");

    // Every member, at once: reads (linearizable and serializable on the other follower)
    // and writes.
    for id in [leader, other, paused] {
        let c = cluster.client(id, Some(&alice));
        assert_revoked("read", c.inspect_volume(&vid).await);
        assert_revoked("write", c.create_volume(&vol("alice-later")).await);
    }
    assert_revoked(
        "serializable read on the other follower",
        cluster
            .client(other, Some(&alice))
            .with_serializable_reads()
            .inspect_volume(&vid)
            .await,
    );
    // Another token of the same user is not revoked.
    for id in 1..=3 {
        cluster
            .client(id, Some(&alice_again))
            .inspect_volume(&vid)
            .await
            .unwrap_or_else(|e| panic!("alice's other token on member {id}: {e}"));
    }

    // By fingerprint, through the CLI, on a follower: what the audit trail shows of a token.
    let carol = cluster.mint_token("carol", &["system.user"], &[]);
    let carol_vid = cluster
        .client(other, Some(&carol))
        .create_volume(&vol("carol-doc"))
        .await
        .unwrap();
    let fp = fingerprint(&carol);
    let out = cli_auth(&cluster, other, &["revoke", "--fingerprint", &fp]);
    assert!(out.contains(&format!("fingerprint {fp}")), "{out}");
    for id in 1..=3 {
        assert_revoked(
            "carol's read",
            cluster
                .client(id, Some(&carol))
                .inspect_volume(&carol_vid)
                .await,
        );
    }

    // By subject: every token of bob issued at or before now; a token issued later works.
    let bob = cluster.mint_token("bob", &["system.user"], &[]);
    cluster
        .client(1, Some(&bob))
        .create_volume(&vol("bob-0"))
        .await
        .unwrap();
    cluster
        .client(leader, Some(&admin))
        .revoke(&RevokeRequest {
            subject: "bob".into(),
            ..Default::default()
        })
        .await
        .expect("revoke by subject");
    for id in 1..=3 {
        assert_revoked(
            "bob's old token",
            cluster
                .client(id, Some(&bob))
                .create_volume(&vol("bob-1"))
                .await,
        );
    }
    // `iat` has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let bob_new = cluster.mint_token("bob", &["system.user"], &[]);
    cluster
        .client(paused, Some(&bob_new))
        .create_volume(&vol("bob-2"))
        .await
        .expect("bob's token issued after the revocation");

    // The list, over gRPC and through the CLI; then an entry given a short life expires and
    // the first command applied after its expiry drops it.
    let listed = cluster
        .client(paused, Some(&admin))
        .list_revocations()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let table = cli_auth(&cluster, 1, &["revocations"]);
    for want in [jti.as_str(), fp.as_str(), "bob"] {
        assert!(table.contains(want), "{table}");
    }
    let dave = cluster.mint_token("dave", &["system.user"], &[]);
    let until = now_secs() + 2;
    let short = cluster
        .client(1, Some(&admin))
        .revoke(&RevokeRequest {
            fingerprint: fingerprint(&dave),
            expires_at: until,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(short.revocation.unwrap().expires_at, until);
    assert_revoked(
        "dave",
        cluster
            .client(2, Some(&dave))
            .create_volume(&vol("dave-1"))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    cluster
        .client(1, Some(&admin))
        .create_volume(&vol("tick"))
        .await
        .unwrap();
    let listed = cluster
        .client(3, Some(&admin))
        .list_revocations()
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "dave's entry expired: {listed:?}");

    // Only an administrator revokes; bad requests say what is wrong.
    let refused = cluster
        .client(1, Some(&alice_again))
        .revoke(&RevokeRequest {
            subject: "admin".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied), "{refused}");
    let bad = cluster
        .client(1, Some(&admin))
        .revoke(&RevokeRequest {
            jti: "x".into(),
            subject: "y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Some(Code::InvalidArgument), "{bad}");

    // The refusals are in the replicated trail, with the reason.
    let trail = cluster
        .client(1, Some(&admin))
        .audit_list(
            &custos_client::model::audit::AuditQuery {
                username: Some("alice".into()),
                code: Some("PermissionDenied".into()),
                ..Default::default()
            },
            None,
            100,
            false,
        )
        .await
        .unwrap();
    assert!(
        trail
            .records
            .iter()
            .any(|r| r.reason == REVOKED || r.message == "Access denied: token revoked"),
        "no refusal of alice's revoked token in the trail: {:?}",
        trail.records
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_survive_restarts_and_snapshot_installs() {
    let mut cluster =
        TestCluster::start_with(3, &["--snapshot-every", "20", "--keep-log-entries", "5"]).unwrap();
    let admin = cluster.token("admin");
    let erin = cluster.mint_token("erin", &["system.user"], &[]);
    let vid = cluster
        .client(1, Some(&erin))
        .create_volume(&vol("erin-doc"))
        .await
        .unwrap();
    let leader = cluster.leader(1).await.unwrap();
    let late = (1..=3).find(|id| *id != leader).unwrap();
    let late_last = cluster.status(late).await.last_log_index;
    cluster.kill9(late);
    let client: Client = cluster.any_client(Some(&admin));
    client
        .revoke(&RevokeRequest {
            jti: claim(&erin, "jti").as_str().unwrap().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Enough entries for several snapshots and purges: the late member cannot catch up from
    // the log.
    for i in 0..60 {
        client
            .create_volume(&vol(&format!("pad-{i}")))
            .await
            .unwrap();
    }
    // The others must have purged past what the late member holds, or it catches up from the
    // log. openraft purges only while no replication task reads the entries (the one to the
    // dead member retries), so that can take a moment: write more until it has (bounded).
    cluster
        .create_until_purged_past(&client, late, late_last)
        .await;
    cluster.restart(late).unwrap();
    let mine = cluster.client(late, Some(&admin));
    let deadline = Instant::now() + Duration::from_secs(60);
    while mine.inspect_volume(&vid).await.is_err() {
        assert!(Instant::now() < deadline, "member {late} never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(&cluster.node(late).log).unwrap_or_default();
    assert!(
        log.contains("install snapshot"),
        "member {late} caught up without a snapshot install"
    );
    // A serializable read decides on the member's own state: the installed snapshot's.
    assert_revoked(
        "serializable read on the member that installed the snapshot",
        cluster
            .client(late, Some(&erin))
            .with_serializable_reads()
            .inspect_volume(&vid)
            .await,
    );

    cluster.restart_all().unwrap();
    for id in 1..=3 {
        let c = cluster.client(id, Some(&erin));
        let deadline = Instant::now() + Duration::from_secs(60);
        // Wait (bounded) for the member to answer at all after the restart.
        loop {
            match c
                .clone()
                .with_serializable_reads()
                .inspect_volume(&vid)
                .await
            {
                Err(ClientError::Status {
                    code: Code::PermissionDenied,
                    ..
                }) => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "member {id} after restart: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        assert_revoked(
            "serializable read after restart",
            c.clone()
                .with_serializable_reads()
                .inspect_volume(&vid)
                .await,
        );
        assert_revoked("write after restart", c.create_volume(&vol("erin-2")).await);
    }
}
