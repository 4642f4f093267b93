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
        let key = if ca_file.exists() && key_file.exists() {
            let pem = std::fs::read_to_string(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            KeyPair::from_pem(&pem).with_context(|| format!("parsing {}", key_file.display()))?
        } else {
            let key = KeyPair::generate().context("generating the dev CA key")?;
            let cert = params
                .self_signed(&key)
                .context("signing the dev CA certificate")?;
            crate::dev::write_private(&key_file, &key.serialize_pem())?;
            crate::dev::write_private(&ca_file, &cert.pem())?;
            key
        };
        // The same name and key sign as the stored CA certificate did.
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
