//! The Store trait: versioned records and compare-and-swap transactions.
//!
//! A store holds typed [`Record`]s under typed [`Key`]s. Every read returns the record's
//! [`Version`]; every write is part of a [`Transaction`] whose operations each state what they
//! expect of their key ([`Expect`]). A backend applies a transaction atomically if every
//! expectation holds and otherwise refuses it with [`StoreError::Conflict`], which the engine
//! answers by re-reading and retrying. This one model fits redb and sled transactions as
//! well as Kubernetes `resourceVersion`s.
//!
//! Allocation state is sharded into per-block records (`Key::Block`), each with its own
//! version, so that writers touching different blocks of one pool never conflict.
//!
//! Backends that keep bytes use [`Key::encode`], [`Prefix::encode`], [`Record::encode`] and
//! [`Record::decode`]: keys sort so that every [`Prefix`] is a contiguous byte range.

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::addr::{to_u128, Family};
use crate::alloc::Block;
use crate::error::StoreError;
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, IpPoolSpec};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::set::IntervalSet;

/// The version of a stored record, assigned by the store on every write. Opaque: only
/// equality means anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

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
#[non_exhaustive]
pub enum Key {
    /// An IPPool.
    Pool(ObjectName),
    /// A ReservedIP.
    ReservedIp(ObjectName),
    /// The union of all ReservedIPs; rewritten with every ReservedIP change, and read by
    /// every allocation.
    ReservedSummary,
    /// One block of a pool's allocation bitmap: the window `index << 16 ..` of the pool's
    /// family.
    Block {
        /// The pool.
        pool: ObjectName,
        /// The block index (`address >> 16`).
        index: u128,
    },
    /// Where a pool's round-robin search starts next. A hint: written without
    /// precondition.
    Cursor(ObjectName),
    /// The allocation of one address of a pool.
    Allocation {
        /// The pool.
        pool: ObjectName,
        /// The address.
        address: IpAddr,
    },
    /// Everything one owner holds, on every network.
    Owner(Owner),
}

/// A set of keys read together by [`Store::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Prefix {
    /// Every IPPool.
    Pools,
    /// Every ReservedIP.
    ReservedIps,
    /// Every block of one pool.
    Blocks(ObjectName),
    /// Every allocation of one pool, or of all pools.
    Allocations(Option<ObjectName>),
    /// Every owner record.
    Owners,
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
}

/// The Pod an allocation was made for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A stored value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// Under [`Key::Pool`].
    Pool(IpPool),
    /// Under [`Key::ReservedIp`].
    ReservedIp(ReservedIp),
    /// Under [`Key::ReservedSummary`].
    ReservedSummary(FamilySets),
    /// Under [`Key::Block`].
    Block(Block),
    /// Under [`Key::Cursor`].
    Cursor(u128),
    /// Under [`Key::Allocation`].
    Allocation(Allocation),
    /// Under [`Key::Owner`]: the owner's allocations.
    Owner(Vec<Allocation>),
}

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
from_record!(Block, Block, "a block");
from_record!(u128, Cursor, "a cursor");
from_record!(Allocation, Allocation, "an allocation");
from_record!(Vec<Allocation>, Owner, "an owner record");

/// What an operation of a transaction expects of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
            Some(v) => Expect::Version(v.version),
            None => Expect::Absent,
        }
    }

    /// Whether a key whose current version is `current` meets the expectation.
    pub fn holds(self, current: Option<Version>) -> bool {
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
    /// Only a precondition.
    Check {
        /// The key.
        key: Key,
        /// What it must hold.
        expect: Expect,
    },
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
            Op::Check { key, .. } | Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// The operation's precondition.
    pub fn expect(&self) -> Expect {
        match self {
            Op::Check { expect, .. } | Op::Put { expect, .. } | Op::Delete { expect, .. } => {
                *expect
            }
        }
    }
}

/// Operations applied all together or not at all. At most one operation per key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transaction {
    ops: Vec<Op>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Adds a precondition.
    pub fn check(&mut self, key: Key, expect: Expect) -> &mut Self {
        self.push(Op::Check { key, expect })
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

    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A place where IPAM state lives: in memory, in an embedded database, in Kubernetes.
///
/// Implementations must pass the conformance kit
/// ([`testkit`](crate::testkit), feature `testkit`) unchanged.
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads one record.
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError>;

    /// Reads every record under `prefix`, in key order.
    async fn scan(&self, prefix: &Prefix) -> Result<Vec<(Key, Versioned<Record>)>, StoreError>;

    /// Applies `txn` atomically if every expectation holds; otherwise changes nothing and
    /// returns [`StoreError::Conflict`]. Durable before it returns `Ok`.
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError>;
}

#[async_trait]
impl<S: Store + ?Sized> Store for Box<S> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        (**self).get(key).await
    }
    async fn scan(&self, prefix: &Prefix) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        (**self).scan(prefix).await
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        (**self).commit(txn).await
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        (**self).get(key).await
    }
    async fn scan(&self, prefix: &Prefix) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        (**self).scan(prefix).await
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        (**self).commit(txn).await
    }
}

// ---- byte encoding, for backends that store bytes ------------------------------------------

const TAG_POOL: u8 = b'p';
const TAG_RESERVED: u8 = b'r';
const TAG_SUMMARY: u8 = b's';
const TAG_BLOCK: u8 = b'b';
const TAG_CURSOR: u8 = b'c';
const TAG_ALLOCATION: u8 = b'a';
const TAG_OWNER: u8 = b'o';

impl Key {
    /// The key as bytes. Names never contain a NUL byte, which separates fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        match self {
            Key::Pool(name) => tagged(&mut out, TAG_POOL, name.as_str()),
            Key::ReservedIp(name) => tagged(&mut out, TAG_RESERVED, name.as_str()),
            Key::ReservedSummary => out.push(TAG_SUMMARY),
            Key::Block { pool, index } => {
                tagged(&mut out, TAG_BLOCK, pool.as_str());
                out.push(0);
                out.extend_from_slice(&index.to_be_bytes());
            }
            Key::Cursor(name) => tagged(&mut out, TAG_CURSOR, name.as_str()),
            Key::Allocation { pool, address } => {
                tagged(&mut out, TAG_ALLOCATION, pool.as_str());
                out.push(0);
                out.push(Family::of(*address).version());
                out.extend_from_slice(&to_u128(*address).to_be_bytes());
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
        let split = |b: &'_ [u8]| -> Result<(Vec<u8>, Vec<u8>), StoreError> {
            let i = b
                .iter()
                .position(|&c| c == 0)
                .ok_or_else(|| corrupt("no separator"))?;
            Ok((b[..i].to_vec(), b[i + 1..].to_vec()))
        };
        let u128_of = |b: &[u8]| -> Result<u128, StoreError> {
            Ok(u128::from_be_bytes(
                b.try_into().map_err(|_| corrupt("bad length"))?,
            ))
        };
        Ok(match tag {
            TAG_POOL => Key::Pool(name(rest)?),
            TAG_RESERVED => Key::ReservedIp(name(rest)?),
            TAG_SUMMARY if rest.is_empty() => Key::ReservedSummary,
            TAG_CURSOR => Key::Cursor(name(rest)?),
            TAG_BLOCK => {
                let (pool, index) = split(rest)?;
                Key::Block {
                    pool: name(&pool)?,
                    index: u128_of(&index)?,
                }
            }
            TAG_ALLOCATION => {
                let (pool, addr) = split(rest)?;
                let (&version, value) = addr.split_first().ok_or_else(|| corrupt("no family"))?;
                let family = Family::from_version(version).ok_or_else(|| corrupt("bad family"))?;
                let value = u128_of(value)?;
                if value > family.max_value() {
                    return Err(corrupt("address out of range"));
                }
                Key::Allocation {
                    pool: name(&pool)?,
                    address: family.addr(value),
                }
            }
            TAG_OWNER => {
                let (id, ifname) = split(rest)?;
                Key::Owner(
                    Owner::new(text(&id)?, text(&ifname)?).map_err(|e| corrupt(&e.to_string()))?,
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
            Key::Block { pool, index } => write!(f, "block/{pool}/{index:#x}"),
            Key::Cursor(n) => write!(f, "cursor/{n}"),
            Key::Allocation { pool, address } => write!(f, "allocation/{pool}/{address}"),
            Key::Owner(o) => write!(f, "owner/{o}"),
        }
    }
}

impl Prefix {
    /// The prefix as bytes: every key under it encodes to bytes that start with these.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Prefix::Pools => out.push(TAG_POOL),
            Prefix::ReservedIps => out.push(TAG_RESERVED),
            Prefix::Blocks(pool) => {
                tagged(&mut out, TAG_BLOCK, pool.as_str());
                out.push(0);
            }
            Prefix::Allocations(None) => out.push(TAG_ALLOCATION),
            Prefix::Allocations(Some(pool)) => {
                tagged(&mut out, TAG_ALLOCATION, pool.as_str());
                out.push(0);
            }
            Prefix::Owners => out.push(TAG_OWNER),
        }
        out
    }

    /// Whether `key` is under this prefix.
    pub fn matches(&self, key: &Key) -> bool {
        match (self, key) {
            (Prefix::Pools, Key::Pool(_))
            | (Prefix::ReservedIps, Key::ReservedIp(_))
            | (Prefix::Owners, Key::Owner(_))
            | (Prefix::Allocations(None), Key::Allocation { .. }) => true,
            (Prefix::Blocks(p), Key::Block { pool, .. }) => p == pool,
            (Prefix::Allocations(Some(p)), Key::Allocation { pool, .. }) => p == pool,
            _ => false,
        }
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, text: &str) {
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
}

/// The first byte of every encoded record: the version of the record format.
pub const RECORD_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct NamedSpec<S> {
    name: String,
    spec: S,
}

impl Record {
    /// The record as bytes: a format byte, then JSON for objects and allocations, roaring's
    /// portable format for blocks, and fixed-width integers for cursors and summaries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT];
        let json = |out: &mut Vec<u8>, v: &dyn erased::Json| v.write(out);
        match self {
            Record::Pool(p) => json(
                &mut out,
                &NamedSpec {
                    name: p.name().to_string(),
                    spec: p.spec().clone(),
                },
            ),
            Record::ReservedIp(r) => json(
                &mut out,
                &NamedSpec {
                    name: r.name().to_string(),
                    spec: r.spec().clone(),
                },
            ),
            Record::Allocation(a) => json(&mut out, a),
            Record::Owner(all) => json(&mut out, all),
            Record::Cursor(c) => out.extend_from_slice(&c.to_be_bytes()),
            Record::Block(b) => out.extend_from_slice(&b.to_bytes()),
            Record::ReservedSummary(sets) => {
                for set in [&sets.v4, &sets.v6] {
                    out.extend_from_slice(&(set.intervals().len() as u64).to_be_bytes());
                    for &(a, b) in set.intervals() {
                        out.extend_from_slice(&a.to_be_bytes());
                        out.extend_from_slice(&b.to_be_bytes());
                    }
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
                Record::Pool(IpPool::new(&n.name, n.spec).map_err(|e| corrupt(e.to_string()))?)
            }
            Key::ReservedIp(_) => {
                let n: NamedSpec<ReservedIpSpec> =
                    serde_json::from_slice(body).map_err(json_err)?;
                Record::ReservedIp(
                    ReservedIp::new(&n.name, n.spec).map_err(|e| corrupt(e.to_string()))?,
                )
            }
            Key::Allocation { .. } => {
                Record::Allocation(serde_json::from_slice(body).map_err(json_err)?)
            }
            Key::Owner(_) => Record::Owner(serde_json::from_slice(body).map_err(json_err)?),
            Key::Cursor(_) => Record::Cursor(u128::from_be_bytes(
                body.try_into()
                    .map_err(|_| corrupt("cursor is not 16 bytes".into()))?,
            )),
            Key::Block { .. } => Record::Block(Block::from_bytes(body).map_err(corrupt)?),
            Key::ReservedSummary => {
                let mut rest = body;
                let mut sets = Vec::with_capacity(2);
                for _ in 0..2 {
                    let (n, tail) = take_u64(rest).ok_or_else(|| corrupt("truncated".into()))?;
                    rest = tail;
                    let n = usize::try_from(n).map_err(|_| corrupt("bad length".into()))?;
                    if rest.len() / 32 < n {
                        return Err(corrupt("truncated".into()));
                    }
                    let mut v = Vec::with_capacity(n);
                    for chunk in rest[..n * 32].chunks_exact(32) {
                        let a = u128::from_be_bytes(chunk[..16].try_into().expect("16 bytes"));
                        let b = u128::from_be_bytes(chunk[16..].try_into().expect("16 bytes"));
                        v.push((a, b));
                    }
                    rest = &rest[n * 32..];
                    sets.push(IntervalSet::try_from(v).map_err(|e| corrupt(e.to_string()))?);
                }
                if !rest.is_empty() {
                    return Err(corrupt("trailing bytes".into()));
                }
                let v6 = sets.pop().expect("two sets");
                let v4 = sets.pop().expect("two sets");
                Record::ReservedSummary(FamilySets { v4, v6 })
            }
        })
    }
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

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s).unwrap()
    }

    #[test]
    fn keys_round_trip_and_sort_under_their_prefix() {
        let keys = [
            Key::Pool(name("a")),
            Key::ReservedIp(name("r-1")),
            Key::ReservedSummary,
            Key::Block {
                pool: name("a"),
                index: 0xa06,
            },
            Key::Cursor(name("a")),
            Key::Allocation {
                pool: name("a"),
                address: "10.6.0.1".parse().unwrap(),
            },
            Key::Allocation {
                pool: name("a"),
                address: "fd00::1".parse().unwrap(),
            },
            Key::Owner(Owner::new("c1", "eth0").unwrap()),
        ];
        for key in &keys {
            assert_eq!(&Key::decode(&key.encode()).unwrap(), key);
        }
        // "a" and "ab" must not share a block prefix.
        let ab = Key::Block {
            pool: name("ab"),
            index: 1,
        };
        assert!(!ab.encode().starts_with(&Prefix::Blocks(name("a")).encode()));
        assert!(keys[3]
            .encode()
            .starts_with(&Prefix::Blocks(name("a")).encode()));
        assert!(Prefix::Blocks(name("a")).matches(&keys[3]));
        assert!(!Prefix::Blocks(name("a")).matches(&ab));
        for bad in [&b""[..], b"x", b"pbad/name", b"b\x00", b"a"] {
            assert!(Key::decode(bad).is_err(), "{bad:?}");
        }
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
        let alloc = Allocation {
            address: "10.6.0.7".parse().unwrap(),
            pool: name("p"),
            network: "net1".into(),
            owner: Owner::new("c1", "eth0").unwrap(),
            pod: Some(PodRef {
                namespace: "default".into(),
                name: "web".into(),
                uid: None,
            }),
        };
        let mut block = Block::default();
        block.insert(7);
        let cases = [
            (Key::Pool(name("p")), Record::Pool(pool)),
            (Key::ReservedSummary, Record::ReservedSummary(summary)),
            (Key::Cursor(name("p")), Record::Cursor(0x0a06_0008)),
            (
                Key::Block {
                    pool: name("p"),
                    index: 0xa06,
                },
                Record::Block(block),
            ),
            (
                Key::Allocation {
                    pool: name("p"),
                    address: alloc.address,
                },
                Record::Allocation(alloc.clone()),
            ),
            (Key::Owner(alloc.owner.clone()), Record::Owner(vec![alloc])),
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
}
