//! The embedded stores under real processes: many at once, killed at any instant, and
//! handed files they must refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use ipam_core::testkit::{check_consistency, owner, pool, request};
use ipam_core::{Error, Ipam, StoreError};
use ipam_embedded::Entry;
use ipam_embedded_tests::{
    child_main, finish, lines, median_of_five, run, spawn, Backend, Budget, CHILD_ENV, WAIT,
};

/// Entry point of the child processes; does nothing when run directly.
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

fn setup(backend: Backend, dir: &Path, ips: &str) {
    let ipam = Ipam::new(backend.open(dir, WAIT).unwrap());
    pollster::block_on(ipam.apply_pool(pool("shared", "10.20.0.0/16", &[ips]))).unwrap();
}

/// 64 processes at once on one store of 400 addresses, asking 512 in all: exactly 400
/// succeed, all distinct; the others are told the pool is used up; nobody gets another error.
#[test]
fn many_processes_at_once() {
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.1-10.20.1.144");
        let children: Vec<Child> = (0..64)
            .map(|c| spawn("alloc", backend, &dir, &format!("p{c}"), 8))
            .collect();
        let mut out = String::new();
        for child in children {
            assert!(
                finish(child, &mut out).success(),
                "{backend:?}: a child failed"
            );
        }
        assert_eq!(lines(&out, "ERR"), vec![], "{backend:?}: unexpected errors");
        let acked = lines(&out, "ACK");
        let addresses: BTreeSet<&str> = acked.iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(acked.len(), 400, "{backend:?}");
        assert_eq!(
            addresses.len(),
            400,
            "{backend:?}: an address was handed out twice"
        );
        assert_eq!(lines(&out, "USEDUP").len(), 512 - 400, "{backend:?}");
        let store = backend.open(&dir, WAIT).unwrap();
        assert_eq!(
            pollster::block_on(check_consistency(&*store)),
            400,
            "{backend:?}"
        );
    }
}

/// How long one child takes to start, open the store, allocate once and exit, on this
/// machine now: the time scale of the kill tests (median of a few runs).
fn one_call(backend: Backend, dir: &Path) -> Duration {
    median_of_five(|i| {
        let t = Instant::now();
        let (out, ok) = run("alloc", backend, dir, &format!("probe{i}"), 1);
        assert!(ok && lines(&out, "ACK").len() == 1, "{backend:?}: {out}");
        t.elapsed()
    })
}

/// Processes allocating and releasing are killed with SIGKILL at random instants, round
/// after round on the same store. After each round the store opens, every acknowledged
/// allocation is held, every acknowledged release is gone, an interrupted release is all or
/// nothing, and the store's views agree with no address held twice.
///
/// The kill instants scale with the time one call takes here and now, and rounds go on until
/// enough was acknowledged (or a generous deadline passes, which fails the test with the
/// figures): a loaded machine makes the test longer, not meaningless.
#[test]
fn kill_9_at_any_instant_loses_nothing_acknowledged() {
    let mut rng = fastrand::Rng::with_seed(42);
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.0/16");
        let call = one_call(backend, &dir);
        let mut budget = Budget::new(12, 100, Duration::from_secs(600));
        let mut acked: BTreeMap<String, IpAddr> = BTreeMap::new();
        let mut released: BTreeSet<String> = BTreeSet::new();
        let mut interrupted: BTreeSet<String> = BTreeSet::new();
        let mut kills_mid_run = 0;
        while budget.another_round() {
            let round = budget.rounds;
            let mut children: Vec<Child> = (0..3)
                .map(|c| spawn("storm", backend, &dir, &format!("r{round}c{c}"), 100_000))
                .collect();
            // From before the first call completes to several calls in.
            std::thread::sleep(call.mul_f64(rng.f64() * 10.0));
            for child in &mut children {
                if child.try_wait().unwrap().is_none() {
                    kills_mid_run += 1;
                }
                child.kill().unwrap();
            }
            let acked_before = acked.len();
            for child in children {
                let mut out = String::new();
                finish(child, &mut out);
                assert_eq!(lines(&out, "ERR"), vec![], "{backend:?}: unexpected errors");
                for (who, addr) in lines(&out, "ACK") {
                    acked.insert(who, addr.parse().unwrap());
                }
                let rel: BTreeSet<String> =
                    lines(&out, "REL").into_iter().map(|(w, _)| w).collect();
                for (who, _) in lines(&out, "DEL") {
                    if !rel.contains(&who) {
                        interrupted.insert(who);
                    }
                }
                released.extend(rel);
            }
            budget.finish_round(acked.len() - acked_before);
            let store = backend
                .open(&dir, WAIT)
                .expect("the store opens after SIGKILL");
            let held = pollster::block_on(check_consistency(&*store));
            let ipam = Ipam::new(store);
            let mut must_hold = 0;
            for (who, addr) in &acked {
                let has = pollster::block_on(ipam.owner_allocations(&owner(who))).unwrap();
                let has: Vec<IpAddr> = has.iter().map(|a| a.address).collect();
                if released.contains(who) {
                    assert!(
                        has.is_empty(),
                        "{backend:?}: {who} was released but still holds {has:?}"
                    );
                } else if interrupted.contains(who) {
                    assert!(
                        has.is_empty() || has == vec![*addr],
                        "{backend:?}: {who}: {has:?}"
                    );
                } else {
                    assert_eq!(has, vec![*addr], "{backend:?}: acknowledged {who} lost");
                    must_hold += 1;
                }
            }
            assert!(
                held >= must_hold,
                "{backend:?}: {held} held < {must_hold} acknowledged"
            );
        }
        budget.assert_enough(&format!("{backend:?} acknowledged allocations"));
        assert_eq!(
            kills_mid_run,
            3 * budget.rounds,
            "{backend:?}: children finished before the kill"
        );
        eprintln!(
            "{backend:?}: one call {call:?}; {} rounds in {:?}, {} acknowledged, {} released, \
             {} interrupted releases",
            budget.rounds,
            budget.elapsed(),
            acked.len(),
            released.len(),
            interrupted.len()
        );
    }
}

/// Store files are 0600 and the data directory 0700.
#[test]
fn files_are_private() {
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.0/24");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "{backend:?}");
        assert_eq!(mode(&backend.db_file(&dir)), 0o600, "{backend:?}");
        assert_eq!(
            mode(&dir.join(ipam_embedded::LOCK_FILE)),
            0o600,
            "{backend:?}"
        );
    }
}

/// The sled database of `dir`, opened with sled directly, waiting for the threads of the
/// last instance closed in this process to let go of it.
fn raw_sled(dir: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match sled::open(dir.join(ipam_sled::DB_DIR)) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline && e.to_string().contains("acquire lock") => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("sled::open: {e}"),
        }
    }
}

/// Every key and value of a store, read with the database library directly.
fn dump(backend: Backend, dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    match backend {
        Backend::Redb => {
            use redb::{ReadableDatabase, ReadableTable};
            let db = redb::Database::open(dir.join(ipam_redb::DB_FILE)).unwrap();
            let r = db.begin_read().unwrap();
            let mut out = Vec::new();
            let records = r
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("records"))
                .unwrap();
            for e in records.iter().unwrap() {
                let (k, v) = e.unwrap();
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            let meta = r
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            for e in meta.iter().unwrap() {
                let (k, v) = e.unwrap();
                out.push((
                    k.value().as_bytes().to_vec(),
                    v.value().to_be_bytes().to_vec(),
                ));
            }
            out
        }
        Backend::Sled => {
            let db = raw_sled(dir);
            db.iter()
                .map(|e| e.unwrap())
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        }
    }
}

/// A store written by a newer schema is refused with a clear message and left untouched:
/// every record and the schema mark read back the same. (redb's own file header may change
/// on any open; the data may not.)
#[test]
fn a_newer_schema_is_refused_untouched() {
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.0/24");
        match backend {
            Backend::Redb => {
                let db = redb::Database::open(dir.join(ipam_redb::DB_FILE)).unwrap();
                let w = db.begin_write().unwrap();
                {
                    let mut meta = w
                        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                        .unwrap();
                    meta.insert("schema", ipam_redb::SCHEMA + 1).unwrap();
                }
                w.commit().unwrap();
            }
            Backend::Sled => {
                let db = raw_sled(&dir);
                db.insert(b"\xffschema", &(ipam_sled::SCHEMA + 1).to_be_bytes())
                    .unwrap();
                db.flush().unwrap();
            }
        }
        let before = dump(backend, &dir);
        let Err(err) = backend.open(&dir, WAIT) else {
            panic!("{backend:?}: a newer schema was accepted")
        };
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Io { .. }), "{backend:?}: {msg}");
        assert!(
            msg.contains("schema 2") && msg.contains("newer"),
            "{backend:?}: {msg}"
        );
        assert!(
            dump(backend, &dir) == before,
            "{backend:?}: the refused store was changed"
        );
    }
}

/// Foreign, truncated or corrupt files give a clear I/O error, never a panic and never a
/// silent reset.
#[test]
fn foreign_truncated_and_corrupt_files_are_refused() {
    for backend in Backend::ALL {
        // Foreign: a file that was never a database.
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        std::fs::create_dir_all(backend.db_file(&dir).parent().unwrap()).unwrap();
        let junk = b"this is not a database, it is somebody's notes\n".repeat(200);
        std::fs::write(backend.db_file(&dir), &junk).unwrap();
        let Err(err) = backend.open(&dir, WAIT) else {
            panic!("{backend:?}: a foreign file was accepted")
        };
        assert!(matches!(err, StoreError::Io { .. }), "{backend:?}: {err}");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{backend:?}: {err}"
        );
        assert!(
            std::fs::read(backend.db_file(&dir)).unwrap() == junk,
            "{backend:?}: changed"
        );

        // Truncated and corrupted copies of a real store: refused, or still holding the data.
        for damage in ["truncate", "scribble"] {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("store");
            setup(backend, &dir, "10.20.0.0/24");
            {
                let ipam = Ipam::new(backend.open(&dir, WAIT).unwrap());
                pollster::block_on(ipam.allocate(&request("c1", &["shared"]))).unwrap();
            }
            let path = backend.db_file(&dir);
            let mut bytes = std::fs::read(&path).unwrap();
            match damage {
                "truncate" => bytes.truncate(bytes.len() / 2),
                _ => {
                    let mid = bytes.len() / 3;
                    let end = (mid + 4096).min(bytes.len());
                    for b in &mut bytes[mid..end] {
                        *b ^= 0x5a;
                    }
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            match backend.open(&dir, WAIT) {
                Err(e) => assert!(
                    matches!(e, StoreError::Io { .. } | StoreError::Corrupt { .. }),
                    "{backend:?} {damage}: {e}"
                ),
                Ok(store) => {
                    let ipam = Ipam::new(store);
                    match pollster::block_on(ipam.owner_allocations(&owner("c1"))) {
                        Ok(held) => assert_eq!(held.len(), 1, "{backend:?} {damage}: silent reset"),
                        Err(e) => assert!(
                            matches!(
                                e,
                                Error::Store(StoreError::Io { .. } | StoreError::Corrupt { .. })
                            ),
                            "{backend:?} {damage}: {e}"
                        ),
                    }
                }
            }
        }
    }
}

/// The toy migration of the upgrade test: the record set unchanged, except one record that
/// no key of ipam-core can name (so it is visibly the migration's).
fn toy_migration(mut records: Vec<Entry>) -> Result<Vec<Entry>, StoreError> {
    records.push((b"~migrated".to_vec(), b"by the toy".to_vec()));
    Ok(records)
}

fn refusing_migration(_: Vec<Entry>) -> Result<Vec<Entry>, StoreError> {
    Err(StoreError::Corrupt {
        key: "~".into(),
        reason: "the toy migration refuses".into(),
    })
}

/// The upgrade hook on the real databases: a build of the next schema upgrades a store of
/// this one by its migration, records and mark together (every migrated record has the same
/// fresh version); the store works at the new schema and this build then refuses it as
/// newer. A migration that fails leaves the store exactly as it was.
#[test]
fn an_older_schema_is_upgraded_by_the_next_build() {
    use ipam_embedded::{Schema, Step, SCHEMA};
    const NEXT: Schema = Schema {
        current: SCHEMA + 1,
        steps: &[Step {
            from: SCHEMA,
            migrate: toy_migration,
        }],
    };
    const FAILING: Schema = Schema {
        current: SCHEMA + 1,
        steps: &[Step {
            from: SCHEMA,
            migrate: refusing_migration,
        }],
    };
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.0/24");
        let (out, ok) = run("alloc", backend, &dir, "c", 2);
        assert!(ok && lines(&out, "ACK").len() == 2, "{out}");
        let before = dump(backend, &dir);

        let Err(err) = backend.open_with(&dir, WAIT, &FAILING) else {
            panic!("{backend:?}: a failing migration opened the store");
        };
        assert!(
            err.to_string().contains("the toy migration refuses"),
            "{err}"
        );
        assert!(
            dump(backend, &dir) == before,
            "{backend:?}: changed by a failed upgrade"
        );

        let store = backend.open_with(&dir, WAIT, &NEXT).unwrap();
        assert_eq!(
            pollster::block_on(check_consistency(&*store)),
            2,
            "{backend:?}"
        );
        drop(store);
        let after = dump(backend, &dir);
        let schema_key: &[u8] = match backend {
            Backend::Redb => b"schema",
            Backend::Sled => b"\xffschema",
        };
        let value = |dump: &[(Vec<u8>, Vec<u8>)], key: &[u8]| {
            dump.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        };
        assert_eq!(
            value(&after, schema_key),
            Some((SCHEMA + 1).to_be_bytes().to_vec())
        );
        assert_eq!(
            value(&after, b"~migrated").map(|v| v[8..].to_vec()),
            Some(b"by the toy".to_vec())
        );
        let records: Vec<&(Vec<u8>, Vec<u8>)> = after
            .iter()
            .filter(|(k, _)| {
                k[0] != 0xff && k.as_slice() != b"schema" && k.as_slice() != b"next_version"
            })
            .collect();
        let versions: BTreeSet<&[u8]> = records.iter().map(|(_, v)| &v[..8]).collect();
        assert_eq!(
            versions.len(),
            1,
            "{backend:?}: one version for the whole upgrade"
        );
        assert_eq!(records.len(), before.len() - 2 + 1, "{backend:?}");

        let Err(err) = backend.open(&dir, WAIT) else {
            panic!("{backend:?}: this build opened a store of the next schema");
        };
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
