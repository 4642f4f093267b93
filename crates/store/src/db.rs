//! The sled database of one node: configuration, tree names, metadata keys and the format check.
//!
//! Layout (one `sled::Db` per node, at the data dir):
//!
//! | tree        | key                          | value (version byte + bincode)            |
//! |-------------|------------------------------|-------------------------------------------|
//! | default     | `_format`                    | layout version, `u32` big-endian (no prefix) |
//! | `log`       | log index, `u64` big-endian  | `Entry<TypeConfig>`                       |
//! | `raft_meta` | `vote`                       | `Vote<u64>`                               |
//! | `raft_meta` | `committed`                  | `Option<LogId<u64>>`                      |
//! | `raft_meta` | `last_purged`                | `LogId<u64>`                              |
//! | `sm`        | `RecordKey::encode()`        | `custos_model::Record`                    |
//! | `sm`        | `a/` + seq `u64` BE          | `Record::Audit` (not loaded into memory)  |
//! | `sm`        | `i/` + len `u16` BE + username + seq | empty: the audit index by user    |
//! | `sm`        | `_applied`                   | `Option<LogId<u64>>`                      |
//! | `sm`        | `_membership`                | `StoredMembership<u64, Member>`           |
//! | `snapshot`  | `current_meta`               | `SnapshotMeta<u64, Member>`               |
//! | `snapshot`  | `current_file`               | the current snapshot's file name, `String` |
//! | `snapshot`  | `installing`                 | snapshot id being installed (marker)      |
//! | `audit`     | `verified`                   | this node's verified audit checkpoint: seq and hash (local, cleared by a snapshot install) |
//!
//! Snapshot data lives beside the database, in `raft-snapshot/<n>.snap` (see `src/snapfile.rs`).
//!
//! Layout 2 (before issue #6) kept the snapshot data in the tree as one value,
//! `current_data`, a bincode `Vec<Record>`. [`open_trees`] migrates such a database: it writes
//! that value out as a snapshot file, names it in `current_file`, drops `current_data` and stamps
//! layout 3. Each step is idempotent, so a crash during the migration is finished by the next
//! open.

use crate::snapfile;
use crate::StoreError;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// On-disk layout version, stored under [`FORMAT_KEY`] in the default tree.
pub(crate) const LAYOUT_FORMAT: u32 = 3;
/// The layout [`open_trees`] migrates from: snapshot data held in the `snapshot` tree.
const LAYOUT_IN_TREE_SNAPSHOT: u32 = 2;
pub(crate) const FORMAT_KEY: &[u8] = b"_format";

pub(crate) const LOG_TREE: &str = "log";
pub(crate) const RAFT_META_TREE: &str = "raft_meta";
pub(crate) const SM_TREE: &str = "sm";
pub(crate) const SNAPSHOT_TREE: &str = "snapshot";
pub(crate) const AUDIT_TREE: &str = "audit";

pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const LAST_PURGED_KEY: &[u8] = b"last_purged";
pub(crate) const INCARNATION_KEY: &[u8] = b"incarnation";

/// State-machine metadata keys. Record keys never start with `_` (see `RecordKey::encode`).
pub(crate) const APPLIED_KEY: &[u8] = b"_applied";
pub(crate) const MEMBERSHIP_KEY: &[u8] = b"_membership";
/// The last apply's writes, replayed at open if a crash cut them short (`src/sm_writes.rs`).
pub(crate) const REDO_KEY: &[u8] = b"_redo";
pub(crate) const SM_META_PREFIX: u8 = b'_';

/// The current snapshot's meta and file name, always written together in one batch.
pub(crate) const CURRENT_META_KEY: &[u8] = b"current_meta";
pub(crate) const CURRENT_FILE_KEY: &[u8] = b"current_file";
/// Layout 2 only: the snapshot data itself (migrated to a file at open).
const LEGACY_CURRENT_DATA_KEY: &[u8] = b"current_data";
pub(crate) const INSTALLING_KEY: &[u8] = b"installing";

/// sled's page cache budget. sled's default is 1 GiB and its resident memory is known to run
/// several times over the cache size; a control plane's state is small, so 64 MiB is plenty.
pub(crate) const CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

/// How long `open` waits for sled's directory lock (see [`open_trees`]).
const LOCK_WAIT: Duration = Duration::from_secs(3);

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The open trees of one node's database.
#[derive(Clone)]
pub(crate) struct Trees {
    /// The data dir; snapshot files live in its `raft-snapshot` directory.
    pub dir: PathBuf,
    pub db: sled::Db,
    pub log: sled::Tree,
    pub raft_meta: sled::Tree,
    pub sm: sled::Tree,
    pub snapshot: sled::Tree,
    /// Local audit bookkeeping (`src/audit.rs`): never replicated, never in a snapshot.
    pub audit: sled::Tree,
}

/// Opens (or creates) the database at `dir` and checks its layout version.
///
/// Mode: sled's default `LowSpace`, set explicitly. Durability costs one fsync per append
/// anyway (≈0.2 ms here), so `HighThroughput` buys little, while a Raft log that is appended
/// and purged forever is exactly the workload where sled's space amplification bites.
pub(crate) fn open_trees(dir: &Path) -> Result<Trees, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY)
        .mode(sled::Mode::LowSpace);
    // sled finishes some IO of a dropped `Db` on its own thread pool, and those tasks keep the
    // directory's file lock for a moment. Reopening in the same process right after dropping
    // (a node restarted in-process, tests) can therefore see the lock still held: retry that
    // case briefly. Another live process holding the lock still fails, after the deadline.
    let deadline = Instant::now() + LOCK_WAIT;
    let db = loop {
        match config.open() {
            Ok(db) => break db,
            Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    };
    let found = check_format(&db, dir)?;
    let snapshot_dir = snapfile::dir_of(dir);
    std::fs::create_dir_all(&snapshot_dir).map_err(|e| {
        StoreError::SnapshotFile(snapfile::SnapshotFileError::Io {
            path: snapshot_dir.display().to_string(),
            source: e,
        })
    })?;
    let trees = Trees {
        dir: dir.to_path_buf(),
        log: db.open_tree(LOG_TREE)?,
        raft_meta: db.open_tree(RAFT_META_TREE)?,
        sm: db.open_tree(SM_TREE)?,
        snapshot: db.open_tree(SNAPSHOT_TREE)?,
        audit: db.open_tree(AUDIT_TREE)?,
        db,
    };
    if found == LAYOUT_IN_TREE_SNAPSHOT {
        migrate_from_in_tree_snapshot(&trees)?;
    }
    Ok(trees)
}

/// Layout 2 to 3: the snapshot data moves from the `snapshot` tree into a file. Decodes the
/// old value whole, once (what layout 2 did on every install and open).
fn migrate_from_in_tree_snapshot(trees: &Trees) -> Result<(), StoreError> {
    if let Some(data) = trees.snapshot.get(LEGACY_CURRENT_DATA_KEY)? {
        let records: Vec<custos_model::Record> =
            crate::codec::decode("layout-2 snapshot data", &data)?;
        drop(data);
        let dir = snapfile::dir_of(&trees.dir);
        let name = format!("{}.snap", trees.db.generate_id()?);
        let tmp = dir.join(format!("{name}.tmp"));
        snapfile::write_records(&tmp, &records)?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| {
            StoreError::SnapshotFile(snapfile::SnapshotFileError::Io {
                path: tmp.display().to_string(),
                source: e,
            })
        })?;
        snapfile::sync_dir(&dir)?;
        let mut batch = sled::Batch::default();
        batch.insert(
            CURRENT_FILE_KEY,
            crate::codec::encode("snapshot file", &name)?,
        );
        batch.remove(LEGACY_CURRENT_DATA_KEY);
        trees.snapshot.apply_batch(batch)?;
        trees.db.flush()?;
        tracing::info!(file = %name, records = records.len(), "moved the snapshot data into a file (layout 2 to 3)");
    }
    trees
        .db
        .insert(FORMAT_KEY, &LAYOUT_FORMAT.to_be_bytes()[..])?;
    trees.db.flush()?;
    Ok(())
}

/// Refuses a database written by another layout version (but the one [`open_trees`] migrates),
/// or one that holds data without our marker; stamps a fresh database. Returns the version found.
fn check_format(db: &sled::Db, dir: &Path) -> Result<u32, StoreError> {
    match db.get(FORMAT_KEY)? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::CorruptFormatMarker {
                    path: dir.to_path_buf(),
                })?;
            if found != LAYOUT_FORMAT && found != LAYOUT_IN_TREE_SNAPSHOT {
                return Err(StoreError::UnsupportedFormat {
                    path: dir.to_path_buf(),
                    found,
                    expected: LAYOUT_FORMAT,
                });
            }
            Ok(found)
        }
        None => {
            let default_name: &[u8] = b"__sled__default";
            let mut has_data = !db.is_empty();
            for name in db.tree_names() {
                if name.as_ref() != default_name && !db.open_tree(&name)?.is_empty() {
                    has_data = true;
                }
            }
            if has_data {
                return Err(StoreError::ForeignData {
                    path: dir.to_path_buf(),
                });
            }
            db.insert(FORMAT_KEY, &LAYOUT_FORMAT.to_be_bytes()[..])?;
            db.flush()?;
            Ok(LAYOUT_FORMAT)
        }
    }
}
