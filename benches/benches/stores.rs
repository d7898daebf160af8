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

/// A store in `dir` with a /16 pool of which `held` addresses are allocated, one owner each,
/// as a node's Pods leave it (setting up 60,000 takes a while: every commit is durable).
fn prepare(backend: &str, dir: &Path, held: usize) {
    let ipam = Ipam::new(open(backend, dir));
    pollster::block_on(ipam.apply_pool(pool("p", "10.6.0.0/16", &["10.6.0.0/16"]))).unwrap();
    for i in 0..held {
        pollster::block_on(ipam.allocate(&request(&format!("h{i}"), &["p"]))).unwrap();
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
        group.bench_function(format!("{backend}/open-close-only"), |b| {
            b.iter(|| drop(open(backend, dir.path())))
        });
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

fn raw_baseline(c: &mut Criterion) {
    // The databases alone, no ipam code: write 4 small keys and commit durably, in a database
    // of 0 or 240,000 keys (what 60,000 allocations leave: allocation and owner records with
    // their index entries). Separates what the libraries' own cost does with size from ours.
    let mut group = c.benchmark_group("raw_4_writes_durable_commit");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    for keys in [0u32, 240_000] {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("sled")).unwrap();
        for k in 0..keys {
            db.insert(format!("a/pool/{k:08}"), vec![7u8; 120]).unwrap();
        }
        db.flush().unwrap();
        let mut n = 0u64;
        group.bench_function(format!("sled/{keys}-keys"), |b| {
            b.iter(|| {
                n += 1;
                db.transaction(|tx| {
                    for k in 0..4 {
                        tx.insert(
                            format!("a/pool/{:08}x{k}", 120_000).as_bytes(),
                            n.to_be_bytes().to_vec(),
                        )?;
                    }
                    Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
                })
                .unwrap();
                db.flush().unwrap();
            })
        });
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("r.redb")).unwrap();
        let table = redb::TableDefinition::<&[u8], &[u8]>::new("t");
        let w = db.begin_write().unwrap();
        {
            let mut t = w.open_table(table).unwrap();
            for k in 0..keys {
                t.insert(format!("a/pool/{k:08}").as_bytes(), [7u8; 120].as_slice())
                    .unwrap();
            }
        }
        w.commit().unwrap();
        group.bench_function(format!("redb/{keys}-keys"), |b| {
            b.iter(|| {
                n += 1;
                let w = db.begin_write().unwrap();
                {
                    let mut t = w.open_table(table).unwrap();
                    for k in 0..4 {
                        t.insert(
                            format!("a/pool/{:08}x{k}", 120_000).as_bytes(),
                            n.to_be_bytes().as_slice(),
                        )
                        .unwrap();
                    }
                }
                w.commit().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, flat_cost, per_process, raw_baseline);
criterion_main!(benches);
