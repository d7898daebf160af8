//! What a database library must offer the embedded layer: a byte key-value adapter.
//!
//! Two tables of sorts: **records** (key bytes to value bytes, scanned in byte order) and
//! **meta** (a few named `u64`s: the schema mark and the version counter). Everything else —
//! the data directory, its lock, creation, kinds, schema checks and upgrades, version headers,
//! compare-and-swap, the panic guard — is the layer's, written once for every backend.

use std::path::Path;
use std::time::Duration;

use ipam_core::StoreError;

use crate::Kind;

/// A key and its value, as bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A byte key-value database under the embedded layer ([`EmbeddedStore`](crate::EmbeddedStore)).
///
/// The layer calls it with the data directory held (one process at a time), through the
/// panic guard. Implementations report failures as [`StoreError::Io`] naming the path.
pub trait Backend: Send + Sync + Sized + 'static {
    /// The kind of store, and the name of its database in the data directory.
    const KIND: Kind;

    /// Creates a new, empty database at `path`, which does not exist yet (the layer builds
    /// it under a temporary name, then renames it into place).
    fn create(path: &Path) -> Result<Self, StoreError>;

    /// Opens the existing database at `path`. `wait` bounds any wait for the library's own
    /// lock (which may outlive a previous holder of the data directory for a moment).
    fn open(path: &Path, wait: Duration) -> Result<Self, StoreError>;

    /// Whether the database's files held nothing before this open, so that reading no schema
    /// mark and no records means a database never written rather than one whose data could
    /// not be read (sled treats an unreadable log as empty). Decides whether a database
    /// without a schema mark is initialised or refused.
    fn was_empty_before_open(&self) -> bool;

    /// Makes everything written so far durable and closes the database.
    fn close(self) -> Result<(), StoreError>;

    /// The value of a record.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The values of several records, read together (one read transaction where the
    /// library has them).
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Every record with `start <= key < end`, in key order.
    fn range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StoreError>;

    /// Every record, in key order (meta values excluded).
    fn records(&self) -> Result<Vec<Entry>, StoreError>;

    /// A meta value.
    fn meta(&self, name: &str) -> Result<Option<u64>, StoreError>;

    /// Runs `f` in one write transaction and commits what it did, durably, before returning;
    /// when `f` fails, nothing it did is applied. `f` may run more than once (libraries that
    /// retry a transaction on an internal conflict), so it must not have other effects.
    fn write<T>(&self, f: impl Fn(&mut dyn Txn) -> Result<T, TxnError>) -> Result<T, StoreError>;
}

/// The operations of one write transaction.
pub trait Txn {
    /// The value of a record, as this transaction sees it.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnError>;
    /// Writes a record.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnError>;
    /// Removes a record (nothing happens if it is absent).
    fn delete(&mut self, key: &[u8]) -> Result<(), TxnError>;
    /// A meta value.
    fn meta(&mut self, name: &str) -> Result<Option<u64>, TxnError>;
    /// Writes a meta value.
    fn put_meta(&mut self, name: &str, value: u64) -> Result<(), TxnError>;
}

/// Why a write transaction stops.
#[derive(Debug)]
pub enum TxnError {
    /// Give up, applying nothing, and return this error.
    Abort(StoreError),
    /// The library's own transaction conflicted with another thread's: it runs the closure
    /// again (only libraries that retry return this).
    Retry,
}

impl From<StoreError> for TxnError {
    fn from(e: StoreError) -> TxnError {
        TxnError::Abort(e)
    }
}
