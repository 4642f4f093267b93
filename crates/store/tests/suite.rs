//! openraft's own storage conformance suite (`openraft::testing::log::Suite`) against the sled
//! store.

use custos_store::{LogStore, StateMachineStore, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;

/// Opens a fresh store in its own temporary directory; the directory lives as long as the guard.
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageError::from_io_error(
                ErrorSubject::Store,
                ErrorVerb::Write,
                std::io::Error::other(e.to_string()),
            )
        };
        let dir = tempfile::tempdir().map_err(|e| failed(&e))?;
        let (log, sm) = custos_store::open(dir.path())
            .await
            .map_err(|e| failed(&e))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder).await {
        panic!("openraft storage suite: {e}");
    }
}
