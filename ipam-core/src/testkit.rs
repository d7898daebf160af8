//! The store conformance kit (feature `testkit`).
//!
//! Every [`Store`] implementation calls [`run_all`] from its own tests, unchanged, with a
//! function that makes a fresh, empty store. The scenarios are the contract's: the seed
//! walk-through, the three rules of reservations, repeated requests, release, GC, candidate
//! pools, all-or-nothing, compare-and-swap semantics, and many concurrent writers on one pool
//! with no duplicate.
//!
//! ```
//! ipam_core::testkit::run_all(ipam_core::MemoryStore::new);
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use crate::engine::{Applied, Config, Ipam, Request, Slot};
use crate::error::{Error, StoreError, Unavailable};
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, IpPoolSpec};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::store::{Expect, Key, Prefix, Record, Store, Transaction};

/// A named scenario of the kit, run on a fresh store.
type Scenario = (&'static str, fn(Arc<dyn Store>));

/// Runs every scenario, each on a fresh store from `make`.
pub fn run_all<S: Store + 'static>(make: impl Fn() -> S) {
    let scenarios: &[Scenario] = &[
        ("compare_and_swap", |s| {
            pollster::block_on(compare_and_swap(&*s))
        }),
        ("scan_by_prefix", |s| {
            pollster::block_on(scan_by_prefix(&*s))
        }),
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
        ("pools_defined_by_requests", |s| {
            pollster::block_on(pools_defined_by_requests(s))
        }),
        ("concurrent_writers", |s| concurrent_writers(s, 8, 40, 250)),
    ];
    for (name, scenario) in scenarios {
        eprintln!("conformance: {name}");
        scenario(Arc::new(make()));
    }
}

/// Test helper: a validated name.
pub fn name(s: &str) -> ObjectName {
    ObjectName::new(s).expect("valid test name")
}

/// Test helper: an owner `(id, "eth0")`.
pub fn owner(id: &str) -> Owner {
    Owner::new(id, "eth0").expect("valid test owner")
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

/// Test helper: a request of one address from `pools` (tried in order) on network `net1`.
pub fn request(owner_id: &str, pools: &[&str]) -> Request {
    Request {
        owner: owner(owner_id),
        network: "net1".into(),
        pod: None,
        slots: vec![Slot {
            pools: pools.iter().map(|p| name(p)).collect(),
            requested: None,
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
    Ok(got[0].address)
}

/// Versions and preconditions: a stale or wrong expectation changes nothing.
pub async fn compare_and_swap(store: &dyn Store) {
    let key = Key::Cursor(name("p"));
    let other = Key::Cursor(name("q"));
    assert!(store.get(&key).await.unwrap().is_none());

    let mut t = Transaction::new();
    t.put(key.clone(), Record::Cursor(1), Expect::Absent);
    store.commit(t).await.unwrap();
    let v1 = store.get(&key).await.unwrap().expect("written");
    assert_eq!(v1.value, Record::Cursor(1));

    // A second create of the same key conflicts, and the other write in it is not applied.
    let mut t = Transaction::new();
    t.put(other.clone(), Record::Cursor(9), Expect::Absent);
    t.put(key.clone(), Record::Cursor(2), Expect::Absent);
    assert!(matches!(
        store.commit(t).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store.get(&other).await.unwrap().is_none(),
        "half-applied transaction"
    );

    // Compare-and-swap on the version read.
    let mut t = Transaction::new();
    t.put(key.clone(), Record::Cursor(2), Expect::Version(v1.version));
    store.commit(t).await.unwrap();
    let v2 = store.get(&key).await.unwrap().unwrap();
    assert_ne!(v2.version, v1.version, "a write must change the version");
    let mut stale = Transaction::new();
    stale.put(key.clone(), Record::Cursor(3), Expect::Version(v1.version));
    assert!(matches!(
        store.commit(stale).await,
        Err(StoreError::Conflict { .. })
    ));

    // A check alone guards a write elsewhere.
    let mut t = Transaction::new();
    t.check(key.clone(), Expect::Version(v1.version));
    t.put(other.clone(), Record::Cursor(4), Expect::Any);
    assert!(matches!(
        store.commit(t).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(store.get(&other).await.unwrap().is_none());

    // Deletion, then the key is absent again.
    let mut t = Transaction::new();
    t.delete(key.clone(), Expect::Version(v2.version));
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
}

/// Scans return exactly the keys under a prefix, in key order.
pub async fn scan_by_prefix(store: &dyn Store) {
    let mut t = Transaction::new();
    for p in ["b", "a", "ab"] {
        t.put(
            Key::Pool(name(p)),
            Record::Pool(pool(p, "10.0.0.0/24", &["10.0.0.1"])),
            Expect::Absent,
        );
        t.put(Key::Cursor(name(p)), Record::Cursor(5), Expect::Absent);
    }
    let mut blk = crate::alloc::Block::default();
    blk.insert(3);
    for (p, index) in [("a", 2u128), ("a", 1), ("ab", 1)] {
        t.put(
            Key::Block {
                pool: name(p),
                index,
            },
            Record::Block(blk.clone()),
            Expect::Absent,
        );
    }
    store.commit(t).await.unwrap();
    let pools: Vec<Key> = store
        .scan(&Prefix::Pools)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        pools,
        vec![
            Key::Pool(name("a")),
            Key::Pool(name("ab")),
            Key::Pool(name("b"))
        ]
    );
    let blocks: Vec<Key> = store
        .scan(&Prefix::Blocks(name("a")))
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        blocks,
        vec![
            Key::Block {
                pool: name("a"),
                index: 1
            },
            Key::Block {
                pool: name("a"),
                index: 2
            }
        ]
    );
    assert!(store.scan(&Prefix::Owners).await.unwrap().is_empty());
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
    assert_eq!(got[0].address, ip("10.6.0.50"));
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
    assert_eq!(
        e.pools[0].held.as_ref().map(|a| a.owner.clone()),
        Some(owner("c1"))
    );
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
    assert_eq!(first, again);
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
        });
        r
    };
    let both = ipam.allocate(&dual("d1")).await.unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[1].address, ip("fd00::1"));
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

/// A pool defined by a request (a CNI network's `ranges`) is created or updated in the same
/// transaction as the allocation from it, and not at all when the request fails.
pub async fn pools_defined_by_requests(store: Arc<dyn Store>) {
    let ipam = engine(store.clone());
    let inline = pool("net1-0", "10.30.0.0/24", &["10.30.0.10-10.30.0.11"]);
    let defining = |id: &str, p: &IpPool| {
        let mut r = request(id, &["net1-0"]);
        r.defines = vec![p.clone()];
        r
    };
    // A failing request (its second slot names a missing pool) creates nothing.
    let mut failing = defining("c0", &inline);
    failing.slots.push(Slot {
        pools: vec![name("missing")],
        requested: None,
    });
    assert!(matches!(
        ipam.allocate(&failing).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        ipam.pool(&name("net1-0")).await.unwrap().is_none(),
        "a failed request left a pool"
    );

    assert_eq!(
        addr_of(&ipam, &defining("c1", &inline)).await.unwrap(),
        ip("10.30.0.10")
    );
    assert_eq!(
        ipam.pool(&name("net1-0")).await.unwrap().as_ref(),
        Some(&inline)
    );
    let v1 = store
        .get(&Key::Pool(name("net1-0")))
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(
        addr_of(&ipam, &defining("c2", &inline)).await.unwrap(),
        ip("10.30.0.11")
    );
    let v2 = store
        .get(&Key::Pool(name("net1-0")))
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(v1, v2, "an unchanged definition is not rewritten");

    // A wider definition replaces the spec in the allocating transaction; held addresses stay.
    let wider = pool("net1-0", "10.30.0.0/24", &["10.30.0.10-10.30.0.12"]);
    assert_eq!(
        addr_of(&ipam, &defining("c3", &wider)).await.unwrap(),
        ip("10.30.0.12")
    );
    assert_eq!(
        ipam.pool(&name("net1-0")).await.unwrap().as_ref(),
        Some(&wider)
    );
    assert_eq!(counts(&ipam, "net1-0").await, [3, 0, 3, 0]);
    assert_eq!(check_consistency(&*store).await, 3);
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
    assert_eq!(
        store.scan(&Prefix::Blocks(name("v6"))).await.unwrap().len(),
        1
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
                        Ok(a) => mine.push((req.owner.clone(), a[0].address)),
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

/// Checks that the store's three views of allocations agree: the block bitmaps, the
/// per-address allocation records and the owner records hold exactly the same
/// `(pool, address)` pairs, and no address is held twice. Returns how many are held.
pub async fn check_consistency(store: &dyn Store) -> usize {
    use std::collections::BTreeMap;
    let mut from_blocks = BTreeSet::new();
    let mut pools = Vec::new();
    for (key, v) in store.scan(&Prefix::Pools).await.unwrap() {
        match (key, v.value) {
            (Key::Pool(n), Record::Pool(p)) => pools.push((n, p.family())),
            (k, _) => panic!("{k}: not a pool"),
        }
    }
    for (pool_name, family) in &pools {
        for (key, v) in store
            .scan(&Prefix::Blocks(pool_name.clone()))
            .await
            .unwrap()
        {
            let (Key::Block { index, .. }, Record::Block(b)) = (&key, &v.value) else {
                panic!("{key}: not a block");
            };
            assert!(!b.is_empty(), "{key}: empty blocks are deleted, not kept");
            for o in b.offsets() {
                let value = (index << crate::alloc::BLOCK_BITS) | u128::from(o);
                from_blocks.insert((pool_name.clone(), family.addr(value)));
            }
        }
    }
    let mut from_records = BTreeSet::new();
    let mut record_owner = BTreeMap::new();
    for (key, v) in store.scan(&Prefix::Allocations(None)).await.unwrap() {
        let (Key::Allocation { pool, address }, Record::Allocation(a)) = (&key, &v.value) else {
            panic!("{key}: not an allocation");
        };
        assert_eq!(
            (&a.pool, &a.address),
            (pool, address),
            "{key}: record under the wrong key"
        );
        from_records.insert((pool.clone(), *address));
        record_owner.insert((pool.clone(), *address), a.owner.clone());
    }
    let mut from_owners = BTreeSet::new();
    for (key, v) in store.scan(&Prefix::Owners).await.unwrap() {
        let (Key::Owner(owner), Record::Owner(list)) = (&key, &v.value) else {
            panic!("{key}: not an owner record");
        };
        assert!(
            !list.is_empty(),
            "{key}: empty owner records are deleted, not kept"
        );
        for a in list {
            assert_eq!(&a.owner, owner, "{key}: holds another owner's allocation");
            assert!(
                from_owners.insert((a.pool.clone(), a.address)),
                "{} held twice",
                a.address
            );
            assert_eq!(record_owner.get(&(a.pool.clone(), a.address)), Some(owner));
        }
    }
    assert_eq!(
        from_blocks, from_records,
        "bitmaps and allocation records disagree"
    );
    assert_eq!(
        from_records, from_owners,
        "allocation records and owner records disagree"
    );
    let addresses: BTreeSet<IpAddr> = from_records.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        addresses.len(),
        from_records.len(),
        "an address is held in two pools"
    );
    from_records.len()
}
