//! An engine whose store caches (a node agent's) against changes made elsewhere, where its
//! cache cannot see them: a ReservedIP applied and a pool narrowed by another process. Its
//! next ADD starts from the stale cache and still honours both, because it reads the pools
//! and the reservations afresh after its write.

use std::net::IpAddr;
use std::sync::Arc;

use ipam_core::testkit::{check_indexes_exact, pool, request, reserved, ReadCache};
use ipam_core::{Ipam, MemoryStore};

fn address(granted: Vec<ipam_core::Granted>) -> IpAddr {
    granted[0].allocation.address
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn an_add_from_a_stale_cache_honours_what_another_process_changed() {
    pollster::block_on(async {
        let shared = Arc::new(MemoryStore::in_order());
        // The agent: a cache as right as its own writes make it, blind to everyone else's.
        let agent = Ipam::new(ReadCache::learning_writes(shared.clone()));
        // ipamctl, on the store itself.
        let operator = Ipam::new(shared.clone());
        operator
            .apply_pool(pool("p", "10.9.0.0/24", &["10.9.0.10-10.9.0.20"]))
            .await
            .unwrap();
        // A reservation elsewhere, so that the agent's cache holds a summary of them.
        operator
            .apply_reserved_ip(reserved("far", &["10.9.0.250"]))
            .await
            .unwrap();
        assert_eq!(
            address(agent.allocate(&request("c1", &["p"])).await.unwrap()),
            ip("10.9.0.10")
        );

        // The next address the agent's view would give is reserved elsewhere.
        operator
            .apply_reserved_ip(reserved("r", &["10.9.0.11"]))
            .await
            .unwrap();
        let second = address(agent.allocate(&request("c2", &["p"])).await.unwrap());
        assert_ne!(second, ip("10.9.0.11"), "a reserved address was handed out");

        // The pool is narrowed elsewhere: addresses held stay, new ones come from the new range.
        operator
            .apply_pool(pool("p", "10.9.0.0/24", &["10.9.0.15-10.9.0.20"]))
            .await
            .unwrap();
        let third = address(agent.allocate(&request("c3", &["p"])).await.unwrap());
        assert!(
            (ip("10.9.0.15")..=ip("10.9.0.20")).contains(&third),
            "{third} is outside the pool's range as it is now"
        );
        assert_eq!(check_indexes_exact(&*shared).await, 3);
    });
}

/// An agent borrowing from another node's block reads that block afresh, since that node
/// writes it too: taking turns with the owner node on one block, its every ADD commits at the
/// first try (two writes), where one from a cached copy of the block would be refused.
#[test]
fn a_block_of_another_nodes_affinity_is_read_afresh_not_from_the_cache() {
    use ipam_core::testkit::{a_pool_filled_then_freed_in, on_node, CountingStore};
    pollster::block_on(async {
        let shared = Arc::new(MemoryStore::in_order());
        let agent_of = |node: &str| {
            let counted = Arc::new(CountingStore::new(shared.clone()));
            (
                on_node(ReadCache::learning_writes(counted.clone()), node),
                counted,
            )
        };
        let ((a, _), (b, b_count)) = (agent_of("node-a"), agent_of("node-b"));
        // Node a claims and fills all four blocks; then 20 of block 2's go.
        let freed = ip("10.9.0.130")..=ip("10.9.0.149");
        assert_eq!(
            a_pool_filled_then_freed_in(&a, "10.9.0.0/24", freed).await,
            234
        );
        // Node b borrows there, node a takes from its own block in turn.
        b.allocate(&request("b-first", &["p"])).await.unwrap();
        b_count.take();
        for i in 0..9 {
            a.allocate(&request(&format!("a-again{i}"), &["p"]))
                .await
                .unwrap();
            b.allocate(&request(&format!("b{i}"), &["p"]))
                .await
                .unwrap();
            let (_, writes) = b_count.take();
            assert_eq!(writes, 2, "node b's ADD {i} was refused and made again");
        }
        check_indexes_exact(&*shared).await;
    });
}
