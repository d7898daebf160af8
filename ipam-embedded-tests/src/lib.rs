//! Shared pieces of the multi-process tests: which backend, and how a child process opens it.
//!
//! The tests in `tests/processes.rs` re-run their own test binary as child processes (the
//! ignored test `child`), so that each child is a real, separate process that opens the
//! store, does one operation and exits, as a CNI call does.

use std::path::Path;
use std::time::Duration;

use ipam_core::{Store, StoreError};

/// An embedded backend under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ipam-redb.
    Redb,
    /// ipam-sled.
    Sled,
}

impl Backend {
    /// Both backends.
    pub const ALL: [Backend; 2] = [Backend::Redb, Backend::Sled];

    /// Its name, as the CNI configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
        }
    }

    /// The backend of a name.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Opens the store in `dir`, waiting up to `wait` for other processes.
    pub fn open(self, dir: &Path, wait: Duration) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Backend::Redb => Box::new(ipam_redb::RedbStore::open(
                dir,
                &ipam_redb::OpenOptions { lock_wait: wait },
            )?),
            Backend::Sled => Box::new(ipam_sled::SledStore::open(
                dir,
                &ipam_sled::OpenOptions { lock_wait: wait },
            )?),
        })
    }
}
