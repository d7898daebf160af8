//! An in-memory [`Store`]: for tests, benchmarks and embedding in a single process.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use rustc_hash::FxHashMap;

use crate::error::StoreError;
use crate::store::{Key, KeyRange, Op, Record, RecordSize, Store, Transaction, Version, Versioned};

/// A [`Store`] that keeps records in memory behind a mutex. Nothing survives the process.
///
/// Keys are kept in their encoded form, so scans exercise the same ordering as the byte
/// backends. Records are found by hash and the keys are also kept in order for scans, so a
/// read or write costs the same with 60,000 records as with ten. By default a commit is atomic, as in the embedded stores; [`MemoryStore::in_order`]
/// gives a store that applies each operation as its own compare-and-swap, as a store of single
/// objects (Kubernetes) does, and [`MemoryStore::interrupt_after`] stops one mid-commit, as a
/// crash or a lost connection would: the engine must be correct under all of them.
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
    in_order: bool,
    record_limit: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    next_version: u64,
    /// By encoded key. A fast hash, not a DoS-resistant one: the keys are the engine's
    /// own records in one process.
    records: FxHashMap<Vec<u8>, (Key, Versioned<Record>)>,
    /// The keys of `records`, in byte order: what scans walk.
    order: BTreeSet<Vec<u8>>,
    /// Operations left before the next commit is cut short (`None`: never).
    interrupt_after: Option<usize>,
}

impl MemoryStore {
    /// An empty store whose commits are atomic.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store that applies a transaction's operations one by one, in order, each as
    /// its own compare-and-swap, and stops at the first whose expectation fails (the ones
    /// before it stay applied).
    pub fn in_order() -> MemoryStore {
        MemoryStore {
            in_order: true,
            ..MemoryStore::default()
        }
    }

    /// The same store, taking records of at most `limit` bytes ([`Record::encode`]), as a
    /// store with a size limit (Kubernetes) does: [`Store::record_size`] states it, and a
    /// commit that carries a larger record fails with [`StoreError::TooLarge`] at that record
    /// (after the ones before it, for an [`in_order`](MemoryStore::in_order) store).
    pub fn with_record_limit(self, limit: u64) -> MemoryStore {
        MemoryStore {
            record_limit: Some(limit),
            ..self
        }
    }

    /// After `ops` more operations are applied, cuts the commit under way short: the rest of
    /// its operations are not applied and it fails with [`StoreError::Transient`], as when a
    /// process dies or a connection drops mid-commit. Once only; an atomic store applies
    /// nothing of the commit that is cut.
    pub fn interrupt_after(&self, ops: usize) {
        self.lock().interrupt_after = Some(ops);
    }

    /// Every record, in key order: for tests that compare whole stores.
    pub fn dump(&self) -> Vec<(Key, Record)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .map(|bytes| {
                let (k, v) = &inner.records[bytes];
                (k.clone(), v.value.clone())
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied operation: each one is
        // checked before anything of it is written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn version_of(&self, key: &Key) -> Option<&Version> {
        self.records.get(&key.encode()).map(|(_, v)| &v.version)
    }

    fn check(&self, op: &Op) -> Result<(), StoreError> {
        if op.expect().holds(self.version_of(op.key())) {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: op.key().to_string(),
            })
        }
    }

    fn apply(&mut self, op: Op) {
        self.next_version += 1;
        let version = Version::from(self.next_version);
        match op {
            Op::Put { key, record, .. } => {
                let value = Versioned {
                    value: *record,
                    version,
                };
                let bytes = key.encode();
                if let Some(slot) = self.records.get_mut(&bytes) {
                    *slot = (key, value);
                } else {
                    self.order.insert(bytes.clone());
                    self.records.insert(bytes, (key, value));
                }
            }
            Op::Delete { key, .. } => {
                let bytes = key.encode();
                if self.records.remove(&bytes).is_some() {
                    self.order.remove(&bytes);
                }
            }
        }
    }

    /// Counts one operation against a pending interruption; true when it must not happen.
    fn interrupted(&mut self) -> bool {
        match self.interrupt_after {
            Some(0) => {
                self.interrupt_after = None;
                true
            }
            Some(n) => {
                self.interrupt_after = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

fn cut_short() -> StoreError {
    StoreError::Transient {
        context: "commit cut short (simulated crash)".into(),
        source: "interrupted".into(),
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

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|k| inner.records.get(&k.encode()).map(|(_, v)| v.clone()))
            .collect())
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let (start, end) = range.bounds();
        let inner = self.lock();
        Ok(inner
            .order
            .range(start..end)
            .map(|bytes| {
                let (key, v) = &inner.records[bytes];
                (key.clone(), v.clone())
            })
            .collect())
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if self.in_order {
            for op in txn.into_ops() {
                if inner.interrupted() {
                    return Err(cut_short());
                }
                inner.check(&op)?;
                self.check_size(&op)?;
                inner.apply(op);
            }
            return Ok(());
        }
        for op in txn.ops() {
            inner.check(op)?;
            self.check_size(op)?;
        }
        // An atomic store cut short applies nothing.
        for _ in txn.ops() {
            if inner.interrupted() {
                return Err(cut_short());
            }
        }
        for op in txn.into_ops() {
            inner.apply(op);
        }
        Ok(())
    }

    fn record_size(&self, _key: &Key, record: &Record) -> Option<RecordSize> {
        let limit = self.record_limit?;
        Some(RecordSize {
            size: record.encode().len() as u64,
            limit,
            why: "the in-memory store's configured limit",
        })
    }
}

impl MemoryStore {
    /// Refuses a put above the record limit, as a store with one does when it gets it.
    fn check_size(&self, op: &Op) -> Result<(), StoreError> {
        match op {
            Op::Put { key, record, .. } => match self.record_size(key, record) {
                Some(size) => size.check(key),
                None => Ok(()),
            },
            Op::Delete { .. } => Ok(()),
        }
    }
}
