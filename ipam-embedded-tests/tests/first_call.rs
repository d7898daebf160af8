//! The very first call on a new data directory creates the store. Killed at any instant of
//! it, the directory is never left bricked: the next call works, and the killed call either
//! happened whole or not at all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use ipam_embedded_tests::{
    child_main, finish, lines, median_of_five, run, spawn, Backend, Budget, CHILD_ENV,
};

/// Entry point of the child processes; does nothing when run directly.
#[test]
#[ignore = "entry point of the child processes the other tests start"]
fn child() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

/// Starts a first call on `dir` and waits until it is about to open the store; returns the
/// child, what it printed so far, and when it said so.
fn start_first_call(backend: Backend, dir: &Path, who: &str) -> (Child, String, Instant) {
    let mut child = spawn("first", backend, dir, who, 1);
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read child");
        out.push_str(&line);
        if n == 0 || line.starts_with("START ") {
            break;
        }
    }
    let started = Instant::now();
    // What the child printed after START and is already read stays in `out`.
    out.push_str(&String::from_utf8_lossy(reader.buffer()));
    child.stdout = Some(reader.into_inner());
    (child, out, started)
}

/// How long a first call takes from its START to its exit, here and now (median of five).
fn first_call_time(backend: Backend, root: &Path) -> Duration {
    median_of_five(|i| {
        let dir = root.join(format!("probe{i}"));
        let (child, mut out, started) = start_first_call(backend, &dir, "probe");
        assert!(finish(child, &mut out).success(), "{backend:?}: {out}");
        assert_eq!(lines(&out, "ACK").len(), 1, "{backend:?}: {out}");
        started.elapsed()
    })
}

/// Kills the first call at instants spread over its whole duration (measured on this machine
/// first, so that a loaded machine gets later kills, not useless ones), many times; after
/// each kill, another call on the same directory must work.
#[test]
fn a_killed_first_call_never_bricks_the_directory() {
    let mut rng = fastrand::Rng::with_seed(9);
    for backend in Backend::ALL {
        let root = tempfile::tempdir().unwrap();
        let window = first_call_time(backend, root.path());
        let mut budget = Budget::new(150, 0, Duration::from_secs(900));
        let (mut killed_early, mut finished) = (0, 0);
        while budget.another_round() {
            let dir = root.path().join(format!("d{}", budget.rounds));
            let (mut child, mut out, started) = start_first_call(backend, &dir, "killed");
            let at = window.mul_f64(rng.f64() * 1.2);
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            let _ = child.kill();
            finish(child, &mut out);
            let acked = lines(&out, "ACK");
            if acked.is_empty() {
                killed_early += 1;
            } else {
                finished += 1;
            }

            let (next, ok) = run("first", backend, &dir, "next", 1);
            assert!(
                ok && lines(&next, "ACK").len() == 1,
                "{backend:?}: a first call killed {at:?} after it started left {} unusable: \
                 {next}",
                dir.display()
            );
            let (held, ok) = run("get", backend, &dir, "killed", 1);
            let held = lines(&held, "HOLDS");
            assert!(ok && held.len() == 1, "{backend:?}: {held:?}");
            let held = &held[0].1;
            match acked.first() {
                Some((_, addr)) => assert_eq!(held, addr, "{backend:?}: acknowledged, lost"),
                None => assert!(
                    held.is_empty() || held.split(' ').count() == 1,
                    "{backend:?}: {held}"
                ),
            }
            let _ = std::fs::remove_dir_all(&dir);
            budget.finish_round(1);
        }
        budget.assert_enough(&format!("{backend:?} killed first calls"));
        eprintln!(
            "{backend:?}: a first call takes {window:?}; {} kills in {:?}: {killed_early} \
             before the acknowledgement, {finished} after",
            budget.rounds,
            budget.elapsed()
        );
        // Kills spread over 1.2 times the measured call land mostly inside it; a machine that
        // got much faster after the measurement moves them later, hence the slack.
        assert!(
            killed_early * 4 >= budget.rounds,
            "{backend:?}: most kills came after the call was done: too late to test anything"
        );
    }
}
