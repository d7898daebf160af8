//! What a [`Store`](crate::Store) implementor needs, and nothing a library user does: the
//! keys and records a store holds, the operations of a transaction, the byte encodings of
//! keys and records, the block and holder records, and the schema migrations of stored
//! bytes.
//!
//! A backend keeps typed [`Record`]s under typed [`Key`]s and applies [`Transaction`]s of
//! [`Op`]s, each stating what it [`Expect`]s of its key. Backends that keep bytes use
//! [`Key::encode`], [`KeyRange::bounds`], [`Record::encode`] and [`Record::decode`]; keys sort
//! so that every [`KeyRange`] is one contiguous byte range. Every backend runs the same
//! conformance suite, `ipam_core::testkit::run_all` (feature `testkit`).
//!
//! ```
//! use ipam_core::backend::{Key, Record};
//! use ipam_core::{FamilySets, ObjectName};
//! let key = Key::Pool(ObjectName::new("test-ippool").unwrap());
//! assert!(key.encode().starts_with(b"p"));
//! let bytes = Record::ReservedSummary(FamilySets::default()).encode();
//! assert_eq!(
//!     Record::decode(&Key::ReservedSummary, &bytes).unwrap(),
//!     Record::ReservedSummary(FamilySets::default())
//! );
//! ```

pub use crate::addr::to_u128;
pub use crate::block::BlockRecord;
pub use crate::holder::{Held, Holder};
pub use crate::search::{block_index, BLOCK_BITS};
pub use crate::store::{
    Expect, FromRecord, InvalidRecord, Key, KeyRange, Op, PoolRanges, Record, Transaction,
    RECORD_FORMAT,
};

/// Migrations of stored bytes from one schema version to the next.
pub mod migrate {
    pub use crate::migrate::{from_v1, migration, Migration, RawRecords, SCHEMA};
}
