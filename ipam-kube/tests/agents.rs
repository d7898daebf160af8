//! Node agents' caches against a real API server (see `testenv/`): two agents' stores, each
//! with its own cache ([`ipam_kube::KubeOptions::cache`]), and a plugin's store without one,
//! on one pool, with ReservedIPs applied and deleted meanwhile. No address is ever told to
//! two owners at once, and none that a ReservedIP acknowledged before an ADD began is handed
//! out by it, however stale the caches are.
//!
//! The cluster is the one `IPAM_TEST_KUBECONFIG` names. Without it the test says so and
//! passes, except under `CI=true`, where a missing cluster is a failure.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipam_core::testkit::{check_consistency, check_indexes_exact, owner, pool, request, reserved};
use ipam_core::{Config, Error, Ipam, ObjectName, Owner};
use ipam_kube::KubeStore;

/// Who was told they hold an address, and which reservation was acknowledged and not yet
/// being deleted (with a number that changes at each apply and delete).
#[derive(Default)]
struct Told {
    holders: BTreeMap<IpAddr, Owner>,
    reservation: Option<(u64, Vec<IpAddr>)>,
    epoch: u64,
}

/// A small generator of its own, so that each writer's sequence is fixed by its seed.
struct Steps(u64);

impl Steps {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn engine(store: Arc<KubeStore>, node: &str) -> Ipam<Arc<KubeStore>> {
    Ipam::with_config(
        store,
        Config {
            node: Some(ObjectName::new(node).unwrap()),
            ..Config::default()
        },
    )
}

fn addresses(first: u8, count: u8) -> Vec<IpAddr> {
    (first..first + count)
        .map(|i| IpAddr::from([10, 77, 0, i]))
        .collect()
}

#[test]
fn two_agents_caches_and_a_plugin_never_tell_one_address_to_two_owners() {
    let Some(stores) = common::stores_sharing("agents", "a", &[true, true, false]) else {
        return;
    };
    let stores: Vec<Arc<KubeStore>> = stores.into_iter().map(Arc::new).collect();
    let writers = [
        engine(stores[0].clone(), "node-a"),
        engine(stores[1].clone(), "node-b"),
        engine(stores[2].clone(), "node-c"),
    ];
    let operator = engine(stores[2].clone(), "operator");
    // 24 addresses; each writer holds at most 6, a reservation covers 4.
    pollster::block_on(operator.apply_pool(pool("p", "10.77.0.0/24", &["10.77.0.1-10.77.0.24"])))
        .unwrap();
    let told = Mutex::new(Told::default());
    const OPS: usize = 200;
    std::thread::scope(|s| {
        for (w, ipam) in writers.iter().enumerate() {
            let told = &told;
            s.spawn(move || {
                let mut steps = Steps(0x9e37_79b9 + w as u64);
                let mut mine: Vec<(Owner, IpAddr)> = Vec::new();
                for i in 0..OPS {
                    let release = mine.len() >= 6 || (!mine.is_empty() && steps.below(3) == 0);
                    if release {
                        let (who, address) = mine.remove(steps.below(mine.len() as u64) as usize);
                        // No longer told to hold it from the moment its DEL starts.
                        told.lock().unwrap().holders.remove(&address);
                        pollster::block_on(ipam.release(&who, Some("net1")))
                            .unwrap_or_else(|e| panic!("writer {w}: DEL of {who}: {e}"));
                        continue;
                    }
                    let id = format!("w{w}-{i}");
                    let before = told.lock().unwrap().reservation.clone();
                    match pollster::block_on(ipam.allocate(&request(&id, &["p"]))) {
                        Ok(granted) => {
                            let address = granted[0].allocation.address;
                            let mut t = told.lock().unwrap();
                            if let Some(other) = t.holders.get(&address) {
                                panic!("{address} told to {id} while {other} holds it");
                            }
                            // Acknowledged before this ADD began, and not deleted since.
                            if let Some((epoch, covered)) = &before {
                                let still = t.reservation.as_ref().is_some_and(|(e, _)| e == epoch);
                                assert!(
                                    !(still && covered.contains(&address)),
                                    "{address}, reserved before the ADD of {id} began, was handed out"
                                );
                            }
                            t.holders.insert(address, owner(&id));
                            mine.push((owner(&id), address));
                        }
                        Err(Error::Exhausted { .. }) => {}
                        Err(e) => panic!("writer {w}: ADD of {id}: {e}"),
                    }
                }
                for (who, address) in mine {
                    told.lock().unwrap().holders.remove(&address);
                    pollster::block_on(ipam.release(&who, Some("net1"))).unwrap();
                }
            });
        }
        // The operator: a ReservedIP over 4 of the addresses, applied and deleted in turn.
        let operator = &operator;
        let told = &told;
        s.spawn(move || {
            let mut steps = Steps(0x51ed_2701);
            for round in 0..12 {
                let first = 1 + steps.below(21) as u8;
                let covered = addresses(first, 4);
                let spec = format!("10.77.0.{}-10.77.0.{}", first, first + 3);
                pollster::block_on(operator.apply_reserved_ip(reserved("r", &[&spec]))).unwrap();
                {
                    let mut t = told.lock().unwrap();
                    t.epoch += 1;
                    t.reservation = Some((t.epoch, covered));
                }
                std::thread::sleep(std::time::Duration::from_millis(100 + 20 * round));
                told.lock().unwrap().reservation = None;
                pollster::block_on(operator.delete_reserved_ip(&ObjectName::new("r").unwrap()))
                    .unwrap();
            }
        });
    });
    let store: &KubeStore = &stores[2];
    assert_eq!(pollster::block_on(check_consistency(store)), 0);
    assert_eq!(pollster::block_on(check_indexes_exact(store)), 0);
    for (n, s) in stores.iter().enumerate() {
        let r = s.requests();
        eprintln!(
            "store {n} ({}): {} reads, {} writes, {} conflicts",
            if n < 2 { "cached" } else { "fresh" },
            r.reads,
            r.writes,
            r.conflicts
        );
    }
    pollster::block_on(stores[2].delete_namespace()).unwrap();
}
