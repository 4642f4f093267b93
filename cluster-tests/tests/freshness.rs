//! Authorization freshness (issue #19) on a real 3-member cluster: a paused follower refuses a
//! read and a write after an acknowledged role revocation (no stale allow), a member that did
//! not take a grant serves calls made at once after its acknowledgement (no stale denial), and
//! the audit trail holds exactly the refusals that callers received.

use custos_client::model::audit::{AuditQuery, AuditRecord};
use custos_client::model::{Role, Rule};
use custos_client::CreateVolume;
use custos_cluster_tests::{all_audit_records, TestCluster};
use custos_proto::openstorage::api;
use custos_proto::openstorage::api::open_storage_role_client::OpenStorageRoleClient;
use custos_proto::openstorage::api::open_storage_volume_client::OpenStorageVolumeClient;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

/// The deadline of every call a trial makes (sent as `grpc-timeout`); generous, as the machine
/// may be slow. Nothing here asserts how long a call took.
const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// Attempts of one call that came back UNAVAILABLE (an election, a member catching up): the
/// same request id is sent again, so a write is applied at most once.
const UNAVAILABLE_RETRIES: usize = 5;

/// The members, as ordered pairs (member that takes the grant, member that takes the call).
const PAIRS: [(u64, u64); 6] = [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)];

fn rule(services: &[&str], apis: &[&str]) -> Rule {
    Rule {
        services: services.iter().map(|s| s.to_string()).collect(),
        apis: apis.iter().map(|s| s.to_string()).collect(),
    }
}

fn role(name: &str, rules: Vec<Rule>) -> Role {
    Role {
        name: name.to_string(),
        rules,
    }
}

/// A role with no volume rule at all (a role needs one rule).
fn without_volume(name: &str) -> Role {
    role(name, vec![rule(&["identity"], &["version"])])
}

fn vol(name: &str) -> CreateVolume {
    CreateVolume {
        name: name.to_string(),
        size: 1 << 20,
        ha_level: 1,
        ..Default::default()
    }
}

/// A plaintext channel to member `id`'s SDK; it connects on first use.
fn channel(cluster: &TestCluster, id: u64) -> Channel {
    assert!(
        cluster.info.ca_file.is_none(),
        "these tests speak plaintext gRPC to the members"
    );
    let sdk = &cluster.node(id).sdk;
    let hostport = sdk.strip_prefix("http://").unwrap_or(sdk);
    Endpoint::from_shared(format!("http://{hostport}"))
        .expect("SDK endpoint")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy()
}

/// A request with the caller's token (none: a guest) and its own `x-request-id`.
fn request<T>(msg: T, token: Option<&str>, request_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(CALL_DEADLINE);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("bearer {t}").parse().expect("token metadata"),
        );
    }
    r.metadata_mut().insert(
        "x-request-id",
        request_id.parse().expect("request id metadata"),
    );
    r
}

/// What a call came back with: served, or refused with a code and message.
type Answer = Result<(), (tonic::Code, String)>;

fn answer<T>(r: Result<T, tonic::Status>) -> Answer {
    r.map(|_| ())
        .map_err(|s| (s.code(), s.message().to_string()))
}

/// A default (linearizable) `Volume.Inspect`.
async fn inspect(ch: Channel, token: Option<&str>, request_id: &str, volume_id: &str) -> Answer {
    let msg = api::SdkVolumeInspectRequest {
        volume_id: volume_id.to_string(),
        options: None,
    };
    answer(
        OpenStorageVolumeClient::new(ch)
            .inspect(request(msg, token, request_id))
            .await,
    )
}

/// A `Volume.Create` of a 1 MiB volume.
async fn create(ch: Channel, token: Option<&str>, request_id: &str, name: &str) -> Answer {
    let msg = api::SdkVolumeCreateRequest {
        name: name.to_string(),
        spec: Some(api::VolumeSpec {
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        }),
        labels: Default::default(),
    };
    answer(
        OpenStorageVolumeClient::new(ch)
            .create(request(msg, token, request_id))
            .await,
    )
}

/// `call` (with one request id), sent again while it answers UNAVAILABLE (bounded).
async fn with_retries<F, Fut>(call: F) -> (Answer, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut retries = 0;
    loop {
        let a = call().await;
        match &a {
            Err((tonic::Code::Unavailable, _)) if retries < UNAVAILABLE_RETRIES => {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => return (a, retries),
        }
    }
}

/// Replaces a role's rules through member `via` and returns once it is acknowledged
/// (committed). UNAVAILABLE is retried (bounded): a role update is idempotent.
async fn set_role(cluster: &TestCluster, via: u64, r: &Role) {
    let admin = cluster.client(via, Some(&cluster.token("admin")));
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0..200 {
        match admin.update_role(r).await {
            Ok(_) => return,
            Err(e) if e.code() == Some(custos_client::model::Code::Unavailable) => {
                assert!(
                    Instant::now() < deadline,
                    "updating role {} through member {via}: still {e} after {attempt} attempts",
                    r.name
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("updating role {} through member {via}: {e}", r.name),
        }
    }
    panic!("updating role {} through member {via}: no answer", r.name);
}

/// The request ids of calls the test made and how each ended.
#[derive(Default)]
struct Ledger {
    served: BTreeSet<String>,
    refused: BTreeSet<String>,
}

impl Ledger {
    fn note(&mut self, request_id: &str, a: &Answer) {
        match a {
            Ok(()) => self.served.insert(request_id.to_string()),
            Err((tonic::Code::PermissionDenied, _)) => self.refused.insert(request_id.to_string()),
            Err(_) => false,
        };
    }
}

/// The client's `x-request-id` in a record's request id: a write's is scoped by its caller
/// (`issuer/username/id`), an edge refusal's is the id itself. The test's ids have no `/`.
fn client_id(record: &AuditRecord) -> &str {
    record.request_id.rsplit('/').next().unwrap_or_default()
}

/// Makes the trail hold every denial the members saw so far: on each member, a call the caller
/// may not make (`Role.Enumerate`) with a known request id, then waits (bounded) until all
/// three are in the trail. A member batches its denials in order, so what it refused before
/// its marker is recorded by then. Returns the markers' request ids.
async fn flush_denials(cluster: &TestCluster, token: Option<&str>, tag: &str) -> Vec<String> {
    let mut markers = Vec::new();
    for id in 1..=3u64 {
        let rid = format!("{tag}-marker-{id}");
        let a = answer(
            OpenStorageRoleClient::new(channel(cluster, id))
                .enumerate(request(api::SdkRoleEnumerateRequest {}, token, &rid))
                .await,
        );
        assert!(
            matches!(a, Err((tonic::Code::PermissionDenied, _))),
            "marker on member {id}: {a:?}"
        );
        markers.push(rid);
    }
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: BTreeSet<String> = all_audit_records(&admin, &AuditQuery::default())
            .await
            .into_iter()
            .map(|r| client_id(&r).to_string())
            .collect();
        if markers.iter().all(|m| held.contains(m)) {
            return markers;
        }
        assert!(
            Instant::now() < deadline,
            "the denial markers {markers:?} are not in the trail after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the trail against what the callers received: no denial record names a call that was
/// served, every denial record of `method` by the actor `is_actor` names a refused call, and
/// their counts add up to the refusals received.
async fn check_trail(
    cluster: &TestCluster,
    ledger: &Ledger,
    method: &str,
    is_actor: impl Fn(&AuditRecord) -> bool,
    refusals_received: usize,
) {
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    let records = all_audit_records(&admin, &AuditQuery::default()).await;
    let denials: Vec<&AuditRecord> = records.iter().filter(|r| !r.authorized).collect();
    let wrong: Vec<&&AuditRecord> = denials
        .iter()
        .filter(|r| ledger.served.contains(client_id(r)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} denial records name calls that were served: {wrong:#?}",
        wrong.len()
    );
    let mine: Vec<&&AuditRecord> = denials
        .iter()
        .filter(|r| r.method == method && is_actor(r))
        .collect();
    for r in &mine {
        assert!(
            ledger.refused.contains(client_id(r)),
            "a {method} denial names no refused call: {r:#?}"
        );
    }
    let recorded: u64 = mine.iter().map(|r| r.count).sum();
    eprintln!("{method}: {refusals_received} refusals received, {recorded} recorded in the trail");
    assert_eq!(
        recorded, refusals_received as u64,
        "the trail's {method} denials ({mine:#?}) do not add up to the refusals received"
    );
}

/// What a run of grant-then-call trials saw.
struct Trials {
    ledger: Ledger,
    /// Calls refused with PERMISSION_DENIED right after the grant was acknowledged.
    stale: usize,
    total: usize,
    failures: Vec<String>,
}

impl Trials {
    fn assert_none_failed(&self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} {what} right after a grant failed (all listed above), first:\n{}",
            self.failures.len(),
            self.total,
            self.failures[..self.failures.len().min(5)].join("\n")
        );
    }
}

/// `total` trials, the member pairs in turn: `revoke` then `grant` through one member (each
/// acknowledged), then at once `call(channel, trial, request id)` on another member, which must
/// be served. Prints the count of stale denials and every failed trial.
async fn grant_then_call<F, Fut>(
    cluster: &TestCluster,
    label: &str,
    total: usize,
    (revoke, grant): (&Role, &Role),
    call: F,
) -> Trials
where
    F: Fn(Channel, usize, String) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let leader = cluster.leader(1).await.unwrap();
    eprintln!("{label}: leader is member {leader}");
    let channels: BTreeMap<u64, Channel> = (1..=3).map(|id| (id, channel(cluster, id))).collect();
    let mut t = Trials {
        ledger: Ledger::default(),
        stale: 0,
        total,
        failures: Vec::new(),
    };
    let mut retried = 0usize;
    for trial in 0..total {
        let (grant_via, call_on) = PAIRS[trial % PAIRS.len()];
        set_role(cluster, grant_via, revoke).await;
        set_role(cluster, grant_via, grant).await;
        let rid = format!("{}-{trial}", label.replace(' ', "-"));
        let (a, r) = with_retries(|| call(channels[&call_on].clone(), trial, rid.clone())).await;
        retried += r;
        t.ledger.note(&rid, &a);
        if let Err(e) = &a {
            if e.0 == tonic::Code::PermissionDenied {
                t.stale += 1;
            }
            t.failures.push(format!(
                "trial {trial}: call on member {call_on} right after the grant through member {grant_via} (leader {leader} at start): {e:?}"
            ));
        }
    }
    eprintln!(
        "{label}: stale denials {}/{total} ({retried} UNAVAILABLE answers retried)",
        t.stale
    );
    for f in &t.failures {
        eprintln!("{f}");
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_refuses_what_an_acknowledged_revocation_took_away() {
    const TRIALS: usize = 20;
    const ROLE: &str = "fresh.reader";
    let cluster = TestCluster::start(3).unwrap();
    let granted = role(ROLE, vec![rule(&["volume"], &["create", "inspect*"])]);
    let revoked = without_volume(ROLE);
    cluster
        .client(1, Some(&cluster.token("admin")))
        .create_role(&granted)
        .await
        .unwrap();
    let token = cluster.mint_token("frank", &[ROLE], &[]);
    let vid = cluster
        .client(1, Some(&token))
        .create_volume(&vol("frank-doc"))
        .await
        .unwrap();
    let channels: BTreeMap<u64, Channel> = (1..=3).map(|id| (id, channel(&cluster, id))).collect();

    let mut ledger = Ledger::default();
    let (mut stale_reads, mut stale_writes) = (0usize, 0usize);
    let (mut inspect_refusals, mut create_refusals) = (0usize, 0usize);
    let mut failures = Vec::new();
    for trial in 0..TRIALS {
        let leader = cluster.leader(1).await.unwrap();
        let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
        let follower = followers[trial % followers.len()];
        set_role(&cluster, leader, &granted).await;
        // The follower serves frank's read before the pause: the grant has reached it and the
        // channel is connected (so the paused member's kernel queues the call below).
        let mut allowed = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        for attempt in 0..100 {
            if Instant::now() > deadline {
                break;
            }
            let rid = format!("paused-{trial}-before-{attempt}");
            let a = inspect(channels[&follower].clone(), Some(&token), &rid, &vid).await;
            ledger.note(&rid, &a);
            match a {
                Ok(()) => {
                    allowed = true;
                    break;
                }
                Err((tonic::Code::PermissionDenied, _)) => inspect_refusals += 1,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            allowed,
            "trial {trial}: member {follower} never served frank's read after the grant"
        );

        let read_id = format!("paused-{trial}-read");
        let write_id = format!("paused-{trial}-write");
        let (read, write) = {
            let _paused = cluster.pause(follower);
            // Acknowledged by the leader and the other follower while this one sleeps.
            set_role(&cluster, leader, &revoked).await;
            let read = tokio::spawn({
                let (ch, token, rid, vid) = (
                    channels[&follower].clone(),
                    token.clone(),
                    read_id.clone(),
                    vid.clone(),
                );
                async move { inspect(ch, Some(&token), &rid, &vid).await }
            });
            let write = tokio::spawn({
                let (ch, token, rid) =
                    (channels[&follower].clone(), token.clone(), write_id.clone());
                let name = format!("frank-after-revocation-{trial}");
                async move { create(ch, Some(&token), &rid, &name).await }
            });
            // Let both calls reach the paused member's socket before it runs again.
            tokio::time::sleep(Duration::from_millis(300)).await;
            (read, write)
            // SIGCONT here.
        };
        let read = read.await.expect("read task");
        let write = write.await.expect("write task");
        ledger.note(&read_id, &read);
        ledger.note(&write_id, &write);
        match &read {
            Err((tonic::Code::PermissionDenied, _)) => inspect_refusals += 1,
            other => {
                if other.is_ok() {
                    stale_reads += 1;
                }
                failures.push(format!(
                    "trial {trial}: Inspect on paused follower {follower} (leader {leader}) after the acknowledged revocation: {other:?}"
                ));
            }
        }
        match &write {
            Err((tonic::Code::PermissionDenied, _)) => create_refusals += 1,
            other => {
                if other.is_ok() {
                    stale_writes += 1;
                }
                failures.push(format!(
                    "trial {trial}: Create on paused follower {follower} (leader {leader}) after the acknowledged revocation: {other:?}"
                ));
            }
        }
    }
    eprintln!("paused follower: stale allows (reads) {stale_reads}/{TRIALS}");
    eprintln!("paused follower: stale allows (writes) {stale_writes}/{TRIALS}");
    for f in &failures {
        eprintln!("{f}");
    }

    // The trail: the refusals frank received, and no denial of a call that was served.
    flush_denials(&cluster, Some(&token), "paused").await;
    let frank = |r: &AuditRecord| r.actor.username == "frank";
    check_trail(&cluster, &ledger, "volume.inspect", frank, inspect_refusals).await;
    check_trail(&cluster, &ledger, "volume.create", frank, create_refusals).await;
    // Every in-flight call refused in a trial is named by a record, unless a record of the
    // same kind absorbed it (edge denials of one batch coalesce: the first id and a count).
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    let records = all_audit_records(&admin, &AuditQuery::default()).await;
    for (method, kind) in [("volume.inspect", "read"), ("volume.create", "write")] {
        let mine: Vec<&AuditRecord> = records
            .iter()
            .filter(|r| !r.authorized && r.method == method && frank(r))
            .collect();
        let named: BTreeSet<&str> = mine.iter().map(|r| client_id(r)).collect();
        let absorbed: u64 = mine.iter().map(|r| r.count - 1).sum();
        let unnamed: Vec<String> = (0..TRIALS)
            .map(|t| format!("paused-{t}-{kind}"))
            .filter(|rid| ledger.refused.contains(rid) && !named.contains(rid.as_str()))
            .collect();
        assert!(
            unnamed.len() as u64 <= absorbed,
            "refused {kind}s of the paused trials absent from the trail: {unnamed:?}"
        );
    }

    assert!(
        failures.is_empty(),
        "{} of {} calls to a paused follower were not refused (all listed above), first:\n{}",
        failures.len(),
        2 * TRIALS,
        failures[..failures.len().min(5)].join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_create_right_after_an_acknowledged_grant_succeeds_on_every_member() {
    const TRIALS: usize = 200;
    const GUEST: &str = "system.guest";
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    let default_guest = admin.inspect_role(GUEST).await.unwrap();
    let builtin = custos_client::model::role::builtin_roles()
        .into_iter()
        .find(|r| r.name == GUEST)
        .expect("built-in system.guest");
    assert_eq!(
        default_guest, builtin,
        "a new cluster's system.guest has the built-in rules"
    );
    assert!(
        default_guest
            .rules
            .iter()
            .any(|r| r.services.iter().any(|s| s == "volume")),
        "system.guest has a volume rule: {default_guest:?}"
    );
    // 200 guest volumes: far past the default guest quota (10), which this test is not about.
    admin
        .set_quota(&custos_client::SetQuotaRequest {
            subject: Some(custos_client::QuotaSubject {
                guest: true,
                ..Default::default()
            }),
            max_volumes: None,
            max_bytes: None,
        })
        .await
        .unwrap();
    // The default rules, with volume create denied.
    let mut no_create = default_guest.clone();
    for r in &mut no_create.rules {
        if r.services.iter().any(|s| s == "volume") {
            r.apis.push("!create".into());
        }
    }
    let leader = cluster.leader(1).await.unwrap();
    let trials = grant_then_call(
        &cluster,
        "guest grant",
        TRIALS,
        (&no_create, &default_guest),
        |ch, trial, rid| async move { create(ch, None, &rid, &format!("guest-vol-{trial}")).await },
    )
    .await;

    // Restore the defaults (they are the last state already) and check.
    set_role(&cluster, leader, &default_guest).await;
    assert_eq!(admin.inspect_role(GUEST).await.unwrap(), builtin);

    flush_denials(&cluster, None, "guest").await;
    let guest = |r: &AuditRecord| r.actor.username.is_empty() && r.actor.roles == [GUEST];
    check_trail(
        &cluster,
        &trials.ledger,
        "volume.create",
        guest,
        trials.stale,
    )
    .await;
    trials.assert_none_failed("guest creates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_an_acknowledged_role_grant_is_served_on_every_member() {
    const TRIALS: usize = 200;
    const ROLE: &str = "fresh.inspector";
    let cluster = TestCluster::start(3).unwrap();
    let admin = cluster.client(1, Some(&cluster.token("admin")));
    admin
        .create_role(&role(
            ROLE,
            vec![rule(&["volume"], &["create", "inspect*"])],
        ))
        .await
        .unwrap();
    let token = cluster.mint_token("grace", &[ROLE], &[]);
    let vid = cluster
        .client(1, Some(&token))
        .create_volume(&vol("grace-doc"))
        .await
        .unwrap();
    let granted = role(ROLE, vec![rule(&["volume"], &["inspect*"])]);
    let revoked = without_volume(ROLE);
    let trials = grant_then_call(
        &cluster,
        "role grant",
        TRIALS,
        (&revoked, &granted),
        |ch, _, rid| {
            let (token, vid) = (token.clone(), vid.clone());
            async move { inspect(ch, Some(&token), &rid, &vid).await }
        },
    )
    .await;

    flush_denials(&cluster, Some(&token), "inspect").await;
    let grace = |r: &AuditRecord| r.actor.username == "grace";
    check_trail(
        &cluster,
        &trials.ledger,
        "volume.inspect",
        grace,
        trials.stale,
    )
    .await;
    trials.assert_none_failed("reads");
}

/// A refusal the member cannot confirm is not given: on a member cut off from the quorum (the
/// two others SIGKILLed), a write its own state refuses and a linearizable read it refuses both
/// answer UNAVAILABLE, never PERMISSION_DENIED, and neither leaves a denial in the trail. A
/// serializable read is decided on the member's own state, so its refusal is answered at once
/// and recorded (docs/security.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_that_cannot_be_confirmed_is_unavailable_and_not_recorded() {
    let mut cluster = TestCluster::start(3).unwrap();
    let leader = cluster.leader(1).await.unwrap();
    let lone = (1..=3u64).find(|id| *id != leader).unwrap();
    let view = cluster.token("view");
    // The lone member knows the cluster as it is now (system.view may not create).
    cluster
        .client(lone, Some(&view))
        .enumerate_volumes()
        .await
        .expect("a read as view before the others stop");
    let others: Vec<u64> = (1..=3u64).filter(|id| *id != lone).collect();
    for id in &others {
        cluster.kill9(*id);
    }

    fn short<T>(mut r: tonic::Request<T>) -> tonic::Request<T> {
        r.set_timeout(Duration::from_secs(3));
        r
    }
    let create_msg = api::SdkVolumeCreateRequest {
        name: "lonely".to_string(),
        spec: Some(api::VolumeSpec {
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        }),
        labels: Default::default(),
    };
    let write = answer(
        OpenStorageVolumeClient::new(channel(&cluster, lone))
            .create(short(request(create_msg, Some(&view), "lonely-write")))
            .await,
    );
    assert!(
        matches!(write, Err((tonic::Code::Unavailable, _))),
        "a refusal the lone member {lone} cannot confirm was answered: {write:?}"
    );
    // A guest may not enumerate roles.
    let read = answer(
        OpenStorageRoleClient::new(channel(&cluster, lone))
            .enumerate(short(request(
                api::SdkRoleEnumerateRequest {},
                None,
                "lonely-read",
            )))
            .await,
    );
    assert!(
        matches!(read, Err((tonic::Code::Unavailable, _))),
        "a linearizable read the lone member {lone} refuses locally was answered: {read:?}"
    );
    // Another method than the markers' (`Role.Enumerate`), so no denial coalesces with it.
    let mut local = short(request(
        api::SdkRoleInspectRequest {
            name: "system.admin".to_string(),
        },
        None,
        "lonely-serializable",
    ));
    local
        .metadata_mut()
        .insert("x-custos-consistency", "serializable".parse().unwrap());
    let serializable = answer(
        OpenStorageRoleClient::new(channel(&cluster, lone))
            .inspect(local)
            .await,
    );
    assert!(
        matches!(serializable, Err((tonic::Code::PermissionDenied, _))),
        "a serializable read is decided on local state: {serializable:?}"
    );

    for id in &others {
        cluster.restart(*id).unwrap();
    }
    // Every member serves again (the lone one may lead with one of them while the other is
    // still starting).
    for id in 1..=3u64 {
        cluster.leader(id).await.unwrap();
    }
    flush_denials(&cluster, None, "lonely").await;
    let admin = cluster.client(lone, Some(&cluster.token("admin")));
    let records = all_audit_records(&admin, &AuditQuery::default()).await;
    let named = |id: &str| {
        records
            .iter()
            .filter(|r| !r.authorized && client_id(r) == id)
            .count()
    };
    assert_eq!(
        named("lonely-write"),
        0,
        "an unconfirmed write refusal is in the trail"
    );
    assert_eq!(
        named("lonely-read"),
        0,
        "an unconfirmed read refusal is in the trail"
    );
    assert_eq!(
        named("lonely-serializable"),
        1,
        "the serializable refusal the caller received is in the trail"
    );
}
