//! An [`ipam_core::Store`] on [sled](https://docs.rs/sled) 0.34: the optional embedded
//! backend.
//!
//! [`SledStore`] is [`ipam_embedded::EmbeddedStore`] over [`Sled`], this crate's byte
//! key-value adapter: the data directory, its lock, atomic creation, the kind marker, the
//! schema, version headers and compare-and-swap are `ipam-embedded`'s. The database is
//! `DIR/sled/`; records live in sled's default tree; meta values (schema mark, version
//! counter) under keys that start with `0xff`, which no record key does, so that a commit
//! updates both in one sled transaction. Every write is followed by `flush()` before it is
//! acknowledged.
//!
//! What sled needs besides, on every open:
//! - sled writes a snapshot file on open (`snap.N.generating`, then renamed to `snap.N`) and
//!   picks the last `snap.*` file by name without skipping `.generating` ones, so a snapshot
//!   write cut short (a full disk, `kill -9`) makes every later open fail with "Read
//!   corrupted data". The adapter removes such leftovers first, holding sled's own lock.
//! - Because sled writes on every open, even a read needs free space: below
//!   [`FREE_SPACE_NEEDED`] on the file system the open is refused before sled runs, as an
//!   I/O error that says so.
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

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipam_core::StoreError;
use ipam_embedded::{io_error, prepare_dir, Backend, Entry, Kind, Refusal, Txn, TxnError};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

pub use ipam_embedded::{OpenOptions, SCHEMA};

/// The directory of the database inside the data directory.
pub const DB_DIR: &str = Kind::SLED.db_name();

/// A store in `DIR/sled/`, held exclusively while open.
pub type SledStore = ipam_embedded::EmbeddedStore<Sled>;

/// Free space an open needs on the database's file system: sled may start a new log segment
/// (512 KiB) and writes a snapshot on every open; the rest is margin for the snapshot, which
/// grows with the number of pages.
pub const FREE_SPACE_NEEDED: u64 = 1 << 20;

/// Keys at or above this byte string are meta values, not records.
const META_PREFIX: u8 = 0xff;

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META_PREFIX];
    key.extend_from_slice(name.as_bytes());
    key
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The sled database of a store: the byte key-value adapter under [`SledStore`].
pub struct Sled {
    db: sled::Db,
    path: PathBuf,
    was_empty: bool,
}

impl std::fmt::Debug for Sled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sled").field("path", &self.path).finish()
    }
}

fn sled_error(what: &str, path: &Path, e: sled::Error) -> StoreError {
    StoreError::Io {
        context: format!("{what} {}", path.display()),
        source: Box::new(e),
    }
}

impl Sled {
    fn err(&self, what: &str, e: sled::Error) -> StoreError {
        sled_error(what, &self.path, e)
    }

    fn malformed_meta(&self, name: &str, len: usize) -> StoreError {
        StoreError::Io {
            context: format!("read {}", self.path.display()),
            source: format!("the meta value {name:?} is malformed ({len} bytes): damaged").into(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.err("flush", e))
    }
}

impl Backend for Sled {
    const KIND: Kind = Kind::SLED;

    fn create(path: &Path) -> Result<Sled, StoreError> {
        prepare_dir(path)?;
        let db = open_sled(sled::Config::new().path(path).create_new(true), path, None)?;
        restrict_files(path);
        Ok(Sled {
            db,
            path: path.to_owned(),
            was_empty: true,
        })
    }

    fn open(path: &Path, wait: Duration) -> Result<Sled, StoreError> {
        let refuse = |r: Refusal| r.into_store_error(path);
        let deadline = Instant::now() + wait;
        // sled treats unreadable log segments as a torn tail and starts over; remember
        // whether there was data, so that losing it all is refused rather than silent.
        let had_data = fs::metadata(path.join("db")).is_ok_and(|m| m.len() > 0);
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
        remove_torn_snapshots(path, deadline)?;
        let available = rustix::fs::statvfs(path)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(|e| io_error("measure free space of", path, e.into()))?;
        if available < FREE_SPACE_NEEDED {
            return Err(refuse(Refusal::NoSpace {
                available,
                needed: FREE_SPACE_NEEDED,
                why: "sled writes a snapshot and may start a log segment on every open",
            }));
        }
        let db = open_sled(sled::Config::new().path(path), path, Some(deadline))?;
        restrict_files(path);
        Ok(Sled {
            db,
            path: path.to_owned(),
            was_empty: !had_data,
        })
    }

    fn was_empty_before_open(&self) -> bool {
        self.was_empty
    }

    fn close(self) -> Result<(), StoreError> {
        self.flush()?;
        let db = self.path.join("db");
        drop(self.db);
        // sled's threads let go of its files a moment after `Db` is dropped: wait for its
        // lock, so that the database is closed, not closing, when this returns.
        hold_sled_lock(&db, Instant::now() + CLOSE_WAIT).map(drop)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.db.get(key).map_err(|e| self.err("read", e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        // sled has no read transactions; the data directory's lock keeps other processes
        // out, and each record is read whole.
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn range(&self, start: &[u8], end: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let end = end.min(&[META_PREFIX][..]);
        if start >= end {
            return Ok(Vec::new());
        }
        self.db
            .range(start..end)
            .map(|e| {
                let (k, v) = e.map_err(|e| self.err("read", e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    fn records(&self) -> Result<Vec<Entry>, StoreError> {
        self.range(&[], &[META_PREFIX])
    }

    fn meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.get(&meta_key(name))? {
            None => Ok(None),
            Some(v) => u64_of(&v)
                .map(Some)
                .ok_or_else(|| self.malformed_meta(name, v.len())),
        }
    }

    fn write<T>(&self, f: impl Fn(&mut dyn Txn) -> Result<T, TxnError>) -> Result<T, StoreError> {
        let result = self.db.transaction(|tx| {
            let mut txn = SledTxn { sled: self, tx };
            match f(&mut txn) {
                Ok(out) => Ok(out),
                Err(TxnError::Abort(e)) => Err(ConflictableTransactionError::Abort(e)),
                Err(TxnError::Retry) => Err(ConflictableTransactionError::Conflict),
            }
        });
        let out = match result {
            Ok(out) => out,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(self.err("commit", e)),
        };
        self.flush()?;
        Ok(out)
    }
}

struct SledTxn<'a> {
    sled: &'a Sled,
    tx: &'a TransactionalTree,
}

impl SledTxn<'_> {
    fn err(&self, e: UnabortableTransactionError) -> TxnError {
        match e {
            // sled runs the closure again.
            UnabortableTransactionError::Conflict => TxnError::Retry,
            UnabortableTransactionError::Storage(e) => TxnError::Abort(self.sled.err("commit", e)),
        }
    }
}

impl Txn for SledTxn<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnError> {
        let v = self.tx.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnError> {
        self.tx.insert(key, value).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), TxnError> {
        self.tx.remove(key).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn meta(&mut self, name: &str) -> Result<Option<u64>, TxnError> {
        match self.get(&meta_key(name))? {
            None => Ok(None),
            Some(v) => u64_of(&v)
                .map(Some)
                .ok_or_else(|| TxnError::Abort(self.sled.malformed_meta(name, v.len()))),
        }
    }

    fn put_meta(&mut self, name: &str, value: u64) -> Result<(), TxnError> {
        self.put(&meta_key(name), &value.to_be_bytes())
    }
}

/// Removes the snapshot files a cut-short snapshot write left (`snap.*.generating`): sled
/// would read one as its latest snapshot and fail on it for ever. Holds sled's own lock on
/// `db` meanwhile, so that no sled instance (a previous process's flusher thread still
/// finishing) is writing one.
fn remove_torn_snapshots(path: &Path, deadline: Instant) -> Result<(), StoreError> {
    let torn: Vec<PathBuf> = match fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"))
            })
            .collect(),
        Err(e) => return Err(io_error("read", path, e)),
    };
    if torn.is_empty() {
        return Ok(());
    }
    let _held = hold_sled_lock(&path.join("db"), deadline)?;
    for snap in torn {
        fs::remove_file(&snap).map_err(|e| io_error("remove torn snapshot", &snap, e))?;
    }
    Ok(())
}

/// How long closing waits for sled's threads to let go of its files.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Takes sled's own lock on its `db` file (the lock sled takes when it opens), waiting until
/// `deadline`; released when the returned file is dropped.
fn hold_sled_lock(db: &Path, deadline: Instant) -> Result<fs::File, StoreError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .open(db)
        .map_err(|e| io_error("open", db, e))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Busy {
                    what: format!("{} is still locked by another process", db.display()),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", db, e)),
        }
    }
}

/// Opens sled; with a `deadline`, retries while its own file lock is still held by a process
/// that has let go of the data directory but not yet exited (sled's flusher thread outlives
/// `Db`'s drop).
fn open_sled(
    config: sled::Config,
    path: &Path,
    deadline: Option<Instant>,
) -> Result<sled::Db, StoreError> {
    loop {
        match std::panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) if is_lock_error(&e) => match deadline {
                Some(d) if Instant::now() < d => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    return Err(StoreError::Busy {
                        what: format!("{} is still locked by another process", path.display()),
                    })
                }
            },
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

/// sled creates its files with the process umask; the data directory is already 0700, and
/// this narrows the files themselves to 0600 as well (best effort: a file sled creates later
/// is still behind the 0700 directory).
fn restrict_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600));
        }
    }
}
