//! Output and exit codes: data on stdout as a table, JSON or YAML, messages on stderr.

use crate::context;
use anyhow::Context as _;
use custos_client::model::Code;
use custos_client::{Client, ClientError, ClientTls};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// The endpoint every command falls back to when no flag, variable or context names one.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:9100";

/// Global flags every client command uses. Endpoints and token are resolved when a client is
/// made (flag > environment > context > default), so `custos dev` never reads contexts.
pub struct Context {
    /// `--endpoint` (the flag only; `CUSTOS_ENDPOINT` is read in [`Context::target`]).
    pub endpoint_flag: Vec<String>,
    /// `--token` or `CUSTOS_TOKEN`.
    pub token: Option<String>,
    /// `--context` or `CUSTOS_CONTEXT`; else the current context, if any.
    pub context: Option<String>,
    pub format: Format,
    /// `--ca` (the flag only; `CUSTOS_CA` and the context's CA are read in [`Context::target`]).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key files (`--cert`, `--key`).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// What a client command connects to, with which token, and the CA to trust (TLS when set).
pub struct Target {
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    pub ca: Option<std::path::PathBuf>,
}

impl Context {
    /// Endpoints, token and CA after precedence: flag, then environment, then the named or
    /// current context, then the default endpoint, no token (guest) and plaintext.
    pub fn target(&self) -> anyhow::Result<Target> {
        let env: Vec<String> = std::env::var("CUSTOS_ENDPOINT")
            .unwrap_or_default()
            .split(',')
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        // Flags and environment that settle both leave contexts unread (unless one is named).
        let settled = (!self.endpoint_flag.is_empty() || !env.is_empty()) && self.token.is_some();
        let ctx = if settled && self.context.is_none() {
            None
        } else {
            context::selected(self.context.as_deref())?
        };
        let endpoints = if !self.endpoint_flag.is_empty() {
            self.endpoint_flag.clone()
        } else if !env.is_empty() {
            env
        } else if let Some(c) = &ctx {
            c.endpoints.clone()
        } else {
            vec![DEFAULT_ENDPOINT.to_string()]
        };
        let token = match (&self.token, &ctx) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(c)) => match &c.token_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| {
                            format!(
                                "context {:?}: cannot read its token file {}; fix the file or \
                                 recreate the context with --token-file",
                                c.name,
                                f.display()
                            )
                        })?
                        .trim()
                        .to_string(),
                ),
                None => None,
            },
            (None, None) => None,
        };
        let ca = self
            .ca
            .clone()
            .or_else(|| {
                std::env::var_os("CUSTOS_CA")
                    .filter(|c| !c.is_empty())
                    .map(Into::into)
            })
            .or_else(|| ctx.and_then(|c| c.ca_file));
        Ok(Target {
            endpoints,
            token,
            ca,
        })
    }

    /// A client for other endpoints with the same token and TLS settings.
    pub fn client_to(&self, endpoints: &[String]) -> anyhow::Result<Client> {
        let t = self.target()?;
        let tls = self.tls(&t)?;
        Ok(Client::with_tls(
            endpoints,
            t.token.as_deref(),
            tls.as_ref(),
        )?)
    }

    fn tls(&self, target: &Target) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &target.ca else {
            if self.identity.is_some() {
                return Err(invalid(
                    "--cert and --key need the CA that signed the servers' certificates: \
                     --ca FILE, CUSTOS_CA or a context created with --ca",
                ));
            }
            return Ok(None);
        };
        let tls = ClientTls::from_ca_file(ca)?;
        Ok(Some(match &self.identity {
            Some((cert, key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                };
                tls.with_identity(read(cert)?, read(key)?)
            }
            None => tls,
        }))
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        let t = self.target()?;
        let tls = self.tls(&t)?;
        Ok(Client::with_tls(
            &t.endpoints,
            t.token.as_deref(),
            tls.as_ref(),
        )?)
    }

    /// Prints `value` as JSON or YAML, or calls `table` for the human format.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        table: impl FnOnce(),
    ) -> anyhow::Result<()> {
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
            Format::Table => table(),
        }
        Ok(())
    }
}

/// An error with the exit code of a domain code, for checks the CLI makes itself.
#[derive(Debug)]
pub struct Coded {
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// Invalid input found by the CLI itself (exit code 2).
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    Coded {
        code: Code::InvalidArgument,
        message: message.into(),
    }
    .into()
}

/// Something the CLI looked for and did not find (exit code 3).
pub fn not_found(message: impl Into<String>) -> anyhow::Error {
    Coded {
        code: Code::NotFound,
        message: message.into(),
    }
    .into()
}

/// Exit codes that tell failures apart: 2 invalid input, 3 not found, 4 refused
/// (permission or authentication), 5 unavailable, 6 already exists or precondition, 1 other.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let code = e
        .downcast_ref::<ClientError>()
        .and_then(ClientError::code)
        .or_else(|| e.downcast_ref::<Coded>().map(|c| c.code));
    match code {
        Some(Code::InvalidArgument) => 2,
        Some(Code::NotFound) => 3,
        Some(Code::PermissionDenied | Code::Unauthenticated) => 4,
        Some(Code::Unavailable) => 5,
        Some(
            Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::Aborted,
        ) => 6,
        _ => 1,
    }
}

/// What to do next after a server's refusal, absence, or an unreachable cluster.
pub fn hint(code: u8) -> Option<&'static str> {
    match code {
        3 => Some(
            "check the name or id: `custos volume list`, `custos volume snapshot list`, \
             `custos role list`, `custos node list`",
        ),
        4 => Some(
            "the token in use (--token, CUSTOS_TOKEN or the context's token file) lacks a role \
             or the access this needs: `custos role inspect NAME`, `custos volume access show VOL`",
        ),
        5 => Some(
            "check the endpoints (--endpoint, CUSTOS_ENDPOINT or `custos context list`) and that \
             the cluster is running (`custos cluster status`)",
        ),
        _ => None,
    }
}

/// Prints rows as an aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    println!("{}", render_table(headers, rows));
}

/// Rows under their headers, each column as wide as its widest cell by display width (so a
/// name in CJK or with accents lines up), two spaces between columns, no borders, no trailing
/// whitespace.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.to_vec())
        .add_rows(rows.iter().cloned());
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t.trim_fmt()
}

#[cfg(test)]
mod tests {
    use super::render_table;

    #[test]
    fn ascii_columns_are_two_spaces_apart() {
        let rows = vec![
            vec!["1".to_string(), "vol1".to_string(), "10Gi".to_string()],
            vec!["22".to_string(), "v".to_string(), String::new()],
        ];
        assert_eq!(
            render_table(&["ID", "NAME", "SIZE"], &rows),
            "ID  NAME  SIZE\n1   vol1  10Gi\n22  v"
        );
        assert_eq!(render_table(&["NAME"], &[]), "NAME");
    }

    #[test]
    fn non_ascii_columns_align_by_display_width() {
        let rows = vec![
            vec!["vol-ü".to_string(), "1Gi".to_string()],
            vec!["数据".to_string(), "2Gi".to_string()],
            vec!["a".to_string(), "3Gi".to_string()],
        ];
        let text = render_table(&["NAME", "SIZE"], &rows);
        assert_eq!(
            text, "NAME   SIZE\nvol-ü  1Gi\n数据   2Gi\na      3Gi",
            "{text}"
        );
        // "数据" is two characters but four columns wide; "vol-ü" is six bytes, five columns.
        // Every SIZE cell starts in the same terminal column as its header.
        let column_of = |line: &str, needle: &str| {
            let before = &line[..line.find(needle).unwrap()];
            before
                .chars()
                .map(|c| {
                    if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                        2
                    } else {
                        1
                    }
                })
                .sum::<usize>()
        };
        let lines: Vec<&str> = text.lines().collect();
        let header = column_of(lines[0], "SIZE");
        for (line, size) in lines[1..].iter().zip(["1Gi", "2Gi", "3Gi"]) {
            assert_eq!(column_of(line, size), header, "{text}");
        }
    }
}
