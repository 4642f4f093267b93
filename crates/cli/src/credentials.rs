//! `custos credentials ...` and `custos alerts ...`: cloud credentials (secrets read from files, never from the command line) and alerts.

use crate::output::{invalid, table, Context};
use anyhow::Context as _;
use custos_client::credentials::{
    Alert, CredentialType, SdkAlertsQuery, SdkAwsCredentialRequest, SdkAzureCredentialRequest,
    SdkCredentialCreateRequest, SdkCredentialInspectResponse, SdkGoogleCredentialRequest,
    SdkNfsCredentialRequest,
};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CredentialsCommand {
    /// List the credential ids you may read.
    List,
    /// Show a credential (by id or name); secrets are never shown.
    Inspect { credential: String },
    /// Create a credential. Secrets are read from files (an argument would show in `ps`).
    Create(Box<CreateArgs>),
    /// Delete a credential (Admin access to it).
    Delete { credential: String },
    /// Check a credential's shape and that its secrets open with the member's data key.
    Validate { credential: String },
    /// Remove references to a credential (custos holds none; see docs/compatibility.md).
    DeleteReferences { credential: String },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// s3, azure, google or nfs.
    #[arg(long = "type")]
    kind: String,
    #[arg(long, default_value = "")]
    bucket: String,
    /// A file holding the backup encryption passphrase.
    #[arg(long)]
    encryption_key_file: Option<PathBuf>,
    /// s3: access key, endpoint, region; a file holding the secret key.
    #[arg(long, default_value = "")]
    access_key: String,
    /// The object store's endpoint (`--endpoint` names custos' own).
    #[arg(long = "s3-endpoint", default_value = "")]
    s3_endpoint: String,
    #[arg(long, default_value = "")]
    region: String,
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    /// azure: account name; a file holding the account key.
    #[arg(long, default_value = "")]
    account_name: String,
    #[arg(long)]
    account_key_file: Option<PathBuf>,
    /// google: project id; the JSON key file.
    #[arg(long, default_value = "")]
    project_id: String,
    #[arg(long)]
    json_key_file: Option<PathBuf>,
    /// nfs: server and sub path.
    #[arg(long, default_value = "")]
    server: String,
    #[arg(long, default_value = "")]
    sub_path: String,
}

#[derive(clap::Subcommand)]
pub enum AlertsCommand {
    /// List alerts (of every resource type unless filtered).
    List {
        #[command(flatten)]
        filter: AlertFilter,
    },
    /// Delete the alerts the filter matches (administrators).
    Delete {
        #[command(flatten)]
        filter: AlertFilter,
    },
}

#[derive(clap::Args)]
pub struct AlertFilter {
    /// volume, node, cluster, drive or pool (default: every type).
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long, requires = "resource_type")]
    alert_type: Option<i64>,
    #[arg(long, requires = "alert_type")]
    resource_id: Option<String>,
    /// alarm, warning or notify: that severe or more.
    #[arg(long)]
    min_severity: Option<String>,
    /// Only cleared (true) or uncleared (false) alerts.
    #[arg(long)]
    cleared: Option<bool>,
}

fn secret(path: &Option<PathBuf>) -> anyhow::Result<String> {
    match path {
        None => Ok(String::new()),
        Some(p) => Ok(std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string()),
    }
}

const RESOURCES: [&str; 6] = ["none", "volume", "node", "cluster", "drive", "pool"];
const SEVERITIES: [&str; 4] = ["none", "alarm", "warning", "notify"];

fn position(list: &[&str], value: &str, what: &str) -> anyhow::Result<i32> {
    list.iter()
        .position(|v| v.eq_ignore_ascii_case(value))
        .map(|p| p as i32)
        .ok_or_else(|| {
            invalid(format!(
                "unknown {what} {value}: one of {}",
                list.join(", ")
            ))
        })
}

impl AlertFilter {
    fn queries(&self) -> anyhow::Result<Vec<SdkAlertsQuery>> {
        use custos_proto_types::*;
        let mut opts = Vec::new();
        if let Some(s) = &self.min_severity {
            opts.push(SdkAlertsOption {
                opt: Some(sdk_alerts_option::Opt::MinSeverityType(position(
                    &SEVERITIES,
                    s,
                    "severity",
                )?)),
            });
        }
        if let Some(c) = self.cleared {
            opts.push(SdkAlertsOption {
                opt: Some(sdk_alerts_option::Opt::IsCleared(c)),
            });
        }
        let types: Vec<i32> = match &self.resource_type {
            Some(r) => vec![position(&RESOURCES, r, "resource type")?],
            None => (0..RESOURCES.len() as i32).collect(),
        };
        Ok(types
            .into_iter()
            .map(|resource_type| {
                let query = match (&self.alert_type, &self.resource_id) {
                    (Some(alert_type), Some(resource_id)) => {
                        sdk_alerts_query::Query::ResourceIdQuery(SdkAlertsResourceIdQuery {
                            resource_type,
                            alert_type: *alert_type,
                            resource_id: resource_id.clone(),
                        })
                    }
                    (Some(alert_type), None) => {
                        sdk_alerts_query::Query::AlertTypeQuery(SdkAlertsAlertTypeQuery {
                            resource_type,
                            alert_type: *alert_type,
                        })
                    }
                    _ => sdk_alerts_query::Query::ResourceTypeQuery(SdkAlertsResourceTypeQuery {
                        resource_type,
                    }),
                };
                SdkAlertsQuery {
                    query: Some(query),
                    opts: opts.clone(),
                }
            })
            .collect())
    }
}

/// The proto types the filters are built from, through the client's re-exports.
mod custos_proto_types {
    pub use custos_client::credentials::proto::{
        sdk_alerts_option, sdk_alerts_query, SdkAlertsAlertTypeQuery, SdkAlertsOption,
        SdkAlertsResourceIdQuery, SdkAlertsResourceTypeQuery,
    };
}

fn print_credential(c: &SdkCredentialInspectResponse, ctx: &Context) -> anyhow::Result<()> {
    ctx.emit(c, || {
        let owner = c.ownership.as_ref().map(|o| o.owner.as_str()).unwrap_or("");
        let mut rows = vec![
            vec!["id".into(), c.credential_id.clone()],
            vec!["name".into(), c.name.clone()],
            vec!["bucket".into(), c.bucket.clone()],
            vec!["owner".into(), owner.to_string()],
        ];
        let kind = match &c.credential_type {
            Some(t) => format!("{t:?}"),
            None => String::new(),
        };
        rows.push(vec!["type".into(), kind]);
        table(&["field", "value"], &rows);
    })
}

fn print_alerts(alerts: &[Alert], ctx: &Context) -> anyhow::Result<()> {
    ctx.emit(alerts, || {
        let rows: Vec<Vec<String>> = alerts
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    SEVERITIES
                        .get(a.severity as usize)
                        .unwrap_or(&"?")
                        .to_string(),
                    RESOURCES
                        .get(a.resource as usize)
                        .unwrap_or(&"?")
                        .to_string(),
                    a.resource_id.clone(),
                    a.alert_type.to_string(),
                    a.count.to_string(),
                    if a.cleared { "yes" } else { "no" }.to_string(),
                    a.message.clone(),
                ]
            })
            .collect();
        table(
            &[
                "id",
                "severity",
                "resource",
                "resource id",
                "type",
                "count",
                "cleared",
                "message",
            ],
            &rows,
        );
    })
}

pub async fn run(cmd: CredentialsCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        CredentialsCommand::List => {
            let ids = client.enumerate_credentials().await?;
            ctx.emit(&ids, || {
                for id in &ids {
                    println!("{id}");
                }
            })
        }
        CredentialsCommand::Inspect { credential } => {
            print_credential(&client.inspect_credential(&credential).await?, ctx)
        }
        CredentialsCommand::Create(args) => {
            let CreateArgs {
                name,
                kind,
                bucket,
                encryption_key_file,
                access_key,
                s3_endpoint,
                region,
                secret_key_file,
                account_name,
                account_key_file,
                project_id,
                json_key_file,
                server,
                sub_path,
            } = *args;
            let credential_type = match kind.as_str() {
                "s3" => CredentialType::AwsCredential(SdkAwsCredentialRequest {
                    access_key,
                    secret_key: secret(&secret_key_file)?,
                    endpoint: s3_endpoint,
                    region,
                    ..Default::default()
                }),
                "azure" => CredentialType::AzureCredential(SdkAzureCredentialRequest {
                    account_name,
                    account_key: secret(&account_key_file)?,
                }),
                "google" => CredentialType::GoogleCredential(SdkGoogleCredentialRequest {
                    project_id,
                    json_key: secret(&json_key_file)?,
                }),
                "nfs" => CredentialType::NfsCredential(SdkNfsCredentialRequest {
                    server,
                    sub_path,
                    ..Default::default()
                }),
                other => {
                    return Err(invalid(format!(
                        "unknown credential type {other}: s3, azure, google or nfs"
                    )))
                }
            };
            let req = SdkCredentialCreateRequest {
                name,
                bucket,
                encryption_key: secret(&encryption_key_file)?,
                credential_type: Some(credential_type),
                ..Default::default()
            };
            let id = client.create_credential(&req).await?;
            ctx.emit(&serde_json::json!({ "credential_id": id }), || {
                println!("{id}")
            })
        }
        CredentialsCommand::Delete { credential } => {
            client.delete_credential(&credential).await?;
            Ok(())
        }
        CredentialsCommand::Validate { credential } => {
            client.validate_credential(&credential).await?;
            println!("credential {credential} is well formed and its secrets open");
            Ok(())
        }
        CredentialsCommand::DeleteReferences { credential } => {
            client.delete_credential_references(&credential).await?;
            Ok(())
        }
    }
}

pub async fn run_alerts(cmd: AlertsCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        AlertsCommand::List { filter } => {
            let alerts = client.alerts(&filter.queries()?).await?;
            print_alerts(&alerts, ctx)
        }
        AlertsCommand::Delete { filter } => {
            client.delete_alerts(&filter.queries()?).await?;
            Ok(())
        }
    }
}
