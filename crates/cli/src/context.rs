//! `custos context ...`: named connection settings (endpoints, a token file and the CA to trust),
//! like `pxctl context`, kept in `$CUSTOS_CONFIG_DIR/contexts.json` (else
//! `~/.config/custos/contexts.json`), mode 0600. The token file's path is stored, never the token;
//! the CA file's path likewise.

use crate::output::{invalid, not_found, table, Context};
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum ContextCommand {
    /// Create (or replace) a context: `custos context create prod --endpoint a:9100,b:9100
    /// --token-file ~/.custos/prod.jwt --ca ~/.custos/prod-ca.pem`. The endpoints and the CA
    /// come from the global `--endpoint` and `--ca` flags (not from the environment); with a CA
    /// the context connects over TLS.
    Create {
        name: String,
        /// A file holding the bearer token; its path is stored, and it is read at each use.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// List contexts; `*` marks the current one.
    List,
    /// Make a context the current one.
    Set { name: String },
    /// Leave no context current (commands use flags, environment or the default endpoint).
    Unset,
    /// Delete a context.
    Delete { name: String },
}

/// One stored context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// The CA (PEM) the servers' certificates chain to: the context connects over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The whole contexts file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Stored>,
}

/// A context chosen for a command.
pub struct Selected {
    pub name: String,
    pub endpoints: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// `$CUSTOS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/custos`, else `~/.config/custos`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("CUSTOS_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("custos"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config").join("custos")),
        None => bail!("neither CUSTOS_CONFIG_DIR nor HOME is set: set CUSTOS_CONFIG_DIR"),
    }
}

fn file_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("contexts.json"))
}

/// Reads the contexts file; a missing file is an empty one.
pub fn load() -> anyhow::Result<ContextFile> {
    let path = file_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a contexts file: fix or remove it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ContextFile::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the contexts file atomically with mode 0600 (its directory 0700 when created).
fn save(file: &ContextFile) -> anyhow::Result<()> {
    let path = file_path()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = dir.join(format!(".contexts.json.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(file)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The context named by `--context`/`CUSTOS_CONTEXT`, else the current one, else none.
pub fn selected(name: Option<&str>) -> anyhow::Result<Option<Selected>> {
    let name = name.map(str::to_string).or_else(|| {
        std::env::var("CUSTOS_CONTEXT")
            .ok()
            .filter(|n| !n.is_empty())
    });
    let file = match (&name, load()) {
        (None, Err(_)) => return Ok(None), // an unreadable file only matters when asked for
        (_, f) => f?,
    };
    let name = match name.or(file.current.clone()) {
        Some(n) => n,
        None => return Ok(None),
    };
    let stored = file.contexts.get(&name).ok_or_else(|| {
        not_found(format!(
            "no context {name:?}: see `custos context list`, or create it with `custos context \
             create {name} --endpoint HOST:PORT --token-file FILE`"
        ))
    })?;
    Ok(Some(Selected {
        name,
        endpoints: stored.endpoints.clone(),
        token_file: stored.token_file.clone(),
        ca_file: stored.ca_file.clone(),
    }))
}

/// The CA file a context stores: made absolute, and checked to hold a PEM certificate now, so
/// a typo fails at `context create` rather than at first use.
fn ca_path(f: &Path) -> anyhow::Result<PathBuf> {
    let abs =
        std::fs::canonicalize(f).map_err(|e| invalid(format!("CA file {}: {e}", f.display())))?;
    custos_client::ClientTls::from_ca_file(&abs).map_err(|e| invalid(format!("--ca: {e}")))?;
    Ok(abs)
}

fn valid_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(format!(
            "context name {name:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

pub fn run(cmd: ContextCommand, ctx: &Context) -> anyhow::Result<()> {
    let mut file = load()?;
    match cmd {
        ContextCommand::Create { name, token_file } => {
            valid_name(&name)?;
            if ctx.endpoint_flag.is_empty() {
                return Err(invalid(format!(
                    "a context needs endpoints: custos context create {name} --endpoint \
                     HOST:PORT[,HOST:PORT...] [--token-file FILE] [--ca FILE]"
                )));
            }
            custos_client::Client::new(&ctx.endpoint_flag, None)?; // host:port checks
            let token_file = match token_file {
                Some(f) => {
                    let abs = std::fs::canonicalize(&f).map_err(|e| {
                        invalid(format!(
                            "token file {}: {e}; write the token to a file first (custos auth \
                             token generate ... --output FILE)",
                            f.display()
                        ))
                    })?;
                    std::fs::read_to_string(&abs)
                        .with_context(|| format!("reading token file {}", abs.display()))?;
                    Some(abs)
                }
                None => None,
            };
            let ca_file = match &ctx.ca {
                Some(f) => Some(ca_path(f)?),
                None => None,
            };
            let replaced = file
                .contexts
                .insert(
                    name.clone(),
                    Stored {
                        endpoints: ctx.endpoint_flag.clone(),
                        token_file,
                        ca_file,
                    },
                )
                .is_some();
            if file.current.is_none() {
                file.current = Some(name.clone());
            }
            save(&file)?;
            let current = file.current.as_deref() == Some(name.as_str());
            eprintln!(
                "context {name} {}{}",
                if replaced { "replaced" } else { "created" },
                if current { " (current)" } else { "" }
            );
        }
        ContextCommand::List => {
            #[derive(Serialize)]
            struct Row<'a> {
                name: &'a str,
                current: bool,
                endpoints: &'a [String],
                token_file: Option<&'a Path>,
                ca_file: Option<&'a Path>,
            }
            let rows: Vec<Row<'_>> = file
                .contexts
                .iter()
                .map(|(n, c)| Row {
                    name: n,
                    current: file.current.as_deref() == Some(n.as_str()),
                    endpoints: &c.endpoints,
                    token_file: c.token_file.as_deref(),
                    ca_file: c.ca_file.as_deref(),
                })
                .collect();
            ctx.emit(&rows, || {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            if r.current { "*" } else { "" }.to_string(),
                            r.name.to_string(),
                            r.endpoints.join(","),
                            r.token_file
                                .map_or("(guest)".to_string(), |p| p.display().to_string()),
                            r.ca_file
                                .map_or("(plaintext)".to_string(), |p| p.display().to_string()),
                        ]
                    })
                    .collect();
                table(
                    &["CURRENT", "NAME", "ENDPOINTS", "TOKEN FILE", "CA FILE"],
                    &cells,
                );
            })?;
        }
        ContextCommand::Set { name } => {
            if !file.contexts.contains_key(&name) {
                return Err(not_found(format!(
                    "no context {name:?}: see `custos context list`"
                )));
            }
            file.current = Some(name.clone());
            save(&file)?;
            eprintln!("current context is now {name}");
        }
        ContextCommand::Unset => {
            file.current = None;
            save(&file)?;
            eprintln!("no current context");
        }
        ContextCommand::Delete { name } => {
            if file.contexts.remove(&name).is_none() {
                return Err(not_found(format!(
                    "no context {name:?}: see `custos context list`"
                )));
            }
            if file.current.as_deref() == Some(name.as_str()) {
                file.current = None;
                eprintln!("context {name} was current: no context is current now (custos context set NAME)");
            }
            save(&file)?;
            eprintln!("context {name} deleted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{ca_path, valid_name, ContextFile, Stored};

    #[test]
    fn the_file_format_round_trips_and_holds_no_token() {
        let mut file = ContextFile {
            current: Some("prod".into()),
            ..Default::default()
        };
        file.contexts.insert(
            "prod".into(),
            Stored {
                endpoints: vec!["a:9100".into(), "b:9100".into()],
                token_file: Some("/home/op/.custos/prod.jwt".into()),
                ca_file: Some("/home/op/.custos/prod-ca.pem".into()),
            },
        );
        file.contexts.insert("guest".into(), Stored::default());
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(
            text,
            r#"{"current":"prod","contexts":{"guest":{"endpoints":[]},"prod":{"endpoints":["a:9100","b:9100"],"token_file":"/home/op/.custos/prod.jwt","ca_file":"/home/op/.custos/prod-ca.pem"}}}"#
        );
        // Files written before contexts had a CA still read, as plaintext contexts.
        let old: ContextFile = serde_json::from_str(
            r#"{"contexts":{"dev":{"endpoints":["a:9100"],"token_file":"/t.jwt"}}}"#,
        )
        .unwrap();
        assert_eq!(old.contexts["dev"].ca_file, None);
        assert_eq!(serde_json::from_str::<ContextFile>(&text).unwrap(), file);
        assert_eq!(
            serde_json::from_str::<ContextFile>("{}").unwrap(),
            ContextFile::default()
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("prod-eu_1.a").is_ok());
        assert!(valid_name("").is_err());
        assert!(valid_name("a/b").is_err());
        assert!(valid_name("a b").is_err());
    }

    #[test]
    fn a_ca_file_is_stored_absolute_and_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let relative = dir.path().join("sub").join("..").join("ca.pem");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let stored = ca_path(&relative).unwrap();
        assert!(stored.is_absolute());
        assert_eq!(stored, std::fs::canonicalize(&ca).unwrap());
        // A token file given as a CA is refused, and the error does not echo its contents.
        let token = dir.path().join("user.jwt");
        std::fs::write(&token, "eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0").unwrap();
        let err = format!("{:#}", ca_path(&token).unwrap_err());
        assert!(err.contains("no PEM certificate"), "{err}");
        assert!(!err.contains("eyJ"), "{err}");
        assert!(ca_path(&dir.path().join("missing.pem")).is_err());
    }
}
