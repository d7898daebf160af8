//! The store conformance kit (feature `testkit`).
//!
//! Every [`Store`] implementation runs these scenarios, unchanged, each on a fresh, empty
//! store: the seed walk-through, the three rules of reservations, repeated requests, release,
//! GC, candidate pools, all-or-nothing, one holder per address across overlapping pools and
//! edited inline ranges, compare-and-swap semantics, and many concurrent writers on one pool
//! with no duplicate. A backend's tests call [`conformance_tests!`](crate::conformance_tests)
//! with an expression that makes a fresh store: one `#[test]` per scenario, so that one
//! failure does not hide the others.
//!
//! ```
//! ipam_core::testkit::run_all(ipam_core::MemoryStore::new);
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

pub mod model;

use crate::addr::Family;
use crate::engine::{Applied, Config, Ipam, Request, Slot};
use crate::error::{Error, StoreError, Unavailable};
use crate::holder::PodRef;
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, IpPoolSpec};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::store::{Expect, Key, KeyRange, Record, Store, Transaction, Versioned};

/// A scenario of the kit: a name and a function run on a fresh store.
pub type Scenario = (&'static str, fn(Arc<dyn Store>));

/// Every scenario, by name.
pub const SCENARIOS: &[Scenario] = &[
    ("compare_and_swap", |s| {
        pollster::block_on(compare_and_swap(&*s))
    }),
    ("scan_ranges", |s| pollster::block_on(scan_ranges(&*s))),
    ("seed_walkthrough", |s| {
        pollster::block_on(seed_walkthrough(s))
    }),
    ("explicit_requests", |s| {
        pollster::block_on(explicit_requests(s))
    }),
    ("repeat_release_gc", |s| {
        pollster::block_on(repeat_release_gc(s))
    }),
    ("candidates_and_all_or_nothing", |s| {
        pollster::block_on(candidates_and_all_or_nothing(s))
    }),
    ("future_pools_and_deletion", |s| {
        pollster::block_on(future_pools_and_deletion(s))
    }),
    ("ipv6_slash64", |s| pollster::block_on(ipv6_slash64(s))),
    ("inline_pools_are_lenses", |s| {
        pollster::block_on(inline_pools_are_lenses(s))
    }),
    ("one_holder_across_pools", |s| {
        pollster::block_on(one_holder_across_pools(s))
    }),
    ("pool_changes_that_would_mislead", |s| {
        pollster::block_on(pool_changes_that_would_mislead(s))
    }),
    ("dry_runs_refuse_what_applies_refuse", |s| {
        pollster::block_on(dry_runs_refuse_what_applies_refuse(s))
    }),
    ("round_robin_across_blocks", |s| {
        pollster::block_on(round_robin_across_blocks(s))
    }),
    ("concurrent_writers", |s| concurrent_writers(s, 8, 40, 250)),
    ("gc_is_scoped_to_its_node", |s| {
        pollster::block_on(gc_is_scoped_to_its_node(s))
    }),
    ("release_at_every_instant_of_an_allocation", |s| {
        release_at_every_instant_of_an_allocation(s)
    }),
    ("allocation_at_every_instant_of_a_release", |s| {
        allocation_at_every_instant_of_a_release(s)
    }),
    ("pool_changes_at_every_instant_of_an_allocation", |s| {
        pool_changes_at_every_instant_of_an_allocation(s)
    }),
    ("overlapping_applies_at_every_instant_of_each_other", |s| {
        overlapping_applies_at_every_instant_of_each_other(s)
    }),
    ("statefulset_pods_keep_their_address", |s| {
        pollster::block_on(statefulset_pods_keep_their_address(s))
    }),
    ("crash_leftovers_are_found_and_swept", |s| {
        pollster::block_on(crash_leftovers_are_found_and_swept(s))
    }),
];

/// Runs every scenario, each on a fresh store from `make`, in one test. Prefer
/// [`conformance_tests!`](crate::conformance_tests), which gives each its own test.
pub fn run_all<S: Store + 'static>(make: impl Fn() -> S) {
    for (name, scenario) in SCENARIOS {
        eprintln!("conformance: {name}");
        scenario(Arc::new(make()));
    }
}

/// Runs the scenario called `name` on `store`.
///
/// # Panics
/// If there is no such scenario, or the store fails it.
pub fn run(name: &str, store: Arc<dyn Store>) {
    let (_, scenario) = SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no conformance scenario {name:?}"));
    scenario(store);
}

/// One `#[test]` per conformance scenario, each on a fresh store made by `$make` (an
/// expression evaluated once per test). With `optional`, `$make` gives an `Option`: `None`
/// skips the scenario (a backend whose server is not there; the backend decides when that is
/// allowed).
///
/// ```ignore
/// ipam_core::conformance_tests!(ipam_core::MemoryStore::new());
/// ipam_core::conformance_tests!(optional: my_backend_if_reachable());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (optional: $make:expr) => {
        $crate::conformance_tests!(@each $make;
            compare_and_swap, scan_ranges, seed_walkthrough, explicit_requests,
            repeat_release_gc, candidates_and_all_or_nothing, future_pools_and_deletion,
            ipv6_slash64, inline_pools_are_lenses, one_holder_across_pools,
            pool_changes_that_would_mislead, dry_runs_refuse_what_applies_refuse,
            round_robin_across_blocks, concurrent_writers,
            gc_is_scoped_to_its_node, release_at_every_instant_of_an_allocation,
            allocation_at_every_instant_of_a_release,
            pool_changes_at_every_instant_of_an_allocation,
            overlapping_applies_at_every_instant_of_each_other,
            statefulset_pods_keep_their_address, crash_leftovers_are_found_and_swept);
    };
    ($make:expr) => {
        $crate::conformance_tests!(optional: Some($make));
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                if let Some(store) = $make {
                    $crate::testkit::run(stringify!($name), ::std::sync::Arc::new(store));
                }
            }
        )*
    };
}

/// Test helper: a validated name.
pub fn name(s: &str) -> ObjectName {
    ObjectName::new(s).expect("valid test name")
}

/// Test helper: an owner `(id, "eth0")`.
pub fn owner(id: &str) -> Owner {
    Owner::new(id, "eth0").expect("valid test owner")
}

/// Test helper: the StatefulSet Pod `default/NAME` of the StatefulSet `db`, with `uid`.
pub fn statefulset_pod(pod_name: &str, uid: &str) -> PodRef {
    PodRef {
        namespace: Some("default".into()),
        name: pod_name.into(),
        uid: Some(uid.into()),
        statefulset: Some("db".into()),
    }
}

/// Test helper: a pool.
pub fn pool(pool_name: &str, subnet: &str, ips: &[&str]) -> IpPool {
    IpPool::new(
        pool_name,
        IpPoolSpec {
            subnet: subnet.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .expect("valid test pool")
}

/// Test helper: a ReservedIP.
pub fn reserved(reserved_name: &str, ips: &[&str]) -> ReservedIp {
    ReservedIp::new(
        reserved_name,
        ReservedIpSpec {
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ip_version: None,
        },
    )
    .expect("valid test reservation")
}

/// Test helper: an engine on `store` for the node `node` ([`Config::node`]), otherwise
/// configured by default: what each node's plugin or agent runs where nodes share a store.
pub fn on_node<S: Store>(store: S, node: &str) -> Ipam<S> {
    Ipam::with_config(
        store,
        Config {
            node: Some(name(node)),
            ..Config::default()
        },
    )
}

/// Test helper: `ipam` applies the pool `p` over all of `subnet`, takes every address of it
/// (owners `a0`, `a1`, ...: on a node, it claims every block), then releases those in
/// `freed`. Returns how many it still holds.
pub async fn a_pool_filled_then_freed_in<S: Store>(
    ipam: &Ipam<S>,
    subnet: &str,
    freed: std::ops::RangeInclusive<IpAddr>,
) -> usize {
    ipam.apply_pool(pool("p", subnet, &[subnet])).await.unwrap();
    let mut held = 0;
    loop {
        match ipam.allocate(&request(&format!("a{held}"), &["p"])).await {
            Ok(_) => held += 1,
            Err(Error::Exhausted { .. }) => break,
            Err(e) => panic!("filling {subnet}: {e}"),
        }
    }
    for a in ipam.allocations(None).await.unwrap() {
        if freed.contains(&a.address) {
            ipam.release(&a.owner, None).await.unwrap();
            held -= 1;
        }
    }
    held
}

/// Test helper: a request of one address from `pools` (tried in order) on network `net1`.
pub fn request(owner_id: &str, pools: &[&str]) -> Request {
    Request {
        owner: owner(owner_id),
        network: "net1".into(),
        pod: None,
        slots: vec![Slot {
            pools: pools.iter().map(|p| name(p)).collect(),
            requested: None,
            family: None,
        }],
        reserved: FamilySets::default(),
        defines: vec![],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid test address")
}

fn engine(store: Arc<dyn Store>) -> Ipam<Arc<dyn Store>> {
    Ipam::with_config(
        store,
        Config {
            max_attempts: 200,
            seed: Some(7),
            ..Config::default()
        },
    )
}

async fn counts(ipam: &Ipam<Arc<dyn Store>>, pool_name: &str) -> [u128; 4] {
    let p = ipam
        .pool(&name(pool_name))
        .await
        .unwrap()
        .expect("pool exists");
    let c = ipam.pool_counts(&p).await.unwrap();
    [c.total, c.reserved, c.allocated, c.available]
}

async fn addr_of(ipam: &Ipam<Arc<dyn Store>>, req: &Request) -> Result<IpAddr, Error> {
    let got = ipam.allocate(req).await?;
    assert_eq!(got.len(), 1);
    Ok(got[0].allocation.address)
}

/// Versions and preconditions: a stale or wrong expectation changes nothing.
pub async fn compare_and_swap(store: &dyn Store) {
    let key = Key::Cursor {
        pool: name("p"),
        node: None,
    };
    let other = Key::Cursor {
        pool: name("q"),
        node: Some(name("node-1")),
    };
    assert!(store.get(&key).await.unwrap().is_none());

    let mut t = Transaction::new();
    t.put(key.clone(), Record::Cursor(1), Expect::Absent);
    store.commit(t).await.unwrap();
    let v1 = store.get(&key).await.unwrap().expect("written");
    assert_eq!(v1.value, Record::Cursor(1));

    // A second create of the same key conflicts.
    let mut t = Transaction::new();
    t.put(key.clone(), Record::Cursor(2), Expect::Absent);
    assert!(matches!(
        store.commit(t).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.get(&key).await.unwrap().map(|v| v.value),
        Some(Record::Cursor(1))
    );

    // Compare-and-swap on the version read.
    let mut t = Transaction::new();
    t.put(
        key.clone(),
        Record::Cursor(2),
        Expect::Version(v1.version.clone()),
    );
    store.commit(t).await.unwrap();
    let v2 = store.get(&key).await.unwrap().unwrap();
    assert_ne!(v2.version, v1.version, "a write must change the version");
    // Even a write of the same record: the engine writes a block back unchanged to guard
    // against a concurrent writer of it.
    let mut same = Transaction::new();
    same.put(
        key.clone(),
        Record::Cursor(2),
        Expect::Version(v2.version.clone()),
    );
    store.commit(same).await.unwrap();
    let v2b = store.get(&key).await.unwrap().unwrap();
    assert_ne!(
        v2b.version, v2.version,
        "a write of the same record must change the version"
    );
    let mut late = Transaction::new();
    late.put(
        key.clone(),
        Record::Cursor(2),
        Expect::Version(v2.version.clone()),
    );
    assert!(matches!(
        store.commit(late).await,
        Err(StoreError::Conflict { .. })
    ));
    let v2 = v2b;
    let mut stale = Transaction::new();
    stale.put(
        key.clone(),
        Record::Cursor(3),
        Expect::Version(v1.version.clone()),
    );
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict { .. })
    ));

    // Several keys read at once answer in order, absent ones as `None`.
    let many = store
        .get_many(&[other.clone(), key.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    assert!(many[0].is_none() && many[2].is_none());
    assert_eq!(many[1].as_ref().map(|v| &v.version), Some(&v2.version));

    // A failed expectation in the first operation applies nothing after it (but hints,
    // which a store may send alongside).
    let later = Key::Pool(name("later"));
    let mut t = Transaction::new();
    t.put(
        other.clone(),
        Record::Cursor(9),
        Expect::Version(v1.version.clone()),
    );
    t.put(
        later.clone(),
        Record::Pool(pool("later", "10.0.0.0/24", &["10.0.0.1"])),
        Expect::Any,
    );
    assert!(matches!(
        store.commit(t).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.get(&other).await.unwrap().is_none());
    assert!(store.get(&later).await.unwrap().is_none());
    assert_eq!(
        store.get(&key).await.unwrap().map(|v| v.value),
        Some(Record::Cursor(2))
    );

    // Deletion, then the key is absent again.
    let mut t = Transaction::new();
    t.delete(key.clone(), Expect::Version(v2.version.clone()));
    store.commit(t).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
    let mut t = Transaction::new();
    t.delete(key.clone(), Expect::Version(v2.version));
    assert!(matches!(
        store.commit(t).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut t = Transaction::new();
    t.delete(key.clone(), Expect::Any);
    store.commit(t).await.unwrap();

    // An unconditioned write (a hint) creates, then overwrites, whatever is there.
    for value in [7, 8] {
        let mut t = Transaction::new();
        t.put(key.clone(), Record::Cursor(value), Expect::Any);
        store.commit(t).await.unwrap();
        assert_eq!(
            store.get(&key).await.unwrap().map(|v| v.value),
            Some(Record::Cursor(value))
        );
    }
}

/// Scans return exactly the keys in a range, in key order: pools by name, blocks by family
/// and address.
pub async fn scan_ranges(store: &dyn Store) {
    let mut t = Transaction::new();
    for p in ["b", "a", "ab"] {
        t.put(
            Key::Pool(name(p)),
            Record::Pool(pool(p, "10.0.0.0/24", &["10.0.0.1"])),
            Expect::Absent,
        );
        let cursor = Key::Cursor {
            pool: name(p),
            node: None,
        };
        t.put(cursor, Record::Cursor(5), Expect::Absent);
    }
    let block_at = |family: Family, value: u128| {
        let index = crate::search::block_index(value);
        let mut b = crate::block::BlockRecord::new(family, index);
        b.insert(
            value,
            crate::holder::Holder {
                owner: owner("c"),
                network: "net1".into(),
                pool: name("a"),
                pod: None,
                node: None,
            },
        );
        (Key::Block { family, index }, Record::Block(b))
    };
    let placed = [
        (Family::V4, 0x0a00_0105),
        (Family::V4, 0x0a00_0005),
        (Family::V4, 0x0a01_0005),
        (Family::V4, u128::from(u32::MAX)),
        (Family::V6, 0x0a00_0005),
        (Family::V6, u128::MAX),
    ];
    for (family, value) in placed {
        let (k, r) = block_at(family, value);
        t.put(k, r, Expect::Absent);
    }
    store.commit(t).await.unwrap();
    let keys = |found: Vec<(Key, Versioned<Record>)>| -> Vec<Key> {
        found.into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(
        keys(store.scan(&KeyRange::Pools).await.unwrap()),
        vec![
            Key::Pool(name("a")),
            Key::Pool(name("ab")),
            Key::Pool(name("b"))
        ]
    );
    let v4 = |v: u128| block_at(Family::V4, v).0;
    assert_eq!(
        keys(
            store
                .scan(&KeyRange::blocks_covering(
                    Family::V4,
                    0x0a00_0000,
                    0x0a00_ffff
                ))
                .await
                .unwrap()
        ),
        vec![v4(0x0a00_0005), v4(0x0a00_0105)]
    );
    assert_eq!(
        keys(store.scan(&KeyRange::all_blocks(Family::V4)).await.unwrap()),
        vec![
            v4(0x0a00_0005),
            v4(0x0a00_0105),
            v4(0x0a01_0005),
            v4(u128::from(u32::MAX))
        ]
    );
    assert_eq!(
        keys(store.scan(&KeyRange::all_blocks(Family::V6)).await.unwrap()),
        vec![
            block_at(Family::V6, 0x0a00_0005).0,
            block_at(Family::V6, u128::MAX).0
        ]
    );
    assert!(store.scan(&KeyRange::Owners).await.unwrap().is_empty());
}

/// Steps 1-5 of the seed document.
pub async fn seed_walkthrough(store: Arc<dyn Store>) {
    let ipam = engine(store);
    // 1. A ReservedIP, then 2. a pool of three addresses of which two are reserved.
    let r = reserved("test-reservedip", &["10.6.168.131-10.6.168.132"]);
    assert_eq!(
        ipam.apply_reserved_ip(r.clone()).await.unwrap(),
        Applied::Created
    );
    assert_eq!(ipam.apply_reserved_ip(r).await.unwrap(), Applied::Unchanged);
    let p = pool("test-ippool", "10.6.0.0/16", &["10.6.168.131-10.6.168.133"]);
    assert_eq!(ipam.apply_pool(p).await.unwrap(), Applied::Created);
    assert_eq!(counts(&ipam, "test-ippool").await, [3, 2, 0, 1]);

    // 3. Two Pods: one gets the only available address, the other finds the pool used up.
    let pod_a = request("pod-a", &["test-ippool"]);
    let pod_b = request("pod-b", &["test-ippool"]);
    assert_eq!(addr_of(&ipam, &pod_a).await.unwrap(), ip("10.6.168.133"));
    match ipam.allocate(&pod_b).await {
        Err(Error::Exhausted { pools }) => {
            assert_eq!(pools.len(), 1);
            assert_eq!(pools[0].pool, name("test-ippool"));
            assert_eq!(
                (pools[0].total, pools[0].reserved, pools[0].allocated),
                (3, 2, 1)
            );
        }
        other => panic!("expected used up, got {other:?}"),
    }
    assert_eq!(counts(&ipam, "test-ippool").await, [3, 2, 1, 0]);

    // 4. Widening the reservation over the held address does not take it away ...
    let wide = reserved("test-reservedip", &["10.6.168.131-10.6.168.133"]);
    assert_eq!(
        ipam.apply_reserved_ip(wide).await.unwrap(),
        Applied::Configured
    );
    assert_eq!(
        addr_of(&ipam, &pod_a).await.unwrap(),
        ip("10.6.168.133"),
        "repeat ADD keeps it"
    );
    assert_eq!(counts(&ipam, "test-ippool").await, [3, 3, 1, 0]);
    // ... but once released, it cannot be handed out again while reserved.
    assert_eq!(
        ipam.release(&owner("pod-a"), Some("net1"))
            .await
            .unwrap()
            .len(),
        1
    );
    let pod_a2 = request("pod-a2", &["test-ippool"]);
    assert!(matches!(
        ipam.allocate(&pod_a2).await,
        Err(Error::Exhausted { .. })
    ));
    assert!(matches!(
        ipam.allocate(&pod_b).await,
        Err(Error::Exhausted { .. })
    ));
    assert_eq!(counts(&ipam, "test-ippool").await, [3, 3, 0, 0]);

    // 5. Deleting the ReservedIP frees the addresses at once: both Pods run.
    ipam.delete_reserved_ip(&name("test-reservedip"))
        .await
        .unwrap();
    let a = addr_of(&ipam, &pod_a2).await.unwrap();
    let b = addr_of(&ipam, &pod_b).await.unwrap();
    assert_ne!(a, b);
    let p = ipam.pool(&name("test-ippool")).await.unwrap().unwrap();
    assert!(
        p.capacity().contains(crate::addr::to_u128(a))
            && p.capacity().contains(crate::addr::to_u128(b))
    );
    assert_eq!(counts(&ipam, "test-ippool").await, [3, 0, 2, 1]);
    assert!(matches!(
        ipam.delete_reserved_ip(&name("test-reservedip")).await,
        Err(Error::NotFound { .. })
    ));
}

/// Explicit requests: reserved, excluded, outside, held and free addresses.
pub async fn explicit_requests(store: Arc<dyn Store>) {
    let ipam = engine(store);
    let spec = IpPoolSpec {
        subnet: "10.6.0.0/24".into(),
        ips: vec!["10.6.0.0/24".into()],
        exclude_ips: vec!["10.6.0.9".into()],
        gateway: Some("10.6.0.1".into()),
        ..Default::default()
    };
    ipam.apply_pool(IpPool::new("p", spec).unwrap())
        .await
        .unwrap();
    ipam.apply_reserved_ip(reserved("outside-hosts", &["10.6.0.20-10.6.0.29"]))
        .await
        .unwrap();
    let ask = |id: &str, addr: &str| {
        let mut r = request(id, &["p"]);
        r.slots[0].requested = Some(ip(addr));
        r
    };
    let reason = |res: Result<Vec<_>, Error>| match res {
        Err(Error::Unavailable { reason, .. }) => reason,
        other => panic!("expected unavailable, got {other:?}"),
    };
    assert_eq!(
        reason(ipam.allocate(&ask("c1", "10.6.0.25")).await),
        Unavailable::Reserved {
            by: vec![name("outside-hosts")]
        }
    );
    assert!(matches!(
        reason(ipam.allocate(&ask("c1", "10.6.0.9")).await),
        Unavailable::NotAllocatable { rule, .. } if rule == "spec.excludeIPs"
    ));
    assert!(matches!(
        reason(ipam.allocate(&ask("c1", "10.6.0.1")).await),
        Unavailable::NotAllocatable { rule, .. } if rule == "spec.gateway"
    ));
    assert!(matches!(
        reason(ipam.allocate(&ask("c1", "10.6.0.255")).await),
        Unavailable::NotAllocatable { .. }
    ));
    assert_eq!(
        reason(ipam.allocate(&ask("c1", "10.7.0.5")).await),
        Unavailable::OutsidePools {
            pools: vec![name("p")]
        }
    );
    let mut net_reserved = ask("c1", "10.6.0.40");
    net_reserved.reserved = FamilySets::from_ranges(&["10.6.0.40".parse().unwrap()]);
    assert_eq!(
        reason(ipam.allocate(&net_reserved).await),
        Unavailable::Reserved { by: vec![] }
    );

    let got = ipam.allocate(&ask("c1", "10.6.0.50")).await.unwrap();
    assert_eq!(got[0].allocation.address, ip("10.6.0.50"));
    assert_eq!(
        reason(ipam.allocate(&ask("c2", "10.6.0.50")).await),
        Unavailable::Held { owner: owner("c1") }
    );
    // Automatic allocation skips the reserved, excluded and held addresses.
    let mut seen = BTreeSet::new();
    for i in 0..240 {
        let a = addr_of(&ipam, &request(&format!("auto{i}"), &["p"]))
            .await
            .unwrap();
        let v = crate::addr::to_u128(a);
        assert!(seen.insert(a), "{a} handed out twice");
        assert!(!(0x0a06_0014..=0x0a06_001d).contains(&v), "{a} is reserved");
        assert!(
            ![
                0x0a06_0000,
                0x0a06_0001,
                0x0a06_0009,
                0x0a06_0032,
                0x0a06_00ff
            ]
            .contains(&v),
            "{a}"
        );
    }
    // 256 - network - broadcast - gateway - 1 excluded = 252; 10 reserved; 241 held; 1 left.
    assert_eq!(counts(&ipam, "p").await, [252, 10, 241, 1]);
    assert_eq!(check_consistency(&**ipam.store()).await, 241);
    let e = ipam.explain(ip("10.6.0.25")).await.unwrap();
    assert!(!e.allocatable());
    assert_eq!(e.reserved_by, vec![name("outside-hosts")]);
    let e = ipam.explain(ip("10.6.0.50")).await.unwrap();
    assert_eq!(e.held.as_ref().map(|a| a.owner.clone()), Some(owner("c1")));
    assert!(!e.allocatable());
    assert!(e.to_string().contains("held by c1/eth0"), "{e}");
}

/// A repeated request returns what is held; release is idempotent; GC keeps valid owners
/// and other networks.
pub async fn repeat_release_gc(store: Arc<dyn Store>) {
    let ipam = engine(store);
    ipam.apply_pool(pool("p", "fd00::/120", &["fd00::/120"]))
        .await
        .unwrap();
    let first = ipam.allocate(&request("c1", &["p"])).await.unwrap();
    let again = ipam.allocate(&request("c1", &["p"])).await.unwrap();
    assert!(
        first[0].fresh && !again[0].fresh,
        "a repeat takes nothing new"
    );
    let first = vec![first[0].allocation.clone()];
    assert_eq!(first, vec![again[0].allocation.clone()]);
    assert_eq!(counts(&ipam, "p").await[2], 1);
    assert_eq!(ipam.owner_allocations(&owner("c1")).await.unwrap(), first);

    assert_eq!(
        ipam.release(&owner("c1"), Some("other-net")).await.unwrap(),
        vec![]
    );
    assert_eq!(
        ipam.release(&owner("c1"), Some("net1")).await.unwrap(),
        first
    );
    assert_eq!(
        ipam.release(&owner("c1"), Some("net1")).await.unwrap(),
        vec![]
    );
    assert_eq!(ipam.release(&owner("never"), None).await.unwrap(), vec![]);
    assert_eq!(counts(&ipam, "p").await[2], 0);
    assert!(ipam.allocations(None).await.unwrap().is_empty());

    for id in ["k1", "k2", "k3"] {
        ipam.allocate(&request(id, &["p"])).await.unwrap();
    }
    let mut other_net = request("k4", &["p"]);
    other_net.network = "net2".into();
    ipam.allocate(&other_net).await.unwrap();
    let valid: BTreeSet<Owner> = [owner("k2")].into();
    let report = ipam.gc("net1", &valid).await.unwrap();
    assert!(report.failures.is_empty());
    let released: BTreeSet<String> = report
        .released
        .iter()
        .map(|a| a.owner.container_id().to_owned())
        .collect();
    assert_eq!(released, ["k1".to_string(), "k3".to_string()].into());
    let left: BTreeSet<String> = ipam
        .allocations(None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.owner.container_id().to_owned())
        .collect();
    assert_eq!(left, ["k2".to_string(), "k4".to_string()].into());
    assert!(ipam.gc("net1", &valid).await.unwrap().released.is_empty());
}

/// The next candidate pool is used when one is used up; a multi-slot request is all or
/// nothing.
pub async fn candidates_and_all_or_nothing(store: Arc<dyn Store>) {
    let ipam = engine(store);
    ipam.apply_pool(pool("small", "10.1.0.0/24", &["10.1.0.10-10.1.0.11"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("big", "10.2.0.0/24", &["10.2.0.10-10.2.0.20"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("v6", "fd00::/120", &["fd00::1"]))
        .await
        .unwrap();
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(
            addr_of(&ipam, &request(&format!("c{i}"), &["small", "big"]))
                .await
                .unwrap(),
        );
    }
    assert_eq!(got[..2], [ip("10.1.0.10"), ip("10.1.0.11")]);
    assert!(got[2..]
        .iter()
        .all(|a| a.to_string().starts_with("10.2.0.")));

    let dual = |id: &str| {
        let mut r = request(id, &["big"]);
        r.slots.push(Slot {
            pools: vec![name("v6")],
            requested: None,
            family: None,
        });
        r
    };
    let both = ipam.allocate(&dual("d1")).await.unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].allocation.address, ip("fd00::1"));
    let before = counts(&ipam, "big").await;
    match ipam.allocate(&dual("d2")).await {
        Err(Error::Exhausted { pools }) => assert_eq!(pools[0].pool, name("v6")),
        other => panic!("expected used up, got {other:?}"),
    }
    assert_eq!(
        counts(&ipam, "big").await,
        before,
        "a failed request must take nothing"
    );
    assert!(ipam
        .owner_allocations(&owner("d2"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        ipam.allocate(&request("x", &["missing"])).await,
        Err(Error::NotFound { .. })
    ));
}

/// A reservation made before a pool exists is honoured by it; a pool in use is deleted only
/// by force, which releases its addresses.
pub async fn future_pools_and_deletion(store: Arc<dyn Store>) {
    let ipam = engine(store);
    ipam.apply_reserved_ip(reserved("r", &["10.9.0.0/25"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("later", "10.9.0.0/24", &["10.9.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(counts(&ipam, "later").await, [254, 127, 0, 127]);
    let a = addr_of(&ipam, &request("c1", &["later"])).await.unwrap();
    assert_eq!(a, ip("10.9.0.128"));
    assert!(matches!(
        ipam.delete_pool(&name("later"), false).await,
        Err(Error::PoolInUse { allocated: 1, .. })
    ));
    let released = ipam.delete_pool(&name("later"), true).await.unwrap();
    assert_eq!(released.len(), 1);
    assert!(ipam.pool(&name("later")).await.unwrap().is_none());
    assert!(ipam
        .owner_allocations(&owner("c1"))
        .await
        .unwrap()
        .is_empty());
    assert!(ipam.release(&owner("c1"), None).await.unwrap().is_empty());
    // Re-created, the pool starts empty.
    ipam.apply_pool(pool("later", "10.9.0.0/24", &["10.9.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(counts(&ipam, "later").await, [254, 127, 0, 127]);
}

/// A pool defined by a request (a CNI network's `ranges`) is a lens, never stored: what
/// decides who holds an address is its block, so renaming or reshaping the lens between
/// requests (a config edit) neither loses a holder nor hands its address to another.
pub async fn inline_pools_are_lenses(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    let inline = |label: &str, ips: &[&str]| pool(label, "10.30.0.0/24", ips);
    let defining = |id: &str, p: &IpPool| {
        let mut r = request(id, &[p.name().as_str()]);
        r.defines = vec![p.clone()];
        r
    };
    // A failing request (its second slot names a missing pool) takes nothing.
    let first = inline("net1-0", &["10.30.0.10-10.30.0.11"]);
    let mut failing = defining("c0", &first);
    failing.slots.push(Slot {
        pools: vec![name("missing")],
        requested: None,
        family: None,
    });
    assert!(matches!(
        ipam.allocate(&failing).await,
        Err(Error::NotFound { .. })
    ));
    assert!(ipam.allocations(None).await.unwrap().is_empty());

    let a = addr_of(&ipam, &defining("c1", &first)).await.unwrap();
    assert_eq!(a, ip("10.30.0.10"));
    assert!(
        ipam.pools().await.unwrap().is_empty(),
        "an inline pool is not stored"
    );
    // The network's ranges are edited: the set grows a range, so the lens is relabelled
    // `net1-0-0`, and the order of addresses changes. The holder's repeated request still
    // gets its address; another owner never does.
    let grown = inline("net1-0-0", &["10.30.0.9-10.30.0.11"]);
    assert_eq!(addr_of(&ipam, &defining("c1", &grown)).await.unwrap(), a);
    let mut others = BTreeSet::new();
    for id in ["c2", "c3"] {
        others.insert(addr_of(&ipam, &defining(id, &grown)).await.unwrap());
    }
    assert_eq!(others, [ip("10.30.0.9"), ip("10.30.0.11")].into());
    assert!(matches!(
        ipam.allocate(&defining("c4", &grown)).await,
        Err(Error::Exhausted { .. })
    ));
    // A network of another name whose ranges overlap shares the addresses: none is handed
    // out twice.
    let mut elsewhere = defining("c5", &inline("net2-0", &["10.30.0.8-10.30.0.12"]));
    elsewhere.network = "net2".into();
    let got = addr_of(&ipam, &elsewhere).await.unwrap();
    assert!(got == ip("10.30.0.8") || got == ip("10.30.0.12"), "{got}");
    // A range moved away from a held address: the holder gets a new one from the new
    // range (its old one stays held until released), never its old one with the new prefix.
    let moved = pool("net1-0", "10.31.0.0/24", &["10.31.0.10"]);
    let again = ipam.allocate(&defining("c1", &moved)).await.unwrap();
    assert_eq!(again[0].allocation.address, ip("10.31.0.10"));
    assert_eq!(ipam.owner_allocations(&owner("c1")).await.unwrap().len(), 2);
    assert_eq!(
        ipam.release(&owner("c1"), Some("net1"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(check_consistency(&*store).await, 3);
}

/// Pools never share an address: an apply that would make two overlap is refused, naming
/// both and the overlap; a request whose own ranges overlap the pools it names is refused.
pub async fn one_holder_across_pools(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    ipam.apply_pool(pool("a", "10.40.0.0/24", &["10.40.0.10-10.40.0.20"]))
        .await
        .unwrap();
    let refused = ipam
        .apply_pool(pool("b", "10.40.0.0/16", &["10.40.0.20-10.40.0.30"]))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, Error::Invalid(_)), "{text}");
    assert!(
        text.contains("\"b\"") && text.contains("\"a\"") && text.contains("10.40.0.20"),
        "{text}"
    );
    assert!(ipam.pool(&name("b")).await.unwrap().is_none());
    // Two overlapping pools in one apply: neither is stored.
    let both = ipam
        .apply_all(
            &[],
            &[
                pool("c", "10.41.0.0/24", &["10.41.0.0/25"]),
                pool("d", "10.41.0.0/24", &["10.41.0.100-10.41.0.200"]),
            ],
        )
        .await;
    assert!(matches!(both, Err(Error::Invalid(_))), "{both:?}");
    assert!(ipam.pool(&name("c")).await.unwrap().is_none());
    // Re-applying a pool is no overlap with itself; other families never overlap.
    ipam.apply_pool(pool("a", "10.40.0.0/24", &["10.40.0.10-10.40.0.25"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("v6", "fd40::/120", &["fd40::10-fd40::20"]))
        .await
        .unwrap();

    // A request defining a range over one of its named pools.
    let mut req = request("c1", &["a"]);
    req.slots.push(Slot {
        pools: vec![name("net1-1")],
        requested: None,
        family: None,
    });
    req.defines = vec![pool("net1-1", "10.40.0.0/24", &["10.40.0.25-10.40.0.30"])];
    match ipam.allocate(&req).await {
        Err(Error::DefinedPoolOverlaps { defined, pool, .. }) => {
            assert_eq!((defined.as_str(), pool.as_str()), ("net1-1", "a"))
        }
        other => panic!("expected a refused overlap, got {other:?}"),
    }
    assert!(ipam.allocations(None).await.unwrap().is_empty());
    // Not overlapping, the same request gets two distinct addresses.
    req.defines = vec![pool("net1-1", "10.40.0.0/24", &["10.40.0.26-10.40.0.30"])];
    let got = ipam.allocate(&req).await.unwrap();
    assert_ne!(got[0].allocation.address, got[1].allocation.address);
    assert_eq!(check_consistency(&*store).await, 2);
}

/// Changes to a pool that would mislead a holder are refused: its subnet (and so its family)
/// cannot change while it holds addresses. Narrowing `ips` never evicts, and counts follow
/// the written rule ([`PoolCounts`](crate::PoolCounts)).
pub async fn pool_changes_that_would_mislead(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    ipam.apply_pool(pool("p", "10.50.0.0/24", &["10.50.0.10-10.50.0.13"]))
        .await
        .unwrap();
    let a = addr_of(&ipam, &request("c1", &["p"])).await.unwrap();
    assert_eq!(a, ip("10.50.0.10"));
    for (subnet, ips) in [("10.51.0.0/24", "10.51.0.10"), ("fd50::/120", "fd50::10")] {
        let err = ipam
            .apply_pool(pool("p", subnet, &[ips]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.subnet") && err.contains("holds 1"),
            "{err}"
        );
    }
    // Narrowed below the held address: it stays held, the holder's repeat still gets it,
    // and the counts say so: allocated 1 (held from the pool), available 3 (the capacity
    // nobody holds).
    ipam.apply_pool(pool("p", "10.50.0.0/24", &["10.50.0.11-10.50.0.13"]))
        .await
        .unwrap();
    assert_eq!(counts(&ipam, "p").await, [3, 0, 1, 3]);
    let again = ipam.allocate(&request("c1", &["p"])).await.unwrap();
    assert_eq!(again[0].allocation.address, a);
    assert_eq!(
        (again[0].allocation.pool.as_str(), counts(&ipam, "p").await),
        ("p", [3, 0, 1, 3])
    );
    let b = addr_of(&ipam, &request("c2", &["p"])).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(counts(&ipam, "p").await, [3, 0, 2, 2]);
    ipam.release(&owner("c1"), None).await.unwrap();
    ipam.release(&owner("c2"), None).await.unwrap();
    // Empty, the pool may move.
    ipam.apply_pool(pool("p", "fd50::/120", &["fd50::10"]))
        .await
        .unwrap();
    assert_eq!(counts(&ipam, "p").await, [1, 0, 0, 1]);
    assert_eq!(check_consistency(&*store).await, 0);
}

/// The dry runs an admission webhook makes ([`Ipam::check_pool`],
/// [`Ipam::check_pool_deletion`]) refuse what an apply and an unforced deletion refuse, with
/// the same messages, and write nothing; what they pass, the apply takes.
pub async fn dry_runs_refuse_what_applies_refuse(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    ipam.apply_pool(pool("p", "10.60.0.0/24", &["10.60.0.10-10.60.0.13"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("empty", "10.61.0.0/24", &["10.61.0.10"]))
        .await
        .unwrap();
    addr_of(&ipam, &request("c1", &["p"])).await.unwrap();
    let bad = [
        // Overlaps p, named with both names.
        pool("q", "10.60.0.0/24", &["10.60.0.13-10.60.0.20"]),
        // Moves p, which holds an address.
        pool("p", "10.62.0.0/24", &["10.62.0.10"]),
        pool("p", "fd60::/120", &["fd60::10"]),
    ];
    let before = versions(&*store).await;
    let mut refusals = Vec::new();
    for b in &bad {
        refusals.push(ipam.check_pool(b).await.unwrap_err().to_string());
    }
    let deletion = ipam.check_pool_deletion(&name("p")).await.unwrap_err();
    // The dry runs wrote nothing (a refused apply of a new subnet writes twice: the mark
    // that holds the pool still while it counts, and its removal).
    assert_eq!(before, versions(&*store).await);
    assert!(
        refusals[0].contains(r#"ippool "q" overlaps ippool "p" at 10.60.0.13"#),
        "{}",
        refusals[0]
    );
    for (b, dry) in bad.iter().zip(&refusals) {
        let applied = ipam.apply_pool(b.clone()).await.unwrap_err().to_string();
        assert_eq!(*dry, applied, "{}", b.name());
    }
    assert!(
        matches!(deletion, Error::PoolInUse { allocated: 1, .. }),
        "{deletion}"
    );
    assert_eq!(
        ipam.delete_pool(&name("p"), false)
            .await
            .unwrap_err()
            .to_string(),
        deletion.to_string()
    );
    // What they pass: a pool beside p, the same p with more addresses, an empty pool moved,
    // the deletion of an empty pool or of one that does not exist.
    for good in [
        pool("q", "10.60.0.0/24", &["10.60.0.14-10.60.0.20"]),
        pool("p", "10.60.0.0/24", &["10.60.0.9-10.60.0.13"]),
        pool("empty", "10.63.0.0/24", &["10.63.0.10"]),
    ] {
        ipam.check_pool(&good).await.unwrap();
        ipam.apply_pool(good).await.unwrap();
    }
    ipam.check_pool_deletion(&name("empty")).await.unwrap();
    ipam.check_pool_deletion(&name("absent")).await.unwrap();
    ipam.release(&owner("c1"), None).await.unwrap();
    ipam.check_pool_deletion(&name("p")).await.unwrap();
    assert_eq!(check_consistency(&*store).await, 0);
}

/// The version of every pool, block and owner record, and of the pools' guard: what a
/// write would change.
async fn versions(store: &dyn Store) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for range in [
        KeyRange::Pools,
        KeyRange::all_blocks(Family::V4),
        KeyRange::Owners,
    ] {
        for (k, v) in store.scan(&range).await.unwrap() {
            all.push((k.to_string(), format!("{:?}", v.version)));
        }
    }
    let guard = store.get(&Key::PoolGuard).await.unwrap();
    all.push(("guard".into(), format!("{:?}", guard.map(|g| g.version))));
    all
}

/// Round robin (the default strategy), as host-local: addresses are handed out in order,
/// across blocks; a released address is not handed to the next request but waits until the
/// search wraps around. The pool's cursor points into a block and the block records where
/// its search goes on, so a store must keep that hint with the block.
pub async fn round_robin_across_blocks(store: Arc<dyn Store>) {
    let ipam = engine(store);
    ipam.apply_pool(pool("rr", "10.9.0.0/24", &["10.9.0.0/24"]))
        .await
        .unwrap();
    async fn take(ipam: &Ipam<Arc<dyn Store>>, id: &str) -> String {
        let got = ipam.allocate(&request(id, &["rr"])).await.unwrap();
        got[0].allocation.address.to_string()
    }
    for i in 1..=70 {
        assert_eq!(take(&ipam, &format!("c{i}")).await, format!("10.9.0.{i}"));
    }
    // One released behind the cursor's block, one in the block the search is in.
    for gone in ["c3", "c68"] {
        assert_eq!(ipam.release(&owner(gone), None).await.unwrap().len(), 1);
    }
    assert_eq!(take(&ipam, "d1").await, "10.9.0.71");
    for i in 72..=254 {
        assert_eq!(take(&ipam, &format!("c{i}")).await, format!("10.9.0.{i}"));
    }
    // Wrapped around: the released ones, in address order, then nothing.
    assert_eq!(take(&ipam, "d2").await, "10.9.0.3");
    assert_eq!(take(&ipam, "d3").await, "10.9.0.68");
    assert!(matches!(
        ipam.allocate(&request("d4", &["rr"])).await,
        Err(Error::Exhausted { .. })
    ));

    // A block whose every address is released goes, and its hint with it: the cursor
    // moves on, so the next request still does not get an address just released.
    ipam.apply_pool(pool("rr2", "10.9.1.0/24", &["10.9.1.0/24"]))
        .await
        .unwrap();
    for (id, want) in [("e1", "10.9.1.1"), ("e2", "10.9.1.2")] {
        let got = ipam.allocate(&request(id, &["rr2"])).await.unwrap();
        assert_eq!(got[0].allocation.address.to_string(), want);
    }
    for gone in ["e1", "e2"] {
        ipam.release(&owner(gone), None).await.unwrap();
    }
    let got = ipam.allocate(&request("e3", &["rr2"])).await.unwrap();
    assert_eq!(got[0].allocation.address.to_string(), "10.9.1.3");
}

/// An IPv6 /64 pool: cost follows allocations, not the 2^64 addresses.
pub async fn ipv6_slash64(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    ipam.apply_pool(pool("v6", "fd00:1::/64", &["fd00:1::/64"]))
        .await
        .unwrap();
    ipam.apply_reserved_ip(reserved("low", &["fd00:1::-fd00:1::ffff"]))
        .await
        .unwrap();
    for i in 0..100 {
        let a = addr_of(&ipam, &request(&format!("c{i}"), &["v6"]))
            .await
            .unwrap();
        assert_eq!(a, ip(&format!("fd00:1::1:{:x}", i)));
    }
    assert_eq!(
        counts(&ipam, "v6").await,
        [1 << 64, 65536, 100, (1 << 64) - 65536 - 100]
    );
    // 100 consecutive addresses: two blocks of 64.
    assert_eq!(
        store
            .scan(&KeyRange::all_blocks(Family::V6))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// `threads` writers each make `per_thread` allocations on
/// one pool of `capacity` addresses: no address is handed out twice, and exactly the pool's
/// capacity is ever held at once.
pub fn concurrent_writers(store: Arc<dyn Store>, threads: usize, per_thread: usize, capacity: u32) {
    let ipam = Arc::new(engine(store));
    let last = format!("10.8.{}.{}", capacity / 256, capacity % 256);
    let spec_ips = [format!("10.8.0.1-{last}")];
    let spec_ips: Vec<&str> = spec_ips.iter().map(String::as_str).collect();
    pollster::block_on(ipam.apply_pool(pool("shared", "10.8.0.0/16", &spec_ips))).unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let ipam = ipam.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut used_up = 0;
                for i in 0..per_thread {
                    let req = request(&format!("t{t}-{i}"), &["shared"]);
                    match pollster::block_on(ipam.allocate(&req)) {
                        Ok(a) => mine.push((req.owner.clone(), a[0].allocation.address)),
                        Err(Error::Exhausted { .. }) => used_up += 1,
                        Err(e) => panic!("writer {t}: unexpected error {e}"),
                    }
                }
                (mine, used_up)
            })
        })
        .collect();
    let mut held = BTreeSet::new();
    let mut used_up = 0;
    for h in handles {
        let (mine, u) = h.join().expect("writer panicked");
        used_up += u;
        for (_, a) in mine {
            assert!(held.insert(a), "{a} handed out twice");
        }
    }
    let demand = threads * per_thread;
    assert_eq!(held.len(), demand.min(capacity as usize));
    assert_eq!(used_up, demand - held.len());
    let stored: BTreeSet<IpAddr> = pollster::block_on(ipam.allocations(Some(&name("shared"))))
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(stored, held);
    assert_eq!(
        pollster::block_on(check_consistency(&**ipam.store())),
        held.len()
    );
    let c = pollster::block_on(counts(&ipam, "shared"));
    assert_eq!(c[2], held.len() as u128);
    assert_eq!(c[3], u128::from(capacity) - held.len() as u128);
}

/// CNI GC on one node releases only what that node's processes allocated: where nodes share
/// a store, a runtime's list of valid attachments names its own node's only, and another
/// node's allocations (even in blocks this node claimed) are in use. Holders recorded
/// without a node (by an engine without one, or before holders recorded it) are left to an
/// engine without a node.
pub async fn gc_is_scoped_to_its_node(store: Arc<dyn Store>) {
    let on = |node: Option<&str>| {
        Ipam::with_config(
            store.clone(),
            Config {
                max_attempts: 200,
                seed: Some(7),
                node: node.map(name),
                ..Config::default()
            },
        )
    };
    let (n1, n2, none) = (on(Some("node-1")), on(Some("node-2")), on(None));
    // Eight addresses: the nodes fill one block between them, so each holds addresses in
    // a block the other claimed.
    n1.apply_pool(pool("g", "10.61.0.0/24", &["10.61.0.1-10.61.0.8"]))
        .await
        .unwrap();
    for i in 0..3 {
        n1.allocate(&request(&format!("a{i}"), &["g"]))
            .await
            .unwrap();
        n2.allocate(&request(&format!("b{i}"), &["g"]))
            .await
            .unwrap();
    }
    none.allocate(&request("x", &["g"])).await.unwrap();
    let node_of = |a: &crate::holder::Allocation| a.node.as_ref().map(|n| n.to_string());
    for a in n1.allocations(None).await.unwrap() {
        let want = match a.owner.container_id().as_bytes()[0] {
            b'a' => Some("node-1".to_owned()),
            b'b' => Some("node-2".to_owned()),
            _ => None,
        };
        assert_eq!(node_of(&a), want, "{a:?}");
    }
    let ids = |report: &crate::engine::GcReport| -> BTreeSet<String> {
        report
            .released
            .iter()
            .map(|a| a.owner.container_id().to_owned())
            .collect()
    };
    // Node 1's runtime lists its own attachments but one: only that one goes.
    let valid: BTreeSet<Owner> = [owner("a0"), owner("a2")].into();
    let report = n1.gc("net1", &valid).await.unwrap();
    assert_eq!(ids(&report), ["a1".to_string()].into());
    // Node 1 with nothing running: its own go, node 2's and the node-less one stay.
    let report = n1.gc("net1", &BTreeSet::new()).await.unwrap();
    assert_eq!(ids(&report), ["a0".to_string(), "a2".to_string()].into());
    let left: BTreeSet<String> = n1
        .allocations(None)
        .await
        .unwrap()
        .iter()
        .map(|a| a.owner.container_id().to_owned())
        .collect();
    assert_eq!(left, ["b0", "b1", "b2", "x"].map(String::from).into());
    // A repeated ADD of node 2's owners still gets what they hold.
    for i in 0..3 {
        let again = n2
            .allocate(&request(&format!("b{i}"), &["g"]))
            .await
            .unwrap();
        assert!(!again.is_empty());
    }
    assert_eq!(check_indexes_exact(&*store).await, 4);
    let report = none.gc("net1", &BTreeSet::new()).await.unwrap();
    assert_eq!(ids(&report), ["x".to_string()].into());
}

/// A store that lets a test act between any two of its steps: each read and each operation
/// of a commit (commits go one operation at a time, as a store of single objects applies
/// them) is one step, and before step `at` the hook runs.
struct Interleaved {
    inner: Arc<dyn Store>,
    steps: AtomicUsize,
    at: usize,
    hook: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Interleaved {
    fn new(inner: Arc<dyn Store>, at: usize, hook: Box<dyn FnOnce() + Send>) -> Interleaved {
        Interleaved {
            inner,
            steps: AtomicUsize::new(0),
            at,
            hook: std::sync::Mutex::new(Some(hook)),
        }
    }

    fn step(&self) {
        if self.steps.fetch_add(1, Ordering::SeqCst) == self.at {
            let hook = self.hook.lock().expect("hook lock").take();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    /// Whether the hook ran: the operation had at least `at + 1` steps.
    fn hooked(&self) -> bool {
        self.hook.lock().expect("hook lock").is_none()
    }
}

#[async_trait]
impl Store for Interleaved {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        self.step();
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.step();
        self.inner.get_many(keys).await
    }
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        self.step();
        self.inner.scan(range).await
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        for op in txn.into_ops() {
            self.step();
            let mut one = Transaction::new();
            match op {
                crate::store::Op::Put {
                    key,
                    record,
                    expect,
                } => one.put(key, *record, expect),
                crate::store::Op::Delete { key, expect } => one.delete(key, expect),
            };
            self.inner.commit(one).await?;
        }
        Ok(())
    }
    // A cached read is no step: it makes no request, so nothing can come between.
    fn caches(&self) -> bool {
        self.inner.caches()
    }
    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        self.inner.cached(key)
    }
}

/// Runs `first` on a store where `second` (on the plain store) runs to its end before step
/// `at` of `first`, for every `at` until `first` has no more steps; after each, checks the
/// store and calls `after`. Each round gets its own owner and pool (`round` names them), so
/// a store that cannot be made afresh (an API server) runs it too.
fn at_every_instant(
    store: Arc<dyn Store>,
    what: &str,
    setup: impl Fn(&Ipam<Arc<dyn Store>>, &str),
    first: impl Fn(&Ipam<Arc<dyn Store>>, &str),
    second: impl Fn(&Ipam<Arc<dyn Store>>, &str) + Clone + Send + 'static,
    after: impl Fn(&Ipam<Arc<dyn Store>>, &str),
) {
    let plain = Arc::new(engine(store.clone()));
    for at in 0.. {
        let round = format!("{what}-{at}");
        setup(&plain, &round);
        let hook = {
            let (plain, round, second) = (plain.clone(), round.clone(), second.clone());
            Box::new(move || second(&plain, &round)) as Box<dyn FnOnce() + Send>
        };
        let interleaved = Arc::new(Interleaved::new(store.clone(), at, hook));
        let ipam = engine(interleaved.clone() as Arc<dyn Store>);
        first(&ipam, &round);
        if !interleaved.hooked() {
            // `first` had fewer steps than `at`: every instant was tried.
            assert!(at > 2, "{what}: too few steps to interleave");
            break;
        }
        pollster::block_on(check_consistency(&*store));
        after(&plain, &round);
        assert!(at < 200, "{what}: no end of steps");
    }
}

/// The owner index never misses an address its owner holds, whenever a DEL of the same
/// owner comes during its ADD (runtimes send DEL for a sandbox whose ADD timed out): after
/// both, a DEL releases everything the owner holds, and a repeated ADD holds one address.
/// And a GC that does not list the owner, at any instant of its ADD, leaves no holder
/// outside an index.
pub fn release_at_every_instant_of_an_allocation(store: Arc<dyn Store>) {
    let make_pool = |ipam: &Ipam<Arc<dyn Store>>, round: &str| {
        let n = round.len() as u32 + round.bytes().map(u32::from).sum::<u32>();
        let subnet = format!("10.62.{}.0/24", n % 250);
        pollster::block_on(ipam.apply_pool(pool(round, &subnet, &[&subnet]))).unwrap();
    };
    let add = |ipam: &Ipam<Arc<dyn Store>>, round: &str| {
        let _ = pollster::block_on(ipam.allocate(&request(round, &[round])));
    };
    let nothing_left = |ipam: &Ipam<Arc<dyn Store>>, round: &str| {
        let again = pollster::block_on(ipam.allocate(&request(round, &[round]))).unwrap();
        assert_eq!(again.len(), 1);
        pollster::block_on(ipam.release(&owner(round), None)).unwrap();
        let left = pollster::block_on(ipam.allocations(Some(&name(round)))).unwrap();
        assert!(left.is_empty(), "{round}: DEL left {left:?}");
        pollster::block_on(ipam.delete_pool(&name(round), false)).unwrap();
    };
    at_every_instant(
        store.clone(),
        "del-in-add",
        make_pool,
        add,
        |ipam, round| {
            pollster::block_on(ipam.release(&owner(round), Some("net1"))).unwrap();
        },
        nothing_left,
    );
    at_every_instant(
        store,
        "gc-in-add",
        make_pool,
        add,
        |ipam, _| {
            pollster::block_on(ipam.gc("net1", &BTreeSet::new())).unwrap();
        },
        nothing_left,
    );
}

/// A repeated ADD of the same owner at any instant of its DEL: the owner ends up holding
/// what its index names, and a DEL after both releases everything.
pub fn allocation_at_every_instant_of_a_release(store: Arc<dyn Store>) {
    at_every_instant(
        store,
        "add-in-del",
        |ipam, round| {
            let n = round.len() as u32 + round.bytes().map(u32::from).sum::<u32>();
            let subnet = format!("10.63.{}.0/24", n % 250);
            pollster::block_on(ipam.apply_pool(pool(round, &subnet, &[&subnet]))).unwrap();
            pollster::block_on(ipam.allocate(&request(round, &[round]))).unwrap();
        },
        |ipam, round| {
            pollster::block_on(ipam.release(&owner(round), Some("net1"))).unwrap();
        },
        |ipam, round| {
            pollster::block_on(ipam.allocate(&request(round, &[round]))).unwrap();
        },
        |ipam, round| {
            pollster::block_on(ipam.release(&owner(round), None)).unwrap();
            let left = pollster::block_on(ipam.allocations(Some(&name(round)))).unwrap();
            assert!(left.is_empty(), "{round}: DEL left {left:?}");
            pollster::block_on(ipam.delete_pool(&name(round), false)).unwrap();
        },
    );
}

/// A /24 of `first`.X.0 for a round, X from its name, so rounds seldom meet.
fn round_subnet(first: &str, round: &str) -> String {
    let n = round.len() as u32 + round.bytes().map(u32::from).sum::<u32>();
    format!("{first}.{}.0/24", n % 250)
}

/// The addresses held from pool `round`, anywhere.
fn held_from(ipam: &Ipam<Arc<dyn Store>>, round: &str) -> Vec<IpAddr> {
    pollster::block_on(ipam.allocations(Some(&name(round))))
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect()
}

/// Changes that must see every holder of a pool, at every instant of an allocation from it:
/// a forced deletion leaves no holder of the pool behind, and a move to another subnet is
/// either refused, with every holder in the old subnet, or made, with none outside the new
/// one; the pool is never left held still.
pub fn pool_changes_at_every_instant_of_an_allocation(store: Arc<dyn Store>) {
    let make_pool = |ipam: &Ipam<Arc<dyn Store>>, round: &str| {
        let subnet = round_subnet("10.64", round);
        pollster::block_on(ipam.apply_pool(pool(round, &subnet, &[&subnet]))).unwrap();
        // One holder already, so that the subnet change is refused when it sees it.
        pollster::block_on(ipam.allocate(&request(&format!("{round}-old"), &[round]))).unwrap();
    };
    let add = |ipam: &Ipam<Arc<dyn Store>>, round: &str| match pollster::block_on(
        ipam.allocate(&request(round, &[round])),
    ) {
        Ok(_) | Err(Error::NotFound { .. } | Error::PoolDeleting { .. }) => {}
        Err(e) => panic!("{round}: {e}"),
    };
    at_every_instant(
        store.clone(),
        "delete-in-add",
        make_pool,
        add,
        |ipam, round| {
            pollster::block_on(ipam.delete_pool(&name(round), true)).unwrap();
        },
        |ipam, round| {
            assert_eq!(pollster::block_on(ipam.pool(&name(round))).unwrap(), None);
            assert_eq!(held_from(ipam, round), Vec::<IpAddr>::new(), "{round}");
        },
    );
    at_every_instant(
        store,
        "move-in-add",
        |ipam, round| {
            let subnet = round_subnet("10.66", round);
            pollster::block_on(ipam.apply_pool(pool(round, &subnet, &[&subnet]))).unwrap();
        },
        add,
        |ipam, round| {
            let moved = round_subnet("10.67", round);
            match pollster::block_on(ipam.apply_pool(pool(round, &moved, &[&moved]))) {
                Ok(_) | Err(Error::Invalid(_)) => {}
                Err(e) => panic!("{round}: {e}"),
            }
        },
        |ipam, round| {
            let now = pollster::block_on(ipam.pool(&name(round)))
                .unwrap()
                .expect("the pool");
            assert!(now.state().is_active(), "{round}: left {:?}", now.state());
            for a in held_from(ipam, round) {
                assert!(
                    now.in_subnet(a),
                    "{round}: {a} held outside {}",
                    now.subnet()
                );
            }
            pollster::block_on(ipam.release(&owner(round), None)).unwrap();
            pollster::block_on(ipam.delete_pool(&name(round), false)).unwrap();
        },
    );
}

/// Two applies of overlapping pools, one at every instant of the other: never both stored.
pub fn overlapping_applies_at_every_instant_of_each_other(store: Arc<dyn Store>) {
    let pair = |round: &str| (format!("{round}-a"), format!("{round}-b"));
    let subnet = |round: &str| round_subnet("10.68", round);
    at_every_instant(
        store,
        "overlap",
        |_, _| {},
        |ipam, round| {
            let (a, _) = pair(round);
            let s = subnet(round);
            let _ = pollster::block_on(ipam.apply_pool(pool(&a, &s, &[&s])));
        },
        move |ipam, round| {
            let (_, b) = pair(round);
            let s = subnet(round);
            let _ = pollster::block_on(ipam.apply_pool(pool(&b, &s, &[&s])));
        },
        |ipam, round| {
            let (a, b) = pair(round);
            let stored: Vec<ObjectName> = pollster::block_on(ipam.pools())
                .unwrap()
                .into_iter()
                .map(|p| p.name().clone())
                .filter(|n| *n == name(&a) || *n == name(&b))
                .collect();
            assert_eq!(stored.len(), 1, "{round}: {stored:?}");
            pollster::block_on(ipam.delete_pool(&stored[0], false)).unwrap();
        },
    );
}

/// Checks the store's allocation state and returns how many addresses are held: every block
/// is under its own key (an empty one may be left by a release guard), and every holder in a block is named in its owner's
/// index (the index may also name addresses its owner does not hold, after a stopped
/// allocation: see [`check_indexes_exact`]).
pub async fn check_consistency(store: &dyn Store) -> usize {
    let (held, _) = read_state(store).await;
    held.len()
}

/// A StatefulSet Pod's address waits for the Pod's next sandbox: a DEL that keeps it
/// moves it to the Pod's identity, the next Pod of that name (any UID, any container) takes
/// it back, an earlier Pod's sandbox that was never torn down keeps it from a new Pod (it
/// may still run), a runtime's GC leaves it alone, and a reservation made meanwhile wins.
pub async fn statefulset_pods_keep_their_address(store: Arc<dyn Store>) {
    let ipam = Ipam::with_config(
        store.clone(),
        Config {
            node: Some(name("node-1")),
            ..Config::default()
        },
    );
    ipam.apply_pool(pool("sts", "10.72.0.0/24", &["10.72.0.1-10.72.0.8"]))
        .await
        .unwrap();
    let add = |container: &str, pod: &str, uid: &str| {
        request(container, &["sts"]).pod(statefulset_pod(pod, uid))
    };
    let address = |g: Vec<crate::Granted>| g[0].allocation.address;
    let a = address(ipam.allocate(&add("c1", "db-0", "u1")).await.unwrap());
    let id = statefulset_pod("db-0", "u1")
        .identity_owner("eth0")
        .unwrap();

    // A new Pod db-0 while the first one's sandbox was never torn down: it waits.
    let before = check_consistency(&*store).await;
    match ipam.allocate(&add("c2", "db-0", "u2")).await {
        Err(Error::StillHeld(held)) => {
            assert_eq!((held.address, &held.holder), (a, &owner("c1")));
        }
        other => panic!("an earlier sandbox's address was handed to a new Pod: {other:?}"),
    }
    assert_eq!(check_consistency(&*store).await, before);

    // The same Pod's next sandbox (same UID: a sandbox restart) takes it over at once.
    assert_eq!(
        address(ipam.allocate(&add("c3", "db-0", "u1")).await.unwrap()),
        a
    );
    // The old sandbox's late DEL finds nothing of its own.
    let late = ipam
        .release_keeping(&owner("c1"), Some("net1"))
        .await
        .unwrap();
    assert_eq!(late, crate::Released::default());

    // DEL keeps it for the identity: held, by no container.
    let kept = ipam
        .release_keeping(&owner("c3"), Some("net1"))
        .await
        .unwrap();
    assert!(kept.released.is_empty());
    assert_eq!(kept.kept.len(), 1);
    assert_eq!((kept.kept[0].address, &kept.kept[0].owner), (a, &id));
    let all = ipam.allocations(None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].owner, id);
    assert_eq!(
        all[0].held_for(),
        crate::HeldFor::StatefulSetIdentity {
            statefulset: "db".into()
        }
    );
    let explained = ipam.explain(a).await.unwrap().to_string();
    assert!(
        explained.contains(&format!(
            "held by {id} (network \"net1\", pool \"sts\", pod default/db-0; StatefulSet db: no sandbox, kept for the Pod's next)"
        )),
        "{explained}"
    );
    // Nobody else gets it, and a runtime's GC (which knows only sandboxes) leaves it.
    let other = address(ipam.allocate(&request("web", &["sts"])).await.unwrap());
    assert_ne!(other, a);
    let report = ipam.gc("net1", &BTreeSet::new()).await.unwrap();
    assert_eq!(
        report
            .released
            .iter()
            .map(|r| r.address)
            .collect::<Vec<_>>(),
        vec![other]
    );
    // The next db-0 (another UID, another container) gets it back.
    assert_eq!(
        address(ipam.allocate(&add("c4", "db-0", "u2")).await.unwrap()),
        a
    );
    check_indexes_exact(&*store).await;

    // When the StatefulSet no longer wants the Pod, the caller releases the identity's.
    let kept = ipam
        .release_keeping(&owner("c4"), Some("net1"))
        .await
        .unwrap();
    let released = ipam
        .release_addresses(&kept.kept[0].owner, &[a])
        .await
        .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(check_indexes_exact(&*store).await, 0);

    // A plain release (keeping switched off) gives a StatefulSet Pod's address back.
    let b = address(ipam.allocate(&add("c5", "db-1", "u3")).await.unwrap());
    ipam.release(&owner("c5"), Some("net1")).await.unwrap();
    assert_eq!(check_indexes_exact(&*store).await, 0);

    // A reservation made while the address waits wins: the next Pod gets another, and the
    // reserved one is given back.
    let b = {
        let _ = b;
        address(ipam.allocate(&add("c6", "db-1", "u4")).await.unwrap())
    };
    ipam.release_keeping(&owner("c6"), Some("net1"))
        .await
        .unwrap();
    ipam.apply_reserved_ip(reserved("hold", &[&b.to_string()]))
        .await
        .unwrap();
    let c = address(ipam.allocate(&add("c7", "db-1", "u5")).await.unwrap());
    assert_ne!(c, b);
    let held: Vec<IpAddr> = ipam
        .allocations(None)
        .await
        .unwrap()
        .iter()
        .map(|x| x.address)
        .collect();
    assert_eq!(held, vec![c]);
    check_indexes_exact(&*store).await;
}

/// What a crash leaves (an owner index entry whose block write never came, an empty
/// block) is found, and swept by compare-and-swap: a stale entry goes without releasing
/// anything, an empty block goes unless it was written since it was read.
pub async fn crash_leftovers_are_found_and_swept(store: Arc<dyn Store>) {
    let ipam = Ipam::new(store.clone());
    ipam.apply_pool(pool("lo", "10.73.0.0/24", &["10.73.0.1-10.73.0.8"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("lo2", "10.73.2.0/24", &["10.73.2.1-10.73.2.8"]))
        .await
        .unwrap();
    let a = ipam.allocate(&request("a", &["lo"])).await.unwrap()[0]
        .allocation
        .address;
    // A crash between the index write and the block write of an allocation, and a guard's
    // empty block.
    let ghost: IpAddr = "10.73.0.5".parse().unwrap();
    let block_of = |addr: &str| Key::Block {
        family: Family::V4,
        index: crate::search::block_index(crate::addr::to_u128(addr.parse().unwrap())),
    };
    let mut txn = Transaction::new();
    txn.put(
        Key::Owner(owner("ghost")),
        Record::Owner(vec![crate::holder::Held {
            network: "net1".into(),
            address: ghost,
        }]),
        Expect::Absent,
    );
    for at in ["10.73.1.0", "10.73.2.0"] {
        let Key::Block { family, index } = block_of(at) else {
            unreachable!()
        };
        txn.put(
            block_of(at),
            Record::Block(crate::block::BlockRecord::new(family, index)),
            Expect::Absent,
        );
    }
    store.commit(txn).await.unwrap();

    let found = ipam.leftovers().await.unwrap();
    assert_eq!(
        found.stale_entries,
        vec![(
            owner("ghost"),
            vec![crate::holder::Held {
                network: "net1".into(),
                address: ghost
            }]
        )]
    );
    let empty: Vec<Key> = found
        .empty_blocks
        .iter()
        .map(|b| Key::Block {
            family: b.family,
            index: b.index,
        })
        .collect();
    assert_eq!(empty, vec![block_of("10.73.1.0"), block_of("10.73.2.0")]);

    // The stale entry goes; the owner that holds its address keeps everything.
    assert_eq!(
        ipam.drop_stale_entries(&owner("ghost"), &[ghost])
            .await
            .unwrap(),
        1
    );
    assert_eq!(ipam.drop_stale_entries(&owner("a"), &[a]).await.unwrap(), 0);
    // An empty block written since it was read stays; one untouched goes.
    let b = ipam.allocate(&request("b", &["lo2"])).await.unwrap()[0]
        .allocation
        .address;
    assert_eq!(block_of(&b.to_string()), block_of("10.73.2.0"));
    assert!(!ipam
        .delete_empty_block(&found.empty_blocks[1])
        .await
        .unwrap());
    assert!(ipam
        .delete_empty_block(&found.empty_blocks[0])
        .await
        .unwrap());
    assert!(!ipam
        .delete_empty_block(&found.empty_blocks[0])
        .await
        .unwrap());
    assert_eq!(ipam.leftovers().await.unwrap(), crate::Leftovers::default());
    assert_eq!(check_indexes_exact(&*store).await, 2);
}

/// As [`check_consistency`], and every owner index names exactly what its owner holds: true
/// after any sequence of operations that all ran to the end.
pub async fn check_indexes_exact(store: &dyn Store) -> usize {
    let (held, indexed) = read_state(store).await;
    assert_eq!(held, indexed, "owner indexes name addresses nobody holds");
    held.len()
}

type HeldSet = BTreeSet<(Owner, String, IpAddr)>;

async fn read_state(store: &dyn Store) -> (HeldSet, HeldSet) {
    let mut held = BTreeSet::new();
    let mut attached = BTreeSet::new();
    for family in [Family::V4, Family::V6] {
        for (key, v) in store.scan(&KeyRange::all_blocks(family)).await.unwrap() {
            let Record::Block(b) = &v.value else {
                panic!("{key}: not a block");
            };
            assert_eq!(
                key,
                Key::Block {
                    family: b.family(),
                    index: b.index()
                },
                "{key}: block under the wrong key"
            );
            for (value, h) in b.iter() {
                held.insert((h.owner.clone(), h.network.clone(), family.addr(value)));
                // A StatefulSet Pod's identity lists the address its sandbox holds too.
                if let Some(id) = h
                    .pod
                    .as_ref()
                    .and_then(|p| p.identity_owner(h.owner.ifname()))
                {
                    attached.insert((id, h.network.clone(), family.addr(value)));
                }
            }
        }
    }
    let mut indexed = BTreeSet::new();
    for (key, v) in store.scan(&KeyRange::Owners).await.unwrap() {
        let (Key::Owner(owner), Record::Owner(list)) = (&key, &v.value) else {
            panic!("{key}: not an owner index");
        };
        assert!(
            !list.is_empty(),
            "{key}: empty owner indexes are deleted, not kept"
        );
        for h in list {
            let entry = (owner.clone(), h.network.clone(), h.address);
            if !attached.contains(&entry) {
                indexed.insert(entry);
            }
        }
    }
    let missing: Vec<_> = held.difference(&indexed).collect();
    assert!(
        missing.is_empty(),
        "held but not in the owner index: {missing:?}"
    );
    (held, indexed)
}

/// A [`Store`] that counts what passes through it: round trips of reads, and writes that a
/// store of single objects makes one after another (hints, unconditioned cursor writes,
/// travel with the write before them and are not counted).
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    reads: AtomicUsize,
    writes: AtomicUsize,
    hints: AtomicUsize,
}

impl<S> CountingStore<S> {
    /// Counts what passes to `inner`.
    pub fn new(inner: S) -> CountingStore<S> {
        CountingStore {
            inner,
            reads: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            hints: AtomicUsize::new(0),
        }
    }

    /// Hints written (unconditioned cursor writes, not counted by [`CountingStore::take`])
    /// since the last call, and starts counting afresh.
    pub fn take_hints(&self) -> usize {
        self.hints.swap(0, Ordering::SeqCst)
    }

    /// `(reads, writes)` since the last call, and starts counting afresh.
    pub fn take(&self) -> (usize, usize) {
        (
            self.reads.swap(0, Ordering::SeqCst),
            self.writes.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl<S: Store> Store for CountingStore<S> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(keys).await
    }
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.scan(range).await
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let hints = txn.ops().iter().filter(|op| op.is_hint()).count();
        self.writes
            .fetch_add(txn.ops().len() - hints, Ordering::SeqCst);
        self.hints.fetch_add(hints, Ordering::SeqCst);
        self.inner.commit(txn).await
    }
    fn max_commit_ops(&self) -> usize {
        self.inner.max_commit_ops()
    }
    fn record_size(&self, key: &Key, record: &Record) -> Option<crate::store::RecordSize> {
        self.inner.record_size(key, record)
    }
    fn caches(&self) -> bool {
        self.inner.caches()
    }
    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        self.inner.cached(key)
    }
}

/// A store whose cache ([`Store::cached`]) learns only from reads: it answers with what the
/// last read of a key returned, however many writes came after it, and keeps a record that
/// a later read found gone. The harshest cache the engine may meet: after any write, what
/// it gives is stale, so the engine's attempts from it must stand on their compare-and-swaps
/// alone. The conformance kit runs on it (`tests/conformance.rs`).
///
/// With [`ReadCache::learning_writes`], it learns what it commits too (the versions the
/// store gave, read back): a cache as right as a node agent's whose node alone writes.
#[derive(Debug)]
pub struct ReadCache<S> {
    inner: S,
    learns_writes: bool,
    seen: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Versioned<Record>>>,
}

impl<S: Store> ReadCache<S> {
    /// `inner` with a cache that learns only from reads.
    pub fn new(inner: S) -> ReadCache<S> {
        ReadCache {
            inner,
            learns_writes: false,
            seen: Default::default(),
        }
    }

    /// `inner` with a cache that also learns every record it commits.
    pub fn learning_writes(inner: S) -> ReadCache<S> {
        ReadCache {
            learns_writes: true,
            ..ReadCache::new(inner)
        }
    }

    fn learn(&self, key: &Key, read: &Option<Versioned<Record>>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match read {
            Some(v) => {
                seen.insert(key.encode(), v.clone());
            }
            // A harsh cache keeps what it saw; a right one forgets what is gone.
            None if self.learns_writes => {
                seen.remove(&key.encode());
            }
            None => {}
        }
    }
}

#[async_trait]
impl<S: Store> Store for ReadCache<S> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let read = self.inner.get(key).await?;
        self.learn(key, &read);
        Ok(read)
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let found = self.inner.get_many(keys).await?;
        for (key, read) in keys.iter().zip(&found) {
            self.learn(key, read);
        }
        Ok(found)
    }
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let found = self.inner.scan(range).await?;
        for (key, read) in &found {
            self.learn(key, &Some(read.clone()));
        }
        Ok(found)
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        let keys: Vec<Key> = txn.ops().iter().map(|op| op.key().clone()).collect();
        let result = self.inner.commit(txn).await;
        if self.learns_writes {
            // Learnt as the store answers, where a remote store learns from the response.
            let now = self.inner.get_many(&keys).await?;
            for (key, read) in keys.iter().zip(&now) {
                self.learn(key, read);
            }
        }
        result
    }
    fn max_commit_ops(&self) -> usize {
        self.inner.max_commit_ops()
    }
    fn record_size(&self, key: &Key, record: &Record) -> Option<crate::store::RecordSize> {
        self.inner.record_size(key, record)
    }
    fn caches(&self) -> bool {
        true
    }
    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(&key.encode()).cloned()
    }
}

/// A store with something that must outlive it, such as the temporary directory of an
/// embedded store: dropped after the store.
///
/// ```ignore
/// let dir = tempfile::tempdir().unwrap();
/// let store = Guarded::new(RedbStore::open(dir.path(), &opts).unwrap(), dir);
/// ```
#[derive(Debug)]
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive until after it is dropped.
    pub fn new(store: S, guard: G) -> Guarded<S, G> {
        Guarded {
            store,
            _guard: guard,
        }
    }
}

#[async_trait]
impl<S: Store, G: Send + Sync> Store for Guarded<S, G> {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        self.store.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.store.get_many(keys).await
    }
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        self.store.scan(range).await
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        self.store.commit(txn).await
    }
    fn max_commit_ops(&self) -> usize {
        self.store.max_commit_ops()
    }
    fn record_size(&self, key: &Key, record: &Record) -> Option<crate::store::RecordSize> {
        self.store.record_size(key, record)
    }
    fn caches(&self) -> bool {
        self.store.caches()
    }
    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        self.store.cached(key)
    }
}
