//! `custos dev`'s local certificate authority: a CA and one certificate per node, naming the
//! node the way the peer service checks (SAN URI `custos://node/<id>`, SAN DNS
//! `custos-node-<id>`), plus `localhost` and `127.0.0.1` for SDK and REST clients.
//!
//! Files are PEM; private keys are written mode 0600. Existing files are reused, so a restarted
//! dev cluster keeps its CA and clients keep trusting it.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// The files of one node's TLS identity.
pub struct NodeCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("custos dev CA {cluster_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// The dev CA in `dir` (`ca.pem`, `ca.key`), created when missing.
pub struct DevCa {
    pub ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    pub fn open_or_create(dir: &Path, cluster_id: &str) -> anyhow::Result<DevCa> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_file = dir.join("ca.pem");
        let key_file = dir.join("ca.key");
        let params = ca_params(cluster_id);
        if ca_file.exists() && key_file.exists() {
            let pem = std::fs::read_to_string(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            let key = KeyPair::from_pem(&pem)
                .with_context(|| format!("parsing {}", key_file.display()))?;
            let cert = std::fs::read_to_string(&ca_file)
                .with_context(|| format!("reading {}", ca_file.display()))?;
            // Certificates name their issuer as the stored CA certificate names itself.
            let issuer = Issuer::from_ca_cert_pem(&cert, key)
                .with_context(|| format!("parsing {}", ca_file.display()))?;
            return Ok(DevCa { ca_file, issuer });
        }
        let key = {
            let key = KeyPair::generate().context("generating the dev CA key")?;
            let cert = params
                .self_signed(&key)
                .context("signing the dev CA certificate")?;
            crate::dev::write_private(&key_file, &key.serialize_pem())?;
            crate::dev::write_private(&ca_file, &cert.pem())?;
            key
        };
        Ok(DevCa {
            ca_file,
            issuer: Issuer::new(params, key),
        })
    }

    /// Node `id`'s certificate and key in `dir` (`node.pem`, `node.key`), issued when missing.
    pub fn node_cert(&self, dir: &Path, id: u64) -> anyhow::Result<NodeCert> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cert_file = dir.join("node.pem");
        let key_file = dir.join("node.key");
        if !(cert_file.exists() && key_file.exists()) {
            let (cert, key) = self.issue(id)?;
            crate::dev::write_private(&key_file, &key)?;
            crate::dev::write_private(&cert_file, &cert)?;
        }
        Ok(NodeCert {
            cert_file,
            key_file,
        })
    }

    /// A fresh certificate and key (PEM) for node `id`.
    pub fn issue(&self, id: u64) -> anyhow::Result<(String, String)> {
        self.issue_with(id, &[], &[])
    }

    /// A fresh certificate and key (PEM) for node `id`, also valid for these DNS names and IP
    /// addresses (where SDK and REST clients reach the node).
    pub fn issue_with(
        &self,
        id: u64,
        dns: &[String],
        ips: &[std::net::IpAddr],
    ) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("custos-node-{id}"));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![
            SanType::URI(format!("custos://node/{id}").try_into()?),
            SanType::DnsName(format!("custos-node-{id}").try_into()?),
            SanType::DnsName("localhost".to_string().try_into()?),
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        ];
        for name in dns {
            params.subject_alt_names.push(SanType::DnsName(
                name.clone()
                    .try_into()
                    .with_context(|| format!("{name:?} is not a DNS name"))?,
            ));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().context("generating a node key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing node {id}'s certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// `custos certs`: a cluster CA and node certificates, for clusters run by hand (the same
/// files `custos dev` makes).
#[derive(clap::Subcommand)]
pub enum CertsCommand {
    /// Create a CA (`ca.pem`, `ca.key`) in DIR; an existing one is kept.
    Ca {
        #[arg(long)]
        dir: PathBuf,
        /// Named in the CA's common name.
        #[arg(long, default_value = "custos")]
        cluster_id: String,
    },
    /// Issue node ID's certificate (`node.pem`, `node.key` in OUT_DIR) from the CA in CA_DIR:
    /// SAN URI `custos://node/ID`, DNS `custos-node-ID`, `localhost`, 127.0.0.1, plus --dns
    /// and --ip. An existing pair in OUT_DIR is replaced.
    Node {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        id: u64,
        #[arg(long)]
        out_dir: PathBuf,
        #[arg(long)]
        dns: Vec<String>,
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
    },
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Ca { dir, cluster_id } => {
            let ca = DevCa::open_or_create(&dir, &cluster_id)?;
            println!("{}", ca.ca_file.display());
        }
        CertsCommand::Node {
            ca_dir,
            id,
            out_dir,
            dns,
            ip,
        } => {
            if id == 0 {
                return Err(crate::output::invalid("node ids start at 1"));
            }
            if !ca_dir.join("ca.pem").exists() || !ca_dir.join("ca.key").exists() {
                return Err(crate::output::not_found(format!(
                    "no CA in {}: create one with `custos certs ca --dir {}`",
                    ca_dir.display(),
                    ca_dir.display()
                )));
            }
            let ca = DevCa::open_or_create(&ca_dir, "custos")?;
            let (cert, key) = ca.issue_with(id, &dns, &ip)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            crate::dev::write_private(&out_dir.join("node.key"), &key)?;
            crate::dev::write_private(&out_dir.join("node.pem"), &cert)?;
            println!("{}", out_dir.join("node.pem").display());
        }
    }
    Ok(())
}
