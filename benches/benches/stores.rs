//! Embedded store benchmarks: flat cost, open cost per process, commit throughput.
//!
//! Run: `cargo bench -p ipam-benches --bench stores`. Figures are in `benches/RESULTS.md`.
//! Files live in a temporary directory on the disk that holds `TMPDIR`; every commit is
//! fsynced, so the figures are the disk's as much as ours.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ipam_core::testkit::{owner, pool, request};
use ipam_core::{Ipam, Store};

const WAIT: Duration = Duration::from_secs(30);

fn open(backend: &str, dir: &Path) -> Box<dyn Store> {
    match backend {
        "redb" => Box::new(
            ipam_redb::RedbStore::open(dir, &ipam_redb::OpenOptions { lock_wait: WAIT }).unwrap(),
        ),
        _ => Box::new(
            ipam_sled::SledStore::open(dir, &ipam_sled::OpenOptions { lock_wait: WAIT }).unwrap(),
        ),
    }
}

/// A store in `dir` with a /16 pool of which `held` addresses are allocated (in batches, to
/// set up quickly: the state is the same as after `held` single allocations).
fn prepare(backend: &str, dir: &Path, held: usize) {
    let ipam = Ipam::new(open(backend, dir));
    pollster::block_on(ipam.apply_pool(pool("p", "10.6.0.0/16", &["10.6.0.0/16"]))).unwrap();
    let mut i = 0;
    while i < held {
        let mut req = request(&format!("h{i}"), &["p"]);
        let batch = (held - i).min(500);
        req.slots = vec![req.slots[0].clone(); batch];
        pollster::block_on(ipam.allocate(&req)).unwrap();
        i += batch;
    }
}

fn flat_cost(c: &mut Criterion) {
    // allocate + commit, then release + commit, on an open store: the cost must not follow
    // the number of allocations already held.
    let mut group = c.benchmark_group("alloc_commit_release_commit");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    for backend in ["redb", "sled"] {
        for held in [0usize, 60_000] {
            let dir = tempfile::tempdir().unwrap();
            prepare(backend, dir.path(), held);
            let ipam = Ipam::new(open(backend, dir.path()));
            let req = request("bench", &["p"]);
            let who = owner("bench");
            group.bench_function(format!("{backend}/{held}-held"), |b| {
                b.iter(|| {
                    pollster::block_on(ipam.allocate(&req)).unwrap();
                    pollster::block_on(ipam.release(&who, Some("net1"))).unwrap();
                })
            });
        }
    }
    group.finish();
}

fn per_process(c: &mut Criterion) {
    // What one CNI ADD pays: open (lock + database), allocate + commit, close.
    let mut group = c.benchmark_group("open_alloc_commit_close");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    for backend in ["redb", "sled"] {
        let dir = tempfile::tempdir().unwrap();
        prepare(backend, dir.path(), 4096);
        let mut n = 0u64;
        group.bench_function(backend, |b| {
            b.iter(|| {
                n += 1;
                let ipam = Ipam::new(open(backend, dir.path()));
                let who = format!("c{n}");
                pollster::block_on(ipam.allocate(&request(&who, &["p"]))).unwrap();
                pollster::block_on(ipam.release(&owner(&who), None)).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, flat_cost, per_process);
criterion_main!(benches);
