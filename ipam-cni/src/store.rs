//! Opening the store that a network configuration or an `ipamctl` flag names.
//!
//! A [`StoreChoice`] can only name a backend this build has: a store the contract names but
//! the build lacks (Kubernetes, or sled without its feature) is refused with [`NotBuilt`]
//! when the configuration or the command line is read, never as a failure to open it.

use std::path::Path;
use std::time::Duration;

use ipam_core::{Store, StoreError};

/// The default data directory, as host-local's is `/var/lib/cni/networks`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/ipam-cni";

/// How long a process waits for others holding an embedded store before failing as busy
/// (CNI code 11). A runtime starting many Pods at once serializes them here.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Which backend holds the state: one of those built in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// redb in the data directory (the default).
    #[default]
    Redb,
    /// sled in the data directory.
    #[cfg(feature = "sled")]
    Sled,
}

/// A store kind the contract names but this build does not have. It is a mistake in the
/// configuration (CNI code 7) or the command line (`ipamctl` exit 1): nothing was tried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this build has no {what} backend{reason}; use {instead}")]
pub struct NotBuilt {
    /// The backend (`Kubernetes`, `sled`).
    pub what: &'static str,
    /// Why it is missing, as it continues the sentence (` yet`).
    pub reason: &'static str,
    /// What to use instead, quoted as the caller's syntax quotes values.
    pub instead: String,
}

/// How the caller writes store names in its advice: the CNI configuration quotes JSON
/// strings, the command line does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `"redb"`, as in a network configuration.
    Json,
    /// `redb`, as in `--store redb`.
    Flag,
}

impl Syntax {
    fn alternatives(self) -> String {
        let names: &[&str] = if cfg!(feature = "sled") {
            &["redb", "sled"]
        } else {
            &["redb"]
        };
        let quoted: Vec<String> = names
            .iter()
            .map(|n| match self {
                Syntax::Json => format!("{n:?}"),
                Syntax::Flag => (*n).to_owned(),
            })
            .collect();
        quoted.join(" or ")
    }
}

/// The sled store, if this build has it (the `sled` feature, on by default).
pub fn sled(syntax: Syntax) -> Result<StoreChoice, NotBuilt> {
    #[cfg(feature = "sled")]
    {
        let _ = syntax;
        Ok(StoreChoice::Sled)
    }
    #[cfg(not(feature = "sled"))]
    Err(NotBuilt {
        what: "sled",
        reason: " (it needs the `sled` feature)",
        instead: syntax.alternatives(),
    })
}

/// The Kubernetes store (custom resources through `kubeconfig`, or the usual discovery when
/// absent). The contract names it, but this build has no backend for it yet.
pub fn kubernetes(_kubeconfig: Option<&Path>, syntax: Syntax) -> Result<StoreChoice, NotBuilt> {
    Err(NotBuilt {
        what: "Kubernetes",
        reason: " yet",
        instead: syntax.alternatives(),
    })
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
    }
}

// The advice lists the stores of the default build.
#[cfg(all(test, feature = "sled"))]
mod tests {
    use super::*;

    #[test]
    fn stores_not_built_say_what_to_use() {
        assert_eq!(
            kubernetes(None, Syntax::Json).unwrap_err().to_string(),
            r#"this build has no Kubernetes backend yet; use "redb" or "sled""#
        );
        assert_eq!(
            kubernetes(Some(Path::new("/k")), Syntax::Flag)
                .unwrap_err()
                .to_string(),
            "this build has no Kubernetes backend yet; use redb or sled"
        );
        assert!(sled(Syntax::Flag).is_ok());
    }
}
