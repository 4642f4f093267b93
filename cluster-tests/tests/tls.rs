//! Secure transport: the peer port only answers nodes with a certificate from the cluster CA,
//! and only for the node id the certificate names; the SDK over TLS (`custos dev --sdk-tls`),
//! with client certificates when `client_ca_file` is set; certificates reload on SIGHUP.

use custos_client::ClientTls;
use custos_cluster_tests::raw_grpc::RawCodec;
use custos_cluster_tests::TestCluster;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SanType,
};
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `RaftRequest { from, target, payload: "" }`: the payload does not decode, so a call that
/// passes authentication ends in InvalidArgument and changes nothing.
fn raft_request(from: u64, target: u64) -> Vec<u8> {
    let mut out = vec![0x08];
    varint(&mut out, from);
    out.push(0x10);
    varint(&mut out, target);
    out
}

/// Calls `custos.raft.v1.RaftService/Vote` on `addr` as node `from`.
async fn vote(
    addr: &str,
    tls: Option<ClientTlsConfig>,
    from: u64,
    target: u64,
) -> Result<Vec<u8>, tonic::Status> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static("/custos.raft.v1.RaftService/Vote");
    grpc.unary(
        tonic::Request::new(raft_request(from, target)),
        path,
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// A CA of its own (not the cluster's) and a certificate from it naming node `id`.
fn foreign_node_cert(id: u64) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "not the cluster CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        SanType::URI(format!("custos://node/{id}").try_into().unwrap()),
        SanType::DnsName(format!("custos-node-{id}").try_into().unwrap()),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Refused before the service ran: the handshake or the connection failed, never a reply of
/// the handler (InvalidArgument) or success.
fn assert_refused_by_transport(what: &str, got: Result<Vec<u8>, tonic::Status>) {
    match got {
        Ok(_) => panic!("{what}: the peer port answered"),
        Err(s) => {
            eprintln!("{what}: refused with {:?}: {}", s.code(), s.message());
            assert!(
                !matches!(
                    s.code(),
                    tonic::Code::InvalidArgument | tonic::Code::PermissionDenied | tonic::Code::Ok
                ),
                "{what}: expected a transport refusal, got {s:?}"
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_port_requires_a_cluster_certificate_naming_the_sender() {
    let cluster = TestCluster::start(3).unwrap();
    assert!(
        cluster.info.peer_tls,
        "custos dev uses peer mTLS by default"
    );
    let dir = cluster.dir.path();
    // Keys and certificates are written mode 0600.
    for file in [
        "tls/ca.pem",
        "tls/ca.key",
        "node-1/tls/node.pem",
        "node-1/tls/node.key",
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let ca = read(&dir.join("tls/ca.pem"));
    let node2 = Identity::from_pem(
        read(&dir.join("node-2/tls/node.pem")),
        read(&dir.join("node-2/tls/node.key")),
    );
    let target = cluster.node(1).raft.clone();
    let trusting = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("custos-node-1")
    };

    // Plaintext: the peer port speaks TLS only.
    assert_refused_by_transport("plaintext", vote(&target, None, 2, 1).await);
    // TLS without a client certificate.
    assert_refused_by_transport(
        "no client cert",
        vote(&target, Some(trusting()), 2, 1).await,
    );
    // A certificate naming node 2, from another CA.
    let (_, foreign_cert, foreign_key) = foreign_node_cert(2);
    assert_refused_by_transport(
        "foreign CA",
        vote(
            &target,
            Some(trusting().identity(Identity::from_pem(foreign_cert, foreign_key))),
            2,
            1,
        )
        .await,
    );
    // Node 2's real certificate, claiming to be node 3.
    let got = vote(&target, Some(trusting().identity(node2.clone())), 3, 1).await;
    match got {
        Err(s) if s.code() == tonic::Code::PermissionDenied => {
            assert!(s.message().contains("names node 2"), "{s:?}")
        }
        other => panic!("node 2 claiming to be node 3: {other:?}"),
    }
    // Node 2's certificate as node 2 passes authentication: the empty payload is then refused
    // as undecodable, which shows the call reached the service.
    let got = vote(&target, Some(trusting().identity(node2)), 2, 1).await;
    match got {
        Err(s) if s.code() == tonic::Code::InvalidArgument => {}
        other => panic!("node 2 as itself: {other:?}"),
    }

    // The cluster is unharmed and keeps replicating over mTLS.
    let admin = cluster.token("admin");
    let leader = cluster.leader(1).await.unwrap();
    assert!((1..=3).contains(&leader));
    cluster
        .any_client(Some(&admin))
        .status()
        .await
        .expect("status");
    let text = read(&cluster.node(1).log);
    assert!(
        text.contains("refused a peer call whose sender is not the node its certificate names"),
        "node 1 logs the impersonation attempt"
    );
}

/// Waits (bounded) until `f` returns true.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_over_tls_and_certificates_reload_on_sighup() {
    let cluster = TestCluster::start_with(3, &["--sdk-tls"]).unwrap();
    let ca_file = cluster
        .info
        .ca_file
        .clone()
        .expect("cluster.json names the CA");
    let admin = cluster.token("admin");
    // The harness' clients trust the CA from cluster.json.
    cluster.client(1, Some(&admin)).status().await.unwrap();
    // A plaintext client cannot talk to a TLS SDK port.
    let plain = custos_client::Client::new(&[cluster.node(1).sdk.clone()], Some(&admin))
        .unwrap()
        .with_timeout(Duration::from_secs(3));
    assert!(plain.status().await.is_err(), "plaintext to a TLS SDK port");

    // A bad certificate file on SIGHUP: the node keeps serving with the old one.
    let node1 = cluster.node(1).clone();
    let tls_dir = node1.config.parent().unwrap().join("tls");
    let (old_cert, old_key) = (
        read(&tls_dir.join("node.pem")),
        read(&tls_dir.join("node.key")),
    );
    std::fs::write(tls_dir.join("node.pem"), "not a certificate").unwrap();
    kill(Pid::from_raw(node1.pid as i32), Signal::SIGHUP).unwrap();
    eventually("the failed reload is logged", async || {
        read(&node1.log).contains("keeping the old certificates")
    })
    .await;
    let fresh = || {
        custos_client::Client::with_tls(
            std::slice::from_ref(&node1.sdk),
            Some(&admin),
            Some(&ClientTls::from_ca_file(&ca_file).unwrap()),
        )
        .unwrap()
        .with_timeout(Duration::from_secs(3))
    };
    fresh()
        .status()
        .await
        .expect("old certificate still served");

    // A certificate from another CA on SIGHUP: new connections get it, so a client trusting
    // only the cluster CA is refused and one trusting the new CA connects.
    let (other_ca, cert, key) = foreign_node_cert(1);
    std::fs::write(tls_dir.join("node.pem"), cert).unwrap();
    std::fs::write(tls_dir.join("node.key"), key).unwrap();
    let other_ca_file = cluster.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca).unwrap();
    kill(Pid::from_raw(node1.pid as i32), Signal::SIGHUP).unwrap();
    eventually("new connections see the new certificate", async || {
        fresh().status().await.is_err()
    })
    .await;
    let other = custos_client::Client::with_tls(
        std::slice::from_ref(&node1.sdk),
        Some(&admin),
        Some(&ClientTls::from_ca_file(&other_ca_file).unwrap()),
    )
    .unwrap()
    .with_timeout(Duration::from_secs(3));
    other.status().await.expect("the reloaded certificate");

    // And back: the original certificate again.
    std::fs::write(tls_dir.join("node.pem"), old_cert).unwrap();
    std::fs::write(tls_dir.join("node.key"), old_key).unwrap();
    kill(Pid::from_raw(node1.pid as i32), Signal::SIGHUP).unwrap();
    eventually("the original certificate is back", async || {
        fresh().status().await.is_ok()
    })
    .await;

    // Client certificates on SIGHUP: with `client_ca_file`, a client without a certificate
    // from that CA is refused; one with such a certificate gets in.
    let config = std::fs::read_to_string(&node1.config).unwrap();
    let with_client_ca = config.replacen(
        "[tls]\n",
        &format!("[tls]\nclient_ca_file = {:?}\n", ca_file),
        1,
    );
    assert_ne!(config, with_client_ca, "dev configs have a [tls] section");
    std::fs::write(&node1.config, with_client_ca).unwrap();
    kill(Pid::from_raw(node1.pid as i32), Signal::SIGHUP).unwrap();
    eventually("clients without a certificate are refused", async || {
        fresh().status().await.is_err()
    })
    .await;
    let node2_tls = cluster.node(2).config.parent().unwrap().join("tls");
    let with_cert = custos_client::Client::with_tls(
        std::slice::from_ref(&node1.sdk),
        Some(&admin),
        Some(&ClientTls::from_ca_file(&ca_file).unwrap().with_identity(
            read(&node2_tls.join("node.pem")).into_bytes(),
            read(&node2_tls.join("node.key")).into_bytes(),
        )),
    )
    .unwrap()
    .with_timeout(Duration::from_secs(3));
    with_cert
        .status()
        .await
        .expect("a client certificate from client_ca_file");
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_dev_clusters_are_plaintext_and_say_so() {
    let cluster = TestCluster::start_with(3, &["--insecure"]).unwrap();
    assert!(!cluster.info.peer_tls);
    assert!(cluster.info.ca_file.is_none());
    assert!(!cluster.dir.path().join("tls").exists(), "no CA is made");
    let admin = cluster.token("admin");
    cluster.any_client(Some(&admin)).status().await.unwrap();
    // The peer port answers plaintext calls, and the node warns about it at start.
    let got = vote(&cluster.node(1).raft, None, 2, 1).await;
    assert!(
        matches!(&got, Err(s) if s.code() == tonic::Code::InvalidArgument),
        "{got:?}"
    );
    assert!(read(&cluster.node(1).log).contains("peer and SDK traffic is PLAINTEXT"));
}
