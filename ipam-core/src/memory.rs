//! An in-memory [`Store`]: for tests, benchmarks and embedding in a single process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::store::{Key, Op, Prefix, Record, Store, Transaction, Version, Versioned};

/// A [`Store`] that keeps records in a `BTreeMap` behind a mutex. Nothing survives the
/// process.
///
/// Keys are kept in their encoded form, so scans exercise the same ordering as the byte
/// backends.
///
/// ```
/// use ipam_core::{Ipam, MemoryStore};
/// let ipam = Ipam::new(MemoryStore::new());
/// let pools = pollster::block_on(ipam.pools()).unwrap();
/// assert!(pools.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_version: u64,
    records: BTreeMap<Vec<u8>, (Key, Versioned<Record>)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied transaction: commit
        // checks everything before it writes anything.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        Ok(self
            .lock()
            .records
            .get(&key.encode())
            .map(|(_, v)| v.clone()))
    }

    async fn scan(&self, prefix: &Prefix) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let p = prefix.encode();
        Ok(self
            .lock()
            .records
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .map(|(_, (key, v))| (key.clone(), v.clone()))
            .collect())
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for op in txn.ops() {
            let current = inner
                .records
                .get(&op.key().encode())
                .map(|(_, v)| v.version);
            if !op.expect().holds(current) {
                return Err(StoreError::Conflict {
                    key: op.key().to_string(),
                });
            }
        }
        inner.next_version += 1;
        let version = Version(inner.next_version);
        for op in txn.into_ops() {
            match op {
                Op::Check { .. } => {}
                Op::Put { key, record, .. } => {
                    inner.records.insert(
                        key.encode(),
                        (
                            key,
                            Versioned {
                                value: *record,
                                version,
                            },
                        ),
                    );
                }
                Op::Delete { key, .. } => {
                    inner.records.remove(&key.encode());
                }
            }
        }
        Ok(())
    }
}
