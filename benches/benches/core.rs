//! Core benchmarks: allocation as set algebra, applying reservations, state size.
//!
//! Run: `cargo bench -p ipam-benches --bench core`. Figures are in `benches/RESULTS.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ipam_core::backend::{Key, KeyRange, Record, Transaction};
use ipam_core::search::Allocations;
use ipam_core::testkit::{name, owner, pool, request};
use ipam_core::{
    IntervalSet, Ipam, MemoryStore, ReservedIp, ReservedIpSpec, Store, StoreError, Versioned,
};

/// A pool of `2^bits` addresses starting at `base`, with `reserved` small ranges spread over
/// it and `occupancy` of the rest allocated at random.
struct Setup {
    capacity: IntervalSet,
    reserved: IntervalSet,
    allocations: Allocations,
}

fn setup(base: u128, bits: u32, occupancy: f64, reserved_ranges: usize) -> Setup {
    let size = 1u128 << bits;
    let capacity = IntervalSet::from_intervals([(base + 1, base + size - 2)]);
    let mut rng = fastrand::Rng::with_seed(1);
    let mut res = Vec::with_capacity(reserved_ranges);
    // Store-wide reservations are spread over at least a /8 around the pool, as a store's
    // ReservedIPs cover more than one pool: a small pool sees few of them, but every search
    // still works against all 1,000.
    let spread = size.max(1 << 24);
    for _ in 0..reserved_ranges {
        let start = base + 1 + (u128::from(rng.u64(..)) % (spread - 20));
        res.push((start, start + u128::from(rng.u64(0..16))));
    }
    let reserved = IntervalSet::from_intervals(res);
    let mut allocations = Allocations::default();
    // Occupancy only makes sense where the pool can be held in memory (up to a /8).
    let target = (((size - 2) as f64) * occupancy) as u128;
    if target > 0 {
        let open = capacity.difference(&reserved);
        let mut n = 0u128;
        if occupancy >= 0.5 {
            // Dense: take everything, then free at random down to the target.
            for &(a, b) in open.intervals() {
                for v in a..=b {
                    allocations.insert(v);
                }
            }
            n = allocations.len();
            while n > target {
                if allocations.release(base + 1 + u128::from(rng.u64(..)) % (size - 2)) {
                    n -= 1;
                }
            }
        } else {
            while n < target {
                let v = base + 1 + u128::from(rng.u64(..)) % (size - 2);
                if open.contains(v) && allocations.insert(v) {
                    n += 1;
                }
            }
        }
    }
    Setup {
        capacity,
        reserved,
        allocations,
    }
}

fn alloc_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("alloc_release");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let cases: &[(&str, u128, u32, &[f64])] = &[
        ("v4-24", 0x0a00_0000, 8, &[0.0, 0.5, 0.9]),
        ("v4-16", 0x0a00_0000, 16, &[0.0, 0.5, 0.9]),
        ("v4-8", 0x0a00_0000, 24, &[0.0, 0.5, 0.9]),
        ("v6-64", 0xfd00_u128 << 112, 64, &[0.0]),
    ];
    for &(label, base, bits, occupancies) in cases {
        for &occ in occupancies {
            let mut s = setup(base, bits, occ, 1000);
            let mut cursor = s.capacity.first().unwrap();
            let id = BenchmarkId::new(label, format!("{}pct", (occ * 100.0) as u32));
            group.bench_function(id, |b| {
                b.iter(|| {
                    // One allocation by round-robin search, then its release.
                    let x = s
                        .allocations
                        .allocate_first_free(&s.capacity, &[&s.reserved], cursor)
                        .expect("pool not full");
                    assert!(s.allocations.release(black_box(x)));
                    cursor = x + 1;
                })
            });
        }
    }
    group.finish();
}

fn engine_alloc_release(c: &mut Criterion) {
    // The whole engine path over the in-memory store: reads, search, transaction, commit.
    let mut group = c.benchmark_group("engine_alloc_release");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (label, held) in [("v4-16-empty", 0usize), ("v4-16-60000-held", 60_000)] {
        let ipam = Ipam::new(MemoryStore::new());
        pollster::block_on(ipam.apply_pool(pool("p", "10.6.0.0/16", &["10.6.0.0/16"]))).unwrap();
        for i in 0..held {
            pollster::block_on(ipam.allocate(&request(&format!("h{i}"), &["p"]))).unwrap();
        }
        let req = request("bench", &["p"]);
        let who = owner("bench");
        group.bench_function(label, |b| {
            b.iter(|| {
                pollster::block_on(ipam.allocate(&req)).unwrap();
                pollster::block_on(ipam.release(&who, Some("net1"))).unwrap();
            })
        });
    }
    group.finish();
}

fn apply_reservation(c: &mut Criterion) {
    // A ReservedIP of 10,000 entries applied while 100 pools exist.
    let mut group = c.benchmark_group("apply_reservedip");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let ipam = Ipam::new(MemoryStore::new());
    for p in 0..100 {
        let subnet = format!("10.{p}.0.0/16");
        let ips = format!("10.{p}.0.0/16");
        pollster::block_on(ipam.apply_pool(pool(&format!("p{p}"), &subnet, &[&ips]))).unwrap();
    }
    let entries = |salt: u32| -> Vec<String> {
        (0..10_000u32)
            .map(|i| {
                let p = i % 100;
                // 100 entries per pool, two addresses each, never across a /24 edge.
                let host = (i / 100) * 4 + salt;
                format!(
                    "10.{p}.{}.{}-10.{p}.{}.{}",
                    host / 256,
                    host % 256,
                    host / 256,
                    host % 256 + 1
                )
            })
            .collect()
    };
    let (a, b) = (entries(0), entries(1));
    let mut flip = false;
    group.bench_function("10000-entries-100-pools", |bench| {
        bench.iter(|| {
            flip = !flip;
            let spec = ReservedIpSpec {
                ips: if flip { a.clone() } else { b.clone() },
                ip_version: None,
            };
            let r = ReservedIp::new("big", spec).unwrap();
            pollster::block_on(ipam.apply_reserved_ip(r)).unwrap();
        })
    });
    group.finish();
    let p0 = pollster::block_on(ipam.pool(&name("p0"))).unwrap().unwrap();
    let counts = pollster::block_on(ipam.pool_counts(&p0)).unwrap();
    eprintln!("after the benchmark, p0 counts {counts}");
}

fn state_size(_: &mut Criterion) {
    // Not a timing: what one block record weighs with realistic holders (64-hex container
    // IDs, a Pod), full and 90 % full, and how many records a full /16 takes. Every record
    // must stay far below the 1.5 MiB that etcd takes in one request.
    use ipam_core::backend::Record;
    use ipam_core::backend::{BlockRecord, Holder};
    use ipam_core::{Family, PodRef};
    let holder = |i: u32| Holder {
        owner: ipam_core::Owner::new(format!("{:064x}", u128::from(i) * 0x9e37_79b9), "eth0")
            .unwrap(),
        network: "macvlan-net".into(),
        pool: name("test-ippool"),
        pod: Some(PodRef {
            namespace: Some("default".into()),
            name: format!("test-app-67dd9f645-{i:05}"),
            uid: Some(format!("{:08x}-1234-5678-9abc-{:012x}", i, i)),
            statefulset: None,
        }),
        node: Some(name("worker-node-0042")),
    };
    for (label, occ) in [("full", 1.0), ("90pct-random", 0.9)] {
        let s = setup(0x0a06_0000, 16, occ, 0);
        let mut largest = 0;
        let mut total = 0;
        for (index, bits) in s.allocations.blocks() {
            let mut block = BlockRecord::new(Family::V4, index);
            for (k, offset) in bits.offsets().enumerate() {
                let value = (index << ipam_core::backend::BLOCK_BITS) | u128::from(offset);
                block.insert(value, holder(k as u32));
            }
            let bytes = Record::Block(block).encode().len();
            largest = largest.max(bytes);
            total += bytes;
        }
        eprintln!(
            "state_size /16 {label}: {} allocated in {} block records, largest {largest} bytes, {total} bytes in all",
            s.allocations.len(),
            s.allocations.blocks().len(),
        );
    }
}

/// A store whose scan of blocks lists every block of the family and keeps those in range,
/// as the Kubernetes store's does (a list of every IPAMBlock object): where counting pool by
/// pool cost pools × blocks.
struct ListsAllBlocks(MemoryStore);

#[async_trait::async_trait]
impl Store for ListsAllBlocks {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        self.0.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.0.get_many(keys).await
    }
    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        let KeyRange::Blocks { family, .. } = range else {
            return self.0.scan(range).await;
        };
        let mut all = self.0.scan(&KeyRange::all_blocks(*family)).await?;
        all.retain(|(k, _)| range.contains(k));
        Ok(all)
    }
    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        self.0.commit(txn).await
    }
}

fn count_pools(c: &mut Criterion) {
    // The report's cluster (B11): 21,000 allocations in one /16 and 53 small pools beside it
    // with a few each, then 200 small pools; counted one pool at a time (as `ipamctl get
    // ippools` did) and all together, on MemoryStore and on a store that lists every block
    // per scan.
    let mut group = c.benchmark_group("count_pools");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for small in [53u32, 199] {
        for (store_label, lists_all) in [("memory", false), ("lists-all-blocks", true)] {
            let store: Box<dyn Store> = if lists_all {
                Box::new(ListsAllBlocks(MemoryStore::new()))
            } else {
                Box::new(MemoryStore::new())
            };
            let ipam = Ipam::new(store);
            let mut pools = vec![pool("big", "10.0.0.0/16", &["10.0.0.0/16"])];
            for i in 0..small {
                let subnet = format!("10.{}.{}.0/24", 1 + i / 256, i % 256);
                pools.push(pool(&format!("p{i:03}"), &subnet, &[&subnet]));
            }
            pollster::block_on(ipam.apply_all(&[], &pools)).unwrap();
            for i in 0..21_000 {
                pollster::block_on(ipam.allocate(&request(&format!("b{i}"), &["big"]))).unwrap();
            }
            for (i, p) in pools.iter().enumerate().skip(1) {
                for k in 0..3 {
                    let who = format!("s{i}-{k}");
                    pollster::block_on(ipam.allocate(&request(&who, &[p.name().as_str()])))
                        .unwrap();
                }
            }
            let n = pools.len();
            group.bench_function(format!("{store_label}/{n}-pools/one-at-a-time"), |b| {
                b.iter(|| {
                    for p in &pools {
                        black_box(pollster::block_on(ipam.pool_counts(p)).unwrap());
                    }
                })
            });
            group.bench_function(format!("{store_label}/{n}-pools/together"), |b| {
                b.iter(|| black_box(pollster::block_on(ipam.pools_counts(&pools)).unwrap()))
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    alloc_release,
    engine_alloc_release,
    apply_reservation,
    state_size,
    count_pools
);
criterion_main!(benches);
