//! An [`ipam_core::Store`] on [sled](https://docs.rs/sled) 0.34: the optional embedded
//! backend.
//!
//! Same data directory as the redb backend ([`ipam_lock::DirLock`] serializes processes),
//! with the database in `DIR/sled/`. Records live in sled's default tree under
//! [`Key::encode`] bytes, valued as an 8-byte big-endian version followed by
//! [`Record::encode`] bytes; the schema version and the version counter live under keys that
//! start with `0xff`, which no record key does, so that a commit updates both in one sled
//! transaction. Every commit is followed by `flush()` before it is acknowledged.
//!
//! Why redb is the default: reopening sled costs 5-20 ms per process (measured), redb 1-2 ms;
//! sled's last stable release is from 2021 and its README calls it beta. It is pinned to
//! 0.34.7 because the 1.0 alphas change the on-disk format.
//!
//! ```
//! use std::time::Duration;
//! use ipam_sled::{OpenOptions, SledStore};
//! let dir = tempfile::tempdir().unwrap();
//! let store = SledStore::open(dir.path(), &OpenOptions { lock_wait: Duration::from_secs(5) }).unwrap();
//! # drop(store);
//! ```

use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use ipam_core::store::{Key, KeyRange, Op, Record, Transaction, Version, Versioned};
use ipam_core::{Store, StoreError};
use ipam_lock::{no_panic, prepare_dir, DirLock};
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The directory of the database inside the data directory.
pub const DB_DIR: &str = "sled";

/// The schema this build writes and reads.
pub const SCHEMA: u64 = 1;

const META_SCHEMA: &[u8] = b"\xffschema";
const META_NEXT_VERSION: &[u8] = b"\xffnext_version";

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

/// A store in `DIR/sled/`, held exclusively while open.
pub struct SledStore {
    db: sled::Db,
    path: PathBuf,
    _lock: DirLock,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Why a commit did not apply: a failed precondition, or an undecodable stored record.
enum Refusal {
    Conflict(String),
    Corrupt(StoreError),
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, waiting up to `options.lock_wait` for
    /// other processes.
    ///
    /// Foreign or corrupt files give [`StoreError::Io`] naming the path; sled's panics on
    /// malformed files are caught and reported the same way.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<SledStore, StoreError> {
        let lock = DirLock::acquire(dir, options.lock_wait)?;
        let path = dir.join(DB_DIR);
        prepare_dir(&path)?;
        // sled treats unreadable log segments as a torn tail and starts over; remember
        // whether there was data, so that losing it all is refused rather than silent.
        let had_data = std::fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
        if had_data && !path.join("conf").exists() {
            // Not sled's (sled writes `conf` when it creates a database): refuse before
            // sled opens it, because sled's recovery would rewrite it.
            return Err(StoreError::Io {
                context: format!("open {}", path.display()),
                source: "the directory holds a `db` file without sled's `conf`: not a sled \
                         database written by ipam; refusing to use it"
                    .into(),
            });
        }
        let db = open_sled(&path, options.lock_wait)?;
        restrict_files(&path);
        let store = SledStore {
            db,
            path,
            _lock: lock,
        };
        no_panic(format!("open {}", store.path.display()), || {
            store.check_schema(had_data)
        })?;
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str, e: sled::Error) -> StoreError {
        sled_error(what, &self.path, e)
    }

    fn check_schema(&self, had_data: bool) -> Result<(), StoreError> {
        let found = self.db.get(META_SCHEMA).map_err(|e| self.err("read", e))?;
        let refuse = |why: String| StoreError::Io {
            context: format!("open {}", self.path.display()),
            source: why.into(),
        };
        match found.as_deref().map(u64_of) {
            Some(Some(SCHEMA)) => Ok(()),
            Some(Some(newer)) if newer > SCHEMA => Err(refuse(format!(
                "the store has schema {newer}, written by a newer ipam build; this build reads \
                 schema {SCHEMA}: upgrade the binaries (the store was not changed)"
            ))),
            Some(Some(older)) => Err(refuse(format!(
                "the store has schema {older}, which this build cannot migrate; export it with \
                 an older ipamctl and re-apply (the store was not changed)"
            ))),
            Some(None) => Err(refuse("the schema record is malformed".into())),
            None if had_data => Err(refuse(
                "the database files exist but hold no ipam schema record: they are damaged or \
                 were not written by ipam; refusing to use them (move them aside to start over)"
                    .into(),
            )),
            None if !self.db.is_empty() => Err(refuse(
                "the database has records but no schema version: it was not written by ipam; \
                 refusing to use it"
                    .into(),
            )),
            None => {
                self.db
                    .insert(META_SCHEMA, &SCHEMA.to_be_bytes())
                    .map_err(|e| self.err("write", e))?;
                self.db.flush().map_err(|e| self.err("flush", e))?;
                Ok(())
            }
        }
    }

    fn decode(key: &Key, bytes: &[u8]) -> Result<Versioned<Record>, StoreError> {
        let Some((version, body)) = bytes.split_at_checked(8) else {
            return Err(StoreError::Corrupt {
                key: key.to_string(),
                reason: "record shorter than its version".into(),
            });
        };
        Ok(Versioned {
            value: Record::decode(key, body)?,
            version: Version::from(u64::from_be_bytes(version.try_into().expect("8 bytes"))),
        })
    }
}

/// Opens sled, retrying while its own file lock is still held by a process that has let go
/// of the data directory but not yet exited (sled's flusher thread outlives `Db`'s drop).
fn open_sled(path: &Path, wait: Duration) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let config = sled::Config::new().path(path);
        match std::panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) if is_lock_error(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(Err(e)) if is_lock_error(&e) => {
                return Err(StoreError::Busy {
                    what: format!("{} is still locked by another process", path.display()),
                })
            }
            Ok(Err(e)) => return Err(sled_error("open", path, e)),
            Err(_) => {
                return Err(StoreError::Io {
                    context: format!("open {}", path.display()),
                    source: "sled could not read the database files (corrupt or foreign)".into(),
                })
            }
        }
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn sled_error(what: &str, path: &Path, e: sled::Error) -> StoreError {
    StoreError::Io {
        context: format!("{what} {}", path.display()),
        source: Box::new(e),
    }
}

/// sled creates its files with the process umask; the data directory is already 0700, and
/// this narrows the files themselves to 0600 as well (best effort: a file sled creates later
/// is still behind the 0700 directory).
fn restrict_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[async_trait]
impl Store for SledStore {
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

impl SledStore {
    fn get_now(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let found = self.db.get(key.encode()).map_err(|e| self.err("read", e))?;
        found.map(|v| SledStore::decode(key, &v)).transpose()
    }

    fn scan_now(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let mut out = Vec::new();
        let (start, end) = range.bounds();
        for entry in self.db.range(start..end) {
            let (k, v) = entry.map_err(|e| self.err("read", e))?;
            let key = Key::decode(&k)?;
            out.push((key.clone(), SledStore::decode(&key, &v)?));
        }
        Ok(out)
    }

    fn commit_now(&self, txn: Transaction) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = txn.ops().iter().map(|op| op.key().encode()).collect();
        let ops = txn.ops();
        let result = self.db.transaction(|tx| {
            for (op, k) in ops.iter().zip(&keys) {
                let current = match tx.get(k)? {
                    Some(v) => Some(
                        SledStore::decode(op.key(), &v)
                            .map_err(|e| ConflictableTransactionError::Abort(Refusal::Corrupt(e)))?
                            .version,
                    ),
                    None => None,
                };
                if !op.expect().holds(current.as_ref()) {
                    return Err(ConflictableTransactionError::Abort(Refusal::Conflict(
                        op.key().to_string(),
                    )));
                }
            }
            let next = tx
                .get(META_NEXT_VERSION)?
                .as_deref()
                .and_then(u64_of)
                .unwrap_or(1);
            tx.insert(META_NEXT_VERSION, &(next + 1).to_be_bytes())?;
            for (op, k) in ops.iter().zip(&keys) {
                match op {
                    Op::Put { record, .. } => {
                        let mut bytes = next.to_be_bytes().to_vec();
                        bytes.extend_from_slice(&record.encode());
                        tx.insert(k.as_slice(), bytes)?;
                    }
                    Op::Delete { .. } => {
                        tx.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(Refusal::Conflict(key))) => {
                return Err(StoreError::Conflict { key })
            }
            Err(TransactionError::Abort(Refusal::Corrupt(e))) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(self.err("commit", e)),
        }
        self.db.flush().map_err(|e| self.err("flush", e))?;
        Ok(())
    }
}
