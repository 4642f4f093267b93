//! The web console (issue #24): a read-only page served by the REST gateway at `/`, and the
//! custos REST routes it reads that the SDK does not have.
//!
//! The page is a small static bundle (`crates/server/console/`: HTML, CSS and plain JavaScript,
//! no framework, no build step), embedded in the binary and served with a self-only
//! Content-Security-Policy. It holds no authority of its own: the browser keeps the bearer token
//! in `sessionStorage` and sends it with every call, so everything the console shows is what the
//! token may read through the gateway.
//!
//! The routes under `/v1/custos/` call the same tonic service implementations the gRPC listener
//! serves (`custos.admin.v1`), with the HTTP headers as gRPC metadata, exactly as `rest.rs` does
//! for the SDK: authentication, authorization, freshness and auditing stay in one place. The
//! chain status of every member (`/v1/custos/audit/verify/members`) is gathered by the serving
//! member, which calls `Audit.Verify` on each member over gRPC with the caller's own token, as
//! `custos audit verify` does, since a browser may not call other origins.

use crate::admin::{AdminService, AuditService};
use crate::node::Node;
use crate::rest::{json_response, metadata, status_response, CALL_TIMEOUT};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use custos_proto::custos::admin::v1::audit_client::AuditClient;
use custos_proto::custos::admin::v1::audit_server::Audit;
use custos_proto::custos::admin::v1::cluster_admin_server::ClusterAdmin;
use custos_proto::custos::admin::v1::{
    AuditListRequest, AuditVerifyReply, AuditVerifyRequest, Member, StatusRequest,
};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// The policy every console asset is served with: scripts, styles, images and calls from this
/// origin only; no inline script or style, no plugins, no framing, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One file of the bundle.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The bundle, at the paths the page names.
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/app.css"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../console/favicon.svg"),
    },
];

/// One custos REST route, for the OpenAPI document.
pub struct CustosRoute {
    pub path: &'static str,
    /// The gRPC method it calls.
    pub rpc: &'static str,
    pub summary: &'static str,
    /// Full names of the request and response messages, with the leading dot as the gateway's
    /// other custos routes name them (the OpenAPI document names them without it); the response
    /// of the members' route is the gateway's own `AuditVerifyMembersReply`.
    pub request: &'static str,
    pub response: &'static str,
}

/// Where the routes are; all are GET, the request's fields in the query string.
pub const RECORDS_PATH: &str = "/v1/custos/audit/records";
pub const VERIFY_PATH: &str = "/v1/custos/audit/verify";
pub const VERIFY_MEMBERS_PATH: &str = "/v1/custos/audit/verify/members";
pub const STATUS_PATH: &str = "/v1/custos/cluster/status";

const LIST_RPC: &str = "/custos.admin.v1.Audit/List";
const VERIFY_RPC: &str = "/custos.admin.v1.Audit/Verify";
const STATUS_RPC: &str = "/custos.admin.v1.ClusterAdmin/Status";
const MEMBERS_REPLY: &str = "AuditVerifyMembersReply";

pub static ROUTES: &[CustosRoute] = &[
    CustosRoute {
        path: RECORDS_PATH,
        rpc: LIST_RPC,
        summary: "The replicated audit trail, one page at a time (query: filter.username, \
                  filter.method, filter.code, filter.object_id, filter.authorized, \
                  filter.from_time_ms, filter.to_time_ms, filter.from_seq, filter.to_seq, \
                  page_size, page_token, newest_first)",
        request: ".custos.admin.v1.AuditListRequest",
        response: ".custos.admin.v1.AuditListReply",
    },
    CustosRoute {
        path: VERIFY_PATH,
        rpc: VERIFY_RPC,
        summary: "This member's hash chain, checked from its verified checkpoint, or every \
                  kept record with full=true (query: through_seq, full)",
        request: ".custos.admin.v1.AuditVerifyRequest",
        response: ".custos.admin.v1.AuditVerifyReply",
    },
    CustosRoute {
        path: VERIFY_MEMBERS_PATH,
        rpc: VERIFY_RPC,
        summary: "Every member's hash chain, checked by that member with the caller's token, \
                  and whether they agree at the newest record all of them hold (query: full)",
        request: ".custos.admin.v1.AuditVerifyRequest",
        response: MEMBERS_REPLY,
    },
    CustosRoute {
        path: STATUS_PATH,
        rpc: STATUS_RPC,
        summary: "This member's view of the cluster: leader, term, log progress, members",
        request: ".custos.admin.v1.StatusRequest",
        response: ".custos.admin.v1.StatusReply",
    },
];

/// How long the serving member waits for another member's `Verify`.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(20);

struct Console {
    node: Arc<Node>,
    audit: AuditService,
    admin: AdminService,
}

/// The console's routes (the bundle and `/v1/custos/...`), to merge into the gateway's router.
pub fn router<S: Clone + Send + Sync + 'static>(node: Arc<Node>) -> Router<S> {
    let console = Arc::new(Console {
        audit: AuditService { node: node.clone() },
        admin: AdminService { node: node.clone() },
        node,
    });
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(asset.path, get(move || async move { serve_asset(asset) }));
    }
    router
        .route(RECORDS_PATH, get(records))
        .route(VERIFY_PATH, get(verify))
        .route(VERIFY_MEMBERS_PATH, get(verify_members))
        .route(STATUS_PATH, get(status))
        .with_state(console)
}

fn serve_asset(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Runs one call the way the gateway runs an SDK call: access-logged, bounded by the gateway's
/// call timeout, its reply as proto3 JSON or its status as grpc-gateway's error body.
async fn answer<T: serde::Serialize>(
    node: &Node,
    rpc: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Response {
    match run(node, rpc, call).await {
        Ok(reply) => match serde_json::to_value(&reply) {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(e) => status_response(&crate::status::internal(e)),
        },
        Err(status) => status_response(&status),
    }
}

async fn run<T>(
    node: &Node,
    rpc: &'static str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    crate::access::logged(node, rpc, async {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(reply) => reply,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{rpc} did not finish within {CALL_TIMEOUT:?}"
            ))),
        }
    })
    .await
}

fn request<T>(meta: &MetadataMap, message: T) -> tonic::Request<T> {
    tonic::Request::from_parts(meta.clone(), tonic::Extensions::default(), message)
}

/// The query string as the JSON of a request message: `a.b=v` pairs nest, `true`/`false` of
/// the named bool fields are bools, everything else text (proto3 JSON takes text for numbers).
/// A key given twice is refused, and unknown keys are refused by the message's decoder.
fn query_json(query: Option<&str>, bools: &[&str]) -> Result<Value, Status> {
    let mut object = Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (key, value) = (decode(key), decode(value));
        let value = if bools.contains(&key.as_str()) {
            match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                other => {
                    return Err(Status::invalid_argument(format!(
                        "invalid request: {key} must be true or false, not {other:?}"
                    )))
                }
            }
        } else {
            Value::String(value)
        };
        let mut target = &mut object;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        for part in parts {
            let next = target
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            target = next.as_object_mut().ok_or_else(|| {
                Status::invalid_argument(format!("invalid request: {part} is not a message"))
            })?;
        }
        if target.insert(last.to_string(), value).is_some() {
            return Err(Status::invalid_argument(format!(
                "invalid request: {key} is given twice"
            )));
        }
    }
    Ok(Value::Object(object))
}

fn from_query<T: serde::de::DeserializeOwned>(
    query: Option<&str>,
    bools: &[&str],
) -> Result<T, Status> {
    serde_json::from_value(query_json(query, bools)?)
        .map_err(|e| Status::invalid_argument(format!("invalid request: {e}")))
}

async fn records(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let meta = metadata(&headers);
    answer(&console.node, LIST_RPC, async {
        let message: AuditListRequest =
            from_query(query.as_deref(), &["newest_first", "filter.authorized"])?;
        Ok(console
            .audit
            .list(request(&meta, message))
            .await?
            .into_inner())
    })
    .await
}

async fn verify(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let meta = metadata(&headers);
    answer(&console.node, VERIFY_RPC, async {
        let message: AuditVerifyRequest = from_query(query.as_deref(), &["full"])?;
        Ok(console
            .audit
            .verify(request(&meta, message))
            .await?
            .into_inner())
    })
    .await
}

async fn status(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let meta = metadata(&headers);
    answer(&console.node, STATUS_RPC, async {
        Ok(console
            .admin
            .status(request(&meta, StatusRequest {}))
            .await?
            .into_inner())
    })
    .await
}

/// One member's answer in the members' route.
struct MemberVerify {
    member: Member,
    result: Result<AuditVerifyReply, String>,
    hash_at_common: Option<String>,
}

impl Console {
    /// `Audit.Verify` on `member`: in process for this node, over gRPC otherwise, with the
    /// caller's `authorization` (and consistency choice) carried over.
    async fn verify_on(
        &self,
        member: &Member,
        meta: &MetadataMap,
        through_seq: u64,
        full: bool,
    ) -> Result<AuditVerifyReply, Status> {
        let message = AuditVerifyRequest { through_seq, full };
        if member.id == self.node.id {
            let call = self.audit.verify(request(meta, message));
            return Ok(run(&self.node, VERIFY_RPC, call).await?.into_inner());
        }
        let sdk_tls = self.node.config.tls.as_ref().is_some_and(|t| t.sdk);
        let channel = if sdk_tls {
            // The member serves its SDK with the certificate that names it, from the cluster CA.
            self.node
                .tls
                .peer_client
                .channel(member.id, &member.sdk_addr)
                .ok_or_else(|| {
                    Status::unavailable(format!("no TLS channel to {}", member.sdk_addr))
                })?
        } else {
            tonic::transport::Endpoint::from_shared(format!("http://{}", member.sdk_addr))
                .map_err(|e| Status::invalid_argument(format!("{}: {e}", member.sdk_addr)))?
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy()
        };
        let mut call = tonic::Request::new(message);
        for key in ["authorization", crate::edge::CONSISTENCY_HEADER] {
            for value in meta.get_all(key) {
                call.metadata_mut().append(key, value.clone());
            }
        }
        call.set_timeout(MEMBER_TIMEOUT);
        let reply = tokio::time::timeout(MEMBER_TIMEOUT, AuditClient::new(channel).verify(call))
            .await
            .map_err(|_| Status::deadline_exceeded(format!("no answer in {MEMBER_TIMEOUT:?}")))?;
        Ok(reply?.into_inner())
    }
}

/// Every member's chain and whether they agree: each member checks its own chain; members a
/// few records apart are compared at the newest record all of them hold.
async fn verify_members(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let meta = metadata(&headers);
    let full = match from_query::<AuditVerifyRequest>(query.as_deref(), &["full"]) {
        Ok(req) => req.full,
        Err(status) => return status_response(&status),
    };
    let status = console.admin.status(request(&meta, StatusRequest {}));
    let members = match run(&console.node, STATUS_RPC, status).await {
        Ok(reply) => reply.into_inner().members,
        Err(status) => return status_response(&status),
    };
    let calls = members.iter().map(|m| console.verify_on(m, &meta, 0, full));
    let results = futures::future::join_all(calls).await;
    let mut answers = Vec::new();
    for (member, result) in members.into_iter().zip(results) {
        // A caller this member refuses is refused here too, rather than shown a table of refusals.
        if member.id == console.node.id {
            if let Err(status) = &result {
                return status_response(status);
            }
        }
        answers.push(MemberVerify {
            member,
            result: result.map_err(|s| s.message().to_string()),
            hash_at_common: None,
        });
    }
    let common = answers
        .iter()
        .filter_map(|a| a.result.as_ref().ok().map(|v| v.last_seq))
        .min()
        .unwrap_or(0);
    for a in &mut answers {
        let hash = match &a.result {
            Ok(v) if v.last_seq == common => Ok(v.last_hash.clone()),
            Ok(_) => console
                .verify_on(&a.member, &meta, common, false)
                .await
                .map(|v| v.through_hash)
                .map_err(|s| s.message().to_string()),
            Err(_) => continue,
        };
        match hash {
            Ok(h) => a.hash_at_common = Some(h),
            Err(e) => a.result = Err(format!("checking record {common}: {e}")),
        }
    }
    json_response(StatusCode::OK, &members_reply(&answers, common))
}

fn members_reply(answers: &[MemberVerify], common: u64) -> Value {
    let mut problems = Vec::new();
    let mut members = Vec::new();
    for a in answers {
        let id = a.member.id;
        let mut entry = json!({"node_id": id.to_string(), "sdk_addr": a.member.sdk_addr});
        match &a.result {
            Ok(v) => {
                if !v.ok {
                    problems.push(format!("node {id}: {}", v.error));
                }
                entry["verify"] = serde_json::to_value(v).unwrap_or(Value::Null);
            }
            Err(e) => {
                problems.push(format!("node {id} unreachable: {e}"));
                entry["error"] = json!(e);
            }
        }
        if let Some(h) = &a.hash_at_common {
            entry["hash_at_common"] = json!(h);
        }
        members.push(entry);
    }
    let hashes: Vec<(u64, &String)> = answers
        .iter()
        .filter_map(|a| a.hash_at_common.as_ref().map(|h| (a.member.id, h)))
        .collect();
    if hashes.iter().any(|(_, h)| *h != hashes[0].1) {
        let list: Vec<String> = hashes
            .iter()
            .map(|(id, h)| format!("node {id}: {h}"))
            .collect();
        problems.push(format!(
            "members disagree at record {common}: {}",
            list.join(", ")
        ));
    }
    json!({
        "ok": problems.is_empty(),
        "common_seq": common.to_string(),
        "members": members,
        "problems": problems,
    })
}

/// `doc` (the gateway's OpenAPI document) with the custos routes and their schemas added.
pub fn openapi(mut doc: Value) -> Value {
    let mut messages = Vec::new();
    for route in ROUTES {
        messages.push(route.request);
        if route.response != MEMBERS_REPLY {
            messages.push(route.response);
        }
        let (service, method) = route
            .rpc
            .trim_start_matches("/custos.admin.v1.")
            .split_once('/')
            .unwrap_or(("", route.rpc));
        let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{}", name.trim_start_matches('.')) });
        doc["paths"][route.path] = json!({ "get": {
            "operationId": format!("custos_{}", route.path.trim_start_matches("/v1/custos/").replace('/', "_")),
            "summary": route.summary,
            "tags": [service],
            "x-grpc-method": route.rpc,
            "x-grpc-service-method": method,
            "x-request-message": route.request.trim_start_matches('.'),
            "x-response-message": route.response.trim_start_matches('.'),
            "parameters": [{
                "name": "(fields)",
                "in": "query",
                "description": format!("fields of {} as query parameters (`a.b=v`)", route.request),
                "required": false,
                "schema": { "type": "string" },
            }],
            "responses": {
                "200": {
                    "description": route.response,
                    "content": { "application/json": { "schema": schema(route.response) } },
                },
                "default": {
                    "description": "an error, with the gRPC code and message",
                    "content": { "application/json": { "schema": schema("Error") } },
                },
            },
        }});
    }
    let schemas = custos_proto::json::openapi_schemas(&messages)
        .expect("every custos route names a message of custos.admin.v1");
    let target = &mut doc["components"]["schemas"];
    for (name, schema) in schemas {
        target[name] = schema;
    }
    target[MEMBERS_REPLY] = json!({
        "type": "object",
        "properties": {
            "ok": { "type": "boolean", "description": "every member verified and they agree" },
            "common_seq": { "type": "string", "format": "uint64", "description": "the newest record every answering member holds" },
            "members": { "type": "array", "items": {
                "type": "object",
                "properties": {
                    "node_id": { "type": "string", "format": "uint64" },
                    "sdk_addr": { "type": "string" },
                    "verify": { "$ref": "#/components/schemas/custos.admin.v1.AuditVerifyReply" },
                    "hash_at_common": { "type": "string", "description": "the member's hash of record common_seq" },
                    "error": { "type": "string", "description": "why the member did not answer" },
                },
            }},
            "problems": { "type": "array", "items": { "type": "string" } },
        },
    });
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_become_request_messages() {
        let q = "filter.username=view&filter.method=volume.create&filter.authorized=false\
                 &filter.from_time_ms=1700000000000&page_size=50&newest_first=true\
                 &page_token=42&filter.code=Permission%44enied";
        let r: AuditListRequest =
            from_query(Some(q), &["newest_first", "filter.authorized"]).unwrap();
        let f = r.filter.unwrap();
        assert_eq!(f.username, "view");
        assert_eq!(f.method, "volume.create");
        assert_eq!(f.code, "PermissionDenied");
        assert_eq!(f.authorized, Some(false));
        assert_eq!(f.from_time_ms, 1_700_000_000_000);
        assert_eq!((r.page_size, r.newest_first), (50, true));
        assert_eq!(r.page_token, "42");
        let none: AuditListRequest = from_query(None, &[]).unwrap();
        assert_eq!(none, AuditListRequest::default());
        for bad in [
            "nope=1",
            "filter.nope=1",
            "page_size=lots",
            "newest_first=yes",
            "filter.username=a&filter.username=b",
            "page_size=1&page_size.x=2",
        ] {
            let err = from_query::<AuditListRequest>(Some(bad), &["newest_first"]).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn members_agree_only_with_the_same_hash_at_the_common_record() {
        let member = |id: u64| Member {
            id,
            sdk_addr: format!("127.0.0.1:{id}"),
            ..Default::default()
        };
        let ok = |last_seq: u64| AuditVerifyReply {
            ok: true,
            last_seq,
            ..Default::default()
        };
        let one = |id, result: Result<AuditVerifyReply, String>, hash: Option<&str>| MemberVerify {
            member: member(id),
            result,
            hash_at_common: hash.map(str::to_string),
        };
        let same = [one(1, Ok(ok(5)), Some("aa")), one(2, Ok(ok(6)), Some("aa"))];
        let reply = members_reply(&same, 5);
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["common_seq"], "5");
        assert_eq!(reply["members"][1]["verify"]["last_seq"], "6");
        let differ = [one(1, Ok(ok(5)), Some("aa")), one(2, Ok(ok(5)), Some("ab"))];
        let reply = members_reply(&differ, 5);
        assert_eq!(reply["ok"], false);
        assert_eq!(
            reply["problems"],
            json!(["members disagree at record 5: node 1: aa, node 2: ab"])
        );
        let broken = AuditVerifyReply {
            ok: false,
            error: "record 3: its hash does not match its content".into(),
            ..ok(5)
        };
        let reply = members_reply(
            &[
                one(1, Ok(broken), Some("aa")),
                one(2, Err("connection refused".into()), None),
            ],
            5,
        );
        assert_eq!(
            reply["problems"],
            json!([
                "node 1: record 3: its hash does not match its content",
                "node 2 unreachable: connection refused"
            ])
        );
        assert_eq!(reply["members"][1]["error"], "connection refused");
    }

    #[test]
    fn the_openapi_document_gains_the_custos_routes() {
        let doc = openapi(crate::rest::openapi_document());
        for route in ROUTES {
            let op = &doc["paths"][route.path]["get"];
            assert_eq!(op["x-grpc-method"], route.rpc, "{}", route.path);
            for message in [route.request, route.response] {
                let name = message.trim_start_matches('.');
                assert!(doc["components"]["schemas"][name].is_object(), "{message}");
            }
        }
        // The SDK's own schemas are still there.
        assert!(doc["components"]["schemas"]["SdkVolumeCreateRequest"].is_object());
    }

    #[test]
    fn every_asset_is_named_by_the_page_and_the_page_has_no_inline_code() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in &ASSETS[1..] {
            assert!(page.contains(asset.path), "{} is not used", asset.path);
        }
        // The policy forbids inline script and style: the page must not rely on either.
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains("style=\""), "inline style attribute");
        assert!(!page.contains("<script>"), "inline script");
        // No event handler attributes (` onclick=`).
        let handler = page.match_indices(" on").any(|(i, _)| {
            let rest = &page[i + 3..];
            let name = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_lowercase())
                    .len();
            name > 0 && rest[name..].starts_with('=')
        });
        assert!(!handler, "inline event handler");
        assert!(!page.contains("http://") && !page.contains("https://"));
        let script = std::str::from_utf8(ASSETS[1].body).unwrap();
        // Only the session's storage holds the token.
        assert!(script.contains("sessionStorage.setItem"));
        assert!(!script.contains("localStorage.") && !script.contains("localStorage["));
        assert!(!script.contains("document.cookie"));
        assert!(!script.contains("innerHTML"), "text only, never markup");
    }
}
