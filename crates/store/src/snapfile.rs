//! Snapshot files: the state machine's records, framed one by one, so that a snapshot is
//! written, sent and installed without ever holding the whole trail in memory.
//!
//! Layout: `CUSTOSSN`, the file format (u32 BE), then one frame per record: its length (u32 BE,
//! never 0, at most [`MAX_FRAME`]) and the record as the `sm` tree stores it (the value format
//! byte, then bincode). The end is a zero length, the record count (u64 BE) and the SHA-256 of
//! every byte before the digest; nothing may follow it. A reader checks all of it, so a file cut
//! short, changed or extended is refused.
//!
//! Files live in [`SNAPSHOT_DIR`] under the data dir: `<n>.snap` (a complete snapshot),
//! `<n>.snap.tmp` (one being written; renamed only after an fsync), `<n>.recv` (a snapshot
//! being received), `<id>.restore` (a backup being restored) and `<n>.backup` (a backup being
//! taken), the last three unlinked as soon as they are opened. The `snapshot` tree names the current file; `open` removes every other.

use crate::codec::{encode, CodecError};
use custos_model::Record;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The directory under the data dir holding snapshot files.
pub(crate) const SNAPSHOT_DIR: &str = "raft-snapshot";

const MAGIC: &[u8; 8] = b"CUSTOSSN";

/// The snapshot file format this build writes and reads.
pub(crate) const FILE_FORMAT: u32 = 1;

/// The largest frame a reader accepts (a record is a few KiB at most; this only stops a
/// corrupt length from claiming gigabytes).
pub(crate) const MAX_FRAME: u32 = 16 << 20;

const BUFFER: usize = 1 << 20;

/// A snapshot file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot data is not a custos snapshot file (bad magic)")]
    Magic,
    #[error("snapshot file format {found}; this build reads format {FILE_FORMAT}")]
    Format { found: u32 },
    #[error("snapshot data is cut short (in {what})")]
    Truncated { what: &'static str },
    #[error("snapshot frame of {len} bytes exceeds the limit of {MAX_FRAME}")]
    FrameTooLarge { len: u32 },
    #[error("snapshot record {index}: {source}")]
    Record {
        index: u64,
        #[source]
        source: CodecError,
    },
    #[error("snapshot data claims {claimed} records but holds {found}")]
    Count { claimed: u64, found: u64 },
    #[error("snapshot data is damaged: its checksum does not match")]
    Checksum,
    #[error("snapshot data has bytes after its end")]
    Trailing,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotFileError + '_ {
    move |source| SnapshotFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory of snapshot files of the data dir `dir`.
pub(crate) fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_DIR)
}

/// Fsyncs a directory, so that a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SnapshotFileError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes a snapshot file frame by frame.
pub(crate) struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    hash: Sha256,
    count: u64,
    bytes: u64,
}

impl Writer {
    /// Creates (or truncates) `path` and writes the header.
    pub(crate) fn create(path: &Path) -> Result<Writer, SnapshotFileError> {
        let file = File::create(path).map_err(io_err(path))?;
        Writer::over(file, path)
    }

    /// Writes a snapshot into `file` (already open, empty); `path` names it in errors.
    pub(crate) fn over(file: File, path: &Path) -> Result<Writer, SnapshotFileError> {
        let mut w = Writer {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(BUFFER, file),
            hash: Sha256::new(),
            count: 0,
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.put(&FILE_FORMAT.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotFileError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(io_err(&self.path))
    }

    /// Appends one record, already encoded as the `sm` tree stores it.
    pub(crate) fn encoded(&mut self, value: &[u8]) -> Result<(), SnapshotFileError> {
        let len = u32::try_from(value.len())
            .ok()
            .filter(|&l| l > 0 && l <= MAX_FRAME)
            .ok_or(SnapshotFileError::FrameTooLarge {
                len: value.len().min(u32::MAX as usize) as u32,
            })?;
        self.put(&len.to_be_bytes())?;
        self.put(value)?;
        self.count += 1;
        Ok(())
    }

    /// Appends one record.
    pub(crate) fn record(&mut self, record: &Record) -> Result<(), SnapshotFileError> {
        let value =
            encode("snapshot record", record).map_err(|source| SnapshotFileError::Record {
                index: self.count,
                source,
            })?;
        self.encoded(&value)
    }

    /// How many records were written.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Writes the end, flushes and fsyncs; returns the file's size.
    pub(crate) fn finish(mut self) -> Result<u64, SnapshotFileError> {
        self.put(&0u32.to_be_bytes())?;
        self.put(&self.count.to_be_bytes())?;
        let digest = std::mem::take(&mut self.hash).finalize();
        self.out.write_all(&digest).map_err(io_err(&self.path))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_err(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.path))?;
        Ok(self.bytes + digest.len() as u64)
    }
}

/// Reads a snapshot file frame by frame, checking its structure, count and checksum.
pub(crate) struct Reader<R: Read> {
    input: BufReader<R>,
    hash: Sha256,
    index: u64,
    done: bool,
    frame: Vec<u8>,
}

impl Reader<File> {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<Reader<File>, SnapshotFileError> {
        let file = File::open(path).map_err(io_err(path))?;
        Reader::new(file)
    }

    /// Reads the snapshot in `file` from its start.
    pub(crate) fn rewind(mut file: File) -> Result<Reader<File>, SnapshotFileError> {
        file.seek(SeekFrom::Start(0))
            .map_err(io_err(Path::new("(received)")))?;
        Reader::new(file)
    }
}

impl<R: Read> Reader<R> {
    pub(crate) fn new(input: R) -> Result<Reader<R>, SnapshotFileError> {
        let mut r = Reader {
            input: BufReader::with_capacity(BUFFER, input),
            hash: Sha256::new(),
            index: 0,
            done: false,
            frame: Vec::new(),
        };
        let mut magic = [0; 8];
        r.take(&mut magic, "the header")?;
        if &magic != MAGIC {
            return Err(SnapshotFileError::Magic);
        }
        let mut format = [0; 4];
        r.take(&mut format, "the header")?;
        let found = u32::from_be_bytes(format);
        if found != FILE_FORMAT {
            return Err(SnapshotFileError::Format { found });
        }
        Ok(r)
    }

    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), SnapshotFileError> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => SnapshotFileError::Truncated { what },
            _ => io_err(Path::new("(snapshot)"))(e),
        })
    }

    fn take(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), SnapshotFileError> {
        self.exact(buf, what)?;
        self.hash.update(&*buf);
        Ok(())
    }

    /// The next record's encoded bytes (as the `sm` tree stores them), or `None` after the
    /// last one once the end, count and checksum are verified. The slice lives until the next
    /// call.
    pub(crate) fn next_encoded(&mut self) -> Result<Option<&[u8]>, SnapshotFileError> {
        if self.done {
            return Ok(None);
        }
        let mut len = [0; 4];
        self.take(&mut len, "a frame length")?;
        let len = u32::from_be_bytes(len);
        if len == 0 {
            self.end()?;
            return Ok(None);
        }
        if len > MAX_FRAME {
            return Err(SnapshotFileError::FrameTooLarge { len });
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.resize(len as usize, 0);
        self.take(&mut frame, "a record")?;
        self.frame = frame;
        self.index += 1;
        Ok(Some(&self.frame))
    }

    /// The next record, decoded.
    #[cfg(test)]
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, SnapshotFileError> {
        let index = self.index;
        match self.next_encoded()? {
            None => Ok(None),
            Some(bytes) => crate::codec::decode("snapshot record", bytes)
                .map(Some)
                .map_err(|source| SnapshotFileError::Record { index, source }),
        }
    }

    fn end(&mut self) -> Result<(), SnapshotFileError> {
        let mut count = [0; 8];
        self.take(&mut count, "the end")?;
        let claimed = u64::from_be_bytes(count);
        let mut digest = [0; 32];
        self.exact(&mut digest, "the checksum")?;
        if std::mem::take(&mut self.hash).finalize()[..] != digest {
            return Err(SnapshotFileError::Checksum);
        }
        if claimed != self.index {
            return Err(SnapshotFileError::Count {
                claimed,
                found: self.index,
            });
        }
        let mut extra = [0; 1];
        match self.input.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(SnapshotFileError::Trailing),
            Err(e) => return Err(io_err(Path::new("(snapshot)"))(e)),
        }
        self.done = true;
        Ok(())
    }

    /// How many records were read.
    pub(crate) fn count(&self) -> u64 {
        self.index
    }
}

/// Writes `records` as a complete snapshot file at `path` (fsynced, not renamed).
pub(crate) fn write_records<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a Record>,
) -> Result<u64, SnapshotFileError> {
    let mut w = Writer::create(path)?;
    for record in records {
        w.record(record)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use custos_model::{AuditHead, Record};

    fn sample(n: u64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                Record::AuditHead(AuditHead {
                    first_seq: i,
                    next_seq: i + 1,
                    ..AuditHead::default()
                })
            })
            .collect()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, SnapshotFileError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.snap");
        let records = sample(50);
        let size = write_records(&path, &records).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(read_all(&bytes).unwrap(), records);

        // Every cut is refused, as is every flipped byte and an extra byte.
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(read_all(&bad).is_err(), "flip at {at} accepted");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(read_all(&long), Err(SnapshotFileError::Trailing)));

        // A forged huge frame length is refused before anything is allocated for it.
        let mut forged = bytes[..12].to_vec();
        forged.extend(u32::MAX.to_be_bytes());
        assert!(matches!(
            read_all(&forged),
            Err(SnapshotFileError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            read_all(b"CUSTOSBK\0\0\0\x01"),
            Err(SnapshotFileError::Magic)
        ));
        let mut other = bytes.clone();
        other[11] = 9;
        assert!(matches!(
            read_all(&other),
            Err(SnapshotFileError::Format { found: 9 })
        ));
    }

    #[test]
    fn an_empty_snapshot_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.snap");
        write_records(&path, &[]).unwrap();
        assert_eq!(read_all(&std::fs::read(&path).unwrap()).unwrap(), vec![]);
    }
}
