//! The golden commands of credentials.txt and alerts.txt (`Op::*Credential*`, `Op::RaiseAlerts`, `Op::DeleteAlerts`).
//!
//! - `create-credential <identity> req= id= name= type=s3|azure|google|nfs [bucket=]
//!   [access_key= endpoint= region= sse= disable_ssl] [account_name=] [project_id=] [server=
//!   sub_path= mount_opts= timeout=] [proxy] [iam] [storage_class=] [secrets=secret_key,...]
//!   [acl.*=]`: the secrets are stand-ins for what the edge seals (`sealed(key=k1, N bytes)`);
//! - `update-credential` (the same fields; `id=` is an id or a name), `delete-credential id=`,
//!   `delete-credential-references id=`;
//! - reads `credentials <identity>` (`State::readable_credentials`) and `inspect-credential
//!   <identity> id=` (`State::inspect_credential`);
//! - `raise-alerts <identity> req= alert=SEV;TYPE;RESOURCE;RESOURCE_ID;TAG;MESSAGE[;clear]...`;
//!   `delete-alerts <identity> req= [query=...]`; the read `alerts [query=...]`. A query is
//!   `rt:RES`, `at:RES:TYPE` or `id:RES:TYPE:RID`, then `,sev=S`, `,cleared=true|false`,
//!   `,time=START-END` (seconds), `,count=MIN-MAX`.

use super::{fmt_ownership, list, parse_acls, parse_identity, Args};
use custos_model::alert::{
    AlertOption, AlertQuery, AlertRaise, AlertSelector, ResourceKind, Severity,
};
use custos_model::state::{Record, State};
use custos_model::{Alert, Credential, CredentialId, CredentialKind, CredentialSpec, Op, Reply};
use custos_model::{SealedSecret, SecretField};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const VERBS: [&str; 6] = [
    "create-credential",
    "update-credential",
    "delete-credential",
    "delete-credential-references",
    "raise-alerts",
    "delete-alerts",
];

fn secret_field(s: &str) -> Result<SecretField, String> {
    Ok(match s {
        "secret_key" => SecretField::SecretKey,
        "account_key" => SecretField::AccountKey,
        "json_key" => SecretField::JsonKey,
        "encryption_key" => SecretField::EncryptionKey,
        other => return Err(format!("unknown secret field {other}")),
    })
}

fn spec(args: &mut Args) -> Result<CredentialSpec, String> {
    let s = |args: &mut Args, k: &str| args.take(k).unwrap_or_default();
    let kind = match args.required("type")?.as_str() {
        "s3" => CredentialKind::Aws {
            access_key: s(args, "access_key"),
            endpoint: s(args, "endpoint"),
            region: s(args, "region"),
            disable_ssl: args.flag("disable_ssl"),
            disable_path_style: args.flag("disable_path_style"),
            server_side_encryption: s(args, "sse"),
        },
        "azure" => CredentialKind::Azure {
            account_name: s(args, "account_name"),
        },
        "google" => CredentialKind::Google {
            project_id: s(args, "project_id"),
        },
        "nfs" => CredentialKind::Nfs {
            server: s(args, "server"),
            sub_path: s(args, "sub_path"),
            mount_opts: s(args, "mount_opts"),
            timeout_seconds: args.parsed("timeout", 0u32)?,
        },
        other => return Err(format!("unknown credential type {other}")),
    };
    Ok(CredentialSpec {
        name: s(args, "name"),
        bucket: s(args, "bucket"),
        use_proxy: args.flag("proxy"),
        iam_policy: args.flag("iam"),
        s3_storage_class: s(args, "storage_class"),
        kind,
    })
}

fn secrets(args: &mut Args) -> Result<BTreeMap<SecretField, SealedSecret>, String> {
    list(&args.take("secrets").unwrap_or_default())
        .iter()
        .map(|f| {
            Ok((
                secret_field(f)?,
                SealedSecret {
                    key_id: "k1".into(),
                    nonce: vec![0; 24],
                    ciphertext: format!("sealed {f}").into_bytes(),
                },
            ))
        })
        .collect()
}

fn severity(s: &str) -> Result<Severity, String> {
    Ok(match s {
        "none" => Severity::None,
        "alarm" => Severity::Alarm,
        "warning" => Severity::Warning,
        "notify" => Severity::Notify,
        other => return Err(format!("unknown severity {other}")),
    })
}

fn resource(s: &str) -> Result<ResourceKind, String> {
    Ok(match s {
        "none" => ResourceKind::None,
        "volume" => ResourceKind::Volume,
        "node" => ResourceKind::Node,
        "cluster" => ResourceKind::Cluster,
        "drive" => ResourceKind::Drive,
        "pool" => ResourceKind::Pool,
        other => return Err(format!("unknown resource {other}")),
    })
}

fn num<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what} {s}"))
}

fn span(s: &str) -> Result<(i64, i64), String> {
    let (a, b) = s.split_once('-').ok_or("a span is MIN-MAX")?;
    Ok((num("span", a)?, num("span", b)?))
}

fn query(s: &str) -> Result<AlertQuery, String> {
    let mut parts = s.split(',');
    let sel: Vec<&str> = parts.next().unwrap_or_default().split(':').collect();
    let selector = match sel[..] {
        ["none"] => None,
        ["rt", r] => Some(AlertSelector::ResourceType(resource(r)?)),
        ["at", r, t] => Some(AlertSelector::AlertType(resource(r)?, num("type", t)?)),
        ["id", r, t, id] => Some(AlertSelector::ResourceId(
            resource(r)?,
            num("type", t)?,
            id.to_string(),
        )),
        _ => return Err(format!("bad query selector in {s}")),
    };
    let options = parts
        .map(|o| {
            let (k, v) = o.split_once('=').ok_or("an option is key=value")?;
            Ok(match k {
                "sev" => AlertOption::MinSeverity(severity(v)?),
                "cleared" => AlertOption::Cleared(num("cleared", v)?),
                "time" => {
                    let (start_s, end_s) = span(v)?;
                    AlertOption::TimeSpan { start_s, end_s }
                }
                "count" => {
                    let (min, max) = span(v)?;
                    AlertOption::CountSpan { min, max }
                }
                other => return Err(format!("unknown option {other}")),
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(AlertQuery { selector, options })
}

fn raise(s: &str) -> Result<AlertRaise, String> {
    let parts: Vec<&str> = s.split(';').collect();
    let (clear, parts) = match parts.last() {
        Some(&"clear") => (true, &parts[..parts.len() - 1]),
        _ => (false, &parts[..]),
    };
    let [sev, t, r, rid, tag, message] = parts[..] else {
        return Err(format!(
            "alert={s}: want SEV;TYPE;RESOURCE;RID;TAG;MESSAGE[;clear]"
        ));
    };
    Ok(AlertRaise {
        severity: severity(sev)?,
        alert_type: num("type", t)?,
        resource: resource(r)?,
        resource_id: rid.to_string(),
        message: message.to_string(),
        unique_tag: tag.to_string(),
        clear,
    })
}

/// The operation of an apply verb of this module.
pub fn op(verb: &str, args: &mut Args) -> Result<Op, String> {
    Ok(match verb {
        "create-credential" => Op::CreateCredential {
            id: CredentialId(args.take("id").unwrap_or_default()),
            acls: parse_acls(args)?,
            secrets: secrets(args)?,
            spec: spec(args)?,
        },
        "update-credential" => {
            let id = args.take("id").unwrap_or_default();
            Op::UpdateCredential {
                sealed_for: CredentialId(args.take("sealed_for").unwrap_or_else(|| id.clone())),
                id,
                secrets: secrets(args)?,
                spec: spec(args)?,
            }
        }
        "delete-credential" => Op::DeleteCredential {
            id: args.take("id").unwrap_or_default(),
        },
        "delete-credential-references" => Op::DeleteCredentialReferences {
            id: args.take("id").unwrap_or_default(),
        },
        "raise-alerts" => Op::RaiseAlerts {
            alerts: args
                .take_all("alert")
                .iter()
                .map(|a| raise(a))
                .collect::<Result<_, _>>()?,
        },
        "delete-alerts" => Op::DeleteAlerts {
            queries: args
                .take_all("query")
                .iter()
                .map(|q| query(q))
                .collect::<Result<_, _>>()?,
        },
        _ => unreachable!("dispatched by VERBS"),
    })
}

/// The reads of this module, or `None` for another verb.
pub fn read(verb: &str, state: &State, args: &mut Args) -> Option<Result<String, String>> {
    let out = match verb {
        "credentials" => (|| {
            let who = parse_identity(args)?;
            let ids: Vec<String> = state
                .readable_credentials(&who)
                .map(|c| c.id.to_string())
                .collect();
            Ok(format!("[{}]", ids.join(",")))
        })(),
        "inspect-credential" => (|| {
            let who = parse_identity(args)?;
            let id = args.take("id").unwrap_or_default();
            Ok(match state.inspect_credential(&who, &id) {
                Ok(c) => fmt_credential(c),
                Err(r) => format!("refused: {r}"),
            })
        })(),
        "alerts" => (|| {
            let queries: Vec<AlertQuery> = args
                .take_all("query")
                .iter()
                .map(|q| query(q))
                .collect::<Result<_, _>>()?;
            let lines: Vec<String> = if queries.is_empty() {
                state.alerts().map(fmt_alert).collect()
            } else {
                state.matching_alerts(&queries).map(fmt_alert).collect()
            };
            Ok(if lines.is_empty() {
                "(none)".to_string()
            } else {
                lines.join("\n")
            })
        })(),
        _ => return None,
    };
    Some(out)
}

pub fn fmt_credential(c: &Credential) -> String {
    let mut s = format!("name={} type={}", c.spec.name, c.spec.kind.name());
    match &c.spec.kind {
        CredentialKind::Aws {
            access_key,
            endpoint,
            region,
            disable_ssl,
            disable_path_style,
            server_side_encryption,
        } => {
            let _ = write!(
                s,
                " access_key={access_key} endpoint={endpoint} region={region}"
            );
            if *disable_ssl {
                s.push_str(" disable_ssl");
            }
            if *disable_path_style {
                s.push_str(" disable_path_style");
            }
            if !server_side_encryption.is_empty() {
                let _ = write!(s, " sse={server_side_encryption}");
            }
        }
        CredentialKind::Azure { account_name } => {
            let _ = write!(s, " account_name={account_name}");
        }
        CredentialKind::Google { project_id } => {
            let _ = write!(s, " project_id={project_id}");
        }
        CredentialKind::Nfs {
            server,
            sub_path,
            mount_opts,
            timeout_seconds,
        } => {
            let _ = write!(
                s,
                " server={server} sub_path={sub_path} mount_opts={mount_opts} timeout={timeout_seconds}"
            );
        }
    }
    if !c.spec.bucket.is_empty() {
        let _ = write!(s, " bucket={}", c.spec.bucket);
    }
    if c.spec.use_proxy {
        s.push_str(" proxy");
    }
    if c.spec.iam_policy {
        s.push_str(" iam");
    }
    if !c.spec.s3_storage_class.is_empty() {
        let _ = write!(s, " storage_class={}", c.spec.s3_storage_class);
    }
    let _ = write!(s, " {}", fmt_ownership(c.ownership.as_ref()));
    let secrets: Vec<String> = c
        .secrets
        .iter()
        .map(|(f, v)| format!("{}={v:?}", f.name()))
        .collect();
    let _ = write!(
        s,
        " secrets=[{}] created={} updated={}",
        secrets.join(","),
        c.created_ms,
        c.updated_ms
    );
    s
}

pub fn fmt_alert(a: &Alert) -> String {
    let mut s = format!(
        "alert {} {:?} type={} {:?}/{} {:?} count={} at={} first={}",
        a.id,
        a.severity,
        a.alert_type,
        a.resource,
        a.resource_id,
        a.message,
        a.count,
        a.time_ms,
        a.first_seen_ms
    );
    if !a.unique_tag.is_empty() {
        let _ = write!(s, " tag={}", a.unique_tag);
    }
    if a.cleared {
        s.push_str(" cleared");
    }
    s
}

/// A reply of this module's operations, or `None`.
pub fn fmt_reply(r: &Reply) -> Option<String> {
    Some(match r {
        Reply::CredentialCreated { id } => format!("applied: credential {id}"),
        Reply::CredentialUpdated { id } => format!("applied: credential {id} updated"),
        Reply::CredentialDeleted { id } => format!("applied: credential {id} deleted"),
        Reply::AlertsRaised { ids } => format!("applied: alerts {ids:?}"),
        Reply::AlertsDeleted { ids } => format!("applied: deleted alerts {ids:?}"),
        _ => return None,
    })
}

/// A record of this module's kinds, or `None`.
pub fn fmt_record(key: &str, r: &Record) -> Option<String> {
    Some(match r {
        Record::Credential(c) => format!("{key}: {}", fmt_credential(c)),
        Record::Alert(a) => fmt_alert(a),
        Record::AlertNextId(n) => format!("{key}: next alert id {n}"),
        _ => return None,
    })
}
