//! What the embedded ipam stores share, written once: the data directory and its lock,
//! atomic creation, the kind of store a directory holds, the schema mark with its check and
//! upgrade hook, the version header, compare-and-swap, the panic guard, and the
//! [`ipam_core::Store`] implementation itself. A database library plugs in through
//! [`Backend`], a small byte key-value adapter (`ipam-redb`, `ipam-sled`).
//!
//! A data directory holds:
//!
//! | name | what |
//! |---|---|
//! | `lock` | processes queue on it with `flock` ([`DirLock`]) |
//! | `store-kind` | the kind of store, e.g. `redb` ([`KIND_FILE`]) |
//! | the database | `store.redb`, `sled/`, ... ([`Kind::db_name`]) |
//!
//! Opening a store ([`EmbeddedStore::open`]): hold the directory; remove what an interrupted
//! creation left (`.NAME.creating`); refuse a directory that holds another kind; if there is
//! no database yet, build one under its temporary name, mark it with the schema, make it
//! durable, record the kind and rename the database into place (then sync the directory), so
//! that a process killed at any instant leaves either no store or a complete one; open it;
//! check its schema, upgrading an older one.
//!
//! `ipam-redb`'s and `ipam-sled`'s documentation show a store in use.

mod dir;
mod error;
mod guard;
pub mod header;
mod kind;
mod kv;
mod schema;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::StoreError;

pub use dir::{
    io_error, open_private, prepare_dir, remove_if_present, sync_dir, sync_tree, DirLock, LOCK_FILE,
};
pub use error::Refusal;
pub use guard::no_panic;
pub use kind::{Kind, KIND_FILE};
pub use kv::{Backend, Entry, Txn, TxnError};
pub use schema::{Migration, Schema, Step, META_NEXT_VERSION, META_SCHEMA, SCHEMA};

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

/// An embedded store: a [`Backend`]'s database in a data directory, held exclusively from
/// [`open`](EmbeddedStore::open) until dropped, which is what a CNI call needs: open, one
/// operation, close. Within a process it may be shared by threads; their transactions are
/// checked against record versions like any other backend's.
pub struct EmbeddedStore<B: Backend> {
    db: B,
    path: PathBuf,
    // Dropped after `db` (fields drop in order): the database is closed before the next
    // process may open it.
    _lock: DirLock,
}

impl<B: Backend> std::fmt::Debug for EmbeddedStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("kind", &B::KIND.name())
            .field("path", &self.path)
            .finish()
    }
}

impl<B: Backend> EmbeddedStore<B> {
    /// Opens the store in `dir`, creating the directory and the store if needed, waiting up
    /// to `options.lock_wait` for other processes.
    ///
    /// Errors, each naming the path: [`StoreError::Busy`] past the wait; [`StoreError::Io`]
    /// when the directory holds another kind of store ([`Refusal`]), when the database is
    /// foreign, damaged or of a newer schema (left as it was), or on any I/O failure.
    pub fn open(dir: &Path, options: &OpenOptions) -> Result<EmbeddedStore<B>, StoreError> {
        EmbeddedStore::open_with(dir, options, &Schema::IPAM)
    }

    /// [`open`](EmbeddedStore::open) with another schema than this build's: how upgrades
    /// are tested before a real one exists.
    pub fn open_with(
        dir: &Path,
        options: &OpenOptions,
        schema: &Schema,
    ) -> Result<EmbeddedStore<B>, StoreError> {
        let lock = DirLock::acquire(dir, options.lock_wait)?;
        kind::remove_leftovers(dir, B::KIND)?;
        let path = dir.join(B::KIND.db_name());
        let context = format!("open {}", path.display());
        let db = match kind::holds(dir, B::KIND)? {
            kind::Holds::Present => no_panic(&context, || B::open(&path, options.lock_wait))?,
            kind::Holds::Nothing => create::<B>(dir, &path, options, schema)?,
        };
        no_panic(&context, || schema::check(&db, schema, &path))?;
        Ok(EmbeddedStore {
            db,
            path,
            _lock: lock,
        })
    }

    /// The database (file or directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backend's database.
    pub fn backend(&self) -> &B {
        &self.db
    }
}

/// Creates the database of a directory that holds none: built and marked under a temporary
/// name, made durable, the kind recorded, renamed into place, the directory synced; then
/// opened where it now is.
fn create<B: Backend>(
    dir: &Path,
    path: &Path,
    options: &OpenOptions,
    schema: &Schema,
) -> Result<B, StoreError> {
    let tmp = dir.join(B::KIND.creating_name());
    let built = no_panic(format!("create {}", tmp.display()), || {
        let db = B::create(&tmp)?;
        schema::mark_new(&db, schema)?;
        db.close()
    })
    .and_then(|()| sync_tree(&tmp))
    .and_then(|()| kind::write_marker(dir, B::KIND))
    .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_error("rename into place", path, e)));
    if let Err(e) = built {
        // Best effort: the next open removes it anyway.
        let _ = remove_if_present(&tmp);
        return Err(e);
    }
    sync_dir(dir)?;
    no_panic(format!("open {}", path.display()), || {
        B::open(path, options.lock_wait)
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod toy;
