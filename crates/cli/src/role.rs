//! `custos role ...`: roles in the upstream JSON format
//! (`{"name": "...", "rules": [{"services": [...], "apis": [...]}]}`), like `pxctl role`.

use crate::output::{invalid, table, Context};
use anyhow::Context as _;
use custos_client::model::Role;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum RoleCommand {
    /// List role names.
    List,
    /// Show a role (`inspect NAME` or `--name NAME`), or every role (`--all`).
    Inspect {
        #[arg(conflicts_with_all = ["name", "all"])]
        role: Option<String>,
        #[arg(long, conflicts_with = "all")]
        name: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Create a role from a JSON file.
    Create {
        #[arg(long)]
        role_config: PathBuf,
    },
    /// Replace a role's rules from a JSON file.
    Update {
        #[arg(long)]
        role_config: PathBuf,
    },
    /// Delete a role.
    Delete {
        #[arg(long)]
        name: String,
    },
}

/// Reads a role file; the error says what the file must look like.
fn read_role(path: &Path) -> anyhow::Result<Role> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{} is not a role: {e}; expected {{\"name\": \"NAME\", \"rules\": [{{\"services\": \
             [\"volume\"], \"apis\": [\"*\"]}}]}}",
            path.display()
        ))
    })
}

fn print_roles(roles: &[Role], ctx: &Context) -> anyhow::Result<()> {
    ctx.emit(roles, || print_roles_table(roles))
}

pub async fn run(cmd: RoleCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        RoleCommand::List => {
            let names = client.enumerate_roles().await?;
            ctx.emit(&names, || {
                let rows: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
                table(&["NAME"], &rows);
            })?;
        }
        RoleCommand::Inspect { role, name, all } => {
            let roles =
                match role.or(name) {
                    Some(n) => vec![client.inspect_role(&n).await?],
                    None if all => {
                        let mut roles = Vec::new();
                        for n in client.enumerate_roles().await? {
                            roles.push(client.inspect_role(&n).await?);
                        }
                        roles
                    }
                    None => return Err(invalid(
                        "name a role: custos role inspect NAME (or --all; see custos role list)",
                    )),
                };
            // One role prints as an object (the file format create and update read back).
            if roles.len() == 1 && !all {
                ctx.emit(&roles[0], || print_roles_table(&roles))?;
            } else {
                print_roles(&roles, ctx)?;
            }
        }
        RoleCommand::Create { role_config } => {
            let role = read_role(&role_config)?;
            let stored = client.create_role(&role).await?;
            ctx.emit(&stored, || ())?;
            eprintln!("role {} created", stored.name);
        }
        RoleCommand::Update { role_config } => {
            let role = read_role(&role_config)?;
            let stored = client.update_role(&role).await?;
            ctx.emit(&stored, || ())?;
            eprintln!("role {} updated", stored.name);
        }
        RoleCommand::Delete { name } => {
            client.delete_role(&name).await?;
            ctx.emit(&serde_json::json!({ "deleted": name }), || ())?;
            eprintln!("role {name} deleted");
        }
    }
    Ok(())
}

fn print_roles_table(roles: &[Role]) {
    let rows: Vec<Vec<String>> = roles
        .iter()
        .flat_map(|r| {
            r.rules.iter().enumerate().map(|(i, rule)| {
                vec![
                    if i == 0 {
                        r.name.clone()
                    } else {
                        String::new()
                    },
                    rule.services.join(","),
                    rule.apis.join(","),
                ]
            })
        })
        .collect();
    table(&["NAME", "SERVICES", "APIS"], &rows);
}
