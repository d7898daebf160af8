//! Counting many pools at once (`ipamctl get ippools`, the status refresh): the same counts
//! as one pool at a time, from one read of the reservations and one scan of blocks per
//! family, however many pools there are.

use std::sync::Arc;

use ipam_core::testkit::{pool, request, reserved, CountingStore};
use ipam_core::{Ipam, MemoryStore};

/// 40 IPv4 pools of one /24 each and 20 IPv6 pools of one /64 each, with allocations in
/// most, a reservation over some, and an inline range's holders between them.
fn many_pools() -> (
    Ipam<Arc<CountingStore<MemoryStore>>>,
    Vec<ipam_core::IpPool>,
) {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let ipam = Ipam::new(store);
    let mut pools = Vec::new();
    for i in 0..40 {
        pools.push(pool(
            &format!("v4-{i:02}"),
            &format!("10.{i}.0.0/24"),
            &[&format!("10.{i}.0.0/25")],
        ));
    }
    for i in 0..20 {
        pools.push(pool(
            &format!("v6-{i:02}"),
            &format!("fd00:{i:x}::/64"),
            &[&format!("fd00:{i:x}::/64")],
        ));
    }
    pollster::block_on(async {
        ipam.apply_all(&[reserved("r", &["10.3.0.0/26", "10.4.0.10"])], &pools)
            .await
            .unwrap();
        for (n, p) in pools.iter().enumerate() {
            for k in 0..(n % 7) * 11 {
                ipam.allocate(&request(&format!("{}-{k}", p.name()), &[p.name().as_str()]))
                    .await
                    .unwrap();
            }
        }
    });
    (ipam, pools)
}

#[test]
fn many_pools_are_counted_as_one_at_a_time_would() {
    let (ipam, pools) = many_pools();
    let together = pollster::block_on(ipam.pools_counts(&pools)).unwrap();
    let one_by_one: Vec<_> = pools
        .iter()
        .map(|p| pollster::block_on(ipam.pool_counts(p)).unwrap())
        .collect();
    assert_eq!(together, one_by_one);
    // Spot checks against the contract: v4-03 lists 10.3.0.0/25, less the subnet's network
    // address, 127; the reservation covers .1-.63 of them; 33 are held (allocation skips
    // the reserved ones).
    let c = &together[3];
    assert_eq!(
        (c.total, c.reserved, c.allocated, c.available),
        (127, 63, 33, 31)
    );
    assert_eq!(together[59].total, 1 << 64);
}

#[test]
fn many_pools_cost_one_scan_of_blocks_per_family() {
    let (ipam, pools) = many_pools();
    ipam.store().take();
    pollster::block_on(ipam.pools_counts(&pools)).unwrap();
    // The reservation summary, then the IPv4 blocks and the IPv6 blocks.
    assert_eq!(ipam.store().take(), (3, 0));
    // Pools of one family: one scan.
    pollster::block_on(ipam.pools_counts(&pools[..40])).unwrap();
    assert_eq!(ipam.store().take(), (2, 0));
    pollster::block_on(ipam.pools_counts(&[])).unwrap();
    assert_eq!(ipam.store().take(), (0, 0));
}
