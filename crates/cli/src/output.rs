//! Output and exit codes: data on stdout as a table or JSON, messages on stderr.

use anyhow::Context as _;
use custos_client::model::Code;
use custos_client::{Client, ClientError, ClientTls};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Global flags every client command uses.
pub struct Context {
    pub endpoints: Vec<String>,
    pub token: Option<String>,
    pub format: Format,
    /// The CA that signed the servers' certificates (`--ca`): connect over TLS.
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key files (`--cert`, `--key`).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Context {
    pub fn client(&self) -> anyhow::Result<Client> {
        self.client_to(&self.endpoints)
    }

    /// A client for other endpoints with the same token and TLS settings.
    pub fn client_to(&self, endpoints: &[String]) -> anyhow::Result<Client> {
        let tls = self.tls()?;
        Ok(Client::with_tls(
            endpoints,
            self.token.as_deref(),
            tls.as_ref(),
        )?)
    }

    fn tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.ca else {
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
}

/// Exit codes that tell failures apart: 2 invalid input, 3 not found, 4 refused
/// (permission or authentication), 5 unavailable, 6 already exists or precondition, 1 other.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ClientError>().and_then(ClientError::code) {
        Some(Code::InvalidArgument) => 2,
        Some(Code::NotFound) => 3,
        Some(Code::PermissionDenied | Code::Unauthenticated) => 4,
        Some(Code::Unavailable) => 5,
        Some(Code::AlreadyExists | Code::FailedPrecondition | Code::ResourceExhausted) => 6,
        _ => 1,
    }
}

/// Prints rows as an aligned table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
