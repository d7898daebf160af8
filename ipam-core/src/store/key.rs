//! Where records live: [`Key`] and the ranges of keys read together, [`KeyRange`].

use std::fmt;

use crate::addr::Family;
use crate::name::{ObjectName, Owner};

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
    /// The pools' guard: the addresses every applied pool lists ([`PoolRanges`](super::PoolRanges)). An apply
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

/// A range of keys read together by [`Store::scan`](crate::Store::scan).
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
            last: family.max_value() >> crate::search::BLOCK_BITS,
        }
    }

    /// The blocks that cover the addresses `first..=last` of `family`.
    pub fn blocks_covering(family: Family, first: u128, last: u128) -> KeyRange {
        KeyRange::Blocks {
            family,
            first: crate::search::block_index(first),
            last: crate::search::block_index(last),
        }
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
                let first = family.addr(index << crate::search::BLOCK_BITS);
                write!(
                    f,
                    "block/{first}/{}",
                    family.bits() - crate::search::BLOCK_BITS
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
