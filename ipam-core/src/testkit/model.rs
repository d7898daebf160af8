//! A property test against a plain model, for every backend: random sequences of config
//! edits (a network's range sets grown, shrunk, reordered, dropped; pools applied, narrowed,
//! moved over each other; ReservedIPs applied and deleted) and ADD, DEL and GC.
//!
//! The model is a map from address to holder. After every step: the store holds exactly the
//! model's addresses, each by the model's holder; no address is handed out that is reserved,
//! outside every pool of its slot, or held by someone else; refusals happen exactly when the
//! model says they must; the contract's counts equal the model's.
//!
//! ```
//! use proptest::prelude::*;
//! use ipam_core::testkit::model;
//! proptest!(ProptestConfig::with_cases(4), |(ops in model::ops())| {
//!     model::check(std::sync::Arc::new(ipam_core::MemoryStore::new()), &ops)?;
//! });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::addr::to_u128;
use crate::engine::{Ipam, Request, Slot};
use crate::error::Error;
use crate::name::ObjectName;
use crate::pool::{IpPool, IpPoolSpec};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::set::IntervalSet;
use crate::store::Store;

use super::{check_indexes_exact, engine, name, owner};

/// Applied pools, by index: `p0`..`p2` (IPv4) and `p6` (IPv6).
const POOLS: [&str; 4] = ["p0", "p1", "p2", "p6"];
const NETWORKS: [&str; 2] = ["n1", "n2"];
const OWNERS: usize = 5;
const RESERVATIONS: usize = 3;

/// An inclusive range of offsets within the model's subnets.
type Span = (u8, u8);

/// One range of an inline range set: IPv6 when `v6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineRange {
    /// The family.
    pub v6: bool,
    /// The offsets.
    pub span: Span,
}

/// A network's IPAM configuration, as the CNI `ipam` section gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// `ranges`: range sets, each giving one address.
    pub ranges: Vec<Vec<InlineRange>>,
    /// `ippools`: applied pools by index into the model's pools, IPv4 then IPv6 candidates.
    pub ippools: Vec<usize>,
}

/// One step of a sequence.
#[derive(Clone, Debug)]
pub enum ModelOp {
    /// `ipamctl apply` of pool `pool` with `ips` = the span (may overlap another: refused).
    ApplyPool {
        /// Which pool.
        pool: usize,
        /// Its `ips`.
        span: Span,
    },
    /// `ipamctl apply` of ReservedIP `r`.
    Reserve {
        /// Which reservation.
        r: usize,
        /// IPv6 when true.
        v6: bool,
        /// Its addresses.
        span: Span,
    },
    /// `ipamctl delete reservedip`.
    Unreserve {
        /// Which reservation.
        r: usize,
    },
    /// The operator edits a network's configuration.
    Edit {
        /// Which network.
        net: usize,
        /// Its new configuration.
        config: NetConfig,
    },
    /// CNI ADD.
    Add {
        /// The container.
        who: usize,
        /// The network.
        net: usize,
    },
    /// CNI DEL.
    Del {
        /// The container.
        who: usize,
        /// The network.
        net: usize,
    },
    /// CNI GC: owners in the mask are valid attachments.
    Gc {
        /// The network.
        net: usize,
        /// Bit `w` set: owner `w` is valid.
        valid: u8,
    },
}

fn span() -> impl Strategy<Value = Span> {
    (0u8..24, 0u8..8).prop_map(|(a, l)| (a, a.saturating_add(l)))
}

fn net_config() -> impl Strategy<Value = NetConfig> {
    let range =
        (prop::bool::weighted(0.25), span()).prop_map(|(v6, span)| InlineRange { v6, span });
    let set = prop::collection::vec(range, 1..3)
        // One family per set, as the plugin requires.
        .prop_map(|mut set| {
            let v6 = set[0].v6;
            set.iter_mut().for_each(|r| r.v6 = v6);
            set
        });
    (
        prop::collection::vec(set, 0..3),
        prop::collection::vec(0..POOLS.len(), 0..3),
    )
        .prop_map(|(ranges, mut ippools)| {
            ippools.dedup();
            NetConfig { ranges, ippools }
        })
}

/// Random sequences of model steps.
pub fn ops() -> impl Strategy<Value = Vec<ModelOp>> {
    let op = prop_oneof![
        2 => (0..POOLS.len(), span()).prop_map(|(pool, span)| ModelOp::ApplyPool { pool, span }),
        1 => (0..RESERVATIONS, prop::bool::weighted(0.25), span())
            .prop_map(|(r, v6, span)| ModelOp::Reserve { r, v6, span }),
        1 => (0..RESERVATIONS).prop_map(|r| ModelOp::Unreserve { r }),
        2 => (0..NETWORKS.len(), net_config()).prop_map(|(net, config)| ModelOp::Edit { net, config }),
        6 => (0..OWNERS, 0..NETWORKS.len()).prop_map(|(who, net)| ModelOp::Add { who, net }),
        2 => (0..OWNERS, 0..NETWORKS.len()).prop_map(|(who, net)| ModelOp::Del { who, net }),
        1 => (0..NETWORKS.len(), any::<u8>()).prop_map(|(net, valid)| ModelOp::Gc { net, valid }),
    ];
    prop::collection::vec(op, 1..50)
}

/// The address at `offset` of the model's IPv4 (10.0.0.0/26) or IPv6 (fd00::/122) subnet.
fn addr(v6: bool, offset: u8) -> IpAddr {
    let text = if v6 {
        format!("fd00::{offset:x}")
    } else {
        format!("10.0.0.{offset}")
    };
    text.parse().expect("model address")
}

fn span_text(v6: bool, (a, b): Span) -> String {
    format!("{}-{}", addr(v6, a), addr(v6, b))
}

fn model_pool(label: &str, v6: bool, spans: &[Span]) -> IpPool {
    IpPool::new(
        label,
        IpPoolSpec {
            subnet: if v6 { "fd00::/122" } else { "10.0.0.0/26" }.into(),
            ips: spans.iter().map(|s| span_text(v6, *s)).collect(),
            ..Default::default()
        },
    )
    .expect("model pool")
}

/// Who holds an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ModelHolder {
    who: usize,
    net: usize,
    /// The pool label it was taken under.
    pool: String,
}

#[derive(Default)]
struct Model {
    pools: BTreeMap<usize, IpPool>,
    reserved: BTreeMap<usize, (bool, Span)>,
    configs: [NetConfig; 2],
    held: BTreeMap<IpAddr, ModelHolder>,
}

impl Model {
    fn reserved_set(&self) -> FamilySets {
        let sets: Vec<ReservedIp> = self
            .reserved
            .iter()
            .map(|(r, (v6, s))| reservation(*r, *v6, *s))
            .collect();
        FamilySets::union_of(&sets)
    }

    /// The request an ADD of `who` on `net` makes, as the plugin builds it.
    fn request(&self, who: usize, net: usize) -> Request {
        let config = &self.configs[net];
        let network = NETWORKS[net];
        let mut slots = Vec::new();
        let mut defines = Vec::new();
        for (i, set) in config.ranges.iter().enumerate() {
            let mut names = Vec::new();
            for (j, r) in set.iter().enumerate() {
                let label = if set.len() == 1 {
                    format!("{network}-{i}")
                } else {
                    format!("{network}-{i}-{j}")
                };
                defines.push(model_pool(&label, r.v6, &[r.span]));
                names.push(name(&label));
            }
            slots.push(Slot {
                pools: names,
                requested: None,
                family: None,
            });
        }
        for v6 in [false, true] {
            let names: Vec<ObjectName> = config
                .ippools
                .iter()
                .filter(|p| (**p == 3) == v6)
                .map(|p| name(POOLS[*p]))
                .collect();
            if !names.is_empty() {
                slots.push(Slot {
                    pools: names,
                    requested: None,
                    family: None,
                });
            }
        }
        Request {
            owner: owner(&format!("c{who}")),
            network: network.into(),
            pod: None,
            slots,
            reserved: FamilySets::default(),
            defines,
        }
    }

    fn holds(&self, who: usize, net: usize) -> BTreeSet<IpAddr> {
        self.held
            .iter()
            .filter(|(_, h)| h.who == who && h.net == net)
            .map(|(a, _)| *a)
            .collect()
    }
}

fn reservation(r: usize, v6: bool, span: Span) -> ReservedIp {
    ReservedIp::new(
        &format!("r{r}"),
        ReservedIpSpec {
            ips: vec![span_text(v6, span)],
            ip_version: None,
        },
    )
    .expect("model reservation")
}

/// Runs `ops` on `store` (fresh and empty) and checks every step against the model.
pub fn check(store: Arc<dyn Store>, ops: &[ModelOp]) -> Result<(), TestCaseError> {
    pollster::block_on(check_async(store, ops))
}

async fn check_async(store: Arc<dyn Store>, ops: &[ModelOp]) -> Result<(), TestCaseError> {
    let ipam = engine(store.clone());
    let mut m = Model::default();
    for op in ops {
        match op {
            ModelOp::ApplyPool { pool, span } => {
                let v6 = *pool == 3;
                let p = model_pool(POOLS[*pool], v6, &[*span]);
                let overlaps = m.pools.iter().any(|(q, o)| {
                    q != pool && o.family() == p.family() && o.ips().intersects(p.ips())
                });
                match ipam.apply_pool(p.clone()).await {
                    Ok(_) => {
                        prop_assert!(!overlaps, "{op:?}: an overlapping pool was applied");
                        m.pools.insert(*pool, p);
                    }
                    Err(Error::Invalid(e)) => {
                        prop_assert!(overlaps, "{op:?}: refused without overlap: {e}");
                    }
                    Err(e) => prop_assert!(false, "{op:?}: {e}"),
                }
            }
            ModelOp::Reserve { r, v6, span } => {
                ipam.apply_reserved_ip(reservation(*r, *v6, *span))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.reserved.insert(*r, (*v6, *span));
            }
            ModelOp::Unreserve { r } => {
                let got = ipam.delete_reserved_ip(&name(&format!("r{r}"))).await;
                match m.reserved.remove(r) {
                    Some(_) => prop_assert!(got.is_ok(), "{got:?}"),
                    None => prop_assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}"),
                }
            }
            ModelOp::Edit { net, config } => m.configs[*net] = config.clone(),
            ModelOp::Add { who, net } => add(&ipam, &mut m, *who, *net).await?,
            ModelOp::Del { who, net } => {
                let got = ipam
                    .release(&owner(&format!("c{who}")), Some(NETWORKS[*net]))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let released: BTreeSet<IpAddr> = got.iter().map(|a| a.address).collect();
                prop_assert_eq!(
                    released,
                    m.holds(*who, *net),
                    "DEL released other than held"
                );
                m.held.retain(|_, h| !(h.who == *who && h.net == *net));
            }
            ModelOp::Gc { net, valid } => {
                let keep: BTreeSet<_> = (0..OWNERS)
                    .filter(|w| valid & (1 << w) != 0)
                    .map(|w| owner(&format!("c{w}")))
                    .collect();
                let report = ipam
                    .gc(NETWORKS[*net], &keep)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(report.failures.is_empty());
                let released: BTreeSet<IpAddr> =
                    report.released.iter().map(|a| a.address).collect();
                let expected: BTreeSet<IpAddr> = m
                    .held
                    .iter()
                    .filter(|(_, h)| h.net == *net && valid & (1 << h.who) == 0)
                    .map(|(a, _)| *a)
                    .collect();
                prop_assert_eq!(released, expected, "GC released other than the invalid");
                m.held
                    .retain(|_, h| !(h.net == *net && valid & (1 << h.who) == 0));
            }
        }
        // After every step: the store holds what the model holds, by the same holders.
        let stored: BTreeMap<IpAddr, ModelHolder> = ipam
            .allocations(None)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .into_iter()
            .map(|a| {
                let who = a.owner.container_id()[1..].parse().expect("model owner");
                let net = NETWORKS
                    .iter()
                    .position(|n| *n == a.network)
                    .expect("model network");
                (
                    a.address,
                    ModelHolder {
                        who,
                        net,
                        pool: a.pool.to_string(),
                    },
                )
            })
            .collect();
        prop_assert_eq!(&stored, &m.held, "after {:?}", op);
        prop_assert_eq!(check_indexes_exact(&*store).await, m.held.len());
        let reserved = m.reserved_set();
        for p in m.pools.values() {
            let c = ipam
                .pool_counts(p)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let res = reserved.get(p.family());
            let taken =
                IntervalSet::from_intervals(m.held.keys().map(|a| (to_u128(*a), to_u128(*a))));
            let open = p.capacity().difference(res);
            let from_pool = m
                .held
                .values()
                .filter(|h| h.pool == p.name().as_str())
                .count();
            prop_assert_eq!(c.total, p.total());
            prop_assert_eq!(c.reserved, p.capacity().intersection(res).len());
            prop_assert_eq!(c.allocated, from_pool as u128);
            prop_assert_eq!(c.available, open.difference(&taken).len());
        }
    }
    Ok(())
}

async fn add(
    ipam: &Ipam<Arc<dyn Store>>,
    m: &mut Model,
    who: usize,
    net: usize,
) -> Result<(), TestCaseError> {
    let request = m.request(who, net);
    let reserved = m.reserved_set();
    let got = ipam.allocate(&request).await;
    // What the model requires of any outcome.
    let missing = request.slots.iter().flat_map(|s| &s.pools).find(|n| {
        !request.defines.iter().any(|d| d.name() == *n) && !m.pools.values().any(|p| p.name() == *n)
    });
    let overlap = request.defines.iter().any(|d| {
        request.slots.iter().flat_map(|s| &s.pools).any(|n| {
            m.pools
                .values()
                .any(|p| p.name() == n && p.family() == d.family() && p.ips().intersects(d.ips()))
        })
    });
    let lens = |n: &ObjectName| -> IpPool {
        request
            .defines
            .iter()
            .find(|d| d.name() == n)
            .cloned()
            .or_else(|| m.pools.values().find(|p| p.name() == n).cloned())
            .expect("named pool exists")
    };
    match got {
        Ok(granted) => {
            prop_assert!(
                missing.is_none() && !overlap,
                "ADD should have been refused"
            );
            prop_assert_eq!(granted.len(), request.slots.len());
            let before = m.holds(who, net);
            let mut seen = BTreeSet::new();
            for (g, slot) in granted.iter().zip(&request.slots) {
                let a = g.allocation.address;
                let v = to_u128(a);
                prop_assert!(seen.insert(a), "{a} given twice in one answer");
                prop_assert!(
                    slot.pools.contains(&g.allocation.pool),
                    "{a} from a pool not of its slot"
                );
                let l = lens(&g.allocation.pool);
                prop_assert!(
                    l.in_subnet(a),
                    "{a} answered with the subnet of {}",
                    l.name()
                );
                if g.fresh {
                    prop_assert!(l.capacity().contains(v), "{a} outside {}", l.name());
                    prop_assert!(!reserved.get(l.family()).contains(v), "{a} is reserved");
                    prop_assert!(!m.held.contains_key(&a), "{a} is held by {:?}", m.held[&a]);
                    m.held.insert(
                        a,
                        ModelHolder {
                            who,
                            net,
                            pool: g.allocation.pool.to_string(),
                        },
                    );
                } else {
                    prop_assert!(before.contains(&a), "{a} returned as kept but not held");
                }
            }
        }
        Err(Error::NotFound { .. }) => {
            prop_assert!(missing.is_some(), "NotFound without a missing pool")
        }
        Err(e @ Error::DefinedPoolOverlaps { .. }) => {
            prop_assert!(overlap, "refused as overlapping without overlap: {e}")
        }
        Err(Error::Exhausted { .. }) => {
            prop_assert!(missing.is_none() && !overlap);
            // Some slot has fewer free candidates than slots of its family before it need.
            let free = |slot: &Slot| -> BTreeSet<IpAddr> {
                slot.pools
                    .iter()
                    .flat_map(|n| {
                        let l = lens(n);
                        let open = l.capacity().difference(reserved.get(l.family()));
                        open.intervals()
                            .iter()
                            .flat_map(|&(x, y)| x..=y)
                            .map(|v| l.family().addr(v))
                            .filter(|a| !m.held.contains_key(a))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            let starved = request
                .slots
                .iter()
                .enumerate()
                .any(|(i, s)| free(s).len() <= i);
            prop_assert!(starved, "used up while every slot had room");
        }
        Err(e) => prop_assert!(false, "ADD: unexpected {e}"),
    }
    Ok(())
}
