//! What a store of single objects (Kubernetes) needs of the engine: every prefix of a
//! transaction leaves a consistent store, so a commit cut short at any operation loses no
//! holder and hands no address twice; and a steady-state ADD costs at most two writes and
//! three round trips of reads.

use std::collections::BTreeSet;
use std::sync::Arc;

use ipam_core::testkit::{
    a_pool_filled_then_freed_in, check_consistency, check_indexes_exact, name, on_node, owner,
    pool, request, reserved, CountingStore, ReadCache,
};
use ipam_core::{Config, Error, Ipam, MemoryStore, Slot, Store};

fn dual(id: &str) -> ipam_core::Request {
    request(id, &["v4"]).slot(Slot::any_of([name("v6")]))
}

fn engine<S: Store>(store: S, attempts: u32) -> Ipam<S> {
    Ipam::with_config(
        store,
        Config {
            max_attempts: attempts,
            seed: Some(1),
            ..Config::default()
        },
    )
}

async fn setup(store: &Arc<MemoryStore>) {
    let ipam = engine(store.clone(), 4);
    ipam.apply_pool(pool("v4", "10.6.0.0/24", &["10.6.0.10-10.6.0.20"]))
        .await
        .unwrap();
    ipam.apply_pool(pool("v6", "fd00::/120", &["fd00::10-fd00::20"]))
        .await
        .unwrap();
    ipam.allocate(&dual("before")).await.unwrap();
}

/// The store as one process sees it: through a cache of its own (a node agent's, which a
/// restart empties), or not.
fn process_store(store: &Arc<MemoryStore>, cached: bool) -> Box<dyn Store> {
    if cached {
        Box::new(ReadCache::learning_writes(store.clone()))
    } else {
        Box::new(store.clone())
    }
}

/// A commit stopped after each of its operations in turn, never retried (a process killed
/// mid-ADD or mid-DEL): the store stays consistent, and the next call by the same owner
/// finishes the job without a second holder for any address; for a process that reads from a
/// cache (a node agent) and one that does not.
#[test]
fn a_commit_stopped_at_any_operation_loses_nothing_and_doubles_nothing() {
    pollster::block_on(async {
        for (cut, cached) in (0..6).flat_map(|cut| [(cut, false), (cut, true)]) {
            let store = Arc::new(MemoryStore::in_order());
            setup(&store).await;
            let once = engine(process_store(&store, cached), 1);
            store.interrupt_after(cut);
            let stopped = once.allocate(&dual("c1")).await;
            assert!(
                matches!(stopped, Ok(_) | Err(Error::TryAgainLater { .. })),
                "cut {cut}, cached {cached}: {stopped:?}"
            );
            check_consistency(&*store).await;
            // The runtime retries the ADD: one address per slot, the same on every repeat.
            let ipam = engine(process_store(&store, cached), 4);
            let allocations = |granted: Vec<ipam_core::Granted>| -> Vec<_> {
                granted.into_iter().map(|g| g.allocation).collect()
            };
            let got = allocations(ipam.allocate(&dual("c1")).await.unwrap());
            let again = allocations(ipam.allocate(&dual("c1")).await.unwrap());
            assert_eq!(again, got, "cut {cut}, cached {cached}");
            let mine: BTreeSet<_> = ipam
                .owner_allocations(&owner("c1"))
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.address)
                .collect();
            assert_eq!(
                mine,
                got.iter().map(|a| a.address).collect(),
                "cut {cut}, cached {cached}"
            );
            assert_eq!(
                check_indexes_exact(&*store).await,
                4,
                "cut {cut}, cached {cached}"
            );

            // DEL stopped at each operation, then retried: everything released.
            store.interrupt_after(cut);
            let _ = once.release(&owner("c1"), Some("net1")).await;
            check_consistency(&*store).await;
            ipam.release(&owner("c1"), Some("net1")).await.unwrap();
            assert!(ipam
                .owner_allocations(&owner("c1"))
                .await
                .unwrap()
                .is_empty());
            assert_eq!(
                check_indexes_exact(&*store).await,
                2,
                "cut {cut}, cached {cached}"
            );
        }
    });
}

/// A commit cut short that the engine retries (a lost response, a restarting server) is
/// invisible to the caller.
#[test]
fn transient_failures_are_retried() {
    pollster::block_on(async {
        for cut in 0..4 {
            let store = Arc::new(MemoryStore::in_order());
            setup(&store).await;
            let ipam = engine(store.clone(), 4);
            store.interrupt_after(cut);
            let got = ipam.allocate(&dual("c1")).await.unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(check_indexes_exact(&*store).await, 4, "cut {cut}");
        }
    });
}

/// Pool `p` (10.6.0.0/16, all of it), a ReservedIP over `reserved` if given, and 300
/// addresses held from the pool: a store in steady state.
async fn a_pool_with_300_held<S: Store>(ipam: &Ipam<S>, reserved_ips: Option<&str>) {
    ipam.apply_pool(pool("p", "10.6.0.0/16", &["10.6.0.0/16"]))
        .await
        .unwrap();
    if let Some(ips) = reserved_ips {
        ipam.apply_reserved_ip(reserved("r", &[ips])).await.unwrap();
    }
    for i in 0..300 {
        ipam.allocate(&request(&format!("h{i}"), &["p"]))
            .await
            .unwrap();
    }
}

/// The budget stated in ARCHITECTURE.md: a steady-state ADD makes at most three round trips
/// of reads and two writes (the owner index, then the block); a repeated ADD writes nothing;
/// a DEL reads twice and writes twice.
#[test]
fn steady_state_calls_stay_within_the_round_trip_budget() {
    pollster::block_on(async {
        let store = Arc::new(CountingStore::new(MemoryStore::new()));
        let ipam = Ipam::new(store.clone());
        a_pool_with_300_held(&ipam, None).await;
        store.take();
        let (mut worst_reads, mut worst_writes) = (0, 0);
        for i in 0..50 {
            let who = format!("c{i}");
            ipam.allocate(&request(&who, &["p"])).await.unwrap();
            let (reads, writes) = store.take();
            worst_reads = worst_reads.max(reads);
            worst_writes = worst_writes.max(writes);
            ipam.allocate(&request(&who, &["p"])).await.unwrap();
            assert_eq!(
                store.take(),
                (2, 0),
                "a repeated ADD reads twice, writes nothing"
            );
            if i % 2 == 0 {
                ipam.release(&owner(&who), Some("net1")).await.unwrap();
                assert_eq!(
                    store.take(),
                    (2, 2),
                    "DEL: index and block read, block and index written"
                );
            }
        }
        // Two round trips before the write, a third when the first block is full, and the
        // pools read again after the write (to give back what a pool marked meanwhile lent).
        assert!(worst_reads <= 4, "an ADD made {worst_reads} reads");
        assert!(worst_writes <= 2, "an ADD made {worst_writes} writes");

        // The round-robin cursor is rewritten only when the search leaves its block: a
        // few times per 64 ADDs, not on each.
        store.take_hints();
        for i in 0..640 {
            ipam.allocate(&request(&format!("r{i}"), &["p"]))
                .await
                .unwrap();
        }
        let hints = store.take_hints();
        assert!(
            (5..=20).contains(&hints),
            "{hints} cursor writes for 640 ADDs"
        );
    });
}

/// Behind a cache that knows what the engine wrote (a node agent whose node alone writes its
/// blocks), an ADD into a block it knows reads only once, after its write: the pool and the
/// reservations it used, afresh; a DEL reads nothing but the cursor when it empties a block.
/// The writes are the direct path's.
#[test]
fn behind_a_cache_an_add_reads_once_and_a_del_not_at_all() {
    pollster::block_on(async {
        let cached = ReadCache::learning_writes(MemoryStore::in_order());
        let store = Arc::new(CountingStore::new(cached));
        let ipam = Ipam::new(store.clone());
        // A reservation far off, so that there is a summary of them to cache.
        a_pool_with_300_held(&ipam, Some("10.6.255.1")).await;
        store.take();
        let (mut once, mut add_writes) = (0, 0);
        for i in 0..50 {
            let who = format!("c{i}");
            ipam.allocate(&request(&who, &["p"])).await.unwrap();
            let (reads, writes) = store.take();
            // Twice when the block is new: the store's absence of a record is not cached.
            assert!(reads <= 2, "an ADD made {reads} reads");
            if reads == 1 {
                once += 1;
            }
            add_writes += writes;
            ipam.release(&owner(&who), Some("net1")).await.unwrap();
            let (reads, writes) = store.take();
            // A read only when the DEL empties a block (its pool's cursor hint).
            assert!(reads <= 1, "a DEL made {reads} reads");
            assert_eq!(writes, 2, "DEL: the block and the index written");
        }
        // 300 + 19 addresses fill five blocks and part of a sixth: the ADDs into that one
        // read once; the later ones take the first address of a block the DEL before
        // emptied (and deleted).
        assert!(once >= 19, "only {once} of 50 ADDs read once");
        assert_eq!(
            add_writes, 100,
            "50 ADDs: the owner index and the block each"
        );
        check_indexes_exact(&*store).await;
    });
}

/// Nodes sharing a store claim blocks of their own: while unclaimed blocks remain, no two
/// nodes write one block (so they never contend); once every block is claimed, a node takes
/// the free addresses of another's, and the whole pool is used.
#[test]
fn nodes_claim_blocks_of_their_own_then_share() {
    use ipam_core::backend::block_index;
    pollster::block_on(async {
        let store = Arc::new(MemoryStore::new());
        let (a, b) = (
            on_node(store.clone(), "node-a"),
            on_node(store.clone(), "node-b"),
        );
        a.apply_pool(pool("p", "10.6.0.0/24", &["10.6.0.0/24"]))
            .await
            .unwrap();
        let mut blocks = [BTreeSet::new(), BTreeSet::new()];
        for i in 0..100 {
            for (k, ipam) in [&a, &b].into_iter().enumerate() {
                let got = ipam
                    .allocate(&request(&format!("{k}-{i}"), &["p"]))
                    .await
                    .unwrap();
                let v = ipam_core::backend::to_u128(got[0].allocation.address);
                blocks[k].insert(block_index(v));
            }
        }
        assert!(
            blocks[0].is_disjoint(&blocks[1]),
            "two nodes wrote one block while others were free: {blocks:?}"
        );
        // The rest of the pool, whichever node asks.
        let mut n = 200;
        while a
            .allocate(&request(&format!("rest-{n}"), &["p"]))
            .await
            .is_ok()
        {
            n += 1;
        }
        assert_eq!(n, 254, "the pool's 254 addresses were all handed out");
        assert_eq!(check_indexes_exact(&*store).await, 254);
    });
}

/// A node with no room of its own and no block left to claim borrows from another node's
/// block, and goes on there while that block has room: one search through every block (on
/// Kubernetes a list of them all) when it starts borrowing, then the steady state's three
/// reads per ADD, not a search each time.
#[test]
fn a_node_goes_on_borrowing_where_it_borrowed_without_searching_again() {
    pollster::block_on(async {
        let store = Arc::new(CountingStore::new(MemoryStore::new()));
        let (a, b) = (
            on_node(store.clone(), "node-a"),
            on_node(store.clone(), "node-b"),
        );
        // Node a claims all four blocks and fills them; then 20 of block 2's go.
        let holder_of = |last: u8| {
            format!("10.6.0.{last}")
                .parse::<std::net::IpAddr>()
                .unwrap()
        };
        let held =
            a_pool_filled_then_freed_in(&a, "10.6.0.0/24", holder_of(130)..=holder_of(149)).await;
        assert_eq!(held, 234);
        store.take();
        let mut got = Vec::new();
        let mut reads_each = Vec::new();
        for i in 0..20 {
            let g = b
                .allocate(&request(&format!("b{i}"), &["p"]))
                .await
                .unwrap();
            got.push(g[0].allocation.address);
            reads_each.push(store.take().0);
        }
        let expected: Vec<_> = (130..=149).map(holder_of).collect();
        assert_eq!(
            got, expected,
            "node b took block 2's free addresses in order"
        );
        assert!(
            reads_each[0] > 3,
            "the first borrow searched: {reads_each:?}"
        );
        assert!(
            reads_each[1..].iter().all(|&r| r == 3),
            "later borrows read as in steady state: {reads_each:?}"
        );
        // The block is full again: the next ADD searches, and finds nothing.
        assert!(b.allocate(&request("b-last", &["p"])).await.is_err());
        assert_eq!(check_indexes_exact(&*store).await, 254);
    });
}

/// A forced pool deletion releases its holders block by block: one write per block however
/// many owners it holds, plus the mark, the deletion and the guard (the report saw 21,000
/// holders stop at a 30 s deadline when each owner cost two writes).
#[test]
fn a_forced_deletion_writes_once_per_block_not_per_owner() {
    pollster::block_on(async {
        let store = Arc::new(CountingStore::new(MemoryStore::new()));
        let ipam = Ipam::new(store.clone());
        ipam.apply_pool(pool("big", "10.70.0.0/16", &["10.70.0.0/22"]))
            .await
            .unwrap();
        for i in 0..640 {
            ipam.allocate(&request(&format!("o{i}"), &["big"]))
                .await
                .unwrap();
        }
        store.take();
        let released = ipam.delete_pool(&name("big"), true).await.unwrap();
        assert_eq!(released.len(), 640);
        let (_, writes) = store.take();
        // 10 blocks of 64, the mark, the pool and its cursor, the guard's entry.
        assert!(writes <= 14, "{writes} writes for 640 holders in 10 blocks");
        assert!(ipam.allocations(None).await.unwrap().is_empty());
    });
}
