//! An `ipam_core::Store` on redb. (Being written: the API below is what the binaries use.)
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use ipam_core::store::{Key, Prefix, Record, Transaction, Versioned};
use ipam_core::{Store, StoreError};

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// How long to wait for other processes holding the store before failing as busy.
    pub lock_wait: Duration,
}

/// A store in `DIR/store.redb`, held exclusively (flock on `DIR/lock`) while open.
pub struct RedbStore {}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir`, waiting up to `options.lock_wait` for
    /// other processes.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<RedbStore, StoreError> {
        let _ = (dir, options);
        todo!()
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let _ = key;
        todo!()
    }
    async fn scan(&self, prefix: &Prefix) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let _ = prefix;
        todo!()
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let _ = txn;
        todo!()
    }
}
