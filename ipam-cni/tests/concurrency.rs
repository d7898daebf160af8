//! Many plugin processes at once, as a runtime starting many Pods makes them, and processes
//! killed with SIGKILL at any instant.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{call, finish, holders, ipam_at, netconf};
use ipam_core::Owner;
use serde_json::json;

/// 200 ADDs started together into a pool of 100 addresses: exactly 100 succeed with distinct
/// addresses, every other fails with code 100 ("used up"), none with 11 (each process waits
/// its turn on the store instead of giving up).
#[test]
fn two_hundred_parallel_adds_into_a_pool_of_one_hundred() {
    let dir = tempfile::tempdir().unwrap();
    let conf = netconf(
        "1.1.0",
        "storm",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24",
                            "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.109"}]]}),
    );
    let children: Vec<_> = (0..200)
        .map(|i| call("ADD", &format!("pod-{i:03}"), &conf).spawn())
        .collect();
    let replies: Vec<_> = children.into_iter().map(finish).collect();

    let mut addresses = BTreeSet::new();
    let mut codes: BTreeMap<Option<u64>, usize> = BTreeMap::new();
    for r in &replies {
        if r.status == Some(0) {
            let got = r.addresses();
            assert_eq!(got.len(), 1, "{r:#?}");
            assert!(
                addresses.insert(got[0].clone()),
                "{} handed out twice",
                got[0]
            );
        } else {
            *codes.entry(r.code()).or_default() += 1;
            if r.code() == Some(100) {
                assert!(
                    r.msg().contains(
                        r#"pool "storm-0" (total 100, reserved 0, allocated 100, available 0)"#
                    ),
                    "{}",
                    r.msg()
                );
            }
        }
    }
    assert_eq!(addresses.len(), 100, "failures by code: {codes:?}");
    assert_eq!(codes, BTreeMap::from([(Some(100), 100)]));
    // What the processes printed is what the store holds.
    let held: BTreeSet<String> = holders(dir.path())
        .into_iter()
        .map(|(a, _)| format!("{a}/24"))
        .collect();
    assert_eq!(held, addresses);
}

/// What the test knows about one container after each finished invocation.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// It holds this address (an ADD printed it and no DEL finished since).
    Holds(String),
    /// It holds nothing (a DEL finished, or nothing was ever added).
    Nothing,
    /// An invocation was killed: either outcome is allowed.
    Unsure,
}

/// ADDs and DELs from 6 threads at once, a third of them killed with SIGKILL after a random
/// delay. Afterwards: the store opens; every ADD that printed a result and was not DELeted
/// since still holds exactly its address (and a repeated ADD returns it); no address is held
/// twice; the owner records and the allocation records agree.
#[test]
fn kill_9_during_a_storm_of_adds_and_dels_loses_nothing_printed() {
    let dir = tempfile::tempdir().unwrap();
    let conf = netconf(
        "1.0.0",
        "kill9",
        dir.path(),
        json!({"ranges": [[{"subnet": "198.51.100.0/24",
                            "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.39"}]]}),
    );
    const THREADS: usize = 6;
    const IDS_PER_THREAD: usize = 6;
    let known = Mutex::new(BTreeMap::<String, Known>::new());
    let killed = Mutex::new(0usize);
    let deadline = Instant::now() + Duration::from_secs(8);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (conf, known, killed) = (&conf, &known, &killed);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64 + 1);
                let ids: Vec<String> = (0..IDS_PER_THREAD).map(|i| format!("c{t}-{i}")).collect();
                for id in &ids {
                    known.lock().unwrap().insert(id.clone(), Known::Nothing);
                }
                while Instant::now() < deadline {
                    let id = &ids[rng.usize(..ids.len())];
                    let command = if rng.u64(..3) < 2 { "ADD" } else { "DEL" };
                    let mut child = call(command, id, conf).spawn();
                    let kill = rng.u64(..3) == 0;
                    if kill {
                        std::thread::sleep(Duration::from_micros(rng.u64(..15_000)));
                        let _ = child.kill();
                    }
                    let reply = finish(child);
                    let mut known = known.lock().unwrap();
                    let state = known.get_mut(id).unwrap();
                    if reply.status.is_none() {
                        *killed.lock().unwrap() += 1;
                        // A killed ADD for a holder changes nothing: a repeated ADD keeps
                        // what it holds. Anything else is now unknown.
                        if !(command == "ADD" && matches!(state, Known::Holds(_))) {
                            *state = Known::Unsure;
                        }
                        continue;
                    }
                    match (command, reply.status) {
                        ("ADD", Some(0)) => {
                            let got = reply.addresses();
                            assert_eq!(got.len(), 1, "{reply:#?}");
                            if let Known::Holds(before) = &*state {
                                assert_eq!(before, &got[0], "a repeated ADD changed the address");
                            }
                            *state = Known::Holds(got[0].clone());
                        }
                        ("ADD", _) => {
                            assert_eq!(reply.code(), Some(100), "{reply:#?}");
                            assert!(
                                !matches!(state, Known::Holds(_)),
                                "a holder was refused: {reply:#?}"
                            );
                        }
                        ("DEL", Some(0)) => *state = Known::Nothing,
                        _ => panic!("DEL failed: {reply:#?}"),
                    }
                }
            });
        }
    });
    let killed = killed.into_inner().unwrap();
    assert!(killed >= 10, "only {killed} processes were killed mid-run");

    // The store opens, and says the same as what the processes printed.
    let ipam = ipam_at(dir.path());
    let allocations = pollster::block_on(ipam.allocations(None)).unwrap();
    let mut seen = BTreeSet::new();
    for a in &allocations {
        assert!(seen.insert(a.address), "{} held twice", a.address);
        let record = pollster::block_on(ipam.owner_allocations(&a.owner)).unwrap();
        assert!(
            record.contains(a),
            "allocation {a:?} missing from its owner's record"
        );
    }
    let known = known.into_inner().unwrap();
    for (id, state) in &known {
        let owner = Owner::new(id.as_str(), "eth0").unwrap();
        let held: Vec<String> = pollster::block_on(ipam.owner_allocations(&owner))
            .unwrap()
            .iter()
            .map(|a| format!("{}/24", a.address))
            .collect();
        for h in &held {
            let address: std::net::IpAddr = h.trim_end_matches("/24").parse().unwrap();
            assert!(
                allocations
                    .iter()
                    .any(|a| a.address == address && a.owner == owner),
                "{id}'s record lists {h}, which has no allocation record"
            );
        }
        match state {
            Known::Holds(a) => assert_eq!(held, std::slice::from_ref(a), "{id}"),
            Known::Nothing => assert!(held.is_empty(), "{id} holds {held:?} after its DEL"),
            Known::Unsure => assert!(held.len() <= 1, "{id} holds {held:?}"),
        }
    }
    drop(ipam);
    // A repeated ADD by each confirmed holder returns its address and allocates nothing new.
    let before = holders(dir.path());
    for (id, state) in &known {
        if let Known::Holds(a) = state {
            let r = call("ADD", id, &conf).run().ok();
            assert_eq!(r.addresses(), std::slice::from_ref(a), "{id}");
        }
    }
    assert_eq!(holders(dir.path()), before);
}
