//! custos storage: the openraft (0.10) log store and state machine on sled 0.34.
//!
//! One `sled::Db` per node holds the Raft log, the vote and log pointers, the state machine's
//! records with its applied log id and membership, and the current snapshot's meta; the snapshot
//! data is a file beside it (`raft-snapshot/`, framed record by record: `src/snapfile.rs`). The
//! key layout is documented in `src/db.rs`; durability and atomicity rules in [`log_store`] and
//! [`state_machine`].
//!
//! The server opens the store with [`open`], hands both halves to [`Raft::new`](openraft::Raft)
//! and reads the applied state through [`StateMachineStore::state`].

pub mod audit;
pub mod backup;
mod codec;
mod db;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod log_store;
mod sm_writes;
mod snapfile;
pub mod state_machine;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

pub use audit::{AuditLog, AuditPage, AuditVerification};
pub use backup::{restore, Backup, BackupHeader, BackupSource, BACKUP_FORMAT};
pub use codec::CodecError;
pub use log_store::LogStore;
pub use snapfile::SnapshotFileError;
pub use state_machine::{SharedState, SnapshotBuilder, SnapshotInbox, StateMachineStore};

openraft::declare_raft_types!(
    /// custos's openraft type configuration.
    pub TypeConfig:
        D = custos_model::Command,
        R = custos_model::Outcome,
        NodeId = u64,
        Node = Member,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log id under custos' type configuration.
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A Raft vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// The leader id inside votes and log ids (openraft's default: term and node).
pub type LeaderId = openraft::type_config::alias::LeaderIdOf<TypeConfig>;
/// A Raft log entry.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A membership config with the log id that installed it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata: last log id and membership.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its meta and its file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, tokio::fs::File>;
/// Raft metrics under custos' type configuration.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// The log id of `index` written by the leader of `term` (`node`).
pub fn log_id(term: u64, node: u64, index: u64) -> LogId {
    use openraft::vote::RaftLeaderIdExt;
    openraft::LogId::new(LeaderId::new_committed(term, node), index)
}

/// A cluster member as openraft stores it in membership configs.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Address of the Raft peer service, `host:port`.
    pub raft_addr: String,
    /// Address of the client-facing SDK service, `host:port`.
    pub sdk_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} sdk={}", self.raft_addr, self.sdk_addr)
    }
}

/// The Raft node type of custos.
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;

/// Errors of [`open`]. Errors during operation are `std::io::Error`s, as openraft's storage
/// traits take them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening sled database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(
        "data dir {path} has custos store format version {found}; this build reads version \
         {expected} only (refusing to open)"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("data dir {path}: the custos store format marker is unreadable")]
    CorruptFormatMarker { path: PathBuf },
    #[error(
        "data dir {path} holds a sled database without a custos format marker (refusing to open)"
    )]
    ForeignData { path: PathBuf },
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    SnapshotFile(#[from] SnapshotFileError),
    #[error("inconsistent store: {0}")]
    Inconsistent(String),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("backup: {0}")]
    Backup(String),
}

/// Opens (creating if needed) the store of one node at `dir`.
///
/// Recovers on the way: finishes an interrupted snapshot install, rebuilds the in-memory
/// [`custos_model::State`] from the state-machine tree, and loads the applied log id and
/// membership. The blocking sled work runs on tokio's blocking pool.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let trees = db::open_trees(&dir)?;
        let sm = StateMachineStore::load(trees.clone())?;
        let log = LogStore::new(trees)?;
        let last_purged = log.last_purged_blocking()?;
        let applied = sm.applied_blocking();
        if last_purged.is_some() && applied < last_purged {
            return Err(StoreError::Inconsistent(format!(
                "applied log id {applied:?} is behind the purged log id {last_purged:?}: the \
                 entries in between are gone"
            )));
        }
        Ok((log, sm))
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
}

/// A storage fault as openraft's storage traits report it: what was being done, and why.
pub(crate) fn io_err(what: &str, e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}
