//! What a store holds: [`Record`], one variant per kind of key.

use crate::addr::Family;
use crate::block::BlockRecord;
use crate::holder::Held;
use crate::name::ObjectName;
use crate::pool::IpPool;
use crate::reserved::{FamilySets, ReservedIp};
use crate::set::IntervalSet;

/// An object a store holds under a key but cannot read as that key's record: it was written
/// around the project's checks (with kubectl). The store still gives its version, so that it
/// can be replaced or deleted by compare-and-swap; readers that need its content fail with
/// [`StoreError::Invalid`](crate::StoreError::Invalid), and nothing it might cover is handed out.
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
    /// Under [`Key::Pool`](super::Key::Pool).
    Pool(IpPool),
    /// Under [`Key::ReservedIp`](super::Key::ReservedIp).
    ReservedIp(ReservedIp),
    /// Under [`Key::ReservedSummary`](super::Key::ReservedSummary).
    ReservedSummary(FamilySets),
    /// Under [`Key::Block`](super::Key::Block).
    Block(BlockRecord),
    /// Under [`Key::Cursor`](super::Key::Cursor).
    Cursor(u128),
    /// Under [`Key::Owner`](super::Key::Owner): what the owner was given.
    Owner(Vec<Held>),
    /// Under [`Key::PoolGuard`](super::Key::PoolGuard).
    PoolRanges(PoolRanges),
    /// Under any key: an object that is there but does not read as its record. Only a store
    /// whose objects others may write (Kubernetes) returns it; it is never written.
    Invalid(InvalidRecord),
}

/// The addresses each applied pool lists, by pool: what the pools' guard ([`Key::PoolGuard`](super::Key::PoolGuard))
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
