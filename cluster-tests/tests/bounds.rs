//! The member's bounds (issue #20) against real processes: a write flood beyond the in-flight
//! bound is partly answered RESOURCE_EXHAUSTED while every acknowledged write stays and health
//! keeps answering; `/metrics` over HTTPS behind its bearer token; a multi-MiB request field
//! makes a short access-log line; and connections that never finish their TLS handshake do not
//! keep a real client out.

use custos_client::{ClientError, CreateVolume};
use custos_cluster_tests::{scrape, TestCluster};
use custos_model::Code;
use custos_proto::openstorage::api::open_storage_node_client::OpenStorageNodeClient;
use custos_proto::openstorage::api::SdkNodeInspectRequest;
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const METRICS_TOKEN: &str = "bounds-test-metrics-token-7f3a";

/// Writes in flight per member in these clusters: far below the floods below.
const WRITES_IN_FLIGHT: usize = 4;
/// TLS handshakes in progress per listener, and how long one may take.
const HANDSHAKES: usize = 8;
const HANDSHAKE_TIMEOUT_MS: u64 = 1000;

/// A 3-node cluster with TLS on every listener, restarted with small `[limits]` and a metrics
/// token file.
fn bounded_cluster() -> TestCluster {
    let mut cluster = TestCluster::start_with(3, &["--sdk-tls"]).expect("cluster");
    let token_file = cluster.dir.path().join("metrics-token");
    std::fs::write(&token_file, format!("{METRICS_TOKEN}\n")).unwrap();
    for id in 1..=3 {
        cluster.kill9(id);
        let config = cluster.node(id).config.clone();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            !text.contains("metrics_tls"),
            "an --sdk-tls dev cluster serves /metrics over HTTPS by default:\n{text}"
        );
        let text = format!(
            "metrics_token_file = {token_file:?}\n{text}\n[limits]\n\
             max_writes_in_flight = {WRITES_IN_FLIGHT}\nmax_queued_proposals = 16\n\
             max_read_waiters = 64\nmax_tls_handshakes = {HANDSHAKES}\n\
             tls_handshake_timeout_ms = {HANDSHAKE_TIMEOUT_MS}\n"
        );
        std::fs::write(&config, text).unwrap();
    }
    for id in 1..=3 {
        cluster.restart(id).expect("restart");
    }
    cluster
}

fn tls_config(cluster: &TestCluster) -> ClientTlsConfig {
    let ca = std::fs::read(cluster.info.ca_file.as_ref().expect("--sdk-tls")).unwrap();
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca))
}

/// A TLS channel to member `id`'s SDK, connecting on first use.
fn channel(cluster: &TestCluster, id: u64) -> Channel {
    Endpoint::from_shared(format!("https://{}", cluster.node(id).sdk))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .tls_config(tls_config(cluster))
        .unwrap()
        .connect_lazy()
}

async fn health(channel: Channel) -> Option<ServingStatus> {
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(Duration::from_secs(2));
    let status = HealthClient::new(channel)
        .check(req)
        .await
        .ok()?
        .into_inner()
        .status;
    ServingStatus::try_from(status).ok()
}

/// Waits (bounded) until every member reports SERVING.
async fn wait_serving(cluster: &TestCluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in 1..=3 {
        while health(channel(cluster, id)).await != Some(ServingStatus::Serving) {
            assert!(Instant::now() < deadline, "node {id} not serving in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `/metrics` of member `id` with the token, as text.
fn metrics(cluster: &TestCluster, id: u64) -> String {
    let (status, text) = scrape(
        &cluster.node(id).metrics,
        cluster.info.ca_file.as_deref(),
        Some(METRICS_TOKEN),
    )
    .expect("scrape");
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the sample line `series` (name and labels) in a metrics text (0 if absent).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Runs `n` concurrent calls of `call(i)` and returns their results in order.
async fn flood<F, Fut>(n: usize, call: F) -> Vec<Result<String, ClientError>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<String, ClientError>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(call(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_beyond_the_bounds_is_refused_in_part_and_loses_no_acknowledged_write() {
    let cluster = bounded_cluster();
    wait_serving(&cluster).await;
    let leader = cluster.leader(1).await.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // Health keeps answering on the flooded member throughout.
    let health_channel = channel(&cluster, follower);
    let prober = tokio::spawn(async move {
        let mut answers = Vec::new();
        for _ in 0..20 {
            answers.push(health(health_channel.clone()).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        answers
    });

    // Writes to a follower (forwarded to the leader) and to the leader at once.
    let user = cluster.token("user");
    let (at_follower, at_leader) = (
        cluster.client(follower, Some(&user)),
        cluster.client(leader, Some(&user)),
    );
    let results = flood(240, |i| {
        let client = if i % 2 == 0 {
            at_follower.clone()
        } else {
            at_leader.clone()
        };
        async move {
            client
                .create_volume(&CreateVolume {
                    name: format!("flood-{i}"),
                    size: 1 << 20,
                    ha_level: 1,
                    ..Default::default()
                })
                .await
        }
    })
    .await;
    let acknowledged: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut exhausted = 0;
    for r in &results {
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {
                exhausted += 1;
                assert!(
                    e.to_string().contains("retry later"),
                    "RESOURCE_EXHAUSTED says what to do: {e}"
                );
            }
            // A write whose deadline passed while it waited is answered UNAVAILABLE, not applied.
            Err(e) if e.code() == Some(Code::Unavailable) => {}
            Err(e) => panic!("a flooded write failed otherwise: {e}"),
        }
    }
    assert!(
        exhausted > 0,
        "240 concurrent writes, {WRITES_IN_FLIGHT} in flight per member: none refused"
    );
    assert!(!acknowledged.is_empty(), "the flood starved every write");

    // Every acknowledged write is there, read linearizably from a third member.
    let third = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    let admin = cluster.token("admin");
    let present = cluster
        .client(third, Some(&admin))
        .enumerate_volumes()
        .await
        .unwrap();
    for id in &acknowledged {
        assert!(present.contains(id), "acknowledged volume {id} is missing");
    }

    // A flood of writes the role check refuses: each confirmation costs a read-index round, so
    // it meets the same bound instead of piling up waiters.
    let view = cluster.client(follower, Some(&cluster.token("view")));
    let refused = flood(240, |i| {
        let view = view.clone();
        async move {
            view.create_volume(&CreateVolume {
                name: format!("refused-{i}"),
                size: 1 << 20,
                ha_level: 1,
                ..Default::default()
            })
            .await
        }
    })
    .await;
    let mut refused_exhausted = 0;
    for r in &refused {
        match r.as_ref().map_err(|e| e.code()) {
            Err(Some(Code::PermissionDenied)) => {}
            Err(Some(Code::ResourceExhausted)) => refused_exhausted += 1,
            other => panic!("a refused write answered {other:?}"),
        }
    }
    assert!(
        refused_exhausted > 0,
        "240 concurrent refused writes: none met the bound"
    );

    // Every health check was answered in time (a member applying a burst of entries may say
    // NOT_SERVING for a moment: it reports not caught up), and all serve once it is over.
    let answers = prober.await.unwrap();
    assert!(
        answers.iter().all(Option::is_some),
        "health during the flood: {answers:?}"
    );
    wait_serving(&cluster).await;

    // The refusals are counted where they happened.
    let refusals: u64 = (1..=3)
        .map(|id| {
            let text = metrics(&cluster, id);
            ["writes_in_flight", "proposal_queue", "read_waiters"]
                .iter()
                .map(|b| {
                    sample(
                        &text,
                        &format!("custos_overload_rejections_total{{bound=\"{b}\"}}"),
                    )
                })
                .sum::<u64>()
        })
        .sum();
    assert!(
        refusals >= (exhausted + refused_exhausted) as u64,
        "{refusals} counted, {} answered",
        exhausted + refused_exhausted
    );
    let text = metrics(&cluster, leader);
    assert!(text.contains("\n# TYPE custos_proposal_queue_depth gauge\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_tls_and_the_token_and_a_huge_request_field_makes_a_short_log_line() {
    let cluster = bounded_cluster();
    wait_serving(&cluster).await;
    let addr = cluster.node(1).metrics.clone();
    let ca = cluster.info.ca_file.clone();

    // HTTPS with the node certificate: 401 without the token or with a wrong one, 200 with it.
    let (status, body) = scrape(&addr, ca.as_deref(), None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("custos_raft_term"), "{body}");
    let (status, _) = scrape(&addr, ca.as_deref(), Some("not-the-token")).unwrap();
    assert_eq!(status, 401);
    assert!(metrics(&cluster, 1).contains("\ncustos_raft_term "));
    // Plain HTTP to the HTTPS port gets no metrics.
    if let Ok((status, body)) = scrape(&addr, None, Some(METRICS_TOKEN)) {
        assert_ne!(status, 200, "plaintext /metrics answered: {body}");
    }

    // A guest's Node.Inspect with a 3 MiB node id: the access line stays short.
    let huge = "n".repeat(3 << 20);
    let mut req = tonic::Request::new(SdkNodeInspectRequest {
        node_id: huge.clone(),
    });
    req.set_timeout(Duration::from_secs(10));
    req.metadata_mut()
        .insert("x-request-id", "huge-node-id".parse().unwrap());
    let answer = OpenStorageNodeClient::new(channel(&cluster, 1))
        .max_encoding_message_size(8 << 20)
        .inspect(req)
        .await;
    assert!(answer.is_err(), "no such node");
    let marker = "huge-node-id";
    let access = cluster.local_log_until(1, "access.log", |t| {
        t.lines()
            .any(|l| l.contains(marker) && !l.contains("msg=Start"))
    });
    let lines: Vec<&str> = access.lines().filter(|l| l.contains(marker)).collect();
    assert_eq!(lines.len(), 2, "Start and the end of the call:\n{lines:?}");
    let end = lines[1];
    assert!(end.contains("NotFound"), "{end}");
    assert!(end.len() < 2048, "a {} byte access line", end.len());
    assert!(end.contains("bytes)"), "the cut is marked: {end}");
    // No line of the node's own logs (stderr, audit.log) echoes it either.
    for file in [
        cluster.node(1).log.clone(),
        cluster.node(1).data_dir.join("audit.log"),
        cluster.node(1).data_dir.join("access.log"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 4096, "{}: a {longest} byte line", file.display());
        assert!(
            !text.contains(METRICS_TOKEN),
            "{} holds the metrics token",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_the_handshake_do_not_keep_a_client_out() {
    let cluster = bounded_cluster();
    wait_serving(&cluster).await;
    let sdk = cluster.node(2).sdk.clone();
    // Five times the handshake bound, each connected and silent.
    let mut silent = Vec::new();
    for _ in 0..HANDSHAKES * 5 {
        silent.push(tokio::net::TcpStream::connect(&sdk).await.unwrap());
    }
    // A real client is served while they hang (retrying, as gRPC clients do, while the
    // handshake slots are taken).
    let admin = cluster.token("admin");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let client = cluster
            .client(2, Some(&admin))
            .with_timeout(Duration::from_secs(3));
        match client.status().await {
            Ok(s) => {
                assert_eq!(s.node_id, 2);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not served in 20 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The member closed every silent connection: at once beyond the bound, at the handshake
    // timeout within it.
    for (i, conn) in silent.iter_mut().enumerate() {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(
            Duration::from_millis(HANDSHAKE_TIMEOUT_MS + 5000),
            conn.read(&mut buf),
        )
        .await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "silent connection {i} still open: {closed:?}"
        );
    }
    let text = metrics(&cluster, 2);
    let refused = |reason: &str| {
        sample(
            &text,
            &format!("custos_connections_refused_total{{listener=\"sdk\",reason=\"{reason}\"}}"),
        )
    };
    assert!(refused("handshake_limit") >= 1, "{text}");
    assert!(refused("handshake_timeout") >= 1, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// The leader other than `not` that `asker` knows of, waited for (bounded).
async fn leader_other_than(cluster: &TestCluster, asker: u64, not: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.leader(asker).await.expect("a leader");
        if leader != not {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "member {asker} still names {not} as leader after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The overload runs of issue #20 stopped committing for good after leadership churn: a leader
/// whose proposals were still in flight when it lost leadership, and which then caught up by a
/// snapshot install, never heard of them again (openraft 0.9 answers a proposal only when its
/// entry is applied or truncated on that member), so its proposal slots stayed taken, and once
/// it led again no write could be proposed. Here the leader is paused under a write load, the
/// others move on past several snapshots, and the old leader, handed leadership back, must
/// commit writes again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_lost_its_in_flight_writes_to_a_snapshot_commits_again_when_it_leads() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let cluster =
        TestCluster::start_with(3, &["--snapshot-every", "20", "--keep-log-entries", "5"]).unwrap();
    let admin = cluster.token("admin");
    let old = cluster.leader(1).await.unwrap();
    let on_old = cluster
        .client(old, Some(&admin))
        .with_timeout(Duration::from_secs(2));
    let mut volumes = Vec::new();
    for i in 0..32 {
        let spec = CreateVolume {
            name: format!("churn-{i}"),
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        };
        volumes.push(on_old.create_volume(&spec).await.expect("create"));
    }
    let label = |n: u64| BTreeMap::from([("n".to_string(), n.to_string())]);

    // 32 writers keep both of the leader's proposal slots busy.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for id in volumes.clone() {
        let (client, stop) = (on_old.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            // Bounded: the test stops it, and each call has a 2 s deadline.
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                n += 1;
                let _ = client
                    .update_volume(&id, &label(n), &Default::default())
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused = cluster.pause(old);
    let asker = (1..=3).find(|id| *id != old).unwrap();
    let new = leader_other_than(&cluster, asker, old).await;
    let on_new = cluster.client(new, Some(&admin));
    // Several snapshots and purges past the paused member's log.
    for n in 0..80 {
        on_new
            .update_volume(&volumes[0], &label(1_000_000 + n), &Default::default())
            .await
            .expect("a write through the new leader");
    }
    drop(paused);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    // The old leader catches up by a snapshot (bounded: 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&cluster.node(old).log)
        .unwrap_or_default()
        .contains("install snapshot")
    {
        assert!(
            Instant::now() < deadline,
            "member {old} did not install a snapshot in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Hand leadership back (bounded: 10 tries), then write through every member.
    let mut led = false;
    for _ in 0..10 {
        let leader = cluster.leader(asker).await.unwrap();
        if leader == old {
            led = true;
            break;
        }
        let _ = cluster
            .client(leader, Some(&admin))
            .transfer_leader(old)
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(led, "leadership did not come back to member {old}");
    for id in 1..=3 {
        cluster
            .client(id, Some(&admin))
            .with_timeout(Duration::from_secs(10))
            .update_volume(&volumes[1], &label(2_000_000 + id), &Default::default())
            .await
            .unwrap_or_else(|e| {
                panic!("a write through member {id} with {old} leading again: {e}")
            });
    }
    assert!(
        cluster.metric(old, "custos_proposals_abandoned_total") >= 1,
        "member {old} never stopped waiting for an entry it lost"
    );
}
