//! Quotas (issue #20) on a real 3-member cluster: a flood of guest creates through every member
//! stops at the default guest quota on every member; a user at their quota is refused with
//! RESOURCE_EXHAUSTED naming it, and a deletion frees room; only an administrator sets quotas
//! (through the real CLI); quotas and use survive a snapshot install and a restart of every
//! member. (Backup and restore carry them too: `membership.rs`.)

use custos_client::{Client, ClientError, CreateVolume, QuotaSubject, SetQuotaRequest};
use custos_cluster_tests::{custos_bin, TestCluster};
use custos_model::Code;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const GUEST_FULL: &str = "Quota exceeded: guests may have at most 10 volumes (have 10 volumes)";

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.to_string(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    }
}

fn guest() -> QuotaSubject {
    QuotaSubject {
        guest: true,
        ..Default::default()
    }
}

fn user(name: &str) -> QuotaSubject {
    QuotaSubject {
        user: name.to_string(),
        ..Default::default()
    }
}

/// A refusal with `code` whose message is `message`.
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, ClientError>,
    code: Code,
    message: &str,
) {
    match r {
        Err(ClientError::Status {
            code: c,
            message: m,
        }) if c == code && m == message => {}
        other => panic!("{what}: want {code:?} {message:?}, got {other:?}"),
    }
}

/// `custos <args> --endpoint <member id> --token <token>`: stdout, or a panic with stderr.
fn cli(cluster: &TestCluster, id: u64, token: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(custos_bin())
        .args(args)
        .args(["--endpoint", &cluster.node(id).sdk, "--token", token])
        .output()
        .expect("running custos");
    assert!(
        out.status.success(),
        "custos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The use of `subject` that member `id`'s own state holds (a serializable read), as
/// (volumes, bytes); (0, 0) when it has none.
async fn use_on(
    cluster: &TestCluster,
    id: u64,
    admin: &str,
    subject: &QuotaSubject,
) -> Result<(u64, u64), ClientError> {
    let uses = cluster
        .client(id, Some(admin))
        .with_serializable_reads()
        .quota_usage()
        .await?;
    Ok(uses
        .iter()
        .find(|u| u.subject.as_ref() == Some(subject))
        .map_or((0, 0), |u| (u.volumes, u.bytes)))
}

/// Waits (bounded) until member `id` answers and its own state shows `want` as the use of
/// `subject`.
async fn wait_use(
    cluster: &TestCluster,
    id: u64,
    admin: &str,
    subject: &QuotaSubject,
    want: (u64, u64),
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = use_on(cluster, id, admin, subject).await;
        if got.as_ref().ok() == Some(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {id}: use of {subject:?} is {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_floods_and_users_stop_at_their_quota_on_every_member() {
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.token("admin");

    // A fresh cluster limits the guests without any admin action: 30 concurrent creates
    // through the three members, 10 applied, the rest refused naming the quota.
    let mut flood = Vec::new();
    for i in 0..30u64 {
        let c = cluster.client(i % 3 + 1, None);
        flood.push(tokio::spawn(async move {
            c.create_volume(&vol(&format!("flood-{i}"))).await
        }));
    }
    let (mut applied, mut refused) = (0, 0);
    for f in flood {
        match f.await.unwrap() {
            Ok(_) => applied += 1,
            Err(ClientError::Status { code, message })
                if code == Code::ResourceExhausted && message == GUEST_FULL =>
            {
                refused += 1
            }
            Err(e) => panic!("guest flood: {e}"),
        }
    }
    assert_eq!((applied, refused), (10, 20));
    for id in 1..=3 {
        wait_use(&cluster, id, &admin, &guest(), (10, 10 << 20)).await;
        assert_refused(
            &format!("a guest create through member {id}"),
            cluster
                .client(id, None)
                .create_volume(&vol("one-more"))
                .await,
            Code::ResourceExhausted,
            GUEST_FULL,
        );
    }

    // Only an administrator sets quotas.
    let alice = cluster.mint_token("alice", &["system.user"], &["dev"]);
    assert_refused(
        "a user setting a quota",
        cluster
            .client(1, Some(&alice))
            .set_quota(&SetQuotaRequest {
                subject: Some(user("alice")),
                max_volumes: Some(1000),
                max_bytes: None,
            })
            .await,
        Code::PermissionDenied,
        "Access to /custos.admin.v1.Quotas/Set denied: rpc error: code = PermissionDenied \
         desc = Access denied to roles: [system.user]",
    );

    // Alice may have 2 volumes and 3 MiB (the real CLI, through member 2).
    let shown = cli(
        &cluster,
        2,
        &admin,
        &[
            "quota",
            "set",
            "--user",
            "alice",
            "--volumes",
            "2",
            "--bytes",
            "3Mi",
        ],
    );
    assert_eq!(
        shown.trim(),
        "Quota of user alice set: at most 2 volumes, at most 3Mi"
    );
    let c = cluster.client(3, Some(&alice));
    let first = c.create_volume(&vol("alice-1")).await.unwrap();
    c.create_volume(&vol("alice-2")).await.unwrap();
    let full = "Quota exceeded: user alice may have at most 2 volumes (has 2 volumes)";
    assert_refused(
        "alice's third volume",
        c.create_volume(&vol("alice-3")).await,
        Code::ResourceExhausted,
        full,
    );
    assert_refused(
        "alice's snapshot",
        c.create_snapshot(&first, "alice-snap", &BTreeMap::new())
            .await,
        Code::ResourceExhausted,
        full,
    );
    // Growing past the bytes: 1 MiB to 3 MiB would make 4 MiB.
    assert_refused(
        "alice's growth",
        c.update_volume(
            &first,
            &BTreeMap::new(),
            &custos_model::VolumeUpdate {
                size: Some(3 << 20),
                ..Default::default()
            },
        )
        .await,
        Code::ResourceExhausted,
        "Quota exceeded: user alice may have at most 3 MiB (has 2 MiB, needs 2 MiB more)",
    );
    // A deletion frees room, on every member.
    c.delete_volume(&first).await.unwrap();
    for id in 1..=3 {
        wait_use(&cluster, id, &admin, &user("alice"), (1, 1 << 20)).await;
    }
    cluster
        .client(1, Some(&alice))
        .create_volume(&vol("alice-3"))
        .await
        .unwrap();

    // The usage report, through the CLI: alice against her quota, the guests against theirs.
    let usage: serde_json::Value =
        serde_json::from_str(&cli(&cluster, 1, &admin, &["quota", "usage", "-o", "json"])).unwrap();
    let find = |subject: &str, value: serde_json::Value| {
        usage
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["subject"][subject] == value)
            .cloned()
            .unwrap_or_else(|| panic!("no {subject} {value} in {usage}"))
    };
    let a = find("user", serde_json::json!("alice"));
    assert_eq!(
        (&a["volumes"], &a["quota"]["max_volumes"]),
        (&serde_json::json!("2"), &serde_json::json!("2")),
        "{a}"
    );
    let g = find("guest", serde_json::json!(true));
    assert_eq!(g["volumes"], serde_json::json!("10"), "{g}");

    // The administrator raises the guests' quota: room again.
    cluster
        .client(2, Some(&admin))
        .set_quota(&SetQuotaRequest {
            subject: Some(guest()),
            max_volumes: Some(11),
            max_bytes: None,
        })
        .await
        .unwrap();
    cluster
        .client(3, None)
        .create_volume(&vol("one-more"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_survive_snapshot_installs_and_restarts() {
    let mut cluster =
        TestCluster::start_with(3, &["--snapshot-every", "20", "--keep-log-entries", "5"]).unwrap();
    let admin = cluster.token("admin");
    let bob = cluster.mint_token("bob", &["system.user"], &[]);
    let leader = cluster.leader(1).await.unwrap();
    let late = (1..=3).find(|id| *id != leader).unwrap();
    let late_last = cluster.status(late).await.last_log_index;
    cluster.kill9(late);
    let client: Client = cluster.any_client(Some(&admin));
    for (subject, volumes) in [(user("bob"), 2), (guest(), 3)] {
        client
            .set_quota(&SetQuotaRequest {
                subject: Some(subject),
                max_volumes: Some(volumes),
                max_bytes: None,
            })
            .await
            .unwrap();
    }
    let bobs = cluster.any_client(Some(&bob));
    bobs.create_volume(&vol("bob-1")).await.unwrap();
    bobs.create_volume(&vol("bob-2")).await.unwrap();
    // Enough entries for several snapshots and purges: the late member cannot catch up from
    // the log.
    for i in 0..60 {
        client
            .create_volume(&vol(&format!("pad-{i}")))
            .await
            .unwrap();
    }
    cluster
        .create_until_purged_past(&client, late, late_last)
        .await;
    cluster.restart(late).unwrap();
    wait_use(&cluster, late, &admin, &user("bob"), (2, 2 << 20)).await;
    let log = std::fs::read_to_string(&cluster.node(late).log).unwrap_or_default();
    assert!(
        log.contains("install snapshot"),
        "member {late} caught up without a snapshot install"
    );
    let quotas = cluster
        .client(late, Some(&admin))
        .with_serializable_reads()
        .list_quotas()
        .await
        .unwrap();
    let of = |subject: &QuotaSubject| {
        quotas
            .iter()
            .find(|q| q.subject.as_ref() == Some(subject))
            .map(|q| (q.max_volumes, q.default))
    };
    assert_eq!(of(&user("bob")), Some((Some(2), false)), "{quotas:?}");
    assert_eq!(of(&guest()), Some((Some(3), false)), "{quotas:?}");

    cluster.restart_all().unwrap();
    for id in 1..=3 {
        wait_use(&cluster, id, &admin, &user("bob"), (2, 2 << 20)).await;
        wait_use(&cluster, id, &admin, &guest(), (0, 0)).await;
    }
    // Bob is still at his quota; the guests' is still 3.
    assert_refused(
        "bob's third volume after the restart",
        cluster
            .client(late, Some(&bob))
            .create_volume(&vol("bob-3"))
            .await,
        Code::ResourceExhausted,
        "Quota exceeded: user bob may have at most 2 volumes (has 2 volumes)",
    );
    for i in 0..3 {
        cluster
            .client(i % 3 + 1, None)
            .create_volume(&vol(&format!("guest-{i}")))
            .await
            .unwrap();
    }
    assert_refused(
        "a fourth guest volume",
        cluster
            .client(late, None)
            .create_volume(&vol("guest-3"))
            .await,
        Code::ResourceExhausted,
        "Quota exceeded: guests may have at most 3 volumes (have 3 volumes)",
    );
}
