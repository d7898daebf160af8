//! A full disk is an I/O error, never a lost store: on a real tmpfs filled to the last
//! page, opening, reading and allocating fail cleanly (or, for what needs no new space,
//! succeed); once space is freed, everything acknowledged before is there and the store
//! works. Needs root (to mount the tmpfs): skipped with a reason otherwise, failed under
//! `CI=true`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ipam_core::testkit::check_consistency;
use ipam_embedded_tests::{child_main, lines, run, Backend, TmpFs, CHILD_ENV, WAIT};

/// Entry point of the child processes; does nothing when run directly.
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

/// Fills the file system of `dir` to the last byte; returns the filler's path.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0x55u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(n) if n == chunk => {}
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_fails_cleanly_and_loses_nothing() {
    for backend in Backend::ALL {
        let Some(fs) = TmpFs::mount(16 << 20) else {
            return;
        };
        let dir = fs.path().join("store");
        let mut acked = BTreeMap::new();
        let mut fresh_acked = BTreeMap::new();
        for i in 0..5 {
            let who = format!("before-{i}");
            let (out, ok) = run("first", backend, &dir, &who, 1);
            assert!(ok, "{backend:?}: {out}");
            let got = lines(&out, "ACK");
            assert_eq!(got.len(), 1, "{backend:?}: {out}");
            acked.insert(who, got[0].1.clone());
        }
        let filler = fill(fs.path());

        // While full: every call either does its job or fails with an I/O error; none
        // panics, none reports anything else. At least one must meet the full disk. A store
        // created while the disk is full fails the same way.
        let fresh = fs.path().join("fresh");
        let mut io_errors = 0;
        let mut outcomes = Vec::new();
        for round in 0..3 {
            for (mode, dir, who) in [
                ("get", &dir, "before-0".to_owned()),
                ("first", &dir, format!("during-{round}")),
                ("first", &fresh, format!("fresh-{round}")),
            ] {
                let (out, ok) = run(mode, backend, dir, &who, 1);
                assert!(ok, "{backend:?}: {mode} {who} crashed: {out}");
                for (_, rest) in lines(&out, "ERR") {
                    assert!(rest.starts_with("io "), "{backend:?}: {mode}: {rest}");
                    io_errors += 1;
                    outcomes.push(format!("{mode} {who}: {rest}"));
                }
                for (who, addr) in lines(&out, "ACK") {
                    outcomes.push(format!("{mode} {who}: acknowledged"));
                    if dir == &fresh {
                        fresh_acked.insert(who, addr);
                    } else {
                        acked.insert(who, addr);
                    }
                }
                for (_, addrs) in lines(&out, "HOLDS") {
                    outcomes.push(format!("{mode} {who}: read"));
                    assert_eq!(addrs, acked["before-0"], "{backend:?}: read while full");
                }
            }
        }
        eprintln!("{backend:?} on a full disk:\n  {}", outcomes.join("\n  "));
        assert!(io_errors > 0, "{backend:?}: the full disk was never met");

        std::fs::remove_file(&filler).unwrap();
        for (who, addr) in &acked {
            let (out, ok) = run("get", backend, &dir, who, 1);
            assert!(ok, "{backend:?}: {out}");
            assert_eq!(
                lines(&out, "HOLDS"),
                vec![(who.clone(), addr.clone())],
                "{backend:?}: after space was freed"
            );
        }
        let (out, ok) = run("first", backend, &dir, "after", 1);
        assert!(ok && lines(&out, "ACK").len() == 1, "{backend:?}: {out}");
        let (out, ok) = run("first", backend, &fresh, "fresh-after", 1);
        assert!(ok && lines(&out, "ACK").len() == 1, "{backend:?}: {out}");
        for (who, addr) in &fresh_acked {
            let (out, _) = run("get", backend, &fresh, who, 1);
            assert_eq!(lines(&out, "HOLDS"), vec![(who.clone(), addr.clone())]);
        }
        let store = backend.open(&dir, WAIT).unwrap();
        assert_eq!(
            pollster::block_on(check_consistency(&*store)),
            acked.len() + 1,
            "{backend:?}"
        );
    }
}

/// What made sled's stores unopenable after a full disk: sled writes a snapshot on every
/// open as `snap.N.generating` and renames it when complete, but takes the last `snap.*` by
/// name as its snapshot, `.generating` or not. A snapshot write cut short (no space, or
/// `kill -9`) must not lose the store: the next open works and holds everything.
#[test]
fn a_torn_sled_snapshot_loses_nothing() {
    for torn in [&b""[..], b"half a snapshot", &[0u8; 4096]] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        let (out, ok) = run("first", Backend::Sled, &dir, "c1", 1);
        let acked = lines(&out, "ACK");
        assert!(ok && acked.len() == 1, "{out}");
        let snap = dir
            .join(ipam_sled::DB_DIR)
            .join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&snap, torn).unwrap();
        let (out, ok) = run("get", Backend::Sled, &dir, "c1", 1);
        assert!(ok, "{out}");
        assert_eq!(
            lines(&out, "HOLDS"),
            vec![("c1".to_owned(), acked[0].1.clone())],
            "torn snapshot of {} bytes: {out}",
            torn.len()
        );
        assert!(!snap.exists());
    }
}
