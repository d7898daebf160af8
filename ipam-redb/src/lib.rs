//! An [`ipam_core::Store`] on [redb](https://docs.rs/redb): the embedded default.
//!
//! [`RedbStore`] is [`ipam_embedded::EmbeddedStore`] over [`Redb`], this crate's byte
//! key-value adapter: the data directory, its lock, atomic creation, the kind marker, the
//! schema, version headers and compare-and-swap are `ipam-embedded`'s. The database is
//! `DIR/store.redb` (mode 0600): table `records` maps key bytes to values (version header,
//! then record bytes); table `meta` holds the schema mark and the version counter. A write
//! transaction commits with [`Durability::Immediate`] (fsync before it returns), so a process
//! killed at any instant leaves either all of a transaction or none of it.
//!
//! ```
//! use std::time::Duration;
//! use ipam_core::{Ipam, IpPool, IpPoolSpec};
//! use ipam_redb::{OpenOptions, RedbStore};
//! let dir = tempfile::tempdir().unwrap();
//! let store = RedbStore::open(dir.path(), &OpenOptions { lock_wait: Duration::from_secs(5) }).unwrap();
//! let ipam = Ipam::new(store);
//! let pool = IpPool::new("p", IpPoolSpec {
//!     subnet: "10.6.0.0/24".into(), ips: vec!["10.6.0.0/24".into()], ..Default::default()
//! }).unwrap();
//! pollster::block_on(ipam.apply_pool(pool)).unwrap();
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::StoreError;
use ipam_embedded::{io_error, open_private, Backend, Entry, Kind, Txn, TxnError};
use redb::{
    backends::FileBackend, Database, Durability, ReadableDatabase, ReadableTable, Table,
    TableDefinition, TableError,
};

pub use ipam_embedded::{OpenOptions, SCHEMA};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = Kind::REDB.db_name();

/// A store in `DIR/store.redb`, held exclusively while open.
pub type RedbStore = ipam_embedded::EmbeddedStore<Redb>;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The redb database of a store: the byte key-value adapter under [`RedbStore`].
pub struct Redb {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Redb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redb").field("path", &self.path).finish()
    }
}

impl Redb {
    fn err(&self, what: &str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Io {
            context: format!("{what} {}", self.path.display()),
            source: Box::new(e.into()),
        }
    }

    /// Opens (a new file: initialises) the database in the file at `path`, made private.
    fn at(path: &Path) -> Result<Redb, StoreError> {
        let file = open_private(path, false).map_err(|e| io_error("open", path, e))?;
        let redb = |e: redb::DatabaseError| StoreError::Io {
            context: format!("open {}", path.display()),
            source: Box::new(redb::Error::from(e)),
        };
        let backend = FileBackend::new(file).map_err(redb)?;
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(redb)?;
        Ok(Redb {
            db,
            path: path.to_owned(),
        })
    }

    /// Runs `f` on the records table of a read transaction; `None` when the table does not
    /// exist (a database made by an older build and never written).
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err("read", e))?;
        match read.open_table(RECORDS) {
            Ok(table) => f(&table).map(Some),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err("read", e)),
        }
    }

    fn collect(
        &self,
        range: redb::Range<'_, &'static [u8], &'static [u8]>,
    ) -> Result<Vec<Entry>, StoreError> {
        range
            .map(|entry| {
                let (k, v) = entry.map_err(|e| self.err("read", e))?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            })
            .collect()
    }
}

impl Backend for Redb {
    const KIND: Kind = Kind::REDB;

    fn create(path: &Path) -> Result<Redb, StoreError> {
        Redb::at(path)
    }

    fn open(path: &Path, _wait: Duration) -> Result<Redb, StoreError> {
        // redb's own lock is taken and released with the file: nothing to wait for once the
        // data directory is held.
        Redb::at(path)
    }

    fn was_empty_before_open(&self) -> bool {
        // redb checksums what it reads and fails loudly on damage: a database that reads as
        // empty is empty.
        true
    }

    fn close(self) -> Result<(), StoreError> {
        // Every commit was durable; dropping closes the file.
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .read(|t| {
                let v = t.get(key).map_err(|e| self.err("read", e))?;
                Ok(v.map(|v| v.value().to_vec()))
            })?
            .flatten())
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        Ok(self
            .read(|t| {
                keys.iter()
                    .map(|key| {
                        let v = t.get(*key).map_err(|e| self.err("read", e))?;
                        Ok(v.map(|v| v.value().to_vec()))
                    })
                    .collect()
            })?
            .unwrap_or_else(|| vec![None; keys.len()]))
    }

    fn range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .read(|t| self.collect(t.range(start..end).map_err(|e| self.err("read", e))?))?
            .unwrap_or_default())
    }

    fn records(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .read(|t| self.collect(t.range::<&[u8]>(..).map_err(|e| self.err("read", e))?))?
            .unwrap_or_default())
    }

    fn meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err("read", e))?;
        match read.open_table(META) {
            Ok(meta) => Ok(meta
                .get(name)
                .map_err(|e| self.err("read", e))?
                .map(|v| v.value())),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err("read", e)),
        }
    }

    fn write<T>(&self, f: impl Fn(&mut dyn Txn) -> Result<T, TxnError>) -> Result<T, StoreError> {
        let mut write = self.db.begin_write().map_err(|e| self.err("write", e))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(|e| self.err("write", e))?;
        let out = {
            let records = write
                .open_table(RECORDS)
                .map_err(|e| self.err("write", e))?;
            let meta = write.open_table(META).map_err(|e| self.err("write", e))?;
            f(&mut RedbTxn {
                redb: self,
                records,
                meta,
            })
        };
        match out {
            // Dropping an uncommitted write transaction aborts it.
            Err(TxnError::Abort(e)) => Err(e),
            Err(TxnError::Retry) => Err(StoreError::Io {
                context: format!("write {}", self.path.display()),
                source: "internal error: a retry was asked of a redb transaction".into(),
            }),
            Ok(out) => {
                write.commit().map_err(|e| self.err("commit", e))?;
                Ok(out)
            }
        }
    }
}

struct RedbTxn<'a, 't> {
    redb: &'a Redb,
    records: Table<'t, &'static [u8], &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
}

fn txn_err(redb: &Redb, what: &str, e: impl Into<redb::Error>) -> TxnError {
    TxnError::Abort(redb.err(what, e))
}

impl Txn for RedbTxn<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnError> {
        let redb = self.redb;
        let v = self
            .records
            .get(key)
            .map_err(|e| txn_err(redb, "read", e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnError> {
        let redb = self.redb;
        self.records
            .insert(key, value)
            .map_err(|e| txn_err(redb, "write", e))?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), TxnError> {
        let redb = self.redb;
        self.records
            .remove(key)
            .map_err(|e| txn_err(redb, "write", e))?;
        Ok(())
    }

    fn meta(&mut self, name: &str) -> Result<Option<u64>, TxnError> {
        let redb = self.redb;
        let v = self.meta.get(name).map_err(|e| txn_err(redb, "read", e))?;
        Ok(v.map(|v| v.value()))
    }

    fn put_meta(&mut self, name: &str, value: u64) -> Result<(), TxnError> {
        let redb = self.redb;
        self.meta
            .insert(name, value)
            .map_err(|e| txn_err(redb, "write", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    /// The layout older builds wrote is the layout read: tables `records` and `meta`, with
    /// the schema under `schema`.
    #[test]
    fn the_layout_is_the_one_older_builds_wrote() {
        let root = tempfile::tempdir().unwrap();
        drop(RedbStore::open(root.path(), &OpenOptions::default()).unwrap());
        let db = Database::open(root.path().join(DB_FILE)).unwrap();
        let read = db.begin_read().unwrap();
        let meta = read.open_table(META).unwrap();
        assert_eq!(meta.get("schema").unwrap().unwrap().value(), SCHEMA);
        assert!(read.open_table(RECORDS).unwrap().is_empty().unwrap());
    }
}
