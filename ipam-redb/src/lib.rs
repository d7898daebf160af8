//! An [`ipam_core::Store`] on [redb](https://docs.rs/redb): the embedded default.
//!
//! The store lives in a data directory: `store.redb` (mode 0600) and the lock file that
//! serializes processes ([`ipam_lock::DirLock`]). A [`RedbStore`] holds the directory from
//! [`RedbStore::open`] until it is dropped, which is what a CNI call needs: open, one
//! operation, close. Within a process it may be shared by threads; their transactions are
//! checked against record versions like any other backend's.
//!
//! Layout: table `records` maps [`Key::encode`] bytes to an 8-byte big-endian version
//! followed by [`Record::encode`] bytes; table `meta` holds the schema version and the
//! version counter. A commit is one redb write transaction with [`Durability::Immediate`]
//! (fsync before it returns), so a process killed at any instant leaves either all of a
//! transaction or none of it.
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

use async_trait::async_trait;
use ipam_core::store::{Key, KeyRange, Op, Record, Transaction, Version, Versioned};
use ipam_core::{Store, StoreError};
use ipam_lock::{io_error, no_panic, open_private, DirLock};
use redb::{
    backends::FileBackend, Database, Durability, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableError,
};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// The schema this build writes and reads. A store of a higher schema was written by a newer
/// build and is refused untouched.
pub const SCHEMA: u64 = 1;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_SCHEMA: &str = "schema";
const META_NEXT_VERSION: &str = "next_version";

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// How long to wait for other processes holding the store before failing as busy.
    pub lock_wait: Duration,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            lock_wait: Duration::from_secs(30),
        }
    }
}

/// A store in `DIR/store.redb`, held exclusively while open.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    // Dropped after `db` (fields drop in order): the database file is closed before the
    // next process may open it.
    _lock: DirLock,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store in `dir`, waiting up to `options.lock_wait` for
    /// other processes.
    ///
    /// A file that is not a redb database, is truncated or corrupt, or was written by a
    /// newer schema gives [`StoreError::Io`] naming the path; the file is left as it was.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<RedbStore, StoreError> {
        let lock = DirLock::acquire(dir, options.lock_wait)?;
        let path = dir.join(DB_FILE);
        let file = open_private(&path, false).map_err(|e| io_error("open", &path, e))?;
        no_panic(format!("open {}", path.display()), || {
            let backend = FileBackend::new(file).map_err(|e| db_error("open", &path, e))?;
            let db = Database::builder()
                .create_with_backend(backend)
                .map_err(|e| db_error("open", &path, e))?;
            let store = RedbStore {
                db,
                path: path.clone(),
                _lock: lock,
            };
            store.check_schema()?;
            Ok(store)
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = {
            let read = self.db.begin_read().map_err(|e| self.err("read", e))?;
            match read.open_table(META) {
                Ok(meta) => meta
                    .get(META_SCHEMA)
                    .map_err(|e| self.err("read", e))?
                    .map(|v| v.value()),
                Err(TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.err("read", e)),
            }
        };
        match found {
            Some(SCHEMA) => Ok(()),
            Some(newer) if newer > SCHEMA => Err(StoreError::Io {
                context: format!("open {}", self.path.display()),
                source: format!(
                    "the store has schema {newer}, written by a newer ipam build; this build \
                     reads schema {SCHEMA}: upgrade the binaries (the store was not changed)"
                )
                .into(),
            }),
            Some(older) => Err(StoreError::Io {
                context: format!("open {}", self.path.display()),
                source: format!(
                    "the store has schema {older}, which this build cannot migrate; \
                     export it with an older ipamctl and re-apply (the store was not changed)"
                )
                .into(),
            }),
            None => {
                let mut write = self.db.begin_write().map_err(|e| self.err("write", e))?;
                write
                    .set_durability(Durability::Immediate)
                    .map_err(|e| self.err("write", e))?;
                {
                    let records = write
                        .open_table(RECORDS)
                        .map_err(|e| self.err("write", e))?;
                    if !records.is_empty().map_err(|e| self.err("read", e))? {
                        return Err(StoreError::Io {
                            context: format!("open {}", self.path.display()),
                            source: "the database has records but no schema version: it was \
                                     not written by ipam; refusing to use it"
                                .into(),
                        });
                    }
                    let mut meta = write.open_table(META).map_err(|e| self.err("write", e))?;
                    meta.insert(META_SCHEMA, SCHEMA)
                        .map_err(|e| self.err("write", e))?;
                }
                write.commit().map_err(|e| self.err("commit", e))
            }
        }
    }

    fn err(&self, what: &str, e: impl Into<redb::Error>) -> StoreError {
        db_error(what, &self.path, e)
    }

    fn decode(&self, key: &Key, bytes: &[u8]) -> Result<Versioned<Record>, StoreError> {
        let Some((version, body)) = bytes.split_at_checked(8) else {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: "record shorter than its version".into(),
            });
        };
        let version = Version::from(u64::from_be_bytes(version.try_into().expect("8 bytes")));
        Ok(Versioned {
            value: Record::decode(key, body)?,
            version,
        })
    }
}

fn db_error(what: &str, path: &Path, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Io {
        context: format!("{what} {}", path.display()),
        source: Box::new(e.into()),
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        no_panic(format!("read {}", self.path.display()), || {
            self.get_now(key)
        })
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        no_panic(format!("read {}", self.path.display()), || {
            self.scan_now(range)
        })
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        no_panic(format!("write {}", self.path.display()), || {
            self.commit_now(txn)
        })
    }
}

impl RedbStore {
    fn get_now(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let table = match read.open_table(RECORDS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err("read", e)),
        };
        let found = table
            .get(key.encode().as_slice())
            .map_err(|e| self.err("read", e))?;
        found.map(|v| self.decode(key, v.value())).transpose()
    }

    fn scan_now(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err("read", e))?;
        let table = match read.open_table(RECORDS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("read", e)),
        };
        let (start, end) = range.bounds();
        let mut out = Vec::new();
        for entry in table
            .range(start.as_slice()..end.as_slice())
            .map_err(|e| self.err("read", e))?
        {
            let (k, v) = entry.map_err(|e| self.err("read", e))?;
            let key = Key::decode(k.value())?;
            out.push((key.clone(), self.decode(&key, v.value())?));
        }
        Ok(out)
    }

    fn commit_now(&self, txn: Transaction) -> Result<(), StoreError> {
        let mut write = self.db.begin_write().map_err(|e| self.err("write", e))?;
        write
            .set_durability(Durability::Immediate)
            .map_err(|e| self.err("write", e))?;
        {
            let mut records = write
                .open_table(RECORDS)
                .map_err(|e| self.err("write", e))?;
            let mut meta = write.open_table(META).map_err(|e| self.err("write", e))?;
            let keys: Vec<Vec<u8>> = txn.ops().iter().map(|op| op.key().encode()).collect();
            for (op, k) in txn.ops().iter().zip(&keys) {
                let current = match records.get(k.as_slice()).map_err(|e| self.err("read", e))? {
                    Some(v) => Some(self.decode(op.key(), v.value())?.version),
                    None => None,
                };
                if !op.expect().holds(current.as_ref()) {
                    // Dropping an uncommitted write transaction aborts it.
                    return Err(StoreError::Conflict {
                        key: op.key().to_string(),
                    });
                }
            }
            let next = meta
                .get(META_NEXT_VERSION)
                .map_err(|e| self.err("read", e))?
                .map_or(1, |v| v.value());
            meta.insert(META_NEXT_VERSION, next + 1)
                .map_err(|e| self.err("write", e))?;
            let version = next.to_be_bytes();
            for (op, k) in txn.into_ops().into_iter().zip(keys) {
                match op {
                    Op::Put { record, .. } => {
                        let mut bytes = Vec::with_capacity(8 + 64);
                        bytes.extend_from_slice(&version);
                        bytes.extend_from_slice(&record.encode());
                        records
                            .insert(k.as_slice(), bytes.as_slice())
                            .map_err(|e| self.err("write", e))?;
                    }
                    Op::Delete { .. } => {
                        records
                            .remove(k.as_slice())
                            .map_err(|e| self.err("write", e))?;
                    }
                }
            }
        }
        write.commit().map_err(|e| self.err("commit", e))
    }
}
