//! Key rotation without downtime: issuers and keys added and removed by editing the config and
//! sending SIGHUP; a bad reload keeps the keys in force.

use custos_client::model::Code;
use custos_cluster_tests::TestCluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// Replaces the `[auth]` section of every node's config and SIGHUPs every node.
fn set_auth_section(cluster: &TestCluster, auth: &str) {
    for node in &cluster.info.nodes {
        let text = std::fs::read_to_string(&node.config).unwrap();
        let start = text
            .find("[auth]")
            .expect("dev configs have an [auth] section");
        std::fs::write(&node.config, format!("{}{auth}", &text[..start])).unwrap();
        kill(Pid::from_raw(node.pid as i32), Signal::SIGHUP).unwrap();
    }
}

fn auth_section(issuers: &[(&str, &Path)]) -> String {
    let mut out = "[auth]\nusername_claim = \"sub\"\n".to_string();
    for (name, secret) in issuers {
        out += &format!("\n[[auth.issuers]]\nname = \"{name}\"\n[[auth.issuers.keys]]\nkind = \"hmac\"\nfile = {secret:?}\n");
    }
    out
}

/// Waits (bounded) until every node gives `want` for an Enumerate with `token`.
async fn eventually(cluster: &TestCluster, token: &str, want: Result<(), Code>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in 1..=3 {
        loop {
            let got = cluster
                .client(node, Some(token))
                .enumerate_volumes()
                .await
                .map(|_| ())
                .map_err(|e| e.code().unwrap());
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_rotate_on_sighup_without_a_restart() {
    let cluster = TestCluster::start(3).unwrap();
    let old_secret = cluster.info.shared_secret_file.clone();
    let new_secret = cluster.dir.path().join("rotated-secret");
    std::fs::write(&new_secret, "f".repeat(64)).unwrap();
    let old_token = cluster.token("user");
    let new_token =
        cluster.mint_token_with("custos-rotated", &new_secret, "dana", &["system.user"], &[]);

    // Before: the new issuer is unknown.
    eventually(&cluster, &new_token, Err(Code::Unauthenticated)).await;

    // Add the new issuer beside the old one: both are accepted.
    set_auth_section(
        &cluster,
        &auth_section(&[("custos-dev", &old_secret), ("custos-rotated", &new_secret)]),
    );
    eventually(&cluster, &new_token, Ok(())).await;
    eventually(&cluster, &old_token, Ok(())).await;

    // A broken reload (missing key file) keeps the keys in force.
    set_auth_section(
        &cluster,
        &auth_section(&[("custos-rotated", Path::new("/nonexistent/secret"))]),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually(&cluster, &old_token, Ok(())).await;
    eventually(&cluster, &new_token, Ok(())).await;

    // Retire the old issuer: its still-valid tokens are refused, clearly, on every node.
    set_auth_section(&cluster, &auth_section(&[("custos-rotated", &new_secret)]));
    eventually(&cluster, &old_token, Err(Code::Unauthenticated)).await;
    let err = cluster
        .client(2, Some(&old_token))
        .enumerate_volumes()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("custos-dev is not a trusted issuer"),
        "{err}"
    );
    eventually(&cluster, &new_token, Ok(())).await;
    let opts = custos_client::CreateVolume {
        name: "after-rotation".into(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    };
    assert!(!cluster
        .any_client(Some(&new_token))
        .create_volume(&opts)
        .await
        .unwrap()
        .is_empty());
}
