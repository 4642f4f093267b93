//! Operations surface: the standard gRPC health service (NOT_SERVING without a leader) and
//! server reflection (what `grpcurl` uses), on every member.

use custos_cluster_tests::TestCluster;
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn health(addr: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(Duration::from_secs(1));
    let status = client.check(req).await.ok()?.into_inner().status;
    ServingStatus::try_from(status).ok()
}

/// Polls (bounded) until `addr` reports `want`.
async fn wait_for(addr: &str, want: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = health(addr).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: health {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_quorum_and_reflection_lists_the_services() {
    let mut cluster = TestCluster::start(3).unwrap();
    for node in &cluster.info.nodes {
        wait_for(&node.sdk, ServingStatus::Serving, Duration::from_secs(10)).await;
    }

    // Reflection names the SDK services (package openstorage.api) and our own.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.info.endpoints[1]))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "openstorage.api.OpenStorageVolume",
        "openstorage.api.OpenStorageRole",
        "custos.admin.v1.ClusterAdmin",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    // Without a quorum there is no leader: a lone restarted member must not claim to serve.
    for id in 1..=3 {
        cluster.kill9(id);
    }
    cluster.restart(1).unwrap();
    let lone = cluster.node(1).sdk.clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut answered = false;
    while Instant::now() < deadline {
        if let Some(s) = health(&lone).await {
            answered = true;
            assert_eq!(
                s,
                ServingStatus::NotServing,
                "a member without quorum reported SERVING"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "the restarted member never answered health checks"
    );
    // A second member back: quorum, a leader, SERVING again.
    cluster.restart(2).unwrap();
    wait_for(&lone, ServingStatus::Serving, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_quorum_is_unavailable_before_the_client_deadline() {
    let mut cluster = TestCluster::start(3).unwrap();
    let leader = cluster.leader(1).await.unwrap();
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.kill9(id);
    }
    let client = cluster
        .client(leader, Some(&cluster.token("user")))
        .with_timeout(Duration::from_millis(1500));
    let started = Instant::now();
    let err = client
        .create_volume(&custos_client::CreateVolume {
            name: "no-quorum".into(),
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let took = started.elapsed();
    // The node answers UNAVAILABLE (naming the deadline) before the client's own deadline
    // passes: not a client-side DEADLINE_EXCEEDED or a cancelled call.
    assert_eq!(
        err.code(),
        Some(custos_client::model::Code::Unavailable),
        "{err}"
    );
    assert!(err.to_string().contains("before the deadline"), "{err}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_raft_requests_auth_failures_and_audit_without_usernames() {
    let cluster = TestCluster::start(3).unwrap();
    let user_token = cluster.token("user");
    let user = cluster.client(1, Some(&user_token));
    user.create_volume(&custos_client::CreateVolume {
        name: "metered".into(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let bad = cluster.client(1, Some("not-a-jwt"));
    assert!(bad.enumerate_volumes().await.is_err());
    let addr = cluster.node(1).metrics.clone();
    assert!(
        addr.starts_with("127.0.0.1:"),
        "metrics bind loopback: {addr}"
    );
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(&format!("http://{addr}/metrics"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert!(value("custos_raft_term ") >= 1.0);
    assert!(value("custos_raft_leader_id ") >= 1.0);
    assert!(value("custos_raft_applied_index ") >= 1.0);
    assert!(value("custos_audit_last_seq ") >= 1.0);
    assert_eq!(
        value(
            "custos_requests_seconds_count{method=\"/openstorage.api.OpenStorageVolume/Create\",code=\"OK\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            "custos_requests_seconds_count{method=\"/openstorage.api.OpenStorageVolume/Enumerate\",code=\"Unauthenticated\"}"
        ),
        1.0
    );
    assert!(value("custos_auth_failures_total{reason=\"malformed_token\"}") >= 1.0);
    // No caller names or tokens in any label.
    for needle in ["username", "user@", "not-a-jwt", user_token.as_str()] {
        assert!(!text.contains(needle), "{needle:?} in metrics");
    }
}
