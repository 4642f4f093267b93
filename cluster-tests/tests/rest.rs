//! The REST gateway against a real cluster, with a real HTTP client: the upstream routes,
//! proto3 JSON both ways, the same authentication, authorization and error texts as gRPC mapped
//! to grpc-gateway's HTTP statuses, consistency across members, and the OpenAPI document.

use custos_cluster_tests::TestCluster;
use serde_json::{json, Value};
use std::time::Duration;

/// Every route of the SDK methods custos serves (SDK 0.101.39's `google.api.http` annotations),
/// then custos' own.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/identities/capabilities"),
    ("GET", "/v1/identities/version"),
    ("GET", "/v1/clusters/inspectcurrent"),
    ("GET", "/v1/nodes/inspect/{node_id}"),
    ("GET", "/v1/nodes/inspectcurrent"),
    ("GET", "/v1/nodes"),
    ("GET", "/v1/nodes/filters"),
    ("GET", "/v1/nodes/usage/{node_id}"),
    ("PUT", "/v1/nodes/attachments/drain/{node_id}"),
    ("PUT", "/v1/nodes/attachments/disable/{node_id}"),
    ("PUT", "/v1/nodes/attachments/enable/{node_id}"),
    ("POST", "/v1/volumes"),
    ("POST", "/v1/volumes/clone"),
    ("DELETE", "/v1/volumes/{volume_id}"),
    ("GET", "/v1/volumes/inspect/{volume_id}"),
    ("POST", "/v1/volumes/inspectwithfilters"),
    ("PUT", "/v1/volumes/{volume_id}"),
    ("GET", "/v1/volumes/stats/{volume_id}"),
    ("GET", "/v1/volumes/usage/{volume_id}"),
    ("GET", "/v1/volumes"),
    ("POST", "/v1/volumes/filters"),
    ("POST", "/v1/volumes/snapshots"),
    ("POST", "/v1/volumes/snapshots/restore"),
    ("GET", "/v1/volumes/snapshots"),
    ("POST", "/v1/volumes/snapshots/filters/{volume_id}"),
    ("POST", "/v1/volumes/snapshot/schedules/{volume_id}"),
    ("POST", "/v1/volume/catalog"),
    ("POST", "/v1/mountattach/attach"),
    ("POST", "/v1/mountattach/detach"),
    ("POST", "/v1/mountattach/mount"),
    ("POST", "/v1/mountattach/unmount"),
    ("POST", "/v1/roles"),
    ("GET", "/v1/roles"),
    ("GET", "/v1/roles/inspect/{name}"),
    ("DELETE", "/v1/roles/{name}"),
    ("PUT", "/v1/roles"),
    ("POST", "/v1/schedulepolicies"),
    ("PUT", "/v1/schedulepolicies"),
    ("GET", "/v1/schedulepolicies"),
    ("GET", "/v1/schedulepolicies/inspect/{name}"),
    ("DELETE", "/v1/schedulepolicies/{name}"),
    ("POST", "/v1/storagepolicies"),
    ("GET", "/v1/storagepolicies"),
    ("GET", "/v1/storagepolicies/inspect/{name}"),
    ("PUT", "/v1/storagepolicies"),
    ("DELETE", "/v1/storagepolicies/{name}"),
    ("POST", "/v1/storagepolicies/default/{name}"),
    ("GET", "/v1/storagepolicies/default"),
    ("POST", "/v1/storagepolicies/release"),
    ("POST", "/v1/credentials"),
    ("PUT", "/v1/credentials/{credential_id}"),
    ("GET", "/v1/credentials"),
    ("GET", "/v1/credentials/inspect/{credential_id}"),
    ("DELETE", "/v1/credentials/{credential_id}"),
    ("GET", "/v1/credentials/validate/{credential_id}"),
    ("DELETE", "/v1/credentials/references/{credential_id}"),
    ("POST", "/v1/alerts/filters"),
    ("POST", "/v1/alerts"),
    // custos' own (docs/compatibility.md, "Explain").
    ("POST", "/v1/custos/access/explain"),
    // (docs/security.md, "Revoking a token").
    ("POST", "/v1/custos/auth/revoke"),
    ("GET", "/v1/custos/auth/revocations"),
    // (docs/security.md, "Quotas").
    ("POST", "/v1/custos/quotas"),
    ("POST", "/v1/custos/quotas/remove"),
    ("GET", "/v1/custos/quotas"),
    ("GET", "/v1/custos/quotas/usage"),
];

/// The fallback's text for a path custos does not serve.
const NOT_SERVED: &str = "over REST: GET /v1/openapi.json lists";

struct Rest {
    addr: String,
    agent: ureq::Agent,
}

/// What came back: HTTP status and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    /// The message of a grpc-gateway error body, checking its shape.
    fn message(&self) -> &str {
        assert_eq!(self.body["error"], self.body["message"], "{self:?}");
        assert_eq!(self.body["details"], json!([]), "{self:?}");
        self.body["message"].as_str().expect("message")
    }

    fn code(&self) -> i64 {
        self.body["code"].as_i64().expect("code")
    }
}

impl Rest {
    fn new(addr: &str) -> Rest {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Rest {
            addr: addr.to_string(),
            agent,
        }
    }

    /// Sends `body` as is (POST and PUT), with the given headers.
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = if matches!(method, "POST" | "PUT") {
            let request = request
                .header("content-type", "application/json")
                .body(body.to_string())
                .unwrap();
            self.agent.run(request)
        } else {
            self.agent.run(request.body(()).unwrap())
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{method} {path} answered {status} with non-JSON {text:?}: {e}")
        });
        Answer { status, body }
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> Answer {
        let auth = token.map(|t| format!("bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.raw(method, path, &headers, &body.to_string())
    }
}

#[test]
fn rest_gateway_serves_the_sdk_with_the_grpc_rules() {
    let cluster = TestCluster::start(3).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rest = |id: u64| {
        let addr = &cluster.node(id).rest;
        assert!(
            addr.starts_with("127.0.0.1:"),
            "REST binds loopback: {addr}"
        );
        Rest::new(addr)
    };
    let (user, view, admin) = (
        cluster.token("user"),
        cluster.token("view"),
        cluster.token("admin"),
    );

    // Create on node 1 (snake_case, int64 as strings, enum by name) ...
    let created = rest(1).call(
        "POST",
        "/v1/volumes",
        Some(&user),
        json!({
            "name": "rest-vol",
            "spec": {"size": "1073741824", "ha_level": "2", "cos": "HIGH"},
            "labels": {"team": "storage"},
        }),
    );
    assert_eq!(created.status, 200, "{created:?}");
    let id = created.body["volume_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());

    // ... inspect over gRPC on node 2: the same volume, owned by the token's subject ...
    let volume = runtime
        .block_on(async { cluster.client(2, Some(&user)).inspect_volume(&id).await })
        .unwrap();
    assert_eq!(volume.name, "rest-vol");
    assert_eq!(volume.spec.size, 1 << 30);
    assert_eq!(volume.spec.ha_level, 2);
    assert_eq!(volume.ownership.as_ref().unwrap().owner, "user");

    // ... and over REST on node 3 (linearizable read on a member that did not take the write).
    let inspected = rest(3).call(
        "GET",
        &format!("/v1/volumes/inspect/{id}"),
        Some(&user),
        Value::Null,
    );
    assert_eq!(inspected.status, 200, "{inspected:?}");
    // REST calls are audited and access-logged like gRPC calls: node 1 wrote the creation's
    // lines, node 3 the inspect's Authorized line and both access lines.
    let created = format!("msg=\"Volume {id} created\"");
    let audit1 = cluster.local_log_until(1, "audit.log", |t| t.contains(&created));
    assert!(audit1.contains(&created), "{audit1}");
    let authorized = |t: &str| {
        t.lines()
            .any(|l| l.contains("msg=Authorized") && l.contains("method=volume.inspect"))
    };
    let audit3 = cluster.local_log_until(3, "audit.log", authorized);
    assert!(authorized(&audit3), "{audit3}");
    let access3 = cluster.local_log_until(3, "access.log", |t| {
        t.contains("method=/openstorage.api.OpenStorageVolume/Inspect")
            && t.contains("msg=Successful")
    });
    assert!(access3.contains("method=/openstorage.api.OpenStorageVolume/Inspect"));
    assert!(access3.contains("msg=Successful"));
    let body = &inspected.body;
    assert_eq!(body["name"], "rest-vol");
    assert_eq!(body["labels"], json!({"team": "storage"}));
    assert_eq!(body["volume"]["id"], id.as_str());
    assert_eq!(body["volume"]["spec"]["size"], "1073741824");
    assert_eq!(body["volume"]["spec"]["ha_level"], "2");
    assert_eq!(body["volume"]["spec"]["cos"], "HIGH");
    assert_eq!(body["volume"]["spec"]["ownership"]["owner"], "user");
    assert!(
        body["volume"]["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("VOLUME_STATUS_")),
        "enums by name: {body}"
    );

    // lowerCamelCase input is accepted too; a retried create with the same X-Request-Id
    // applies once and returns the first answer (metadata is carried over).
    let camel = json!({"name": "camel-vol", "spec": {"size": "1048576", "haLevel": "1"}});
    let auth = format!("bearer {user}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-request-id", "rest-retry-1"),
    ];
    let first = rest(2).raw("POST", "/v1/volumes", &headers, &camel.to_string());
    assert_eq!(first.status, 200, "{first:?}");
    let again = rest(3).raw("POST", "/v1/volumes", &headers, &camel.to_string());
    assert_eq!(again.body["volume_id"], first.body["volume_id"]);

    // Update through a path parameter plus body, then Enumerate.
    let updated = rest(1).call(
        "PUT",
        &format!("/v1/volumes/{id}"),
        Some(&user),
        json!({"labels": {"tier": "gold"}}),
    );
    assert_eq!(updated.status, 200, "{updated:?}");
    let listed = rest(2).call("GET", "/v1/volumes", Some(&user), Value::Null);
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(listed.body["volume_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(id)));

    // A schedule policy over REST (upstream's JSON: the interval's oneof by its field name),
    // then named by SnapshotScheduleUpdate; a name that is none is ABORTED (409).
    let sched = rest(1).call(
        "POST",
        "/v1/schedulepolicies",
        Some(&user),
        json!({"schedule_policy": {"name": "rest-daily",
            "schedules": [{"retain": 2, "daily": {"hour": 3, "minute": 15}}]}}),
    );
    assert_eq!(sched.status, 200, "{sched:?}");
    let got = rest(3).call(
        "GET",
        "/v1/schedulepolicies/inspect/rest-daily",
        Some(&user),
        Value::Null,
    );
    assert_eq!(
        got.body["policy"]["schedules"][0]["daily"]["hour"], 3,
        "{got:?}"
    );
    let missing = rest(2).call(
        "POST",
        &format!("/v1/volumes/snapshot/schedules/{id}"),
        Some(&user),
        json!({"snapshot_schedule_names": ["rest-nope"]}),
    );
    assert_eq!(missing.status, 409, "{missing:?}");
    let named = rest(2).call(
        "POST",
        &format!("/v1/volumes/snapshot/schedules/{id}"),
        Some(&user),
        json!({"snapshot_schedule_names": ["rest-daily"]}),
    );
    assert_eq!(named.status, 200, "{named:?}");

    // A snapshot over REST; SnapshotEnumerate (GET) takes volume_id from the query string, and a
    // bool in a query string (`options.deep=true`) is a bool.
    let snap = rest(2).call(
        "POST",
        "/v1/volumes/snapshots",
        Some(&user),
        json!({"volume_id": id, "name": "rest-snap"}),
    );
    assert_eq!(snap.status, 200, "{snap:?}");
    let snap_id = snap.body["snapshot_id"].as_str().unwrap().to_string();
    let snaps = rest(3).call(
        "GET",
        &format!("/v1/volumes/snapshots?volume_id={id}"),
        Some(&user),
        Value::Null,
    );
    assert_eq!(snaps.status, 200, "{snaps:?}");
    assert_eq!(snaps.body["volume_snapshot_ids"], json!([snap_id]));
    let other = first.body["volume_id"].as_str().unwrap();
    let none = rest(3).call(
        "GET",
        &format!("/v1/volumes/snapshots?volume_id={other}"),
        Some(&user),
        Value::Null,
    );
    assert_eq!((none.status, &none.body), (200, &json!({})), "{none:?}");
    let deep = rest(1).call(
        "GET",
        &format!("/v1/volumes/inspect/{snap_id}?options.deep=true"),
        Some(&user),
        Value::Null,
    );
    assert_eq!(deep.status, 200, "{deep:?}");
    assert_eq!(deep.body["volume"]["source"]["parent"], id.as_str());

    // Unauthenticated: the upstream texts, 401, gRPC code 16.
    let basic = rest(1).raw(
        "GET",
        "/v1/volumes",
        &[("authorization", "Basic dXNlcjpwdw==")],
        "",
    );
    assert_eq!(basic.status, 401, "{basic:?}");
    assert_eq!(basic.code(), 16);
    assert_eq!(basic.message(), "Invalid or missing authentication token");
    let garbage = rest(1).raw(
        "GET",
        "/v1/volumes",
        &[("authorization", "bearer not-a-jwt")],
        "",
    );
    assert_eq!(garbage.status, 401, "{garbage:?}");
    assert_eq!(
        garbage.message(),
        "Unable to obtain token issuer from authorization token"
    );
    // Two Authorization headers are ambiguous: refused, never taken for a guest.
    let twice = rest(1).raw(
        "GET",
        "/v1/roles",
        &[
            ("authorization", &format!("bearer {admin}")),
            ("authorization", &format!("bearer {view}")),
        ],
        "",
    );
    assert_eq!(twice.status, 401, "{twice:?}");
    // No token at all is a guest, whom the role registry does not let list roles.
    let guest = rest(1).call("GET", "/v1/roles", None, Value::Null);
    assert_eq!(guest.status, 403, "{guest:?}");
    assert_eq!(
        guest.message(),
        "Access denied without authentication token"
    );

    // A view token may not create: 403, gRPC code 7, the upstream denial text.
    let denied = rest(2).call(
        "POST",
        "/v1/volumes",
        Some(&view),
        json!({"name": "nope", "spec": {"size": "1024"}}),
    );
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.code(), 7);
    assert_eq!(
        denied.message(),
        "Access to /openstorage.api.OpenStorageVolume/Create denied: rpc error: code = \
         PermissionDenied desc = Access denied to roles: [system.view]"
    );

    // Not found: 404, code 5.
    let missing = rest(3).call(
        "GET",
        "/v1/roles/inspect/no-such-role",
        Some(&admin),
        Value::Null,
    );
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.code(), 5);
    assert_eq!(missing.message(), "Role no-such-role not found");

    // Bad JSON, a body that is no object, an unknown field, a wrong type: 400, code 3.
    for bad in [
        "{not json",
        "[1, 2]",
        r#"{"name": "x", "no_such_field": 1}"#,
        r#"{"name": "x", "spec": {"size": "lots"}}"#,
    ] {
        let answer = rest(1).raw("POST", "/v1/volumes", &[("authorization", &auth)], bad);
        assert_eq!(answer.status, 400, "{bad}: {answer:?}");
        assert_eq!(answer.code(), 3, "{bad}");
        assert!(
            answer.message().starts_with("invalid request"),
            "{answer:?}"
        );
    }
    // Validation inside the service is the same as over gRPC.
    let no_name = rest(1).call(
        "POST",
        "/v1/volumes",
        Some(&user),
        json!({"spec": {"size": "1"}}),
    );
    assert_eq!(no_name.status, 400);
    assert_eq!(no_name.message(), "Must supply a unique name");

    // Roles: create over REST, then list and inspect.
    let role = json!({"role": {"name": "rest.reader", "rules": [{"services": ["volume"], "apis": ["inspect*"]}]}});
    let made = rest(2).call("POST", "/v1/roles", Some(&admin), role);
    assert_eq!(made.status, 200, "{made:?}");
    assert_eq!(made.body["role"]["name"], "rest.reader");
    let roles = rest(3).call("GET", "/v1/roles", Some(&admin), Value::Null);
    assert_eq!(roles.status, 200, "{roles:?}");
    let names = roles.body["names"].as_array().unwrap();
    for want in [
        "system.admin",
        "system.user",
        "system.view",
        "system.guest",
        "rest.reader",
    ] {
        assert!(
            names.contains(&json!(want)),
            "{want} missing from {names:?}"
        );
    }
    let inspected_role = rest(1).call(
        "GET",
        "/v1/roles/inspect/rest.reader",
        Some(&admin),
        Value::Null,
    );
    assert_eq!(
        inspected_role.body["role"]["rules"][0]["apis"],
        json!(["inspect*"])
    );

    // Unserved: 501 for SDK paths of other services and for VolumeCatalog.
    let pairs = rest(1).call("GET", "/v1/clusterpairs", Some(&admin), Value::Null);
    assert_eq!(pairs.status, 501, "{pairs:?}");
    assert_eq!(pairs.code(), 12);
    assert!(pairs.message().contains(NOT_SERVED), "{pairs:?}");
    let catalog = rest(1).call(
        "POST",
        "/v1/volume/catalog",
        Some(&admin),
        json!({"volume_id": id}),
    );
    assert_eq!(catalog.status, 501, "{catalog:?}");
    assert!(catalog
        .message()
        .contains("OpenStorageVolume.VolumeCatalog"));

    // The OpenAPI document lists every served route with its message schemas ...
    let doc = rest(2).call("GET", "/v1/openapi.json", None, Value::Null);
    assert_eq!(doc.status, 200);
    let doc = doc.body;
    let paths = doc["paths"].as_object().unwrap();
    // (The web console's routes are checked by tests/console.rs.)
    let console = [
        "/v1/custos/audit/records",
        "/v1/custos/audit/verify",
        "/v1/custos/audit/verify/members",
        "/v1/custos/cluster/status",
    ];
    let listed: usize = paths
        .iter()
        .filter(|(path, _)| !console.contains(&path.as_str()))
        .map(|(_, p)| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        listed,
        ROUTES.len(),
        "the document lists exactly the served routes"
    );
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        for key in ["x-request-message", "x-response-message"] {
            let schema = op[key].as_str().unwrap();
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "{method} {path}: no schema {schema}"
            );
        }
    }
    // ... and every one of them is really routed (none reaches the fallback).
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{node_id}", "1")
            .replace("{volume_id}", "rest-probe-missing")
            .replace("{name}", "rest-probe-missing");
        let answer = rest(1).call(method, &concrete, Some(&admin), json!({}));
        assert_ne!(answer.status, 405, "{method} {path}: {answer:?}");
        if answer.status != 200 {
            assert!(
                !answer.message().contains(NOT_SERVED),
                "{method} {path} is not routed: {answer:?}"
            );
        }
    }
}
