//! The REST gateway: the SDK methods custos serves over HTTP/JSON at the routes of upstream's
//! grpc-gateway (the `google.api.http` annotations of SDK 0.101.39), with the same answers.
//!
//! A handler turns the JSON body, path and query into the prost request message, carries the
//! `Authorization` header (and `x-request-id`, `x-custos-consistency`, `grpc-timeout` and
//! `Grpc-Metadata-*` headers) over as gRPC metadata, and calls the very tonic service
//! implementation the gRPC listener serves. Authentication, authorization, request ids and
//! auditing therefore happen in one place; this module only translates. A `tonic::Status` becomes
//! the HTTP status grpc-gateway gives its code, with grpc-gateway v1's JSON error body.

use crate::node::Node;
use crate::sdk::{AlertsService, CredentialsService};
use crate::sdk::{
    ClusterService, IdentityService, MountAttachService, NodeService, RoleService,
    SchedulePolicyService, StoragePolicyService, VolumeService,
};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use custos_proto::openstorage::api::open_storage_alerts_server::OpenStorageAlerts;
use custos_proto::openstorage::api::open_storage_cluster_server::OpenStorageCluster;
use custos_proto::openstorage::api::open_storage_credentials_server::OpenStorageCredentials;
use custos_proto::openstorage::api::open_storage_identity_server::OpenStorageIdentity;
use custos_proto::openstorage::api::open_storage_mount_attach_server::OpenStorageMountAttach;
use custos_proto::openstorage::api::open_storage_node_server::OpenStorageNode;
use custos_proto::openstorage::api::open_storage_policy_server::OpenStoragePolicy;
use custos_proto::openstorage::api::open_storage_role_server::OpenStorageRole;
use custos_proto::openstorage::api::open_storage_schedule_policy_server::OpenStorageSchedulePolicy;
use custos_proto::openstorage::api::open_storage_volume_server::OpenStorageVolume;
use custos_proto::openstorage::api::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// Where the OpenAPI document of the gateway is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// Largest request body accepted (the gRPC listener's message limit).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// How long one call may take, as on the gRPC listener.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP headers carried over as gRPC metadata under the same name. `Grpc-Metadata-<key>`
/// headers are carried over as `<key>`, as grpc-gateway does.
const FORWARDED_HEADERS: &[&str] = &[
    "authorization",
    crate::edge::REQUEST_ID_HEADER,
    crate::edge::CONSISTENCY_HEADER,
    "grpc-timeout",
];

/// The SDK service implementations the gateway calls: the same types the gRPC listener serves.
pub struct Services {
    volume: VolumeService,
    role: RoleService,
    schedule_policy: SchedulePolicyService,
    storage_policy: StoragePolicyService,
    identity: IdentityService,
    cluster: ClusterService,
    node: NodeService,
    mount: MountAttachService,
    access: crate::admin::AccessService,
    auth: crate::admin::AuthService,
    quotas: crate::admin::QuotasService,
    credentials: crate::sdk::CredentialsService,
    alerts: crate::sdk::AlertsService,
}

impl Services {
    pub fn new(node: Arc<Node>) -> Services {
        Services {
            volume: VolumeService { node: node.clone() },
            role: RoleService { node: node.clone() },
            schedule_policy: SchedulePolicyService { node: node.clone() },
            storage_policy: StoragePolicyService { node: node.clone() },
            identity: IdentityService { node: node.clone() },
            cluster: ClusterService { node: node.clone() },
            node: NodeService { node: node.clone() },
            mount: MountAttachService { node: node.clone() },
            access: crate::admin::AccessService { node: node.clone() },
            auth: crate::admin::AuthService { node: node.clone() },
            credentials: crate::sdk::CredentialsService { node: node.clone() },
            alerts: crate::sdk::AlertsService { node: node.clone() },
            quotas: crate::admin::QuotasService { node },
        }
    }
}

type Reply = Pin<Box<dyn Future<Output = Result<Value, Status>> + Send>>;
type Call = fn(Arc<Services>, MetadataMap, Value) -> Reply;

/// One REST route and the SDK method behind it.
pub struct Route {
    /// HTTP method: `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Path template with `{field}` parameters, as in the `google.api.http` annotation.
    pub path: &'static str,
    /// Full gRPC method name, `/openstorage.api.OpenStorageVolume/Create`.
    pub rpc: &'static str,
    /// Request message (in `openstorage.api`).
    pub request: &'static str,
    /// Response message (in `openstorage.api`).
    pub response: &'static str,
    call: Call,
}

impl Route {
    /// POST and PUT take the whole request message as the body (`body: "*"`); GET and DELETE
    /// take fields from the path and the query string.
    pub fn has_body(&self) -> bool {
        matches!(self.method, "POST" | "PUT")
    }

    /// The `{field}` parameters of the path.
    pub fn path_params(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Status> {
    serde_json::from_value(value)
        .map_err(|e| Status::invalid_argument(format!("invalid request: {e}")))
}

fn encode<T: serde::Serialize>(reply: &T) -> Result<Value, Status> {
    serde_json::to_value(reply).map_err(crate::status::internal)
}

/// `route!("POST" "/v1/volumes", volume: VolumeService as OpenStorageVolume::create "Create",
/// SdkVolumeCreateRequest -> SdkVolumeCreateResponse)`.
macro_rules! route {
    ($method:literal $path:literal, $field:ident: $service:ident as $trait:ident :: $fn:ident $name:literal,
     $req:ident -> $resp:ident) => {
        Route {
            method: $method,
            path: $path,
            rpc: concat!("/openstorage.api.", stringify!($trait), "/", $name),
            request: stringify!($req),
            response: stringify!($resp),
            call: |services, meta, body| {
                Box::pin(async move {
                    let message: $req = decode(body)?;
                    let request =
                        tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                    let reply: $resp = <$service as $trait>::$fn(&services.$field, request)
                        .await?
                        .into_inner();
                    encode(&reply)
                })
            },
        }
    };
}

/// Every route the gateway serves, in the order of `docs/compatibility.md`.
pub static ROUTES: &[Route] = &[
    route!("GET" "/v1/identities/capabilities", identity: IdentityService as OpenStorageIdentity::capabilities "Capabilities",
        SdkIdentityCapabilitiesRequest -> SdkIdentityCapabilitiesResponse),
    route!("GET" "/v1/identities/version", identity: IdentityService as OpenStorageIdentity::version "Version",
        SdkIdentityVersionRequest -> SdkIdentityVersionResponse),
    route!("GET" "/v1/clusters/inspectcurrent", cluster: ClusterService as OpenStorageCluster::inspect_current "InspectCurrent",
        SdkClusterInspectCurrentRequest -> SdkClusterInspectCurrentResponse),
    route!("GET" "/v1/nodes/inspect/{node_id}", node: NodeService as OpenStorageNode::inspect "Inspect",
        SdkNodeInspectRequest -> SdkNodeInspectResponse),
    route!("GET" "/v1/nodes/inspectcurrent", node: NodeService as OpenStorageNode::inspect_current "InspectCurrent",
        SdkNodeInspectCurrentRequest -> SdkNodeInspectCurrentResponse),
    route!("GET" "/v1/nodes", node: NodeService as OpenStorageNode::enumerate "Enumerate",
        SdkNodeEnumerateRequest -> SdkNodeEnumerateResponse),
    route!("GET" "/v1/nodes/filters", node: NodeService as OpenStorageNode::enumerate_with_filters "EnumerateWithFilters",
        SdkNodeEnumerateWithFiltersRequest -> SdkNodeEnumerateWithFiltersResponse),
    route!("GET" "/v1/nodes/usage/{node_id}", node: NodeService as OpenStorageNode::volume_usage_by_node "VolumeUsageByNode",
        SdkNodeVolumeUsageByNodeRequest -> SdkNodeVolumeUsageByNodeResponse),
    route!("PUT" "/v1/nodes/attachments/drain/{node_id}", node: NodeService as OpenStorageNode::drain_attachments "DrainAttachments",
        SdkNodeDrainAttachmentsRequest -> SdkJobResponse),
    route!("PUT" "/v1/nodes/attachments/disable/{node_id}", node: NodeService as OpenStorageNode::cordon_attachments "CordonAttachments",
        SdkNodeCordonAttachmentsRequest -> SdkNodeCordonAttachmentsResponse),
    route!("PUT" "/v1/nodes/attachments/enable/{node_id}", node: NodeService as OpenStorageNode::uncordon_attachments "UncordonAttachments",
        SdkNodeUncordonAttachmentsRequest -> SdkNodeUncordonAttachmentsResponse),
    route!("POST" "/v1/volumes", volume: VolumeService as OpenStorageVolume::create "Create",
        SdkVolumeCreateRequest -> SdkVolumeCreateResponse),
    route!("POST" "/v1/volumes/clone", volume: VolumeService as OpenStorageVolume::clone "Clone",
        SdkVolumeCloneRequest -> SdkVolumeCloneResponse),
    route!("DELETE" "/v1/volumes/{volume_id}", volume: VolumeService as OpenStorageVolume::delete "Delete",
        SdkVolumeDeleteRequest -> SdkVolumeDeleteResponse),
    route!("GET" "/v1/volumes/inspect/{volume_id}", volume: VolumeService as OpenStorageVolume::inspect "Inspect",
        SdkVolumeInspectRequest -> SdkVolumeInspectResponse),
    route!("POST" "/v1/volumes/inspectwithfilters", volume: VolumeService as OpenStorageVolume::inspect_with_filters "InspectWithFilters",
        SdkVolumeInspectWithFiltersRequest -> SdkVolumeInspectWithFiltersResponse),
    route!("PUT" "/v1/volumes/{volume_id}", volume: VolumeService as OpenStorageVolume::update "Update",
        SdkVolumeUpdateRequest -> SdkVolumeUpdateResponse),
    route!("GET" "/v1/volumes/stats/{volume_id}", volume: VolumeService as OpenStorageVolume::stats "Stats",
        SdkVolumeStatsRequest -> SdkVolumeStatsResponse),
    route!("GET" "/v1/volumes/usage/{volume_id}", volume: VolumeService as OpenStorageVolume::capacity_usage "CapacityUsage",
        SdkVolumeCapacityUsageRequest -> SdkVolumeCapacityUsageResponse),
    route!("GET" "/v1/volumes", volume: VolumeService as OpenStorageVolume::enumerate "Enumerate",
        SdkVolumeEnumerateRequest -> SdkVolumeEnumerateResponse),
    route!("POST" "/v1/volumes/filters", volume: VolumeService as OpenStorageVolume::enumerate_with_filters "EnumerateWithFilters",
        SdkVolumeEnumerateWithFiltersRequest -> SdkVolumeEnumerateWithFiltersResponse),
    route!("POST" "/v1/volumes/snapshots", volume: VolumeService as OpenStorageVolume::snapshot_create "SnapshotCreate",
        SdkVolumeSnapshotCreateRequest -> SdkVolumeSnapshotCreateResponse),
    route!("POST" "/v1/volumes/snapshots/restore", volume: VolumeService as OpenStorageVolume::snapshot_restore "SnapshotRestore",
        SdkVolumeSnapshotRestoreRequest -> SdkVolumeSnapshotRestoreResponse),
    route!("GET" "/v1/volumes/snapshots", volume: VolumeService as OpenStorageVolume::snapshot_enumerate "SnapshotEnumerate",
        SdkVolumeSnapshotEnumerateRequest -> SdkVolumeSnapshotEnumerateResponse),
    route!("POST" "/v1/volumes/snapshots/filters/{volume_id}", volume: VolumeService as OpenStorageVolume::snapshot_enumerate_with_filters "SnapshotEnumerateWithFilters",
        SdkVolumeSnapshotEnumerateWithFiltersRequest -> SdkVolumeSnapshotEnumerateWithFiltersResponse),
    route!("POST" "/v1/volumes/snapshot/schedules/{volume_id}", volume: VolumeService as OpenStorageVolume::snapshot_schedule_update "SnapshotScheduleUpdate",
        SdkVolumeSnapshotScheduleUpdateRequest -> SdkVolumeSnapshotScheduleUpdateResponse),
    // Answers 501 through the gRPC service's UNIMPLEMENTED (docs/compatibility.md says why).
    route!("POST" "/v1/volume/catalog", volume: VolumeService as OpenStorageVolume::volume_catalog "VolumeCatalog",
        SdkVolumeCatalogRequest -> SdkVolumeCatalogResponse),
    route!("POST" "/v1/mountattach/attach", mount: MountAttachService as OpenStorageMountAttach::attach "Attach",
        SdkVolumeAttachRequest -> SdkVolumeAttachResponse),
    route!("POST" "/v1/mountattach/detach", mount: MountAttachService as OpenStorageMountAttach::detach "Detach",
        SdkVolumeDetachRequest -> SdkVolumeDetachResponse),
    route!("POST" "/v1/mountattach/mount", mount: MountAttachService as OpenStorageMountAttach::mount "Mount",
        SdkVolumeMountRequest -> SdkVolumeMountResponse),
    route!("POST" "/v1/mountattach/unmount", mount: MountAttachService as OpenStorageMountAttach::unmount "Unmount",
        SdkVolumeUnmountRequest -> SdkVolumeUnmountResponse),
    route!("POST" "/v1/roles", role: RoleService as OpenStorageRole::create "Create",
        SdkRoleCreateRequest -> SdkRoleCreateResponse),
    route!("GET" "/v1/roles", role: RoleService as OpenStorageRole::enumerate "Enumerate",
        SdkRoleEnumerateRequest -> SdkRoleEnumerateResponse),
    route!("GET" "/v1/roles/inspect/{name}", role: RoleService as OpenStorageRole::inspect "Inspect",
        SdkRoleInspectRequest -> SdkRoleInspectResponse),
    route!("DELETE" "/v1/roles/{name}", role: RoleService as OpenStorageRole::delete "Delete",
        SdkRoleDeleteRequest -> SdkRoleDeleteResponse),
    route!("PUT" "/v1/roles", role: RoleService as OpenStorageRole::update "Update",
        SdkRoleUpdateRequest -> SdkRoleUpdateResponse),
    route!("POST" "/v1/schedulepolicies", schedule_policy: SchedulePolicyService as OpenStorageSchedulePolicy::create "Create",
        SdkSchedulePolicyCreateRequest -> SdkSchedulePolicyCreateResponse),
    route!("PUT" "/v1/schedulepolicies", schedule_policy: SchedulePolicyService as OpenStorageSchedulePolicy::update "Update",
        SdkSchedulePolicyUpdateRequest -> SdkSchedulePolicyUpdateResponse),
    route!("GET" "/v1/schedulepolicies", schedule_policy: SchedulePolicyService as OpenStorageSchedulePolicy::enumerate "Enumerate",
        SdkSchedulePolicyEnumerateRequest -> SdkSchedulePolicyEnumerateResponse),
    route!("GET" "/v1/schedulepolicies/inspect/{name}", schedule_policy: SchedulePolicyService as OpenStorageSchedulePolicy::inspect "Inspect",
        SdkSchedulePolicyInspectRequest -> SdkSchedulePolicyInspectResponse),
    route!("DELETE" "/v1/schedulepolicies/{name}", schedule_policy: SchedulePolicyService as OpenStorageSchedulePolicy::delete "Delete",
        SdkSchedulePolicyDeleteRequest -> SdkSchedulePolicyDeleteResponse),
    route!("POST" "/v1/storagepolicies", storage_policy: StoragePolicyService as OpenStoragePolicy::create "Create",
        SdkOpenStoragePolicyCreateRequest -> SdkOpenStoragePolicyCreateResponse),
    route!("GET" "/v1/storagepolicies", storage_policy: StoragePolicyService as OpenStoragePolicy::enumerate "Enumerate",
        SdkOpenStoragePolicyEnumerateRequest -> SdkOpenStoragePolicyEnumerateResponse),
    route!("GET" "/v1/storagepolicies/inspect/{name}", storage_policy: StoragePolicyService as OpenStoragePolicy::inspect "Inspect",
        SdkOpenStoragePolicyInspectRequest -> SdkOpenStoragePolicyInspectResponse),
    route!("PUT" "/v1/storagepolicies", storage_policy: StoragePolicyService as OpenStoragePolicy::update "Update",
        SdkOpenStoragePolicyUpdateRequest -> SdkOpenStoragePolicyUpdateResponse),
    route!("DELETE" "/v1/storagepolicies/{name}", storage_policy: StoragePolicyService as OpenStoragePolicy::delete "Delete",
        SdkOpenStoragePolicyDeleteRequest -> SdkOpenStoragePolicyDeleteResponse),
    route!("POST" "/v1/storagepolicies/default/{name}", storage_policy: StoragePolicyService as OpenStoragePolicy::set_default "SetDefault",
        SdkOpenStoragePolicySetDefaultRequest -> SdkOpenStoragePolicySetDefaultResponse),
    route!("GET" "/v1/storagepolicies/default", storage_policy: StoragePolicyService as OpenStoragePolicy::default_inspect "DefaultInspect",
        SdkOpenStoragePolicyDefaultInspectRequest -> SdkOpenStoragePolicyDefaultInspectResponse),
    route!("POST" "/v1/storagepolicies/release", storage_policy: StoragePolicyService as OpenStoragePolicy::release "Release",
        SdkOpenStoragePolicyReleaseRequest -> SdkOpenStoragePolicyReleaseResponse),
    route!("POST" "/v1/credentials", credentials: CredentialsService as OpenStorageCredentials::create "Create",
        SdkCredentialCreateRequest -> SdkCredentialCreateResponse),
    route!("PUT" "/v1/credentials/{credential_id}", credentials: CredentialsService as OpenStorageCredentials::update "Update",
        SdkCredentialUpdateRequest -> SdkCredentialUpdateResponse),
    route!("GET" "/v1/credentials", credentials: CredentialsService as OpenStorageCredentials::enumerate "Enumerate",
        SdkCredentialEnumerateRequest -> SdkCredentialEnumerateResponse),
    route!("GET" "/v1/credentials/inspect/{credential_id}", credentials: CredentialsService as OpenStorageCredentials::inspect "Inspect",
        SdkCredentialInspectRequest -> SdkCredentialInspectResponse),
    route!("DELETE" "/v1/credentials/{credential_id}", credentials: CredentialsService as OpenStorageCredentials::delete "Delete",
        SdkCredentialDeleteRequest -> SdkCredentialDeleteResponse),
    route!("GET" "/v1/credentials/validate/{credential_id}", credentials: CredentialsService as OpenStorageCredentials::validate "Validate",
        SdkCredentialValidateRequest -> SdkCredentialValidateResponse),
    route!("DELETE" "/v1/credentials/references/{credential_id}", credentials: CredentialsService as OpenStorageCredentials::delete_references "DeleteReferences",
        SdkCredentialDeleteReferencesRequest -> SdkCredentialDeleteReferencesResponse),
    // A server stream: grpc-gateway writes one `{"result": ...}` line per message; custos
    // answers the alerts of every message in one `{"result": ...}` (docs/compatibility.md).
    Route {
        method: "POST",
        path: "/v1/alerts/filters",
        rpc: "/openstorage.api.OpenStorageAlerts/EnumerateWithFilters",
        request: "SdkAlertsEnumerateWithFiltersRequest",
        response: "SdkAlertsEnumerateWithFiltersResponse",
        call: |services, meta, body| {
            Box::pin(async move {
                let message: SdkAlertsEnumerateWithFiltersRequest = decode(body)?;
                let chunks = services.alerts.enumerate_chunks(&meta, &message).await?;
                let all = SdkAlertsEnumerateWithFiltersResponse {
                    alerts: chunks.into_iter().flat_map(|c| c.alerts).collect(),
                };
                Ok(serde_json::json!({ "result": encode(&all)? }))
            })
        },
    },
    route!("POST" "/v1/alerts", alerts: AlertsService as OpenStorageAlerts::delete "Delete",
        SdkAlertsDeleteRequest -> SdkAlertsDeleteResponse),
];

/// custos' own routes (not upstream's): `Access.Explain`, `Auth.Revoke`,
/// `Auth.ListRevocations` and the `Quotas` methods. Their messages are named fully qualified
/// (`.custos.admin.v1.ExplainRequest`) in the OpenAPI document.
pub static CUSTOS_ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/custos/access/explain",
        rpc: crate::admin::EXPLAIN_METHOD,
        request: ".custos.admin.v1.ExplainRequest",
        response: ".custos.admin.v1.ExplainReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::access_server::Access;
                use custos_proto::custos::admin::v1::{ExplainReply, ExplainRequest};
                let message: ExplainRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: ExplainReply = services.access.explain(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "POST",
        path: "/v1/custos/auth/revoke",
        rpc: crate::admin::REVOKE_METHOD,
        request: ".custos.admin.v1.RevokeRequest",
        response: ".custos.admin.v1.RevokeReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::auth_server::Auth;
                use custos_proto::custos::admin::v1::{RevokeReply, RevokeRequest};
                let message: RevokeRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: RevokeReply = services.auth.revoke(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "GET",
        path: "/v1/custos/auth/revocations",
        rpc: crate::admin::LIST_REVOCATIONS_METHOD,
        request: ".custos.admin.v1.ListRevocationsRequest",
        response: ".custos.admin.v1.ListRevocationsReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::auth_server::Auth;
                use custos_proto::custos::admin::v1::{
                    ListRevocationsReply, ListRevocationsRequest,
                };
                let message: ListRevocationsRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: ListRevocationsReply =
                    services.auth.list_revocations(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "POST",
        path: "/v1/custos/quotas",
        rpc: crate::admin::SET_QUOTA_METHOD,
        request: ".custos.admin.v1.SetQuotaRequest",
        response: ".custos.admin.v1.SetQuotaReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::quotas_server::Quotas;
                use custos_proto::custos::admin::v1::{SetQuotaReply, SetQuotaRequest};
                let message: SetQuotaRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: SetQuotaReply = services.quotas.set(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "POST",
        path: "/v1/custos/quotas/remove",
        rpc: crate::admin::REMOVE_QUOTA_METHOD,
        request: ".custos.admin.v1.RemoveQuotaRequest",
        response: ".custos.admin.v1.RemoveQuotaReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::quotas_server::Quotas;
                use custos_proto::custos::admin::v1::{RemoveQuotaReply, RemoveQuotaRequest};
                let message: RemoveQuotaRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: RemoveQuotaReply = services.quotas.remove(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "GET",
        path: "/v1/custos/quotas",
        rpc: crate::admin::LIST_QUOTAS_METHOD,
        request: ".custos.admin.v1.ListQuotasRequest",
        response: ".custos.admin.v1.ListQuotasReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::quotas_server::Quotas;
                use custos_proto::custos::admin::v1::{ListQuotasReply, ListQuotasRequest};
                let message: ListQuotasRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: ListQuotasReply = services.quotas.list(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
    Route {
        method: "GET",
        path: "/v1/custos/quotas/usage",
        rpc: crate::admin::QUOTA_USAGE_METHOD,
        request: ".custos.admin.v1.QuotaUsageRequest",
        response: ".custos.admin.v1.QuotaUsageReply",
        call: |services, meta, body| {
            Box::pin(async move {
                use custos_proto::custos::admin::v1::quotas_server::Quotas;
                use custos_proto::custos::admin::v1::{QuotaUsageReply, QuotaUsageRequest};
                let message: QuotaUsageRequest = decode(body)?;
                let request =
                    tonic::Request::from_parts(meta, tonic::Extensions::default(), message);
                let reply: QuotaUsageReply = services.quotas.usage(request).await?.into_inner();
                encode(&reply)
            })
        },
    },
];

/// Every route: upstream's, then custos' own.
fn all_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().chain(CUSTOS_ROUTES)
}

/// The HTTP status grpc-gateway gives a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A JSON response with grpc-gateway v1's error body.
fn error_response(http: StatusCode, code: Code, message: &str) -> Response {
    let body = json!({
        "error": message,
        "code": code as i32,
        "message": message,
        "details": [],
    });
    json_response(http, &body)
}

pub(crate) fn status_response(status: &Status) -> Response {
    error_response(http_status(status.code()), status.code(), status.message())
}

/// The HTTP headers a call carries over as gRPC metadata.
pub(crate) fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut meta = MetadataMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let key = match name.strip_prefix("grpc-metadata-") {
            Some(key) => key,
            None if FORWARDED_HEADERS.contains(&name) => name,
            None => continue,
        };
        // Binary (`-bin`) keys and bytes metadata cannot hold are left out; a header value is
        // always a valid metadata value, so `authorization` is never dropped here (an
        // unreadable one is refused by the edge as malformed, never taken for a guest).
        let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        meta.append(key, value);
    }
    meta
}

/// Sets `path` (dotted, `a.b`) in `object` to `value`; a repeated query key collects an array.
fn set_field(object: &mut Map<String, Value>, path: &str, value: Value, append: bool) {
    let mut target = object;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            match target.get_mut(part) {
                Some(Value::Array(items)) if append => items.push(value),
                Some(existing) if append => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                _ => {
                    target.insert(part.to_string(), value);
                }
            }
            return;
        }
        let next = target
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        target = next.as_object_mut().expect("just made an object");
    }
}

fn percent_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// The request message as JSON: the body (POST, PUT) or the query string (GET, DELETE), with
/// the path parameters on top, as grpc-gateway fills a request.
fn request_json(
    route: &Route,
    params: &[(&str, &str)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Value, Status> {
    let mut object = Map::new();
    if route.has_body() && !body.iter().all(u8::is_ascii_whitespace) {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => object = o,
            Ok(_) => {
                return Err(Status::invalid_argument(format!(
                    "invalid request: the body must be a JSON object ({})",
                    route.request
                )))
            }
            Err(e) => {
                return Err(Status::invalid_argument(format!(
                    "invalid request: the body is not JSON: {e}"
                )))
            }
        }
    }
    if !route.has_body() {
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (percent_decode(key), percent_decode(value));
            // Query values are text; proto3 JSON takes text for every scalar but bool.
            let value = match value.as_str() {
                "true" | "false" if custos_proto::json::is_bool_field(route.request, &key) => {
                    Value::Bool(value == "true")
                }
                _ => Value::String(value),
            };
            set_field(&mut object, &key, value, true);
        }
    }
    for (name, value) in params {
        set_field(&mut object, name, Value::String(value.to_string()), false);
    }
    Ok(Value::Object(object))
}

struct Gateway {
    services: Arc<Services>,
    openapi: Value,
}

async fn handle(
    gateway: Arc<Gateway>,
    route: &'static Route,
    params: RawPathParams,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The same access log and local audit lines as a gRPC call (the gRPC layer does not see
    // these calls).
    let node = gateway.services.volume.node.clone();
    let result = crate::access::logged(&node, route.rpc, async {
        let params: Vec<(&str, &str)> = params.iter().collect();
        let request = request_json(route, &params, query.as_deref(), &body)?;
        let call = (route.call)(gateway.services.clone(), metadata(&headers), request);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(reply) => reply,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{} did not finish within {CALL_TIMEOUT:?}",
                route.rpc
            ))),
        }
    })
    .await;
    match result {
        Ok(reply) => {
            tracing::debug!(rpc = route.rpc, "rest: ok");
            json_response(StatusCode::OK, &reply)
        }
        Err(status) => {
            tracing::debug!(rpc = route.rpc, code = ?status.code(), "rest: refused");
            status_response(&status)
        }
    }
}

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("no route uses {other}"),
    }
}

/// Paths of the SDK that custos does not serve, and any other path under `/v1/`: 501.
async fn not_served(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/v1/") {
        error_response(
            StatusCode::NOT_IMPLEMENTED,
            Code::Unimplemented,
            &format!(
                "custos does not serve {method} {path} over REST: GET {OPENAPI_PATH} lists the \
                 routes it serves (see docs/compatibility.md)"
            ),
        )
    } else {
        error_response(StatusCode::NOT_FOUND, Code::NotFound, "Not Found")
    }
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        &format!(
            "{method} is not a method of {}: GET {OPENAPI_PATH} lists the routes custos serves",
            uri.path()
        ),
    )
}

/// The OpenAPI 3 document of [`ROUTES`]: one operation per route, with the request and response
/// message schemas derived from the descriptor set.
pub fn openapi_document() -> Value {
    let mut paths = Map::new();
    let mut messages = Vec::new();
    for route in all_routes() {
        messages.extend([route.request, route.response]);
        let (service, method) = route
            .rpc
            .trim_start_matches("/openstorage.api.")
            .trim_start_matches("/custos.admin.v1.")
            .split_once('/')
            .unwrap_or(("", route.rpc));
        let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{}", name.trim_start_matches('.')) });
        let mut parameters: Vec<Value> = route
            .path_params()
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let mut operation = json!({
            "operationId": format!("{service}_{method}"),
            "summary": route.rpc,
            "tags": [service],
            "x-grpc-method": route.rpc,
            "x-request-message": route.request.trim_start_matches('.'),
            "x-response-message": route.response.trim_start_matches('.'),
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
        });
        if route.has_body() {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema(route.request) } },
            });
        } else {
            parameters.push(json!({
                "name": "(fields)",
                "in": "query",
                "description": format!("other fields of {} as query parameters (`a.b=v`)", route.request),
                "required": false,
                "schema": { "type": "string" },
            }));
        }
        operation["parameters"] = Value::Array(parameters);
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    let mut schemas = custos_proto::json::openapi_schemas(&messages)
        .expect("every route names a message of openstorage.api");
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": {
                "error": { "type": "string" },
                "code": { "type": "integer", "format": "int32", "description": "gRPC status code" },
                "message": { "type": "string" },
                "details": { "type": "array", "items": { "type": "object" } },
            },
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "custos OpenStorage SDK REST gateway",
            "version": format!("{}.{}.{}", crate::sdk::SDK_VERSION.0, crate::sdk::SDK_VERSION.1, crate::sdk::SDK_VERSION.2),
            "description": "The SDK methods custos serves, at the routes of upstream's grpc-gateway. \
                            Send `Authorization: bearer <jwt>`; no header means guest.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
        },
        "security": [{ "bearer": [] }, {}],
    })
}

/// The gateway's router over `node`'s SDK services.
pub fn router(node: Arc<Node>) -> Router {
    let console = crate::console::router(node.clone());
    let gateway = Arc::new(Gateway {
        services: Arc::new(Services::new(node)),
        openapi: crate::console::openapi(openapi_document()),
    });
    let mut by_path: BTreeMap<&'static str, MethodRouter<Arc<Gateway>>> = BTreeMap::new();
    for route in all_routes() {
        let handler =
            move |State(gateway): State<Arc<Gateway>>,
                  params: RawPathParams,
                  RawQuery(query): RawQuery,
                  headers: HeaderMap,
                  body: Bytes| { handle(gateway, route, params, query, headers, body) };
        let methods = by_path.remove(route.path).unwrap_or_default();
        by_path.insert(route.path, methods.on(method_filter(route.method), handler));
    }
    let mut router = Router::new().merge(console).route(
        OPENAPI_PATH,
        axum::routing::get(|State(gateway): State<Arc<Gateway>>| async move {
            json_response(StatusCode::OK, &gateway.openapi)
        }),
    );
    for (path, methods) in by_path {
        router = router.route(path, methods);
    }
    router
        .fallback(not_served)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(gateway)
}

/// Serves the gateway on a bound listener (over TLS when `tls` is set) until `shutdown`
/// resolves; calls in flight then finish. Connections are bounded as `[limits]` says.
pub async fn serve(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<crate::tls::ReloadableServer>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let limits = crate::tls::AcceptLimits::new(
        crate::tls::Listener::Rest,
        &node.config.limits,
        node.metrics.connections_refused.clone(),
    );
    let served = match tls {
        Some(tls) => {
            let incoming = crate::tls::AxumIncoming {
                addr,
                accepted: crate::tls::accept_tls(listener, tls, limits),
            };
            axum::serve(incoming, router(node))
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            let incoming = crate::tls::AxumIncoming {
                addr,
                accepted: crate::tls::accept_plain(listener, limits),
            };
            axum::serve(incoming, router(node))
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| anyhow::anyhow!("REST gateway on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_unique_and_name_real_methods() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(r.path.starts_with("/v1/"), "{}", r.path);
        }
        // Every served SDK method has its route: 58 methods of ten services.
        assert_eq!(ROUTES.len(), 58);
        // The schemas exist for every message named (openapi_document panics otherwise).
        let doc = openapi_document();
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_ascii_lowercase()];
            assert_eq!(op["x-grpc-method"], r.rpc, "{} {}", r.method, r.path);
            assert!(doc["components"]["schemas"][r.request].is_object());
            assert!(doc["components"]["schemas"][r.response].is_object());
        }
    }

    #[test]
    fn grpc_gateway_status_mapping() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(Code::Unimplemented),
            StatusCode::NOT_IMPLEMENTED
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(Code::DeadlineExceeded),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            http_status(Code::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn only_the_named_headers_become_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "bearer abc".parse().unwrap());
        headers.append("authorization", "bearer def".parse().unwrap());
        headers.insert("x-request-id", "r-1".parse().unwrap());
        headers.insert("grpc-metadata-x-trace", "t".parse().unwrap());
        headers.insert("cookie", "secret=1".parse().unwrap());
        headers.insert("host", "localhost".parse().unwrap());
        let meta = metadata(&headers);
        // Both values stay, so the edge refuses the ambiguous pair as it does on gRPC.
        assert_eq!(meta.get_all("authorization").iter().count(), 2);
        assert_eq!(meta.get("x-request-id").unwrap(), "r-1");
        assert_eq!(meta.get("x-trace").unwrap(), "t");
        assert!(meta.get("cookie").is_none());
        assert!(meta.get("host").is_none());
    }

    fn route(method: &str, path: &str) -> &'static Route {
        ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap()
    }

    #[test]
    fn requests_take_body_query_and_path_as_grpc_gateway_does() {
        // GET: the query string fills fields, the path parameter wins over it.
        let inspect = route("GET", "/v1/volumes/inspect/{volume_id}");
        let value = request_json(
            inspect,
            &[("volume_id", "from-path")],
            Some("volume_id=from-query&options.deep=true"),
            b"ignored",
        )
        .unwrap();
        assert_eq!(
            value,
            json!({"volume_id": "from-path", "options": {"deep": true}})
        );
        let message: SdkVolumeInspectRequest = decode(value).unwrap();
        assert_eq!(message.options.map(|o| o.deep), Some(true));
        // PUT: the body is the message, the path parameter fills its field, the query is unused.
        let update = route("PUT", "/v1/volumes/{volume_id}");
        let value = request_json(
            update,
            &[("volume_id", "v1")],
            Some("labels=x"),
            br#"{"volume_id": "other", "labels": {"a": "b"}}"#,
        )
        .unwrap();
        assert_eq!(value, json!({"volume_id": "v1", "labels": {"a": "b"}}));
        // An empty body is an empty message; anything but a JSON object is INVALID_ARGUMENT.
        let create = route("POST", "/v1/volumes");
        assert_eq!(request_json(create, &[], None, b" \n").unwrap(), json!({}));
        for bad in [&b"{"[..], b"[]", b"\"x\"", b"null"] {
            let err = request_json(create, &[], None, bad).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument);
        }
        // The message decodes from the JSON, or the call is INVALID_ARGUMENT.
        let message: SdkVolumeInspectRequest = decode(json!({"volume_id": "v"})).unwrap();
        assert_eq!(message.volume_id, "v");
        let err = decode::<SdkVolumeInspectRequest>(json!({"volume_id": 5})).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn query_fields_nest_and_repeat() {
        let mut o = Map::new();
        set_field(&mut o, "volume_id", json!("v"), true);
        set_field(&mut o, "options.deep", json!("x"), true);
        set_field(&mut o, "ids", json!("a"), true);
        set_field(&mut o, "ids", json!("b"), true);
        set_field(&mut o, "volume_id", json!("path"), false);
        assert_eq!(
            Value::Object(o),
            json!({"volume_id": "path", "options": {"deep": "x"}, "ids": ["a", "b"]})
        );
        assert_eq!(percent_decode("a%2Fb+c"), "a/b c");
    }
}
