//! The web console's side of the REST gateway against a real cluster: the static bundle at `/`
//! with its security headers, and the custos routes the console reads (`/v1/custos/...`: the
//! audit trail with its filters, this member's and every member's chain, the cluster status)
//! with the same authentication and authorization as over gRPC.

use custos_cluster_tests::TestCluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
    }
}

fn call(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.header("authorization", format!("bearer {t}"));
    }
    let response = match body {
        Some(b) => agent.run(
            request
                .header("content-type", "application/json")
                .body(b.to_string())
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.body_mut().read_to_string().unwrap(),
    }
}

fn get(addr: &str, path: &str, token: Option<&str>) -> Answer {
    call(addr, "GET", path, token, None)
}

#[test]
fn console_bundle_and_custos_routes() {
    let mut cluster = TestCluster::start(3).unwrap();
    let (admin, user, view) = (
        cluster.token("admin"),
        cluster.token("user"),
        cluster.token("view"),
    );
    let addrs: Vec<String> = (1..=3).map(|id| cluster.node(id).rest.clone()).collect();
    assert!(
        addrs.iter().all(|a| a.starts_with("127.0.0.1:")),
        "{addrs:?}"
    );
    let rest = |id: u64| addrs[id as usize - 1].clone();

    // The bundle: the page and its assets, each with its type and the security headers; no
    // token needed to load the page (it holds no data).
    for (path, kind, marker) in [
        ("/", "text/html; charset=utf-8", "/console/app.js"),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
        ("/console/app.css", "text/css; charset=utf-8", "--accent"),
        ("/console/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let a = get(&rest(2), path, None);
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(a.header("content-type"), kind, "{path}");
        assert!(a.text.contains(marker), "{path}: {}", a.text);
        let csp = a.header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert_eq!(a.header("cache-control"), "no-store");
        assert_eq!(a.header("x-frame-options"), "DENY");
    }
    // Other paths are not the console: the gateway's JSON 404 and 501 as before.
    let missing = get(&rest(1), "/console/nope.js", None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "Not Found");
    assert_eq!(
        call(&rest(1), "POST", "/", None, Some(json!({}))).status,
        405
    );

    // A refused create (system.view) and an allowed one, over REST on different members.
    let refused = call(
        &rest(1),
        "POST",
        "/v1/volumes",
        Some(&view),
        Some(json!({"name": "console-nope", "spec": {"size": "1024"}})),
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    let made = call(
        &rest(3),
        "POST",
        "/v1/volumes",
        Some(&user),
        Some(json!({"name": "console-vol", "spec": {"size": "1048576", "ha_level": "2"}})),
    );
    assert_eq!(made.status, 200, "{}", made.text);
    let volume_id = made.json()["volume_id"].as_str().unwrap().to_string();

    // The trail on another member: refusals of `view`, newest first, as proto3 JSON. An edge
    // refusal reaches the trail in the next denial batch: wait (bounded) for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = get(
            &rest(2),
            "/v1/custos/audit/records?filter.username=view&filter.authorized=false&newest_first=true",
            Some(&admin),
        );
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        if page.get("records").is_some() || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let records = page["records"]
        .as_array()
        .expect("the refusal in the trail");
    let denial = records
        .iter()
        .find(|r| r["method"] == "volume.create")
        .unwrap_or_else(|| panic!("no refused create in {page}"));
    assert_eq!(denial["message"], "Access denied");
    assert_eq!(denial["code"], "PermissionDenied");
    assert_eq!(
        denial.get("authorized"),
        None,
        "false is left out: {denial}"
    );
    assert!(records.iter().all(|r| r["username"] == "view"));
    let last_seq: u64 = page["last_seq"].as_str().unwrap().parse().unwrap();
    // Allowed only: the user's create, and no refusal.
    let allowed = get(
        &rest(1),
        "/v1/custos/audit/records?filter.authorized=true&filter.method=volume.create",
        Some(&admin),
    )
    .json();
    let allowed = allowed["records"].as_array().unwrap();
    assert!(allowed
        .iter()
        .any(|r| r["objects"].as_array().unwrap().contains(&json!(volume_id))));
    assert!(
        allowed.iter().all(|r| r["authorized"] == true),
        "{allowed:?}"
    );
    // A sequence window and a page size: exactly the records asked for, oldest first, with a
    // token for the next page.
    let window = get(
        &rest(3),
        &format!(
            "/v1/custos/audit/records?filter.from_seq={}&filter.to_seq={last_seq}&page_size=1",
            last_seq - 1
        ),
        Some(&admin),
    )
    .json();
    assert_eq!(window["records"][0]["seq"], (last_seq - 1).to_string());
    assert_eq!(window["records"].as_array().unwrap().len(), 1);
    let next = window["next_page_token"].as_str().unwrap();
    let rest_of_it = get(
        &rest(3),
        &format!(
            "/v1/custos/audit/records?filter.from_seq={}&filter.to_seq={last_seq}&page_token={next}",
            last_seq - 1
        ),
        Some(&admin),
    )
    .json();
    assert_eq!(rest_of_it["records"][0]["seq"], last_seq.to_string());
    // A time window in the future holds nothing.
    let later = get(
        &rest(1),
        "/v1/custos/audit/records?filter.from_time_ms=99999999999999",
        Some(&admin),
    )
    .json();
    assert_eq!(later.get("records"), None, "{later}");

    // The same authorization as over gRPC: the trail is not for system.view or guests, and
    // refusing them is the upstream text with grpc-gateway's status.
    let no = get(&rest(1), "/v1/custos/audit/records", Some(&view));
    assert_eq!(no.status, 403, "{}", no.text);
    assert!(
        no.json()["message"]
            .as_str()
            .unwrap()
            .contains("/custos.admin.v1.Audit/List denied"),
        "{}",
        no.text
    );
    assert_eq!(get(&rest(1), "/v1/custos/audit/records", None).status, 403);
    assert_eq!(
        get(&rest(1), "/v1/custos/audit/records", Some("not-a-jwt")).status,
        401
    );
    // Bad queries are INVALID_ARGUMENT (400, code 3).
    for bad in [
        "?nope=1",
        "?page_size=lots",
        "?newest_first=maybe",
        "?filter.username=a&filter.username=b",
    ] {
        let a = get(
            &rest(1),
            &format!("/v1/custos/audit/records{bad}"),
            Some(&admin),
        );
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
        assert_eq!(a.json()["code"], 3, "{bad}");
    }

    // This member's chain.
    let mine = get(&rest(2), "/v1/custos/audit/verify", Some(&admin));
    assert_eq!(mine.status, 200, "{}", mine.text);
    let mine = mine.json();
    assert_eq!(mine["ok"], true, "{mine}");
    assert_eq!(mine["node_id"], "2");
    assert_eq!(mine["through_hash"], mine["last_hash"]);
    let at = get(
        &rest(2),
        &format!("/v1/custos/audit/verify?through_seq={}", last_seq - 1),
        Some(&admin),
    )
    .json();
    assert_eq!(at["through_seq"], (last_seq - 1).to_string());
    assert_eq!(
        get(&rest(2), "/v1/custos/audit/verify", Some(&view)).status,
        403
    );

    // Every member's chain, gathered by the serving member with the caller's token: all three
    // verify and agree.
    let all = get(&rest(3), "/v1/custos/audit/verify/members", Some(&admin));
    assert_eq!(all.status, 200, "{}", all.text);
    let all = all.json();
    assert_eq!(all["ok"], true, "{all}");
    assert_eq!(all["problems"], json!([]));
    let members = all["members"].as_array().unwrap();
    let ids: Vec<&str> = members
        .iter()
        .map(|m| m["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    for m in members {
        assert_eq!(m["verify"]["ok"], true, "{m}");
        assert_eq!(
            m["verify"]["node_id"], m["node_id"],
            "each answered for itself"
        );
        assert_eq!(m["hash_at_common"], members[0]["hash_at_common"]);
        assert!(m["hash_at_common"].as_str().unwrap().len() == 64, "{m}");
    }
    let common: u64 = all["common_seq"].as_str().unwrap().parse().unwrap();
    assert!(common >= last_seq, "{all}");
    // A caller the serving member refuses is refused, not shown a table of refusals.
    let refused_all = get(&rest(3), "/v1/custos/audit/verify/members", Some(&view));
    assert_eq!(refused_all.status, 403, "{}", refused_all.text);

    // A member that is down is reported, and the answer is not ok.
    cluster.kill9(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let down = loop {
        let a = get(&rest(2), "/v1/custos/audit/verify/members", Some(&admin));
        if a.status == 200 || Instant::now() > deadline {
            break a;
        }
        // No quorum check here: the two members left still form one; wait for a leader.
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(down.status, 200, "{}", down.text);
    let down = down.json();
    assert_eq!(down["ok"], false, "{down}");
    let problems = down["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("node 1 unreachable")),
        "{down}"
    );
    assert!(down["members"][0]["error"].is_string(), "{down}");
    assert_eq!(down["members"][1]["verify"]["ok"], true, "{down}");

    // The cluster status as the serving member sees it (system.view may read it).
    let status = get(&rest(2), "/v1/custos/cluster/status", Some(&view));
    assert_eq!(status.status, 200, "{}", status.text);
    let status = status.json();
    assert_eq!(status["node_id"], "2");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    assert!(status["cluster_id"].is_string());

    // The OpenAPI document lists the custos routes with their schemas.
    let doc = get(&rest(2), "/v1/openapi.json", None).json();
    for (path, rpc) in [
        ("/v1/custos/audit/records", "/custos.admin.v1.Audit/List"),
        ("/v1/custos/audit/verify", "/custos.admin.v1.Audit/Verify"),
        (
            "/v1/custos/audit/verify/members",
            "/custos.admin.v1.Audit/Verify",
        ),
        (
            "/v1/custos/cluster/status",
            "/custos.admin.v1.ClusterAdmin/Status",
        ),
    ] {
        let op = &doc["paths"][path]["get"];
        assert_eq!(op["x-grpc-method"], rpc, "{path}");
        let reply = op["x-response-message"].as_str().unwrap();
        let name = reply.trim_start_matches('.');
        assert!(doc["components"]["schemas"][name].is_object(), "{reply}");
    }
}
