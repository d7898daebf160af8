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
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::addr::Family;
use crate::block::BlockRecord;
use crate::error::StoreError;
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, IpPoolSpec, PoolState};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::set::IntervalSet;

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

/// Where a record lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An IPPool.
    Pool(ObjectName),
    /// A ReservedIP.
    ReservedIp(ObjectName),
    /// The union of all ReservedIPs; rewritten with every ReservedIP change, and read by
    /// every allocation.
    ReservedSummary,
    /// One block of the store-wide number line of a family: who holds each address of the
    /// window `index << BLOCK_BITS ..`. The only record that decides who holds an address.
    Block {
        /// The family.
        family: Family,
        /// The block index (`address >> BLOCK_BITS`).
        index: u128,
    },
    /// Where a pool's round-robin search starts next, for one node (`node`) or for every
    /// process (`None`). A hint: written without precondition, never trusted for anything but
    /// where to start looking.
    Cursor {
        /// The pool.
        pool: ObjectName,
        /// The node whose search it is, where processes of many nodes share the store.
        node: Option<ObjectName>,
    },
    /// The pools' guard: the addresses every applied pool lists ([`PoolRanges`]). An apply
    /// checks new pools against it and writes it, by compare-and-swap, before the pools
    /// themselves; a deletion removes its pool after deleting it. So two applies that would
    /// overlap cannot both land, even on a store whose only atomic operation is a write of
    /// one object: the second to write the guard fails and checks again.
    PoolGuard,
    /// A secondary index: the addresses one owner was given, on every network. Written
    /// before the blocks on allocation and after them on release, so it may list an
    /// address its owner does not hold (after a crash), never miss one it does; readers
    /// check each entry against its block.
    Owner(Owner),
}

/// A range of keys read together by [`Store::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// Every IPPool.
    Pools,
    /// Every ReservedIP.
    ReservedIps,
    /// The blocks of one family with indexes in `first..=last`.
    Blocks {
        /// The family.
        family: Family,
        /// The first block index.
        first: u128,
        /// The last block index.
        last: u128,
    },
    /// Every owner index record.
    Owners,
    /// Every cursor.
    Cursors,
}

impl KeyRange {
    /// Every block of `family`.
    pub fn all_blocks(family: Family) -> KeyRange {
        KeyRange::Blocks {
            family,
            first: 0,
            last: family.max_value() >> crate::alloc::BLOCK_BITS,
        }
    }

    /// The blocks that cover the addresses `first..=last` of `family`.
    pub fn blocks_covering(family: Family, first: u128, last: u128) -> KeyRange {
        KeyRange::Blocks {
            family,
            first: crate::alloc::block_index(first),
            last: crate::alloc::block_index(last),
        }
    }
}

/// One allocation: an address held by an owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The address.
    pub address: IpAddr,
    /// The pool it came from.
    pub pool: ObjectName,
    /// The network (CNI `name`) it was allocated for.
    pub network: String,
    /// Who holds it.
    pub owner: Owner,
    /// The Pod, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The node whose process took it, where nodes share the store (see
    /// [`Holder::node`](crate::block::Holder::node)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectName>,
}

/// The Pod an allocation was made for: what the runtime said of it (`K8S_POD_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// `metadata.namespace`, where given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One entry of an owner's index: an address it was given on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The network (CNI `name`).
    pub network: String,
    /// The address.
    pub address: IpAddr,
}

/// An object a store holds under a key but cannot read as that key's record: it was written
/// around the project's checks (with kubectl). The store still gives its version, so that it
/// can be replaced or deleted by compare-and-swap; readers that need its content fail with
/// [`StoreError::Invalid`], and nothing it might cover is handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRecord {
    /// The object, as the store names it (`reservedips/r-guard`).
    pub object: String,
    /// What is wrong with it, naming the field.
    pub reason: String,
}

/// A stored value.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Under [`Key::Pool`].
    Pool(IpPool),
    /// Under [`Key::ReservedIp`].
    ReservedIp(ReservedIp),
    /// Under [`Key::ReservedSummary`].
    ReservedSummary(FamilySets),
    /// Under [`Key::Block`].
    Block(BlockRecord),
    /// Under [`Key::Cursor`].
    Cursor(u128),
    /// Under [`Key::Owner`]: what the owner was given.
    Owner(Vec<Held>),
    /// Under [`Key::PoolGuard`].
    PoolRanges(PoolRanges),
    /// Under any key: an object that is there but does not read as its record. Only a store
    /// whose objects others may write (Kubernetes) returns it; it is never written.
    Invalid(InvalidRecord),
}

/// The addresses each applied pool lists, by pool: what the pools' guard ([`Key::PoolGuard`])
/// holds. An entry may outlive its pool (a deletion that stopped before removing it): it
/// then still keeps overlapping pools out, until that name is deleted again or re-applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolRanges(pub std::collections::BTreeMap<ObjectName, (Family, IntervalSet)>);

/// A type kept in the store as one [`Record`] variant: lets readers ask for the type they
/// expect and treat any other variant under that key as corruption.
pub trait FromRecord: Sized {
    /// What the record is called in messages ("a pool", "a block", ...).
    const KIND: &'static str;
    /// The value, if `record` is of this kind.
    fn from_record(record: Record) -> Option<Self>;
}

macro_rules! from_record {
    ($ty:ty, $variant:ident, $kind:literal) => {
        impl FromRecord for $ty {
            const KIND: &'static str = $kind;
            fn from_record(record: Record) -> Option<Self> {
                match record {
                    Record::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

from_record!(IpPool, Pool, "a pool");
from_record!(ReservedIp, ReservedIp, "a reservedip");
from_record!(FamilySets, ReservedSummary, "a reservation summary");
from_record!(BlockRecord, Block, "a block");
from_record!(u128, Cursor, "a cursor");
from_record!(Vec<Held>, Owner, "an owner index");
from_record!(PoolRanges, PoolRanges, "the pools' guard");

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
            fn record_size(&self, key: &Key, record: &Record) -> Option<RecordSize> {
                (**self).record_size(key, record)
            }
        }
    };
}

forward_store!(Box<S>);
forward_store!(std::sync::Arc<S>);

// ---- byte encoding, for backends that store bytes ------------------------------------------

const TAG_POOL: u8 = b'p';
const TAG_RESERVED: u8 = b'r';
const TAG_SUMMARY: u8 = b's';
const TAG_BLOCK: u8 = b'B';
const TAG_CURSOR: u8 = b'c';
const TAG_OWNER: u8 = b'i';
const TAG_GUARD: u8 = b'g';

impl Key {
    /// The key as bytes. Names never contain a NUL byte, which separates fields; numbers are
    /// big-endian, so blocks sort by address.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        match self {
            Key::Pool(name) => tagged(&mut out, TAG_POOL, name.as_str()),
            Key::ReservedIp(name) => tagged(&mut out, TAG_RESERVED, name.as_str()),
            Key::ReservedSummary => out.push(TAG_SUMMARY),
            Key::PoolGuard => out.push(TAG_GUARD),
            Key::Block { family, index } => block_key(&mut out, *family, *index),
            Key::Cursor { pool, node } => {
                tagged(&mut out, TAG_CURSOR, pool.as_str());
                if let Some(node) = node {
                    out.push(0);
                    out.extend_from_slice(node.as_str().as_bytes());
                }
            }
            Key::Owner(owner) => {
                tagged(&mut out, TAG_OWNER, owner.container_id());
                out.push(0);
                out.extend_from_slice(owner.ifname().as_bytes());
            }
        }
        out
    }

    /// Reads [`Key::encode`] output.
    pub fn decode(bytes: &[u8]) -> Result<Key, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(bytes).into_owned(),
            reason: reason.to_owned(),
        };
        let (&tag, rest) = bytes.split_first().ok_or_else(|| corrupt("empty key"))?;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("not UTF-8"));
        let name = |b: &[u8]| ObjectName::new(text(b)?).map_err(|e| corrupt(&e.to_string()));
        Ok(match tag {
            TAG_POOL => Key::Pool(name(rest)?),
            TAG_RESERVED => Key::ReservedIp(name(rest)?),
            TAG_SUMMARY if rest.is_empty() => Key::ReservedSummary,
            TAG_GUARD if rest.is_empty() => Key::PoolGuard,
            TAG_CURSOR => match rest.iter().position(|&c| c == 0) {
                None => Key::Cursor {
                    pool: name(rest)?,
                    node: None,
                },
                Some(i) => Key::Cursor {
                    pool: name(&rest[..i])?,
                    node: Some(name(&rest[i + 1..])?),
                },
            },
            TAG_BLOCK => {
                let (&version, index) = rest.split_first().ok_or_else(|| corrupt("no family"))?;
                let family = Family::from_version(version).ok_or_else(|| corrupt("bad family"))?;
                let index =
                    u128::from_be_bytes(index.try_into().map_err(|_| corrupt("bad block index"))?);
                if index > family.max_value() >> crate::alloc::BLOCK_BITS {
                    return Err(corrupt("block index out of range"));
                }
                Key::Block { family, index }
            }
            TAG_OWNER => {
                let i = rest
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or_else(|| corrupt("no separator"))?;
                Key::Owner(
                    Owner::new(text(&rest[..i])?, text(&rest[i + 1..])?)
                        .map_err(|e| corrupt(&e.to_string()))?,
                )
            }
            _ => return Err(corrupt("unknown key kind")),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Pool(n) => write!(f, "ippool/{n}"),
            Key::ReservedIp(n) => write!(f, "reservedip/{n}"),
            Key::ReservedSummary => f.write_str("reserved-summary"),
            Key::PoolGuard => f.write_str("pool-guard"),
            Key::Block { family, index } => {
                let first = family.addr(index << crate::alloc::BLOCK_BITS);
                write!(
                    f,
                    "block/{first}/{}",
                    family.bits() - crate::alloc::BLOCK_BITS
                )
            }
            Key::Cursor { pool, node: None } => write!(f, "cursor/{pool}"),
            Key::Cursor {
                pool,
                node: Some(node),
            } => write!(f, "cursor/{pool}/{node}"),
            Key::Owner(o) => write!(f, "owner/{o}"),
        }
    }
}

impl KeyRange {
    /// The range as bytes `[start, end)`: exactly the encoded keys in the range lie there.
    pub fn bounds(&self) -> (Vec<u8>, Vec<u8>) {
        let whole = |tag: u8| (vec![tag], vec![tag + 1]);
        match self {
            KeyRange::Pools => whole(TAG_POOL),
            KeyRange::ReservedIps => whole(TAG_RESERVED),
            KeyRange::Owners => whole(TAG_OWNER),
            KeyRange::Cursors => whole(TAG_CURSOR),
            KeyRange::Blocks {
                family,
                first,
                last,
            } => {
                let mut start = Vec::with_capacity(18);
                block_key(&mut start, *family, *first);
                let mut end = Vec::with_capacity(18);
                match last.checked_add(1) {
                    Some(next) => block_key(&mut end, *family, next),
                    None => end.extend_from_slice(&[TAG_BLOCK, family.version() + 1]),
                }
                (start, end)
            }
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &Key) -> bool {
        match (self, key) {
            (KeyRange::Pools, Key::Pool(_))
            | (KeyRange::ReservedIps, Key::ReservedIp(_))
            | (KeyRange::Owners, Key::Owner(_))
            | (KeyRange::Cursors, Key::Cursor { .. }) => true,
            (
                KeyRange::Blocks {
                    family,
                    first,
                    last,
                },
                Key::Block { family: f, index },
            ) => f == family && (first..=last).contains(&index),
            _ => false,
        }
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, text: &str) {
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
}

fn block_key(out: &mut Vec<u8>, family: Family, index: u128) {
    out.push(TAG_BLOCK);
    out.push(family.version());
    out.extend_from_slice(&index.to_be_bytes());
}

/// The first byte of every encoded record: the version of the record format.
pub const RECORD_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct NamedSpec<S> {
    pub(crate) name: String,
    pub(crate) spec: S,
    /// A pool's state; absent for active pools and for reservations.
    #[serde(default, skip_serializing_if = "PoolState::is_active")]
    pub(crate) state: PoolState,
}

impl Record {
    /// The record as bytes: a format byte, then JSON for objects and owner indexes, a
    /// bitmap and its holders for blocks (see [`BlockRecord::to_bytes`]), and fixed-width
    /// integers for cursors and summaries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT];
        let json = |out: &mut Vec<u8>, v: &dyn erased::Json| v.write(out);
        match self {
            Record::Pool(p) => json(
                &mut out,
                &NamedSpec {
                    name: p.name().to_string(),
                    spec: p.spec().clone(),
                    state: p.state(),
                },
            ),
            Record::ReservedIp(r) => json(
                &mut out,
                &NamedSpec {
                    name: r.name().to_string(),
                    spec: r.spec().clone(),
                    state: PoolState::Active,
                },
            ),
            Record::Owner(held) => json(&mut out, held),
            Record::Cursor(c) => out.extend_from_slice(&c.to_be_bytes()),
            Record::PoolRanges(PoolRanges(pools)) => {
                out.extend_from_slice(&(pools.len() as u64).to_be_bytes());
                for (name, (family, ips)) in pools {
                    out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.push(family.version());
                    encode_intervals(&mut out, ips);
                }
            }
            Record::Invalid(r) => unreachable!("an invalid record is never written: {}", r.object),
            Record::Block(b) => out.extend_from_slice(&b.to_bytes()),
            Record::ReservedSummary(sets) => {
                for set in [&sets.v4, &sets.v6] {
                    encode_intervals(&mut out, set);
                }
            }
        }
        out
    }

    /// Reads [`Record::encode`] output stored under `key`. Never panics on foreign bytes.
    pub fn decode(key: &Key, bytes: &[u8]) -> Result<Record, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| corrupt("empty record".into()))?;
        if format != RECORD_FORMAT {
            return Err(corrupt(format!("unknown record format {format}")));
        }
        let json_err = |e: serde_json::Error| corrupt(e.to_string());
        Ok(match key {
            Key::Pool(_) => {
                let n: NamedSpec<IpPoolSpec> = serde_json::from_slice(body).map_err(json_err)?;
                Record::Pool(
                    IpPool::new(&n.name, n.spec)
                        .map_err(|e| corrupt(e.to_string()))?
                        .with_state(n.state),
                )
            }
            Key::ReservedIp(_) => {
                let n: NamedSpec<ReservedIpSpec> =
                    serde_json::from_slice(body).map_err(json_err)?;
                Record::ReservedIp(
                    ReservedIp::new(&n.name, n.spec).map_err(|e| corrupt(e.to_string()))?,
                )
            }
            Key::Owner(_) => Record::Owner(serde_json::from_slice(body).map_err(json_err)?),
            Key::Cursor { .. } => Record::Cursor(u128::from_be_bytes(
                body.try_into()
                    .map_err(|_| corrupt("cursor is not 16 bytes".into()))?,
            )),
            Key::Block { family, index } => {
                Record::Block(BlockRecord::from_bytes(*family, *index, body).map_err(corrupt)?)
            }
            Key::ReservedSummary => Record::ReservedSummary(decode_summary(body).map_err(corrupt)?),
            Key::PoolGuard => Record::PoolRanges(decode_pool_ranges(body).map_err(corrupt)?),
        })
    }
}

fn encode_intervals(out: &mut Vec<u8>, set: &IntervalSet) {
    out.extend_from_slice(&(set.intervals().len() as u64).to_be_bytes());
    for &(a, b) in set.intervals() {
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
}

/// Reads what [`encode_intervals`] wrote at the start of `bytes`; the rest after it.
fn decode_intervals(bytes: &[u8]) -> Result<(IntervalSet, &[u8]), String> {
    let (n, rest) = take_u64(bytes).ok_or("truncated")?;
    let n = usize::try_from(n).map_err(|_| "bad length")?;
    if rest.len() / 32 < n {
        return Err("truncated".into());
    }
    let v = rest[..n * 32]
        .chunks_exact(32)
        .map(|chunk| {
            let a = u128::from_be_bytes(chunk[..16].try_into().expect("16 bytes"));
            let b = u128::from_be_bytes(chunk[16..].try_into().expect("16 bytes"));
            (a, b)
        })
        .collect::<Vec<_>>();
    let set = IntervalSet::try_from(v).map_err(|e| e.to_string())?;
    Ok((set, &rest[n * 32..]))
}

fn decode_summary(body: &[u8]) -> Result<FamilySets, String> {
    let (v4, rest) = decode_intervals(body)?;
    let (v6, rest) = decode_intervals(rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(FamilySets { v4, v6 })
}

fn decode_pool_ranges(body: &[u8]) -> Result<PoolRanges, String> {
    let (n, mut rest) = take_u64(body).ok_or("truncated")?;
    let mut pools = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (len, tail) = rest.split_at_checked(2).ok_or("truncated")?;
        let len = usize::from(u16::from_be_bytes(len.try_into().expect("2 bytes")));
        let (name, tail) = tail.split_at_checked(len).ok_or("truncated")?;
        let name = std::str::from_utf8(name).map_err(|_| "a name is not UTF-8")?;
        let name = ObjectName::new(name).map_err(|e| e.to_string())?;
        let (&version, tail) = tail.split_first().ok_or("truncated")?;
        let family = Family::from_version(version).ok_or("bad family")?;
        let (ips, tail) = decode_intervals(tail)?;
        pools.insert(name, (family, ips));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(PoolRanges(pools))
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, tail) = bytes.split_at_checked(8)?;
    Some((u64::from_be_bytes(head.try_into().ok()?), tail))
}

/// Object-safe JSON writing, so `Record::encode` can treat its JSON bodies alike.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).expect("records serialize to JSON");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::BLOCK_BITS;
    use crate::block::Holder;

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s).unwrap()
    }

    #[test]
    fn keys_round_trip_and_sort_within_their_range() {
        let v4_block = |a: u32| Key::Block {
            family: Family::V4,
            index: u128::from(a) >> BLOCK_BITS,
        };
        let keys = [
            Key::Pool(name("a")),
            Key::ReservedIp(name("r-1")),
            Key::ReservedSummary,
            v4_block(0x0a06_0000),
            Key::Block {
                family: Family::V6,
                index: u128::MAX >> BLOCK_BITS,
            },
            Key::Cursor {
                pool: name("a"),
                node: None,
            },
            Key::Cursor {
                pool: name("a"),
                node: Some(name("node-1")),
            },
            Key::Owner(Owner::new("c1", "eth0").unwrap()),
            Key::PoolGuard,
        ];
        for key in &keys {
            assert_eq!(&Key::decode(&key.encode()).unwrap(), key);
        }
        let in_range = |range: &KeyRange, key: &Key| {
            let (start, end) = range.bounds();
            let bytes = key.encode();
            let by_bytes = start <= bytes && bytes < end;
            assert_eq!(by_bytes, range.contains(key), "{range:?} {key}");
            by_bytes
        };
        let slash16 = KeyRange::blocks_covering(Family::V4, 0x0a06_0000, 0x0a06_ffff);
        assert!(in_range(&slash16, &v4_block(0x0a06_0000)));
        assert!(in_range(&slash16, &v4_block(0x0a06_ffff)));
        assert!(!in_range(&slash16, &v4_block(0x0a07_0000)));
        assert!(!in_range(&slash16, &v4_block(0x0a05_ffff)));
        assert!(!in_range(&KeyRange::all_blocks(Family::V4), &keys[4]));
        assert!(in_range(&KeyRange::all_blocks(Family::V6), &keys[4]));
        for key in &keys {
            in_range(&KeyRange::Pools, key);
            in_range(&KeyRange::Owners, key);
            in_range(&KeyRange::Cursors, key);
            in_range(&KeyRange::all_blocks(Family::V6), key);
        }
        for bad in [&b""[..], b"x", b"pbad/name", b"B\x04", b"B\x05", b"i"] {
            assert!(Key::decode(bad).is_err(), "{bad:?}");
        }
        let mut too_high = vec![TAG_BLOCK, 4];
        too_high.extend_from_slice(&(1u128 << 32).to_be_bytes());
        assert!(Key::decode(&too_high).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_foreign_bytes() {
        let pool = IpPool::new(
            "p",
            IpPoolSpec {
                subnet: "10.6.0.0/16".into(),
                ips: vec!["10.6.0.0/24".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let summary = FamilySets {
            v4: IntervalSet::from_intervals([(1, 2), (5, 9)]),
            v6: IntervalSet::from_intervals([(0, u128::MAX - 1)]),
        };
        let index = 0x0a06_0007u128 >> BLOCK_BITS;
        let mut block = BlockRecord::new(Family::V4, index);
        block.insert(
            0x0a06_0007,
            Holder {
                owner: Owner::new("c1", "eth0").unwrap(),
                network: "net1".into(),
                pool: name("p"),
                pod: Some(PodRef {
                    namespace: Some("default".into()),
                    name: "web".into(),
                    uid: None,
                }),
                node: Some(name("node-1")),
            },
        );
        let held = vec![Held {
            network: "net1".into(),
            address: "10.6.0.7".parse().unwrap(),
        }];
        let cases = [
            (Key::Pool(name("p")), Record::Pool(pool)),
            (Key::ReservedSummary, Record::ReservedSummary(summary)),
            (
                Key::Cursor {
                    pool: name("p"),
                    node: Some(name("n1")),
                },
                Record::Cursor(0x0a06_0008),
            ),
            (
                Key::Block {
                    family: Family::V4,
                    index,
                },
                Record::Block(block),
            ),
            (
                Key::Owner(Owner::new("c1", "eth0").unwrap()),
                Record::Owner(held),
            ),
            (
                Key::PoolGuard,
                Record::PoolRanges(PoolRanges(
                    [
                        (
                            name("p"),
                            (Family::V4, IntervalSet::from_intervals([(1, 2), (5, 9)])),
                        ),
                        (
                            name("q"),
                            (Family::V6, IntervalSet::from_intervals([(0, u128::MAX)])),
                        ),
                    ]
                    .into(),
                )),
            ),
        ];
        for (key, record) in &cases {
            let bytes = record.encode();
            assert_eq!(&Record::decode(key, &bytes).unwrap(), record);
            for cut in 0..bytes.len() {
                let _ = Record::decode(key, &bytes[..cut]); // must not panic
            }
            let mut future = bytes.clone();
            future[0] = 9;
            assert!(Record::decode(key, &future)
                .unwrap_err()
                .to_string()
                .contains("unknown record format 9"));
        }
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
