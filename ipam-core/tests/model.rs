//! Random sequences of operations on the engine, checked after every step against a plain
//! model: a map of who holds what, and the reserved set.
//!
//! Invariants: no address is held twice; nothing is handed out outside its pool or from
//! the reserved, excluded, gateway, network or broadcast addresses; the contract's counts
//! add up; release and GC are idempotent; the store's views agree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipam_core::addr::to_u128;
use ipam_core::testkit::{check_consistency, name, owner, request};
use ipam_core::{
    Error, IntervalSet, IpPool, IpPoolSpec, Ipam, MemoryStore, ReservedIp, ReservedIpSpec,
};
use proptest::prelude::*;

const POOLS: [&str; 2] = ["v4", "v6"];
const OWNERS: usize = 6;
const RESERVATIONS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Reserve {
        r: usize,
        pool: usize,
        first: u8,
        len: u8,
    },
    Unreserve {
        r: usize,
    },
    Allocate {
        who: usize,
        pool: usize,
    },
    Request {
        who: usize,
        pool: usize,
        offset: u8,
    },
    Release {
        who: usize,
    },
    Gc {
        valid: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..RESERVATIONS, 0..2usize, 0u8..34, 0u8..6)
            .prop_map(|(r, pool, first, len)| Op::Reserve { r, pool, first, len }),
        1 => (0..RESERVATIONS).prop_map(|r| Op::Unreserve { r }),
        4 => (0..OWNERS, 0..2usize).prop_map(|(who, pool)| Op::Allocate { who, pool }),
        2 => (0..OWNERS, 0..2usize, 0u8..34).prop_map(|(who, pool, offset)| Op::Request { who, pool, offset }),
        2 => (0..OWNERS).prop_map(|who| Op::Release { who }),
        1 => (0u8..64).prop_map(|valid| Op::Gc { valid }),
    ]
}

fn pools() -> [IpPool; 2] {
    [
        IpPool::new(
            "v4",
            IpPoolSpec {
                subnet: "10.0.0.0/27".into(),
                ips: vec!["10.0.0.0/27".into()],
                exclude_ips: vec!["10.0.0.5".into()],
                gateway: Some("10.0.0.1".into()),
                ..Default::default()
            },
        )
        .unwrap(),
        IpPool::new(
            "v6",
            IpPoolSpec {
                subnet: "fd00::/123".into(),
                ips: vec!["fd00::4-fd00::1f".into()],
                ..Default::default()
            },
        )
        .unwrap(),
    ]
}

/// The address at `offset` from the start of pool `pool`'s subnet.
fn addr(pool: usize, offset: u8) -> IpAddr {
    let text = match pool {
        0 => format!("10.0.0.{offset}"),
        _ => format!("fd00::{offset:x}"),
    };
    text.parse().unwrap()
}

#[derive(Default)]
struct Model {
    /// ReservedIP index -> (pool family index, first offset, last offset).
    reserved: BTreeMap<usize, (usize, u8, u8)>,
    /// (owner, pool) -> address.
    held: BTreeMap<(usize, usize), IpAddr>,
}

impl Model {
    fn reserved_in(&self, pool: usize) -> IntervalSet {
        IntervalSet::from_intervals(
            self.reserved
                .values()
                .filter(|r| r.0 == pool)
                .map(|&(p, a, b)| (to_u128(addr(p, a)), to_u128(addr(p, b)))),
        )
    }

    fn free(&self, pool: usize, p: &IpPool) -> BTreeSet<u128> {
        let open = p.capacity().difference(&self.reserved_in(pool));
        let held: BTreeSet<u128> = self
            .held
            .iter()
            .filter(|((_, q), _)| *q == pool)
            .map(|(_, a)| to_u128(*a))
            .collect();
        open.intervals()
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|v| !held.contains(v))
            .collect()
    }
}

fn owner_id(who: usize) -> String {
    format!("c{who}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let ipam = Ipam::new(MemoryStore::new());
        let pools = pools();
        for p in &pools {
            pollster::block_on(ipam.apply_pool(p.clone())).unwrap();
        }
        let mut m = Model::default();
        for op in ops {
            match op {
                Op::Reserve { r, pool, first, len } => {
                    let last = first.saturating_add(len).min(33);
                    let text = format!("{}-{}", addr(pool, first), addr(pool, last));
                    let spec = ReservedIpSpec { ips: vec![text], ip_version: None };
                    pollster::block_on(ipam.apply_reserved_ip(ReservedIp::new(&format!("r{r}"), spec).unwrap())).unwrap();
                    m.reserved.insert(r, (pool, first, last));
                }
                Op::Unreserve { r } => {
                    let got = pollster::block_on(ipam.delete_reserved_ip(&name(&format!("r{r}"))));
                    match m.reserved.remove(&r) {
                        Some(_) => prop_assert!(got.is_ok()),
                        None => prop_assert!(matches!(got, Err(Error::NotFound { .. })), "deleting a missing reservedip: {:?}", got),
                    }
                }
                Op::Allocate { who, pool } => {
                    let got = pollster::block_on(ipam.allocate(&request(&owner_id(who), &[POOLS[pool]])));
                    if let Some(held) = m.held.get(&(who, pool)) {
                        prop_assert_eq!(got.unwrap()[0].address, *held, "a repeat returns what is held");
                        continue;
                    }
                    let free = m.free(pool, &pools[pool]);
                    match got {
                        Ok(a) => {
                            let v = to_u128(a[0].address);
                            prop_assert!(free.contains(&v), "{} was not free", a[0].address);
                            m.held.insert((who, pool), a[0].address);
                        }
                        Err(Error::Exhausted { pools: counts }) => {
                            prop_assert!(free.is_empty(), "used up with {} free", free.len());
                            prop_assert_eq!(counts[0].available, 0);
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Request { who, pool, offset } => {
                    let wanted = addr(pool, offset.min(31));
                    let mut req = request(&owner_id(who), &[POOLS[pool]]);
                    req.slots[0].requested = Some(wanted);
                    let got = pollster::block_on(ipam.allocate(&req));
                    if let Some(held) = m.held.get(&(who, pool)) {
                        prop_assert_eq!(got.unwrap()[0].address, *held, "a repeat returns what is held");
                        continue;
                    }
                    let allowed = m.free(pool, &pools[pool]).contains(&to_u128(wanted));
                    match got {
                        Ok(a) => {
                            prop_assert!(allowed, "{wanted} should have been refused");
                            prop_assert_eq!(a[0].address, wanted);
                            m.held.insert((who, pool), wanted);
                        }
                        Err(Error::Unavailable { .. }) => prop_assert!(!allowed, "{wanted} was free"),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Release { who } => {
                    let got = pollster::block_on(ipam.release(&owner(&owner_id(who)), Some("net1"))).unwrap();
                    let expected: BTreeSet<IpAddr> =
                        m.held.iter().filter(|((w, _), _)| *w == who).map(|(_, a)| *a).collect();
                    let released: BTreeSet<IpAddr> = got.iter().map(|a| a.address).collect();
                    prop_assert_eq!(released, expected);
                    m.held.retain(|(w, _), _| *w != who);
                }
                Op::Gc { valid } => {
                    let keep: BTreeSet<_> = (0..OWNERS).filter(|w| valid & (1 << w) != 0).map(|w| owner(&owner_id(w))).collect();
                    let report = pollster::block_on(ipam.gc("net1", &keep)).unwrap();
                    prop_assert!(report.failures.is_empty());
                    let expected = m.held.keys().filter(|(w, _)| valid & (1 << w) == 0).count();
                    prop_assert_eq!(report.released.len(), expected);
                    m.held.retain(|(w, _), _| valid & (1 << w) != 0);
                }
            }
            // After every step: the store agrees with the model, and the counts add up.
            let stored: BTreeSet<IpAddr> =
                pollster::block_on(ipam.allocations(None)).unwrap().iter().map(|a| a.address).collect();
            let modelled: BTreeSet<IpAddr> = m.held.values().copied().collect();
            prop_assert_eq!(&stored, &modelled);
            prop_assert_eq!(modelled.len(), m.held.len(), "an address is held twice");
            prop_assert_eq!(pollster::block_on(check_consistency(ipam.store())), m.held.len());
            for (i, p) in pools.iter().enumerate() {
                let c = pollster::block_on(ipam.pool_counts(p)).unwrap();
                let reserved = p.capacity().intersection(&m.reserved_in(i)).len();
                let held = m.held.keys().filter(|(_, q)| *q == i).count() as u128;
                prop_assert_eq!(c.total, p.total());
                prop_assert_eq!(c.reserved, reserved);
                prop_assert_eq!(c.allocated, held);
                prop_assert_eq!(c.available, m.free(i, p).len() as u128);
                for a in m.held.iter().filter(|((_, q), _)| *q == i).map(|(_, a)| to_u128(*a)) {
                    prop_assert!(p.capacity().contains(a), "held address outside the pool's capacity");
                }
            }
        }
    }
}
