//! A data directory holds one store of one kind. Opened as another kind (`store: "sled"` on
//! a redb directory, or the other way round) it is refused with an I/O error that names what
//! the directory holds, and nothing in it changes; opened as its own kind it works as before.

use std::collections::BTreeMap;
use std::path::Path;

use ipam_embedded_tests::{child_main, lines, run, Backend, CHILD_ENV};

/// Entry point of the child processes; does nothing when run directly.
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

/// Every file under `dir` with its size and modification time: equal listings mean nothing
/// was created, removed or written.
fn listing(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            out.insert(name, (meta.len(), meta.modified().unwrap()));
        }
    }
    out
}

/// Asserts that every operation as `other` on `dir` is refused with an I/O error whose
/// message contains `words` and the directory, and changes nothing.
fn assert_refused(dir: &Path, other: Backend, words: &[&str]) {
    let before = listing(dir);
    for mode in ["get", "first"] {
        let (out, ok) = run(mode, other, dir, "intruder", 1);
        assert!(ok, "{other:?} {mode} crashed: {out}");
        let errs = lines(&out, "ERR");
        assert_eq!(errs.len(), 1, "{other:?} {mode} was not refused: {out}");
        let msg = &errs[0].1;
        assert!(msg.starts_with("io "), "{msg}");
        for w in words.iter().copied().chain([&*dir.display().to_string()]) {
            assert!(msg.contains(w), "{other:?} {mode}: {msg:?} lacks {w:?}");
        }
    }
    assert_eq!(
        listing(dir),
        before,
        "{other:?}: the refused directory changed"
    );
}

fn assert_holds(dir: &Path, backend: Backend, who: &str, addr: &str) {
    let (out, ok) = run("get", backend, dir, who, 1);
    assert!(ok, "{out}");
    assert_eq!(
        lines(&out, "HOLDS"),
        vec![(who.to_owned(), addr.to_owned())],
        "{backend:?}"
    );
}

#[test]
fn a_directory_of_one_kind_is_refused_as_the_other() {
    for (kind, other) in [
        (Backend::Redb, Backend::Sled),
        (Backend::Sled, Backend::Redb),
    ] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        let (out, ok) = run("first", kind, &dir, "c1", 1);
        let acked = lines(&out, "ACK");
        assert!(ok && acked.len() == 1, "{out}");
        let addr = &acked[0].1;

        let holds = format!("holds a {} store", kind.name());
        let not_as = format!("it cannot be opened as {}", other.name());
        assert_refused(&dir, other, &[&holds, "store-kind", &not_as]);
        assert_holds(&dir, kind, "c1", addr);

        // A directory made before the kind marker existed is known by its database.
        std::fs::remove_file(dir.join(ipam_embedded::KIND_FILE)).unwrap();
        let db = match kind {
            Backend::Redb => "(store.redb)",
            Backend::Sled => "(sled)",
        };
        assert_refused(&dir, other, &[&holds, db, &not_as]);
        assert_holds(&dir, kind, "c1", addr);
    }
}

/// A directory where older builds let both kinds make a store holds two independent stores
/// that may hand out the same address: neither is used until one is moved out.
#[test]
fn a_directory_holding_both_kinds_is_refused_as_either() {
    let root = tempfile::tempdir().unwrap();
    let (redb_dir, sled_dir) = (root.path().join("r"), root.path().join("s"));
    for (backend, dir) in [(Backend::Redb, &redb_dir), (Backend::Sled, &sled_dir)] {
        let (out, ok) = run("first", backend, dir, "c1", 1);
        assert!(ok && lines(&out, "ACK").len() == 1, "{out}");
    }
    std::fs::rename(sled_dir.join("sled"), redb_dir.join("sled")).unwrap();
    std::fs::remove_file(redb_dir.join(ipam_embedded::KIND_FILE)).unwrap();
    for backend in Backend::ALL {
        assert_refused(
            &redb_dir,
            backend,
            &[
                "holds several stores: redb (store.redb), sled (sled)",
                "move",
            ],
        );
    }
    // With the marker, the other kind's database is named as the intruder.
    std::fs::write(redb_dir.join(ipam_embedded::KIND_FILE), "redb\n").unwrap();
    assert_refused(&redb_dir, Backend::Redb, &["holds several stores"]);
}
