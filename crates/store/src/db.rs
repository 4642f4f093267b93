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
//! | `snapshot`  | `current_data`               | snapshot data: `Vec<Record>` (audit included) |
//! | `snapshot`  | `installing`                 | snapshot id being installed (marker)      |

use crate::StoreError;
use std::path::Path;
use std::time::{Duration, Instant};

/// On-disk layout version, stored under [`FORMAT_KEY`] in the default tree.
pub(crate) const LAYOUT_FORMAT: u32 = 2;
pub(crate) const FORMAT_KEY: &[u8] = b"_format";

pub(crate) const LOG_TREE: &str = "log";
pub(crate) const RAFT_META_TREE: &str = "raft_meta";
pub(crate) const SM_TREE: &str = "sm";
pub(crate) const SNAPSHOT_TREE: &str = "snapshot";

pub(crate) const VOTE_KEY: &[u8] = b"vote";
pub(crate) const COMMITTED_KEY: &[u8] = b"committed";
pub(crate) const LAST_PURGED_KEY: &[u8] = b"last_purged";
pub(crate) const INCARNATION_KEY: &[u8] = b"incarnation";

/// State-machine metadata keys. Record keys never start with `_` (see `RecordKey::encode`).
pub(crate) const APPLIED_KEY: &[u8] = b"_applied";
pub(crate) const MEMBERSHIP_KEY: &[u8] = b"_membership";
pub(crate) const SM_META_PREFIX: u8 = b'_';

/// The current snapshot's meta and data, always written together in one batch.
pub(crate) const CURRENT_META_KEY: &[u8] = b"current_meta";
pub(crate) const CURRENT_DATA_KEY: &[u8] = b"current_data";
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
    pub db: sled::Db,
    pub log: sled::Tree,
    pub raft_meta: sled::Tree,
    pub sm: sled::Tree,
    pub snapshot: sled::Tree,
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
    check_format(&db, dir)?;
    let trees = Trees {
        log: db.open_tree(LOG_TREE)?,
        raft_meta: db.open_tree(RAFT_META_TREE)?,
        sm: db.open_tree(SM_TREE)?,
        snapshot: db.open_tree(SNAPSHOT_TREE)?,
        db,
    };
    Ok(trees)
}

/// Refuses a database written by another layout version, or one that holds data without our
/// marker; stamps a fresh database.
fn check_format(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    match db.get(FORMAT_KEY)? {
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::CorruptFormatMarker {
                    path: dir.to_path_buf(),
                })?;
            if found != LAYOUT_FORMAT {
                return Err(StoreError::UnsupportedFormat {
                    path: dir.to_path_buf(),
                    found,
                    expected: LAYOUT_FORMAT,
                });
            }
            Ok(())
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
            Ok(())
        }
    }
}
