//! Conversions of the credentials and alerts messages (`OpenStorageCredentials`, `OpenStorageAlerts`).
//!
//! A request's secret fields come out of [`credential_from_proto`] apart from the rest, as
//! borrowed plaintext, so the server can seal them before anything else sees them; an inspect
//! response is built from the stored credential and never carries a secret.

use super::{acls_from_proto, ownership_to_proto, timestamp};
use crate::openstorage::api;
use crate::openstorage::api::sdk_credential_create_request::CredentialType as ReqType;
use crate::openstorage::api::sdk_credential_inspect_response::CredentialType as RespType;
use custos_model::alert::{AlertOption, AlertQuery, AlertSelector, ResourceKind, Severity};
use custos_model::{
    Acls, Alert, Credential, CredentialKind, CredentialSpec, Rejection, SecretField,
};

/// A create (or update) request taken apart: the non-secret spec, the requested ACLs, and the
/// non-empty secret fields in clear (to be sealed at once).
pub struct CredentialRequest<'a> {
    pub spec: CredentialSpec,
    pub acls: Acls,
    pub secrets: Vec<(SecretField, &'a str)>,
}

/// Upstream's refusal of a request without a credential type.
pub const UNKNOWN_TYPE: &str = "Unknown credential type";

/// `SdkCredentialCreateRequest` (also the `update_req` of an update) as the domain sees it.
/// No credential type is upstream's "Unknown credential type" (InvalidArgument).
pub fn credential_from_proto<'a>(
    req: &'a api::SdkCredentialCreateRequest,
) -> Result<CredentialRequest<'a>, Rejection> {
    let mut secrets = Vec::new();
    let mut secret = |field, value: &'a str| {
        if !value.is_empty() {
            secrets.push((field, value));
        }
    };
    let kind = match &req.credential_type {
        Some(ReqType::AwsCredential(a)) => {
            secret(SecretField::SecretKey, a.secret_key.as_str());
            CredentialKind::Aws {
                access_key: a.access_key.clone(),
                endpoint: a.endpoint.clone(),
                region: a.region.clone(),
                disable_ssl: a.disable_ssl,
                disable_path_style: a.disable_path_style,
                server_side_encryption: a.server_side_encryption.clone(),
            }
        }
        Some(ReqType::AzureCredential(a)) => {
            secret(SecretField::AccountKey, a.account_key.as_str());
            CredentialKind::Azure {
                account_name: a.account_name.clone(),
            }
        }
        Some(ReqType::GoogleCredential(g)) => {
            secret(SecretField::JsonKey, g.json_key.as_str());
            CredentialKind::Google {
                project_id: g.project_id.clone(),
            }
        }
        Some(ReqType::NfsCredential(n)) => CredentialKind::Nfs {
            server: n.server.clone(),
            sub_path: n.sub_path.clone(),
            mount_opts: n.mount_opts.clone(),
            timeout_seconds: n.timeout_seconds,
        },
        None => return Err(Rejection::invalid(UNKNOWN_TYPE)),
    };
    secret(SecretField::EncryptionKey, req.encryption_key.as_str());
    Ok(CredentialRequest {
        spec: CredentialSpec {
            name: req.name.clone(),
            bucket: req.bucket.clone(),
            use_proxy: req.use_proxy,
            iam_policy: req.iam_policy,
            s3_storage_class: req.s3_storage_class.clone(),
            kind,
        },
        acls: acls_from_proto(req.ownership.as_ref()),
        secrets,
    })
}

/// `Credentials.Inspect`'s answer, as upstream builds it: the id as requested, the name,
/// bucket, ownership, proxy and IAM flags and the provider's non-secret fields (for S3 with an
/// IAM policy, no access key or endpoint). No secret, sealed or not.
pub fn credential_to_inspect(c: &Credential, requested: &str) -> api::SdkCredentialInspectResponse {
    let kind = match &c.spec.kind {
        CredentialKind::Aws {
            access_key,
            endpoint,
            region,
            disable_ssl,
            disable_path_style,
            server_side_encryption,
        } => RespType::AwsCredential(api::SdkAwsCredentialResponse {
            access_key: if c.spec.iam_policy {
                String::new()
            } else {
                access_key.clone()
            },
            endpoint: if c.spec.iam_policy {
                String::new()
            } else {
                endpoint.clone()
            },
            region: region.clone(),
            disable_ssl: *disable_ssl,
            disable_path_style: *disable_path_style,
            s3_storage_class: c.spec.s3_storage_class.clone(),
            server_side_encryption: server_side_encryption.clone(),
        }),
        CredentialKind::Azure { account_name } => {
            RespType::AzureCredential(api::SdkAzureCredentialResponse {
                account_name: account_name.clone(),
            })
        }
        CredentialKind::Google { project_id } => {
            RespType::GoogleCredential(api::SdkGoogleCredentialResponse {
                project_id: project_id.clone(),
            })
        }
        CredentialKind::Nfs {
            server,
            sub_path,
            mount_opts,
            timeout_seconds,
        } => RespType::NfsCredential(api::SdkNfsCredentialResponse {
            server: server.clone(),
            sub_path: sub_path.clone(),
            mount_opts: mount_opts.clone(),
            timeout_seconds: *timeout_seconds,
        }),
    };
    api::SdkCredentialInspectResponse {
        credential_id: requested.to_string(),
        name: c.spec.name.clone(),
        bucket: c.spec.bucket.clone(),
        ownership: c.ownership.as_ref().map(ownership_to_proto),
        use_proxy: c.spec.use_proxy,
        iam_policy: c.spec.iam_policy,
        credential_type: Some(kind),
    }
}

fn severity_from_wire(v: i32) -> Severity {
    Severity::from_number(v)
}

fn resource_from_wire(v: i32) -> ResourceKind {
    ResourceKind::from_number(v)
}

/// `SdkAlertsQuery` list as domain queries (a query without a selector matches nothing, as
/// upstream ignores it; an option without a value is dropped).
pub fn alert_queries_from_proto(queries: &[api::SdkAlertsQuery]) -> Vec<AlertQuery> {
    use api::sdk_alerts_option::Opt;
    use api::sdk_alerts_query::Query;
    queries
        .iter()
        .map(|q| AlertQuery {
            selector: q.query.as_ref().map(|s| match s {
                Query::ResourceTypeQuery(r) => {
                    AlertSelector::ResourceType(resource_from_wire(r.resource_type))
                }
                Query::AlertTypeQuery(a) => {
                    AlertSelector::AlertType(resource_from_wire(a.resource_type), a.alert_type)
                }
                Query::ResourceIdQuery(r) => AlertSelector::ResourceId(
                    resource_from_wire(r.resource_type),
                    r.alert_type,
                    r.resource_id.clone(),
                ),
            }),
            options: q
                .opts
                .iter()
                .filter_map(|o| {
                    Some(match o.opt.as_ref()? {
                        Opt::MinSeverityType(s) => AlertOption::MinSeverity(severity_from_wire(*s)),
                        Opt::IsCleared(c) => AlertOption::Cleared(*c),
                        Opt::TimeSpan(t) => AlertOption::TimeSpan {
                            start_s: t.start_time.as_ref().map_or(0, |t| t.seconds),
                            end_s: t.end_time.as_ref().map_or(0, |t| t.seconds),
                        },
                        Opt::CountSpan(c) => AlertOption::CountSpan {
                            min: c.min_count,
                            max: c.max_count,
                        },
                    })
                })
                .collect(),
        })
        .collect()
}

pub fn alert_to_proto(a: &Alert) -> api::Alert {
    api::Alert {
        id: a.id as i64,
        severity: a.severity.number(),
        alert_type: a.alert_type,
        message: a.message.clone(),
        timestamp: Some(timestamp(a.time_ms)),
        resource_id: a.resource_id.clone(),
        resource: a.resource.number(),
        cleared: a.cleared,
        ttl: a.ttl,
        unique_tag: a.unique_tag.clone(),
        count: a.count,
        first_seen: Some(timestamp(a.first_seen_ms)),
    }
}
