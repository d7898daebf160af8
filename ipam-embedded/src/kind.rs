//! What a data directory holds. A data directory holds one store of one kind: a redb
//! directory opened as sled (or the other way round) would silently become a second,
//! independent store handing out the same addresses, so it is refused.
//!
//! The kind is recorded in `DIR/store-kind` ([`KIND_FILE`], e.g. `redb`), written atomically
//! when the store is created and before its database appears. Directories made before the
//! marker existed are recognised by their contents (`store.redb`, `sled/`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ipam_core::StoreError;

use crate::dir::{io_error, open_private, remove_if_present};
use crate::error::Refusal;

/// The file that names the kind of store a data directory holds.
pub const KIND_FILE: &str = "store-kind";

/// A kind of embedded store: its name (as the CNI configuration's `store` spells it) and
/// the name of its database (a file or a directory) inside the data directory.
///
/// ```
/// use ipam_embedded::Kind;
/// assert_eq!(Kind::REDB.name(), "redb");
/// assert_eq!(Kind::REDB.db_name(), "store.redb");
/// assert_eq!(Kind::SLED.to_string(), "sled");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    name: &'static str,
    db_name: &'static str,
}

impl Kind {
    /// redb: the file `store.redb`.
    pub const REDB: Kind = Kind::new("redb", "store.redb");
    /// sled: the directory `sled/`.
    pub const SLED: Kind = Kind::new("sled", "sled");
    /// Every kind this build knows, so that a directory of any of them is recognised.
    pub const KNOWN: [Kind; 2] = [Kind::REDB, Kind::SLED];

    /// A kind named `name` whose database is `db_name` in the data directory.
    pub const fn new(name: &'static str, db_name: &'static str) -> Kind {
        Kind { name, db_name }
    }

    /// Its name.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The name of its database inside the data directory.
    pub const fn db_name(self) -> &'static str {
        self.db_name
    }

    /// Where its database is built before it is renamed into place: a hidden name that no
    /// kind's database has, removed when found (the creation that made it was interrupted).
    pub fn creating_name(self) -> String {
        format!(".{}.creating", self.db_name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

const KIND_FILE_CREATING: &str = ".store-kind.creating";

/// Removes what interrupted creations left in `dir`: every known kind's temporary database
/// (and `ours`'s) and the temporary kind marker. Call with the directory held.
pub(crate) fn remove_leftovers(dir: &Path, ours: Kind) -> Result<(), StoreError> {
    for kind in Kind::KNOWN.into_iter().chain([ours]) {
        remove_if_present(&dir.join(kind.creating_name()))?;
    }
    remove_if_present(&dir.join(KIND_FILE_CREATING))
}

/// Whether a data directory already holds a store of the kind asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holds {
    /// Its database is in place.
    Present,
    /// Nothing yet (a new directory, or one whose creation was interrupted): create it.
    Nothing,
}

/// What `dir` holds, for opening it as `wanted`; a refusal when it holds another kind,
/// several, or a kind this build does not know.
pub(crate) fn holds(dir: &Path, wanted: Kind) -> Result<Holds, StoreError> {
    let refuse = |r: Refusal| r.into_store_error(dir);
    let marker_path = dir.join(KIND_FILE);
    let marker = match fs::read_to_string(&marker_path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read", &marker_path, e)),
    };
    let mut kinds: Vec<Kind> = Kind::KNOWN.to_vec();
    if !kinds.contains(&wanted) {
        kinds.push(wanted);
    }
    let present: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| fs::symlink_metadata(dir.join(k.db_name)).is_ok())
        .collect();
    let describe = |k: Kind| format!("{} ({})", k.name, k.db_name);
    if present.len() > 1 {
        return Err(refuse(Refusal::SeveralKinds {
            dir: dir.to_owned(),
            found: present.iter().map(|&k| describe(k)).collect(),
        }));
    }
    match marker {
        Some(name) if name == wanted.name => match present.first() {
            Some(&k) if k == wanted => Ok(Holds::Present),
            Some(&other) => Err(refuse(Refusal::MarkedButHolds {
                dir: dir.to_owned(),
                marked: name,
                found: describe(other),
            })),
            None => Ok(Holds::Nothing),
        },
        Some(name) => match Kind::KNOWN.into_iter().find(|k| k.name == name) {
            Some(known) => Err(refuse(Refusal::WrongKind {
                dir: dir.to_owned(),
                holds: known.name.to_owned(),
                evidence: format!("{KIND_FILE} says {}", known.name),
                wanted: wanted.name,
            })),
            None => Err(refuse(Refusal::UnknownKind {
                dir: dir.to_owned(),
                name,
            })),
        },
        None => match present.first() {
            None => Ok(Holds::Nothing),
            Some(&k) if k == wanted => Ok(Holds::Present),
            Some(&other) => Err(refuse(Refusal::WrongKind {
                dir: dir.to_owned(),
                holds: other.name.to_owned(),
                evidence: other.db_name.to_owned(),
                wanted: wanted.name,
            })),
        },
    }
}

/// Records `kind` in `dir` atomically (a temporary file, fsynced, renamed into place; the
/// caller syncs the directory), unless it is already recorded.
pub(crate) fn write_marker(dir: &Path, kind: Kind) -> Result<(), StoreError> {
    let path = dir.join(KIND_FILE);
    if path.exists() {
        return Ok(());
    }
    let tmp: PathBuf = dir.join(KIND_FILE_CREATING);
    let write = || -> io::Result<()> {
        let mut f = open_private(&tmp, true)?;
        io::Write::write_all(&mut f, format!("{}\n", kind.name).as_bytes())?;
        f.sync_all()
    };
    write().map_err(|e| io_error("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io_error("rename into place", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: Kind = Kind::new("toy", "toy.db");

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (name, text) in files {
            if name.ends_with('/') {
                fs::create_dir(root.path().join(name)).unwrap();
            } else {
                fs::write(root.path().join(name), text).unwrap();
            }
        }
        root
    }

    /// One row per situation: the directory's contents, the kind asked for, and the answer
    /// (`present`, `nothing`, or words the refusal must contain).
    #[test]
    fn what_a_directory_holds() {
        type Files = &'static [(&'static str, &'static str)];
        let cases: &[(Files, Kind, &str)] = &[
            (&[], Kind::REDB, "nothing"),
            (&[("lock", "")], Kind::SLED, "nothing"),
            (&[("store-kind", "redb\n")], Kind::REDB, "nothing"),
            (
                &[("store-kind", "redb\n"), ("store.redb", "")],
                Kind::REDB,
                "present",
            ),
            (&[("store.redb", "")], Kind::REDB, "present"),
            (&[("sled/", "")], Kind::SLED, "present"),
            (
                &[("store.redb", "")],
                Kind::SLED,
                "holds a redb store (store.redb); it cannot be opened as sled",
            ),
            (
                &[("sled/", "")],
                Kind::REDB,
                "holds a sled store (sled); it cannot be opened as redb",
            ),
            (
                &[("store-kind", "redb\n")],
                Kind::SLED,
                "holds a redb store (store-kind says redb); it cannot be opened as sled",
            ),
            (
                &[("store-kind", "sled\n"), ("sled/", "")],
                Kind::REDB,
                "holds a sled store",
            ),
            (
                &[("store.redb", ""), ("sled/", "")],
                Kind::REDB,
                "holds several stores: redb (store.redb), sled (sled)",
            ),
            (
                &[("store-kind", "redb\n"), ("sled/", "")],
                Kind::REDB,
                "is marked as a redb store (store-kind) but holds sled (sled)",
            ),
            (
                &[("store-kind", "etcd\n")],
                Kind::REDB,
                "store-kind names \"etcd\", a kind of store this build does not know",
            ),
            (&[("store-kind", "toy\n"), ("toy.db", "")], TOY, "present"),
            (
                &[("toy.db", "")],
                Kind::REDB,
                "nothing", // a kind this build does not know is not recognised by contents
            ),
        ];
        for (files, wanted, expect) in cases {
            let root = dir_with(files);
            let got = match holds(root.path(), *wanted) {
                Ok(Holds::Present) => "present".to_owned(),
                Ok(Holds::Nothing) => "nothing".to_owned(),
                Err(e) => {
                    assert!(matches!(e, StoreError::Io { .. }), "{e}");
                    let msg = e.to_string();
                    assert!(msg.contains(&root.path().display().to_string()), "{msg}");
                    msg
                }
            };
            assert!(
                got.contains(expect),
                "{files:?} as {wanted}: got {got:?}, expected {expect:?}"
            );
        }
    }

    #[test]
    fn the_marker_is_written_once_and_leftovers_go() {
        let root = tempfile::tempdir().unwrap();
        write_marker(root.path(), Kind::SLED).unwrap();
        write_marker(root.path(), Kind::REDB).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join(KIND_FILE)).unwrap(),
            "sled\n"
        );
        fs::write(root.path().join(KIND_FILE_CREATING), "re").unwrap();
        fs::write(root.path().join(Kind::REDB.creating_name()), "half").unwrap();
        fs::create_dir_all(root.path().join(Kind::SLED.creating_name()).join("blobs")).unwrap();
        fs::write(root.path().join(TOY.creating_name()), "x").unwrap();
        remove_leftovers(root.path(), TOY).unwrap();
        let left: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![KIND_FILE.to_owned()]);
    }
}
