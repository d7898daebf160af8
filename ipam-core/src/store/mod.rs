//! The Store trait: versioned records and compare-and-swap transactions.
//!
//! A store holds typed [`Record`]s under typed [`Key`]s. Every read returns the record's
//! [`Version`]; every write is part of a [`Transaction`] whose operations each state what they
//! expect of their key ([`Expect`]). A backend applies a transaction atomically, or in order
//! one operation at a time (see [`Transaction`]), and refuses what does not meet its
//! expectation with [`StoreError::Conflict`], which the engine answers by re-reading and
//! retrying. This one model fits redb and sled transactions as well as Kubernetes
//! `resourceVersion`s.
//!
//! Allocation state is sharded into store-wide block records (`Key::Block`), each with its
//! own version, so that writers touching different blocks never conflict.
//!
//! Backends that keep bytes use [`Key::encode`], [`KeyRange::bounds`], [`Record::encode`] and
//! [`Record::decode`]: keys sort so that every [`KeyRange`] is a contiguous byte range.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::StoreError;

mod encoding;
mod key;
mod record;

pub use encoding::RECORD_FORMAT;
pub use key::{Key, KeyRange};
pub use record::{FromRecord, InvalidRecord, PoolRanges, Record};

/// The version of a stored record, assigned by the store on every write. Opaque: only
/// equality means anything (a Kubernetes `resourceVersion` is such a string; the byte
/// backends count writes).
///
/// ```
/// use ipam_core::Version;
/// assert_eq!(Version::from(7u64), Version::new("7"));
/// assert_ne!(Version::from(7u64), Version::from(8u64));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(Arc<str>);

impl Version {
    /// A version as the store spells it.
    pub fn new(text: impl Into<String>) -> Version {
        Version(Arc::from(text.into()))
    }

    /// The version as the store spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for Version {
    fn from(counter: u64) -> Version {
        Version::new(counter.to_string())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value read from a store, with the version it had.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: Version,
}

/// What an operation of a transaction expects of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Anything: no precondition.
    Any,
    /// The key holds nothing.
    Absent,
    /// The key holds a record of this version.
    Version(Version),
}

impl Expect {
    /// The expectation that a key is as it was read.
    pub fn read<T>(read: &Option<Versioned<T>>) -> Expect {
        match read {
            Some(v) => Expect::Version(v.version.clone()),
            None => Expect::Absent,
        }
    }

    /// Whether a key whose current version is `current` meets the expectation.
    pub fn holds(&self, current: Option<&Version>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        }
    }
}

/// One operation of a [`Transaction`].
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Write `record` under `key`.
    Put {
        /// The key.
        key: Key,
        /// The new record (boxed: a pool record is much larger than a key).
        record: Box<Record>,
        /// What the key must hold before.
        expect: Expect,
    },
    /// Remove `key` (nothing happens if it is absent and `expect` allows it).
    Delete {
        /// The key.
        key: Key,
        /// What the key must hold before.
        expect: Expect,
    },
}

impl Op {
    /// The key the operation is about.
    pub fn key(&self) -> &Key {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The operation's precondition.
    pub fn expect(&self) -> &Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } => expect,
        }
    }

    /// Whether the operation is a hint: an unconditioned write of a cursor, which a remote
    /// store may send alongside the write before it and which nothing relies on.
    pub fn is_hint(&self) -> bool {
        matches!(self.key(), Key::Cursor { .. }) && *self.expect() == Expect::Any
    }
}

/// Writes to one or more records, in order. At most one operation per key.
///
/// A store applies a transaction in one of two ways, and the engine is correct under both:
/// - **atomically** (redb, sled, [`MemoryStore`](crate::MemoryStore)): all operations or,
///   if any expectation fails, none;
/// - **in order** (a store whose only atomic operation is a compare-and-swap of one object,
///   such as Kubernetes): each operation as its own compare-and-swap, stopping at the first
///   that fails; the ones before it stay applied. Hints ([`Op::is_hint`]) may be sent
///   alongside the others, so a hint may land even when an operation before it fails.
///
/// So the engine orders every transaction such that each prefix of it leaves the store
/// consistent: the block that decides who holds an address is written after the owner
/// index on allocation and before it on release.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transaction {
    ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Adds a write.
    pub fn put(&mut self, key: Key, record: Record, expect: Expect) -> &mut Self {
        self.push(Op::Put {
            key,
            record: Box::new(record),
            expect,
        })
    }

    /// Adds a removal.
    pub fn delete(&mut self, key: Key, expect: Expect) -> &mut Self {
        self.push(Op::Delete { key, expect })
    }

    fn push(&mut self, op: Op) -> &mut Self {
        debug_assert!(
            self.ops.iter().all(|o| o.key() != op.key()),
            "two operations on {:?}",
            op.key()
        );
        self.ops.push(op);
        self
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Takes the operations.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// How many operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Splits the operations, in order, into transactions of at most `max` operations each
    /// (for stores that bound a transaction's size).
    pub fn chunks(self, max: usize) -> Vec<Transaction> {
        let max = max.max(1);
        let mut out = Vec::with_capacity(self.ops.len().div_ceil(max));
        let mut ops = self.ops.into_iter().peekable();
        while ops.peek().is_some() {
            out.push(Transaction {
                ops: ops.by_ref().take(max).collect(),
            });
        }
        out
    }
}

/// A place where IPAM state lives: in memory, in an embedded database, in Kubernetes.
///
/// Implementations must pass the conformance kit
/// ([`testkit`](crate::testkit), feature `testkit`) unchanged. Reads and writes are async so
/// that a remote store waits without blocking a thread; errors that may pass (a timeout, a
/// lost response, an overloaded server) are [`StoreError::Transient`], which the engine
/// retries with a bounded, jittered backoff, like [`StoreError::Conflict`].
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads one record.
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError>;

    /// Reads several records in one round trip where the store can; the answer has one entry
    /// per key, in order. The default reads them one by one.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    /// Reads every record in `range`, in key order.
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError>;

    /// Applies `txn` (atomically, or in order: see [`Transaction`]) if its expectations hold;
    /// otherwise returns [`StoreError::Conflict`]. Durable before it returns `Ok`.
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError>;

    /// The most operations one [`Store::commit`] takes; the engine splits larger work (a
    /// forced pool deletion, a large apply). Unbounded by default.
    fn max_commit_ops(&self) -> usize {
        usize::MAX
    }

    /// Whether this store keeps a cache of what it has read and written that
    /// [`Store::cached`] answers from (a long-lived process's store, such as the node
    /// agent's Kubernetes store). No store caches by default.
    ///
    /// The engine then makes the first attempt of an allocation or a release from the cache
    /// and trusts nothing of it that a compare-and-swap does not check: every block a
    /// decision rests on is written (or written back unchanged, as a guard) on the version
    /// the cache gave; an allocation reads the pools and the reservations it used afresh
    /// after its write; and an attempt that fails, conflicts, or would write nothing starts
    /// over on fresh reads.
    fn caches(&self) -> bool {
        false
    }

    /// The record under `key` as the store's cache last saw it, without I/O; `None` when the
    /// cache has nothing for the key (or there is no cache). It may be stale in any way: an
    /// older version, or a record that has since been deleted. A store that caches fills its
    /// cache from its reads ([`Store::get`], [`Store::get_many`]) and, where it can learn
    /// the new versions, from its writes.
    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        let _ = key;
        None
    }

    /// How large `record` would be written under `key`, and the most this store takes per
    /// record, where it has a limit (the Kubernetes store: etcd's request size); `None`
    /// (the default) where it has none. The engine checks every record of a transaction
    /// before it writes any, so that a record too large is refused at once, before a
    /// store of single objects has applied half of the transaction, and not retried.
    fn record_size(&self, key: &Key, record: &Record) -> Option<RecordSize> {
        let _ = (key, record);
        None
    }
}

/// A record's size as a store would write it, against that store's limit
/// ([`Store::record_size`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSize {
    /// The record's size, in bytes of the store's own encoding.
    pub size: u64,
    /// The most the store takes per record, in bytes.
    pub limit: u64,
    /// Where the limit comes from, for the message that refuses a record.
    pub why: &'static str,
}

impl RecordSize {
    /// The refusal of the record under `key`, if it is above the limit.
    pub fn check(&self, key: &Key) -> Result<(), StoreError> {
        if self.size <= self.limit {
            return Ok(());
        }
        Err(StoreError::TooLarge {
            key: key.to_string(),
            size: Some(self.size),
            limit: self.limit,
            why: self.why.to_owned(),
        })
    }
}

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<S: Store + ?Sized> Store for $ty {
            async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
                (**self).get(key).await
            }
            async fn get_many(
                &self,
                keys: &[Key],
            ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
                (**self).get_many(keys).await
            }
            async fn scan(
                &self,
                range: &KeyRange,
            ) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
                (**self).scan(range).await
            }
            async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
                (**self).commit(txn).await
            }
            fn max_commit_ops(&self) -> usize {
                (**self).max_commit_ops()
            }
            fn caches(&self) -> bool {
                (**self).caches()
            }
            fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
                (**self).cached(key)
            }
            fn record_size(&self, key: &Key, record: &Record) -> Option<RecordSize> {
                (**self).record_size(key, record)
            }
        }
    };
}

forward_store!(Box<S>);
forward_store!(std::sync::Arc<S>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::ObjectName;

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s).unwrap()
    }

    #[test]
    fn transactions_split_in_order() {
        let mut txn = Transaction::new();
        for n in ["a", "b", "c", "d", "e"] {
            txn.delete(Key::Pool(name(n)), Expect::Any);
        }
        let chunks = txn.clone().chunks(2);
        assert_eq!(
            chunks.iter().map(Transaction::len).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        let flat: Vec<Op> = chunks.into_iter().flat_map(Transaction::into_ops).collect();
        assert_eq!(flat, txn.into_ops());
    }
}
