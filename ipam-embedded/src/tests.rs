//! The layer on the toy backend: the conformance kit, creation, leftovers, schema checks and
//! the upgrade hook. (The real backends run the same kit and the real-process tests in
//! `ipam-embedded-tests`.)

use std::path::Path;
use std::time::Duration;

use ipam_core::StoreError;

use crate::toy::{State, Toy, FAILING, WRITES};
use crate::{
    header, EmbeddedStore, Entry, OpenOptions, Schema, Step, KIND_FILE, META_NEXT_VERSION,
    META_SCHEMA, SCHEMA,
};

const OPTIONS: OpenOptions = OpenOptions {
    lock_wait: Duration::from_secs(5),
};

fn open(dir: &Path) -> Result<EmbeddedStore<Toy>, StoreError> {
    EmbeddedStore::open(dir, &OPTIONS)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("toy.db")
}

#[test]
fn the_toy_store_passes_the_conformance_kit() {
    let root = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    ipam_core::testkit::run_all(|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        open(&root.path().join(i.to_string())).unwrap()
    });
}

#[test]
fn a_new_store_is_created_complete_and_marked_with_its_kind() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("d");
    drop(open(&dir).unwrap());
    assert_eq!(names_in(&dir), ["lock", "store-kind", "toy.db"]);
    assert_eq!(
        std::fs::read_to_string(dir.join(KIND_FILE)).unwrap(),
        "toy\n"
    );
    let state = State::load(&db(&dir)).unwrap();
    assert_eq!(state.meta[META_SCHEMA], SCHEMA);
    assert!(state.records.is_empty());
}

/// What an interrupted creation leaves — a half-built database under its temporary name, a
/// half-written kind marker, or a marker without its database — is cleared by the next open,
/// which creates the store.
#[test]
fn leftovers_of_an_interrupted_creation_are_cleared() {
    for leftover in [".toy.db.creating", ".store-kind.creating", "store-kind"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path();
        let text = if leftover == "store-kind" {
            "toy\n"
        } else {
            "half"
        };
        std::fs::write(dir.join(leftover), text).unwrap();
        let store = open(dir).unwrap_or_else(|e| panic!("{leftover}: {e}"));
        pollster::block_on(ipam_core::testkit::compare_and_swap(&store));
        drop(store);
        assert_eq!(
            names_in(dir),
            ["lock", "store-kind", "toy.db"],
            "{leftover}"
        );
    }
}

/// Records as the toy stores them for schema-`schema` data: versioned values.
fn seed(dir: &Path, schema: Option<u64>, records: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(KIND_FILE), "toy\n").unwrap();
    let mut state = State::default();
    for (i, (k, v)) in records.iter().enumerate() {
        state.records.insert(
            k.as_bytes().to_vec(),
            header::join(i as u64 + 1, v.as_bytes()),
        );
    }
    if let Some(schema) = schema {
        state.meta.insert(META_SCHEMA.into(), schema);
        state
            .meta
            .insert(META_NEXT_VERSION.into(), records.len() as u64 + 1);
    }
    state.save(&db(dir)).unwrap();
}

fn refusal(result: Result<EmbeddedStore<Toy>, StoreError>) -> String {
    match result {
        Ok(_) => panic!("opened"),
        Err(e) => {
            assert!(matches!(e, StoreError::Io { .. }), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn a_newer_or_unmigratable_schema_is_refused_untouched() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for (schema, words) in [
        (SCHEMA + 1, "written by a newer ipam build"),
        (SCHEMA + 5, "upgrade the binaries"),
        (0, &*format!("cannot migrate to schema {SCHEMA}")),
    ] {
        seed(dir, Some(schema), &[("k", "v")]);
        let before = State::load(&db(dir)).unwrap();
        let msg = refusal(open(dir));
        assert!(msg.contains(words), "{msg}");
        assert!(msg.contains(&db(dir).display().to_string()), "{msg}");
        assert_eq!(State::load(&db(dir)).unwrap(), before);
    }
}

#[test]
fn a_database_without_schema_mark_is_refused_unless_empty() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    seed(dir, None, &[("k", "v")]);
    assert!(refusal(open(dir)).contains("not written by ipam"));
    seed(dir, None, &[]);
    drop(open(dir).unwrap());
    assert_eq!(State::load(&db(dir)).unwrap().meta[META_SCHEMA], SCHEMA);
}

/// The toy migration 1 → 2: keys gain a `v2/` prefix, values are upper-cased, and the record
/// `drop-me` goes.
fn toy_1_to_2(records: Vec<Entry>) -> Result<Vec<Entry>, StoreError> {
    Ok(records
        .into_iter()
        .filter(|(k, _)| k != b"drop-me")
        .map(|(k, v)| ([b"v2/".as_slice(), &k].concat(), v.to_ascii_uppercase()))
        .collect())
}

/// The toy migration 2 → 3: every record also gets a twin under `copy/`.
fn toy_2_to_3(records: Vec<Entry>) -> Result<Vec<Entry>, StoreError> {
    let copies: Vec<Entry> = records
        .iter()
        .map(|(k, v)| ([b"copy/".as_slice(), k].concat(), v.clone()))
        .collect();
    Ok(records.into_iter().chain(copies).collect())
}

fn refuse_all(_: Vec<Entry>) -> Result<Vec<Entry>, StoreError> {
    Err(StoreError::Corrupt {
        key: "k".into(),
        reason: "the toy migration refuses".into(),
    })
}

const STEPS: &[Step] = &[
    Step {
        from: 1,
        migrate: toy_1_to_2,
    },
    Step {
        from: 2,
        migrate: toy_2_to_3,
    },
];

fn records_of(dir: &Path) -> Vec<(String, String)> {
    State::load(&db(dir))
        .unwrap()
        .records
        .into_iter()
        .map(|(k, v)| {
            let (_, body) = header::split(&v).expect("versioned");
            (
                String::from_utf8(k).unwrap(),
                String::from_utf8(body.to_vec()).unwrap(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The upgrade hook: an older store gets every step in turn; each step replaces the whole
/// record set with the migration's output, in one write transaction with the new mark.
#[test]
fn an_older_schema_is_upgraded_step_by_step_in_one_transaction_each() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    seed(dir, Some(1), &[("a", "x"), ("b", "y"), ("drop-me", "z")]);
    writes(dir);

    let to_2 = Schema {
        current: 2,
        steps: STEPS,
    };
    drop(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &to_2).unwrap());
    assert_eq!(writes(dir), 1, "one write transaction");
    assert_eq!(records_of(dir), pairs(&[("v2/a", "X"), ("v2/b", "Y")]));
    let state = State::load(&db(dir)).unwrap();
    assert_eq!(state.meta[META_SCHEMA], 2);
    // Every migrated record has the same, fresh version; the counter moved past it.
    let versions: Vec<u64> = state
        .records
        .values()
        .map(|v| header::split(v).unwrap().0)
        .collect();
    assert_eq!(versions, [4, 4]);
    assert_eq!(state.meta[META_NEXT_VERSION], 5);

    // 2 → 3 on the next open, and the store at schema 3 opens as it is.
    let to_3 = Schema {
        current: 3,
        steps: STEPS,
    };
    drop(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &to_3).unwrap());
    assert_eq!(writes(dir), 1);
    assert_eq!(
        records_of(dir),
        pairs(&[
            ("copy/v2/a", "X"),
            ("copy/v2/b", "Y"),
            ("v2/a", "X"),
            ("v2/b", "Y")
        ])
    );
    assert_eq!(State::load(&db(dir)).unwrap().meta[META_SCHEMA], 3);

    // 1 → 3 in one open.
    seed(dir, Some(1), &[("a", "x")]);
    drop(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &to_3).unwrap());
    assert_eq!(writes(dir), 2, "one write transaction per step");
    assert_eq!(records_of(dir), pairs(&[("copy/v2/a", "X"), ("v2/a", "X")]));
}

/// Write transactions on `dir`'s database since the last call.
fn writes(dir: &Path) -> usize {
    WRITES.lock().unwrap().remove(&db(dir)).unwrap_or(0)
}

/// A migration that fails, or an upgrade whose write fails (a full disk), leaves the store
/// exactly as it was, at its old schema, and says which step failed.
#[test]
fn a_failed_upgrade_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    seed(dir, Some(1), &[("a", "x"), ("b", "y")]);
    let before = State::load(&db(dir)).unwrap();

    let failing = Schema {
        current: 2,
        steps: &[Step {
            from: 1,
            migrate: refuse_all,
        }],
    };
    let msg = refusal(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &failing));
    assert!(
        msg.contains("upgrade") && msg.contains("from schema 1 to 2"),
        "{msg}"
    );
    assert_eq!(State::load(&db(dir)).unwrap(), before);

    FAILING.lock().unwrap().push(db(dir));
    let to_2 = Schema {
        current: 2,
        steps: STEPS,
    };
    let msg = refusal(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &to_2));
    FAILING.lock().unwrap().clear();
    assert!(msg.contains("os error 28"), "{msg}");
    assert_eq!(State::load(&db(dir)).unwrap(), before);

    // And with the disk back, the upgrade goes through.
    drop(EmbeddedStore::<Toy>::open_with(dir, &OPTIONS, &to_2).unwrap());
    assert_eq!(records_of(dir), pairs(&[("v2/a", "X"), ("v2/b", "Y")]));
}
