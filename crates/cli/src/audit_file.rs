//! Audit trail files: `custos audit export` writes records as JSON lines, with their hashes, and
//! `custos audit verify-file` checks such files offline.
//!
//! One line is one record, in the JSON shape `custos audit list -o json` prints (every field the
//! record's hash covers, plus its RFC 3339 `time` for people). A file, or several files given
//! in order, verifies when every line re-hashes to its `hash`, sequence numbers are dense, each
//! record names its predecessor's hash as `prev_hash`, and a file that starts at record 1
//! starts from the genesis hash. A file that starts later is tied to what came before by its
//! first `prev_hash`: that is the `hash` of the last record of the previous export.

use anyhow::{bail, Context as _};
use custos_client::model::audit::{
    AuditActor, AuditHash, AuditLevel, AuditQuery, AuditRecord, ChainVerifier,
};
use custos_client::model::NodeId;
use custos_client::Client;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// One record as a JSON object: the line format of an export and of `audit list -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLine {
    pub seq: u64,
    /// For people; the hash covers `time_ms`. Absent is fine when reading.
    #[serde(default)]
    pub time: String,
    pub time_ms: u64,
    pub level: String,
    pub message: String,
    pub authorized: bool,
    pub username: String,
    pub subject: String,
    pub name: String,
    pub email: String,
    pub issuer: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub method: String,
    pub objects: Vec<String>,
    pub code: String,
    pub reason: String,
    pub request_id: String,
    pub origin_node: u64,
    pub token_fingerprint: String,
    pub count: u64,
    pub edge: bool,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&AuditRecord> for RecordLine {
    fn from(r: &AuditRecord) -> RecordLine {
        RecordLine {
            seq: r.seq,
            time: custos_server::audit::rfc3339(r.time_ms),
            time_ms: r.time_ms,
            level: r.level.name().to_string(),
            message: r.message.clone(),
            authorized: r.authorized,
            username: r.actor.username.clone(),
            subject: r.actor.subject.clone(),
            name: r.actor.name.clone(),
            email: r.actor.email.clone(),
            issuer: r.actor.issuer.clone(),
            roles: r.actor.roles.clone(),
            groups: r.actor.groups.clone(),
            method: r.method.clone(),
            objects: r.objects.clone(),
            code: r.code.clone(),
            reason: r.reason.clone(),
            request_id: r.request_id.clone(),
            origin_node: r.origin.0,
            token_fingerprint: r.fingerprint.clone(),
            count: r.count,
            edge: r.edge,
            prev_hash: r.prev_hash.hex(),
            hash: r.hash.hex(),
        }
    }
}

fn parse_hash(what: &str, hex_digits: &str) -> anyhow::Result<AuditHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out)
        .with_context(|| format!("{what} {hex_digits:?} is not 64 hex digits"))?;
    Ok(AuditHash(out))
}

impl RecordLine {
    /// The record this line describes (its hash as the line says, not recomputed).
    pub fn record(&self) -> anyhow::Result<AuditRecord> {
        let level = match self.level.as_str() {
            "info" => AuditLevel::Info,
            "warning" => AuditLevel::Warning,
            other => bail!("level {other:?} is neither info nor warning"),
        };
        Ok(AuditRecord {
            seq: self.seq,
            time_ms: self.time_ms,
            level,
            message: self.message.clone(),
            authorized: self.authorized,
            actor: AuditActor {
                username: self.username.clone(),
                subject: self.subject.clone(),
                name: self.name.clone(),
                email: self.email.clone(),
                issuer: self.issuer.clone(),
                roles: self.roles.clone(),
                groups: self.groups.clone(),
            },
            method: self.method.clone(),
            objects: self.objects.clone(),
            code: self.code.clone(),
            reason: self.reason.clone(),
            request_id: self.request_id.clone(),
            origin: NodeId(self.origin_node),
            fingerprint: self.token_fingerprint.clone(),
            count: self.count,
            edge: self.edge,
            prev_hash: parse_hash("prev_hash", &self.prev_hash)?,
            hash: parse_hash("hash", &self.hash)?,
        })
    }
}

/// What `verify-file` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    pub ok: bool,
    /// Records that verified.
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first record's `prev_hash`: the hash of the record before the files (all zeros
    /// when they start at record 1).
    pub anchor_hash: String,
    /// The last record's hash: a later export continues from it.
    pub last_hash: String,
    pub error: Option<String>,
}

/// Checks the chain across `paths`, read line by line in order (memory stays bounded).
pub fn verify_files(paths: &[PathBuf]) -> anyhow::Result<FileCheck> {
    let mut verifier = ChainVerifier::default();
    let mut first: Option<(u64, AuditHash)> = None;
    let mut error = None;
    'files: for path in paths {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{} line {}", path.display(), n + 1);
            let record = match serde_json::from_str::<RecordLine>(&line)
                .map_err(anyhow::Error::from)
                .and_then(|l| l.record())
            {
                Ok(r) => r,
                Err(e) => {
                    error = Some(format!("{}: not an audit record: {e:#}", at()));
                    break 'files;
                }
            };
            first.get_or_insert((record.seq, record.prev_hash));
            if let Err(e) = verifier.push(&record) {
                error = Some(format!("{}: {e}", at()));
                break 'files;
            }
        }
    }
    let (last_seq, last_hash) = verifier.last().unwrap_or((0, AuditHash::default()));
    let (first_seq, anchor) = first.unwrap_or((0, AuditHash::default()));
    Ok(FileCheck {
        ok: error.is_none(),
        records: verifier.checked,
        first_seq,
        last_seq,
        anchor_hash: anchor.hex(),
        last_hash: last_hash.hex(),
        error,
    })
}

/// What `export` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exported {
    pub file: String,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub anchor_hash: String,
    pub last_hash: String,
    /// Where the next export starts (`--from-seq`).
    pub next_from_seq: u64,
}

/// The file an export writes before it is complete; renamed to the target when it is.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes records `from..=to` (default: the first kept through the head at the start) to
/// `path` as JSON lines, page by page through `Audit.List`, checking the chain on the way.
/// The file appears only when complete (written as `<path>.partial`, synced, renamed).
pub async fn export(
    client: &Client,
    path: &Path,
    from: Option<u64>,
    to: Option<u64>,
    page_size: u32,
) -> anyhow::Result<Exported> {
    if path.exists() {
        bail!(
            "{} exists: an export never overwrites a file",
            path.display()
        );
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            bail!("--from-seq {f} is after --to-seq {t}");
        }
    }
    let partial = partial_path(path);
    // Created once the first page showed the range is there.
    let mut out: Option<BufWriter<File>> = None;
    let mut query = AuditQuery {
        from_seq: from,
        to_seq: to,
        ..AuditQuery::default()
    };
    let mut verifier = ChainVerifier::default();
    let mut first: Option<(u64, AuditHash)> = None;
    let mut token: Option<String> = None;
    let mut end = to;
    loop {
        let page = client
            .audit_list(&query, token.as_deref(), page_size, false)
            .await?;
        // Stop at the head as it was at the first page, so an export of a busy trail ends.
        let last = *end.get_or_insert(page.last_seq);
        query.to_seq = Some(last);
        if first.is_none() {
            let wanted = from.unwrap_or(page.first_seq).max(1);
            let got = page.records.first().map(|r| r.seq);
            if wanted < page.first_seq && wanted <= last {
                bail!(
                    "records {wanted} to {} are no longer kept (the trail starts at record {}); \
                     export from --from-seq {} or later",
                    page.first_seq - 1,
                    page.first_seq,
                    page.first_seq
                );
            }
            if let Some(seq) = got.filter(|s| *s != wanted) {
                bail!("asked for records from {wanted}, the trail answered from {seq}");
            }
        }
        let out = match &mut out {
            Some(out) => out,
            None => out.insert(BufWriter::new(
                File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?,
            )),
        };
        for r in page.records.iter().filter(|r| r.seq <= last) {
            first.get_or_insert((r.seq, r.prev_hash));
            verifier.push(r).with_context(|| {
                format!(
                    "the trail does not verify while exporting (retention may have dropped \
                     records under the export; the partial file is {})",
                    partial.display()
                )
            })?;
            serde_json::to_writer(&mut *out, &RecordLine::from(r))?;
            out.write_all(b"\n")?;
        }
        token = page.next_page_token;
        if token.is_none() {
            break;
        }
    }
    let Some(out) = out else {
        bail!("no page was read");
    };
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    let (first_seq, anchor) = first.unwrap_or((0, AuditHash::default()));
    let (last_seq, last_hash) = verifier.last().unwrap_or((0, AuditHash::default()));
    Ok(Exported {
        file: path.display().to_string(),
        records: verifier.checked,
        first_seq,
        last_seq,
        anchor_hash: anchor.hex(),
        last_hash: last_hash.hex(),
        next_from_seq: if last_seq == 0 {
            from.unwrap_or(1)
        } else {
            last_seq + 1
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_client::model::audit::GENESIS_HASH;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    seq,
                    time_ms: 1_700_000_000_000 + seq,
                    level: if seq % 2 == 0 {
                        AuditLevel::Warning
                    } else {
                        AuditLevel::Info
                    },
                    message: format!("Volume v{seq} created"),
                    authorized: seq % 3 != 0,
                    actor: AuditActor {
                        username: "alice".into(),
                        roles: vec!["system.admin".into()],
                        groups: vec!["ops".into()],
                        ..AuditActor::default()
                    },
                    method: "volume.create".into(),
                    objects: vec![format!("v{seq}")],
                    code: "OK".into(),
                    reason: String::new(),
                    request_id: format!("r{seq}"),
                    origin: NodeId(2),
                    fingerprint: "0123456789ab".into(),
                    count: seq,
                    edge: seq % 5 == 0,
                    prev_hash: prev,
                    hash: GENESIS_HASH,
                };
                r.hash = r.compute_hash();
                prev = r.hash;
                r
            })
            .collect()
    }

    fn write(dir: &Path, name: &str, records: &[AuditRecord]) -> PathBuf {
        let path = dir.join(name);
        let mut text = String::new();
        for r in records {
            text += &serde_json::to_string(&RecordLine::from(r)).unwrap();
            text += "\n";
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_line_reads_back_as_the_record_it_was_written_from() {
        for r in chain(10) {
            let line = serde_json::to_string(&RecordLine::from(&r)).unwrap();
            let back = serde_json::from_str::<RecordLine>(&line)
                .unwrap()
                .record()
                .unwrap();
            assert_eq!(back, r);
            assert!(back.hash_is_valid());
        }
    }

    #[test]
    fn files_in_order_verify_across_the_split_and_a_changed_line_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let records = chain(30);
        let a = write(dir.path(), "a.jsonl", &records[..12]);
        let b = write(dir.path(), "b.jsonl", &records[12..]);
        let check = verify_files(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(check.error, None);
        assert_eq!(
            (check.records, check.first_seq, check.last_seq),
            (30, 1, 30)
        );
        assert_eq!(check.last_hash, records[29].hash.hex());
        assert_eq!(check.anchor_hash, GENESIS_HASH.hex());

        // The second file alone verifies, anchored at the first file's last hash.
        let alone = verify_files(std::slice::from_ref(&b)).unwrap();
        assert!(alone.ok);
        assert_eq!(alone.anchor_hash, records[11].hash.hex());

        // Out of order: the chain breaks at the join.
        let swapped = verify_files(&[b.clone(), a.clone()]).unwrap();
        assert!(!swapped.ok);

        // One changed field of one line.
        let text = std::fs::read_to_string(&b).unwrap();
        let edited = text.replacen("Volume v20 created", "Volume v20 deleted", 1);
        assert_ne!(text, edited);
        std::fs::write(&b, edited).unwrap();
        let bad = verify_files(&[a, b]).unwrap();
        assert_eq!(bad.records, 19);
        let error = bad.error.unwrap();
        assert!(error.ends_with("line 8: record 20: its hash does not match its content"));
    }

    #[test]
    fn a_dropped_line_or_a_file_not_from_record_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = chain(10);
        records.remove(4);
        let gap = write(dir.path(), "gap.jsonl", &records);
        let check = verify_files(&[gap]).unwrap();
        assert_eq!(
            check.error.unwrap().split(": ").last(),
            Some("sequence numbers must be dense")
        );
        // Record 1 must start from the genesis hash.
        let mut forged = chain(3);
        forged[0].prev_hash = AuditHash([7; 32]);
        forged[0].hash = forged[0].compute_hash();
        let path = write(dir.path(), "forged.jsonl", &forged[..1]);
        assert!(!verify_files(&[path]).unwrap().ok);
    }
}
