//! The embedded stores under real processes: many at once, killed at any instant, and
//! handed files they must refuse.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipam_core::testkit::{check_consistency, owner, pool, request};
use ipam_core::{Error, Ipam, StoreError};
use ipam_embedded_tests::Backend;

const CHILD_ENV: &str = "IPAM_TEST_CHILD";
const WAIT: Duration = Duration::from_secs(120);

/// Entry point of the child processes; does nothing when run directly.
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let [mode, backend, dir, id, count] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let backend = Backend::from_name(backend).expect("backend");
    let dir = Path::new(dir);
    let count: usize = count.parse().expect("count");
    // One store open per operation, as one CNI call per process does.
    let op_allocate = |who: &str| {
        let ipam = Ipam::new(backend.open(dir, WAIT).expect("open"));
        match pollster::block_on(ipam.allocate(&request(who, &["shared"]))) {
            Ok(a) => println!("ACK {who} {}", a[0].address),
            Err(Error::Exhausted { .. }) => println!("USEDUP {who}"),
            Err(e) => println!("ERR {who} {e}"),
        }
    };
    let op_release = |who: &str| {
        println!("DEL {who}");
        let ipam = Ipam::new(backend.open(dir, WAIT).expect("open"));
        match pollster::block_on(ipam.release(&owner(who), Some("net1"))) {
            Ok(_) => println!("REL {who}"),
            Err(e) => println!("ERR {who} {e}"),
        }
    };
    match mode {
        "alloc" => {
            for i in 0..count {
                op_allocate(&format!("{id}-{i}"));
            }
        }
        "storm" => {
            for i in 0..count {
                op_allocate(&format!("{id}-{i}"));
                if i % 3 == 2 {
                    op_release(&format!("{id}-{}", i - 1));
                }
            }
        }
        _ => panic!("unknown mode {mode}"),
    }
}

fn spawn(mode: &str, backend: Backend, dir: &Path, id: &str, count: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(
            CHILD_ENV,
            format!("{mode},{},{},{id},{count}", backend.name(), dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// The complete lines a child printed with a given verb, as (owner, rest).
fn lines(out: &str, verb: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix(verb)?.strip_prefix(' '))
        .map(|rest| match rest.split_once(' ') {
            Some((who, more)) => (who.to_owned(), more.to_owned()),
            None => (rest.to_owned(), String::new()),
        })
        .collect()
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
        for mut child in children {
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert!(
                child.wait().unwrap().success(),
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

/// Processes allocating and releasing are killed with SIGKILL at random instants, round
/// after round on the same store. After each round the store opens, every acknowledged
/// allocation is held, every acknowledged release is gone, an interrupted release is all or
/// nothing, and the store's views agree with no address held twice.
#[test]
fn kill_9_at_any_instant_loses_nothing_acknowledged() {
    let rounds = 12;
    let mut rng = fastrand::Rng::with_seed(42);
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        setup(backend, &dir, "10.20.0.0/16");
        let mut acked: BTreeMap<String, IpAddr> = BTreeMap::new();
        let mut released: BTreeSet<String> = BTreeSet::new();
        let mut interrupted: BTreeSet<String> = BTreeSet::new();
        let mut kills_mid_run = 0;
        for round in 0..rounds {
            let mut children: Vec<Child> = (0..3)
                .map(|c| spawn("storm", backend, &dir, &format!("r{round}c{c}"), 100_000))
                .collect();
            std::thread::sleep(Duration::from_millis(rng.u64(30..400)));
            for child in &mut children {
                if child.try_wait().unwrap().is_none() {
                    kills_mid_run += 1;
                }
                child.kill().unwrap();
            }
            for mut child in children {
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                child.wait().unwrap();
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
        assert!(
            kills_mid_run >= rounds,
            "{backend:?}: children finished before the kill"
        );
        assert!(
            acked.len() > 3 * rounds,
            "{backend:?}: too little work to mean anything"
        );
        eprintln!(
            "{backend:?}: {rounds} rounds, {} acknowledged, {} released, {} interrupted releases",
            acked.len(),
            released.len(),
            interrupted.len()
        );
    }
}

fn db_file(backend: Backend, dir: &Path) -> std::path::PathBuf {
    match backend {
        Backend::Redb => dir.join(ipam_redb::DB_FILE),
        Backend::Sled => dir.join(ipam_sled::DB_DIR).join("db"),
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
        assert_eq!(mode(&db_file(backend, &dir)), 0o600, "{backend:?}");
        assert_eq!(mode(&dir.join(ipam_lock::LOCK_FILE)), 0o600, "{backend:?}");
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
            let db = sled::open(dir.join(ipam_sled::DB_DIR)).unwrap();
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
                let db = sled::open(dir.join(ipam_sled::DB_DIR)).unwrap();
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
        std::fs::create_dir_all(db_file(backend, &dir).parent().unwrap()).unwrap();
        let junk = b"this is not a database, it is somebody's notes\n".repeat(200);
        std::fs::write(db_file(backend, &dir), &junk).unwrap();
        let Err(err) = backend.open(&dir, WAIT) else {
            panic!("{backend:?}: a foreign file was accepted")
        };
        assert!(matches!(err, StoreError::Io { .. }), "{backend:?}: {err}");
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{backend:?}: {err}"
        );
        assert!(
            std::fs::read(db_file(backend, &dir)).unwrap() == junk,
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
            let path = db_file(backend, &dir);
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
