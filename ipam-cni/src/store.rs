//! Opening the store that a network configuration or an `ipamctl` flag names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::{Store, StoreError};

/// The default data directory, as host-local's is `/var/lib/cni/networks`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/ipam-cni";

/// How long a process waits for others holding an embedded store before failing as busy
/// (CNI code 11). A runtime starting many Pods at once serializes them here.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Which backend holds the state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// redb in the data directory (the default).
    #[default]
    Redb,
    /// sled in the data directory.
    Sled,
    /// Kubernetes CRDs through a kubeconfig.
    Kubernetes {
        /// The kubeconfig; the usual discovery when absent.
        kubeconfig: Option<PathBuf>,
    },
}

/// Opens the chosen store in `data_dir`, waiting up to `lock_wait` for other processes.
pub fn open(
    choice: &StoreChoice,
    data_dir: &Path,
    lock_wait: Duration,
) -> Result<Box<dyn Store>, StoreError> {
    match choice {
        StoreChoice::Redb => Ok(Box::new(ipam_redb::RedbStore::open(
            data_dir,
            &ipam_redb::OpenOptions { lock_wait },
        )?)),
        #[cfg(feature = "sled")]
        StoreChoice::Sled => Ok(Box::new(ipam_sled::SledStore::open(
            data_dir,
            &ipam_sled::OpenOptions { lock_wait },
        )?)),
        #[cfg(not(feature = "sled"))]
        StoreChoice::Sled => Err(unsupported("sled", "build with the `sled` feature")),
        StoreChoice::Kubernetes { .. } => Err(unsupported(
            "kubernetes",
            "this build has no Kubernetes backend; use \"redb\" or \"sled\"",
        )),
    }
}

fn unsupported(what: &str, hint: &str) -> StoreError {
    StoreError::Io {
        context: format!("store {what:?}"),
        source: hint.into(),
    }
}
