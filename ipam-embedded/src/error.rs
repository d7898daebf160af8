//! Why the embedded layer refuses a data directory or a database.

use std::path::{Path, PathBuf};

use ipam_core::StoreError;

/// A refusal to open a store, with what a person needs to act. Reaches callers as the source
/// of a [`StoreError::Io`] (CNI code 5, `ipamctl` exit 1); the store is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The directory holds a store of another kind.
    #[error(
        "{} holds a {holds} store ({evidence}); it cannot be opened as {wanted}: a data \
         directory holds one store, so use `store: \"{holds}\"` (ipamctl --store {holds}) \
         everywhere it is named, or another data directory for a {wanted} store",
        dir.display()
    )]
    WrongKind {
        /// The data directory.
        dir: PathBuf,
        /// The kind it holds.
        holds: String,
        /// How that is known: the marker, or the database found.
        evidence: String,
        /// The kind asked for.
        wanted: &'static str,
    },
    /// The directory holds databases of several kinds (made by builds that did not refuse
    /// this): two independent stores that may hand out the same addresses.
    #[error(
        "{} holds several stores: {}; they are independent and may hold the same addresses: \
         keep one (compare them with `ipamctl --data-dir DIR --store KIND get allocations`) \
         and move the other out of the directory",
        dir.display(),
        found.join(", ")
    )]
    SeveralKinds {
        /// The data directory.
        dir: PathBuf,
        /// The kinds found, with their databases.
        found: Vec<String>,
    },
    /// The kind marker names one kind, and another kind's database is there.
    #[error(
        "{} is marked as a {marked} store ({}) but holds {found}: move {found} out of the \
         directory",
        dir.display(),
        crate::KIND_FILE
    )]
    MarkedButHolds {
        /// The data directory.
        dir: PathBuf,
        /// The kind the marker names.
        marked: String,
        /// The other kind's database.
        found: String,
    },
    /// The kind marker names a kind this build does not know.
    #[error(
        "{}/{} names {name:?}, a kind of store this build does not know: upgrade the \
         binaries, or use another data directory",
        dir.display(),
        crate::KIND_FILE
    )]
    UnknownKind {
        /// The data directory.
        dir: PathBuf,
        /// The name in the marker.
        name: String,
    },
    /// The database was written by a newer schema.
    #[error(
        "the store has schema {found}, written by a newer ipam build; this build reads schema \
         {current}: upgrade the binaries (the store was not changed)"
    )]
    NewerSchema {
        /// The database's schema.
        found: u64,
        /// This build's.
        current: u64,
    },
    /// The database has an older schema that this build has no migration for.
    #[error(
        "the store has schema {found}, which this build cannot migrate to schema {current}; \
         export it with an older ipamctl and re-apply (the store was not changed)"
    )]
    NoMigration {
        /// The database's schema.
        found: u64,
        /// This build's.
        current: u64,
    },
    /// The database holds records but no schema mark.
    #[error(
        "the database has records but no schema version: it was not written by ipam; \
         refusing to use it"
    )]
    Foreign,
    /// The database reads as empty but its files held data: damaged, or not ipam's.
    #[error(
        "the database files exist but hold no ipam schema record: they are damaged or were \
         not written by ipam; refusing to use them (move them aside to start over)"
    )]
    Unmarked,
    /// The schema mark is not a schema number.
    #[error("the schema mark is malformed ({len} bytes): the database is damaged")]
    MalformedSchema {
        /// Its length.
        len: usize,
    },
    /// Too little free space to open the database without risking it.
    #[error(
        "{available} bytes free on its file system, and opening it needs at least {needed} bytes \
         ({why}): free some space and try again (the store was not changed)"
    )]
    NoSpace {
        /// Bytes available to this process.
        available: u64,
        /// Bytes needed.
        needed: u64,
        /// What needs them.
        why: &'static str,
    },
}

impl Refusal {
    /// The refusal as the [`StoreError::Io`] of opening `path` (a data directory or a
    /// database); the path is named once, by the context or by the message.
    pub fn into_store_error(self, path: &Path) -> StoreError {
        let context = match self {
            Refusal::WrongKind { .. }
            | Refusal::SeveralKinds { .. }
            | Refusal::MarkedButHolds { .. }
            | Refusal::UnknownKind { .. } => "open".to_owned(),
            _ => format!("open {}", path.display()),
        };
        StoreError::Io {
            context,
            source: Box::new(self),
        }
    }
}
